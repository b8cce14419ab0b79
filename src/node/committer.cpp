#include "node/committer.hpp"

namespace kv::node {

namespace {
// Replays one batch into another: a group becomes one write, one log record, one pass through
// RocksDB's write path.
class Append : public rocksdb::WriteBatch::Handler {
 public:
  explicit Append(rocksdb::WriteBatch& into) : into_(into) {}
  void Put(const rocksdb::Slice& key, const rocksdb::Slice& value) override {
    into_.Put(key, value);
  }
  void Delete(const rocksdb::Slice& key) override { into_.Delete(key); }
  rocksdb::Status status;

 private:
  rocksdb::WriteBatch& into_;
};
}  // namespace

Committer::Committer(rocksdb::DB& db, bool sync, std::function<void(const CommitResult&)> on_done)
    : sync_(sync), on_done_(std::move(on_done)), db_(&db), thread_([this] { run(); }) {}

Committer::~Committer() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

std::uint64_t Committer::submit(rocksdb::WriteBatch batch) {
  std::uint64_t ticket;
  {
    std::lock_guard lock(mu_);
    ticket = next_ticket_++;
    queue_.emplace_back(ticket, std::move(batch));
  }
  cv_.notify_one();
  return ticket;
}

void Committer::resume(rocksdb::DB& db, std::uint64_t last_bad) {
  {
    std::lock_guard lock(mu_);
    db_ = &db;
    fail_through_ = std::max(fail_through_, last_bad);
    halted_ = false;
  }
  cv_.notify_one();
}

void Committer::run() {
  for (;;) {
    std::deque<std::pair<std::uint64_t, rocksdb::WriteBatch>> group;
    std::uint64_t fail_through;
    rocksdb::DB* db;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything is written
      group.swap(queue_);
      fail_through = halted_ ? ~std::uint64_t{0} : fail_through_;
      db = db_;
    }
    CommitResult r{group.front().first, group.back().first, rocksdb::Status::OK()};
    // Batches the store has given up on (built on state lost to a failed write) are dropped.
    std::size_t skip = 0;
    while (skip < group.size() && group[skip].first <= fail_through) ++skip;
    if (skip > 0) {
      on_done_(CommitResult{group.front().first, group[skip - 1].first,
                            rocksdb::Status::Aborted("an earlier write failed")});
      if (skip == group.size()) continue;
      r.first = group[skip].first;
    }
    // Write the group as one batch, then sync the log once. (Not Write with sync set: when the
    // log's flush fails inside such a write, RocksDB 7.8 goes on to sync the failed writer and
    // asserts.)
    if (group.size() - skip == 1) {
      r.status = db->Write(rocksdb::WriteOptions(), &group[skip].second);
    } else {
      rocksdb::WriteBatch all;
      Append append(all);
      for (std::size_t i = skip; i < group.size() && r.status.ok(); ++i) {
        r.status = group[i].second.Iterate(&append);
      }
      if (r.status.ok()) r.status = db->Write(rocksdb::WriteOptions(), &all);
    }
    if (r.status.ok() && sync_) r.status = db->SyncWAL();
    if (!r.status.ok()) {
      // The database's log writer is in an error state now: never touch it again.
      std::lock_guard lock(mu_);
      halted_ = true;
    }
    on_done_(r);
  }
}

}  // namespace kv::node
