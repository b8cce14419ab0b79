#include "node/committer.hpp"

#include <algorithm>

namespace kv::node {

namespace {
// Replays one batch into another: a group becomes one write, one log record, one pass through
// RocksDB's write path.
class Append : public storage::Batch::Handler {
 public:
  explicit Append(storage::Batch& into) : into_(into) {}
  void Put(const rocksdb::Slice& key, const rocksdb::Slice& value) override {
    into_.Put(key, value);
  }
  void Delete(const rocksdb::Slice& key) override { into_.Delete(key); }

 private:
  storage::Batch& into_;
};
}  // namespace

Committer::Committer(storage::Engine& db, bool sync,
                     std::function<void(const CommitResult&)> on_done, CommitMode mode,
                     std::chrono::microseconds lazy_delay)
    : sync_(sync),
      mode_(mode),
      lazy_delay_(sync ? lazy_delay : std::chrono::microseconds{0}),
      on_done_(std::move(on_done)),
      db_(&db) {
  if (mode_ == CommitMode::kThread) thread_ = std::thread([this] { run(); });
}

Committer::~Committer() {
  if (mode_ == CommitMode::kManual) return;  // the queue is lost, as in a crash
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

std::uint64_t Committer::submit(storage::Batch batch, bool lazy) {
  std::uint64_t ticket;
  bool wake;
  {
    std::lock_guard lock(mu_);
    ticket = next_ticket_++;
    // A lazy batch behind others wakes nobody: the writer is busy, or waiting for an eager one.
    wake = queue_.empty() || !lazy;
    if (queue_.empty()) first_queued_ = std::chrono::steady_clock::now();
    queue_.emplace_back(ticket, std::move(batch));
    if (!lazy) ++eager_;
  }
  if (wake) cv_.notify_one();
  return ticket;
}

void Committer::hurry() {
  {
    std::lock_guard lock(mu_);
    hurry_ = true;
  }
  cv_.notify_one();
}

void Committer::resume(storage::Engine& db, std::uint64_t last_bad) {
  {
    std::lock_guard lock(mu_);
    db_ = &db;
    fail_through_ = std::max(fail_through_, last_bad);
    halted_ = false;
  }
  cv_.notify_one();
}

std::size_t Committer::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

bool Committer::commit_next(std::size_t max_batches) {
  Queue group;
  std::uint64_t fail_through;
  storage::Engine* db;
  {
    std::lock_guard lock(mu_);
    if (queue_.empty()) return false;
    const std::size_t n = std::clamp<std::size_t>(max_batches, 1, queue_.size());
    for (std::size_t i = 0; i < n; ++i) {
      group.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    fail_through = halted_ ? ~std::uint64_t{0} : fail_through_;
    db = db_;
  }
  write_group(group, fail_through, *db);
  return true;
}

void Committer::run() {
  for (;;) {
    Queue group;
    std::uint64_t fail_through;
    storage::Engine* db;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything is written
      if (eager_ == 0 && lazy_delay_.count() > 0) {
        // Only stamped changes so far: let more join this fsync, until an eager batch comes.
        cv_.wait_until(lock, first_queued_ + lazy_delay_,
                       [&] { return stop_ || hurry_ || eager_ > 0; });
      }
      group.swap(queue_);
      eager_ = 0;
      hurry_ = false;
      fail_through = halted_ ? ~std::uint64_t{0} : fail_through_;
      db = db_;
    }
    write_group(group, fail_through, *db);
  }
}

void Committer::write_group(Queue& group, std::uint64_t fail_through, storage::Engine& db) {
  CommitResult r{group.front().first, group.back().first, storage::Status::OK()};
  // Batches the store has given up on (built on state lost to a failed write) are dropped.
  std::size_t skip = 0;
  while (skip < group.size() && group[skip].first <= fail_through) ++skip;
  if (skip > 0) {
    on_done_(CommitResult{group.front().first, group[skip - 1].first,
                          storage::Status::Aborted("an earlier write failed")});
    if (skip == group.size()) return;
    r.first = group[skip].first;
  }
  // Write the group as one batch, then sync the log once. (Not a write with sync set: when the
  // log's flush fails inside such a write, RocksDB 7.8 goes on to sync the failed writer and
  // asserts.)
  if (group.size() - skip == 1) {
    r.status = db.write(group[skip].second, false);
  } else {
    storage::Batch all;
    Append append(all);
    for (std::size_t i = skip; i < group.size() && r.status.ok(); ++i) {
      r.status = group[i].second.Iterate(&append);
    }
    if (r.status.ok()) r.status = db.write(all, false);
  }
  if (r.status.ok() && sync_) r.status = db.sync_log();
  if (!r.status.ok()) {
    // The database's log writer is in an error state now: never touch it again.
    std::lock_guard lock(mu_);
    halted_ = true;
  }
  on_done_(r);
}

}  // namespace kv::node
