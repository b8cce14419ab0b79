// The syncer's durable log (docs/sync.md): for every item the latest stamped value (compacted by
// key as it goes), the stamp counter, and a record of every node it knows: the life of its data
// directory (incarnation), how far its changes are in the log (cursor), and how far it has
// applied the log. It also keeps each node's cursor history by stamp, so that
// an APPLY tells a node exactly which of its own changes the stamps it carries include.
//
// Pure logic over a storage::Engine: no sockets, so every rule is unit-tested and simulated.
// Threading: not thread-safe; the syncer uses it from its one thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/item.hpp"
#include "core/protocol.hpp"
#include "core/store_error.hpp"
#include "sync/sync_log_format.hpp"

namespace kv::storage {
class Disk;
}

namespace kv::sync {

struct SyncLogOptions {
  std::filesystem::path dir;
  // Make every stamp durable (sync_now()) before a node hears of it. Off (--durability async):
  // the log trusts the kernel and never syncs a stamp.
  bool sync_writes = false;
  storage::Disk* disk = nullptr;  // nullptr: RocksDB on the file system (the simulator's seam)
  std::function<std::uint64_t()> random;  // empty: std::random_device (a new log's id)
  // The machine's boot (empty: Linux's /proc/sys/kernel/random/boot_id); the simulator's power
  // losses give it a new one.
  std::function<std::string()> boot_id;
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
  std::uint64_t log_id() const;   // random, fixed when the log was created
  // The id a rebuild in progress will give the log (0: none): nodes it claimed carry it.
  std::uint64_t rebuild_id() const;
  // Starts a rebuild: picks its id (or keeps the one of a rebuild a crash interrupted) and
  // stores it, durably, before any node is told to take it.
  std::uint64_t begin_rebuild();
  // This process's syncer life (docs/sync.md, "Syncer lives"): one more than the last open's,
  // durable since the open. A node refuses APPLYs of a life older than the latest that claimed
  // it (its STATUS).
  std::uint64_t life() const;
  // A node was claimed by life `above` (another kvsync, or this log is a copy that missed
  // lives): takes a later life, durably.
  void raise_life(std::uint64_t above);
  // True when the log knows no stamp and no node (just created, or never used).
  bool fresh() const;
  // False when the process that had it open before did not close it cleanly (a crash).
  bool closed_cleanly() const;
  // Not closed cleanly, and on another boot of the machine: writes not yet synced then (the
  // tail of stamps not yet synced, or every write with sync_writes off) may be lost. A crash of
  // the process alone loses nothing: every write had reached the kernel.
  bool may_have_lost_writes() const;
  bool sync_writes() const;  // SyncLogOptions::sync_writes
  // A new log, and one kvsync --restored-log points at, is unverified (durably) until every
  // configured node has reported without showing it older, or it was rebuilt from them.
  bool unverified() const;
  void set_unverified(bool unverified);

  // ---- Nodes ----
  // The node's record, if the log knows it.
  std::optional<NodeRecord> node(const std::string& name) const;
  std::vector<std::pair<std::string, NodeRecord>> nodes() const;
  // Starts a record for `name` in `incarnation` (a node seen for the first time, or one that
  // took a new incarnation, whose old one is kept as retired), with its cursor at `cursor` (the
  // node's synced_upto: what it counts as synced already); durable on return.
  void admit(const std::string& name, std::uint64_t incarnation, std::uint64_t applied,
             std::uint64_t cursor = 0);
  // Forgets the node (docs/sync.md, "Removing a node"): it no longer holds compaction back, and
  // another data directory may take its name. Durable on return. Returns false when the log did
  // not know it (or had forgotten it already).
  bool forget(const std::string& name);
  // A forgotten node's very data directory is back: it counts again, its cursor where it was.
  void readmit(const std::string& name);
  // Its changes up to `seq` are to be checked against compacted deletes (NodeRecord::
  // recheck_upto); durable on return.
  void recheck(const std::string& name, std::uint64_t seq);
  // The node reports its durable applied stamp: kept for compaction (a node that is away still
  // holds compaction back) and to drop the cursor history it no longer needs. Not synced: a
  // value lost in a crash is only lower, which is safe.
  void note_applied(const std::string& name, std::uint64_t applied);

  // How far the changes of `node` (in this incarnation of its data directory) are in the log;
  // 0 for an incarnation the log does not know.
  std::uint64_t cursor(const std::string& node, std::uint64_t incarnation) const;
  // The node's cursor as it was once every stamp up to `stamp` was handed out: its changes up
  // to there are in stamps at or below `stamp` (or lost to a delete).
  std::uint64_t cursor_at(const std::string& node, std::uint64_t incarnation,
                          std::uint64_t stamp) const;
  // Every known node's cursor as a session mark: once a node has applied every stamp up to
  // counter(), it holds each node's changes up to these (read-your-writes, docs/sync.md).
  std::vector<SessionMark> marks() const;
  // The same as of `stamp` (cursor_at for every node).
  std::vector<SessionMark> marks_at(std::uint64_t stamp) const;
  // Grows whenever a cursor changes (a node that holds the marks must hear them again).
  std::uint64_t marks_version() const;

  // ---- Stamping ----
  struct Stamped {
    std::uint64_t stamp = 0;              // 0 when nothing was accepted
    std::vector<StampedChange> accepted;  // what was stored under `stamp`
    std::vector<std::string> created;     // ids among `accepted` the log did not hold before
    std::vector<Change> dropped;          // updates that lost to a delete (rule R)
    // Changes of a node that missed compaction, made on an item whose delete was compacted away
    // (made on a value the log held, of an item it no longer holds): the delete is stamped
    // again, as a tombstone in `accepted`, so that the node that made the change deletes the
    // item too.
    std::vector<Change> redeleted;
  };
  // Gives the changes fetched from `node` one new stamp, keeps those that beat what the log
  // holds, and moves the node's cursor to `next_cursor` (FETCH's seq_high), all in one write,
  // which sync_now() makes durable (see "Durability" below). Changes at or below the node's
  // recheck_upto (it missed compaction) may have been made before their item's delete was compacted
  // away (Stamped::redeleted). The node must be known in this incarnation (admit()). Throws
  // StoreError when it is not or the write fails (nothing changed then).
  Stamped stamp(const std::string& node, std::uint64_t incarnation,
                const std::vector<Change>& changes, std::uint64_t next_cursor);

  // Makes sure no stamp at or below `stamp` is handed out again: a node reports having applied
  // it, so it was handed out before this log's state (a replaced data directory).
  void observe_stamp(std::uint64_t stamp);

  // The next delivery for a node that applied every stamp up to `after`: whole stamps in order,
  // at least `limit` changes unless fewer remain, none above `cap`. upto_stamp covers the stamps
  // taken (or min(counter, cap), when the batch reaches the end). The caller fills in
  // synced_upto (cursor_at) and the rest of the envelope.
  proto::msg::Apply next_batch(std::uint64_t after, std::size_t limit,
                               std::uint64_t cap = ~std::uint64_t{0}) const;

  // ---- Durability (docs/sync.md, "The syncer's fsync") ----
  // With sync_writes, stamp() does not wait for the disk, and the owner makes the stamps
  // durable off its thread (sync_point, sync_now, synced below). A stamp goes to the other nodes
  // at once; what tells a node its own changes are in the log (durable_cursor, durable_stamp)
  // waits until durable. Without sync_writes everything counts as durable (the log trusts the
  // kernel).
  //
  // Every stamp write so far is durable.
  bool all_durable() const;
  // The highest stamp an APPLY may carry: every stamp up to it is durable (counter() when all).
  std::uint64_t durable_stamp() const;
  // How far the node's changes are in the log as the disk has it: the synced_upto it may hear.
  std::uint64_t durable_cursor(const std::string& node, std::uint64_t incarnation) const;
  // A sync in three steps, so that the fsync runs off the owner's thread: sync_point() names the
  // writes so far; sync_now() makes them durable and may run on any thread, concurrently with
  // the owner's further writes (it touches nothing but the engine); synced(point), on the
  // owner's thread once sync_now() returned nothing, records it. sync_now() returns the error.
  std::uint64_t sync_point() const;
  std::optional<std::string> sync_now() const;
  void synced(std::uint64_t point);

  // Compaction: drops the tombstones stamped at or below `horizon`, a stamp every known node
  // has applied (docs/sync.md), and moves purged_upto there. Durable on return; returns how many
  // went (0: nothing changed).
  std::size_t purge(std::uint64_t horizon);
  std::uint64_t purged_upto() const;
  std::uint64_t max_id_number() const;
  // item_digest summed over the live entries: what a node that applied every stamp and holds no
  // unsynced change reports (docs/sync.md, "Digests").
  std::uint64_t digest() const;

  // Every item's latest stamped value, in stamp order (tests, the simulator, the checker).
  std::vector<StampedChange> snapshot() const;

  // Replaces everything with a log rebuilt from the nodes (docs/sync.md, "A lost log"), under
  // rebuild_id(): these entries, this counter, these node records (cursors at the counter). One
  // durable write.
  struct Rebuilt {
    std::uint64_t counter = 0;
    std::uint64_t purged_upto = 0;
    std::uint64_t max_id_number = 0;
    std::vector<StampedChange> entries;
    std::vector<std::pair<std::string, NodeRecord>> nodes;
  };
  void rebuild(const Rebuilt& r);

  // Drops the log without marking it closed cleanly, as a crash leaves it (the simulator).
  void leave_open();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kv::sync
