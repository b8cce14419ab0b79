// Whole-cluster tests: the real kvnode, kvsync and kvcli binaries on 127.0.0.1, ephemeral ports,
// waits on conditions with deadlines. These are the seed's Step 1 and Step 2, its version table,
// the invariants of docs/sync.md under concurrent writes and restarts, and kvcli's modes.
#define BOOST_TEST_MODULE cluster
#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <fstream>
#include <set>
#include <sstream>

#include "cluster.hpp"
#include "core/protocol.hpp"

using namespace kv;
using namespace kv::test;
namespace json = boost::json;

namespace {
std::vector<json::object> json_lines(const std::string& out) {
  std::vector<json::object> v;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) v.push_back(json::parse(line).as_object());
  }
  return v;
}

std::size_t count_items(const json::object& o) {
  return o.at("items").as_array().size();
}

std::set<std::string> ids_of(const std::vector<json::object>& results) {
  std::set<std::string> ids;
  for (const auto& r : results) {
    if (!r.at("ok").as_bool()) continue;
    for (const auto& it : r.at("items").as_array()) {
      ids.insert(std::string(it.at("id").as_string()));
    }
  }
  return ids;
}

// A kvcli script running in the background while the test does something else.
struct BackgroundCli {
  BackgroundCli(Cluster& c, std::vector<std::string> args, const std::string& input)
      : proc([&] {
          std::vector<std::string> argv{(bin_dir() / "kvcli").string(), "--nodes", c.nodes_arg(),
                                        "--json"};
          argv.insert(argv.end(), args.begin(), args.end());
          static int n = 0;
          return Process(argv, c.dir() / ("cli-" + std::to_string(n++) + ".log"), input);
        }()) {}
  std::vector<json::object> finish() {
    auto out = proc.read_all(60s);
    proc.wait(60s);
    return json_lines(out);
  }
  Process proc;
};
}  // namespace

BOOST_AUTO_TEST_CASE(step1_without_the_syncer_a_create_is_invisible_on_the_other_node) {
  // The seed's behaviour, so without read-your-writes (test_usability covers sessions).
  Cluster c(2, false);
  auto r = c.cli({"--json", "--no-session"}, "create TaskA\nlist\nlist\n");
  BOOST_TEST(r.code == 0);
  auto lines = json_lines(r.out);
  BOOST_TEST_REQUIRE(lines.size() == 3u);
  BOOST_TEST(lines[0].at("node").as_string() == c.node(0).binary);
  BOOST_TEST(lines[1].at("node").as_string() == c.node(1).binary);
  BOOST_TEST(count_items(lines[1]) == 0u);  // the list went to node 2: TaskA is not there
  BOOST_TEST(lines[2].at("node").as_string() == c.node(0).binary);
  BOOST_TEST(count_items(lines[2]) == 1u);  // back on node 1 it is

  // One-shot commands take turns too, as the seed's CLI did.
  auto one = json_lines(c.cli({"--json", "--no-session", "create", "TaskB"}).out).at(0);
  auto two = json_lines(c.cli({"--json", "--no-session", "list"}).out).at(0);
  auto three = json_lines(c.cli({"--json", "--no-session", "list"}).out).at(0);
  BOOST_TEST(one.at("node").as_string() != two.at("node").as_string());
  BOOST_TEST(three.at("node").as_string() == one.at("node").as_string());
  BOOST_TEST(one.at("node").as_string() == c.node(0).binary);
  BOOST_TEST(count_items(two) == 0u);    // node 2 has neither TaskA nor TaskB
  BOOST_TEST(count_items(three) == 2u);  // node 1 has both
}

BOOST_AUTO_TEST_CASE(step2_with_the_syncer_every_node_lists_it) {
  Cluster c(2);
  auto r = c.cli({"--route", "1", "create", "TaskA"});
  BOOST_TEST(r.code == 0);
  BOOST_TEST(r.out.find("created ID:1a, Version:1 TaskA, no-complete") != std::string::npos);
  BOOST_TEST(wait_until([&] { return c.items_on(2) == std::vector<std::string>{"1a v1 TaskA"}; }));
  // The syncer's log says what it did, like the seed's right-hand pane.
  BOOST_TEST(wait_until([&] {
    const auto log = file_text(c.dir() / "sync.log");
    return log.find("sync a:1a create \"TaskA\" v1 -> stamp 1 applied on a,b") != std::string::npos;
  }));
}

BOOST_AUTO_TEST_CASE(a_stamp_of_many_changes_is_logged_as_eight_lines_and_one_for_the_rest) {
  Cluster c(2, false);
  BOOST_TEST(c.cli({"--route", "1"}, script("create", 20, "many")).code == 0);
  c.start_syncer();  // its first FETCH takes all 20 changes: one stamp
  BOOST_TEST(wait_until([&] { return c.items_on(2).size() == 20u; }));
  BOOST_TEST(wait_until([&] {
    return file_text(c.dir() / "sync.log")
               .find("sync a: 12 more changes -> stamp 1 applied on a,b") != std::string::npos;
  }));
  const auto log = file_text(c.dir() / "sync.log");
  std::size_t lines = 0;
  for (auto at = log.find(" create \"many"); at != std::string::npos;
       at = log.find(" create \"many", at + 1)) {
    ++lines;
  }
  BOOST_TEST(lines == 8u);
}

BOOST_AUTO_TEST_CASE(the_seed_version_table_then_its_restamping) {
  Cluster c(2, false);
  auto r = c.cli({"--json", "--route", "1"}, "create TaskA\ncreate TaskB\nupdate 1a complete\n");
  auto lines = json_lines(r.out);
  BOOST_TEST_REQUIRE(lines.size() == 3u);
  BOOST_TEST(c.items_on(1) == (std::vector<std::string>{"1a v3 TaskA done", "2a v2 TaskB"}));
  BOOST_TEST(c.items_on(2).empty());
  // docs/sync.md, "The seed's example": the syncer stamps the diff with its version 1.
  c.start_syncer();
  BOOST_TEST(c.wait_converged() == (std::vector<std::string>{"1a v1 TaskA done", "2a v1 TaskB"}));
  r = c.cli({"--json", "--route", "2", "create", "TaskC"});
  BOOST_TEST(json_lines(r.out).at(0).at("items").at(0).at("version").to_number<int>() == 2);
  BOOST_TEST(c.wait_converged() ==
             (std::vector<std::string>{"1a v1 TaskA done", "2a v1 TaskB", "3b v2 TaskC"}));
}

BOOST_AUTO_TEST_CASE(concurrent_writes_on_three_nodes_converge_with_unique_ids) {
  Cluster c(3);
  c.cli({"--route", "1", "create", "shared"});
  c.wait_converged();
  std::vector<std::unique_ptr<BackgroundCli>> writers;
  for (int n = 1; n <= 3; ++n) {
    std::string input = script("create", 40, "n" + std::to_string(n) + "-");
    for (int i = 0; i < 20; ++i) {
      input += "update 1a title from node " + std::to_string(n) + " #" + std::to_string(i) + "\n";
      input += std::string("update 1a ") + (i % 2 ? "complete" : "incomplete") + "\n";
    }
    writers.push_back(std::make_unique<BackgroundCli>(
        c, std::vector<std::string>{"--route", std::to_string(n)}, input));
  }
  std::set<std::string> ids;
  std::size_t created = 0;
  for (auto& w : writers) {
    for (const auto& r : w->finish()) {
      BOOST_TEST_REQUIRE(r.at("ok").as_bool(), json::serialize(r));
      const std::string id(r.at("items").at(0).at("id").as_string());
      if (id != "1a") {
        ++created;
        ids.insert(id);
      }
    }
  }
  BOOST_TEST(created == 120u);
  BOOST_TEST(ids.size() == 120u);         // invariant 4: no id was handed out twice
  const auto items = c.wait_converged();  // invariants 2 and 6
  BOOST_TEST(items.size() == 121u);
}

BOOST_AUTO_TEST_CASE(deletes_win_races_with_updates_and_stay_deleted) {
  Cluster c(2);
  c.cli({"--route", "1"}, script("create", 20, "item"));
  BOOST_TEST(c.wait_converged().size() == 20u);
  std::string deletes, updates;
  for (int i = 1; i <= 20; ++i) {
    deletes += "delete " + std::to_string(i) + "a\n";
    updates += "update " + std::to_string(i) + "a complete\n";
    updates += "update " + std::to_string(i) + "a title late rename\n";
  }
  BackgroundCli del(c, {"--route", "1"}, deletes);
  BackgroundCli upd(c, {"--route", "2"}, updates);
  del.finish();
  upd.finish();
  BOOST_TEST(c.wait_converged().empty());  // invariant 3
  // A late update on either node is refused: deletes are final. (Once every node has applied
  // the delete its tombstone is compacted away, and the id is simply unknown.)
  auto r = c.cli({"--json", "--route", "2", "update", "3a", "complete"});
  BOOST_TEST(r.code == 1);
  const std::string error(json_lines(r.out).at(0).at("error").as_string());
  BOOST_TEST((error.find("item 3a was deleted") != std::string::npos ||
              error.find("there is no item 3a") != std::string::npos),
             error);
}

// Creates a writer sends while a node or the syncer is killed under it.
constexpr std::size_t kWrites = 2000;

BOOST_AUTO_TEST_CASE(a_node_killed_and_restarted_while_writes_go_on_catches_up) {
  Cluster c(2);
  auto before = json_lines(c.cli({"--json", "--route", "2"}, script("create", 10, "b")).out);
  // Enough creates that the kill lands while they go on: 300 were all written before the first
  // look at node 1 came back once the node answered faster (ASan run at 6624e56).
  BackgroundCli writer(c, {"--route", "1"}, script("create", kWrites, "a"));
  // Wait on node 1, which the writer writes to: node 2 only follows through the syncer, which
  // under ASan on a busy machine can lag so far that the writer is done before node 2 has 40.
  BOOST_TEST(wait_until([&] { return c.items_on(1).size() >= 40; }));
  // The kill lands while the writer still writes.
  BOOST_TEST_REQUIRE(writer.proc.running());
  BOOST_TEST_REQUIRE(c.items_on(1).size() < kWrites + 10);
  c.stop_node(1, /*kill9=*/true);
  c.start_node(1);
  const auto results = writer.finish();
  BOOST_TEST(results.size() == kWrites);
  auto ids = ids_of(results);
  for (auto& id : ids_of(before)) ids.insert(id);
  BOOST_TEST(ids.size() == kWrites + 10);
  const auto items = c.wait_converged();
  BOOST_TEST(items.size() == kWrites + 10);  // every acknowledged create, on both nodes
}

BOOST_AUTO_TEST_CASE(the_syncer_killed_and_restarted_while_writes_go_on_loses_nothing) {
  Cluster c(2);
  BackgroundCli writer(c, {}, script("create", kWrites, "w"));  // round-robin over both nodes
  BOOST_TEST(wait_until([&] { return c.items_on(1).size() >= 30; }));
  // The kill lands while the writer still writes.
  BOOST_TEST_REQUIRE(writer.proc.running());
  BOOST_TEST_REQUIRE(c.items_on(1).size() < kWrites);
  c.stop_syncer(/*kill9=*/true);
  c.start_syncer();
  const auto results = writer.finish();
  const auto ids = ids_of(results);
  BOOST_TEST(ids.size() == kWrites);
  const auto items = c.wait_converged();
  BOOST_TEST(items.size() == kWrites);
  for (const auto& line : items) BOOST_TEST(ids.count(line.substr(0, line.find(' '))) == 1u);
}

BOOST_AUTO_TEST_CASE(kvcli_one_shot_modes_and_errors) {
  Cluster c(2, false);
  auto r = c.cli({"--route", "1", "create", "Buy", "milk"});
  BOOST_TEST(r.code == 0);
  BOOST_TEST(r.out.find("created ID:1a, Version:1 Buy milk, no-complete") != std::string::npos);
  BOOST_TEST(r.out.find(c.node(0).binary) != std::string::npos);  // says which node served it

  r = c.cli({"--json", "--route", "1", "get", "1a"});
  BOOST_TEST(r.code == 0);
  auto o = json_lines(r.out).at(0);
  BOOST_TEST(o.at("ok").as_bool());
  BOOST_TEST(o.at("node").as_string() == c.node(0).binary);
  BOOST_TEST(o.at("items").at(0).at("title").as_string() == "Buy milk");

  r = c.cli({"--json", "--route", "1", "get", "9z"});
  BOOST_TEST(r.code == 1);
  o = json_lines(r.out).at(0);
  BOOST_TEST(!o.at("ok").as_bool());
  BOOST_TEST(o.at("error").as_string().find("no item 9z") != std::string::npos);

  BOOST_TEST(c.cli({"create"}).code == 2);                      // no title
  BOOST_TEST(c.cli({"bogus"}).code == 2);                       // unknown command
  BOOST_TEST(c.cli({"update", "1a", "frobnicate"}).code == 2);  // unknown field
  r = c.cli({"--json", "--route", "1", "create", "   "});
  BOOST_TEST(r.code == 1);  // the node refuses a blank title
  BOOST_TEST(json_lines(r.out).at(0).at("error").as_string().find("title") != std::string::npos);
  BOOST_TEST(c.cli({"--route", "7", "list"}).code == 2);  // no node 7
  BOOST_TEST(run_cli({"--nodes", "nonsense", "list"}).code == 2);

  r = c.cli({"--json", "nodes"});
  BOOST_TEST(r.code == 0);
  o = json_lines(r.out).at(0);
  BOOST_TEST(o.at("nodes").as_array().size() == 2u);
  BOOST_TEST(o.at("nodes").at(0).at("version").to_number<int>() == 1);
  BOOST_TEST(o.at("nodes").at(1).at("reachable").as_bool());

  r = c.cli({"help"});
  BOOST_TEST(r.code == 0);
  BOOST_TEST(r.out.find("update ID complete|incomplete") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(kvcli_fails_over_when_a_node_is_down) {
  Cluster c(2, false);
  c.stop_node(0);
  auto r = c.cli({"--json", "--route", "1", "create", "still works"});
  BOOST_TEST(r.code == 0);
  auto o = json_lines(r.out).at(0);
  BOOST_TEST(o.at("node").as_string() == c.node(1).binary);
  BOOST_TEST(o.at("skipped").at(0).as_string() == c.node(0).binary);
  r = c.cli({"--json", "nodes"});
  o = json_lines(r.out).at(0);
  BOOST_TEST(!o.at("nodes").at(0).at("reachable").as_bool());
  // A sentence, not Boost's "[system:111 at /usr/include/boost/asio/...]" (issue 11).
  BOOST_TEST(o.at("nodes").at(0).at("error").as_string() == "Connection refused");
  r = c.cli({"nodes"});
  BOOST_TEST(r.out.find("DOWN  Connection refused\n") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("/usr/include") == std::string::npos, r.out);
  c.stop_node(1);
  r = c.cli({"--json", "list"});
  BOOST_TEST(r.code == 1);
  BOOST_TEST(json_lines(r.out).at(0).at("error").as_string().find("no node answered") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(kvcli_watch_prints_notifications_until_interrupted) {
  Cluster c(2);
  std::vector<std::string> argv{(bin_dir() / "kvcli").string(), "--nodes", c.nodes_arg(), "--json",
                                "watch"};
  Process watch(argv, c.dir() / "watch.log");
  // Watching starts when both subscriptions are up; create until the watcher has seen one.
  BOOST_TEST(poke_until_seen(watch, "{", [&] { c.cli({"--route", "1", "create", "watched"}); }));
  watch.signal(SIGINT);
  BOOST_TEST(watch.wait() == 0);
}

BOOST_AUTO_TEST_CASE(malformed_frames_get_an_error_and_the_node_keeps_serving) {
  Cluster c(1, false);
  auto connect = [&] {
    const int fd = connect_loopback(c.node(0).binary_port, 5);
    BOOST_TEST_REQUIRE(fd >= 0);
    return fd;
  };
  std::string buf;  // bytes read but not yet decoded, for the connection in use
  ReadResult last = ReadResult::kData;
  auto read_frame = [&](int fd) -> std::optional<std::pair<std::uint8_t, std::string>> {
    for (;;) {
      auto d = proto::decode_frame({reinterpret_cast<const std::uint8_t*>(buf.data()), buf.size()});
      if (d.status == proto::DecodeStatus::kFrame) {
        auto f = std::make_pair(d.frame.type,
                                std::string(reinterpret_cast<const char*>(d.frame.payload.data()),
                                            d.frame.payload.size()));
        buf.erase(0, d.frame.size);
        return f;
      }
      last = read_some(fd, buf);
      if (last != ReadResult::kData) return std::nullopt;
    }
  };
  auto send = [](int fd, const std::string& s) {
    BOOST_TEST_REQUIRE(::write(fd, s.data(), s.size()) == static_cast<ssize_t>(s.size()));
  };
  auto error_code = [](const std::string& payload) {
    return (static_cast<unsigned char>(payload[0]) << 8) | static_cast<unsigned char>(payload[1]);
  };

  // A 4 GiB length prefix: answered with frame_too_large, then the connection is closed.
  int fd = connect();
  send(fd, std::string("\xff\xff\xff\xf0\x01\x00\x00\x00\x01", 9));
  auto f = read_frame(fd);
  BOOST_TEST_REQUIRE(f.has_value());
  BOOST_TEST(f->first == 0xFF);
  BOOST_TEST(error_code(f->second) == static_cast<int>(proto::ErrorCode::kFrameTooLarge));
  BOOST_TEST(!read_frame(fd).has_value());
  BOOST_TEST((last == ReadResult::kClosed), "the node went silent instead of closing");
  close(fd);

  // Pipelined in one write: an unknown type, a garbage payload, then a valid request. Each gets
  // its answer, in order, and the connection goes on.
  buf.clear();
  fd = connect();
  std::string frames;
  proto::append_frame(frames, 0x55, 7, "");
  proto::append_frame(frames, static_cast<std::uint8_t>(proto::MsgType::kCreate), 8, "\xff\xff");
  proto::encode_request(frames, 9, proto::msg::Create{"pipelined"});
  send(fd, frames);
  f = read_frame(fd);
  BOOST_TEST_REQUIRE(f.has_value());
  BOOST_TEST(error_code(f->second) == static_cast<int>(proto::ErrorCode::kUnknownType));
  f = read_frame(fd);
  BOOST_TEST_REQUIRE(f.has_value());
  BOOST_TEST(error_code(f->second) == static_cast<int>(proto::ErrorCode::kBadFrame));
  f = read_frame(fd);
  BOOST_TEST_REQUIRE(f.has_value());
  BOOST_TEST(f->first ==
             (static_cast<std::uint8_t>(proto::MsgType::kCreate) | proto::kResponseBit));
  BOOST_TEST(f->second.find("pipelined") != std::string::npos);
  close(fd);
  // Everyone else is still served.
  BOOST_TEST(c.cli({"create", "after the garbage"}).code == 0);
}

BOOST_AUTO_TEST_CASE(a_subscriber_that_stops_reading_is_dropped_and_the_node_goes_on) {
  Cluster c(1, false, {"--subscriber-queue", "64"});
  // A WebSocket subscriber with a tiny receive buffer that never reads after the handshake.
  const int fd = connect_loopback(c.node(0).http_port, 1, /*receive_buffer=*/4096);
  BOOST_TEST_REQUIRE(fd >= 0);
  BOOST_TEST_REQUIRE(ws_handshake(fd, "/ws").has_value());
  std::string got;
  char buf[65536];

  // About 9 MB of notifications: more than the kernel buffers (4 MB at most here) and the queue.
  const std::string title(1000, 'x');
  // 8000 durable creates: give them time under the sanitizers on a busy machine (the default
  // deadline of 20 s was met only just there).
  auto r = run_cli({"--nodes", c.nodes_arg()}, script("create " + title, 8000, ""), 180s);
  BOOST_TEST(r.code == 0);  // every write succeeded while the subscriber was stuck
  BOOST_TEST(wait_until([&] {
    return file_text(c.dir() / "a.log").find("dropping a WebSocket subscriber") !=
           std::string::npos;
  }));

  // Reading again, the subscriber gets what was buffered, then a close frame with the reason.
  got.clear();
  const auto end = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < end) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) break;
    if (n > 0) got.append(buf, n);
    if (got.find("subscriber queue overflow") != std::string::npos) break;
    if (got.size() > 64 * 1024) got.erase(0, got.size() - 1024);  // keep the tail only
  }
  BOOST_TEST(got.find("subscriber queue overflow") != std::string::npos);
  close(fd);

  // The node still serves new subscribers.
  std::vector<std::string> argv{(bin_dir() / "kvcli").string(), "--nodes", c.nodes_arg(), "--json",
                                "watch"};
  Process watcher(argv, c.dir() / "watch.log");
  BOOST_TEST(poke_until_seen(watcher, "after the overflow", [&] {
    c.cli({"create", "after the overflow"});
  }));
  watcher.signal(SIGINT);
  BOOST_TEST(watcher.wait() == 0);
}

namespace {
struct WsFrame {
  int opcode = 0;  // 1 text, 8 close
  std::string payload;
};
// Reads one server-to-client WebSocket frame (unmasked, not fragmented) from a blocking socket
// whose reads time out; nullopt on timeout or close. `buf` keeps what was read past it.
std::optional<WsFrame> read_ws_frame(int fd, std::string& buf) {
  char tmp[4096];
  for (int reads = 0; reads < 1000; ++reads) {
    if (buf.size() >= 2) {
      const std::size_t short_len = static_cast<unsigned char>(buf[1]) & 0x7F;
      std::size_t len = short_len;
      std::size_t head = 2;
      if (short_len == 126) {  // 16-bit length follows (notifications stay below 64 KiB)
        head = 4;
        len = buf.size() >= 4
                  ? (static_cast<unsigned char>(buf[2]) << 8) | static_cast<unsigned char>(buf[3])
                  : 0;
      }
      if (short_len < 127 && buf.size() >= head && buf.size() >= head + len) {
        WsFrame f{static_cast<unsigned char>(buf[0]) & 0x0F, buf.substr(head, len)};
        buf.erase(0, head + len);
        return f;
      }
    }
    const ssize_t n = ::read(fd, tmp, sizeof tmp);
    if (n <= 0) return std::nullopt;
    buf.append(tmp, n);
  }
  return std::nullopt;
}

// The next frame's payload; empty on timeout or close.
std::string read_ws_text(int fd, std::string& buf) {
  auto f = read_ws_frame(fd, buf);
  return f ? f->payload : std::string();
}

// A WebSocket subscription to the node's `path`, past its hello: the socket and what was read
// beyond the handshake (fd -1 when it failed).
std::pair<int, std::string> subscribe(std::uint16_t http_port, const std::string& path) {
  const int fd = connect_loopback(http_port, 5);
  if (fd < 0) return {-1, ""};
  auto rest = ws_handshake(fd, path);
  if (!rest) {
    ::close(fd);
    return {-1, ""};
  }
  std::string buf = *rest;
  BOOST_TEST(read_ws_text(fd, buf).find("\"type\":\"hello\"") != std::string::npos);
  return {fd, buf};
}
}  // namespace

BOOST_AUTO_TEST_CASE(a_local_only_subscriber_sees_clients_changes_and_never_synced_ones) {
  Cluster c(2);
  auto [fd, buf] = subscribe(c.node(1).http_port, "/ws?only=local");
  BOOST_TEST_REQUIRE(fd >= 0);
  // A change on node 1 reaches node 2 as a synced change: not for this subscriber.
  c.cli({"--route", "1", "create", "from node one"});
  BOOST_TEST(wait_until([&] { return c.items_on(2).size() == 1; }));
  // A client's change on node 2 is.
  c.cli({"--route", "2", "create", "from node two"});
  const std::string next = read_ws_text(fd, buf);
  BOOST_TEST(next.find("\"type\":\"local\"") != std::string::npos, next);
  BOOST_TEST(next.find("from node two") != std::string::npos, next);
  ::close(fd);
}

// A node builds a notification only for a topic someone subscribed to (Hub::wants): a
// subscriber of every topic still gets the synced ones.
BOOST_AUTO_TEST_CASE(a_subscriber_of_every_topic_sees_synced_changes) {
  Cluster c(2);
  auto [fd, buf] = subscribe(c.node(1).http_port, "/ws");
  BOOST_TEST_REQUIRE(fd >= 0);
  c.cli({"--route", "1", "create", "seen as synced"});
  const std::string next = read_ws_text(fd, buf);
  BOOST_TEST(next.find("\"type\":\"synced\"") != std::string::npos, next);
  BOOST_TEST(next.find("seen as synced") != std::string::npos, next);
  ::close(fd);
}

namespace {
// Reads WebSocket frames from the server on `fd` (text frames skipped) until a close frame;
// returns its payload (be16 code, then the reason), or nullopt if the connection ended first.
std::optional<std::string> read_close_frame(int fd, std::string pending) {
  for (int frames = 0; frames < 1000; ++frames) {
    auto f = read_ws_frame(fd, pending);
    if (!f) return std::nullopt;
    if (f->opcode == 0x8) return f->payload;
  }
  return std::nullopt;
}

// The client's answer to a close (masked, as a client's frames are; code 1000).
void answer_close(int fd) {
  const std::string frame{"\x88\x82\x00\x00\x00\x00\x03\xe8", 8};
  BOOST_TEST(::write(fd, frame.data(), frame.size()) == static_cast<ssize_t>(frame.size()));
}
}  // namespace

// kvsync stopped while its nodes run: it used to wait for Beast's WebSocket ping timer (10 s
// after the subscription's last read) before it could exit, well past its own 6 s last resort.
BOOST_AUTO_TEST_CASE(kvsync_stops_at_once_while_its_nodes_run) {
  Cluster c(2);
  BOOST_TEST_REQUIRE(c.cli({"create", "before the stop"}).code == 0);
  c.wait_converged();
  c.syncer()->signal(SIGTERM);
  int code = -1;
  BOOST_CHECK_NO_THROW(code = c.syncer()->wait(5s));
  BOOST_TEST(code == 0);
  const std::string syncer_log = file_text(c.dir() / "sync.log");
  BOOST_TEST(syncer_log.find("still open after") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(sigterm_ends_every_connection_and_closes_subscribers_with_a_reason) {
  Cluster c(1);
  // On the node: a WebSocket subscriber, an idle binary connection and an idle HTTP one.
  const int sub = connect_loopback(c.node(0).http_port, 10);
  BOOST_TEST_REQUIRE(sub >= 0);
  auto sub_rest = ws_handshake(sub, "/ws");
  BOOST_TEST_REQUIRE(sub_rest.has_value());
  const int binary = connect_loopback(c.node(0).binary_port, 10);
  const int http = connect_loopback(c.node(0).http_port, 10);
  BOOST_TEST_REQUIRE((binary >= 0 && http >= 0));
  // On the syncer: a viewer.
  const int viewer = connect_loopback(c.syncer_http_port(), 10);
  BOOST_TEST_REQUIRE(viewer >= 0);
  auto viewer_rest = ws_handshake(viewer, "/ws");
  BOOST_TEST_REQUIRE(viewer_rest.has_value());
  BOOST_TEST_REQUIRE(c.cli({"create", "before the stop"}).code == 0);

  c.node(0).proc->signal(SIGTERM);
  const auto closed = read_close_frame(sub, *sub_rest);
  BOOST_TEST_REQUIRE(closed.has_value(), "the subscriber got no close frame");
  BOOST_TEST(closed->substr(0, 2) == std::string("\x03\xe9"));  // 1001: going away
  BOOST_TEST(closed->substr(2) == "kvnode a is shutting down");
  answer_close(sub);
  std::string ignored;
  BOOST_TEST((read_some(binary, ignored) == ReadResult::kClosed));
  BOOST_TEST((read_some(http, ignored) == ReadResult::kClosed));
  BOOST_TEST(c.node(0).proc->wait(15s) == 0);
  const std::string node_log = file_text(c.dir() / "a.log");
  BOOST_TEST(node_log.find("node a stopped") != std::string::npos);
  // Every connection ended by cancellation, none by the last resort.
  BOOST_TEST(node_log.find("still open after") == std::string::npos);
  BOOST_TEST(node_log.find("connection ended") == std::string::npos);  // no error logged

  c.syncer()->signal(SIGTERM);
  const auto viewer_closed = read_close_frame(viewer, *viewer_rest);
  BOOST_TEST_REQUIRE(viewer_closed.has_value(), "the viewer got no close frame");
  BOOST_TEST(viewer_closed->substr(2) == "kvsync is shutting down");
  answer_close(viewer);
  BOOST_TEST(c.syncer()->wait(15s) == 0);
  const std::string syncer_log = file_text(c.dir() / "sync.log");
  BOOST_TEST(syncer_log.find("syncer stopped") != std::string::npos);
  BOOST_TEST(syncer_log.find("still open after") == std::string::npos);
  for (int fd : {sub, binary, http, viewer}) close(fd);
}
