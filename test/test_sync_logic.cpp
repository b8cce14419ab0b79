// The sync algorithm without a network: real node stores and the real syncer log, driven
// through the same steps the syncer takes (fetch, stamp, deliver) in random interleavings with
// random client writes, node restarts and syncer restarts. Every seed checks the invariants of
// docs/sync.md at the end.
#define BOOST_TEST_MODULE sync_logic
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <map>
#include <random>
#include <set>

#include "node/store.hpp"
#include "sync/sync_log.hpp"
#include "temp_dir.hpp"

using namespace kv;
using proto::msg::Error;

namespace {

struct Sim {
  explicit Sim(std::size_t n, std::size_t limit = 3) : limit(limit) {
    for (std::size_t i = 0; i < n; ++i) {
      names.push_back(std::string(1, static_cast<char>('a' + i)));
      open_node(i);
      applied.push_back(0);
    }
    log = std::make_unique<sync::SyncLog>(sync::SyncLogOptions{dir / "sync"});
  }

  void open_node(std::size_t i) {
    auto s = std::make_unique<node::Store>(node::StoreOptions{dir / names[i], names[i]});
    if (i < nodes.size()) {
      nodes[i] = std::move(s);
    } else {
      nodes.push_back(std::move(s));
    }
  }
  void restart_node(std::size_t i) {
    nodes[i].reset();
    open_node(i);
    applied[i] = nodes[i]->status().applied_stamp;  // what the syncer learns on reconnect
  }
  void restart_syncer() {
    log.reset();
    log = std::make_unique<sync::SyncLog>(sync::SyncLogOptions{dir / "sync"});
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      applied[i] = nodes[i]->status().applied_stamp;
      log->observe_stamp(applied[i]);
    }
  }
  std::uint64_t incarnation(std::size_t i) const { return nodes[i]->status().incarnation; }

  // One FETCH and its stamping; returns whether anything moved.
  bool fetch(std::size_t i) {
    const auto cursor = log->cursor(names[i], incarnation(i));
    auto got = nodes[i]->fetch(cursor, limit);
    if (got.changes.empty() && got.seq_high <= cursor) return false;
    log->stamp(names[i], incarnation(i), got.changes, got.seq_high, got.safe_mark);
    return true;
  }
  // One APPLY; returns whether the node was behind.
  bool deliver(std::size_t i) {
    const auto cursor = log->cursor(names[i], incarnation(i));
    const auto st = nodes[i]->status();
    if (applied[i] >= log->counter() && st.synced_upto >= cursor) return false;
    auto r = nodes[i]->apply(log->next_batch(applied[i], limit, cursor));
    BOOST_TEST_REQUIRE(std::holds_alternative<proto::msg::Applied>(r));
    applied[i] = std::get<proto::msg::Applied>(r).applied_stamp;
    return true;
  }
  void drain() {
    for (int round = 0; round < 10000; ++round) {
      bool moved = false;
      for (std::size_t i = 0; i < nodes.size(); ++i) {
        while (fetch(i)) moved = true;
      }
      for (std::size_t i = 0; i < nodes.size(); ++i) {
        while (deliver(i)) moved = true;
      }
      if (!moved) return;
    }
    BOOST_FAIL("the cluster did not quiesce");
  }

  test::TempDir dir;
  std::size_t limit;
  std::vector<std::string> names;
  std::vector<std::unique_ptr<node::Store>> nodes;
  std::vector<std::uint64_t> applied;
  std::unique_ptr<sync::SyncLog> log;
};

struct Tally {
  std::set<std::string> created;                        // every id a create returned
  std::set<std::string> deleted;                        // ids whose delete was acknowledged
  std::map<std::string, std::set<std::string>> values;  // acknowledged (title, completed) per id
  static std::string value(const Item& it) { return it.title + (it.completed ? "|1" : "|0"); }
};

void check_converged(Sim& sim, const Tally& tally) {
  const auto reference = sim.nodes[0]->list();
  for (std::size_t i = 0; i < sim.nodes.size(); ++i) {
    const auto items = sim.nodes[i]->list();
    // Invariant 6: identical items with identical versions.
    BOOST_TEST_REQUIRE((items == reference), "node " << sim.names[i] << " differs");
    const auto st = sim.nodes[i]->status();
    // Invariant 1: nothing applied from the syncer comes back as a local change.
    BOOST_TEST(st.unsynced == 0u);
    BOOST_TEST(sim.nodes[i]->fetch(0, 100000).changes.empty());
    BOOST_TEST(st.applied_stamp == sim.log->counter());
  }
  // The nodes hold exactly the log's live items.
  std::vector<Item> from_log;
  for (const auto& e : sim.log->snapshot()) {
    if (!e.item.deleted) from_log.push_back(e.item);
  }
  std::sort(from_log.begin(), from_log.end(),
            [](const Item& a, const Item& b) { return item_id_less(a.id, b.id); });
  BOOST_TEST((from_log == reference));
  for (const auto& it : reference) {
    // Invariant 3: a deleted item never comes back.
    BOOST_TEST(!tally.deleted.count(it.id), "deleted item " << it.id << " came back");
    // Invariant 2: every value is one a client wrote and was told succeeded.
    BOOST_TEST(tally.values.at(it.id).count(Tally::value(it)) == 1u,
               "item " << it.id << " holds a value nobody wrote");
  }
}

void random_run(unsigned seed, std::size_t nodes, int ops, bool restarts) {
  Sim sim(nodes, 1 + seed % 4);
  Tally tally;
  std::mt19937 rng(seed);
  auto pick = [&](std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
  };
  std::vector<std::string> ids;
  for (int op = 0; op < ops; ++op) {
    const std::size_t n = pick(nodes);
    const int what = static_cast<int>(pick(100));
    if (what < 20 || ids.empty()) {
      auto r = sim.nodes[n]->create("t" + std::to_string(op));
      const Item it = std::get<Item>(r);
      // Invariant 4: ids never repeat, without coordination.
      BOOST_TEST_REQUIRE(tally.created.insert(it.id).second, "id " << it.id << " given twice");
      tally.values[it.id].insert(Tally::value(it));
      ids.push_back(it.id);
    } else if (what < 45) {
      const auto& id = ids[pick(ids.size())];
      proto::msg::Update u{id, pick(2) == 0, std::nullopt};
      if (pick(2) == 0) u.title = "u" + std::to_string(op);
      auto r = sim.nodes[n]->update(u);
      if (auto* it = std::get_if<Item>(&r)) tally.values[id].insert(Tally::value(*it));
    } else if (what < 52) {
      const auto& id = ids[pick(ids.size())];
      if (std::holds_alternative<Item>(sim.nodes[n]->remove(id))) tally.deleted.insert(id);
    } else if (what < 75) {
      sim.fetch(n);
    } else if (what < 97) {
      sim.deliver(n);
    } else if (restarts && what < 99) {
      sim.restart_node(n);
    } else if (restarts) {
      sim.restart_syncer();
    }
  }
  sim.drain();
  check_converged(sim, tally);
  // Invariant 5: delivering everything again, from the start, changes nothing.
  for (std::size_t i = 0; i < nodes; ++i) {
    const auto before = sim.nodes[i]->list();
    const auto cursor = sim.log->cursor(sim.names[i], sim.incarnation(i));
    auto r = sim.nodes[i]->apply(sim.log->next_batch(0, 1 << 30, cursor));
    BOOST_TEST(std::get<proto::msg::Applied>(r).changed == 0u);
    BOOST_TEST((sim.nodes[i]->list() == before));
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_seed_example_end_to_end) {
  Sim sim(2, 100);
  auto& a = *sim.nodes[0];
  auto& b = *sim.nodes[1];
  std::get<Item>(a.create("TaskA"));
  std::get<Item>(a.create("TaskB"));
  std::get<Item>(a.update({"1a", true, std::nullopt}));
  // 1. sync: get the differences; 2. stamp them with the syncer's version 1; 3. both apply.
  BOOST_TEST(sim.fetch(0));
  BOOST_TEST(sim.log->counter() == 1u);
  sim.deliver(0);
  sim.deliver(1);
  const std::vector<Item> table{{"1a", "TaskA", true, false, 1}, {"2a", "TaskB", false, false, 1}};
  BOOST_TEST((a.list() == table));
  BOOST_TEST((b.list() == table));
  // 4. create TaskC on B: version 2 there, and it reaches A with the syncer's stamp 2.
  const Item c = std::get<Item>(b.create("TaskC"));
  BOOST_TEST(c.version == 2u);
  BOOST_TEST(c.id == "3b");
  sim.drain();
  BOOST_TEST((a.list() == b.list()));
  BOOST_TEST(a.list().back().version == 2u);
}

BOOST_AUTO_TEST_CASE(concurrent_updates_of_one_item_end_equal_by_the_later_stamp) {
  Sim sim(2, 100);
  std::get<Item>(sim.nodes[0]->create("shared"));
  sim.drain();
  // Both nodes change 1a before the syncer hears of either.
  std::get<Item>(sim.nodes[0]->update({"1a", std::nullopt, std::string("from a")}));
  std::get<Item>(sim.nodes[1]->update({"1a", std::nullopt, std::string("from b")}));
  sim.fetch(1);  // b's change is stamped first...
  sim.fetch(0);  // ...a's later, so a's wins everywhere
  sim.drain();
  BOOST_TEST(std::get<Item>(sim.nodes[0]->get("1a")).title == "from a");
  BOOST_TEST((sim.nodes[0]->list() == sim.nodes[1]->list()));
}

BOOST_AUTO_TEST_CASE(delete_beats_a_concurrent_update_in_either_order) {
  for (int order = 0; order < 2; ++order) {
    Sim sim(2, 100);
    std::get<Item>(sim.nodes[0]->create("x"));
    sim.drain();
    std::get<Item>(sim.nodes[0]->remove("1a"));
    std::get<Item>(sim.nodes[1]->update({"1a", true, std::nullopt}));
    sim.fetch(order);
    sim.fetch(1 - order);
    sim.drain();
    BOOST_TEST(sim.nodes[0]->list().empty());
    BOOST_TEST(sim.nodes[1]->list().empty());
  }
}

BOOST_DATA_TEST_CASE(random_interleavings_converge, boost::unit_test::data::xrange(1, 121), seed) {
  random_run(seed, 2 + seed % 3, 150, false);
}

BOOST_DATA_TEST_CASE(random_interleavings_with_restarts_converge,
                     boost::unit_test::data::xrange(1, 61), seed) {
  random_run(1000 + seed, 2 + seed % 4, 150, true);
}
