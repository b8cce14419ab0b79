// A client connection to a node's binary protocol, for kvsync, kvcli, tests and benchmarks.
// Calls may be pipelined: many can be in flight on one connection, and the node answers them in
// order. Every call has a deadline; a call that misses it closes the connection, since the
// responses that follow could no longer be matched.
//
// Threading: use from one executor (strand or single-threaded io_context) only.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/protocol.hpp"
#include "net/tls.hpp"

namespace kv {

class NodeClient {
 public:
  using Duration = std::chrono::steady_clock::duration;

  explicit NodeClient(boost::asio::any_io_executor executor);
  ~NodeClient();
  NodeClient(const NodeClient&) = delete;
  NodeClient& operator=(const NodeClient&) = delete;

  // Sent in an AUTH right after each connect when not empty (docs/security.md).
  void set_secret(std::string secret) { secret_ = std::move(secret); }
  // Later connects speak TLS, verifying the node's certificate against this client context
  // (tls::client_context) and the host name or address given to connect(); nullptr: plain TCP.
  void set_tls(std::shared_ptr<tls::Context> context) { tls_ = std::move(context); }

  // Connects to host:port, completes the TLS handshake when set_tls() was given a context, and
  // authenticates, with a secret, all within `timeout`. Throws boost::system::system_error
  // (timed_out on the deadline; a kv.tls code whose message says why a handshake failed), or
  // std::runtime_error when the node refuses the secret.
  boost::asio::awaitable<void> connect(std::string host, std::uint16_t port, Duration timeout);

  // Sends `req` and returns the node's answer, which may be a proto::msg::Error. Throws
  // boost::system::system_error when the connection fails or the deadline passes.
  boost::asio::awaitable<proto::Response> call(proto::Request req, Duration timeout);

  bool is_open() const;
  void close();

  // Bytes moved over every connection this client has made.
  struct Traffic {
    std::uint64_t received = 0;
    std::uint64_t sent = 0;
  };
  const Traffic& traffic() const { return *traffic_; }

  struct State;  // shared with the reader and writer coroutines

 private:
  std::shared_ptr<State> state_;
  std::shared_ptr<Traffic> traffic_ = std::make_shared<Traffic>();
  std::string secret_;
  std::shared_ptr<tls::Context> tls_;
};

}  // namespace kv
