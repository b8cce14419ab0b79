// A small HTTP and WebSocket server on Boost.Beast, shared by kvnode and kvsync: GET routes
// answered from memory, and WebSocket subscriptions fed by a Hub of bounded queues. Beast stays
// inside web_server.cpp; this header is light.
//
// Threading: one io_context thread, like the processes that use it; no locks.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "net/tls.hpp"

namespace kv::net {
class Stopper;
}

namespace kv::web {

struct Limits {
  std::size_t queue_limit = 4096;  // messages queued per subscriber before it is dropped
  std::size_t max_connections = 256;
  std::size_t max_request_bytes = 64 * 1024;     // request head and body
  std::size_t max_ws_message_bytes = 64 * 1024;  // what a subscriber may send us
  std::chrono::milliseconds request_timeout{std::chrono::seconds(10)};
};

struct Response {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// A subscription accepted on a WebSocket path: the first message the subscriber gets, built
// once the handshake is done, in the same step that joins the hub (so nothing published in
// between is missed), and which published messages it receives (those whose topics share a
// bit with `topics`).
struct Subscription {
  std::function<std::string()> hello;
  unsigned topics = ~0u;
};

// What routes see of a request.
struct Request {
  std::string_view target;         // path and query
  std::string_view authorization;  // the Authorization header, if any
};

struct Routes {
  std::string server;  // the Server header
  // GET -> the response; nullopt -> 404 with `not_found_hint`.
  std::function<std::optional<Response>(const Request&)> get;
  // A WebSocket upgrade -> the subscription, or the response that refuses it (401, 404).
  std::function<std::variant<Subscription, Response>(const Request&)> subscribe;
  std::string not_found_hint;
};

// Whether `req` presents `secret` ("Authorization: Bearer SECRET", or `?secret=SECRET` for
// browsers, which cannot set headers on a WebSocket), compared in constant time. True when
// `secret` is empty (no secret configured).
bool authorized(const Request& req, std::string_view secret);
// The 401 answer for a request that lacks the secret.
Response unauthorized();

// Subscribers and their bounded queues. publish() serialises nothing and never waits: it puts
// the same shared message on every matching queue and wakes the writers. A subscriber whose
// queue is full is disconnected with a reason ("resubscribe and fetch").
class HubMembership;
class Hub {
 public:
  Hub();
  ~Hub();
  void publish(std::shared_ptr<const std::string> message, unsigned topics = ~0u);
  // Whether a message on `topics` would reach anyone now: a publisher may skip building it.
  bool wants(unsigned topics) const;
  std::size_t subscribers() const;
  std::size_t queued() const;       // messages waiting in all queues
  std::uint64_t dropped() const;    // subscribers dropped for overflowing
  std::uint64_t published() const;  // messages published
  void set_queue_limit(std::size_t limit);
  // Closes every subscription with `reason` (WebSocket close code 1001, going away) once the
  // message being written is out; later publishes reach none of them.
  void close_all(std::string_view reason);
  // close_all(reason), then returns once every subscriber has left (answered its close) or
  // `grace` has passed: the first step of a server's shutdown.
  boost::asio::awaitable<void> close_all_and_wait(std::string reason,
                                                  std::chrono::milliseconds grace);

 private:
  friend class HubMembership;  // a WebSocket session's place in the hub (web_server.cpp)
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Serves HTTP/1.1 on `acceptor` until it is closed or the coroutine is cancelled: over TLS
// (https, wss) with a server context (tls::server_context), each handshake within
// limits.request_timeout; plain HTTP without one.
// With a `stopper`, its stop() ends every connection; a shutdown closes the WebSocket
// subscriptions first (Hub::close_all_and_wait), so that they learn why.
boost::asio::awaitable<void> serve(boost::asio::ip::tcp::acceptor& acceptor, Hub& hub,
                                   Routes routes, Limits limits,
                                   std::shared_ptr<tls::Context> tls = nullptr,
                                   net::Stopper* stopper = nullptr);

// Helpers for routes.
std::string_view path_of(std::string_view target);  // without the query
// The value of `key` in the target's query string (no decoding beyond what ids need), if any.
std::optional<std::string_view> query_param(std::string_view target, std::string_view key);

}  // namespace kv::web
