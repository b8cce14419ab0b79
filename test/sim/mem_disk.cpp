#include "sim/mem_disk.hpp"

namespace kv::sim {

namespace {
// Applies a batch to a map.
class Apply : public storage::Batch::Handler {
 public:
  explicit Apply(MemDisk::Contents& into) : into_(into) {}
  void Put(const rocksdb::Slice& key, const rocksdb::Slice& value) override {
    into_[key.ToString()] = value.ToString();
  }
  void Delete(const rocksdb::Slice& key) override { into_.erase(key.ToString()); }

 private:
  MemDisk::Contents& into_;
};

class MemEngine : public storage::Engine {
 public:
  MemEngine(std::shared_ptr<MemDisk::Volume> v, bool read_only)
      : v_(std::move(v)), read_only_(read_only) {}

  storage::Status get(std::string_view key, std::string& value) override {
    auto it = v_->written.find(key);
    if (it == v_->written.end()) return storage::Status::NotFound();
    value = it->second;
    return storage::Status::OK();
  }

  storage::Status scan(std::string_view prefix,
                       const std::function<bool(std::string_view, std::string_view)>& f) override {
    for (auto it = v_->written.lower_bound(prefix);
         it != v_->written.end() && std::string_view(it->first).starts_with(prefix); ++it) {
      if (!f(it->first, it->second)) break;
    }
    return storage::Status::OK();
  }

  storage::Status write(storage::Batch& batch, bool sync) override {
    if (read_only_) return storage::Status::NotSupported("opened read-only");
    // After a failed write RocksDB's log writer is unusable until the database is reopened.
    if (broken_ || v_->full) {
      broken_ = true;
      return storage::Status::IOError("No space left on device (simulated)");
    }
    Apply apply(v_->written);
    auto s = batch.Iterate(&apply);
    if (!s.ok()) return s;
    ++v_->writes;
    if (sync) return sync_log();
    return storage::Status::OK();
  }

  storage::Status flush_memtable() override { return storage::Status::OK(); }
  std::uint64_t approximate_keys() override { return v_->written.size(); }

  storage::Status sync_log() override {
    if (broken_) return storage::Status::IOError("the log writer failed earlier (simulated)");
    v_->durable = v_->written;
    ++v_->syncs;
    return storage::Status::OK();
  }

 private:
  std::shared_ptr<MemDisk::Volume> v_;
  bool read_only_;
  bool broken_ = false;
};
}  // namespace

storage::Opened MemDisk::open(const std::filesystem::path& dir, bool read_only) {
  if (read_only) {
    auto it = volumes_.find(dir.string());
    if (it == volumes_.end()) throw StoreError("data directory " + dir.string() + " is empty");
    return storage::Opened{std::make_unique<MemEngine>(it->second, true), false};
  }
  auto& slot = volumes_[dir.string()];
  const bool created = !slot;
  if (!slot) slot = std::make_shared<Volume>();
  if (slot->full) {
    if (created) volumes_.erase(dir.string());
    throw StoreError("data directory " + dir.string() +
                     " cannot be opened: IO error: No space left on device (simulated)");
  }
  return storage::Opened{std::make_unique<MemEngine>(slot, false), created};
}

MemDisk::Volume& MemDisk::volume(const std::filesystem::path& dir) {
  auto& slot = volumes_[dir.string()];
  if (!slot) slot = std::make_shared<Volume>();
  return *slot;
}

MemDisk::Volume* MemDisk::find(const std::filesystem::path& dir) {
  auto it = volumes_.find(dir.string());
  return it == volumes_.end() ? nullptr : it->second.get();
}

void MemDisk::power_loss(const std::filesystem::path& dir) {
  auto& v = volume(dir);
  v.written = v.durable;
}

void MemDisk::restore(const std::filesystem::path& dir, const Contents& contents) {
  auto& v = volume(dir);
  v.written = contents;
  v.durable = contents;
}

}  // namespace kv::sim
