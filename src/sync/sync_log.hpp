// The syncer's durable log of stamped changes (docs/sync.md). It holds, for every item, the latest
// stamped value (the log is compacted by key as it goes), the stamp counter, and a cursor per
// node incarnation: how far that node's local changes have been fetched and stamped.
//
// Pure logic over RocksDB: no sockets, so every rule is unit-tested without a network.
// Threading: not thread-safe; the syncer uses it from its one I/O thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/item.hpp"
#include "common/protocol.hpp"
#include "common/store_error.hpp"

namespace kv::storage {
class Disk;
}

namespace kv::sync {

struct SyncLogOptions {
  std::filesystem::path dir;
  bool sync_writes = false;       // fsync each stamp before fanning it out
  storage::Disk* disk = nullptr;  // nullptr: RocksDB on the file system (the simulator's seam)
};

class SyncLog {
 public:
  // Opens or creates the log; throws StoreError with a clear message on corruption.
  explicit SyncLog(SyncLogOptions options);
  ~SyncLog();
  SyncLog(const SyncLog&) = delete;
  SyncLog& operator=(const SyncLog&) = delete;

  std::uint64_t counter() const;  // the highest stamp handed out
  std::size_t size() const;       // items (tombstones included) in the log

  // How far the changes of `node` (in this incarnation of its data directory) are stamped.
  // A node seen with another incarnation starts again from 0.
  std::uint64_t cursor(const std::string& node, std::uint64_t incarnation) const;
  // How far that node's changes are all in the log (at most its cursor).
  std::uint64_t mark(const std::string& node, std::uint64_t incarnation) const;

  // Every node's mark (how far its changes are all in the log; at most its cursor): once a node
  // has applied every stamp up to counter(), it holds each node's changes up to these
  // (read-your-writes, docs/sync.md).
  std::vector<SessionMark> marks() const;

  struct Stamped {
    std::uint64_t stamp = 0;              // 0 when nothing was accepted
    std::vector<StampedChange> accepted;  // what was stored under `stamp`
    std::vector<std::string> created;     // ids among `accepted` the log did not hold before
    std::vector<Change> dropped;          // updates that lost to a delete (rule R)
    // Changes made on an item whose delete was compacted away (its base stamp is at or below
    // purged_upto and the log no longer holds it): the delete is stamped again, as a tombstone
    // in `accepted`, so that the node that made the change deletes the item too.
    std::vector<Change> redeleted;
  };
  // Gives the changes fetched from `node` one new stamp, keeps those that beat what the log
  // holds, and moves the node's cursor to `next_cursor` and its mark to `safe_mark` (FETCH's
  // seq_high and safe_mark), all in one durable write. Throws StoreError when the write fails
  // (nothing changed then).
  Stamped stamp(const std::string& node, std::uint64_t incarnation,
                const std::vector<Change>& changes, std::uint64_t next_cursor,
                std::uint64_t safe_mark);

  // Moves a node's cursor (back, when its sequence went back); durable on return.
  void set_cursor(const std::string& node, std::uint64_t incarnation, std::uint64_t seq);

  // Makes sure no stamp at or below `stamp` is handed out again: a node reports having applied
  // it, so it was handed out before this log's state (a replaced data directory).
  void observe_stamp(std::uint64_t stamp);

  // The next delivery for a node that applied every stamp up to `after`: whole stamps in order,
  // at least `limit` changes unless fewer remain. upto_stamp covers the stamps taken (or the
  // counter, when the batch reaches the end).
  proto::msg::Apply next_batch(std::uint64_t after, std::size_t limit,
                               std::uint64_t synced_upto) const;

  // Compaction: drops the tombstones stamped at or below `horizon`, a stamp every node has
  // applied (docs/sync.md), and moves purged_upto there. Durable on return; returns how many
  // went (0: nothing changed).
  std::size_t purge(std::uint64_t horizon);
  std::uint64_t purged_upto() const;

  // Every item's latest stamped value, in stamp order (tests and the checker).
  std::vector<StampedChange> snapshot() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kv::sync
