// A thin layer over RocksDB shared by the node store and the syncer's log: opening a data
// directory with clear errors, and the big-endian key encoding that keeps numeric keys sorted.
// Only storage .cpp files include this header.
#pragma once

#include <rocksdb/db.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "common/store_error.hpp"

namespace kv::db {

using kv::StoreError;

struct Opened {
  std::unique_ptr<rocksdb::DB> db;
  bool created = false;  // the directory held no database before this call
};

// Opens (or creates) the RocksDB database in `dir`. Throws StoreError on corruption or I/O errors.
Opened open(const std::filesystem::path& dir);

// Writes `batch`, turning a failed status into a message for the client.
rocksdb::Status write(rocksdb::DB& db, rocksdb::WriteBatch& batch, bool sync);

}  // namespace kv::db
