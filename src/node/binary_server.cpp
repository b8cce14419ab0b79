#include "node/binary_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <array>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#include "core/describe.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/protocol.hpp"
#include "net/listener.hpp"
#include "node/binary_session.hpp"
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
      const std::string name(proto::to_string(type));
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
    co_await commits.wait_until(deadline);  // woken by each commit, and by each APPLY applied
  }
}

// Answers a request the store answers at once (everything but WAIT).
Answer execute(Store& store, const BinaryOptions& options, proto::Request& req) {
  ServerFacts facts{options.http_port, 0};
  if (options.subscribers && std::holds_alternative<proto::msg::Status>(req)) {
    facts.subscribers = options.subscribers();
  }
  return answer(store, req, facts);
}

using Clock = BinarySession::Clock;

// The deadline of a connection's current read or write, kept by a watchdog coroutine beside the
// session's (as in Asio's chat example): when it passes, the watchdog cancels what is outstanding
// on the socket, and the session says what that means. Moving the deadline later, as every
// request does, touches no timer.
struct Deadline {
  explicit Deadline(const asio::any_io_executor& ex) : timer(ex, Clock::time_point::max()) {}
  void set(Clock::time_point t) {
    at = t;
    if (t < timer.expiry()) timer.expires_at(t);  // wakes the watchdog to wait for less
  }
  asio::steady_timer timer;
  Clock::time_point at = Clock::time_point::max();
};

template <class Stream>
asio::awaitable<void> watch(Stream& socket, Deadline& d) {
  for (;;) {
    if (d.timer.expiry() != d.at) d.timer.expires_at(d.at);
    co_await d.timer.async_wait(kTuple);
    auto state = co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none) co_return;  // the session ended
    if (Clock::now() >= d.at) {
      d.at = Clock::time_point::max();
      boost::system::error_code ignored;
      socket.lowest_layer().cancel(ignored);
    }
  }
}

// Whether an operation that ended with operation_aborted was cancelled from outside (the
// connection is being stopped) rather than by the watchdog or a commit.
asio::awaitable<bool> stopped() {
  auto state = co_await asio::this_coro::cancellation_state;
  co_return state.cancelled() != asio::cancellation_type::none;
}

// One connection's requests: a loop that carries out what its BinarySession asks for. Returns
// when the peer closes or the session closes it. Every operation is a plain one on the socket:
// the watchdog cancels it at the deadline, and `commits` cancels a read once the commit the
// session's answers wait for completes (no timer or parallel group per request).
// `Stream`: tcp::socket, or ssl::stream<tcp::socket> once its handshake is done.
template <class Stream>
asio::awaitable<void> serve_requests(Stream& socket, Store& store, CommitWatch& commits,
                                     const BinaryOptions& options, ServerMetrics& metrics,
                                     Deadline& deadline) {
  constexpr bool kPlain = std::is_same_v<Stream, tcp::socket>;
  BinarySession session(SessionRules{options.secret, options.client_auth, options.max_pipeline,
                                     options.idle_timeout, options.frame_timeout},
                        Clock::now());
  std::vector<BinarySession::Answered> answered;
  const std::function<bool(Commit)> completed = [&store](Commit c) { return store.completed(c); };
  CommitWatch::Waiter waiter{{}, [&socket] {
                               boost::system::error_code ignored;
                               socket.lowest_layer().cancel(ignored);
                             }};
  bool peer_done = false;  // the client sent all it will: only answers are left to write
  for (;;) {
    auto action = session.next(Clock::now(), completed);
    if (auto* read = std::get_if<BinarySession::Read>(&action)) {
      if (peer_done) {
        if (read->waiting.empty()) co_return;
        co_await commits.wait(read->waiting);
        continue;
      }
      deadline.set(read->deadline);
      // Answers that wait for a commit: read meanwhile, and let the commit cancel the read. A
      // TLS read is not cancelled half-way through a record: it waits for readiness instead.
      if constexpr (!kPlain) {
        if (!read->waiting.empty()) {
          CommitWatch::Watching watching(commits, waiter, read->waiting);
          auto r = co_await socket.lowest_layer().async_wait(tcp::socket::wait_read, kTuple);
          const auto ec = std::get<0>(r);
          if (ec == asio::error::operation_aborted) {
            const bool stop = co_await stopped();
            if (!stop) continue;  // the commit completed, or the deadline came
          }
          if (ec) co_return;
        }
      }
      const auto into = session.buffer();
      std::size_t n = 0;
      boost::system::error_code ec;
      {
        CommitWatch::Watching watching(commits, waiter, kPlain ? read->waiting : Commit{});
        auto r = co_await socket.async_read_some(asio::buffer(into.data(), into.size()), kTuple);
        std::tie(ec, n) = r;
      }
      if (ec == asio::error::operation_aborted) {
        const bool stop = co_await stopped();
        if (!stop) continue;  // the commit completed, or the deadline came: next() says what now
      }
      if (ec == asio::error::eof && !read->waiting.empty()) {
        peer_done = true;  // answer what it asked before it closed its side
        continue;
      }
      if (ec) co_return;  // eof, reset or stopped: a normal end
      metrics.received(n);
      session.received(n, Clock::now());
    } else if (auto* exec = std::get_if<BinarySession::Execute>(&action)) {
      if (auto* w = std::get_if<proto::msg::Wait>(&exec->request)) {
        auto waited = co_await wait_session(store, commits, *w);
        session.executed(std::move(waited));
      } else {
        auto a = execute(store, options, exec->request);
        session.executed(std::move(a.response), a.commit);
        // An APPLY's marks are in memory now, and a WAIT reads memory: wake the waiting
        // sessions rather than leave them until its fsync (up to --apply-sync-delay later).
        if (std::holds_alternative<proto::msg::Apply>(exec->request)) commits.notify_all();
      }
    } else if (auto* write = std::get_if<BinarySession::Write>(&action)) {
      if (!store.completed(write->commit)) co_await commits.wait(write->commit);
      answered.clear();
      const std::string& out = session.encode([&](Commit c) { return store.outcome(c); }, answered);
      const auto ready = Clock::now();
      for (const auto& a : answered) {
        metrics.request(a.type, a.ok, std::chrono::duration<double>(ready - a.arrived).count());
      }
      deadline.set(write->deadline);
      auto w = co_await asio::async_write(socket, asio::buffer(out), kTuple);
      if (std::get<0>(w)) co_return;  // the deadline, a reset or a stop
      metrics.sent(out.size());
      session.written(Clock::now());
    } else if (std::holds_alternative<BinarySession::Notice>(action)) {
      KV_LOG(warning) << "refused a wrong cluster secret from "
                      << net::peer_of(socket.lowest_layer());
      metrics.auth_failed();
    } else {
      switch (std::get<BinarySession::Close>(action).reason) {
        case BinarySession::CloseReason::kSlowFrame:
          KV_LOG(info) << "closing a connection whose frame did not arrive within "
                       << options.frame_timeout.count() << " ms";
          metrics.slow_frame();
          break;
        case BinarySession::CloseReason::kIdle:
          KV_LOG(info) << "closing a connection idle for " << options.idle_timeout.count() << " ms";
          break;
        case BinarySession::CloseReason::kMalformed:
          break;
      }
      co_return;
    }
  }
}

template <class Stream>
asio::awaitable<void> run_session(Stream& socket, Store& store, CommitWatch& commits,
                                  const BinaryOptions& options, ServerMetrics& metrics) {
  Deadline deadline(co_await asio::this_coro::executor);
  co_await (serve_requests(socket, store, commits, options, metrics, deadline) ||
            watch(socket, deadline));
}

// One accepted connection: the TLS handshake first (within options.handshake_timeout) when the
// node speaks TLS; one that fails or stalls is logged, counted and closed.
asio::awaitable<void> run_connection(tcp::socket socket, Store& store, CommitWatch& commits,
                                     const BinaryOptions& options, ServerMetrics& metrics) {
  if (!options.tls) {
    co_await run_session(socket, store, commits, options, metrics);
    co_return;
  }
  const std::string peer = net::peer_of(socket);
  const auto until = std::chrono::steady_clock::now() + options.handshake_timeout;
  // A frame starts with a zero byte, a TLS handshake never does: answer in TLS, which
  // NodeClient turns into "the server speaks TLS: connect with --tls-ca FILE".
  const bool turned_away = co_await tls::turn_away_plain(socket, tls::kAlertRecord, until);
  if (turned_away) {
    KV_LOG(info) << "refused a plain-TCP connection from " << peer << " (this port speaks TLS)";
    metrics.tls_failed();
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

CommitWatch::CommitWatch(asio::any_io_executor ex, const Store& store)
    : store_(store), timer_(ex, asio::steady_timer::time_point::max()) {}

void CommitWatch::notify_all() {
  timer_.cancel();
  // (wake() only cancels an operation: nothing runs, and nothing leaves waiters_, meanwhile.)
  for (Waiter* w : waiters_) {
    if (store_.completed(w->commit)) w->wake();
  }
}

CommitWatch::Watching::Watching(CommitWatch& watch, Waiter& waiter, Commit commit)
    : watch_(commit.empty() ? nullptr : &watch), waiter_(waiter) {
  if (!watch_) return;
  waiter_.commit = commit;
  watch_->waiters_.push_back(&waiter_);
}

CommitWatch::Watching::~Watching() {
  if (!watch_) return;
  auto& all = watch_->waiters_;
  auto it = std::find(all.begin(), all.end(), &waiter_);
  *it = all.back();
  all.pop_back();
}

asio::awaitable<void> CommitWatch::wait(Commit commit) {
  if (store_.completed(commit)) co_return;
  asio::steady_timer woken(timer_.get_executor(), asio::steady_timer::time_point::max());
  Waiter waiter{commit, [&woken] { woken.cancel(); }};
  Watching watching(*this, waiter, commit);
  co_await woken.async_wait(kTuple);  // cancelled once the commit completes, or by a stop
}

asio::awaitable<void> CommitWatch::wait_until(std::chrono::steady_clock::time_point deadline) {
  asio::steady_timer until(timer_.get_executor(), deadline);
  co_await (timer_.async_wait(kTuple) || until.async_wait(kTuple));
}

asio::awaitable<void> serve_binary(tcp::acceptor& acceptor, Store& store, CommitWatch& commits,
                                   BinaryOptions options) {
  auto metrics = std::make_shared<ServerMetrics>(options.metrics);
  net::ListenOptions listen;
  listen.what = "binary";
  listen.max_connections = options.max_connections;
  listen.accepted = [metrics] { metrics->accepted(); };
  listen.refused = [metrics] { metrics->refused(); };
  listen.stopper = options.stopper;
  if (options.metrics) {
    options.metrics->gauge("kv_binary_connections", "Binary connections open", {},
                           [open = listen.open] { return static_cast<double>(*open); });
  }
  // (Built before the co_await: GCC 12 destroys a lambda temporary in a co_await twice.)
  net::Connection serve = [&store, &commits, options = std::move(options),
                           metrics](tcp::socket socket) -> asio::awaitable<void> {
    co_await run_connection(std::move(socket), store, commits, options, *metrics);
  };
  co_await net::accept_connections(acceptor, std::move(listen), std::move(serve));
}

}  // namespace kv::node
