// kvbench: a load generator for kvnode's binary protocol.
//
// Closed loop: every connection keeps `--depth` requests in flight and sends the next as soon as
// one is answered. Open loop (`--rate`): requests are sent on a fixed schedule, and latency is
// measured from the time a request was due, not from when it went out, so a stalled server
// shows up as queueing delay instead of being hidden (coordinated omission).
// Lag mode (`--lag-to`): writes to --target at a fixed --rate and measures, for each write, the
// time from its acknowledgement to its notification on another node.
//
// Prints one human line and, with --json, one JSON object: ops, seconds, ops/s, errors and
// latency percentiles in microseconds.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>
#include <boost/program_options.hpp>

#include <array>
#include <chrono>
#include <cmath>
#include <iostream>
#include <memory>
#include <unordered_map>

#include "core/address.hpp"
#include "core/notification.hpp"
#include "net/node_client.hpp"
#include "net/ws_client.hpp"

namespace asio = boost::asio;
namespace po = boost::program_options;
namespace msg = kv::proto::msg;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

// Log-linear histogram of microseconds: 32 sub-buckets per power of two (about 3% precision),
// fixed memory, no allocation while recording.
class Histogram {
 public:
  void record(double us) {
    const auto v = static_cast<std::uint64_t>(std::max(0.0, us));
    ++counts_[index(v)];
    ++total_;
    max_ = std::max(max_, v);
  }
  std::uint64_t count() const { return total_; }
  double percentile(double p) const {
    if (total_ == 0) return 0;
    const auto want = static_cast<std::uint64_t>(std::ceil(p / 100.0 * total_));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= want) return static_cast<double>(std::min(upper(i), max_));
    }
    return static_cast<double>(max_);
  }
  double max() const { return static_cast<double>(max_); }

 private:
  static constexpr std::uint64_t kSub = 32;
  static std::size_t index(std::uint64_t v) {
    if (v < 2 * kSub) return v;
    const int msb = 63 - __builtin_clzll(v);  // >= 6
    const int shift = msb - 5;                // keep the top 6 bits: 32..63
    return static_cast<std::size_t>(2 * kSub + (shift - 1) * kSub + ((v >> shift) - kSub));
  }
  static std::uint64_t upper(std::size_t i) {
    if (i < 2 * kSub) return i;
    const std::uint64_t shift = (i - 2 * kSub) / kSub + 1;
    const std::uint64_t mant = (i - 2 * kSub) % kSub + kSub;
    return ((mant + 1) << shift) - 1;
  }
  std::array<std::uint64_t, 2 * kSub + 60 * kSub> counts_{};
  std::uint64_t total_ = 0;
  std::uint64_t max_ = 0;
};

struct Options {
  std::string target = "127.0.0.1:7001";
  std::string op = "create";  // create | get | update
  int connections = 50;
  int depth = 1;
  double seconds = 5;
  double warmup = 1;
  double rate = 0;          // requests per second in total; 0: closed loop
  std::string lag_to;       // lag mode: the node whose notifications we wait for
  std::string redis_lag;    // Redis lag mode: "MASTER,REPLICA" (host:port each)
  int keys = 1000;          // get/update: items created first
  std::uint64_t count = 0;  // closed loop: stop after this many requests (0: run for --seconds)
  bool json = false;
};

struct Run {
  Options o;
  Histogram latency;
  std::uint64_t ops = 0;  // completed while measuring
  std::uint64_t errors = 0;
  std::string first_error;
  bool measuring = false;
  Clock::time_point measure_start;
  Clock::time_point last_done;
  Clock::time_point end;
  std::vector<std::string> ids;
  std::uint64_t next = 0;

  msg::Create create() { return msg::Create{"bench " + std::to_string(next++)}; }
  kv::proto::Request request() {
    if (o.op == "create") return create();
    const std::string& id = ids[next++ % ids.size()];
    if (o.op == "get") return msg::Get{id};
    return msg::Update{id, next % 2 == 0, std::nullopt};
  }
  void done(Clock::time_point since, const kv::proto::Response& r) {
    if (auto* e = std::get_if<msg::Error>(&r)) return fail(e->message);
    if (!measuring) return;
    ++ops;
    last_done = Clock::now();
    latency.record(std::chrono::duration<double, std::micro>(last_done - since).count());
  }
  void fail(const std::string& what) {
    if (!measuring) return;
    if (errors++ == 0) first_error = what;
  }
};

asio::awaitable<void> closed_loop(kv::NodeClient& c, Run& run) {
  while (Clock::now() < run.end && c.is_open() && (run.o.count == 0 || run.next < run.o.count)) {
    const auto t0 = Clock::now();
    try {
      run.done(t0, co_await c.call(run.request(), 10s));
    } catch (const std::exception& e) {
      run.fail(e.what());
      co_return;
    }
  }
}

asio::awaitable<void> one_request(kv::NodeClient& c, Run& run, kv::proto::Request req,
                                  Clock::time_point due, int& in_flight) {
  ++in_flight;
  try {
    run.done(due, co_await c.call(std::move(req), 10s));
  } catch (const std::exception& e) {
    run.fail(e.what());
  }
  --in_flight;
}

// Sends on a fixed schedule whatever the answers do; latency counts from the due time.
asio::awaitable<void> open_loop(kv::NodeClient& c, Run& run, double per_second) {
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex);
  const auto interval =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / per_second));
  auto due = Clock::now();
  int in_flight = 0;
  while (due < run.end && c.is_open()) {
    timer.expires_at(due);
    co_await timer.async_wait(asio::use_awaitable);
    if (in_flight < 100000) {
      asio::co_spawn(ex, one_request(c, run, run.request(), due, in_flight), asio::detached);
    } else {
      run.fail("more than 100000 requests outstanding on one connection");
    }
    due += interval;
  }
  while (in_flight > 0) {  // let the last answers in, within the run's grace period
    timer.expires_after(1ms);
    co_await timer.async_wait(asio::use_awaitable);
    if (Clock::now() > run.end + 10s) break;
  }
}

// Writes acknowledged on one side and seen on the other, matched by key.
struct LagMeter {
  Run& run;
  std::unordered_map<std::string, Clock::time_point> acked, seen;
  void ack(const std::string& key) {
    acked.emplace(key, Clock::now());
    match(key);
  }
  void see(const std::string& key) {
    seen.emplace(key, Clock::now());
    match(key);
  }
  void match(const std::string& key) {
    auto a = acked.find(key);
    auto s = seen.find(key);
    if (a == acked.end() || s == seen.end()) return;
    if (run.measuring) {
      ++run.ops;
      run.latency.record(
          std::max(0.0, std::chrono::duration<double, std::micro>(s->second - a->second).count()));
    }
    acked.erase(a);
    seen.erase(s);
  }
};

// Lag: the time from a write's acknowledgement on --target to its notification on --lag-to.
asio::awaitable<void> lag_run(kv::NodeClient& c, kv::WsSubscription& ws, Run& run) {
  auto ex = co_await asio::this_coro::executor;
  LagMeter meter{run, {}, {}};
  bool stop = false;
  asio::co_spawn(
      ex,
      [&]() -> asio::awaitable<void> {
        while (!stop) {
          auto n = kv::parse_notification(co_await ws.next());
          if (n && n->kind == kv::Notification::Kind::kSynced && n->op == "create") {
            meter.see(n->item.id);
          }
        }
      },
      [](std::exception_ptr) {});
  asio::steady_timer timer(ex);
  const auto interval =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / run.o.rate));
  auto due = Clock::now();
  int in_flight = 0;
  while (due < run.end) {
    timer.expires_at(due);
    co_await timer.async_wait(asio::use_awaitable);
    asio::co_spawn(
        ex,
        [&]() -> asio::awaitable<void> {
          ++in_flight;
          try {
            auto r = co_await c.call(run.create(), 10s);
            if (auto* item = std::get_if<msg::ItemReply>(&r)) {
              meter.ack(item->item.id);
            } else {
              run.fail("write refused");
            }
          } catch (const std::exception& e) {
            run.fail(e.what());
          }
          --in_flight;
        },
        asio::detached);
    due += interval;
  }
  // Wait (bounded) for the last notifications.
  const auto grace = Clock::now() + 5s;
  while ((!meter.acked.empty() || in_flight > 0) && Clock::now() < grace) {
    timer.expires_after(2ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
  if (!meter.acked.empty() && run.measuring) {
    run.errors += meter.acked.size();
    if (run.first_error.empty()) run.first_error = "writes never seen on the other node";
  }
  stop = true;
  ws.close();
}

// A minimal RESP connection: commands as arrays of bulk strings, replies read whole (simple
// strings, errors, integers, bulk strings and arrays of them), flattened to strings.
class Resp {
 public:
  explicit Resp(asio::any_io_executor ex) : socket_(ex) {}
  asio::awaitable<void> connect(const std::string& address) {
    const auto [host, port] = kv::parse_host_port(address);
    asio::ip::tcp::resolver r(socket_.get_executor());
    auto eps = co_await r.async_resolve(host, std::to_string(port), asio::use_awaitable);
    co_await asio::async_connect(socket_, eps, asio::use_awaitable);
    socket_.set_option(asio::ip::tcp::no_delay(true));
  }
  asio::awaitable<void> send(const std::vector<std::string>& args) {
    std::string out = "*" + std::to_string(args.size()) + "\r\n";
    for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    co_await asio::async_write(socket_, asio::buffer(out), asio::use_awaitable);
  }
  asio::awaitable<std::vector<std::string>> read() {
    for (;;) {
      std::vector<std::string> out;
      std::size_t pos = 0;
      if (parse(pos, out)) {
        in_.erase(0, pos);
        co_return out;
      }
      char buf[16384];
      const std::size_t n =
          co_await socket_.async_read_some(asio::buffer(buf), asio::use_awaitable);
      in_.append(buf, n);
    }
  }

 private:
  // One value at `pos`; false if the buffer does not hold all of it yet.
  bool parse(std::size_t& pos, std::vector<std::string>& out) {
    const auto eol = in_.find("\r\n", pos);
    if (eol == std::string::npos) return false;
    const char kind = in_[pos];
    const std::string head = in_.substr(pos + 1, eol - pos - 1);
    if (kind == '+' || kind == '-' || kind == ':') {
      if (kind == '-') throw std::runtime_error("redis: " + head);
      out.push_back(head);
      pos = eol + 2;
      return true;
    }
    const long n = std::stol(head);
    if (kind == '$') {
      if (n < 0) {
        out.emplace_back();
        pos = eol + 2;
        return true;
      }
      if (in_.size() < eol + 2 + n + 2) return false;
      out.push_back(in_.substr(eol + 2, n));
      pos = eol + 2 + n + 2;
      return true;
    }
    std::size_t p = eol + 2;  // '*': an array
    for (long i = 0; i < n; ++i) {
      if (!parse(p, out)) return false;
    }
    pos = p;
    return true;
  }
  asio::ip::tcp::socket socket_;
  std::string in_;

 public:
  void close() {
    boost::system::error_code ignored;
    socket_.close(ignored);
  }
};

asio::awaitable<void> redis_watch(Resp& sub, LagMeter& meter) {
  const std::string prefix = "__keyspace@0__:";
  for (;;) {
    auto m = co_await sub.read();  // pmessage, pattern, channel, event
    if (m.size() == 4 && m[0] == "pmessage") meter.see(m[2].substr(prefix.size()));
  }
}

asio::awaitable<void> redis_write(Resp& master, LagMeter& meter, int first, int step) {
  Run& run = meter.run;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  const auto interval =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(step / run.o.rate));
  auto due = Clock::now() + interval * first / step;
  for (std::uint64_t n = first; due < run.end; n += step, due += interval) {
    timer.expires_at(due);
    co_await timer.async_wait(asio::use_awaitable);
    const std::string key = "lag:" + std::to_string(n);
    const std::vector<std::string> set{"SET", key, "x"};  // (GCC 12: no braced list in co_await)
    co_await master.send(set);
    co_await master.read();
    meter.ack(key);
  }
}

// Redis's replication lag, measured like ours: SET on the master at a fixed rate over a few
// connections, and the time from each SET's reply to the replica's keyspace notification.
asio::awaitable<void> redis_lag_run(Run& run) {
  auto ex = co_await asio::this_coro::executor;
  const auto comma = run.o.redis_lag.find(',');
  if (comma == std::string::npos) throw std::invalid_argument("--redis-lag takes MASTER,REPLICA");
  Resp sub(ex);
  co_await sub.connect(run.o.redis_lag.substr(comma + 1));
  const std::vector<std::string> config{"CONFIG", "SET", "notify-keyspace-events", "K$"};
  const std::vector<std::string> subscribe{"PSUBSCRIBE", "__keyspace@0__:lag:*"};
  co_await sub.send(config);
  co_await sub.read();
  co_await sub.send(subscribe);
  co_await sub.read();
  LagMeter meter{run, {}, {}};
  asio::co_spawn(ex, redis_watch(sub, meter), [](std::exception_ptr) {});
  const int conns = std::max(1, run.o.connections);
  std::vector<std::unique_ptr<Resp>> masters;
  for (int i = 0; i < conns; ++i) {
    masters.push_back(std::make_unique<Resp>(ex));
    co_await masters.back()->connect(run.o.redis_lag.substr(0, comma));
  }
  int live = conns;
  for (int i = 0; i < conns; ++i) {
    asio::co_spawn(ex, redis_write(*masters[i], meter, i, conns),
                   [&run, &live](std::exception_ptr e) {
                     if (e) run.fail("a SET failed");
                     --live;
                   });
  }
  asio::steady_timer timer(ex);
  while (live > 0) {
    timer.expires_after(2ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
  const auto grace = Clock::now() + 5s;
  while (!meter.acked.empty() && Clock::now() < grace) {
    timer.expires_after(2ms);
    co_await timer.async_wait(asio::use_awaitable);
  }
  if (!meter.acked.empty() && run.measuring) run.errors += meter.acked.size();
  sub.close();
  timer.expires_after(2ms);  // let the watcher see its socket close
  co_await timer.async_wait(asio::use_awaitable);
}

// Sets the run's end and flips it to measuring once the warm-up is over.
void start_clock(asio::any_io_executor ex, Run& run) {
  const auto since = [](double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  const auto start = Clock::now();
  run.end = start + since(run.o.warmup + run.o.seconds);
  asio::co_spawn(
      ex,
      [&run, ex, at = start + since(run.o.warmup)]() -> asio::awaitable<void> {
        asio::steady_timer t(ex, at);
        co_await t.async_wait(asio::use_awaitable);
        run.measuring = true;
        run.measure_start = Clock::now();
      },
      asio::detached);
}

asio::awaitable<void> bench(Run& run) {
  auto ex = co_await asio::this_coro::executor;
  if (!run.o.redis_lag.empty()) {
    start_clock(ex, run);
    co_await redis_lag_run(run);
    co_return;
  }
  const auto [host, port] = kv::parse_host_port(run.o.target);
  std::vector<std::unique_ptr<kv::NodeClient>> clients;
  for (int i = 0; i < run.o.connections; ++i) {
    clients.push_back(std::make_unique<kv::NodeClient>(ex));
    co_await clients.back()->connect(host, port, 5s);
  }
  if (run.o.op != "create" && run.o.lag_to.empty()) {
    // Items to read or update, created through one pipelined connection.
    for (int i = 0; i < run.o.keys; ++i) {
      auto r = co_await clients[0]->call(run.create(), 10s);
      run.ids.push_back(std::get<msg::ItemReply>(r).item.id);
    }
  }
  asio::steady_timer phase(ex);
  start_clock(ex, run);

  if (!run.o.lag_to.empty()) {
    const auto [lhost, lport] = kv::parse_host_port(run.o.lag_to);
    kv::NodeClient probe(ex);
    co_await probe.connect(lhost, lport, 5s);
    auto st = std::get<msg::StatusReply>(co_await probe.call(msg::Status{}, 5s)).status;
    kv::WsSubscription ws(ex);
    co_await ws.connect(lhost, static_cast<std::uint16_t>(st.http_port), 5s);
    co_await lag_run(*clients[0], ws, run);
    co_return;
  }
  int live = 0;
  for (auto& c : clients) {
    for (int d = 0; d < (run.o.rate > 0 ? 1 : run.o.depth); ++d) {
      ++live;
      auto task = run.o.rate > 0 ? open_loop(*c, run, run.o.rate / run.o.connections)
                                 : closed_loop(*c, run);
      asio::co_spawn(ex, std::move(task), [&live](std::exception_ptr) { --live; });
    }
  }
  while (live > 0) {
    phase.expires_after(5ms);
    co_await phase.async_wait(asio::use_awaitable);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Run run;
  Options& o = run.o;
  po::options_description opts(
      "kvbench: load for kvnode's binary protocol\n\n"
      "  kvbench --target H:P --op create --connections 50 --depth 16 --seconds 5\n"
      "  kvbench --target H:P --op create --rate 2000 --lag-to H:Q   (replication lag)\n\n"
      "Options");
  // clang-format off
  opts.add_options()
    ("help,h", "show this help")
    ("target", po::value(&o.target)->default_value(o.target), "node to load, host:port")
    ("op", po::value(&o.op)->default_value(o.op), "create | get | update")
    ("connections,c", po::value(&o.connections)->default_value(o.connections), "connections")
    ("depth,d", po::value(&o.depth)->default_value(o.depth), "requests in flight per connection")
    ("seconds", po::value(&o.seconds)->default_value(o.seconds), "measured time")
    ("warmup", po::value(&o.warmup)->default_value(o.warmup), "unmeasured time before")
    ("rate", po::value(&o.rate)->default_value(0), "open loop: requests/s in total (0: closed)")
    ("lag-to", po::value(&o.lag_to), "lag mode: node whose notifications to wait for")
    ("redis-lag", po::value(&o.redis_lag),
     "the same for Redis: MASTER,REPLICA (host:port each); keyspace events on the replica")
    ("keys", po::value(&o.keys)->default_value(o.keys), "items created first for get/update")
    ("count", po::value(&o.count)->default_value(0),
     "closed loop: stop after this many requests (with --warmup 0, all are measured)")
    ("json", "print a JSON line");
  // clang-format on
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, opts), vm);
    if (vm.count("help")) {
      std::cout << opts << "\n";
      return 0;
    }
    po::notify(vm);
    o.json = vm.count("json") > 0;
    if (o.op != "create" && o.op != "get" && o.op != "update") throw std::invalid_argument("--op");
    if (o.connections < 1 || o.depth < 1 || o.seconds <= 0 || o.warmup < 0 || o.keys < 1) {
      throw std::invalid_argument("counts and times must be positive");
    }
    if ((!o.lag_to.empty() || !o.redis_lag.empty()) && (o.rate <= 0 || o.op != "create")) {
      throw std::invalid_argument("lag mode needs --op create and a --rate");
    }
  } catch (const std::exception& e) {
    std::cerr << "kvbench: " << e.what() << "\nTry 'kvbench --help'.\n";
    return 2;
  }

  asio::io_context io(1);
  std::exception_ptr failure;
  asio::co_spawn(io, bench(run), [&](std::exception_ptr e) { failure = e; });
  io.run();
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      std::cerr << "kvbench: " << e.what() << "\n";
      return 1;
    }
  }
  // Open loop and lag mode run for --seconds; a closed loop with --count ends when it is done.
  const double measured =
      o.count > 0 && run.ops > 0
          ? std::chrono::duration<double>(run.last_done - run.measure_start).count()
          : o.seconds;
  const double ops_s = measured > 0 ? run.ops / measured : 0;
  const auto& h = run.latency;
  const bool lag = !o.lag_to.empty() || !o.redis_lag.empty();
  std::cout << (lag ? "lag" : o.op) << " c=" << o.connections << " d=" << o.depth
            << (o.rate > 0 ? " rate=" + std::to_string(static_cast<long>(o.rate)) : "") << ": "
            << static_cast<long>(ops_s) << " ops/s, p50 " << h.percentile(50) << " us, p99 "
            << h.percentile(99) << " us, p99.9 " << h.percentile(99.9) << " us, max " << h.max()
            << " us, errors " << run.errors
            << (run.first_error.empty() ? "" : " (" + run.first_error + ")") << "\n";
  if (o.json) {
    boost::json::object j{{"op", lag ? "lag" : o.op},
                          {"connections", o.connections},
                          {"depth", o.depth},
                          {"rate", o.rate},
                          {"ops", run.ops},
                          {"seconds", measured},
                          {"ops_per_sec", ops_s},
                          {"errors", run.errors},
                          {"p50_us", h.percentile(50)},
                          {"p90_us", h.percentile(90)},
                          {"p99_us", h.percentile(99)},
                          {"p999_us", h.percentile(99.9)},
                          {"max_us", h.max()}};
    std::cout << boost::json::serialize(j) << "\n";
  }
  return run.errors > 0 && run.ops == 0 ? 1 : 0;
}
