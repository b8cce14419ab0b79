#include "sync/http_api.hpp"

#include "core/metrics.hpp"
#include "sync/syncer.hpp"
#include "sync/viewer_assets.hpp"

namespace kv::sync {

web::Routes syncer_routes(const Syncer& syncer, const metrics::Registry& metrics,
                          std::string secret) {
  web::Routes r;
  r.server = "kvsync";
  r.not_found_hint = "try / (the viewer), /ws (WebSocket), /nodes, /metrics or /healthz";
  r.get = [&syncer, &metrics](const web::Request& req) -> std::optional<web::Response> {
    const auto path = web::path_of(req.target);
    if (path == "/healthz") {
      if (!syncer.ready()) {
        return web::Response{503, "text/plain", "not ready: waiting to reach every node\n"};
      }
      return web::Response{200, "text/plain", "ok\n"};
    }
    if (path == "/nodes") return web::Response{200, "application/json", syncer.nodes_json()};
    if (path == "/metrics") {
      return web::Response{200, "text/plain; version=0.0.4; charset=utf-8", metrics.render()};
    }
    if (auto asset = viewer_asset(path)) {
      return web::Response{200, std::string(asset->content_type), std::string(asset->content)};
    }
    return std::nullopt;
  };
  r.subscribe =
      [&syncer, secret](const web::Request& req) -> std::variant<web::Subscription, web::Response> {
    if (web::path_of(req.target) != "/ws") {
      return web::Response{404, "text/plain", "no WebSocket here; use /ws\n"};
    }
    if (!web::authorized(req, secret)) return web::unauthorized();
    return web::Subscription{[&syncer] { return syncer.hello_json(); }, ~0u};
  };
  return r;
}

}  // namespace kv::sync
