#!/usr/bin/env bash
# scripts/cluster.sh as a user runs it: start detached on free ports, use the cluster through
# kvcli, stop it with `down`, and check that nothing it started is left running.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${KV_BIN_DIR:?run through ctest}"
data="$(mktemp -d)"
trap 'bash "$root/scripts/cluster.sh" down --data "$data" >/dev/null 2>&1 || true; rm -rf "$data"' EXIT

# A base port whose six neighbours (two binary, two HTTP, and their spares) are free.
free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
base=""
for _ in $(seq 1 50); do
  p=$((20000 + RANDOM % 30000))
  if free $p && free $((p + 1)) && free $((p + 2)) && free $((p + 100)) && free $((p + 101)) && free $((p + 102)); then
    base=$p; break
  fi
done
[ -n "$base" ] || { echo "no free ports"; exit 1; }

out="$data/cluster.out"
KV_NO_BUILD=1 KV_BUILD="$bin" timeout 300 bash "$root/scripts/cluster.sh" --nodes 3 --base-port "$base" --data "$data" --detach > "$out"
grep -q "^cluster ready$" "$out" || { echo "no 'cluster ready'"; cat "$out"; exit 1; }
grep -q "node c: binary 127.0.0.1:$((base + 2))" "$out" || { echo "node c not where expected"; cat "$out"; exit 1; }
nodes="127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
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
for p in $pids; do
  if kill -0 "$p" 2>/dev/null; then echo "process $p still running after down"; exit 1; fi
done
echo "1 passed, 0 failed"
