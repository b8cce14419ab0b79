#include "sync/sync_machine.hpp"

#include <algorithm>
#include <map>

namespace kv::sync {

SyncMachine::SyncMachine(SyncLog& log, std::vector<std::string> addresses, MachineOptions options)
    : log_(log), options_(options) {
  // A fresh log, or one whose writes may have been lost (its last process did not close it, and
  // the machine has rebooted since), does not know what stamps the nodes hold: it waits to hear
  // every node.
  // Durably: a crash before every node has reported leaves it unverified, whatever the boot of
  // the next start (found by kvsim, seed 200).
  if (options_.restored_log || log_.may_have_lost_writes()) log_.set_unverified(true);
  vouched_ = !log_.unverified();
  for (auto& a : addresses) {
    Link l;
    l.view.address = std::move(a);
    l.backoff = options_.backoff_initial;
    links_.push_back(std::move(l));
  }
  // A rebuild a crash interrupted goes on, whether or not a node took its claim yet: what
  // decided it (a node claimed by a later life) may not show again.
  if (log_.rebuild_id() != 0) {
    vouched_ = false;
    start_rebuild();
  }
}

bool SyncMachine::all_reached() const {
  return std::all_of(links_.begin(), links_.end(), [](const Link& l) { return l.view.ever_up; });
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
  if (st.syncer_life > log_.life()) {
    // The node took a claim of a later life than ours: this log is a copy that missed lives (or
    // another kvsync runs against it). Those lives may have handed out numbers this copy names
    // other values by (a copy taken before a power loss cut the tail it holds: kvsim seed
    // 1008626), which no STATUS shows: the log is rebuilt from the nodes. Its APPLYs would be
    // refused meanwhile: it takes a later life and connects again.
    const std::uint64_t theirs = st.syncer_life;
    log_.raise_life(theirs);
    if (!rebuild_) {
      verdict.warnings.push_back("node " + st.name + " was claimed by kvsync life " +
                                 std::to_string(theirs) +
                                 " since this log's: it is an older copy; rebuilding it from "
                                 "every configured node before stamping anything");
      start_rebuild();
    }
    return refuse("node " + st.name + " was claimed by kvsync life " + std::to_string(theirs) +
                  ", later than this one's (another kvsync runs against it, or this log is a "
                  "copy that missed lives); connecting again as life " +
                  std::to_string(log_.life()));
  }
  if (rebuild_ || needs_rebuild(st)) {
    gather_for_rebuild(link, st, verdict);
    return verdict;
  }
  Admission a = admit(link.view.address, st, verdict);
  if (a.refused) return refuse(std::move(*a.refused));
  start_link(link, st, a, verdict);
  return verdict;
}

// The log cannot vouch for what the nodes hold (lost, replaced, or older than they are): it
// stamps nothing while it gathers every node's stamped values to rebuild itself.
void SyncMachine::gather_for_rebuild(Link& link, const NodeStatus& st, StatusVerdict& verdict) {
  if (!rebuild_) {
    verdict.warnings.push_back(
        "node " + st.name + " holds stamps up to " + std::to_string(st.applied_stamp) +
        " that the syncer's log (at stamp " + std::to_string(log_.counter()) +
        (log_.fresh() ? ", new" : "") +
        ") does not know: the log was lost or replaced; rebuilding it from every configured "
        "node before stamping anything");
    start_rebuild();
  }
  auto& v = link.view;
  take_status(link, st);
  if (v.ever_up) ++v.reconnects;
  v.ever_up = true;
  link.backoff = options_.backoff_initial;
  link.fetch_in_flight = false;
  link.in_flight.clear();
  reset_gathering(link);
}

// Which life of which node this is, by the log's node records: a known data directory (maybe an
// older copy, or forgotten and back), an unknown one under a known name (refused), one from
// another log (refused), or a new node.
SyncMachine::Admission SyncMachine::admit(const std::string& address, const NodeStatus& st,
                                          StatusVerdict& verdict) {
  Admission a;
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
      a.reset = true;
    }
    if (retired) {
      // A copy from an earlier life of this node, which it left when it was restored before:
      // older still than what the log has of it.
      verdict.warnings.push_back("node " + st.name +
                                 " was restored from a copy of an earlier life of its data "
                                 "directory; it takes a new incarnation and gets everything "
                                 "again from the log");
      a.rebirth = a.reset = true;
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
      a.rebirth = a.reset = true;
    }
  } else if (rec && !rec->forgotten) {
    // Another data directory under a known name: a wiped node, or a second node given the
    // same name. Which one only the operator knows (issue 10, "operator paths").
    a.refused = "node " + st.name + " at " + address +
                " has a data directory the syncer's log does not know (incarnation " +
                std::to_string(st.incarnation) + ", the log knows " +
                std::to_string(rec->incarnation) +
                "); if its data directory was wiped or replaced on purpose, run `kvsync "
                "forget-node " +
                st.name + " --data DIR` with kvsync stopped (or start kvsync with --forget-node " +
                st.name +
                "), and it is resynced from scratch; if it is another node, give "
                "it another name";
  } else if (st.log_id != 0 && st.log_id != log_.log_id() && st.log_id != log_.rebuild_id()) {
    a.refused = "node " + st.name + " at " + address +
                " holds changes stamped by another syncer log; if it belongs to this "
                "cluster, wipe its data directory (its changes that were never synced are "
                "lost) and start it again";
  } else {
    // A new node, or a new data directory under a forgotten name.
    if (has_history) {
      verdict.warnings.push_back("node " + st.name +
                                 " holds changes the log does not know of it: full resync");
      a.reset = true;
    }
    log_.admit(st.name, st.incarnation, st.applied_stamp, st.synced_upto);
  }
  return a;
}

// A node admitted: its link starts (over) from what it reported.
void SyncMachine::start_link(Link& link, const NodeStatus& st, Admission a,
                             StatusVerdict& verdict) {
  // A node that applied stamps this log never issued means the log was replaced: never hand
  // those stamps out again.
  log_.observe_stamp(st.applied_stamp);
  bool reset = a.reset;
  const bool rebirth = a.rebirth;
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
  take_status(link, st);
  link.send_from = reset ? 0 : st.memory_applied_stamp;
  link.needs_reset = reset;
  link.needs_rebirth = rebirth;
  // Reset because it missed compaction: its pending changes are checked as they are fetched.
  if (reset && !rebirth) log_.recheck(st.name, st.seq);
  link.greeted = false;
  link.purge_sent = 0;
  link.marks_sent = 0;
  link.fetch_in_flight = false;
  link.in_flight.clear();
  log_.note_applied(st.name, st.applied_stamp);
  if (v.ever_up) ++v.reconnects;
  link.backoff = options_.backoff_initial;
  link.fetch_wanted = true;
  link.notified = st.seq;
  if (!v.ever_up) {
    v.ever_up = true;
    if (!vouched_ && all_reached()) {
      // Every configured node has reported, none ahead of the log: it vouches for them all.
      vouched_ = true;
      log_.set_unverified(false);
      for (auto& l : links_) l.fetch_wanted = true;
    }
  }
}

bool SyncMachine::marks_settled() const {
  for (const auto& [name, rec] : log_.nodes()) {
    if (!rec.forgotten && rec.cursor < rec.unsettled_upto) return false;
  }
  return true;
}

// The link is up with this STATUS.
void SyncMachine::take_status(Link& link, const NodeStatus& st) {
  auto& v = link.view;
  v.status = st;
  v.refused.clear();
  v.up = true;
  v.applied_stamp = st.applied_stamp;
  v.synced_upto = st.synced_upto;
  link.node_applied = st.memory_applied_stamp;
}

bool SyncMachine::needs_rebuild(const NodeStatus& st) const {
  const bool ours = st.log_id == log_.log_id() || st.log_id == log_.rebuild_id();
  // Stamps this log never handed out: applied there, or announced by it (a node that was
  // connected while the log went on, even if it applied little of it).
  if (st.applied_stamp > log_.counter()) return true;
  if (ours && st.syncer_stamp > log_.counter()) return true;
  if (log_.rebuild_id() != 0 && st.log_id == log_.rebuild_id()) return true;  // interrupted
  // Following another log: one this log became after the copy it was put back from (a rebuild
  // it does not remember), if the log knows the node; or any, while the log does not vouch for
  // the nodes yet (new, restored, or crashed with unsynced writes).
  const auto rec = log_.node(st.name);
  const bool known = rec.has_value();
  // Told that more of its changes are in the log than this log has: a newer state of the log
  // told it so.
  if (ours && rec && rec->incarnation == st.incarnation && st.synced_upto > rec->cursor) {
    return true;
  }
  if (st.log_id != 0 && !ours && (known || !vouched_)) return true;
  // History from a log that had no id (written before logs had one), told to a new log.
  return log_.fresh() && (st.applied_stamp > 0 || st.synced_upto > 0);
}

void SyncMachine::start_rebuild() {
  rebuild_ = Rebuild{log_.begin_rebuild()};
  for (auto& l : links_) {
    l.fetch_wanted = false;
    reset_gathering(l);
  }
}

void SyncMachine::reset_gathering(Link& l) {
  l.claimed = false;
  l.dump_in_flight = false;
  l.dumped = false;
  l.dump_after.clear();
  l.dump_items.clear();
  l.dump_cursors.clear();
  l.dump_seq = 0;
}

std::optional<proto::msg::Dump> SyncMachine::next_dump(std::size_t i) {
  Link& link = links_[i];
  if (!rebuild_ || !link.view.up || !link.claimed || link.dumped || link.dump_in_flight) {
    return std::nullopt;
  }
  link.dump_in_flight = true;
  return proto::msg::Dump{link.dump_after, options_.batch_limit};
}

std::optional<std::string> SyncMachine::on_dumped(std::size_t i, const proto::msg::Dumped& d) {
  Link& link = links_[i];
  if (!rebuild_ || !link.dump_in_flight) return std::nullopt;
  link.dump_in_flight = false;
  if (link.dump_after.empty()) link.dump_cursors = d.cursors;
  link.dump_items.insert(link.dump_items.end(), d.items.begin(), d.items.end());
  link.dump_seq = d.seq;
  if (!d.next.empty()) {
    link.dump_after = d.next;
    return std::nullopt;
  }
  link.dumped = true;
  return finish_rebuild();
}

// Every configured node took the new log's id and told what it holds: the log becomes the
// latest stamped value of each item any of them holds (rule R), its counter their highest
// applied stamp, and each node's cursor the furthest any of them knew (docs/sync.md).
std::optional<std::string> SyncMachine::finish_rebuild() {
  for (const auto& l : links_) {
    if (!l.view.up || !l.claimed || !l.dumped) return std::nullopt;
  }
  SyncLog::Rebuilt r;
  for (const auto& l : links_) {
    r.purged_upto = std::max(r.purged_upto, l.view.status.purged_upto);
    // Past every stamp any node applied or heard of: the lost log may have handed out more
    // than were applied, and none of those numbers may name another value now.
    r.counter = std::max({r.counter, l.node_applied, l.view.status.syncer_stamp});
    r.max_id_number = std::max(r.max_id_number, l.view.status.max_id_number);
  }
  r.counter = std::max(r.counter, log_.counter());
  std::map<std::string, StampedChange> latest;
  for (const auto& l : links_) {
    // A node behind the compaction point may hold items whose deletes it never got.
    if (l.node_applied < r.purged_upto) continue;
    for (const auto& e : l.dump_items) {
      // A stamp some node holds is handed out already, whatever its STATUS said.
      r.counter = std::max(r.counter, e.stamp);
      auto [it, fresh] = latest.try_emplace(e.item.id, e);
      if (!fresh &&
          stamped_beats(e.item.deleted, e.stamp, it->second.item.deleted, it->second.stamp)) {
        it->second = e;
      }
    }
  }
  for (auto& [id, e] : latest) r.entries.push_back(std::move(e));
  for (const auto& n : links_) {
    const auto& st = n.view.status;
    std::uint64_t cursor = n.view.synced_upto;
    for (const auto& m : links_) {
      for (const auto& c : m.dump_cursors) {
        if (c.node == st.name && c.incarnation == st.incarnation) {
          cursor = std::max(cursor, c.seq);
        }
      }
    }
    cursor = std::min(cursor, st.seq);
    r.nodes.emplace_back(
        st.name,
        NodeRecord{
            st.incarnation, cursor, n.node_applied, false, {}, std::max(st.seq, n.dump_seq), 0});
  }
  log_.rebuild(r);
  rebuild_.reset();
  vouched_ = true;
  log_.set_unverified(false);
  for (auto& l : links_) {
    l.greeted = false;
    l.send_from = l.node_applied;
    l.needs_reset = l.node_applied < r.purged_upto;
    l.needs_rebirth = false;
    l.purge_sent = 0;
    l.marks_sent = 0;
    l.fetch_wanted = true;
    reset_gathering(l);
  }
  return "rebuilt the syncer's log from " + std::to_string(links_.size()) +
         " nodes: " + std::to_string(r.entries.size()) + " items, stamp " +
         std::to_string(r.counter);
}

SyncMachine::Duration SyncMachine::on_down(std::size_t i) {
  Link& link = links_[i];
  link.view.up = false;
  link.fetch_in_flight = false;
  link.in_flight.clear();
  reset_gathering(link);
  const Duration wait = link.backoff;
  link.backoff = std::min(link.backoff * 2, options_.backoff_max);
  return wait;
}

void SyncMachine::on_notification(std::size_t i, Notification::Kind kind, std::uint64_t seq) {
  Link& link = links_[i];
  if (!link.view.up) return;
  link.view.seq_seen = std::max(link.view.seq_seen, seq);
  // Local changes (and the greeting) may need a fetch; changes we applied never do (no echo).
  if (kind == Notification::Kind::kSynced) return;
  link.notified = std::max(link.notified, seq);
  if (seq > cursor_of(link)) link.fetch_wanted = true;
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
  const auto rec = log_.node(link.view.status.name);
  link.applied_at_fetch = rec ? rec->applied : 0;
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
  // Again only if there may be more: the answer stopped at the limit, or the node announced a
  // change past it. Every durable local change is announced, so one that becomes durable later
  // wakes the fetcher itself (asking again regardless doubled the FETCHes under load).
  link.fetch_wanted = got.changes.size() >= options_.fetch_limit || link.notified > cursor_of(link);
  return out;
}

std::optional<proto::msg::Apply> SyncMachine::next_apply(std::size_t i) {
  Link& link = links_[i];
  if (!link.view.up || link.in_flight.size() >= std::max<std::size_t>(options_.apply_window, 1)) {
    return std::nullopt;
  }
  if (rebuild_) {
    if (link.claimed || !link.in_flight.empty()) return std::nullopt;
    // The claim: the node takes the rebuilt log's id, so that an APPLY of the old log still on
    // its way is refused from now on; it keeps its write fence, and its stamps.
    proto::msg::Apply claim;
    claim.after_stamp = claim.upto_stamp = link.node_applied;
    claim.log_id = rebuild_->id;
    claim.adopt = true;
    claim.hold = true;
    claim.incarnation = link.view.status.incarnation;
    claim.syncer_life = log_.life();
    link.in_flight.push_back({claim, 0});
    return claim;
  }
  if (!vouched_) return std::nullopt;  // the log may not know the stamps the node holds
  const auto& st = link.view.status;
  // Stamps go out before the log's fsync (docs/sync.md, "The syncer's fsync"): one a power loss
  // takes back is in the state the next syncer life reads from the nodes before it stamps, and
  // a batch still on its way after that is refused (syncer lives). What tells a node that
  // changes are in the log, its synced_upto and session marks, waits until the disk has it.
  const bool durable = log_.durable_stamp() >= log_.counter();
  const std::uint64_t durable_cursor = log_.durable_cursor(st.name, st.incarnation);
  // But a node's own changes come back to it only with the synced_upto that covers them: a value
  // of its own it got without, it keeps as a pending change, stamped as it was before (kvsim
  // seed 226), and nothing sends the item again once synced_upto comes.
  const std::uint64_t cap = durable_cursor >= log_.cursor(st.name, st.incarnation)
                                ? log_.counter()
                                : log_.durable_stamp();
  // Session marks go with a batch up to the latest stamp: not before the node may have them all.
  const bool marks_due = link.marks_sent != log_.marks_version() && marks_settled() && durable;
  const bool new_stamps = link.send_from < cap;
  if (link.greeted && !link.needs_reset && !new_stamps && link.view.synced_upto >= durable_cursor &&
      link.purge_sent >= log_.purged_upto() && !marks_due) {
    return std::nullopt;
  }
  // Behind batches in flight only more stamps: what the others change (a new incarnation, a
  // full resync) must be answered first, and news alone waits for the answers it would repeat.
  if (!link.in_flight.empty() &&
      (!link.greeted || link.needs_reset || link.needs_rebirth || !new_stamps)) {
    return std::nullopt;
  }
  link.greeted = true;
  auto batch = log_.next_batch(link.send_from, options_.batch_limit, cap);
  // Exactly the node's own changes that the stamps up to upto_stamp include: those it may stop
  // treating as pending (docs/sync.md, "Applying a stamped change"). A full resync starts
  // from what the log holds now instead: the node forgets every item whose changes the log has
  // (an item deleted since, whose tombstone is compacted, would otherwise stay on it).
  batch.synced_upto =
      std::min(log_.cursor_at(st.name, st.incarnation, batch.upto_stamp), durable_cursor);
  if (link.needs_reset) batch.synced_upto = durable_cursor;
  if (link.needs_rebirth) batch.synced_upto = 0;
  batch.reset = link.needs_reset;
  batch.rebirth = link.needs_rebirth;
  batch.after_stamp = link.node_applied;
  batch.incarnation = st.incarnation;
  batch.syncer_life = log_.life();
  batch.stamp_high = log_.counter();
  // Every node's cursor as of upto_stamp, which the node keeps (should the log be lost); up to
  // the latest stamp, the node now holds every node's changes up to them (session marks).
  for (auto& m : log_.marks_at(batch.upto_stamp)) {
    if (batch.marks.size() >= proto::kMaxSessionMarks) break;
    batch.marks.push_back(std::move(m));
  }
  // Session marks claim the node holds every stamp at once, as the log has them now: only in a
  // batch that goes alone. Behind batches in flight, a batch lost with its connection may be
  // replaced by one built later, from a log that has moved values to later stamps, and this one
  // could still arrive after it (kvsim seed 328805: a mark claimed a write the node lacked).
  batch.marks_current =
      batch.upto_stamp >= log_.counter() && durable && marks_settled() && link.in_flight.empty();
  Link::Sent sent{batch, batch.marks_current ? log_.marks_version() : 0};
  sent.envelope.changes.clear();
  sent.envelope.marks.clear();
  link.in_flight.push_back(std::move(sent));
  link.node_applied = batch.upto_stamp;
  link.send_from = batch.upto_stamp;
  return batch;
}

AppliedOutcome SyncMachine::on_applied(std::size_t i, const proto::msg::Applied& applied) {
  Link& link = links_[i];
  AppliedOutcome out;
  if (link.in_flight.empty()) return out;  // an answer to no APPLY in flight
  const Link::Sent sent_with = std::move(link.in_flight.front());
  link.in_flight.pop_front();
  const proto::msg::Apply& sent = sent_with.envelope;
  if (rebuild_) {
    link.claimed = true;
    link.node_applied = applied.applied_stamp;
    return out;
  }
  link.view.applied_stamp = applied.applied_stamp;
  link.view.synced_upto = applied.synced_upto;
  if (link.in_flight.empty()) {
    // What the node says it holds now, which the next APPLY continues from.
    link.node_applied = applied.applied_stamp;
    if (!link.needs_reset) link.send_from = applied.applied_stamp;  // a full resync starts at 0
  }
  if (sent.reset) link.needs_reset = false;
  link.purge_sent = sent.purge_upto;
  if (sent_with.marks_version != 0) link.marks_sent = sent_with.marks_version;
  ++link.view.applies;
  auto& st = link.view.status;
  if (sent.rebirth) {
    // It took a new incarnation: its cursor starts again (everything it held counts as synced).
    link.needs_rebirth = false;
    st.incarnation = applied.incarnation;
    log_.admit(st.name, applied.incarnation, applied.applied_stamp, applied.synced_upto);
    link.fetch_wanted = true;
  }
  log_.note_applied(st.name, applied.applied_stamp);
  check_digest(link, applied, out);
  out.compacted = compact();
  return out;
}

// With every stamp applied and no unsynced change, a node holds exactly the log's live entries:
// its digest must be the log's. A node that differs is resynced from scratch once; if it still
// differs after that, it is left as it is and the operator is told (the log itself may be
// wrong, and resyncing again would change nothing). Not while a rebuilt log is unsettled: a
// value another node's pending change replaced is then missing from it until that change is
// fetched, and a node may rightly hold its own change that the marks say was stamped.
void SyncMachine::check_digest(Link& link, const proto::msg::Applied& applied,
                               AppliedOutcome& out) {
  if (applied.applied_stamp != log_.counter() || applied.unsynced != 0) return;
  if (!marks_settled()) return;
  auto& v = link.view;
  ++v.digest_checks;
  out.checked = true;
  out.agrees = applied.digest == log_.digest();
  const std::string where =
      "node " + v.status.name + " at stamp " + std::to_string(applied.applied_stamp);
  if (applied.digest == log_.digest()) {
    if (v.diverged) {
      out.repaired = where + " holds the log's items again (digest " +
                     std::to_string(applied.digest) + ") after a full resync";
    }
    v.diverged = false;
    link.repair_tried = false;
    return;
  }
  v.diverged = true;
  ++v.digest_mismatches;
  const std::string differs = where + " holds other items than the syncer's log (digest " +
                              std::to_string(applied.digest) + ", the log's " +
                              std::to_string(log_.digest()) + ")";
  if (!link.repair_tried) {
    link.repair_tried = true;
    link.needs_reset = true;
    link.send_from = 0;
    out.divergence = differs + ": repairing it with a full resync from the log";
  } else {
    out.divergence = differs +
                     " even after a full resync: left as it is; compare it with the "
                     "other nodes (kvcli nodes) and wipe and forget it if it is wrong";
  }
}

// Tombstones every node the log knows has applied are dropped from the log, and the nodes are
// told (the senders see purge_upto move). A known node that is away, or no longer configured,
// holds compaction back until it returns or is forgotten (docs/sync.md, "Compaction").
std::size_t SyncMachine::compact() {
  std::uint64_t horizon = ~std::uint64_t{0};
  for (const auto& [name, rec] : log_.nodes()) {
    if (!rec.forgotten) horizon = std::min(horizon, rec.applied);
  }
  // A FETCH travels on a connection of its own: its answer may have been computed before the
  // node applied a stamped delete that dropped one of the changes in it (overruled), and reach
  // us after that APPLY's answer. Purged meanwhile, the delete's tombstone would not be there to
  // overrule the change when it is stamped. What the node had applied when the FETCH was sent it
  // had applied before it answered (and dropped what those deletes overruled): purge up to that.
  for (const auto& l : links_) {
    if (l.fetch_in_flight) horizon = std::min(horizon, l.applied_at_fetch);
  }
  if (horizon == ~std::uint64_t{0}) return 0;
  if (horizon <= log_.purged_upto()) return 0;
  return log_.purge(horizon);
}

}  // namespace kv::sync
