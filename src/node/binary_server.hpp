// The node's binary-protocol listener: one coroutine per connection (and a watchdog beside it
// that keeps its deadline), requests answered in order (pipelining welcome), every read and write
// under the idle deadline; over TLS when configured.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "net/listener.hpp"
#include "net/tls.hpp"
#include "node/store.hpp"

namespace kv::metrics {
class Registry;
}

namespace kv::node {

struct BinaryOptions {
  std::size_t max_connections = 1024;  // further connections are closed at once
  std::chrono::milliseconds idle_timeout{
      std::chrono::minutes(5)};     // no complete frame for this long
  std::size_t max_pipeline = 1024;  // requests answered per write; more wait for the next round
  // A frame that has started arriving must be whole within this (a client sending a byte a
  // second is closed, not waited on forever).
  std::chrono::milliseconds frame_timeout{std::chrono::seconds(10)};
  std::string secret;           // the cluster secret; "" = none (FETCH and APPLY open to anyone)
  bool client_auth = false;     // every request but PING and AUTH needs the secret too
  std::uint16_t http_port = 0;  // reported in STATUS so clients find the notifications
  metrics::Registry* metrics = nullptr;      // requests, latencies, bytes and connections go here
  std::function<std::size_t()> subscribers;  // WebSocket subscribers, reported in STATUS
  // TLS (tls::server_context): every connection completes a handshake within
  // handshake_timeout before its first frame; nullptr: plain TCP.
  std::shared_ptr<tls::Context> tls;
  std::chrono::milliseconds handshake_timeout{std::chrono::seconds(10)};
  // Its stop() ends every connection (a write waiting to be durable is not answered; the store
  // still commits it). nullptr: connections end with the process.
  net::Stopper* stopper = nullptr;
};

// Sessions wait here for their changes to become durable before they answer. The owner calls
// notify_all() after Store::poll_commits().
class CommitWatch {
 public:
  CommitWatch(boost::asio::any_io_executor ex, const Store& store);
  // Wakes every waiter whose commit the store completed, and every wait_until().
  void notify_all();

  // Something waiting for `commit`: wake() is called (on the I/O thread, inside notify_all())
  // once the store completed it, and may only cancel an operation.
  struct Waiter {
    Commit commit;
    std::function<void()> wake;
  };
  // Registers `waiter` for `commit` for its lifetime (an empty commit: nothing to wait for).
  class Watching {
   public:
    Watching(CommitWatch& watch, Waiter& waiter, Commit commit);
    ~Watching();
    Watching(const Watching&) = delete;
    Watching& operator=(const Watching&) = delete;

   private:
    CommitWatch* watch_;
    Waiter& waiter_;
  };

  // Returns once the store completed `commit` (durable or failed), or when cancelled.
  boost::asio::awaitable<void> wait(Commit commit);
  // Returns after the next notify_all() or at `deadline`, whichever is first.
  boost::asio::awaitable<void> wait_until(std::chrono::steady_clock::time_point deadline);

 private:
  const Store& store_;
  std::vector<Waiter*> waiters_;
  boost::asio::steady_timer timer_;  // never expires; cancelled to wake every wait_until()
};

// Accepts on `acceptor` until it is closed or the coroutine is cancelled.
boost::asio::awaitable<void> serve_binary(boost::asio::ip::tcp::acceptor& acceptor, Store& store,
                                          CommitWatch& commits, BinaryOptions options);

}  // namespace kv::node
