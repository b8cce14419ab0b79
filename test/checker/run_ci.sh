#!/usr/bin/env bash
# The convergence checker, short and seeded, for CI: 3 nodes, 60 s of load under faults, then
# the final check (about 65 s in all; seed 28 schedules every kind of fault). Exits 0 on zero
# anomalies, 1 on anomalies, 2 on setup errors. Needs root (network namespaces).
# KV_NO_BUILD=1 uses the binaries in $KV_BUILD (default build/) without building; otherwise
# scripts/check.sh builds first. KV_CHECK_SEED / KV_CHECK_MINUTES override the defaults.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec scripts/check.sh --minutes "${KV_CHECK_MINUTES:-1}" --seed "${KV_CHECK_SEED:-28}" \
  --nodes 3 "$@"
