#!/usr/bin/env bash
# The convergence checker, short and seeded, for CI: 3 nodes, 60 s of load (6 streaming kvcli
# clients on 6 hot items plus 3 per-process workers) under every kind of fault, then the final
# check and the floors (about 70-80 s in all). Seed 875 schedules every fault kind in 60 s:
# kill-node, kill-syncer, partition + heal, slow-fsync (a node under strace-injected fsync
# delays, killed -9 mid-load), restore (a node put back from an older copy of its data) and
# remove (kvsync restarted without a node, then forget-node, then with it again).
# Exits 0 on zero anomalies with every floor met, 1 on anomalies or a missed floor, 2 on setup
# errors. Needs root (network namespaces) and strace (scripts/check.sh installs it).
# KV_NO_BUILD=1 uses the binaries in $KV_BUILD (default build/) without building; otherwise
# scripts/check.sh builds first. KV_CHECK_SEED / KV_CHECK_MINUTES override the defaults (another
# seed may not schedule every fault kind: checker.py --print-schedule shows what one does).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec scripts/check.sh --minutes "${KV_CHECK_MINUTES:-1}" --seed "${KV_CHECK_SEED:-875}" \
  --nodes 3 --stream-clients 6 --faults kill-node,kill-syncer,partition,slow-fsync,restore,remove \
  --min-acked 20 "$@"
