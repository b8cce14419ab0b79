// The syncer's rules without I/O (docs/sync.md): for each node link, what a node's status means,
// when to fetch, what to stamp, what to send, when to compact, when and how to rebuild a lost
// log from the nodes, and how long to wait before reconnecting. Each event method takes what a
// node said and updates the state (and the durable log); each next_* method returns the request
// to send now, if any. kvsync's coroutines (syncer.cpp) only carry these actions out over the
// network; the deterministic simulator (test/sim) drives the very same object over a simulated
// one.
//
// Threading: not thread-safe; one thread (kvsync's io_context, or the simulator).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/item.hpp"
#include "core/notification.hpp"
#include "core/protocol.hpp"
#include "sync/sync_log.hpp"

namespace kv::sync {

struct MachineOptions {
  std::size_t fetch_limit = 1000;  // changes asked for in one FETCH
  std::size_t batch_limit = 1000;  // changes sent in one APPLY (whole stamps)
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{std::chrono::seconds(1)};
  // The log's directory was put back from a copy (kvsync --restored-log): like a fresh log, it
  // stamps nothing until every configured node has reported, and is rebuilt from them if it is
  // older than what they hold.
  bool restored_log = false;
  // APPLYs in flight on one link: each continues from the one before (after_stamp), so the node
  // refuses any that arrives after a lost one. The node's commit of one overlaps the next, and
  // a node whose fsync stalls for a few milliseconds (other processes' fsyncs on the same disk)
  // keeps applying and announcing what follows: at 2,000 writes/s four in flight ran out.
  std::size_t apply_window = 64;
};

// One node as the syncer sees it.
struct LinkView {
  std::string address;              // as configured (--nodes)
  bool up = false;                  // STATUS accepted, until the connection is lost
  bool ever_up = false;             // reached at least once since start
  NodeStatus status;                // as reported when the link came up
  std::uint64_t applied_stamp = 0;  // as the node last reported
  std::uint64_t synced_upto = 0;
  std::uint64_t seq_seen = 0;  // the highest local seq its notifications announced
  std::uint64_t reconnects = 0;
  std::uint64_t fetches = 0;
  std::uint64_t applies = 0;
  std::string refused;  // why the node was last refused ("" once it is accepted)
  // Digests (docs/sync.md, "Digests"): compared with the log's whenever the node holds every
  // stamp and no unsynced change.
  bool diverged = false;                // the last comparison differed
  std::uint64_t digest_mismatches = 0;  // comparisons that differed
  std::uint64_t digest_checks = 0;      // comparisons made
};

// What one APPLY answer led to.
struct AppliedOutcome {
  std::size_t compacted = 0;  // tombstones compaction dropped from the log
  // A sentence for the operator when the node's digest differs from the log's (a divergence),
  // or agrees again after a repair.
  std::optional<std::string> divergence;
  std::optional<std::string> repaired;
  bool checked = false;  // the node's digest was compared with the log's (and `agrees` says how)
  bool agrees = false;
};

// What a node's STATUS led to.
struct StatusVerdict {
  std::optional<std::string> refused;  // why the node is refused (the link then goes down)
  std::vector<std::string> warnings;   // what the operator should hear about this node
};

// What one FETCH answer led to.
struct FetchOutcome {
  SyncLog::Stamped stamped;  // stamp 0: nothing new was stamped
  bool moved = false;        // the cursor or the log moved: fetch again
};

class SyncMachine {
 public:
  using Duration = std::chrono::milliseconds;

  // `addresses`: the configured nodes, one link each, in order.
  SyncMachine(SyncLog& log, std::vector<std::string> addresses, MachineOptions options);

  std::size_t size() const { return links_.size(); }
  const LinkView& link(std::size_t i) const { return links_[i].view; }
  const SyncLog& log() const { return log_; }

  // The STATUS that opens a link: it claims the node for this syncer's life, so that the node
  // refuses APPLYs of earlier lives from then on (docs/sync.md, "Syncer lives").
  proto::msg::Status claim() const { return proto::msg::Status{log_.life()}; }
  // The connection to link `i` answered STATUS. Unless refused, the link is up and its fetcher
  // and sender have work. Refused when a later life holds the node: the log takes a later one
  // first, and the next connection claims it with that.
  StatusVerdict on_status(std::size_t i, const NodeStatus& status);
  // The link's connection failed or was lost (or never came up). Every request in flight on it
  // is forgotten. Returns how long to wait before connecting again.
  Duration on_down(std::size_t i);
  // A notification from the node's WebSocket subscription.
  void on_notification(std::size_t i, Notification::Kind kind, std::uint64_t seq);

  // The FETCH to send on link `i` now, if any; at most one is in flight per link.
  std::optional<proto::msg::Fetch> next_fetch(std::size_t i);
  // Its answer: stamps the changes (a durable write; throws StoreError when it fails, and the
  // caller should take the link down).
  FetchOutcome on_fetched(std::size_t i, const proto::msg::Changes& changes);

  // The APPLY to send on link `i` now, if any: up to apply_window in flight per link, a batch of
  // new stamps behind others; a greeting, a full resync, a claim or a batch of news alone
  // (synced_upto, marks, purge_upto) only with nothing in flight.
  std::optional<proto::msg::Apply> next_apply(std::size_t i);
  // The answer to the oldest APPLY in flight (a node answers in order): moves the node's state,
  // compares digests (and schedules a full resync of a node that differs from the log),
  // compacts.
  AppliedOutcome on_applied(std::size_t i, const proto::msg::Applied& applied);

  // While the log is rebuilt from the nodes: the DUMP to send on link `i` now, if any, and its
  // answer. on_dumped() returns a sentence when the rebuild completed with it.
  std::optional<proto::msg::Dump> next_dump(std::size_t i);
  std::optional<std::string> on_dumped(std::size_t i, const proto::msg::Dumped& dumped);

  // Every configured node has been reached since start.
  bool all_reached() const;
  // The log is being rebuilt from the nodes (docs/sync.md, "A lost log").
  bool rebuilding() const { return rebuild_.has_value(); }

 private:
  struct Link {
    LinkView view;
    bool greeted = false;        // an APPLY went out since the link came up (lifts the fence)
    bool needs_reset = false;    // the next APPLY makes it forget and resend everything
    bool needs_rebirth = false;  // its data directory is an older copy: new incarnation first
    // Its applied stamp once every APPLY sent is applied: the next APPLY continues from it.
    std::uint64_t node_applied = 0;
    std::uint64_t send_from = 0;   // the next APPLY carries the stamps after this
    std::uint64_t purge_sent = 0;  // the purge_upto the node last acknowledged
    std::uint64_t marks_sent = 0;  // the log's marks_version it last got session marks of
    bool fetch_wanted = false;     // the node has (or may have) changes past the cursor
    // The highest local seq the node is known to have since the link came up: its STATUS, then
    // its notifications (each local change is announced once durable).
    std::uint64_t notified = 0;
    bool fetch_in_flight = false;
    std::uint64_t fetch_after = 0;  // the cursor the FETCH in flight starts from
    // The node's applied stamp, as the log had it, when that FETCH was sent (compact()).
    std::uint64_t applied_at_fetch = 0;
    struct Sent {
      proto::msg::Apply envelope;       // without its changes and marks
      std::uint64_t marks_version = 0;  // the marks_version it carries as current (0: none)
    };
    std::deque<Sent> in_flight;  // oldest first
    Duration backoff{0};
    bool repair_tried = false;  // a full resync was sent for a digest mismatch, not yet agreed
    // A rebuild's gathering, for this connection: the node took the new log's id (claimed),
    // and told its stamped values.
    bool claimed = false;
    bool dump_in_flight = false;
    bool dumped = false;
    std::string dump_after;
    std::vector<StampedChange> dump_items;
    std::vector<SessionMark> dump_cursors;
    std::uint64_t dump_seq = 0;  // its change sequence at the last page
  };
  struct Rebuild {
    std::uint64_t id = 0;  // the rebuilt log's id, which claimed nodes carry
  };

  // Stamping waits until the log vouches for every stamp the nodes hold.
  bool may_stamp() const { return vouched_ && !rebuild_; }
  std::uint64_t cursor_of(const Link& l) const;
  std::size_t compact();
  void check_digest(Link& link, const proto::msg::Applied& applied, AppliedOutcome& out);
  void take_status(Link& link, const NodeStatus& st);
  // Whether this node's status shows that the log cannot vouch for it: it applied stamps the
  // log never issued, or holds a history this fresh log does not know.
  bool needs_rebuild(const NodeStatus& st) const;
  // on_status, step by step.
  struct Admission {
    bool reset = false;    // a full resync
    bool rebirth = false;  // with a new incarnation (an older copy of the node)
    std::optional<std::string> refused;
  };
  void gather_for_rebuild(Link& link, const NodeStatus& st, StatusVerdict& verdict);
  Admission admit(const std::string& address, const NodeStatus& st, StatusVerdict& verdict);
  void start_link(Link& link, const NodeStatus& st, Admission a, StatusVerdict& verdict);
  void start_rebuild();
  void reset_gathering(Link& l);
  std::optional<std::string> finish_rebuild();

  SyncLog& log_;
  MachineOptions options_;
  std::vector<Link> links_;
  // The log knows every stamp the nodes hold. False for a fresh log, and for one whose last
  // process crashed with sync_writes off, until every configured node has reported without
  // showing otherwise.
  bool vouched_ = true;
  std::optional<Rebuild> rebuild_;
  // Session marks wait after a rebuild until every node's cursor passed its sequence then
  // (NodeRecord::unsettled_upto).
  bool marks_settled() const;
};

}  // namespace kv::sync
