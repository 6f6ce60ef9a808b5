"""
Tests for the machine-wide connection limits (L{twisted_chat.daemon.machine}
and L{Admission.admitLater}), in memory: each worker's L{Admission} talks to
the parent's real count over a real AMP channel, joined by C{iosim} on a
L{MemoryReactorClock}: no sockets.
"""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test import iosim

from twisted_chat.core.errors import ChatError
from twisted_chat.core.limits import Admission
from twisted_chat.daemon.machine import MachineCounts, ParentCount, _ParentChannel, _WorkerChannel


class Machine:
    """
    A parent's count and its workers, each an L{Admission} whose machine is
    a L{ParentCount} connected to the parent.
    """

    def __init__(self, workers: int, maxConnections: int = 0, maxPerHost: int = 0) -> None:
        self.reactor = MemoryReactorClock()
        self.counts = MachineCounts()
        self.pumps: list[iosim.IOPump] = []
        self.channels: list[_WorkerChannel] = []
        self.admissions: list[Admission] = []
        for _ in range(workers):
            count = ParentCount("/run/peers", self.reactor)
            client = _ParentChannel(count)
            server = _WorkerChannel(self.counts)
            self.channels.append(server)
            self.pumps.append(
                iosim.connect(server, iosim.FakeTransport(server, True), client, iosim.FakeTransport(client, False), greet=False)
            )
            admission = Admission(maxConnections=maxConnections, maxPerHost=maxPerHost)
            admission.machine = count
            self.admissions.append(admission)

    def flush(self) -> None:
        for _ in range(100):
            if not any([pump.flush() for pump in self.pumps]):
                return

    def admit(self, worker: int, host: str) -> bool:
        """
        Admit a connection from C{host} on C{worker}: whether it was.
        """
        outcome: list[object] = []
        waiting = self.admissions[worker].admitLater(host)
        if waiting is None:
            return True
        waiting.addBoth(outcome.append)
        self.flush()
        assert outcome, "no answer from the parent"
        if isinstance(outcome[0], Failure):
            outcome[0].trap(ChatError)
            self.refusal = outcome[0].value
            return False
        return True


def test_maxPerHostForTheMachine() -> None:
    """
    Two workers, --max-per-ip 3: three connections from one address in all,
    whichever worker takes them; the next is refused with the usual
    reason; other addresses are not affected; a release frees a place.
    """
    machine = Machine(2, maxPerHost=3)
    assert [machine.admit(i % 2, "10.0.0.1") for i in range(5)] == [True, True, True, False, False]
    assert isinstance(machine.refusal, ChatError)
    assert machine.refusal.code == "too-many-connections"
    assert machine.refusal.message == "too many connections from your address (at most 3): close one first"
    assert machine.admit(1, "10.0.0.2")
    assert machine.counts.perHost == {"10.0.0.1": 3, "10.0.0.2": 1}
    # a refused connection is not counted by its worker either
    assert machine.admissions[0].perHost == {"10.0.0.1": 2}
    assert machine.admissions[1].perHost == {"10.0.0.1": 1, "10.0.0.2": 1}
    machine.admissions[1].release("10.0.0.1")
    machine.flush()
    assert machine.admit(0, "10.0.0.1")
    assert not machine.admit(1, "10.0.0.1")


def test_maxConnectionsForTheMachine() -> None:
    machine = Machine(3, maxConnections=4)
    assert [machine.admit(i % 3, "10.0.0.%d" % (i,)) for i in range(6)] == [True] * 4 + [False] * 2
    assert machine.refusal.code == "server-full"  # type: ignore[attr-defined]
    assert machine.refusal.message == "the server is full (4 connections): please try again later"  # type: ignore[attr-defined]


def test_noLimitNoWaiting() -> None:
    """
    With both limits off nothing waits for the parent (admitLater answers
    at once), but the parent counts every connection all the same, so a
    limit switched on later (SIGHUP) holds with the right count.
    """
    machine = Machine(2)
    for i in range(4):
        assert machine.admissions[i % 2].admitLater("10.0.0.1") is None
    machine.flush()
    assert machine.counts.perHost == {"10.0.0.1": 4}
    for admission in machine.admissions:
        admission.maxPerHost = 5
    assert machine.admit(0, "10.0.0.1")
    assert not machine.admit(1, "10.0.0.1")


def test_workerGoneReleasesItsShare() -> None:
    """
    A worker's channel closes (the worker was killed): every connection it
    had counted is released at the parent at once; the other worker's stay.
    """
    machine = Machine(2, maxPerHost=4)
    assert [machine.admit(i % 2, "10.0.0.1") for i in range(4)] == [True] * 4
    assert machine.admit(0, "10.0.0.2")
    machine.pumps[0].serverIO.loseConnection()  # type: ignore[no-untyped-call]
    machine.flush()
    assert machine.counts.perHost == {"10.0.0.1": 2}
    assert machine.counts.total == 2
    assert machine.admit(1, "10.0.0.1") and machine.admit(1, "10.0.0.1")
    assert not machine.admit(1, "10.0.0.1")


def test_releaseOfWhatTheParentNeverCounted() -> None:
    """
    A worker that releases a connection the parent never counted for it
    (admitted while its channel was not up) takes no place from another
    worker's.
    """
    machine = Machine(2, maxPerHost=2)
    assert machine.admit(0, "10.0.0.1")
    machine.admissions[1].release("10.0.0.1")
    machine.flush()
    assert machine.counts.perHost == {"10.0.0.1": 1}


def test_bannedAddressRefusedAtOnce() -> None:
    machine = Machine(1, maxPerHost=2)
    machine.admissions[0].bannedHosts.add("10.0.0.9")
    with pytest.raises(ChatError) as e:
        machine.admissions[0].admitLater("10.0.0.9")
    assert e.value.code == "banned"
    assert machine.admissions[0].total == 0 and machine.counts.total == 0
