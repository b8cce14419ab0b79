// A WebSocket subscription to a node's change notifications (ws://host:port/ws, or wss:// with
// set_tls()), for kvsync and kvcli's `watch`. Beast stays inside ws_client.cpp.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "net/tls.hpp"

namespace kv {

class WsSubscription {
 public:
  using Duration = std::chrono::steady_clock::duration;

  explicit WsSubscription(boost::asio::any_io_executor executor);
  ~WsSubscription();

  // Connects and completes the WebSocket handshake within `timeout`. Throws system_error.
  // `target` "/ws" gets every notification; "/ws?only=local" only clients' changes.
  boost::asio::awaitable<void> connect(std::string host, std::uint16_t port, Duration timeout,
                                       std::string target = "/ws");
  // The next text message. Throws system_error when the connection closes or fails; the
  // close reason, if the node gave one, is in close_reason().
  boost::asio::awaitable<std::string> next();
  std::string close_reason() const;
  // The cluster secret sent with later handshakes (Authorization: Bearer), if the node wants one.
  void set_secret(std::string secret) { secret_ = std::move(secret); }
  // Later connects use wss: TLS verified against this client context and the host given to
  // connect(), inside the same timeout. nullptr: plain ws.
  void set_tls(std::shared_ptr<tls::Context> context) { tls_ = std::move(context); }
  // Ends the subscription: a pending next() fails, and so does a connect() in progress
  // (once its handshake completes). A later connect() starts a new subscription.
  void close();

 private:
  struct State;
  std::unique_ptr<State> state_;
  bool closed_ = false;
  std::string secret_;
  std::shared_ptr<tls::Context> tls_;
};

}  // namespace kv
