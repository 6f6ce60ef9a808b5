# -*- test-case-name: tests.daemon.test_machine -*-
"""
Machine-wide connection limits under C{--workers N}: the parent keeps the
count of every worker's connections (L{MachineCounter}, served over AMP on
a private UNIX socket, L{LIMITS_SOCKET} in the workers' peer directory),
and each worker's L{Admission} asks it (L{ParentCount}) before admitting a
connection while C{--max-per-ip} or C{--max-connections} is on, so both
hold for the whole machine. With both off nothing waits: the worker tells
the parent about each connection and goes on.

A worker's connections are counted on its channel: when the channel goes
(the worker exits, or is killed with SIGKILL) its share is released at
once.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable

from twisted.application.internet import ClientService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import UNIXClientEndpoint, UNIXServerEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from twisted_chat.daemon.runtime import IDaemonReactor

#: the parent's socket in the peer directory
LIMITS_SOCKET = "limits.sock"


class Admit(amp.Command):
    """
    Count a connection from C{host} unless that would pass a limit (0: no
    limit); C{refused} is "" (counted) or the refusal's code.
    """

    arguments = [(b"host", amp.Unicode()), (b"maxConnections", amp.Integer()), (b"maxPerHost", amp.Integer())]
    response = [(b"refused", amp.Unicode())]


class Count(amp.Command):
    """
    Count a connection from C{host} (no limit is on).
    """

    arguments = [(b"host", amp.Unicode())]
    requiresAnswer = False


class Release(amp.Command):
    """
    A connection from C{host} is gone.
    """

    arguments = [(b"host", amp.Unicode())]
    requiresAnswer = False


class MachineCounts:
    """
    The machine's connections: in all, and by address.
    """

    def __init__(self) -> None:
        self.total = 0
        self.perHost: dict[str, int] = {}

    def add(self, host: str, count: int = 1) -> None:
        self.perHost[host] = self.perHost.get(host, 0) + count
        self.total += count

    def remove(self, host: str, count: int = 1) -> None:
        left = self.perHost.get(host, 0) - count
        if left <= 0:
            self.perHost.pop(host, None)
        else:
            self.perHost[host] = left
        self.total = max(0, self.total - count)


class _WorkerChannel(amp.AMP):
    """
    The parent's end of one worker's channel: what it counted, released
    when the channel goes.
    """

    _log = Logger()

    def __init__(self, counts: MachineCounts) -> None:
        amp.AMP.__init__(self)
        self.counts = counts
        self.held: dict[str, int] = {}

    def _hold(self, host: str) -> None:
        self.held[host] = self.held.get(host, 0) + 1
        self.counts.add(host)

    @Admit.responder
    def admit(self, host: str, maxConnections: int, maxPerHost: int) -> dict[str, str]:
        counts = self.counts
        if maxConnections and counts.total >= maxConnections:
            return {"refused": "server-full"}
        if maxPerHost and counts.perHost.get(host, 0) >= maxPerHost:
            return {"refused": "too-many-connections"}
        self._hold(host)
        return {"refused": ""}

    @Count.responder
    def count(self, host: str) -> dict[str, str]:
        self._hold(host)
        return {}

    @Release.responder
    def release(self, host: str) -> dict[str, str]:
        held = self.held.get(host, 0)
        if held > 0:
            if held == 1:
                del self.held[host]
            else:
                self.held[host] = held - 1
            self.counts.remove(host)
        return {}

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        amp.AMP.connectionLost(self, reason)
        held, self.held = self.held, {}
        released = 0
        for host, count in held.items():
            self.counts.remove(host, count)
            released += count
        if released:
            self._log.info("a worker's channel closed: released its {count} connections", count=released)


class MachineCounter(Service):
    """
    The parent's count, on its private socket in C{directory()} (made when
    the parent starts): one L{_WorkerChannel} per worker.
    """

    _log = Logger()

    def __init__(self, directory: Callable[[], str | None], reactor: IDaemonReactor) -> None:
        self.directory = directory
        self.reactor = reactor
        self.counts = MachineCounts()
        self.port: object = None

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        self._listen()

    def startService(self) -> None:
        Service.startService(self)
        self._listen()

    def _listen(self) -> None:
        if self.port is not None:
            return
        directory = self.directory()
        assert directory is not None
        counts = self.counts
        endpoint = UNIXServerEndpoint(self.reactor, os.path.join(directory, LIMITS_SOCKET), mode=0o600)
        outcome: list[object] = []
        factory = Factory.forProtocol(lambda: _WorkerChannel(counts))
        factory.noisy = False
        endpoint.listen(factory).addBoth(outcome.append)
        if not outcome or isinstance(outcome[0], Failure):
            raise SystemExit("twistd chat: cannot listen on %s: %s" % (directory, outcome[0] if outcome else "later"))
        self.port = outcome[0]

    def stopService(self) -> object:
        Service.stopService(self)
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()  # type: ignore[attr-defined]
        return None


class _ParentChannel(amp.AMP):
    """
    A worker's end of its channel to the parent.
    """

    def __init__(self, owner: ParentCount) -> None:
        amp.AMP.__init__(self)
        self.owner = owner

    def connectionMade(self) -> None:
        amp.AMP.connectionMade(self)
        self.owner._channel = self

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        amp.AMP.connectionLost(self, reason)
        if self.owner._channel is self:
            self.owner._channel = None


class ParentCount(MultiService):
    """
    A worker's end: the channel to its parent's count (kept up by a
    L{ClientService}), as the L{MachineCount} of its L{Admission}. Until it
    is connected, the worker counts alone.
    """

    def __init__(self, directory: str, reactor: IReactorTime) -> None:
        MultiService.__init__(self)
        endpoint = UNIXClientEndpoint(reactor, os.path.join(directory, LIMITS_SOCKET), 5)
        self._channel: _ParentChannel | None = None
        factory = Factory.forProtocol(lambda: _ParentChannel(self))
        factory.noisy = False
        ClientService(
            endpoint, factory, retryPolicy=lambda attempt: min(0.1 * 2**attempt, 2.0), clock=reactor
        ).setServiceParent(self)

    @property
    def connected(self) -> bool:
        return self._channel is not None

    def ask(self, host: str, maxConnections: int, maxPerHost: int) -> Deferred[str]:
        channel = self._channel
        if channel is None:
            return fail(ConnectionDone("no channel to the parent"))
        d = channel.callRemote(Admit, host=host, maxConnections=maxConnections, maxPerHost=maxPerHost)
        return d.addCallback(lambda answer: str(answer["refused"]))

    def tell(self, host: str) -> None:
        channel = self._channel
        if channel is not None:
            channel.callRemote(Count, host=host)

    def release(self, host: str) -> None:
        channel = self._channel
        if channel is not None:
            channel.callRemote(Release, host=host)
