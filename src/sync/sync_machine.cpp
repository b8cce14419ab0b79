#include "sync/sync_machine.hpp"

#include <algorithm>

namespace kv::sync {

SyncMachine::SyncMachine(SyncLog& log, std::vector<std::string> addresses, MachineOptions options)
    : log_(log), options_(options) {
  for (auto& a : addresses) {
    Link l;
    l.view.address = std::move(a);
    l.backoff = options_.backoff_initial;
    links_.push_back(std::move(l));
  }
}

bool SyncMachine::all_reached() const {
  return std::all_of(links_.begin(), links_.end(), [](const Link& l) { return l.view.ever_up; });
}

bool SyncMachine::may_stamp() const {
  return log_.counter() > 0 || all_reached();
}

std::uint64_t SyncMachine::cursor_of(const Link& l) const {
  return log_.cursor(l.view.status.name, l.view.status.incarnation);
}

StatusVerdict SyncMachine::on_status(std::size_t i, const NodeStatus& st) {
  Link& link = links_[i];
  StatusVerdict verdict;
  for (std::size_t j = 0; j < links_.size(); ++j) {
    if (j != i && links_[j].view.up && links_[j].view.status.name == st.name) {
      verdict.refused = "the node at " + link.view.address + " is named '" + st.name +
                        "' like the node at " + links_[j].view.address + "; node names must differ";
      return verdict;
    }
  }
  const std::uint64_t cursor = log_.cursor(st.name, st.incarnation);
  if (st.seq < cursor) {
    // The node's sequence went back (a data directory restored from an older copy): its
    // changes after synced_upto are not in the log, whatever the cursor says.
    verdict.warnings.push_back("node " + st.name + " is at seq " + std::to_string(st.seq) +
                               " but the cursor is at " + std::to_string(cursor) +
                               ": was its data directory restored? fetching again from " +
                               std::to_string(st.synced_upto));
    log_.set_cursor(st.name, st.incarnation, st.synced_upto);
  }
  // A node that applied stamps this log never issued means the log was replaced: never hand
  // those stamps out again.
  log_.observe_stamp(st.applied_stamp);
  auto& v = link.view;
  v.status = st;
  v.up = true;
  v.applied_stamp = st.applied_stamp;
  v.synced_upto = st.synced_upto;
  link.greeted = false;
  link.purge_sent = 0;
  link.fetch_in_flight = false;
  link.apply_in_flight = false;
  link.needs_reset = st.applied_stamp > 0 && st.applied_stamp < log_.purged_upto();
  if (link.needs_reset) {
    // It may hold items whose tombstones are compacted away: send everything again.
    verdict.warnings.push_back("node " + st.name + " applied stamps up to " +
                               std::to_string(st.applied_stamp) +
                               " only, behind the compaction point " +
                               std::to_string(log_.purged_upto()) + ": full resync");
    v.applied_stamp = 0;
  }
  if (v.ever_up) ++v.reconnects;
  link.backoff = options_.backoff_initial;
  link.fetch_wanted = true;
  if (!v.ever_up) {
    v.ever_up = true;
    if (may_stamp()) {
      for (auto& l : links_) l.fetch_wanted = true;
    }
  }
  return verdict;
}

SyncMachine::Duration SyncMachine::on_down(std::size_t i) {
  Link& link = links_[i];
  link.view.up = false;
  link.fetch_in_flight = false;
  link.apply_in_flight = false;
  const Duration wait = link.backoff;
  link.backoff = std::min(link.backoff * 2, options_.backoff_max);
  return wait;
}

void SyncMachine::on_notification(std::size_t i, Notification::Kind kind, std::uint64_t seq) {
  Link& link = links_[i];
  if (!link.view.up) return;
  link.view.seq_seen = std::max(link.view.seq_seen, seq);
  // Local changes (and the greeting) may need a fetch; changes we applied never do (no echo).
  if (kind != Notification::Kind::kSynced && seq > cursor_of(link)) link.fetch_wanted = true;
}

std::optional<proto::msg::Fetch> SyncMachine::next_fetch(std::size_t i) {
  Link& link = links_[i];
  if (!link.view.up || link.fetch_in_flight || !link.fetch_wanted) return std::nullopt;
  if (!may_stamp()) return std::nullopt;  // asked again once every node has reported
  link.fetch_wanted = false;
  link.fetch_in_flight = true;
  return proto::msg::Fetch{cursor_of(link), options_.fetch_limit};
}

FetchOutcome SyncMachine::on_fetched(std::size_t i, const proto::msg::Changes& got) {
  Link& link = links_[i];
  link.fetch_in_flight = false;
  ++link.view.fetches;
  FetchOutcome out;
  const std::uint64_t cursor = cursor_of(link);
  if (got.changes.empty() && got.seq_high <= cursor &&
      got.safe_mark <= log_.mark(link.view.status.name, link.view.status.incarnation)) {
    return out;
  }
  out.stamped = log_.stamp(link.view.status.name, link.view.status.incarnation, got.changes,
                           got.seq_high, got.safe_mark);
  out.moved = true;
  link.fetch_wanted = true;  // until a fetch comes back empty
  return out;
}

std::optional<proto::msg::Apply> SyncMachine::next_apply(std::size_t i) {
  Link& link = links_[i];
  if (!link.view.up || link.apply_in_flight) return std::nullopt;
  const std::uint64_t cursor = cursor_of(link);
  if (link.greeted && link.view.applied_stamp >= log_.counter() &&
      link.view.synced_upto >= cursor && link.purge_sent >= log_.purged_upto()) {
    return std::nullopt;
  }
  link.greeted = true;
  auto batch = log_.next_batch(link.view.applied_stamp, options_.batch_limit, cursor);
  batch.reset = link.needs_reset;
  // Up to the latest stamp, the node now holds every node's changes up to its cursor.
  if (batch.upto_stamp >= log_.counter()) {
    for (auto& m : log_.marks()) {  // the configured nodes' cursors only
      if (batch.marks.size() < proto::kMaxSessionMarks &&
          std::any_of(links_.begin(), links_.end(),
                      [&m](const Link& l) { return l.view.status.name == m.node; })) {
        batch.marks.push_back(std::move(m));
      }
    }
  }
  batch.stamp_high = log_.counter();
  link.apply_in_flight = true;
  link.apply_purge = batch.purge_upto;
  return batch;
}

std::size_t SyncMachine::on_applied(std::size_t i, const proto::msg::Applied& applied) {
  Link& link = links_[i];
  link.apply_in_flight = false;
  link.view.applied_stamp = applied.applied_stamp;
  link.view.synced_upto = applied.synced_upto;
  link.needs_reset = false;
  link.purge_sent = link.apply_purge;
  ++link.view.applies;
  return compact();
}

// Tombstones every node has applied are dropped from the log, and the nodes are told (the
// senders see purge_upto move).
std::size_t SyncMachine::compact() {
  if (!all_reached()) return 0;  // a node we have not heard from may still lack them
  std::uint64_t horizon = ~std::uint64_t{0};
  for (const auto& l : links_) horizon = std::min(horizon, l.view.applied_stamp);
  if (horizon <= log_.purged_upto()) return 0;
  return log_.purge(horizon);
}

}  // namespace kv::sync
