// The syncer log's stored records (docs/storage.md, "The syncer"): its meta record, its entries,
// its node records and their cursor history. Pure encode/decode over bytes, shared by the log and
// the fuzzer; the varints come from the wire codec (core/protocol.hpp), which disk and wire
// share.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/item.hpp"

namespace kv::sync {

// Keys.
inline constexpr std::string_view kMetaKey = "m";        // LogMeta
inline constexpr std::string_view kEntryPrefix = "e";    // "e" + item id -> entry
inline constexpr std::string_view kNodePrefix = "k";     // "k" + node name -> NodeRecord
inline constexpr std::string_view kHistoryPrefix = "h";  // "h" + name + be64(stamp) -> cursor

// u8 format (2; 1 is still read), varint counter, purged_upto, max_id_number, then (format 2)
// log_id, open (u8: 1 while a process has it open, 0 once it closed it cleanly), rebuild_id,
// unverified (u8), then (optional) boot (str: the machine's boot id when it was opened).
struct LogMeta {
  std::uint64_t counter = 0;        // the highest stamp handed out
  std::uint64_t purged_upto = 0;    // tombstones stamped at or below are compacted
  std::uint64_t max_id_number = 0;  // the largest id number the log ever held
  std::uint64_t log_id = 0;         // random, fixed when the log was created (0: format 1)
  bool open = false;                // a process had it open and did not close it cleanly
  // The id of the log a rebuild in progress will write, and has told nodes to take (0: none).
  std::uint64_t rebuild_id = 0;
  // New, or put back from a copy (kvsync --restored-log), and not yet checked against every
  // configured node: it may know fewer stamps than they hold.
  bool unverified = false;
  // The boot of the machine the process that has it open runs on (Linux's boot_id). A log left
  // open by a process that crashed on this same boot lost nothing: every write had reached the
  // kernel. Left open on another boot, its unsynced tail may be gone (a power loss).
  std::string boot;
  // Grows by one at every open, durably before any node hears of it (docs/sync.md, "Syncer
  // lives"); raised past a node's when that node reports a later one.
  std::uint64_t life = 0;
  friend bool operator==(const LogMeta&, const LogMeta&) = default;
};
std::string encode_meta(const LogMeta& m);
std::optional<LogMeta> decode_meta(std::string_view bytes);

// What the log knows of one node (by name): varint incarnation, cursor, applied, flags (bit 0:
// forgotten), a varint count and that many retired incarnations, then unsettled_upto and
// recheck_upto. Format 1 records hold the first two only.
struct NodeRecord {
  std::uint64_t incarnation = 0;  // the life of its data directory the cursor belongs to
  std::uint64_t cursor = 0;       // its changes up to here are in the log
  std::uint64_t applied = 0;      // its durable applied stamp, as it last reported
  // The operator said it is gone (kvsync forget-node): it no longer holds compaction back, and
  // another data directory may take its name. The cursor stays, so that if this very data
  // directory comes back its changes already in the log are not stamped a second time.
  bool forgotten = false;
  // Its earlier lives that it left by a rebirth (restored from an older copy), newest last, at
  // most kMaxRetired: a copy from one of them is the same node, older still.
  std::vector<std::uint64_t> retired;
  // After a rebuild: the node's sequence then. A value the lost log stamped may live on only as
  // the ancestor of one of its pending changes, so the cursor says nothing to sessions until it
  // passes this (0: nothing to wait for).
  std::uint64_t unsettled_upto = 0;
  // It missed compaction (forgotten, or put back from an older copy) and was resynced: its
  // changes up to here may have been made on items whose deletes are compacted away, so they
  // are checked against that as they are fetched (SyncLog::stamp's check_compacted).
  std::uint64_t recheck_upto = 0;
  friend bool operator==(const NodeRecord&, const NodeRecord&) = default;
};
inline constexpr std::size_t kMaxRetired = 16;
std::string encode_node(const NodeRecord& n);
std::optional<NodeRecord> decode_node(std::string_view bytes);

// u8 format (1), varint stamp, str origin, varint origin_seq, item (whose version is the stamp).
std::string encode_entry(const StampedChange& c);
// nullopt for anything that is not exactly one well-formed entry.
std::optional<StampedChange> decode_entry(std::string_view bytes);

// A node's cursor when a stamp was handed out: key "h" + name + be64(stamp), value varint cursor.
struct HistoryRecord {
  std::string name;
  std::uint64_t stamp = 0;
  std::uint64_t cursor = 0;
  friend bool operator==(const HistoryRecord&, const HistoryRecord&) = default;
};
std::string history_key(std::string_view name, std::uint64_t stamp);
std::string encode_history_cursor(std::uint64_t cursor);
// nullopt unless `key` is a history key and `value` exactly one varint.
std::optional<HistoryRecord> decode_history(std::string_view key, std::string_view value);

}  // namespace kv::sync
