"""
A worker near its descriptor limit stops accepting from the shared
listening sockets (so the kernel gives the connections to the other
workers) and accepts again once it has closed some.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from tests.daemon.test_tap import REDIS, _FakeCluster, _ReadingPort, _ReadingReactor, fakeRedis, parse  # noqa: F401
from twisted_chat.daemon.app import makeService
from twisted_chat.daemon.descriptors import DescriptorGuard, openDescriptors
from twisted_chat.daemon.listeners import Listener


class _Recorder:
    """
    A throttle's pause and resume, as calls recorded in order.
    """

    def __init__(self, guard: DescriptorGuard) -> None:
        self.calls: list[str] = []
        guard.addThrottle(lambda: self.calls.append("pause"), lambda: self.calls.append("resume"))


def _guard(counts: list[int], limit: int | None = 1000) -> tuple[DescriptorGuard, Clock]:
    clock = Clock()
    guard = DescriptorGuard(clock, count=lambda: counts[-1], what="worker 0")
    guard.limit, guard.reserve, guard.hysteresis = limit, 100, 50
    return guard, clock


def test_pausesAtHighWaterResumesBelowLowWater() -> None:
    """
    Accepting stops once the open descriptors reach the limit minus the
    reserve, stays stopped until fewer than the high-water mark minus the
    hysteresis are open, then resumes; each change is logged.
    """
    counts = [10]
    guard, clock = _guard(counts)
    assert (guard.highWater, guard.lowWater) == (900, 850)
    throttle = _Recorder(guard)
    with capturedLogs() as events:
        guard.startService()
        counts.append(899)
        clock.advance(guard.every)
        assert throttle.calls == []
        counts.append(900)
        clock.advance(guard.every)
        assert throttle.calls == ["pause"]
        for n in (950, 870, 850):
            counts.append(n)
            clock.advance(guard.every)
        assert throttle.calls == ["pause"]
        counts.append(849)
        clock.advance(guard.every)
        assert throttle.calls == ["pause", "resume"]
        guard.stopService()
    assert [formatEvent(e) for e in events] == [
        "worker 0: 900 of 1000 file descriptors open: not accepting connections until fewer than 850 are",
        "worker 0: 849 file descriptors open: accepting connections again",
    ]
    assert clock.getDelayedCalls() == []


def test_pausesWithinABurstOfAccepts() -> None:
    """
    A burst of connections accepted between two timed counts (in one
    reactor iteration) stops at the high-water mark: each accept is
    counted, and the descriptors are counted again once the estimate
    reaches the mark; connections that closed meanwhile leave room.
    """
    opened = [800]
    guard, clock = _guard(opened)
    throttle = _Recorder(guard)
    guard.startService()
    factory = guard.counting(ServerFactory.forProtocol(Protocol))
    address = IPv4Address("TCP", "127.0.0.1", 1234)
    for _ in range(60):
        # (as many closed as were accepted: the estimate overshoots)
        factory.buildProtocol(address)
    assert (throttle.calls, guard.open) == ([], 800)
    for _ in range(200):
        opened.append(opened[-1] + 1)
        assert isinstance(factory.buildProtocol(address), Protocol)
        if throttle.calls:
            break
    assert (throttle.calls, opened[-1]) == (["pause"], 900)
    guard.stopService()


def test_reserveAtMostAQuarterOfTheLimit() -> None:
    """
    A small limit keeps three quarters of it usable.
    """
    guard, _ = _guard([0], limit=256)
    assert (guard.highWater, guard.lowWater) == (192, 160)


def test_throttleAddedWhilePausedStartsPaused() -> None:
    """
    A listener that starts accepting while the worker is at its high-water
    mark is paused at once.
    """
    counts = [950]
    guard, clock = _guard(counts)
    guard.startService()
    throttle = _Recorder(guard)
    assert throttle.calls == ["pause"]
    guard.stopService()


def test_noLimitNoGuard() -> None:
    """
    Without a descriptor limit there is nothing to count.
    """
    counts = [10**6]
    guard, clock = _guard(counts, limit=None)
    throttle = _Recorder(guard)
    guard.startService()
    assert (guard.highWater, clock.getDelayedCalls(), throttle.calls) == (None, [], [])


def test_countingFailsGuardsNoMore() -> None:
    """
    A process that cannot count its descriptors says so once and keeps
    accepting.
    """
    clock = Clock()

    def cannot() -> int:
        raise OSError("no /proc")

    guard = DescriptorGuard(clock, limit=1000, count=cannot, what="worker 1")
    throttle = _Recorder(guard)
    with capturedLogs() as events:
        guard.startService()
        clock.advance(guard.every * 3)
    assert [formatEvent(e) for e in events] == [
        "worker 1: cannot count open descriptors (no /proc): not guarding them"
    ]
    assert (throttle.calls, clock.getDelayedCalls()) == ([], [])


def test_openDescriptorsCounts() -> None:
    """
    The count follows the descriptors this process opens and closes.
    """
    before = openDescriptors()
    r, w = os.pipe()
    try:
        assert openDescriptors() == before + 2
    finally:
        os.close(r)
        os.close(w)
    assert openDescriptors() == before


def test_listenerAcceptsWhileNoThrottleHoldsIt() -> None:
    """
    A listener paused by two throttles (Redis behind, descriptors near the
    limit) accepts again only when both have resumed.
    """
    reactor = _ReadingReactor()
    first, firstClock = _guard([950])
    second, secondClock = _guard([950])
    listener = Listener("line", "tcp:9001", ServerFactory(), reactor, throttles=[first, second])
    listener.startService()
    [port] = reactor.ports
    assert port.reading and listener.accepting
    first.startService()
    second.startService()
    assert not port.reading and not listener.accepting
    first.stopService()
    first.limit = 2000
    first.check()
    assert not port.reading
    second.limit = 2000
    second.check()
    assert port.reading and listener.accepting
    second.stopService()
    listener.stopService()


class _AdoptingReactor(_ReadingReactor):
    """
    A reading reactor whose adopted sockets record whether they accept.
    """

    def adoptStreamPort(self, fileDescriptor: int, addressFamily: Any, factory: Any) -> _ReadingPort:  # type: ignore[override]
        super().adoptStreamPort(fileDescriptor, addressFamily, factory)
        p = _ReadingPort(IPv4Address("TCP", "127.0.0.1", 1234))
        self.ports.append(p)
        return p


def test_workerPausesSharedSocketsNearItsLimit(fakeRedis: list[object]) -> None:
    """
    A worker's shared line and web sockets stop accepting at its
    high-water mark (its metrics port does not: it is its own), the
    cluster's Redis backpressure holds them too.
    """
    sockets = [socket.socket() for _ in range(2)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
        s.listen()
    fds = [os.dup(s.fileno()) for s in sockets]
    try:
        reactor = _AdoptingReactor()
        options = parse(
            "--broker", REDIS, "--line", "tcp:0", "--web", "tcp:0", "--metrics", "tcp:9464",
            "--worker", "1", "--inherit-fds", "line=%d,web=%d" % tuple(fds), "--node-id", "here-w1",
        )
        top = makeService(options, reactor=reactor)
        [guard] = [s for s in top if isinstance(s, DescriptorGuard)]
        counts = [10]
        guard.count, guard.limit = (lambda: counts[-1]), 1000
        top.privilegedStartService()
        top.startService()
        try:
            line, web, metrics = reactor.ports
            [cluster] = _FakeCluster.made
            cluster.ready.callback(None)
            assert (line.reading, web.reading, metrics.reading) == (True, True, True)
            counts.append(guard.highWater or 0)
            reactor.advance(guard.every)
            assert (line.reading, web.reading, metrics.reading) == (False, False, True)
            for pause, _ in cluster.throttles:
                pause()
            counts.append(10)
            reactor.advance(guard.every)
            assert (line.reading, web.reading) == (False, False)
            for _, resume in cluster.throttles:
                resume()
            assert (line.reading, web.reading) == (True, True)
        finally:
            top.stopService()
    finally:
        for s in sockets:
            s.close()


def test_singleProcessHasNoGuard(fakeRedis: list[object]) -> None:
    """
    One process (no --workers parent) has no sibling to leave connections
    to: it keeps accepting (its limits are --max-connections').
    """
    top = makeService(parse("--broker", REDIS, "--line", "tcp:9001"), reactor=_ReadingReactor())
    assert [s for s in top if isinstance(s, DescriptorGuard)] == []

