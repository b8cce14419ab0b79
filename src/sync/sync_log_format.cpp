#include "sync/sync_log_format.hpp"

#include <cstdint>
#include <span>

#include "core/bytes.hpp"
#include "core/protocol.hpp"

namespace kv::sync {

namespace {
constexpr std::uint8_t kEntryFormat = 1;
constexpr std::uint8_t kMetaFormat = 2;
constexpr std::size_t kMaxBootBytes = 64;

proto::Reader reader(std::string_view bytes) {
  return proto::Reader(bytes_of(bytes));
}
}  // namespace

std::string encode_meta(const LogMeta& m) {
  std::string out;
  proto::Writer w(out);
  w.u8(kMetaFormat);
  w.varint(m.counter);
  w.varint(m.purged_upto);
  w.varint(m.max_id_number);
  w.varint(m.log_id);
  w.u8(m.open ? 1 : 0);
  w.varint(m.rebuild_id);
  w.u8(m.unverified ? 1 : 0);
  w.str(m.boot);
  w.varint(m.life);
  return out;
}

std::optional<LogMeta> decode_meta(std::string_view bytes) {
  auto r = reader(bytes);
  const std::uint8_t format = r.u8();
  if (format != 1 && format != kMetaFormat) return std::nullopt;
  LogMeta m;
  m.counter = r.varint();
  m.purged_upto = r.varint();
  m.max_id_number = r.varint();
  if (format >= 2) {
    m.log_id = r.varint();
    const std::uint8_t open = r.u8();
    if (open > 1) return std::nullopt;
    m.open = open == 1;
    m.rebuild_id = r.varint();
    const std::uint8_t unverified = r.u8();
    if (unverified > 1) return std::nullopt;
    m.unverified = unverified == 1;
    if (!r.at_end()) m.boot = r.str(kMaxBootBytes);
    if (!r.at_end()) m.life = r.varint();
  }
  if (!r.done() || m.purged_upto > m.counter) return std::nullopt;
  return m;
}

std::string encode_node(const NodeRecord& n) {
  std::string out;
  proto::Writer w(out);
  w.varint(n.incarnation);
  w.varint(n.cursor);
  w.varint(n.applied);
  w.varint(n.forgotten ? 1 : 0);
  w.varint(n.retired.size());
  for (auto r : n.retired) w.varint(r);
  w.varint(n.unsettled_upto);
  w.varint(n.recheck_upto);
  return out;
}

std::optional<NodeRecord> decode_node(std::string_view bytes) {
  auto r = reader(bytes);
  NodeRecord n;
  n.incarnation = r.varint();
  n.cursor = r.varint();
  if (!r.at_end()) {
    n.applied = r.varint();
    const std::uint64_t flags = r.varint();
    if (flags > 1) return std::nullopt;
    n.forgotten = flags == 1;
    const std::uint64_t retired = r.varint();
    if (retired > kMaxRetired) return std::nullopt;
    for (std::uint64_t i = 0; i < retired && r.ok(); ++i) n.retired.push_back(r.varint());
    n.unsettled_upto = r.varint();
    n.recheck_upto = r.varint();
  }
  if (!r.done()) return std::nullopt;
  return n;
}

std::string encode_entry(const StampedChange& c) {
  std::string out;
  proto::Writer w(out);
  w.u8(kEntryFormat);
  w.varint(c.stamp);
  w.str(c.origin);
  w.varint(c.origin_seq);
  w.item(c.item);
  return out;
}

std::optional<StampedChange> decode_entry(std::string_view bytes) {
  auto r = reader(bytes);
  if (r.u8() != kEntryFormat) return std::nullopt;
  StampedChange c;
  c.stamp = r.varint();
  c.origin = r.str(proto::kMaxNameBytes);
  c.origin_seq = r.varint();
  c.item = r.item();
  if (!r.done() || c.item.version != c.stamp) return std::nullopt;
  return c;
}

std::string history_key(std::string_view name, std::uint64_t stamp) {
  std::string k = std::string(kHistoryPrefix) + std::string(name);
  append_be64(k, stamp);
  return k;
}

std::string encode_history_cursor(std::uint64_t cursor) {
  std::string out;
  proto::Writer(out).varint(cursor);
  return out;
}

std::optional<HistoryRecord> decode_history(std::string_view key, std::string_view value) {
  if (key.size() < kHistoryPrefix.size() + 1 + 8 || !key.starts_with(kHistoryPrefix)) {
    return std::nullopt;
  }
  proto::Reader r = reader(value);
  HistoryRecord h;
  h.cursor = r.varint();
  if (!r.done()) return std::nullopt;
  h.name = std::string(key.substr(kHistoryPrefix.size(), key.size() - kHistoryPrefix.size() - 8));
  h.stamp = read_be64(key.substr(key.size() - 8));
  return h;
}

}  // namespace kv::sync
