"""
Cluster-wide connection limits (L{twisted_chat.cluster.limits}): first
without Redis, on a fake clock (what a node does while Redis cannot be
reached); then nodes in this process on a real C{redis-server}, each
admission through L{Admission} as the front-ends use it. The daemons'
end-to-end tests are in tests/e2e/test_e2e_cluster_limits.py.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from twisted_chat.cluster.commands import Backpressure, Commands
from twisted_chat.cluster.limits import ClusterCount, RedisCounts
from twisted_chat.core.errors import ChatError
from twisted_chat.core.limits import Admission

HOST = "203.0.113.7"


def admitted(admission: Admission, host: str = HOST) -> bool | str:
    """
    Admit a connection from C{host} whose answer is known now: True, or
    the code of its refusal.
    """
    outcome: list[object] = []
    try:
        waiting = admission.admitLater(host)
    except ChatError as e:
        return e.code
    if waiting is None:
        return True
    waiting.addCallbacks(lambda _: outcome.append(True), lambda f: outcome.append(f.value.code))
    assert outcome, "the answer is not known yet"
    return outcome[0]  # type: ignore[return-value]


# -- without Redis --------------------------------------------------------


def unreachable(clock: Clock) -> RedisCounts:
    """
    A node's counts whose Redis connection is down.
    """
    redis = Commands("chat", clock, Backpressure("n"))
    return RedisCounts(redis, "n", clock, lambda: True)


class TheMachine:
    """
    A C{--workers} parent's count (the L{MachineCount} the daemon gives a
    worker), here a dictionary: it admits up to its limits.
    """

    def __init__(self) -> None:
        self.perHost: dict[str, int] = {}
        self.connected = True

    def ask(self, host: str, maxConnections: int, maxPerHost: int) -> Deferred[str]:
        if maxPerHost and self.perHost.get(host, 0) >= maxPerHost:
            return succeed("too-many-connections")
        self.tell(host)
        return succeed("")

    def tell(self, host: str) -> None:
        self.perHost[host] = self.perHost.get(host, 0) + 1

    def release(self, host: str) -> None:
        self.perHost[host] -= 1


def test_unreachableRedisLimitsTheNode() -> None:
    """
    While Redis is unreachable, a node alone holds the limits for its own
    connections (it fails open to the node, not to no limit at all), and
    says so once in its log; a released connection frees its place.
    """
    clock = Clock()
    counts = unreachable(clock)
    admission = Admission(maxPerHost=2)
    admission.machine = ClusterCount(counts)
    with capturedLogs() as events:
        outcomes = [admitted(admission) for _ in range(3)]
    assert outcomes == [True, True, "too-many-connections"]
    said = [formatEvent(e) for e in events if "cluster-wide" in formatEvent(e)]
    assert said == ["cluster-wide connection limits: Redis is unreachable; the limits hold for this node until it is back"]
    admission.release(HOST)
    clock.advance(0)
    assert admitted(admission) is True
    assert counts.share.perHost == {HOST: 2}


def test_unreachableRedisLimitsTheMachine() -> None:
    """
    In a worker, while Redis is unreachable, the machine's count decides
    (so --workers 3 does not triple the limit meanwhile); the worker's own
    share is kept, to be published once Redis is back.
    """
    counts = unreachable(Clock())
    machine = TheMachine()
    admission = Admission(maxPerHost=2)
    admission.machine = ClusterCount(counts, machine)
    machine.perHost[HOST] = 1  # (another worker's)
    assert [admitted(admission) for _ in range(2)] == [True, "too-many-connections"]
    assert (machine.perHost, counts.share.perHost) == ({HOST: 2}, {HOST: 1})
    admission.release(HOST)
    assert (machine.perHost, counts.share.perHost) == ({HOST: 1}, {})


def test_redisFailingAnAdmissionFallsBack() -> None:
    """
    An admission Redis does not answer (a timeout) is decided by the
    machine's count, and the node's whole share is published again next
    time (whether the script ran is not known).
    """

    class Failing(RedisCounts):
        @property
        def connected(self) -> bool:
            return True

        def ask(self, host: str, maxConnections: int, maxPerHost: int) -> Deferred[str]:
            return fail(TimeoutError("no answer"))

    counts = Failing(Commands("chat", Clock(), Backpressure("n")), "n", Clock(), lambda: True)
    machine = TheMachine()
    admission = Admission(maxPerHost=1)
    admission.machine = ClusterCount(counts, machine)
    assert [admitted(admission) for _ in range(2)] == [True, "too-many-connections"]
    assert counts.share.perHost == {HOST: 1}


def test_noLimitCountsWithoutAsking() -> None:
    """
    Without a limit, a connection is counted in the node's share and sent
    with the next refresh: nothing waits for Redis.
    """
    counts = unreachable(Clock())
    admission = Admission()
    admission.machine = ClusterCount(counts)
    assert admission.admitLater(HOST) is None
    assert (counts.share.perHost, counts.pending) == ({HOST: 1}, {HOST: 1})
    admission.release(HOST)
    assert (counts.share.perHost, counts.pending) == ({}, {HOST: 0})


# -- on a real Redis ------------------------------------------------------


async def limited(nodes: Any, name: str, maxPerHost: int = 0, maxConnections: int = 0, ttl: float = 5.0) -> Any:
    """
    A node whose admission counts for the cluster (refreshed only when a
    test says so), as C{node.admission}, C{node.counts}.
    """
    node = await nodes(name, ttl=ttl)
    admission = Admission(maxConnections=maxConnections, maxPerHost=maxPerHost)
    settings = admission.settings
    counts = RedisCounts(node.cluster.redis, name, node.cluster.clock, lambda: bool(settings.maxPerHost))
    counts.ttl = ttl
    admission.machine = ClusterCount(counts)
    node.admission, node.counts = admission, counts
    return node


async def admit(node: Any, host: str = HOST) -> bool | str:
    try:
        waiting = node.admission.admitLater(host)
        if waiting is not None:
            await waiting
    except ChatError as e:
        return e.code
    return True


async def redis(node: Any, *command: str) -> Any:
    return await node.cluster.redis.timed(node.cluster.redis.handler.execute_command(*command))


async def sums(node: Any) -> tuple[str | None, str | None]:
    """
    The cluster's count in Redis: in all, and from L{HOST}.
    """
    total = await redis(node, "GET", "twisted-chat:limits:total")
    host = await redis(node, "GET", "twisted-chat:limits:host:" + HOST)
    return total, host


@pytest_twisted.ensureDeferred
async def test_limitHoldsForTheCluster(nodes: Any) -> None:
    """
    --max-per-ip 3 on two nodes: of connections from one address spread
    over both, exactly 3 are admitted; one released on one node makes room
    on the other at once.
    """
    a, b = await limited(nodes, "a", maxPerHost=3), await limited(nodes, "b", maxPerHost=3)
    outcomes = [await admit(node) for node in (a, b, a, b, a, b)]
    assert outcomes == [True, True, True, "too-many-connections", "too-many-connections", "too-many-connections"]
    assert await sums(a) == ("3", "3")
    a.admission.release(HOST)
    # (sent after this turn of the reactor, on a's connection: wait for it)
    await a.counts.refresh()
    assert await admit(b) is True
    assert await admit(a) == "too-many-connections"
    assert await sums(b) == ("3", "3")


@pytest_twisted.ensureDeferred
async def test_maxConnectionsForTheCluster(nodes: Any) -> None:
    """
    --max-connections 2 on two nodes, from any addresses.
    """
    a, b = await limited(nodes, "a", maxConnections=2), await limited(nodes, "b", maxConnections=2)
    assert [await admit(a, "10.0.0.1"), await admit(b, "10.0.0.2"), await admit(a, "10.0.0.3")] == [True, True, "server-full"]


@pytest_twisted.ensureDeferred
async def test_noRoundTripWithoutALimit(nodes: Any) -> None:
    """
    Without a limit no admission runs a command in Redis: the node's share
    goes there with its next refresh, one script for all of them.
    """
    a = await limited(nodes, "a")
    assert [await admit(a) for _ in range(20)] == [True] * 20
    a.admission.release(HOST)
    # (nothing was sent: not even the node's share, made by its first script)
    assert await redis(a, "EXISTS", "twisted-chat:limits:node:a") == 0
    await a.counts.refresh()
    assert await sums(a) == ("19", "19")


@pytest_twisted.ensureDeferred
async def test_anyAddress(nodes: Any) -> None:
    """
    Connections from any address are counted, an empty one (a UNIX
    socket's client) and ones that look like the share's own fields too.
    """
    a = await limited(nodes, "a", maxPerHost=1)
    for host in ("", "*", "#", "h"):
        assert [await admit(a, host), await admit(a, host)] == [True, "too-many-connections"]
    assert await redis(a, "GET", "twisted-chat:limits:total") == "4"
    for host in ("", "*", "#", "h"):
        a.admission.release(host)
    await a.counts.refresh()
    assert await redis(a, "GET", "twisted-chat:limits:total") is None


@pytest_twisted.ensureDeferred
async def test_deadNodesShareIsReleased(nodes: Any) -> None:
    """
    A node that stops refreshing (killed) keeps its share only until its
    alive key expires; the next refresh of another node then takes it off
    the cluster's count, and says so.
    """
    a, b = await limited(nodes, "a", maxPerHost=3), await limited(nodes, "b", maxPerHost=3)
    assert [await admit(b), await admit(b), await admit(a)] == [True, True, True]
    ttl = await redis(b, "PTTL", "twisted-chat:limits:alive:b")
    assert 0 < int(ttl) <= 5000
    assert await admit(a) == "too-many-connections"
    # (b is killed: its alive key is gone, as once its time is up)
    await redis(a, "DEL", "twisted-chat:limits:alive:b")
    with capturedLogs() as events:
        await a.counts.refresh()
    assert "cluster-wide connection limits: node b is gone: its 2 connections are released" in [
        formatEvent(e) for e in events
    ]
    assert await sums(a) == ("1", "1")
    assert [await admit(a), await admit(a), await admit(a)] == [True, True, "too-many-connections"]


@pytest_twisted.ensureDeferred
async def test_redisLostItsData(nodes: Any) -> None:
    """
    Redis restarted empty (FLUSHALL), or from an old snapshot (a share of
    an earlier generation): each node publishes its share again at its
    next refresh or admission, and the sums are right again.
    """
    a, b = await limited(nodes, "a", maxPerHost=4), await limited(nodes, "b", maxPerHost=4)
    assert [await admit(a), await admit(b), await admit(b)] == [True] * 3
    await redis(a, "FLUSHALL")
    assert await sums(a) == (None, None)
    await a.counts.refresh()
    assert await admit(b) is True
    assert await sums(a) == ("4", "4")
    assert await admit(a) == "too-many-connections"
    # an old snapshot: b's share as it was long ago, counted in the sums
    key = "twisted-chat:limits:node:b"
    await redis(b, "HSET", key, "#", "old.1", "*", "1", "h" + HOST, "1")
    await redis(b, "SET", "twisted-chat:limits:total", "2")
    await redis(b, "SET", "twisted-chat:limits:host:" + HOST, "2")
    await b.counts.refresh()
    assert await sums(a) == ("4", "4")


@pytest_twisted.ensureDeferred
async def test_stoppedNodeLeaves(nodes: Any) -> None:
    """
    A node that stops takes its share off at once.
    """
    a, b = await limited(nodes, "a", maxPerHost=2), await limited(nodes, "b", maxPerHost=2)
    assert [await admit(b), await admit(a)] == [True, True]
    b.counts.startService()
    await b.counts.stopService()
    assert await sums(a) == ("1", "1")
    assert await admit(a) is True
