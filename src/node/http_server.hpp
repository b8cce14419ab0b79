// The node's HTTP listener (Boost.Beast): WebSocket change notifications on /ws, /healthz and
// /status. Notifications fan out through the NotificationHub, which only enqueues.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace kv::node {

class Store;

struct HttpLimits {
  std::size_t queue_limit = 4096;  // notifications queued per subscriber before it is dropped
  std::size_t max_connections = 256;
  std::chrono::milliseconds request_timeout{std::chrono::seconds(10)};
};

// Subscribers and their bounded queues. publish() serialises nothing and never waits: it puts
// the same shared message on every queue and wakes the writers. A subscriber whose queue is full
// is disconnected with a reason. Single-threaded, like the rest of the node.
class NotificationHub {
 public:
  NotificationHub();
  ~NotificationHub();
  // `local`: the change was made on this node by a client (subscribers on /ws?only=local, such
  // as the syncer, receive only these).
  void publish(std::shared_ptr<const std::string> message, bool local);
  std::size_t subscribers() const;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Accepts on `acceptor` until it is closed or the coroutine is cancelled. `hello` builds the
// first message each new subscriber receives.
boost::asio::awaitable<void> serve_http(boost::asio::ip::tcp::acceptor& acceptor, Store& store,
                                        NotificationHub& hub, HttpLimits limits,
                                        std::function<std::string()> hello);

}  // namespace kv::node
