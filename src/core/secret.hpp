// The cluster secret (docs/security.md): who may fetch and apply changes, subscribe to
// notifications and, optionally, use a node at all. Pure code, no I/O beyond reading the file.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace kv::secret {

inline constexpr std::size_t kMinBytes = 16;
inline constexpr std::size_t kMaxBytes = 256;

// The secret from `file` (one line; surrounding whitespace dropped), or else from the
// environment variable KV_SECRET, or "" when neither is given. Throws std::invalid_argument with
// a sentence when the file cannot be read, is readable by others, or the secret is too short
// or too long.
std::string load(const std::string& file);

// Compares a secret someone presented with the expected one in time that depends only on the
// lengths, never on where they differ.
bool equal(std::string_view presented, std::string_view expected);

}  // namespace kv::secret
