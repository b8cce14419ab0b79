#include "node/http_api.hpp"

#include <boost/json.hpp>

#include "core/item_json.hpp"
#include "core/metrics.hpp"
#include "core/notification.hpp"
#include "node/store.hpp"

namespace kv::node {

namespace json = boost::json;

namespace {

std::string status_json(const Store& store, const web::Hub& hub) {
  const NodeStatus s = store.status();
  json::object o{{"name", s.name},
                 {"incarnation", s.incarnation},
                 {"version", s.version},
                 {"seq", s.seq},
                 {"applied_stamp", s.applied_stamp},
                 {"synced_upto", s.synced_upto},
                 {"items", s.items},
                 {"tombstones", s.tombstones},
                 {"unsynced", s.unsynced},
                 {"syncer_stamp", s.syncer_stamp},
                 {"digest", s.digest},
                 {"digest_stamp", s.digest_stamp},
                 {"subscribers", hub.subscribers()}};
  return json::serialize(o);
}

std::string items_json(const Store& store) {
  const NodeStatus s = store.status();
  const auto page = store.list_page("", kItemsPageLimit);
  json::array items;
  items.reserve(page.items.size());
  for (const auto& it : page.items) {
    items.push_back(json::value_from(it));
  }
  json::object o{{"node", s.name},
                 {"seq", s.seq},
                 {"applied_stamp", s.applied_stamp},
                 {"items", std::move(items)},
                 {"truncated", !page.next.empty()}};
  return json::serialize(o);
}

}  // namespace

web::Routes node_routes(const Store& store, const web::Hub& hub, const metrics::Registry& metrics,
                        std::string name, std::string secret) {
  web::Routes r;
  r.server = "kvnode";
  r.not_found_hint = "try /ws (WebSocket), /items, /status, /metrics or /healthz";
  r.get = [&store, &hub, &metrics,
           secret](const web::Request& req) -> std::optional<web::Response> {
    const auto path = web::path_of(req.target);
    if (path == "/healthz") {
      if (store.degraded()) return web::Response{503, "text/plain", "storage failing\n"};
      return web::Response{200, "text/plain", "ok\n"};
    }
    if (path == "/status") return web::Response{200, "application/json", status_json(store, hub)};
    if (path == "/items") {
      if (!web::authorized(req, secret)) return web::unauthorized();
      return web::Response{200, "application/json", items_json(store)};
    }
    if (path == "/metrics") {
      return web::Response{200, "text/plain; version=0.0.4; charset=utf-8", metrics.render()};
    }
    return std::nullopt;
  };
  r.subscribe = [&store, name, secret](
                    const web::Request& req) -> std::variant<web::Subscription, web::Response> {
    const web::Response not_found{
        404, "text/plain", "no WebSocket here; use /ws, /ws?only=local or /ws?only=synced\n"};
    if (web::path_of(req.target) != "/ws") return not_found;
    if (!web::authorized(req, secret)) return web::unauthorized();
    const auto only = web::query_param(req.target, "only");
    unsigned topics = kTopicLocal | kTopicSynced;
    if (only && *only == "local") {
      topics = kTopicLocal;
    } else if (only && *only == "synced") {
      topics = kTopicSynced;
    } else if (only) {
      return not_found;
    }
    auto hello = [&store, name] {
      Notification n;
      n.kind = Notification::Kind::kHello;
      n.node = name;
      const NodeStatus s = store.status();
      n.seq = s.seq;
      n.stamp = s.applied_stamp;
      return to_json(n);
    };
    return web::Subscription{std::move(hello), topics};
  };
  return r;
}

}  // namespace kv::node
