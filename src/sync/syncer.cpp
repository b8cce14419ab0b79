#include "sync/syncer.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <boost/json.hpp>

#include <map>
#include <set>
#include <sstream>

#include "core/address.hpp"
#include "core/describe.hpp"
#include "core/item_json.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/notification.hpp"
#include "net/node_client.hpp"
#include "net/wakeup.hpp"
#include "net/ws_client.hpp"
#include "sync/sync_log.hpp"
#include "sync/sync_machine.hpp"

namespace kv::sync {

namespace asio = boost::asio;

namespace {
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// The I/O side of one node link; its state lives in the SyncMachine.
struct Link {
  Link(asio::any_io_executor ex)
      : client(ex),
        fetcher(ex),
        ws(ex),
        fetch(ex),
        send(ex),
        applies_done(ex),
        ended(ex),
        retry(ex) {}
  NodeClient client;   // STATUS, APPLY and DUMP
  NodeClient fetcher;  // FETCH, on a connection of its own: the node answers a connection's
                       // requests in order, and an APPLY's answer waits for the node's fsync
  WsSubscription ws;
  Wakeup fetch;  // the machine may have a FETCH to send
  Wakeup send;   // the machine may have an APPLY to send
  // APPLYs in flight (SyncMachine's window), each awaited by a coroutine of its own; the first
  // to fail says why here, and the sender takes the connection down with it.
  std::size_t applies = 0;
  Wakeup applies_done;
  std::string apply_error;
  bool connected = false;    // both connections are open and the loops run
  Wakeup ended;              // the watcher, fetcher and sender of this connection have all returned
  asio::steady_timer retry;  // the wait before reconnecting
};

using Clock = std::chrono::steady_clock;
namespace json = boost::json;

// One line per stamped change (up to kLinesPerStamp of a stamp, then one for the rest), printed
// once every connected node applied it.
constexpr std::size_t kLinesPerStamp = 8;
struct Report {
  std::string origin;
  std::vector<std::string> lines;
};

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what);
}

template <class T>
T expect(proto::Response r, const char* what) {
  if (auto* e = std::get_if<proto::msg::Error>(&r)) {
    fail(std::string(what) + " refused: " + std::string(proto::to_string(e->code)) + ": " +
         e->message);
  }
  return std::get<T>(std::move(r));
}

std::string quoted(const std::string& s) {
  return "\"" + s + "\"";
}

}  // namespace

struct Syncer::Impl {
  Impl(asio::any_io_executor ex, SyncerOptions opts)
      : executor(ex),
        options(std::move(opts)),
        log(SyncLogOptions{.dir = options.data,
                           .sync_writes = options.sync_writes,
                           .disk = nullptr,
                           .random = {},
                           .boot_id = {}}),
        machine(log, options.nodes,
                MachineOptions{options.fetch_limit, options.batch_limit, options.backoff_initial,
                               options.backoff_max, options.restored_log, options.apply_window}) {
    for (const auto& name : options.forget) {
      if (log.forget(name)) {
        KV_LOG(warning) << "forgot node " << name << ": if it comes back, it is resynced from "
                        << "scratch";
      } else {
        KV_LOG(info) << "--forget-node " << name << ": the log does not know that node";
      }
    }
    for (std::size_t i = 0; i < options.nodes.size(); ++i) {
      links.push_back(std::make_unique<Link>(ex));
      links.back()->client.set_secret(options.secret);
      links.back()->fetcher.set_secret(options.secret);
      links.back()->fetcher.set_tls(options.tls);
      links.back()->ws.set_secret(options.secret);
      links.back()->client.set_tls(options.tls);
      links.back()->ws.set_tls(options.tls);
    }
  }

  asio::any_io_executor executor;
  SyncerOptions options;
  SyncLog log;
  SyncMachine machine;
  // The log's fsync runs here, off the I/O thread, while it serves the other nodes (docs/sync.md,
  // "The syncer's fsync"). Declared after the log: joined before the log closes.
  asio::thread_pool sync_thread{1};
  Wakeup sync_wanted{executor};             // stamps were written that are not yet durable
  asio::steady_timer sync_delay{executor};  // SyncerOptions::sync_delay; stop() ends it
  // The link whose changes the stamps not yet named by a sync point came from, if all came from
  // one. A second origin ends the delay: a node that writes gets the stamps after its own
  // undurable ones only once they are durable (SyncMachine::next_apply), so stamps of two
  // origins mean one of them waits for the fsync.
  std::optional<std::size_t> sync_origin;
  bool sync_hurry = false;
  void stamped_from(std::size_t i) {
    if (!sync_origin) {
      sync_origin = i;
    } else if (*sync_origin != i) {
      sync_hurry = true;
      sync_delay.cancel();
    }
  }
  std::vector<std::unique_ptr<Link>> links;  // by the machine's link index
  std::map<std::uint64_t, Report> reports;   // by stamp, awaiting delivery
  std::function<void()> on_all_connected;
  std::function<void(std::string)> listener;
  std::function<bool()> listener_active;
  bool listening() const { return listener && (!listener_active || listener_active()); }
  // When each recent stamp was handed out, for the lag in seconds; pruned once every node has
  // applied it, and bounded.
  std::map<std::uint64_t, Clock::time_point> stamp_times;
  static constexpr std::size_t kMaxStampTimes = 100000;
  std::uint64_t changes_stamped = 0;
  bool stopping = false;  // Syncer::stop(): links end instead of reconnecting

  // The machine's state changed: every loop looks again for work (cheap: each asks the machine).
  void wake_all() {
    for (auto& l : links) {
      l->fetch.notify();
      l->send.notify();
    }
  }
  void emit(json::object o) {
    if (listening()) listener(json::serialize(o));
  }
  json::object link_json(std::size_t i) const {
    const LinkView& l = machine.link(i);
    return json::object{{"address", l.address},
                        {"name", l.status.name},
                        {"http", l.status.name.empty() ? std::string() : http_address(l)},
                        {"connected", links[i]->connected},
                        {"applied_stamp", l.applied_stamp},
                        {"diverged", l.diverged}};
  }
  static std::string http_address(const LinkView& l) {
    const auto colon = l.address.rfind(':');
    return l.address.substr(0, colon) + ":" + std::to_string(l.status.http_port);
  }
  json::object nodes_object() const {
    json::array nodes;
    for (std::size_t i = 0; i < links.size(); ++i) nodes.push_back(link_json(i));
    return json::object{
        {"stamp", log.counter()}, {"digest", log.digest()}, {"nodes", std::move(nodes)}};
  }
  void link_changed(std::size_t i) {
    json::object o = link_json(i);
    o["type"] = "link";
    emit(std::move(o));
  }
  // Seconds since the oldest stamp this link has not applied was handed out.
  double lag_seconds(const LinkView& l) const {
    if (l.applied_stamp >= log.counter()) return 0;
    auto it = stamp_times.upper_bound(l.applied_stamp);
    if (it == stamp_times.end()) return 0;
    return std::chrono::duration<double>(Clock::now() - it->second).count();
  }
  void prune_stamp_times() {
    std::uint64_t low = log.counter();
    for (std::size_t i = 0; i < links.size(); ++i) {
      low = std::min(low, machine.link(i).applied_stamp);
    }
    while (!stamp_times.empty() &&
           (stamp_times.begin()->first <= low || stamp_times.size() > kMaxStampTimes)) {
      stamp_times.erase(stamp_times.begin());
    }
  }

  asio::awaitable<void> run_link(std::size_t i);
  asio::awaitable<void> run_connected(std::size_t i);
  asio::awaitable<void> watch(std::size_t i);
  asio::awaitable<void> fetch_loop(std::size_t i);
  asio::awaitable<void> send_loop(std::size_t i);
  asio::awaitable<void> sync_loop();
  asio::awaitable<void> apply(std::size_t i, proto::msg::Apply batch);
  void report_stamp(std::size_t i, const proto::msg::Changes& got, const SyncLog::Stamped& s);
  void flush_reports();
};

Syncer::Syncer(asio::any_io_executor executor, SyncerOptions options)
    : impl_(std::make_unique<Impl>(executor, std::move(options))) {}

Syncer::~Syncer() = default;

void Syncer::stop() {
  Impl& im = *impl_;
  im.stopping = true;
  im.sync_wanted.notify();
  im.sync_delay.cancel();
  for (auto& l : im.links) {
    l->client.close();  // fails every call in flight, so the loops return
    l->fetcher.close();
    l->ws.close();
    l->fetch.notify();
    l->send.notify();
    l->retry.cancel();
  }
}

asio::awaitable<void> Syncer::run(std::function<void()> on_all_connected) {
  impl_->on_all_connected = std::move(on_all_connected);
  KV_LOG(info) << "syncer log: stamp " << impl_->log.counter() << ", " << impl_->log.size()
               << " items, life " << impl_->log.life();
  // One coroutine per link; none of them returns unless cancelled.
  auto ex = co_await asio::this_coro::executor;
  auto remaining = std::make_shared<std::size_t>(impl_->links.size() + 1);
  asio::steady_timer all_done(ex, asio::steady_timer::time_point::max());
  auto ended = [remaining, &all_done](std::exception_ptr) {
    if (--*remaining == 0) all_done.cancel();
  };
  for (std::size_t i = 0; i < impl_->links.size(); ++i) {
    asio::co_spawn(ex, impl_->run_link(i), ended);
  }
  asio::co_spawn(ex, impl_->sync_loop(), ended);
  co_await all_done.async_wait(kTuple);
}

asio::awaitable<void> Syncer::Impl::run_link(std::size_t i) {
  Link& link = *links[i];
  const std::string& address = machine.link(i).address;
  while (!stopping) {
    bool up = false;
    try {
      const auto [host, port] = parse_host_port(address);
      co_await link.client.connect(host, port, options.call_timeout);
      co_await link.fetcher.connect(host, port, options.call_timeout);
      auto st = expect<proto::msg::StatusReply>(
                    co_await link.client.call(machine.claim(), options.call_timeout), "STATUS")
                    .status;
      // Decided before the next co_await, so two links cannot both take one name.
      auto verdict = machine.on_status(i, st);
      if (verdict.refused) fail(*verdict.refused);
      up = true;
      for (const auto& w : verdict.warnings) KV_LOG(warning) << w;
      // Only clients' changes: what we applied ourselves needs no fetch (and would be many).
      co_await link.ws.connect(host, static_cast<std::uint16_t>(st.http_port), options.call_timeout,
                               "/ws?only=local");
      link.connected = true;
      KV_LOG(info) << "connected to node " << st.name << " at " << address << " (version "
                   << st.version << ", applied stamp " << st.applied_stamp << ", cursor "
                   << log.cursor(st.name, st.incarnation) << " of seq " << st.seq << ")";
      link_changed(i);
      if (on_all_connected && machine.all_reached()) {
        auto cb = std::move(on_all_connected);
        on_all_connected = nullptr;
        cb();
      }
      wake_all();
      co_await run_connected(i);
    } catch (const std::exception& e) {
      if (stopping) {
        KV_LOG(info) << "closed the link to " << address;
      } else if (up) {
        KV_LOG(warning) << "lost node " << machine.link(i).status.name << " at " << address << ": "
                        << describe(e) << "; reconnecting";
      } else {
        KV_LOG(info) << "node at " << address << " unavailable: " << describe(e);
      }
    }
    const bool was_connected = link.connected;
    link.connected = false;
    link.client.close();
    link.fetcher.close();
    link.ws.close();
    const auto backoff = machine.on_down(i);
    if (was_connected) link_changed(i);
    flush_reports();
    if (stopping) co_return;
    if (!up) KV_LOG(debug) << "retrying " << address << " in " << backoff.count() << " ms";
    link.retry.expires_after(backoff);
    co_await link.retry.async_wait(kTuple);
  }
}

// Runs the watcher, fetcher and sender of one connection side by side. The first to fail takes
// the connection down: closing both sockets fails every pending read and call, and the wake-ups
// release the loops that wait, so all three return before the link reconnects.
asio::awaitable<void> Syncer::Impl::run_connected(std::size_t i) {
  Link& link = *links[i];
  auto running = std::make_shared<int>(3);
  auto first_error = std::make_shared<std::string>();
  auto on_end = [&link, running, first_error](const char* what, std::exception_ptr e) {
    if (e && first_error->empty()) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        *first_error = std::string(what) + ": " + describe(ex);
      }
    }
    if (link.connected) {
      link.connected = false;
      link.client.close();
      link.fetcher.close();
      link.ws.close();
      link.fetch.notify();
      link.send.notify();
    }
    if (--*running == 0) link.ended.notify();
  };
  asio::co_spawn(executor, watch(i), [on_end](std::exception_ptr e) { on_end("watch", e); });
  asio::co_spawn(executor, fetch_loop(i), [on_end](std::exception_ptr e) { on_end("fetch", e); });
  asio::co_spawn(executor, send_loop(i), [on_end](std::exception_ptr e) { on_end("send", e); });
  co_await link.ended.wait();
  throw std::runtime_error(first_error->empty() ? "connection closed" : *first_error);
}

asio::awaitable<void> Syncer::Impl::watch(std::size_t i) {
  Link& link = *links[i];
  for (;;) {
    std::string text;
    try {
      text = co_await link.ws.next();
    } catch (const boost::system::system_error&) {
      // Say why the node closed us, if it did (e.g. our queue there overflowed).
      const std::string reason = link.ws.close_reason();
      if (reason.empty()) throw;
      throw std::runtime_error("closed by the node: " + reason);
    }
    auto n = parse_notification(text);
    if (!n) {
      KV_LOG(warning) << "node " << machine.link(i).status.name
                      << " sent a notification we cannot parse";
      continue;
    }
    machine.on_notification(i, n->kind, n->seq);
    link.fetch.notify();
  }
}

asio::awaitable<void> Syncer::Impl::fetch_loop(std::size_t i) {
  Link& link = *links[i];
  for (;;) {
    co_await link.fetch.wait();
    if (!link.connected) co_return;
    while (auto fetch = machine.next_fetch(i)) {
      auto got = expect<proto::msg::Changes>(
          co_await link.fetcher.call(*fetch, options.call_timeout), "FETCH");
      KV_LOG(debug) << "fetched " << got.changes.size() << " changes from "
                    << machine.link(i).status.name << " after " << fetch->after_seq
                    << " (up to seq " << got.seq_high << ")";
      auto outcome = machine.on_fetched(i, got);
      if (outcome.moved) {
        report_stamp(i, got, outcome.stamped);
        wake_all();  // the senders: new stamps, or the origin's synced_upto moved
        stamped_from(i);
        sync_wanted.notify();
      }
    }
  }
}

// Makes the stamps durable off the I/O thread: one fsync covers every stamp written before it
// started, and stamps written meanwhile wait for the next. The first stamp after a sync waits
// up to options.sync_delay for others to share it: the stamps are fanned out already, and only
// what tells a node that its own changes are in the log waits (docs/sync.md, "The syncer's
// fsync"), unless stamps of a second origin came meanwhile (stamped_from). Once durable, the
// senders send that.
asio::awaitable<void> Syncer::Impl::sync_loop() {
  asio::steady_timer retry(executor);
  auto sync_now = [this]() -> asio::awaitable<std::optional<std::string>> {
    co_return log.sync_now();
  };
  for (;;) {
    co_await sync_wanted.wait();
    if (options.sync_writes && options.sync_delay.count() > 0 && !stopping && !sync_hurry) {
      sync_delay.expires_after(options.sync_delay);
      co_await sync_delay.async_wait(kTuple);
    }
    while (!stopping && !log.all_durable()) {
      const std::uint64_t point = log.sync_point();
      sync_origin.reset();  // the stamps after the point are the next sync's
      sync_hurry = false;
      std::optional<std::string> error =
          co_await asio::co_spawn(sync_thread, sync_now, asio::use_awaitable);
      if (error) {
        // The origins keep their changes pending meanwhile: nothing is lost by waiting.
        KV_LOG(error) << *error << "; nodes are not told their changes are synced until it "
                      << "succeeds; retrying in 1 s";
        retry.expires_after(std::chrono::seconds(1));
        co_await retry.async_wait(kTuple);
        continue;
      }
      log.synced(point);
      wake_all();
    }
    if (stopping) co_return;
  }
}

asio::awaitable<void> Syncer::Impl::send_loop(std::size_t i) {
  Link& link = *links[i];
  link.apply_error.clear();
  for (;;) {
    co_await link.send.wait();
    if (!link.connected || !link.apply_error.empty()) break;
    // Up to the machine's window of APPLYs in flight: the node commits one while the next is
    // on its way (each names the stamp it continues from, so none is applied out of turn).
    while (auto batch = machine.next_apply(i)) {
      ++link.applies;
      asio::co_spawn(executor, apply(i, std::move(*batch)), [this, &link](std::exception_ptr e) {
        if (e && link.connected && link.apply_error.empty()) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            link.apply_error = describe(ex);
          }
        }
        if (--link.applies == 0) link.applies_done.notify();
        link.send.notify();
      });
    }
    // A rebuild of a lost log reads what the node holds (docs/sync.md, "A lost log").
    while (auto dump = machine.next_dump(i)) {
      auto got = expect<proto::msg::Dumped>(
          co_await link.client.call(std::move(*dump), options.call_timeout), "DUMP");
      if (auto done = machine.on_dumped(i, got)) {
        KV_LOG(warning) << *done;
        wake_all();
      }
    }
  }
  // The calls in flight end with the connection: they are never left behind it.
  if (!link.apply_error.empty()) {
    link.client.close();
    link.fetcher.close();
    link.ws.close();
  }
  while (link.applies > 0) co_await link.applies_done.wait();
  if (!link.apply_error.empty()) throw std::runtime_error(link.apply_error);
}

// One APPLY and its answer.
asio::awaitable<void> Syncer::Impl::apply(std::size_t i, proto::msg::Apply batch) {
  Link& link = *links[i];
  const std::string name = machine.link(i).status.name;
  KV_LOG(trace) << "sending " << batch.changes.size() << " changes up to stamp " << batch.upto_stamp
                << " to " << name;
  auto answer = co_await link.client.call(std::move(batch), options.call_timeout);
  auto applied = expect<proto::msg::Applied>(std::move(answer), "APPLY");
  if (!link.connected) co_return;
  const auto outcome = machine.on_applied(i, applied);
  emit(json::object{{"type", "applied"},
                    {"node", name},
                    {"stamp", applied.applied_stamp},
                    {"changed", applied.changed},
                    {"digest", applied.digest},
                    {"unsynced", applied.unsynced},
                    {"checked", outcome.checked},
                    {"agrees", outcome.agrees}});
  prune_stamp_times();
  KV_LOG(debug) << name << " applied up to stamp " << applied.applied_stamp << " ("
                << applied.changed << " changed)";
  flush_reports();
  if (outcome.divergence) {
    KV_LOG(error) << *outcome.divergence;
    emit(json::object{{"type", "divergence"}, {"node", name}, {"text", *outcome.divergence}});
    wake_all();  // the full resync of this node
  }
  if (outcome.repaired) {
    KV_LOG(warning) << *outcome.repaired;
    emit(json::object{{"type", "repaired"}, {"node", name}, {"text", *outcome.repaired}});
  }
  if (outcome.compacted > 0) {
    KV_LOG(info) << "compacted " << outcome.compacted << " tombstones up to stamp "
                 << log.purged_upto();
    wake_all();  // to carry purge_upto
  }
}

void Syncer::Impl::report_stamp(std::size_t i, const proto::msg::Changes& got,
                                const SyncLog::Stamped& stamped) {
  const std::string& name = machine.link(i).status.name;
  for (const auto& c : stamped.dropped) {
    KV_LOG(info) << "sync " << name << ":" << c.item.id << " update v" << c.item.version
                 << " dropped: the item was deleted first";
  }
  for (const auto& c : stamped.redeleted) {
    KV_LOG(info) << "sync " << name << ":" << c.item.id << " update v" << c.item.version
                 << " dropped: the item was deleted and its tombstone compacted; deleting it "
                    "again";
  }
  if (stamped.stamp == 0) return;
  stamp_times.emplace(stamped.stamp, Clock::now());
  changes_stamped += stamped.accepted.size();
  std::set<std::string> created(stamped.created.begin(), stamped.created.end());
  const auto op = [&created](const Item& it) {
    return it.deleted ? "delete" : created.count(it.id) ? "create" : "update";
  };
  if (listening()) {
    json::array changes;
    for (const auto& c : stamped.accepted) {
      changes.push_back(json::object{
          {"origin_seq", c.origin_seq}, {"op", op(c.item)}, {"item", json::value_from(c.item)}});
    }
    emit(json::object{{"type", "stamp"},
                      {"stamp", stamped.stamp},
                      {"origin", name},
                      {"changes", std::move(changes)}});
  }
  Report& r = reports[stamped.stamp];
  r.origin = name;
  // A line for each of the first kLinesPerStamp changes, then one for the rest: under load a
  // line per change cost kvsync a formatted record and a write(2) apiece, thousands a second
  // (15,600 at 80% of node a's top rate), and told a reader nothing the summary does not.
  const std::size_t shown = std::min(stamped.accepted.size(), kLinesPerStamp);
  const auto local_version = [&got](const std::string& id) -> std::uint64_t {
    // The node's own version: its last change of the item in this fetch.
    for (auto it = got.changes.rbegin(); it != got.changes.rend(); ++it) {
      if (it->item.id == id) return it->item.version;
    }
    return 0;
  };
  for (std::size_t k = 0; k < shown; ++k) {
    const auto& c = stamped.accepted[k];
    std::ostringstream line;
    line << name << ":" << c.item.id << " " << op(c.item) << " " << quoted(c.item.title)
         << (c.item.completed ? " completed" : "") << " v" << local_version(c.item.id)
         << " -> stamp " << c.stamp;
    r.lines.push_back(line.str());
  }
  if (shown < stamped.accepted.size()) {
    r.lines.push_back(name + ": " + std::to_string(stamped.accepted.size() - shown) +
                      " more changes -> stamp " + std::to_string(stamped.stamp));
  }
}

void Syncer::set_listener(std::function<void(std::string)> listener, std::function<bool()> active) {
  impl_->listener = std::move(listener);
  impl_->listener_active = std::move(active);
}

std::string Syncer::nodes_json() const {
  return json::serialize(impl_->nodes_object());
}

std::string Syncer::hello_json() const {
  json::object o = impl_->nodes_object();
  o["type"] = "hello";
  return json::serialize(o);
}

bool Syncer::ready() const {
  return impl_->machine.all_reached();
}

void Syncer::register_metrics(metrics::Registry& m) {
  Impl& im = *impl_;
  m.gauge("kvsync_stamp", "The highest stamp handed out", {},
          [&im] { return static_cast<double>(im.log.counter()); });
  m.gauge("kvsync_log_items", "Items in the syncer's log, tombstones included", {},
          [&im] { return static_cast<double>(im.log.size()); });
  m.counter_family("kvsync_changes_stamped_total", "Changes stamped since start",
                   [&im](std::vector<std::pair<metrics::Labels, double>>& out) {
                     out.push_back({{}, static_cast<double>(im.changes_stamped)});
                   });
  // One series per node, labelled by its address (and name, once known).
  const auto per_link = [&im](auto value) {
    return [&im, value](std::vector<std::pair<metrics::Labels, double>>& out) {
      for (std::size_t i = 0; i < im.links.size(); ++i) {
        const LinkView& v = im.machine.link(i);
        out.push_back({{{"node", v.status.name}, {"address", v.address}}, value(im, i, v)});
      }
    };
  };
  using V = const LinkView&;
  m.gauge_family("kvsync_node_connected", "1 while the node's link is up",
                 per_link([](const Impl& im, std::size_t i, V) {
                   return im.links[i]->connected ? 1.0 : 0.0;
                 }));
  m.gauge_family(
      "kvsync_node_applied_stamp", "The highest stamp the node has applied",
      per_link([](const Impl&, std::size_t, V l) { return static_cast<double>(l.applied_stamp); }));
  m.gauge_family(
      "kvsync_node_lag_stamps", "Stamps handed out that the node has not applied",
      per_link([](const Impl& im, std::size_t, V l) {
        return static_cast<double>(im.log.counter() - std::min(im.log.counter(), l.applied_stamp));
      }));
  m.gauge_family("kvsync_node_unfetched_changes",
                 "Local changes the node announced that are not yet stamped",
                 per_link([](const Impl& im, std::size_t, V l) {
                   if (l.status.name.empty()) return 0.0;
                   const auto cursor = im.log.cursor(l.status.name, l.status.incarnation);
                   return static_cast<double>(l.seq_seen - std::min(l.seq_seen, cursor));
                 }));
  m.gauge_family("kvsync_node_lag_seconds",
                 "Age of the oldest stamp the node has not applied (0: caught up)",
                 per_link([](const Impl& im, std::size_t, V l) { return im.lag_seconds(l); }));
  m.gauge_family("kvsync_node_diverged",
                 "1 while the node's content digest differs from the log's (a full resync runs)",
                 per_link([](const Impl&, std::size_t, V l) { return l.diverged ? 1.0 : 0.0; }));
  m.counter_family("kvsync_node_digest_mismatches_total",
                   "Times the node's content digest differed from the log's at the same stamp",
                   per_link([](const Impl&, std::size_t, V l) {
                     return static_cast<double>(l.digest_mismatches);
                   }));
  m.counter_family(
      "kvsync_node_digest_checks_total",
      "Times the node's content digest was compared with the log's at the same stamp",
      per_link([](const Impl&, std::size_t, V l) { return static_cast<double>(l.digest_checks); }));
  m.counter_family(
      "kvsync_node_reconnects_total", "Times the link came up again after the first",
      per_link([](const Impl&, std::size_t, V l) { return static_cast<double>(l.reconnects); }));
  m.counter_family(
      "kvsync_node_fetches_total", "FETCH calls answered by the node",
      per_link([](const Impl&, std::size_t, V l) { return static_cast<double>(l.fetches); }));
  m.counter_family(
      "kvsync_node_applies_total", "APPLY calls acknowledged by the node",
      per_link([](const Impl&, std::size_t, V l) { return static_cast<double>(l.applies); }));
  m.counter_family(
      "kvsync_node_received_bytes_total", "Bytes read from the node (binary protocol)",
      per_link([](const Impl& im, std::size_t i, V) {
        const auto& l = *im.links[i];
        return static_cast<double>(l.client.traffic().received + l.fetcher.traffic().received);
      }));
  m.counter_family("kvsync_node_sent_bytes_total", "Bytes written to the node (binary protocol)",
                   per_link([](const Impl& im, std::size_t i, V) {
                     const auto& l = *im.links[i];
                     return static_cast<double>(l.client.traffic().sent + l.fetcher.traffic().sent);
                   }));
}

void Syncer::Impl::flush_reports() {
  while (!reports.empty()) {
    auto it = reports.begin();
    std::vector<std::string> applied, waiting;
    for (std::size_t i = 0; i < links.size(); ++i) {
      const LinkView& l = machine.link(i);
      const bool connected = links[i]->connected;
      const std::string& n = connected ? l.status.name : l.address;
      if (connected && l.applied_stamp >= it->first) {
        applied.push_back(n);
      } else if (connected) {
        return;  // a live node is still on its way: report once it has applied
      } else {
        waiting.push_back(n);
      }
    }
    std::string nodes;
    for (const auto& n : applied) nodes += (nodes.empty() ? "" : ",") + n;
    std::string later;
    for (const auto& n : waiting) later += (later.empty() ? "" : ",") + n;
    for (const auto& line : it->second.lines) {
      KV_LOG(info) << "sync " << line << " applied on " << (nodes.empty() ? "-" : nodes)
                   << (later.empty() ? "" : " (later: " + later + ")");
    }
    reports.erase(it);
  }
}

}  // namespace kv::sync
