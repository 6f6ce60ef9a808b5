# -*- test-case-name: tests.frontends.test_webport -*-
"""
The web port's connections: a WebSocket upgrade goes straight to Autobahn,
everything else to twisted.web.

Through twisted.web, a WebSocket handshake was parsed twice: twisted.web
read the request and built a C{Request}, walked the resource tree to the
C{WebSocketResource}, which wrote the request out again for Autobahn to
parse, its own way, as if it had come from the network. For a server
that is mostly WebSocket connections that was a fifth of the CPU of a
handshake. Here a new connection's first bytes are looked at once: a
complete request head asking to upgrade to WebSocket on one of the
WebSocket paths (C{/ws}, C{/}, C{/echo}) goes to that path's Autobahn
factory, which parses it (Autobahn serves it exactly as it serves a
WebSocket port of its own); anything else (the page, its assets, the
probes, Socket.IO, a request that is not complete in 16 KiB, a malformed
one) goes to the C{Site}, which sees the same bytes it would have read
itself. Either takes the connection over: the transport delivers to it
directly from then on.

A connection that has not sent a complete request head within the
handshake timeout is closed, as twisted.web closes it (its C{timeOut}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress, IProtocolFactory, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web.server import Site

#: a request head longer than this goes to twisted.web, whatever it asks
MAX_HEAD = 16384


def upgradeTarget(head: bytes, upgrades: dict[bytes, IProtocolFactory]) -> IProtocolFactory | None:
    """
    The factory of C{upgrades} (by path) for the request C{head} (up to,
    not including, the blank line), if it is a C{GET} over HTTP/1.1 asking
    to upgrade to WebSocket on one of those paths; None for anything else.
    """
    first, _, headers = head.partition(b"\r\n")
    method, _, rest = first.partition(b" ")
    if method != b"GET":
        return None
    target, _, version = rest.partition(b" ")
    if version != b"HTTP/1.1":
        return None
    factory = upgrades.get(target.partition(b"?")[0])
    if factory is None:
        return None
    lower = headers.lower()
    at = lower.find(b"upgrade:")
    while at != -1:
        if at == 0 or lower[at - 1 : at] == b"\n":
            end = lower.find(b"\r\n", at)
            value = lower[at + 8 : end if end != -1 else len(lower)]
            return factory if b"websocket" in value else None
        at = lower.find(b"upgrade:", at + 8)
    return None


class UpgradeSwitch(Protocol):
    """
    A new connection to the web port until its request head is complete;
    then it hands the connection over (see the module docstring).
    """

    factory: WebPortFactory
    addr: IAddress
    _buffer = b""

    def connectionMade(self) -> None:
        self.factory.waiting(self)

    def dataReceived(self, data: bytes) -> None:
        buf = self._buffer + data if self._buffer else data
        end = buf.find(b"\r\n\r\n")
        if end == -1:
            if len(buf) > MAX_HEAD:
                self._handOver(self.factory.site, buf)
            else:
                self._buffer = buf
            return
        factory = upgradeTarget(buf[:end], self.factory.upgrades)
        self._handOver(self.factory.site if factory is None else factory, buf)

    def _handOver(self, factory: IProtocolFactory, data: bytes) -> None:
        self.factory.done(self)
        self._buffer = b""
        transport: Any = self.transport
        proto = factory.buildProtocol(self.addr)
        if proto is None:
            transport.loseConnection()
            return
        # (as Autobahn's WebSocketResource takes a connection over from
        # twisted.web: TLS is a protocol wrapping ours)
        if isinstance(transport, ProtocolWrapper):
            transport.wrappedProtocol = proto
        elif isinstance(getattr(transport, "protocol", None), ProtocolWrapper):
            transport.protocol.wrappedProtocol = proto
        else:
            transport.protocol = proto
        proto.makeConnection(transport)
        proto.dataReceived(data)

    def timedOut(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = Protocol.connectionLost.__defaults__[0]) -> None:  # type: ignore[index]
        self.factory.done(self)


class WebPortFactory(Factory):
    """
    The factory of the C{--web} listeners: L{UpgradeSwitch} in front of
    C{site} and the WebSocket factories of C{upgrades} (request path ->
    factory). Connections without a complete request head after
    C{timeout} seconds (0: never) are closed; they are checked every
    C{timeout / 4} seconds, all at once, rather than with a timer each.
    """

    noisy = False

    def __init__(self, site: Site, upgrades: dict[bytes, IProtocolFactory], clock: IReactorTime, timeout: float) -> None:
        self.site = site
        self.upgrades = upgrades
        self.clock = clock
        self.timeout = timeout
        #: connections still reading their request head -> when they came
        self._waiting: dict[UpgradeSwitch, float] = {}
        self._sweeper: LoopingCall | None = None

    def buildProtocol(self, addr: IAddress | None) -> UpgradeSwitch:  # type: ignore[override]
        p = UpgradeSwitch()
        p.factory = self
        p.addr = addr  # type: ignore[assignment]
        return p

    def waiting(self, proto: UpgradeSwitch) -> None:
        if self.timeout <= 0:
            return
        self._waiting[proto] = self.clock.seconds()
        if self._sweeper is None:
            self._sweeper = LoopingCall(self._sweep)
            self._sweeper.clock = self.clock
            self._sweeper.start(max(self.timeout / 4, 0.05), now=False)

    def done(self, proto: UpgradeSwitch) -> None:
        self._waiting.pop(proto, None)

    def _sweep(self) -> None:
        if not self._waiting:
            # (started again by the next connection)
            if self._sweeper is not None and self._sweeper.running:
                self._sweeper.stop()
            self._sweeper = None
            return
        limit = self.clock.seconds() - self.timeout
        late = [p for p, came in self._waiting.items() if came <= limit]
        for p in late:
            self._waiting.pop(p, None)
            p.timedOut()

    def doStart(self) -> None:
        Factory.doStart(self)  # type: ignore[arg-type]
        self.site.doStart()
        for factory in set(self.upgrades.values()):
            factory.doStart()

    def doStop(self) -> None:
        for factory in set(self.upgrades.values()):
            factory.doStop()
        self.site.doStop()
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self._sweeper = None
        Factory.doStop(self)  # type: ignore[arg-type]
