#include "sync/syncer.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <map>
#include <set>
#include <sstream>

#include "common/log.hpp"
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
};

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
    for (const auto& a : options.nodes) links.push_back(std::make_unique<Link>(ex, a));
  }

  asio::any_io_executor executor;
  SyncerOptions options;
  SyncLog log;
  std::vector<std::unique_ptr<Link>> links;
  std::map<std::uint64_t, Report> reports;  // by stamp, awaiting delivery
  std::function<void()> on_all_connected;

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
      connected(link);
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
      KV_LOG(debug) << "fetched " << got.changes.size() << " changes from " << name << " after "
                    << cursor << " (up to seq " << got.seq_high << ")";
      if (got.changes.empty() && got.seq_high <= cursor) break;
      auto stamped = log.stamp(name, inc, got.changes, got.seq_high);
      for (const auto& c : stamped.dropped) {
        KV_LOG(info) << "sync " << name << ":" << c.item.id << " update v" << c.item.version
                     << " dropped: the item was deleted first";
      }
      if (stamped.stamp != 0) {
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
      KV_LOG(trace) << "sending " << batch.changes.size() << " changes up to stamp "
                    << batch.upto_stamp << " to " << name;
      const std::uint64_t batch_purge = batch.purge_upto;
      auto applied = expect<proto::msg::Applied>(
          co_await link.client.call(std::move(batch), options.call_timeout), "APPLY");
      link.applied_stamp = applied.applied_stamp;
      link.synced_upto = applied.synced_upto;
      link.needs_reset = false;
      link.purge_sent = batch_purge;
      KV_LOG(debug) << name << " applied up to stamp " << link.applied_stamp << " ("
                    << applied.changed << " changed)";
      flush_reports();
      compact();
    }
  }
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
