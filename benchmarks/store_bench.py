#!/usr/bin/env python3
"""
Sustained stored messages per second through the real chat service.

One member says messages as fast as the service acknowledges them (a bounded
number in flight, like many clients waiting for acks) into a room with a few
listening members, for DURATION seconds, with the SQLite store (the default)
on a file in a temporary folder. A LoopingCall every 5 ms measures reactor
stalls: the longest gap between two of its ticks beyond 5 ms is the worst
moment the reactor could not serve anyone.

    python3 benchmarks/store_bench.py [--duration 10] [--inflight 2000] [--burst 200] [--sync full|normal]
                                      [--store sqlite|memory] [--tree DIR]

Prints one JSON line with the results.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time

from twisted.internet import defer, task
from zope.interface import implementer

# --tree DIR (or $TWISTED_CHAT_TREE): measure the twisted_chat package in DIR
# instead of this checkout's, e.g. an older version for a before/after figure
_tree = os.environ.get("TWISTED_CHAT_TREE")
if "--tree" in sys.argv:
    _tree = sys.argv[sys.argv.index("--tree") + 1]
sys.path.insert(0, os.path.abspath(_tree) if _tree else os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from twisted_chat.core.interfaces import IChatClient  # noqa: E402
from twisted_chat.stores.memory import MemoryStore  # noqa: E402
from twisted_chat.core.service import ChatService  # noqa: E402
from twisted_chat.stores.sqlite import SQLiteStore  # noqa: E402


@implementer(IChatClient)
class Listener:
    kind = "bench"

    def __init__(self) -> None:
        self.received = 0

    def deliver(self, event: object) -> None:
        self.received += 1

    def close(self, reason: str, reconnectAfter: float | None = None) -> None:
        pass


gcStats = {"count": 0, "worst": 0.0, "start": 0.0}


def _gcWatch(phase: str, info: dict[str, int]) -> None:
    # full collections walk every tracked object: the usual cause of a long stall
    if info.get("generation") != 2:
        return
    if phase == "start":
        gcStats["start"] = time.perf_counter()
    else:
        gcStats["count"] += 1
        gcStats["worst"] = max(gcStats["worst"], time.perf_counter() - gcStats["start"])


gc.callbacks.append(_gcWatch)


def main(reactor: object, args: argparse.Namespace) -> defer.Deferred[None]:
    folder = tempfile.mkdtemp(prefix="store-bench-")
    if args.store == "sqlite":
        store = SQLiteStore(os.path.join(folder, "bench.sqlite3"), reactor, sync=args.sync, retainMessages=10**9)
    else:
        store = MemoryStore(retain=10**6)
    service = ChatService(store=store, clock=reactor, pruneInterval=0)  # type: ignore[arg-type]
    service.startService()
    if args.freeze:
        # as the daemon does once it runs (see twisted_chat.daemon.control): the objects
        # of start-up (modules, classes, functions) leave the collector's
        # view, so a full collection walks only what was made since
        gc.collect()
        gc.freeze()
    speaker = service.connect(Listener(), nick="speaker")
    speaker.join("#bench")
    listeners = [Listener() for _ in range(args.listeners)]
    for i, listener in enumerate(listeners):
        service.connect(listener, nick="l%d" % i).join("#bench")

    worst = [0.0]
    stalls: list[tuple[float, float]] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gap = now - last[0] - 0.005
        if gap > 0.02:
            stalls.append((round(now - start, 2), round(gap * 1000, 1)))
        worst[0] = max(worst[0], gap)
        last[0] = now

    ticker = task.LoopingCall(tick)
    ticker.clock = reactor  # type: ignore[assignment]
    ticker.start(0.005)

    done: defer.Deferred[None] = defer.Deferred()
    state = {"acked": 0, "sent": 0, "stop": False, "inflight": 0, "pumping": False, "scheduled": False}
    start = time.perf_counter()
    cpu0 = time.process_time()

    def acked(_: object) -> None:
        state["acked"] += 1
        state["inflight"] -= 1
        if not state["pumping"]:
            pump()

    def pump() -> None:
        if state["stop"]:
            if state["inflight"] == 0 and not done.called:
                done.callback(None)
            return
        state["pumping"] = True
        # At most --burst requests per reactor turn, as if they came from many
        # connections read in one turn; the rest in the next turns.
        n = 0
        while state["inflight"] < args.inflight and not state["stop"] and n < args.burst:
            n += 1
            state["sent"] += 1
            state["inflight"] += 1
            speaker.say(
                "bench message %d with some text in it" % state["sent"], ref=str(state["sent"]) if args.refs else None
            ).addCallback(acked)
        state["pumping"] = False
        if state["inflight"] == 0 or (n == args.burst and state["inflight"] < args.inflight):
            # acknowledged synchronously (memory store), or more room: go on next turn
            if not state["scheduled"]:
                state["scheduled"] = True
                reactor.callLater(0, later)  # type: ignore[attr-defined]

    def later() -> None:
        state["scheduled"] = False
        pump()

    def stop() -> None:
        state["stop"] = True

    reactor.callLater(args.duration, stop)  # type: ignore[attr-defined]
    pump()

    @defer.inlineCallbacks
    def finish(_: object) -> object:
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        ticker.stop()
        yield service.stopService()
        result = {
            "benchmark": "store",
            "store": args.store,
            "sync": args.sync if args.store == "sqlite" else None,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": "%s, %d cores, Python %s" % (platform.machine(), os.cpu_count() or 0, platform.python_version()),
            "duration_s": round(elapsed, 2),
            "acked": state["acked"],
            "stored_per_s": round(state["acked"] / elapsed),
            "batches": getattr(store, "batches", None),
            "avg_batch": round(state["acked"] / store.batches, 1) if getattr(store, "batches", 0) else None,
            "worst_reactor_stall_ms": round(worst[0] * 1000, 1),
            "cpu_s_all_threads": round(cpu, 2),
            "deliveries": sum(listener.received for listener in listeners),
            "inflight": args.inflight,
            "burst": args.burst,
            "refs": args.refs,
            "gc_freeze": args.freeze,
            "gc_gen2_collections": gcStats["count"],
            "gc_gen2_worst_ms": round(gcStats["worst"] * 1000, 1),
            "tree": os.path.dirname(os.path.dirname(sys.modules[SQLiteStore.__module__].__file__ or "")),
            "stalls_over_20ms": stalls[:20],
        }
        print(json.dumps(result))
        return None

    return done.addCallback(finish)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--inflight", type=int, default=2000)
    parser.add_argument("--listeners", type=int, default=10)
    parser.add_argument("--burst", type=int, default=200, help="requests made per reactor turn at most")
    parser.add_argument(
        "--no-freeze", dest="freeze", action="store_false", help="do not gc.freeze() the start-up objects"
    )
    parser.add_argument(
        "--no-refs", dest="refs", action="store_false", help="say without client refs (as line-chat users do)"
    )
    parser.add_argument("--sync", choices=["full", "normal"], default="full")
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument("--tree", help="a folder holding the twisted_chat package to measure (default: this checkout)")
    task.react(main, [parser.parse_args()])
