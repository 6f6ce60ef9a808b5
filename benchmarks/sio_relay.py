#!/usr/bin/env python3
"""
What relaying costs a Socket.IO polling request: a running C{twistd chat
--workers 2} (or more) on HOST:PORT; one Engine.IO session is opened, then
REQUESTS polling POSTs (a noop packet each) are sent to it one after the
other over one keep-alive connection, first over a connection that reached
the session's own worker (served locally), then over one that reached
another worker (every request relayed to the owner over its private
socket). Best of REPEATS runs each.

    python3 benchmarks/sio_relay.py --port 8080 [--requests 2000] [--repeats 3]

Prints one JSON line: requests a second, local and relayed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import time


def handshake(connection: http.client.HTTPConnection) -> str:
    connection.request("GET", "/socket.io/?EIO=4&transport=polling")
    response = connection.getresponse()
    body = response.read().decode()
    assert response.status == 200, body
    return str(json.loads(body[1:])["sid"])


def connectionTo(host: str, port: int, worker: str, same: bool) -> http.client.HTTPConnection:
    """
    A keep-alive connection that reached C{worker} (C{same}) or another one.
    """
    for _ in range(200):
        connection = http.client.HTTPConnection(host, port, timeout=10)
        sid = handshake(connection)
        if (sid.rsplit(".", 1)[1] == worker) == same:
            return connection
        connection.close()
    raise SystemExit("no connection reached the worker wanted in 200 tries")


def run(connection: http.client.HTTPConnection, sid: str, requests: int) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        connection.request("POST", "/socket.io/?EIO=4&transport=polling&sid=" + sid, body=b"6")
        response = connection.getresponse()
        assert response.read() == b"ok" and response.status == 200
    return requests / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    owner = http.client.HTTPConnection(args.host, args.port, timeout=10)
    sid = handshake(owner)
    worker = sid.rsplit(".", 1)[1]
    other = connectionTo(args.host, args.port, worker, same=False)
    local = max(run(owner, sid, args.requests) for _ in range(args.repeats))
    relayed = max(run(other, sid, args.requests) for _ in range(args.repeats))
    print(json.dumps({"requests": args.requests, "local_per_s": round(local), "relayed_per_s": round(relayed)}))


if __name__ == "__main__":
    main()
