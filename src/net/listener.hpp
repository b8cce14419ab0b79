// The accept loop that kvnode's binary port and both processes' HTTP ports share: one coroutine
// per accepted connection, a bound on how many are open, and a back-off when accepting fails.
//
// Threading: the acceptor's executor (one io_context thread).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstddef>
#include <exception>
#include <functional>
#include <list>
#include <memory>
#include <string>

namespace kv::net {

// How a process ends its work on SIGTERM or Ctrl-C: by cancellation, not by stopping the
// io_context under it. Work spawned here is bound to a cancellation signal; stop() emits terminal
// cancellation to all of it, so each coroutine's pending I/O ends with operation_aborted and it
// returns. Once everything has, the io_context runs out of work and run() returns.
class Stopper {
 public:
  explicit Stopper(boost::asio::any_io_executor executor) : executor_(std::move(executor)) {}
  Stopper(const Stopper&) = delete;
  Stopper& operator=(const Stopper&) = delete;

  // co_spawn(work), cancelled by stop(); `done` gets how it ended (after stop(), most likely
  // with operation_aborted).
  void spawn(boost::asio::awaitable<void> work, std::function<void(std::exception_ptr)> done);
  // Cancels everything spawned; `ended` is called (posted) once all of it has returned.
  void stop(std::function<void()> ended = nullptr);
  bool stopping() const { return stopping_; }
  std::size_t running() const { return signals_.size(); }

 private:
  void check_ended();
  boost::asio::any_io_executor executor_;
  std::list<boost::asio::cancellation_signal> signals_;  // one per piece of work still running
  bool stopping_ = false;
  std::function<void()> ended_;
};

struct ListenOptions {
  std::string what;                    // names the port in log lines: "binary", "HTTP"
  std::size_t max_connections = 1024;  // a further connection is closed at once
  std::function<void()> accepted;      // called for each connection served
  std::function<void()> refused;       // called for each one closed at the limit
  // How many connections are open now (kept here; a gauge may read it).
  std::shared_ptr<std::size_t> open = std::make_shared<std::size_t>(0);
  // Connections are spawned on it when set, so that stop() ends them (and ending them then is
  // not logged as an error).
  Stopper* stopper = nullptr;
};

using Connection = std::function<boost::asio::awaitable<void>(boost::asio::ip::tcp::socket)>;

// Accepts on `acceptor` until it is closed or this coroutine is cancelled, and runs `serve` for
// each connection in a coroutine of its own (TCP_NODELAY set). An accept error (out of
// descriptors, say) is logged and retried after 100 ms instead of spinning; an exception that
// ends a connection is logged and ends only that connection.
boost::asio::awaitable<void> accept_connections(boost::asio::ip::tcp::acceptor& acceptor,
                                                ListenOptions options, Connection serve);

// "address:port" of the socket's peer, or "?" once it is gone (for log lines).
std::string peer_of(const boost::asio::basic_socket<boost::asio::ip::tcp>& socket);

}  // namespace kv::net
