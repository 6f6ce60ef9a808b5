"""
Redis' own CPU per published message and per subscriber (docs/scaling.md
takes both from here): a fresh local redis-server, N subscribed
connections that only read, and a publisher that pipelines PUBLISHes of
a bus-sized message (a RoomMessage body, ~190 bytes); redis-server's CPU
(``INFO cpu``) before and after, divided by the messages.

    python3 benchmarks/redis_fanout.py --subscribers 0 --subscribers 1 --subscribers 4 \\
        --subscribers 16 --subscribers 64 --repeat 3 --out benchmarks/results/redis-fanout.jsonl

Also the chat's own store script (``SAY``: INCR, XADD, the state trim's
check, SADD, PUBLISH) with
one subscriber, run as the nodes run it (``--script``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from benchmarks.bus_shards import Redis  # noqa: E402

BODY = json.dumps({"t": "m", "v": 1, "o": "n1", "r": "#r123", "i": 123456, "e": "0123abcd", "n": "someone",
                   "x": "a message of a typical length, say sixty characters or so ok", "s": 1796605491.4895,
                   "a": False})


def command(*args: str) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)


def drain(sock: socket.socket) -> None:
    try:
        while sock.recv(1 << 20):
            pass
    except OSError:
        pass


def run(port: int, redis: Redis, subscribers: int, messages: int, script: bool, changed: bool = False) -> dict[str, object]:
    subs = []
    for i in range(subscribers):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(command("SUBSCRIBE", "bench:bus"))
        assert s.recv(100).startswith(b"*3")
        threading.Thread(target=drain, args=(s,), daemon=True).start()
        subs.append(s)
    pub = socket.create_connection(("127.0.0.1", port))
    if script:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
        from twisted_chat.cluster.scripts import SAY

        if changed:
            # (a room with changed messages: each SAY looks at the stream's
            # start too, though there is nothing to trim)
            redis.command("ZADD", "bench:stx:#r", "1000000000000", "1000000000000")
        sha = redis.command("SCRIPT", "LOAD", SAY)
        assert isinstance(sha, bytes)
        keys = [
            "bench:epoch", "bench:seq:#r", "bench:h:#r", "bench:ref:x:", "bench:rooms", "bench:bus", "bench:shards",
            "bench:st:#r", "bench:stx:#r", "bench:sth:#r",
        ]

        def one(i: int) -> bytes:
            return command("EVALSHA", sha.decode(), str(len(keys)), *keys, "e0", "#r", "someone", BODY[:60], "1.0", "0", "0",
                           "3600", "10000", "n1", "bench:bus:1", "1024")
    else:

        def one(i: int) -> bytes:
            return command("PUBLISH", "bench:bus", BODY)

    before = redis.cpu()
    start = time.time()
    batch = 500
    for i in range(0, messages, batch):
        # (bounded pipelining: the batch, then wait for the answer to a marker)
        marker = "end-%d" % (i,)
        pub.sendall(b"".join(one(j) for j in range(i, i + batch)) + command("ECHO", marker))
        seen = b""
        while marker.encode() not in seen:
            seen = seen[-64:] + pub.recv(1 << 20)
    cpu = redis.cpu() - before
    wall = time.time() - start
    for s in subs + [pub]:
        s.close()
    return {"subscribers": subscribers, "script": script, "changed": changed, "messages": messages,
            "redis_cpu_s": round(cpu, 3),
            "us_per_message": round(cpu * 1e6 / messages, 2), "wall_s": round(wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, action="append", required=True)
    parser.add_argument("--messages", type=int, default=100000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--script", action="store_true", help="run the chat's SAY script instead of PUBLISH")
    parser.add_argument("--changed", action="store_true", help="with --script: in a room with changed messages")
    parser.add_argument("--out")
    options = parser.parse_args()
    for repeat in range(options.repeat):
        for n in options.subscribers:
            with tempfile.TemporaryDirectory() as directory:
                redis = Redis(directory)
                try:
                    result = run(redis.port, redis, n, options.messages, options.script, options.changed)
                finally:
                    redis.stop()
            result["repeat"] = repeat
            result["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            line = json.dumps(result)
            print(line, flush=True)
            if options.out:
                with open(options.out, "a") as f:
                    f.write(line + "\n")


if __name__ == "__main__":
    main()
