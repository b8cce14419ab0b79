// Fuzzes the WebSocket notification parser (src/core/notification.cpp), which kvsync and kvcli
// run on every text message a node sends.
//
// Properties: parse_notification never throws or crashes; whatever it accepts serialises with
// to_json to a text it accepts again, with the same fields, and that serialises to the same text.
#include <cstdint>
#include <string>
#include <string_view>

#include "core/notification.hpp"
#include "fuzz_check.hpp"

namespace {

bool same(const kv::Notification& a, const kv::Notification& b) {
  if (a.kind != b.kind || a.node != b.node || a.seq != b.seq || a.stamp != b.stamp) return false;
  // hello carries no change: to_json leaves op, origin and the item out.
  if (a.kind == kv::Notification::Kind::kHello) return true;
  return a.op == b.op && a.origin == b.origin && a.item == b.item;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto n = kv::parse_notification(text);
  if (!n) return 0;
  const std::string json = kv::to_json(*n);
  const auto back = kv::parse_notification(json);
  KV_FUZZ_CHECK(back.has_value());
  KV_FUZZ_CHECK(same(*n, *back));
  KV_FUZZ_CHECK(kv::to_json(*back) == json);
  return 0;
}
