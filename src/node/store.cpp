#include "node/store.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/bytes.hpp"
#include "node/apply_rule.hpp"
#include "node/committer.hpp"
#include "node/node_pool.hpp"
#include "node/store_format.hpp"
#include "storage/engine.hpp"

namespace kv::node {

using proto::ErrorCode;

// Who may touch what (as LevelDB's db_impl.h says it):
//  - fixed once the store is open: options, disk;
//  - the store's thread only (the node's I/O thread), no lock: everything else, except
//  - the block at the end, shared with the committer's thread and guarded by done_mu.
struct Store::Impl {
  // ---- Fixed once open.
  StoreOptions options;
  storage::Disk* disk = nullptr;

  // ---- The store's thread only.
  std::unique_ptr<storage::Engine> db;  // replaced by recover() after a failed write
  Meta meta;
  // Ordered by id (the order LIST pages through); lookups take a string_view.
  struct IdLess {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const { return item_id_less(a, b); }
  };
  // Its nodes come from index_pool (node_pool.hpp: a restart builds a million of them).
  NodePool index_pool;
  using ItemMap =
      std::map<std::string, Record, IdLess, PoolAllocator<std::pair<const std::string, Record>>>;
  ItemMap items{ItemMap::allocator_type(index_pool)};
  // Every local change the syncer's log does not hold yet, by sequence number, with the value
  // it wrote. An item's newer change does not replace its older one here: the syncer's cursor
  // then only ever passes changes it fetched, so a crash that loses a newer change cannot leave
  // an older, durable one behind the cursor (issue 10, problem 1), and a copy of the data
  // directory holds no change behind the cursor that the log lacks. FETCH offers the durable
  // ones.
  std::map<std::uint64_t, ChangeEntry> changelog;
  std::map<std::string, std::set<std::uint64_t>, std::less<>> changes_of;  // id -> its entries
  void log_change(std::uint64_t seq, ChangeEntry e) {
    changes_of[e.value.id].insert(seq);
    changelog.emplace(seq, std::move(e));
  }
  void unlog_change(std::uint64_t seq) {
    auto it = changelog.find(seq);
    if (it == changelog.end()) return;
    auto of = changes_of.find(it->second.value.id);
    of->second.erase(seq);
    if (of->second.empty()) changes_of.erase(of);
    changelog.erase(it);
  }
  // Deleted items by (stamp, id): compaction drops them in stamp order.
  std::set<std::pair<std::uint64_t, std::string>> tombstones;
  // Every change to `items` goes through put() and erase(), which keep `tombstones` in step.
  void put(const std::string& id, Record rec) {
    const auto at = items.lower_bound(id);
    put_at(at, at != items.end() && at->first == id, id, std::move(rec));
  }
  // put() where the caller has looked `id` up already: `at` is its element when `exists`, else
  // where it goes (lower_bound). One lookup per stamped change in a catch-up of millions.
  void put_at(ItemMap::iterator at, bool exists, const std::string& id, Record rec) {
    if (!exists) {
      at = items.emplace_hint(at, id, Record{});
    } else {
      if (at->second.deleted) tombstones.erase({at->second.stamp, id});
      forget_digest(id, at->second);
    }
    if (rec.deleted) tombstones.emplace(rec.stamp, id);
    at->second = std::move(rec);
    add_digest(id, at->second);
  }
  void erase(const std::string& id) {
    auto it = items.find(id);
    if (it == items.end()) return;
    if (it->second.deleted) tombstones.erase({it->second.stamp, id});
    forget_digest(id, it->second);
    items.erase(it);
  }
  // The digest of the live items (item_digest), kept with every change to `items`.
  std::uint64_t digest = 0;
  void add_digest(const std::string& id, const Record& r) {
    if (!r.deleted) digest += item_digest(id, r.title, r.completed, r.version);
  }
  void forget_digest(const std::string& id, const Record& r) {
    if (!r.deleted) digest -= item_digest(id, r.title, r.completed, r.version);
  }
  std::function<void(const StoreEvent&)> observer;
  // Read-your-writes: how far each other node's changes are applied here, as the syncer last
  // said (Apply::marks). Memory only: after a restart the syncer's first APPLY brings them.
  std::map<std::string, SessionMark, std::less<>> marks;
  // The syncer log's cursors as of the applied stamp (Apply::marks, kept on disk): what a syncer
  // rebuilding a lost log needs to know of which changes it must not fetch again.
  std::map<std::string, SessionMark, std::less<>> log_cursors;
  // The latest syncer life that claimed this node (docs/sync.md, "Syncer lives"). Memory only:
  // an APPLY of an older life can only sit in a connection of this very process.
  std::uint64_t syncer_life = 0;
  bool fenced = false;    // client writes wait for the first APPLY (StoreOptions::await_syncer)
  bool degraded = false;  // the database could not be reopened after a failed write
  std::chrono::steady_clock::time_point last_recovery;
  void recover();
  // While degraded: reopens the database (at most once a second); the error to refuse a write
  // with while it stays degraded. Only write paths and tick() call it, never a read.
  std::optional<Refusal> recover_or_refuse();
  // Why a client write is refused now (degraded, or fenced until the syncer's first APPLY).
  std::optional<Refusal> write_refusal() {
    if (auto e = recover_or_refuse()) return e;
    if (!fenced) return std::nullopt;
    return Refusal{ErrorCode::kUnavailable,
                   "node " + meta.name +
                       " takes writes once the syncer has caught it up after its start; try "
                       "another node or again in a moment"};
  }

  // Commit pipeline (see committer.hpp). Memory changes at once; a change is acknowledged,
  // announced to subscribers and offered to FETCH only once its batch is durable.
  std::unique_ptr<Committer> committer;  // null: commit inline on the caller's thread
  std::uint64_t submitted = 0;           // the last ticket handed out
  std::uint64_t completed = 0;           // every ticket up to here is durable or failed
  std::uint64_t durable_seq = 0;         // local changes up to here are durable
  // What STATUS reports: the applied stamp and synced_upto as durable, and those of batches
  // not durable yet, by ticket. (Compaction must only count stamps a crash cannot undo.)
  struct Settled {
    std::uint64_t applied_stamp = 0;
    std::uint64_t synced_upto = 0;
  };
  Settled durable;
  std::deque<std::pair<std::uint64_t, Settled>> pending_settled;
  std::deque<std::pair<std::uint64_t, std::uint64_t>> seq_by_ticket;  // not yet durable
  std::deque<std::pair<std::uint64_t, StoreEvent>> pending_events;    // local, not yet durable
  std::deque<std::pair<std::uint64_t, std::uint64_t>> failed_ranges;  // recent failed tickets
  std::string last_error;  // why the last commit failed (for storage_error())

  // ---- Shared with the committer's thread: guarded by done_mu.
  std::mutex done_mu;
  std::function<void()> wake;       // tells the owner to call poll_commits(); called by either
  std::deque<CommitResult> done;    // finished groups not yet processed
  std::condition_variable done_cv;  // signalled with each finished group (flush() waits on it)

  // ---- Methods (the store's thread).

  void load();
  storage::Status load_items();
  // From about this many keys on, load_items() reads on a thread of its own.
  static constexpr std::uint64_t kThreadedLoadFrom = 50000;
  void reset_memory() {
    items.clear();
    changelog.clear();
    changes_of.clear();
    tombstones.clear();
    log_cursors.clear();
    digest = 0;
  }
  // Hands `batch` (plus the Meta record) to the committer; returns its ticket.
  // `lazy`: stamped changes only; their fsync may wait a little for more (Committer).
  std::uint64_t submit(storage::Batch& batch, bool lazy = false);
  std::uint64_t random() const {
    if (options.seams.random) return options.seams.random();
    std::random_device rd;
    return (std::uint64_t{rd()} << 32) | rd();
  }
  std::chrono::steady_clock::time_point now() const {
    return options.seams.now ? options.seams.now() : std::chrono::steady_clock::now();
  }
  void process(const CommitResult& r);
  bool failed(std::uint64_t ticket) const {
    for (const auto& [first, last] : failed_ranges) {
      if (ticket >= first && ticket <= last) return true;
    }
    return false;
  }
  void notify(const StoreEvent& e) const {
    if (observer) observer(e);
  }
  Refusal storage_error() const {
    return Refusal{ErrorCode::kStorage,
                   "the node could not commit the change (" + last_error +
                       "); nothing was changed, try again once the disk has room"};
  }
  // A local change of `id` to `rec`: takes the next version and sequence number.
  Result<Item> commit_local(const std::string& id, Record rec, const char* op);

  // APPLY, in three steps: validation, the decision (rule R per change), the commit.
  std::optional<Refusal> check_apply(const proto::msg::Apply& batch) const;
  Meta next_meta(const proto::msg::Apply& batch, storage::Batch& wb);
  struct Decided {
    // The items the batch changes, as they become, each once, with where the item is in
    // `items` (decide() looks each up once; nothing erases items before commit_apply()).
    struct Chosen {
      const std::string* id;  // in the batch
      Record record;
      ItemMap::iterator at;  // the item, or (when !exists) where it goes
      bool exists = false;
    };
    std::vector<Chosen> changed;
    std::vector<StoreEvent> events;
  };
  Decided decide(const proto::msg::Apply& batch, Meta& next);
  Result<proto::msg::Applied> commit_apply(const proto::msg::Apply& batch, const Meta& next,
                                           Decided decided, storage::Batch& wb);
};

namespace {
Item visible(const std::string& id, const Record& r) {
  return Item{id, r.title, r.completed, r.deleted, r.version};
}

bool valid_title(std::string_view t) {
  return !t.empty() && t.size() <= proto::kMaxTitleBytes &&
         t.find_first_not_of(" \t") != std::string_view::npos &&
         std::none_of(t.begin(), t.end(), [](char c) { return c == '\n' || c == '\r' || c == 0; });
}

Refusal bad_title() {
  return Refusal{ErrorCode::kInvalidArgument, "a title must be 1 to " +
                                                  std::to_string(proto::kMaxTitleBytes) +
                                                  " bytes on one line, not only spaces"};
}
}  // namespace

// Reads the item records into `items`. A large store loads in two steps that overlap: a reader
// thread walks the database and decodes, in batches, while this thread builds the index (the
// larger part: a node and the digest per item); a restart of a million items spent a quarter of
// its time in the walk. A small one (and the simulator's many) loads on this thread alone.
storage::Status Store::Impl::load_items() {
  const auto corrupt_item = [&](const std::string& id) {
    return StoreError("data directory " + options.dir.string() + ": item record '" + id +
                      "' is corrupt");
  };
  const auto index = [&](std::string&& id, Record&& rec) {
    // Keys come in id order, so each insert lands at the end.
    auto slot = items.emplace_hint(items.end(), std::move(id), std::move(rec));
    if (slot->second.deleted) tombstones.emplace(slot->second.stamp, slot->first);
    add_digest(slot->first, slot->second);
  };
  if (db->approximate_keys() < kThreadedLoadFrom) {
    return db->scan(kItemPrefix, [&](std::string_view key, std::string_view bytes) {
      auto rec = decode_record(bytes);
      auto id = item_id_from_key(key);
      if (!rec || !id) throw corrupt_item(id.value_or("?"));
      index(std::move(*id), std::move(*rec));
      return true;
    });
  }
  struct Decoded {
    std::string id;
    Record rec;
  };
  constexpr std::size_t kBatch = 4096;
  constexpr std::size_t kQueued = 8;  // batches the reader may be ahead: bounded memory
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::vector<Decoded>> queue;
  bool done = false, stop = false;
  std::optional<std::string> corrupt;  // the id of a record that did not decode
  storage::Status status;
  std::exception_ptr failed;  // what the reader threw
  const auto read_batches = [&] {
    std::vector<Decoded> batch;
    const auto hand_over = [&] {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return stop || queue.size() < kQueued; });
      if (stop) return false;
      queue.push_back(std::move(batch));
      batch.clear();
      cv.notify_all();
      return true;
    };
    auto st = db->scan(kItemPrefix, [&](std::string_view key, std::string_view bytes) {
      auto rec = decode_record(bytes);
      auto id = item_id_from_key(key);
      if (!rec || !id) {
        std::lock_guard lock(mu);
        corrupt = id.value_or("?");
        return false;
      }
      if (batch.empty()) batch.reserve(kBatch);
      batch.push_back(Decoded{std::move(*id), std::move(*rec)});
      return batch.size() < kBatch || hand_over();
    });
    if (!batch.empty()) hand_over();
    std::lock_guard lock(mu);
    status = st;
  };
  std::thread reader([&] {
    try {
      read_batches();
    } catch (...) {
      std::lock_guard lock(mu);
      failed = std::current_exception();
    }
    std::lock_guard lock(mu);
    done = true;
    cv.notify_all();
  });
  {
    // Whatever happens here, the reader is stopped and joined before its state goes.
    struct Join {
      std::thread& t;
      std::mutex& mu;
      std::condition_variable& cv;
      bool& stop;
      ~Join() {
        {
          std::lock_guard lock(mu);
          stop = true;
        }
        cv.notify_all();
        t.join();
      }
    } join{reader, mu, cv, stop};
    for (;;) {
      std::vector<Decoded> batch;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return done || !queue.empty(); });
        if (queue.empty()) break;
        batch = std::move(queue.front());
        queue.pop_front();
        cv.notify_all();
      }
      for (auto& d : batch) index(std::move(d.id), std::move(d.rec));
    }
  }  // ~Join: the reader has ended
  if (failed) std::rethrow_exception(failed);
  if (corrupt) throw corrupt_item(*corrupt);
  return status;
}

void Store::Impl::load() {
  reset_memory();
  std::string value;
  const storage::Status s = db->get(kMetaKey, value);
  if (!s.ok()) {
    throw StoreError("data directory " + options.dir.string() + " has no kvnode metadata record (" +
                     s.ToString() + "): it is not a kvnode store or it is damaged");
  }
  auto m = decode_meta(value);
  if (!m)
    throw StoreError("data directory " + options.dir.string() + ": metadata record is corrupt");
  meta = *m;
  if (meta.name != options.name) {
    throw StoreError("data directory " + options.dir.string() + " belongs to node '" + meta.name +
                     "', not '" + options.name + "'");
  }
  auto st = load_items();
  if (st.ok()) {
    st = db->scan(kChangePrefix, [&](std::string_view key, std::string_view bytes) {
      const auto bad = [&](std::uint64_t seq) {
        return StoreError("data directory " + options.dir.string() + ": change-log entry " +
                          std::to_string(seq) + " is corrupt or does not match its item");
      };
      if (key.size() != 9) throw bad(0);
      const std::uint64_t seq = read_be64(key.substr(1));
      auto e = decode_change(bytes);
      if (!e || seq > meta.seq) throw bad(seq);
      auto found = items.find(e->value.id);
      if (found == items.end() || found->second.local_seq < seq) throw bad(seq);
      if (e->format_1) {
        // Format 1 kept an item's latest change only, and its value in the item record.
        if (found->second.local_seq != seq) throw bad(seq);
        e->value = visible(e->value.id, found->second);
        e->base_stamp = found->second.stamp;
        e->base_seq = 0;  // unknown: format 1 kept no history
      }
      log_change(seq, std::move(*e));
      return true;
    });
  }
  if (st.ok()) {
    st = db->scan(kCursorPrefix, [&](std::string_view key, std::string_view bytes) {
      auto c = decode_cursor(bytes);
      if (!c || !valid_node_name(key.substr(1))) {
        throw StoreError("data directory " + options.dir.string() + ": a cursor record is corrupt");
      }
      log_cursors[std::string(key.substr(1))] =
          SessionMark{std::string(key.substr(1)), c->first, c->second};
      return true;
    });
  }
  if (!st.ok()) throw StoreError("data directory " + options.dir.string() + ": " + st.ToString());
  durable_seq = meta.seq;
  durable = Settled{meta.applied_stamp, meta.synced_upto};
}

std::uint64_t Store::Impl::submit(storage::Batch& batch, bool lazy) {
  batch.Put(kMetaKey, encode_meta(meta));
  if (committer) {
    submitted = committer->submit(std::move(batch), lazy);
  } else {
    const std::uint64_t ticket = ++submitted;
    process(CommitResult{ticket, ticket, db->write(batch, options.sync_writes)});
  }
  return submitted;
}

void Store::Impl::process(const CommitResult& r) {
  completed = std::max(completed, r.last);
  if (r.status.ok()) {
    while (!seq_by_ticket.empty() && seq_by_ticket.front().first <= r.last) {
      durable_seq = std::max(durable_seq, seq_by_ticket.front().second);
      seq_by_ticket.pop_front();
    }
    while (!pending_settled.empty() && pending_settled.front().first <= r.last) {
      durable = pending_settled.front().second;
      pending_settled.pop_front();
    }
    while (!pending_events.empty() && pending_events.front().first <= r.last) {
      notify(pending_events.front().second);
      pending_events.pop_front();
    }
    return;
  }
  if (failed(r.first)) return;  // already handled with its range
  // Memory holds changes that are not on disk, and everything submitted so far was built on
  // them: all of it fails, and we go back to what the disk has.
  if (!r.status.IsAborted()) last_error = r.status.ToString();
  failed_ranges.emplace_back(r.first, submitted);
  if (failed_ranges.size() > 64) failed_ranges.pop_front();
  completed = std::max(completed, submitted);
  seq_by_ticket.clear();
  pending_events.clear();
  pending_settled.clear();
  recover();
}

void Store::Impl::recover() {
  // After a failed write RocksDB's log writer is unusable: close and reopen the database,
  // which replays its log, then reload memory from it. Blocking, on the store's thread, and
  // rare. Until it succeeds the node refuses writes (see recover_or_refuse()).
  last_recovery = now();
  marks.clear();  // they may describe an APPLY that never reached the disk
  // So may the id floor that lifted the write fence: raise it again until the syncer's next
  // APPLY (found by kvsim: a wiped node whose first APPLY failed to commit reused an id).
  fenced = options.await_syncer;
  try {
    db.reset();
    db = disk->open(options.dir).engine;
    load();
    if (committer) committer->resume(*db, submitted);
    degraded = false;
  } catch (const std::exception& e) {
    degraded = true;
    last_error = e.what();
    // Still serve what the disk holds, and only that: a read-only open writes nothing, so it
    // works on a full disk, and memory drops the changes that failed.
    try {
      db = disk->open(options.dir, /*read_only=*/true).engine;
      load();
    } catch (const std::exception&) {
      db.reset();
    }
  }
}

std::optional<Refusal> Store::Impl::recover_or_refuse() {
  if (!degraded) return std::nullopt;
  if (now() - last_recovery > std::chrono::seconds(1)) recover();
  if (!degraded) return std::nullopt;
  return storage_error();
}

Store::Store(StoreOptions options) : impl_(std::make_unique<Impl>()) {
  if (!valid_node_name(options.name)) {
    throw StoreError("node name '" + options.name + "' must be 1 to 8 lowercase letters");
  }
  impl_->options = std::move(options);
  const StoreSeams& seams = impl_->options.seams;
  impl_->disk = seams.disk ? seams.disk : &storage::real_disk();
  auto opened = impl_->disk->open(impl_->options.dir);
  impl_->db = std::move(opened.engine);
  if (opened.created) {
    impl_->meta.name = impl_->options.name;
    impl_->meta.incarnation = impl_->random();
    storage::Batch batch;
    batch.Put(kMetaKey, encode_meta(impl_->meta));
    const auto s = impl_->db->write(batch, true);
    if (!s.ok())
      throw StoreError("cannot initialise " + impl_->options.dir.string() + ": " + s.ToString());
  } else {
    impl_->load();
  }
  impl_->fenced = impl_->options.await_syncer;
  if (impl_->options.background_commit) {
    Impl* im = impl_.get();
    impl_->committer = std::make_unique<Committer>(
        *impl_->db, impl_->options.sync_writes,
        [im](const CommitResult& r) {
          std::function<void()> wake;
          {
            std::lock_guard lock(im->done_mu);
            im->done.push_back(r);
            wake = im->wake;
          }
          im->done_cv.notify_all();
          if (wake) wake();
        },
        seams.manual_commit ? CommitMode::kManual : CommitMode::kThread,
        impl_->options.apply_sync_delay);
  }
}

Store::~Store() {
  impl_->committer.reset();  // writes what is queued
  poll_commits();
  // A clean stop leaves no log for the next open to replay (nor a pile of logs, since an open
  // does not flush what it replays: rocksdb_disk.cpp). A failure loses nothing: the log stays.
  if (impl_->db && !impl_->degraded) impl_->db->flush_memtable();
}

void Store::set_commit_wakeup(std::function<void()> wake) {
  std::lock_guard lock(impl_->done_mu);
  impl_->wake = std::move(wake);
}

void Store::poll_commits() {
  std::deque<CommitResult> done;
  {
    std::lock_guard lock(impl_->done_mu);
    done.swap(impl_->done);
  }
  for (const auto& r : done) impl_->process(r);
}

void Store::flush() {
  if (impl_->committer) {
    impl_->committer->hurry();  // stamped changes waiting for company go now
    std::unique_lock lock(impl_->done_mu);
    impl_->done_cv.wait(lock, [&] {
      std::uint64_t last = impl_->completed;
      for (const auto& r : impl_->done) last = std::max(last, r.last);
      return last >= impl_->submitted;
    });
  }
  poll_commits();
}

bool Store::commit_next(std::size_t max_batches) {
  if (!impl_->committer || !impl_->committer->commit_next(max_batches)) return false;
  poll_commits();
  return true;
}

std::size_t Store::queued_commits() const {
  return impl_->committer ? impl_->committer->queued() : 0;
}

Commit Store::last_commit() const {
  return Commit(impl_->submitted);
}
bool Store::completed(Commit c) const {
  return impl_->completed >= c.ticket_;
}
std::optional<Refusal> Store::outcome(Commit c) const {
  if (c.empty() || !impl_->failed(c.ticket_)) return std::nullopt;
  return impl_->storage_error();
}

void Store::set_observer(std::function<void(const StoreEvent&)> observer) {
  impl_->observer = std::move(observer);
}

Result<Item> Store::Impl::commit_local(const std::string& id, Record rec, const char* op) {
  rec.version = ++meta.version;
  const std::uint64_t base_seq = rec.local_seq;
  rec.local_seq = ++meta.seq;
  const std::uint64_t seq = rec.local_seq;
  Item item = visible(id, rec);
  ChangeEntry entry{item, rec.stamp, base_seq};
  storage::Batch batch;
  batch.Put(item_key(id), encode_record(rec));
  batch.Put(change_key(seq), encode_change(entry));
  log_change(seq, std::move(entry));
  put(id, std::move(rec));
  // Queued before submit(): inline commits complete inside it.
  const std::uint64_t ticket = submitted + 1;  // the ticket submit() hands out next
  seq_by_ticket.emplace_back(ticket, seq);
  pending_events.emplace_back(ticket,
                              StoreEvent{StoreEvent::Kind::kLocal, op, item, seq, 0, meta.name});
  submit(batch);
  if (failed(ticket)) return storage_error();
  return item;
}

Result<Item> Store::create(std::string_view title) {
  if (!valid_title(title)) return bad_title();
  if (auto e = impl_->write_refusal()) return *e;
  auto& m = impl_->meta;
  const std::string id = make_item_id(++m.max_id_number, m.name);  // stored with the change
  Record rec;
  rec.title = std::string(title);
  return impl_->commit_local(id, std::move(rec), "create");
}

Result<Item> Store::get(std::string_view id) const {
  auto it = impl_->items.find(id);
  if (it == impl_->items.end()) {
    return Refusal{ErrorCode::kNotFound, "there is no item " + std::string(id)};
  }
  if (it->second.deleted) {
    return Refusal{ErrorCode::kDeleted, "item " + std::string(id) + " was deleted"};
  }
  return visible(it->first, it->second);
}

Result<Item> Store::update(const proto::msg::Update& req) {
  if (!req.completed && !req.title) {
    return Refusal{ErrorCode::kInvalidArgument, "an update must change the title or completion"};
  }
  if (req.title && !valid_title(*req.title)) return bad_title();
  if (auto e = impl_->write_refusal()) return *e;
  auto found = get(req.id);
  if (auto* e = std::get_if<Refusal>(&found)) return std::move(*e);
  Record rec = impl_->items.find(req.id)->second;
  if (req.completed) rec.completed = *req.completed;
  if (req.title) rec.title = *req.title;
  return impl_->commit_local(req.id, std::move(rec), "update");
}

Result<Item> Store::remove(std::string_view id) {
  if (auto e = impl_->write_refusal()) return *e;
  auto found = get(id);
  if (auto* e = std::get_if<Refusal>(&found)) return std::move(*e);
  Record rec = impl_->items.find(id)->second;
  rec.deleted = true;
  return impl_->commit_local(std::string(id), std::move(rec), "delete");
}

std::vector<Item> Store::list() const {
  std::vector<Item> out;
  for (const auto& [id, rec] : impl_->items) {
    if (!rec.deleted) out.push_back(visible(id, rec));
  }
  return out;
}

namespace {
std::size_t encoded_size(const Item& it) {
  return it.id.size() + it.title.size() + 16;
}
}  // namespace

proto::msg::ItemsReply Store::list_page(std::string_view after, std::uint64_t limit) const {
  proto::msg::ItemsReply out;
  if (limit == 0) limit = proto::kDefaultListLimit;
  auto it = after.empty() ? impl_->items.begin() : impl_->items.upper_bound(after);
  std::size_t bytes = 0;
  for (; it != impl_->items.end(); ++it) {
    if (it->second.deleted) continue;
    if (out.items.size() == limit || bytes >= proto::kBatchBytes) {
      out.next = out.items.back().id;
      break;
    }
    out.items.push_back(visible(it->first, it->second));
    bytes += encoded_size(out.items.back());
  }
  return out;
}

void Store::walk_live(
    std::string_view after,
    const std::function<bool(std::string_view id, std::string_view title)>& visit) const {
  auto it = after.empty() ? impl_->items.begin() : impl_->items.upper_bound(after);
  for (; it != impl_->items.end(); ++it) {
    if (!it->second.deleted && !visit(it->first, it->second.title)) return;
  }
}

proto::msg::Changes Store::fetch(std::uint64_t after_seq, std::uint64_t limit) const {
  const auto& im = *impl_;
  proto::msg::Changes out;
  limit = std::clamp<std::uint64_t>(limit, 1, proto::kMaxFetchLimit);
  // Only durable changes: a change the node could still lose in a crash must never be stamped,
  // or its sequence number could be reused for another change after the restart.
  out.seq_high = std::max(after_seq, im.durable_seq);
  std::size_t bytes = 0;
  for (auto it = im.changelog.upper_bound(after_seq);
       it != im.changelog.end() && it->first <= im.durable_seq; ++it) {
    if (out.changes.size() == limit || bytes >= proto::kBatchBytes) {
      out.seq_high = out.changes.back().seq;
      break;
    }
    out.changes.push_back(
        Change{it->first, it->second.value, it->second.base_stamp, it->second.base_seq});
    bytes += encoded_size(out.changes.back().item);
  }
  return out;
}

std::uint64_t Store::claim(std::uint64_t syncer_life) {
  impl_->syncer_life = std::max(impl_->syncer_life, syncer_life);
  return impl_->syncer_life;
}

Result<proto::msg::Applied> Store::apply(const proto::msg::Apply& batch) {
  auto& im = *impl_;
  if (auto e = im.recover_or_refuse()) return *e;
  if (auto e = im.check_apply(batch)) return *e;
  im.syncer_life = std::max(im.syncer_life, batch.syncer_life);
  storage::Batch wb;
  Meta next = im.next_meta(batch, wb);
  Impl::Decided decided = im.decide(batch, next);
  return im.commit_apply(batch, next, std::move(decided), wb);
}

std::optional<Refusal> Store::Impl::check_apply(const proto::msg::Apply& batch) const {
  if (batch.synced_upto > meta.seq) {
    return Refusal{ErrorCode::kInvalidArgument,
                   "the syncer claims changes up to " + std::to_string(batch.synced_upto) +
                       " but this node has only " + std::to_string(meta.seq) +
                       " (was its data directory replaced?)"};
  }
  for (const auto& c : batch.changes) {
    if (c.stamp == 0 || c.stamp > batch.upto_stamp || c.item.version != c.stamp ||
        !item_id_number(c.item.id) || (!c.item.deleted && c.item.title.empty())) {
      return Refusal{ErrorCode::kInvalidArgument,
                     "stamped change for '" + c.item.id + "' is invalid"};
    }
  }
  // A batch continues the node's applied stamps from this very syncer log: one that does not
  // was sent by a syncer that is gone (it sat in a socket while another caught the node up), or
  // comes from another log, and applying it could bring back what was deleted since (issue
  // 10, problem 5).
  if (meta.log_id != 0 && batch.log_id != meta.log_id && !batch.adopt) {
    return Refusal{ErrorCode::kStale,
                   "this APPLY comes from another syncer log than the one node " + meta.name +
                       " follows; refused"};
  }
  if (batch.incarnation != 0 && batch.incarnation != meta.incarnation) {
    return Refusal{ErrorCode::kStale, "this APPLY is for another life of node " + meta.name +
                                          "'s data directory (incarnation " +
                                          std::to_string(batch.incarnation) + "); refused"};
  }
  // Sent by a kvsync that is gone: a later one has claimed the node since, and what it was told
  // then must stay true (kvsim seeds 611286 and 626894: an APPLY of a syncer whose machine lost
  // power moved synced_upto past changes the new log never got).
  if (batch.syncer_life < syncer_life) {
    return Refusal{ErrorCode::kStale, "this APPLY comes from kvsync life " +
                                          std::to_string(batch.syncer_life) + ", but life " +
                                          std::to_string(syncer_life) + " has claimed node " +
                                          meta.name + " since; refused"};
  }
  if (batch.after_stamp != meta.applied_stamp) {
    return Refusal{ErrorCode::kStale,
                   "this APPLY continues from stamp " + std::to_string(batch.after_stamp) +
                       " but node " + meta.name + " has applied up to " +
                       std::to_string(meta.applied_stamp) +
                       "; it comes from a syncer that is gone or arrived late; refused"};
  }
  return std::nullopt;
}

// The batch's effect on the node's counters, and, for a full resync, forgetting what the syncer
// sends again (deletes into `wb`).
Meta Store::Impl::next_meta(const proto::msg::Apply& batch, storage::Batch& wb) {
  Meta next = meta;
  if (batch.log_id != 0) next.log_id = batch.log_id;
  next.syncer_stamp = std::max({next.syncer_stamp, batch.stamp_high, batch.upto_stamp});
  next.purged_upto = std::max(next.purged_upto, batch.purge_upto);
  if (batch.rebirth) {
    // This data directory is an older copy of the node: the syncer's cursor is past its
    // sequence, so the changes it holds are in the log (or older than what is there), and new
    // ones would reuse sequence numbers the cursor already passed. It takes a new life: a new
    // incarnation, every change it holds counted as synced, and (with reset) everything again
    // from the log (issue 10, problem 3).
    next.incarnation = random();
    next.synced_upto = next.seq;
  }
  if (batch.adopt && batch.log_id != meta.log_id) {
    // Marks describe the old log's stamps. Catching up from a rebuilt log, a change of this
    // node's counts as synced from the first batch on, while the value that beat it may come
    // in a later one (kvsim seed 604179): no session marks until the new log sends its own.
    marks.clear();
  }
  if (batch.reset) {
    // What this node held of other nodes' changes goes with the items: no marks until the
    // resync's last batch brings new ones.
    marks.clear();
    // A full resync: forget what the syncer will send again, keep pending local changes.
    const std::uint64_t y = std::max(next.synced_upto, batch.synced_upto);
    std::vector<std::string> forget;
    for (const auto& [id, rec] : items) {
      if (rec.local_seq <= y) forget.push_back(id);
    }
    for (const auto& id : forget) {
      wb.Delete(item_key(id));
      erase(id);
    }
    next.applied_stamp = 0;
  }
  next.applied_stamp = std::max(next.applied_stamp, batch.upto_stamp);
  next.synced_upto = std::max(next.synced_upto, batch.synced_upto);
  next.version = std::max(next.version, next.applied_stamp);
  next.max_id_number = std::max(next.max_id_number, batch.id_floor);

  return next;
}

// Every change of the batch against the state as the batch sees it (an earlier change in the
// same batch included): what rule R makes of each, nothing written yet.
Store::Impl::Decided Store::Impl::decide(const proto::msg::Apply& batch, Meta& next) {
  Decided out;
  auto& changed = out.changed;
  changed.reserve(batch.changes.size());
  // An id a batch names twice (the syncer never sends one, but a batch is input): the second
  // sees what the first chose.
  std::unordered_map<std::string_view, std::size_t> chosen;
  for (const auto& c : batch.changes) {
    const auto again = chosen.find(c.item.id);
    ItemMap::iterator at;
    bool exists = false;
    const Record* rec = nullptr;
    if (again != chosen.end()) {
      rec = &changed[again->second].record;
    } else {
      at = items.lower_bound(c.item.id);
      exists = at != items.end() && at->first == c.item.id;
      if (exists) rec = &at->second;
    }
    if (!stamped_change_applies(rec, c.item.deleted, c.stamp, next.synced_upto)) continue;
    const char* op = !rec ? "create" : c.item.deleted ? "delete" : "update";
    Record r;
    r.title = c.item.title;
    r.completed = c.item.completed;
    r.deleted = c.item.deleted;
    r.version = c.stamp;
    r.stamp = c.stamp;
    r.origin = c.origin;
    r.origin_seq = c.origin_seq;
    if (auto n = item_id_number(c.item.id)) next.max_id_number = std::max(next.max_id_number, *n);
    out.events.push_back(
        StoreEvent{StoreEvent::Kind::kSynced, op, visible(c.item.id, r), 0, c.stamp, c.origin});
    if (again != chosen.end()) {
      changed[again->second].record = std::move(r);
    } else {
      chosen.emplace(c.item.id, changed.size());
      changed.push_back({&c.item.id, std::move(r), at, exists});
    }
  }
  return out;
}

// Writes what decide() chose, drops the change-log entries no longer pending, compacts, keeps the
// log's cursors, and submits it all as one write.
Result<proto::msg::Applied> Store::Impl::commit_apply(const proto::msg::Apply& batch,
                                                      const Meta& next, Decided decided,
                                                      storage::Batch& wb) {
  auto& changed = decided.changed;
  auto& events = decided.events;
  // Change-log entries no longer pending: those now in the syncer's log, and the local changes
  // a stamped delete overruled.
  std::vector<std::uint64_t> drop;
  for (auto it = changelog.begin(); it != changelog.end() && it->first <= next.synced_upto; ++it) {
    drop.push_back(it->first);
  }
  for (const auto& ch : changed) {
    if (!ch.exists || ch.at->second.local_seq <= next.synced_upto) continue;
    if (auto of = changes_of.find(*ch.id); of != changes_of.end()) {
      for (auto seq : of->second) {
        if (seq > next.synced_upto) drop.push_back(seq);
      }
    }
  }
  for (auto seq : drop) {
    wb.Delete(change_key(seq));
    unlog_change(seq);
  }
  for (auto& ch : changed) {
    wb.Put(item_key(*ch.id), encode_record(ch.record));
    put_at(ch.at, ch.exists, *ch.id, std::move(ch.record));
  }
  // Compaction: tombstones every node has applied go, unless a local change is still pending.
  std::vector<std::string> purge;
  for (auto it = tombstones.begin(); it != tombstones.end() && it->first <= batch.purge_upto;
       ++it) {
    if (items.find(it->second)->second.local_seq <= next.synced_upto) purge.push_back(it->second);
  }
  for (const auto& id : purge) {
    wb.Delete(item_key(id));
    erase(id);
  }
  if (!batch.marks.empty()) {
    std::map<std::string, SessionMark, std::less<>> cursors;
    for (const auto& m : batch.marks) cursors[m.node] = m;
    for (const auto& [name, m] : log_cursors) {
      if (!cursors.count(name)) wb.Delete(std::string(kCursorPrefix) + name);
    }
    for (const auto& [name, m] : cursors) {
      auto old = log_cursors.find(name);
      if (old == log_cursors.end() || !(old->second == m)) {
        wb.Put(std::string(kCursorPrefix) + name, encode_cursor(m.incarnation, m.seq));
      }
    }
    log_cursors = std::move(cursors);
  }
  meta = next;
  if (!batch.hold) fenced = false;             // ids above id_floor are free
  const std::uint64_t ticket = submitted + 1;  // the ticket submit() hands out next
  pending_settled.emplace_back(ticket, Settled{next.applied_stamp, next.synced_upto});
  submit(wb, /*lazy=*/true);
  if (failed(ticket)) return storage_error();
  // Stamped changes are announced now, before their fsync: readers already see them (memory),
  // and the syncer resends everything above the durable applied stamp should this write be lost
  // (docs/sync.md, "The node's fsync"). Local changes are announced once durable; a stamped
  // change made after one still waiting goes out with it, so that subscribers see every item's
  // changes in the order memory took them.
  for (auto& e : events) {
    if (pending_events.empty()) {
      notify(e);
    } else {
      pending_events.emplace_back(pending_events.back().first, std::move(e));
    }
  }
  // Session marks are taken as given, lower ones too, from a batch that brings the node up to
  // the syncer's latest stamp (a cursor moved back must move them back).
  if (batch.marks_current) {
    for (const auto& m : batch.marks) marks[m.node] = m;
  }
  return proto::msg::Applied{next.applied_stamp, next.synced_upto, changed.size(),
                             next.incarnation,   digest,           changelog.size()};
}

proto::msg::Dumped Store::dump_stamped(std::string_view after, std::uint64_t limit) const {
  const auto& im = *impl_;
  proto::msg::Dumped out;
  out.seq = im.meta.seq;
  if (limit == 0) limit = proto::kDefaultListLimit;
  if (after.empty()) {
    for (const auto& [name, m] : im.log_cursors) out.cursors.push_back(m);
  }
  auto it = after.empty() ? im.items.begin() : im.items.upper_bound(after);
  std::size_t bytes = 0;
  for (; it != im.items.end(); ++it) {
    const Record& r = it->second;
    if (r.local_seq != 0 || r.stamp == 0) continue;  // not a stamped value (yet)
    if (out.items.size() == limit || bytes >= proto::kBatchBytes) {
      out.next = out.items.back().item.id;
      break;
    }
    out.items.push_back(StampedChange{r.stamp, r.origin, r.origin_seq, visible(it->first, r)});
    bytes += encoded_size(out.items.back().item) + r.origin.size() + 8;
  }
  return out;
}

SessionState Store::session(const std::vector<SessionMark>& want,
                            std::vector<SessionMark>& have) const {
  const auto& im = *impl_;
  SessionState state = SessionState::kCaughtUp;
  const auto worse = [&state](SessionState s) {
    if (static_cast<int>(s) > static_cast<int>(state)) state = s;
  };
  for (const auto& w : want) {
    if (w.node == im.meta.name) {
      // Our own changes: known at once. Another incarnation's, or a sequence we never reached
      // (the directory was replaced), cannot be waited for.
      have.push_back({im.meta.name, im.meta.incarnation, im.meta.seq});
      if (w.incarnation != im.meta.incarnation || w.seq > im.meta.seq) worse(SessionState::kNever);
      continue;
    }
    auto it = im.marks.find(w.node);
    if (it == im.marks.end()) {
      have.push_back({w.node, 0, 0});
      worse(SessionState::kBehind);
      continue;
    }
    have.push_back(it->second);
    if (it->second.incarnation != w.incarnation || it->second.seq < w.seq) {
      worse(SessionState::kBehind);
    }
  }
  return state;
}

std::vector<StoredItem> Store::dump() const {
  std::vector<StoredItem> out;
  out.reserve(impl_->items.size());
  for (const auto& [id, r] : impl_->items) {
    out.push_back(StoredItem{visible(id, r), r.stamp, r.origin, r.origin_seq, r.local_seq,
                             r.local_seq > impl_->meta.synced_upto});
  }
  return out;
}

std::vector<SessionMark> Store::marks() const {
  std::vector<SessionMark> out;
  for (const auto& [name, m] : impl_->marks) out.push_back(m);
  return out;
}

std::uint64_t Store::seq() const {
  return impl_->meta.seq;
}

std::uint64_t Store::incarnation() const {
  return impl_->meta.incarnation;
}

bool Store::degraded() const {
  return impl_->degraded;
}

void Store::tick() {
  impl_->recover_or_refuse();
}

NodeStatus Store::status() const {
  const auto& m = impl_->meta;
  NodeStatus s;
  s.name = m.name;
  s.incarnation = m.incarnation;
  s.version = m.version;
  s.seq = m.seq;
  s.applied_stamp = impl_->durable.applied_stamp;
  s.synced_upto = impl_->durable.synced_upto;
  s.memory_applied_stamp = m.applied_stamp;
  s.syncer_life = impl_->syncer_life;
  s.max_id_number = m.max_id_number;
  s.log_id = m.log_id;
  s.purged_upto = m.purged_upto;
  s.items = impl_->items.size() - impl_->tombstones.size();
  s.tombstones = impl_->tombstones.size();
  s.unsynced = impl_->changelog.size();
  s.syncer_stamp = std::max(m.syncer_stamp, m.applied_stamp);
  s.digest = impl_->digest;
  s.digest_stamp = m.applied_stamp;
  return s;
}

}  // namespace kv::node
