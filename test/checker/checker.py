#!/usr/bin/env python3
"""kvstore convergence checker: Jepsen-style clients, a nemesis, and a final-state check.

Usage: checker.py [--minutes N | --seconds N] [--seed S] [--nodes K] [--workers W] [--bin DIR]
(``scripts/check.sh`` is the wrapper; ``--help`` lists every option.) Needs root: it creates
network namespaces. Python 3 standard library only.

Topology
========
Node i (1..K, named a, b, c, ...) runs in a network namespace ``kvchk-<pid>-<i>`` created here,
joined to the root namespace by a veth pair ``kvc<pid>r<i>`` (root side, 10.231.i.1/30) /
``kvc<pid>n<i>`` (node side, 10.231.i.2/30), and listens on 10.231.i.2:7001 (HTTP 7101). The
syncer (``kvsync --http-port 0``, its HTTP on 127.0.0.1) and the clients run in the root
namespace. A ``blackhole 10.231.0.0/16`` route is added first, so that while a root-side veth is
down (a partition) packets for that node are dropped here instead of following the default route
off the machine. Everything created (namespaces, veths, the route, processes) is recorded and
removed at the end, on any error and on SIGINT/SIGTERM/SIGHUP; only the PIDs started here are
ever signalled.

Schedule (reproducible)
=======================
The seed is printed first. Each worker draws its operations from ``Random("<seed>-w<n>")`` and
the nemesis its faults from ``Random("<seed>-nemesis")``, a fixed number of draws per step, so the
same seed replays the same sequence of operation kinds, routes, titles, think times and target
choices, and the same sequence of faults with the same parameters. Only timing may differ, and
with it which concrete id a target choice resolves to (``pool[-1 - r % min(len(pool), 12)]`` over
the ids returned by acknowledged creates so far, so recent items are hit often and concurrently).
The nemesis runs its events in order, each no earlier than its offset: ``kill-node`` (kill -9,
pause, restart on the same data directory), ``kill-syncer`` (kill -9, pause, restart),
``partition`` (``ip link set <root veth> down``; at most K-1 nodes at once), ``heal`` (that
node's veth up) and ``heal-all``.

Operations and outcomes
=======================
Every operation is one ``kvcli --json --no-session --nodes ... --route N --timeout T <cmd>``
run, bounded by a process timeout. Clients run in the root namespace, except a seeded share
(``--local-clients``, default 0.25; 0 turns it off) run with ``ip netns exec`` in the namespace
of the node they are routed to: those reach that node while it is partitioned from the syncer
(and no other node, the namespace having no other route), which is what makes partitions produce
conflicting unsynced writes rather than only unavailability. Titles are unique per run (``t<seed>w<n>o<k>``), which is what
lets values be traced back to the write that made them. Each operation is recorded with its
invoke time t0, completion time t1, and outcome:

* ``ok``: ``{"ok":true}`` with the resulting item; ``node`` is the node that served it (kvcli
  moves to the next node when one is unreachable or not yet taking writes, before sending).
* ``fail``: an error answered by a node (not found, deleted, unavailable, invalid argument,
  storage), or no node reachable at all: the operation definitely did nothing.
* ``unknown``: kvcli said the node "did not answer" (the request may have been applied), the
  process timed out, or its output could not be parsed: it may or may not have happened.

Rules of the final check (the only anomalies reported)
======================================================
After the run everything is healed and restarted, and the checker waits (bounded) until every
node reports ``unsynced`` 0 and the same ``applied_stamp``, equal to the syncer's stamp, twice in
a row. Then it lists every node (``--route N list``; a list served by another node is retried)
and applies these rules. "Write on X" means a create of X or an update of X; deletes are listed
separately. Only ok and unknown operations are considered (a failed one did nothing).

Happens-before (hb) between writes on one item X, used to decide which writes provably lost to
which (and never derived from real time across different nodes, because the winner between
writes on different nodes is the one that *reached the syncer* later, which a partition can
reorder arbitrarily relative to real time):

  (h1) the create of X hb every ok update of X (the serving node held X, so it had the create).
  (h2) A hb B if both are ok, were served by the same node, and A completed before B was
       invoked: B is a later local change of the same item on that node, so it either replaced A
       in the node's change log or was fetched, hence stamped, after A.
  (h3) P hb B if B is an ok complete/incomplete update whose result carries title T and P is the
       write that introduced T (titles are unique): the serving node held a value descending
       from P when it made B, so B is stamped after P (or replaced it locally).
  and the transitive closure of these. Operations that overlap in time, or run on different
  nodes without such evidence, are concurrent: either may win.

Value of a write: a create gives (title, not completed); an ok update gives the item it returned;
an unknown title update gives (its title, any); an unknown complete/incomplete gives (any title,
that flag).

  1. convergence: every node lists the same items with the same titles, flags and versions, and
     the cluster got quiet before the deadline. Anomalies: ``divergence``, ``not-quiet``,
     ``duplicate-id-in-list`` (one list names an id twice).
  2. acknowledged writes survive: for every X returned by an ok create --
     * X present and no ok delete of X: its final (title, completed) must equal the value of some
       write F on X (ok or unknown) such that no ok write G on X has F hb G. An ok write that is
       not the final value is then superseded by F, which is not provably before it, i.e. stamped
       later or concurrent. No such F: ``lost-write`` (evidence: the final item, the ok writes
       that nothing ok follows, and every write on X).
     * X absent: some delete of X (ok or unknown) must exist; else ``lost-item``.
     * Also checked while writing: a node that acknowledged a delete of X must not acknowledge a
       later update of X (deletes are final): ``update-after-delete``. The result of an ok write
       must show what was asked (``bad-result``), and a complete/incomplete result must carry a
       title some write on X introduced (``unexplained-value``).
  3. deletes are final: X present after an ok delete of X is ``resurrected``, whatever else
     happened (a delete beats any update, earlier or later).
  4. ids: two ok creates returning one id is ``duplicate-id``; an ok create whose id does not end
     with the serving node's name is ``id-suffix``. An item whose id no ok create returned must be
     the item of a create with unknown outcome: same title, not completed (no client knows its id,
     so none can change it), each such create explaining at most one item; else
     ``phantom-item``. One with the title of an ok create is a create applied twice:
     ``duplicate-create``.
  Process checks: a node or syncer that exits without being killed here, or does not come back
  within the restart deadline, is ``crash`` / ``restart-failed``.

Exit status: 0 no anomaly, 1 anomalies (each printed with its evidence), 2 setup error or
interrupted. Logs, the history (history.jsonl), the schedule and the report are in the work
directory, which is kept when the run fails or with --keep. The binaries are copied there
first, so that a rebuild during the run cannot change what a restart starts.
"""

import argparse
import collections
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

EXIT_OK, EXIT_ANOMALY, EXIT_SETUP = 0, 1, 2
NODE_NAMES = "abcdefgh"
SUBNET = "10.231.0.0/16"
NODE_PORT, NODE_HTTP_PORT = 7001, 7101
RESTART_DEADLINE = 25.0


class SetupError(Exception):
    pass


class Interrupted(Exception):
    pass


T0 = time.monotonic()
_print_lock = threading.Lock()


def now():
    return time.monotonic() - T0


def say(msg):
    with _print_lock:
        print(f"[{now():8.3f}] {msg}", flush=True)


def run(argv, check=True, timeout=30):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise SetupError(f"`{' '.join(argv)}` failed ({p.returncode}): {p.stderr.strip()}")
    return p


# ----------------------------------------------------------------------------------------------
# Network: namespaces, veths, the blackhole route. Records what it made; teardown removes it.

class Net:
    def __init__(self, k):
        self.k = k
        self.pid = os.getpid()
        self.ns = [f"kvchk-{self.pid}-{i}" for i in range(1, k + 1)]
        self.veth = [f"kvc{self.pid}r{i}" for i in range(1, k + 1)]
        self.peer = [f"kvc{self.pid}n{i}" for i in range(1, k + 1)]
        self.made_ns, self.made_veth, self.made_route = [], [], False
        self.down = set()
        self.lock = threading.Lock()

    @staticmethod
    def node_ip(i):
        return f"10.231.{i + 1}.2"

    def setup(self):
        if shutil.which("ip") is None:
            raise SetupError("`ip` not found: install iproute2")
        if os.geteuid() != 0:
            raise SetupError("network namespaces need root: run as root")
        p = run(["ip", "netns", "list"], check=False)
        if p.returncode != 0:
            raise SetupError(f"`ip netns` is not permitted here: {p.stderr.strip()}")
        used = run(["ip", "-4", "-o", "addr", "show"], check=False).stdout
        routes = run(["ip", "-4", "route", "show", "table", "all"], check=False).stdout
        if "10.231." in used or "10.231." in routes:
            stale = [ln.split()[0] for ln in p.stdout.splitlines() if ln.startswith("kvchk-")]
            raise SetupError(
                "10.231.0.0/16 is already in use on this machine (another checker running, or "
                "one killed with -9?). Stale namespaces: " + (", ".join(stale) or "none") +
                ". Remove with `ip netns del NAME`, `ip route del blackhole 10.231.0.0/16`.")
        # Before any link can go down: nothing for 10.231/16 may follow the default route.
        run(["ip", "route", "add", "blackhole", SUBNET])
        self.made_route = True
        for i in range(self.k):
            ns, veth, peer = self.ns[i], self.veth[i], self.peer[i]
            p = run(["ip", "netns", "add", ns], check=False)
            if p.returncode != 0:
                raise SetupError(f"cannot create network namespace {ns} (`ip netns add` not "
                                 f"permitted?): {p.stderr.strip()}")
            self.made_ns.append(ns)
            run(["ip", "link", "add", veth, "type", "veth", "peer", "name", peer])
            self.made_veth.append(veth)
            run(["ip", "link", "set", peer, "netns", ns])
            run(["ip", "addr", "add", f"10.231.{i + 1}.1/30", "dev", veth])
            run(["ip", "link", "set", veth, "up"])
            run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"])
            run(["ip", "netns", "exec", ns, "ip", "addr", "add", f"10.231.{i + 1}.2/30",
                 "dev", peer])
            run(["ip", "netns", "exec", ns, "ip", "link", "set", peer, "up"])
        say(f"network: {self.k} namespaces {self.ns[0]}..{self.ns[-1]}, veths "
            f"{self.veth[0]}.., nodes at 10.231.1-{self.k}.2")

    def partition(self, i):
        with self.lock:
            run(["ip", "link", "set", self.veth[i], "down"])
            self.down.add(i)

    def heal(self, i):
        with self.lock:
            run(["ip", "link", "set", self.veth[i], "up"])
            self.down.discard(i)

    def heal_all(self):
        for i in sorted(self.down):
            self.heal(i)

    def teardown(self):
        errors = []
        for veth in self.made_veth:
            p = run(["ip", "link", "del", veth], check=False)
            if p.returncode != 0 and "Cannot find" not in p.stderr:
                errors.append(p.stderr.strip())
        for ns in self.made_ns:
            p = run(["ip", "netns", "del", ns], check=False)
            if p.returncode != 0:
                errors.append(p.stderr.strip())
        if self.made_route:
            p = run(["ip", "route", "del", "blackhole", SUBNET], check=False)
            if p.returncode != 0:
                errors.append(p.stderr.strip())
        self.made_veth, self.made_ns, self.made_route = [], [], False
        return errors


# ----------------------------------------------------------------------------------------------
# Processes started here (nodes, syncer, kvcli runs). Only these PIDs are ever signalled.

class Proc:
    def __init__(self, label, argv, logpath):
        self.label, self.argv, self.logpath = label, argv, logpath
        self.popen = None
        self.starts = 0
        self.expect_up = False

    def start(self):
        with open(self.logpath, "a") as log:
            log.write(f"==== checker: start #{self.starts + 1} at {now():.3f}s: "
                      f"{' '.join(self.argv)}\n")
            log.flush()
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        self.expect_up = True

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def kill9(self):
        self.expect_up = False
        if self.alive():
            try:
                os.kill(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.popen is not None:
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def log_text(self):
        try:
            with open(self.logpath, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=15):
        return self.log_text().splitlines()[-n:]


class Cluster:
    def __init__(self, args, net, workdir):
        self.args, self.net, self.workdir = args, net, workdir
        self.k = args.nodes
        self.bin = args.bin
        self.addrs = [f"{Net.node_ip(i)}:{NODE_PORT}" for i in range(self.k)]
        # Builds with a cluster secret refuse to listen beyond loopback without one: give every
        # process a fresh one (mode 0600) when the binary knows the option.
        self.secret_args = {b: [] for b in ("kvnode", "kvsync", "kvcli")}
        secret = os.path.join(workdir, "secret")
        for b in self.secret_args:
            h = run([os.path.join(self.bin, b), "--help"], check=False).stdout
            if "--secret-file" in h:
                if not os.path.exists(secret):
                    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    os.write(fd, (secrets.token_hex(32) + "\n").encode())
                    os.close(fd)
                self.secret_args[b] = ["--secret-file", secret]
        self.nodes = []
        for i in range(self.k):
            data = os.path.join(workdir, "data", f"node-{NODE_NAMES[i]}")
            argv = ["ip", "netns", "exec", net.ns[i], os.path.join(self.bin, "kvnode"),
                    "--name", NODE_NAMES[i], "--host", Net.node_ip(i), "--port", str(NODE_PORT),
                    "--http-port", str(NODE_HTTP_PORT), "--data", data] + \
                self.secret_args["kvnode"]
            self.nodes.append(Proc(f"node {NODE_NAMES[i]}", argv,
                                   os.path.join(workdir, "logs", f"node-{NODE_NAMES[i]}.log")))
        self.syncer = Proc("syncer", [os.path.join(self.bin, "kvsync"), "--nodes",
                                      ",".join(self.addrs), "--data",
                                      os.path.join(workdir, "data", "syncer"), "--http-port", "0"] +
                           self.secret_args["kvsync"],
                           os.path.join(workdir, "logs", "syncer.log"))
        self.syncer_http = None
        self.lock = threading.Lock()
        self.anomalies = []  # process anomalies (crash, restart-failed)
        self.kvcli_procs = set()
        self.kvcli_lock = threading.Lock()
        self.closed = False  # set at teardown: nothing may start after it

    # -- processes --
    def _wait_log(self, proc, needle, count, deadline):
        while time.monotonic() < deadline:
            if proc.log_text().count(needle) >= count:
                return True
            if not proc.alive():
                return False
            time.sleep(0.05)
        return False

    def start_node(self, i):
        p = self.nodes[i]
        before = p.log_text().count(" ready binary=")
        with self.kvcli_lock:  # never start anything once stop_all has begun
            if self.closed:
                return False
            p.start()
        if not self._wait_log(p, " ready binary=", before + 1, time.monotonic() + RESTART_DEADLINE):
            self.anomalies.append({"kind": "restart-failed", "what": p.label,
                                   "evidence": p.log_tail()})
            say(f"ANOMALY: {p.label} did not come up within {RESTART_DEADLINE:.0f} s")
            return False
        return True

    def start_syncer(self):
        p = self.syncer
        before = p.log_text().count("kvsync serving http=")
        with self.kvcli_lock:
            if self.closed:
                return False
            p.start()
        if not self._wait_log(p, "kvsync serving http=", before + 1,
                              time.monotonic() + RESTART_DEADLINE):
            self.anomalies.append({"kind": "restart-failed", "what": "syncer",
                                   "evidence": p.log_tail()})
            say(f"ANOMALY: the syncer did not come up within {RESTART_DEADLINE:.0f} s")
            return False
        m = re.findall(r"kvsync serving http=([0-9.]+:\d+)", p.log_text())
        self.syncer_http = m[-1] if m else None
        return True

    def check_crashes(self):
        for p in self.nodes + [self.syncer]:
            if p.expect_up and not p.alive():
                p.expect_up = False
                code = p.popen.returncode if p.popen else None
                self.anomalies.append({"kind": "crash", "what": p.label,
                                       "evidence": [f"exit status {code}"] + p.log_tail()})
                say(f"ANOMALY: {p.label} exited by itself (status {code})")

    def stop_all(self):
        with self.kvcli_lock:
            self.closed = True
            procs = list(self.kvcli_procs)
        for pr in procs:
            try:
                pr.kill()
            except OSError:
                pass
        for p in self.nodes + [self.syncer]:
            p.kill9()

    # -- kvcli --
    def kvcli(self, cmd, route=None, timeout_ms=2000, proc_timeout=20.0, inside=False):
        """Returns (status, obj, raw): status ok | fail | unknown. inside: run kvcli in the
        namespace of the node it is routed to (it then reaches that node only)."""
        argv = ["ip", "netns", "exec", self.net.ns[route]] if inside else []
        argv += [os.path.join(self.bin, "kvcli"), "--json", "--no-session", "--nodes",
                ",".join(self.addrs), "--timeout", str(timeout_ms)] + self.secret_args["kvcli"]
        if route is not None:
            argv += ["--route", str(route + 1)]
        argv += cmd
        with self.kvcli_lock:
            if self.closed:
                return "unknown", None, "not run: the checker is tearing down"
            try:
                pr = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True,
                                      env=dict(os.environ, HOME=self.workdir, NO_COLOR="1"))
            except OSError as e:
                return "unknown", None, f"cannot run kvcli: {e}"
            self.kvcli_procs.add(pr)
        try:
            out, err = pr.communicate(timeout=proc_timeout)
        except subprocess.TimeoutExpired:
            pr.kill()
            pr.communicate()
            return "unknown", None, f"kvcli did not finish in {proc_timeout:.0f} s"
        finally:
            with self.kvcli_lock:
                self.kvcli_procs.discard(pr)
        obj = None
        for line in reversed(out.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    obj = json.loads(line)
                    break
                except ValueError:
                    pass
        raw = (out.strip() + (" | " + err.strip() if err.strip() else ""))[:500]
        if obj is None:
            return "unknown", None, raw or f"kvcli exit {pr.returncode}, no output"
        if obj.get("ok") is True:
            return "ok", obj, raw
        msg = str(obj.get("error", ""))
        if "may or may not" in msg or "did not answer" in msg:
            return "unknown", obj, raw
        return "fail", obj, raw

    def node_index(self, addr):
        try:
            return self.addrs.index(addr)
        except ValueError:
            return None


# ----------------------------------------------------------------------------------------------
# Clients

OP_KINDS = [("create", 30), ("complete", 18), ("incomplete", 12), ("title", 25), ("delete", 15)]


def pick(rng, weighted):
    total = sum(w for _, w in weighted)
    r = rng.random() * total
    for kind, w in weighted:
        r -= w
        if r < 0:
            return kind
    return weighted[-1][0]


class History:
    def __init__(self, path):
        self.ops = []
        self.lock = threading.Lock()
        self.pool = []  # ids from ok creates, in ack order
        self.f = open(path, "w")

    def record(self, op):
        with self.lock:
            op["n"] = len(self.ops)
            self.ops.append(op)
            self.f.write(json.dumps(op) + "\n")
            self.f.flush()
            if op["kind"] == "create" and op["status"] == "ok" and op.get("item"):
                self.pool.append(op["item"]["id"])

    def close(self):
        self.f.close()


def worker(wid, args, cluster, history, stop, deadline, budget):
    rng = random.Random(f"{args.seed}-w{wid}")
    k = 0
    while not stop.is_set() and time.monotonic() < deadline:
        with budget["lock"]:
            if budget["left"] <= 0:
                return
            budget["left"] -= 1
        # A fixed number of draws per operation keeps the schedule independent of outcomes.
        kind = pick(rng, OP_KINDS)
        route = rng.randrange(cluster.k)
        inside = rng.random() < args.local_clients
        r = rng.randrange(1 << 30)
        think = rng.uniform(0.0, args.think_ms / 1000.0)
        title = f"t{args.seed}w{wid}o{k}"
        k += 1
        with history.lock:
            pool = list(history.pool[-12:])
        if kind != "create" and not pool:
            kind = "create"
        target = None if kind == "create" else pool[-1 - r % len(pool)]
        if kind == "create":
            cmd = ["create", title]
        elif kind in ("complete", "incomplete"):
            cmd = ["update", target, kind]
        elif kind == "title":
            cmd = ["update", target, "title", title]
        else:
            cmd = ["delete", target]
        t0 = now()
        status, obj, raw = cluster.kvcli(cmd, route=route, timeout_ms=args.op_timeout_ms,
                                         inside=inside)
        t1 = now()
        op = {"worker": wid, "kind": kind, "target": target, "route": route, "inside": inside,
              "t0": round(t0, 4),
              "t1": round(t1, 4), "status": status, "node": None, "item": None}
        if kind in ("create", "title"):
            op["title"] = title
        if obj is not None:
            op["node"] = cluster.node_index(obj.get("node", ""))
            items = obj.get("items") or []
            if status == "ok" and len(items) == 1:
                op["item"] = items[0]
            elif status == "ok":
                op["status"] = "unknown"
                op["error"] = "ok without exactly one item: " + raw
            if obj.get("error"):
                op["error"] = obj["error"]
        else:
            op["error"] = raw
        history.record(op)
        if think > 0:
            stop.wait(think)


# ----------------------------------------------------------------------------------------------
# Nemesis

def make_schedule(args):
    rng = random.Random(f"{args.seed}-nemesis")
    events, t = [], 2.0
    heal_at = {}  # node -> time its partition heals (simulated, to keep the schedule valid)
    end = args.seconds - 1.0
    while True:
        t += rng.uniform(args.fault_min, args.fault_max)
        kind = pick(rng, [("kill-node", 30), ("kill-syncer", 20), ("partition", 35),
                          ("heal-all", 15)])
        node = rng.randrange(args.nodes)
        pause = rng.uniform(0.5, 4.0)
        length = rng.uniform(2.0, 8.0)
        if t >= end:
            break
        # heals that fall before this event
        for n, h in sorted(heal_at.items(), key=lambda x: x[1]):
            if h <= t:
                events.append({"t": round(h, 3), "kind": "heal", "node": n})
                del heal_at[n]
        if kind == "kill-node":
            events.append({"t": round(t, 3), "kind": kind, "node": node, "pause": round(pause, 3)})
        elif kind == "kill-syncer":
            events.append({"t": round(t, 3), "kind": kind, "pause": round(pause * 0.75, 3)})
        elif kind == "partition":
            if node in heal_at or len(heal_at) >= args.nodes - 1:
                continue
            events.append({"t": round(t, 3), "kind": kind, "node": node})
            heal_at[node] = t + length
        else:
            events.append({"t": round(t, 3), "kind": kind})
            heal_at.clear()
    for n, h in sorted(heal_at.items(), key=lambda x: x[1]):
        if h < end:
            events.append({"t": round(h, 3), "kind": "heal", "node": n})
    events.sort(key=lambda e: e["t"])  # stable: same-time events keep their order
    return events


def nemesis(events, cluster, net, stop, counts, start):
    for ev in events:
        while not stop.is_set() and now() - start < ev["t"]:
            stop.wait(min(0.2, ev["t"] - (now() - start)))
        if stop.is_set():
            return
        kind = ev["kind"]
        cluster.check_crashes()
        if kind == "kill-node":
            i = ev["node"]
            p = cluster.nodes[i]
            pid = p.popen.pid if p.popen else None
            say(f"nemesis: kill -9 node {NODE_NAMES[i]} (pid {pid}); restart in {ev['pause']:.1f} s")
            p.kill9()
            stop.wait(ev["pause"])
            if cluster.start_node(i):
                say(f"nemesis: node {NODE_NAMES[i]} restarted (pid {p.popen.pid})")
        elif kind == "kill-syncer":
            pid = cluster.syncer.popen.pid if cluster.syncer.popen else None
            say(f"nemesis: kill -9 syncer (pid {pid}); restart in {ev['pause']:.1f} s")
            cluster.syncer.kill9()
            stop.wait(ev["pause"])
            if cluster.start_syncer():
                say(f"nemesis: syncer restarted (pid {cluster.syncer.popen.pid})")
        elif kind == "partition":
            i = ev["node"]
            say(f"nemesis: partition node {NODE_NAMES[i]} (ip link set {net.veth[i]} down)")
            net.partition(i)
        elif kind == "heal":
            i = ev["node"]
            if i not in net.down:
                continue  # healed by a heal-all already
            say(f"nemesis: heal node {NODE_NAMES[i]} (ip link set {net.veth[i]} up)")
            net.heal(i)
        elif kind == "heal-all":
            say("nemesis: heal everything" +
                (f" (nodes {','.join(NODE_NAMES[i] for i in sorted(net.down))})"
                 if net.down else " (nothing partitioned)"))
            net.heal_all()
        counts[kind] += 1


# ----------------------------------------------------------------------------------------------
# Final state

def wait_quiet(cluster, deadline_s):
    end = time.monotonic() + deadline_s
    stable, last, raw = 0, None, ""
    while time.monotonic() < end:
        status, obj, raw = cluster.kvcli(["nodes"], timeout_ms=2000)
        nodes = (obj or {}).get("nodes") or []
        syncer_stamp = None
        if cluster.syncer_http:
            try:
                with urllib.request.urlopen(f"http://{cluster.syncer_http}/nodes", timeout=2) as r:
                    syncer_stamp = json.loads(r.read().decode()).get("stamp")
            except (OSError, ValueError):
                syncer_stamp = None
        ok = (len(nodes) == cluster.k and all(n.get("reachable") for n in nodes) and
              all(n.get("unsynced") == 0 for n in nodes) and
              len({n.get("applied_stamp") for n in nodes}) == 1 and
              syncer_stamp is not None and nodes[0].get("applied_stamp") == syncer_stamp)
        state = [(n.get("applied_stamp"), n.get("unsynced"), n.get("items")) for n in nodes]
        if ok and state == last:
            stable += 1
            if stable >= 1:
                return True, nodes, syncer_stamp, raw
        else:
            stable = 0
        last = state if ok else None
        time.sleep(0.5)
    return False, nodes, syncer_stamp, raw


def final_lists(cluster):
    lists, errors = [], []
    for i in range(cluster.k):
        got = None
        for _ in range(10):
            status, obj, raw = cluster.kvcli(["list"], route=i, timeout_ms=5000)
            if status == "ok" and cluster.node_index(obj.get("node", "")) == i:
                got = obj.get("items") or []
                break
            time.sleep(0.5)
        if got is None:
            errors.append(f"node {NODE_NAMES[i]}: could not list ({raw})")
        lists.append(got)
    return lists, errors


def short(op):
    s = f"#{op['n']} w{op['worker']} {op['kind']}"
    if op.get("target"):
        s += f" {op['target']}"
    if op.get("title") and op["kind"] != "create":
        s += f" -> {op['title']}"
    if op["kind"] == "create":
        s += f" {op.get('title')}"
    node = NODE_NAMES[op["node"]] if op.get("node") is not None else "?"
    s += f" [{op['t0']:.3f}-{op['t1']:.3f}s] {op['status']} on {node}"
    it = op.get("item")
    if it:
        s += (f" => {it['id']} {it['title']!r} {'done' if it['completed'] else 'open'}"
              f" v{it['version']}")
    if op.get("error") and op["status"] != "ok":
        s += f" ({op['error'][:120]})"
    return s


def divergence(lists):
    """Rule 1: every node lists the same items, with the same values and versions."""
    out = []
    maps = [None if lst is None else {it["id"]: it for it in lst} for lst in lists]
    ref = next((m for m in maps if m is not None), {})
    all_ids = sorted(set().union(*[set(m) for m in maps if m is not None]))
    for xid in all_ids:
        vals = [None if m is None else m.get(xid) for m in maps]
        if any(m is not None and m.get(xid) != ref.get(xid) for m in maps):
            out.append({"kind": "divergence", "message": f"nodes disagree on {xid}",
                        "evidence": [f"node {NODE_NAMES[i]}: {json.dumps(v)}"
                                     for i, v in enumerate(vals)]})
    return out


def analyze_saved(workdir):
    """--analyze: the final check again, on a work directory's history and final lists."""
    with open(os.path.join(workdir, "history.jsonl")) as f:
        ops = [json.loads(line) for line in f if line.strip()]
    with open(os.path.join(workdir, "final-lists.json")) as f:
        lists = json.load(f)
    anomalies = divergence(lists) + analyze(ops, lists, len(lists))
    print(f"{len(ops)} operations, final items {[len(x) if x is not None else None for x in lists]}")
    print(f"anomalies          {len(anomalies)}")
    for a in anomalies:
        print(f"  [{a['kind']}] {a.get('message')}")
        for ev in a.get("evidence", [])[:40]:
            print(f"      {ev}")
    return EXIT_ANOMALY if anomalies else EXIT_OK


def analyze(ops, lists, k):
    """Applies the rules of the module docstring. Returns a list of anomalies."""
    anomalies = []

    def add(kind, msg, evidence):
        anomalies.append({"kind": kind, "message": msg, "evidence": evidence})

    creates = {}          # id -> ok create op
    title_writer = {}     # title -> create/title op (ok or unknown)
    for op in ops:
        if op["status"] == "fail":
            continue
        if op["kind"] in ("create", "title"):
            title_writer[op["title"]] = op
        if op["kind"] == "create" and op["status"] == "ok":
            it = op["item"]
            if it["id"] in creates:
                add("duplicate-id", f"two acknowledged creates returned id {it['id']}",
                    [short(creates[it["id"]]), short(op)])
            else:
                creates[it["id"]] = op
            if op["node"] is not None and not it["id"].endswith(NODE_NAMES[op["node"]]):
                add("id-suffix", f"create served by node {NODE_NAMES[op['node']]} returned "
                    f"id {it['id']}", [short(op)])
            if it["title"] != op["title"] or it["completed"]:
                add("bad-result", "create returned another value", [short(op)])

    by_target = collections.defaultdict(list)
    for op in ops:
        if op["kind"] != "create" and op["status"] != "fail" and op["target"]:
            by_target[op["target"]].append(op)

    # Per item: happens-before among writes, update-after-delete, results.
    item_info = {}
    for xid, c in creates.items():
        tops = by_target.get(xid, [])
        writes = [c] + [o for o in tops if o["kind"] != "delete"]
        deletes = [o for o in tops if o["kind"] == "delete"]
        ok_deletes = [o for o in deletes if o["status"] == "ok"]
        idx = {o["n"]: j for j, o in enumerate(writes)}
        succ = [set() for _ in writes]
        for j, b in enumerate(writes):
            if b["status"] != "ok" or b["kind"] == "create":
                continue
            it = b["item"]
            if it["id"] != xid:
                add("bad-result", f"update of {xid} returned item {it['id']}", [short(b)])
                continue
            succ[0].add(j)  # h1
            if b["kind"] == "title" and it["title"] != b["title"]:
                add("bad-result", f"title update of {xid} returned another title", [short(b)])
            if b["kind"] in ("complete", "incomplete"):
                if it["completed"] != (b["kind"] == "complete"):
                    add("bad-result", f"{b['kind']} of {xid} returned the other flag", [short(b)])
                p = title_writer.get(it["title"])
                if p is None or (p is not c and p.get("target") != xid):
                    add("unexplained-value", f"{b['kind']} of {xid} returned a title no write "
                        f"on {xid} introduced", [short(b)] + ([short(p)] if p else []))
                elif p["n"] in idx and idx[p["n"]] != j:
                    succ[idx[p["n"]]].add(j)  # h3
        ok_writes = [j for j, o in enumerate(writes) if o["status"] == "ok"]
        for a in ok_writes:
            for b in ok_writes:
                wa, wb = writes[a], writes[b]
                if a != b and wa["node"] is not None and wa["node"] == wb["node"] and \
                        wa["t1"] < wb["t0"]:
                    succ[a].add(b)  # h2
        # update-after-delete on one node
        for d in ok_deletes:
            for w in writes:
                if w["status"] == "ok" and w["kind"] != "create" and w["node"] == d["node"] and \
                        w["t0"] > d["t1"]:
                    add("update-after-delete", f"node {NODE_NAMES[d['node']]} acknowledged an "
                        f"update of {xid} after acknowledging its delete", [short(d), short(w)])
        # transitive closure
        reach = []
        for j in range(len(writes)):
            seen, stack = set(), list(succ[j])
            while stack:
                x = stack.pop()
                if x not in seen:
                    seen.add(x)
                    stack.extend(succ[x])
            reach.append(seen)
        item_info[xid] = (writes, deletes, ok_deletes, reach)

    def compatible(w, title, completed):
        if w["kind"] == "create":
            return w["title"] == title and not completed
        if w["status"] == "ok":
            return w["item"]["title"] == title and w["item"]["completed"] == completed
        if w["kind"] == "title":
            return w["title"] == title
        return completed == (w["kind"] == "complete")

    # Evaluate rules 2-4 on each distinct final state.
    distinct = []
    for i, lst in enumerate(lists):
        if lst is None:
            continue
        key = json.dumps(sorted(lst, key=lambda x: x["id"]), sort_keys=True)
        for d in distinct:
            if d[0] == key:
                d[1].append(i)
                break
        else:
            distinct.append((key, [i], lst))
    for _, who, lst in distinct:
        where = "node" + ("s " if len(who) > 1 else " ") + ",".join(NODE_NAMES[i] for i in who)
        final = {}
        for it in lst:
            if it["id"] in final:
                add("duplicate-id-in-list", f"{where} list id {it['id']} twice",
                    [json.dumps(final[it["id"]]), json.dumps(it)])
            final[it["id"]] = it
        for xid, (writes, deletes, ok_deletes, reach) in item_info.items():
            it = final.get(xid)
            if it is None:
                if not deletes:
                    add("lost-item", f"{xid} was created (acknowledged) and never deleted, but "
                        f"{where} do(es) not hold it", [short(o) for o in writes][:20])
                continue
            if ok_deletes:
                add("resurrected", f"{xid} is on {where} after an acknowledged delete",
                    [f"final: {json.dumps(it)}"] + [short(o) for o in ok_deletes] +
                    [short(o) for o in writes][-10:])
                continue
            cands = [j for j, w in enumerate(writes)
                     if compatible(w, it["title"], it["completed"]) and
                     not any(writes[g]["status"] == "ok" for g in reach[j])]
            if not cands:
                maximal = [short(writes[j]) for j in range(len(writes))
                           if writes[j]["status"] == "ok" and
                           not any(writes[g]["status"] == "ok" for g in reach[j])]
                add("lost-write", f"{xid} on {where} is {it['title']!r} "
                    f"{'done' if it['completed'] else 'open'} v{it['version']}, the value of no "
                    "write that could be last", [f"final: {json.dumps(it)}"] +
                    ["acknowledged writes nothing acknowledged follows:"] + maximal +
                    ["all writes on it:"] + [short(o) for o in writes] +
                    [short(o) for o in deletes])
        # items no ok create returned
        unknown_creates = {o["title"]: o for o in ops
                           if o["kind"] == "create" and o["status"] == "unknown"}
        ok_titles = {o["title"]: o for o in creates.values()}
        used = set()
        for xid, it in sorted(final.items()):
            if xid in creates:
                continue
            u = unknown_creates.get(it["title"])
            if it["title"] in ok_titles:
                add("duplicate-create", f"{xid} on {where} has the title of the acknowledged "
                    f"create of {ok_titles[it['title']]['item']['id']}",
                    [json.dumps(it), short(ok_titles[it["title"]])])
            elif u is None or it["completed"] or u["n"] in used:
                add("phantom-item", f"{xid} on {where} comes from no create", [json.dumps(it)] +
                    ([short(u)] if u else []))
            else:
                used.add(u["n"])
    return anomalies


# ----------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description="kvstore convergence checker (see the docstring)")
    ap.add_argument("--minutes", type=float, default=None, help="length of the load phase")
    ap.add_argument("--seconds", type=float, default=None, help="same, in seconds")
    ap.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    ap.add_argument("--nodes", type=int, default=3, help="data nodes, 1-8 (default 3)")
    ap.add_argument("--workers", type=int, default=4, help="concurrent clients (default 4)")
    ap.add_argument("--max-ops", type=int, default=50000, help="operations at most, all workers")
    ap.add_argument("--think-ms", type=float, default=40.0, help="max pause between a "
                    "worker's operations")
    ap.add_argument("--local-clients", type=float, default=0.25,
                    help="share of operations run inside the routed node's namespace, so that "
                    "they reach it while it is partitioned (default 0.25; 0: all from the root "
                    "namespace)")
    ap.add_argument("--op-timeout-ms", type=int, default=2000, help="kvcli --timeout")
    ap.add_argument("--fault-min", type=float, default=3.0, help="seconds between faults, min")
    ap.add_argument("--fault-max", type=float, default=7.0, help="seconds between faults, max")
    ap.add_argument("--quiet-deadline", type=float, default=90.0,
                    help="seconds to wait for convergence at the end")
    ap.add_argument("--bin", default=os.environ.get("KV_BUILD") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "build"),
        help="directory with kvnode, kvsync, kvcli (default $KV_BUILD or <repo>/build)")
    ap.add_argument("--workdir", default=None, help="data and logs (default /tmp/kvchk-<pid>)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory on success")
    ap.add_argument("--analyze", metavar="WORKDIR", help="no run: check a kept work directory's "
                    "history.jsonl and final-lists.json again")
    args = ap.parse_args()
    if args.analyze:
        return analyze_saved(args.analyze)
    if args.seconds is None:
        args.seconds = 60.0 * (args.minutes if args.minutes is not None else 2.0)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1 << 31)
    args.bin = os.path.abspath(args.bin)
    print(f"seed {args.seed}", flush=True)
    if not 1 <= args.nodes <= len(NODE_NAMES):
        print(f"setup error: --nodes must be 1-{len(NODE_NAMES)}", file=sys.stderr)
        return EXIT_SETUP
    if args.seconds <= 0 or args.workers < 1:
        print("setup error: --minutes/--seconds and --workers must be positive", file=sys.stderr)
        return EXIT_SETUP
    for b in ("kvnode", "kvsync", "kvcli"):
        if not os.access(os.path.join(args.bin, b), os.X_OK):
            print(f"setup error: {os.path.join(args.bin, b)} not found (build first, or --bin)",
                  file=sys.stderr)
            return EXIT_SETUP
    print(f"nodes {args.nodes}, workers {args.workers}, load {args.seconds:.0f} s, "
          f"binaries {args.bin}", flush=True)

    workdir = args.workdir or f"/tmp/kvchk-{os.getpid()}"
    os.makedirs(os.path.join(workdir, "logs"), exist_ok=True)
    os.makedirs(os.path.join(workdir, "data"), exist_ok=True)
    # Run copies: a rebuild during the run must not change (or break) what a restart starts.
    os.makedirs(os.path.join(workdir, "bin"), exist_ok=True)
    for b in ("kvnode", "kvsync", "kvcli"):
        shutil.copy2(os.path.join(args.bin, b), os.path.join(workdir, "bin", b))
    args.bin = os.path.join(workdir, "bin")

    def on_signal(signum, frame):
        raise Interrupted(signal.Signals(signum).name)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    net = Net(args.nodes)
    cluster = Cluster(args, net, workdir)
    stop = threading.Event()
    code = EXIT_SETUP
    try:
        code = run_checker(args, net, cluster, stop, workdir)
    except SetupError as e:
        print(f"setup error: {e}", file=sys.stderr, flush=True)
        code = EXIT_SETUP
    except Interrupted as e:
        print(f"interrupted ({e}): tearing down", file=sys.stderr, flush=True)
        code = EXIT_SETUP
    finally:
        stop.set()
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        cluster.stop_all()
        errors = net.teardown()
        for e in errors:
            print(f"teardown: {e}", file=sys.stderr)
        left = [ln.split()[0] for ln in run(["ip", "netns", "list"], check=False).stdout
                .splitlines() if ln.startswith(f"kvchk-{os.getpid()}-")]
        if left:
            print(f"teardown: namespaces left: {left}", file=sys.stderr)
        if code == EXIT_OK and not args.keep and not errors:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work directory (logs, history.jsonl, report.json): {workdir}", flush=True)
    return code


def run_checker(args, net, cluster, stop, workdir):
    net.setup()
    for i in range(cluster.k):
        if not cluster.start_node(i):
            raise SetupError(f"node {NODE_NAMES[i]} did not start: "
                             + " / ".join(cluster.nodes[i].log_tail(5)))
    if not cluster.start_syncer():
        raise SetupError("kvsync did not start: " + " / ".join(cluster.syncer.log_tail(5)))
    cluster.anomalies.clear()
    # Wait until writes are taken everywhere (the write fence lifts on the syncer's first APPLY).
    ok, nodes, _, raw = wait_quiet(cluster, 30)
    if not ok:
        raise SetupError(f"the cluster did not come up within 30 s; `kvcli nodes` said: "
                         f"{raw or nodes}; syncer log: " +
                         " / ".join(cluster.syncer.log_tail(5)))
    say(f"cluster up: {cluster.k} nodes, syncer http {cluster.syncer_http}")

    events = make_schedule(args)
    with open(os.path.join(workdir, "schedule.json"), "w") as f:
        json.dump({"seed": args.seed, "events": events}, f, indent=1)
    sched_counts = collections.Counter(e["kind"] for e in events)
    say(f"schedule: {len(events)} nemesis events ({dict(sched_counts)}), "
        f"first: {events[0] if events else None}")

    history = History(os.path.join(workdir, "history.jsonl"))
    fault_counts = collections.Counter()
    start = now()
    deadline = time.monotonic() + args.seconds
    budget = {"left": args.max_ops, "lock": threading.Lock()}
    threads = [threading.Thread(target=worker, args=(w, args, cluster, history, stop, deadline,
                                                     budget), daemon=True)
               for w in range(args.workers)]
    nem = threading.Thread(target=nemesis, args=(events, cluster, net, stop, fault_counts, start),
                           daemon=True)
    for t in threads:
        t.start()
    nem.start()
    last_report = time.monotonic()
    while any(t.is_alive() for t in threads):
        time.sleep(0.5)
        if time.monotonic() - last_report >= 15:
            last_report = time.monotonic()
            c = collections.Counter(o["status"] for o in history.ops)
            say(f"progress: {len(history.ops)} operations ({dict(c)})")
    load_end = now()
    stop.set()
    nem.join(timeout=60)
    history.close()
    say(f"load done: {len(history.ops)} operations in {load_end - start:.1f} s")

    # Heal, restart, wait for quiet.
    cluster.check_crashes()
    if net.down:
        say("final: heal " + ",".join(NODE_NAMES[i] for i in sorted(net.down)))
    net.heal_all()
    for i, p in enumerate(cluster.nodes):
        if not p.alive():
            say(f"final: start node {NODE_NAMES[i]}")
            cluster.start_node(i)
    if not cluster.syncer.alive():
        say("final: start the syncer")
        cluster.start_syncer()
    q0 = now()
    quiet, nodes, syncer_stamp, _ = wait_quiet(cluster, args.quiet_deadline)
    say(f"final: {'quiet' if quiet else 'NOT quiet'} after {now() - q0:.1f} s (syncer stamp "
        f"{syncer_stamp}, nodes " + ", ".join(
            f"{n.get('name', '?')}: applied {n.get('applied_stamp')} unsynced {n.get('unsynced')}"
            for n in nodes) + ")")
    lists, list_errors = final_lists(cluster)
    cluster.check_crashes()

    anomalies = list(cluster.anomalies)
    if not quiet:
        anomalies.append({"kind": "not-quiet", "message": f"the cluster did not settle within "
                          f"{args.quiet_deadline:.0f} s", "evidence": [json.dumps(nodes)]})
    for e in list_errors:
        anomalies.append({"kind": "not-quiet", "message": e, "evidence": []})
    with open(os.path.join(workdir, "final-lists.json"), "w") as f:
        json.dump(lists, f)
    anomalies += divergence(lists) + analyze(history.ops, lists, cluster.k)

    # Figures
    total = now() - start
    ops = history.ops
    print("", flush=True)
    print("==== kvstore convergence check ====")
    print(f"seed               {args.seed}")
    print(f"nodes / workers    {cluster.k} / {args.workers}")
    print(f"duration           {total:.1f} s (load {load_end - start:.1f} s)")
    print(f"operations         {len(ops)} ({sum(1 for o in ops if o.get('inside'))} from inside "
          f"the routed node's namespace)")
    by = collections.defaultdict(collections.Counter)
    for o in ops:
        by[o["kind"]][o["status"]] += 1
    for kind, _ in OP_KINDS:
        c = by[kind]
        print(f"  {kind:<11}      ok {c['ok']:>5}  failed {c['fail']:>5}  unknown {c['unknown']:>4}")
    print(f"faults injected    {sum(fault_counts.values())} (scheduled {len(events)})")
    for kind in ("kill-node", "kill-syncer", "partition", "heal", "heal-all"):
        print(f"  {kind:<16} {fault_counts[kind]}")
    counts = [len(lst) if lst is not None else None for lst in lists]
    print(f"final items        {counts[0] if len(set(counts)) == 1 else counts} "
          f"(stamp {syncer_stamp})")
    print(f"anomalies          {len(anomalies)}")
    for a in anomalies:
        print(f"  [{a['kind']}] {a.get('message') or a.get('what')}")
        for ev in a.get("evidence", [])[:40]:
            print(f"      {ev}")
    with open(os.path.join(workdir, "report.json"), "w") as f:
        json.dump({"seed": args.seed, "duration_s": round(total, 1), "operations": {
            k: dict(v) for k, v in by.items()}, "faults": dict(fault_counts),
            "final_items": counts, "anomalies": anomalies}, f, indent=1)
    print("RESULT: " + ("PASS, 0 anomalies" if not anomalies else
                        f"FAIL, {len(anomalies)} anomalies") + f" (seed {args.seed})", flush=True)
    return EXIT_ANOMALY if anomalies else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
