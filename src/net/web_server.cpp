#include "net/web_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <deque>
#include <unordered_set>

#include "core/log.hpp"
#include "core/secret.hpp"
#include "net/listener.hpp"
#include "net/wakeup.hpp"

namespace kv::web {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

struct Subscriber {
  explicit Subscriber(asio::any_io_executor ex) : wake(ex) {}
  std::deque<std::shared_ptr<const std::string>> queue;
  Wakeup wake;  // notified when the queue gets a message or the subscription is to close
  unsigned topics = ~0u;
  // Set when the hub ends the subscription (its queue overflowed, or the server is stopping):
  // the writer closes the WebSocket with this code and reason.
  std::optional<websocket::close_reason> closing;
};
}  // namespace

struct Hub::Impl {
  std::size_t queue_limit = 4096;
  std::unordered_set<std::shared_ptr<Subscriber>> subscribers;
  std::uint64_t dropped = 0;
  std::uint64_t published = 0;
};

// A WebSocket session's place in the hub while it lives: joining makes it, destroying it
// leaves (as Asio's chat_room participants and Beast's shared_state sessions do), so no way
// out of a session leaves its queue behind.
class HubMembership {
 public:
  HubMembership(Hub& hub, std::shared_ptr<Subscriber> sub) : hub_(hub), sub_(std::move(sub)) {
    hub_.impl_->subscribers.insert(sub_);
  }
  ~HubMembership() { hub_.impl_->subscribers.erase(sub_); }
  HubMembership(const HubMembership&) = delete;
  HubMembership& operator=(const HubMembership&) = delete;

 private:
  Hub& hub_;
  std::shared_ptr<Subscriber> sub_;
};

Hub::Hub() : impl_(std::make_unique<Impl>()) {}
Hub::~Hub() = default;

void Hub::publish(std::shared_ptr<const std::string> message, unsigned topics) {
  ++impl_->published;
  for (const auto& sub : impl_->subscribers) {
    if (sub->closing || (sub->topics & topics) == 0) continue;
    if (sub->queue.size() >= impl_->queue_limit) {
      // Its writer closes it with a reason once the write in flight completes; a peer that never
      // reads again is dropped by the WebSocket idle timeout (pings unanswered).
      KV_LOG(warning) << "dropping a WebSocket subscriber " << impl_->queue_limit
                      << " messages behind";
      sub->closing = websocket::close_reason(websocket::close_code::policy_error,
                                             "subscriber queue overflow: resubscribe and fetch");
      sub->queue.clear();
      ++impl_->dropped;
    } else {
      sub->queue.push_back(message);
    }
    sub->wake.notify();
  }
}

bool Hub::wants(unsigned topics) const {
  for (const auto& sub : impl_->subscribers) {
    if (!sub->closing && (sub->topics & topics) != 0) return true;
  }
  return false;
}

void Hub::close_all(std::string_view reason) {
  for (const auto& sub : impl_->subscribers) {
    if (sub->closing) continue;
    sub->closing = websocket::close_reason(websocket::close_code::going_away, reason);
    sub->queue.clear();
    sub->wake.notify();
  }
}

asio::awaitable<void> Hub::close_all_and_wait(std::string reason, std::chrono::milliseconds grace) {
  close_all(reason);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  asio::steady_timer tick(co_await asio::this_coro::executor);
  while (subscribers() > 0 && std::chrono::steady_clock::now() < deadline) {
    tick.expires_after(std::chrono::milliseconds(10));
    co_await tick.async_wait(kTuple);
  }
}

std::size_t Hub::subscribers() const {
  return impl_->subscribers.size();
}
std::size_t Hub::queued() const {
  std::size_t n = 0;
  for (const auto& s : impl_->subscribers) n += s->queue.size();
  return n;
}
std::uint64_t Hub::dropped() const {
  return impl_->dropped;
}
std::uint64_t Hub::published() const {
  return impl_->published;
}
void Hub::set_queue_limit(std::size_t limit) {
  impl_->queue_limit = limit;
}

std::string_view path_of(std::string_view target) {
  return target.substr(0, target.find('?'));
}

std::optional<std::string_view> query_param(std::string_view target, std::string_view key) {
  const auto q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == key) {
      return eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    }
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return std::nullopt;
}

bool authorized(const Request& req, std::string_view secret) {
  if (secret.empty()) return true;
  constexpr std::string_view kBearer = "Bearer ";
  if (req.authorization.starts_with(kBearer) &&
      secret::equal(req.authorization.substr(kBearer.size()), secret)) {
    return true;
  }
  auto q = query_param(req.target, "secret");
  return q && secret::equal(*q, secret);
}

Response unauthorized() {
  return Response{401, "text/plain; charset=utf-8",
                  "this needs the cluster secret: send Authorization: Bearer SECRET (or "
                  "?secret=SECRET); scripts/cluster.sh keeps it in DATA/secret\n"};
}

namespace {

// Every connection runs over Stream: beast::tcp_stream for plain HTTP, or
// beast::ssl_stream<beast::tcp_stream> for https and wss.
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

template <class WsStream>
asio::awaitable<void> ws_writer(WsStream& ws, Subscriber& sub) {
  for (;;) {
    while (sub.queue.empty() && !sub.closing) co_await sub.wake.wait();
    if (sub.closing) {
      // With our read pending, Beast 1.81 left this close waiting for good after the peer had
      // answered it (test_cluster's SIGTERM test): the socket is closed after a second at
      // most, which ends the close and the read.
      asio::steady_timer watchdog(co_await asio::this_coro::executor, std::chrono::seconds(1));
      watchdog.async_wait([&ws](const boost::system::error_code& ec) {
        if (ec) return;
        boost::system::error_code ignored;
        beast::get_lowest_layer(ws).socket().close(ignored);
      });
      co_await ws.async_close(*sub.closing, kTuple);
      co_return;
    }
    auto message = std::move(sub.queue.front());
    sub.queue.pop_front();
    auto [ec, n] = co_await ws.async_write(asio::buffer(*message), kTuple);
    if (ec) co_return;
  }
}

// Keeps a read pending so Beast answers pings and sees the peer's close; subscribers have
// nothing to say, so anything they send is read and dropped.
template <class WsStream>
asio::awaitable<void> ws_reader(WsStream& ws) {
  beast::flat_buffer buffer;
  for (;;) {
    auto [ec, n] = co_await ws.async_read(buffer, kTuple);
    if (ec) co_return;
    buffer.consume(buffer.size());
  }
}

template <class WsStream>
asio::awaitable<void> run_websocket(WsStream ws, http::request<http::string_body> req, Hub& hub,
                                    Subscription subscription, const Limits& limits) {
  beast::get_lowest_layer(ws).expires_never();
  ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  ws.read_message_max(limits.max_ws_message_bytes);
  ws.text(true);
  auto [ec] = co_await ws.async_accept(req, kTuple);
  if (ec) co_return;
  auto sub = std::make_shared<Subscriber>(co_await asio::this_coro::executor);
  sub->topics = subscription.topics;
  sub->queue.push_back(std::make_shared<const std::string>(subscription.hello()));
  const HubMembership member(hub, sub);
  co_await (ws_writer(ws, *sub) || ws_reader(ws));
}

http::response<http::string_body> make_response(const http::request<http::string_body>& req,
                                                const Routes& routes, Response r) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), req.version()};
  res.set(http::field::server, routes.server);
  res.set(http::field::content_type, r.content_type);
  // Everything served is read-only and public to whoever can reach the port, so pages served
  // by another process of the cluster (the viewer) may read it.
  res.set(http::field::access_control_allow_origin, "*");
  res.set(http::field::cache_control, "no-store");
  res.keep_alive(req.keep_alive());
  res.body() = std::move(r.body);
  res.prepare_payload();
  return res;
}

template <class Stream>
asio::awaitable<void> run_http(Stream& stream, Hub& hub, const Routes& routes,
                               const Limits& limits) {
  using WsStream = websocket::stream<Stream>;
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(limits.max_request_bytes));
    parser.body_limit(limits.max_request_bytes);
    beast::get_lowest_layer(stream).expires_after(limits.request_timeout);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, kTuple);
    if (ec) co_return;  // closed, timed out or malformed: nothing more to serve
    auto req = parser.release();
    const std::string target(req.target());
    const std::string authorization(req[http::field::authorization]);
    const Request info{target, authorization};
    if (websocket::is_upgrade(req)) {
      std::variant<Subscription, Response> sub =
          Response{404, "text/plain", "no WebSocket here; " + routes.not_found_hint + "\n"};
      if (routes.subscribe) sub = routes.subscribe(info);
      if (auto* refused = std::get_if<Response>(&sub)) {
        if (refused->status == 401) KV_LOG(warning) << "refused a WebSocket without the secret";
        co_await http::async_write(stream, make_response(req, routes, std::move(*refused)), kTuple);
        co_return;
      }
      co_await run_websocket(WsStream(std::move(stream)), std::move(req), hub,
                             std::move(std::get<Subscription>(sub)), limits);
      co_return;
    }
    Response r;
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      r = {405, "text/plain", "only GET is served\n"};
    } else if (auto found = routes.get(info)) {
      r = std::move(*found);
    } else {
      r = {404, "text/plain", "not found; " + routes.not_found_hint + "\n"};
    }
    auto res = make_response(req, routes, std::move(r));
    if (req.method() == http::verb::head) res.body().clear();
    const bool keep = res.keep_alive();
    auto [wec, wn] = co_await http::async_write(stream, res, kTuple);
    if (wec || !keep) co_return;
  }
}

// One accepted connection: the TLS handshake first when `tls` is set, within the request
// timeout; one that fails is logged and closed.
asio::awaitable<void> run_connection(tcp::socket socket, Hub& hub, const Routes& routes,
                                     const Limits& limits, std::shared_ptr<tls::Context> tls) {
  if (!tls) {
    beast::tcp_stream stream(std::move(socket));
    co_await run_http(stream, hub, routes, limits);
    co_return;
  }
  const std::string peer = net::peer_of(socket);
  const auto until = std::chrono::steady_clock::now() + limits.request_timeout;
  constexpr std::string_view kBody = "this port speaks TLS: use https:// (or wss://)\n";
  const std::string answer =
      "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
      std::to_string(kBody.size()) + "\r\nConnection: close\r\n\r\n" + std::string(kBody);
  const bool turned_away = co_await tls::turn_away_plain(socket, answer, until);
  if (turned_away) {
    KV_LOG(info) << "refused plain HTTP from " << peer << " (this port speaks https and wss)";
    co_return;
  }
  TlsStream stream(std::move(socket), *tls);
  beast::get_lowest_layer(stream).expires_at(until);
  auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, kTuple);
  if (ec) {
    KV_LOG(info) << "TLS handshake with HTTP client " << peer << " failed: " << ec.message();
    co_return;
  }
  co_await run_http(stream, hub, routes, limits);
}

}  // namespace

asio::awaitable<void> serve(tcp::acceptor& acceptor, Hub& hub, Routes routes, Limits limits,
                            std::shared_ptr<tls::Context> tls, net::Stopper* stopper) {
  hub.set_queue_limit(limits.queue_limit);
  net::ListenOptions listen;
  listen.what = "HTTP";
  listen.max_connections = limits.max_connections;
  listen.stopper = stopper;
  // (Built before the co_await: GCC 12 destroys a lambda temporary in a co_await twice.)
  net::Connection serve_one = [&hub, routes = std::move(routes), limits,
                               tls = std::move(tls)](tcp::socket socket) -> asio::awaitable<void> {
    co_await run_connection(std::move(socket), hub, routes, limits, tls);
  };
  co_await net::accept_connections(acceptor, std::move(listen), std::move(serve_one));
}

}  // namespace kv::web
