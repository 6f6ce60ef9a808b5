"""
Tests for the web port's front door (L{twisted_chat.frontends.webport}): a
WebSocket upgrade on C{/ws}, C{/} or C{/echo} goes straight to Autobahn,
everything else to the C{Site}; a connection that never completes its
request head is closed after the handshake timeout. In memory, over
C{iosim} connections.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.test import iosim

from twisted_chat.core.service import ChatService
from twisted_chat.frontends.web import makeSite
from twisted_chat.frontends.webport import MAX_HEAD, UpgradeSwitch, WebPortFactory, upgradeTarget
from twisted_chat.frontends.websocket import ChatWebSocketFactory, ChatWebSocketProtocol
from twisted_chat.frontends.wscommon import EchoFactory
from twisted_chat.stores.memory import MemoryStore

WS = object()
ECHO = object()
UPGRADES: dict[bytes, Any] = {b"/ws": WS, b"/": WS, b"/echo": ECHO}

HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.mark.parametrize(
    "head, target",
    [
        (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade", WS),
        (b"GET / HTTP/1.1\r\nUPGRADE: WebSocket\r\nHost: x", WS),
        (b"GET /ws?mode=1 HTTP/1.1\r\nupgrade:websocket", WS),
        (b"GET /echo HTTP/1.1\r\nUpgrade: websocket", ECHO),
        (b"GET / HTTP/1.1\r\nHost: x", None),
        (b"GET /ws HTTP/1.1\r\nHost: x", None),
        (b"GET /ws HTTP/1.1\r\nX-Upgrade: websocket", None),
        (b"GET /ws HTTP/1.1\r\nUpgrade: h2c", None),
        (b"GET /ws HTTP/1.0\r\nUpgrade: websocket", None),
        (b"POST /ws HTTP/1.1\r\nUpgrade: websocket", None),
        (b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nUpgrade: websocket", None),
        (b"GET /app.js HTTP/1.1\r\nUpgrade: websocket", None),
        (b"GET /ws/ HTTP/1.1\r\nUpgrade: websocket", None),
        (b"nonsense", None),
    ],
)
def test_whatGoesToAutobahn(head: bytes, target: object) -> None:
    """
    Only a GET over HTTP/1.1 that asks to upgrade to WebSocket, on one of
    the WebSocket paths, goes to that path's factory.
    """
    assert upgradeTarget(head, UPGRADES) is target


class Port:
    """
    The web port's factory on a Clock, with the chat's WebSocket factory at
    C{/ws} and C{/} and an echo factory at C{/echo}.
    """

    def __init__(self, timeout: float = 10.0) -> None:
        self.clock = Clock()
        service = ChatService(store=MemoryStore(), clock=self.clock)
        ws = ChatWebSocketFactory(service)
        self.site = makeSite(ws, clock=self.clock)
        upgrades: dict[bytes, IProtocolFactory] = {b"/ws": ws, b"/": ws, b"/echo": EchoFactory()}
        self.factory = WebPortFactory(self.site, upgrades, self.clock, timeout)

    def connect(self, *chunks: bytes) -> tuple[Any, "Recorder", iosim.IOPump]:
        server = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40001))
        client = Recorder()
        serverIO = iosim.FakeTransport(server, True)
        pump = iosim.connect(server, serverIO, client, iosim.FakeTransport(client, False), greet=False, clock=self.clock)
        for chunk in chunks:
            client.transport.write(chunk)  # type: ignore[union-attr]
            pump.flush()
        return serverIO, client, pump


class Recorder(Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: object = None) -> None:
        self.lost = True


def test_upgradeOnWsGoesStraightToTheChat() -> None:
    """
    A WebSocket handshake on C{/ws}, even in pieces, is answered by
    Autobahn (101) and the chat greets the connection; from then on the
    transport delivers to the chat's protocol itself.
    """
    port = Port()
    raw = HANDSHAKE.format(path="/ws").encode()
    transport, client, pump = port.connect(raw[:20], raw[20:70], raw[70:])
    assert client.received.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in client.received
    assert isinstance(transport.protocol, ChatWebSocketProtocol)
    port.clock.advance(1)
    pump.flush()
    assert b"Welcome to twisted-chat" in client.received


def test_upgradeOnEcho() -> None:
    """
    C{/echo} (the compliance endpoint) is upgraded by its own factory.
    """
    port = Port()
    transport, client, pump = port.connect(HANDSHAKE.format(path="/echo").encode())
    assert client.received.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert not isinstance(transport.protocol, (ChatWebSocketProtocol, UpgradeSwitch))


@pytest.mark.parametrize("path, status", [("/", b"200"), ("/healthz", b"404"), ("/ws", b"4"), ("/nope", b"404")])
def test_everythingElseGoesToTheSite(path: str, status: bytes) -> None:
    """
    A request that does not upgrade is twisted.web's: the page at C{/}
    (with its security headers), a 404 for what the site does not have,
    and C{/ws} without an upgrade is refused as before.
    """
    port = Port()
    raw = "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % (path,)
    transport, client, pump = port.connect(raw.encode())
    assert client.received.startswith(b"HTTP/1.1 " + status), client.received[:200]
    if path == "/":
        assert b"Content-Security-Policy: default-src 'self'" in client.received
    assert not isinstance(transport.protocol, UpgradeSwitch)


def test_oversizedHeadGoesToTheSite() -> None:
    """
    A request head longer than MAX_HEAD without its end goes to twisted.web,
    which refuses it its own way: it closes the connection.
    """
    port = Port()
    raw = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nX-Long: " + b"a" * MAX_HEAD
    transport, client, pump = port.connect(raw, b"\r\n\r\n")
    assert not isinstance(transport.protocol, UpgradeSwitch)
    assert b"101" not in client.received
    assert client.lost


def test_incompleteHeadClosedAfterTheTimeout() -> None:
    """
    A connection that has not sent a complete request head within the
    handshake timeout is closed; one that did is not.
    """
    port = Port(timeout=2)
    stalled = port.connect(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
    served = port.connect(HANDSHAKE.format(path="/ws").encode())
    for _ in range(3):
        port.clock.advance(1)
        stalled[2].flush()
        served[2].flush()
    assert stalled[1].lost
    assert not served[1].lost
    assert served[1].received.startswith(b"HTTP/1.1 101 ")
