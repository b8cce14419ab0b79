#include "node/binary_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <memory>
#include <optional>
#include <vector>

#include "common/describe.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "common/protocol.hpp"
#include "common/secret.hpp"
#include "node/requests.hpp"
#include "node/store.hpp"

namespace kv::node {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using proto::msg::Error;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

std::string_view type_name(proto::MsgType t) {
  switch (t) {
    case proto::MsgType::kPing:
      return "ping";
    case proto::MsgType::kStatus:
      return "status";
    case proto::MsgType::kAuth:
      return "auth";
    case proto::MsgType::kCreate:
      return "create";
    case proto::MsgType::kGet:
      return "get";
    case proto::MsgType::kList:
      return "list";
    case proto::MsgType::kUpdate:
      return "update";
    case proto::MsgType::kDelete:
      return "delete";
    case proto::MsgType::kWait:
      return "wait";
    case proto::MsgType::kFetch:
      return "fetch";
    case proto::MsgType::kApply:
      return "apply";
    case proto::MsgType::kDump:
      return "dump";
    default:
      return "unknown";
  }
}

// The binary server's metrics, looked up once per request type rather than per request.
class ServerMetrics {
 public:
  explicit ServerMetrics(metrics::Registry* r) : registry_(r) {
    if (!r) return;
    bytes_in_ = &r->counter("kv_binary_received_bytes_total", "Bytes read from binary clients");
    bytes_out_ = &r->counter("kv_binary_sent_bytes_total", "Bytes written to binary clients");
    accepted_ = &r->counter("kv_binary_connections_total", "Binary connections accepted");
    refused_ = &r->counter("kv_binary_connections_refused_total",
                           "Binary connections refused at the connection limit");
    auth_failures_ = &r->counter("kv_auth_failures_total", "AUTH requests with a wrong secret");
    slow_frames_ = &r->counter("kv_binary_slow_frames_total",
                               "Connections closed because a frame took too long to arrive");
    tls_failures_ = &r->counter("kv_tls_handshake_failures_total",
                                "Binary connections closed because their TLS handshake failed or "
                                "took too long");
  }
  void tls_failed() {
    if (tls_failures_) tls_failures_->inc();
  }
  void auth_failed() {
    if (auth_failures_) auth_failures_->inc();
  }
  void slow_frame() {
    if (slow_frames_) slow_frames_->inc();
  }
  void request(proto::MsgType type, bool ok, double seconds) {
    if (!registry_) return;
    auto& slot = slots_[static_cast<std::uint8_t>(type)];
    if (!slot.ok) {
      const std::string name(type_name(type));
      slot.ok = &registry_->counter("kv_requests_total", "Binary requests by type and outcome",
                                    {{"type", name}, {"outcome", "ok"}});
      slot.error = &registry_->counter("kv_requests_total", "Binary requests by type and outcome",
                                       {{"type", name}, {"outcome", "error"}});
      slot.latency = &registry_->histogram(
          "kv_request_duration_seconds",
          "From a request's arrival to its answer being ready (durable, for writes)",
          {{"type", name}});
    }
    (ok ? slot.ok : slot.error)->inc();
    slot.latency->observe(seconds);
  }
  void received(std::size_t n) {
    if (bytes_in_) bytes_in_->inc(static_cast<double>(n));
  }
  void sent(std::size_t n) {
    if (bytes_out_) bytes_out_->inc(static_cast<double>(n));
  }
  void accepted() {
    if (accepted_) accepted_->inc();
  }
  void refused() {
    if (refused_) refused_->inc();
  }

 private:
  struct Slot {
    metrics::Counter* ok = nullptr;
    metrics::Counter* error = nullptr;
    metrics::Histogram* latency = nullptr;
  };
  metrics::Registry* registry_;
  std::array<Slot, 256> slots_{};
  metrics::Counter* bytes_in_ = nullptr;
  metrics::Counter* bytes_out_ = nullptr;
  metrics::Counter* accepted_ = nullptr;
  metrics::Counter* refused_ = nullptr;
  metrics::Counter* auth_failures_ = nullptr;
  metrics::Counter* slow_frames_ = nullptr;
  metrics::Counter* tls_failures_ = nullptr;
};

// Who may do what (docs/security.md): the sync operations need the cluster secret, and with
// --client-auth everything but PING and AUTH does.
std::optional<Error> refusal(const BinaryOptions& options, bool authed, const proto::Request& req) {
  if (options.secret.empty() || authed) return std::nullopt;
  const bool sync_op = std::holds_alternative<proto::msg::Fetch>(req) ||
                       std::holds_alternative<proto::msg::Apply>(req) ||
                       std::holds_alternative<proto::msg::Dump>(req);
  if (sync_op) {
    return Error{proto::ErrorCode::kUnauthenticated,
                 "FETCH, APPLY and DUMP need the cluster secret: send AUTH first (kvsync "
                 "--secret-file FILE)"};
  }
  if (options.client_auth && !std::holds_alternative<proto::msg::Ping>(req)) {
    return Error{proto::ErrorCode::kUnauthenticated,
                 "this node serves only clients that know the cluster secret: pass "
                 "--secret-file FILE (scripts/cluster.sh writes it to DATA/secret) or set "
                 "KV_SECRET"};
  }
  return std::nullopt;
}

// Read-your-writes: waits (bounded) until the store has every change the session names.
asio::awaitable<proto::msg::Waited> wait_session(const Store& store, CommitWatch& commits,
                                                 const proto::msg::Wait& w) {
  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::milliseconds(std::min<std::uint64_t>(w.timeout_ms, proto::kMaxWaitMs));
  proto::msg::Waited reply;
  for (;;) {
    reply.have.clear();
    const SessionState state = store.session(w.want, reply.have);
    if (state == SessionState::kCaughtUp) {
      reply.caught_up = true;
      co_return reply;
    }
    if (state == SessionState::kNever || std::chrono::steady_clock::now() >= deadline) {
      co_return reply;
    }
    co_await commits.wait_until(deadline);  // woken by each commit, APPLYs included
  }
}

// Reads frames, answers each in order, and writes all answers of one read in one write.
// Returns when the peer closes, a frame is malformed (after answering it), or the idle deadline
// passes.
struct Pending {
  std::uint32_t request_id = 0;
  proto::MsgType type = proto::MsgType::kPing;
  proto::Response response;
  std::uint64_t ticket = 0;  // the change this request made, if any
  std::chrono::steady_clock::time_point arrived;
};

// `Stream`: tcp::socket, or ssl::stream<tcp::socket> once its handshake is done.
template <class Stream>
asio::awaitable<void> run_session(Stream& socket, Store& store, CommitWatch& commits,
                                  const BinaryOptions& options, ServerMetrics& metrics) {
  std::vector<std::uint8_t> in(64 * 1024);
  std::size_t have = 0;
  std::string out;
  std::vector<Pending> answers;
  asio::steady_timer idle(co_await asio::this_coro::executor);
  bool authed = false;
  // When the partial frame at the start of the buffer began to arrive (slow senders are cut
  // off after options.frame_timeout).
  std::optional<std::chrono::steady_clock::time_point> partial_since;
  for (;;) {
    // Answer every complete frame already buffered; stop early only to flush a large output.
    std::size_t pos = 0;
    bool fatal = false;
    bool more = false;
    for (;;) {
      auto d = proto::decode_frame({in.data() + pos, have - pos});
      if (d.status == proto::DecodeStatus::kNeedMore) break;
      if (d.status == proto::DecodeStatus::kError) {
        // The stream cannot be resynchronised: answer once and close.
        const char* what = d.error == proto::ErrorCode::kFrameTooLarge
                               ? "frame length exceeds the 4 MiB limit"
                               : "frame length is shorter than a frame header";
        proto::encode_response(out, 0, proto::MsgType::kPing, Error{d.error, what});
        fatal = true;
        break;
      }
      pos += d.frame.size;
      auto parsed = proto::parse_request(d.frame);
      const auto type = static_cast<proto::MsgType>(d.frame.type);
      Pending a{d.frame.request_id, type, proto::msg::Pong{}, 0, std::chrono::steady_clock::now()};
      if (auto* e = std::get_if<Error>(&parsed)) {
        a.response = std::move(*e);
      } else if (auto* auth = std::get_if<proto::msg::Auth>(&std::get<proto::Request>(parsed))) {
        if (options.secret.empty() || secret::equal(auth->secret, options.secret)) {
          authed = true;
          a.response = proto::msg::Pong{};
        } else {
          boost::system::error_code ec;
          const auto peer = socket.lowest_layer().remote_endpoint(ec);
          KV_LOG(warning) << "refused a wrong cluster secret from "
                          << (ec ? std::string("?") : peer.address().to_string());
          metrics.auth_failed();
          a.response = Error{proto::ErrorCode::kUnauthenticated,
                             "wrong cluster secret; check --secret-file (or KV_SECRET)"};
        }
      } else if (auto e = refusal(options, authed, std::get<proto::Request>(parsed))) {
        a.response = std::move(*e);
      } else if (auto* w = std::get_if<proto::msg::Wait>(&std::get<proto::Request>(parsed))) {
        // Requests after it on this connection run once it is answered: a read pipelined behind
        // a WAIT sees what the WAIT waited for.
        a.response = co_await wait_session(store, commits, *w);
      } else {
        auto& req = std::get<proto::Request>(parsed);
        ServerFacts facts{options.http_port, 0};
        if (options.subscribers && std::holds_alternative<proto::msg::Status>(req)) {
          facts.subscribers = options.subscribers();
        }
        auto answered = answer(store, req, facts);
        a.response = std::move(answered.response);
        a.ticket = answered.ticket;
      }
      answers.push_back(std::move(a));
      if (answers.size() >= options.max_pipeline) {
        more = true;
        break;
      }
    }
    // Answer only once every change made here is durable; one that failed is answered with an
    // error (and was never applied).
    std::uint64_t wait_for = 0;
    for (const auto& a : answers) wait_for = std::max(wait_for, a.ticket);
    if (wait_for > 0) co_await commits.wait(store, wait_for);
    const auto answered = std::chrono::steady_clock::now();
    for (auto& a : answers) {
      if (a.ticket != 0 && store.failed(a.ticket)) a.response = store.storage_error();
      proto::encode_response(out, a.request_id, a.type, a.response);
      metrics.request(a.type, !std::holds_alternative<Error>(a.response),
                      std::chrono::duration<double>(answered - a.arrived).count());
    }
    answers.clear();
    if (pos > 0) {
      std::copy(in.begin() + pos, in.begin() + have, in.begin());
      have -= pos;
      partial_since.reset();
    }
    if (have > 0 && !partial_since) partial_since = std::chrono::steady_clock::now();
    if (!out.empty()) {
      idle.expires_after(options.idle_timeout);
      auto w = co_await (asio::async_write(socket, asio::buffer(out), kTuple) ||
                         idle.async_wait(kTuple));
      if (w.index() == 1 || std::get<0>(std::get<0>(w))) co_return;
      metrics.sent(out.size());
      out.clear();
    }
    if (fatal) co_return;
    if (more) continue;

    if (have == in.size()) {
      // Only a legal frame larger than the buffer gets here: grow towards its size.
      in.resize(std::min(in.size() * 2, proto::kMaxFrameLength + proto::kLengthSize));
    } else if (have == 0 && in.size() > 64 * 1024) {
      in.resize(64 * 1024);
      in.shrink_to_fit();
    }
    auto deadline = std::chrono::steady_clock::now() + options.idle_timeout;
    if (partial_since) deadline = std::min(deadline, *partial_since + options.frame_timeout);
    idle.expires_at(deadline);
    auto r = co_await (
        socket.async_read_some(asio::buffer(in.data() + have, in.size() - have), kTuple) ||
        idle.async_wait(kTuple));
    if (r.index() == 1) {
      if (partial_since) {
        KV_LOG(info) << "closing a connection whose frame did not arrive within "
                     << options.frame_timeout.count() << " ms";
        metrics.slow_frame();
      } else {
        KV_LOG(info) << "closing a connection idle for " << options.idle_timeout.count() << " ms";
      }
      co_return;
    }
    auto [ec, n] = std::get<0>(r);
    if (ec) co_return;  // eof, reset or cancelled: a normal end
    metrics.received(n);
    have += n;
  }
}

std::string peer_of(const tcp::socket& socket) {
  boost::system::error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  return ec ? std::string("?") : peer.address().to_string() + ":" + std::to_string(peer.port());
}

// One accepted connection: the TLS handshake first (within options.handshake_timeout) when the
// node speaks TLS; one that fails or stalls is logged, counted and closed.
asio::awaitable<void> run_connection(tcp::socket socket, Store& store, CommitWatch& commits,
                                     const BinaryOptions& options, ServerMetrics& metrics) {
  if (!options.tls) {
    co_await run_session(socket, store, commits, options, metrics);
    co_return;
  }
  const std::string peer = peer_of(socket);
  const auto until = std::chrono::steady_clock::now() + options.handshake_timeout;
  if (co_await tls::plain_client(socket, until)) {
    // A frame starts with a zero byte, a TLS handshake never does: answer in TLS, which
    // NodeClient turns into "the server speaks TLS: connect with --tls-ca FILE".
    KV_LOG(info) << "refusing a plain-TCP connection from " << peer << " (this port speaks TLS)";
    metrics.tls_failed();
    co_await tls::refuse_plain(socket, tls::kAlertRecord, until);
    co_return;
  }
  ssl::stream<tcp::socket> stream(std::move(socket), *options.tls);
  asio::steady_timer deadline(stream.get_executor(), until);
  auto shaken = co_await (stream.async_handshake(ssl::stream_base::server, kTuple) ||
                          deadline.async_wait(kTuple));
  if (shaken.index() == 1) {
    KV_LOG(info) << "closing a connection from " << peer << " whose TLS handshake took over "
                 << options.handshake_timeout.count() << " ms";
    metrics.tls_failed();
    co_return;
  }
  if (auto [ec] = std::get<0>(shaken); ec) {
    KV_LOG(info) << "TLS handshake with " << peer << " failed: " << ec.message();
    metrics.tls_failed();
    co_return;
  }
  co_await run_session(stream, store, commits, options, metrics);
}

}  // namespace

CommitWatch::CommitWatch(asio::any_io_executor ex)
    : timer_(ex, asio::steady_timer::time_point::max()) {}

void CommitWatch::notify_all() {
  timer_.cancel();
}

asio::awaitable<void> CommitWatch::wait(const Store& store, std::uint64_t ticket) {
  while (store.completed_ticket() < ticket) co_await timer_.async_wait(kTuple);
}

asio::awaitable<void> CommitWatch::wait_until(std::chrono::steady_clock::time_point deadline) {
  asio::steady_timer until(timer_.get_executor(), deadline);
  co_await (timer_.async_wait(kTuple) || until.async_wait(kTuple));
}

asio::awaitable<void> serve_binary(tcp::acceptor& acceptor, Store& store, CommitWatch& commits,
                                   BinaryOptions options) {
  auto executor = co_await asio::this_coro::executor;
  auto live = std::make_shared<std::size_t>(0);
  auto metrics = std::make_shared<ServerMetrics>(options.metrics);
  if (options.metrics) {
    options.metrics->gauge("kv_binary_connections", "Binary connections open", {},
                           [live] { return static_cast<double>(*live); });
  }
  asio::steady_timer backoff(executor);
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kTuple);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      // Out of descriptors and the like: back off instead of spinning.
      KV_LOG(warning) << "accept failed: " << ec.message();
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(kTuple);
      continue;
    }
    if (*live >= options.max_connections) {
      KV_LOG(warning) << "refusing connection: " << *live << " connections open";
      metrics->refused();
      boost::system::error_code ec2;
      socket.close(ec2);
      continue;
    }
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    ++*live;
    metrics->accepted();
    asio::co_spawn(
        executor,
        [&store, &commits, options, live, metrics,
         s = std::move(socket)]() mutable -> asio::awaitable<void> {
          co_await run_connection(std::move(s), store, commits, options, *metrics);
        },
        [live](std::exception_ptr e) {
          --*live;
          if (e) {
            try {
              std::rethrow_exception(e);
            } catch (const std::exception& ex) {
              KV_LOG(error) << "session ended: " << describe(ex);
            }
          }
        });
  }
}

}  // namespace kv::node
