// What a node serves over HTTP (docs/protocol.md, "HTTP and WebSocket"): change notifications on
// /ws, a snapshot of its items on /items for the viewer, /status, /metrics and /healthz.
#pragma once

#include <string>

#include "net/web_server.hpp"

namespace kv::metrics {
class Registry;
}

namespace kv::node {

class Store;

// Notification topics: a client's change on this node, and a change the syncer applied.
inline constexpr unsigned kTopicLocal = 1;
inline constexpr unsigned kTopicSynced = 2;

// Items returned by /items at most (the viewer's snapshot); more are reported as truncated.
inline constexpr std::uint64_t kItemsPageLimit = 10000;

// With a `secret`, /ws and /items need it (docs/security.md); /healthz, /status and /metrics
// carry no items and stay open.
web::Routes node_routes(const Store& store, const web::Hub& hub, const metrics::Registry& metrics,
                        std::string name, std::string secret);

}  // namespace kv::node
