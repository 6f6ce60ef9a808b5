"""
What a node spends on rooms it has no member in, with and without the
sharded bus (docs/benchmarks.md, "The sharded bus").

Four nodes (``twistd chat --broker``) on one local redis-server, 1,000
rooms: node I has one line-chat member in every room R with R % 4 == I.
A publisher on node 1 says messages, round robin, in the 750 rooms where
node 0 has no member. Node 0's CPU (``/proc/PID/stat``) over the traffic,
minus its CPU over an idle period as long, divided by the messages
stored, is what one message of a room without members costs it. Redis'
own CPU (``INFO cpu``) per message and the subscribers per message
(``PUBSUB NUMSUB``) are recorded too.

    python3 benchmarks/bus_shards.py --shards 0 --shards 1024 --repeat 3 \\
        --out benchmarks/results/bus-shards.jsonl

Each repeat runs every ``--shards`` value in turn (fresh Redis and nodes).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Iterator

ROOMS = 1000
NODES = 4
TICKS = os.sysconf("SC_CLK_TCK")


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpuSeconds(pid: int) -> float:
    with open("/proc/%d/stat" % (pid,)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Redis:
    def __init__(self, directory: str) -> None:
        self.port = freePort()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", directory],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.time() + 10
        while True:
            try:
                self.command("PING")
                return
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)

    def command(self, *args: str) -> object:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            out = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
            s.sendall(out)
            f = s.makefile("rb")
            return _reply(f)

    def cpu(self) -> float:
        info = self.command("INFO", "cpu")
        assert isinstance(info, bytes)
        values = dict(line.split(":", 1) for line in info.decode().splitlines() if ":" in line)
        return float(values["used_cpu_user"]) + float(values["used_cpu_sys"])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


def _reply(f: object) -> object:
    line = f.readline()  # type: ignore[attr-defined]
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)  # type: ignore[attr-defined]
        return data[:-2]
    if kind == b"*":
        return [_reply(f) for _ in range(int(rest))]
    raise RuntimeError("bad reply %r" % (line,))


class Line:
    """
    A line-chat client; a thread reads (and counts) what it is sent.
    """

    def __init__(self, port: int, nick: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.lines = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.send("/nick %s" % (nick,))

    def _read(self) -> None:
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    return
                self.lines += data.count(b"\n")
        except OSError:
            return

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(line + "\n" for line in lines).encode())

    def close(self) -> None:
        self.sock.close()


def waitFor(check: "callable[[], bool]", what: str, timeout: float = 60) -> None:  # type: ignore[valid-type]
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            raise RuntimeError("timed out waiting for " + what)
        time.sleep(0.1)


def rooms(node: int) -> Iterator[str]:
    return ("#r%d" % (r,) for r in range(ROOMS) if r % NODES == node)


def measurePresence(port: int, node0: int, idlePerSecond: float, redis: Redis, connections: int) -> dict[str, object]:
    """
    What node 0 spends on the presence of members elsewhere: C{connections}
    line clients come to node 1 one after the other, join a room node 0
    has no member in, and leave (connect, join, part, gone: four bus
    messages on the common bus, which no sharding saves).
    """
    cpu0, redis0, start = cpuSeconds(node0), redis.cpu(), time.time()
    for i in range(connections):
        c = Line(port, "p%d" % (i,))
        c.send("/join #r%d" % (1 + 4 * (i % 250),), "/quit")
        c.reader.join(10)
        c.close()
    time.sleep(1)  # (the last bus messages)
    wall = time.time() - start
    busy = cpuSeconds(node0) - cpu0 - idlePerSecond * wall
    return {
        "presence_connections": connections,
        "node0_us_per_remote_connection": round(busy * 1e6 / connections, 1),
        "redis_us_per_connection": round((redis.cpu() - redis0) * 1e6 / connections, 1),
    }


def run(shards: int, rate: float, seconds: float, twistd: str, connections: int = 0) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as directory:
        redis = Redis(directory)
        url = "redis://127.0.0.1:%d/0" % (redis.port,)
        ports = [freePort() for _ in range(NODES)]
        nodes = []
        for i, port in enumerate(ports):
            log = open(os.path.join(directory, "node%d.log" % (i,)), "w")
            nodes.append(subprocess.Popen(
                [twistd, "-n", "--pidfile=", "chat", "--line", "tcp:%d:interface=127.0.0.1" % (port,), "--web", "none",
                 "--metrics", "none", "--broker", url, "--node-id", "n%d" % (i,), "--bus-shards", str(shards),
                 "--max-rooms", str(ROOMS), "--flood-rate", "100000", "--flood-burst", "100000", "--max-per-ip", "0",
                 "--retain-days", "0"],
                stdout=log, stderr=subprocess.STDOUT,
            ))
        try:
            for i in range(NODES):
                path = os.path.join(directory, "node%d.log" % (i,))
                waitFor(lambda: "joined the cluster" in open(path).read(), "node %d" % (i,))
            members = []
            for i, port in enumerate(ports):
                m = Line(port, "m%d" % (i,))
                m.send(*("/join " + r for r in rooms(i)))
                members.append(m)
            publisher = Line(ports[1], "pub")
            targets = [r for r in ("#r%d" % (n,) for n in range(ROOMS)) if int(r[2:]) % NODES != 0]
            publisher.send(*("/join " + r for r in targets))
            # (every join announced: node 0 knows of all 1,750 memberships)
            waitFor(
                lambda: len(redis.command("HGETALL", "twisted-chat:m:n1") or []) == 4  # type: ignore[arg-type]
                and all(r in (redis.command("HGET", "twisted-chat:m:n1", "pub") or b"").decode() for r in targets[-3:]),
                "the publisher's joins",
            )
            time.sleep(2)  # (settle: the joins' history reads and notices)
            node0 = nodes[0].pid
            idle0 = cpuSeconds(node0)
            time.sleep(seconds)
            idle = cpuSeconds(node0) - idle0

            def stored() -> int:
                values = redis.command("MGET", *("twisted-chat:seq:" + r for r in targets))
                assert isinstance(values, list)
                return sum(int(v) for v in values if v is not None)

            numsub = redis.command("PUBSUB", "NUMSUB", "twisted-chat:bus", *(
                "twisted-chat:bus:%d" % (s,) for s in range(shards)))
            assert isinstance(numsub, list)
            subscriptions = sum(int(n) for n in numsub[1::2])
            before, redisBefore, cpuBefore = stored(), redis.cpu(), cpuSeconds(node0)
            others = [cpuSeconds(n.pid) for n in nodes]
            start = time.time()
            sent = 0
            while time.time() - start < seconds:
                due = int((time.time() - start) * rate)
                batch = []
                while sent < due:
                    batch += ["/join " + targets[sent % len(targets)], "m%d" % (sent,)]
                    sent += 1
                if batch:
                    publisher.send(*batch)
                time.sleep(0.01)
            waitFor(lambda: stored() - before >= sent, "every message stored", 120)
            time.sleep(1)  # (the last bus messages)
            busy = cpuSeconds(node0) - cpuBefore
            wall = time.time() - start
            messages = stored() - before
            redisCpu = redis.cpu() - redisBefore
            othersCpu = [cpuSeconds(n.pid) - o for n, o in zip(nodes, others)]
            # subscribers per message: the nodes hearing each target room's channel
            if shards:
                from zlib import crc32

                perRoom = {}
                for r in targets:
                    shard = crc32(r.encode()) % shards
                    perRoom[r] = int(numsub[1 + 2 * (1 + shard)])
                subscribers = sum(perRoom.values()) / len(perRoom)
            else:
                subscribers = float(numsub[1])
            presence = measurePresence(ports[1], node0, idle / seconds, redis, connections) if connections else {}
            for m in members + [publisher]:
                m.close()
            return {
                **presence,
                "shards": shards,
                "rate": rate,
                "seconds": seconds,
                "messages": messages,
                "node0_idle_cpu_s": round(idle, 3),
                "node0_busy_cpu_s": round(busy, 3),
                "node0_us_per_foreign_message": round((busy - idle * wall / seconds) * 1e6 / messages, 2),
                "nodes_cpu_s": [round(c, 3) for c in othersCpu],
                "redis_cpu_s": round(redisCpu, 3),
                "redis_us_per_message": round(redisCpu * 1e6 / messages, 2),
                "subscribers_per_message": round(subscribers, 2),
                "subscriptions": subscriptions,
            }
        finally:
            for n in nodes:
                n.terminate()
            for n in nodes:
                n.wait()
            redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, action="append", required=True)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rate", type=float, default=500.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--presence", type=int, default=0, help="then this many connections come and go on node 1")
    parser.add_argument("--twistd", default=os.path.join(os.path.dirname(sys.executable), "twistd"))
    parser.add_argument("--out")
    options = parser.parse_args()
    for repeat in range(options.repeat):
        for shards in options.shards:
            result = run(shards, options.rate, options.seconds, options.twistd, options.presence)
            result["repeat"] = repeat
            result["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            line = json.dumps(result)
            print(line, flush=True)
            if options.out:
                with open(options.out, "a") as f:
                    f.write(line + "\n")


if __name__ == "__main__":
    main()
