#!/usr/bin/env python3
"""
Reproduce twisted-chat's headline benchmarks, against Node baselines in the
same run.

It drives the project's load-generator harness (the `bench/` folder of the
shared workspace: a Node load generator plus baseline "peer" servers; see
benchmarks/README.md). For every run of every scenario it starts a FRESH
twisted-chat daemon in a scratch folder (default options, SQLite store in
that folder) with only the options every benchmark needs because all load
comes from 127.0.0.1:

    --flood-rate 0 --max-per-ip 0 --max-connections 0 --idle-timeout 0

and interleaves it with the peers (node-ws, node-net, ...) within each
repeat, so that all targets share the same machine noise.

    python3 benchmarks/run.py                                  # F1,F1B,F2 x ws,line + node-ws,node-net
    python3 benchmarks/run.py --scenarios F1 --repeat 3
    python3 benchmarks/run.py --scenarios C1 --set-C1 conns=5000
    python3 benchmarks/run.py --sweep 10,100,1000,5000         # F1 vs room size, ws + node-ws
    python3 benchmarks/run.py --conn-sweep 1000,5000,10000,19000   # idle RSS and handshakes vs connections
    python3 benchmarks/run.py --variant twisted-chat --variant before=/path/to/old/tree   # two builds, same run
    python3 benchmarks/run.py --variant twisted-chat --variant nofast:TWISTED_CHAT_FASTWRITE=0
    python3 benchmarks/run.py --report docs/benchmarks.md --table 'benchmarks/results/*.jsonl'
    python3 benchmarks/run.py --cluster workers=1 --cluster workers=2   # + Redis (one process), + 2 workers on Redis
    python3 benchmarks/run.py --no-single --cluster workers=4 --scenarios C2 --set-C2 conns=76000 --set workers=6 --set localAddrBase=10

With --cluster, a twisted-chat target runs as a cluster on a fresh
redis-server (a free loopback port, no persistence unless appendonly=yes)
started for that run: `twistd -n chat --broker redis://127.0.0.1:PORT/0`
plus `--workers N` when N > 1. The harness then measures the CPU and RSS of
every process of the cluster summed (the parent, each worker and
redis-server), and run.py adds the same per process (redis-server's CPU
separately) in the result line.

Results are appended as JSON lines to benchmarks/results/<tag>.jsonl (one
object per run, as the harness writes them); --report writes the Markdown
tables (and, when matplotlib is installed, the PNG plots) from result files.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")

#: the options every benchmark run gives the daemon (all clients share 127.0.0.1)
BENCH_OPTIONS = ["--flood-rate", "0", "--max-per-ip", "0", "--max-connections", "0", "--idle-timeout", "0"]

#: which peer each twisted-chat front-end is compared with
PEER_OF = {"ws": "node-ws", "line": "node-net"}


def log(msg: str) -> None:
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ---------------------------------------------------------------- harness


def findHarness(given: str | None) -> str:
    """
    The harness folder: --harness, $CHAT_BENCH_HARNESS, or ../shared/bench.
    """
    for candidate in (given, os.environ.get("CHAT_BENCH_HARNESS"), os.path.join(PROJECT, "..", "shared", "bench")):
        if candidate and os.path.isfile(os.path.join(candidate, "bench.py")):
            return os.path.abspath(candidate)
    sys.exit(
        "benchmark harness not found: pass --harness DIR (a copy of the shared bench/ folder) "
        "or set CHAT_BENCH_HARNESS"
    )


def usableHarness(path: str, nodePeers: bool) -> str:
    """
    A harness folder that can run: the harness needs node_modules (npm
    install) and writes results/ next to itself, so a read-only or
    uninstalled one is copied to benchmarks/.harness/ and set up there once.
    """
    ready = os.path.isdir(os.path.join(path, "node_modules")) or not nodePeers
    if ready and os.access(path, os.W_OK):
        return path
    copy = os.path.join(HERE, ".harness", "bench")
    if not os.path.isfile(os.path.join(copy, "bench.py")):
        log("copying the harness %s to %s" % (path, copy))
        os.makedirs(os.path.dirname(copy), exist_ok=True)
        shutil.copytree(path, copy, ignore=shutil.ignore_patterns("node_modules", ".venv", "results"))
        for root, dirs, files in os.walk(copy):
            for name in dirs + files:
                p = os.path.join(root, name)
                os.chmod(p, os.stat(p).st_mode | 0o200)
    if nodePeers and not os.path.isdir(os.path.join(copy, "node_modules")):
        if shutil.which("npm") is None:
            sys.exit("npm is needed for the Node peers (or run with --peers none)")
        log("npm install in %s" % (copy,))
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=copy, check=True)
    return copy


def loadHarness(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("chat_bench_harness", os.path.join(path, "bench.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- the daemon


def freePort() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def waitPort(port: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def terminate(proc: subprocess.Popen[Any], grace: float) -> None:
    """
    Stop a process we started: SIGTERM, then SIGKILL after C{grace} seconds.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Redis:
    """
    A redis-server of our own on a free loopback port, in C{folder}: no
    snapshots; no append-only file unless C{appendonly}.
    """

    def __init__(self, folder: str, appendonly: bool = False) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed (needed by --cluster)")
        self.port = freePort()
        self.argv = [
            server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes" if appendonly else "no", "--dir", folder,
            "--logfile", os.path.join(folder, "redis.log"), "--daemonize", "no",
        ]
        self.proc = subprocess.Popen(self.argv, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.command("PING") == b"+PONG":
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not start; log in %s" % (os.path.join(folder, "redis.log"),))
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def command(self, *words: str) -> bytes:
        """
        One command; the reply's first line, or a bulk reply's payload.
        """
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w.encode()), w.encode()) for w in words))
            buf = b""
            while b"\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("redis closed the connection")
                buf += chunk
            head, _, rest = buf.partition(b"\r\n")
            if not head.startswith(b"$"):
                return head
            size = int(head[1:])
            while len(rest) < size + 2:
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("redis closed the connection")
                rest += chunk
            return rest[:size]

    def stop(self) -> None:
        terminate(self.proc, 20)


class Cluster:
    """
    A --cluster spec: workers=N[,appendonly=yes][,name=NAME]. workers=1
    is one process with --broker (no --workers).
    """

    def __init__(self, spec: str) -> None:
        self.workers = 1
        self.appendonly = False
        self.name = ""
        for item in filter(None, spec.split(",")):
            k, _, v = item.partition("=")
            if k == "workers":
                self.workers = (os.cpu_count() or 1) if v == "auto" else int(v)
            elif k == "appendonly":
                self.appendonly = v.lower() in ("yes", "1", "true", "")
            elif k == "name":
                self.name = v
            elif k == "broker" and not v:
                pass
            else:
                raise SystemExit("--cluster: unknown item %r (workers=N, appendonly=yes, name=NAME)" % (item,))
        if not self.name:
            self.name = "redis" + ("-w%d" % (self.workers,) if self.workers > 1 else "") + ("-aof" if self.appendonly else "")

    def options(self, redisPort: int) -> list[str]:
        opts = ["--broker", "redis://127.0.0.1:%d/0" % (redisPort,)]
        if self.workers > 1:
            opts += ["--workers", str(self.workers)]
        return opts


class Daemon:
    """
    One twisted-chat daemon (twistd chat) in a fresh scratch folder; with a
    L{Cluster}, on a fresh redis-server, and with its workers.
    """

    def __init__(self, variant: Variant, extra: list[str], cluster: Cluster | None = None) -> None:
        self.variant = variant
        self.cluster = cluster
        self.folder = tempfile.mkdtemp(prefix="chat-bench-")
        self.redis: Redis | None = None
        self.workerPids: dict[int, int] = {}
        self.line = freePort()
        self.web = freePort()
        clusterOptions: list[str] = []
        if cluster is not None:
            self.redis = Redis(self.folder, cluster.appendonly)
            clusterOptions = cluster.options(self.redis.port)
        self.argv = [
            sys.executable,
            "-c",
            "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()",
            "-n",
            "--pidfile=",
            "chat",
            "--line", "tcp:%d:interface=127.0.0.1" % (self.line,),
            "--web", "tcp:%d:interface=127.0.0.1" % (self.web,),
            # the metrics endpoint stays on (its default), on a free port
            "--metrics", "tcp:0:interface=127.0.0.1",
        ] + BENCH_OPTIONS + clusterOptions + extra
        env = dict(os.environ)
        env.pop("PYTHONWARNINGS", None)
        if variant.path:
            env["PYTHONPATH"] = variant.path + os.pathsep + env.get("PYTHONPATH", "")
        env.update(variant.env)
        self.logPath = os.path.join(self.folder, "twistd.log")
        self._log = open(self.logPath, "w")
        self.proc = subprocess.Popen(self.argv, cwd=self.folder, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        if not (waitPort(self.line) and waitPort(self.web)):
            self.stop()
            raise RuntimeError("twisted-chat did not start; log in %s" % (self.logPath,))
        if cluster is not None:
            # the ports are bound before Redis is reached (and, with
            # workers, by the parent): wait for the ready line
            if cluster.workers > 1:
                ready = re.compile(r"twisted-chat \S+ ready: %d workers" % (cluster.workers,))
            else:
                ready = re.compile(r"twisted-chat \S+ ready$", re.M)
            text = self.waitLog(ready, 60.0)
            if text is None:
                self.stop()
                raise RuntimeError("twisted-chat (cluster) not ready after 60 s; log in %s" % (self.logPath,))
            for index, pid in re.findall(r"worker (\d+) started \(pid (\d+)\)", text):
                self.workerPids[int(index)] = int(pid)
            if cluster.workers > 1 and len(self.workerPids) != cluster.workers:
                self.stop()
                raise RuntimeError("expected %d worker pids in %s, found %r" % (cluster.workers, self.logPath, self.workerPids))
        time.sleep(0.5)

    def waitLog(self, pattern: re.Pattern[str], timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.logPath, errors="replace") as f:
                text = f.read()
            if pattern.search(text):
                return text
            if self.proc.poll() is not None:
                return None
            time.sleep(0.2)
        return None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def processes(self) -> dict[str, int]:
        """
        Every process of the daemon, by role: "server" (one process), or
        "parent", "w0", "w1", ... and "redis".
        """
        if self.cluster is None:
            return {"server": self.proc.pid}
        out = {("parent" if self.workerPids else "server"): self.proc.pid}
        for index, pid in sorted(self.workerPids.items()):
            out["w%d" % (index,)] = pid
        assert self.redis is not None
        out["redis"] = self.redis.pid
        return out

    def target(self, frontend: str) -> dict[str, Any]:
        if frontend == "line":
            return dict(proto="tcp", host="127.0.0.1", port=self.line)
        return dict(proto="ws", url="ws://127.0.0.1:%d/ws" % (self.web,))

    #: what to count in a cluster's log (Daemon.logCounts)
    LOG_PATTERNS = {
        "redis_reply_timeouts": "Not received Redis response",
        "redis_lost_connection": "Lost connection",
        "nodes_reaped": "is gone: its members left",
        "node_id_conflicts": "is used by another process too",
        "nick_renames": "is now known as",
        "critical": "#critical]",
        "errors": "#error]",
        "workers_sigkilled": "still running",
        "out_of_fds": "Too many open files",
    }

    def logCounts(self) -> dict[str, int]:
        """
        How many log lines match each of L{LOG_PATTERNS} (after the run): a
        cluster's trouble under load shows there first.
        """
        counts = dict.fromkeys(self.LOG_PATTERNS, 0)
        try:
            with open(self.logPath, errors="replace") as f:
                for line in f:
                    for key, text in self.LOG_PATTERNS.items():
                        if text in line:
                            counts[key] += 1
        except OSError:
            pass
        return counts

    def stop(self) -> None:
        terminate(self.proc, 60)
        # workers stop with their parent; make sure (they are ours)
        for pid in self.workerPids.values():
            for _ in range(50):
                if not pidAlive(pid):
                    break
                time.sleep(0.1)
            else:
                log("worker pid %d still running after its parent stopped: SIGKILL" % (pid,))
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if self.redis is not None:
            self.redis.stop()
        self._log.close()

    def cleanup(self) -> None:
        if os.environ.get("CHAT_BENCH_KEEP"):
            log("kept %s" % (self.folder,))
        else:
            shutil.rmtree(self.folder, ignore_errors=True)


def pidAlive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % (pid,)) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def procCpuNs(pid: int) -> int:
    """
    The CPU time (user + system) of process C{pid} so far in ns: its
    threads' on-CPU time from /proc/PID/task/*/schedstat (finer than the
    10 ms clock ticks of /proc/PID/stat, which the harness uses).
    """
    total = 0
    for tid in os.listdir("/proc/%d/task" % (pid,)):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (OSError, IndexError, ValueError):
            pass
    return total


def procRssKb(pid: int) -> int:
    with open("/proc/%d/status" % (pid,)) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Sampler:
    """
    Samples, in a thread, the CPU time of each process of a cluster (ns,
    from schedstat; a process's threads summed) every
    C{interval} s (and their RSS and open file descriptors every
    C{slowEvery} samples), and how many messages Redis has stored (the
    C{INCR} calls of the store script, from INFO commandstats): the moments
    the stored count starts and stops moving bound the harness's publish
    window, so redis-server's CPU in that window can be told apart from the
    others'.
    """

    def __init__(self, processes: dict[str, int], redis: Redis | None, interval: float = 0.25, slowEvery: int = 4) -> None:
        import threading

        self.processes = processes
        self.redis = redis
        self.interval = interval
        self.slowEvery = slowEvery
        #: (monotonic time, {role: CPU ns}, messages stored so far)
        self.samples: list[tuple[float, dict[str, int], int | None]] = []
        self.peakFds: dict[str, int] = {}
        self.rssAtPeak: dict[str, int] = {}
        self._peakTotal = -1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _stored(self) -> int | None:
        if self.redis is None:
            return None
        try:
            info = self.redis.command("INFO", "commandstats").decode()
        except (OSError, ValueError):
            return None
        m = re.search(r"^cmdstat_incr:calls=(\d+)", info, re.M)
        return int(m.group(1)) if m else 0

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            t = time.monotonic()
            cpu = {}
            for role, pid in self.processes.items():
                try:
                    cpu[role] = procCpuNs(pid)
                except (OSError, IndexError, ValueError):
                    pass
            self.samples.append((t, cpu, self._stored()))
            if n % self.slowEvery == 0:
                fds, rss = {}, {}
                for role, pid in self.processes.items():
                    try:
                        fds[role] = len(os.listdir("/proc/%d/fd" % (pid,)))
                        rss[role] = procRssKb(pid)
                    except OSError:
                        pass
                total = sum(fds.values())
                if total > self._peakTotal:
                    self._peakTotal, self.peakFds, self.rssAtPeak = total, fds, rss
            n += 1
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _cpuAt(self, t: float) -> dict[str, float]:
        """
        Each process's CPU seconds at time C{t}, interpolated between samples.
        """
        s = self.samples
        out: dict[str, float] = {}
        for i in range(1, len(s)):
            if s[i][0] >= t or i == len(s) - 1:
                (t0, c0, _), (t1, c1, _) = s[i - 1], s[i]
                f = 0.0 if t1 <= t0 else min(1.0, max(0.0, (t - t0) / (t1 - t0)))
                for role in c1:
                    a = c0.get(role, c1[role])
                    out[role] = (a + f * (c1[role] - a)) / 1e9
                return out
        return out

    def wholeRun(self) -> dict[str, float]:
        if len(self.samples) < 2:
            return {}
        first, last = self.samples[0][1], self.samples[-1][1]
        return {role: round((last[role] - first.get(role, last[role])) / 1e9, 3) for role in last}

    def timeline(self, step: float = 1.0) -> list[list[Any]]:
        """
        [seconds since the first sample, CPU seconds used by all the
        processes in the step before, messages stored so far] every C{step}
        s: when the cluster was busy (say, still applying presence events
        after the last handshake).
        """
        out: list[list[Any]] = []
        if not self.samples:
            return out
        t0, prev, _ = self.samples[0]
        nextT = t0 + step
        for t, cpu, stored in self.samples:
            if t >= nextT:
                used = sum(cpu[r] - prev.get(r, cpu[r]) for r in cpu) / 1e9
                out.append([round(t - t0, 1), round(used, 3), stored])
                prev, nextT = cpu, t + step
        return out

    def window(self, drainS: float) -> tuple[float, float] | None:
        """
        The publish window plus C{drainS} (as the harness measures it),
        from the stored-message count: start just before it first moved,
        stop where it stopped moving, plus the drain.
        """
        counts = [(t, c) for t, _, c in self.samples if c is not None]
        if len(counts) < 3:
            return None
        base, final = counts[0][1], counts[-1][1]
        if final == base:
            return None
        first = next(i for i, (_, c) in enumerate(counts) if c > base)
        last = next(i for i, (_, c) in enumerate(counts) if c == final)
        start = counts[first - 1][0] if first > 0 else counts[0][0]
        stop = (counts[last - 1][0] + counts[last][0]) / 2 if last > 0 else counts[last][0]
        return start, stop + drainS

    def inWindow(self, drainS: float) -> dict[str, float] | None:
        w = self.window(drainS)
        if w is None:
            return None
        a, b = self._cpuAt(w[0]), self._cpuAt(w[1])
        return {role: round(b[role] - a.get(role, b[role]), 3) for role in b}


class Variant:
    """
    A twisted-chat build to measure: the installed one, or another tree
    (a folder containing twisted_chat/) and/or environment variables.
    """

    def __init__(self, spec: str) -> None:
        # NAME, NAME=PATH, NAME:ENV=VALUE[,ENV=VALUE], NAME=PATH:ENV=VALUE
        self.path = ""
        self.env: dict[str, str] = {}
        name, _, envs = spec.partition(":")
        if "=" in name:
            name, self.path = name.split("=", 1)
            self.path = os.path.abspath(self.path)
        for item in filter(None, envs.split(",")):
            k, _, v = item.partition("=")
            self.env[k] = v
        self.name = name or "twisted-chat"


# ---------------------------------------------------------------- running


def run(args: argparse.Namespace) -> str:
    frontends = [f for f in args.frontends.split(",") if f]
    peers = [p for p in args.peers.split(",") if p and p != "none"] if shutil.which("node") else []
    if args.peers != "none" and not shutil.which("node"):
        log("node is not installed: running twisted-chat only, without the Node baselines")
    harnessPath = usableHarness(findHarness(args.harness), bool(peers))
    bench = loadHarness(harnessPath)
    variants = [Variant(v) for v in args.variant or ["twisted-chat"]]

    os.makedirs(RESULTS, exist_ok=True)
    out = args.out or os.path.join(RESULTS, time.strftime("run-%Y%m%d-%H%M%S.jsonl"))
    command = "python3 benchmarks/run.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    machine = machineInfo()

    plan: list[tuple[str, dict[str, Any], str]] = []  # (scenario label, config, suffix)
    for scen in [s for s in args.scenarios.split(",") if s]:
        cfg = dict(bench.SCENARIOS[scen])
        cfg.update(bench.parse_set(args.set))
        cfg.update(bench.parse_set(getattr(args, "set_" + scen, None)))
        plan.append((scen, cfg, args.suffix))
    for n in [int(x) for x in (args.sweep or "").split(",") if x]:
        cfg = dict(bench.SCENARIOS["F1"])
        cfg.update(bench.parse_set(args.set))
        cfg.update(conns=n, publishers=max(1, min(10, n // 10)), rate=round(20000 / n, 2))
        plan.append(("F1", cfg, "@room%d" % (n,)))
    for n in [int(x) for x in (args.conn_sweep or "").split(",") if x]:
        cfg = dict(bench.SCENARIOS["C1"])
        cfg.update(bench.parse_set(args.set))
        cfg.update(conns=n)
        plan.append(("C1", cfg, "@conns%d" % (n,)))

    clusters = [Cluster(c) for c in args.cluster or []]
    results = []
    for rep in range(args.repeat):
        for scen, cfg0, suffix in plan:
            targets: list[tuple[str, Any]] = []
            for variant in variants:
                for setup in ([None] if not args.no_single else []) + clusters:
                    for fe in frontends:
                        targets.append(("chat", (variant, fe, setup)))
            sweepPeers = peers
            if suffix.startswith("@room") and not args.sweep_all:
                sweepPeers = ["node-ws"]
                targets = [t for t in targets if t[1][1] == "ws"]
            for p in sweepPeers:
                if p in peers:
                    targets.append(("peer", p))
            for kind, what in targets:
                setup = None
                if kind == "chat":
                    variant, fe, setup = what
                    name = "%s-%s%s" % (variant.name, setup.name + "-" if setup else "", fe)
                else:
                    name = what
                # (--set may raise the handshake timeout and the time limit)
                cfg = dict(dict(handshakeTimeoutMs=20000, hardLimitS=600), **cfg0)
                cfg.update(name=scen + suffix, target=name)
                daemon = proc = sampler = None
                processes: dict[str, int] = {}
                logCounts: dict[str, int] = {}
                try:
                    if kind == "chat":
                        daemon = Daemon(variant, args.chat_option or [], setup)
                        cfg.update(daemon.target(fe))
                        processes = daemon.processes()
                        cfg["serverPids"] = list(processes.values())
                        if setup is not None:
                            sampler = Sampler(processes, daemon.redis)
                    else:
                        proc, t = bench.start_peer(what, os.path.join(harnessPath, "results", "logs"))
                        cfg.update(t)
                        cfg["serverPids"] = [proc.pid]
                    log("rep %d/%d %s%s %s ..." % (rep + 1, args.repeat, scen, suffix, name))
                    r = bench.run_coord(cfg, timeout=float(cfg["hardLimitS"]) + 60)
                    if daemon is not None and daemon.proc.poll() is not None:
                        r["server_exited"] = daemon.proc.returncode
                    if daemon is not None and setup is not None:
                        gone = [role for role, pid in processes.items() if not pidAlive(pid)]
                        if gone:
                            r["processes_gone"] = gone
                except Exception as e:  # keep going with the other targets
                    r = {"scenario": scen + suffix, "target": name, "error": str(e)}
                finally:
                    if sampler is not None:
                        sampler.stop()
                    if daemon is not None:
                        daemon.stop()
                        if setup is not None:
                            logCounts = daemon.logCounts()
                        daemon.cleanup()
                    if proc is not None:
                        bench.stop_peer(proc)
                if setup is not None:
                    r["cluster"] = {"workers": setup.workers, "redis_appendonly": setup.appendonly, "processes": processes}
                    if sampler is not None:
                        addProcessFigures(r, sampler)
                    r["log_counts"] = logCounts
                r["rep"] = rep + 1
                r["params"] = {k: v for k, v in cfg.items() if k != "serverPids"}
                r["machine"] = machine
                r["command"] = command
                if kind == "chat":
                    r["chat_options"] = BENCH_OPTIONS + (args.chat_option or [])
                    if setup is not None:
                        r["chat_options"] += ["--broker", "redis://127.0.0.1:PORT/0"] + (
                            ["--workers", str(setup.workers)] if setup.workers > 1 else []
                        )
                results.append(r)
                with open(out, "a") as f:
                    f.write(json.dumps(r) + "\n")
                brief = {
                    k: r.get(k)
                    for k in (
                        "deliveries_per_s_in_window", "lost", "server_cpu_us_per_delivery", "redis_cpu_us_per_delivery",
                        "lat_p99_ms", "open", "handshakes_per_s", "rss_kb_per_conn", "liveness_delivered", "error", "warning",
                    )
                    if r.get(k) is not None
                }
                log("   -> %s" % (brief,))
                time.sleep(1.0)
    print(bench.table(results))
    log("results appended to %s" % (out,))
    return out


def addProcessFigures(r: dict[str, Any], sampler: Sampler) -> None:
    """
    Per-process figures of a cluster run: CPU seconds over the whole
    harness run (connect to close) and, for fan-out, in the harness's
    measurement window (publish start to drain end, found from Redis's
    stored-message count; compare C{window_cpu_s_sum} with the harness's
    C{server_cpu_s}); redis-server's CPU per delivery; the open file
    descriptors and RSS of each process when their total peaked.
    """
    r["cpu_s_by_process_run"] = sampler.wholeRun()
    r["cpu_timeline"] = sampler.timeline()
    r["fds_by_process_at_peak"] = sampler.peakFds
    r["rss_kb_by_process_at_peak"] = sampler.rssAtPeak
    if r.get("drain_s") is None:
        return
    window = sampler.inWindow(float(r["drain_s"]))
    if not window:
        return
    r["cpu_s_by_process"] = window
    r["window_cpu_s_sum"] = round(sum(window.values()), 3)
    allConns = r.get("delivered_all_conns") or 0
    if "redis" in window and allConns:
        r["redis_cpu_s"] = window["redis"]
        r["redis_cpu_us_per_delivery"] = round(window["redis"] * 1e6 / allConns, 3)
        total = r["window_cpu_s_sum"]
        r["redis_cpu_share"] = round(window["redis"] / total, 3) if total else None


def machineInfo() -> str:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d cores, Linux %s, Python %s" % (cpu or platform.machine(), os.cpu_count() or 0, platform.release(), platform.python_version())


# ---------------------------------------------------------------- report

#: (label, function of a result, digits, lower is better)
FANOUT = [
    ("CPU µs/delivery", lambda r: r.get("server_cpu_us_per_delivery"), 1, True),
    ("deliveries/s", lambda r: r.get("deliveries_per_s_in_window"), 0, False),
    ("p50 ms", lambda r: r.get("lat_p50_ms"), 1, True),
    ("p99 ms", lambda r: r.get("lat_p99_ms"), 1, True),
    ("lost", lambda r: r.get("lost"), 0, True),
]
IDLE = [
    ("KB/connection", lambda r: r.get("rss_kb_per_conn"), 2, True),
    ("handshakes/s", lambda r: r.get("handshakes_per_s"), 0, False),
    ("CPU µs/handshake", lambda r: r.get("server_cpu_us_per_handshake"), 0, True),
    ("live %", lambda r: 100.0 * (r.get("liveness_delivered") or 0) / max(1, r.get("liveness_expected") or 1), 1, False),
]

#: extra columns when a table has --cluster runs
CLUSTER_FANOUT = [
    ("of which redis-server µs/delivery", lambda r: r.get("redis_cpu_us_per_delivery"), 2, True),
]
CLUSTER_IDLE = [
    ("open", lambda r: r.get("open"), 0, False),
    ("s to open all", lambda r: r["connect_ms"] / 1000.0 if r.get("connect_ms") is not None else None, 1, True),
]


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v: float | None, nd: int) -> str:
    return "-" if v is None else "{:,.{nd}f}".format(v, nd=nd)


def peerFor(target: str) -> str | None:
    if target in PEER_OF.values():
        return None
    for fe, peer in PEER_OF.items():
        if target.endswith("-" + fe):
            return peer
    return None


def loadResults(patterns: list[str]) -> list[dict[str, Any]]:
    out = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            with open(path) as f:
                for line in f:
                    if line.strip().startswith("{"):
                        r = json.loads(line)
                        r.setdefault("_file", os.path.basename(path))
                        out.append(r)
    return out


def report(results: list[dict[str, Any]], path: str | None) -> str:
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in results:
        if "scenario" not in r or "error" in r:
            continue
        groups.setdefault(r["scenario"], {}).setdefault(r.get("target", "?"), []).append(r)
    lines = []
    for scen in sorted(groups, key=scenarioOrder):
        rows = groups[scen]
        idle = any("rss_kb_per_conn" in r for rs in rows.values() for r in rs)
        cols = IDLE if idle else FANOUT
        if any("cluster" in r for rs in rows.values() for r in rs):
            cols = cols + (CLUSTER_IDLE if idle else CLUSTER_FANOUT)
        ex = next(iter(rows.values()))[0]
        p = ex.get("params", {})
        desc = "conns=%s" % (ex.get("conns"),)
        if not idle:
            desc += ", publishers=%s, %s" % (
                ex.get("publishers"),
                "rate=%s msg/s%s" % (ex.get("rate_msgs_per_s"), ", burst" if p.get("burst") else "")
                if ex.get("mode") == "rate"
                else "window=%s" % (ex.get("window"),),
            )
            desc += ", %s s" % (ex.get("duration_s"),)
        dates = sorted(r.get("ts", "")[:10] for rs in rows.values() for r in rs if r.get("ts"))
        lines.append("### %s (%s)" % (scen, desc))
        lines.append("")
        machines = sorted({r.get("machine") for rs in rows.values() for r in rs if r.get("machine")})
        commands = sorted({r.get("command") for rs in rows.values() for r in rs if r.get("command")})
        lines.append("Date: %s. Machine: %s." % (" to ".join(sorted({dates[0], dates[-1]})) if dates else "?", "; ".join(machines) or "?"))
        for c in commands:
            lines.append("Command: `%s`" % (c,))
        lines.append("")
        header = ["target", "n"] + [c[0] for c in cols] + ["vs peer: %s" % (cols[0][0],), "vs peer: %s" % (cols[1][0],)]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] * len(header)) + "|")
        meds = {t: median([cols[0][1](r) for r in rs]) for t, rs in rows.items()}
        meds1 = {t: median([cols[1][1](r) for r in rs]) for t, rs in rows.items()}
        for target in sorted(rows, key=lambda t: (peerFor(t) is None, t not in PEER_OF.values(), t)):
            rs = rows[target]
            cells = [target, str(len(rs))]
            for _, fn, nd, _ in cols:
                vals = []
                for r in rs:
                    try:
                        vals.append(fn(r))
                    except Exception:
                        vals.append(None)
                m = median(vals)
                lo = [v for v in vals if v is not None]
                cells.append(fmt(m, nd) + (" [%s-%s]" % (fmt(min(lo), nd), fmt(max(lo), nd)) if len(lo) > 1 else ""))
            peer = peerFor(target)
            for m in (meds, meds1):
                if peer in m and m.get(peer) and m.get(target) is not None:
                    cells.append("%.2f× %s" % (m[target] / m[peer], peer))
                else:
                    cells.append("")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    text = "\n".join(lines)
    if path:
        with open(path, "w") as f:
            f.write(text)
    return text


def scenarioOrder(name: str) -> tuple[Any, ...]:
    base, _, suffix = name.partition("@")
    digits = "".join(c for c in suffix if c.isdigit())
    return (["F1", "F1B", "F2", "C1", "C2"].index(base) if base in ("F1", "F1B", "F2", "C1", "C2") else 9, suffix.rstrip("0123456789"), int(digits or 0))


def plot(results: list[dict[str, Any]], png: str) -> bool:
    """
    CPU per delivery and p99 vs room size (F1@roomN), and KB/connection and
    handshakes/s vs connections (C1@connsN), twisted-chat vs Node ws.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    series: dict[tuple[str, str], dict[int, list[dict[str, Any]]]] = {}
    for r in results:
        scen = r.get("scenario", "")
        if "error" in r or "@" not in scen:
            continue
        base, _, suffix = scen.partition("@")
        for kind in ("room", "conns"):
            if suffix.startswith(kind):
                series.setdefault((kind, r["target"]), {}).setdefault(int(suffix[len(kind):]), []).append(r)
    if not series:
        return False
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = [
        (axes[0][0], "room", "server CPU µs per delivery", lambda r: r.get("server_cpu_us_per_delivery")),
        (axes[0][1], "room", "p99 latency (ms)", lambda r: r.get("lat_p99_ms")),
        (axes[1][0], "conns", "RSS KB per idle connection", lambda r: r.get("rss_kb_per_conn")),
        (axes[1][1], "conns", "handshakes per second", lambda r: r.get("handshakes_per_s")),
    ]
    for ax, kind, title, fn in panels:
        for (k, target), points in sorted(series.items()):
            if k != kind:
                continue
            xs = sorted(points)
            ys = [median([fn(r) for r in points[x]]) for x in xs]
            ax.plot(xs, ys, marker="o", label=target)
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("room size (F1, ~20,000 deliveries/s offered)" if kind == "room" else "idle connections (C1)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("twisted-chat vs Node (same runs; flood control and per-IP limits off for the benchmark)")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    log("plot written to %s" % (png,))
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--harness", help="the benchmark harness folder (default: $CHAT_BENCH_HARNESS or ../shared/bench)")
    ap.add_argument("--scenarios", default="F1,F1B,F2", help="comma-separated: F1,F1B,F2,C1,C2 ('' for none)")
    ap.add_argument("--frontends", default="ws,line", help="twisted-chat front-ends: ws (text mode), line")
    ap.add_argument("--peers", default="node-ws,node-net", help="harness peers run in the same invocation ('none')")
    ap.add_argument(
        "--variant",
        action="append",
        help="a twisted-chat build to run (repeat; default: the installed one, 'twisted-chat'): "
        "NAME (installed), NAME=PATH (a folder holding a twisted_chat package) and/or NAME:ENV=VALUE,...",
    )
    ap.add_argument(
        "--cluster",
        action="append",
        metavar="workers=N[,appendonly=yes][,name=NAME]",
        help="also run twisted-chat as a cluster on a fresh redis-server (repeat): --broker, and --workers N when N > 1 "
        "(workers=1: one process with --broker); every process's CPU and RSS are measured (summed)",
    )
    ap.add_argument("--no-single", action="store_true", help="with --cluster: skip the one-process (SQLite) target")
    ap.add_argument("--chat-option", action="append", help="an extra twistd chat option (repeat; e.g. --chat-option=--store=memory)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--sweep", help="F1 at these room sizes (ws and node-ws; ~20,000 deliveries/s offered)")
    ap.add_argument(
        "--sweep-all", action="store_true", help="the --sweep with every --frontends and their --peers, not ws only"
    )
    ap.add_argument("--conn-sweep", help="C1 at these connection counts")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="scenario parameter for all scenarios")
    for s in ("F1", "F1B", "F2", "C1", "C2"):
        ap.add_argument("--set-" + s, action="append", metavar="KEY=VALUE", dest="set_" + s)
    ap.add_argument("--suffix", default="")
    ap.add_argument("--out", help="JSON-lines results file (default benchmarks/results/run-<time>.jsonl)")
    ap.add_argument("--table", nargs="*", help="no run: report on these result files (globs)")
    ap.add_argument("--report", help="write the Markdown tables to this file")
    ap.add_argument("--plot", help="write the scaling plot (PNG) here, when matplotlib is installed")
    args = ap.parse_args()
    if args.table is not None:
        results = loadResults(args.table or [os.path.join(RESULTS, "*.jsonl")])
    else:
        results = loadResults([run(args)])
    text = report(results, args.report)
    print(text)
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
