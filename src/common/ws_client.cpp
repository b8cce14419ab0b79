#include "common/ws_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

namespace kv {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
}

struct WsSubscription::State {
  explicit State(asio::any_io_executor ex) : executor(ex), ws(ex) {}
  asio::any_io_executor executor;
  websocket::stream<beast::tcp_stream> ws;
  beast::flat_buffer buffer;
};

WsSubscription::WsSubscription(asio::any_io_executor executor)
    : state_(std::make_unique<State>(executor)) {}

WsSubscription::~WsSubscription() = default;

asio::awaitable<void> WsSubscription::connect(std::string host, std::uint16_t port,
                                              Duration timeout, std::string target) {
  closed_ = false;
  state_ = std::make_unique<State>(state_->executor);
  auto& ws = state_->ws;
  tcp::resolver resolver(state_->executor);
  asio::steady_timer timer(state_->executor, timeout);
  auto resolved = co_await (resolver.async_resolve(host, std::to_string(port), kTuple) ||
                            timer.async_wait(kTuple));
  if (resolved.index() == 1) throw boost::system::system_error(asio::error::timed_out);
  auto [rec, results] = std::get<0>(resolved);
  if (rec) throw boost::system::system_error(rec);
  beast::get_lowest_layer(ws).expires_after(timeout);
  auto [cec, ep] = co_await beast::get_lowest_layer(ws).async_connect(results, kTuple);
  if (cec) throw boost::system::system_error(cec);
  if (!secret_.empty()) {
    ws.set_option(websocket::stream_base::decorator(
        [auth = "Bearer " + secret_](websocket::request_type& req) {
          req.set(beast::http::field::authorization, auth);
        }));
  }
  websocket::response_type res;
  auto [hec] = co_await ws.async_handshake(res, host + ":" + std::to_string(port), target, kTuple);
  if (hec && res.result() == beast::http::status::unauthorized) {
    throw std::runtime_error(
        "the node refused the subscription: it needs the cluster secret (--secret-file)");
  }
  if (hec) throw boost::system::system_error(hec);
  if (closed_) throw boost::system::system_error(asio::error::operation_aborted);
  beast::get_lowest_layer(ws).expires_never();
  // A quiet subscription is pinged after idle_timeout / 2 and dropped when the ping goes
  // unanswered: a node whose host vanished is noticed, not waited on forever.
  websocket::stream_base::timeout t{};
  t.handshake_timeout = std::chrono::seconds(10);
  t.idle_timeout = std::chrono::seconds(20);
  t.keep_alive_pings = true;
  ws.set_option(t);
  ws.read_message_max(1024 * 1024);
}

asio::awaitable<std::string> WsSubscription::next() {
  if (closed_) throw boost::system::system_error(asio::error::operation_aborted);
  auto& st = *state_;
  st.buffer.consume(st.buffer.size());
  auto [ec, n] = co_await st.ws.async_read(st.buffer, kTuple);
  if (ec) throw boost::system::system_error(ec);
  co_return beast::buffers_to_string(st.buffer.data());
}

std::string WsSubscription::close_reason() const {
  return std::string(state_->ws.reason().reason.c_str());
}

void WsSubscription::close() {
  closed_ = true;
  boost::system::error_code ignored;
  beast::get_lowest_layer(state_->ws).socket().close(ignored);
}

}  // namespace kv
