// The node's versioned ToDo store: the items users see, the store-wide version counter, the
// node-local change sequence that the syncer's cursor follows, and the rules that apply stamped
// changes from the syncer (docs/sync.md). Durable in RocksDB (docs/storage.md); everything is
// also held in memory, so reads never touch the disk.
//
// Threading: not thread-safe. A node uses it from its one I/O thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/item.hpp"
#include "core/protocol.hpp"
#include "core/store_error.hpp"

namespace kv::storage {
class Disk;
}

namespace kv::node {

// Where the store's nondeterminism comes from. Production uses the defaults; the deterministic
// simulator (test/sim) swaps each one.
struct StoreSeams {
  storage::Disk* disk = nullptr;  // nullptr: RocksDB on the file system (storage::real_disk())
  std::function<std::chrono::steady_clock::time_point()> now;  // empty: steady_clock::now
  std::function<std::uint64_t()> random;  // empty: std::random_device (new incarnations)
  // With background_commit: kManual leaves every group queued until commit_next() (the
  // simulator decides when a change becomes durable).
  bool manual_commit = false;
};

struct StoreOptions {
  std::filesystem::path dir;       // the data directory; created when missing
  std::string name;                // node name; must match the one the directory was created with
  bool sync_writes = false;        // fsync each commit (group) before acknowledging it
  bool background_commit = false;  // commit on a writer thread (group commit); else inline
  // With both: a group of a syncer's stamped changes only waits up to this long for more
  // before its fsync (a client's write ends the wait), so that small APPLYs share fsyncs.
  std::chrono::microseconds apply_sync_delay{0};
  // Refuse client writes after start until the first APPLY from a syncer, which brings the
  // largest id in use: a node restored from an old copy or wiped could otherwise hand out an
  // id that already names another item. Off for a node that runs without a syncer.
  bool await_syncer = false;
  StoreSeams seams;
};

// A committed change, as the node's WebSocket subscribers see it.
struct StoreEvent {
  enum class Kind { kLocal, kSynced };
  Kind kind = Kind::kLocal;
  std::string op;           // "create", "update" or "delete"
  Item item;                // the value after the change
  std::uint64_t seq = 0;    // kLocal: the change's sequence number
  std::uint64_t stamp = 0;  // kSynced: the syncer's stamp
  std::string origin;       // kSynced: the node the change came from
};

// Whether a node has a session's writes (Store::session).
enum class SessionState {
  kCaughtUp,  // every change named is here
  kBehind,    // some are not here yet; the syncer may still bring them
  kNever,     // names this node's own changes from another life of its data directory
};

// An item as stored, with what the sync rules look at (for the simulator, tests and checks).
struct StoredItem {
  Item item;                     // the value users see (a tombstone when item.deleted)
  std::uint64_t stamp = 0;       // the stamp of the last value the syncer delivered (0: none)
  std::string origin;            // the node that value came from
  std::uint64_t origin_seq = 0;  // and its change there
  std::uint64_t local_seq = 0;   // the item's latest local change (0: none)
  bool pending = false;          // that change is not yet in the syncer's log
};

// Why the store did not do what it was asked: its own type, which requests.cpp turns into the
// wire's ERROR answer. The codes are the protocol's ErrorCode values, which name the same outcomes
// (not found, deleted, invalid, unavailable, storage, stale).
struct Refusal {
  proto::ErrorCode code = proto::ErrorCode::kInvalidArgument;
  std::string message;
  friend bool operator==(const Refusal&, const Refusal&) = default;
};

template <class T>
using Result = std::variant<T, Refusal>;

// A change's place in the commit pipeline: what a writer holds and waits on before it answers
// (Store::completed, Store::outcome). Empty: nothing to wait for.
class Commit {
 public:
  Commit() = default;
  bool empty() const { return ticket_ == 0; }
  friend auto operator<=>(const Commit&, const Commit&) = default;

 private:
  friend class Store;
  explicit Commit(std::uint64_t ticket) : ticket_(ticket) {}
  std::uint64_t ticket_ = 0;
};

class Store {
 public:
  // Opens or creates the store. Throws StoreError with a clear message when the directory is
  // corrupt, belongs to another node, or cannot be opened.
  explicit Store(StoreOptions options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Client operations. Each local change takes the next version and the next change sequence.
  // Memory reflects a change at once; see "Durability" below for when it may be acknowledged.
  Result<Item> create(std::string_view title);
  Result<Item> update(const proto::msg::Update& req);
  Result<Item> remove(std::string_view id);
  Result<Item> get(std::string_view id) const;
  std::vector<Item> list() const;  // every live item, ordered by id
  // One page of live items after `after` (exclusive), at most `limit` and about kBatchBytes.
  proto::msg::ItemsReply list_page(std::string_view after, std::uint64_t limit) const;
  // Hands each live item after `after` (exclusive), in id order, to `visit` as its id and title,
  // until `visit` returns false; copies nothing. For reads that pass over many items and keep
  // few: the viewer's jumps by position and its searches (node/http_api.cpp). The views are
  // valid during the call only.
  void walk_live(
      std::string_view after,
      const std::function<bool(std::string_view id, std::string_view title)>& visit) const;

  // Sync operations.
  proto::msg::Changes fetch(std::uint64_t after_seq, std::uint64_t limit) const;
  Result<proto::msg::Applied> apply(const proto::msg::Apply& batch);
  // A syncer's STATUS names its life: from now on APPLYs of older lives are refused (docs/sync.md,
  // "Syncer lives"). Returns the latest life that claimed the node (above `syncer_life`: the
  // claim lost to a later syncer).
  std::uint64_t claim(std::uint64_t syncer_life);
  // One page of the stamped values (DUMP: a syncer rebuilding a lost log).
  proto::msg::Dumped dump_stamped(std::string_view after, std::uint64_t limit) const;

  NodeStatus status() const;
  std::vector<StoredItem> dump() const;    // every item, tombstones included, in id order
  std::vector<SessionMark> marks() const;  // how far other nodes' changes are held here
  std::uint64_t seq() const;               // the latest local change's sequence number
  std::uint64_t incarnation() const;       // fixed when the data directory was created
  // Read-your-writes (docs/sync.md, "Sessions"): whether every change in `want` is here. For
  // each entry, `have` gets how far this node is for that node.
  SessionState session(const std::vector<SessionMark>& want, std::vector<SessionMark>& have) const;
  // True while the database cannot be written (a failed write it has not recovered from).
  bool degraded() const;
  // Call now and then (kvnode: every second, on the store's thread): a degraded store tries to
  // recover (reopen and reload) at most once a second, even when no write comes to make it.
  void tick();

  // Called for every local change once it is durable, in commit order, on the thread that calls
  // poll_commits() (or inside the change's call when commits are inline); for every stamped
  // change the syncer delivers as soon as it is applied in memory, before it is durable (inside
  // apply()): a crash may take it back until the syncer sends it again.
  void set_observer(std::function<void(const StoreEvent&)> observer);

  // Durability. Every change joins the commit pipeline; it is acknowledged only once
  // completed() and outcome() says it did not fail. With background commits the writer thread
  // calls `wake` (from its own thread) when a group completed; the owner then calls
  // poll_commits() on the store's thread.
  Commit last_commit() const;      // the latest change's (empty: none yet)
  bool completed(Commit c) const;  // durable or failed (and so is every earlier change)
  // Once completed(c): nothing when c is durable, else the answer for a change whose commit
  // failed (nothing was changed).
  std::optional<Refusal> outcome(Commit c) const;
  void set_commit_wakeup(std::function<void()> wake);
  void poll_commits();
  void flush();  // blocks until every change submitted so far is completed (tests, shutdown)
  // StoreSeams::manual_commit only: writes the oldest `max_batches` queued changes as one group
  // (false: none queued), then processes the outcome as poll_commits() does.
  bool commit_next(std::size_t max_batches);
  std::size_t queued_commits() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kv::node
