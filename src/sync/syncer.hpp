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

namespace kv::sync {

struct SyncerOptions {
  std::vector<std::string> nodes;  // binary-protocol addresses, host:port
  std::filesystem::path data;      // the syncer's own data directory (its log)
  bool sync_writes = false;        // fsync each stamp before fanning it out
  std::size_t fetch_limit = 1000;  // changes asked for in one FETCH
  std::size_t batch_limit = 1000;  // changes sent in one APPLY (whole stamps)
  std::chrono::milliseconds call_timeout{std::chrono::seconds(5)};
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{std::chrono::seconds(5)};
};

class Syncer {
 public:
  // Opens the log; throws StoreError when the data directory is unusable.
  Syncer(boost::asio::any_io_executor executor, SyncerOptions options);
  ~Syncer();

  // Runs every node link until cancelled. `on_all_connected` is called once, the first time
  // every node is connected.
  boost::asio::awaitable<void> run(std::function<void()> on_all_connected);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kv::sync
