// Test tool: fills a stopped node's data directory with many items, fast, through the real Store
// (each one a client's create, as kvcli would make it, committed in groups without fsync). The
// items are the node's own unsynced changes: a syncer started on the node then stamps and
// applies them as it would any client's. Used by the viewer's browser test for a store of a
// million items, which kvcli would take minutes to create.
//
//   kvbulk DATA_DIR NAME COUNT     item k (1..COUNT) gets id "<k><NAME>" in a new directory and
//                                  the title "bulk item <k>"; exit 0 once all are written (not
//                                  fsynced: a test's scratch data), 1 with a sentence on stderr
#include <charconv>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <string>
#include <string_view>
#include <variant>

#include "node/store.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: kvbulk DATA_DIR NAME COUNT\n";
    return 2;
  }
  const std::string_view count_arg = argv[3];
  std::uint64_t count = 0;
  const auto [end, ec] = std::from_chars(count_arg.begin(), count_arg.end(), count);
  if (ec != std::errc{} || end != count_arg.end() || count == 0) {
    std::cerr << "kvbulk: COUNT must be a positive number, not '" << count_arg << "'\n";
    return 2;
  }
  try {
    const auto start = std::chrono::steady_clock::now();
    kv::node::StoreOptions options;
    options.dir = argv[1];
    options.name = argv[2];
    options.sync_writes = false;       // scratch data: written, never fsynced
    options.background_commit = true;  // group commit: the writer thread batches the creates
    kv::node::Store store(std::move(options));
    // Bounds what waits in the committer's queue (memory), and keeps the writer busy.
    constexpr std::uint64_t kFlushEvery = 50000;
    std::string title;
    for (std::uint64_t k = 1; k <= count; ++k) {
      title = "bulk item " + std::to_string(k);
      const auto made = store.create(title);
      if (const auto* err = std::get_if<kv::node::Refusal>(&made)) {
        std::cerr << "kvbulk: create " << k << " refused: " << err->message << "\n";
        return 1;
      }
      if (k % kFlushEvery == 0 || k == count) {
        store.flush();
        store.poll_commits();
        if (const auto failed = store.outcome(store.last_commit())) {
          std::cerr << "kvbulk: " << failed->message << "\n";
          return 1;
        }
      }
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    std::cout << "kvbulk: " << count << " items in " << ms << " ms\n";
  } catch (const std::exception& e) {
    std::cerr << "kvbulk: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
