// Group commit on a writer thread of its own, so fsync never runs on the I/O thread.
//
// The I/O thread submits one WriteBatch per change and gets a ticket; the writer takes every
// batch queued so far, writes them in order and syncs once (the last write of the group carries
// sync), then reports the group's tickets as done. Batches that arrive while a sync is in flight
// form the next group.
//
// After a failed write the writer fails every batch up to the ticket given to fail_through(),
// which the store calls once it has reloaded its state from disk, so nothing built on the lost
// state is ever written. Before the next group it asks RocksDB to resume (a full disk that has
// room again).
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace kv::node {

struct CommitResult {
  std::uint64_t first = 0;  // tickets first..last completed together
  std::uint64_t last = 0;
  rocksdb::Status status;
};

class Committer {
 public:
  // `on_done` runs on the writer thread after each group; it must only hand the result over.
  Committer(rocksdb::DB& db, bool sync, std::function<void(const CommitResult&)> on_done);
  ~Committer();  // writes what is queued, then joins
  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;

  std::uint64_t submit(rocksdb::WriteBatch batch);
  // Fails every batch with a ticket up to `ticket` that is not written yet.
  void fail_through(std::uint64_t ticket);

 private:
  void run();

  rocksdb::DB& db_;
  const bool sync_;
  std::function<void(const CommitResult&)> on_done_;
  std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_:
  std::deque<std::pair<std::uint64_t, rocksdb::WriteBatch>> queue_;
  std::uint64_t next_ticket_ = 1;
  std::uint64_t fail_through_ = 0;
  bool stop_ = false;
  // Writer thread only:
  bool needs_resume_ = false;
  std::thread thread_;
};

}  // namespace kv::node
