// What people and their tools see: read-your-writes sessions across nodes, /metrics and
// /healthz on nodes and the syncer, JSON logs, the viewer's files, and the shell on a terminal
// (completion, colour, NO_COLOR). Real binaries on 127.0.0.1, ephemeral ports, deadlines.
#define BOOST_TEST_MODULE usability
#include <boost/test/unit_test.hpp>

#include <signal.h>

#include <boost/json.hpp>

#include <cstring>
#include <map>
#include <regex>
#include <sstream>

#include "cluster.hpp"

using namespace kv::test;
namespace json = boost::json;

namespace {
json::object parse_one(const std::string& out) {
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) return json::parse(line).as_object();
  }
  throw std::runtime_error("no JSON line in: " + out);
}

bool lists(const json::object& reply, const std::string& title) {
  for (const auto& it : reply.at("items").as_array()) {
    if (it.at("title").as_string() == title) return true;
  }
  return false;
}

// Prometheus text format 0.0.4, strictly enough to catch a broken page: every sample line is
// `name{labels} value`, every family has HELP and TYPE before its samples. Returns the samples
// by their full series text (name and labels).
std::map<std::string, double> parse_prometheus(const std::string& text) {
  static const std::regex sample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? )"
      R"(([-+]?[0-9.eE+-]+|NaN|[+-]Inf)$)");
  static const std::regex comment(R"(^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) .*$)");
  std::map<std::string, double> out;
  std::map<std::string, std::string> types;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, comment)) {
      if (m[1] == "TYPE") types[m[2]] = line.substr(line.rfind(' ') + 1);
      continue;
    }
    BOOST_TEST_REQUIRE(std::regex_match(line, m, sample), "not a Prometheus sample: " << line);
    std::string family = m[1];
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (!types.count(family) && family.ends_with(suffix)) {
        family.resize(family.size() - std::strlen(suffix));
      }
    }
    BOOST_TEST(types.count(family) == 1u, "no TYPE line before " << line);
    out[line.substr(0, line.rfind(' '))] = std::stod(m[5]);
  }
  return out;
}

double sample(const std::map<std::string, double>& s, const std::string& series) {
  auto it = s.find(series);
  BOOST_TEST_REQUIRE((it != s.end()), "no series " << series);
  return it->second;
}
}  // namespace

BOOST_AUTO_TEST_CASE(create_then_list_on_the_other_node_always_shows_the_item) {
  Cluster c(2);
  // One-shot invocations, as in the seed: the session token travels in ~/.kvcli_session.
  for (int k = 0; k < 10; ++k) {
    const std::string title = "ryw " + std::to_string(k);
    const std::size_t writer = 1 + k % 2, reader = 2 - k % 2;
    BOOST_TEST_REQUIRE(c.cli({"--route", std::to_string(writer), "create", title}).code == 0);
    auto r = c.cli({"--json", "--route", std::to_string(reader), "list"});
    BOOST_TEST_REQUIRE(r.code == 0);
    const auto reply = parse_one(r.out);
    BOOST_TEST(lists(reply, title), "node " << reader << " missed '" << title << "': " << r.out);
    BOOST_TEST(!reply.contains("behind"));
  }
  // In one shell session too, and for get.
  auto r = c.cli({"--json"}, "create in-shell\nget 11a\nlist\n");  // to nodes 1, 2, 1
  BOOST_TEST(r.code == 0);
  BOOST_TEST(r.out.find("\"behind\"") == std::string::npos);
}

// A session read on another node waits until that node has applied the write, not until the
// batch that brought it is durable there: a node holds a group of APPLYs back from its fsync
// (--apply-sync-delay; here ten minutes, so it never comes in time), and WAIT reads memory.
// Woken only by the fsync, the read would wait out its whole bound (60 s) and miss cli()'s 20 s
// deadline.
BOOST_AUTO_TEST_CASE(a_session_read_waits_for_the_other_node_to_apply_not_to_fsync) {
  ClusterArgs args;
  args.node = {"--apply-sync-delay", "600000"};
  args.syncer = {"--durability", "async"};  // the marks travel with the stamps themselves
  Cluster c(2, args);
  for (int k = 0; k < 3; ++k) {
    const std::string title = "held " + std::to_string(k);
    BOOST_TEST_REQUIRE(c.cli({"--route", "1", "create", title}).code == 0);
    auto r = c.cli({"--json", "--route", "2", "--session-wait", "60000", "list"});
    BOOST_TEST_REQUIRE(r.code == 0);
    const auto reply = parse_one(r.out);
    BOOST_TEST(lists(reply, title), "node 2 missed '" << title << "': " << r.out);
    BOOST_TEST(!reply.contains("behind"));
  }
}

BOOST_AUTO_TEST_CASE(with_the_syncer_stopped_a_read_waits_a_bounded_time_then_says_it_is_behind) {
  Cluster c(2);
  BOOST_TEST_REQUIRE(c.cli({"--route", "1", "create", "before"}).code == 0);
  c.stop_syncer();
  BOOST_TEST_REQUIRE(c.cli({"--route", "1", "create", "while stopped"}).code == 0);

  // Session on: node 2 cannot have it, so the read waits its bound and says so; never hangs.
  auto r = c.cli({"--json", "--route", "2", "--session-wait", "300", "list"});
  BOOST_TEST(r.code == 0);
  auto reply = parse_one(r.out);
  BOOST_TEST(reply.at("behind").as_bool());
  BOOST_TEST(std::string(reply.at("note").as_string()).find("has not applied your writes on a") !=
             std::string::npos);
  BOOST_TEST(lists(reply, "before"));
  BOOST_TEST(!lists(reply, "while stopped"));
  // The human form says it on stderr, in a sentence with what to do.
  r = c.cli({"--route", "2", "--session-wait", "300", "list"});
  BOOST_TEST(r.code == 0);
  BOOST_TEST(r.out.find("before") != std::string::npos);

  // Session off: the seed's behaviour, no wait and no note.
  r = c.cli({"--json", "--no-session", "--route", "2", "list"});
  reply = parse_one(r.out);
  BOOST_TEST(!reply.contains("behind"));
  BOOST_TEST(!lists(reply, "while stopped"));
  // The shell command turns it off too.
  r = c.cli({"--json", "--route", "2"}, "session off\nlist\nsession\n");
  BOOST_TEST(r.out.find("\"behind\"") == std::string::npos);
  BOOST_TEST(r.out.find("\"session\":false") != std::string::npos);

  // The syncer back: the same read waits for the item and shows it.
  c.start_syncer();
  r = c.cli({"--json", "--route", "2", "list"});
  reply = parse_one(r.out);
  BOOST_TEST(lists(reply, "while stopped"));
  BOOST_TEST(!reply.contains("behind"));
}

BOOST_AUTO_TEST_CASE(a_stale_session_from_a_wiped_node_does_not_make_every_read_wait) {
  Cluster c(1, false);
  BOOST_TEST_REQUIRE(c.cli({"create", "old life"}).code == 0);
  c.stop_node(0);
  std::filesystem::remove_all(c.dir() / c.node(0).name);
  c.start_node(0);
  // The token names changes of the old data directory: the node says so at once.
  auto r = c.cli({"--json", "--session-wait", "5000", "list"});
  BOOST_TEST(r.code == 0);
  BOOST_TEST(parse_one(r.out).contains("behind"));
  // ... and kvcli forgets them, so the next read does not wait.
  r = c.cli({"--json", "--session-wait", "5000", "list"});
  BOOST_TEST(!parse_one(r.out).contains("behind"));
}

BOOST_AUTO_TEST_CASE(metrics_parse_as_prometheus_text_and_move_when_work_is_done) {
  Cluster c(2);
  const auto node_before = parse_prometheus(http_get(c.node(0).http_port, "/metrics").body);
  const auto sync_before = parse_prometheus(http_get(c.syncer_http_port(), "/metrics").body);
  BOOST_TEST_REQUIRE(c.cli({"--route", "1"}, "create m1\ncreate m2\ncreate m3\n").code == 0);
  BOOST_TEST_REQUIRE(c.wait_converged().size() == 3u);

  const auto reply = http_get(c.node(0).http_port, "/metrics");
  BOOST_TEST(reply.status == 200);
  BOOST_TEST(reply.headers.find("text/plain; version=0.0.4") != std::string::npos);
  const auto node = parse_prometheus(reply.body);
  const std::string creates = R"(kv_requests_total{type="create",outcome="ok"})";
  const double before = node_before.count(creates) ? node_before.at(creates) : 0;
  BOOST_TEST(sample(node, creates) == before + 3);
  BOOST_TEST(sample(node, R"(kv_request_duration_seconds_count{type="create"})") == before + 3);
  BOOST_TEST(sample(node, R"(kv_request_duration_seconds_bucket{type="create",le="+Inf"})") ==
             before + 3);
  BOOST_TEST(sample(node, "kv_items") == 3);
  BOOST_TEST(sample(node, "kv_change_seq") == 3);
  BOOST_TEST(sample(node, "kv_binary_received_bytes_total") >
             sample(node_before, "kv_binary_received_bytes_total"));
  BOOST_TEST(sample(node, "kv_ws_subscribers") >= 1);  // the syncer

  wait_until([&] {
    const auto s = parse_prometheus(http_get(c.syncer_http_port(), "/metrics").body);
    return sample(s, R"(kvsync_node_lag_stamps{node="b",address=")" + c.node(1).binary + "\"}") ==
           0;
  });
  const auto sync = parse_prometheus(http_get(c.syncer_http_port(), "/metrics").body);
  BOOST_TEST(sample(sync, "kvsync_changes_stamped_total") ==
             sample(sync_before, "kvsync_changes_stamped_total") + 3);
  BOOST_TEST(sample(sync, "kvsync_stamp") >= 1);
  const std::string b = R"({node="b",address=")" + c.node(1).binary + "\"}";
  BOOST_TEST(sample(sync, "kvsync_node_connected" + b) == 1);
  BOOST_TEST(sample(sync, "kvsync_node_lag_seconds" + b) == 0);
  BOOST_TEST(sample(sync, "kvsync_node_applies_total" + b) >
             sample(sync_before, "kvsync_node_applies_total" + b));
  BOOST_TEST(sample(sync, "kvsync_node_sent_bytes_total" + b) > 0);

  // A node that went away shows up as disconnected, with a reconnect once it is back.
  c.stop_node(1);
  BOOST_TEST(wait_until([&] {
    const auto s = parse_prometheus(http_get(c.syncer_http_port(), "/metrics").body);
    return sample(s, "kvsync_node_connected" + b) == 0;
  }));
  c.start_node(1);
  BOOST_TEST(wait_until([&] {
    const auto s = parse_prometheus(http_get(c.syncer_http_port(), "/metrics").body);
    return sample(s, "kvsync_node_connected" + b) == 1 &&
           sample(s, "kvsync_node_reconnects_total" + b) == 1;
  }));
}

BOOST_AUTO_TEST_CASE(healthz_and_the_http_pages_answer_with_clear_statuses) {
  Cluster c(2);
  auto r = http_get(c.node(0).http_port, "/healthz");
  BOOST_TEST(r.status == 200);
  BOOST_TEST(r.body == "ok\n");
  r = http_get(c.syncer_http_port(), "/healthz");
  BOOST_TEST(r.status == 200);
  r = http_get(c.node(0).http_port, "/nope");
  BOOST_TEST(r.status == 404);
  BOOST_TEST(r.body.find("/metrics") != std::string::npos);  // says what exists

  // The viewer is served by the syncer, with what it needs to draw the cluster.
  r = http_get(c.syncer_http_port(), "/");
  BOOST_TEST(r.status == 200);
  BOOST_TEST(r.headers.find("text/html") != std::string::npos);
  BOOST_TEST(r.body.find("viewer.js") != std::string::npos);
  BOOST_TEST(http_get(c.syncer_http_port(), "/viewer.js").status == 200);
  BOOST_TEST(http_get(c.syncer_http_port(), "/viewer.css").status == 200);
  r = http_get(c.syncer_http_port(), "/nodes");
  auto nodes = json::parse(r.body).as_object();
  BOOST_TEST(nodes.at("nodes").as_array().size() == 2u);
  BOOST_TEST(nodes.at("nodes").at(0).at("http").as_string() ==
             "127.0.0.1:" + std::to_string(c.node(0).http_port));
  // Node snapshots may be read by the page, which another process serves.
  BOOST_TEST_REQUIRE(c.cli({"--route", "1", "create", "snap"}).code == 0);
  r = http_get(c.node(0).http_port, "/items");
  BOOST_TEST(r.headers.find("Access-Control-Allow-Origin: *") != std::string::npos);
  auto items = json::parse(r.body).as_object();
  BOOST_TEST(items.at("node").as_string() == "a");
  BOOST_TEST(items.at("items").at(0).at("title").as_string() == "snap");
  BOOST_TEST(!items.at("truncated").as_bool());
  BOOST_TEST(items.at("next").as_string() == "");
  BOOST_TEST(items.at("count").as_int64() == 1);

  // Pages by id or position, and a search (docs/protocol.md, "/items: pages and search").
  for (int i = 0; i < 4; ++i) {
    BOOST_TEST_REQUIRE(c.cli({"--route", "1", "create", "Paged " + std::to_string(i)}).code == 0);
  }
  const auto items_of = [&](const std::string& target) {
    r = http_get(c.node(0).http_port, target);
    BOOST_TEST_REQUIRE(r.status == 200, target << ": " << r.body);
    return json::parse(r.body).as_object();
  };
  items = items_of("/items?limit=2");
  BOOST_TEST(items.at("count").as_int64() == 5);
  BOOST_TEST_REQUIRE(items.at("items").as_array().size() == 2u);
  BOOST_TEST(items.at("next").as_string() == "2a");
  items = items_of("/items?after=2a&limit=10");
  BOOST_TEST(items.at("items").as_array().size() == 3u);
  BOOST_TEST(items.at("next").as_string() == "");
  items = items_of("/items?offset=4&limit=10");
  BOOST_TEST_REQUIRE(items.at("items").as_array().size() == 1u);
  BOOST_TEST(items.at("items").at(0).at("id").as_string() == "5a");
  items = items_of("/items?q=PAGED%202");  // a title, without case
  BOOST_TEST_REQUIRE(items.at("items").as_array().size() == 1u);
  BOOST_TEST(items.at("items").at(0).at("title").as_string() == "Paged 2");
  BOOST_TEST(items.at("scanned").as_int64() == 5);
  BOOST_TEST(items.at("next").as_string() == "");
  items = items_of("/items?q=4A");  // an id prefix
  BOOST_TEST_REQUIRE(items.at("items").as_array().size() == 1u);
  BOOST_TEST(items.at("items").at(0).at("id").as_string() == "4a");
  r = http_get(c.node(0).http_port, "/items?limit=0");
  BOOST_TEST(r.status == 400);
  BOOST_TEST(r.body.find("limit must be between 1 and 5000") != std::string::npos);
  BOOST_TEST(http_get(c.node(0).http_port, "/items?offset=1&after=1a").status == 400);
  BOOST_TEST(http_get(c.node(0).http_port, "/items?q=").status == 400);

  // A syncer that cannot reach every node is not ready, and says why.
  c.stop_node(1);
  std::vector<std::string> args{(bin_dir() / "kvsync").string(),
                                "--nodes",
                                c.nodes_arg(),
                                "--data",
                                (c.dir() / "sync2").string(),
                                "--http-port",
                                "0"};
  Process fresh(args, c.dir() / "sync2.log");
  const std::string line = fresh.wait_for_line("kvsync serving");
  const auto port = static_cast<std::uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
  r = http_get(port, "/healthz");
  BOOST_TEST(r.status == 503);
  BOOST_TEST(r.body.find("waiting to reach every node") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(json_logs_are_one_object_per_line) {
  TempDir dir;
  std::vector<std::string> argv{(bin_dir() / "kvnode").string(),
                                "--name",
                                "a",
                                "--data",
                                (dir.path() / "a").string(),
                                "--standalone",
                                "--log-format",
                                "json",
                                "--log-level",
                                "debug"};
  Process node(argv, dir.path() / "a.log");
  const std::string ready = node.wait_for_line("ready");
  BOOST_TEST_REQUIRE(run_cli({"--nodes", binary_address(ready), "create", "logged"}).code == 0);
  node.signal(SIGTERM);
  BOOST_TEST(node.wait() == 0);
  std::istringstream in(file_text(dir.path() / "a.log"));
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    auto o = json::parse(line).as_object();
    BOOST_TEST(o.at("ts").as_string().size() > 10u);
    BOOST_TEST(!o.at("level").as_string().empty());
    BOOST_TEST(o.contains("msg"));
    ++n;
  }
  BOOST_TEST(n >= 3);
  // A format nobody knows is refused with a sentence.
  argv.back() = "info";
  argv[argv.size() - 3] = "xml";
  Process bad(argv, dir.path() / "bad.log");
  BOOST_TEST(bad.wait() != 0);
  BOOST_TEST(file_text(dir.path() / "bad.log").find("unknown log format 'xml'") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(the_shell_completes_commands_and_ids_and_colours_only_a_terminal) {
  Cluster c(1, false);
  BOOST_TEST_REQUIRE(c.cli({"create", "first"}).code == 0);
  const std::vector<std::string> argv{(bin_dir() / "kvcli").string(), "--nodes", c.nodes_arg()};
  const std::vector<std::pair<std::string, std::string>> env{{"HOME", c.dir().string()},
                                                             {"TERM", "xterm"}};
  // "li<TAB>" completes to list; "get 1<TAB>" completes the id list printed.
  const auto out =
      run_on_pty(argv, env, {"li\t\r", "get 1\t\r", "quit\r"}, {"kv> ", "kv> ", "kv> "});
  // Both ran: "li" alone is no command, and "get 1" would be "no item 1".
  BOOST_TEST(out.find("(1 item from node 1") != std::string::npos, "no list:\n" << out);
  BOOST_TEST(out.find("first, no-complete  \033[2m(node 1") != std::string::npos,
             "completion did not add the id:\n"
                 << out);
  BOOST_TEST(out.find("\033[1;36m1a") != std::string::npos, "no colour on a terminal:\n" << out);

  auto env_nc = env;
  env_nc.push_back({"NO_COLOR", "1"});
  const auto plain = run_on_pty(argv, env_nc, {"list\r", "quit\r"}, {"kv> ", "kv> "});
  BOOST_TEST(plain.find("ID:1a") != std::string::npos);
  BOOST_TEST(plain.find("\033[1;36m") == std::string::npos, "colour despite NO_COLOR:\n" << plain);
  BOOST_TEST(plain.find("\033[2m") == std::string::npos);

  // Piped (script mode) output has no escape codes at all.
  auto r = c.cli({}, "list\nget 1a\nnodes\nhelp watch\n");
  BOOST_TEST(r.code == 0);
  BOOST_TEST(r.out.find('\033') == std::string::npos);
  BOOST_TEST(r.out.find("watch [N] [ID]") != std::string::npos);
  // The history is kept for the next session.
  BOOST_TEST(file_text(c.dir() / ".kvcli_history").find("1a") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(watch_filters_by_node_and_item) {
  Cluster c(2);
  BOOST_TEST_REQUIRE(c.cli({"--route", "1", "create", "watched"}).code == 0);
  BOOST_TEST_REQUIRE(c.cli({"--route", "1", "create", "ignored"}).code == 0);
  std::vector<std::string> argv{
      (bin_dir() / "kvcli").string(), "--nodes", c.nodes_arg(), "--json", "watch", "2", "1a"};
  Process watch(argv, c.dir() / "watch.log");
  int k = 0;
  BOOST_TEST(poke_until_seen(watch, "poke", [&] {
    c.cli({"--route", "1", "update", "2a", "title", "noise " + std::to_string(k)});
    c.cli({"--route", "1", "update", "1a", "title", "poke " + std::to_string(k++)});
  }));
  watch.signal(SIGINT);
  BOOST_TEST(watch.wait() == 0);
  // Every line it printed, those read while waiting for the poke too.
  std::vector<std::string> lines = watch.lines_passed();
  std::istringstream in(watch.read_all());
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::size_t notifications = 0;
  for (const auto& line : lines) {
    if (line.empty()) continue;
    auto o = json::parse(line).as_object();
    BOOST_TEST(o.at("node").as_string() == "b", line);            // node 2 only
    BOOST_TEST(o.at("item").at("id").as_string() == "1a", line);  // item 1a only
    ++notifications;
  }
  BOOST_TEST(notifications >= 1u);
}

// Issue 10, problem 6: a token for a node whose data directory was wiped since, read through a
// fixed route to another node, made every read wait its full session wait there: the other node
// cannot tell an old life of b from a new one it has not heard of. kvcli asks b itself once the
// wait passes, and forgets the entry.
BOOST_AUTO_TEST_CASE(a_token_for_a_wiped_node_read_through_another_node_waits_once) {
  Cluster c(2);
  BOOST_TEST_REQUIRE(c.cli({"--route", "2", "create", "on b's old life"}).code == 0);
  c.wait_converged();
  c.stop_syncer();
  c.stop_node(1);
  std::filesystem::remove_all(c.dir() / c.node(1).name);
  c.start_node(1);
  c.start_syncer({}, {"--forget-node", "b"});
  c.wait_converged();
  auto r = c.cli({"--json", "--route", "1", "--session-wait", "1000", "list"});
  BOOST_TEST(r.code == 0);
  BOOST_TEST(parse_one(r.out).contains("behind"), r.out);
  r = c.cli({"--json", "--route", "1", "--session-wait", "1000", "list"});
  BOOST_TEST(!parse_one(r.out).contains("behind"), r.out);
}
