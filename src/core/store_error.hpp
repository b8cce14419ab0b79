#pragma once

#include <stdexcept>

namespace kv {

// Thrown when a data directory cannot be opened or holds something we cannot trust. The message
// names the directory and the problem; the binaries print it and exit non-zero.
class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace kv
