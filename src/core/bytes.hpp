// Big-endian fixed-width integers, for keys that must sort in numeric order.
#pragma once

#include <cstdint>
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

}  // namespace kv
