#!/usr/bin/env bash
# Jepsen-style convergence check: nodes in network namespaces, streaming and per-process clients,
# a nemesis that kills processes, partitions nodes, slows fsync (strace), restores a node from an
# older copy and removes/re-adds a node, then a check of the converged state and of floors.
#   scripts/check.sh [--minutes N] [--seed S] [--nodes K] [--faults LIST] [other checker.py options]
# Needs root (network namespaces). KV_NO_BUILD=1 uses the binaries in $KV_BUILD as they are.
# Exit: 0 no anomaly and floors met, 1 anomalies or a floor missed, 2 setup error.
# See test/checker/README.md and test/checker/checker.py.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

kv_ensure_packages iproute2 python3 strace
if [ "${KV_NO_BUILD:-0}" != 1 ]; then
  kv_ensure_deps
  kv_build
fi
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
exec "$PY" "$KV_ROOT/test/checker/checker.py" --bin "$KV_BUILD" "$@"
