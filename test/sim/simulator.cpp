#include "sim/simulator.hpp"

#include <algorithm>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <sstream>

#include "core/item.hpp"
#include "core/protocol.hpp"
#include "core/store_error.hpp"
#include "node/requests.hpp"
#include "node/store.hpp"
#include "sim/mem_disk.hpp"
#include "sync/sync_log.hpp"
#include "sync/sync_machine.hpp"

namespace kv::sim {

namespace {

using proto::msg::Error;

// ---- Randomness -------------------------------------------------------------------------------
// Each subsystem draws from its own generator, derived from the seed and its name, so that a
// draw added in one place does not reshuffle the others.
std::uint64_t splitmix(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

class Rng {
 public:
  Rng(std::uint64_t seed, std::string_view stream) : state_(seed) {
    for (char c : stream) state_ = state_ * 131 + static_cast<unsigned char>(c);
    splitmix(state_);
  }
  std::uint64_t next() { return splitmix(state_); }
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : next() % n; }
  bool chance(double p) { return static_cast<double>(next() >> 11) * 0x1.0p-53 < p; }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[below(v.size())];
  }

 private:
  std::uint64_t state_;
};

// ---- The seed's choice of cluster and fault mix (swarm testing) -------------------------------
struct Swarm {
  std::size_t nodes = 2;
  std::size_t fetch_limit = 1000;
  std::size_t batch_limit = 1000;
  std::size_t apply_window = 64;  // APPLYs in flight per link
  bool syncer_sync = true;        // --durability sync on kvsync
  // Fault kinds this seed uses; each seed draws its own mix, so rare combinations come up.
  bool node_crash = false;
  bool syncer_crash = false;
  bool log_loss = false;     // the syncer's data directory is lost (a new, empty log)
  bool log_restore = false;  // ... or put back from an older copy
  bool power_loss = false;   // the syncer's machine loses what was not synced
  bool node_wipe = false;
  bool node_restore = false;
  bool reconfigure = false;  // a node leaves the syncer's configuration and comes back
  bool partition = false;
  bool cut = false;  // a connection fails; what it carried may still arrive late
  bool disk_full = false;
  bool duplicate = false;  // a request is delivered twice
  int write_weight = 30;
  int commit_weight = 30;
  int net_weight = 60;
  int fault_weight = 4;

  // The fault switches, by name (fault_kinds() lists the same names in this order).
  std::vector<std::pair<bool*, const char*>> switches() {
    return {{&node_crash, "node-crash"},     {&syncer_crash, "syncer-crash"},
            {&log_loss, "log-loss"},         {&log_restore, "log-restore"},
            {&power_loss, "power-loss"},     {&node_wipe, "node-wipe"},
            {&node_restore, "node-restore"}, {&reconfigure, "reconfigure"},
            {&partition, "partition"},       {&cut, "cut"},
            {&disk_full, "disk-full"},       {&duplicate, "duplicate"}};
  }

  std::string describe() {
    std::ostringstream o;
    o << nodes << " nodes, fetch " << fetch_limit << ", batch " << batch_limit << ", window "
      << apply_window << ", syncer " << (syncer_sync ? "sync" : "async") << ", faults:";
    bool any = false;
    for (const auto& [on, name] : switches()) {
      if (*on) {
        o << " " << name;
        any = true;
      }
    }
    if (!any) o << " none";
    return o.str();
  }

  // --faults: exactly these kinds (the ones that need a syncer crash get one).
  void force(const std::vector<std::string>& kinds) {
    for (auto& [on, name] : switches()) {
      *on = std::find(kinds.begin(), kinds.end(), name) != kinds.end();
    }
    if (log_loss || log_restore || power_loss || reconfigure) syncer_crash = true;
  }

  static Swarm draw(Rng& r) {
    Swarm s;
    s.nodes = 2 + r.below(4);
    s.fetch_limit = r.chance(0.7) ? 1 + r.below(4) : 1000;
    s.batch_limit = r.chance(0.7) ? 1 + r.below(4) : 1000;
    s.syncer_sync = !r.chance(0.25);
    if (!r.chance(0.1)) {  // one seed in ten runs without faults
      s.node_crash = r.chance(0.6);
      s.syncer_crash = r.chance(0.5);
      s.log_loss = s.syncer_crash && r.chance(0.3);
      s.log_restore = s.syncer_crash && r.chance(0.3);
      s.power_loss = s.syncer_crash && r.chance(0.6);
      s.node_wipe = r.chance(0.3);
      s.node_restore = r.chance(0.3);
      s.reconfigure = s.syncer_crash && r.chance(0.3);
      s.partition = r.chance(0.5);
      s.cut = r.chance(0.5);
      s.disk_full = r.chance(0.3);
      s.duplicate = r.chance(0.3);
      // Losing the syncer's log is survived by rebuilding it from the nodes, which takes every
      // configured node still holding what it held: not together with losing a node's data or
      // leaving a node out (docs/sync.md, "What the rules survive"). A seed draws one family.
      if ((s.log_loss || s.log_restore || s.power_loss) &&
          (s.node_wipe || s.node_restore || s.reconfigure)) {
        if (r.chance(0.5)) {
          s.log_loss = s.log_restore = s.power_loss = false;
        } else {
          s.node_wipe = s.node_restore = s.reconfigure = false;
        }
      }
    }
    s.write_weight = 10 + static_cast<int>(r.below(40));
    s.commit_weight = 10 + static_cast<int>(r.below(40));
    s.fault_weight = 1 + static_cast<int>(r.below(8));
    // Drawn last, so that the draws above stay as they were: a seed the docs name keeps its
    // cluster and faults (its steps differ when it draws a window other than the old 4).
    s.apply_window = r.chance(0.5) ? 1 + r.below(4) : 64;
    return s;
  }
};

// ---- What clients did -------------------------------------------------------------------------
struct Write {
  enum class Kind { kCreate, kUpdate, kDelete };
  // kDestroyed: acknowledged, then lost with its node's data (wiped, or restored from a copy
  // older than it) before the syncer's log held it; nothing could have saved it.
  enum class Outcome { kPending, kAcked, kFailed, kUnknown, kDestroyed };
  Kind kind = Kind::kCreate;
  std::size_t node = 0;
  std::uint64_t incarnation = 0;
  std::uint64_t seq = 0;  // its change's sequence number on the node
  std::string id;
  std::string title;    // the value it wrote (create, update); every title is unique
  std::string parent;   // the title the node held when it was made (update, delete)
  node::Commit commit;  // its change's place in the node's commit pipeline
  Outcome outcome = Outcome::kPending;
  std::uint64_t step = 0;
};

// ---- The network ------------------------------------------------------------------------------
// One binary connection (with its WebSocket subscription) between the syncer and a node. Each
// direction is in order, as over TCP. When the syncer gives up on a connection or dies, what it
// had sent may still reach the node later (kernel buffers across a partition), or never.
struct Conn {
  std::uint64_t id = 0;
  std::size_t link = 0;
  std::size_t node = 0;
  std::uint64_t life = 0;   // the syncer process that opened it
  bool syncer_open = true;  // the syncer still reads it
  bool node_open = true;    // the node still serves it
  // Requests carry an id, and so do their answers; the syncer's client closes a connection on
  // an answer it is not waiting for (NodeClient), such as the second answer to a request that
  // the network delivered twice.
  std::deque<std::pair<std::uint64_t, proto::Request>> to_node;
  std::deque<std::uint64_t> outstanding;  // ids the syncer waits for, in order
  std::uint64_t next_id = 1;
  struct Held {
    std::uint64_t id;
    proto::MsgType type;
    node::Commit commit;  // answered once the node's store completed it
    proto::Response response;
  };
  std::deque<Held> at_node;
  struct Answer {
    std::uint64_t id;
    proto::MsgType type;
    proto::Response response;
  };
  std::deque<Answer> to_syncer;
  // FETCH travels on a connection of its own (kvsync's fetcher): answered at once, and its
  // answers reach the syncer in no fixed order with the APPLY answers above.
  std::deque<Answer> fetch_answers;
  std::deque<std::uint64_t> fetch_outstanding;
  std::deque<std::pair<Notification::Kind, std::uint64_t>> notes;
  std::uint64_t hold_until = 0;  // an orphaned connection delivers nothing before then
};

// ---- The world --------------------------------------------------------------------------------
class World {
 public:
  World(std::uint64_t seed, const Options& options)
      : seed_(seed),
        options_(options),
        r_swarm_(seed, "swarm"),
        r_step_(seed, "step"),
        r_client_(seed, "client"),
        r_net_(seed, "net"),
        r_fault_(seed, "fault"),
        r_disk_(seed, "disk") {
    swarm_ = Swarm::draw(r_swarm_);
    if (options.faults_given) swarm_.force(options.faults);
    report_.seed = seed;
    report_.config = swarm_.describe();
    for (std::size_t i = 0; i < swarm_.nodes; ++i) {
      Node n;
      n.name = std::string(1, static_cast<char>('a' + i));
      n.dir = "/sim/" + n.name;
      nodes_.push_back(std::move(n));
    }
    for (std::size_t i = 0; i < nodes_.size(); ++i) start_node(i);
    std::vector<std::size_t> all(nodes_.size());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
    start_syncer(all);
  }

  Report run() {
    for (step_ = 1; step_ <= options_.steps && report_.anomalies.empty(); ++step_) {
      one_step(/*faults=*/true);
      if (step_ % 25 == 0) check_running();
    }
    if (report_.anomalies.empty()) settle();
    report_.steps = step_;
    for (const auto& w : writes_) {
      if (w.outcome == Write::Outcome::kAcked) ++report_.writes_acked;
      if (w.outcome == Write::Outcome::kFailed) ++report_.writes_failed;
      if (w.outcome == Write::Outcome::kUnknown) ++report_.writes_unknown;
    }
    report_.tail.assign(tail_.begin(), tail_.end());
    return report_;
  }

 private:
  struct Node {
    std::string name;
    std::string dir;
    std::unique_ptr<node::Store> store;  // null while the process is down
    std::uint64_t down_until = 0;        // when it may be started again
    bool partitioned = false;
    std::vector<std::size_t> waiting;       // writes awaiting their commit
    std::optional<MemDisk::Contents> copy;  // an older copy of its directory, for a restore
    std::uint64_t copy_seq = 0;             // the node's durable seq when it was copied
    std::uint64_t copy_incarnation = 0;     // and its incarnation then
    std::set<std::string> deleted_here;     // ids it held deleted, in this copy of its data
    // Stamped deletes it announced before they were durable (a crash or a failed commit may
    // take them back): they count once their commit is durable.
    std::vector<std::pair<std::string, node::Commit>> deletes_in_flight;
    std::uint64_t full_until = 0;  // its disk is full until then
  };
  struct Syncer {
    std::unique_ptr<sync::SyncLog> log;
    std::unique_ptr<sync::SyncMachine> machine;
    std::vector<std::size_t> nodes;       // the node of each link (its configuration)
    std::vector<std::uint64_t> conn;      // the connection of each link (0: none)
    std::vector<std::uint64_t> retry_at;  // when each link may connect again
    std::uint64_t life = 0;
    std::uint64_t down_until = 0;
    bool up = false;
    std::optional<MemDisk::Contents> copy;  // an older copy of its directory
    // A sync of its log in flight on its sync thread: the stamp writes it covers. Other steps
    // (more stamps, a crash, a power loss) may come between its start and its end.
    std::optional<std::uint64_t> sync_point;
  };

  // ---- Logging --------------------------------------------------------------------------------
  void event(const std::string& what) {
    std::ostringstream line;
    line << "[" << step_ << " t=" << now_ << "] " << what;
    if (options_.trace) *options_.trace << line.str() << "\n";
    tail_.push_back(line.str());
    if (tail_.size() > 60) tail_.pop_front();
  }
  void anomaly(const std::string& kind, const std::string& message) {
    if (report_.anomalies.size() >= 20) return;
    report_.anomalies.push_back({kind, message, step_});
    event("ANOMALY " + kind + ": " + message);
  }
  void fault(const std::string& kind, const std::string& what) {
    ++report_.faults[kind];
    event("fault " + kind + ": " + what);
  }

  // ---- Nodes ----------------------------------------------------------------------------------
  bool node_up(std::size_t n) const { return nodes_[n].store != nullptr; }

  void start_node(std::size_t n) {
    Node& node = nodes_[n];
    node::StoreOptions o;
    o.dir = node.dir;
    o.name = node.name;
    o.sync_writes = true;
    o.background_commit = true;
    o.await_syncer = true;
    o.seams.disk = &disk_;
    o.seams.now = [this] {
      return std::chrono::steady_clock::time_point(std::chrono::milliseconds(now_));
    };
    o.seams.random = [this] { return r_disk_.next(); };
    o.seams.manual_commit = true;
    try {
      node.store = std::make_unique<node::Store>(o);
    } catch (const StoreError& e) {
      event("node " + node.name + " cannot start: " + e.what());
      node.down_until = now_ + 500;
      return;
    }
    node.store->set_observer([this, n](const node::StoreEvent& e) { on_store_event(n, e); });
    const auto st = node.store->status();
    event("node " + node.name + " started: incarnation " + std::to_string(st.incarnation % 10000) +
          ", seq " + std::to_string(st.seq) + ", applied " + std::to_string(st.applied_stamp));
  }

  void stop_node(std::size_t n, const std::string& why) {
    Node& node = nodes_[n];
    if (!node.store) return;
    node.store->set_observer(nullptr);
    node.store.reset();  // the committer's queue is lost: what was not durable is gone
    node.deletes_in_flight.clear();
    for (auto w : node.waiting) writes_[w].outcome = Write::Outcome::kUnknown;
    node.waiting.clear();
    for (auto& [id, c] : conns_) {
      if (c.node != n || !c.node_open) continue;
      c.node_open = false;
      c.to_node.clear();
      c.at_node.clear();
    }
    node.down_until = now_ + 1 + r_fault_.below(3000);
    event("node " + node.name + " down (" + why + ")");
  }

  // Node n's data from incarnation `inc` after `kept_seq` is gone (wiped, or restored from an
  // older copy): its writes there that the syncer's log did not hold yet are lost for good.
  void destroy(std::size_t n, std::uint64_t inc, std::uint64_t kept_seq) {
    auto list = by_origin_.find({nodes_[n].name, inc});
    if (list == by_origin_.end()) return;
    for (auto idx : list->second) {
      Write& w = writes_[idx];
      if (w.seq <= kept_seq || w.outcome != Write::Outcome::kAcked || carried(w)) continue;
      w.outcome = Write::Outcome::kDestroyed;
      event("write " + w.title + " (" + w.id + ") is lost with " + nodes_[n].name + "'s data");
      if (w.kind == Write::Kind::kCreate) {
        auto it = acked_creates_.find(w.id);
        if (it != acked_creates_.end() && it->second == idx) acked_creates_.erase(it);
      }
    }
  }

  // Called by the store for every local change once durable, and every stamped change once
  // applied in memory (node::Store::set_observer).
  void on_store_event(std::size_t n, const node::StoreEvent& e) {
    Node& node = nodes_[n];
    if (e.item.deleted && e.kind == node::StoreEvent::Kind::kSynced) {
      node.deletes_in_flight.emplace_back(e.item.id, node.store->last_commit());
      deleted_ids_.insert(e.item.id);
    } else if (e.item.deleted) {
      node.deleted_here.insert(e.item.id);
      deleted_ids_.insert(e.item.id);
    } else if (node.deleted_here.count(e.item.id)) {
      anomaly("resurrected", "node " + node.name + " holds " + e.item.id + " again (" +
                                 (e.kind == node::StoreEvent::Kind::kLocal ? "local " : "synced ") +
                                 e.op + ", stamp " + std::to_string(e.stamp) +
                                 ") after it had deleted it");
    }
    if (e.kind != node::StoreEvent::Kind::kLocal) return;
    for (auto& [id, c] : conns_) {
      if (c.node == n && c.node_open && c.syncer_open) {
        c.notes.emplace_back(Notification::Kind::kLocal, e.seq);
      }
    }
  }

  // A client's write on node n.
  void client_write(std::size_t n) {
    Node& node = nodes_[n];
    auto& store = *node.store;
    Write w;
    w.node = n;
    w.step = step_;
    // Mostly the same few items, so that nodes write them concurrently.
    const int what = static_cast<int>(r_client_.below(100));
    std::string id;
    if (what < 25 || known_ids_.empty()) {
      w.kind = Write::Kind::kCreate;
    } else {
      const std::size_t window = std::min<std::size_t>(known_ids_.size(), 6);
      id = known_ids_[known_ids_.size() - 1 - r_client_.below(window)];
      if (r_client_.chance(0.3)) {
        std::vector<std::string> live;
        for (const auto& it : store.dump()) {
          if (!it.item.deleted) live.push_back(it.item.id);
        }
        if (!live.empty()) id = r_client_.pick(live);
      }
      w.kind = what < 88 ? Write::Kind::kUpdate : Write::Kind::kDelete;
    }
    w.title = "w" + std::to_string(writes_.size());
    const node::Commit before = store.last_commit();
    node::Result<Item> r = node::Refusal{};
    if (w.kind == Write::Kind::kCreate) {
      r = store.create(w.title);
    } else {
      w.id = id;
      if (auto cur = store.get(id); std::holds_alternative<Item>(cur)) {
        w.parent = std::get<Item>(cur).title;
      }
      if (w.kind == Write::Kind::kUpdate) {
        proto::msg::Update u{id, std::nullopt, w.title};
        if (r_client_.chance(0.4)) u.completed = r_client_.chance(0.5);
        r = store.update(u);
      } else {
        r = store.remove(id);
      }
    }
    if (std::holds_alternative<node::Refusal>(r)) {
      w.outcome = Write::Outcome::kFailed;
      writes_.push_back(std::move(w));
      return;
    }
    const Item& it = std::get<Item>(r);
    w.id = it.id;
    w.seq = store.seq();
    w.incarnation = store.incarnation();
    if (store.last_commit() != before) w.commit = store.last_commit();
    if (w.kind != Write::Kind::kDelete) title_writer_[w.title] = writes_.size();
    if (w.kind == Write::Kind::kCreate) known_ids_.push_back(w.id);
    by_origin_[{nodes_[n].name, w.incarnation}].push_back(writes_.size());
    node.waiting.push_back(writes_.size());
    event("client " + node.name + " " +
          (w.kind == Write::Kind::kCreate   ? "create"
           : w.kind == Write::Kind::kUpdate ? "update"
                                            : "delete") +
          " " + w.id + " " + w.title + " seq " + std::to_string(w.seq));
    writes_.push_back(std::move(w));
    settle_writes(n);
  }

  // Writes whose commit completed are acknowledged (or failed).
  void settle_writes(std::size_t n) {
    Node& node = nodes_[n];
    auto& store = *node.store;
    std::erase_if(node.deletes_in_flight, [&](const auto& d) {
      if (!store.completed(d.second)) return false;
      if (!store.outcome(d.second)) node.deleted_here.insert(d.first);
      return true;
    });
    std::vector<std::size_t> still;
    for (auto idx : node.waiting) {
      Write& w = writes_[idx];
      if (!store.completed(w.commit)) {
        still.push_back(idx);
        continue;
      }
      if (store.outcome(w.commit)) {
        w.outcome = Write::Outcome::kFailed;
        continue;
      }
      w.outcome = Write::Outcome::kAcked;
      if (w.kind == Write::Kind::kCreate) {
        auto [it, fresh] = acked_creates_.emplace(w.id, idx);
        if (!fresh) {
          anomaly("id-reused", "id " + w.id + " was given to " + writes_[it->second].title +
                                   " and again to " + w.title);
        }
      }
    }
    node.waiting = std::move(still);
  }

  void commit(std::size_t n) {
    Node& node = nodes_[n];
    const std::size_t queued = node.store->queued_commits();
    const std::size_t k = 1 + r_step_.below(queued);
    node.store->commit_next(k);
    event("node " + node.name + " commits " + std::to_string(k) + " of " + std::to_string(queued));
    settle_writes(n);
    release_answers(n);
  }

  // A node answers a connection's requests in order, each once its change is durable.
  void release_answers(std::size_t n) {
    auto& store = *nodes_[n].store;
    for (auto& [id, c] : conns_) {
      if (c.node != n || !c.node_open) continue;
      while (!c.at_node.empty()) {
        auto& h = c.at_node.front();
        if (!store.completed(h.commit)) break;
        if (auto e = store.outcome(h.commit)) h.response = node::to_wire(std::move(*e));
        c.to_syncer.push_back(Conn::Answer{h.id, h.type, std::move(h.response)});
        c.at_node.pop_front();
      }
    }
  }

  void deliver_request(Conn& c, bool duplicate) {
    Node& node = nodes_[c.node];
    auto [id, req] = c.to_node.front();
    if (!duplicate) c.to_node.pop_front();
    const auto type = proto::type_of(req);
    auto a = node::answer(*node.store, req, node::ServerFacts{});
    std::string what = type == proto::MsgType::kFetch   ? "FETCH"
                       : type == proto::MsgType::kApply ? "APPLY"
                                                        : "DUMP";
    if (auto* e = std::get_if<Error>(&a.response)) what += " -> error: " + e->message;
    if (auto* ap = std::get_if<proto::msg::Apply>(&req)) {
      what += " upto " + std::to_string(ap->upto_stamp) + " synced " +
              std::to_string(ap->synced_upto) + " (" + std::to_string(ap->changes.size()) +
              " changes" + (ap->reset ? ", reset" : "") + (ap->rebirth ? ", rebirth" : "") +
              (ap->adopt ? ", adopt" : "") + ")";
      if (ap->marks_current) {
        what += " marks";
        for (const auto& m : ap->marks) what += " " + m.node + ":" + std::to_string(m.seq);
      }
    }
    if (auto* f = std::get_if<proto::msg::Changes>(&a.response)) {
      what += " -> " + std::to_string(f->changes.size()) + " changes, seq_high " +
              std::to_string(f->seq_high);
    }
    event("node " + node.name + " gets " + what + " on conn " + std::to_string(c.id) +
          (c.syncer_open ? "" : " (from a syncer that gave up on it)") +
          (duplicate ? " (duplicate)" : ""));
    if (type == proto::MsgType::kFetch) {
      c.fetch_answers.push_back(Conn::Answer{id, type, std::move(a.response)});
    } else {
      c.at_node.push_back(Conn::Held{id, type, a.commit, std::move(a.response)});
    }
    release_answers(c.node);
    settle_writes(c.node);
  }

  // ---- The syncer -----------------------------------------------------------------------------
  std::string syncer_dir() const { return "/sim/syncer"; }

  void start_syncer(std::vector<std::size_t> config, bool restored_log = false) {
    Syncer& s = syncer_;
    sync::SyncLogOptions lo;
    lo.dir = syncer_dir();
    lo.sync_writes = swarm_.syncer_sync;
    lo.disk = &disk_;
    lo.random = [this] { return r_disk_.next(); };
    lo.boot_id = [this] { return "boot-" + std::to_string(syncer_boots_); };
    try {
      s.log = std::make_unique<sync::SyncLog>(lo);
    } catch (const StoreError& e) {
      anomaly("syncer-start", e.what());
      return;
    }
    for (const auto& name : forget_) {
      s.log->forget(name);
      event("operator: kvsync --forget-node " + name);
    }
    forget_.clear();
    std::vector<std::string> addresses;
    for (auto n : config) addresses.push_back(nodes_[n].name);
    sync::MachineOptions mo;
    mo.fetch_limit = swarm_.fetch_limit;
    mo.batch_limit = swarm_.batch_limit;
    mo.apply_window = swarm_.apply_window;
    mo.restored_log = restored_log;
    s.machine = std::make_unique<sync::SyncMachine>(*s.log, addresses, mo);
    s.nodes = std::move(config);
    s.conn.assign(s.nodes.size(), 0);
    s.retry_at.assign(s.nodes.size(), now_);
    ++s.life;
    s.up = true;
    std::string names;
    for (auto n : s.nodes) names += nodes_[n].name;
    event("syncer started (life " + std::to_string(s.life) + ", nodes " + names + ", stamp " +
          std::to_string(s.log->counter()) + ")");
  }

  void sync_log() {
    Syncer& s = syncer_;
    const std::uint64_t point = *s.sync_point;
    s.sync_point.reset();
    if (auto error = s.log->sync_now()) {
      event("syncer: " + *error);
      return;
    }
    s.log->synced(point);
    event("syncer's log synced (stamp " + std::to_string(s.log->counter()) + ")");
    pump();
  }

  void stop_syncer(const std::string& why) {
    Syncer& s = syncer_;
    if (!s.up) return;
    for (auto& [id, c] : conns_) {
      if (c.life != s.life || !c.syncer_open) continue;
      orphan(c);
    }
    s.machine.reset();
    s.sync_point.reset();
    s.log->leave_open();  // a crash: the log is not closed cleanly
    s.log.reset();
    s.up = false;
    s.down_until = now_ + 1 + r_fault_.below(3000);
    event("syncer down (" + why + ")");
  }

  // The syncer side of a connection is gone: what it sent may still reach the node, maybe long
  // after (sitting in kernel buffers across a partition), and answers go nowhere.
  void orphan(Conn& c) {
    c.syncer_open = false;
    c.to_syncer.clear();
    c.fetch_answers.clear();
    c.notes.clear();
    c.hold_until = now_ + r_net_.below(30000);
  }

  // The syncer gives up on link i's connection (an error, a timeout, or the node closed it).
  void link_down(std::size_t i, const std::string& why) {
    Syncer& s = syncer_;
    if (s.conn[i] != 0) {
      orphan(conns_.at(s.conn[i]));
      s.conn[i] = 0;
    }
    const auto wait = s.machine->on_down(i);
    s.retry_at[i] = now_ + static_cast<std::uint64_t>(wait.count());
    event("syncer: link " + nodes_[s.nodes[i]].name + " down (" + why + "), retry in " +
          std::to_string(wait.count()) + " ms");
  }

  void connect(std::size_t i) {
    Syncer& s = syncer_;
    const std::size_t n = s.nodes[i];
    // STATUS claims the node for the syncer's life, in the same step as the node reads it.
    nodes_[n].store->claim(s.machine->claim().syncer_life);
    const NodeStatus st = nodes_[n].store->status();
    Conn c;
    c.id = next_conn_++;
    c.link = i;
    c.node = n;
    c.life = s.life;
    conns_.emplace(c.id, c);
    s.conn[i] = c.id;
    sync::StatusVerdict verdict;
    try {
      verdict = s.machine->on_status(i, st);
    } catch (const StoreError& e) {
      verdict.refused = e.what();
    }
    for (const auto& w : verdict.warnings) event("syncer warns: " + w);
    if (verdict.refused) {
      event("syncer refuses node " + nodes_[n].name + ": " + *verdict.refused);
      link_down(i, "refused");
      // The operator reads the sentence and does what it says: the node's data directory was
      // wiped or put back from a copy of a life the log forgot.
      if (verdict.refused->find("forget-node") != std::string::npos) {
        forget_.insert(nodes_[n].name);
        stop_syncer("restarted by the operator to forget " + nodes_[n].name);
      }
      return;
    }
    event("syncer: link " + nodes_[n].name + " up on conn " + std::to_string(c.id) + " (seq " +
          std::to_string(st.seq) + ", applied " + std::to_string(st.applied_stamp) + ", synced " +
          std::to_string(st.synced_upto) + ")");
    pump();
  }

  // The syncer sends whatever its machine wants sent now.
  void pump() {
    Syncer& s = syncer_;
    if (!s.up) return;
    for (std::size_t i = 0; i < s.nodes.size(); ++i) {
      if (s.conn[i] == 0) continue;
      Conn& c = conns_.at(s.conn[i]);
      auto send = [&c](proto::Request r) {
        if (std::holds_alternative<proto::msg::Fetch>(r)) {
          c.fetch_outstanding.push_back(c.next_id);
        } else {
          c.outstanding.push_back(c.next_id);
        }
        c.to_node.emplace_back(c.next_id++, std::move(r));
      };
      while (auto f = s.machine->next_fetch(i)) send(*f);
      while (auto a = s.machine->next_apply(i)) send(std::move(*a));
      while (auto d = s.machine->next_dump(i)) send(std::move(*d));
    }
  }

  void deliver_answer(Conn& c, bool fetcher = false) {
    Syncer& s = syncer_;
    auto& answers = fetcher ? c.fetch_answers : c.to_syncer;
    auto& outstanding = fetcher ? c.fetch_outstanding : c.outstanding;
    auto [id, type, response] = std::move(answers.front());
    answers.pop_front();
    if (outstanding.empty() || outstanding.front() != id) {
      link_down(c.link, "an answer to no request in flight");
      return;
    }
    outstanding.pop_front();
    const std::size_t i = c.link;
    const std::string name = nodes_[c.node].name;
    if (auto* e = std::get_if<Error>(&response)) {
      link_down(i, "refused: " + e->message);
      return;
    }
    try {
      if (type == proto::MsgType::kFetch) {
        const auto& got = std::get<proto::msg::Changes>(response);
        auto out = s.machine->on_fetched(i, got);
        const std::uint64_t inc = s.machine->link(i).status.incarnation;
        // A stamp number handed out again (an older log): what it named before is gone.
        if (out.stamped.stamp != 0) forget_stamps_above(out.stamped.stamp - 1);
        for (const auto& a : out.stamped.accepted) {
          carriers_[{a.origin, inc, a.item.id}][a.origin_seq] = a.stamp;
        }
        for (const auto& d : out.stamped.dropped) {
          carriers_[{name, inc, d.item.id}][d.seq] = 0;
        }
        std::string ids;
        for (const auto& a : out.stamped.accepted) {
          ids += " " + a.item.id + (a.item.deleted ? "(del)" : "") + "@" +
                 std::to_string(a.origin_seq);
        }
        for (const auto& d : out.stamped.dropped) ids += " " + d.item.id + "(dropped)";
        event("syncer: fetched " + std::to_string(got.changes.size()) + " [" + ids + " ] from " +
              name + " up to seq " + std::to_string(got.seq_high) +
              (out.stamped.stamp ? " -> stamp " + std::to_string(out.stamped.stamp) : "") +
              ", cursor " +
              std::to_string(s.log->cursor(name, s.machine->link(i).status.incarnation)));
      } else if (type == proto::MsgType::kDump) {
        const auto& dumped = std::get<proto::msg::Dumped>(response);
        event("syncer: " + name + " dumped " + std::to_string(dumped.items.size()) + " items" +
              (dumped.next.empty() ? "" : " (more after " + dumped.next + ")"));
        if (auto done = s.machine->on_dumped(i, dumped)) event("syncer: " + *done);
      } else {
        const auto& applied = std::get<proto::msg::Applied>(response);
        const auto outcome = s.machine->on_applied(i, applied);
        event("syncer: " + name + " applied up to " + std::to_string(applied.applied_stamp) +
              (outcome.compacted ? ", purged " + std::to_string(outcome.compacted) + " up to " +
                                       std::to_string(s.log->purged_upto())
                                 : ""));
        if (outcome.divergence) {
          anomaly("digest-mismatch", *outcome.divergence + differences_with_log(name));
        }
        if (outcome.repaired) event("syncer: " + *outcome.repaired);
      }
    } catch (const StoreError& e) {
      link_down(i, std::string("log write failed: ") + e.what());
      return;
    }
    pump();
  }

  void deliver_note(Conn& c) {
    auto [kind, seq] = c.notes.front();
    c.notes.pop_front();
    syncer_.machine->on_notification(c.link, kind, seq);
    pump();
  }

  // ---- Steps ----------------------------------------------------------------------------------
  struct Choice {
    int weight;
    std::function<void()> act;
  };

  void one_step(bool faults) {
    ++now_;
    // Connections nobody will use again are forgotten.
    std::erase_if(conns_, [](const auto& kv) {
      const Conn& c = kv.second;
      return !c.syncer_open && (c.to_node.empty() || !c.node_open);
    });
    std::vector<Choice> choices;
    auto add = [&choices](int w, std::function<void()> f) {
      if (w > 0) choices.push_back({w, std::move(f)});
    };
    const std::size_t n_nodes = nodes_.size();
    for (std::size_t n = 0; n < n_nodes; ++n) {
      if (!node_up(n)) {
        if (now_ >= nodes_[n].down_until) add(20, [this, n] { start_node(n); });
        continue;
      }
      if (faults)
        add(swarm_.write_weight / static_cast<int>(n_nodes) + 1, [this, n] { client_write(n); });
      if (nodes_[n].store->queued_commits() > 0) {
        add(swarm_.commit_weight, [this, n] { commit(n); });
      }
    }
    Syncer& s = syncer_;
    if (!s.up) {
      if (now_ >= s.down_until) add(20, [this] { restart_syncer(); });
    } else {
      // kvsync's fsync of its log, on a thread of its own: stamps go out once it has ended.
      if (!s.log->all_durable() && !s.sync_point) {
        add(swarm_.commit_weight, [this] {
          syncer_.sync_point = syncer_.log->sync_point();
          event("syncer's log sync starts");
        });
      }
      if (s.sync_point) add(swarm_.commit_weight, [this] { sync_log(); });
      for (std::size_t i = 0; i < s.nodes.size(); ++i) {
        const std::size_t n = s.nodes[i];
        if (s.conn[i] == 0 && now_ >= s.retry_at[i] && node_up(n) && !nodes_[n].partitioned) {
          add(15, [this, i] { connect(i); });
        }
      }
    }
    for (auto& [id, c] : conns_) {
      Conn* cp = &c;
      const bool cut_off = nodes_[c.node].partitioned;
      if (!cut_off && c.node_open && node_up(c.node) && !c.to_node.empty() &&
          (c.syncer_open || now_ >= c.hold_until)) {
        add(swarm_.net_weight, [this, cp] { deliver_request(*cp, false); });
        if (faults && swarm_.duplicate)
          add(2, [this, cp] {
            fault("duplicate", "request delivered twice on conn " + std::to_string(cp->id));
            deliver_request(*cp, true);
          });
      }
      if (!c.syncer_open) {
        // The syncer gave up on it: what it still carries may arrive late, or be reset.
        if (!c.to_node.empty())
          add(faults ? 3 : 30, [this, cp] {
            event("conn " + std::to_string(cp->id) +
                  " reset: " + std::to_string(cp->to_node.size()) + " requests never arrive");
            cp->to_node.clear();
          });
        continue;
      }
      if (cut_off) {
        // The syncer notices a silent connection by its deadlines (call timeout, pings).
        add(3, [this, cp] { link_down(cp->link, "timed out"); });
        continue;
      }
      if (!c.to_syncer.empty()) add(swarm_.net_weight, [this, cp] { deliver_answer(*cp); });
      if (!c.fetch_answers.empty())
        add(swarm_.net_weight, [this, cp] { deliver_answer(*cp, /*fetcher=*/true); });
      if (!c.notes.empty()) add(swarm_.net_weight / 2 + 1, [this, cp] { deliver_note(*cp); });
      if (!c.node_open && c.to_syncer.empty() && c.fetch_answers.empty() && c.notes.empty()) {
        add(30, [this, cp] { link_down(cp->link, "closed by the node"); });
      }
      if (faults && swarm_.cut)
        add(1, [this, cp] {
          fault("cut", "conn " + std::to_string(cp->id) + " fails on the syncer's side");
          link_down(cp->link, "connection failed");
        });
    }
    add(3, [this] {  // time passes (backoffs, retries); kvnode ticks its store every second
      now_ += r_step_.below(1500);
      for (auto& node : nodes_) {
        if (node.store) node.store->tick();
      }
    });
    if (faults) add_faults(add);
    std::uint64_t total = 0;
    for (const auto& c : choices) total += static_cast<std::uint64_t>(c.weight);
    if (total == 0) return;
    std::uint64_t x = r_step_.below(total);
    for (const auto& c : choices) {
      if (x < static_cast<std::uint64_t>(c.weight)) {
        c.act();
        return;
      }
      x -= static_cast<std::uint64_t>(c.weight);
    }
  }

  template <class Add>
  void add_faults(Add& add) {
    const int w = swarm_.fault_weight;
    for (std::size_t n = 0; n < nodes_.size(); ++n) {
      Node& node = nodes_[n];
      if (node_up(n)) {
        if (swarm_.node_crash)
          add(w, [this, n] {
            fault("node-crash", nodes_[n].name);
            stop_node(n, "kill -9");
          });
        if (swarm_.node_restore && !node.copy)
          add(w, [this, n] {
            nodes_[n].copy = disk_.copy(nodes_[n].dir);
            // What the copy holds: the durable changes (in the simulator, the acknowledged ones).
            nodes_[n].copy_seq = 0;
            nodes_[n].copy_incarnation = nodes_[n].store->incarnation();
            auto list = by_origin_.find({nodes_[n].name, nodes_[n].store->incarnation()});
            if (list != by_origin_.end()) {
              for (auto idx : list->second) {
                if (writes_[idx].outcome == Write::Outcome::kAcked) {
                  nodes_[n].copy_seq = std::max(nodes_[n].copy_seq, writes_[idx].seq);
                }
              }
            }
            event("node " + nodes_[n].name + " copied (for a later restore)");
          });
        if (swarm_.node_restore && node.copy)
          add(w, [this, n] {
            fault("node-restore", nodes_[n].name + " from its older copy");
            const std::uint64_t inc = nodes_[n].store->incarnation();
            // What the copy holds of this life of the node: nothing, if it is from another.
            const std::uint64_t copied_seq =
                nodes_[n].copy_incarnation == inc ? nodes_[n].copy_seq : 0;
            stop_node(n, "restored from an older copy");
            destroy(n, inc, copied_seq);
            disk_.restore(nodes_[n].dir, *nodes_[n].copy);
            nodes_[n].copy.reset();
            nodes_[n].deleted_here.clear();
          });
        if (swarm_.node_wipe)
          add(w / 2 + 1, [this, n] {
            fault("node-wipe", nodes_[n].name);
            const std::uint64_t inc = nodes_[n].store->incarnation();
            stop_node(n, "wiped");
            destroy(n, inc, 0);
            disk_.wipe(nodes_[n].dir);
            nodes_[n].copy.reset();  // the operator's backups go with the data they were of
            nodes_[n].deleted_here.clear();
            // The operator tells the syncer (kvsync --forget-node, which restarts it), or it
            // refuses the new directory.
            forget_.insert(nodes_[n].name);
            if (syncer_.up) stop_syncer("restarted by the operator to forget " + nodes_[n].name);
          });
      }
      if (swarm_.partition) {
        if (!node.partitioned) {
          add(w, [this, n] {
            fault("partition", nodes_[n].name);
            nodes_[n].partitioned = true;
          });
        } else {
          add(3 * w, [this, n] {
            event("heal " + nodes_[n].name);
            nodes_[n].partitioned = false;
          });
        }
      }
      if (swarm_.disk_full && disk_.find(node.dir)) {
        Node* np = &node;
        auto& v = *disk_.find(node.dir);
        if (!v.full) {
          add(w, [this, np, n] {
            fault("disk-full", nodes_[n].name);
            disk_.volume(np->dir).full = true;
          });
        } else {
          add(4 * w, [this, np, n] {
            event("disk of " + nodes_[n].name + " has room again");
            disk_.volume(np->dir).full = false;
          });
        }
      }
    }
    Syncer& s = syncer_;
    if (s.up) {
      if (swarm_.syncer_crash)
        add(w, [this] {
          fault("syncer-crash", "kill -9");
          stop_syncer("kill -9");
          if (swarm_.power_loss && r_fault_.chance(0.5)) {
            fault("power-loss", "the syncer's machine loses what it had not synced");
            disk_.power_loss(syncer_dir());
            ++syncer_boots_;
          }
        });
      if (swarm_.log_restore && !s.copy)
        add(w, [this] {
          syncer_.copy = disk_.copy(syncer_dir());
          event("syncer's directory copied (for a later restore)");
        });
    }
  }

  void restart_syncer() {
    bool restored_log = false;
    std::vector<std::size_t> config;
    for (std::size_t n = 0; n < nodes_.size(); ++n) config.push_back(n);
    if (faults_on_) {
      if (swarm_.log_loss && r_fault_.chance(0.25)) {
        fault("log-loss", "the syncer's data directory is gone");
        disk_.wipe(syncer_dir());
      } else if (swarm_.log_restore && syncer_.copy && r_fault_.chance(0.4)) {
        fault("log-restore", "the syncer's data directory is put back from an older copy");
        disk_.restore(syncer_dir(), *syncer_.copy);
        syncer_.copy.reset();
        restored_log = true;  // the operator starts kvsync with --restored-log
      }
      if (swarm_.reconfigure && nodes_.size() > 2 && r_fault_.chance(0.5)) {
        const std::size_t out = r_fault_.below(nodes_.size());
        config.erase(config.begin() + static_cast<std::ptrdiff_t>(out));
        fault("reconfigure", "syncer restarts without node " + nodes_[out].name);
      }
    }
    start_syncer(std::move(config), restored_log);
  }

  // What node `name` holds that the log does not, and the reverse (at most a few): the details
  // a digest mismatch does not give.
  std::string differences_with_log(const std::string& name) const {
    std::map<std::string, std::string> node, log;
    auto text = [](const Item& it) {
      return it.title + (it.completed ? " done" : " open") + " v" + std::to_string(it.version);
    };
    for (const auto& n : nodes_) {
      if (n.name != name || !n.store) continue;
      for (const auto& s : n.store->dump()) {
        if (!s.item.deleted) node[s.item.id] = text(s.item);
      }
    }
    for (const auto& e : syncer_.log->snapshot()) {
      if (!e.item.deleted) log[e.item.id] = text(e.item);
    }
    std::string out;
    int shown = 0;
    for (const auto& [id, v] : node) {
      auto it = log.find(id);
      if (it != log.end() && it->second == v) continue;
      if (++shown > 5) break;
      out += "; " + id + ": node " + v + ", log " + (it == log.end() ? "none" : it->second);
    }
    for (const auto& [id, v] : log) {
      if (node.count(id) || ++shown > 5) continue;
      out += "; " + id + ": node none, log " + v;
    }
    return out;
  }

  // ---- Invariants -----------------------------------------------------------------------------
  // Every stamp names one value: two holders of (id, stamp) hold the same value.
  void check_stamps() {
    std::map<std::pair<std::string, std::uint64_t>, std::pair<std::string, std::string>> seen;
    auto see = [&](const std::string& who, const Item& it, std::uint64_t stamp) {
      const std::string value =
          it.deleted ? "(deleted)" : it.title + (it.completed ? " done" : " open");
      auto [pos, fresh] = seen.try_emplace({it.id, stamp}, value, who);
      if (!fresh && pos->second.first != value) {
        anomaly("stamp-reused", "stamp " + std::to_string(stamp) + " of " + it.id + " is " +
                                    pos->second.first + " on " + pos->second.second + " but " +
                                    value + " on " + who);
      }
    };
    for (std::size_t n = 0; n < nodes_.size(); ++n) {
      if (!node_up(n)) continue;
      for (const auto& s : nodes_[n].store->dump()) {
        if (s.local_seq == 0 && s.stamp > 0) see("node " + nodes_[n].name, s.item, s.stamp);
      }
    }
    // A log that is being rebuilt, or not yet checked against every node (new, restored), may
    // hold what an older copy stamped; it hands none of it out before the rebuild replaces it.
    if (syncer_.up && !syncer_.machine->rebuilding() && !syncer_.log->unverified()) {
      for (const auto& e : syncer_.log->snapshot()) see("the log", e.item, e.stamp);
    }
  }

  // The change that carried a node's write into the log: the first change of that item from
  // that node, at or after the write, that the log took in (its stamp) or dropped (0). nullopt:
  // the log never saw it.
  std::optional<std::uint64_t> carried(const Write& w) const {
    auto it = carriers_.find({nodes_[w.node].name, w.incarnation, w.id});
    if (it == carriers_.end()) return std::nullopt;
    auto c = it->second.lower_bound(w.seq);
    if (c == it->second.end()) return std::nullopt;
    return c->second;
  }

  // Stamps above `counter` that a lost or older log handed out, when a log hands the numbers
  // out again: what they named is gone (no node held it, or the log would have rebuilt past
  // them).
  void forget_stamps_above(std::uint64_t counter) {
    for (auto& [key, by_seq] : carriers_) {
      std::erase_if(by_seq, [counter](const auto& kv) { return kv.second > counter; });
    }
  }

  // Once the syncer's cursor for a node passed an acknowledged write, the log holds it (or a
  // later change of the item from that node), or the item was deleted.
  void check_cursors() {
    if (!syncer_.up) return;
    for (auto& [origin, list] : by_origin_) {
      const std::uint64_t cursor = syncer_.log->cursor(origin.first, origin.second);
      std::size_t& done = cursor_checked_[origin];
      for (; done < list.size() && writes_[list[done]].seq <= cursor; ++done) {
        const Write& w = writes_[list[done]];
        if (w.outcome != Write::Outcome::kAcked && w.outcome != Write::Outcome::kPending) {
          continue;
        }
        if (carried(w) || deleted_in_log(w.id)) continue;
        // A later change of the item on that node, still alive, will carry it.
        bool later = false;
        for (std::size_t k = done + 1; k < list.size() && !later; ++k) {
          const Write& v = writes_[list[k]];
          later = v.id == w.id &&
                  (v.outcome == Write::Outcome::kAcked || v.outcome == Write::Outcome::kPending);
        }
        if (later) {
          // Not settled yet: look again next time.
          break;
        }
        if (w.outcome == Write::Outcome::kPending) break;
        anomaly("skipped-change", "the syncer's cursor for " + origin.first + " is at " +
                                      std::to_string(cursor) + " but acknowledged write " +
                                      w.title + " (" + w.id + ", seq " + std::to_string(w.seq) +
                                      ") never reached its log");
        ++done;
        return;
      }
    }
  }

  bool deleted_in_log(const std::string& id) const {
    for (const auto& e : syncer_.log->snapshot()) {
      if (e.item.id == id) return e.item.deleted;
    }
    return deleted_ids_.count(id) > 0;  // purged: it was deleted
  }

  // A node's session marks never claim a change it lacks.
  void check_marks() {
    for (std::size_t m = 0; m < nodes_.size(); ++m) {
      if (!node_up(m)) continue;
      const auto marks = nodes_[m].store->marks();
      if (marks.empty()) continue;
      std::map<std::string, node::StoredItem> held;
      for (auto& s : nodes_[m].store->dump()) held.emplace(s.item.id, s);
      for (const auto& mark : marks) {
        auto list = by_origin_.find({mark.node, mark.incarnation});
        if (list == by_origin_.end()) continue;
        for (auto idx : list->second) {
          const Write& w = writes_[idx];
          if (w.seq > mark.seq) break;
          if (w.outcome != Write::Outcome::kAcked) continue;
          const auto via = carried(w);
          auto it = held.find(w.id);
          bool ok = false;
          if (it != held.end()) {
            const auto& h = it->second;
            // A value of its own whose change the log holds but whose stamp has not come back
            // yet carries the stamp it got there.
            std::uint64_t stamp = h.stamp;
            if (h.local_seq != 0) {
              auto own = title_writer_.find(h.item.title);
              if (own != title_writer_.end()) {
                if (auto s = carried(writes_[own->second])) stamp = std::max(stamp, *s);
              }
            }
            ok = h.item.deleted || h.pending || (via && *via != 0 && stamp >= *via) ||
                 descends(h.item.title, w.title);
          } else {
            ok = (via && *via == 0) || deleted_ids_.count(w.id);  // its tombstone may be gone
          }
          if (!ok) {
            std::string holds = "nothing";
            if (it != held.end()) {
              holds = it->second.item.title + " stamp " + std::to_string(it->second.stamp) +
                      " local_seq " + std::to_string(it->second.local_seq) + " (synced " +
                      std::to_string(nodes_[m].store->status().synced_upto) + ", applied " +
                      std::to_string(nodes_[m].store->status().applied_stamp) + ")";
            }
            anomaly("mark-claims-missing",
                    "node " + nodes_[m].name + " marks " + mark.node + " up to seq " +
                        std::to_string(mark.seq) + " but lacks its write " + w.title + " of " +
                        w.id + " (seq " + std::to_string(w.seq) + ", carried by stamp " +
                        (via ? std::to_string(*via) : "none") + "); it holds " + holds);
            return;
          }
        }
      }
    }
  }

  void check_running() {
    if (!options_.running_checks && !final_) return;
    check_stamps();
    check_cursors();
    if (step_ % 100 == 0 || !faults_on_) check_marks();
  }

  // Whether the value titled `title` was written on top of `ancestor` (or is it).
  bool descends(const std::string& title, const std::string& ancestor) const {
    std::string t = title;
    for (int hops = 0; hops < 100000; ++hops) {
      if (t == ancestor) return true;
      auto it = title_writer_.find(t);
      if (it == title_writer_.end()) return false;
      t = writes_[it->second].parent;
      if (t.empty()) return false;
    }
    return false;
  }

  // ---- Settling: faults stop, the cluster must converge -----------------------------------------
  void settle() {
    faults_on_ = false;
    event("faults stop: heal, restart, converge");
    for (auto& node : nodes_) {
      node.partitioned = false;
      if (auto* v = disk_.find(node.dir)) v->full = false;
      node.down_until = std::min(node.down_until, now_);
    }
    // The syncer comes back with every node configured.
    if (syncer_.up && syncer_.nodes.size() != nodes_.size()) stop_syncer("reconfigured");
    syncer_.down_until = std::min(syncer_.down_until, now_);
    std::uint64_t quiet_for = 0;
    const std::uint64_t end = step_ + options_.quiet_steps;
    for (; step_ < end && report_.anomalies.empty(); ++step_) {
      if (quiet()) {
        if (++quiet_for > 3) break;
        now_ += 2000;  // let any timer fire
        continue;
      }
      quiet_for = 0;
      one_step(/*faults=*/false);
      if (step_ % 200 == 0) check_running();
    }
    if (!report_.anomalies.empty()) return;
    if (!quiet()) {
      anomaly("not-quiet", "the cluster did not converge within " +
                               std::to_string(options_.quiet_steps) +
                               " steps after the faults stopped: " + why_not_quiet());
      return;
    }
    final_ = true;
    check_running();
    check_final();
  }

  std::string why_not_quiet() const {
    if (!syncer_.up) return "the syncer is down";
    const auto counter = syncer_.log->counter();
    for (std::size_t n = 0; n < nodes_.size(); ++n) {
      const Node& node = nodes_[n];
      if (!node.store) return "node " + node.name + " is down";
      const auto st = node.store->status();
      if (st.applied_stamp != counter) {
        return "node " + node.name + " applied " + std::to_string(st.applied_stamp) + " of stamp " +
               std::to_string(counter);
      }
      if (st.unsynced != 0) {
        return "node " + node.name + " has " + std::to_string(st.unsynced) + " unsynced changes";
      }
      if (node.store->queued_commits() != 0) return "node " + node.name + " has queued commits";
      if (node.store->degraded()) return "node " + node.name + " cannot write its disk";
    }
    for (std::size_t i = 0; i < syncer_.nodes.size(); ++i) {
      if (syncer_.conn[i] == 0) return "link " + nodes_[syncer_.nodes[i]].name + " is down";
    }
    for (const auto& [id, c] : conns_) {
      if (!c.to_node.empty() || !c.at_node.empty() || !c.to_syncer.empty() ||
          !c.fetch_answers.empty() || !c.notes.empty()) {
        return "conn " + std::to_string(id) + " carries messages";
      }
    }
    return "";
  }
  bool quiet() const { return why_not_quiet().empty(); }

  void check_final() {
    // 1. Every node holds the same live items with the same versions, and so does the log.
    std::vector<Item> reference;
    for (const auto& e : syncer_.log->snapshot()) {
      if (!e.item.deleted) reference.push_back(e.item);
    }
    std::sort(reference.begin(), reference.end(),
              [](const Item& a, const Item& b) { return item_id_less(a.id, b.id); });
    for (std::size_t n = 0; n < nodes_.size(); ++n) {
      const auto items = nodes_[n].store->list();
      if (items != reference) {
        std::string diff;
        std::map<std::string, Item> a, b;
        for (const auto& it : reference) a[it.id] = it;
        for (const auto& it : items) b[it.id] = it;
        for (const auto& [id, it] : a) {
          auto o = b.find(id);
          if (o == b.end()) {
            diff += " " + id + " missing;";
          } else if (!(o->second == it)) {
            diff += " " + id + " is " + o->second.title + " v" + std::to_string(o->second.version) +
                    " (log: " + it.title + " v" + std::to_string(it.version) + ");";
          }
        }
        for (const auto& [id, it] : b) {
          if (!a.count(id)) diff += " " + id + " extra (" + it.title + ");";
        }
        anomaly("divergence", "node " + nodes_[n].name + " differs from the log:" + diff);
      }
    }
    // 2. Acknowledged writes: present, or overwritten by a write not made on top of them.
    std::map<std::string, Item> final_items;
    for (const auto& it : reference) final_items[it.id] = it;
    std::set<std::string> deleted;  // ids some delete was submitted for
    for (const auto& w : writes_) {
      if (w.kind == Write::Kind::kDelete && w.outcome != Write::Outcome::kFailed) {
        deleted.insert(w.id);
      }
    }
    for (const auto& w : writes_) {
      if (w.outcome != Write::Outcome::kAcked) continue;
      auto it = final_items.find(w.id);
      if (w.kind == Write::Kind::kDelete) {
        if (it != final_items.end()) {
          anomaly("resurrected", w.id + " is live (" + it->second.title +
                                     ") after its delete was acknowledged on " +
                                     nodes_[w.node].name);
        }
        continue;
      }
      if (it == final_items.end()) {
        if (!deleted.count(w.id)) {
          anomaly("lost-item",
                  w.id + " is gone, yet nobody deleted it (acknowledged " + w.title + ")");
        }
        continue;
      }
      const std::string& final_title = it->second.title;
      if (final_title != w.title && descends(w.title, final_title)) {
        anomaly("lost-write", "acknowledged write " + w.title + " of " + w.id + " on " +
                                  nodes_[w.node].name + " was undone: the item ended as " +
                                  final_title + ", which it was written on top of");
      }
    }
  }

  // ---- State --------------------------------------------------------------------------------
  std::uint64_t seed_;
  Options options_;
  Rng r_swarm_, r_step_, r_client_, r_net_, r_fault_, r_disk_;
  Swarm swarm_;
  Report report_;
  std::uint64_t step_ = 0;
  std::uint64_t now_ = 0;  // simulated milliseconds
  bool faults_on_ = true;
  bool final_ = false;  // the cluster is quiet: the last checks run
  MemDisk disk_;
  std::uint64_t syncer_boots_ = 0;  // the syncer's machine boots anew after each power loss
  std::vector<Node> nodes_;
  Syncer syncer_;
  std::map<std::uint64_t, Conn> conns_;
  std::uint64_t next_conn_ = 1;
  std::vector<Write> writes_;
  std::map<std::string, std::size_t> title_writer_;   // title -> the write that made it
  std::map<std::string, std::size_t> acked_creates_;  // id -> its acknowledged create
  std::vector<std::string> known_ids_;                // every id a create returned
  // Per (origin node, incarnation, item): origin_seq -> the stamp its change got (0: dropped).
  std::map<std::tuple<std::string, std::uint64_t, std::string>,
           std::map<std::uint64_t, std::uint64_t>>
      carriers_;
  // Per (node, incarnation): its writes in sequence order, and how many check_cursors settled.
  std::map<std::pair<std::string, std::uint64_t>, std::vector<std::size_t>> by_origin_;
  std::map<std::pair<std::string, std::uint64_t>, std::size_t> cursor_checked_;
  std::set<std::string> deleted_ids_;  // ids some node durably deleted
  std::set<std::string> forget_;       // wiped nodes the syncer forgets when it next starts
  std::deque<std::string> tail_;
};

}  // namespace

const std::vector<std::string>& fault_kinds() {
  static const std::vector<std::string> kinds = [] {
    Swarm s;
    std::vector<std::string> out;
    for (const auto& [on, name] : s.switches()) out.push_back(name);
    return out;
  }();
  return kinds;
}

Report simulate(std::uint64_t seed, const Options& options) {
  World world(seed, options);
  return world.run();
}

}  // namespace kv::sim
