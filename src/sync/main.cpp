// kvsync: the sync daemon. Fetches each node's local changes when its WebSocket notification
// says there are some, stamps them with the syncer's own version, and fans them out to every
// node. See docs/sync.md.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/program_options.hpp>

#include <iostream>
#include <optional>

#include "core/command_line.hpp"
#include "core/describe.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/protocol.hpp"
#include "core/secret.hpp"
#include "net/listener.hpp"
#include "net/node_client.hpp"
#include "net/shutdown.hpp"
#include "net/tls.hpp"
#include "net/web_server.hpp"
#include "sync/http_api.hpp"
#include "sync/sync_log.hpp"
#include "sync/syncer.hpp"

namespace asio = boost::asio;
namespace po = boost::program_options;

namespace {
// `kvsync forget-node NAME --data DIR`: the operator says a node is gone for good, or that its
// data directory was wiped or replaced (docs/sync.md, "Removing a node"). kvsync must be
// stopped (the log's directory is locked while it runs).
int forget_node(int argc, char** argv) {
  std::string name, data;
  po::options_description opts(
      "kvsync forget-node: the syncer's log forgets a node\n\n"
      "Usage: kvsync forget-node NAME --data DIR   (with kvsync stopped)\n\n"
      "Do this for a node removed from --nodes for good (it no longer holds back compaction),\n"
      "or whose data directory was wiped or replaced (the log then takes its new one). If the\n"
      "node comes back, it is resynced from scratch.\n\nOptions");
  opts.add_options()("help,h", "show this help")(
      "name", po::value(&name)->required(), "the node's name")("data", po::value(&data)->required(),
                                                               "the syncer's data directory");
  po::positional_options_description pos;
  pos.add("name", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc - 1, argv + 1).options(opts).positional(pos).run(), vm);
    if (vm.count("help")) {
      std::cout << opts << "\n";
      return 0;
    }
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "kvsync forget-node: " << e.what() << "\nTry 'kvsync forget-node --help'.\n";
    return 2;
  }
  try {
    kv::sync::SyncLogOptions options;
    options.dir = data;
    options.sync_writes = true;
    kv::sync::SyncLog log(options);
    if (!log.forget(name)) {
      std::cout << "the log in " << data << " does not know a node named " << name << "\n";
      return 1;
    }
    std::cout << "forgot node " << name << ": if it comes back, it is resynced from scratch\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "kvsync forget-node: " << kv::describe(e) << "\n";
    return 1;
  }
}

// What the command line says the syncer is.
struct Config {
  std::string nodes, host;
  std::shared_ptr<kv::tls::Context> http_tls;
  unsigned short http_port = 0;
  kv::sync::SyncerOptions options;
};

// Reads the command line into `c`; an exit code when the process ends here (help, a bad flag: 2).
std::optional<int> parse(int argc, char** argv, Config& c) {
  auto& [nodes, host, http_tls, http_port, options] = c;
  std::string data, level, log_format, durability, secret_file, tls_cert, tls_key, tls_ca;
  auto sync_delay_ms = static_cast<unsigned>(options.sync_delay.count());
  po::options_description opts(
      "kvsync: the kvstore sync daemon\n\n"
      "Usage: kvsync --nodes 127.0.0.1:7001,127.0.0.1:7002 --data DIR [--http-port 7100]\n"
      "       kvsync forget-node NAME --data DIR\n\n"
      "Serves the viewer page at http://HOST:HTTP-PORT/ and /metrics, /healthz.\n\nOptions");
  // clang-format off
  opts.add_options()
    ("help,h", "show this help")
    ("nodes", po::value(&nodes)->default_value("127.0.0.1:7001,127.0.0.1:7002"),
     "comma-separated binary-protocol addresses of the nodes (any number)")
    ("data", po::value(&data)->required(), "the syncer's data directory (its log)")
    ("restored-log", po::bool_switch(&options.restored_log),
     "the data directory was put back from a copy: stamp nothing until every configured node "
     "has reported, and rebuild the log from them if it is older than what they hold")
    ("forget-node", po::value(&options.forget)->composing(),
     "forget this node first (repeatable): it was removed for good, or its data directory was "
     "wiped; if it comes back it is resynced from scratch. Also: kvsync forget-node NAME --data "
     "DIR")
    ("durability", po::value(&durability)->default_value("sync"),
     "sync: fsync the stamps (on a thread of its own, grouped: --sync-delay) before a node hears "
     "that its own changes are in the log; the other nodes get each stamp at once; async: leave "
     "it to the OS")
    ("sync-delay", po::value(&sync_delay_ms)->default_value(sync_delay_ms),
     "ms a stamp may wait for more before the fsync that lets its origin count it synced (the "
     "other nodes get it at once; stamps from a second node end the wait; --durability sync; "
     "0: none)")
    ("fetch-limit", po::value(&options.fetch_limit)->default_value(options.fetch_limit),
     "changes fetched from a node in one request")
    ("batch-limit", po::value(&options.batch_limit)->default_value(options.batch_limit),
     "changes sent to a node in one request")
    ("host", po::value(&host)->default_value("127.0.0.1"), "address the HTTP port listens on")
    ("secret-file", po::value(&secret_file),
     "file holding the cluster secret (mode 0600) the nodes require; KV_SECRET works too. "
     "The viewer's WebSocket then needs it as well")
    ("tls-ca", po::value(&tls_ca),
     "PEM file of the CA that signed the nodes' certificates: connect to the nodes over TLS "
     "(binary protocol and wss), verifying each certificate and the address it names")
    ("tls-cert", po::value(&tls_cert),
     "PEM certificate chain for the HTTP port, which then serves only https and wss (the "
     "viewer at https://...). Needs --tls-key")
    ("tls-key", po::value(&tls_key), "PEM private key of --tls-cert")
    ("http-port", po::value(&http_port)->default_value(7100),
     "HTTP port for the viewer, its WebSocket, /nodes, /metrics and /healthz (0: any free port)")
    ("log-level", po::value(&level)->default_value("info"), "trace|debug|info|warning|error")
    ("log-format", po::value(&log_format)->default_value("text"),
     "text, or json (one object per line, for log shippers)");
  // clang-format on
  po::variables_map vm;
  if (auto code = kv::command_line::parse(argc, argv, opts, vm, "kvsync", [&] {
        options.nodes = kv::command_line::node_list(nodes);
        options.sync_writes = kv::command_line::sync_durability(durability);
        options.sync_delay = std::chrono::milliseconds(sync_delay_ms);
        if (options.fetch_limit == 0 || options.batch_limit == 0 ||
            options.fetch_limit > kv::proto::kMaxFetchLimit) {
          throw std::invalid_argument("--fetch-limit must be 1 to " +
                                      std::to_string(kv::proto::kMaxFetchLimit) +
                                      " and --batch-limit positive");
        }
        options.data = data;
        options.secret = kv::secret::load(secret_file);
        if (!tls_ca.empty()) options.tls = kv::tls::client_context(tls_ca);
        http_tls = kv::tls::server_from_flags(tls_cert, tls_key);
        kv::log::init(level, log_format);
      })) {
    return *code;
  }
  return std::nullopt;
}

// Runs the syncer until SIGTERM or Ctrl-C; throws what makes it unable to start.
int run(Config& c) {
  auto& [nodes, host, http_tls, http_port, options] = c;
  const auto address = asio::ip::make_address(host);
  if (options.secret.empty() && !address.is_loopback()) {
    std::cerr << "kvsync: listening on " << host
              << " needs a cluster secret (--secret-file or KV_SECRET): its /ws streams every "
                 "change to whoever connects"
              << std::endl;
    return 2;
  }
  {
    // Declared before the io_context: the sessions it destroys on exit still refer to them.
    kv::web::Hub hub;
    kv::metrics::Registry metrics;
    asio::io_context io(1);
    kv::sync::Syncer syncer(io.get_executor(), options);
    syncer.register_metrics(metrics);
    metrics.gauge("kvsync_ws_subscribers", "Viewer WebSocket subscribers", {},
                  [&hub] { return static_cast<double>(hub.subscribers()); });
    metrics.gauge("kvsync_ws_queued_messages", "Events queued for viewers, all queues", {},
                  [&hub] { return static_cast<double>(hub.queued()); });
    syncer.set_listener(
        [&hub](std::string json) {
          hub.publish(std::make_shared<const std::string>(std::move(json)));
        },
        [&hub] { return hub.subscribers() > 0; });
    asio::ip::tcp::acceptor web(io, {address, http_port});
    const auto rethrow = [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    };
    kv::net::Stopper stopper(io.get_executor());
    asio::co_spawn(
        io,
        kv::web::serve(web, hub, kv::sync::syncer_routes(syncer, metrics, options.secret), {},
                       http_tls, &stopper),
        rethrow);
    // The viewer works from the start; "ready" follows once every node has been reached.
    std::cout << "kvsync serving http=" << web.local_endpoint() << std::endl;
    // SIGTERM or Ctrl-C: no new connections, the node links closed, every viewer closed with a
    // reason, every HTTP connection cancelled; run() returns once all have ended.
    kv::net::Shutdown shutdown(io, hub, stopper);
    auto links_ended = shutdown.also_wait();
    asio::co_spawn(io, syncer.run([&] {
      std::cout << "kvsync ready nodes=" << nodes << " http=" << web.local_endpoint() << std::endl;
    }),
                   [&](std::exception_ptr e) {
                     links_ended();
                     if (e) std::rethrow_exception(e);
                   });
    shutdown.on_signal(
        [&] {
          boost::system::error_code ignored;
          web.close(ignored);
          syncer.stop();  // a connect in progress ends at its deadline
        },
        "kvsync is shutting down", options.call_timeout + std::chrono::seconds(1));
    io.run();
    KV_LOG(info) << "syncer stopped";
    return 0;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "forget-node") return forget_node(argc, argv);
  Config config;
  if (auto code = parse(argc, argv, config)) return *code;
  try {
    return run(config);
  } catch (const std::exception& e) {  // a StoreError (an unusable data directory) among them
    std::cerr << "kvsync: " << kv::describe(e) << std::endl;
    return 1;
  }
}
