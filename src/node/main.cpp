// kvnode: a data node. Serves the binary protocol and WebSocket notifications over one
// io_context thread; see docs/protocol.md and docs/storage.md.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/program_options.hpp>

#include <chrono>
#include <iostream>
#include <optional>

#include "core/command_line.hpp"
#include "core/describe.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/notification.hpp"
#include "core/secret.hpp"
#include "net/listener.hpp"
#include "net/shutdown.hpp"
#include "net/tls.hpp"
#include "net/web_server.hpp"
#include "node/binary_server.hpp"
#include "node/http_api.hpp"
#include "node/store.hpp"

namespace asio = boost::asio;
namespace po = boost::program_options;
using asio::ip::tcp;

namespace {
void register_gauges(kv::metrics::Registry& m, const kv::node::Store& store,
                     const kv::web::Hub& hub) {
  const auto status = [&store](auto field) {
    return [&store, field] { return static_cast<double>(store.status().*field); };
  };
  m.gauge("kv_version", "The store-wide version counter", {}, status(&kv::NodeStatus::version));
  m.gauge("kv_change_seq", "The node-local change sequence", {}, status(&kv::NodeStatus::seq));
  m.gauge("kv_applied_stamp", "The highest syncer stamp applied here", {},
          status(&kv::NodeStatus::applied_stamp));
  m.gauge("kv_items", "Live items", {}, status(&kv::NodeStatus::items));
  m.gauge("kv_tombstones", "Deleted items kept until every node has seen the delete", {},
          status(&kv::NodeStatus::tombstones));
  m.gauge("kv_unsynced_changes", "Local changes not yet in the syncer's log", {},
          status(&kv::NodeStatus::unsynced));
  m.gauge("kv_ws_subscribers", "WebSocket subscribers", {},
          [&hub] { return static_cast<double>(hub.subscribers()); });
  m.gauge("kv_ws_queued_messages", "Notifications queued for subscribers, all queues", {},
          [&hub] { return static_cast<double>(hub.queued()); });
  m.gauge("kv_ws_dropped_subscribers", "Subscribers dropped because their queue overflowed", {},
          [&hub] { return static_cast<double>(hub.dropped()); });
  m.gauge("kv_storage_degraded", "1 while the database cannot be written", {},
          [&store] { return store.degraded() ? 1.0 : 0.0; });
}

// What the command line says the node is.
struct Config {
  std::string name, data, host, secret, tls_cert;
  unsigned short port = 0, http_port = 0;
  bool sync = true;
  bool standalone = false;
  // Nothing waits on an APPLY's fsync but the syncer's window (64 in flight) and the session
  // marks an APPLY of news brings after it: 5 ms lets a stream of small APPLYs share one
  // (docs/sync.md, "The node's fsync").
  unsigned apply_sync_delay_ms = 5;
  kv::node::BinaryOptions binary_options;
  kv::web::Limits http_limits;
};

// Reads the command line into `c`; an exit code when the process ends here (help, a bad flag: 2).
std::optional<int> parse(int argc, char** argv, Config& c) {
  std::string level, log_format, durability, secret_file, tls_key;
  auto& [name, data, host, secret, tls_cert, port, http_port, sync, standalone, apply_sync_delay_ms,
         binary_options, http_limits] = c;
  // Every default below is the options struct's own: one place to change it.
  unsigned idle_timeout_s = static_cast<unsigned>(
      std::chrono::duration_cast<std::chrono::seconds>(binary_options.idle_timeout).count());
  unsigned frame_timeout_ms = static_cast<unsigned>(binary_options.frame_timeout.count());
  po::options_description opts(
      "kvnode: a kvstore data node\n\n"
      "Usage: kvnode --name a --data DIR [--port 7001] [--http-port 7101]\n\nOptions");
  // clang-format off
  opts.add_options()
    ("help,h", "show this help")
    ("name", po::value(&name)->default_value("a"),
     "node name, 1-8 lowercase letters; the suffix of the item ids this node creates")
    ("data", po::value(&data)->required(), "data directory (created when missing)")
    ("host", po::value(&host)->default_value("127.0.0.1"), "address to listen on")
    ("port", po::value(&port)->default_value(0), "binary protocol port (0: any free port)")
    ("http-port", po::value(&http_port)->default_value(0),
     "HTTP port for /ws notifications, /items, /status, /metrics and /healthz (0: any free "
     "port)")
    ("durability", po::value(&durability)->default_value("sync"),
     "sync: acknowledge a change once it is fsynced (group commit); async: once it is written "
     "to the OS, which survives a crash of kvnode but not of the machine")
    ("standalone", "take writes without waiting for a syncer after start (a node that runs "
     "without kvsync, as in the seed's Step 1)")
    ("secret-file", po::value(&secret_file),
     "file holding the cluster secret (mode 0600), needed for FETCH, APPLY, /ws and /items; "
     "KV_SECRET works too. Without one the node serves those to anyone who can reach it, and "
     "so refuses to listen beyond loopback")
    ("client-auth", "require the cluster secret for every client request as well")
    ("tls-cert", po::value(&tls_cert),
     "PEM certificate chain (this node's certificate first): the binary port and the HTTP port "
     "then speak only TLS (https, wss). Needs --tls-key")
    ("tls-key", po::value(&tls_key), "PEM private key of --tls-cert")
    ("max-connections", po::value(&binary_options.max_connections)->default_value(binary_options.max_connections),
     "binary-protocol connections served at once; more are closed at once")
    ("max-pipeline", po::value(&binary_options.max_pipeline)->default_value(binary_options.max_pipeline),
     "requests of one connection answered per round; more wait for the next")
    ("idle-timeout", po::value(&idle_timeout_s)->default_value(idle_timeout_s),
     "seconds a binary connection may stay silent")
    ("frame-timeout", po::value(&frame_timeout_ms)->default_value(frame_timeout_ms),
     "ms a frame may take to arrive once it has begun (slow senders are cut off)")
    ("http-max-connections", po::value(&http_limits.max_connections)->default_value(http_limits.max_connections),
     "HTTP/WebSocket connections served at once")
    ("subscriber-queue", po::value(&http_limits.queue_limit)->default_value(http_limits.queue_limit),
     "notifications queued per WebSocket subscriber before it is disconnected")
    ("apply-sync-delay", po::value(&apply_sync_delay_ms)->default_value(apply_sync_delay_ms),
     "ms a group of the syncer's changes alone may wait for more before its fsync (a client's "
     "write ends the wait; 0: none)")
    ("log-level", po::value(&level)->default_value("info"), "trace|debug|info|warning|error")
    ("log-format", po::value(&log_format)->default_value("text"),
     "text, or json (one object per line, for log shippers)");
  // clang-format on
  po::variables_map vm;
  if (auto code = kv::command_line::parse(argc, argv, opts, vm, "kvnode", [&] {
        sync = kv::command_line::sync_durability(durability);
        binary_options.tls = kv::tls::server_from_flags(tls_cert, tls_key);
        kv::log::init(level, log_format);
      })) {
    return *code;
  }
  standalone = vm.count("standalone") > 0;
  try {
    secret = kv::secret::load(secret_file);
    const auto address = asio::ip::make_address(host);
    if (secret.empty() && !address.is_loopback()) {
      std::cerr << "kvnode: listening on " << host
                << " needs a cluster secret (--secret-file or KV_SECRET): without one anyone "
                   "who can reach the node could fetch and overwrite its items"
                << std::endl;
      return 2;
    }
  } catch (const std::exception& e) {
    std::cerr << "kvnode: " << kv::describe(e) << std::endl;
    return 2;
  }
  binary_options.secret = secret;
  binary_options.client_auth = vm.count("client-auth") > 0;
  binary_options.idle_timeout = std::chrono::seconds(idle_timeout_s);
  binary_options.frame_timeout = std::chrono::milliseconds(frame_timeout_ms);
  if (binary_options.client_auth && secret.empty()) {
    std::cerr << "kvnode: --client-auth needs a cluster secret (--secret-file or KV_SECRET)"
              << std::endl;
    return 2;
  }
  return std::nullopt;
}

// Every durable change goes to the node's WebSocket subscribers, as a notification.
void publish_changes(kv::node::Store& store, kv::web::Hub& hub, kv::metrics::Registry& metrics,
                     const std::string& name) {
  auto& notified = metrics.counter("kv_notifications_total",
                                   "Change notifications published to WebSocket subscribers");
  store.set_observer([&hub, &notified, name](const kv::node::StoreEvent& e) {
    const bool local = e.kind == kv::node::StoreEvent::Kind::kLocal;
    const unsigned topic = local ? kv::node::kTopicLocal : kv::node::kTopicSynced;
    // A catch-up of a million stamped changes with nobody watching them builds no JSON.
    if (!hub.wants(topic)) return;
    kv::Notification n;
    n.kind = local ? kv::Notification::Kind::kLocal : kv::Notification::Kind::kSynced;
    n.node = name;
    n.op = e.op;
    n.item = e.item;
    n.seq = e.seq;
    n.stamp = e.stamp;
    n.origin = e.origin;
    KV_LOG(debug) << to_string(n.kind) << " " << e.op << " " << e.item.id << " v" << e.item.version;
    notified.inc();
    hub.publish(std::make_shared<const std::string>(kv::to_json(n)), topic);
  });
}

// Runs the node until SIGTERM or Ctrl-C; throws what makes it unable to start.
int run(Config& c) {
  auto& [name, data, host, secret, tls_cert, port, http_port, sync, standalone, apply_sync_delay_ms,
         binary_options, http_limits] = c;
  {
    // Declared before the store, whose observer publishes to them even while it shuts down, and
    // before the io_context, whose sessions still refer to them when it destroys them.
    kv::web::Hub hub;
    kv::metrics::Registry metrics;
    kv::node::StoreOptions store_options;
    store_options.dir = data;
    store_options.name = name;
    store_options.sync_writes = sync;
    store_options.background_commit = true;
    store_options.apply_sync_delay = std::chrono::milliseconds(apply_sync_delay_ms);
    store_options.await_syncer = !standalone;
    const auto opening = std::chrono::steady_clock::now();
    kv::node::Store store(store_options);
    const auto open_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - opening)
                             .count();
    asio::io_context io(1);
    kv::node::CommitWatch commits(io.get_executor(), store);
    // The writer thread reports finished groups; the I/O thread processes them and wakes the
    // sessions waiting to answer.
    store.set_commit_wakeup([&] {
      asio::post(io, [&] {
        store.poll_commits();
        commits.notify_all();
      });
    });
    auto address = asio::ip::make_address(host);
    tcp::acceptor binary(io, {address, port});
    tcp::acceptor web(io, {address, http_port});
    binary_options.http_port = web.local_endpoint().port();
    binary_options.metrics = &metrics;
    binary_options.subscribers = [&hub] { return hub.subscribers(); };
    register_gauges(metrics, store, hub);
    publish_changes(store, hub, metrics, name);

    auto on_done = [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    };
    kv::net::Stopper stopper(io.get_executor());
    binary_options.stopper = &stopper;
    asio::co_spawn(io, kv::node::serve_binary(binary, store, commits, binary_options), on_done);
    asio::co_spawn(
        io,
        kv::web::serve(web, hub, kv::node::node_routes(store, hub, metrics, name, secret),
                       http_limits, binary_options.tls, &stopper),
        on_done);

    // A store that failed a write and could not reopen (a full disk) retries on its own.
    asio::steady_timer ticker(io);
    std::function<void()> tick = [&] {
      ticker.expires_after(std::chrono::seconds(1));
      ticker.async_wait([&](const boost::system::error_code& ec) {
        if (ec) return;
        store.tick();
        tick();
      });
    };
    tick();

    // SIGTERM or Ctrl-C: no new connections, every WebSocket subscriber closed with a reason,
    // every connection cancelled; run() returns once all of them have ended.
    kv::net::Shutdown shutdown(io, hub, stopper);
    shutdown.on_signal(
        [&] {
          boost::system::error_code ignored;
          binary.close(ignored);
          web.close(ignored);
          ticker.cancel();
        },
        "kvnode " + name + " is shutting down");

    const auto s = store.status();
    if (secret.empty()) {
      KV_LOG(warning) << "no cluster secret: anyone who can reach " << binary.local_endpoint()
                      << " may fetch and apply changes (scripts/cluster.sh sets one up)";
    }
    if (binary_options.tls) {
      KV_LOG(info) << "TLS on the binary and HTTP ports, certificate " << tls_cert;
    }
    KV_LOG(info) << "node " << name << " opened " << data << ": version " << s.version << ", "
                 << s.items << " items, " << s.unsynced << " unsynced changes, in " << open_ms
                 << " ms";
    std::cout << "kvnode " << name << " ready binary=" << binary.local_endpoint()
              << " http=" << web.local_endpoint() << std::endl;
    io.run();
    store.set_commit_wakeup(nullptr);
    store.flush();  // what was submitted reaches the disk before we exit
    KV_LOG(info) << "node " << name << " stopped";
    return 0;
  }
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  if (auto code = parse(argc, argv, config)) return *code;
  try {
    return run(config);
  } catch (const std::exception& e) {  // a StoreError (an unusable data directory) among them
    std::cerr << "kvnode: " << kv::describe(e) << std::endl;
    return 1;
  }
}
