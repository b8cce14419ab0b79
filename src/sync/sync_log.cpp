#include "sync/sync_log.hpp"

#include <deque>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <span>
#include <string>
#include <unordered_map>

#include "core/bytes.hpp"
#include "storage/engine.hpp"

namespace kv::sync {

namespace {
std::string node_key(const std::string& name) {
  return std::string(kNodePrefix) + name;
}

std::string linux_boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;  // empty when unknown: every unclean close then counts as a possible power loss
}
}  // namespace

struct SyncLog::Impl {
  SyncLogOptions options;
  std::unique_ptr<storage::Engine> db;
  bool closed_cleanly = true;
  LogMeta meta;
  std::unordered_map<std::string, StampedChange> latest;
  std::set<std::pair<std::uint64_t, std::string>> by_stamp;
  std::set<std::pair<std::uint64_t, std::string>> tombstones;  // (stamp, id) of deletes
  std::map<std::string, NodeRecord> nodes;
  // Per node, its cursor by the counter at which it moved there (stamp -> cursor), from the
  // last value at or below its applied stamp on: what an APPLY up to some stamp may tell it.
  std::map<std::string, std::map<std::uint64_t, std::uint64_t>> history;
  std::uint64_t marks_version = 0;
  std::string boot;           // this machine's boot id
  bool boot_changed = false;  // the log was last opened on another boot
  // Stamp writes not yet synced (sync_writes only), oldest first: what each moved, so that the
  // durable state can be told apart (SyncLog::durable_stamp, durable_cursor).
  struct Unsynced {
    std::uint64_t write = 0;       // its number among stamp writes (sync_point)
    std::string node;              // whose cursor it moved
    std::uint64_t old_cursor = 0;  // from here
    std::uint64_t stamp = 0;       // the stamp it gave that node's changes (0: none)
  };
  std::deque<Unsynced> unsynced;
  std::uint64_t stamp_writes = 0;

  void saw_id(const std::string& id) {
    if (auto n = item_id_number(id)) meta.max_id_number = std::max(meta.max_id_number, *n);
  }
  std::uint64_t digest = 0;  // item_digest of the live entries
  void index(const StampedChange& e) {
    by_stamp.emplace(e.stamp, e.item.id);
    if (e.item.deleted) tombstones.emplace(e.stamp, e.item.id);
    if (!e.item.deleted) digest += item_digest(e.item);
    saw_id(e.item.id);
  }
  void unindex(const StampedChange& e) {
    by_stamp.erase({e.stamp, e.item.id});
    tombstones.erase({e.stamp, e.item.id});
    if (!e.item.deleted) digest -= item_digest(e.item);
  }
  void put_meta(storage::Batch& b, const LogMeta& m) const { b.Put(kMetaKey, encode_meta(m)); }
  // Changes the meta record alone, synced; memory follows once it is written (throws else).
  template <class Change>
  void update_meta(Change change) {
    LogMeta next = meta;
    change(next);
    storage::Batch b;
    put_meta(b, next);
    write(b, true);
    meta = next;
  }
  void put_node(storage::Batch& b, const std::string& name, const NodeRecord& n) const {
    b.Put(node_key(name), encode_node(n));
  }
  void delete_history(storage::Batch& b, const std::string& name) {
    auto it = history.find(name);
    if (it == history.end()) return;
    for (const auto& [stamp, seq] : it->second) b.Delete(history_key(name, stamp));
    history.erase(it);
  }
  void write(storage::Batch& b, bool sync) {
    const auto s = db->write(b, sync);
    if (!s.ok()) throw StoreError("syncer log write failed: " + s.ToString());
    if (sync) unsynced.clear();  // a synced write makes every earlier one durable too
  }
  void write(storage::Batch& b) { write(b, options.sync_writes); }
  [[noreturn]] void corrupt(const std::string& what) const {
    throw StoreError("syncer data directory " + options.dir.string() + ": " + what);
  }
  std::uint64_t random() const {
    if (options.random) return options.random();
    std::random_device rd;
    return (std::uint64_t{rd()} << 32) | rd();
  }
  void load();
};

void SyncLog::Impl::load() {
  std::string v;
  if (!db->get(kMetaKey, v).ok()) corrupt("the meta record is missing");
  auto m = decode_meta(v);
  if (!m) corrupt("the meta record is corrupt or of an unknown format");
  meta = *m;
  auto st = db->scan(kEntryPrefix, [&](std::string_view key, std::string_view value) {
    auto e = decode_entry(value);
    if (!e || e->item.id != key.substr(1) || e->stamp > meta.counter) {
      corrupt("log entry '" + std::string(key.substr(1)) + "' is corrupt");
    }
    index(*e);
    latest.emplace(e->item.id, std::move(*e));
    return true;
  });
  if (st.ok()) {
    st = db->scan(kNodePrefix, [&](std::string_view key, std::string_view value) {
      auto n = decode_node(value);
      if (!n || !valid_node_name(key.substr(1))) corrupt("a node record is corrupt");
      nodes[std::string(key.substr(1))] = *n;
      return true;
    });
  }
  if (st.ok()) {
    st = db->scan(kHistoryPrefix, [&](std::string_view key, std::string_view value) {
      auto h = decode_history(key, value);
      if (!h) corrupt("a cursor history record is corrupt");
      history[h->name][h->stamp] = h->cursor;
      return true;
    });
  }
  if (!st.ok()) corrupt(st.ToString());
  if (meta.log_id == 0) meta.log_id = random() | 1;  // written before logs had an id
}

SyncLog::SyncLog(SyncLogOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  storage::Disk& disk = impl_->options.disk ? *impl_->options.disk : storage::real_disk();
  auto opened = disk.open(impl_->options.dir);
  impl_->db = std::move(opened.engine);
  if (opened.created) {
    impl_->meta.log_id = impl_->random() | 1;  // never 0, which means "none"
    impl_->meta.unverified = true;             // it knows none of the nodes' stamps yet
  } else {
    impl_->load();
    impl_->closed_cleanly = !impl_->meta.open;
  }
  impl_->boot = impl_->options.boot_id ? impl_->options.boot_id() : linux_boot_id();
  impl_->boot_changed = impl_->boot.empty() || impl_->boot != impl_->meta.boot;
  // Marked open until a clean close; synced whatever the durability: a log whose creation a
  // power loss undid would be a directory without its meta record, which refuses to open
  // (found by kvsim, power-loss). The sync also makes durable whatever a crashed process on
  // this boot had written without syncing.
  impl_->meta.open = true;
  impl_->meta.boot = impl_->boot;
  // A new life for this process, durable (the write below syncs) before any node hears of it: a
  // life number handed out again could not tell this syncer's APPLYs from a dead one's.
  ++impl_->meta.life;
  storage::Batch b;
  impl_->put_meta(b, impl_->meta);
  impl_->write(b, true);
}

void SyncLog::leave_open() {
  impl_->db.reset();
}

SyncLog::~SyncLog() {
  if (!impl_ || !impl_->db) return;
  LogMeta meta = impl_->meta;
  meta.open = false;
  storage::Batch b;
  impl_->put_meta(b, meta);
  impl_->db->write(b, true);  // a failure only means the next open takes it for a crash
}

std::uint64_t SyncLog::counter() const {
  return impl_->meta.counter;
}
std::size_t SyncLog::size() const {
  return impl_->latest.size();
}
std::uint64_t SyncLog::log_id() const {
  return impl_->meta.log_id;
}
std::uint64_t SyncLog::rebuild_id() const {
  return impl_->meta.rebuild_id;
}
std::uint64_t SyncLog::begin_rebuild() {
  auto& im = *impl_;
  if (im.meta.rebuild_id != 0) return im.meta.rebuild_id;
  const std::uint64_t id = im.random() | 1;
  im.update_meta([id](LogMeta& m) { m.rebuild_id = id; });
  return id;
}
std::uint64_t SyncLog::life() const {
  return impl_->meta.life;
}
void SyncLog::raise_life(std::uint64_t above) {
  if (impl_->meta.life > above) return;
  impl_->update_meta([above](LogMeta& m) { m.life = above + 1; });
}
bool SyncLog::fresh() const {
  return impl_->meta.counter == 0 && impl_->nodes.empty() && impl_->latest.empty();
}
bool SyncLog::closed_cleanly() const {
  return impl_->closed_cleanly;
}
bool SyncLog::may_have_lost_writes() const {
  return !impl_->closed_cleanly && impl_->boot_changed;
}
bool SyncLog::sync_writes() const {
  return impl_->options.sync_writes;
}
bool SyncLog::unverified() const {
  return impl_->meta.unverified;
}
void SyncLog::set_unverified(bool unverified) {
  auto& im = *impl_;
  if (im.meta.unverified == unverified) return;
  im.update_meta([unverified](LogMeta& m) { m.unverified = unverified; });
}
std::uint64_t SyncLog::purged_upto() const {
  return impl_->meta.purged_upto;
}
std::uint64_t SyncLog::max_id_number() const {
  return impl_->meta.max_id_number;
}
std::uint64_t SyncLog::digest() const {
  return impl_->digest;
}
std::uint64_t SyncLog::marks_version() const {
  return impl_->marks_version;
}

std::optional<NodeRecord> SyncLog::node(const std::string& name) const {
  auto it = impl_->nodes.find(name);
  if (it == impl_->nodes.end()) return std::nullopt;
  return it->second;
}

std::vector<std::pair<std::string, NodeRecord>> SyncLog::nodes() const {
  return {impl_->nodes.begin(), impl_->nodes.end()};
}

void SyncLog::admit(const std::string& name, std::uint64_t incarnation, std::uint64_t applied,
                    std::uint64_t cursor) {
  auto& im = *impl_;
  NodeRecord rec{incarnation, cursor, applied, false, {}, 0, 0};
  if (auto old = im.nodes.find(name); old != im.nodes.end()) {
    rec.retired = old->second.retired;
    if (old->second.incarnation != incarnation) rec.retired.push_back(old->second.incarnation);
    if (rec.retired.size() > kMaxRetired) rec.retired.erase(rec.retired.begin());
  }
  storage::Batch b;
  im.delete_history(b, name);
  im.put_node(b, name, rec);
  b.Put(history_key(name, im.meta.counter), encode_history_cursor(cursor));
  im.write(b, true);
  im.nodes[name] = rec;
  im.history[name][im.meta.counter] = cursor;
  ++im.marks_version;
}

bool SyncLog::forget(const std::string& name) {
  auto& im = *impl_;
  auto it = im.nodes.find(name);
  if (it == im.nodes.end() || it->second.forgotten) return false;
  NodeRecord rec = it->second;
  rec.forgotten = true;
  storage::Batch b;
  im.put_node(b, name, rec);
  im.delete_history(b, name);
  im.write(b, true);
  it->second = rec;
  ++im.marks_version;
  return true;
}

void SyncLog::readmit(const std::string& name) {
  auto& im = *impl_;
  auto it = im.nodes.find(name);
  if (it == im.nodes.end() || !it->second.forgotten) return;
  NodeRecord rec = it->second;
  rec.forgotten = false;
  storage::Batch b;
  im.put_node(b, name, rec);
  b.Put(history_key(name, im.meta.counter), encode_history_cursor(rec.cursor));
  im.write(b, true);
  it->second = rec;
  im.history[name][im.meta.counter] = rec.cursor;
  ++im.marks_version;
}

void SyncLog::recheck(const std::string& name, std::uint64_t seq) {
  auto& im = *impl_;
  auto it = im.nodes.find(name);
  if (it == im.nodes.end() || it->second.recheck_upto >= seq) return;
  NodeRecord rec = it->second;
  rec.recheck_upto = seq;
  storage::Batch b;
  im.put_node(b, name, rec);
  im.write(b, true);
  it->second = rec;
}

void SyncLog::note_applied(const std::string& name, std::uint64_t applied) {
  auto& im = *impl_;
  auto it = im.nodes.find(name);
  if (it == im.nodes.end()) return;
  storage::Batch b;
  bool changed = it->second.applied != applied;
  it->second.applied = applied;
  // History the node no longer needs: keep the last value at or below its applied stamp.
  auto h = im.history.find(name);
  if (h != im.history.end()) {
    auto keep = h->second.upper_bound(applied);
    if (keep != h->second.begin()) --keep;
    for (auto e = h->second.begin(); e != keep;) {
      b.Delete(history_key(name, e->first));
      e = h->second.erase(e);
      changed = true;
    }
  }
  if (!changed) return;
  im.put_node(b, name, it->second);
  im.write(b, false);
}

std::uint64_t SyncLog::cursor(const std::string& node, std::uint64_t incarnation) const {
  auto it = impl_->nodes.find(node);
  if (it == impl_->nodes.end() || it->second.incarnation != incarnation) return 0;
  return it->second.cursor;
}

std::uint64_t SyncLog::cursor_at(const std::string& node, std::uint64_t incarnation,
                                 std::uint64_t stamp) const {
  auto it = impl_->nodes.find(node);
  if (it == impl_->nodes.end() || it->second.incarnation != incarnation) return 0;
  auto h = impl_->history.find(node);
  if (h == impl_->history.end() || h->second.empty()) return it->second.cursor;
  auto e = h->second.upper_bound(stamp);
  // Below the oldest value kept: before the node was admitted (that value is 0 then), or below
  // history dropped once the node had applied past it (it was restored from an older copy
  // since). The oldest value kept is then too high, which only makes changes of the node count
  // as synced early; too low, they would stay pending while a later value of theirs goes by.
  if (e == h->second.begin()) return e->second;
  return std::prev(e)->second;
}

std::vector<SessionMark> SyncLog::marks() const {
  std::vector<SessionMark> out;
  for (const auto& [node, c] : impl_->nodes) {
    if (!c.forgotten) out.push_back({node, c.incarnation, c.cursor});
  }
  return out;
}

std::vector<SessionMark> SyncLog::marks_at(std::uint64_t stamp) const {
  std::vector<SessionMark> out;
  for (const auto& [node, c] : impl_->nodes) {
    if (!c.forgotten) out.push_back({node, c.incarnation, cursor_at(node, c.incarnation, stamp)});
  }
  return out;
}

SyncLog::Stamped SyncLog::stamp(const std::string& node, std::uint64_t incarnation,
                                const std::vector<Change>& changes, std::uint64_t next_cursor) {
  auto& im = *impl_;
  Stamped out;
  const std::uint64_t s = im.meta.counter + 1;
  // A fetch may hold several changes of one item, oldest first: the latest one counts.
  std::unordered_map<std::string, std::size_t> latest_in_fetch;
  for (std::size_t i = 0; i < changes.size(); ++i) latest_in_fetch[changes[i].item.id] = i;
  const auto known = im.nodes.find(node);
  if (known == im.nodes.end() || known->second.incarnation != incarnation ||
      known->second.forgotten) {
    throw StoreError("the syncer's log does not know node " + node + " in this incarnation");
  }
  // Whether each change was made on a value the log held (stamped, or the node's own change
  // behind its cursor), and whether it descends from what the node held when it missed
  // compaction (at or below recheck_upto). Both follow a change's base within this fetch: a
  // write made after the resync on a pending change kept through it is such a change too
  // (found by kvsim, seed 78852).
  struct Lineage {
    bool was_in_log = false;
    bool check_compacted = false;
  };
  std::unordered_map<std::uint64_t, Lineage> lineage;
  const NodeRecord& known_rec = known->second;
  for (const Change& c : changes) {
    Lineage l;
    if (auto base = lineage.find(c.base_seq); c.base_seq != 0 && base != lineage.end()) {
      l = base->second;
    } else {
      l.was_in_log = c.base_stamp > 0 || (c.base_seq > 0 && c.base_seq <= known_rec.cursor);
      l.check_compacted = c.base_seq != 0 && c.base_seq <= known_rec.recheck_upto;
    }
    l.check_compacted = l.check_compacted || c.seq <= known_rec.recheck_upto;
    lineage[c.seq] = l;
  }
  for (std::size_t i = 0; i < changes.size(); ++i) {
    const Change& c = changes[i];
    if (latest_in_fetch.at(c.item.id) != i) continue;
    // Behind the cursor: the log has it (stamped, or lost to a delete). Stamped again, it would
    // beat later values of its item.
    if (c.seq <= known->second.cursor) continue;
    auto it = im.latest.find(c.item.id);
    StampedChange e{s, node, c.seq, c.item};
    e.item.version = s;
    // Made on a value the log held (stamped, or the node's own change behind its cursor), of an
    // item the log no longer holds: only a compacted delete takes an item out of the log, and a
    // delete beats any update (rule R). Stamp the delete again.
    const Lineage& l = lineage.at(c.seq);
    if (it == im.latest.end() && l.was_in_log && l.check_compacted) {
      e.item.deleted = true;
      out.redeleted.push_back(c);
    } else if (it != im.latest.end() &&
               !stamped_beats(c.item.deleted, s, it->second.item.deleted, it->second.stamp)) {
      out.dropped.push_back(c);
      continue;
    } else if (it == im.latest.end()) {
      out.created.push_back(c.item.id);
    }
    out.accepted.push_back(std::move(e));
  }
  const std::uint64_t at = out.accepted.empty() ? im.meta.counter : s;
  NodeRecord rec = known->second;
  const bool moved = rec.cursor != next_cursor;
  rec.cursor = next_cursor;
  LogMeta meta = im.meta;
  for (const auto& e : out.accepted) {
    if (auto n = item_id_number(e.item.id)) meta.max_id_number = std::max(meta.max_id_number, *n);
  }
  if (!out.accepted.empty()) meta.counter = s;
  storage::Batch b;
  for (const auto& e : out.accepted) b.Put(std::string(kEntryPrefix) + e.item.id, encode_entry(e));
  im.put_node(b, node, rec);
  b.Put(history_key(node, at), encode_history_cursor(next_cursor));
  if (!(meta == im.meta)) im.put_meta(b, meta);
  im.write(b, false);  // throws, changing nothing, when it fails; sync_now() makes it durable

  ++im.stamp_writes;
  if (im.options.sync_writes && (moved || !out.accepted.empty())) {
    im.unsynced.push_back(
        {im.stamp_writes, node, known->second.cursor, out.accepted.empty() ? 0 : s});
  }
  im.meta = meta;
  im.nodes[node] = rec;
  im.history[node][at] = next_cursor;
  if (moved) ++im.marks_version;
  if (out.accepted.empty()) return out;
  out.stamp = s;
  for (const auto& e : out.accepted) {
    auto it = im.latest.find(e.item.id);
    if (it != im.latest.end()) {
      im.unindex(it->second);
      it->second = e;
    } else {
      im.latest.emplace(e.item.id, e);
    }
    im.index(e);
  }
  return out;
}

void SyncLog::observe_stamp(std::uint64_t stamp) {
  auto& im = *impl_;
  if (stamp <= im.meta.counter) return;
  im.update_meta([stamp](LogMeta& m) { m.counter = stamp; });
}

proto::msg::Apply SyncLog::next_batch(std::uint64_t after, std::size_t limit,
                                      std::uint64_t cap) const {
  const auto& im = *impl_;
  proto::msg::Apply batch;
  batch.id_floor = im.meta.max_id_number;
  batch.purge_upto = im.meta.purged_upto;
  batch.log_id = im.meta.log_id;
  batch.upto_stamp = std::max(after, std::min(im.meta.counter, cap));
  std::size_t bytes = 0;
  for (auto it = im.by_stamp.lower_bound({after + 1, std::string{}});
       it != im.by_stamp.end() && it->first <= cap; ++it) {
    // Whole stamps only: a node records that it has every stamp up to upto_stamp. One stamp
    // holds one FETCH (at most kBatchBytes), so a batch stays under twice that.
    if ((batch.changes.size() >= limit || bytes >= proto::kBatchBytes) &&
        it->first != batch.changes.back().stamp) {
      batch.upto_stamp = batch.changes.back().stamp;
      break;
    }
    const auto& e = im.latest.at(it->second);
    bytes += e.item.id.size() + e.item.title.size() + e.origin.size() + 24;
    batch.changes.push_back(e);
  }
  return batch;
}

bool SyncLog::all_durable() const {
  return impl_->unsynced.empty();
}

std::uint64_t SyncLog::durable_stamp() const {
  for (const auto& u : impl_->unsynced) {
    if (u.stamp != 0) return u.stamp - 1;
  }
  return impl_->meta.counter;
}

std::uint64_t SyncLog::durable_cursor(const std::string& node, std::uint64_t incarnation) const {
  for (const auto& u : impl_->unsynced) {
    if (u.node == node) return cursor(node, incarnation) == 0 ? 0 : u.old_cursor;
  }
  return cursor(node, incarnation);
}

std::uint64_t SyncLog::sync_point() const {
  return impl_->stamp_writes;
}

std::optional<std::string> SyncLog::sync_now() const {
  const auto s = impl_->db->sync_log();
  if (s.ok()) return std::nullopt;
  return "syncer log sync failed: " + s.ToString();
}

void SyncLog::synced(std::uint64_t point) {
  auto& u = impl_->unsynced;
  while (!u.empty() && u.front().write <= point) u.pop_front();
}

std::size_t SyncLog::purge(std::uint64_t horizon) {
  auto& im = *impl_;
  if (horizon <= im.meta.purged_upto) return 0;
  std::vector<std::string> gone;
  for (auto it = im.tombstones.begin(); it != im.tombstones.end() && it->first <= horizon; ++it) {
    gone.push_back(it->second);
  }
  // Nothing to drop: leave purged_upto where it is, so the nodes need not be told anything.
  if (gone.empty()) return 0;
  LogMeta meta = im.meta;
  meta.purged_upto = std::min(horizon, meta.counter);
  storage::Batch b;
  for (const auto& id : gone) b.Delete(std::string(kEntryPrefix) + id);
  im.put_meta(b, meta);
  im.write(b);
  im.meta = meta;
  for (const auto& id : gone) {
    auto it = im.latest.find(id);
    im.unindex(it->second);
    im.latest.erase(it);
  }
  return gone.size();
}

void SyncLog::rebuild(const Rebuilt& r) {
  auto& im = *impl_;
  storage::Batch b;
  for (const auto& [id, e] : im.latest) b.Delete(std::string(kEntryPrefix) + id);
  for (const auto& [name, rec] : im.nodes) b.Delete(node_key(name));
  for (const auto& [name, h] : im.history) {
    for (const auto& [stamp, seq] : h) b.Delete(history_key(name, stamp));
  }
  LogMeta meta{r.counter,
               std::min(r.purged_upto, r.counter),
               r.max_id_number,
               im.meta.rebuild_id != 0 ? im.meta.rebuild_id : im.random() | 1,
               true,
               0,
               false,
               im.boot,
               im.meta.life};
  for (const auto& e : r.entries) {
    b.Put(std::string(kEntryPrefix) + e.item.id, encode_entry(e));
    if (auto n = item_id_number(e.item.id)) meta.max_id_number = std::max(meta.max_id_number, *n);
  }
  for (const auto& [name, rec] : r.nodes) {
    im.put_node(b, name, rec);
    b.Put(history_key(name, r.counter), encode_history_cursor(rec.cursor));
  }
  im.put_meta(b, meta);
  im.write(b, true);
  im.meta = meta;
  im.latest.clear();
  im.by_stamp.clear();
  im.tombstones.clear();
  im.digest = 0;
  for (const auto& e : r.entries) {
    im.latest.emplace(e.item.id, e);
    im.index(e);
  }
  im.nodes.clear();
  im.history.clear();
  for (const auto& [name, rec] : r.nodes) {
    im.nodes[name] = rec;
    im.history[name][r.counter] = rec.cursor;
  }
  ++im.marks_version;
}

std::vector<StampedChange> SyncLog::snapshot() const {
  std::vector<StampedChange> out;
  out.reserve(impl_->latest.size());
  for (const auto& [stamp, id] : impl_->by_stamp) out.push_back(impl_->latest.at(id));
  return out;
}

}  // namespace kv::sync
