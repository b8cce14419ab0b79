// The sync rules as the syncer runs them: the real SyncMachine, SyncLog and node Stores, wired
// together by a small synchronous driver that delivers every request at once and in order (no
// network, no faults; the simulator, test/sim, does those). Each case is a scenario of
// docs/sync.md, several of them regressions of issue 10.
#define BOOST_TEST_MODULE sync_logic
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <map>
#include <memory>

#include "node/requests.hpp"
#include "node/store.hpp"
#include "sim/mem_disk.hpp"
#include "sync/sync_log.hpp"
#include "sync/sync_machine.hpp"

using namespace kv;
using proto::msg::Error;

namespace {

Item ok(node::Result<Item> r) {
  if (auto* e = std::get_if<node::Refusal>(&r)) BOOST_FAIL("unexpected error: " << e->message);
  return std::get<Item>(r);
}

// Nodes a, b, ... and a syncer on a simulated disk. Requests are answered as soon as they are
// sent; the stores commit inline.
class Cluster {
 public:
  // `sync_writes` off: the log trusts the kernel (kvsync --durability async).
  explicit Cluster(std::size_t n, std::size_t limit = 100, bool sync_writes = true)
      : limit_(limit), sync_writes_(sync_writes) {
    for (std::size_t i = 0; i < n; ++i) {
      names.push_back(std::string(1, static_cast<char>('a' + i)));
      open_node(i);
    }
    start_syncer();
  }

  node::Store& node(std::size_t i) { return *nodes_.at(i); }
  sync::SyncLog& log() { return *log_; }
  sync::SyncMachine& machine() { return *machine_; }

  void open_node(std::size_t i) {
    node::StoreOptions o;
    o.dir = "/" + names[i];
    o.name = names[i];
    o.await_syncer = true;
    o.seams.disk = &disk;
    o.seams.random = [this] { return ++random_; };
    if (i < nodes_.size()) {
      nodes_[i].reset();
      nodes_[i] = std::make_unique<node::Store>(o);
    } else {
      nodes_.push_back(std::make_unique<node::Store>(o));
    }
  }
  void start_syncer(std::vector<std::size_t> config = {}) {
    machine_.reset();
    log_.reset();
    if (config.empty()) {
      for (std::size_t i = 0; i < nodes_.size(); ++i) config.push_back(i);
    }
    config_ = config;
    log_ = std::make_unique<sync::SyncLog>(sync::SyncLogOptions{
        "/syncer", sync_writes_, &disk, [this] { return ++random_; }, [this] { return boot; }});
    std::vector<std::string> addresses;
    for (auto i : config_) addresses.push_back(names[i]);
    sync::MachineOptions mo;
    mo.fetch_limit = limit_;
    mo.batch_limit = limit_;
    machine_ = std::make_unique<sync::SyncMachine>(*log_, addresses, mo);
    up_.assign(config_.size(), false);
  }
  // Connects every link (STATUS), or only `only`; returns the refusals, by node name.
  std::map<std::string, std::string> connect(std::vector<std::size_t> only = {}) {
    std::map<std::string, std::string> refused;
    for (std::size_t l = 0; l < config_.size(); ++l) {
      if (up_[l]) continue;
      if (!only.empty() && std::find(only.begin(), only.end(), l) == only.end()) continue;
      // STATUS, claiming the node for this syncer's life.
      proto::Request claim = machine_->claim();
      auto st =
          std::get<proto::msg::StatusReply>(node::answer(node(config_[l]), claim, {}).response);
      auto v = machine_->on_status(l, st.status);
      if (v.refused) {
        refused[names[config_[l]]] = *v.refused;
        machine_->on_down(l);
      } else {
        up_[l] = true;
      }
    }
    return refused;
  }
  // Serves link `l` (fetches, then applies) until it has nothing to send; returns whether
  // anything moved. Fails on an error answer.
  bool serve(std::size_t l) {
    bool moved = false;
    if (!up_[l]) return false;
    machine_->on_notification(l, Notification::Kind::kLocal, node(config_[l]).seq());
    while (auto f = machine_->next_fetch(l)) {
      proto::Request req = *f;
      auto a = node::answer(node(config_[l]), req, {});
      BOOST_TEST_REQUIRE(std::holds_alternative<proto::msg::Changes>(a.response));
      moved |= machine_->on_fetched(l, std::get<proto::msg::Changes>(a.response)).moved;
    }
    while (auto b = machine_->next_apply(l)) {
      proto::Request req = std::move(*b);
      auto a = node::answer(node(config_[l]), req, {});
      if (auto* e = std::get_if<Error>(&a.response)) BOOST_FAIL("APPLY refused: " << e->message);
      machine_->on_applied(l, std::get<proto::msg::Applied>(a.response));
      moved = true;
    }
    while (auto d = machine_->next_dump(l)) {
      proto::Request req = std::move(*d);
      auto a = node::answer(node(config_[l]), req, {});
      if (auto done = machine_->on_dumped(l, std::get<proto::msg::Dumped>(a.response))) {
        rebuilt = *done;
      }
      moved = true;
    }
    return moved;
  }
  // Fetches what link `l` has and returns the APPLY the syncer sends it next, undelivered: a
  // batch that sits in a socket.
  proto::msg::Apply held_apply(std::size_t l) {
    machine_->on_notification(l, Notification::Kind::kLocal, node(config_[l]).seq());
    while (auto f = machine_->next_fetch(l)) {
      proto::Request req = *f;
      auto a = node::answer(node(config_[l]), req, {});
      machine_->on_fetched(l, std::get<proto::msg::Changes>(a.response));
    }
    sync_log();
    auto b = machine_->next_apply(l);
    BOOST_TEST_REQUIRE(b.has_value());
    return *b;
  }
  // Makes the log's stamps durable, as kvsync's sync thread does.
  bool sync_log() {
    if (log_->all_durable()) return false;
    const auto point = log_->sync_point();
    BOOST_TEST_REQUIRE(!log_->sync_now());
    log_->synced(point);
    return true;
  }
  // Serves every link until nothing is left to send.
  void drain() {
    for (int round = 0; round < 10000; ++round) {
      bool moved = false;
      for (std::size_t l = 0; l < config_.size(); ++l) moved |= serve(l);
      moved |= sync_log();
      if (!moved) return;
    }
    BOOST_FAIL("the cluster did not quiesce");
  }
  void sync() {
    connect();
    drain();
  }
  // kill -9 of kvsync: its log is left open; what it wrote without syncing is still in the
  // kernel (lost only if the machine loses power too: disk.power_loss, then a new boot).
  void crash_syncer() {
    machine_.reset();
    log_->leave_open();
    log_.reset();
    up_.assign(config_.size(), false);
  }

  std::vector<std::string> names;
  std::string boot = "boot-1";  // the syncer machine's boot id
  sim::MemDisk disk;
  std::string rebuilt;  // what the machine said when it rebuilt its log

 private:
  std::size_t limit_;
  bool sync_writes_ = true;
  std::uint64_t random_ = 1000;
  std::vector<std::unique_ptr<node::Store>> nodes_;
  std::unique_ptr<sync::SyncLog> log_;
  std::unique_ptr<sync::SyncMachine> machine_;
  std::vector<std::size_t> config_;
  std::vector<bool> up_;
};

void same_everywhere(Cluster& c, std::size_t n) {
  for (std::size_t i = 1; i < n; ++i) {
    BOOST_TEST((c.node(i).list() == c.node(0).list()), "node " << c.names[i] << " differs");
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_seed_example_end_to_end) {
  Cluster c(2);
  c.sync();  // the greeting APPLY lifts the write fence
  auto& a = c.node(0);
  auto& b = c.node(1);
  ok(a.create("TaskA"));
  ok(a.create("TaskB"));
  ok(a.update({"1a", true, std::nullopt}));
  // 1. sync: get the differences; 2. stamp them with the syncer's version 1; 3. both apply.
  c.drain();
  BOOST_TEST(c.log().counter() == 1u);
  const std::vector<Item> table{{"1a", "TaskA", true, false, 1}, {"2a", "TaskB", false, false, 1}};
  BOOST_TEST((a.list() == table));
  BOOST_TEST((b.list() == table));
  // 4. create TaskC on B: version 2 there, and it reaches A with the syncer's stamp 2.
  const Item tc = ok(b.create("TaskC"));
  BOOST_TEST(tc.version == 2u);
  BOOST_TEST(tc.id == "3b");
  c.drain();
  same_everywhere(c, 2);
  BOOST_TEST(a.list().back().version == 2u);
}

// A FETCH is asked again only when the node may have more: its answer stopped at the limit, or
// a notification named a change past it. Before, every answer that moved the cursor was
// followed by another FETCH, which under load came back empty: two FETCHes per change.
BOOST_AUTO_TEST_CASE(the_fetcher_asks_again_only_when_the_node_may_have_more) {
  Cluster c(2, /*limit=*/3);
  c.sync();
  auto& m = c.machine();
  auto& a = c.node(0);
  auto fetch = [&] {
    auto f = m.next_fetch(0);
    BOOST_TEST_REQUIRE(f.has_value());
    proto::Request req = *f;
    auto got = std::get<proto::msg::Changes>(node::answer(a, req, {}).response);
    BOOST_TEST(m.on_fetched(0, got).moved);
    return got.changes.size();
  };
  // One change, announced: one FETCH takes it, and none follows.
  ok(a.create("one"));
  m.on_notification(0, Notification::Kind::kLocal, a.seq());
  BOOST_TEST(fetch() == 1u);
  BOOST_TEST(!m.next_fetch(0).has_value());
  // A change not yet announced is not asked for; its notification asks.
  ok(a.create("two"));
  BOOST_TEST(!m.next_fetch(0).has_value());
  m.on_notification(0, Notification::Kind::kLocal, a.seq());
  BOOST_TEST(fetch() == 1u);
  BOOST_TEST(!m.next_fetch(0).has_value());
  // Five changes, only the first announced yet: the answer stops at the limit (3), so the
  // fetcher asks again and takes the other two.
  const std::uint64_t first = a.seq() + 1;
  for (int k = 0; k < 5; ++k) ok(a.create("burst"));
  m.on_notification(0, Notification::Kind::kLocal, first);
  BOOST_TEST(fetch() == 3u);
  BOOST_TEST(fetch() == 2u);
  BOOST_TEST(!m.next_fetch(0).has_value());
  // A notification that arrives while the FETCH is out, of a change made after the node
  // answered, asks again.
  ok(a.create("three"));
  m.on_notification(0, Notification::Kind::kLocal, a.seq());
  auto f = m.next_fetch(0);
  BOOST_TEST_REQUIRE(f.has_value());
  proto::Request req = *f;
  auto got = std::get<proto::msg::Changes>(node::answer(a, req, {}).response);
  ok(a.create("four"));
  m.on_notification(0, Notification::Kind::kLocal, a.seq());
  m.on_fetched(0, got);
  BOOST_TEST(fetch() == 1u);
  BOOST_TEST(!m.next_fetch(0).has_value());
  c.drain();
  same_everywhere(c, 2);
  BOOST_TEST(c.node(1).list().size() == 9u);
}

BOOST_AUTO_TEST_CASE(concurrent_updates_of_one_item_end_equal_by_the_later_stamp) {
  Cluster c(2);
  c.sync();
  ok(c.node(0).create("shared"));
  c.drain();
  ok(c.node(0).update({"1a", std::nullopt, std::string("from a")}));
  ok(c.node(1).update({"1a", std::nullopt, std::string("from b")}));
  c.drain();  // a's link is served first: a's change is stamped first, b's later and wins
  BOOST_TEST(std::get<Item>(c.node(0).get("1a")).title == "from b");
  same_everywhere(c, 2);
}

BOOST_AUTO_TEST_CASE(a_delete_beats_a_concurrent_update) {
  Cluster c(2);
  c.sync();
  ok(c.node(0).create("x"));
  c.drain();
  ok(c.node(1).update({"1a", true, std::nullopt}));
  ok(c.node(0).remove("1a"));
  c.drain();
  BOOST_TEST(c.node(0).list().empty());
  BOOST_TEST(c.node(1).list().empty());
}

// Issue 10, problem 3: a node restored from an older copy used to have its cursor moved back, so
// the copy's pending changes, stamped long ago, got new winning stamps and overwrote a later
// acknowledged update made elsewhere.
BOOST_AUTO_TEST_CASE(a_node_restored_from_an_older_copy_does_not_overwrite_later_writes) {
  Cluster c(2);
  c.sync();
  ok(c.node(0).create("original"));
  c.drain();
  ok(c.node(1).update({"1a", std::nullopt, std::string("b's old title")}));
  const auto copy = c.disk.copy("/b");  // b holds its update unsynced
  c.drain();                            // b's update is stamped and everywhere
  ok(c.node(0).update({"1a", std::nullopt, std::string("a's later title")}));
  c.drain();
  c.disk.restore("/b", copy);  // b comes back from the older copy
  c.open_node(1);
  c.start_syncer();
  c.sync();
  BOOST_TEST(std::get<Item>(c.node(0).get("1a")).title == "a's later title");
  same_everywhere(c, 2);
  // b took a new incarnation, and its new changes are fetched.
  ok(c.node(1).create("after the restore"));
  c.drain();
  BOOST_TEST(c.node(0).list().size() == 2u);
  same_everywhere(c, 2);
}

// Issue 10, problem 4: a node taken out of the configuration used to stop counting for
// compaction, so a delete's tombstone went while it held an unsynced update of the item, and
// the update brought the item back when the node was configured again.
BOOST_AUTO_TEST_CASE(a_node_left_out_of_the_configuration_keeps_deletes_final) {
  Cluster c(3);
  c.sync();
  ok(c.node(0).create("x"));
  c.drain();
  c.start_syncer({0, 1});                            // c leaves
  ok(c.node(2).update({"1a", true, std::nullopt}));  // unsynced on c
  ok(c.node(0).remove("1a"));
  c.sync();
  ok(c.node(0).create("y"));  // more stamps, so that a horizon could pass the delete
  c.drain();
  c.start_syncer();  // c is back
  c.sync();
  for (std::size_t i = 0; i < 3; ++i) {
    BOOST_TEST(std::holds_alternative<node::Refusal>(c.node(i).get("1a")), "1a is back on " << i);
  }
  same_everywhere(c, 3);
}

// The same node forgotten on purpose: it is resynced from scratch, and its pending update of
// an item deleted meanwhile (whose tombstone is compacted) deletes the item again.
BOOST_AUTO_TEST_CASE(a_forgotten_node_that_comes_back_is_resynced_and_checked) {
  Cluster c(3);
  c.sync();
  ok(c.node(0).create("x"));
  c.drain();
  c.start_syncer({0, 1});
  BOOST_TEST(c.log().forget("c"));
  ok(c.node(2).update({"1a", true, std::nullopt}));  // unsynced on c
  ok(c.node(0).remove("1a"));
  c.sync();
  ok(c.node(0).create("y"));
  c.drain();
  BOOST_TEST(c.log().purged_upto() >= 2u, "the delete's tombstone is compacted");
  c.start_syncer();
  c.sync();
  for (std::size_t i = 0; i < 3; ++i) {
    BOOST_TEST(std::holds_alternative<node::Refusal>(c.node(i).get("1a")), "1a is back on " << i);
  }
  same_everywhere(c, 3);
}

// A wiped node has a new data directory under a known name: refused until the operator says
// it was wiped (forget-node), then resynced.
BOOST_AUTO_TEST_CASE(a_wiped_node_is_refused_until_it_is_forgotten) {
  Cluster c(2);
  c.sync();
  ok(c.node(0).create("x"));
  c.drain();
  c.disk.wipe("/b");
  c.open_node(1);
  c.start_syncer();
  auto refused = c.connect();
  BOOST_TEST_REQUIRE(refused.count("b") == 1u);
  BOOST_TEST(refused["b"].find("forget-node b") != std::string::npos, refused["b"]);
  BOOST_TEST(c.log().forget("b"));
  c.start_syncer();
  c.sync();
  same_everywhere(c, 2);
  BOOST_TEST(c.node(1).list().size() == 1u);
}

// Issue 10, problem 6: a FETCH whose changes all lose to a delete moves the cursor without a
// stamp; the other nodes still hear the new marks, or a session would wait until the next
// stamp for nothing.
BOOST_AUTO_TEST_CASE(marks_that_move_without_a_stamp_still_reach_every_node) {
  Cluster c(2);
  c.sync();
  ok(c.node(0).create("x"));
  c.drain();
  const Item update = ok(c.node(0).update({"1a", true, std::nullopt}));  // pending on a
  ok(c.node(1).remove("1a"));
  while (c.serve(1)) {
  }            // b's delete is stamped first, and b has every stamp
  c.serve(0);  // a's update loses to it: a's cursor moves, no new stamp
  c.drain();
  // A session that wrote the update on a reads on b: b knows it holds a's changes up to there.
  std::vector<SessionMark> have;
  const auto state = c.node(1).session({{"a", c.node(0).incarnation(), c.node(0).seq()}}, have);
  BOOST_TEST((state == node::SessionState::kCaughtUp));
  BOOST_TEST(update.version > 0u);
}

// Issue 10, problem 2: a new, empty log used to start stamping as soon as one node reported,
// handing out stamps that another node (down then) already held for other values. It stamps
// nothing until every configured node has reported, then rebuilds itself from them.
BOOST_AUTO_TEST_CASE(a_lost_log_stamps_nothing_until_every_node_reported_then_is_rebuilt) {
  Cluster c(2);
  c.sync();
  ok(c.node(0).create("one"));
  ok(c.node(1).create("two"));
  c.drain();
  ok(c.node(0).update({"1a", true, std::nullopt}));
  c.drain();
  const auto before = c.node(0).list();
  const auto stamp = c.log().counter();
  c.disk.wipe("/syncer");  // the syncer's data directory is gone
  c.start_syncer();
  c.connect({0});  // b is down
  ok(c.node(0).create("while b is away"));
  c.drain();
  BOOST_TEST(c.log().counter() == 0u, "stamped with a node unheard of");
  c.connect();
  c.drain();
  BOOST_TEST(c.rebuilt.find("rebuilt the syncer's log from 2 nodes") != std::string::npos,
             c.rebuilt);
  same_everywhere(c, 2);
  BOOST_TEST(c.node(0).list().size() == before.size() + 1);
  BOOST_TEST(c.log().counter() > stamp, "new stamps come after every stamp a node holds");
  // Ids go on past every id the nodes have seen: a wiped node may not reuse one.
  const Item next = ok(c.node(1).create("after the rebuild"));
  BOOST_TEST(next.id == "3b");  // 1a, 1b and 2a exist
  c.drain();
  same_everywhere(c, 2);
}

// docs/sync.md, "The syncer's fsync": a stamp goes out to the other nodes before the log's
// fsync, but a node's own change comes back to it, with the synced_upto that covers it, only
// once durable. A power loss that takes the stamp back leaves it on a node: the next syncer life
// sees that and rebuilds before it stamps again, and never hands that number out for another
// value.
BOOST_AUTO_TEST_CASE(a_stamp_reaches_the_other_nodes_before_its_fsync_and_its_origin_after) {
  Cluster c(2);
  c.sync();
  ok(c.node(0).create("one"));
  c.serve(0);  // fetched from a and stamped, not yet synced
  BOOST_TEST(c.log().counter() == 1u);
  BOOST_TEST_REQUIRE(!c.log().all_durable());
  c.serve(1);
  BOOST_TEST(c.node(1).list().size() == 1u, "b waits for the log's fsync");
  c.serve(0);
  BOOST_TEST(c.node(0).status().memory_applied_stamp == 0u, "a got its change back early");
  BOOST_TEST(c.node(0).status().synced_upto == 0u, "a heard its change synced before it was");
  c.drain();  // the log's sync, then a hears it
  BOOST_TEST(c.log().all_durable());
  BOOST_TEST(c.node(0).status().synced_upto == 1u);
  same_everywhere(c, 2);

  ok(c.node(0).create("two"));
  c.serve(0);  // stamp 2, not yet synced
  c.serve(1);
  BOOST_TEST_REQUIRE(c.node(1).status().memory_applied_stamp == 2u);
  c.crash_syncer();
  c.disk.power_loss("/syncer");
  c.boot = "boot-2";
  c.start_syncer();
  BOOST_TEST_REQUIRE(c.log().counter() == 1u, "the power loss took stamp 2");
  c.connect();
  c.drain();
  BOOST_TEST(c.rebuilt.find("rebuilt") != std::string::npos, c.rebuilt);
  BOOST_TEST(c.log().counter() >= 2u, "stamp 2 names the value b holds");
  same_everywhere(c, 2);
  BOOST_TEST(c.node(0).list().size() == 2u);
  ok(c.node(1).create("three"));
  c.drain();
  same_everywhere(c, 2);
  BOOST_TEST(c.node(0).list().size() == 3u);
}

// A crash of kvsync alone loses nothing (every write reached the kernel): it goes on at once. A
// power loss may take the stamps written since the last fsync: the log is then unverified until
// every node reported, even across a second crash before they did (kvsim seed 200), and the
// change whose stamp was lost is fetched again.
BOOST_AUTO_TEST_CASE(after_a_power_loss_the_log_stamps_nothing_until_every_node_reported) {
  Cluster c(2);
  c.sync();
  ok(c.node(0).create("one"));
  c.serve(0);  // stamp 1, not yet synced
  c.crash_syncer();
  c.start_syncer();  // same boot: the kernel kept it
  BOOST_TEST(c.log().counter() == 1u);
  c.sync();
  BOOST_TEST(c.rebuilt.empty(), c.rebuilt);
  same_everywhere(c, 2);

  ok(c.node(1).create("two"));
  c.serve(1);  // stamp 2, not yet synced
  c.crash_syncer();
  c.disk.power_loss("/syncer");
  c.boot = "boot-2";
  c.start_syncer();
  BOOST_TEST(c.log().counter() == 1u, "stamp 2 was not synced, so a power loss takes it");
  c.crash_syncer();  // again, before any node reported, on the same boot
  c.start_syncer();
  c.connect({0});  // b is away
  ok(c.node(0).create("three"));
  c.drain();
  BOOST_TEST(c.log().counter() == 1u, "stamped before hearing every node");
  c.connect();
  c.drain();
  same_everywhere(c, 2);
  BOOST_TEST(c.node(0).list().size() == 3u);
  BOOST_TEST(c.node(1).status().synced_upto == 1u, "b's change was not fetched again");
}

// kvsim seeds 611286 and 626894 (--durability async): a batch of a kvsync whose machine then
// lost power sits in a socket; the next kvsync, whose log lost that stamp and the cursor behind
// it, connects and vouches for the nodes; the batch arrives, and its synced_upto would tell the
// node its change is in the log, which it is not: the change would never reach the other node.
// The new kvsync's STATUS claimed the node, so the old batch is refused.
BOOST_AUTO_TEST_CASE(a_batch_of_a_syncer_that_lost_power_is_refused_once_the_next_one_connected) {
  Cluster c(2, 100, /*sync_writes=*/false);
  c.sync();
  ok(c.node(0).create("one"));
  auto orphan = c.held_apply(0);
  BOOST_TEST_REQUIRE(orphan.synced_upto == 1u);
  c.crash_syncer();
  c.disk.power_loss("/syncer");
  c.boot = "boot-2";
  c.start_syncer();
  BOOST_TEST_REQUIRE(c.log().counter() == 0u, "the power loss took stamp 1");
  BOOST_TEST(c.connect().empty());
  proto::Request late = orphan;
  auto answer = node::answer(c.node(0), late, {}).response;
  const auto* refused = std::get_if<Error>(&answer);
  BOOST_TEST((refused && refused->code == proto::ErrorCode::kStale));
  c.drain();
  same_everywhere(c, 2);
  BOOST_TEST(c.node(1).list().size() == 1u, "a's change reached b");
}

// A log put back from a copy, or a second kvsync, meets a node claimed by a later life: it takes
// a later life itself, durably, and the next connection claims the node with it. The lives it
// missed may have handed out stamps it names other values by (kvsim seed 1008626): it rebuilds
// from the nodes, and the rebuild survives a crash.
BOOST_AUTO_TEST_CASE(a_syncer_behind_a_nodes_claim_takes_a_later_life_and_connects_again) {
  Cluster c(2);
  c.sync();
  const std::uint64_t life = c.log().life();
  BOOST_TEST(life >= 1u);
  proto::Request other = proto::msg::Status{life + 5};
  node::answer(c.node(1), other, {});
  c.crash_syncer();
  c.start_syncer();
  BOOST_TEST(c.log().life() == life + 1);
  auto refused = c.connect();
  BOOST_TEST_REQUIRE(refused.count("b") == 1u);
  BOOST_TEST(refused["b"].find("life " + std::to_string(life + 5)) != std::string::npos,
             refused["b"]);
  BOOST_TEST(c.log().life() == life + 6);
  c.crash_syncer();
  c.disk.power_loss("/syncer");
  c.boot = "boot-2";
  c.start_syncer();
  BOOST_TEST(c.log().life() == life + 7, "the raised life was durable, and every open adds one");
  BOOST_TEST(c.connect().empty());
  ok(c.node(1).create("two"));
  c.drain();
  BOOST_TEST(c.rebuilt.find("rebuilt") != std::string::npos, c.rebuilt);
  same_everywhere(c, 2);
  BOOST_TEST(c.node(0).list().size() == 1u);
}

// kvsim seed 822509: a DUMP (a syncer rebuilding a lost log) left out an item for its pending
// local change, and that change's commit then failed (a full disk): memory went back to the
// stamped value, which the rebuilt log never got, and the node's cursor said it had it. A DUMP
// is now answered once what it read is durable, and with the error if that failed.
BOOST_AUTO_TEST_CASE(a_dump_waits_until_what_it_read_is_durable_and_fails_with_it) {
  sim::MemDisk disk;
  node::StoreOptions o;
  o.dir = "/a";
  o.name = "a";
  o.sync_writes = true;
  o.background_commit = true;
  o.seams.disk = &disk;
  o.seams.manual_commit = true;
  node::Store s(o);
  proto::msg::Apply batch;
  batch.upto_stamp = 1;
  batch.changes = {StampedChange{1, "b", 1, Item{"5b", "stamped", false, false, 1}}};
  proto::Request req = batch;
  BOOST_TEST_REQUIRE(
      std::holds_alternative<proto::msg::Applied>(node::answer(s, req, {}).response));
  BOOST_TEST_REQUIRE(s.commit_next(1));
  // Nothing pending: answered at once, with the stamped value.
  proto::Request dump = proto::msg::Dump{};
  auto a = node::answer(s, dump, {});
  BOOST_TEST(a.commit.empty());
  BOOST_TEST(std::get<proto::msg::Dumped>(a.response).items.size() == 1u);

  ok(s.update({"5b", std::nullopt, std::string("pending")}));
  a = node::answer(s, dump, {});
  BOOST_TEST(std::get<proto::msg::Dumped>(a.response).items.empty(), "a pending item is left out");
  BOOST_TEST_REQUIRE(!a.commit.empty());
  BOOST_TEST(!s.completed(a.commit), "answered before the change it left out for is durable");
  disk.volume("/a").full = true;
  s.commit_next(1);  // the update fails: memory goes back to the disk
  BOOST_TEST_REQUIRE(s.completed(a.commit));
  BOOST_TEST(s.outcome(a.commit).has_value(), "a page that no longer holds was answered");
  disk.volume("/a").full = false;
  BOOST_TEST(ok(s.get("5b")).title == "stamped");
  a = node::answer(s, dump, {});
  BOOST_TEST(a.commit.empty());
  BOOST_TEST(std::get<proto::msg::Dumped>(a.response).items.size() == 1u);
}
