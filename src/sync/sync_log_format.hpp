// The syncer log's stored entries (docs/storage.md, "The syncer's log"). Pure encode/decode over
// bytes, shared by the log and the fuzzer.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/item.hpp"

namespace kv::sync {

// u8 format (1), varint stamp, str origin, varint origin_seq, item (whose version is the stamp).
std::string encode_entry(const StampedChange& c);
// nullopt for anything that is not exactly one well-formed entry.
std::optional<StampedChange> decode_entry(std::string_view bytes);

}  // namespace kv::sync
