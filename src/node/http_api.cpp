#include "node/http_api.hpp"

#include <algorithm>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <boost/json.hpp>

#include "core/item_json.hpp"
#include "core/metrics.hpp"
#include "core/notification.hpp"
#include "node/store.hpp"

namespace kv::node {

namespace json = boost::json;

namespace {

std::string status_json(const Store& store, const web::Hub& hub) {
  const NodeStatus s = store.status();
  json::object o{{"name", s.name},
                 {"incarnation", s.incarnation},
                 {"version", s.version},
                 {"seq", s.seq},
                 {"applied_stamp", s.applied_stamp},
                 {"synced_upto", s.synced_upto},
                 {"items", s.items},
                 {"tombstones", s.tombstones},
                 {"unsynced", s.unsynced},
                 {"syncer_stamp", s.syncer_stamp},
                 {"digest", s.digest},
                 {"digest_stamp", s.digest_stamp},
                 {"subscribers", hub.subscribers()}};
  return json::serialize(o);
}

// %XX and '+' decoded, as a browser's encodeURIComponent / form encoding sends them; nullopt
// for a malformed escape.
std::optional<std::string> percent_decoded(std::string_view s) {
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] != '%') {
      out.push_back(s[i]);
    } else {
      if (i + 2 >= s.size()) return std::nullopt;
      const int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    }
  }
  return out;
}

char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// What /items was asked for: a page after an id or at a position, or a search.
struct ItemsQuery {
  std::string after;
  std::optional<std::uint64_t> offset;
  std::uint64_t limit = kItemsDefaultLimit;
  std::optional<std::string> search;  // lower-cased
};

std::variant<ItemsQuery, std::string> parse_items_query(std::string_view target) {
  ItemsQuery q;
  const auto number =
      [&](std::string_view key) -> std::variant<std::optional<std::uint64_t>, std::string> {
    const auto v = web::query_param(target, key);
    if (!v) return std::optional<std::uint64_t>{};
    if (v->empty() || v->size() > 18 ||
        v->find_first_not_of("0123456789") != std::string_view::npos) {
      return std::string(key) + " must be a whole number, not '" + std::string(v->substr(0, 40)) +
             "'";
    }
    return std::optional<std::uint64_t>{std::stoull(std::string(*v))};
  };
  auto limit = number("limit");
  if (auto* e = std::get_if<std::string>(&limit)) return *e;
  if (const auto l = std::get<0>(limit)) {
    if (*l < 1 || *l > kItemsMaxLimit) {
      return "limit must be between 1 and " + std::to_string(kItemsMaxLimit) + ", not " +
             std::to_string(*l);
    }
    q.limit = *l;
  }
  auto offset = number("offset");
  if (auto* e = std::get_if<std::string>(&offset)) return *e;
  q.offset = std::get<0>(offset);
  if (const auto a = web::query_param(target, "after")) {
    auto id = percent_decoded(*a);
    if (!id || id->size() > proto::kMaxIdBytes) {
      return "after must be an item id (at most " + std::to_string(proto::kMaxIdBytes) +
             " bytes, percent-encoded)";
    }
    q.after = std::move(*id);
  }
  if (const auto text = web::query_param(target, "q")) {
    auto decoded = percent_decoded(*text);
    if (!decoded) return "q is not percent-encoded properly";
    if (decoded->empty()) return "q must not be empty (leave it out to page through every item)";
    if (decoded->size() > kSearchMaxBytes) {
      return "q must be at most " + std::to_string(kSearchMaxBytes) + " bytes";
    }
    std::transform(decoded->begin(), decoded->end(), decoded->begin(), ascii_lower);
    q.search = std::move(*decoded);
  }
  if (q.offset && !q.after.empty()) return "give either after or offset, not both";
  if (q.offset && q.search) return "a search (q) continues with after, not offset";
  return q;
}

// Whether `text` holds `needle` (already lower-case), ASCII letters compared without case.
bool contains_folded(std::string_view text, std::string_view needle) {
  return std::search(text.begin(), text.end(), needle.begin(), needle.end(),
                     [](char a, char b) { return ascii_lower(a) == b; }) != text.end();
}

bool starts_with_folded(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && contains_folded(text.substr(0, prefix.size()), prefix);
}

// One page of /items: live items in id order after q.after (or from position q.offset), or
// the matches of a search among at most kSearchScanLimit items after q.after. `next` is where
// the next request continues (empty: nothing is left); `count` the node's live items.
std::string items_json(const Store& store, const ItemsQuery& q) {
  const NodeStatus s = store.status();
  json::array items;
  std::string next;
  std::uint64_t scanned = 0;
  if (q.search) {
    std::vector<std::string> hits;
    std::string last;
    bool more = false;
    store.walk_live(q.after, [&](std::string_view id, std::string_view title) {
      if (hits.size() == q.limit || scanned == kSearchScanLimit) {
        more = true;
        return false;
      }
      ++scanned;
      last = id;
      if (starts_with_folded(id, *q.search) || contains_folded(title, *q.search)) {
        hits.emplace_back(id);
      }
      return true;
    });
    if (more) next = last;
    items.reserve(hits.size());
    for (const auto& id : hits) {
      const auto found = store.get(id);
      if (const auto* it = std::get_if<Item>(&found)) items.push_back(json::value_from(*it));
    }
  } else {
    std::string after = q.after;
    bool past_end = false;
    if (q.offset && *q.offset > 0) {
      // The page starts after the item just before that position: a walk of `offset` items.
      std::uint64_t seen = 0;
      past_end = true;
      store.walk_live("", [&](std::string_view id, std::string_view) {
        if (++seen < *q.offset) return true;
        after = id;
        past_end = false;
        return false;
      });
    }
    if (!past_end) {
      const auto page = store.list_page(after, q.limit);
      items.reserve(page.items.size());
      for (const auto& it : page.items) items.push_back(json::value_from(it));
      next = page.next;
    }
  }
  json::object o{{"node", s.name},
                 {"seq", s.seq},
                 {"applied_stamp", s.applied_stamp},
                 {"count", s.items},
                 {"items", std::move(items)},
                 {"next", next},
                 // Older viewers read this: there is more after this page.
                 {"truncated", !next.empty()}};
  if (q.search) o["scanned"] = scanned;
  return json::serialize(o);
}

}  // namespace

web::Routes node_routes(const Store& store, const web::Hub& hub, const metrics::Registry& metrics,
                        std::string name, std::string secret) {
  web::Routes r;
  r.server = "kvnode";
  r.not_found_hint = "try /ws (WebSocket), /items, /status, /metrics or /healthz";
  r.get = [&store, &hub, &metrics,
           secret](const web::Request& req) -> std::optional<web::Response> {
    const auto path = web::path_of(req.target);
    if (path == "/healthz") {
      if (store.degraded()) return web::Response{503, "text/plain", "storage failing\n"};
      return web::Response{200, "text/plain", "ok\n"};
    }
    if (path == "/status") return web::Response{200, "application/json", status_json(store, hub)};
    if (path == "/items") {
      if (!web::authorized(req, secret)) return web::unauthorized();
      auto q = parse_items_query(req.target);
      if (auto* why = std::get_if<std::string>(&q)) {
        return web::Response{400, "text/plain; charset=utf-8",
                             "bad /items request: " + *why + "\n"};
      }
      return web::Response{200, "application/json", items_json(store, std::get<ItemsQuery>(q))};
    }
    if (path == "/metrics") {
      return web::Response{200, "text/plain; version=0.0.4; charset=utf-8", metrics.render()};
    }
    return std::nullopt;
  };
  r.subscribe = [&store, name, secret](
                    const web::Request& req) -> std::variant<web::Subscription, web::Response> {
    const web::Response not_found{
        404, "text/plain", "no WebSocket here; use /ws, /ws?only=local or /ws?only=synced\n"};
    if (web::path_of(req.target) != "/ws") return not_found;
    if (!web::authorized(req, secret)) return web::unauthorized();
    const auto only = web::query_param(req.target, "only");
    unsigned topics = kTopicLocal | kTopicSynced;
    if (only && *only == "local") {
      topics = kTopicLocal;
    } else if (only && *only == "synced") {
      topics = kTopicSynced;
    } else if (only) {
      return not_found;
    }
    auto hello = [&store, name] {
      Notification n;
      n.kind = Notification::Kind::kHello;
      n.node = name;
      const NodeStatus s = store.status();
      n.seq = s.seq;
      n.stamp = s.applied_stamp;
      return to_json(n);
    };
    return web::Subscription{std::move(hello), topics};
  };
  return r;
}

}  // namespace kv::node
