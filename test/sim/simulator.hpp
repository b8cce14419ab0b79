// A deterministic simulator of kvstore's replication, in the spirit of FoundationDB's simulation
// testing and TigerBeetle's VOPR. One seeded, single-threaded run holds N real node Stores, the
// real SyncLog and the real SyncMachine (the syncer's rules), with a simulated disk (MemDisk), a
// simulated network and a simulated clock. Every step is chosen by the seed: a client write, a
// committer making a group durable, a request or answer delivered (late, twice, or never), and
// faults: node and syncer crashes that keep only what was durable, a lost or replaced syncer log,
// wiped and restored nodes, a node taken out of the configuration and added back, partitions,
// cut connections and a full disk. Invariants are checked during the run and once the faults
// stop; the cluster must then converge within a bounded number of steps.
//
// The same seed (with the same code) replays the same run exactly.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

namespace kv::sim {

struct Options {
  std::uint64_t steps = 2000;         // steps with writes and faults
  std::uint64_t quiet_steps = 40000;  // bound on the steps to converge once faults stop
  std::ostream* trace = nullptr;      // every event, as it happens (--verbose)
  // Overrides the seed's own choice of fault kinds (--faults): names from fault_kinds(), or
  // "none". Empty: the seed chooses (swarm testing).
  std::vector<std::string> faults;
  bool faults_given = false;
  // Check the invariants during the run too, not only once the cluster is quiet (--final-only
  // turns this off, to see what a fault leads to in the end).
  bool running_checks = true;
};

// Every fault kind the simulator knows, by the name reports and --faults use.
const std::vector<std::string>& fault_kinds();

struct Anomaly {
  std::string kind;  // e.g. "divergence", "lost-write", "resurrected", "stamp-reused"
  std::string message;
  std::uint64_t step = 0;
};

struct Report {
  std::uint64_t seed = 0;
  std::string config;  // what the seed chose: nodes, limits, the fault mix
  std::uint64_t steps = 0;
  std::uint64_t writes_acked = 0;
  std::uint64_t writes_failed = 0;
  std::uint64_t writes_unknown = 0;
  std::map<std::string, std::uint64_t> faults;  // injected, by kind
  std::vector<Anomaly> anomalies;               // empty: the seed passed
  std::vector<std::string> tail;                // the last events, for a failing seed
};

Report simulate(std::uint64_t seed, const Options& options);

}  // namespace kv::sim
