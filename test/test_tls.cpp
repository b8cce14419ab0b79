// TLS end to end (docs/security.md, "TLS"): a throwaway CA and certificates made with the openssl
// CLI, two nodes and the syncer speaking only TLS (binary protocol, https, wss), kvcli over
// TLS, and what a client with the wrong CA, or no TLS at all, gets. Real binaries on 127.0.0.1.
#define BOOST_TEST_MODULE tls
#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string_view>

#include "cluster.hpp"
#include "core/protocol.hpp"

using namespace kv;
using namespace kv::test;
namespace fs = std::filesystem;

namespace {

fs::path openssl_cli() {
  for (const char* p : {"/usr/bin/openssl", "/bin/openssl", "/usr/local/bin/openssl"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  throw std::runtime_error("this test needs the openssl command (Debian package openssl)");
}

// Runs `argv` to its end; returns its exit code (its standard error goes to `log`).
int run(std::vector<std::string> argv, const fs::path& log) {
  Process p(std::move(argv), log, "", /*capture_stdout=*/false);
  return p.wait(60s);
}

// A throwaway PKI: a CA, a certificate for IP 127.0.0.1 signed by it, and an unrelated CA.
struct Pki {
  TempDir dir;
  fs::path ca = dir / "ca.pem";
  fs::path ca_key = dir / "ca.key";
  fs::path other_ca = dir / "other-ca.pem";
  fs::path cert = dir / "node.pem";
  fs::path key = dir / "node.key";

  Pki() {
    const std::string openssl = openssl_cli().string();
    const fs::path log = dir / "openssl.log";
    const std::vector<std::string> ec{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                      "-nodes"};
    auto self_signed = [&](const fs::path& cert_out, const fs::path& key_out,
                           const std::string& cn) {
      std::vector<std::string> argv{openssl, "req", "-x509"};
      argv.insert(argv.end(), ec.begin(), ec.end());
      argv.insert(argv.end(), {"-keyout", key_out.string(), "-out", cert_out.string(), "-days", "2",
                               "-subj", "/CN=" + cn});
      BOOST_TEST_REQUIRE(run(argv, log) == 0, "openssl req failed:\n" + file_text(log));
    };
    self_signed(ca, ca_key, "kvstore test CA");
    self_signed(other_ca, dir / "other-ca.key", "an unrelated CA");
    const fs::path csr = dir / "node.csr";
    std::vector<std::string> req{openssl, "req"};
    req.insert(req.end(), ec.begin(), ec.end());
    req.insert(req.end(),
               {"-keyout", key.string(), "-out", csr.string(), "-subj", "/CN=127.0.0.1"});
    BOOST_TEST_REQUIRE(run(req, log) == 0, "openssl req failed:\n" + file_text(log));
    const fs::path ext = dir / "san.cnf";
    std::ofstream(ext) << "subjectAltName=IP:127.0.0.1\n";
    BOOST_TEST_REQUIRE(run({openssl, "x509", "-req", "-in", csr.string(), "-CA", ca.string(),
                            "-CAkey", ca_key.string(), "-CAcreateserial", "-out", cert.string(),
                            "-days", "2", "-extfile", ext.string()},
                           log) == 0,
                       "openssl x509 failed:\n" + file_text(log));
  }
};

// GET https://127.0.0.1:port/target through `openssl s_client`, verifying the server's
// certificate against `ca` and the address it names. The whole reply, or "" when the handshake
// failed.
std::string https_get(std::uint16_t port, const std::string& target, const fs::path& ca,
                      const fs::path& log) {
  Process p({openssl_cli().string(), "s_client", "-connect", "127.0.0.1:" + std::to_string(port),
             "-CAfile", ca.string(), "-verify_return_error", "-verify_ip", "127.0.0.1", "-quiet"},
            log, "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  std::string out = p.read_all(20s);
  p.wait(20s);
  return out;
}

// Everything the peer sends until it closes (or the read timeout passes).
std::string read_until_closed(int fd) {
  std::string got;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return got;
    got.append(buf, n);
  }
}

ClusterArgs tls_args(const Pki& pki) {
  const std::vector<std::string> server{"--tls-cert", pki.cert.string(), "--tls-key",
                                        pki.key.string()};
  ClusterArgs args;
  args.node = server;
  args.syncer = server;  // the viewer's port, https
  args.syncer.insert(args.syncer.end(), {"--tls-ca", pki.ca.string()});
  args.cli = {"--tls-ca", pki.ca.string()};
  return args;
}

bool has(const std::vector<std::string>& items, const std::string& title) {
  for (const auto& i : items) {
    if (i.find(title) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_cluster_over_tls_syncs_and_serves_only_tls_clients) {
  Pki pki;
  Cluster c(2, tls_args(pki));

  // A connection that never starts its handshake holds nobody up.
  const int silent = connect_loopback(c.node(0).binary_port, 5);
  BOOST_TEST_REQUIRE(silent >= 0);

  // kvcli over TLS writes on node 1; the syncer, over TLS and wss, brings it to node 2.
  auto created = c.cli({"--route", "1", "create", "over tls"});
  BOOST_TEST(created.code == 0);
  BOOST_TEST(created.out.find("created") != std::string::npos, created.out);
  BOOST_TEST(wait_until([&] { return has(c.items_on(2), "over tls"); }),
             "node 2 never got the item\n" + c.syncer()->log_tail());
  ::close(silent);

  // kvcli watch over wss sees a notification.
  {
    Process watch({(bin_dir() / "kvcli").string(), "--nodes", c.nodes_arg(), "--tls-ca",
                   pki.ca.string(), "--json", "watch"},
                  c.dir() / "watch.log");
    BOOST_TEST(poke_until_seen(watch, "watched over wss", [&] {
      c.cli({"--route", "2", "create", "watched over wss"});
    }));
    watch.signal(SIGINT);
    BOOST_TEST(watch.wait() == 0);
  }

  // The wrong CA: a sentence about the certificate, and nothing sent.
  auto wrong = run_cli({"--nodes", c.nodes_arg(), "--tls-ca", pki.other_ca.string(), "--json",
                        "--route", "1", "create", "signed by nobody we trust"});
  BOOST_TEST(wrong.code != 0);
  BOOST_TEST(wrong.out.find("certificate was not accepted") != std::string::npos, wrong.out);
  BOOST_TEST(wrong.out.find("--tls-ca") != std::string::npos, wrong.out);
  BOOST_TEST(!has(c.items_on(1), "signed by nobody"));
  BOOST_TEST(!has(c.items_on(2), "signed by nobody"));

  // A plain-TCP client gets a TLS alert where it expected a frame, then the node closes.
  {
    const int fd = connect_loopback(c.node(0).binary_port, 5);
    BOOST_TEST_REQUIRE(fd >= 0);
    std::string ping;
    proto::encode_request(ping, 1, proto::msg::Ping{});
    BOOST_TEST_REQUIRE(::write(fd, ping.data(), ping.size()) == static_cast<ssize_t>(ping.size()));
    const std::string got = read_until_closed(fd);
    ::close(fd);
    BOOST_TEST_REQUIRE(got.size() >= 2);
    BOOST_TEST(static_cast<unsigned char>(got[0]) == 21);  // a TLS alert record, not a PONG
    BOOST_TEST(static_cast<unsigned char>(got[1]) == 3);
  }
  // kvcli without --tls-ca says what to do.
  auto plain = run_cli({"--nodes", c.nodes_arg(), "--json", "--route", "1", "list"});
  BOOST_TEST(plain.code != 0);
  BOOST_TEST(plain.out.find("speaks TLS") != std::string::npos, plain.out);
  // Plain HTTP on the https port gets a 400 that says so.
  auto http = http_get(c.node(0).http_port, "/healthz");
  BOOST_TEST(http.status == 400);
  BOOST_TEST(http.body.find("speaks TLS") != std::string::npos, http.body);

  // The node still serves everyone else.
  auto after = c.cli({"--route", "1", "create", "still serving"});
  BOOST_TEST(after.code == 0, after.out);

  // /healthz over https on a node and on the syncer; refused with the wrong CA.
  const auto node_health = https_get(c.node(0).http_port, "/healthz", pki.ca, c.dir() / "s1.log");
  BOOST_TEST(node_health.find("HTTP/1.1 200") != std::string::npos, node_health);
  const auto sync_health = https_get(c.syncer_http_port(), "/healthz", pki.ca, c.dir() / "s2.log");
  BOOST_TEST(sync_health.find("HTTP/1.1 200") != std::string::npos, sync_health);
  const auto untrusted =
      https_get(c.node(0).http_port, "/healthz", pki.other_ca, c.dir() / "s3.log");
  BOOST_TEST(untrusted.find("HTTP/1.1") == std::string::npos, untrusted);

  // The refused handshakes were counted.
  const auto metrics = https_get(c.node(0).http_port, "/metrics", pki.ca, c.dir() / "s4.log");
  constexpr std::string_view kSample = "\nkv_tls_handshake_failures_total ";
  const auto at = metrics.find(kSample);
  BOOST_TEST_REQUIRE(at != std::string::npos, metrics);
  BOOST_TEST(std::stod(metrics.substr(at + kSample.size())) >= 2);
}

BOOST_AUTO_TEST_CASE(tls_flags_are_checked_before_anything_starts) {
  Pki pki;
  TempDir dir;
  auto kvnode = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv{(bin_dir() / "kvnode").string(), "--data",
                                  (dir / "data").string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    const auto log = dir / "node.log";
    fs::remove(log);
    const int code = run(argv, log);
    return std::make_pair(code, file_text(log));
  };
  auto [c1, e1] = kvnode({"--tls-cert", pki.cert.string()});
  BOOST_TEST(c1 == 2);
  BOOST_TEST(e1.find("--tls-cert and --tls-key go together") != std::string::npos, e1);
  auto [c2, e2] =
      kvnode({"--tls-cert", pki.cert.string(), "--tls-key", (pki.dir / "ca.key").string()});
  BOOST_TEST(c2 == 2);
  BOOST_TEST(e2.find("does not belong to the certificate") != std::string::npos, e2);
  auto [c3, e3] =
      kvnode({"--tls-cert", (dir / "missing.pem").string(), "--tls-key", pki.key.string()});
  BOOST_TEST(c3 == 2);
  BOOST_TEST(e3.find("cannot read") != std::string::npos, e3);

  auto cli = run_cli({"--tls-ca", (dir / "missing.pem").string(), "list"});
  BOOST_TEST(cli.code == 2);
}
