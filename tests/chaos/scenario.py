"""
One run of the harness on one topology: start the servers and the clients,
chat (with a write-load phase) while faults are injected at moments drawn
from the seed, heal everything, give everyone a bounded quiet phase to
catch up, stop, read the store and check the invariants.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos import checker
from tests.chaos.clients import (
    LOAD_ROOM,
    Blaster,
    Client,
    Context,
    Joiner,
    JsonUser,
    LineUser,
    Paster,
    SioHub,
    SioJsonUser,
    SioTextUser,
    TerminalUser,
    TextUser,
)
from tests.chaos.faults import Injected, applicable
from tests.chaos.journal import Journal
from tests.chaos.topology import Topology, make

#: seconds: the clients connect before the faults start
WARMUP = 3.0
#: seconds: bound on the quiet phase (everyone catches up)
QUIET = 15.0
#: seconds: the CI profile's write-load phase
CI_LOAD = 6.0


@dataclass
class Outcome:
    topology: str
    seed: int
    profile: str
    seconds: float
    faults: list[Injected]
    result: checker.Result
    folder: Path
    notes: list[str] = field(default_factory=list)
    error: str = ""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error and not self.result.violations


def roster(ctx: Context) -> list[Client]:
    """
    Every kind of client, spread over the nodes.
    """
    return [
        LineUser("line1", ctx, 0, ["#lobby", "#dev"]),
        Paster("paste1", ctx, 1, ["#lobby"]),
        TextUser("text1", ctx, 1, ["#lobby", "#ops"]),
        JsonUser("json1", ctx, 0, ["#lobby", "#dev"]),
        JsonUser("json2", ctx, 1, ["#lobby", "#ops"]),
        SioJsonUser("siojson1", ctx, 0, ["#lobby", "#dev"]),
        SioTextUser("siotext1", ctx, 1, ["#lobby"]),
        TerminalUser("term1", ctx, 0, ["#lobby"]),
        Blaster("blast1", ctx, 0, [LOAD_ROOM]),
        Blaster("blast2", ctx, 0, [LOAD_ROOM]),
        Joiner("joiner1", ctx, 1, []),
        Joiner("joiner2", ctx, 1, []),
    ]


async def run(topologyName: str, seed: int, profile: str, duration: float, folder: Path) -> Outcome:
    """
    One scenario. C{profile} "ci": every fault that applies once, in an
    order and at moments drawn from C{seed}; "soak": faults drawn at random
    for C{duration} seconds.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random("%s:%s:faults" % (seed, topologyName))
    journal = Journal()
    topology = make(topologyName, folder)
    faults: list[Injected] = []
    ctx = Context(journal, [], seed, topologyName)
    ctx.folder = folder
    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()
    outcome = Outcome(topologyName, seed, profile, 0.0, faults, checker.Result(), folder, duration=duration)
    endOfQuiet = 0.0
    try:
        if os.environ.get("CI") == "true" and topologyName == "single" and not getattr(topology, "mounted", True):
            raise RuntimeError("cannot mount a tmpfs for the disk-full fault: %s" % (topology.mountError,))  # type: ignore[attr-defined]
        await topology.start()
        ctx.nodes = topology.nodes
        ctx.sio = SioHub(folder / "sio-driver.log")
        await ctx.sio.start()
        clients = roster(ctx)
        ctx.chatting.set()
        tasks = [asyncio.create_task(c.run(), name=c.name) for c in clients]
        await asyncio.sleep(WARMUP)
        await _faults(topology, ctx, rng, profile, duration, faults)
        # quiet: faults healed, workload stopped, everyone catches up
        ctx.loading.clear()
        ctx.chatting.clear()
        await _quiet(topology, journal)
        endOfQuiet = journal.now()
        ctx.stopping.set()
        await asyncio.wait(tasks, timeout=20)
    except Exception as e:
        outcome.error = "%s: %s" % (type(e).__name__, e)
        endOfQuiet = endOfQuiet or journal.now()
    finally:
        ctx.stopping.set()
        for t in tasks:
            if not t.done():
                t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        if ctx.sio is not None:
            await ctx.sio.close()
        stored: dict[str, list[tuple[str, int, str]]] = {}
        epoch = None
        try:
            await _stopDaemons(topology)
            stored, epoch = await asyncio.get_running_loop().run_in_executor(None, topology.stored)
        except Exception as e:
            outcome.error = outcome.error or "reading the store: %s: %s" % (type(e).__name__, e)
        finally:
            await topology.stop()
    logs = {p.name + ("" if i == 0 else str(i)): p.lines for i, p in enumerate(topology.daemons())}
    try:
        busDown = {
            p.name: checker.busDown(p.lines, [t - journal.t0 for t in p.stamps]) for p in topology.daemons()
        }
        outcome.result = checker.check(journal, stored, epoch, faults, logs, endOfQuiet, busDown)
    except Exception:  # a bug of the checker: the run is still reported
        import traceback

        outcome.error = outcome.error or "the checker failed: %s" % (traceback.format_exc(limit=4),)
    outcome.seconds = time.monotonic() - started
    outcome.notes = journal.notes
    _dump(outcome, journal, stored)
    return outcome


async def _faults(topology: Topology, ctx: Context, rng: random.Random, profile: str, duration: float, faults: list[Injected]) -> None:
    journal = ctx.journal
    available = applicable(topology.name)
    if profile == "ci":
        # the write load first (a bug that needs a steady write rate, such
        # as duplicates on join, shows only while nothing else stalls it),
        # then every fault
        plan = list(available)
        rng.shuffle(plan)
        loadAt = rng.uniform(0, 2)
        loadFor = CI_LOAD
        end = None
    else:
        plan = []
        loadAt = rng.uniform(5, 30)
        loadFor = 15.0
        end = journal.now() + duration
    loadStart = journal.now() + loadAt
    loader = asyncio.create_task(_loadPhases(ctx, loadStart, loadFor, profile, end))
    if profile == "ci":
        await asyncio.wait_for(asyncio.shield(loader), loadAt + loadFor + 10)
    try:
        while True:
            if profile == "ci":
                if not plan:
                    break
                fault = plan.pop(0)
            else:
                assert end is not None
                if journal.now() >= end:
                    break
                fault = rng.choice(available)
            await asyncio.sleep(rng.uniform(0.8, 2.0) if profile == "ci" else rng.uniform(3, 12))
            start = journal.now()
            result = await asyncio.wait_for(fault.run(topology, rng, journal), 90)
            wiped = None
            if isinstance(result, tuple):
                result, wiped = result
            injected = Injected(fault.name, start, journal.now(), result, wiped)
            if fault.name == "disk-full":
                errors = sum(1 for r in journal.requests if r.answer == "error" and "server-error" in r.detail and start <= (r.answered or 0) <= injected.end + 1)
                injected.detail += "; %d server-error answers" % (errors,)
            faults.append(injected)
        # a little more chat after the last fault, and the load phase done
        await asyncio.sleep(2.0)
    finally:
        loader.cancel()


async def _loadPhases(ctx: Context, first: float, length: float, profile: str, end: float | None) -> None:
    journal = ctx.journal
    at = first
    while True:
        await asyncio.sleep(max(0.0, at - journal.now()))
        ctx.loading.set()
        await asyncio.sleep(length)
        ctx.loading.clear()
        if profile == "ci" or end is None or journal.now() + 45 > end:
            return
        at = journal.now() + 45


async def _quiet(topology: Topology, journal: Journal) -> None:
    """
    Wait (at most L{QUIET} s) until every request is answered (or its
    connection gone) and every member has seen its rooms' last message.
    """
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + QUIET
    await asyncio.sleep(2.0)
    while time.monotonic() < deadline:
        try:
            stored, epoch = await loop.run_in_executor(None, topology.stored)
        except Exception:
            await asyncio.sleep(1.0)
            continue
        if _caughtUp(journal, stored, epoch):
            return
        await asyncio.sleep(1.0)


def _caughtUp(journal: Journal, stored: dict[str, list[tuple[str, int, str]]], epoch: str | None) -> bool:
    for r in journal.requests:
        if r.answered is None:
            c = journal.connections.get(r.conn)
            if c is not None and c.closed is None:
                return False
    lastIds = {}
    for room, rows in stored.items():
        ids = [i for e, i, _ in rows if e == epoch]
        if ids:
            lastIds[room] = max(ids)
    for (conn, room), ep in journal.open.items():
        want = lastIds.get(room)
        if want is None:
            continue
        seen = [e.id for e in ep.entries if e.id is not None and e.epoch == epoch]
        if not seen:
            # text renderings: compare tokens with the store
            tokens = {e.token for e in ep.entries if e.token}
            lastText = [t for e_, i, t in stored.get(room, []) if e_ == epoch and i == want]
            if lastText and any(tok and tok in lastText[0] for tok in tokens):
                continue
            return False
        if max(seen) < want:
            return False
    return True


async def _stopDaemons(topology: Topology) -> None:
    for node in topology.nodes:
        await node.process.terminate()


def _dump(outcome: Outcome, journal: Journal, stored: dict[str, Any]) -> None:
    """
    The journal and the store of the run as JSON next to the logs, for a
    closer look at a failure.
    """
    import json
    from dataclasses import asdict

    data = {
        "topology": outcome.topology,
        "seed": outcome.seed,
        "faults": [{k: v for k, v in asdict(f).items() if k != "wiped"} for f in outcome.faults],
        "violations": [asdict(v) for v in outcome.result.violations],
        "requests": [
            {k: v for k, v in asdict(r).items() if k != "resendOf"} | {"resendOf": r.resendOf.token if r.resendOf else None}
            for r in journal.requests
        ],
        "episodes": [asdict(e) for e in journal.episodes],
        "connections": [asdict(c) for c in journal.connections.values()],
        "notes": journal.notes,
        "stored": stored,
    }
    with open(outcome.folder / "journal.json", "w") as f:
        json.dump(data, f, default=str)
