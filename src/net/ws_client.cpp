#include "net/ws_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

namespace kv {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
}

using Ws = websocket::stream<beast::tcp_stream>;
using Wss = websocket::stream<beast::ssl_stream<beast::tcp_stream>>;

struct WsSubscription::State {
  State(asio::any_io_executor ex, std::shared_ptr<tls::Context> context)
      : executor(ex), tls_context(std::move(context)) {
    if (tls_context) {
      wss = std::make_unique<Wss>(ex, *tls_context);
    } else {
      ws = std::make_unique<Ws>(ex);
    }
  }
  asio::any_io_executor executor;
  std::shared_ptr<tls::Context> tls_context;  // outlives the stream that uses it
  std::unique_ptr<Ws> ws;                     // one of the two
  std::unique_ptr<Wss> wss;
  beast::flat_buffer buffer;

  template <class F>
  decltype(auto) visit(F&& f) {
    return wss ? f(*wss) : f(*ws);
  }
};

namespace {
// TCP, then TLS for wss, then the WebSocket handshake, all within `timeout`.
template <class Stream>
asio::awaitable<void> open_stream(Stream& ws, const tcp::resolver::results_type& results,
                                  const std::string& host, std::uint16_t port, std::string target,
                                  const std::string& secret, WsSubscription::Duration timeout) {
  beast::get_lowest_layer(ws).expires_after(timeout);
  auto [cec, ep] = co_await beast::get_lowest_layer(ws).async_connect(results, kTuple);
  if (cec) throw boost::system::system_error(cec);
  if constexpr (std::is_same_v<Stream, Wss>) {
    auto& tls_stream = ws.next_layer();
    tls::set_server_name(tls_stream.native_handle(), host);
    tls_stream.set_verify_callback(tls::verify_host(host));
    auto [tec] = co_await tls_stream.async_handshake(asio::ssl::stream_base::client, kTuple);
    if (tec) {
      throw boost::system::system_error(tls::handshake_error(tls_stream.native_handle(), tec));
    }
  }
  if (!secret.empty()) {
    ws.set_option(websocket::stream_base::decorator(
        [auth = "Bearer " + secret](websocket::request_type& req) {
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

template <class Stream>
asio::awaitable<std::string> read_message(Stream& ws, beast::flat_buffer& buffer) {
  buffer.consume(buffer.size());
  auto [ec, n] = co_await ws.async_read(buffer, kTuple);
  if (ec) throw boost::system::system_error(ec);
  co_return beast::buffers_to_string(buffer.data());
}
}  // namespace

WsSubscription::WsSubscription(asio::any_io_executor executor)
    : state_(std::make_unique<State>(executor, nullptr)) {}

WsSubscription::~WsSubscription() = default;

asio::awaitable<void> WsSubscription::connect(std::string host, std::uint16_t port,
                                              Duration timeout, std::string target) {
  closed_ = false;
  state_ = std::make_unique<State>(state_->executor, tls_);
  tcp::resolver resolver(state_->executor);
  asio::steady_timer timer(state_->executor, timeout);
  auto resolved = co_await (resolver.async_resolve(host, std::to_string(port), kTuple) ||
                            timer.async_wait(kTuple));
  if (resolved.index() == 1) throw boost::system::system_error(asio::error::timed_out);
  auto [rec, results] = std::get<0>(resolved);
  if (rec) throw boost::system::system_error(rec);
  if (state_->wss) {
    co_await open_stream(*state_->wss, results, host, port, std::move(target), secret_, timeout);
  } else {
    co_await open_stream(*state_->ws, results, host, port, std::move(target), secret_, timeout);
  }
  if (closed_) throw boost::system::system_error(asio::error::operation_aborted);
}

asio::awaitable<std::string> WsSubscription::next() {
  if (closed_) throw boost::system::system_error(asio::error::operation_aborted);
  auto& st = *state_;
  if (st.wss) co_return co_await read_message(*st.wss, st.buffer);
  co_return co_await read_message(*st.ws, st.buffer);
}

std::string WsSubscription::close_reason() const {
  return state_->visit([](auto& ws) { return std::string(ws.reason().reason.c_str()); });
}

void WsSubscription::close() {
  closed_ = true;
  boost::system::error_code ignored;
  state_->visit([&](auto& ws) { beast::get_lowest_layer(ws).socket().close(ignored); });
}

}  // namespace kv
