#include "sync/sync_log.hpp"

#include <map>
#include <set>
#include <span>
#include <string>
#include <unordered_map>

#include "storage/engine.hpp"
#include "sync/sync_log_format.hpp"

namespace kv::sync {

namespace {
constexpr std::string_view kMetaKey = "m";      // u8 format, varint counter, purged_upto, max id
constexpr std::string_view kEntryPrefix = "e";  // "e" + item id -> entry
// "k" + node name -> varint incarnation, cursor, mark (the mark is new in this format; a record
// without it has mark == cursor)
constexpr std::string_view kCursorPrefix = "k";
constexpr std::uint8_t kFormat = 1;

std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

struct Cursor {
  std::uint64_t incarnation = 0;
  std::uint64_t seq = 0;   // where the next FETCH starts
  std::uint64_t mark = 0;  // every change up to here is in the log (FETCH's safe_mark)
};
}  // namespace

struct SyncLog::Impl {
  SyncLogOptions options;
  std::unique_ptr<storage::Engine> db;
  std::uint64_t counter = 0;
  std::unordered_map<std::string, StampedChange> latest;
  std::set<std::pair<std::uint64_t, std::string>> by_stamp;
  std::map<std::string, Cursor> cursors;
  std::uint64_t max_id_number = 0;  // the largest id number ever in the log
  std::uint64_t purged_upto = 0;    // tombstones stamped at or below this are gone
  std::set<std::pair<std::uint64_t, std::string>> tombstones;  // (stamp, id) of deletes
  void saw_id(const std::string& id) {
    if (auto n = item_id_number(id)) max_id_number = std::max(max_id_number, *n);
  }
  void index(const StampedChange& e) {
    by_stamp.emplace(e.stamp, e.item.id);
    if (e.item.deleted) tombstones.emplace(e.stamp, e.item.id);
    saw_id(e.item.id);
  }
  void unindex(const StampedChange& e) {
    by_stamp.erase({e.stamp, e.item.id});
    tombstones.erase({e.stamp, e.item.id});
  }

  void put_meta(storage::Batch& b, std::uint64_t c) const {
    std::string v;
    proto::Writer w(v);
    w.u8(kFormat);
    w.varint(c);
    w.varint(purged_upto);
    w.varint(max_id_number);
    b.Put(kMetaKey, v);
  }
  void put_cursor(storage::Batch& b, const std::string& node, const Cursor& c) const {
    std::string v;
    proto::Writer w(v);
    w.varint(c.incarnation);
    w.varint(c.seq);
    w.varint(c.mark);
    b.Put(std::string(kCursorPrefix) + node, v);
  }
  void write(storage::Batch& b) {
    const auto s = db->write(b, options.sync_writes);
    if (!s.ok()) throw StoreError("syncer log write failed: " + s.ToString());
  }
  [[noreturn]] void corrupt(const std::string& what) const {
    throw StoreError("syncer data directory " + options.dir.string() + ": " + what);
  }
  void load();
};

void SyncLog::Impl::load() {
  std::string v;
  if (!db->get(kMetaKey, v).ok()) corrupt("the meta record is missing");
  proto::Reader r(bytes_of(v));
  if (r.u8() != kFormat) corrupt("unknown format");
  counter = r.varint();
  purged_upto = r.varint();
  max_id_number = r.varint();
  if (!r.done()) corrupt("the meta record is corrupt");
  auto st = db->scan(kEntryPrefix, [&](std::string_view key, std::string_view value) {
    auto e = decode_entry(value);
    if (!e || e->item.id != key.substr(1) || e->stamp > counter) {
      corrupt("log entry '" + std::string(key.substr(1)) + "' is corrupt");
    }
    index(*e);
    latest.emplace(e->item.id, std::move(*e));
    return true;
  });
  if (st.ok()) {
    st = db->scan(kCursorPrefix, [&](std::string_view key, std::string_view value) {
      proto::Reader cr(bytes_of(value));
      Cursor c{cr.varint(), cr.varint()};
      c.mark = cr.at_end() ? c.seq : cr.varint();
      if (!cr.done() || c.mark > c.seq) corrupt("a node cursor is corrupt");
      cursors[std::string(key.substr(1))] = c;
      return true;
    });
  }
  if (!st.ok()) corrupt(st.ToString());
}

SyncLog::SyncLog(SyncLogOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  storage::Disk& disk = impl_->options.disk ? *impl_->options.disk : storage::real_disk();
  auto opened = disk.open(impl_->options.dir);
  impl_->db = std::move(opened.engine);
  if (opened.created) {
    storage::Batch b;
    impl_->put_meta(b, 0);
    impl_->write(b);
  } else {
    impl_->load();
  }
}

SyncLog::~SyncLog() = default;

std::uint64_t SyncLog::counter() const {
  return impl_->counter;
}
std::size_t SyncLog::size() const {
  return impl_->latest.size();
}

std::uint64_t SyncLog::cursor(const std::string& node, std::uint64_t incarnation) const {
  auto it = impl_->cursors.find(node);
  if (it == impl_->cursors.end() || it->second.incarnation != incarnation) return 0;
  return it->second.seq;
}

std::uint64_t SyncLog::mark(const std::string& node, std::uint64_t incarnation) const {
  auto it = impl_->cursors.find(node);
  if (it == impl_->cursors.end() || it->second.incarnation != incarnation) return 0;
  return it->second.mark;
}

SyncLog::Stamped SyncLog::stamp(const std::string& node, std::uint64_t incarnation,
                                const std::vector<Change>& changes, std::uint64_t next_cursor,
                                std::uint64_t safe_mark) {
  auto& im = *impl_;
  Stamped out;
  const std::uint64_t s = im.counter + 1;
  std::unordered_map<std::string, std::size_t> in_batch;  // a fetch holds each id at most once
  for (const auto& c : changes) {
    if (in_batch.count(c.item.id)) continue;
    auto it = im.latest.find(c.item.id);
    StampedChange e{s, node, c.seq, c.item};
    e.item.version = s;
    if (it == im.latest.end() && c.base_stamp > 0 && c.base_stamp <= im.purged_upto) {
      // Made on a stamped value the log no longer holds: only a compacted delete takes an item
      // out of the log, and a delete beats any update (rule R). Stamp the delete again.
      e.item.deleted = true;
      out.redeleted.push_back(c);
    } else if (it != im.latest.end() &&
               !stamped_beats(c.item.deleted, s, it->second.item.deleted, it->second.stamp)) {
      out.dropped.push_back(c);
      continue;
    } else if (it == im.latest.end()) {
      out.created.push_back(c.item.id);
    }
    in_batch.emplace(c.item.id, out.accepted.size());
    out.accepted.push_back(std::move(e));
  }
  const Cursor cur{incarnation, next_cursor, std::min(safe_mark, next_cursor)};
  storage::Batch b;
  for (const auto& e : out.accepted) b.Put(std::string(kEntryPrefix) + e.item.id, encode_entry(e));
  im.put_cursor(b, node, cur);
  const std::uint64_t max_id_before = im.max_id_number;
  for (const auto& e : out.accepted) im.saw_id(e.item.id);  // stored with the meta record
  if (!out.accepted.empty()) im.put_meta(b, s);
  try {
    im.write(b);
  } catch (...) {
    im.max_id_number = max_id_before;
    throw;
  }

  im.cursors[node] = cur;
  if (out.accepted.empty()) return out;
  im.counter = s;
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

std::vector<SessionMark> SyncLog::marks() const {
  std::vector<SessionMark> out;
  for (const auto& [node, c] : impl_->cursors) {
    out.push_back({node, c.incarnation, c.mark});
  }
  return out;
}

void SyncLog::set_cursor(const std::string& node, std::uint64_t incarnation, std::uint64_t seq) {
  const Cursor cur{incarnation, seq, seq};
  storage::Batch b;
  impl_->put_cursor(b, node, cur);
  impl_->write(b);
  impl_->cursors[node] = cur;
}

void SyncLog::observe_stamp(std::uint64_t stamp) {
  if (stamp <= impl_->counter) return;
  storage::Batch b;
  impl_->put_meta(b, stamp);
  impl_->write(b);
  impl_->counter = stamp;
}

proto::msg::Apply SyncLog::next_batch(std::uint64_t after, std::size_t limit,
                                      std::uint64_t synced_upto) const {
  const auto& im = *impl_;
  proto::msg::Apply batch;
  batch.synced_upto = synced_upto;
  batch.id_floor = im.max_id_number;
  batch.purge_upto = im.purged_upto;
  batch.upto_stamp = std::max(after, im.counter);
  std::size_t bytes = 0;
  for (auto it = im.by_stamp.lower_bound({after + 1, std::string{}}); it != im.by_stamp.end();
       ++it) {
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

std::uint64_t SyncLog::purged_upto() const {
  return impl_->purged_upto;
}

std::size_t SyncLog::purge(std::uint64_t horizon) {
  auto& im = *impl_;
  if (horizon <= im.purged_upto) return 0;
  std::vector<std::string> gone;
  for (auto it = im.tombstones.begin(); it != im.tombstones.end() && it->first <= horizon; ++it) {
    gone.push_back(it->second);
  }
  // Nothing to drop: leave purged_upto where it is, so the nodes need not be told anything.
  if (gone.empty()) return 0;
  const std::uint64_t before = im.purged_upto;
  im.purged_upto = horizon;
  storage::Batch b;
  for (const auto& id : gone) b.Delete(std::string(kEntryPrefix) + id);
  im.put_meta(b, im.counter);
  try {
    im.write(b);
  } catch (...) {
    im.purged_upto = before;
    throw;
  }
  for (const auto& id : gone) {
    auto it = im.latest.find(id);
    im.unindex(it->second);
    im.latest.erase(it);
  }
  return gone.size();
}

std::vector<StampedChange> SyncLog::snapshot() const {
  std::vector<StampedChange> out;
  out.reserve(impl_->latest.size());
  for (const auto& [stamp, id] : impl_->by_stamp) out.push_back(impl_->latest.at(id));
  return out;
}

}  // namespace kv::sync
