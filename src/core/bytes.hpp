// Bytes as the codecs see them: big-endian fixed-width integers, for keys that must sort in
// numeric order, and the bytes of a string.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace kv {

inline void append_be64(std::string& out, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}

// `s` must hold at least 8 bytes; only the first 8 are read.
inline std::uint64_t read_be64(std::string_view s) {
  std::uint64_t v = 0;
  for (char c : s.substr(0, 8)) v = (v << 8) | static_cast<unsigned char>(c);
  return v;
}

// The bytes of `s` (a stored value or key), as the codec's Reader takes them.
inline std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace kv
