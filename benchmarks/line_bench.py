#!/usr/bin/env python3
"""
The per-line cost of the line chat's input path: lines through
L{LineChatProtocol.dataReceived} on a L{StringTransport}, in memory.

One connection (flood control off, the in-memory store, a L{Clock}) is fed
LINES lines in each of these shapes, and the best of REPEATS runs is kept:

  - C{one}: one chat line per C{dataReceived} call (a person typing);
  - C{batch}: chat lines 100 to a call (a paste, a script);
  - C{split}: one chat line in three calls (a line across TCP segments);
  - C{command}: one C{/rooms} line per call (the command grammar);
  - C{toolong}: over-long lines 100 to a call (framing and discarding only).

Each chat line is said, stored and echoed back to the sender, as in the
real daemon; the transport's buffer is emptied between calls.

    python3 benchmarks/line_bench.py [--lines 100000] [--repeats 5] [--tree DIR]

Prints one JSON line: microseconds per line, per shape.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time

# --tree DIR (or $TWISTED_CHAT_TREE): measure the twisted_chat package in DIR
# instead of this checkout's, e.g. an older version for a before/after figure
_tree = os.environ.get("TWISTED_CHAT_TREE")
if "--tree" in sys.argv:
    _tree = sys.argv[sys.argv.index("--tree") + 1]
sys.path.insert(0, os.path.abspath(_tree) if _tree else os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from twisted_chat.core.service import ChatService  # noqa: E402
from twisted_chat.frontends.line import LineChatFactory, LineChatProtocol  # noqa: E402
from twisted_chat.stores.memory import MemoryStore


def connection(service: ChatService, clock: Clock) -> tuple[LineChatProtocol, StringTransport]:
    """
    A line connection that has joined the lobby, its greeting read.
    """
    addr = IPv4Address("TCP", "127.0.0.1", 40000)
    protocol = LineChatFactory(service, clock=clock).buildProtocol(addr)
    transport = StringTransport(peerAddress=addr)
    protocol.makeConnection(transport)
    transport.clear()
    return protocol, transport


def chunks(shape: str, lines: int) -> list[bytes]:
    """
    What the peer sends, one item per C{dataReceived} call.
    """
    line = b"hello everyone, how are you today?\n"
    if shape == "one":
        return [line] * lines
    if shape == "batch":
        return [line * 100] * (lines // 100)
    if shape == "split":
        return [line[:10], line[10:25], line[25:]] * lines
    if shape == "command":
        return [b"/rooms\n"] * lines
    if shape == "toolong":
        return [(b"x" * 5000 + b"\n") * 100] * (lines // 100)
    raise ValueError(shape)


def run(shape: str, lines: int) -> float:
    """
    Seconds to feed C{lines} lines of C{shape} to a fresh connection.
    """
    clock = Clock()
    service = ChatService(store=MemoryStore(), clock=clock, historySize=100)
    protocol, transport = connection(service, clock)
    data = chunks(shape, lines)
    receive = protocol.dataReceived
    clear = transport.clear
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for chunk in data:
            receive(chunk)
            clear()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    assert not protocol._closing, "the connection closed during the run"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tree", help="measure the twisted_chat package in this folder")
    parser.add_argument("--shapes", default="one,batch,split,command,toolong")
    args = parser.parse_args()
    shapes = args.shapes.split(",")
    best = {shape: float("inf") for shape in shapes}
    for _ in range(args.repeats):
        # interleaved, so that the machine's noise is shared by every shape
        for shape in shapes:
            best[shape] = min(best[shape], run(shape, args.lines))
    print(
        json.dumps(
            {
                "tree": os.path.abspath(args.tree) if args.tree else None,
                "lines": args.lines,
                "repeats": args.repeats,
                "python": platform.python_version(),
                "us_per_line": {shape: round(best[shape] / args.lines * 1e6, 3) for shape in shapes},
            }
        )
    )


if __name__ == "__main__":
    main()
