// The seam between kvstore's storage code (the node's Store, the syncer's SyncLog) and the disk.
//
// Production runs on RocksDB (real_disk()). The deterministic simulator (test/sim) swaps in
// MemDisk (storage/mem_disk.hpp), which keeps what was made durable apart from what was only
// written, so that a simulated crash loses exactly what a real one would. Only storage .cpp files
// include this header: it pulls in RocksDB's batch type, which is also our batch type.
#pragma once

#include <rocksdb/status.h>
#include <rocksdb/write_batch.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/store_error.hpp"

namespace kv::storage {

using Batch = rocksdb::WriteBatch;
using Status = rocksdb::Status;

// One opened database: ordered string keys and values, atomic batches.
// Threading: write() and sync_log() may run on a writer thread while the owner reads; get() and
// scan() see every write that returned.
class Engine {
 public:
  virtual ~Engine() = default;
  virtual Status get(std::string_view key, std::string& value) = 0;
  // Calls `f` for every key starting with `prefix`, in key order, while it returns true.
  virtual Status scan(
      std::string_view prefix,
      const std::function<bool(std::string_view key, std::string_view value)>& f) = 0;
  // Applies `batch` atomically. With `sync`, it is durable (survives a power loss) on return;
  // without, it survives a crash of the process but not of the machine, until sync_log().
  virtual Status write(Batch& batch, bool sync) = 0;
  // Makes every write that returned so far durable.
  virtual Status sync_log() = 0;
  // Writes what only the log holds into table files, so that the next open has no log to
  // replay (a clean stop). Nothing is lost when it fails: the next open replays the log.
  virtual Status flush_memtable() = 0;
  // About how many keys the database holds (an estimate: it decides how to load, never what).
  virtual std::uint64_t approximate_keys() = 0;
};

struct Opened {
  std::unique_ptr<Engine> engine;
  bool created = false;  // the directory held no database before this call
};

// Where databases live. open() throws StoreError, naming the directory, on corruption or I/O
// errors. `read_only` opens an existing database without writing anything (it works on a full
// disk); its writes fail.
class Disk {
 public:
  virtual ~Disk() = default;
  virtual Opened open(const std::filesystem::path& dir, bool read_only = false) = 0;
};

// RocksDB on the real file system.
Disk& real_disk();

}  // namespace kv::storage
