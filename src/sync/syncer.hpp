// kvsync's engine: one persistent link per node (a binary-protocol connection and a WebSocket
// subscription), a fetcher that runs when a notification says the node changed, and a sender
// that drives the node up to the log's latest stamp. See docs/sync.md.
//
// Threading: everything runs on one io_context thread; no locks.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "net/tls.hpp"

namespace kv::metrics {
class Registry;
}

namespace kv::sync {

struct SyncerOptions {
  std::vector<std::string> nodes;  // binary-protocol addresses, host:port
  std::filesystem::path data;      // the syncer's own data directory (its log)
  bool sync_writes = false;        // fsync the log before a node hears its changes are in it
  std::size_t fetch_limit = 1000;  // changes asked for in one FETCH
  std::size_t batch_limit = 1000;  // changes sent in one APPLY (whole stamps)
  std::size_t apply_window = 64;   // APPLYs in flight per node (MachineOptions::apply_window)
  // How long stamps written may wait for more before their fsync (sync_writes only): the other
  // nodes get them at once; only what tells a node its own changes are in the log (synced_upto,
  // session marks, its changes coming back) waits (docs/sync.md, "The syncer's fsync").
  std::chrono::milliseconds sync_delay{5};
  std::string secret;  // the cluster secret, sent to every node (AUTH, WebSocket header)
  // A client context (tls::client_context): every link speaks TLS (binary protocol and wss) and
  // verifies the node's certificate. nullptr: plain TCP.
  std::shared_ptr<tls::Context> tls;
  std::chrono::milliseconds call_timeout{std::chrono::seconds(5)};
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{std::chrono::seconds(1)};
  // Nodes the operator says are gone for good or were wiped (--forget-node): the log forgets
  // them before anything else (docs/sync.md, "Removing a node").
  std::vector<std::string> forget;
  bool restored_log = false;  // MachineOptions::restored_log
};

class Syncer {
 public:
  // Opens the log; throws StoreError when the data directory is unusable.
  Syncer(boost::asio::any_io_executor executor, SyncerOptions options);
  ~Syncer();

  // Runs every node link until stop(). `on_all_connected` is called once, the first time every
  // node is connected.
  boost::asio::awaitable<void> run(std::function<void()> on_all_connected);
  // Closes every link; run() returns once each has ended (a connect in progress ends at its
  // deadline).
  void stop();

  // What the syncer does, as JSON objects for the viewer's WebSocket (docs/protocol.md,
  // "The syncer's WebSocket"): each stamp, each APPLY a node acknowledged, links going up and
  // down. Called on the syncer's thread; must not block.
  // `active` says whether anyone listens now; no JSON is built while it says no.
  void set_listener(std::function<void(std::string json)> listener, std::function<bool()> active);
  // {"stamp":N,"nodes":[{"address","name","http","connected","applied_stamp"}...]}
  std::string nodes_json() const;
  // The first message a viewer gets: nodes_json() with "type":"hello".
  std::string hello_json() const;
  // Every node has been reached at least once since start.
  bool ready() const;
  // Adds the syncer's gauges and counters (stamps, per-node lag, reconnects, bytes).
  void register_metrics(metrics::Registry& registry);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kv::sync
