#include "net/node_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <deque>
#include <optional>
#include <stdexcept>
#include <vector>

#include "core/client_pipeline.hpp"

namespace kv {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

struct Pending {
  explicit Pending(asio::any_io_executor ex) : done(ex) {}
  asio::steady_timer done;  // cancelled when the answer (or a failure) arrives
  std::optional<proto::Response> response;
  boost::system::error_code error;
};
}  // namespace

struct NodeClient::State {
  explicit State(asio::any_io_executor ex) : executor(ex), socket(ex) {}
  asio::any_io_executor executor;
  tcp::socket socket;  // plain TCP; moved into `tls` when the connection speaks TLS
  std::shared_ptr<tls::Context> tls_context;  // outlives the stream that uses it
  std::unique_ptr<ssl::stream<tcp::socket>> tls;
  ClientPipeline pipeline;                        // request ids and answer matching
  std::deque<std::shared_ptr<Pending>> inflight;  // in the order the requests were written
  std::string out;                                // encoded, not yet written
  bool writing = false;
  bool open = false;
  std::shared_ptr<NodeClient::Traffic> traffic;

  void fail(boost::system::error_code ec) {
    open = false;
    boost::system::error_code ignored;
    lowest().close(ignored);
    for (auto& p : inflight) {
      p->error = ec;
      p->done.cancel();
    }
    inflight.clear();
    out.clear();
  }
  tcp::socket& lowest() { return tls ? tls->next_layer() : socket; }
};

namespace {
// Both loops run over the plain socket or the TLS stream; one read and one write may be in
// flight at once on either.
template <class Stream>
asio::awaitable<void> read_loop(std::shared_ptr<NodeClient::State> st, Stream& stream) {
  std::vector<ClientPipeline::Answer> answers;
  while (st->open) {
    const auto into = st->pipeline.buffer();
    auto [ec, n] = co_await stream.async_read_some(asio::buffer(into.data(), into.size()), kTuple);
    if (ec) {
      st->fail(ec);
      co_return;
    }
    // A call's deadline may have failed the connection while this read completed: its answers
    // have nobody left to go to.
    if (!st->open) co_return;
    if (st->traffic) st->traffic->received += n;
    answers.clear();
    const auto failure = st->pipeline.received(n, answers);
    for (auto& a : answers) {
      auto p = st->inflight.front();  // the pipeline matched it: same id, same order
      st->inflight.pop_front();
      p->response = std::move(a.response);
      p->done.cancel();
    }
    if (failure != ClientPipeline::Failure::kNone) {
      // A TLS alert where the first answer should be: we spoke plain TCP to a TLS port.
      const auto unread = st->pipeline.unread();
      const bool tls_answer = failure != ClientPipeline::Failure::kOutOfOrder &&
                              !st->pipeline.answered() && !st->tls &&
                              tls::looks_like_tls(unread.data(), unread.size());
      st->fail(tls_answer ? tls::server_speaks_tls() : asio::error::invalid_argument);
      co_return;
    }
  }
}

template <class Stream>
asio::awaitable<void> write_loop(std::shared_ptr<NodeClient::State> st, Stream& stream) {
  std::string buf;
  while (st->open && !st->out.empty()) {
    buf.clear();
    std::swap(buf, st->out);
    auto [ec, n] = co_await asio::async_write(stream, asio::buffer(buf), kTuple);
    if (ec) {
      st->fail(ec);
      break;
    }
    if (st->traffic) st->traffic->sent += n;
  }
  st->writing = false;
}

template <class Loop>
void spawn_on_stream(const std::shared_ptr<NodeClient::State>& st, Loop loop) {
  if (st->tls) {
    asio::co_spawn(st->executor, loop(st, *st->tls), asio::detached);
  } else {
    asio::co_spawn(st->executor, loop(st, st->socket), asio::detached);
  }
}
}  // namespace

NodeClient::NodeClient(asio::any_io_executor executor)
    : state_(std::make_shared<State>(executor)) {}

NodeClient::~NodeClient() {
  close();
}

bool NodeClient::is_open() const {
  return state_->open;
}

void NodeClient::close() {
  if (state_->open) state_->fail(asio::error::operation_aborted);
}

asio::awaitable<void> NodeClient::connect(std::string host, std::uint16_t port, Duration timeout) {
  close();
  auto st = std::make_shared<State>(state_->executor);
  st->traffic = traffic_;
  state_ = st;
  tcp::resolver resolver(st->executor);
  asio::steady_timer timer(st->executor, timeout);
  auto resolved = co_await (resolver.async_resolve(host, std::to_string(port), kTuple) ||
                            timer.async_wait(kTuple));
  if (resolved.index() == 1) throw boost::system::system_error(asio::error::timed_out);
  auto [rec, results] = std::get<0>(resolved);
  if (rec) throw boost::system::system_error(rec);
  auto connected =
      co_await (asio::async_connect(st->socket, results, kTuple) || timer.async_wait(kTuple));
  if (connected.index() == 1) {
    boost::system::error_code ignored;
    st->socket.close(ignored);
    throw boost::system::system_error(asio::error::timed_out);
  }
  auto [cec, ep] = std::get<0>(connected);
  if (cec) throw boost::system::system_error(cec);
  st->socket.set_option(tcp::no_delay(true));
  if (tls_) {
    st->tls_context = tls_;
    st->tls = std::make_unique<ssl::stream<tcp::socket>>(std::move(st->socket), *tls_);
    tls::set_server_name(st->tls->native_handle(), host);
    st->tls->set_verify_callback(tls::verify_host(host));
    auto shaken = co_await (st->tls->async_handshake(ssl::stream_base::client, kTuple) ||
                            timer.async_wait(kTuple));
    if (shaken.index() == 1) {
      boost::system::error_code ignored;
      st->lowest().close(ignored);
      throw boost::system::system_error(asio::error::timed_out);
    }
    if (auto [hec] = std::get<0>(shaken); hec) {
      boost::system::error_code ignored;
      st->lowest().close(ignored);
      throw boost::system::system_error(tls::handshake_error(st->tls->native_handle(), hec));
    }
  }
  st->open = true;
  spawn_on_stream(st, [](auto s, auto& stream) { return read_loop(std::move(s), stream); });
  if (!secret_.empty()) {
    proto::Request auth = proto::msg::Auth{secret_};  // (GCC 12: no braced list in co_await)
    auto r = co_await call(std::move(auth), timeout);
    if (auto* e = std::get_if<proto::msg::Error>(&r)) {
      close();
      throw std::runtime_error("the node refused our cluster secret: " + e->message);
    }
  }
}

asio::awaitable<proto::Response> NodeClient::call(proto::Request req, Duration timeout) {
  auto st = state_;
  if (!st->open) throw boost::system::system_error(asio::error::not_connected);
  auto p = std::make_shared<Pending>(st->executor);
  st->pipeline.send(st->out, req);
  st->inflight.push_back(p);
  if (!st->writing) {
    st->writing = true;  // set before the writer runs, so one call spawns it
    spawn_on_stream(st, [](auto s, auto& stream) { return write_loop(std::move(s), stream); });
  }

  p->done.expires_after(timeout);
  if (!p->response && !p->error) co_await p->done.async_wait(kTuple);
  if (p->response) co_return std::move(*p->response);
  if (p->error) throw boost::system::system_error(p->error);
  // The deadline passed: later answers could no longer be matched to their calls.
  st->fail(asio::error::timed_out);
  throw boost::system::system_error(asio::error::timed_out);
}

}  // namespace kv
