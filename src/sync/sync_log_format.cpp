#include "sync/sync_log_format.hpp"

#include <cstdint>
#include <span>

#include "common/protocol.hpp"

namespace kv::sync {

namespace {
constexpr std::uint8_t kFormat = 1;
}  // namespace

std::string encode_entry(const StampedChange& c) {
  std::string out;
  proto::Writer w(out);
  w.u8(kFormat);
  w.varint(c.stamp);
  w.str(c.origin);
  w.varint(c.origin_seq);
  w.item(c.item);
  return out;
}

std::optional<StampedChange> decode_entry(std::string_view bytes) {
  proto::Reader r({reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()});
  if (r.u8() != kFormat) return std::nullopt;
  StampedChange c;
  c.stamp = r.varint();
  c.origin = r.str(proto::kMaxNameBytes);
  c.origin_seq = r.varint();
  c.item = r.item();
  if (!r.done() || c.item.version != c.stamp) return std::nullopt;
  return c;
}

}  // namespace kv::sync
