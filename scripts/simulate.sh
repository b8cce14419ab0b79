#!/usr/bin/env bash
# The deterministic simulator (test/sim): real Stores, SyncLog and SyncMachine, a simulated
# network, disk and clock, every step chosen by a seed (docs/sync.md, "The simulator").
#   scripts/simulate.sh --seed S [--verbose]   replay one seed exactly, step by step
#   scripts/simulate.sh --seeds A-B            run seeds A to B (CI runs 1-10000)
#   scripts/simulate.sh --minutes N [--from S] run seeds from S on for N minutes
# Options: --steps K (steps per seed), --faults KIND,... (only these), --final-only (check
# only the converged end state). Exit: 0 no anomaly, 1 anomalies (each failing seed printed
# with the command that replays it), 2 bad usage. KV_NO_BUILD=1 uses $KV_BUILD/test/kvsim.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if [ "${KV_NO_BUILD:-0}" != 1 ]; then
  kv_ensure_deps
  cmake -S "$KV_ROOT" -B "$KV_BUILD" -DCMAKE_BUILD_TYPE="${KV_BUILD_TYPE:-RelWithDebInfo}" \
    ${KV_CMAKE_ARGS:-} >/dev/null
  cmake --build "$KV_BUILD" -j2 --target kvsim >/dev/null
fi
exec "$KV_BUILD/test/kvsim" "$@"
