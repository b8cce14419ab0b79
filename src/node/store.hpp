// The node's versioned ToDo store: the items users see, the store-wide version counter, the
// node-local change sequence that the syncer's cursor follows, and the rules that apply stamped
// changes from the syncer (docs/sync.md). Durable in RocksDB (docs/storage.md); everything is
// also held in memory, so reads never touch the disk.
//
// Threading: not thread-safe. A node uses it from its one I/O thread only.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/item.hpp"
#include "common/protocol.hpp"
#include "common/store_error.hpp"

namespace kv::node {

struct StoreOptions {
  std::filesystem::path dir;  // the data directory; created when missing
  std::string name;           // node name; must match the one the directory was created with
  bool sync_writes = false;   // fsync each commit before acknowledging it
};

// A committed change, as the node's WebSocket subscribers see it.
struct StoreEvent {
  enum class Kind { kLocal, kSynced };
  Kind kind = Kind::kLocal;
  std::string op;           // "create", "update" or "delete"
  Item item;                // the value after the change
  std::uint64_t seq = 0;    // kLocal: the change's sequence number
  std::uint64_t stamp = 0;  // kSynced: the syncer's stamp
  std::string origin;       // kSynced: the node the change came from
};

template <class T>
using Result = std::variant<T, proto::msg::Error>;

class Store {
 public:
  // Opens or creates the store. Throws StoreError with a clear message when the directory is
  // corrupt, belongs to another node, or cannot be opened.
  explicit Store(StoreOptions options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Client operations. Each local change takes the next version and the next change sequence.
  Result<Item> create(std::string_view title);
  Result<Item> update(const proto::msg::Update& req);
  Result<Item> remove(std::string_view id);
  Result<Item> get(std::string_view id) const;
  std::vector<Item> list() const;  // live items, ordered by id

  // Sync operations.
  proto::msg::Changes fetch(std::uint64_t after_seq, std::uint64_t limit) const;
  Result<proto::msg::Applied> apply(const proto::msg::Apply& batch);

  NodeStatus status() const;

  // Called after every committed change, on the caller's thread.
  void set_observer(std::function<void(const StoreEvent&)> observer);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kv::node
