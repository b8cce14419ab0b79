// The domain types shared by nodes, the syncer and the client. Plain data, no I/O.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>

namespace kv {

// A ToDo item as users see it. A deleted item is a tombstone: it keeps its id and version so
// that a late update can never bring it back (see docs/sync.md, invariant 3).
struct Item {
  std::string id;
  std::string title;
  bool completed = false;
  bool deleted = false;
  std::uint64_t version = 0;

  friend bool operator==(const Item&, const Item&) = default;
};

// "ID:1a, Version:3 TaskA, completed" -- the seed's notation, also used by kvcli.
std::ostream& operator<<(std::ostream& os, const Item& item);

// A node's local change, as returned by FETCH: the item's current value and the node-local
// sequence number of the change that produced it. `item.version` is the node's version.
struct Change {
  std::uint64_t seq = 0;
  Item item;
  // What the change was made on: the stamp of the item's stamped value (0: none), and the
  // sequence number of the node's own earlier change of it (0: none, as for a create). A change
  // made on a value the syncer's log held, of an item the log no longer holds, was made on an
  // item whose delete is compacted away (docs/sync.md, "Compaction").
  std::uint64_t base_stamp = 0;
  std::uint64_t base_seq = 0;

  friend bool operator==(const Change&, const Change&) = default;
};

// A change after the syncer stamped it: `stamp` overwrites the version on every node.
// `origin` and `origin_seq` name the node and local change it came from.
struct StampedChange {
  std::uint64_t stamp = 0;
  std::string origin;
  std::uint64_t origin_seq = 0;
  Item item;  // item.version == stamp

  friend bool operator==(const StampedChange&, const StampedChange&) = default;
};

// Read-your-writes (docs/sync.md, "Sessions"): how far a node's local changes go. `node` and
// `incarnation` name the node and the life of its data directory; `seq` is a change sequence.
struct SessionMark {
  std::string node;
  std::uint64_t incarnation = 0;
  std::uint64_t seq = 0;

  friend bool operator==(const SessionMark&, const SessionMark&) = default;
};

// What a node reports about itself (STATUS).
struct NodeStatus {
  std::string name;               // short node name, the suffix of the ids it creates
  std::uint64_t incarnation = 0;  // random, fixed when the data directory is created
  std::uint64_t version = 0;      // the store-wide version counter
  std::uint64_t seq = 0;          // the node-local change sequence
  std::uint64_t applied_stamp = 0;
  std::uint64_t synced_upto = 0;
  std::uint64_t items = 0;  // live items
  std::uint64_t tombstones = 0;
  std::uint64_t unsynced = 0;       // local changes not yet in the syncer's log
  std::uint64_t http_port = 0;      // where the node serves /ws notifications, on the same host
  std::uint64_t syncer_stamp = 0;   // the syncer's latest stamp, as its last APPLY said
  std::uint64_t subscribers = 0;    // WebSocket subscribers now
  std::uint64_t max_id_number = 0;  // the largest id number the node has seen
  std::uint64_t log_id = 0;         // the syncer log its applied stamps come from (0: none)
  std::uint64_t purged_upto = 0;    // its tombstones stamped at or below this are gone
  // An order-independent digest of its live items (id, title, completed, stamp), taken at
  // `digest_stamp` (its applied stamp then); equal on two nodes that hold the same items.
  std::uint64_t digest = 0;
  std::uint64_t digest_stamp = 0;
  // `applied_stamp` and `synced_upto` above are durable; this is what memory holds (ahead
  // while an APPLY is being committed).
  std::uint64_t memory_applied_stamp = 0;
  // The latest syncer life that claimed the node since it started (docs/sync.md, "Syncer lives").
  std::uint64_t syncer_life = 0;

  friend bool operator==(const NodeStatus&, const NodeStatus&) = default;
};

// The total order that decides between two stamped values of one item (docs/sync.md, rule R):
// a delete beats any update, and stays: between two deletes the first stamped stands (so that
// an item's tombstone never moves, and every node that holds a change lost to it gets it in the
// same batch that tells it the change is settled); between two updates the higher stamp wins.
inline bool stamped_beats(bool a_deleted, std::uint64_t a_stamp, bool b_deleted,
                          std::uint64_t b_stamp) {
  if (a_deleted != b_deleted) return a_deleted;
  if (a_deleted) return a_stamp < b_stamp;
  return a_stamp > b_stamp;
}

// The digest of a set of items (docs/sync.md, "Digests"): the sum, modulo 2^64, of this hash of
// each live item's id, title, completed flag and version. Order-independent and kept up to date
// one item at a time; two nodes that hold the same live items with the same versions have the
// same digest.
std::uint64_t item_digest(const Item& item);
// The same hash from the fields, for a caller that holds them elsewhere (no copy).
std::uint64_t item_digest(std::string_view id, std::string_view title, bool completed,
                          std::uint64_t version);

// Item ids are "<number><node name>", e.g. "3b": the number is one more than the largest number
// the node has seen, the suffix makes ids from different nodes distinct without coordination.
std::string make_item_id(std::uint64_t number, std::string_view node_name);
// The numeric part of an id, if it has the documented shape.
std::optional<std::uint64_t> item_id_number(std::string_view id);
// A node name is 1 to 8 lowercase ASCII letters.
bool valid_node_name(std::string_view name);
// Orders ids by number, then by node name: the order `list` prints.
bool item_id_less(std::string_view a, std::string_view b);

}  // namespace kv
