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


class Daemon:
    """
    One twisted-chat daemon (twistd chat) in a fresh scratch folder.
    """

    def __init__(self, variant: Variant, extra: list[str]) -> None:
        self.variant = variant
        self.folder = tempfile.mkdtemp(prefix="chat-bench-")
        self.line = freePort()
        self.web = freePort()
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
        ] + BENCH_OPTIONS + extra
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
        time.sleep(0.5)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def target(self, frontend: str) -> dict[str, Any]:
        if frontend == "line":
            return dict(proto="tcp", host="127.0.0.1", port=self.line)
        return dict(proto="ws", url="ws://127.0.0.1:%d/ws" % (self.web,))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


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

    results = []
    for rep in range(args.repeat):
        for scen, cfg0, suffix in plan:
            targets: list[tuple[str, Any]] = []
            for variant in variants:
                for fe in frontends:
                    targets.append(("chat", (variant, fe)))
            sweepPeers = ["node-ws"] if suffix.startswith("@room") else peers
            if suffix.startswith("@room"):
                targets = [t for t in targets if t[1][1] == "ws"]
            for p in sweepPeers:
                if p in peers:
                    targets.append(("peer", p))
            for kind, what in targets:
                if kind == "chat":
                    variant, fe = what
                    name = "%s-%s" % (variant.name, fe)
                else:
                    name = what
                cfg = dict(cfg0, name=scen + suffix, target=name, handshakeTimeoutMs=20000, hardLimitS=600)
                daemon = proc = None
                try:
                    if kind == "chat":
                        daemon = Daemon(variant, args.chat_option or [])
                        cfg.update(daemon.target(fe))
                        cfg["serverPids"] = [daemon.pid]
                    else:
                        proc, t = bench.start_peer(what, os.path.join(harnessPath, "results", "logs"))
                        cfg.update(t)
                        cfg["serverPids"] = [proc.pid]
                    log("rep %d/%d %s%s %s ..." % (rep + 1, args.repeat, scen, suffix, name))
                    r = bench.run_coord(cfg, timeout=660)
                    if daemon is not None and daemon.proc.poll() is not None:
                        r["server_exited"] = daemon.proc.returncode
                except Exception as e:  # keep going with the other targets
                    r = {"scenario": scen + suffix, "target": name, "error": str(e)}
                finally:
                    if daemon is not None:
                        daemon.stop()
                    if proc is not None:
                        bench.stop_peer(proc)
                r["rep"] = rep + 1
                r["params"] = {k: v for k, v in cfg.items() if k != "serverPids"}
                r["machine"] = machine
                r["command"] = command
                if kind == "chat":
                    r["chat_options"] = BENCH_OPTIONS + (args.chat_option or [])
                results.append(r)
                with open(out, "a") as f:
                    f.write(json.dumps(r) + "\n")
                brief = {
                    k: r.get(k)
                    for k in (
                        "deliveries_per_s_in_window", "lost", "server_cpu_us_per_delivery", "lat_p99_ms",
                        "handshakes_per_s", "rss_kb_per_conn", "error", "warning",
                    )
                    if r.get(k) is not None
                }
                log("   -> %s" % (brief,))
                time.sleep(1.0)
    print(bench.table(results))
    log("results appended to %s" % (out,))
    return out


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
    ap.add_argument("--chat-option", action="append", help="an extra twistd chat option (repeat; e.g. --chat-option=--store=memory)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--sweep", help="F1 at these room sizes (ws and node-ws; ~20,000 deliveries/s offered)")
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
