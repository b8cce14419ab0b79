// What kvsync serves over HTTP: the viewer page (/), its WebSocket of syncer events (/ws), the
// node list (/nodes), /metrics and /healthz. See docs/protocol.md, "The syncer's HTTP".
#pragma once

#include "net/web_server.hpp"

namespace kv::metrics {
class Registry;
}

namespace kv::sync {

class Syncer;

// With a `secret`, /ws (which carries items) needs it; the page itself, /nodes, /metrics and
// /healthz stay open.
web::Routes syncer_routes(const Syncer& syncer, const metrics::Registry& metrics,
                          std::string secret);

}  // namespace kv::sync
