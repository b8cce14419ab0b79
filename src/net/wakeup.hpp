// A level-triggered wake-up for coroutines on one executor: notify() before wait() is not lost,
// and cancelling the waiting coroutine (e.g. the losing side of `a || b`) ends the wait with
// operation_aborted instead of waiting on.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

namespace kv {

class Wakeup {
 public:
  explicit Wakeup(boost::asio::any_io_executor ex) : timer_(ex) {}
  void notify() {
    set_ = true;
    timer_.cancel();
  }
  boost::asio::awaitable<void> wait() {
    while (!set_) {
      timer_.expires_at(boost::asio::steady_timer::time_point::max());
      auto [ec] = co_await timer_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
      if (ec == boost::asio::error::operation_aborted && !set_) {
        throw boost::system::system_error(ec);  // cancelled by our caller, not notified
      }
    }
    set_ = false;
  }

 private:
  boost::asio::steady_timer timer_;
  bool set_ = false;
};

}  // namespace kv
