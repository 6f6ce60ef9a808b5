#!/usr/bin/env python3
"""
WebSocket json mode vs text mode: server CPU per delivered message, same
room, same load, same run.

The harness's load generator speaks text mode only (raw text frames), so
this small load generator (Python, standard library only) opens CONNS
WebSocket connections to a fresh twisted-chat daemon in each mode, lets
PUBLISHERS of them say RATE messages a second in total for DURATION seconds
(json mode: a "say" request after the "hello"), counts the broadcasts every
connection receives and divides the daemon's CPU time (from /proc) by them.
The modes are interleaved within each repeat.

    python3 benchmarks/modes.py [--conns 1000] [--rate 20] [--duration 15] [--repeat 2]

The daemon gets the benchmark options (see run.py); prints one JSON line
per run and a summary.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import selectors
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from run import Daemon, Variant  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu(pid: int) -> float:
    with open("/proc/%d/stat" % (pid,)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def frame(payload: bytes) -> bytes:
    """
    A masked client text frame (the mask key is zero: payload unchanged).
    """
    n = len(payload)
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    else:
        head = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


def connect(port: int, json_: bool) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
            % (port, key, "Sec-WebSocket-Protocol: chat.json\r\n" if json_ else "")
        ).encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("handshake refused")
        data += chunk
    if json_:
        s.sendall(frame(b'{"type":"hello"}'))
    s.setblocking(False)
    return s


def clientProcess(port: int, json_: bool, ids: list[int], publishers: int, rate: float, duration: float,
                  start: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    socks = [connect(port, json_) for _ in ids]
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    out.put(("ready", len(socks)))
    counting = False
    received = 0
    tails: dict[socket.socket, bytes] = {s: b"" for s in socks}
    pubs = [(i, s) for i, s in zip(ids, socks) if i < publishers]
    sentBy = {i: 0 for i, _ in pubs}
    perPub = rate / publishers
    sent = 0
    end = start + duration
    while True:
        now = time.time()
        if now >= start:
            counting = True
        if now > end + 3:
            break
        if start <= now < end:
            for i, s in pubs:
                due = int((now - start) * perPub + i / publishers)
                while sentBy[i] < due:
                    sentBy[i] += 1
                    text = "bench %d %d %d xx" % (i, sentBy[i], time.monotonic_ns())
                    payload = json.dumps({"type": "say", "text": text}).encode() if json_ else text.encode()
                    try:
                        s.send(frame(payload))
                    except BlockingIOError:
                        pass
                    sent += 1
        for key, _ in sel.select(0.002):
            s = key.fileobj
            try:
                data = s.recv(1 << 20)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(s)
                continue
            if counting:
                buf = tails[s] + data  # type: ignore[index]
                received += buf.count(b"bench ") - tails[s].count(b"bench ")  # type: ignore[index]
                tails[s] = buf[-8:]  # type: ignore[index]
    out.put(("done", received, sent))
    for s in socks:
        s.close()


def runMode(json_: bool, args: argparse.Namespace) -> dict[str, object]:
    daemon = Daemon(Variant(args.variant), [])
    try:
        procs = []
        out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
        ids = list(range(args.conns))
        shares = [ids[k :: args.workers] for k in range(args.workers)]
        # publishing starts when everyone should be connected and settled
        t0 = time.time() + 3.0 + args.conns / 300.0
        for share in shares:
            p = multiprocessing.Process(
                target=clientProcess,
                args=(daemon.web, json_, share, args.publishers, args.rate, args.duration, t0, out),
            )
            p.start()
            procs.append(p)
        for _ in shares:
            msg = out.get(timeout=120)
            assert msg[0] == "ready", msg
        while time.time() < t0:
            time.sleep(0.01)
        cpu0 = cpu(daemon.pid)
        time.sleep(args.duration + 3)
        cpu1 = cpu(daemon.pid)
        received = sent = 0
        for _ in shares:
            msg = out.get(timeout=60)
            received += msg[1]
            sent += msg[2]
        for p in procs:
            p.join(10)
        return {
            "mode": "json" if json_ else "text",
            "conns": args.conns,
            "sent": sent,
            "delivered": received,
            "expected": sent * args.conns,
            "server_cpu_s": round(cpu1 - cpu0, 3),
            "server_cpu_us_per_delivery": round((cpu1 - cpu0) * 1e6 / received, 2) if received else None,
        }
    finally:
        daemon.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--publishers", type=int, default=10)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--variant", default="twisted-chat", help="as run.py --variant")
    ap.add_argument("--out", help="JSON-lines results file (default benchmarks/results/modes-<time>.jsonl)")
    args = ap.parse_args()
    results: dict[str, list[float]] = {"text": [], "json": []}
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", time.strftime("modes-%Y%m%d-%H%M%S.jsonl"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    command = "python3 benchmarks/modes.py " + " ".join(sys.argv[1:])
    for rep in range(args.repeat):
        for json_ in (False, True):
            r = runMode(json_, args)
            r.update(rep=rep + 1, command=command, ts=time.strftime("%Y-%m-%dT%H:%M"))
            print(json.dumps(r), flush=True)
            with open(out, "a") as f:
                f.write(json.dumps(r) + "\n")
            if r["server_cpu_us_per_delivery"] is not None:
                results[str(r["mode"])].append(float(r["server_cpu_us_per_delivery"]))  # type: ignore[arg-type]
    if results["text"] and results["json"]:
        t, j = statistics.median(results["text"]), statistics.median(results["json"])
        print(json.dumps({"summary": "json/text CPU per delivery", "text_us": t, "json_us": j, "ratio": round(j / t, 2)}))


if __name__ == "__main__":
    main()
