// What a node serves over HTTP (docs/protocol.md, "HTTP and WebSocket"): change notifications on
// /ws, its items page by page (and a search) on /items for the viewer, /status, /metrics and
// /healthz.
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

// /items pages (docs/protocol.md, "HTTP on the nodes"): `limit` items by default and at most
// (each page also stops at about proto::kBatchBytes).
inline constexpr std::uint64_t kItemsDefaultLimit = 500;
inline constexpr std::uint64_t kItemsMaxLimit = 5000;
// A search (/items?q=) looks at this many items per request at most, then hands back a cursor:
// the node's one I/O thread is never held by one request for long (about 10 ms here).
inline constexpr std::uint64_t kSearchScanLimit = 100000;
inline constexpr std::size_t kSearchMaxBytes = 256;  // the longest search text

// With a `secret`, /ws and /items need it (docs/security.md); /healthz, /status and /metrics
// carry no items and stay open.
web::Routes node_routes(const Store& store, const web::Hub& hub, const metrics::Registry& metrics,
                        std::string name, std::string secret);

}  // namespace kv::node
