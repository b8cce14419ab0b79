#include "core/item_json.hpp"

#include <boost/json.hpp>

namespace kv {

namespace json = boost::json;

void tag_invoke(const json::value_from_tag&, json::value& out, const Item& item) {
  out = json::object{{"id", item.id},
                     {"title", item.title},
                     {"completed", item.completed},
                     {"deleted", item.deleted},
                     {"version", item.version}};
}

Item tag_invoke(const json::value_to_tag<Item>&, const json::value& in) {
  const json::object& o = in.as_object();
  Item item;
  item.id = json::value_to<std::string>(o.at("id"));
  item.title = json::value_to<std::string>(o.at("title"));
  item.completed = o.at("completed").as_bool();
  item.deleted = o.at("deleted").as_bool();
  item.version = json::value_to<std::uint64_t>(o.at("version"));
  return item;
}

}  // namespace kv
