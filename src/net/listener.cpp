#include "net/listener.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/describe.hpp"
#include "core/log.hpp"

namespace kv::net {

namespace asio = boost::asio;
using asio::ip::tcp;

asio::awaitable<void> accept_connections(tcp::acceptor& acceptor, ListenOptions options,
                                         Connection serve) {
  constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
  auto executor = co_await asio::this_coro::executor;
  auto shared = std::make_shared<const ListenOptions>(std::move(options));
  auto handler = std::make_shared<const Connection>(std::move(serve));
  asio::steady_timer backoff(executor);
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kTuple);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      KV_LOG(warning) << shared->what << " accept failed: " << ec.message();
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(kTuple);
      continue;
    }
    if (*shared->open >= shared->max_connections) {
      KV_LOG(warning) << "refusing a " << shared->what << " connection: " << *shared->open
                      << " connections open";
      if (shared->refused) shared->refused();
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    ++*shared->open;
    if (shared->accepted) shared->accepted();
    auto done = [shared, handler](std::exception_ptr e) {
      --*shared->open;
      if (!e || (shared->stopper && shared->stopper->stopping())) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        KV_LOG(error) << shared->what << " connection ended: " << describe(ex);
      }
    };
    if (shared->stopper) {
      shared->stopper->spawn((*handler)(std::move(socket)), std::move(done));
    } else {
      asio::co_spawn(executor, (*handler)(std::move(socket)), std::move(done));
    }
  }
}

void Stopper::spawn(asio::awaitable<void> work, std::function<void(std::exception_ptr)> done) {
  if (stopping_) {
    done(nullptr);  // never started: `work` is destroyed with what it owns
    return;
  }
  auto it = signals_.emplace(signals_.end());
  asio::co_spawn(executor_, std::move(work),
                 asio::bind_cancellation_slot(
                     it->slot(), [this, it, done = std::move(done)](std::exception_ptr e) {
                       // The signal goes once its operation has returned, not from inside it.
                       asio::post(executor_, [this, it] {
                         signals_.erase(it);
                         check_ended();
                       });
                       done(e);
                     }));
}

void Stopper::stop(std::function<void()> ended) {
  stopping_ = true;
  ended_ = std::move(ended);
  for (auto& s : signals_) s.emit(asio::cancellation_type::terminal);
  asio::post(executor_, [this] { check_ended(); });
}

void Stopper::check_ended() {
  if (!stopping_ || !signals_.empty() || !ended_) return;
  auto ended = std::move(ended_);
  ended_ = nullptr;
  ended();
}

std::string peer_of(const asio::basic_socket<tcp>& socket) {
  boost::system::error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  return ec ? std::string("?") : peer.address().to_string() + ":" + std::to_string(peer.port());
}

}  // namespace kv::net
