// Group commit: the node's changes reach the disk in groups, one sync per group, off the I/O
// thread.
//
// The I/O thread submits one batch per change and gets a ticket; the writer takes every batch
// queued so far, writes them in order as one batch and syncs once, then reports the group's
// tickets as done. Batches that arrive while a sync is in flight form the next group.
//
// A batch submitted as lazy (a syncer's stamped changes: nothing waits on their fsync but the
// syncer's window) lets its group wait up to `lazy_delay` for more before the sync, so that a
// stream of small APPLYs shares one fsync; any other batch, hurry() or a stop ends the wait.
//
// After a failed write the writer halts: it touches the database no more and fails every
// batch, since each was built on state that is now lost, until the store has reopened the
// database, reloaded its state and called resume() with the last ticket it handed out before.
//
// Two ways to run it (CommitMode): on a writer thread of its own (kvnode), or by hand
// (kManual: no thread; the owner calls commit_next(), which the deterministic simulator uses to
// decide when each group becomes durable, and destroying the committer then loses the queue, as
// a crash does).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "storage/engine.hpp"

namespace kv::node {

struct CommitResult {
  std::uint64_t first = 0;  // tickets first..last completed together
  std::uint64_t last = 0;
  storage::Status status;
};

enum class CommitMode { kThread, kManual };

class Committer {
 public:
  // `on_done` runs after each group (on the writer thread, or inside commit_next()); it must
  // only hand the result over.
  Committer(storage::Engine& db, bool sync, std::function<void(const CommitResult&)> on_done,
            CommitMode mode = CommitMode::kThread,
            std::chrono::microseconds lazy_delay = std::chrono::microseconds{0});
  // kThread: writes what is queued, then joins. kManual: drops what is queued (a crash).
  ~Committer();
  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;

  std::uint64_t submit(storage::Batch batch, bool lazy = false);
  // Ends the wait of lazy batches now (a flush before exit must not wait out lazy_delay).
  void hurry();
  // Ends a halt: batches up to `last_bad` fail, later ones are written to `db`.
  void resume(storage::Engine& db, std::uint64_t last_bad);

  // kManual only: writes the oldest `max_batches` queued batches (at least one) as one group and
  // syncs; returns false when nothing was queued.
  bool commit_next(std::size_t max_batches);
  std::size_t queued() const;

 private:
  using Queue = std::deque<std::pair<std::uint64_t, storage::Batch>>;
  void run();
  void write_group(Queue& group, std::uint64_t fail_through, storage::Engine& db);

  const bool sync_;
  const CommitMode mode_;
  const std::chrono::microseconds lazy_delay_;
  std::function<void(const CommitResult&)> on_done_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_:
  storage::Engine* db_;
  Queue queue_;
  std::size_t eager_ = 0;                               // batches in queue_ not submitted as lazy
  bool hurry_ = false;                                  // hurry() since the last group was taken
  std::chrono::steady_clock::time_point first_queued_;  // when queue_ last became non-empty
  std::uint64_t next_ticket_ = 1;
  std::uint64_t fail_through_ = 0;
  bool halted_ = false;
  bool stop_ = false;
  std::thread thread_;  // kThread only
};

}  // namespace kv::node
