#!/usr/bin/env bash
# scripts/cluster.sh as a user runs it: start detached on free ports, use the cluster through
# kvcli, stop it with `down`, and check that nothing it started is left running.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${KV_BIN_DIR:?run through ctest}"
data="$(mktemp -d)"
trap 'bash "$root/scripts/cluster.sh" down --data "$data" >/dev/null 2>&1 || true; rm -rf "$data"' EXIT

# Fixed ports are the point of cluster.sh, so pick a base below the kernel's ephemeral range
# (where other tests' client sockets live) with nothing listening, and try a few.
low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range)
free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
out="$data/cluster.out"
started=0
for _ in $(seq 1 5); do
  base=$((10000 + RANDOM % (low - 10200)))
  free $base && free $((base + 1)) && free $((base + 2)) && free $((base + 99)) &&
    free $((base + 100)) && free $((base + 101)) && free $((base + 102)) || continue
  if KV_NO_BUILD=1 KV_BUILD="$bin" timeout 300 bash "$root/scripts/cluster.sh" --nodes 3 \
      --base-port "$base" --data "$data" --detach > "$out" 2>&1; then
    started=1; break
  fi
  cat "$out"
done
[ $started -eq 1 ] || { echo "cluster.sh did not start"; exit 1; }
grep -q "^cluster ready$" "$out" || { echo "no 'cluster ready'"; cat "$out"; exit 1; }
grep -q "node c: binary 127.0.0.1:$((base + 2))" "$out" || { echo "node c not where expected"; cat "$out"; exit 1; }
nodes="127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
# The printed viewer URL serves the page.
grep -q "viewer: http://127.0.0.1:$((base + 99))/" "$out" || { echo "no viewer URL"; cat "$out"; exit 1; }
curl -sf "http://127.0.0.1:$((base + 99))/" | grep -q "viewer.js" || { echo "viewer not served"; exit 1; }
# The generated secret is private, and the nodes ask for it.
[ "$(stat -c %a "$data/secret")" = 600 ] || { echo "secret file mode is not 600"; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((base + 100))/items")" = 401 ] ||
  { echo "/items served without the secret"; exit 1; }
curl -sf "http://127.0.0.1:$((base + 100))/items?secret=$(cat "$data/secret")" | grep -q '"node":"a"' ||
  { echo "/items refused the secret"; exit 1; }
HOME="$data" "$bin/kvcli" --nodes "$nodes" --route 3 create "from the script test" | grep -q "ID:1c"
for _ in $(seq 1 200); do
  HOME="$data" "$bin/kvcli" --nodes "$nodes" --route 1 list | grep -q "from the script test" && break
  sleep 0.05
done
HOME="$data" "$bin/kvcli" --nodes "$nodes" --route 1 list | grep -q "from the script test" || { echo "not synced"; exit 1; }
# A second start on the same data directory is refused while the first runs.
if KV_NO_BUILD=1 KV_BUILD="$bin" bash "$root/scripts/cluster.sh" --base-port "$base" --data "$data" --detach >/dev/null 2>&1; then
  echo "a second cluster started on the same data directory"; exit 1
fi
pids=$(cat "$data/cluster.pids")
bash "$root/scripts/cluster.sh" down --data "$data" | grep -q "cluster stopped"
# Gone, or a zombie that PID 1 has not reaped yet (it reaps lazily here).
running() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/^.*) //' "/proc/$1/stat" | cut -d' ' -f1)" != Z ]; }
for p in $pids; do
  if running "$p"; then echo "process $p still running after down"; exit 1; fi
done
# A pid file left behind whose PID now belongs to another process (here one of ours, a sleep):
# cluster.sh must neither refuse to start nor end that process.
sleep 120 &
stranger=$!
echo "$stranger" > "$data/cluster.pids"
# Started again, the cluster still has the item, on every node.
KV_NO_BUILD=1 KV_BUILD="$bin" timeout 300 bash "$root/scripts/cluster.sh" --nodes 3 \
  --base-port "$base" --data "$data" --detach > "$out" 2>&1 || { cat "$out"; kill "$stranger"; exit 1; }
running "$stranger" || { echo "cluster.sh ended a process it did not start"; exit 1; }
kill "$stranger"
for n in 1 2 3; do
  HOME="$data" "$bin/kvcli" --nodes "$nodes" --route $n list | grep -q "from the script test" ||
    { echo "node $n lost the item across a restart"; exit 1; }
done
pids=$(cat "$data/cluster.pids")
bash "$root/scripts/cluster.sh" down --data "$data" | grep -q "cluster stopped"
for p in $pids; do
  if running "$p"; then echo "process $p still running after down"; exit 1; fi
done
echo "1 passed, 0 failed"
