#!/usr/bin/env bash
# Replication lag at 2000 writes/s with fsync on or off per hop: where the time goes.
set -euo pipefail
B=${KV_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
run() {  # node-durability syncer-durability
  local d=$(mktemp -d)
  $B/kvnode --name a --data $d/a --port 0 --http-port 0 --durability $1 > $d/a.out 2> $d/a.log &
  local pa=$!
  $B/kvnode --name b --data $d/b --port 0 --http-port 0 --durability $1 > $d/b.out 2> $d/b.log &
  local pb=$!
  for i in $(seq 100); do grep -q ready $d/a.out && grep -q ready $d/b.out && break; sleep 0.05; done
  local A=$(sed -n 's/.*binary=\([^ ]*\).*/\1/p' $d/a.out) Bn=$(sed -n 's/.*binary=\([^ ]*\).*/\1/p' $d/b.out)
  $B/kvsync --nodes $A,$Bn --data $d/s --http-port 0 --durability $2 > $d/s.out 2> $d/s.log &
  local ps=$!
  for i in $(seq 100); do grep -q ready $d/s.out && break; sleep 0.05; done
  echo -n "nodes $1, syncer $2: "
  $B/kvbench --target $A --op create -c 4 --rate 2000 --lag-to $Bn --warmup 1 --seconds 5 | head -1
  kill $pa $pb $ps; wait $pa $pb $ps 2>/dev/null || true
  rm -rf $d
}
run sync sync
run sync async
run async sync
run async async
