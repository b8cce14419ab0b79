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
  auto refuse = [&](std::string why) {
    link.view.refused = why;
    verdict.refused = std::move(why);
    return verdict;
  };
  for (std::size_t j = 0; j < links_.size(); ++j) {
    if (j != i && links_[j].view.up && links_[j].view.status.name == st.name) {
      return refuse("the node at " + link.view.address + " is named '" + st.name +
                    "' like the node at " + links_[j].view.address + "; node names must differ");
    }
  }
  bool reset = false, rebirth = false;
  const auto rec = log_.node(st.name);
  const bool retired = rec && std::find(rec->retired.begin(), rec->retired.end(), st.incarnation) !=
                                  rec->retired.end();
  const bool has_history = st.applied_stamp > 0 || st.log_id != 0;
  if (rec && (rec->incarnation == st.incarnation || retired)) {
    // This node's data directory, or a copy of it.
    if (rec->forgotten) {
      // Forgotten, and back: it counts again. What it holds may miss deletes whose tombstones
      // are compacted, so it forgets everything but its pending changes and gets the whole
      // log; those changes are checked against the log as they are fetched.
      verdict.warnings.push_back("node " + st.name + " was forgotten and comes back: full resync");
      log_.readmit(st.name);
      reset = true;
    }
    if (retired) {
      // A copy from an earlier life of this node, which it left when it was restored before:
      // older still than what the log has of it.
      verdict.warnings.push_back("node " + st.name +
                                 " was restored from a copy of an earlier life of its data "
                                 "directory; it takes a new incarnation and gets everything "
                                 "again from the log");
      rebirth = reset = true;
    } else if (st.seq < rec->cursor) {
      // Its sequence went back: the directory was restored from an older copy. The changes it
      // holds are in the log already (or older than what is), and new ones would reuse
      // sequence numbers the cursor passed: it takes a new incarnation and resyncs.
      verdict.warnings.push_back(
          "node " + st.name + " is at seq " + std::to_string(st.seq) + " but the log has its " +
          "changes up to " + std::to_string(rec->cursor) +
          ": its data directory was restored from an older copy; it takes a new incarnation "
          "and gets everything again from the log (what it changed after that copy was taken "
          "and the log never received is gone)");
      rebirth = reset = true;
    }
  } else if (rec && !rec->forgotten) {
    // Another data directory under a known name: a wiped node, or a second node given the
    // same name. Which one only the operator knows (issue 10, "operator paths").
    return refuse(
        "node " + st.name + " at " + link.view.address +
        " has a data directory the syncer's log does not know (incarnation " +
        std::to_string(st.incarnation) + ", the log knows " + std::to_string(rec->incarnation) +
        "); if its data directory was wiped or replaced on purpose, run `kvsync "
        "forget-node " +
        st.name + " --data DIR` with kvsync stopped (or start kvsync with --forget-node " +
        st.name +
        "), and it is resynced from scratch; if it is another node, give "
        "it another name");
  } else if (st.log_id != 0 && st.log_id != log_.log_id()) {
    return refuse("node " + st.name + " at " + link.view.address +
                  " holds changes stamped by another syncer log; if it belongs to this "
                  "cluster, wipe its data directory (its changes that were never synced are "
                  "lost) and start it again");
  } else {
    // A new node, or a new data directory under a forgotten name.
    if (has_history) {
      verdict.warnings.push_back("node " + st.name +
                                 " holds changes the log does not know of it: full resync");
      reset = true;
    }
    log_.admit(st.name, st.incarnation, st.applied_stamp);
  }
  // A node that applied stamps this log never issued means the log was replaced: never hand
  // those stamps out again.
  log_.observe_stamp(st.applied_stamp);
  if (st.applied_stamp < log_.purged_upto() && !reset) {
    // It may hold items whose tombstones are compacted away (even at applied stamp 0: a copy
    // taken before it applied anything holds its own items): send everything again.
    verdict.warnings.push_back("node " + st.name + " applied stamps up to " +
                               std::to_string(st.applied_stamp) +
                               " only, behind the compaction point " +
                               std::to_string(log_.purged_upto()) + ": full resync");
    reset = true;
  }
  auto& v = link.view;
  v.status = st;
  v.refused.clear();
  v.up = true;
  v.applied_stamp = st.applied_stamp;
  v.synced_upto = st.synced_upto;
  link.node_applied = st.memory_applied_stamp;
  link.send_from = reset ? 0 : st.memory_applied_stamp;
  link.needs_reset = reset;
  link.needs_rebirth = rebirth;
  link.greeted = false;
  link.purge_sent = 0;
  link.marks_sent = 0;
  link.fetch_in_flight = false;
  link.apply_in_flight = false;
  log_.note_applied(st.name, st.applied_stamp);
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
  // A restored copy's changes are old: fetched, they would be stamped anew and win.
  if (link.needs_rebirth) return std::nullopt;
  if (!may_stamp()) return std::nullopt;  // asked again once every node has reported
  link.fetch_wanted = false;
  link.fetch_in_flight = true;
  link.fetch_after = cursor_of(link);
  return proto::msg::Fetch{link.fetch_after, options_.fetch_limit};
}

FetchOutcome SyncMachine::on_fetched(std::size_t i, const proto::msg::Changes& got) {
  Link& link = links_[i];
  FetchOutcome out;
  // An answer to no FETCH in flight, or to one from before the cursor moved, is not acted on:
  // stamping its changes again would let them beat later values of their items.
  if (!link.fetch_in_flight) return out;
  link.fetch_in_flight = false;
  ++link.view.fetches;
  const auto& st = link.view.status;
  const auto rec = log_.node(st.name);
  if (!rec || rec->incarnation != st.incarnation) return out;  // forgotten meanwhile
  const std::uint64_t cursor = cursor_of(link);
  if (link.fetch_after != cursor) return out;
  if (got.changes.empty() && got.seq_high <= cursor) return out;
  out.stamped = log_.stamp(st.name, st.incarnation, got.changes, got.seq_high);
  out.moved = true;
  link.fetch_wanted = true;  // until a fetch comes back empty
  return out;
}

std::optional<proto::msg::Apply> SyncMachine::next_apply(std::size_t i) {
  Link& link = links_[i];
  if (!link.view.up || link.apply_in_flight) return std::nullopt;
  const auto& st = link.view.status;
  const std::uint64_t cursor = cursor_of(link);
  if (link.greeted && !link.needs_reset && link.send_from >= log_.counter() &&
      link.view.synced_upto >= cursor && link.purge_sent >= log_.purged_upto() &&
      link.marks_sent == log_.marks_version()) {
    return std::nullopt;
  }
  link.greeted = true;
  auto batch = log_.next_batch(link.send_from, options_.batch_limit);
  // Exactly the node's own changes that the stamps up to upto_stamp include: those it may stop
  // treating as pending (docs/sync.md, "Applying a stamped change"). A full resync starts
  // from what the log holds now instead: the node forgets every item whose changes the log has
  // (an item deleted since, whose tombstone is compacted, would otherwise stay on it).
  batch.synced_upto = log_.cursor_at(st.name, st.incarnation, batch.upto_stamp);
  if (link.needs_reset) batch.synced_upto = cursor;
  if (link.needs_rebirth) batch.synced_upto = 0;
  batch.reset = link.needs_reset;
  batch.rebirth = link.needs_rebirth;
  batch.after_stamp = link.node_applied;
  batch.incarnation = st.incarnation;
  batch.stamp_high = log_.counter();
  // Up to the latest stamp, the node now holds every node's changes up to its cursor.
  if (batch.upto_stamp >= log_.counter()) {
    for (auto& m : log_.marks()) {
      if (batch.marks.size() >= proto::kMaxSessionMarks) break;
      batch.marks.push_back(std::move(m));
    }
  }
  link.apply_in_flight = true;
  link.in_flight = batch;
  link.in_flight.changes.clear();
  link.in_flight.marks.clear();
  link.marks_in_flight = batch.upto_stamp >= log_.counter() ? log_.marks_version() : 0;
  return batch;
}

std::size_t SyncMachine::on_applied(std::size_t i, const proto::msg::Applied& applied) {
  Link& link = links_[i];
  if (!link.apply_in_flight) return 0;  // an answer to no APPLY in flight
  const proto::msg::Apply& sent = link.in_flight;
  link.apply_in_flight = false;
  link.view.applied_stamp = applied.applied_stamp;
  link.view.synced_upto = applied.synced_upto;
  link.node_applied = applied.applied_stamp;
  link.send_from = applied.applied_stamp;
  link.needs_reset = false;
  link.purge_sent = sent.purge_upto;
  if (link.marks_in_flight != 0) link.marks_sent = link.marks_in_flight;
  ++link.view.applies;
  auto& st = link.view.status;
  if (sent.rebirth) {
    // It took a new incarnation: its cursor starts again (everything it held counts as synced).
    link.needs_rebirth = false;
    st.incarnation = applied.incarnation;
    log_.admit(st.name, applied.incarnation, applied.applied_stamp);
    link.fetch_wanted = true;
  }
  log_.note_applied(st.name, applied.applied_stamp);
  return compact();
}

// Tombstones every node the log knows has applied are dropped from the log, and the nodes are
// told (the senders see purge_upto move). A known node that is away, or no longer configured,
// holds compaction back until it returns or is forgotten (docs/sync.md, "Compaction").
std::size_t SyncMachine::compact() {
  std::uint64_t horizon = ~std::uint64_t{0};
  for (const auto& [name, rec] : log_.nodes()) {
    if (!rec.forgotten) horizon = std::min(horizon, rec.applied);
  }
  if (horizon == ~std::uint64_t{0}) return 0;
  if (horizon <= log_.purged_upto()) return 0;
  return log_.purge(horizon);
}

}  // namespace kv::sync
