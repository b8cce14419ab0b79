// kvsim: runs the deterministic simulator (simulator.hpp) over seeds.
//
//   kvsim --seed S [--verbose]       one seed, replayed exactly; --verbose prints every event
//   kvsim --seeds A-B                every seed from A to B (CI)
//   kvsim --minutes N [--from S]     as many seeds as fit in N minutes
//   --faults a,b,c                   only these fault kinds (or "none") instead of each seed's mix
//   --steps K                        steps of writes and faults per seed (default 2000)
//   --final-only                     check only once the cluster is quiet (what a fault leads to)
// Prints a line per failing seed (with its anomalies and last events) and a summary: seeds,
// steps, faults by kind, acknowledged writes, anomalies. Exit 0 when no seed failed, 1 when one
// did, 2 on bad arguments.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>

#include "core/log.hpp"
#include "sim/simulator.hpp"

namespace {
int usage() {
  std::cerr << "usage: kvsim (--seed S [--verbose] | --seeds A-B | --minutes N [--from S]) "
               "[--steps K] [--faults KIND,...]\nfault kinds:";
  for (const auto& k : kv::sim::fault_kinds()) std::cerr << " " << k;
  std::cerr << "\n";
  return 2;
}
}  // namespace

int main(int argc, char** argv) {
  std::uint64_t first = 1, last = 1;
  double minutes = 0;
  bool verbose = false;
  kv::sim::Options options;
  std::string replay_args;  // what a failing seed needs besides --seed to replay
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
        return argv[++i];
      };
      if (a == "--seed") {
        first = last = std::stoull(value());
      } else if (a == "--seeds") {
        const std::string v = value();
        const auto dash = v.find('-');
        if (dash == std::string::npos) throw std::invalid_argument("--seeds takes A-B");
        first = std::stoull(v.substr(0, dash));
        last = std::stoull(v.substr(dash + 1));
      } else if (a == "--minutes") {
        minutes = std::stod(value());
      } else if (a == "--from") {
        first = std::stoull(value());
      } else if (a == "--steps") {
        options.steps = std::stoull(value());
        replay_args += " --steps " + std::to_string(options.steps);
      } else if (a == "--faults") {
        const std::string v = value();
        options.faults_given = true;
        replay_args += " --faults " + v;
        std::size_t start = 0;
        while (start <= v.size()) {
          const auto comma = v.find(',', start);
          const std::string k =
              v.substr(start, comma == std::string::npos ? v.npos : comma - start);
          if (k != "none" && !k.empty()) {
            const auto& kinds = kv::sim::fault_kinds();
            if (std::find(kinds.begin(), kinds.end(), k) == kinds.end()) {
              throw std::invalid_argument("unknown fault kind '" + k + "'");
            }
            options.faults.push_back(k);
          }
          if (comma == std::string::npos) break;
          start = comma + 1;
        }
      } else if (a == "--final-only") {
        options.running_checks = false;
        replay_args += " --final-only";
      } else if (a == "--verbose") {
        verbose = true;
      } else {
        return usage();
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "kvsim: " << e.what() << "\n";
    return usage();
  }
  kv::log::init("error", "text");  // the stores' own logging stays quiet
  if (verbose) options.trace = &std::cout;
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration<double>(minutes * 60);
  std::uint64_t seeds = 0, failed = 0, steps = 0, acked = 0;
  std::map<std::string, std::uint64_t> faults, anomalies;
  for (std::uint64_t seed = first;; ++seed) {
    if (minutes > 0 ? std::chrono::steady_clock::now() >= deadline : seed > last) break;
    const auto r = kv::sim::simulate(seed, options);
    ++seeds;
    steps += r.steps;
    acked += r.writes_acked;
    for (const auto& [k, n] : r.faults) faults[k] += n;
    if (r.anomalies.empty()) continue;
    ++failed;
    for (const auto& a : r.anomalies) ++anomalies[a.kind];
    std::cout << "FAILED seed " << seed << " (" << r.config << ") at step "
              << r.anomalies.front().step << "\n";
    for (const auto& a : r.anomalies) std::cout << "  " << a.kind << ": " << a.message << "\n";
    if (!verbose) {
      std::cout << "  last events:\n";
      for (const auto& line : r.tail) std::cout << "    " << line << "\n";
    }
    std::cout << "  replay: scripts/simulate.sh --seed " << seed << replay_args << " --verbose\n"
              << std::flush;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "kvsim: " << seeds << " seeds (" << first << ".." << first + seeds - 1 << "), "
            << steps << " steps, " << acked << " acknowledged writes in " << secs << " s\n";
  std::cout << "faults:";
  for (const auto& [k, n] : faults) std::cout << " " << k << "=" << n;
  std::cout << "\nanomalies: " << failed << " failing seeds";
  for (const auto& [k, n] : anomalies) std::cout << " " << k << "=" << n;
  std::cout << std::endl;
  return failed == 0 ? 0 : 1;
}
