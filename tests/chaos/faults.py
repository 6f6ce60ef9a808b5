"""
The faults the harness injects, at moments drawn from the seed. Each is a
coroutine that hurts the servers, waits as long as the fault lasts, heals
it and returns a short description; L{FAULTS} says which topology gets
which.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
from dataclasses import dataclass
from random import Random
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from tests.chaos.topology import STOP_TIMEOUT, Node, Single, Topology, Workers2

if TYPE_CHECKING:
    from tests.chaos.journal import Journal

#: seconds: the short and the long Redis stall; the long one is beyond the
#: documented 10 s command timeout
SHORT_STALL = 5.0
LONG_STALL = 11.0
#: seconds the disk stays full
DISK_FULL = 6.0


@dataclass
class Fault:
    name: str
    run: Callable[[Topology, Random, "Journal"], Awaitable[Any]]
    topologies: tuple[str, ...]


@dataclass
class Injected:
    name: str
    start: float
    end: float
    detail: str
    #: wiped Redis contents (restart empty): room -> stored bodies
    wiped: dict[str, list[dict[str, Any]]] | None = None


def _node(topology: Topology, rng: Random) -> Node:
    return rng.choice(topology.nodes)


async def kill9(topology: Topology, rng: Random, journal: Journal) -> str:
    """
    kill -9 of a daemon (single) or a node (redis2), restarted on the same
    store; for workers2, kill -9 of the parent: its workers stop, and it is
    started again.
    """
    node = _node(topology, rng)
    await node.process.kill()
    await asyncio.sleep(rng.uniform(0.2, 1.5))
    await node.start()
    return "kill -9 %s, restarted" % (node.name,)


async def killWorker(topology: Topology, rng: Random, journal: Journal) -> str:
    """
    kill -9 of one worker; the parent restarts it.
    """
    assert isinstance(topology, Workers2)
    parent = topology.nodes[0].process
    pids = topology.workerPids()
    index = rng.choice(sorted(pids))
    mark = len(parent.lines)
    try:
        os.kill(pids[index], signal.SIGKILL)
    except ProcessLookupError:
        return "worker %d was already gone" % (index,)
    await parent.waitFor(r"\] worker %d started \(pid (\d+)\)" % (index,), 40, since=mark)
    await parent.waitFor(r"\[w%d:[^\]]*\] node \S+: joined the cluster" % (index,), 40, since=mark)
    return "kill -9 worker %d (pid %d); the parent restarted it" % (index, pids[index])


async def sigterm(topology: Topology, rng: Random, journal: Journal) -> str:
    """
    SIGTERM of a daemon (clients are told to reconnect), then started again.
    """
    node = _node(topology, rng)
    code = await node.process.terminate(STOP_TIMEOUT)
    await node.start()
    return "SIGTERM %s (exit %s), restarted" % (node.name, code)


async def redisRestart(topology: Topology, rng: Random, journal: Journal) -> str:
    """
    kill -9 of redis-server, started again on its append-only file.
    """
    redis = topology.redis
    assert redis is not None
    await redis.kill()
    await asyncio.sleep(rng.uniform(0.2, 2.0))
    await redis.start()
    return "Redis killed, restarted with its AOF"


async def redisEmpty(topology: Topology, rng: Random, journal: Journal) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """
    Redis restarted EMPTY: what it held is read first (XRANGE, kept for the
    checker as "lost to an empty Redis"), then it is killed, its files
    removed, and started again with nothing.
    """
    redis = topology.redis
    assert redis is not None
    wiped = await asyncio.get_running_loop().run_in_executor(None, redis.streams)
    await redis.kill()
    redis.wipe()
    await asyncio.sleep(rng.uniform(0.2, 1.0))
    await redis.start()
    return "Redis restarted EMPTY (%d messages gone)" % (sum(len(v) for v in wiped.values()),), wiped


def stall(seconds: float) -> Callable[[Topology, Random, "Journal"], Awaitable[str]]:
    async def run(topology: Topology, rng: Random, journal: Journal) -> str:
        redis = topology.redis
        assert redis is not None
        redis.pause()
        try:
            await asyncio.sleep(seconds)
        finally:
            redis.resume()
        return "Redis stopped (SIGSTOP) for %g s" % (seconds,)

    return run


async def clientCut(topology: Topology, rng: Random, journal: Journal) -> str:
    """
    Every client connection cut at once (the proxies abort them).
    """
    n = sum(node.lineProxy.cut() + node.webProxy.cut() for node in topology.nodes)
    return "%d client connections cut" % (n,)


async def redisCut(topology: Topology, rng: Random, journal: Journal) -> str:
    """
    Every daemon-Redis connection cut at once.
    """
    assert topology.redis is not None
    n = topology.redis.proxy.cut()
    return "%d Redis connections cut" % (n,)


async def diskFull(topology: Topology, rng: Random, journal: Journal) -> str:
    """
    The database's file system fills up (a ballast file takes every free
    byte) for L{DISK_FULL} s, then the ballast is deleted.
    """
    assert isinstance(topology, Single)
    if not topology.mounted:
        return "skipped: no tmpfs (%s)" % (topology.mountError,)
    ballast = topology.storeDir / "ballast"
    written = 0
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 16, 4096, 512):
            chunk = b"\0" * size
            while True:
                try:
                    written += os.write(fd, chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    try:
        await asyncio.sleep(DISK_FULL)
    finally:
        try:
            ballast.unlink()
        except OSError:
            pass
    return "disk full for %g s (ballast %d KiB)" % (DISK_FULL, written // 1024)


FAULTS: list[Fault] = [
    Fault("kill9", kill9, ("single", "redis2")),
    Fault("kill9-worker", killWorker, ("workers2",)),
    Fault("sigterm", sigterm, ("single", "redis2", "workers2")),
    Fault("redis-restart", redisRestart, ("redis2", "workers2")),
    Fault("redis-empty", redisEmpty, ("redis2", "workers2")),
    Fault("redis-stall-5", stall(SHORT_STALL), ("redis2", "workers2")),
    Fault("redis-stall-12", stall(LONG_STALL), ("redis2", "workers2")),
    Fault("client-cut", clientCut, ("single", "redis2", "workers2")),
    Fault("redis-cut", redisCut, ("redis2", "workers2")),
    Fault("disk-full", diskFull, ("single",)),
]


def applicable(topology: str) -> list[Fault]:
    return [f for f in FAULTS if topology in f.topologies]

