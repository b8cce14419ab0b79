// The node's binary-protocol listener: one coroutine per connection, requests answered in order
// (pipelining welcome), every read and write under the idle deadline.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace kv::node {

class Store;

struct BinaryOptions {
  std::size_t max_connections = 1024;  // further connections are closed at once
  std::chrono::milliseconds idle_timeout{
      std::chrono::minutes(5)};                      // no complete frame for this long
  std::size_t max_pending_output = 8 * 1024 * 1024;  // stop reading while this much is unsent
  std::uint16_t http_port = 0;  // reported in STATUS so clients find the notifications
};

// Accepts on `acceptor` until it is closed or the coroutine is cancelled.
boost::asio::awaitable<void> serve_binary(boost::asio::ip::tcp::acceptor& acceptor, Store& store,
                                          BinaryOptions options);

}  // namespace kv::node
