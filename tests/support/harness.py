"""
In-memory clients for the web front-ends, shared by the tests of the
WebSocket, Engine.IO and Socket.IO front-ends: real HTTP requests and a
real Autobahn WebSocket client talk to a real C{Site} through C{iosim},
with every timer (the Site's, the server's and Autobahn's, which go through
C{txaio.config.loop}) on one L{Clock}.

This is not in conftest.py because it imports Twisted and Autobahn when it
is imported, which conftest must not do (see its docstring). Test modules
import what they use from here; the C{clock} fixture (conftest) is a Clock
set up with L{autobahnTimers}.
"""

from __future__ import annotations

import http.client
import io
import json
from contextlib import contextmanager
from typing import Any, Iterator, TypeVar

import txaio
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.web.server import Site

#: the Host the in-memory clients connect to
HOST = "localhost:8080"
#: the clock's start: 2025-11-27 00:00 UTC, so message times are realistic
START = 1764201600.0
#: the heartbeat of the engine.io-protocol test suite's server, in seconds
PING_INTERVAL = 0.3
PING_TIMEOUT = 0.2

_C = TypeVar("_C", bound=Clock)


@contextmanager
def autobahnTimers(clock: _C) -> Iterator[_C]:
    """
    Advance C{clock} to L{START} and make it Autobahn's timer loop
    (C{txaio.config.loop}) until the block ends.
    """
    txaio.use_twisted()
    saved = txaio.config.loop
    clock.advance(START)
    txaio.config.loop = clock
    try:
        yield clock
    finally:
        txaio.config.loop = saved


# -- clients --


class RawClient(Protocol):
    """
    A client that writes bytes as given and keeps what comes back.
    """

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.received = b""

    def connectionMade(self) -> None:
        self.transport.write(self.request)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data


class _Bytes:
    """
    Just enough of a socket for L{http.client.HTTPResponse}.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self.data)


class Response:
    """
    A parsed HTTP response.
    """

    def __init__(self, raw: bytes, method: str = "GET") -> None:
        parsed = http.client.HTTPResponse(_Bytes(raw), method=method)  # type: ignore[arg-type]
        parsed.begin()
        self.status = parsed.status
        self.headers = {k.lower(): v for k, v in parsed.getheaders()}
        self.body = parsed.read()

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        assert self.headers.get("content-type") == "application/json", self.headers
        return json.loads(self.body)

    def __repr__(self) -> str:
        return "<Response %d %r>" % (self.status, self.body[:200])


class HttpExchange(RawClient):
    """
    One HTTP request (with C{Connection: close}) and its response, which is
    complete once the server has closed the connection.
    """

    def __init__(self, request: bytes) -> None:
        RawClient.__init__(self, request)
        self.done = False

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.done = True

    @property
    def response(self) -> Response:
        assert self.done, "the response is not complete: %r" % (self.received,)
        return Response(self.received)


class WebSocketPeer(WebSocketClientProtocol):  # type: ignore[misc]
    """
    A WebSocket client that notes whether it opened and how it closed;
    subclasses keep the frames it receives.
    """

    def __init__(self) -> None:
        WebSocketClientProtocol.__init__(self)
        self.opened = False
        self.closed: tuple[bool, int | None, str | None] | None = None

    def onOpen(self) -> None:
        self.opened = True

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed = (wasClean, code, reason)


class Peer(WebSocketPeer):
    """
    A WebSocket client that keeps every frame (text decoded, binary as
    bytes) and how the connection ended.
    """

    def __init__(self) -> None:
        WebSocketPeer.__init__(self)
        self.frames: list[str | bytes] = []

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.frames.append(payload if isBinary else payload.decode("utf-8"))

    def take(self) -> list[str | bytes]:
        frames, self.frames = self.frames, []
        return frames

    def send(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            self.sendMessage(data, True)
        else:
            self.sendMessage(data.encode("utf-8"))


_P = TypeVar("_P", bound=WebSocketPeer)


class ServerTransport(iosim.FakeTransport):
    """
    The server's end of an in-memory connection that, like a TCP transport,
    reads nothing while paused (C{pauseProducing()}): what the client sends
    meanwhile waits, as it would in the kernel, and is delivered with the
    next pump after C{resumeProducing()}.
    """

    paused = False
    _held = b""

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def bufferReceived(self, buf: Any) -> None:
        if isinstance(buf, bytes) and (self.paused or self._held):
            self._held += buf
            if self.paused:
                return
            buf, self._held = self._held, b""
        iosim.FakeTransport.bufferReceived(self, buf)

    def getOutBuffer(self) -> bytes:
        # (every pump asks this first: deliver what waited, then what it wrote goes out with the rest)
        if self._held and not self.paused and not self.disconnected:
            held, self._held = self._held, b""
            iosim.FakeTransport.bufferReceived(self, held)
        return iosim.FakeTransport.getOutBuffer(self)  # type: ignore[no-any-return]


class Network:
    """
    In-memory connections to one C{Site}, pumped until quiet.

    Each connection comes from 127.0.0.1, from the port after
    C{firstPort} and on. With C{runDueCalls}, every round of L{flush} first
    runs the clock's calls that are due now (C{advance(0)}).
    """

    def __init__(self, clock: Clock, site: Site, firstPort: int = 50000, runDueCalls: bool = True) -> None:
        self.clock = clock
        self.site = site
        self.pumps: list[iosim.IOPump] = []
        self._port = firstPort
        self._runDueCalls = runDueCalls

    def open(self, client: Protocol) -> None:
        """
        Connect C{client} to the Site and move bytes until both sides are quiet.
        """
        self._port += 1
        address = IPv4Address("TCP", "127.0.0.1", self._port)
        server = self.site.buildProtocol(address)
        pump = iosim.connect(
            server,
            ServerTransport(server, True, peerAddress=address),
            client,
            iosim.FakeTransport(client, False),
            greet=False,
            clock=self.clock,
        )
        self.pumps.append(pump)
        self.flush()

    def flush(self) -> None:
        """
        Move bytes on every connection until nothing moves any more.
        """
        for _ in range(1000):
            if self._runDueCalls:
                self.clock.advance(0)
            moved = False
            for pump in self.pumps:
                if pump.flush():
                    moved = True
            if not moved:
                return
        raise AssertionError("the connections never went quiet")

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.flush()

    def send(
        self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> HttpExchange:
        """
        Send a request; its response may come later (a long poll).
        """
        lines = ["%s %s HTTP/1.1" % (method, target), "Host: " + HOST, "Connection: close"]
        all = dict(headers or {})
        if method in ("POST", "PUT") and "Transfer-Encoding" not in all:
            all["Content-Length"] = str(len(body))
        lines += ["%s: %s" % item for item in all.items()]
        exchange = HttpExchange(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self.open(exchange)
        return exchange

    def fetch(
        self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Response:
        """
        Send a request that is answered at once; return the response.
        """
        exchange = self.send(method, target, body, headers)
        assert exchange.done, "no response yet to %s %s: %r" % (method, target, exchange.received)
        return exchange.response

    def websocket(
        self,
        target: str,
        origin: str | None = None,
        protocols: list[str] | None = None,
        peerClass: type[_P] = Peer,  # type: ignore[assignment]
    ) -> _P:
        """
        Open a WebSocket to C{target} (a path and query) as a C{peerClass}
        and run the handshake.
        """
        factory = WebSocketClientFactory("ws://" + HOST + target, origin=origin, protocols=protocols, reactor=self.clock)
        factory.protocol = peerClass
        peer: _P = factory.buildProtocol(None)
        self.open(peer)
        return peer
