// The node's on-disk records (docs/storage.md). Pure encode/decode over bytes, shared by the
// writer and the recovery code, and the target of the store fuzzer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/item.hpp"

namespace kv::node {

// Keys in the node's RocksDB database.
inline constexpr std::string_view kMetaKey = "m";       // the Meta record
inline constexpr std::string_view kItemPrefix = "i";    // "i" + be64(number) + name -> Record
inline constexpr std::string_view kChangePrefix = "c";  // "c" + be64(seq) -> ChangeEntry
// "k" + node name -> varint incarnation, varint seq: the syncer log's cursor for that node, as
// of this node's applied stamp (Apply::marks), kept for a syncer that must rebuild its log.
inline constexpr std::string_view kCursorPrefix = "k";

// Records are written in format 2; format 1 is still read (docs/storage.md).
inline constexpr std::uint8_t kFormatVersion = 2;

// Store-wide counters, rewritten in every commit.
struct Meta {
  std::string name;
  std::uint64_t incarnation = 0;
  std::uint64_t version = 0;        // store-wide version counter
  std::uint64_t seq = 0;            // node-local change sequence
  std::uint64_t applied_stamp = 0;  // every stamp up to here has been delivered
  std::uint64_t synced_upto = 0;    // local changes up to here are in the syncer's log
  std::uint64_t max_id_number = 0;  // the largest id number seen; new ids take the next one
  std::uint64_t log_id = 0;         // the syncer log its applied stamps come from (0: none yet)
  std::uint64_t purged_upto = 0;    // tombstones stamped at or below this were compacted
  // The highest stamp the syncer said it had handed out (Apply::stamp_high): a syncer whose log
  // is below it started from an older copy of its log (docs/sync.md, "A lost log").
  std::uint64_t syncer_stamp = 0;

  friend bool operator==(const Meta&, const Meta&) = default;
};

// One item as stored. `version` is what users see; `stamp` is the stamp of the last value the
// syncer delivered (0 if none) and decides conflicts; `local_seq` is the sequence number of the
// item's latest local change (0 if none).
struct Record {
  std::string title;
  bool completed = false;
  bool deleted = false;
  std::uint64_t version = 0;
  std::uint64_t stamp = 0;
  std::uint64_t local_seq = 0;
  std::string origin;
  std::uint64_t origin_seq = 0;

  friend bool operator==(const Record&, const Record&) = default;
};

// A local change in the change log: the value it wrote, and the stamp of the value it was made
// on (Change::base_stamp, base_seq). Format 2: u8 2, item, varint base_stamp, varint base_seq.
// Format 1 held the item id alone (the value was the item's, whose latest change it was):
// `format_1` says so, and only value.id is set.
struct ChangeEntry {
  Item value;
  std::uint64_t base_stamp = 0;
  std::uint64_t base_seq = 0;
  bool format_1 = false;
  friend bool operator==(const ChangeEntry&, const ChangeEntry&) = default;
};

std::string encode_meta(const Meta& m);
std::optional<Meta> decode_meta(std::string_view bytes);
std::string encode_record(const Record& r);
std::optional<Record> decode_record(std::string_view bytes);

std::string encode_cursor(std::uint64_t incarnation, std::uint64_t seq);
std::optional<std::pair<std::uint64_t, std::uint64_t>> decode_cursor(std::string_view bytes);
std::string encode_change(const ChangeEntry& e);
std::optional<ChangeEntry> decode_change(std::string_view bytes);

std::string item_key(std::string_view id);  // `id` must have the shape item_id_number takes
std::optional<std::string> item_id_from_key(std::string_view key);
std::string change_key(std::uint64_t seq);

}  // namespace kv::node
