#!/usr/bin/env bash
# perf profile of kvnode under 50-connection durable creates (closed loop), 5 s.
set -euo pipefail
B=${KV_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}; d=$(mktemp -d)
$B/kvnode --name a --standalone --data $d/a --port 0 --http-port 0 > $d/a.out 2> $d/a.log & pa=$!
for i in $(seq 100); do grep -q ready $d/a.out && break; sleep 0.05; done
A=$(sed -n 's/.*binary=\([^ ]*\).*/\1/p' $d/a.out)
perf stat -e task-clock,context-switches,cpu-migrations -p $pa -o $d.stat -- sleep 6 &
ps1=$!
perf record -F 1999 -g -p $pa -o ${PERF_DATA:-perf-writes.data} -- sleep 6 > /dev/null 2>&1 &
pr=$!
$B/kvbench --target $A --op create -c 50 -d 1 --warmup 0.5 --seconds 5 | head -1
wait $pr $ps1 || true
kill $pa; wait $pa || true; rm -rf $d
cat $d.stat; rm -f $d.stat
