// Who may do what (the cluster secret) and the limits that keep a node serving everyone while a
// client misbehaves (docs/security.md). Real binaries on 127.0.0.1, ephemeral ports, deadlines;
// the misbehaving clients are raw sockets in this process.
#define BOOST_TEST_MODULE security
#include <boost/test/unit_test.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <optional>

#include "cluster.hpp"
#include "core/protocol.hpp"

using namespace kv;
using namespace kv::test;

namespace {
const std::string kSecret = "0123456789abcdef-test-secret";

// KV_SECRET for every process the test starts while this lives (nodes, syncer, kvcli).
struct SecretEnv {
  explicit SecretEnv(const std::string& s) { ::setenv("KV_SECRET", s.c_str(), 1); }
  ~SecretEnv() { ::unsetenv("KV_SECRET"); }
};
// The opposite, for one kvcli run.
struct NoSecret {
  NoSecret() : saved(std::getenv("KV_SECRET") ? std::getenv("KV_SECRET") : "") {
    ::unsetenv("KV_SECRET");
  }
  ~NoSecret() {
    if (!saved.empty()) ::setenv("KV_SECRET", saved.c_str(), 1);
  }
  std::string saved;
};

// A raw binary-protocol connection.
struct Raw {
  explicit Raw(std::uint16_t port, int timeout_s = 5) : fd(connect_loopback(port, timeout_s)) {
    BOOST_TEST_REQUIRE(fd >= 0);
  }
  ~Raw() {
    if (fd >= 0) ::close(fd);
  }
  bool send(const std::string& bytes) {
    return ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
  }
  bool send(std::uint32_t id, const proto::Request& req) {
    std::string out;
    proto::encode_request(out, id, req);
    return send(out);
  }
  // The next frame's type and payload; nullopt when the node closed the connection or said
  // nothing before the read timeout (`last` tells which).
  std::optional<std::pair<std::uint8_t, std::string>> frame() {
    for (;;) {
      auto d = proto::decode_frame({reinterpret_cast<const std::uint8_t*>(buf.data()), buf.size()});
      if (d.status == proto::DecodeStatus::kFrame) {
        std::pair<std::uint8_t, std::string> f{
            d.frame.type, std::string(reinterpret_cast<const char*>(d.frame.payload.data()),
                                      d.frame.payload.size())};
        buf.erase(0, d.frame.size);
        return f;
      }
      last = read_some(fd, buf);  // bounded by the socket's read timeout
      if (last != ReadResult::kData) return std::nullopt;
    }
  }
  // The connection was closed by the node (not merely silent until the read timeout).
  bool closed() { return !frame().has_value() && last == ReadResult::kClosed; }
  int fd;
  std::string buf;
  ReadResult last = ReadResult::kData;
};

int error_code(const std::string& payload) {
  return (static_cast<unsigned char>(payload[0]) << 8) | static_cast<unsigned char>(payload[1]);
}
constexpr std::uint8_t kErrorType = 0xFF;
const int kUnauth = static_cast<int>(proto::ErrorCode::kUnauthenticated);
}  // namespace

BOOST_AUTO_TEST_CASE(sync_operations_need_the_secret_and_a_wrong_one_is_refused_and_logged) {
  SecretEnv env(kSecret);
  Cluster c(2);
  // The syncer knows the secret: the cluster syncs.
  BOOST_TEST_REQUIRE(c.cli({"--route", "1", "create", "secret sync"}).code == 0);
  BOOST_TEST(c.wait_converged().size() == 1u);

  Raw raw(c.node(0).binary_port);
  // Without AUTH: FETCH and APPLY are refused with a sentence, clients' requests are not.
  raw.send(1, proto::msg::Fetch{0, 10});
  auto f = raw.frame();
  BOOST_TEST_REQUIRE(f.has_value());
  BOOST_TEST(f->first == kErrorType);
  BOOST_TEST(error_code(f->second) == kUnauth);
  BOOST_TEST(f->second.find("send AUTH first") != std::string::npos);
  raw.send(2, proto::msg::Apply{});
  f = raw.frame();
  BOOST_TEST_REQUIRE(f.has_value());
  BOOST_TEST(error_code(f->second) == kUnauth);
  raw.send(3, proto::msg::Get{"1a"});
  f = raw.frame();
  BOOST_TEST_REQUIRE(f.has_value());
  BOOST_TEST(f->first == (static_cast<std::uint8_t>(proto::MsgType::kGet) | proto::kResponseBit));

  // A wrong secret (a prefix of the right one, too) is refused, logged, counted.
  for (const std::string& wrong : {std::string("not the secret at all"), kSecret.substr(0, 20)}) {
    raw.send(4, proto::msg::Auth{wrong});
    f = raw.frame();
    BOOST_TEST_REQUIRE(f.has_value());
    BOOST_TEST(error_code(f->second) == kUnauth);
    BOOST_TEST(f->second.find("wrong cluster secret") != std::string::npos);
  }
  raw.send(5, proto::msg::Fetch{0, 10});
  f = raw.frame();
  BOOST_TEST(error_code(f->second) == kUnauth);
  BOOST_TEST(wait_until([&] {
    return file_text(c.dir() / "a.log").find("refused a wrong cluster secret from 127.0.0.1") !=
           std::string::npos;
  }));
  BOOST_TEST(http_get(c.node(0).http_port, "/metrics").body.find("kv_auth_failures_total 2") !=
             std::string::npos);

  // The right one opens the sync operations on this connection.
  raw.send(6, proto::msg::Auth{kSecret});
  f = raw.frame();
  BOOST_TEST(f->first == (static_cast<std::uint8_t>(proto::MsgType::kAuth) | proto::kResponseBit));
  raw.send(7, proto::msg::Fetch{0, 10});
  f = raw.frame();
  BOOST_TEST(f->first == (static_cast<std::uint8_t>(proto::MsgType::kFetch) | proto::kResponseBit));
}

BOOST_AUTO_TEST_CASE(subscriptions_and_snapshots_need_the_secret) {
  SecretEnv env(kSecret);
  Cluster c(1);
  const auto port = c.node(0).http_port;
  // No secret: 401 with what to do, for the node's /ws and /items and the syncer's /ws.
  int fd = connect_loopback(port, 5);
  BOOST_TEST(!ws_handshake(fd, "/ws").has_value());
  ::close(fd);
  auto r = http_get(port, "/items");
  BOOST_TEST(r.status == 401);
  BOOST_TEST(r.body.find("cluster secret") != std::string::npos);
  BOOST_TEST(http_get(port, "/items?secret=wrong-secret-of-some-length").status == 401);
  fd = connect_loopback(c.syncer_http_port(), 5);
  BOOST_TEST(!ws_handshake(fd, "/ws").has_value());
  ::close(fd);
  // What carries no items stays open.
  BOOST_TEST(http_get(port, "/healthz").status == 200);
  BOOST_TEST(http_get(port, "/metrics").status == 200);
  BOOST_TEST(http_get(c.syncer_http_port(), "/").status == 200);

  // The secret as a query parameter (what browsers can send) or a bearer header.
  fd = connect_loopback(port, 5);
  BOOST_TEST(ws_handshake(fd, "/ws?secret=" + kSecret).has_value());
  ::close(fd);
  fd = connect_loopback(port, 5);
  const std::string upgrade =
      "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
      "Authorization: Bearer " +
      kSecret + "\r\n\r\n";
  BOOST_TEST_REQUIRE(::write(fd, upgrade.data(), upgrade.size()) ==
                     static_cast<ssize_t>(upgrade.size()));
  char buf[512];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  BOOST_TEST(n > 0);
  BOOST_TEST(std::string(buf, n > 0 ? n : 0).find(" 101 ") != std::string::npos);
  ::close(fd);
  BOOST_TEST(http_get(port, "/items?secret=" + kSecret).status == 200);

  // kvcli watch: without the secret it says what is missing; with it, it watches.
  {
    NoSecret none;
    auto w = c.cli({"--route", "1", "watch"});
    BOOST_TEST(w.code != 0);
  }
  BOOST_TEST(wait_until([&] {
    return file_text(c.dir() / "a.log").find("refused a WebSocket without the secret") !=
           std::string::npos;
  }));
}

BOOST_AUTO_TEST_CASE(client_auth_makes_every_request_need_the_secret) {
  SecretEnv env(kSecret);
  Cluster c(1, false, {"--client-auth"});
  BOOST_TEST(c.cli({"create", "with the secret"}).code == 0);
  NoSecret none;
  auto r = c.cli({"create", "without"});
  BOOST_TEST(r.code != 0);
  Raw raw(c.node(0).binary_port);
  raw.send(1, proto::msg::Ping{});  // PING stays open: health checks need no secret
  auto f = raw.frame();
  BOOST_TEST(f->first == (static_cast<std::uint8_t>(proto::MsgType::kPing) | proto::kResponseBit));
  raw.send(2, proto::msg::List{});
  f = raw.frame();
  BOOST_TEST(error_code(f->second) == kUnauth);
  BOOST_TEST(f->second.find("--secret-file") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_syncer_with_the_wrong_secret_syncs_nothing_and_says_why) {
  TempDir dir;
  SecretEnv env(kSecret);
  Cluster secured(2, false);  // nodes with the secret, no syncer yet
  BOOST_TEST_REQUIRE(secured.cli({"--route", "1", "create", "made before the syncer"}).code == 0);
  ::setenv("KV_SECRET", "a-different-secret-entirely", 1);
  std::vector<std::string> argv{(bin_dir() / "kvsync").string(),
                                "--nodes",
                                secured.nodes_arg(),
                                "--data",
                                (dir.path() / "sync").string(),
                                "--http-port",
                                "0"};
  Process syncer(argv, dir.path() / "sync.log");
  BOOST_TEST(wait_until([&] {
    return file_text(dir.path() / "sync.log").find("refused our cluster secret") !=
           std::string::npos;
  }));
  // Refused, it fetched nothing: the item is still only on node a, and still unsynced there.
  ::setenv("KV_SECRET", kSecret.c_str(), 1);
  BOOST_TEST(secured.items_on(1).size() == 1u);
  BOOST_TEST(secured.items_on(2).empty());
  const auto status = secured.cli({"--json", "nodes"});
  BOOST_TEST(status.out.find("\"unsynced\":1") != std::string::npos, status.out);
  syncer.signal(SIGTERM);
  BOOST_TEST(syncer.wait() == 0);
}

BOOST_AUTO_TEST_CASE(secrets_are_checked_before_anything_starts) {
  TempDir dir;
  const auto kvnode = (bin_dir() / "kvnode").string();
  const auto data = (dir.path() / "a").string();
  // Beyond loopback only with a secret.
  Process open({kvnode, "--data", data, "--host", "0.0.0.0"}, dir.path() / "open.log");
  BOOST_TEST(open.wait() == 2);
  BOOST_TEST(file_text(dir.path() / "open.log").find("needs a cluster secret") !=
             std::string::npos);
  // A secret file others can read is refused; so is a short secret.
  const auto file = dir.path() / "secret";
  std::ofstream(file) << kSecret << "\n";
  ::chmod(file.c_str(), 0644);
  Process loose({kvnode, "--data", data, "--secret-file", file.string()}, dir.path() / "loose.log");
  BOOST_TEST(loose.wait() == 2);
  BOOST_TEST(file_text(dir.path() / "loose.log").find("chmod 600") != std::string::npos);
  std::ofstream(file) << "short\n";
  ::chmod(file.c_str(), 0600);
  Process shorty({kvnode, "--data", data, "--secret-file", file.string()},
                 dir.path() / "short.log");
  BOOST_TEST(shorty.wait() == 2);
  BOOST_TEST(file_text(dir.path() / "short.log").find("must be 16 to 256") != std::string::npos);
}

// ---- Limits: one client misbehaving, everyone else served ------------------------------------

BOOST_AUTO_TEST_CASE(a_client_sending_a_byte_at_a_time_is_cut_off_and_others_are_served) {
  Cluster c(1, false, {"--frame-timeout", "400"});
  Raw slow(c.node(0).binary_port);
  std::string frame;
  proto::encode_request(frame, 1, proto::msg::Create{"slowly"});
  // One byte every 100 ms: the frame would take about 2 s; the node gives it 400 ms.
  bool closed = false;
  for (std::size_t i = 0; i < frame.size() && !closed; ++i) {
    if (!slow.send(frame.substr(i, 1))) closed = true;
    BOOST_TEST(c.cli({"list"}).code == 0);  // meanwhile, everyone else is served
    pollfd p{slow.fd, POLLIN, 0};
    if (::poll(&p, 1, 100) > 0) {
      std::string got;
      if (read_some(slow.fd, got) == ReadResult::kClosed) closed = true;
    }
  }
  BOOST_TEST(closed, "the node waited for the slow frame");
  BOOST_TEST(file_text(c.dir() / "a.log").find("did not arrive within 400 ms") !=
             std::string::npos);
  // A client that is merely idle between frames is not cut off by the frame timeout.
  Raw idle(c.node(0).binary_port);
  BOOST_TEST(idle.send(1, proto::msg::Ping{}));
  BOOST_TEST(idle.frame().has_value());
  pollfd p{idle.fd, POLLIN, 0};
  BOOST_TEST(::poll(&p, 1, 800) == 0);  // nothing happens: still open, no data
  BOOST_TEST(idle.send(2, proto::msg::Ping{}));
  BOOST_TEST(idle.frame().has_value());
}

BOOST_AUTO_TEST_CASE(a_connection_flood_is_refused_past_the_limit_and_service_resumes) {
  Cluster c(1, false, {"--max-connections", "16"});
  Raw before(c.node(0).binary_port);  // a client connected before the flood
  BOOST_TEST(before.send(1, proto::msg::Ping{}));
  BOOST_TEST(before.frame().has_value());
  std::vector<std::unique_ptr<Raw>> flood;
  int refused = 0;
  for (int i = 0; i < 40 && refused < 3; ++i) {  // open until the node closes new ones
    flood.push_back(std::make_unique<Raw>(c.node(0).binary_port, 2));
    flood.back()->send(1, proto::msg::Ping{});
    if (flood.back()->closed()) ++refused;  // a silent node is not a refusal
  }
  BOOST_TEST(refused == 3);
  BOOST_TEST(flood.size() <= 20u);  // 15 more fit beside `before`, then every one is refused
  // The client that was there keeps being served.
  BOOST_TEST(before.send(2, proto::msg::Create{"during the flood"}));
  auto f = before.frame();
  BOOST_TEST_REQUIRE(f.has_value());
  BOOST_TEST(f->first ==
             (static_cast<std::uint8_t>(proto::MsgType::kCreate) | proto::kResponseBit));
  BOOST_TEST(file_text(c.dir() / "a.log").find("refusing a binary connection") !=
             std::string::npos);
  flood.clear();
  BOOST_TEST(wait_until([&] { return c.cli({"list"}).code == 0; }));
}

BOOST_AUTO_TEST_CASE(an_oversized_websocket_message_or_a_slow_http_request_ends_only_that_one) {
  Cluster c(1, false);
  // A subscriber sending a 100 KiB message (the limit is 64 KiB) is closed.
  int fd = connect_loopback(c.node(0).http_port, 5);
  BOOST_TEST_REQUIRE(ws_handshake(fd, "/ws").has_value());
  std::string big(100 * 1024, 'x');
  std::string ws_frame = "\x81\xff";  // FIN text, masked, 64-bit length
  for (int i = 7; i >= 0; --i)
    ws_frame.push_back(static_cast<char>((big.size() >> (8 * i)) & 0xff));
  ws_frame += std::string("\0\0\0\0", 4);  // mask key 0
  ws_frame += big;
  ::write(fd, ws_frame.data(), ws_frame.size());
  ReadResult r = ReadResult::kData;
  std::string got;
  const auto sent = std::chrono::steady_clock::now();
  for (int i = 0; i < 100 && r == ReadResult::kData; ++i) r = read_some(fd, got);  // hello, close
  BOOST_TEST((r == ReadResult::kClosed), "the node went silent instead of closing");
  BOOST_TEST_MESSAGE("the oversized WebSocket message was closed after "
                     << std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - sent)
                            .count()
                     << " ms");
  ::close(fd);
  // An HTTP request whose head never ends holds only its own connection, and not forever.
  fd = connect_loopback(c.node(0).http_port, 15);
  const std::string partial = "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  ::write(fd, partial.data(), partial.size());
  BOOST_TEST(http_get(c.node(0).http_port, "/status").status == 200);
  BOOST_TEST(c.cli({"list"}).code == 0);
  ::close(fd);
}
