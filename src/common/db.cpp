#include "common/db.hpp"

#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

namespace kv::db {

Opened open(const std::filesystem::path& dir) {
  std::error_code ec;
  const bool existed = std::filesystem::exists(dir / "CURRENT", ec);
  std::filesystem::create_directories(dir, ec);
  if (ec) throw StoreError("cannot create data directory " + dir.string() + ": " + ec.message());

  rocksdb::Options options;
  options.create_if_missing = !existed;
  options.paranoid_checks = true;
  options.max_open_files = 256;
  options.keep_log_file_num = 2;
  options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  rocksdb::DB* raw = nullptr;
  const rocksdb::Status s = rocksdb::DB::Open(options, dir.string(), &raw);
  if (!s.ok()) {
    std::string what = s.IsCorruption() ? "is corrupt" : "cannot be opened";
    throw StoreError("data directory " + dir.string() + " " + what + ": " + s.ToString());
  }
  return Opened{std::unique_ptr<rocksdb::DB>(raw), !existed};
}

rocksdb::Status write(rocksdb::DB& db, rocksdb::WriteBatch& batch, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return db.Write(wo, &batch);
}

}  // namespace kv::db
