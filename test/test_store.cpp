// The node store through its public interface: the seed's version example, local changes and
// the change log, the rules for stamped changes, persistence and refusal of bad data.
#define BOOST_TEST_MODULE store
#include <boost/test/unit_test.hpp>

#include <rocksdb/db.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>

#include "node/apply_rule.hpp"
#include "node/committer.hpp"
#include "node/node_pool.hpp"
#include "node/store.hpp"
#include "node/store_format.hpp"
#include "temp_dir.hpp"

using namespace kv;
using namespace kv::node;
using proto::ErrorCode;

namespace {
Item ok(Result<Item> r) {
  if (auto* e = std::get_if<Refusal>(&r)) BOOST_FAIL("unexpected error: " << e->message);
  return std::get<Item>(r);
}
ErrorCode err(Result<Item> r) {
  BOOST_TEST_REQUIRE(std::holds_alternative<Refusal>(r));
  return std::get<Refusal>(r).code;
}
proto::msg::Update set_completed(std::string id, bool v) {
  return {std::move(id), v, std::nullopt};
}
StampedChange stamped(std::uint64_t stamp, Item item, std::string origin = "b",
                      std::uint64_t origin_seq = 1) {
  item.version = stamp;
  return StampedChange{stamp, std::move(origin), origin_seq, std::move(item)};
}
// An APPLY that continues from what the store has applied, as the syncer sends it.
proto::msg::Apply batch(const Store& s, std::uint64_t upto, std::uint64_t synced,
                        std::vector<StampedChange> changes) {
  proto::msg::Apply b;
  b.upto_stamp = upto;
  b.synced_upto = synced;
  b.changes = std::move(changes);
  b.after_stamp = s.status().memory_applied_stamp;
  return b;
}
proto::msg::Applied apply(Store& s, std::uint64_t upto, std::uint64_t synced,
                          std::vector<StampedChange> changes) {
  auto r = s.apply(batch(s, upto, synced, std::move(changes)));
  if (auto* e = std::get_if<Refusal>(&r)) BOOST_FAIL("apply failed: " << e->message);
  return std::get<proto::msg::Applied>(r);
}
// Writes one raw record into a stopped store's database, behind the store's back.
void plant(const std::filesystem::path& dir, const std::string& key, const std::string& value) {
  rocksdb::DB* raw = nullptr;
  BOOST_TEST_REQUIRE(rocksdb::DB::Open(rocksdb::Options(), dir.string(), &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  BOOST_TEST(db->Put(rocksdb::WriteOptions(), key, value).ok());
}
}  // namespace

BOOST_AUTO_TEST_CASE(the_seed_version_example) {
  test::TempDir dir;
  Store s({dir / "a", "a"});
  // 1. create TaskA, 2. create TaskB, 3. update 1 complete: one store-wide counter.
  const Item a = ok(s.create("TaskA"));
  BOOST_TEST(a.id == "1a");
  BOOST_TEST(a.version == 1u);
  const Item b = ok(s.create("TaskB"));
  BOOST_TEST(b.id == "2a");
  BOOST_TEST(b.version == 2u);
  const Item a3 = ok(s.update(set_completed("1a", true)));
  BOOST_TEST(a3.version == 3u);
  BOOST_TEST(a3.completed);
  const auto items = s.list();
  BOOST_TEST_REQUIRE(items.size() == 2u);
  BOOST_TEST((items[0] == Item{"1a", "TaskA", true, false, 3}));
  BOOST_TEST((items[1] == Item{"2a", "TaskB", false, false, 2}));
  BOOST_TEST(s.status().version == 3u);
}

BOOST_AUTO_TEST_CASE(fetch_returns_every_local_change_in_order_with_the_value_it_wrote) {
  test::TempDir dir;
  Store s({dir / "a", "a"});
  ok(s.create("TaskA"));                    // seq 1
  ok(s.create("TaskB"));                    // seq 2
  ok(s.update(set_completed("1a", true)));  // seq 3
  auto all = s.fetch(0, 100);
  BOOST_TEST(all.seq_high == 3u);
  BOOST_TEST_REQUIRE(all.changes.size() == 3u);
  BOOST_TEST(all.changes[0].seq == 1u);
  BOOST_TEST(!all.changes[0].item.completed);  // as it was written then
  BOOST_TEST(all.changes[1].item.id == "2a");
  BOOST_TEST(all.changes[2].seq == 3u);
  BOOST_TEST(all.changes[2].item.completed);
  // A limit stops early, and seq_high tells where to go on from: it never passes a change
  // that was not in an answer.
  auto first = s.fetch(0, 1);
  BOOST_TEST(first.changes.size() == 1u);
  BOOST_TEST(first.seq_high == 1u);
  BOOST_TEST(s.fetch(first.seq_high, 100).changes.size() == 2u);
  BOOST_TEST(s.fetch(3, 100).changes.empty());
  // The change log survives a restart, every entry with its own value.
  s.flush();
}

BOOST_AUTO_TEST_CASE(the_change_log_survives_a_restart_with_every_value) {
  test::TempDir dir;
  {
    Store s({dir / "a", "a"});
    ok(s.create("one"));
    ok(s.update({"1a", std::nullopt, std::string("two")}));
  }
  Store s({dir / "a", "a"});
  auto all = s.fetch(0, 100);
  BOOST_TEST_REQUIRE(all.changes.size() == 2u);
  BOOST_TEST(all.changes[0].item.title == "one");
  BOOST_TEST(all.changes[1].item.title == "two");
  BOOST_TEST(s.status().unsynced == 2u);
}

BOOST_AUTO_TEST_CASE(seed_restamp_overwrites_versions_and_moves_the_counter) {
  test::TempDir dir;
  Store a({dir / "a", "a"});
  Store b({dir / "b", "b"});
  ok(a.create("TaskA"));
  ok(a.create("TaskB"));
  ok(a.update(set_completed("1a", true)));
  // The syncer stamps A's diff with its version 1 and sends it to both nodes.
  // The syncer keeps each item's latest change of a fetch.
  std::map<std::string, StampedChange> latest;
  for (const auto& c : a.fetch(0, 100).changes) latest[c.item.id] = stamped(1, c.item, "a", c.seq);
  std::vector<StampedChange> diff;
  for (auto& [id, c] : latest) diff.push_back(c);
  apply(a, 1, 3, diff);
  apply(b, 1, 0, diff);
  for (Store* s : {&a, &b}) {
    const auto items = s->list();
    BOOST_TEST_REQUIRE(items.size() == 2u);
    BOOST_TEST((items[0] == Item{"1a", "TaskA", true, false, 1}));
    BOOST_TEST((items[1] == Item{"2a", "TaskB", false, false, 1}));
  }
  // No echo: what the syncer applied is not a local change.
  BOOST_TEST(a.fetch(0, 100).changes.empty());
  BOOST_TEST(b.fetch(0, 100).changes.empty());
  // 4. create TaskC on B: version 2, and an id that no other node can take.
  const Item c = ok(b.create("TaskC"));
  BOOST_TEST(c.version == 2u);
  BOOST_TEST(c.id == "3b");
}

BOOST_AUTO_TEST_CASE(applying_the_same_values_again_changes_nothing) {
  test::TempDir dir;
  Store s({dir / "b", "b"});
  std::vector<StampedChange> diff{stamped(4, Item{"1a", "x", false, false, 0}),
                                  stamped(4, Item{"2a", "y", true, false, 0})};
  BOOST_TEST(apply(s, 4, 0, diff).changed == 2u);
  const auto before = s.list();
  // The same values in a later batch (a resync): rule R keeps what the node has.
  BOOST_TEST(apply(s, 5, 0, diff).changed == 0u);
  BOOST_TEST((s.list() == before));
}

// Issue 10, problem 5: an APPLY that sat in a socket of a syncer that is gone, delivered after
// another syncer caught the node up (and compacted a delete), used to be applied and bring a
// deleted item back. A batch names the applied stamp it continues from, and the log it comes
// from; one that does not continue is refused and changes nothing.
BOOST_AUTO_TEST_CASE(an_apply_that_does_not_continue_from_the_applied_stamp_is_refused) {
  test::TempDir dir;
  Store s({dir / "b", "b"});
  const auto stale = batch(s, 970, 0, {stamped(970, Item{"359c", "old title", false, false, 0})});
  auto first = batch(s, 2278, 0, {stamped(2278, Item{"359c", "t", false, true, 0})});
  first.log_id = 7;
  BOOST_TEST_REQUIRE(std::holds_alternative<proto::msg::Applied>(s.apply(first)));
  auto late = stale;
  late.log_id = 7;
  const auto r = s.apply(late);
  BOOST_TEST_REQUIRE(std::holds_alternative<Refusal>(r));
  BOOST_TEST((std::get<Refusal>(r).code == ErrorCode::kStale));
  BOOST_TEST((err(s.get("359c")) == ErrorCode::kDeleted));
  BOOST_TEST(s.status().memory_applied_stamp == 2278u);
  // From another syncer log, even continuing from the right stamp: refused unless it says the
  // node is to adopt that log.
  auto other = batch(s, 2279, 0, {});
  other.log_id = 8;
  BOOST_TEST((std::get<Refusal>(s.apply(other)).code == ErrorCode::kStale));
  other.adopt = true;
  BOOST_TEST(std::holds_alternative<proto::msg::Applied>(s.apply(other)));
  BOOST_TEST(s.status().log_id == 8u);
}

// kvsim seeds 611286 and 626894: a batch of a kvsync whose machine lost power, still in a
// socket, reached the node after the next kvsync had read its STATUS, and moved synced_upto past
// changes the new log never got. A syncer's STATUS claims the node for its life.
BOOST_AUTO_TEST_CASE(an_apply_of_an_earlier_syncer_life_is_refused_once_a_later_one_claimed_it) {
  test::TempDir dir;
  Store s({dir / "b", "b"});
  auto late = batch(s, 1, 0, {stamped(1, Item{"1a", "from life 4", false, false, 0}, "a", 1)});
  late.syncer_life = 4;
  BOOST_TEST(s.claim(5) == 5u);
  BOOST_TEST(s.status().syncer_life == 5u);
  const auto r = s.apply(late);
  BOOST_TEST_REQUIRE(std::holds_alternative<Refusal>(r));
  BOOST_TEST((std::get<Refusal>(r).code == ErrorCode::kStale));
  BOOST_TEST(std::get<Refusal>(r).message.find("life 5") != std::string::npos);
  BOOST_TEST((err(s.get("1a")) == ErrorCode::kNotFound));
  BOOST_TEST(s.status().memory_applied_stamp == 0u);
  // A claim of an earlier life loses: the answer names the later one, which stays.
  BOOST_TEST(s.claim(3) == 5u);
  // The same batch from life 5 (or a later one, which also takes the node) goes in.
  late.syncer_life = 6;
  BOOST_TEST_REQUIRE(std::holds_alternative<proto::msg::Applied>(s.apply(late)));
  BOOST_TEST(ok(s.get("1a")).title == "from life 4");
  BOOST_TEST(s.status().syncer_life == 6u);
  auto older = batch(s, 2, 0, {});
  older.syncer_life = 5;
  BOOST_TEST((std::get<Refusal>(s.apply(older)).code == ErrorCode::kStale));
}

BOOST_AUTO_TEST_CASE(an_unsynced_local_change_wins_over_an_earlier_stamped_update) {
  test::TempDir dir;
  Store s({dir / "a", "a"});
  apply(s, 1, 0, {stamped(1, Item{"1b", "from b", false, false, 0})});
  const Item mine = ok(s.update(set_completed("1b", true)));
  // B's concurrent update, stamped before A's change reached the syncer: A keeps its own value,
  // which the syncer will stamp later (higher) and hand to everyone.
  apply(s, 2, 0, {stamped(2, Item{"1b", "renamed on b", false, false, 0})});
  BOOST_TEST(ok(s.get("1b")).title == "from b");
  BOOST_TEST(ok(s.get("1b")).completed);
  BOOST_TEST(s.fetch(0, 10).changes.size() == 1u);
  // Once the syncer says the change is in its log, a later stamp decides as usual.
  const auto seq = s.fetch(0, 10).changes[0].seq;
  Item echo = mine;
  apply(s, 3, seq, {stamped(3, echo, "a", seq)});
  BOOST_TEST(ok(s.get("1b")).version == 3u);
  BOOST_TEST(s.fetch(0, 10).changes.empty());
  BOOST_TEST(s.status().unsynced == 0u);
}

BOOST_AUTO_TEST_CASE(a_stamped_delete_beats_an_unsynced_local_update) {
  test::TempDir dir;
  Store s({dir / "a", "a"});
  apply(s, 1, 0, {stamped(1, Item{"1b", "t", false, false, 0})});
  ok(s.update(set_completed("1b", true)));
  apply(s, 2, 0, {stamped(2, Item{"1b", "t", false, true, 0})});
  BOOST_TEST((err(s.get("1b")) == ErrorCode::kDeleted));
  BOOST_TEST(s.fetch(0, 10).changes.empty());  // the doomed update is not sent on
}

BOOST_AUTO_TEST_CASE(a_late_update_never_brings_a_deleted_item_back) {
  test::TempDir dir;
  Store s({dir / "a", "a"});
  apply(s, 5, 0, {stamped(5, Item{"1b", "t", false, true, 0})});
  // An update stamped earlier, or even later: a delete is final.
  apply(s, 6, 0,
        {stamped(3, Item{"1b", "old", false, false, 0}),
         stamped(6, Item{"1b", "new", true, false, 0})});
  BOOST_TEST((err(s.get("1b")) == ErrorCode::kDeleted));
  BOOST_TEST(s.list().empty());
  BOOST_TEST((err(s.update(set_completed("1b", true))) == ErrorCode::kDeleted));
}

BOOST_AUTO_TEST_CASE(client_errors_are_clear_and_change_nothing) {
  test::TempDir dir;
  Store s({dir / "a", "a"});
  BOOST_TEST((err(s.create("")) == ErrorCode::kInvalidArgument));
  BOOST_TEST((err(s.create("   ")) == ErrorCode::kInvalidArgument));
  BOOST_TEST(
      (err(s.create(std::string(proto::kMaxTitleBytes + 1, 'x'))) == ErrorCode::kInvalidArgument));
  BOOST_TEST((err(s.get("9z")) == ErrorCode::kNotFound));
  BOOST_TEST((err(s.remove("9z")) == ErrorCode::kNotFound));
  BOOST_TEST((err(s.update(set_completed("9z", true))) == ErrorCode::kNotFound));
  BOOST_TEST((err(s.update(proto::msg::Update{"9z", std::nullopt, std::nullopt})) ==
              ErrorCode::kInvalidArgument));
  BOOST_TEST(s.status().version == 0u);
  ok(s.create("x"));
  ok(s.remove("1a"));
  BOOST_TEST((err(s.remove("1a")) == ErrorCode::kDeleted));
  // A batch that claims more local changes than the node ever made is refused.
  auto r = s.apply(proto::msg::Apply{1, 99, 0, 0, false, {}, 0, {}});
  BOOST_TEST(std::holds_alternative<Refusal>(r));
}

BOOST_AUTO_TEST_CASE(everything_survives_a_reopen) {
  test::TempDir dir;
  NodeStatus before;
  std::vector<Item> items;
  {
    Store s({dir / "a", "a"});
    ok(s.create("one"));
    ok(s.create("two"));
    apply(s, 7, 1, {stamped(7, Item{"5b", "from b", false, false, 0})});
    ok(s.remove("2a"));
    before = s.status();
    items = s.list();
  }
  Store s({dir / "a", "a"});
  BOOST_TEST((s.status() == before));
  BOOST_TEST((s.list() == items));
  // 1a's create is in the syncer's log (synced_upto 1); 2a's create and delete are not.
  BOOST_TEST(s.fetch(0, 10).changes.size() == 2u);
  BOOST_TEST(ok(s.create("three")).id == "6a");  // ids continue past everything seen
}

BOOST_AUTO_TEST_CASE(a_data_directory_of_another_node_or_corrupt_is_refused) {
  test::TempDir dir;
  {
    Store s({dir / "a", "a"});
    ok(s.create("x"));
  }
  BOOST_CHECK_THROW(Store({dir / "a", "b"}), StoreError);
  plant(dir / "a", item_key("1a"), "\x01garbage");
  try {
    Store s({dir / "a", "a"});
    BOOST_FAIL("a corrupt record was accepted");
  } catch (const StoreError& e) {
    BOOST_TEST(std::string(e.what()).find("corrupt") != std::string::npos);
  }
}

// A large store loads on a reader thread (Store::Impl::load_items): what it loads is what a
// small store's load on one thread gives, item for item, and a corrupt record deep inside it
// is still refused by name.
BOOST_AUTO_TEST_CASE(a_large_store_loads_every_item_and_refuses_a_corrupt_one) {
  test::TempDir dir;
  const int n = 60000;  // items, each with its change-log entry: past kThreadedLoadFrom keys
  std::vector<StoredItem> before;
  NodeStatus status_before;
  {
    Store s({dir / "a", "a"});
    for (int i = 1; i <= n; ++i) ok(s.create("item " + std::to_string(i)));
    for (int i = 1; i <= n; i += 7) ok(s.remove(std::to_string(i) + "a"));
    for (int i = 3; i <= n; i += 11) {
      if ((i - 1) % 7 == 0) continue;  // deleted above
      proto::msg::Update u;
      u.id = std::to_string(i) + "a";
      u.completed = true;
      ok(s.update(u));
    }
    before = s.dump();
    status_before = s.status();
  }
  {
    Store s({dir / "a", "a"});
    const auto after = s.dump();
    BOOST_TEST_REQUIRE(after.size() == before.size());
    for (std::size_t i = 0; i < after.size(); ++i) {
      if (!(after[i].item == before[i].item) || after[i].local_seq != before[i].local_seq) {
        BOOST_FAIL("item " << before[i].item.id << " did not load as it was");
      }
    }
    BOOST_TEST(s.status().digest == status_before.digest);
    BOOST_TEST(s.status().items == status_before.items);
    BOOST_TEST(s.fetch(0, 10).changes.size() == 10u);
  }
  plant(dir / "a", item_key("54321a"), "\x02garbage");
  try {
    Store s({dir / "a", "a"});
    BOOST_FAIL("a corrupt record was accepted");
  } catch (const StoreError& e) {
    BOOST_TEST(std::string(e.what()).find("item record '54321a' is corrupt") != std::string::npos,
               e.what());
  }
}

BOOST_AUTO_TEST_CASE(list_pages_through_every_live_item_in_id_order) {
  test::TempDir dir;
  Store s({dir / "a", "a"});
  for (int i = 0; i < 25; ++i) ok(s.create("item " + std::to_string(i)));
  ok(s.remove("7a"));
  std::vector<std::string> seen;
  std::string after;
  for (int pages = 0; pages < 100; ++pages) {
    auto page = s.list_page(after, 4);
    BOOST_TEST(page.items.size() <= 4u);
    for (const auto& it : page.items) seen.push_back(it.id);
    if (page.next.empty()) break;
    after = page.next;
  }
  BOOST_TEST_REQUIRE(seen.size() == 24u);
  BOOST_TEST(seen.front() == "1a");
  BOOST_TEST(seen[8] == "10a");  // numeric order: 1a..6a, 8a, 9a, 10a
  BOOST_TEST((std::find(seen.begin(), seen.end(), "7a") == seen.end()));
}

BOOST_AUTO_TEST_CASE(walk_live_hands_out_live_items_in_id_order_until_told_to_stop) {
  test::TempDir dir;
  Store s({dir / "a", "a"});
  for (int i = 1; i <= 12; ++i) ok(s.create("item " + std::to_string(i)));
  ok(s.remove("3a"));
  std::vector<std::string> ids, titles;
  s.walk_live("", [&](std::string_view id, std::string_view title) {
    ids.emplace_back(id);
    titles.emplace_back(title);
    return true;
  });
  BOOST_TEST_REQUIRE(ids.size() == 11u);  // not the deleted 3a
  BOOST_TEST(ids[2] == "4a");
  BOOST_TEST(titles[2] == "item 4");
  BOOST_TEST(ids[8] == "10a");  // numeric order
  // After an id (exclusive), and stopping when the visitor says so.
  ids.clear();
  s.walk_live("9a", [&](std::string_view id, std::string_view) {
    ids.emplace_back(id);
    return ids.size() < 2;
  });
  BOOST_TEST((ids == std::vector<std::string>{"10a", "11a"}));
}

BOOST_AUTO_TEST_CASE(background_commits_are_acknowledged_announced_and_fetched_once_durable) {
  test::TempDir dir;
  Store s({dir / "a", "a", /*sync_writes=*/true, /*background_commit=*/true});
  std::vector<StoreEvent> events;
  s.set_observer([&](const StoreEvent& e) { events.push_back(e); });
  for (int i = 0; i < 200; ++i) ok(s.create("t" + std::to_string(i)));
  BOOST_TEST(s.list().size() == 200u);  // memory has them at once
  s.flush();
  BOOST_TEST(s.completed(s.last_commit()));
  BOOST_TEST(!s.outcome(s.last_commit()));
  BOOST_TEST(events.size() == 200u);  // announced in commit order, once durable
  BOOST_TEST(events.back().item.id == "200a");
  BOOST_TEST(s.fetch(0, 10000).changes.size() == 200u);
}

namespace {
// A database that only counts: the writes and syncs a committer makes.
class CountingEngine : public storage::Engine {
 public:
  storage::Status get(std::string_view, std::string&) override {
    return storage::Status::NotFound();
  }
  storage::Status scan(std::string_view,
                       const std::function<bool(std::string_view, std::string_view)>&) override {
    return storage::Status::OK();
  }
  storage::Status write(storage::Batch&, bool) override {
    ++writes;
    return storage::Status::OK();
  }
  storage::Status sync_log() override {
    ++syncs;
    return storage::Status::OK();
  }
  storage::Status flush_memtable() override { return storage::Status::OK(); }
  std::uint64_t approximate_keys() override { return 0; }
  std::atomic<int> writes{0};
  std::atomic<int> syncs{0};
};

storage::Batch one_put(int i) {
  storage::Batch b;
  b.Put("k" + std::to_string(i), "v");
  return b;
}

// The groups a committer reports, and a bounded wait for one.
struct Groups {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<CommitResult> done;
  std::function<void(const CommitResult&)> callback() {
    return [this](const CommitResult& r) {
      {
        std::lock_guard lock(mu);
        done.push_back(r);
      }
      cv.notify_all();
    };
  }
  bool wait_for_ticket(std::uint64_t ticket) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10),
                       [&] { return !done.empty() && done.back().last >= ticket; });
  }
};
}  // namespace

// A syncer's stamped changes wait (Committer's lazy_delay) so that a stream of small APPLYs
// shares one fsync; a client's write, the delay or a stop ends the wait.
BOOST_AUTO_TEST_CASE(stamped_batches_wait_to_share_an_fsync) {
  CountingEngine db;
  {
    // Held for up to an hour: the client's write takes them along, in one group and one sync.
    Groups g;
    Committer c(db, /*sync=*/true, g.callback(), CommitMode::kThread, std::chrono::hours(1));
    for (int i = 0; i < 3; ++i) c.submit(one_put(i), /*lazy=*/true);
    const std::uint64_t client = c.submit(one_put(3));
    BOOST_TEST_REQUIRE(g.wait_for_ticket(client));
    BOOST_TEST(g.done.size() == 1u);
    BOOST_TEST(g.done.front().first == 1u);
    BOOST_TEST(g.done.front().last == client);
    BOOST_TEST(db.writes == 1);
    BOOST_TEST(db.syncs == 1);
  }
  {
    // No client write: the delay lets the group go by itself.
    Groups g;
    Committer c(db, /*sync=*/true, g.callback(), CommitMode::kThread, std::chrono::milliseconds(1));
    const std::uint64_t t = c.submit(one_put(0), /*lazy=*/true);
    BOOST_TEST_REQUIRE(g.wait_for_ticket(t));
    BOOST_TEST(g.done.back().status.ok());
  }
  {
    // Nor does hurry() (Store::flush, before a node exits).
    Groups g;
    Committer c(db, /*sync=*/true, g.callback(), CommitMode::kThread, std::chrono::hours(1));
    const std::uint64_t t = c.submit(one_put(0), /*lazy=*/true);
    c.hurry();
    BOOST_TEST_REQUIRE(g.wait_for_ticket(t));
  }
  {
    // A stop does not wait out the delay: what is queued is written, then the thread ends.
    Groups g;
    const int before = db.syncs;
    {
      Committer c(db, /*sync=*/true, g.callback(), CommitMode::kThread, std::chrono::hours(1));
      c.submit(one_put(0), /*lazy=*/true);
    }
    BOOST_TEST(g.done.size() == 1u);
    BOOST_TEST(db.syncs == before + 1);
  }
}

BOOST_AUTO_TEST_CASE(item_keys_decode_only_to_the_id_they_encode) {
  // Found by fuzz_records: "i" + be64(12) + "2bb" used to decode as id "122bb", whose key is
  // "i" + be64(122) + "bb" — a corrupt key would have been loaded under another item's id.
  const std::string bad(
      "i\x00\x00\x00\x00\x00\x00\x00\x0c"
      "2bb",
      12);
  BOOST_TEST(!node::item_id_from_key(bad).has_value());
  for (const std::string id : {"1a", "12bb", "987654321abc"}) {
    auto back = node::item_id_from_key(node::item_key(id));
    BOOST_TEST_REQUIRE(back.has_value());
    BOOST_TEST(*back == id);
  }
}

BOOST_AUTO_TEST_CASE(session_marks_say_what_the_node_holds_and_go_with_a_full_resync) {
  test::TempDir dir;
  Store s({dir / "b", "b"});
  const auto a_incarnation = 77;
  const std::vector<SessionMark> want{{"a", a_incarnation, 5}};
  std::vector<SessionMark> have;
  BOOST_TEST((s.session(want, have) == SessionState::kBehind));  // no marks yet

  auto with_marks = batch(s, 1, 0, {stamped(1, Item{"5a", "T", false, false, 0}, "a", 5)});
  with_marks.stamp_high = 1;
  with_marks.marks = {{"a", a_incarnation, 5}};
  // Not up to the syncer's latest stamp: kept (for a rebuild of a lost log), not session marks.
  BOOST_TEST_REQUIRE(std::holds_alternative<proto::msg::Applied>(s.apply(with_marks)));
  have.clear();
  BOOST_TEST((s.session(want, have) == SessionState::kBehind));
  BOOST_TEST((s.dump_stamped("", 10).cursors == with_marks.marks));
  with_marks = batch(s, 1, 0, {});
  with_marks.stamp_high = 1;
  with_marks.marks = {{"a", a_incarnation, 5}};
  with_marks.marks_current = true;
  BOOST_TEST_REQUIRE(std::holds_alternative<proto::msg::Applied>(s.apply(with_marks)));
  have.clear();
  BOOST_TEST((s.session(want, have) == SessionState::kCaughtUp));
  BOOST_TEST(have.at(0).seq == 5u);

  // A full resync forgets the items it will send again, and with them the marks.
  auto reset = batch(s, 1, 0, {});
  reset.reset = true;
  BOOST_TEST_REQUIRE(std::holds_alternative<proto::msg::Applied>(s.apply(reset)));
  have.clear();
  BOOST_TEST((s.session(want, have) == SessionState::kBehind));

  // Taking a rebuilt log (adopt, a new log id) drops them too: they describe the old log's
  // stamps, and the new log's catch-up may count a change of this node as synced a batch before
  // the value that beat it (kvsim seed 604179).
  auto again = batch(s, 1, 0, {});
  again.marks = {{"a", a_incarnation, 5}};
  again.marks_current = true;
  BOOST_TEST_REQUIRE(std::holds_alternative<proto::msg::Applied>(s.apply(again)));
  BOOST_TEST((s.session(want, have) == SessionState::kCaughtUp));
  auto adopt = batch(s, 1, 0, {});
  adopt.log_id = 99;
  adopt.adopt = true;
  BOOST_TEST_REQUIRE(std::holds_alternative<proto::msg::Applied>(s.apply(adopt)));
  have.clear();
  BOOST_TEST((s.session(want, have) == SessionState::kBehind));

  // A lower mark (a node restored from an older copy) is taken as it comes.
  auto lower = batch(s, 1, 0, {});
  lower.log_id = 99;
  lower.marks = {{"a", a_incarnation, 3}};
  lower.marks_current = true;
  BOOST_TEST_REQUIRE(std::holds_alternative<proto::msg::Applied>(s.apply(lower)));
  have.clear();
  BOOST_TEST((s.session(want, have) == SessionState::kBehind));
  BOOST_TEST(have.at(0).seq == 3u);

  // Its own changes it knows by its own sequence; another life's it can never have.
  const auto mine = ok(s.create("mine"));
  have.clear();
  BOOST_TEST((s.session({{"b", s.incarnation(), s.seq()}}, have) == SessionState::kCaughtUp));
  BOOST_TEST((s.session({{"b", s.incarnation() + 1, 1}}, have) == SessionState::kNever));
  (void)mine;
}

namespace {
// A store whose commits the test makes by hand: a change is durable only after commit_next(),
// and destroying the store loses what was not, as kill -9 does.
StoreOptions manual(const test::TempDir& dir) {
  StoreOptions o{dir / "a", "a", /*sync_writes=*/true, /*background_commit=*/true};
  o.seams.manual_commit = true;
  return o;
}
}  // namespace

BOOST_AUTO_TEST_CASE(background_commits_hold_a_change_back_until_it_is_durable) {
  test::TempDir dir;
  Store s(manual(dir));
  std::vector<StoreEvent> events;
  s.set_observer([&](const StoreEvent& e) { events.push_back(e); });
  const Item x = ok(s.create("x"));
  const Commit commit = s.last_commit();
  // Memory has it, but nothing may act on it yet: not answered, not announced, not fetched.
  BOOST_TEST(s.get(x.id).index() == 0u);
  BOOST_TEST(!s.completed(commit));
  BOOST_TEST(events.empty());
  BOOST_TEST(s.fetch(0, 100).changes.empty());
  BOOST_TEST(s.fetch(0, 100).seq_high == 0u);
  BOOST_TEST(s.queued_commits() == 1u);
  BOOST_TEST(s.commit_next(1));
  BOOST_TEST(s.completed(commit));
  BOOST_TEST(!s.outcome(commit));
  BOOST_TEST(events.size() == 1u);
  BOOST_TEST(s.fetch(0, 100).changes.size() == 1u);
}

// Issue 10, problem 1: a newer change of an item, submitted but not durable, used to drop the
// item's older, durable change from the change log at once; FETCH then moved the syncer's cursor
// past that durable change without returning it, and a crash (losing the newer change) left the
// acknowledged older change on the node alone, forever.
BOOST_AUTO_TEST_CASE(a_fetch_never_moves_past_a_durable_change_that_a_pending_one_replaced) {
  test::TempDir dir;
  {
    Store s(manual(dir));
    ok(s.create("older"));  // 1a, seq 1
    ok(s.create("other"));  // 2a, seq 2
    BOOST_TEST(s.commit_next(2));
    ok(s.update({"1a", std::nullopt, std::string("newer")}));  // seq 3, not durable
    const auto got = s.fetch(0, 100);
    // Whatever it returns, the cursor (seq_high) must not pass 1a's durable change unless that
    // change, or a durable value of 1a after it, is in the answer.
    bool has_1a = false;
    for (const auto& c : got.changes) has_1a |= c.item.id == "1a";
    BOOST_TEST((has_1a || got.seq_high < 1u), "seq_high " << got.seq_high << " skips 1a");
    for (const auto& c : got.changes) {
      BOOST_TEST(c.item.title != "newer", "a change that is not durable was offered");
    }
  }  // a crash: the update to "newer" was never durable
  Store s(manual(dir));
  const auto got = s.fetch(0, 100);
  BOOST_TEST_REQUIRE(got.changes.size() == 2u);
  BOOST_TEST(got.changes[0].item.title == "older");
}

// The syncer never names an id twice in one batch (its log holds one value per item), but a
// batch is input: the second change sees what the first chose, and the item is written once.
BOOST_AUTO_TEST_CASE(a_batch_that_names_an_item_twice_applies_both_in_turn) {
  test::TempDir dir;
  std::uint64_t digest = 0;
  {
    Store s({dir / "b", "b"});
    const auto r = apply(s, 3, 0,
                         {stamped(1, Item{"7c", "first", false, false, 0}, "c"),
                          stamped(2, Item{"8c", "kept", false, false, 0}, "c"),
                          stamped(3, Item{"7c", "", false, true, 0}, "c"),
                          stamped(2, Item{"7c", "too late", false, false, 0}, "c")});
    BOOST_TEST(r.changed == 2u);
    BOOST_TEST((err(s.get("7c")) == ErrorCode::kDeleted));
    BOOST_TEST(ok(s.get("8c")).title == "kept");
    BOOST_TEST(s.status().tombstones == 1u);
    BOOST_TEST(s.status().items == 1u);
    digest = s.status().digest;
  }
  // What memory held is what the disk holds: the same digest after a reopen.
  Store again({dir / "b", "b"});
  BOOST_TEST(again.status().digest == digest);
  BOOST_TEST((err(again.get("7c")) == ErrorCode::kDeleted));
}

// Rule R on the node, case by case, without a store (node/apply_rule.hpp).
BOOST_AUTO_TEST_CASE(rule_r_decides_each_stamped_change_alone) {
  constexpr bool kDelete = true, kUpdate = false;
  // Nothing held: any change applies.
  BOOST_TEST(stamped_change_applies(nullptr, kUpdate, 5, 0));
  BOOST_TEST(stamped_change_applies(nullptr, kDelete, 5, 0));
  // A pending local change (seq 7, synced up to 3) keeps its place against an update, however
  // late, and gives way to a delete.
  Record pending;
  pending.local_seq = 7;
  pending.stamp = 2;
  BOOST_TEST(!stamped_change_applies(&pending, kUpdate, 100, 3));
  BOOST_TEST(stamped_change_applies(&pending, kDelete, 1, 3));
  // Once the log holds it (synced up to 7), the log's value replaces it, whatever its stamp.
  BOOST_TEST(stamped_change_applies(&pending, kUpdate, 1, 7));
  // A stamped value: a later update replaces it, an older or equal one does not.
  Record stamped;
  stamped.stamp = 10;
  stamped.version = 10;
  BOOST_TEST(stamped_change_applies(&stamped, kUpdate, 11, 0));
  BOOST_TEST(!stamped_change_applies(&stamped, kUpdate, 10, 0));
  BOOST_TEST(!stamped_change_applies(&stamped, kUpdate, 9, 0));
  // A delete beats a stamped update, even one stamped later ...
  BOOST_TEST(stamped_change_applies(&stamped, kDelete, 9, 0));
  // ... and a tombstone stays: no update brings it back, and a later delete does not move it.
  Record tomb = stamped;
  tomb.deleted = true;
  BOOST_TEST(!stamped_change_applies(&tomb, kUpdate, 50, 0));
  BOOST_TEST(!stamped_change_applies(&tomb, kDelete, 50, 0));
  BOOST_TEST(stamped_change_applies(&tomb, kDelete, 9, 0));  // the first stamped delete stands
}

// The in-memory index's node pool (node_pool.hpp): freed nodes are reused, every value stays
// intact through inserts and erases that interleave, and a size it does not pool still works.
BOOST_AUTO_TEST_CASE(the_index_pool_keeps_every_node_intact_through_reuse) {
  NodePool pool;
  using Map =
      std::map<int, std::string, std::less<>, PoolAllocator<std::pair<const int, std::string>>>;
  {
    Map m{Map::allocator_type(pool)};
    // More nodes than one chunk holds, so that the pool grows.
    const int n = 100000;
    for (int i = 0; i < n; ++i) m.emplace(i, "value " + std::to_string(i) + " of the pool test");
    for (int i = 0; i < n; i += 2) m.erase(i);
    for (int i = n; i < n + n / 2; ++i) m.emplace(i, "again " + std::to_string(i));
    BOOST_TEST(m.size() == static_cast<std::size_t>(n));
    int checked = 0;
    for (const auto& [k, v] : m) {
      const std::string want =
          k < n ? "value " + std::to_string(k) + " of the pool test" : "again " + std::to_string(k);
      if (v != want) BOOST_FAIL("node " << k << " holds '" << v << "'");
      if (k < n) BOOST_TEST_REQUIRE(k % 2 == 1);  // the even ones were erased
      ++checked;
    }
    BOOST_TEST(checked == n);
  }
  // Another size from the same pool goes to operator new and back.
  PoolAllocator<std::array<char, 1000>> other(pool);
  auto* p = other.allocate(1);
  (*p)[999] = 'x';
  other.deallocate(p, 1);
}
