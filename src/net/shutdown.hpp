// How kvnode and kvsync stop on SIGTERM or Ctrl-C, by cancellation rather than by stopping the
// io_context under their work: first what the process itself closes (its acceptors, the
// syncer's links), then every WebSocket subscriber closed with a reason (code 1001), given a
// moment to answer, then every connection cancelled (net::Stopper). io_context::run() returns
// once all of it has ended; only what is still running after `last_resort` is cut off by
// stopping the io_context.
//
// Threading: the io_context's one thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <string>

#include "net/listener.hpp"
#include "net/web_server.hpp"

namespace kv::net {

class Shutdown {
 public:
  Shutdown(boost::asio::io_context& io, web::Hub& hub, Stopper& stopper);

  // On SIGINT or SIGTERM: `first()`, then the subscribers closed with `reason`, then the
  // connections cancelled.
  void on_signal(std::function<void()> first, std::string reason,
                 std::chrono::milliseconds last_resort = std::chrono::seconds(5));
  // Something else the process waits for before run() may return (the syncer's links): the
  // last resort is called off only once `ended()` is called too.
  std::function<void()> also_wait();

 private:
  void maybe_ended();
  boost::asio::io_context& io_;
  web::Hub& hub_;
  Stopper& stopper_;
  boost::asio::signal_set signals_;
  boost::asio::steady_timer last_resort_;
  int waiting_ = 1;  // the connections, and each also_wait()
};

}  // namespace kv::net
