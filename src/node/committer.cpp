#include "node/committer.hpp"

namespace kv::node {

Committer::Committer(rocksdb::DB& db, bool sync, std::function<void(const CommitResult&)> on_done)
    : db_(db), sync_(sync), on_done_(std::move(on_done)), thread_([this] { run(); }) {}

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

void Committer::fail_through(std::uint64_t ticket) {
  std::lock_guard lock(mu_);
  fail_through_ = std::max(fail_through_, ticket);
}

void Committer::run() {
  for (;;) {
    std::deque<std::pair<std::uint64_t, rocksdb::WriteBatch>> group;
    std::uint64_t fail_through;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything is written
      group.swap(queue_);
      fail_through = fail_through_;
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
    if (needs_resume_) {
      r.status = db_.Resume();
      needs_resume_ = !r.status.ok();
    }
    for (std::size_t i = skip; i < group.size() && r.status.ok(); ++i) {
      rocksdb::WriteOptions wo;
      wo.sync = sync_ && i + 1 == group.size();
      r.status = db_.Write(wo, &group[i].second);
    }
    if (!r.status.ok()) needs_resume_ = true;
    on_done_(r);
  }
}

}  // namespace kv::node
