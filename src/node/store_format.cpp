#include "node/store_format.hpp"

#include <span>

#include "core/bytes.hpp"
#include "core/item.hpp"
#include "core/protocol.hpp"

namespace kv::node {
namespace {}  // namespace

std::string encode_meta(const Meta& m) {
  std::string out;
  proto::Writer w(out);
  w.u8(kFormatVersion);
  w.str(m.name);
  w.varint(m.incarnation);
  w.varint(m.version);
  w.varint(m.seq);
  w.varint(m.applied_stamp);
  w.varint(m.synced_upto);
  w.varint(m.max_id_number);
  w.varint(m.log_id);
  w.varint(m.purged_upto);
  w.varint(m.syncer_stamp);
  return out;
}

std::optional<Meta> decode_meta(std::string_view bytes) {
  proto::Reader r(bytes_of(bytes));
  const std::uint8_t format = r.u8();
  if (format != kFormatVersion && format != 1) return std::nullopt;
  Meta m;
  m.name = r.str(proto::kMaxNameBytes);
  m.incarnation = r.varint();
  m.version = r.varint();
  m.seq = r.varint();
  m.applied_stamp = r.varint();
  m.synced_upto = r.varint();
  m.max_id_number = r.varint();
  if (format >= 2) {
    m.log_id = r.varint();
    m.purged_upto = r.varint();
    m.syncer_stamp = r.varint();
  }
  if (!r.done() || m.synced_upto > m.seq) return std::nullopt;
  return m;
}

std::string encode_record(const Record& rec) {
  std::string out;
  proto::Writer w(out);
  w.u8(kFormatVersion);
  w.u8((rec.completed ? proto::kItemCompleted : 0) | (rec.deleted ? proto::kItemDeleted : 0));
  w.varint(rec.version);
  w.varint(rec.stamp);
  w.varint(rec.local_seq);
  w.str(rec.origin);
  w.varint(rec.origin_seq);
  w.str(rec.title);
  return out;
}

std::optional<Record> decode_record(std::string_view bytes) {
  proto::Reader r(bytes_of(bytes));
  const std::uint8_t format = r.u8();
  if (format != kFormatVersion && format != 1) return std::nullopt;
  Record rec;
  const std::uint8_t flags = r.u8();
  if (flags & ~(proto::kItemCompleted | proto::kItemDeleted)) return std::nullopt;
  rec.completed = flags & proto::kItemCompleted;
  rec.deleted = flags & proto::kItemDeleted;
  rec.version = r.varint();
  rec.stamp = r.varint();
  rec.local_seq = r.varint();
  rec.origin = r.str(proto::kMaxNameBytes);
  rec.origin_seq = r.varint();
  rec.title = r.str(proto::kMaxTitleBytes);
  if (!r.done()) return std::nullopt;
  return rec;
}

std::string encode_cursor(std::uint64_t incarnation, std::uint64_t seq) {
  std::string out;
  proto::Writer w(out);
  w.varint(incarnation);
  w.varint(seq);
  return out;
}

std::optional<std::pair<std::uint64_t, std::uint64_t>> decode_cursor(std::string_view bytes) {
  proto::Reader r(bytes_of(bytes));
  const std::uint64_t incarnation = r.varint();
  const std::uint64_t seq = r.varint();
  if (!r.done()) return std::nullopt;
  return std::make_pair(incarnation, seq);
}

std::string encode_change(const ChangeEntry& e) {
  std::string out;
  proto::Writer w(out);
  w.u8(kFormatVersion);
  w.item(e.value);
  w.varint(e.base_stamp);
  w.varint(e.base_seq);
  return out;
}

std::optional<ChangeEntry> decode_change(std::string_view bytes) {
  ChangeEntry e;
  if (!bytes.empty() && bytes[0] >= '0' && bytes[0] <= '9') {
    // Format 1: the item id alone.
    if (!item_id_number(bytes)) return std::nullopt;
    e.value.id = std::string(bytes);
    e.format_1 = true;
    return e;
  }
  proto::Reader r(bytes_of(bytes));
  if (r.u8() != kFormatVersion) return std::nullopt;
  e.value = r.item();
  e.base_stamp = r.varint();
  e.base_seq = r.varint();
  if (!r.done() || !item_id_number(e.value.id)) return std::nullopt;
  return e;
}

std::string item_key(std::string_view id) {
  // "i" + be64(number) + node name: RocksDB then holds items in the order LIST shows them, and
  // recovery inserts them in order.
  std::string k(kItemPrefix);
  append_be64(k, item_id_number(id).value_or(0));
  const auto name = id.find_first_not_of("0123456789");
  if (name != std::string_view::npos) k.append(id.substr(name));
  return k;
}

std::optional<std::string> item_id_from_key(std::string_view key) {
  if (key.size() < 10 || !key.starts_with(kItemPrefix)) return std::nullopt;
  // The rest must be a node name on its own: "i" + be64(1) + "2b" would read as id "12b",
  // whose key is another one (found by fuzz_records).
  if (!valid_node_name(key.substr(9))) return std::nullopt;
  std::string id = std::to_string(read_be64(key.substr(1, 8))) + std::string(key.substr(9));
  if (!item_id_number(id)) return std::nullopt;
  return id;
}

std::string change_key(std::uint64_t seq) {
  std::string k(kChangePrefix);
  append_be64(k, seq);
  return k;
}

}  // namespace kv::node
