#!/usr/bin/env python3
"""kvstore convergence checker: Jepsen-style clients, a nemesis, and a final-state check.

Usage: checker.py [--minutes N | --seconds N] [--seed S] [--nodes K] [--faults LIST] [--bin DIR]
(``scripts/check.sh`` is the wrapper; ``--help`` lists every option; test/checker/README.md has
recipes.) Needs root: it creates network namespaces. Python 3 standard library only.

Topology
========
Node i (1..K, named a, b, c, ...) runs in a network namespace ``kvchk-<pid>-<i>`` created here,
joined to the root namespace by a veth pair ``kvc<pid>r<i>`` (root side, 10.231.i.1/30) /
``kvc<pid>n<i>`` (node side, 10.231.i.2/30), and listens on 10.231.i.2:7001 (HTTP 7101). The
syncer (``kvsync --http-port 0``, its HTTP on 127.0.0.1) and the clients run in the root
namespace. A ``blackhole 10.231.0.0/16`` route is added first, so that while a root-side veth is
down (a partition) packets for that node are dropped here instead of following the default route
off the machine. Everything created (namespaces, veths, the route, processes) is recorded and
removed at the end, on any error and on SIGINT/SIGTERM/SIGHUP; only the PIDs started here (and
the kvnode a strace started here forked) are ever signalled.

Clients
=======
Two kinds, both writing into one history:

* Streaming clients (``--stream-clients``, default 6): each keeps ONE ``kvcli --json
  --no-session --route N`` process open in script mode (one command a line on stdin, one JSON
  object a line on stdout) and sends its next operation as soon as the previous one answered.
  They all work on a hot set of ``--hot-items`` (6) items: mostly ``update ID title T`` and
  complete/incomplete, some ``get ID``, and rarely a delete (the id leaves the hot set) or a
  create (a new hot item; a create is forced while the hot set is short). Client c is routed to
  node ``c mod K`` (``--stream-route N`` pins them all to node N); a seeded share
  (``--local-clients``) runs inside its node's namespace. ``--stream-depth`` (2) commands wait
  in kvcli's stdin, so that the next one is sent the instant the previous one is answered (its
  recorded t0, the time it was written, is then earlier than the real send: hb edges derived
  from it are only fewer). A reply that does not come within the deadline, or a kvcli that
  exits, makes the operation ``unknown`` (with any still due) and the process is replaced. After
  every node kill, node stop and removal the clients move to a fresh hot set, so that what the
  fault left on the old items is not overwritten by later load and reaches the final check.
* Per-process workers (``--workers``, default 3): one ``kvcli`` process per operation, with think
  times, over a pool of the 12 most recent items, a seeded share (``--local-clients``) from
  inside the routed node's namespace: these reach that node while it is partitioned from the
  syncer, which is what makes partitions produce conflicting unsynced writes.

Titles are unique per run (``t<seed>w<n>o<k>`` / ``t<seed>s<c>o<k>``), which is what lets
values be traced back to the write that made them. Every operation is recorded with its invoke
time t0, completion time t1, the node that served it and its outcome:

* ``ok``: ``{"ok":true}`` with the resulting item (kvcli moves to the next node when one is
  unreachable or not yet taking writes, before sending).
* ``fail``: an error answered by a node (not found, deleted, unavailable, invalid argument,
  storage), or no node reachable at all: the operation definitely did nothing.
* ``unknown``: kvcli said the node "did not answer" (the request may have been applied), the
  process timed out or died, or its output could not be parsed.

Schedule (reproducible)
=======================
The seed is printed first. Workers draw from ``Random("<seed>-w<n>")``, streaming clients from
``Random("<seed>-s<c>")``, the nemesis from ``Random("<seed>-nemesis")``, a fixed number of
draws per step, so a seed replays the same operation kinds, routes, titles and fault sequence;
only timing (and with it which concrete id a target choice resolves to) may differ.
``--print-schedule`` prints the schedule and exits. Fault kinds (``--faults``, default all):

* ``kill-node``: kill -9 a node, pause, restart it on its data directory.
* ``kill-syncer``: kill -9 the syncer, pause, restart it.
* ``partition`` (with ``heal`` / ``heal-all``): ``ip link set <root veth> down``; at most K-1.
* ``slow-fsync``: restart a node under ``strace -f -e inject=fdatasync:delay_enter=D -e
  inject=fsync:delay_enter=D`` (``--fsync-delay-us``, 5000) so that every commit waits, let the
  streaming load run on it, kill -9 the real kvnode (the strace child) mid-load, pause, restart
  it normally.
* ``restore``: stop a node (SIGTERM or -9), copy its data directory, restart it and let it run
  and sync, then stop it again (-9 or SIGTERM) and restart it from the copy.
* ``remove``: restart kvsync without the node in ``--nodes`` while writes go on, then (in a
  seeded share, when this kvsync has ``forget-node``) run ``kvsync forget-node NAME --data DIR``
  with kvsync stopped, then restart kvsync with every node.

Events run in order, each no earlier than its offset; the schedule leaves room for each event's
length. The load lasts ``--seconds`` and, if the nemesis is late, until it has run every event
(bounded). ``restore`` and ``remove`` need binaries that handle restored directories and
reconfiguration (the fixed code); older ones are expected to show anomalies under them.

Rules of the final check (the only anomalies reported)
======================================================
After the run everything is healed and restarted (kvsync with every node), and the checker waits
(bounded) until every node reports ``unsynced`` 0 and the same ``applied_stamp``, equal to the
syncer's stamp. Then it lists every node and applies these rules. "Write on X" means a create of
X or an update of X; deletes are listed separately. Only ok and unknown operations are considered
(a failed one did nothing).

Restored nodes: an operation acknowledged by node N between the stop that took a ``restore``
copy of N and the stop before N was put back from it may be legitimately lost (the copy is
older), unless something outside that window saw its effect (its title in a later reply, its
item on another node, for a delete another node refusing the item as deleted). Those operations,
and only those, are treated as ``unknown`` ("exempt"); every rule below still applies to
everything else.

Happens-before (hb) between writes on one item X decides which writes provably lost to which
(never derived from real time across nodes: the winner between writes on different nodes is the
one that *reached the syncer* later, which a partition can reorder arbitrarily):

  (h1) the create of X hb every ok update of X.
  (h2) A hb B if both are ok, served by the same node, and A completed before B was invoked.
  (h3) P hb B if B is an ok complete/incomplete whose result carries title T and P is the write
       that introduced T (titles are unique).
  (h4) P hb B if an ok operation served by node M (a get, a complete/incomplete) returned X with
       P's title before B, an ok write served by M, was invoked: M held P's stamped value (or
       its own P), so B was stamped after P.
  Every hb edge ends at an ok write, so "some ok write follows F" is "F has an hb successor".

Value of a write: a create gives (title, not completed); an ok update gives the item it returned;
an unknown title update gives (its title, any); an unknown complete/incomplete gives (any title,
that flag).

  1. convergence: every node lists the same items with the same titles, flags and versions, and
     the cluster got quiet before the deadline. Anomalies: ``divergence``, ``not-quiet``,
     ``duplicate-id-in-list``.
  2. acknowledged writes survive: for every X returned by an ok create --
     * X present and no ok delete of X: its final (title, completed) must equal the value of some
       write F on X (ok or unknown) that no ok write follows by hb. Else ``lost-write``.
     * X absent: some delete of X (ok or unknown) must exist; else ``lost-item``.
     * Also checked while writing: a node that acknowledged a delete of X must not acknowledge a
       later update of X (``update-after-delete``) nor return X from a later get
       (``read-after-delete``). The result of an ok write must show what was asked
       (``bad-result``); a complete/incomplete result and a get must carry a title some write on
       X introduced (``unexplained-value``, ``unexplained-read``).
  3. deletes are final: X present after an ok delete of X is ``resurrected``.
  4. ids: two ok creates returning one id is ``duplicate-id``; an ok create whose id does not end
     with the serving node's name is ``id-suffix``. An item whose id no ok create returned must be
     the item of a create with unknown outcome (same title, not completed, each explaining at
     most one item); else ``phantom-item``; one with an ok create's title is ``duplicate-create``.
  Process checks: a node or syncer that exits without being killed here, or does not come back
  within the restart deadline, is ``crash`` / ``restart-failed``.

Floors (so that "0 anomalies" means something): the run FAILS, with a message, when fewer faults
were injected than scheduled (per kind), when fewer than ``--min-acked`` (default 10) operations
of each kind create / update / delete / read were acknowledged, or when a client thread or the
nemesis died with an exception.

Exit status: 0 no anomaly and floors met, 1 anomalies or a floor missed (each printed), 2 setup
error or interrupted. Logs, history.jsonl, faults.json, the schedule and the report are in the
work directory, kept when the run fails or with --keep (``--analyze DIR`` checks it again). The
binaries are copied there first, so that a rebuild during the run cannot change what a restart
starts.
"""

import argparse
import collections
import json
import os
import random
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.request

EXIT_OK, EXIT_ANOMALY, EXIT_SETUP = 0, 1, 2
NODE_NAMES = "abcdefgh"
SUBNET = "10.231.0.0/16"
NODE_PORT, NODE_HTTP_PORT = 7001, 7101
RESTART_DEADLINE = 25.0
FAULT_KINDS = ("kill-node", "kill-syncer", "partition", "slow-fsync", "restore", "remove")
UPDATE_KINDS = ("complete", "incomplete", "title")
REPORT_KINDS = ("create", "complete", "incomplete", "title", "delete", "read")
FLOOR_GROUPS = {"create": ("create",), "update": UPDATE_KINDS, "delete": ("delete",),
                "read": ("read",)}


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


def wait_until(cond, deadline_s, step=0.05):
    """Polls cond() until it is true or deadline_s passes; returns its last value."""
    end = time.monotonic() + deadline_s
    while True:
        v = cond()
        if v or time.monotonic() >= end:
            return v
        time.sleep(min(step, max(0.0, end - time.monotonic())))


# /proc helpers: a process killed with -9 may stay a zombie for a while (its parent reaps it),
# so "exists" is not "runs": a pid runs while /proc/PID/stat says a state other than Z/X.
def proc_stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    r = s.rindex(")")
    fields = s[r + 2:].split()
    return {"comm": s[s.index("(") + 1:r], "state": fields[0], "ppid": int(fields[1]),
            "start": int(fields[19])}


def pid_runs(pid, start=None):
    st = proc_stat(pid)
    return st is not None and st["state"] not in ("Z", "X") and \
        (start is None or st["start"] == start)


def child_pids(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    if not out:  # no CONFIG_PROC_CHILDREN: scan
        for d in os.listdir("/proc"):
            if d.isdigit():
                st = proc_stat(int(d))
                if st and st["ppid"] == pid:
                    out.append(int(d))
    return out


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
# Processes started here (nodes, syncer, kvcli runs). Only these PIDs are ever signalled, and the
# kvnode a strace started here forked (identified by its parent and its start time).

class Proc:
    def __init__(self, label, prefix, cmd, logpath, comm):
        self.label, self.prefix, self.cmd, self.logpath = label, prefix, cmd, logpath
        self.comm = comm  # the name of the real process (kvnode, kvsync)
        self.popen = None
        self.starts = 0
        self.expect_up = False
        self.real = None  # (pid, start time) of the real process when it is wrapped (strace)
        self.wrapped = False

    def start(self, wrap=None, cmd=None):
        argv = self.prefix + (wrap or []) + (cmd or self.cmd)
        with open(self.logpath, "a") as log:
            log.write(f"==== checker: start #{self.starts + 1} at {now():.3f}s: "
                      f"{' '.join(argv)}\n")
            log.flush()
            self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        self.expect_up = True
        self.wrapped = bool(wrap)
        self.real = None

    def find_real(self, deadline_s=10.0):
        """The wrapper (strace) forks the real process: find it, by parent and name, and keep
        its pid with its start time (so that a recycled pid is never signalled)."""
        def find():
            for c in child_pids(self.popen.pid):
                st = proc_stat(c)
                if st and st["comm"] == self.comm and st["state"] not in ("Z", "X"):
                    return (c, st["start"])
            return None if self.popen.poll() is None else "gone"
        got = wait_until(find, deadline_s)
        if isinstance(got, tuple):
            self.real = got
        return self.real is not None

    def pid(self):
        if self.real:
            return self.real[0]
        return self.popen.pid if self.popen else None

    def alive(self):
        if self.popen is None:
            return False
        if self.wrapped:
            return self.real is not None and pid_runs(*self.real)
        return self.popen.poll() is None

    def _signal_real(self, sig):
        """Signals the real process (the wrapper's child when wrapped). True if sent."""
        try:
            if self.wrapped:
                if self.real and pid_runs(*self.real):
                    os.kill(self.real[0], sig)
                    return True
                return False
            if self.popen is not None and self.popen.poll() is None:
                os.kill(self.popen.pid, sig)
                return True
        except ProcessLookupError:
            pass
        return False

    def _reap(self, deadline_s):
        """Waits for the real process to stop running, then for the wrapper to exit (killing it
        when it lingers). Every wait has a deadline."""
        if self.wrapped and self.real:
            wait_until(lambda: not pid_runs(*self.real), deadline_s)
        if self.popen is not None:
            try:
                self.popen.wait(timeout=deadline_s)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    self.popen.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        # strace without --kill-on-exit may have left the tracee running detached
        if self.wrapped and self.real and pid_runs(*self.real):
            try:
                os.kill(self.real[0], signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_until(lambda: not pid_runs(*self.real), 10.0)

    def kill9(self):
        self.expect_up = False
        self._signal_real(signal.SIGKILL)
        self._reap(10.0)

    def stop_clean(self, deadline_s=15.0):
        """SIGTERM, then -9 if it has not exited by the deadline. True if it exited by itself."""
        self.expect_up = False
        if not self._signal_real(signal.SIGTERM):
            self._reap(10.0)
            return False
        clean = wait_until(lambda: not self.alive(), deadline_s)
        if not clean:
            self._signal_real(signal.SIGKILL)
        self._reap(10.0)
        return bool(clean)

    def exit_status(self):
        return self.popen.returncode if self.popen else None

    def log_text(self):
        try:
            with open(self.logpath, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=15):
        return self.log_text().splitlines()[-n:]


def classify(obj, raw):
    """Outcome of one kvcli --json reply: ok | fail | unknown."""
    if obj is None:
        return "unknown"
    if obj.get("ok") is True:
        return "ok"
    msg = str(obj.get("error", ""))
    if "may or may not" in msg or "did not answer" in msg:
        return "unknown"
    return "fail"


def parse_reply(out):
    for line in reversed(out.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None


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
        self.helps = {}
        for b in self.secret_args:
            h = run([os.path.join(self.bin, b), "--help"], check=False).stdout
            self.helps[b] = h
            if "--secret-file" in h:
                if not os.path.exists(secret):
                    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    os.write(fd, (secrets.token_hex(32) + "\n").encode())
                    os.close(fd)
                self.secret_args[b] = ["--secret-file", secret]
        self.has_forget = "forget-node" in self.helps["kvsync"]
        self.data = [os.path.join(workdir, "data", f"node-{NODE_NAMES[i]}") for i in range(self.k)]
        self.nodes = []
        for i in range(self.k):
            cmd = [os.path.join(self.bin, "kvnode"), "--name", NODE_NAMES[i], "--host",
                   Net.node_ip(i), "--port", str(NODE_PORT), "--http-port", str(NODE_HTTP_PORT),
                   "--data", self.data[i]] + self.secret_args["kvnode"]
            self.nodes.append(Proc(f"node {NODE_NAMES[i]}", ["ip", "netns", "exec", net.ns[i]],
                                   cmd, os.path.join(workdir, "logs",
                                                     f"node-{NODE_NAMES[i]}.log"), "kvnode"))
        self.syncer_data = os.path.join(workdir, "data", "syncer")
        self.syncer_nodes = list(range(self.k))  # the nodes kvsync is configured with
        self.syncer = Proc("syncer", [], self._syncer_cmd(self.syncer_nodes),
                           os.path.join(workdir, "logs", "syncer.log"), "kvsync")
        self.syncer_http = None
        self.strace = self._strace_prefix(args.fsync_delay_us)
        # --syncer-fsync-delay-us: kvsync always runs under strace (its stamping rounds then
        # take longer than a node's group commit, so its FETCHes come at any moment of it).
        self.syncer_strace = (self._strace_prefix(args.syncer_fsync_delay_us)
                              if args.syncer_fsync_delay_us > 0 else None)
        self.anomalies = []  # process anomalies (crash, restart-failed)
        self.kvcli_procs = set()
        self.kvcli_lock = threading.Lock()
        self.closed = False  # set at teardown: nothing may start after it

    def _syncer_cmd(self, nodes):
        return [os.path.join(self.bin, "kvsync"), "--nodes", ",".join(self.addrs[i] for i in nodes),
                "--data", self.syncer_data, "--http-port", "0"] + self.secret_args["kvsync"]

    @staticmethod
    def _strace_prefix(delay_us):
        st = shutil.which("strace")
        if st is None:
            return None
        h = subprocess.run([st, "-h"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=10).stdout
        argv = [st, "-f"]
        if "--kill-on-exit" in h:
            argv.append("--kill-on-exit")  # strace >= 6.2: the tracee dies with strace
        if "--seccomp-bpf" in h:
            argv.append("--seccomp-bpf")   # stop only at the traced syscalls
        d = int(delay_us)
        return argv + ["-e", "trace=fdatasync,fsync", "-e", f"inject=fdatasync:delay_enter={d}",
                       "-e", f"inject=fsync:delay_enter={d}", "-o", "/dev/null"]

    # -- processes --
    def _wait_log(self, proc, needle, count, deadline):
        while time.monotonic() < deadline:
            if proc.log_text().count(needle) >= count:
                return True
            if not proc.alive():
                return False
            time.sleep(0.05)
        return False

    def start_node(self, i, slow=False):
        p = self.nodes[i]
        before = p.log_text().count(" ready binary=")
        with self.kvcli_lock:  # never start anything once stop_all has begun
            if self.closed:
                return False
            p.start(wrap=self.strace if slow else None)
        if slow and not p.find_real():
            say(f"{p.label}: the kvnode strace started was not found")
        if not self._wait_log(p, " ready binary=", before + 1, time.monotonic() + RESTART_DEADLINE):
            self.anomalies.append({"kind": "restart-failed", "what": p.label,
                                   "evidence": p.log_tail()})
            say(f"ANOMALY: {p.label} did not come up within {RESTART_DEADLINE:.0f} s")
            return False
        return True

    def start_syncer(self, nodes=None):
        p = self.syncer
        if nodes is not None:
            self.syncer_nodes = list(nodes)
        p.cmd = self._syncer_cmd(self.syncer_nodes)
        before = p.log_text().count("kvsync serving http=")
        with self.kvcli_lock:
            if self.closed:
                return False
            p.start(wrap=self.syncer_strace)
        if self.syncer_strace and not p.find_real():
            say("the kvsync strace started was not found")
        if not self._wait_log(p, "kvsync serving http=", before + 1,
                              time.monotonic() + RESTART_DEADLINE):
            self.anomalies.append({"kind": "restart-failed", "what": "syncer",
                                   "evidence": p.log_tail()})
            say(f"ANOMALY: the syncer did not come up within {RESTART_DEADLINE:.0f} s")
            return False
        m = re.findall(r"kvsync serving http=([0-9.]+:\d+)", p.log_text())
        self.syncer_http = m[-1] if m else None
        return True

    def forget_node(self, i):
        """kvsync forget-node NAME --data DIR, with kvsync stopped. Returns (ok, output)."""
        argv = [os.path.join(self.bin, "kvsync"), "forget-node", NODE_NAMES[i], "--data",
                self.syncer_data]
        with open(self.syncer.logpath, "a") as log:
            log.write(f"==== checker: at {now():.3f}s: {' '.join(argv)}\n")
        p = run(argv, check=False, timeout=60)
        out = (p.stdout + p.stderr).strip()
        with open(self.syncer.logpath, "a") as log:
            log.write(out + f"\n==== checker: exit {p.returncode}\n")
        return p.returncode == 0, out

    def check_crashes(self):
        for p in self.nodes + [self.syncer]:
            if p.expect_up and not p.alive():
                p.expect_up = False
                p._reap(5.0)
                code = p.exit_status()
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
        for pr in procs:
            try:
                pr.wait(timeout=5)
            except (subprocess.TimeoutExpired, OSError):
                pass
        for p in self.nodes + [self.syncer]:
            p.kill9()

    def kvcli_argv(self, route=None, inside=False, timeout_ms=2000):
        argv = ["ip", "netns", "exec", self.net.ns[route]] if inside else []
        argv += [os.path.join(self.bin, "kvcli"), "--json", "--no-session", "--nodes",
                 ",".join(self.addrs), "--timeout", str(timeout_ms)] + self.secret_args["kvcli"]
        if route is not None:
            argv += ["--route", str(route + 1)]
        return argv

    # -- kvcli, one process per command --
    def kvcli(self, cmd, route=None, timeout_ms=2000, proc_timeout=20.0, inside=False):
        """Returns (status, obj, raw): status ok | fail | unknown. inside: run kvcli in the
        namespace of the node it is routed to (it then reaches that node only)."""
        argv = self.kvcli_argv(route, inside, timeout_ms) + cmd
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
        obj = parse_reply(out)
        raw = (out.strip() + (" | " + err.strip() if err.strip() else ""))[:500]
        if obj is None:
            return "unknown", None, raw or f"kvcli exit {pr.returncode}, no output"
        return classify(obj, raw), obj, raw

    def node_index(self, addr):
        try:
            return self.addrs.index(addr)
        except ValueError:
            return None


class StreamClient:
    """One kvcli process in script mode: a command a line in, one JSON object a line out."""

    def __init__(self, cid, cluster, route, inside, timeout_ms, logpath):
        self.cid, self.cluster, self.route, self.inside = cid, cluster, route, inside
        self.timeout_ms = timeout_ms
        self.logpath = logpath
        self.pr = None
        self.buf = b""
        self.starts = 0
        # kvcli tries at most every node, each bounded by --timeout: then it has answered.
        self.reply_deadline = (cluster.k + 1) * timeout_ms / 1000.0 + 5.0

    def _start(self):
        argv = self.cluster.kvcli_argv(self.route, self.inside, self.timeout_ms)
        with self.cluster.kvcli_lock:
            if self.cluster.closed:
                return False
            with open(self.logpath, "a") as log:
                log.write(f"==== checker: start #{self.starts + 1} at {now():.3f}s: "
                          f"{' '.join(argv)}\n")
                log.flush()
                self.pr = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=log, bufsize=0,
                                           env=dict(os.environ, HOME=self.cluster.workdir,
                                                    NO_COLOR="1"))
            self.cluster.kvcli_procs.add(self.pr)
        self.buf = b""
        self.starts += 1
        return True

    def close(self):
        pr, self.pr = self.pr, None
        if pr is None:
            return
        try:
            pr.kill()
        except OSError:
            pass
        try:
            pr.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for f in (pr.stdin, pr.stdout):
            try:
                f.close()
            except OSError:
                pass
        with self.cluster.kvcli_lock:
            self.cluster.kvcli_procs.discard(pr)

    def _readline(self, deadline):
        fd = self.pr.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, "no reply within %.1f s" % self.reply_deadline
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return None, f"kvcli exited (status {self.pr.poll()}) before replying"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace"), None

    def send(self, cmd):
        """Writes one command (a list of words) to kvcli, starting kvcli when needed. Returns
        (t0, error): t0 is the invoke time; error is None, or why it could not be sent."""
        if self.pr is None or self.pr.poll() is not None:
            self.close()
            if not self._start():
                return now(), "not run: the checker is tearing down"
        t0 = now()
        try:
            self.pr.stdin.write((" ".join(cmd) + "\n").encode())
        except OSError as e:
            self.close()
            return t0, f"cannot write to kvcli: {e}"
        return t0, None

    def recv(self, since):
        """Reads the reply to the oldest command not answered yet; kvcli answers in order.
        Returns (status, obj, raw, t1). On no reply by the deadline (counted from `since`) or
        a kvcli that exited, the outcome is unknown and the process is replaced: the replies
        still due can then no longer be matched to commands."""
        if self.pr is None:
            return "unknown", None, "kvcli was replaced before replying", now()
        line, err = self._readline(since + self.reply_deadline)
        t1 = now()
        if line is None:
            self.close()
            return "unknown", None, err, t1
        try:
            obj = json.loads(line)
        except ValueError:
            self.close()
            return "unknown", None, f"not JSON: {line[:300]}", t1
        return classify(obj, line), obj, line[:500], t1


# ----------------------------------------------------------------------------------------------
# Clients

OP_KINDS = [("create", 27), ("complete", 15), ("incomplete", 11), ("title", 22), ("delete", 13),
            ("read", 12)]
STREAM_MIXES = {
    "default": [("title", 56), ("complete", 11), ("incomplete", 11), ("read", 18), ("delete", 2),
                ("create", 2)],
    "updates": [("title", 100)],
}


def pick(rng, weighted):
    total = sum(w for _, w in weighted)
    r = rng.random() * total
    for kind, w in weighted:
        r -= w
        if r < 0:
            return kind
    return weighted[-1][0]


class History:
    def __init__(self, path, hot_items):
        self.ops = []
        self.lock = threading.Lock()
        self.pool = []  # ids from ok creates, in ack order (per-process workers)
        self.hot = []   # the streaming clients' hot set: ids of live items, oldest first
        self.hot_items = hot_items
        self.hot_pending = 0  # streaming creates under way
        self.f = open(path, "w")

    def record(self, op):
        with self.lock:
            op["n"] = len(self.ops)
            self.ops.append(op)
            self.f.write(json.dumps(op) + "\n")
            if op["kind"] == "create" and op["status"] == "ok" and op.get("item"):
                if str(op["worker"]).startswith("s"):
                    self.hot.append(op["item"]["id"])
                    del self.hot[:-self.hot_items]
                else:
                    self.pool.append(op["item"]["id"])

    def hot_pick(self, r):
        """A hot item for the draw r, or None: make a create (reserved until it is recorded)
        because the hot set is short."""
        with self.lock:
            if not self.hot or len(self.hot) + self.hot_pending < self.hot_items:
                self.hot_pending += 1
                return None
            return self.hot[r % len(self.hot)]

    def rotate_hot(self):
        """A fresh hot set: what a fault left on the old items is no longer overwritten by the
        load, so a change a crash lost stays visible to the final check."""
        with self.lock:
            old, self.hot = self.hot, []
        return old

    def hot_create(self):
        with self.lock:
            self.hot_pending += 1

    def hot_done(self):
        with self.lock:
            self.hot_pending -= 1

    def hot_drop(self, xid):
        with self.lock:
            if xid in self.hot:
                self.hot.remove(xid)

    def counts(self):
        with self.lock:
            return len(self.ops), collections.Counter(o["status"] for o in self.ops)

    def close(self):
        with self.lock:
            self.f.close()


def make_op(worker, kind, target, route, inside, t0, t1, status, obj, raw, title, cluster):
    op = {"worker": worker, "kind": kind, "target": target, "route": route, "inside": inside,
          "t0": round(t0, 4), "t1": round(t1, 4), "status": status, "node": None, "item": None}
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
    return op


def command(kind, target, title):
    if kind == "create":
        return ["create", title]
    if kind in ("complete", "incomplete"):
        return ["update", target, kind]
    if kind == "title":
        return ["update", target, "title", title]
    if kind == "read":
        return ["get", target]
    return ["delete", target]


def worker(wid, args, cluster, history, stop, budget):
    """One kvcli process per operation, with think times."""
    rng = random.Random(f"{args.seed}-w{wid}")
    k = 0
    while not stop.is_set():
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
        t0 = now()
        status, obj, raw = cluster.kvcli(command(kind, target, title), route=route,
                                         timeout_ms=args.op_timeout_ms, inside=inside)
        t1 = now()
        history.record(make_op(wid, kind, target, route, inside, t0, t1, status, obj, raw, title,
                               cluster))
        if think > 0:
            stop.wait(think)


def stream_worker(cid, args, cluster, history, stop, budget):
    """One long-lived kvcli; the next operation as soon as the previous one answered. With
    --stream-depth D > 1 up to D commands wait in kvcli's stdin, so that kvcli sends the next
    one the moment the previous one is answered (its t0, the time it was written, is then
    earlier than the real invocation: hb edges derived from it are only fewer, never wrong)."""
    rng = random.Random(f"{args.seed}-s{cid}")
    route = (args.stream_route - 1) if args.stream_route else cid % cluster.k
    inside = rng.random() < args.local_clients
    mix = STREAM_MIXES[args.stream_mix]
    client = StreamClient(cid, cluster, route, inside, args.op_timeout_ms,
                          os.path.join(cluster.workdir, "logs", f"stream-{cid}.log"))
    outstanding = collections.deque()  # (kind, target, title, t0), in the order sent
    k = 0
    last_reply = time.monotonic()

    def finish(entry, status, obj, raw, t1):
        kind, target, title, t0 = entry
        history.record(make_op(f"s{cid}", kind, target, route, inside, t0, t1, status, obj,
                               raw, title, cluster))
        if kind == "create":
            history.hot_done()

    try:
        while not stop.is_set() or outstanding:
            while not stop.is_set() and len(outstanding) < args.stream_depth:
                with budget["lock"]:
                    if budget["left"] <= 0:
                        break
                    budget["left"] -= 1
                kind = pick(rng, mix)
                r = rng.randrange(1 << 30)
                title = f"t{args.seed}s{cid}o{k}"
                k += 1
                target = None
                if kind != "create":
                    target = history.hot_pick(r)
                    if target is None:
                        kind = "create"  # the hot set is short: fill it
                else:
                    history.hot_create()
                if kind == "delete":
                    history.hot_drop(target)  # nobody starts a new operation on it
                t0, err = client.send(command(kind, target, title))
                if not outstanding:
                    last_reply = time.monotonic()
                outstanding.append((kind, target, title, t0))
                if err is not None:
                    while outstanding:  # this one and any before it: may have been read
                        finish(outstanding.popleft(), "unknown", None, err, now())
                    break
            if not outstanding:
                if stop.is_set() or budget["left"] <= 0:
                    return
                stop.wait(0.05)  # kvcli could not be started or written to: do not spin
                continue
            status, obj, raw, t1 = client.recv(last_reply)
            last_reply = time.monotonic()
            finish(outstanding.popleft(), status, obj, raw, t1)
            if status == "fail" and "no node answered" in str((obj or {}).get("error", "")):
                stop.wait(0.02)  # every node it can reach is down: do not spin on failures
            if client.pr is None:  # replaced: what was still due has no reply to come
                while outstanding:
                    finish(outstanding.popleft(), "unknown", None,
                           "kvcli was replaced before replying", now())
    finally:
        client.close()


# ----------------------------------------------------------------------------------------------
# Nemesis

FAULT_WEIGHTS = [("kill-node", 18), ("kill-syncer", 12), ("partition", 22), ("heal-all", 8),
                 ("slow-fsync", 16), ("restore", 12), ("remove", 12)]


def event_length(ev):
    """A generous estimate of how long the nemesis is busy with an event (restarts included)."""
    kind = ev["kind"]
    if kind == "kill-node":
        return ev["pause"] + 1.5
    if kind == "kill-syncer":
        return ev["pause"] + 1.0
    if kind == "slow-fsync":
        return ev["hold"] + ev["pause"] + 3.0
    if kind == "restore":
        return ev["run"] + ev["pause"] + 4.0
    if kind == "remove":
        return ev["hold"] + 3.0
    return 0.2


def make_schedule(args):
    """The nemesis events: a fixed number of draws per step, so a seed replays its faults."""
    rng = random.Random(f"{args.seed}-nemesis")
    kinds = set(args.faults)
    weights = [(k, w) for k, w in FAULT_WEIGHTS
               if k in kinds or (k == "heal-all" and "partition" in kinds)]
    events, t = [], 2.0
    heal_at = {}  # node -> time its partition heals (simulated, to keep the schedule valid)
    end = args.seconds - 1.0
    busy_until = 0.0
    for _ in range(10000):
        t += rng.uniform(args.fault_min, args.fault_max)
        kind = pick(rng, weights) if weights else None
        node = rng.randrange(args.nodes)
        pause = rng.uniform(0.5, 4.0)
        length = rng.uniform(2.0, 8.0)
        hold = rng.uniform(2.0, 6.0)
        flag = rng.random() < 0.5
        flag2 = rng.random() < 0.5
        if t >= end or kind is None:
            break
        # heals that fall before this event
        for n, h in sorted(heal_at.items(), key=lambda x: x[1]):
            if h <= t:
                events.append({"t": round(max(h, busy_until), 3), "kind": "heal", "node": n})
                del heal_at[n]
        if kind == "kill-node":
            ev = {"t": round(t, 3), "kind": kind, "node": node, "pause": round(pause, 3)}
        elif kind == "kill-syncer":
            ev = {"t": round(t, 3), "kind": kind, "pause": round(pause * 0.75, 3)}
        elif kind == "partition":
            if args.nodes < 2 or node in heal_at or len(heal_at) >= args.nodes - 1:
                continue
            ev = {"t": round(t, 3), "kind": kind, "node": node}
            heal_at[node] = t + length
        elif kind == "slow-fsync":
            ev = {"t": round(t, 3), "kind": kind, "node": node, "hold": round(hold, 3),
                  "pause": round(pause * 0.5, 3)}
        elif kind == "restore":
            ev = {"t": round(t, 3), "kind": kind, "node": node, "run": round(hold, 3),
                  "pause": round(pause * 0.25, 3), "first_stop": "term" if flag else "kill",
                  "second_stop": "term" if flag2 else "kill"}
        elif kind == "remove":
            if args.nodes < 2:
                continue
            ev = {"t": round(t, 3), "kind": kind, "node": node, "hold": round(hold, 3),
                  "forget": flag}
        else:
            ev = {"t": round(t, 3), "kind": kind}
            heal_at.clear()
        if t + event_length(ev) >= end:
            continue
        events.append(ev)
        busy_until = t + event_length(ev)
        t = max(t, busy_until)
    for n, h in sorted(heal_at.items(), key=lambda x: x[1]):
        if h < end:
            events.append({"t": round(max(h, busy_until), 3), "kind": "heal", "node": n})
    events.sort(key=lambda e: e["t"])  # stable: same-time events keep their order
    return events


class Nemesis:
    def __init__(self, events, cluster, net, stop, start, history):
        self.events, self.cluster, self.net, self.stop = events, cluster, net, stop
        self.start = start
        self.counts = collections.Counter()  # injected, by kind
        self.log = []       # what was done, with times (faults.json)
        self.windows = []   # restore windows: (node, from, to), for the exemption
        self.done = threading.Event()
        self.history = history

    def note(self, **kw):
        kw["at"] = round(now(), 4)
        self.log.append(kw)

    def restart(self, i, slow=False):
        c = self.cluster
        if c.start_node(i, slow=slow):
            p = c.nodes[i]
            say(f"nemesis: node {NODE_NAMES[i]} {'started under strace' if slow else 'restarted'}"
                f" (pid {p.pid()}{', strace ' + str(p.popen.pid) if slow else ''})")
            return True
        return False

    def wait_load(self, seconds):
        """Lets the load run on for a while (the nemesis has nothing to do meanwhile)."""
        self.stop.wait(seconds)

    def rotate(self):
        old = self.history.rotate_hot()
        if old:
            say(f"nemesis: the streaming clients move to new hot items (leaving {','.join(old)})")

    def stop_node(self, i, how):
        p = self.cluster.nodes[i]
        if how == "term":
            clean = p.stop_clean()
            say(f"nemesis: node {NODE_NAMES[i]} stopped with SIGTERM"
                f"{'' if clean else ' (did not exit in time: killed -9)'}")
        else:
            pid = p.pid()
            p.kill9()
            say(f"nemesis: node {NODE_NAMES[i]} killed -9 (pid {pid})")
        self.rotate()

    def run(self):
        try:
            for ev in self.events:
                while not self.stop.is_set() and now() - self.start < ev["t"]:
                    self.stop.wait(min(0.2, ev["t"] - (now() - self.start)))
                if self.stop.is_set():
                    return
                self.cluster.check_crashes()
                if self.apply(ev):
                    self.counts[ev["kind"]] += 1
        finally:
            self.done.set()

    def apply(self, ev):
        kind, c, net = ev["kind"], self.cluster, self.net
        if kind == "kill-node":
            i = ev["node"]
            p = c.nodes[i]
            say(f"nemesis: kill -9 node {NODE_NAMES[i]} (pid {p.pid()}); restart in "
                f"{ev['pause']:.1f} s")
            p.kill9()
            self.rotate()
            self.note(kind=kind, node=i)
            self.wait_load(ev["pause"])
            self.restart(i)
        elif kind == "kill-syncer":
            say(f"nemesis: kill -9 syncer (pid {c.syncer.pid()}); restart in {ev['pause']:.1f} s")
            c.syncer.kill9()
            self.note(kind=kind)
            self.wait_load(ev["pause"])
            if c.start_syncer():
                say(f"nemesis: syncer restarted (pid {c.syncer.pid()})")
        elif kind == "partition":
            i = ev["node"]
            say(f"nemesis: partition node {NODE_NAMES[i]} (ip link set {net.veth[i]} down)")
            net.partition(i)
            self.note(kind=kind, node=i)
        elif kind == "heal":
            i = ev["node"]
            if i not in net.down:
                say(f"nemesis: heal node {NODE_NAMES[i]}: not partitioned any more")
                return True  # healed already: the state the event asks for holds
            say(f"nemesis: heal node {NODE_NAMES[i]} (ip link set {net.veth[i]} up)")
            net.heal(i)
            self.note(kind=kind, node=i)
        elif kind == "heal-all":
            say("nemesis: heal everything" +
                (f" (nodes {','.join(NODE_NAMES[i] for i in sorted(net.down))})"
                 if net.down else " (nothing partitioned)"))
            net.heal_all()
            self.note(kind=kind)
        elif kind == "slow-fsync":
            return self.slow_fsync(ev)
        elif kind == "restore":
            return self.restore(ev)
        elif kind == "remove":
            return self.remove(ev)
        return True

    def slow_fsync(self, ev):
        i, c = ev["node"], self.cluster
        p = c.nodes[i]
        if c.strace is None:
            say("nemesis: slow-fsync skipped: strace is not installed")
            return False
        say(f"nemesis: slow-fsync on node {NODE_NAMES[i]}: restart it under strace "
            f"(fsync/fdatasync +{c.args.fsync_delay_us} us), kill -9 it in {ev['hold']:.1f} s")
        p.kill9()
        self.rotate()
        if not self.restart(i, slow=True):
            return False
        if p.real is None:
            say("nemesis: slow-fsync: the kvnode strace started was not found")
            return False
        n0, _ = self.history.counts()
        self.wait_load(ev["hold"])
        n1, _ = self.history.counts()
        pid = p.pid()
        p.kill9()
        self.rotate()
        gone = not pid_runs(*p.real) if p.real else True
        say(f"nemesis: slow-fsync: node {NODE_NAMES[i]} killed -9 (kvnode pid {pid}, "
            f"{n1 - n0} operations meanwhile{'' if gone else ', STILL RUNNING'}); restart in "
            f"{ev['pause']:.1f} s")
        self.note(kind="slow-fsync", node=i, pid=pid, ops_meanwhile=n1 - n0)
        self.wait_load(ev["pause"])
        return self.restart(i) and gone

    def restore(self, ev):
        i, c = ev["node"], self.cluster
        data = c.data[i]
        n = sum(1 for x in self.log if x["kind"] == "restore") + 1
        copy = f"{data}.copy{n}"
        say(f"nemesis: restore node {NODE_NAMES[i]}: stop ({ev['first_stop']}), copy its data, "
            f"run {ev['run']:.1f} s, stop ({ev['second_stop']}), restart from the copy")
        w0 = now()
        self.stop_node(i, ev["first_stop"])
        shutil.copytree(data, copy, symlinks=True)
        if not self.restart(i):
            return False
        self.wait_load(ev["run"])
        self.stop_node(i, ev["second_stop"])
        w1 = now()
        self.windows.append((i, round(w0, 4), round(w1, 4)))
        os.rename(data, f"{data}.before-restore{n}")
        shutil.copytree(copy, data, symlinks=True)
        say(f"nemesis: restore: node {NODE_NAMES[i]}'s data put back from the copy taken at "
            f"{w0 - self.start:.1f} s; restart in {ev['pause']:.1f} s")
        self.note(kind="restore", node=i, window=[round(w0, 4), round(w1, 4)], copy=copy)
        self.wait_load(ev["pause"])
        return self.restart(i)

    def remove(self, ev):
        i, c = ev["node"], self.cluster
        rest = [j for j in range(c.k) if j != i]
        forget = ev["forget"] and c.has_forget
        say(f"nemesis: remove node {NODE_NAMES[i]}: restart kvsync with --nodes "
            f"{','.join(NODE_NAMES[j] for j in rest)} for {ev['hold']:.1f} s"
            + (", then forget-node" if forget else "") +
            (" (forget-node drawn but this kvsync lacks it)" if ev["forget"] and not forget
             else ""))
        c.syncer.stop_clean()
        if not c.start_syncer(rest):
            return False
        self.wait_load(ev["hold"])
        c.syncer.stop_clean()
        if forget:
            ok, out = c.forget_node(i)
            say(f"nemesis: kvsync forget-node {NODE_NAMES[i]}: {'ok' if ok else 'FAILED'} "
                f"({out[:200]})")
            if not ok:
                c.anomalies.append({"kind": "forget-node-failed", "what": "kvsync forget-node",
                                    "evidence": [out]})
        ok = c.start_syncer(list(range(c.k)))
        if ok:
            say(f"nemesis: remove: kvsync restarted with every node (pid {c.syncer.pid()})")
        self.rotate()  # what the removal left behind is kept for the final check
        self.note(kind="remove", node=i, forget=forget)
        return ok


# ----------------------------------------------------------------------------------------------
# Final state

def wait_quiet(cluster, deadline_s):
    end = time.monotonic() + deadline_s
    last, raw, nodes, syncer_stamp = None, "", [], None
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
            return True, nodes, syncer_stamp, raw  # the same quiet state twice in a row
        last = state if ok else None
        time.sleep(0.5)
    return False, nodes, syncer_stamp, raw


def final_lists(cluster):
    lists, errors = [], []
    for i in range(cluster.k):
        got, raw = None, ""
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
    s += f" [{op['t0']:.3f}-{op['t1']:.3f}s] {op['status']}{' (exempt)' if op.get('exempt') else ''}"
    s += f" on {node}"
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


def print_anomalies(anomalies):
    by = collections.Counter(a["kind"] for a in anomalies)
    print(f"anomalies          {len(anomalies)}" +
          (" (" + ", ".join(f"{k} {v}" for k, v in sorted(by.items())) + ")" if by else ""))
    for a in anomalies:
        print(f"  [{a['kind']}] {a.get('message') or a.get('what')}")
        for ev in a.get("evidence", [])[:40]:
            print(f"      {ev}")


def analyze_saved(workdir):
    """--analyze: the final check again, on a work directory's history and final lists."""
    with open(os.path.join(workdir, "history.jsonl")) as f:
        ops = [json.loads(line) for line in f if line.strip()]
    with open(os.path.join(workdir, "final-lists.json")) as f:
        lists = json.load(f)
    windows = []
    try:
        with open(os.path.join(workdir, "faults.json")) as f:
            windows = [tuple(w) for w in json.load(f).get("restore_windows", [])]
    except OSError:
        pass
    anomalies = divergence(lists) + analyze(ops, lists, len(lists), windows)
    print(f"{len(ops)} operations, final items {[len(x) if x is not None else None for x in lists]}"
          f", restore windows {windows}")
    print_anomalies(anomalies)
    return EXIT_ANOMALY if anomalies else EXIT_OK


def mark_exempt(ops, windows):
    """The operations a restore may legitimately have undone: acknowledged by the restored node
    between the stop that took the copy and the stop before the copy was put back, with no sign
    outside that window that their effect survived. Returns their numbers."""
    cand = set()
    for o in ops:
        if o["status"] != "ok" or o.get("node") is None:
            continue
        for (i, w0, w1) in windows:
            if o["node"] == i and o["t1"] > w0 and o["t0"] < w1:
                cand.add(o["n"])
                break
    if not cand:
        return cand
    seen_titles, seen_ids = set(), set()
    refused_deleted = collections.defaultdict(list)  # id -> t0 of ops refused as deleted
    create_ids = collections.Counter()
    for o in ops:
        if o["kind"] == "create" and o["status"] == "ok" and o.get("item"):
            create_ids[o["item"]["id"]] += 1
        if o["n"] in cand:
            continue
        if o["status"] == "ok" and o.get("item"):
            seen_titles.add(o["item"]["title"])
            if o["kind"] != "create":
                seen_ids.add(o["item"]["id"])
        elif o["status"] == "fail" and o.get("target") and "deleted" in str(o.get("error", "")):
            refused_deleted[o["target"]].append(o["t0"])
    n_deletes = collections.Counter(o["target"] for o in ops
                                    if o["kind"] == "delete" and o["status"] != "fail")
    exempt = set()
    for o in ops:
        if o["n"] not in cand:
            continue
        kind = o["kind"]
        if kind == "create":
            xid = o["item"]["id"]
            # an id handed out again proves this create was lost (the id floor would forbid it)
            if create_ids[xid] < 2 and (o["title"] in seen_titles or xid in seen_ids):
                continue
        elif kind == "title" and o["title"] in seen_titles:
            continue
        elif kind == "delete" and n_deletes[o["target"]] == 1 and \
                any(t > o["t0"] for t in refused_deleted[o["target"]]):
            continue
        exempt.add(o["n"])
    return exempt


def analyze(ops, lists, k, windows=()):
    """Applies the rules of the module docstring. Returns a list of anomalies."""
    anomalies = []

    def add(kind, msg, evidence):
        anomalies.append({"kind": kind, "message": msg, "evidence": evidence[:60]})

    exempt = mark_exempt(ops, windows) if windows else set()
    if exempt:
        ops = [dict(o, status="unknown", exempt=True) if o["n"] in exempt else o for o in ops]

    creates = {}          # id -> ok create op
    maybe_creates = collections.defaultdict(list)  # id -> exempt creates
    title_writer = {}     # title -> create/title op (ok or unknown)
    for op in ops:
        if op["status"] == "fail":
            continue
        if op["kind"] in ("create", "title"):
            title_writer[op["title"]] = op
        if op["kind"] == "create" and op.get("exempt"):
            maybe_creates[op["item"]["id"]].append(op)
        elif op["kind"] == "create" and op["status"] == "ok":
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
        if op["kind"] != "create" and op["status"] != "fail" and op.get("target"):
            by_target[op["target"]].append(op)

    item_info = {}
    for xid in set(creates) | set(maybe_creates):
        cs = ([creates[xid]] if xid in creates else []) + maybe_creates.get(xid, [])
        tops = by_target.get(xid, [])
        updates = [o for o in tops if o["kind"] in UPDATE_KINDS]
        deletes = [o for o in tops if o["kind"] == "delete"]
        ok_deletes = [o for o in deletes if o["status"] == "ok"]
        writes = cs + updates
        ok_updates, ok_reads = [], []
        for b in updates:
            if b["status"] != "ok":
                continue
            it = b["item"]
            if it["id"] != xid:
                add("bad-result", f"update of {xid} returned item {it['id']}", [short(b)])
                continue
            ok_updates.append(b)
            if b["kind"] == "title" and it["title"] != b["title"]:
                add("bad-result", f"title update of {xid} returned another title", [short(b)])
            if b["kind"] in ("complete", "incomplete"):
                if it["completed"] != (b["kind"] == "complete"):
                    add("bad-result", f"{b['kind']} of {xid} returned the other flag", [short(b)])
                p = title_writer.get(it["title"])
                if p is None or (p not in cs and p.get("target") != xid):
                    add("unexplained-value", f"{b['kind']} of {xid} returned a title no write "
                        f"on {xid} introduced", [short(b)] + ([short(p)] if p else []))
        for r in tops:
            if r["kind"] != "read" or r["status"] != "ok":
                continue
            it = r["item"]
            if it["id"] != xid:
                add("bad-result", f"get {xid} returned item {it['id']}", [short(r)])
                continue
            ok_reads.append(r)
            p = title_writer.get(it["title"])
            if p is None or (p not in cs and p.get("target") != xid):
                add("unexplained-read", f"get {xid} returned a title no write on {xid} "
                    "introduced", [short(r)] + ([short(p)] if p else []))
        # What each node was seen holding: title -> node -> earliest completion that showed it.
        seen = collections.defaultdict(dict)
        for o in ok_updates + ok_reads:
            if o["node"] is not None:
                d = seen[o["item"]["title"]]
                d[o["node"]] = min(d.get(o["node"], o["t1"]), o["t1"])
        max_t0 = {}  # node -> latest invocation of an ok write on X served there
        for w in writes:
            if w["status"] == "ok" and w["node"] is not None and w["item"]["id"] == xid:
                max_t0[w["node"]] = max(max_t0.get(w["node"], -1.0), w["t0"])
        h3_titles = {b["item"]["title"] for b in ok_updates if b["kind"] != "title"}

        def followed(w):
            """Some ok write provably comes after w (w has an hb successor, which is ok)."""
            if w["kind"] == "create" and ok_updates:
                return True  # h1
            if w["status"] == "ok" and w["node"] is not None and \
                    max_t0.get(w["node"], -1.0) > w["t1"]:
                return True  # h2
            if w["kind"] in ("create", "title"):
                if w["title"] in h3_titles:
                    return True  # h3
                for m, t in seen.get(w["title"], {}).items():
                    if max_t0.get(m, -1.0) > t:
                        return True  # h4
            return False

        free = [w for w in writes if not followed(w)]
        for d in ok_deletes:
            for w in ok_updates + ok_reads:
                if w["node"] == d["node"] and w["t0"] > d["t1"]:
                    kind = "update-after-delete" if w["kind"] != "read" else "read-after-delete"
                    add(kind, f"node {NODE_NAMES[d['node']]} acknowledged "
                        f"{'an update' if w['kind'] != 'read' else 'a get'} of {xid} after "
                        "acknowledging its delete", [short(d), short(w)])
        item_info[xid] = (writes, deletes, ok_deletes, free, xid in creates)

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
    unknown_creates = {o["title"]: o for o in ops
                       if o["kind"] == "create" and o["status"] == "unknown" and
                       not o.get("exempt")}
    ok_titles = {o["title"]: o for o in creates.values()}
    for _, who, lst in distinct:
        where = "node" + ("s " if len(who) > 1 else " ") + ",".join(NODE_NAMES[i] for i in who)
        final = {}
        for it in lst:
            if it["id"] in final:
                add("duplicate-id-in-list", f"{where} list id {it['id']} twice",
                    [json.dumps(final[it["id"]]), json.dumps(it)])
            final[it["id"]] = it
        for xid, (writes, deletes, ok_deletes, free, required) in item_info.items():
            it = final.get(xid)
            if it is None:
                if required and not deletes:
                    add("lost-item", f"{xid} was created (acknowledged) and never deleted, but "
                        f"{where} do(es) not hold it", [short(o) for o in writes][:20])
                continue
            if ok_deletes:
                add("resurrected", f"{xid} is on {where} after an acknowledged delete",
                    [f"final: {json.dumps(it)}"] + [short(o) for o in ok_deletes] +
                    [short(o) for o in writes][-10:])
                continue
            if not any(compatible(w, it["title"], it["completed"]) for w in free):
                maximal = [short(w) for w in free if w["status"] == "ok"]
                src = title_writer.get(it["title"])
                add("lost-write", f"{xid} on {where} is {it['title']!r} "
                    f"{'done' if it['completed'] else 'open'} v{it['version']}, the value of no "
                    "write that could be last", [f"final: {json.dumps(it)}"] +
                    ["acknowledged writes nothing acknowledged follows:"] + maximal[:20] +
                    ["the write that introduced the final title:"] +
                    ([short(src)] if src else ["(none)"]) +
                    [f"last writes on it (of {len(writes)}):"] +
                    [short(o) for o in writes][-20:] + [short(o) for o in deletes][-5:])
        used = set()
        for xid, it in sorted(final.items()):
            if xid in item_info:
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

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="kvstore convergence checker (see the docstring)")
    ap.add_argument("--minutes", type=float, default=None, help="length of the load phase")
    ap.add_argument("--seconds", type=float, default=None, help="same, in seconds")
    ap.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    ap.add_argument("--nodes", type=int, default=3, help="data nodes, 1-8 (default 3)")
    ap.add_argument("--faults", default=",".join(FAULT_KINDS),
                    help="comma-separated fault kinds to schedule, from: " +
                    ", ".join(FAULT_KINDS) + " (default all; 'none' for none). heal/heal-all "
                    "come with partition")
    ap.add_argument("--workers", type=int, default=3,
                    help="per-process clients: one kvcli run per operation (default 3)")
    ap.add_argument("--stream-clients", type=int, default=6,
                    help="streaming clients: one long-lived kvcli each, full speed (default 6)")
    ap.add_argument("--hot-items", type=int, default=6,
                    help="items the streaming clients work on (default 6)")
    ap.add_argument("--stream-mix", choices=sorted(STREAM_MIXES), default="default",
                    help="streaming operation mix: default (title/complete/incomplete updates, "
                    "gets, a few deletes and creates) or updates (title updates only)")
    ap.add_argument("--stream-route", type=int, default=0,
                    help="send every streaming client to node N (default 0: client c to node "
                    "c mod K)")
    ap.add_argument("--stream-depth", type=int, default=2,
                    help="commands a streaming client keeps queued in its kvcli's stdin, so "
                    "that the next is sent the moment one is answered (default 2; 1: strictly "
                    "one at a time)")
    ap.add_argument("--max-ops", type=int, default=50000,
                    help="per-process operations at most, all workers")
    ap.add_argument("--max-stream-ops", type=int, default=1000000,
                    help="streaming operations at most, all streaming clients")
    ap.add_argument("--think-ms", type=float, default=40.0, help="max pause between a "
                    "per-process worker's operations")
    ap.add_argument("--local-clients", type=float, default=0.25,
                    help="share of clients run inside the routed node's namespace, so that "
                    "they reach it while it is partitioned (default 0.25; 0: all from the root "
                    "namespace)")
    ap.add_argument("--op-timeout-ms", type=int, default=2000, help="kvcli --timeout")
    ap.add_argument("--fault-min", type=float, default=3.0, help="seconds between faults, min")
    ap.add_argument("--fault-max", type=float, default=7.0, help="seconds between faults, max")
    ap.add_argument("--fsync-delay-us", type=int, default=5000,
                    help="slow-fsync: delay injected before every fsync/fdatasync (default 5000)")
    ap.add_argument("--syncer-fsync-delay-us", type=int, default=0,
                    help="run kvsync under strace for the whole run with this delay before "
                    "every fsync/fdatasync (default 0: not under strace)")
    ap.add_argument("--min-acked", type=int, default=10,
                    help="floor: acknowledged operations of each kind (create, update, delete, "
                    "read) below which the run fails (default 10; 0 turns it off)")
    ap.add_argument("--quiet-deadline", type=float, default=90.0,
                    help="seconds to wait for convergence at the end")
    ap.add_argument("--bin", default=os.environ.get("KV_BUILD") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "build"),
        help="directory with kvnode, kvsync, kvcli (default $KV_BUILD or <repo>/build)")
    ap.add_argument("--workdir", default=None, help="data and logs (default /tmp/kvchk-<pid>)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory on success")
    ap.add_argument("--print-schedule", action="store_true",
                    help="print the nemesis schedule of these options and exit")
    ap.add_argument("--analyze", metavar="WORKDIR", help="no run: check a kept work directory's "
                    "history.jsonl and final-lists.json again")
    args = ap.parse_args(argv)
    if args.seconds is None:
        args.seconds = 60.0 * (args.minutes if args.minutes is not None else 2.0)
    f = [x.strip() for x in args.faults.split(",") if x.strip() and x.strip() != "none"]
    bad = [x for x in f if x not in FAULT_KINDS]
    if bad:
        ap.error(f"unknown fault kind(s) {bad}; known: {', '.join(FAULT_KINDS)}")
    args.faults = f
    return args


def main():
    args = parse_args()
    if args.analyze:
        return analyze_saved(args.analyze)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1 << 31)
    print(f"seed {args.seed}", flush=True)
    if not 1 <= args.nodes <= len(NODE_NAMES):
        print(f"setup error: --nodes must be 1-{len(NODE_NAMES)}", file=sys.stderr)
        return EXIT_SETUP
    if args.print_schedule:
        events = make_schedule(args)
        for e in events:
            print(json.dumps(e))
        print(json.dumps(dict(collections.Counter(e["kind"] for e in events))))
        return EXIT_OK
    if args.seconds <= 0 or args.workers < 0 or args.stream_clients < 0 or \
            args.workers + args.stream_clients == 0 or args.hot_items < 1 or \
            args.stream_depth < 1:
        print("setup error: --minutes/--seconds must be positive, --workers and "
              "--stream-clients not negative and not both 0, --hot-items at least 1",
              file=sys.stderr)
        return EXIT_SETUP
    if not 0 <= args.stream_route <= args.nodes:
        print("setup error: --stream-route must be 0 or a node number", file=sys.stderr)
        return EXIT_SETUP
    for b in ("kvnode", "kvsync", "kvcli"):
        if not os.access(os.path.join(args.bin, b), os.X_OK):
            print(f"setup error: {os.path.join(args.bin, b)} not found (build first, or --bin)",
                  file=sys.stderr)
            return EXIT_SETUP
    if ("slow-fsync" in args.faults or args.syncer_fsync_delay_us > 0) and \
            shutil.which("strace") is None:
        print("setup error: the slow-fsync fault needs strace (apt-get install strace), or leave "
              "it out of --faults", file=sys.stderr)
        return EXIT_SETUP
    print(f"nodes {args.nodes}, streaming clients {args.stream_clients} on {args.hot_items} hot "
          f"items ({args.stream_mix}), workers {args.workers}, load {args.seconds:.0f} s, faults "
          f"{','.join(args.faults) or 'none'}, binaries {args.bin}", flush=True)

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
    code = EXIT_SETUP
    cluster = None
    stops = (threading.Event(), threading.Event())  # the clients', the nemesis'
    try:
        cluster = Cluster(args, net, workdir)
        code = run_checker(args, net, cluster, stops, workdir)
    except SetupError as e:
        print(f"setup error: {e}", file=sys.stderr, flush=True)
        code = EXIT_SETUP
    except Interrupted as e:
        print(f"interrupted ({e}): tearing down", file=sys.stderr, flush=True)
        code = EXIT_SETUP
    finally:
        for s in stops:
            s.set()
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        if cluster is not None:
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


def guarded(name, fn, errors, *a):
    """A thread body that records its exception instead of dying silently."""
    def body():
        try:
            fn(*a)
        except BaseException as e:  # noqa: BLE001 -- recorded and reported as a floor failure
            errors.append(f"{name}: {type(e).__name__}: {e}\n" + traceback.format_exc())
            say(f"ERROR: thread {name} died: {type(e).__name__}: {e}")
    return threading.Thread(target=body, name=name, daemon=True)


def run_checker(args, net, cluster, stops, workdir):
    load_stop, nem_stop = stops
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
    say(f"cluster up: {cluster.k} nodes, syncer http {cluster.syncer_http}"
        f"{'' if cluster.has_forget else ' (this kvsync has no forget-node)'}")

    events = make_schedule(args)
    with open(os.path.join(workdir, "schedule.json"), "w") as f:
        json.dump({"seed": args.seed, "events": events}, f, indent=1)
    sched_counts = collections.Counter(e["kind"] for e in events)
    say(f"schedule: {len(events)} nemesis events ({dict(sched_counts)})")

    history = History(os.path.join(workdir, "history.jsonl"), args.hot_items)
    start = now()
    deadline = time.monotonic() + args.seconds
    hard_deadline = deadline + max(30.0, 0.5 * args.seconds)  # a late nemesis gets this long
    errors = []
    budget = {"left": args.max_ops, "lock": threading.Lock()}
    sbudget = {"left": args.max_stream_ops, "lock": threading.Lock()}
    clients = [guarded(f"worker {w}", worker, errors, w, args, cluster, history, load_stop,
                       budget) for w in range(args.workers)]
    clients += [guarded(f"stream {c}", stream_worker, errors, c, args, cluster, history,
                        load_stop, sbudget) for c in range(args.stream_clients)]
    nem = Nemesis(events, cluster, net, nem_stop, start, history)
    nem_thread = guarded("nemesis", nem.run, errors)
    for t in clients:
        t.start()
    nem_thread.start()
    last_report = time.monotonic()
    while True:
        t = time.monotonic()
        clients_done = not any(c.is_alive() for c in clients)
        nem_done = nem.done.is_set() or not nem_thread.is_alive()
        if (t >= deadline or clients_done) and nem_done:
            break
        if t >= hard_deadline:
            say(f"the nemesis is still busy {hard_deadline - deadline:.0f} s after the load's "
                "end: stopping it")
            break
        nem.done.wait(0.5)
        if time.monotonic() - last_report >= 15:
            last_report = time.monotonic()
            n, c = history.counts()
            say(f"progress: {n} operations ({dict(c)})")
    load_end = now()
    load_stop.set()
    nem_stop.set()
    for c in clients:
        c.join(timeout=60)
        if c.is_alive():
            errors.append(f"{c.name}: did not stop within 60 s of the load's end")
    nem_thread.join(timeout=120)
    if nem_thread.is_alive():
        errors.append("nemesis: did not stop within 120 s of the load's end")
    history.close()
    n_ops, c_ops = history.counts()
    say(f"load done: {n_ops} operations in {load_end - start:.1f} s ({dict(c_ops)})")

    # Heal, restart (nothing under strace, kvsync with every node), wait for quiet.
    cluster.check_crashes()
    if net.down:
        say("final: heal " + ",".join(NODE_NAMES[i] for i in sorted(net.down)))
    net.heal_all()
    for i, p in enumerate(cluster.nodes):
        if p.wrapped and p.alive():
            say(f"final: node {NODE_NAMES[i]} still runs under strace: kill -9 it")
            p.kill9()
        if not p.alive():
            say(f"final: start node {NODE_NAMES[i]}")
            cluster.start_node(i)
    if cluster.syncer_nodes != list(range(cluster.k)) or not cluster.syncer.alive():
        say("final: start the syncer with every node")
        cluster.syncer.stop_clean()
        cluster.start_syncer(list(range(cluster.k)))
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
    with open(os.path.join(workdir, "faults.json"), "w") as f:
        json.dump({"log": nem.log, "restore_windows": nem.windows}, f, indent=1)
    a0 = time.monotonic()
    anomalies += divergence(lists) + analyze(history.ops, lists, cluster.k, nem.windows)
    analysis_s = time.monotonic() - a0
    exempt_n = len(mark_exempt(history.ops, nem.windows)) if nem.windows else 0

    # Floors: what was scheduled happened, every kind of operation was acknowledged, no thread
    # died.
    floors = []
    for kind, n in sorted(sched_counts.items()):
        if nem.counts[kind] < n:
            floors.append(f"faults: {kind} injected {nem.counts[kind]} of {n} scheduled")
    ops = history.ops
    by = collections.defaultdict(collections.Counter)
    by_stream = collections.Counter()
    for o in ops:
        by[o["kind"]][o["status"]] += 1
        if str(o["worker"]).startswith("s"):
            by_stream[o["status"]] += 1
    for group, kinds in FLOOR_GROUPS.items():
        acked = sum(by[k]["ok"] for k in kinds)
        if acked < args.min_acked:
            floors.append(f"operations: {acked} acknowledged {group}s, below the floor of "
                          f"{args.min_acked} (--min-acked)")
    for e in errors:
        floors.append("thread died: " + e.strip().splitlines()[0])

    total = now() - start
    print("", flush=True)
    print("==== kvstore convergence check ====")
    print(f"seed               {args.seed}")
    print(f"nodes              {cluster.k}; streaming clients {args.stream_clients} "
          f"({args.stream_mix}, {args.hot_items} hot items); per-process workers {args.workers}")
    print(f"duration           {total:.1f} s (load {load_end - start:.1f} s, analysis "
          f"{analysis_s:.1f} s)")
    print(f"operations         {len(ops)} ({sum(by_stream.values())} streamed: ok "
          f"{by_stream['ok']}, failed {by_stream['fail']}, unknown {by_stream['unknown']}; "
          f"{sum(1 for o in ops if o.get('inside'))} from inside a node's namespace; "
          f"{exempt_n} exempt by restores)")
    for kind in REPORT_KINDS:
        c = by[kind]
        print(f"  {kind:<11}      ok {c['ok']:>6}  failed {c['fail']:>6}  "
              f"unknown {c['unknown']:>5}")
    print(f"faults injected    {sum(nem.counts.values())} (scheduled {len(events)})")
    for kind in ("kill-node", "kill-syncer", "partition", "heal", "heal-all", "slow-fsync",
                 "restore", "remove"):
        print(f"  {kind:<16} {nem.counts[kind]:>3} of {sched_counts[kind]:>3}")
    for x in nem.log:
        if x["kind"] == "slow-fsync":
            print(f"    slow-fsync on node {NODE_NAMES[x['node']]}: killed -9 after "
                  f"{x['ops_meanwhile']} operations under slow fsync")
    counts = [len(lst) if lst is not None else None for lst in lists]
    print(f"final items        {counts[0] if len(set(counts)) == 1 else counts} "
          f"(stamp {syncer_stamp})")
    print_anomalies(anomalies)
    print(f"floors             {'met' if not floors else 'NOT MET'}")
    for fl in floors:
        print(f"  [floor] {fl}")
    for e in errors:
        print("      " + e.replace("\n", "\n      "))
    with open(os.path.join(workdir, "report.json"), "w") as f:
        json.dump({"seed": args.seed, "duration_s": round(total, 1), "operations": {
            k: dict(v) for k, v in by.items()}, "faults_scheduled": dict(sched_counts),
            "faults_injected": dict(nem.counts), "final_items": counts,
            "anomalies_by_kind": dict(collections.Counter(a["kind"] for a in anomalies)),
            "anomalies": anomalies, "floors_missed": floors, "thread_errors": errors}, f,
            indent=1)
    failed = bool(anomalies or floors)
    what = []
    if anomalies:
        what.append(f"{len(anomalies)} anomalies")
    if floors:
        what.append(f"{len(floors)} floors not met")
    print("RESULT: " + ("PASS, 0 anomalies, floors met" if not failed else
                        "FAIL, " + ", ".join(what)) + f" (seed {args.seed})", flush=True)
    return EXIT_ANOMALY if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
