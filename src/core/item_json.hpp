// An Item as JSON, the one shape every JSON output of ours uses (notifications, a node's /items,
// the syncer's events, kvcli --json; docs/protocol.md):
//   {"id": "1a", "title": "Buy milk", "completed": false, "deleted": false, "version": 3}
// Boost.JSON finds these by argument-dependent lookup: json::value_from(item) and
// json::value_to<Item>(value) (which throws on a missing or mistyped field).
#pragma once

#include <boost/json/fwd.hpp>

#include "core/item.hpp"

namespace kv {

void tag_invoke(const boost::json::value_from_tag&, boost::json::value& out, const Item& item);
Item tag_invoke(const boost::json::value_to_tag<Item>&, const boost::json::value& in);

}  // namespace kv
