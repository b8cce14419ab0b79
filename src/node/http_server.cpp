#include "node/http_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>

#include <deque>
#include <unordered_set>

#include "common/log.hpp"
#include "common/wakeup.hpp"
#include "node/store.hpp"

namespace kv::node {

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
  Wakeup wake;              // notified when the queue gets a message or overflows
  bool local_only = false;  // subscribed with ?only=local
  bool overflowed = false;
};
}  // namespace

struct NotificationHub::Impl {
  std::size_t queue_limit = 4096;
  std::unordered_set<std::shared_ptr<Subscriber>> subscribers;
};

NotificationHub::NotificationHub() : impl_(std::make_unique<Impl>()) {}
NotificationHub::~NotificationHub() = default;

void NotificationHub::publish(std::shared_ptr<const std::string> message, bool local) {
  for (const auto& sub : impl_->subscribers) {
    if (sub->overflowed || (sub->local_only && !local)) continue;
    if (sub->queue.size() >= impl_->queue_limit) {
      // Its writer closes it with a reason once the write in flight completes; a peer that never
      // reads again is dropped by the WebSocket idle timeout (pings unanswered).
      KV_LOG(warning) << "dropping a WebSocket subscriber " << impl_->queue_limit
                      << " notifications behind";
      sub->overflowed = true;
      sub->queue.clear();
    } else {
      sub->queue.push_back(message);
    }
    sub->wake.notify();
  }
}

std::size_t NotificationHub::subscribers() const {
  return impl_->subscribers.size();
}

namespace {

using WsStream = websocket::stream<beast::tcp_stream>;

asio::awaitable<void> ws_writer(WsStream& ws, Subscriber& sub) {
  for (;;) {
    while (sub.queue.empty() && !sub.overflowed) co_await sub.wake.wait();
    if (sub.overflowed) {
      co_await ws.async_close(
          websocket::close_reason(websocket::close_code::policy_error,
                                  "subscriber queue overflow: resubscribe and fetch"),
          kTuple);
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
asio::awaitable<void> ws_reader(WsStream& ws) {
  beast::flat_buffer buffer;
  for (;;) {
    auto [ec, n] = co_await ws.async_read(buffer, kTuple);
    if (ec) co_return;
    buffer.consume(buffer.size());
  }
}

asio::awaitable<void> run_websocket(WsStream ws, http::request<http::string_body> req,
                                    NotificationHub& hub,
                                    const std::function<std::string()>& hello) {
  beast::get_lowest_layer(ws).expires_never();
  ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  ws.read_message_max(64 * 1024);
  ws.text(true);
  auto [ec] = co_await ws.async_accept(req, kTuple);
  if (ec) co_return;
  auto sub = std::make_shared<Subscriber>(co_await asio::this_coro::executor);
  sub->local_only = req.target() == "/ws?only=local";
  sub->queue.push_back(std::make_shared<const std::string>(hello()));
  auto& subs = hub.impl().subscribers;
  subs.insert(sub);
  struct Leave {
    std::unordered_set<std::shared_ptr<Subscriber>>& subs;
    std::shared_ptr<Subscriber> sub;
    ~Leave() { subs.erase(sub); }
  } leave{subs, sub};
  co_await (ws_writer(ws, *sub) || ws_reader(ws));
}

http::response<http::string_body> make_response(const http::request<http::string_body>& req,
                                                http::status status, std::string body,
                                                const char* type) {
  http::response<http::string_body> res{status, req.version()};
  res.set(http::field::server, "kvnode");
  res.set(http::field::content_type, type);
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

std::string status_json(const Store& store, const NotificationHub& hub) {
  const NodeStatus s = store.status();
  boost::json::object o{{"name", s.name},
                        {"version", s.version},
                        {"seq", s.seq},
                        {"applied_stamp", s.applied_stamp},
                        {"synced_upto", s.synced_upto},
                        {"items", s.items},
                        {"tombstones", s.tombstones},
                        {"unsynced", s.unsynced},
                        {"subscribers", hub.subscribers()}};
  return boost::json::serialize(o);
}

asio::awaitable<void> run_http(tcp::socket socket, Store& store, NotificationHub& hub,
                               HttpLimits limits, std::function<std::string()> hello) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(64 * 1024);
    stream.expires_after(limits.request_timeout);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, kTuple);
    if (ec) co_return;  // closed, timed out or malformed: nothing more to serve
    auto req = parser.release();
    if (websocket::is_upgrade(req)) {
      if (req.target() != "/ws" && req.target() != "/ws?only=local") {
        co_await http::async_write(stream,
                                   make_response(req, http::status::not_found,
                                                 "no WebSocket here; use /ws\n", "text/plain"),
                                   kTuple);
        co_return;
      }
      co_await run_websocket(WsStream(std::move(stream)), std::move(req), hub, hello);
      co_return;
    }
    http::response<http::string_body> res;
    if (req.method() != http::verb::get) {
      res = make_response(req, http::status::method_not_allowed, "only GET is served\n",
                          "text/plain");
    } else if (req.target() == "/healthz") {
      res = make_response(req, http::status::ok, "ok\n", "text/plain");
    } else if (req.target() == "/status") {
      res = make_response(req, http::status::ok, status_json(store, hub), "application/json");
    } else {
      res = make_response(req, http::status::not_found,
                          "not found; try /ws (WebSocket), /status or /healthz\n", "text/plain");
    }
    const bool keep = res.keep_alive();
    auto [wec, wn] = co_await http::async_write(stream, res, kTuple);
    if (wec || !keep) co_return;
  }
}

}  // namespace

asio::awaitable<void> serve_http(tcp::acceptor& acceptor, Store& store, NotificationHub& hub,
                                 HttpLimits limits, std::function<std::string()> hello) {
  hub.impl().queue_limit = limits.queue_limit;
  auto executor = co_await asio::this_coro::executor;
  auto live = std::make_shared<std::size_t>(0);
  asio::steady_timer backoff(executor);
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kTuple);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      KV_LOG(warning) << "HTTP accept failed: " << ec.message();
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(kTuple);
      continue;
    }
    if (*live >= limits.max_connections) {
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    ++*live;
    asio::co_spawn(executor, run_http(std::move(socket), store, hub, limits, hello),
                   [live](std::exception_ptr e) {
                     --*live;
                     if (e) {
                       try {
                         std::rethrow_exception(e);
                       } catch (const std::exception& ex) {
                         KV_LOG(error) << "HTTP session ended: " << ex.what();
                       }
                     }
                   });
  }
}

}  // namespace kv::node
