#include "sync/syncer.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <boost/json.hpp>

#include <map>
#include <set>
#include <sstream>

#include "common/log.hpp"
#include "common/metrics.hpp"
#include "common/node_client.hpp"
#include "common/notification.hpp"
#include "common/wakeup.hpp"
#include "common/ws_client.hpp"
#include "sync/sync_log.hpp"

namespace kv::sync {

namespace asio = boost::asio;

namespace {
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

struct Link {
  Link(asio::any_io_executor ex, std::string address)
      : address(std::move(address)), client(ex), ws(ex), fetch(ex), send(ex), ended(ex) {}
  std::string address;
  NodeClient client;
  WsSubscription ws;
  Wakeup fetch;  // the node has (or may have) local changes past our cursor
  Wakeup send;   // the log has stamps the node has not applied
  bool connected = false;
  bool claimed = false;      // status.name is reserved for this link (from STATUS until it drops)
  bool greeted = false;      // an APPLY went out since the link came up (it lifts the write fence)
  bool needs_reset = false;  // behind the compaction point: the next APPLY resets it
  std::uint64_t purge_sent = 0;  // the purge_upto the node last acknowledged
  bool ever_connected = false;
  Wakeup ended;       // the watcher, fetcher and sender of this connection have all returned
  NodeStatus status;  // as reported when the link came up
  std::uint64_t applied_stamp = 0;  // as the node last reported
  std::uint64_t synced_upto = 0;
  std::uint64_t seq_seen = 0;    // the highest local seq its notifications announced
  std::uint64_t reconnects = 0;  // times the link came up again after the first
  std::uint64_t fetches = 0;
  std::uint64_t applies = 0;
};

using Clock = std::chrono::steady_clock;
namespace json = boost::json;

json::object item_json(const Item& it) {
  return json::object{{"id", it.id},
                      {"title", it.title},
                      {"completed", it.completed},
                      {"deleted", it.deleted},
                      {"version", it.version}};
}

// One line per stamped change, printed once every connected node applied it.
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

// system_error's what() carries Boost's source location; people want the sentence.
std::string describe(const std::exception& e) {
  if (auto* se = dynamic_cast<const boost::system::system_error*>(&e)) return se->code().message();
  return e.what();
}
}  // namespace

struct Syncer::Impl {
  Impl(asio::any_io_executor ex, SyncerOptions opts)
      : executor(ex), options(std::move(opts)), log({options.data, options.sync_writes}) {
    for (const auto& a : options.nodes) {
      links.push_back(std::make_unique<Link>(ex, a));
      links.back()->client.set_secret(options.secret);
      links.back()->ws.set_secret(options.secret);
      links.back()->client.set_tls(options.tls);
      links.back()->ws.set_tls(options.tls);
    }
  }

  asio::any_io_executor executor;
  SyncerOptions options;
  SyncLog log;
  std::vector<std::unique_ptr<Link>> links;
  std::map<std::uint64_t, Report> reports;  // by stamp, awaiting delivery
  std::function<void()> on_all_connected;
  std::function<void(std::string)> listener;
  std::function<bool()> listener_active;
  bool listening() const { return listener && (!listener_active || listener_active()); }
  // When each recent stamp was handed out, for the lag in seconds; pruned once every node has
  // applied it, and bounded.
  std::map<std::uint64_t, Clock::time_point> stamp_times;
  static constexpr std::size_t kMaxStampTimes = 100000;
  std::uint64_t changes_stamped = 0;

  void emit(json::object o) {
    if (listening()) listener(json::serialize(o));
  }
  json::object link_json(const Link& l) const {
    return json::object{{"address", l.address},
                        {"name", l.status.name},
                        {"http", l.status.name.empty() ? std::string() : http_address(l)},
                        {"connected", l.connected},
                        {"applied_stamp", l.applied_stamp}};
  }
  static std::string http_address(const Link& l) {
    const auto colon = l.address.rfind(':');
    return l.address.substr(0, colon) + ":" + std::to_string(l.status.http_port);
  }
  json::object nodes_object() const {
    json::array nodes;
    for (const auto& l : links) nodes.push_back(link_json(*l));
    return json::object{{"stamp", log.counter()}, {"nodes", std::move(nodes)}};
  }
  void link_changed(const Link& l) {
    json::object o = link_json(l);
    o["type"] = "link";
    emit(std::move(o));
  }
  // Seconds since the oldest stamp this link has not applied was handed out.
  double lag_seconds(const Link& l) const {
    if (l.applied_stamp >= log.counter()) return 0;
    auto it = stamp_times.upper_bound(l.applied_stamp);
    if (it == stamp_times.end()) return 0;
    return std::chrono::duration<double>(Clock::now() - it->second).count();
  }
  void prune_stamp_times() {
    std::uint64_t low = log.counter();
    for (const auto& l : links) low = std::min(low, l->applied_stamp);
    while (!stamp_times.empty() &&
           (stamp_times.begin()->first <= low || stamp_times.size() > kMaxStampTimes)) {
      stamp_times.erase(stamp_times.begin());
    }
  }

  asio::awaitable<void> run_link(Link& link);
  asio::awaitable<void> run_connected(Link& link);
  asio::awaitable<void> watch(Link& link);
  asio::awaitable<void> fetch_loop(Link& link);
  asio::awaitable<void> send_loop(Link& link);
  void connected(Link& link);
  // A new log knows no stamps yet: the nodes may have applied some from an earlier log (a
  // replaced data directory), so nothing is stamped until every node has reported its
  // applied_stamp and the counter has moved past them.
  bool may_stamp() const {
    return log.counter() > 0 ||
           std::all_of(links.begin(), links.end(), [](const auto& l) { return l->ever_connected; });
  }
  void flush_reports();
  // Tombstones every node has applied are dropped from the log, and the nodes are told.
  void compact() {
    if (!std::all_of(links.begin(), links.end(), [](const auto& l) { return l->ever_connected; })) {
      return;  // a node we have not heard from may still lack them
    }
    std::uint64_t horizon = ~std::uint64_t{0};
    for (const auto& l : links) horizon = std::min(horizon, l->applied_stamp);
    if (horizon <= log.purged_upto()) return;
    const std::size_t n = log.purge(horizon);
    if (n == 0) return;
    KV_LOG(info) << "compacted " << n << " tombstones up to stamp " << horizon;
    for (auto& l : links) l->send.notify();  // to carry purge_upto
  }
};

Syncer::Syncer(asio::any_io_executor executor, SyncerOptions options)
    : impl_(std::make_unique<Impl>(executor, std::move(options))) {}

Syncer::~Syncer() = default;

asio::awaitable<void> Syncer::run(std::function<void()> on_all_connected) {
  impl_->on_all_connected = std::move(on_all_connected);
  KV_LOG(info) << "syncer log: stamp " << impl_->log.counter() << ", " << impl_->log.size()
               << " items";
  // One coroutine per link; none of them returns unless cancelled.
  auto ex = co_await asio::this_coro::executor;
  std::vector<asio::awaitable<void>> tasks;
  auto remaining = std::make_shared<std::size_t>(impl_->links.size());
  asio::steady_timer all_done(ex, asio::steady_timer::time_point::max());
  for (auto& l : impl_->links) {
    asio::co_spawn(ex, impl_->run_link(*l), [remaining, &all_done](std::exception_ptr) {
      if (--*remaining == 0) all_done.cancel();
    });
  }
  co_await all_done.async_wait(kTuple);
}

asio::awaitable<void> Syncer::Impl::run_link(Link& link) {
  auto backoff = options.backoff_initial;
  asio::steady_timer wait(executor);
  for (;;) {
    bool up = false;
    try {
      const auto [host, port] = parse_host_port(link.address);
      co_await link.client.connect(host, port, options.call_timeout);
      auto st = expect<proto::msg::StatusReply>(
                    co_await link.client.call(proto::msg::Status{}, options.call_timeout), "STATUS")
                    .status;
      for (const auto& other : links) {
        if (other.get() != &link && other->claimed && other->status.name == st.name) {
          fail("the node at " + link.address + " is named '" + st.name + "' like the node at " +
               other->address + "; node names must differ");
        }
      }
      // Claimed before the next co_await, so two links cannot both take one name.
      link.status = st;
      link.claimed = true;
      const std::uint64_t cursor = log.cursor(st.name, st.incarnation);
      if (st.seq < cursor) {
        // The node's sequence went back (a data directory restored from an older copy): its
        // changes after synced_upto are not in the log, whatever the cursor says.
        KV_LOG(warning) << "node " << st.name << " is at seq " << st.seq << " but the cursor is at "
                        << cursor << ": was its data directory restored? fetching again from "
                        << st.synced_upto;
        log.set_cursor(st.name, st.incarnation, st.synced_upto);
      }
      // A node that applied stamps this log never issued means the log was replaced: never
      // hand those stamps out again.
      log.observe_stamp(st.applied_stamp);
      // Only clients' changes: what we applied ourselves needs no fetch (and would be many).
      co_await link.ws.connect(host, static_cast<std::uint16_t>(st.http_port), options.call_timeout,
                               "/ws?only=local");
      link.applied_stamp = st.applied_stamp;
      link.synced_upto = st.synced_upto;
      link.greeted = false;
      link.purge_sent = 0;
      link.needs_reset = st.applied_stamp > 0 && st.applied_stamp < log.purged_upto();
      if (link.needs_reset) {
        // It may hold items whose tombstones are compacted away: send everything again.
        KV_LOG(warning) << "node " << st.name << " applied stamps up to " << st.applied_stamp
                        << " only, behind the compaction point " << log.purged_upto()
                        << ": full resync";
        link.applied_stamp = 0;
      }
      if (link.ever_connected) ++link.reconnects;
      connected(link);
      link_changed(link);
      backoff = options.backoff_initial;
      up = true;
      co_await run_connected(link);
    } catch (const std::exception& e) {
      if (up) {
        KV_LOG(warning) << "lost node " << link.status.name << " at " << link.address << ": "
                        << describe(e) << "; reconnecting";
      } else {
        KV_LOG(info) << "node at " << link.address << " unavailable: " << describe(e)
                     << "; retrying in " << backoff.count() << " ms";
      }
    }
    link.connected = false;
    link.claimed = false;
    link.client.close();
    link.ws.close();
    if (up) link_changed(link);
    flush_reports();
    wait.expires_after(backoff);
    co_await wait.async_wait(kTuple);
    backoff = std::min(backoff * 2, options.backoff_max);
  }
}

// Runs the watcher, fetcher and sender of one connection side by side. The first to fail takes
// the connection down: closing both sockets fails every pending read and call, and the wake-ups
// release the loops that wait, so all three return before the link reconnects.
asio::awaitable<void> Syncer::Impl::run_connected(Link& link) {
  auto running = std::make_shared<int>(3);
  auto first_error = std::make_shared<std::string>();
  auto on_end = [this, &link, running, first_error](const char* what, std::exception_ptr e) {
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
      link.ws.close();
      link.fetch.notify();
      link.send.notify();
    }
    if (--*running == 0) link.ended.notify();
  };
  asio::co_spawn(executor, watch(link), [on_end](std::exception_ptr e) { on_end("watch", e); });
  asio::co_spawn(executor, fetch_loop(link),
                 [on_end](std::exception_ptr e) { on_end("fetch", e); });
  asio::co_spawn(executor, send_loop(link), [on_end](std::exception_ptr e) { on_end("send", e); });
  co_await link.ended.wait();
  throw std::runtime_error(first_error->empty() ? "connection closed" : *first_error);
}

void Syncer::Impl::connected(Link& link) {
  link.connected = true;
  const auto& st = link.status;
  KV_LOG(info) << "connected to node " << st.name << " at " << link.address << " (version "
               << st.version << ", applied stamp " << st.applied_stamp << ", cursor "
               << log.cursor(st.name, st.incarnation) << " of seq " << st.seq << ")";
  link.fetch.notify();
  link.send.notify();
  if (!link.ever_connected) {
    link.ever_connected = true;
    if (may_stamp()) {
      for (auto& l : links) l->fetch.notify();
    }
    if (on_all_connected &&
        std::all_of(links.begin(), links.end(), [](const auto& l) { return l->ever_connected; })) {
      auto cb = std::move(on_all_connected);
      on_all_connected = nullptr;
      cb();
    }
  }
}

asio::awaitable<void> Syncer::Impl::watch(Link& link) {
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
      KV_LOG(warning) << "node " << link.status.name << " sent a notification we cannot parse";
      continue;
    }
    link.seq_seen = std::max(link.seq_seen, n->seq);
    // Local changes (and the greeting) may need a fetch; changes we applied never do (no echo).
    if (n->kind != Notification::Kind::kSynced &&
        n->seq > log.cursor(link.status.name, link.status.incarnation)) {
      link.fetch.notify();
    }
  }
}

asio::awaitable<void> Syncer::Impl::fetch_loop(Link& link) {
  const std::string& name = link.status.name;
  const std::uint64_t inc = link.status.incarnation;
  for (;;) {
    co_await link.fetch.wait();
    if (!link.connected) co_return;
    if (!may_stamp()) continue;  // woken again when every node has reported
    for (;;) {
      const std::uint64_t cursor = log.cursor(name, inc);
      auto got = expect<proto::msg::Changes>(
          co_await link.client.call(proto::msg::Fetch{cursor, options.fetch_limit},
                                    options.call_timeout),
          "FETCH");
      ++link.fetches;
      KV_LOG(debug) << "fetched " << got.changes.size() << " changes from " << name << " after "
                    << cursor << " (up to seq " << got.seq_high << ")";
      if (got.changes.empty() && got.seq_high <= cursor) break;
      auto stamped = log.stamp(name, inc, got.changes, got.seq_high);
      for (const auto& c : stamped.dropped) {
        KV_LOG(info) << "sync " << name << ":" << c.item.id << " update v" << c.item.version
                     << " dropped: the item was deleted first";
      }
      if (stamped.stamp != 0) {
        stamp_times.emplace(stamped.stamp, Clock::now());
        changes_stamped += stamped.accepted.size();
        if (listening()) {
          std::set<std::string> created(stamped.created.begin(), stamped.created.end());
          json::array changes;
          for (const auto& c : stamped.accepted) {
            changes.push_back(json::object{{"origin_seq", c.origin_seq},
                                           {"op", c.item.deleted             ? "delete"
                                                  : created.count(c.item.id) ? "create"
                                                                             : "update"},
                                           {"item", item_json(c.item)}});
          }
          emit(json::object{{"type", "stamp"},
                            {"stamp", stamped.stamp},
                            {"origin", name},
                            {"changes", std::move(changes)}});
        }
        Report& r = reports[stamped.stamp];
        r.origin = name;
        std::set<std::string> created(stamped.created.begin(), stamped.created.end());
        std::map<std::string, std::uint64_t> local_version;
        for (const auto& c : got.changes) local_version[c.item.id] = c.item.version;
        for (const auto& c : stamped.accepted) {
          std::ostringstream line;
          line << name << ":" << c.item.id << " "
               << (c.item.deleted             ? "delete"
                   : created.count(c.item.id) ? "create"
                                              : "update")
               << " " << quoted(c.item.title) << (c.item.completed ? " completed" : "") << " v"
               << local_version[c.item.id] << " -> stamp " << c.stamp;
          r.lines.push_back(line.str());
        }
      }
      for (auto& l : links) l->send.notify();  // the origin too: its synced_upto moved
    }
  }
}

asio::awaitable<void> Syncer::Impl::send_loop(Link& link) {
  const std::string& name = link.status.name;
  const std::uint64_t inc = link.status.incarnation;
  for (;;) {
    co_await link.send.wait();
    if (!link.connected) co_return;
    for (;;) {
      const std::uint64_t cursor = log.cursor(name, inc);
      if (link.greeted && link.applied_stamp >= log.counter() && link.synced_upto >= cursor &&
          link.purge_sent >= log.purged_upto()) {
        break;
      }
      link.greeted = true;
      auto batch = log.next_batch(link.applied_stamp, options.batch_limit, cursor);
      batch.reset = link.needs_reset;
      // Up to the latest stamp, the node now holds every node's changes up to its cursor.
      if (batch.upto_stamp >= log.counter()) {
        for (auto& m : log.marks()) {  // the configured nodes' cursors only
          if (batch.marks.size() < proto::kMaxSessionMarks &&
              std::any_of(links.begin(), links.end(),
                          [&m](const auto& l) { return l->status.name == m.node; })) {
            batch.marks.push_back(std::move(m));
          }
        }
      }
      batch.stamp_high = log.counter();
      KV_LOG(trace) << "sending " << batch.changes.size() << " changes up to stamp "
                    << batch.upto_stamp << " to " << name;
      const std::uint64_t batch_purge = batch.purge_upto;
      auto applied = expect<proto::msg::Applied>(
          co_await link.client.call(std::move(batch), options.call_timeout), "APPLY");
      link.applied_stamp = applied.applied_stamp;
      link.synced_upto = applied.synced_upto;
      link.needs_reset = false;
      link.purge_sent = batch_purge;
      ++link.applies;
      emit(json::object{{"type", "applied"},
                        {"node", name},
                        {"stamp", link.applied_stamp},
                        {"changed", applied.changed}});
      prune_stamp_times();
      KV_LOG(debug) << name << " applied up to stamp " << link.applied_stamp << " ("
                    << applied.changed << " changed)";
      flush_reports();
      compact();
    }
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
  return std::all_of(impl_->links.begin(), impl_->links.end(),
                     [](const auto& l) { return l->ever_connected; });
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
      for (const auto& l : im.links) {
        out.push_back({{{"node", l->status.name}, {"address", l->address}}, value(im, *l)});
      }
    };
  };
  m.gauge_family("kvsync_node_connected", "1 while the node's link is up",
                 per_link([](const Impl&, const Link& l) { return l.connected ? 1.0 : 0.0; }));
  m.gauge_family(
      "kvsync_node_applied_stamp", "The highest stamp the node has applied",
      per_link([](const Impl&, const Link& l) { return static_cast<double>(l.applied_stamp); }));
  m.gauge_family(
      "kvsync_node_lag_stamps", "Stamps handed out that the node has not applied",
      per_link([](const Impl& im, const Link& l) {
        return static_cast<double>(im.log.counter() - std::min(im.log.counter(), l.applied_stamp));
      }));
  m.gauge_family("kvsync_node_unfetched_changes",
                 "Local changes the node announced that are not yet stamped",
                 per_link([](const Impl& im, const Link& l) {
                   if (l.status.name.empty()) return 0.0;
                   const auto cursor = im.log.cursor(l.status.name, l.status.incarnation);
                   return static_cast<double>(l.seq_seen - std::min(l.seq_seen, cursor));
                 }));
  m.gauge_family("kvsync_node_lag_seconds",
                 "Age of the oldest stamp the node has not applied (0: caught up)",
                 per_link([](const Impl& im, const Link& l) { return im.lag_seconds(l); }));
  m.counter_family(
      "kvsync_node_reconnects_total", "Times the link came up again after the first",
      per_link([](const Impl&, const Link& l) { return static_cast<double>(l.reconnects); }));
  m.counter_family(
      "kvsync_node_fetches_total", "FETCH calls answered by the node",
      per_link([](const Impl&, const Link& l) { return static_cast<double>(l.fetches); }));
  m.counter_family(
      "kvsync_node_applies_total", "APPLY calls acknowledged by the node",
      per_link([](const Impl&, const Link& l) { return static_cast<double>(l.applies); }));
  m.counter_family("kvsync_node_received_bytes_total", "Bytes read from the node (binary protocol)",
                   per_link([](const Impl&, const Link& l) {
                     return static_cast<double>(l.client.traffic().received);
                   }));
  m.counter_family("kvsync_node_sent_bytes_total", "Bytes written to the node (binary protocol)",
                   per_link([](const Impl&, const Link& l) {
                     return static_cast<double>(l.client.traffic().sent);
                   }));
}

void Syncer::Impl::flush_reports() {
  while (!reports.empty()) {
    auto it = reports.begin();
    std::vector<std::string> applied, waiting;
    for (const auto& l : links) {
      const std::string& n = l->connected ? l->status.name : l->address;
      if (l->connected && l->applied_stamp >= it->first) {
        applied.push_back(n);
      } else if (l->connected) {
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
