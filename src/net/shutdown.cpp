#include "net/shutdown.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "core/log.hpp"

namespace kv::net {

namespace asio = boost::asio;

Shutdown::Shutdown(asio::io_context& io, web::Hub& hub, Stopper& stopper)
    : io_(io), hub_(hub), stopper_(stopper), signals_(io, SIGINT, SIGTERM), last_resort_(io) {}

std::function<void()> Shutdown::also_wait() {
  ++waiting_;
  return [this] {
    --waiting_;
    maybe_ended();
  };
}

void Shutdown::maybe_ended() {
  if (waiting_ != 0) return;
  last_resort_.cancel();
  // Everything the process waits for has ended: what may be left are the timers of closed
  // streams (a Beast WebSocket's ping timer ran up to 10 s on after its socket was closed, and
  // kvsync with it), and nothing of ours.
  io_.stop();
}

void Shutdown::on_signal(std::function<void()> first, std::string reason,
                         std::chrono::milliseconds last_resort) {
  signals_.async_wait([this, first = std::move(first), reason = std::move(reason), last_resort](
                          const boost::system::error_code& ec, int sig) {
    if (ec) return;
    KV_LOG(info) << "signal " << sig << ": shutting down";
    if (first) first();
    // Subscribers first, so that they learn why; then whatever is left is cancelled.
    asio::co_spawn(
        io_,
        [this, reason]() -> asio::awaitable<void> {
          co_await hub_.close_all_and_wait(reason, std::chrono::seconds(2));
          stopper_.stop([this] {
            --waiting_;
            maybe_ended();
          });
        },
        asio::detached);
    last_resort_.expires_after(last_resort);
    last_resort_.async_wait([this, last_resort](const boost::system::error_code& ec2) {
      if (ec2) return;
      KV_LOG(warning) << "stopping with " << stopper_.running() << " connections ("
                      << hub_.subscribers() << " of them WebSocket subscribers) still open after "
                      << last_resort.count() << " ms";
      io_.stop();
    });
  });
}

}  // namespace kv::net
