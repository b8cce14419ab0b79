#include "core/notification.hpp"

#include <boost/json.hpp>

#include "core/item_json.hpp"

namespace kv {

namespace json = boost::json;

std::string_view to_string(Notification::Kind kind) {
  switch (kind) {
    case Notification::Kind::kLocal:
      return "local";
    case Notification::Kind::kSynced:
      return "synced";
    case Notification::Kind::kHello:
      return "hello";
  }
  return "local";
}

std::string to_json(const Notification& n) {
  json::object o;
  o["type"] = to_string(n.kind);
  o["node"] = n.node;
  o["seq"] = n.seq;
  if (n.kind == Notification::Kind::kHello) {
    o["applied_stamp"] = n.stamp;
  } else {
    o["op"] = n.op;
    o["stamp"] = n.stamp;
    o["origin"] = n.origin;
    o["item"] = json::value_from(n.item);
  }
  return json::serialize(o);
}

std::optional<Notification> parse_notification(std::string_view text) {
  json::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const json::object& o = v.get_object();
  try {
    Notification n;
    const auto type = o.at("type").as_string();
    if (type == "local") {
      n.kind = Notification::Kind::kLocal;
    } else if (type == "synced") {
      n.kind = Notification::Kind::kSynced;
    } else if (type == "hello") {
      n.kind = Notification::Kind::kHello;
    } else {
      return std::nullopt;
    }
    n.node = json::value_to<std::string>(o.at("node"));
    n.seq = json::value_to<std::uint64_t>(o.at("seq"));
    if (n.kind == Notification::Kind::kHello) {
      if (const auto* s = o.if_contains("applied_stamp"))
        n.stamp = json::value_to<std::uint64_t>(*s);
      return n;
    }
    n.op = json::value_to<std::string>(o.at("op"));
    n.stamp = json::value_to<std::uint64_t>(o.at("stamp"));
    n.origin = json::value_to<std::string>(o.at("origin"));
    n.item = json::value_to<Item>(o.at("item"));
    return n;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace kv
