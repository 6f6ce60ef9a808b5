# -*- test-case-name: tests.daemon.test_tap,tests.daemon.test_workers,tests.e2e.test_e2e_tls -*-
"""
The listening sockets of C{twistd chat}: a L{Listener} service per endpoint
of a front-end. It binds (or adopts the socket a C{--workers} parent bound),
logs the real address, holds accepting back until a cluster is ready, and
lets its throttles pause accepting: the cluster while Redis is behind, a
worker's L{DescriptorGuard<twisted_chat.daemon.descriptors.DescriptorGuard>}
near its descriptor limit.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IFileDescriptor, IOpenSSLServerConnectionCreator
from twisted.internet.protocol import ServerFactory
from twisted.internet.testing import MemoryReactor
from twisted.logger import Logger
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from twisted.internet.interfaces import IListeningPort, IProtocolFactory

    from twisted_chat.daemon.runtime import IDaemonReactor


class Throttle(Protocol):
    """
    What pauses a listener's accepting (the cluster, while Redis is behind;
    a worker near its descriptor limit).
    """

    def addThrottle(self, pause: Callable[[], object], resume: Callable[[], object]) -> None:
        """
        Call C{pause} to stop accepting, then C{resume} to accept again.
        """

#: the listen queue of stream endpoints that do not set one (Twisted's is
#: 50: a burst of connections overflows it, and each refused SYN costs its
#: client a one-second retransmission)
LISTEN_BACKLOG = 1024


def withBacklog(description: str) -> str:
    """
    C{description} with C{backlog=LISTEN_BACKLOG} added to a TCP, TLS or
    UNIX endpoint that does not give one.
    """
    kind = description.split(":", 1)[0].lower()
    if kind in ("tcp", "tcp6", "ssl", "unix") and "backlog=" not in description:
        return "%s:backlog=%d" % (description, LISTEN_BACKLOG)
    return description


class Listener(Service):
    """
    One listening endpoint of one front-end.

    It binds in C{privilegedStartService} (before twistd drops privileges),
    or in C{startService} under C{twist}, which never calls the former;
    a bind error ends start-up with a one-line message and exit status 1
    instead of a traceback, or, as with a bare endpoint service, a daemon
    that runs without that port. Once bound it logs the real address, so
    C{tcp:0} can be used and read back.

    Given a C{ready} Deferred (a cluster's), it binds all the same but
    accepts only once that fires. A worker's listener adopts the socket its
    parent bound (C{inherited}) instead; a parent's (C{serve=False}) binds
    and never accepts. Once it accepts, each of its C{throttles} may pause
    it: it accepts while none does.
    """

    _log = Logger()

    def __init__(
        self,
        frontend: str,
        description: str,
        factory: IProtocolFactory,
        reactor: IDaemonReactor,
        ready: Deferred[None] | None = None,
        inherited: int | None = None,
        serve: bool = True,
        throttles: Sequence[Throttle] = (),
    ) -> None:
        self.frontend = frontend
        self.description = description
        self.factory = factory
        self._reactor = reactor
        self.port: IListeningPort | None = None
        #: accept only once this fires (bound at once all the same: the
        #: kernel's listen queue holds the connections that come before)
        self.ready = ready
        #: a listening socket inherited from a --workers parent, to adopt
        #: instead of binding
        self.inherited = inherited
        #: False in a --workers parent: bind, but never accept
        self.serve = serve
        #: whether the port is accepting connections
        self.accepting = False
        #: what may pause accepting: the cluster while Redis is behind, a
        #: worker's descriptor guard
        self.throttles = list(throttles)
        #: why the port does not accept now: "parent", "not ready", or the
        #: throttles that paused it
        self.heldBy: set[object] = set()

    def fileno(self) -> int:
        """
        The bound socket's file descriptor (a parent hands it to its
        workers).
        """
        if self.port is None:
            raise RuntimeError("%s is not bound" % (self.description,))
        return IFileDescriptor(self.port).fileno()

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        self._bind()

    def startService(self) -> None:
        Service.startService(self)
        # twist (unlike twistd) only calls startService
        if self.port is None:
            self._bind()

    def _bind(self) -> None:
        port = self._adopt(self.inherited) if self.inherited is not None else self._listen()
        self.port = port
        self.accepting = True
        if not self.serve:
            self._hold("parent", port)
        elif self.ready is not None:
            self._hold("not ready", port)
            self.ready.addCallback(self._ready, port)
        else:
            self._throttled(port)

    def _ready(self, result: object, port: IListeningPort) -> object:
        self._throttled(port)
        self._release("not ready", port)
        return result

    def _throttled(self, port: IListeningPort) -> None:
        # (from now on each throttle may pause accepting)
        for throttle in self.throttles:
            self._addThrottle(throttle, port)

    def _addThrottle(self, throttle: Throttle, port: IListeningPort) -> None:
        throttle.addThrottle(lambda: self._hold(throttle, port), lambda: self._release(throttle, port))

    def _hold(self, why: object, port: IListeningPort) -> None:
        if self.port is not port:
            return
        self.heldBy.add(why)
        if self.accepting:
            stopReading = getattr(port, "stopReading", None)
            if stopReading is not None:
                stopReading()
            self.accepting = False

    def _release(self, why: object, port: IListeningPort) -> None:
        if self.port is not port:
            return
        self.heldBy.discard(why)
        if not self.heldBy and not self.accepting:
            startReading = getattr(port, "startReading", None)
            if startReading is not None:
                startReading()
            self.accepting = True

    def _adopt(self, fd: int) -> IListeningPort:
        """
        Serve on the listening socket C{fd} inherited from a --workers
        parent (an C{ssl:} address: wrapped in TLS as the parent's endpoint
        would be).
        """
        from twisted_chat.daemon.workers import socketFamily

        reactor = self._reactor
        factory = self.factory
        if self.description.split(":", 1)[0].lower() == "ssl":
            from twisted.protocols.tls import TLSMemoryBIOFactory

            factory = TLSMemoryBIOFactory(tlsOptions(self.description), False, factory)
        try:
            # (Twisted annotates the factory as a ServerFactory; the reactor
            # only uses it as the IProtocolFactory a TLS wrapper is too)
            port = reactor.adoptStreamPort(fd, socketFamily(fd), factory)  # type: ignore[arg-type]
        except OSError as e:
            raise SystemExit("twistd chat: cannot serve on %s (socket %d of the parent): %s" % (self.description, fd, e))
        os.close(fd)  # (adopted as a copy)
        self._log.info(
            "{frontend} serving {address} (the parent's socket)",
            frontend=self.frontend,
            address=_address(port),
        )
        return port

    def _listen(self) -> IListeningPort:
        outcome: list[IListeningPort | Failure] = []
        endpoint = serverFromString(self._reactor, withBacklog(self.description))
        endpoint.listen(self.factory).addBoth(outcome.append)
        if not outcome:
            raise SystemExit("twistd chat: %s did not start listening at once" % (self.description,))
        port = outcome[0]
        if isinstance(port, Failure):
            raise SystemExit("twistd chat: cannot listen on %s: %s" % (self.description, _reason(port.value)))
        self._log.info(
            "{frontend} listening on {address}",
            frontend=self.frontend,
            address=_address(port),
        )
        return port

    def stopService(self) -> object:
        Service.stopService(self)
        self.accepting = False
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


def tlsOptions(description: str) -> IOpenSSLServerConnectionCreator:
    """
    The TLS options of the C{ssl:} server endpoint C{description}, as
    Twisted's endpoint parser makes them (certificate, key, chain, DH
    parameters, methods): the endpoint is asked to listen on a memory
    reactor, which records what a real one would be given.
    """
    recorder = MemoryReactor()
    serverFromString(recorder, description).listen(ServerFactory())
    [(_, _, contextFactory, _, _)] = recorder.sslServers
    return cast(IOpenSSLServerConnectionCreator, contextFactory)  # (recorded untyped)


def _address(port: IListeningPort) -> str:
    """
    The address C{port} listens on, as C{tcp:HOST:PORT} (TCP and TLS) or
    as Twisted writes it (UNIX sockets).
    """
    host: Any = port.getHost()  # (an IAddress: which fields it has depends on its type)
    return "%s:%s:%s" % (host.type.lower(), host.host, host.port) if hasattr(host, "port") else str(host)


def _reason(e: BaseException | None) -> str:
    """
    Why a listen failed: the socket error's own words if there is one.
    """
    inner = getattr(e, "socketError", None)
    if inner is not None and getattr(inner, "strerror", None):
        return str(inner.strerror)
    return str(e)
