// Group commit on a writer thread of its own, so fsync never runs on the I/O thread.
//
// The I/O thread submits one WriteBatch per change and gets a ticket; the writer takes every
// batch queued so far, writes them in order and syncs once (the last write of the group carries
// sync), then reports the group's tickets as done. Batches that arrive while a sync is in flight
// form the next group.
//
// After a failed write the writer halts: it touches the database no more and fails every
// batch, since each was built on state that is now lost, until the store has reopened the
// database, reloaded its state and called resume() with the last ticket it handed out before.
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
  // Ends a halt: batches up to `last_bad` fail, later ones are written to `db`.
  void resume(rocksdb::DB& db, std::uint64_t last_bad);

 private:
  void run();

  const bool sync_;
  std::function<void(const CommitResult&)> on_done_;
  std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_:
  rocksdb::DB* db_;
  std::deque<std::pair<std::uint64_t, rocksdb::WriteBatch>> queue_;
  std::uint64_t next_ticket_ = 1;
  std::uint64_t fail_through_ = 0;
  bool halted_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace kv::node
