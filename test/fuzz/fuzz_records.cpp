// Fuzzes the on-disk record decoders, which recovery runs on every value and key in a data
// directory: the node's decode_meta, decode_record and item_id_from_key
// (src/node/store_format.cpp) and the syncer log's decode_entry (src/sync/sync_log_format.cpp),
// each on the whole input.
//
// Properties, beyond "no crash, no sanitizer report":
//  - a decoded Meta or Record re-encodes to bytes that decode to the same value; the re-encoding
//    is never longer than the input, and when it is as long it is the input (canonical encoder);
//  - an id decoded from a key has the documented shape, and item_key gives back that very key
//    (one key per id: recovery must not load an item from a key the node would never write).
#include <cstdint>
#include <string>
#include <string_view>

#include "common/item.hpp"
#include "fuzz_check.hpp"
#include "node/store_format.hpp"
#include "sync/sync_log_format.hpp"

namespace node = kv::node;

namespace {

void check_canonical(std::string_view input, const std::string& again) {
  KV_FUZZ_CHECK(again.size() <= input.size());
  if (again.size() == input.size()) KV_FUZZ_CHECK(again == input);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  if (const auto meta = node::decode_meta(in)) {
    const std::string again = node::encode_meta(*meta);
    check_canonical(in, again);
    const auto back = node::decode_meta(again);
    KV_FUZZ_CHECK(back.has_value() && *back == *meta);
  }

  if (const auto rec = node::decode_record(in)) {
    const std::string again = node::encode_record(*rec);
    check_canonical(in, again);
    const auto back = node::decode_record(again);
    KV_FUZZ_CHECK(back.has_value() && *back == *rec);
  }

  if (const auto id = node::item_id_from_key(in)) {
    KV_FUZZ_CHECK(kv::item_id_number(*id).has_value());
    KV_FUZZ_CHECK(node::item_key(*id) == in);
  }
  if (const auto entry = kv::sync::decode_entry(in)) {
    KV_FUZZ_CHECK(entry->item.version == entry->stamp);
    const std::string again = kv::sync::encode_entry(*entry);
    check_canonical(in, again);
    const auto back = kv::sync::decode_entry(again);
    KV_FUZZ_CHECK(back.has_value() && *back == *entry);
  }
  return 0;
}
