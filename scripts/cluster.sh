#!/usr/bin/env bash
# Sets up and starts a kvstore cluster on 127.0.0.1: N nodes and the syncer.
#
#   scripts/cluster.sh [--nodes N] [--base-port P] [--data DIR] [--no-sync] [--detach]
#   scripts/cluster.sh down [--data DIR]
#
# Node i (a, b, c, ...) serves the binary protocol on P+i-1 and HTTP/WebSocket on P+100+i-1;
# the syncer serves the viewer page (open the printed URL in a browser) on P+99.
# In the foreground the syncer's log is shown and Ctrl-C stops everything; with --detach the
# cluster keeps running and `scripts/cluster.sh down` stops it. Logs and data live under DIR.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

nodes=2
base=7001
data="$KV_ROOT/data"
sync=1
detach=0
cmd=up

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    down) cmd=down ;;
    --nodes) nodes="$2"; shift ;;
    --base-port) base="$2"; shift ;;
    --data) data="$2"; shift ;;
    --no-sync) sync=0 ;;
    --detach) detach=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "cluster.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

case "$nodes" in ''|*[!0-9]*) echo "cluster.sh: --nodes takes a number" >&2; exit 2 ;; esac
if [ "$nodes" -lt 1 ] || [ "$nodes" -gt 26 ]; then
  echo "cluster.sh: --nodes must be 1 to 26" >&2; exit 2
fi
mkdir -p "$data"
data="$(cd "$data" && pwd)"
pidfile="$data/cluster.pids"

# True when PID is a running (not zombie) kvnode or kvsync of this data directory. A PID alone
# proves nothing: a process killed with -9 may not be reaped yet, and its number may since
# belong to something else.
ours() {
  local pid=$1 state cmd
  [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$state" ] && [ "$state" != Z ] || return 1
  cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
  case "$cmd" in
    *"kvnode "*"--data $data/"* | *"kvsync "*"--data $data/"*) return 0 ;;
  esac
  return 1
}

# Ends the processes this script started (their PIDs are in the pid file), politely first.
stop_all() {
  [ -f "$pidfile" ] || return 0
  local pids=()
  for p in $(cat "$pidfile"); do ours "$p" && pids+=("$p"); done
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    local alive=0
    for p in "${pids[@]}"; do ours "$p" && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do ours "$p" && kill -KILL "$p" 2>/dev/null || true; done
  rm -f "$pidfile"
}

if [ "$cmd" = down ]; then
  if [ ! -f "$pidfile" ]; then echo "no cluster is running from $data"; exit 0; fi
  stop_all
  echo "cluster stopped"
  exit 0
fi

if [ -f "$pidfile" ]; then
  for p in $(cat "$pidfile"); do
    if ours "$p"; then
      echo "a cluster is already running from $data; stop it with: scripts/cluster.sh down --data $data" >&2
      exit 1
    fi
  done
  rm -f "$pidfile"
fi

if [ "${KV_NO_BUILD:-0}" != 1 ]; then  # the tests run it against binaries they built
  kv_ensure_deps
  [ -x "$KV_BUILD/kvnode" ] || echo "building kvstore (the first build takes a few minutes)..."
  kv_build > "$data/build.log" 2>&1 || { echo "build failed; see $data/build.log" >&2; tail -20 "$data/build.log" >&2; exit 1; }
fi
mkdir -p "$data/logs"

# The cluster secret (docs/security.md): made once per data directory, readable by us only.
secret_file="$data/secret"
if [ ! -s "$secret_file" ]; then
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$secret_file")
fi
chmod 600 "$secret_file"
secret=$(cat "$secret_file")

names=(a b c d e f g h i j k l m n o p q r s t u v w x y z)
addrs=()
: > "$pidfile"
trap 'echo; echo "stopping the cluster"; stop_all; exit 0' INT TERM

# Waits until "$1" holds a line starting with "$2", or the process "$3" has exited.
wait_ready() {
  for _ in $(seq 1 300); do
    grep -q "^$2" "$1" 2>/dev/null && return 0
    ours "$3" || { echo "failed to start; see ${1%.out}.log:" >&2; tail -5 "${1%.out}.log" >&2; stop_all; exit 1; }
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2; stop_all; exit 1
}

for i in $(seq 1 "$nodes"); do
  n=${names[$((i - 1))]}
  port=$((base + i - 1))
  http=$((base + 100 + i - 1))
  standalone=()
  [ $sync -eq 0 ] && standalone=(--standalone)  # no syncer will lift the write fence
  "$KV_BUILD/kvnode" --name "$n" --data "$data/node-$n" --port "$port" --http-port "$http" "${standalone[@]}" \
    --secret-file "$secret_file" \
    > "$data/logs/node-$n.out" 2> "$data/logs/node-$n.log" &
  echo $! >> "$pidfile"
  wait_ready "$data/logs/node-$n.out" "kvnode $n ready" $!
  addrs+=("127.0.0.1:$port")
  echo "node $n: binary 127.0.0.1:$port   http http://127.0.0.1:$http/status   websocket ws://127.0.0.1:$http/ws"
done
node_list=$(IFS=,; echo "${addrs[*]}")

if [ $sync -eq 1 ]; then
  viewer_port=$((base + 99))
  "$KV_BUILD/kvsync" --nodes "$node_list" --data "$data/sync" --http-port "$viewer_port" \
    --secret-file "$secret_file" \
    > "$data/logs/sync.out" 2> "$data/logs/sync.log" &
  echo $! >> "$pidfile"
  wait_ready "$data/logs/sync.out" "kvsync ready" $!
  echo "syncer: connected to $node_list   log $data/logs/sync.log"
  echo "viewer: http://127.0.0.1:$viewer_port/#secret=$secret"
  echo "        (metrics: http://127.0.0.1:$viewer_port/metrics)"
else
  echo "syncer: not started (--no-sync: the seed's Step 1); the viewer comes with the syncer"
fi
echo "logs:   $data/logs"
echo "shell:  $KV_BUILD/kvcli --nodes $node_list"
echo "watch:  $KV_BUILD/kvcli --nodes $node_list --secret-file $secret_file watch"
echo "secret: $secret_file (the nodes require it for sync and subscriptions)"
echo "stop:   Ctrl-C here, or scripts/cluster.sh down --data $data"
echo "cluster ready"

if [ $detach -eq 1 ]; then
  trap - INT TERM
  exit 0
fi
# Foreground: show the syncer's log (the seed's right-hand pane) until Ctrl-C.
if [ $sync -eq 1 ]; then
  tail -n 0 -F "$data/logs/sync.log" &
else
  tail -n 0 -F "$data/logs/"node-*.log &
fi
tailpid=$!
trap 'kill $tailpid 2>/dev/null; echo; echo "stopping the cluster"; stop_all; exit 0' INT TERM
# Return if the cluster is stopped from elsewhere (scripts/cluster.sh down).
while [ -f "$pidfile" ]; do sleep 1; done
kill $tailpid 2>/dev/null || true
