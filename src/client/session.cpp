#include "client/session.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <iomanip>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "core/address.hpp"
#include "core/describe.hpp"
#include "core/item_json.hpp"
#include "core/notification.hpp"
#include "net/node_client.hpp"
#include "net/ws_client.hpp"

namespace kv::cli {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {
// Connecting failed: nothing was sent, so the command may go to another node.
struct NotReached : boost::system::system_error {
  using boost::system::system_error::system_error;
};

std::string now_hms() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

// ANSI colour for people at a terminal; plain text otherwise.
struct Style {
  bool on = false;
  std::string paint(const char* code, const std::string& text) const {
    return on ? std::string("\033[") + code + "m" + text + "\033[0m" : text;
  }
  std::string error(const std::string& t) const { return paint("1;31", t); }
  std::string note(const std::string& t) const { return paint("33", t); }
  std::string good(const std::string& t) const { return paint("32", t); }
  std::string dim(const std::string& t) const { return paint("2", t); }
  std::string id(const std::string& t) const { return paint("1;36", t); }
};

std::string show(const Style& st, const Item& it) {
  std::ostringstream s;
  s << it;
  std::string text = s.str();
  // Colour the id ("ID:1a, Version:1 ...").
  const auto at = text.find(it.id);
  if (st.on && at != std::string::npos) {
    text = text.substr(0, at) + st.id(it.id) + text.substr(at + it.id.size());
  }
  return text;
}

// What to do next, after the node's own sentence.
std::string hint(proto::ErrorCode code) {
  switch (code) {
    case proto::ErrorCode::kNotFound:
      return "; `list` shows the ids";
    case proto::ErrorCode::kDeleted:
      return "; deletes are final, create a new item instead";
    case proto::ErrorCode::kStorage:
      return "; the node keeps what it had, try again once its disk has room";
    default:
      return "";
  }
}
}  // namespace

struct Session::Impl {
  SessionOptions options;
  asio::io_context io{1};
  std::vector<std::unique_ptr<NodeClient>> clients;
  std::vector<std::chrono::steady_clock::time_point> last_used;
  std::size_t next = 0;  // round-robin position
  std::mt19937 rng{std::random_device{}()};
  std::vector<std::string> ids;
  Style style;
  std::vector<std::string> names;            // each node's name, learned on connecting
  std::map<std::string, SessionMark> token;  // read-your-writes: our writes, by node name
  std::string behind;                        // set by a read whose node lacked our writes

  // Runs `coro` to completion on our io_context. The connections' readers stay pending in
  // it between commands, so run handlers until this one is done rather than until idle.
  template <class T>
  T block_on(asio::awaitable<T> coro) {
    auto fut = asio::co_spawn(io, std::move(coro), asio::use_future);
    io.restart();
    while (fut.wait_for(std::chrono::seconds(0)) != std::future_status::ready) io.run_one();
    return fut.get();
  }

  std::size_t first_node() {
    const std::string& r = options.route;
    if (r == "rr") return next++ % clients.size();
    if (r == "random")
      return std::uniform_int_distribution<std::size_t>(0, clients.size() - 1)(rng);
    return std::stoul(r) - 1;
  }

  std::string label(std::size_t i) const {
    return "node " + std::to_string(i + 1) + " " + options.nodes[i];
  }

  asio::awaitable<proto::Response> call(std::size_t i, proto::Request req) {
    // A WAIT may be held for the session wait before its answer is due.
    const auto deadline = options.timeout + (std::holds_alternative<proto::msg::Wait>(req)
                                                 ? options.session_wait
                                                 : std::chrono::milliseconds(0));
    auto& c = *clients[i];
    const auto now = std::chrono::steady_clock::now();
    if (c.is_open() && now - last_used[i] > std::chrono::seconds(1)) {
      // A connection left from an earlier command may have died with a restarted node: check
      // it with a PING, so the request itself is sent at most once.
      try {
        co_await c.call(proto::msg::Ping{}, options.timeout);
      } catch (const boost::system::system_error&) {
        c.close();
      }
    }
    if (!c.is_open()) {
      const auto [host, port] = parse_host_port(options.nodes[i]);
      try {
        co_await c.connect(host, port, options.timeout);
      } catch (const boost::system::system_error& e) {
        throw NotReached(e.code());
      }
      // The session token names nodes, so learn this one's name. The command is not sent yet:
      // a failure here (a plain connection to a TLS port) leaves it free to go elsewhere.
      proto::Response st;
      try {
        st = co_await c.call(proto::msg::Status{}, options.timeout);
      } catch (const boost::system::system_error& e) {
        throw NotReached(e.code());
      }
      if (auto* r = std::get_if<proto::msg::StatusReply>(&st)) names[i] = r->status.name;
    }
    last_used[i] = now;
    co_return co_await c.call(std::move(req), deadline);
  }

  // Read-your-writes: before a read, wait (bounded) until node i has every write this session
  // made; if it does not in time, remember why, and the read shows what the node has.
  asio::awaitable<void> wait_for_session(std::size_t i) {
    if (!options.session || token.empty()) co_return;
    proto::msg::Wait w;
    w.timeout_ms = static_cast<std::uint64_t>(options.session_wait.count());
    for (const auto& [node, mark] : token) w.want.push_back(mark);
    auto resp = co_await call(i, w);
    auto* r = std::get_if<proto::msg::Waited>(&resp);
    if (!r || r->caught_up) co_return;
    std::string lacking;
    for (std::size_t k = 0; k < w.want.size() && k < r->have.size(); ++k) {
      const auto& want = w.want[k];
      const auto& have = r->have[k];
      if (have.incarnation == want.incarnation && have.seq >= want.seq) continue;
      if (!lacking.empty()) lacking += ", ";
      lacking += "on " + want.node + " up to change " + std::to_string(want.seq) + " (it has " +
                 (have.incarnation == want.incarnation ? std::to_string(have.seq) : "none") + ")";
      // Another life of that node's data directory: the write cannot arrive; stop waiting.
      // The node speaking of itself in another life of its data directory: the write cannot
      // arrive there any more (another node's stale mark, by contrast, will be corrected).
      if (want.node == names[i] && have.incarnation != want.incarnation) token.erase(want.node);
    }
    // A write on a node whose data directory was wiped since cannot arrive anywhere: node i
    // cannot tell (it may not have heard of the node's new life yet), but the node itself can.
    std::string gone;
    for (const auto& want : w.want) {
      if (want.node == names[i] || !token.count(want.node)) continue;
      for (std::size_t j = 0; j < clients.size(); ++j) {
        if (j == i || (!names[j].empty() && names[j] != want.node)) continue;
        try {
          const auto st = co_await call(j, proto::msg::Status{});
          const auto* s = std::get_if<proto::msg::StatusReply>(&st);
          if (!s || s->status.name != want.node) continue;
          if (s->status.incarnation != want.incarnation) {
            token.erase(want.node);
            gone += (gone.empty() ? "" : ", ") + want.node;
          }
          break;
        } catch (const std::exception&) {
          continue;  // unreachable: keep the entry, it may still arrive
        }
      }
    }
    if (!gone.empty()) {
      lacking += "; node " + gone + " has a new data directory since your write there, which " +
                 "is gone: no longer waited for";
    }
    behind = label(i) + " has not applied your writes " + lacking + " after " +
             std::to_string(options.session_wait.count()) +
             " ms; this shows what it has. Is kvsync running? `nodes` shows how far behind "
             "each node is; `session off` stops waiting";
  }

  void remember_write(std::size_t i, const proto::msg::ItemReply& r) {
    if (!options.session || r.seq == 0 || names[i].empty()) return;
    auto& m = token[names[i]];
    if (m.incarnation != r.incarnation || m.seq < r.seq) m = {names[i], r.incarnation, r.seq};
  }

  // A LIST reply gathers every page from the same node.
  asio::awaitable<proto::Response> request(std::size_t i, proto::Request req) {
    auto* list = std::get_if<proto::msg::List>(&req);
    if (list || std::holds_alternative<proto::msg::Get>(req)) co_await wait_for_session(i);
    if (!list) co_return co_await call(i, std::move(req));
    proto::msg::ItemsReply all;
    proto::msg::List page = *list;
    for (;;) {
      auto resp = co_await call(i, page);
      auto* r = std::get_if<proto::msg::ItemsReply>(&resp);
      if (!r) co_return resp;
      all.items.insert(all.items.end(), std::make_move_iterator(r->items.begin()),
                       std::make_move_iterator(r->items.end()));
      if (r->next.empty()) co_return all;
      page.after = r->next;
    }
  }

  void remember(const std::vector<Item>& items) {
    for (const auto& it : items) {
      if (std::find(ids.begin(), ids.end(), it.id) == ids.end()) ids.push_back(it.id);
    }
  }

  bool run_routed(proto::Request req, const char* verb, std::ostream& out, std::ostream& err);
  bool run_nodes(std::ostream& out);
  bool run_watch(const cmd::Watch& w, std::ostream& out, std::ostream& err);
  void print_error(std::ostream& out, std::ostream& err, const std::string& node,
                   const std::string& message) {
    if (options.json) {
      out << json::serialize(json::object{{"ok", false}, {"node", node}, {"error", message}})
          << std::endl;
    } else {
      err << style.error("error:") << " " << message << std::endl;
    }
  }
};

Session::Session(SessionOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  for (std::size_t i = 0; i < impl_->options.nodes.size(); ++i) {
    impl_->clients.push_back(std::make_unique<NodeClient>(impl_->io.get_executor()));
    impl_->clients.back()->set_secret(impl_->options.secret);
    impl_->clients.back()->set_tls(impl_->options.tls);
    impl_->last_used.emplace_back();
    impl_->names.emplace_back();
  }
  impl_->style.on = impl_->options.color && !impl_->options.json;
  if (auto e = set_route(impl_->options.route); !e.empty()) throw std::invalid_argument(e);
}

Session::~Session() = default;

const std::vector<std::string>& Session::known_ids() const {
  return impl_->ids;
}

namespace {
std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}
}  // namespace

std::string Session::save_token() const {
  std::string out = "kvcli-session 1 " + joined(impl_->options.nodes) + "\n";
  for (const auto& [node, m] : impl_->token) {
    out += m.node + " " + std::to_string(m.incarnation) + " " + std::to_string(m.seq) + "\n";
  }
  return out;
}

void Session::load_token(const std::string& text) {
  std::istringstream in(text);
  std::string magic, version, nodes;
  if (!(in >> magic >> version >> nodes) || magic != "kvcli-session" || version != "1" ||
      nodes != joined(impl_->options.nodes)) {
    return;  // another cluster's, or nothing
  }
  SessionMark m;
  while (in >> m.node >> m.incarnation >> m.seq) impl_->token[m.node] = m;
}

std::size_t Session::rr_position() const {
  return impl_->next % impl_->clients.size();
}
void Session::set_rr_position(std::size_t next) {
  impl_->next = next % impl_->clients.size();
}

std::string Session::set_route(const std::string& mode) {
  if (mode == "rr" || mode == "random") {
    impl_->options.route = mode;
    return "";
  }
  std::size_t n = 0;
  auto [p, ec] = std::from_chars(mode.data(), mode.data() + mode.size(), n);
  if (ec != std::errc{} || p != mode.data() + mode.size() || n == 0 || n > impl_->clients.size()) {
    return "route must be rr, random or a node number from 1 to " +
           std::to_string(impl_->clients.size());
  }
  impl_->options.route = mode;
  return "";
}

bool Session::Impl::run_routed(proto::Request req, const char* verb, std::ostream& out,
                               std::ostream& err) {
  const std::size_t first = first_node();
  json::array skipped;
  std::string tls_refusal;  // why a TLS connection failed, if one did
  for (std::size_t k = 0; k < clients.size(); ++k) {
    const std::size_t i = (first + k) % clients.size();
    proto::Response resp;
    behind.clear();
    try {
      resp = block_on(request(i, req));
    } catch (const NotReached& e) {
      // Nothing was sent: another node may serve the command.
      clients[i]->close();
      const bool last = k + 1 == clients.size();
      if (tls::is_tls_error(e.code())) tls_refusal = e.code().message();
      if (!options.json) {
        err << label(i)
            << (tls::is_tls_error(e.code()) ? ": " + e.code().message()
                                            : " is down (" + e.code().message() + ")")
            << (last ? "" : "; trying " + label((i + 1) % clients.size())) << std::endl;
      }
      skipped.push_back(json::string(options.nodes[i]));
      continue;
    } catch (const boost::system::system_error& e) {
      clients[i]->close();
      const bool read_only = std::holds_alternative<proto::msg::List>(req) ||
                             std::holds_alternative<proto::msg::Get>(req);
      if (read_only && k + 1 < clients.size()) {
        if (!options.json) {
          err << label(i) << " did not answer (" << e.code().message() << "); trying "
              << label((i + 1) % clients.size()) << std::endl;
        }
        skipped.push_back(json::string(options.nodes[i]));
        continue;
      }
      // The request was sent: trying another node could make the change twice.
      print_error(out, err, options.nodes[i],
                  label(i) + " did not answer (" + e.code().message() +
                      "); the change may or may not have been made, check with get or list");
      return false;
    }
    const std::string& node = options.nodes[i];
    if (auto* e = std::get_if<proto::msg::Error>(&resp);
        e && e->code == proto::ErrorCode::kUnavailable && k + 1 < clients.size()) {
      // The node did nothing (it is starting or shutting down): another may serve it.
      if (!options.json) {
        err << label(i) << " is not taking writes yet; trying " << label((i + 1) % clients.size())
            << std::endl;
      }
      skipped.push_back(json::string(node));
      continue;
    }
    if (auto* e = std::get_if<proto::msg::Error>(&resp)) {
      print_error(out, err, node, e->message + hint(e->code));
      return false;
    }
    std::vector<Item> items;
    if (auto* r = std::get_if<proto::msg::ItemReply>(&resp)) {
      items.push_back(r->item);
      remember_write(i, *r);
    }
    if (auto* r = std::get_if<proto::msg::ItemsReply>(&resp)) items = r->items;
    remember(items);
    if (options.json) {
      json::array arr;
      for (const auto& it : items) arr.push_back(json::value_from(it));
      json::object o{{"ok", true}, {"node", node}, {"items", std::move(arr)}};
      if (!skipped.empty()) o["skipped"] = skipped;
      if (!behind.empty()) {
        o["behind"] = true;
        o["note"] = behind;
      }
      out << json::serialize(o) << std::endl;
      return true;
    }
    if (!behind.empty()) err << style.note("note:") << " " << behind << std::endl;
    if (std::holds_alternative<proto::msg::ItemsReply>(resp)) {
      for (const auto& it : items) out << show(style, it) << "\n";
      out << style.dim("(" + std::to_string(items.size()) +
                       (items.size() == 1 ? " item" : " items") + " from " + label(i) + ")")
          << std::endl;
    } else {
      out << (*verb ? style.good(verb) + " " : "") << show(style, items.at(0)) << "  "
          << style.dim("(" + label(i) + ")") << std::endl;
    }
    return true;
  }
  if (!tls_refusal.empty()) {
    print_error(out, err, "", "no node could be reached: " + tls_refusal);
    return false;
  }
  print_error(out, err, "", "no node answered; is the cluster running? (scripts/cluster.sh)");
  return false;
}

namespace {

std::string short_digest(std::uint64_t d) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(d));
  return std::string(buf, 8);
}

// Whether the reachable nodes hold the same items, from their digests (docs/sync.md,
// "Digests"): comparable only between nodes at the same stamp with nothing unsynced.
struct Agreement {
  std::string state;  // agree | diverged | unknown
  std::string detail;
};

Agreement agreement_of(const std::vector<NodeStatus>& up) {
  std::map<std::uint64_t, std::vector<const NodeStatus*>> by_stamp;
  std::size_t comparable = 0;
  for (const auto& s : up) {
    if (s.unsynced != 0) continue;
    by_stamp[s.digest_stamp].push_back(&s);
    ++comparable;
  }
  for (const auto& [stamp, group] : by_stamp) {
    for (const auto* s : group) {
      if (s->digest == group.front()->digest) continue;
      return {"diverged", "nodes " + group.front()->name + " and " + s->name +
                              " hold different items at stamp " + std::to_string(stamp) +
                              " (digests " + short_digest(group.front()->digest) + " and " +
                              short_digest(s->digest) +
                              "); kvsync resyncs a node that differs from its log: see its log"};
    }
  }
  if (up.size() >= 2 && comparable == up.size() && by_stamp.size() == 1) {
    return {"agree", "the " + std::to_string(up.size()) +
                         " nodes up hold the same items at stamp " +
                         std::to_string(by_stamp.begin()->first) + " (digest " +
                         short_digest(up.front().digest) + ")"};
  }
  if (up.size() < 2) return {"unknown", "fewer than two nodes up"};
  return {"unknown", "not comparable yet: nodes at different stamps or with unsynced changes"};
}

}  // namespace

bool Session::Impl::run_nodes(std::ostream& out) {
  json::array arr;
  bool any = false;
  std::vector<NodeStatus> up;
  for (std::size_t i = 0; i < clients.size(); ++i) {
    json::object o{{"index", i + 1}, {"address", options.nodes[i]}};
    try {
      auto resp = block_on(call(i, proto::msg::Status{}));
      if (auto* e = std::get_if<proto::msg::Error>(&resp)) throw std::runtime_error(e->message);
      const auto& s = std::get<proto::msg::StatusReply>(resp).status;
      o["reachable"] = true;
      o["name"] = s.name;
      o["version"] = s.version;
      o["seq"] = s.seq;
      o["applied_stamp"] = s.applied_stamp;
      o["items"] = s.items;
      o["unsynced"] = s.unsynced;
      o["tombstones"] = s.tombstones;
      o["http_port"] = s.http_port;
      o["syncer_stamp"] = s.syncer_stamp;
      o["behind"] = s.syncer_stamp - std::min(s.syncer_stamp, s.applied_stamp);
      o["subscribers"] = s.subscribers;
      o["digest"] = s.digest;
      o["digest_stamp"] = s.digest_stamp;
      up.push_back(s);
      any = true;
      if (!options.json) {
        const auto behind_by = s.syncer_stamp - std::min(s.syncer_stamp, s.applied_stamp);
        out << label(i) << "  " << style.good("up") << "    name " << s.name << "  version "
            << s.version << "  items " << s.items << "  stamp " << s.applied_stamp << "/"
            << s.syncer_stamp << " ("
            << (behind_by == 0 ? std::string("in step")
                               : style.note(std::to_string(behind_by) + " behind"))
            << ")  unsynced " << s.unsynced << "  digest " << short_digest(s.digest)
            << "  subscribers " << s.subscribers << "\n";
      }
    } catch (const std::exception& e) {
      clients[i]->close();
      o["reachable"] = false;
      o["error"] = describe(e);
      if (!options.json)
        out << label(i) << "  " << style.error("DOWN") << "  " << describe(e) << "\n";
    }
    arr.push_back(std::move(o));
  }
  const Agreement agreement = agreement_of(up);
  if (options.json) {
    out << json::serialize(json::object{
               {"ok", any},
               {"nodes", std::move(arr)},
               {"agreement", {{"state", agreement.state}, {"detail", agreement.detail}}}})
        << std::endl;
  } else {
    const std::string head = agreement.state == "agree"      ? style.good("agree")
                             : agreement.state == "diverged" ? style.error("DIVERGED")
                                                             : style.dim("agreement unknown");
    out << head << ": " << agreement.detail << std::endl;
  }
  return any;
}

bool Session::Impl::run_watch(const cmd::Watch& w, std::ostream& out, std::ostream& err) {
  if (w.node && *w.node > clients.size()) {
    print_error(out, err, "",
                "there is no node " + std::to_string(*w.node) + "; `nodes` lists them");
    return false;
  }
  std::vector<std::size_t> which;
  for (std::size_t i = 0; i < clients.size(); ++i) {
    if (!w.node || *w.node == i + 1) which.push_back(i);
  }
  // Ctrl-C closes the subscriptions, which ends every watcher.
  std::vector<std::unique_ptr<WsSubscription>> subs;
  for (std::size_t k = 0; k < which.size(); ++k) {
    subs.push_back(std::make_unique<WsSubscription>(io.get_executor()));
    subs.back()->set_secret(options.secret);
    subs.back()->set_tls(options.tls);
  }
  bool stopping = false;
  auto watch_one = [&](std::size_t i, WsSubscription& ws) -> asio::awaitable<void> {
    auto resp = co_await call(i, proto::msg::Status{});
    if (auto* e = std::get_if<proto::msg::Error>(&resp)) throw std::runtime_error(e->message);
    const auto s = std::get<proto::msg::StatusReply>(resp).status;
    if (stopping) co_return;
    const auto [host, port] = parse_host_port(options.nodes[i]);
    co_await ws.connect(host, static_cast<std::uint16_t>(s.http_port), options.timeout);
    if (stopping) co_return;
    if (!options.json) {
      err << "watching " << label(i) << (w.item ? ", item " + *w.item : std::string())
          << " (Ctrl-C stops)" << std::endl;
    }
    for (;;) {
      const std::string text = co_await ws.next();
      auto n = parse_notification(text);
      if (!n || n->kind == Notification::Kind::kHello) continue;
      if (w.item && n->item.id != *w.item) continue;
      if (options.json) {
        out << text << std::endl;
      } else {
        const bool local = n->kind == Notification::Kind::kLocal;
        out << style.dim(now_hms()) << " [" << n->node << "] "
            << style.paint(local ? "32" : "36", std::string(to_string(n->kind))) << " " << n->op
            << " " << show(style, n->item);
        if (!local)
          out << style.dim("  (stamp " + std::to_string(n->stamp) + " from " + n->origin + ")");
        out << std::endl;
      }
    }
  };
  asio::signal_set signals(io, SIGINT, SIGTERM);
  bool failed = false;
  std::size_t live = which.size();
  for (std::size_t k = 0; k < which.size(); ++k) {
    const std::size_t i = which[k];
    asio::co_spawn(io, watch_one(i, *subs[k]), [&, i](std::exception_ptr e) {
      if (e && !stopping) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          if (!options.json) err << label(i) << ": " << describe(ex) << std::endl;
          failed = true;
        }
      }
      --live;
    });
  }
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    stopping = true;
    for (auto& ws : subs) ws->close();
  });
  io.restart();
  while (live > 0) io.run_one();
  signals.cancel();
  io.poll();
  return !failed;
}

bool Session::run(const Command& command, std::ostream& out, std::ostream& err) {
  auto& im = *impl_;
  return std::visit(
      [&](const auto& c) -> bool {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, cmd::Create>) {
          return im.run_routed(proto::msg::Create{c.title}, "created", out, err);
        } else if constexpr (std::is_same_v<T, cmd::List>) {
          return im.run_routed(proto::msg::List{}, "", out, err);
        } else if constexpr (std::is_same_v<T, cmd::Get>) {
          return im.run_routed(proto::msg::Get{c.id}, "", out, err);
        } else if constexpr (std::is_same_v<T, cmd::Update>) {
          return im.run_routed(proto::msg::Update{c.id, c.completed, c.title}, "updated", out, err);
        } else if constexpr (std::is_same_v<T, cmd::Delete>) {
          return im.run_routed(proto::msg::Delete{c.id}, "deleted", out, err);
        } else if constexpr (std::is_same_v<T, cmd::Nodes>) {
          return im.run_nodes(out);
        } else if constexpr (std::is_same_v<T, cmd::Watch>) {
          return im.run_watch(c, out, err);
        } else if constexpr (std::is_same_v<T, cmd::Route>) {
          const std::string e = set_route(c.mode);
          if (!e.empty()) {
            im.print_error(out, err, "", e);
            return false;
          }
          if (im.options.json) {
            out << json::serialize(json::object{{"ok", true}, {"route", c.mode}}) << std::endl;
          } else {
            out << "route " << c.mode << std::endl;
          }
          return true;
        } else if constexpr (std::is_same_v<T, cmd::Session>) {
          if (c.mode == "on") im.options.session = true;
          if (c.mode == "off") im.options.session = false;
          json::array marks;
          std::string text;
          for (const auto& [node, m] : im.token) {
            marks.push_back(json::object{{"node", node}, {"seq", m.seq}});
            text += " " + node + ":" + std::to_string(m.seq);
          }
          if (im.options.json) {
            out << json::serialize(json::object{
                       {"ok", true}, {"session", im.options.session}, {"writes", std::move(marks)}})
                << std::endl;
          } else {
            out << "session " << (im.options.session ? "on" : "off")
                << (im.options.session
                        ? ": reads wait up to " + std::to_string(im.options.session_wait.count()) +
                              " ms for your writes"
                        : ": reads show whatever the node has (the seed's behaviour)")
                << (text.empty() ? "" : "; your writes:" + text) << std::endl;
          }
          return true;
        } else if constexpr (std::is_same_v<T, cmd::Help>) {
          if (im.options.json) {
            out << json::serialize(json::object{{"ok", true}, {"help", help_text(c.topic)}})
                << std::endl;
          } else {
            out << help_text(c.topic) << std::flush;
          }
          return true;
        } else {
          return true;  // Quit and Empty are handled by the caller
        }
      },
      command);
}

}  // namespace kv::cli
