// The production engine: RocksDB on the file system, with its diagnostics in our log.
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/iterator.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/options.h>

#include <cstdarg>
#include <cstdio>

#include "core/log.hpp"
#include "storage/engine.hpp"

namespace kv::storage {

namespace {
// RocksDB's own diagnostics go to our log, not to a LOG file in the data directory: that file
// is one more thing to fill a full disk, and RocksDB 7.8 aborts when writing it fails twice.
class ForwardingLogger : public rocksdb::Logger {
 public:
  ForwardingLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel()) return;
    char buf[1024];
    std::vsnprintf(buf, sizeof buf, format, ap);
    if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL) {
      KV_LOG(error) << "rocksdb: " << buf;
    } else {
      KV_LOG(warning) << "rocksdb: " << buf;
    }
  }
};

class RocksEngine : public Engine {
 public:
  explicit RocksEngine(std::unique_ptr<rocksdb::DB> db) : db_(std::move(db)) {}

  Status get(std::string_view key, std::string& value) override {
    return db_->Get(rocksdb::ReadOptions(), rocksdb::Slice(key.data(), key.size()), &value);
  }

  Status scan(std::string_view prefix,
              const std::function<bool(std::string_view, std::string_view)>& f) override {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    const rocksdb::Slice p(prefix.data(), prefix.size());
    for (it->Seek(p); it->Valid() && it->key().starts_with(p); it->Next()) {
      if (!f(it->key().ToStringView(), it->value().ToStringView())) break;
    }
    return it->status();
  }

  Status write(Batch& batch, bool sync) override {
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    return db_->Write(wo, &batch);
  }

  Status sync_log() override { return db_->SyncWAL(); }

  Status flush_memtable() override { return db_->Flush(rocksdb::FlushOptions()); }

  std::uint64_t approximate_keys() override {
    std::uint64_t n = 0;
    return db_->GetIntProperty("rocksdb.estimate-num-keys", &n) ? n : 0;
  }

 private:
  std::unique_ptr<rocksdb::DB> db_;
};

class RocksDisk : public Disk {
 public:
  Opened open(const std::filesystem::path& dir, bool read_only) override {
    std::error_code ec;
    const bool existed = std::filesystem::exists(dir / "CURRENT", ec);
    if (read_only) {
      if (!existed) throw StoreError("data directory " + dir.string() + " holds no database");
      rocksdb::Options options;
      options.info_log = std::make_shared<ForwardingLogger>();
      rocksdb::DB* raw = nullptr;
      const rocksdb::Status s = rocksdb::DB::OpenForReadOnly(options, dir.string(), &raw);
      if (!s.ok()) {
        throw StoreError("data directory " + dir.string() + " cannot be read: " + s.ToString());
      }
      return Opened{std::make_unique<RocksEngine>(std::unique_ptr<rocksdb::DB>(raw)), false};
    }
    std::filesystem::create_directories(dir, ec);
    if (ec) throw StoreError("cannot create data directory " + dir.string() + ": " + ec.message());

    rocksdb::Options options;
    options.create_if_missing = !existed;
    options.paranoid_checks = true;
    options.max_open_files = 256;
    options.keep_log_file_num = 2;
    options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
    options.info_log = std::make_shared<ForwardingLogger>();
    // A restart replays the WAL into the memtable and goes on; it does not first write what it
    // replayed into a new table file (RocksDB's default), which made the open wait on the disk.
    // The replayed logs stay until the memtable is flushed: a clean stop flushes it
    // (Store::~Store), so that they do not pile up from restart to restart. (A start and stop
    // without a single write in between still leaves its empty log behind: 0 bytes to replay.)
    options.avoid_flush_during_recovery = true;
    // The memtable is a vector, sorted when it is flushed or read, instead of a skip list:
    // kvnode and kvsync read the database only while they open it (Store::Impl::load,
    // SyncLog's open) and keep what they serve in memory, so an insert that is an append
    // beats one that keeps the keys in order (a third of the committer's instructions went
    // to the skip list's key comparisons; bench/PROFILE.md). One writer thread at a time.
    options.memtable_factory = std::make_shared<rocksdb::VectorRepFactory>();
    options.allow_concurrent_memtable_write = false;
    rocksdb::DB* raw = nullptr;
    const rocksdb::Status s = rocksdb::DB::Open(options, dir.string(), &raw);
    if (!s.ok()) {
      std::string what = s.IsCorruption() ? "is corrupt" : "cannot be opened";
      throw StoreError("data directory " + dir.string() + " " + what + ": " + s.ToString());
    }
    return Opened{std::make_unique<RocksEngine>(std::unique_ptr<rocksdb::DB>(raw)), !existed};
  }
};
}  // namespace

Disk& real_disk() {
  static RocksDisk disk;
  return disk;
}

}  // namespace kv::storage
