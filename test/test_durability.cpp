// Nothing acknowledged is lost: the real binaries killed with SIGKILL while writes stream in,
// a node catching up after missing thousands of changes, a wiped node rejoining by a full
// resync, and data directories that must be refused.
#define BOOST_TEST_MODULE durability
#include <boost/test/unit_test.hpp>

#include <rocksdb/db.h>
#include <signal.h>

#include <boost/json.hpp>

#include <algorithm>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "cluster.hpp"
#include "node/store_format.hpp"

using namespace kv;
using namespace kv::test;
namespace json = boost::json;

namespace {
// id -> "vN title" of every acknowledged create in a kvcli --json transcript.
std::map<std::string, std::string> acknowledged(const std::string& out) {
  std::map<std::string, std::string> acked;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto o = json::parse(line).as_object();
    if (!o.at("ok").as_bool()) continue;
    const auto& it = o.at("items").at(0).as_object();
    acked[std::string(it.at("id").as_string())] =
        "v" + std::to_string(it.at("version").to_number<std::uint64_t>()) + " " +
        std::string(it.at("title").as_string());
  }
  return acked;
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

// Restarts node i and waits until the syncer's greeting APPLY lifted its write fence.
void restart_and_wait_for_syncer(Cluster& c, std::size_t i) {
  const std::string mark = c.node(i).name + " applied up to stamp";
  const std::size_t before = count_of(file_text(c.dir() / "sync.log"), mark);
  c.start_node(i);
  BOOST_TEST_REQUIRE(
      wait_until([&] { return count_of(file_text(c.dir() / "sync.log"), mark) > before; }));
}

Process start_writer(Cluster& c, std::vector<std::string> args, const std::string& input,
                     const std::string& name) {
  std::vector<std::string> argv{
      (bin_dir() / "kvcli").string(), "--nodes", c.nodes_arg(), "--json", "--timeout", "2000"};
  argv.insert(argv.end(), args.begin(), args.end());
  return Process(argv, c.dir() / (name + ".log"), input);
}
}  // namespace

BOOST_AUTO_TEST_CASE(a_node_killed_mid_stream_keeps_every_acknowledged_write) {
  Cluster c(1, false);
  Process writer = start_writer(c, {"--route", "1"}, script("create", 3000, "w"), "writer");
  BOOST_TEST(wait_until([&] { return c.items_on(1).size() >= 200; }));
  c.stop_node(0, /*kill9=*/true);
  const auto acked = acknowledged(writer.read_all(60s));
  writer.wait();
  BOOST_TEST(acked.size() >= 200u);
  c.start_node(0);
  std::set<std::string> present;  // "id vN title" lines
  for (const auto& line : c.items_on(1)) present.insert(line);
  // Every acknowledged create is there, with the version it was acknowledged with.
  for (const auto& [id, what] : acked) {
    BOOST_TEST(present.count(id + " " + what) == 1u, "lost " << id << " " << what);
  }
}

// kvsync --sync-delay (docs/sync.md, "The syncer's fsync"): a stamp reaches the other node at
// once, while its origin hears that the change is in the log only after the fsync the delay
// holds back; a stop does not wait the delay out, and the next syncer confirms the change.
BOOST_AUTO_TEST_CASE(the_syncer_fans_out_at_once_and_confirms_after_its_delayed_fsync) {
  Cluster c(2);
  c.stop_syncer();
  c.start_syncer({}, {"--sync-delay", "600000"});
  BOOST_TEST_REQUIRE(c.cli({"--route", "1", "create", "held"}).code == 0);
  auto unsynced = [&](std::size_t node) {
    auto r = c.cli({"--json", "nodes"});
    return json::parse(r.out).at("nodes").at(node).at("unsynced").to_number<std::uint64_t>();
  };
  // No session: a read-your-writes read would wait for the marks, which wait for the fsync.
  BOOST_TEST_REQUIRE(wait_until([&] {
    const auto items = c.items_on(2);
    return items.size() == 1 && items[0].find("held") != std::string::npos;
  }));
  BOOST_TEST(unsynced(0) == 1u);  // stamped and fanned out, not yet durable in the log
  c.stop_syncer();
  // The stop ends the delay: no last-resort stop of a syncer still waiting for it.
  BOOST_TEST(file_text(c.dir() / "sync.log").find("still open after") == std::string::npos);
  c.start_syncer();
  BOOST_TEST(wait_until([&] { return unsynced(0) == 0; }));
  BOOST_TEST(c.wait_converged().size() == 1u);
}

// ...but stamps of a second origin end the delay: a node that writes gets the stamps after its
// own, not yet durable, ones only once they are (SyncMachine::next_apply), so without that
// node 1 would wait the delay out for node 2's change.
BOOST_AUTO_TEST_CASE(a_writing_node_gets_another_nodes_change_without_waiting_out_the_delay) {
  Cluster c(2);
  c.stop_syncer();
  c.start_syncer({}, {"--sync-delay", "600000"});
  auto holds = [&](std::size_t node, const std::vector<std::string>& titles) {
    const auto items = c.items_on(node);
    return std::all_of(titles.begin(), titles.end(), [&](const std::string& t) {
      return std::any_of(items.begin(), items.end(),
                         [&](const std::string& i) { return i.find(t) != std::string::npos; });
    });
  };
  BOOST_TEST_REQUIRE(c.cli({"--route", "1", "create", "from a"}).code == 0);
  BOOST_TEST_REQUIRE(wait_until([&] { return holds(2, {"from a"}); }));
  BOOST_TEST_REQUIRE(c.cli({"--route", "2", "create", "from b"}).code == 0);
  BOOST_TEST(wait_until([&] { return holds(1, {"from a", "from b"}); }));
}

BOOST_AUTO_TEST_CASE(the_syncer_killed_mid_fanout_never_stamps_a_change_twice) {
  Cluster c(2);
  Process writer = start_writer(c, {}, script("create", 3000, "s"), "writer");
  int kills = 0;
  for (int round = 0; round < 3; ++round) {
    // Fifty more changes fanned out since the last kill (on a slow build, e.g. under ASan, the
    // writer may be done before the third round: then there is nothing left to interrupt).
    const std::size_t seen = c.items_on(2).size();
    BOOST_TEST(wait_until([&] { return c.items_on(2).size() > seen + 50 || !writer.running(); }));
    if (!writer.running()) break;
    c.stop_syncer(/*kill9=*/true);
    c.start_syncer();
    ++kills;
  }
  BOOST_TEST(kills >= 1);
  const auto acked = acknowledged(writer.read_all(60s));
  writer.wait();
  const auto items = c.wait_converged();
  BOOST_TEST(items.size() == acked.size());
  // Each local change (origin:id and its local version) appears with one stamp only.
  std::map<std::string, std::set<std::string>> stamps;
  std::regex line(R"(sync (\w+:\w+) \w+ "[^"]*"(?: completed)? (v\d+) -> stamp (\d+))");
  const std::string log = file_text(c.dir() / "sync.log");
  for (std::sregex_iterator it(log.begin(), log.end(), line), end; it != end; ++it) {
    stamps[(*it)[1].str() + " " + (*it)[2].str()].insert((*it)[3].str());
  }
  BOOST_TEST(stamps.size() > 100u);
  for (const auto& [change, s] : stamps) BOOST_TEST(s.size() == 1u, change << " stamped twice");
}

BOOST_AUTO_TEST_CASE(a_node_that_missed_thousands_of_changes_catches_up) {
  Cluster c(2);
  c.stop_node(1);
  auto r = c.cli({"--json", "--route", "1"}, script("create", 3000, "m"));
  BOOST_TEST(r.code == 0);
  c.cli({"--route", "1"}, "update 5a complete\ndelete 7a\n");
  const auto start = std::chrono::steady_clock::now();
  c.start_node(1);
  const auto items = c.wait_converged(60s);
  BOOST_TEST_MESSAGE("caught up 3000 items in "
                     << std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - start)
                            .count()
                     << " ms (including the polling of this test)");
  BOOST_TEST(items.size() == 2999u);
}

// A wiped node has a new data directory under a name the log knows: the syncer cannot tell it
// from a second node given the same name, so it refuses it, with a sentence that says what to
// run; once the operator says the node was wiped (forget-node), it is resynced from scratch.
BOOST_AUTO_TEST_CASE(a_wiped_node_is_refused_until_forgotten_then_resynced) {
  Cluster c(2);
  c.cli({"--route", "1"}, script("create", 200, "x") + "delete 3a\n");
  BOOST_TEST(c.wait_converged().size() == 199u);
  c.stop_node(1);
  std::filesystem::remove_all(c.dir() / "b");
  c.start_node(1);
  BOOST_TEST_REQUIRE(wait_until(
      [&] { return file_text(c.dir() / "sync.log").find("forget-node b") != std::string::npos; }));
  // Refused, it never gets the APPLY that lifts its write fence: kvcli goes to the next node.
  auto refused = c.cli({"--json", "--route", "2", "--no-session", "create", "on a instead"});
  BOOST_TEST(refused.out.find("\"skipped\":[\"" + c.node(1).binary) != std::string::npos,
             refused.out);
  c.stop_syncer();
  auto forget = run_binary("kvsync", {"forget-node", "b", "--data", (c.dir() / "sync").string()});
  BOOST_TEST(forget.code == 0);
  BOOST_TEST(forget.out.find("forgot node b") != std::string::npos, forget.out);
  c.start_syncer();
  const auto items = c.wait_converged();
  BOOST_TEST(items.size() == 200u);
  // Writing to the new node works and reaches the other one.
  auto r = c.cli({"--json", "--route", "2", "create", "after the wipe"});
  BOOST_TEST(r.code == 0);
  BOOST_TEST(r.out.find("\"node\":\"" + c.node(1).binary) != std::string::npos, r.out);
  BOOST_TEST(c.wait_converged().size() == 201u);
}

BOOST_AUTO_TEST_CASE(a_corrupt_or_foreign_data_directory_is_refused) {
  test::TempDir dir;
  auto run_node = [&](const std::string& name) {
    Process p({(bin_dir() / "kvnode").string(), "--name", name, "--data", (dir / "n").string()},
              dir / "node.log");
    const int code = p.wait();
    return std::make_pair(code, p.log_tail());
  };
  {
    Cluster c(1, false);
    c.cli({"create", "x"});
    c.stop_node(0);
    std::filesystem::rename(c.dir() / "a", dir / "n");
  }
  // Another node's directory.
  auto [code, log] = run_node("b");
  BOOST_TEST(code == 1);
  BOOST_TEST(log.find("belongs to node 'a'") != std::string::npos);
  // A record that does not decode.
  {
    rocksdb::DB* raw = nullptr;
    BOOST_TEST_REQUIRE(rocksdb::DB::Open(rocksdb::Options(), (dir / "n").string(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    BOOST_TEST(db->Put(rocksdb::WriteOptions(), node::item_key("1a"), "\x01\xff").ok());
  }
  std::tie(code, log) = run_node("a");
  BOOST_TEST(code == 1);
  BOOST_TEST(log.find("item record '1a' is corrupt") != std::string::npos);
  // A truncated MANIFEST: RocksDB itself cannot open it.
  for (const auto& e : std::filesystem::directory_iterator(dir / "n")) {
    if (e.path().filename().string().starts_with("MANIFEST"))
      std::filesystem::resize_file(e.path(), 10);
  }
  std::tie(code, log) = run_node("a");
  BOOST_TEST(code == 1);
  BOOST_TEST(log.find("data directory") != std::string::npos);
  // Not a kvnode directory at all.
  std::filesystem::remove_all(dir / "n");
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    BOOST_TEST_REQUIRE(rocksdb::DB::Open(o, (dir / "n").string(), &raw).ok());
    delete raw;
  }
  std::tie(code, log) = run_node("a");
  BOOST_TEST(code == 1);
  BOOST_TEST(log.find("not a kvnode store") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_node_restored_from_an_older_copy_takes_a_new_life_and_fresh_ids) {
  Cluster c(2);
  c.cli({"--route", "2"}, script("create", 20, "early"));
  BOOST_TEST(c.wait_converged().size() == 20u);
  c.stop_node(1);
  std::filesystem::copy(c.dir() / "b", c.dir() / "b-copy",
                        std::filesystem::copy_options::recursive);
  restart_and_wait_for_syncer(c, 1);
  c.cli({"--route", "2"}, script("create", 20, "late"));
  BOOST_TEST(c.wait_converged().size() == 40u);
  // Put the older copy back: its sequence is behind the syncer's cursor for it.
  c.stop_node(1);
  std::filesystem::remove_all(c.dir() / "b");
  std::filesystem::rename(c.dir() / "b-copy", c.dir() / "b");
  restart_and_wait_for_syncer(c, 1);
  // New writes on the restored node take fresh ids and reach the other node.
  auto r = c.cli({"--json", "--route", "2"}, script("create", 5, "restored"));
  BOOST_TEST(r.code == 0);
  BOOST_TEST(r.out.find("\"id\":\"41b\"") != std::string::npos);  // not 21b: that is taken
  const auto items = c.wait_converged();
  BOOST_TEST(items.size() == 45u);
  BOOST_TEST(file_text(c.dir() / "sync.log").find("restored from an older copy") !=
             std::string::npos);
}

// Issue 10, problem 3, as the issue reproduced it: b is stopped holding an unsynced update of
// 1a, its directory is copied, b runs on and syncs, a then updates 1a (acknowledged), and b is
// put back from the copy. The syncer used to move its cursor back and stamp the copy's old
// update anew: it won on every node, and a's acknowledged update was gone.
BOOST_AUTO_TEST_CASE(a_restored_copy_never_overwrites_a_later_acknowledged_update) {
  Cluster c(2);
  c.cli({"--route", "1", "create", "first"});
  c.wait_converged();
  c.stop_syncer();
  BOOST_TEST(
      c.cli({"--route", "2", "--no-session", "update", "1a", "title", "b's old title"}).code == 0);
  c.stop_node(1);
  std::filesystem::copy(c.dir() / "b", c.dir() / "b-copy",
                        std::filesystem::copy_options::recursive);
  c.start_node(1);
  c.start_syncer();
  c.wait_converged();
  BOOST_TEST(c.cli({"--route", "2", "--no-session", "create", "b runs on"}).code == 0);
  c.wait_converged();
  BOOST_TEST(
      c.cli({"--route", "1", "--no-session", "update", "1a", "title", "a's later title"}).code ==
      0);
  c.wait_converged();
  c.stop_node(1);
  std::filesystem::remove_all(c.dir() / "b");
  std::filesystem::rename(c.dir() / "b-copy", c.dir() / "b");
  restart_and_wait_for_syncer(c, 1);
  const auto items = c.wait_converged();
  BOOST_TEST_REQUIRE(items.size() == 2u);
  BOOST_TEST(items[0].find("a's later title") != std::string::npos, items[0]);
}

// Issue 10, problem 4: c leaves the syncer's configuration holding an unsynced "update 1a
// complete"; "delete 1a" is acknowledged on the two other nodes and compacted there; c comes
// back. The compaction horizon used to count the configured nodes only, so the tombstone went
// and c's update brought 1a back on every node. A node the log knows holds compaction back
// until it returns or is forgotten.
BOOST_AUTO_TEST_CASE(a_node_left_out_of_the_configuration_keeps_deletes_final) {
  Cluster c(3);
  c.cli({"--route", "1", "create", "x"});
  c.wait_converged();
  c.stop_syncer();
  c.start_syncer({0, 1});
  BOOST_TEST(c.cli({"--route", "3", "--no-session", "update", "1a", "complete"}).code == 0);
  BOOST_TEST(c.cli({"--route", "1", "--no-session", "delete", "1a"}).code == 0);
  c.cli({"--route", "2", "--no-session"}, script("create", 5, "more"));
  // a and b agree, 1a deleted there
  BOOST_TEST_REQUIRE(wait_until([&] { return c.items_on(1) == c.items_on(2); }));
  c.stop_syncer();
  c.start_syncer();
  const auto items = c.wait_converged();
  BOOST_TEST(items.size() == 5u);
  for (const auto& it : items) BOOST_TEST(!it.starts_with("1a "), it);
}

BOOST_AUTO_TEST_CASE(two_nodes_with_one_name_are_not_both_synced) {
  Cluster c(1, false);
  test::TempDir other;
  Process twin({(bin_dir() / "kvnode").string(), "--name", "a", "--data", (other / "a").string()},
               other / "twin.log");
  const std::string twin_addr = binary_address(twin.wait_for_line("ready"));
  Process sync({(bin_dir() / "kvsync").string(), "--nodes", c.node(0).binary + "," + twin_addr,
                "--data", (other / "sync").string()},
               other / "sync.log");
  BOOST_TEST(wait_until([&] {
    return file_text(other / "sync.log").find("node names must differ") != std::string::npos;
  }));
}

BOOST_AUTO_TEST_CASE(tombstones_and_change_logs_are_compacted_under_a_long_write_stream) {
  Cluster c(2);
  std::string input;
  for (int i = 1; i <= 1500; ++i) {
    input += "create item " + std::to_string(i) + "\n";
    if (i % 2 == 0) input += "delete " + std::to_string(i - 1) + "a\n";
  }
  // Its output goes nowhere: nobody reads it while we sample the nodes.
  Process writer({(bin_dir() / "kvcli").string(), "--nodes", c.nodes_arg(), "--route", "1"},
                 c.dir() / "writer.log", input, /*capture_stdout=*/false);
  std::uint64_t max_unsynced = 0;
  auto status = [&](std::size_t node) {
    auto r = c.cli({"--json", "nodes"});
    return json::parse(r.out).at("nodes").at(node).as_object();
  };
  const auto end = std::chrono::steady_clock::now() + 120s;
  while (writer.running() && std::chrono::steady_clock::now() < end) {
    max_unsynced = std::max(max_unsynced, status(0).at("unsynced").to_number<std::uint64_t>());
  }
  BOOST_TEST_REQUIRE(writer.wait(10s) == 0);
  const auto items = c.wait_converged();
  BOOST_TEST(items.size() == 750u);
  // The compaction rule: change-log entries go once in the syncer's log; tombstones go once
  // every node applied them. After the stream nothing of either is left.
  BOOST_TEST(wait_until([&] {
    for (std::size_t n = 0; n < 2; ++n) {
      const auto s = status(n);
      if (s.at("tombstones").to_number<std::uint64_t>() != 0 ||
          s.at("unsynced").to_number<std::uint64_t>() != 0) {
        return false;
      }
    }
    return true;
  }));
  BOOST_TEST_MESSAGE("largest change log seen during the stream: " << max_unsynced);
  BOOST_TEST(max_unsynced < 1500u);  // bounded by the syncer's lag, not by the writes
  BOOST_TEST(file_text(c.dir() / "sync.log").find("compacted") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_node_behind_the_compaction_point_gets_a_full_resync) {
  Cluster c(2);
  c.cli({"--route", "1"}, script("create", 10, "x"));
  BOOST_TEST(c.wait_converged().size() == 10u);
  c.stop_node(1);
  std::filesystem::copy(c.dir() / "b", c.dir() / "b-old", std::filesystem::copy_options::recursive);
  restart_and_wait_for_syncer(c, 1);
  c.cli({"--route", "1"}, "delete 1a\ndelete 2a\ncreate y\n");
  BOOST_TEST(c.wait_converged().size() == 9u);
  BOOST_TEST(wait_until([&] {
    const json::value v = json::parse(c.cli({"--json", "nodes"}).out);
    const auto& nodes = v.at("nodes").as_array();
    for (const auto& n : nodes) {
      if (n.at("tombstones").to_number<std::uint64_t>() != 0) return false;
    }
    return file_text(c.dir() / "sync.log").find("compacted") != std::string::npos;
  }));
  // The old copy still holds 1a and 2a, whose tombstones are gone: only a full resync can
  // remove them.
  c.stop_node(1);
  std::filesystem::remove_all(c.dir() / "b");
  std::filesystem::rename(c.dir() / "b-old", c.dir() / "b");
  restart_and_wait_for_syncer(c, 1);
  const auto items = c.wait_converged();
  BOOST_TEST(items.size() == 9u);
  BOOST_TEST(file_text(c.dir() / "sync.log").find("full resync") != std::string::npos);
}

// A small file system of our own (tmpfs), unmounted when the test ends.
struct SmallDisk {
  explicit SmallDisk(const std::filesystem::path& at, const char* size) : path(at) {
    std::filesystem::create_directories(at);
    const std::string cmd = "mount -t tmpfs -o size=" + std::string(size) + " tmpfs " + at.string();
    mounted = std::system(cmd.c_str()) == 0;
  }
  ~SmallDisk() {
    if (mounted) std::system(("umount -l " + path.string()).c_str());
  }
  std::filesystem::path path;
  bool mounted = false;
};

BOOST_AUTO_TEST_CASE(a_full_disk_fails_writes_clearly_loses_nothing_and_recovers) {
  test::TempDir dir;
  SmallDisk disk(dir / "disk", "48m");
  BOOST_TEST_REQUIRE(disk.mounted, "mounting a tmpfs needs root, which CI has");
  Process node({(bin_dir() / "kvnode").string(), "--name", "a", "--standalone", "--data",
                (disk.path / "n").string()},
               dir / "node.log");
  const std::string addr = binary_address(node.wait_for_line("ready"));
  // Leave little room.
  {
    std::ofstream filler(disk.path / "filler", std::ios::binary);
    const std::string mb(1024 * 1024, 'f');
    for (int i = 0; i < 64; ++i) {
      filler.write(mb.data(), mb.size());
      if (!filler) break;
    }
  }
  std::filesystem::resize_file(disk.path / "filler",
                               std::filesystem::file_size(disk.path / "filler") - 3 * 1024 * 1024);
  const std::string title(1000, 't');
  auto r = run_cli({"--nodes", addr, "--json"}, script("create " + title, 6000, ""), 120s);
  BOOST_TEST(r.code == 1);  // some writes failed...
  const auto acked = acknowledged(r.out);
  BOOST_TEST(acked.size() > 100u);  // ...after others succeeded
  BOOST_TEST(r.out.find("could not commit") != std::string::npos);
  BOOST_TEST(r.out.find("nothing was changed") != std::string::npos);
  // Reads still work, and show exactly the acknowledged items.
  auto list = run_cli({"--nodes", addr, "--json", "list"});
  BOOST_TEST(list.code == 0);
  BOOST_TEST(json::parse(list.out).at("items").as_array().size() == acked.size());
  // Room again: writes succeed again, without a restart.
  std::filesystem::remove(disk.path / "filler");
  BOOST_TEST(wait_until([&] {
    return run_cli({"--nodes", addr, "create", "after the disk had room"}).code == 0;
  }));
  // Nothing acknowledged was lost, across a crash too.
  node.kill9();
  node.wait();
  Process again({(bin_dir() / "kvnode").string(), "--name", "a", "--standalone", "--data",
                 (disk.path / "n").string()},
                dir / "node2.log");
  const std::string addr2 = binary_address(again.wait_for_line("ready"));
  list = run_cli({"--nodes", addr2, "--json", "list"});
  const json::value listed = json::parse(list.out);
  std::set<std::string> present;
  for (const auto& it : listed.at("items").as_array()) {
    present.insert(std::string(it.at("id").as_string()));
  }
  for (const auto& [id, t] : acked) BOOST_TEST(present.count(id) == 1u, "lost " << id);
  again.signal(SIGTERM);
  again.wait();
}

// Issue 10, "Divergence is never silent again": a node's RocksDB is edited by hand while it is
// down, so that it holds another title for an item under the same stamp, which no sync rule can
// see. `kvcli nodes` shows the two digests differ at the same stamp; once kvsync runs, the
// node's digest differs from the log's at the same stamp with nothing unsynced: kvsync says so
// at error level and in its metrics, resyncs the node from scratch, and says that the repair
// worked.
BOOST_AUTO_TEST_CASE(a_divergence_planted_by_hand_is_reported_and_repaired) {
  Cluster c(2);
  c.cli({"--route", "1"}, script("create", 3, "planted"));
  const auto before = c.wait_converged();
  BOOST_TEST_REQUIRE(before.size() == 3u);
  const auto agreement = [&c] {
    const auto r = c.cli({"--json", "nodes"});
    return json::parse(r.out).at("agreement").at("state").as_string();
  };
  BOOST_TEST(agreement() == "agree");
  c.stop_syncer();
  c.stop_node(1);
  {
    rocksdb::DB* raw = nullptr;
    BOOST_TEST_REQUIRE(rocksdb::DB::Open(rocksdb::Options(), (c.dir() / "b").string(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string bytes;
    BOOST_TEST_REQUIRE(db->Get(rocksdb::ReadOptions(), node::item_key("2a"), &bytes).ok());
    auto rec = node::decode_record(bytes);
    BOOST_TEST_REQUIRE(rec.has_value());
    rec->title = "changed behind the syncer's back";
    BOOST_TEST_REQUIRE(
        db->Put(rocksdb::WriteOptions(), node::item_key("2a"), node::encode_record(*rec)).ok());
  }
  c.start_node(1);
  BOOST_TEST(agreement() == "diverged");
  c.start_syncer();
  BOOST_TEST_REQUIRE(wait_until([&] {
    return file_text(c.dir() / "sync.log").find("holds the log's items again") != std::string::npos;
  }));
  const std::string log = file_text(c.dir() / "sync.log");
  // The three creates may have been stamped in one, two or three stamps.
  const auto said = log.find("holds other items than the syncer's log");
  BOOST_TEST_REQUIRE(said != std::string::npos, log);
  const auto who = log.rfind("node b at stamp ", said);
  BOOST_TEST((who != std::string::npos && who > log.rfind('\n', said)), log);
  const auto line_start = log.rfind('\n', said);
  BOOST_TEST(log.substr(line_start, said - line_start).find("error") != std::string::npos,
             log.substr(line_start, said - line_start));
  const std::string metrics = http_get(c.syncer_http_port(), "/metrics").body;
  const std::string b = "{node=\"b\",address=\"" + c.node(1).binary + "\"} ";
  BOOST_TEST(metrics.find("kvsync_node_digest_mismatches_total" + b + "1\n") != std::string::npos,
             metrics);
  BOOST_TEST(metrics.find("kvsync_node_diverged" + b + "0\n") != std::string::npos, metrics);
  BOOST_TEST(c.wait_converged() == before);
  BOOST_TEST(agreement() == "agree");
}

namespace {
// Attaches strace to every thread of the running process `pid` with `inject` for fdatasync,
// and waits until it is attached; the returned Process detaches on SIGINT.
std::unique_ptr<Process> trace_fdatasync(Cluster& c, int pid, const std::string& inject,
                                         const std::string& name) {
  const auto log = c.dir() / (name + ".log");
  auto tracer = std::make_unique<Process>(
      std::vector<std::string>{"/usr/bin/strace", "-f", "-p", std::to_string(pid), "-e",
                               "trace=fdatasync", "-e", "inject=fdatasync:" + inject, "-o",
                               "/dev/null"},
      log);
  BOOST_TEST_REQUIRE(
      wait_until([&] { return file_text(log).find("attached") != std::string::npos; }),
      file_text(log));
  return tracer;
}
}  // namespace

// "A node answers a write once it is fsynced" (docs/storage.md). A kill -9 cannot show it: an
// unsynced write survives a process kill in the page cache. So strace holds every fdatasync of
// a running node for 4 s (attached after start-up: only writes are slowed). A create sent with
// a 1 s timeout gets no answer within it; once strace lets go, the write is there and survives
// a kill. Then fdatasync fails with EIO: the create is answered with an error, not
// acknowledged, and once the disk behaves the node takes writes again.
BOOST_AUTO_TEST_CASE(a_write_is_acknowledged_only_after_its_fdatasync_returns) {
  Cluster c(1, false);
  BOOST_TEST_REQUIRE(c.cli({"create", "before"}).code == 0);
  {
    auto tracer = trace_fdatasync(c, c.node(0).proc->pid(), "delay_enter=4000000", "stall");
    const auto held = c.cli({"--json", "--timeout", "1000", "create", "held back"});
    BOOST_TEST(held.code != 0, held.out);
    BOOST_TEST(held.out.find("\"ok\":false") != std::string::npos, held.out);
    tracer->signal(SIGINT);
    tracer->wait();
  }
  BOOST_TEST_REQUIRE(wait_until([&] {
    const auto items = c.items_on(1);
    return items.size() == 2u && items[1].find("held back") != std::string::npos;
  }));
  c.stop_node(0, true);
  c.start_node(0);
  BOOST_TEST(c.items_on(1).size() == 2u);
  {
    auto tracer = trace_fdatasync(c, c.node(0).proc->pid(), "error=EIO", "eio");
    const auto failed = c.cli({"--json", "create", "never acknowledged"});
    BOOST_TEST(failed.code != 0, failed.out);
    BOOST_TEST(failed.out.find("could not commit") != std::string::npos, failed.out);
    tracer->signal(SIGINT);
    tracer->wait();
  }
  BOOST_TEST_REQUIRE(wait_until([&] { return c.cli({"create", "after"}).code == 0; }));
  c.stop_node(0, true);
  c.start_node(0);
  const auto items = c.items_on(1);
  BOOST_TEST(items.size() >= 3u);
  BOOST_TEST(items.back().find("after") != std::string::npos);
}
