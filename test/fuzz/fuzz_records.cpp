// Fuzzes the on-disk record decoders, which recovery runs on every value and key in a data
// directory: the node's decode_meta, decode_record, decode_change and item_id_from_key
// (src/node/store_format.cpp) and the syncer log's decode_entry and decode_history
// (src/sync/sync_log_format.cpp), each on the whole input (decode_history on a key and value
// split from it).
//
// Properties, beyond "no crash, no sanitizer report":
//  - a decoded Meta, Record or ChangeEntry re-encodes to bytes that decode to the same value. An
//    input in the current format (first byte node::kFormatVersion) re-encodes to no more bytes,
//    and to the input itself when as long (canonical encoder); an input in format 1, which the
//    decoders still read, re-encodes in the current format, and that encoding is a fixed point;
//  - an id decoded from a key has the documented shape, and item_key gives back that very key
//    (one key per id: recovery must not load an item from a key the node would never write).
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/item.hpp"
#include "fuzz_check.hpp"
#include "node/store_format.hpp"
#include "sync/sync_log_format.hpp"

namespace node = kv::node;

namespace {

void check_canonical(std::string_view input, const std::string& again) {
  KV_FUZZ_CHECK(again.size() <= input.size());
  if (again.size() == input.size()) KV_FUZZ_CHECK(again == input);
}

// The node's formats: canonical in the current format, upgraded from format 1.
template <class Decode, class Encode>
void check_node_format(std::string_view input, Decode decode, Encode encode) {
  const auto value = decode(input);
  if (!value) return;
  const std::string again = encode(*value);
  const auto back = decode(again);
  KV_FUZZ_CHECK(back.has_value());
  if (!input.empty() && static_cast<std::uint8_t>(input[0]) == kv::node::kFormatVersion) {
    check_canonical(input, again);
    KV_FUZZ_CHECK(*back == *value);
  } else {
    KV_FUZZ_CHECK(static_cast<std::uint8_t>(again[0]) == kv::node::kFormatVersion);
    KV_FUZZ_CHECK(encode(*back) == again);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  check_node_format(in, node::decode_meta, node::encode_meta);
  check_node_format(in, node::decode_record, node::encode_record);
  check_node_format(in, node::decode_change, node::encode_change);

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
  // A cursor history record: the first byte says how long its key is, the rest is the value.
  if (!in.empty()) {
    const std::size_t key_size =
        std::min<std::size_t>(static_cast<std::uint8_t>(in[0]), in.size() - 1);
    const auto key = in.substr(1, key_size);
    const auto value = in.substr(1 + key_size);
    if (const auto h = kv::sync::decode_history(key, value)) {
      KV_FUZZ_CHECK(kv::sync::history_key(h->name, h->stamp) == key);
      const std::string again = kv::sync::encode_history_cursor(h->cursor);
      check_canonical(value, again);
      KV_FUZZ_CHECK(kv::sync::decode_history(key, again) == h);
    }
  }
  return 0;
}
