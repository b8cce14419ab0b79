// The JSON change notifications a node pushes to its WebSocket subscribers (docs/protocol.md,
// "WebSocket notifications"). Pure code: serialise and parse, no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/item.hpp"

namespace kv {

struct Notification {
  enum class Kind { kLocal, kSynced, kHello };
  Kind kind = Kind::kLocal;
  std::string node;         // the node that sends the notification
  std::string op;           // create | update | delete (empty for hello)
  Item item;                // the value after the change (empty for hello)
  std::uint64_t seq = 0;    // local: the change sequence; hello: the node's current sequence
  std::uint64_t stamp = 0;  // synced: the syncer's stamp; hello: the node's applied stamp
  std::string origin;       // synced: the node the change came from
};

std::string to_json(const Notification& n);
// Returns nullopt for anything that is not a well-formed notification.
std::optional<Notification> parse_notification(std::string_view json);

std::string_view to_string(Notification::Kind kind);

}  // namespace kv
