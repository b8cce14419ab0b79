#include "node/store.hpp"

#include <rocksdb/iterator.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <map>
#include <random>
#include <unordered_map>

#include "common/bytes.hpp"
#include "common/db.hpp"
#include "node/store_format.hpp"

namespace kv::node {

using proto::ErrorCode;
using proto::msg::Error;

struct Store::Impl {
  StoreOptions options;
  std::unique_ptr<rocksdb::DB> db;
  Meta meta;
  std::unordered_map<std::string, Record> items;
  // Local changes not yet known to be in the syncer's log: seq -> item id. Only the latest local
  // change of an item is kept (older ones are superseded and would fetch the same value).
  std::map<std::uint64_t, std::string> changelog;
  std::uint64_t tombstones = 0;
  std::function<void(const StoreEvent&)> observer;

  bool dirty(const Record& r) const { return r.local_seq > meta.synced_upto; }

  void load();
  rocksdb::Status commit(rocksdb::WriteBatch& batch) {
    batch.Put(kMetaKey, encode_meta(meta));
    return db::write(*db, batch, options.sync_writes);
  }
  void notify(const StoreEvent& e) const {
    if (observer) observer(e);
  }
  Error storage_error(const rocksdb::Status& s) const {
    return Error{ErrorCode::kStorage, "the node could not commit the change: " + s.ToString()};
  }
  // A local change of `id` to `rec`: takes the next version and sequence number.
  Result<Item> commit_local(const std::string& id, Record rec, const char* op);
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

Error bad_title() {
  return Error{ErrorCode::kInvalidArgument, "a title must be 1 to " +
                                                std::to_string(proto::kMaxTitleBytes) +
                                                " bytes on one line, not only spaces"};
}
}  // namespace

void Store::Impl::load() {
  std::string value;
  const rocksdb::Status s = db->Get(rocksdb::ReadOptions(), kMetaKey, &value);
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
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(kItemPrefix); it->Valid() && it->key().starts_with(kItemPrefix); it->Next()) {
    auto rec = decode_record(it->value().ToStringView());
    const std::string id = it->key().ToString().substr(1);
    if (!rec || id.empty()) {
      throw StoreError("data directory " + options.dir.string() + ": item record '" + id +
                       "' is corrupt");
    }
    if (rec->deleted) ++tombstones;
    items.emplace(id, std::move(*rec));
  }
  for (it->Seek(kChangePrefix); it->Valid() && it->key().starts_with(kChangePrefix); it->Next()) {
    if (it->key().size() != 9) {
      throw StoreError("data directory " + options.dir.string() + ": change-log key is corrupt");
    }
    const std::uint64_t seq = read_be64(it->key().ToStringView().substr(1));
    const std::string id = it->value().ToString();
    auto found = items.find(id);
    if (found == items.end() || found->second.local_seq != seq || seq > meta.seq) {
      throw StoreError("data directory " + options.dir.string() + ": change-log entry " +
                       std::to_string(seq) + " does not match item '" + id + "'");
    }
    changelog.emplace(seq, id);
  }
  if (!it->status().ok()) {
    throw StoreError("data directory " + options.dir.string() + ": " + it->status().ToString());
  }
}

Store::Store(StoreOptions options) : impl_(std::make_unique<Impl>()) {
  if (!valid_node_name(options.name)) {
    throw StoreError("node name '" + options.name + "' must be 1 to 8 lowercase letters");
  }
  impl_->options = std::move(options);
  auto opened = db::open(impl_->options.dir);
  impl_->db = std::move(opened.db);
  if (opened.created) {
    impl_->meta.name = impl_->options.name;
    std::random_device rd;
    impl_->meta.incarnation = (std::uint64_t{rd()} << 32) | rd();
    rocksdb::WriteBatch batch;
    const auto s = impl_->commit(batch);
    if (!s.ok())
      throw StoreError("cannot initialise " + impl_->options.dir.string() + ": " + s.ToString());
  } else {
    impl_->load();
  }
}

Store::~Store() = default;

void Store::set_observer(std::function<void(const StoreEvent&)> observer) {
  impl_->observer = std::move(observer);
}

Result<Item> Store::Impl::commit_local(const std::string& id, Record rec, const char* op) {
  Meta next = meta;
  rec.version = ++next.version;
  const std::uint64_t old_seq = rec.local_seq;
  rec.local_seq = ++next.seq;
  rocksdb::WriteBatch batch;
  batch.Put(item_key(id), encode_record(rec));
  if (old_seq > meta.synced_upto) batch.Delete(change_key(old_seq));
  batch.Put(change_key(rec.local_seq), id);
  std::swap(meta, next);
  const auto s = commit(batch);
  if (!s.ok()) {
    std::swap(meta, next);
    return storage_error(s);
  }
  if (old_seq > meta.synced_upto) changelog.erase(old_seq);
  changelog.emplace(rec.local_seq, id);
  auto& slot = items[id];
  if (rec.deleted && !slot.deleted) ++tombstones;
  slot = std::move(rec);
  Item item = visible(id, slot);
  notify(StoreEvent{StoreEvent::Kind::kLocal, op, item, slot.local_seq, 0, meta.name});
  return item;
}

Result<Item> Store::create(std::string_view title) {
  if (!valid_title(title)) return bad_title();
  auto& m = impl_->meta;
  const std::string id = make_item_id(m.max_id_number + 1, m.name);
  ++m.max_id_number;  // persisted with the change's meta record
  Record rec;
  rec.title = std::string(title);
  auto r = impl_->commit_local(id, std::move(rec), "create");
  if (std::holds_alternative<Error>(r)) --m.max_id_number;
  return r;
}

Result<Item> Store::get(std::string_view id) const {
  auto it = impl_->items.find(std::string(id));
  if (it == impl_->items.end()) {
    return Error{ErrorCode::kNotFound, "there is no item " + std::string(id)};
  }
  if (it->second.deleted) {
    return Error{ErrorCode::kDeleted, "item " + std::string(id) + " was deleted"};
  }
  return visible(it->first, it->second);
}

Result<Item> Store::update(const proto::msg::Update& req) {
  if (!req.completed && !req.title) {
    return Error{ErrorCode::kInvalidArgument, "an update must change the title or completion"};
  }
  if (req.title && !valid_title(*req.title)) return bad_title();
  auto found = get(req.id);
  if (auto* e = std::get_if<Error>(&found)) return std::move(*e);
  Record rec = impl_->items.at(req.id);
  if (req.completed) rec.completed = *req.completed;
  if (req.title) rec.title = *req.title;
  return impl_->commit_local(req.id, std::move(rec), "update");
}

Result<Item> Store::remove(std::string_view id) {
  auto found = get(id);
  if (auto* e = std::get_if<Error>(&found)) return std::move(*e);
  Record rec = impl_->items.at(std::string(id));
  rec.deleted = true;
  return impl_->commit_local(std::string(id), std::move(rec), "delete");
}

std::vector<Item> Store::list() const {
  std::vector<Item> out;
  out.reserve(impl_->items.size());
  for (const auto& [id, rec] : impl_->items) {
    if (!rec.deleted) out.push_back(visible(id, rec));
  }
  std::sort(out.begin(), out.end(),
            [](const Item& a, const Item& b) { return item_id_less(a.id, b.id); });
  return out;
}

proto::msg::Changes Store::fetch(std::uint64_t after_seq, std::uint64_t limit) const {
  proto::msg::Changes out;
  limit = std::clamp<std::uint64_t>(limit, 1, proto::kMaxFetchLimit);
  out.seq_high = impl_->meta.seq;
  for (auto it = impl_->changelog.upper_bound(after_seq); it != impl_->changelog.end(); ++it) {
    if (out.changes.size() == limit) {
      out.seq_high = out.changes.back().seq;
      break;
    }
    out.changes.push_back(Change{it->first, visible(it->second, impl_->items.at(it->second))});
  }
  return out;
}

Result<proto::msg::Applied> Store::apply(const proto::msg::Apply& batch) {
  auto& im = *impl_;
  if (batch.synced_upto > im.meta.seq) {
    return Error{ErrorCode::kInvalidArgument,
                 "the syncer claims changes up to " + std::to_string(batch.synced_upto) +
                     " but this node has only " + std::to_string(im.meta.seq) +
                     " (was its data directory replaced?)"};
  }
  for (const auto& c : batch.changes) {
    if (c.stamp == 0 || c.stamp > batch.upto_stamp || c.item.version != c.stamp ||
        !item_id_number(c.item.id) || (!c.item.deleted && c.item.title.empty())) {
      return Error{ErrorCode::kInvalidArgument,
                   "stamped change for '" + c.item.id + "' is invalid"};
    }
  }
  Meta next = im.meta;
  next.applied_stamp = std::max(next.applied_stamp, batch.upto_stamp);
  next.synced_upto = std::max(next.synced_upto, batch.synced_upto);
  next.version = std::max(next.version, next.applied_stamp);

  // Decide every change against the state as the batch sees it, then commit them in one batch.
  std::unordered_map<std::string, Record> changed;
  std::vector<StoreEvent> events;
  auto current = [&](const std::string& id) -> const Record* {
    if (auto it = changed.find(id); it != changed.end()) return &it->second;
    if (auto it = im.items.find(id); it != im.items.end()) return &it->second;
    return nullptr;
  };
  for (const auto& c : batch.changes) {
    const Record* rec = current(c.item.id);
    if (rec) {
      const bool pending = rec->local_seq > next.synced_upto;
      if (pending) {
        // The node's own change is not yet in the syncer's log: it will be stamped later and win,
        // unless this is a delete, which beats any update (rule R).
        if (!(c.item.deleted && !rec->deleted)) continue;
      } else if (!stamped_beats(c.item.deleted, c.stamp, rec->deleted, rec->stamp)) {
        continue;  // an older or equal value: applying it again changes nothing
      }
    }
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
    events.push_back(
        StoreEvent{StoreEvent::Kind::kSynced, op, visible(c.item.id, r), 0, c.stamp, c.origin});
    changed[c.item.id] = std::move(r);
  }

  rocksdb::WriteBatch wb;
  std::vector<std::uint64_t> drop;  // change-log entries no longer pending
  for (auto it = im.changelog.begin(); it != im.changelog.end(); ++it) {
    if (it->first <= next.synced_upto || changed.count(it->second)) drop.push_back(it->first);
  }
  for (auto seq : drop) wb.Delete(change_key(seq));
  for (const auto& [id, r] : changed) wb.Put(item_key(id), encode_record(r));
  std::swap(im.meta, next);
  const auto s = im.commit(wb);
  if (!s.ok()) {
    std::swap(im.meta, next);
    return im.storage_error(s);
  }
  for (auto seq : drop) im.changelog.erase(seq);
  for (auto& [id, r] : changed) {
    auto& slot = im.items[id];
    if (r.deleted && !slot.deleted) ++im.tombstones;
    slot = std::move(r);
  }
  for (const auto& e : events) im.notify(e);
  return proto::msg::Applied{im.meta.applied_stamp, im.meta.synced_upto, changed.size()};
}

NodeStatus Store::status() const {
  const auto& m = impl_->meta;
  NodeStatus s;
  s.name = m.name;
  s.incarnation = m.incarnation;
  s.version = m.version;
  s.seq = m.seq;
  s.applied_stamp = m.applied_stamp;
  s.synced_upto = m.synced_upto;
  s.items = impl_->items.size() - impl_->tombstones;
  s.tombstones = impl_->tombstones;
  s.unsynced = impl_->changelog.size();
  return s;
}

}  // namespace kv::node
