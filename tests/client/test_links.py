"""
Tests for the client's json-mode link (L{twisted_chat.client.links}): over
a real WebSocket on loopback against a small Autobahn server, and in
memory through C{iosim}, where the goodbye waits for the server's
acknowledgements. The reactor is imported inside tests only, and every
awaited Deferred has a timeout.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred, DeferredQueue, succeed
from twisted.internet.task import Clock

from twisted_chat.client.links import connect
from twisted_chat.client.session import ChatClient
from twisted_chat.client.target import Target

from tests.support.client import FakeUI, msg, result, stopListening, TIMEOUT
from tests.support.daemon import freeLoopbackPort


# -- json mode over a real WebSocket (loopback) --


def _fakeJsonServerFactory(acceptJson: bool = True) -> Any:
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

    class FakeJsonServer(WebSocketServerProtocol):
        def onConnect(self, request: Any) -> Any:
            self.factory.connections.append(self)
            if self.factory.acceptJson and "chat.json" in request.protocols:
                return "chat.json"
            return None

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            self.factory.requests.put(json.loads(payload))

        def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
            self.factory.closes.put((wasClean, code, reason))

        def send(self, *objects: Any) -> None:
            for obj in objects:
                self.sendMessage(json.dumps(obj).encode("utf-8"))

    factory = WebSocketServerFactory()
    factory.protocol = FakeJsonServer
    factory.setProtocolOptions(openHandshakeTimeout=5, closeHandshakeTimeout=2)
    factory.acceptJson = acceptJson
    factory.connections = []
    factory.requests = DeferredQueue()
    factory.closes = DeferredQueue()
    return factory


async def _lines(ui: FakeUI, n: int, reactor: Any) -> list[str]:
    return [await ui.queue.get().addTimeout(TIMEOUT, reactor) for _ in range(n)]


@pytest_twisted.ensureDeferred
async def test_jsonSessionOverWebSocket() -> None:
    """
    Over a real WebSocket (subprotocol C{chat.json}) the client sends a
    C{hello} with its nick, translates typed lines into requests, shows
    events as line-chat lines, and on C{/quit} closes the WebSocket cleanly
    (with the reason) and ends with status 3, as a typed line was refused
    (the server's oddities it ignored are no refusals).
    """
    from twisted.internet import reactor

    factory = _fakeJsonServerFactory()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        ui = FakeUI()
        client = ChatClient(Target("ws", "127.0.0.1", port.getHost().port, "/ws"), ui, reactor)
        connect(reactor, client, nick="alice", refPrefix="c")
        assert await factory.requests.get().addTimeout(TIMEOUT, reactor) == {"type": "hello", "nick": "alice"}
        server = factory.connections[0]
        server.send(
            {"type": "welcome", "nick": "alice", "server": "twisted-chat/0", "rooms": ["#lobby"]},
            {"type": "join", "room": "#lobby", "nick": "alice", "time": 0},
            {"type": "presence", "room": "#lobby", "members": ["alice", "bob"]},
            {"type": "history", "room": "#lobby", "epoch": "e1", "messages": []},
        )
        assert await _lines(ui, 3, reactor) == [
            "*** Welcome to twisted-chat, alice! You are in #lobby. Type /help for commands.",
            "*** #lobby: alice joined",
            "*** #lobby: members: alice, bob",
        ]
        client.userLine("hi bob")
        assert await factory.requests.get().addTimeout(TIMEOUT, reactor) == {"type": "say", "text": "hi bob", "ref": "c1"}
        client.userLine("/fly")
        assert await _lines(ui, 1, reactor) == ["!!! unknown command /fly (try /help)"]
        server.send(msg("#lobby", 1, "alice", "hi bob"), {"type": "ack", "ref": "c1", "id": 1, "room": "#lobby", "epoch": "e1"})
        server.sendMessage(b"\x00\x01", isBinary=True)
        server.sendMessage(b"{not json")
        assert await _lines(ui, 3, reactor) == [
            "#lobby <alice> hi bob",
            "!!! unexpected binary frame from the server: ignored",
            "!!! a frame from the server was not valid JSON: ignored",
        ]
        client.userLine("/quit see you")
        wasClean, code, reason = await factory.closes.get().addTimeout(TIMEOUT, reactor)
        assert (wasClean, code, reason) == (True, 1000, "see you")
        assert await client.done.addTimeout(TIMEOUT, reactor) == 3
        assert ui.statuses == ["1 request was refused"]
    finally:
        await stopListening(port)


@pytest_twisted.ensureDeferred
async def test_jsonSessionServerCloses() -> None:
    """
    With reconnecting disabled, a WebSocket closed by the server ends the
    session with status 1 and "connection closed by server", with the
    server's reason.
    """
    from twisted.internet import reactor

    factory = _fakeJsonServerFactory()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        ui = FakeUI()
        client = ChatClient(Target("ws", "127.0.0.1", port.getHost().port, "/"), ui, reactor, reconnectAttempts=0)
        connect(reactor, client)
        assert await factory.requests.get().addTimeout(TIMEOUT, reactor) == {"type": "hello"}
        server = factory.connections[0]
        server.send({"type": "notice", "text": "server shutting down"})
        # as the daemon does: 1001 "going away", which sendClose() refuses
        server.sendCloseFrame(1001, b"server shutting down", isReply=False)
        assert await client.done.addTimeout(TIMEOUT, reactor) == 1
        assert ui.lines == ["*** notice: server shutting down"]
        assert ui.statuses == ["connection closed by server (server shutting down)"]
        await factory.closes.get().addTimeout(TIMEOUT, reactor)
    finally:
        await stopListening(port)


@pytest_twisted.ensureDeferred
async def test_jsonSessionReconnectsAndResumes() -> None:
    """
    Over a real WebSocket, when the server goes away (a notice with
    C{reconnect_after}, then 1001) the client reconnects by itself no sooner
    than the hint, says C{hello} with its nick, owner token, rooms and
    positions, and after the new welcome sends again, with the same ref, the
    message whose ack never came; missed messages are shown once.
    """
    from twisted.internet import reactor

    factory = _fakeJsonServerFactory()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        ui = FakeUI()
        client = ChatClient(Target("ws", "127.0.0.1", port.getHost().port, "/ws"), ui, reactor, random=lambda: 0.0)
        connect(reactor, client, nick="alice", refPrefix="c")
        assert await factory.requests.get().addTimeout(TIMEOUT, reactor) == {"type": "hello", "nick": "alice"}
        server = factory.connections[0]
        server.send(
            {"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"], "owner": True, "token": "s3cret"},
            {"type": "join", "room": "#lobby", "nick": "alice", "time": 0},
            msg("#lobby", 1, "bob", "one"),
        )
        assert (await _lines(ui, 3, reactor))[2] == "#lobby <bob> one"
        client.userLine("unacked")
        assert await factory.requests.get().addTimeout(TIMEOUT, reactor) == {"type": "say", "text": "unacked", "ref": "c1"}
        server.send({"type": "notice", "text": "server shutting down", "reconnect_after": 200})
        lostAt = reactor.seconds()
        server.sendCloseFrame(1001, b"server shutting down", isReply=False)
        assert await _lines(ui, 1, reactor) == ["*** notice: server shutting down"]
        hello = await factory.requests.get().addTimeout(TIMEOUT, reactor)
        assert reactor.seconds() - lostAt >= 0.2
        assert hello == {
            "type": "hello",
            "nick": "alice",
            "token": "s3cret",
            "rooms": ["#lobby"],
            "since": {"#lobby": {"epoch": "e1", "id": 1}},
        }
        assert ui.statuses == [
            "connection lost (server shutting down): reconnecting in 0.2 s\u2026",
            "reconnected to %s" % (client.target.address,),
        ]
        server = factory.connections[1]
        server.send(
            {"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"], "owner": True},
            {"type": "join", "room": "#lobby", "nick": "alice", "time": 0},
            {"type": "history", "room": "#lobby", "epoch": "e1", "recovered": True,
             "messages": [msg("#lobby", 1, "bob", "one"), msg("#lobby", 2, "bob", "two")]},
        )
        assert await factory.requests.get().addTimeout(TIMEOUT, reactor) == {"type": "say", "text": "unacked", "ref": "c1"}
        lines = await _lines(ui, 4, reactor)
        assert lines[2] == "*** #lobby: 1 message while you were away:"
        assert re.fullmatch(r"#lobby \[[^\]]+\] <bob> two", lines[3]), lines
        assert [line for line in ui.lines if line.endswith("<bob> one")] == ["#lobby <bob> one"]
        server.send({"type": "ack", "ref": "c1", "id": 3, "room": "#lobby", "epoch": "e1"})
        client.userLine("/quit")
        await factory.closes.get().addTimeout(TIMEOUT, reactor)
        assert await client.done.addTimeout(TIMEOUT, reactor) == 0
    finally:
        await stopListening(port)


# -- json mode in memory: the goodbye waits for acknowledgements --


class MemoryEndpoint:
    """
    A client endpoint whose connections go, through C{iosim}, to protocols
    of C{serverFactory}, all on one clock.
    """

    def __init__(self, clock: Clock, serverFactory: Any) -> None:
        self.clock = clock
        self.serverFactory = serverFactory
        self.pumps: list[Any] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        from twisted.test import iosim

        client = factory.buildProtocol(None)
        server = self.serverFactory.buildProtocol(None)
        pump = iosim.connect(
            server, iosim.FakeTransport(server, True), client, iosim.FakeTransport(client, False), greet=False, clock=self.clock
        )
        self.pumps.append(pump)
        return succeed(client)


class JsonMemorySession:
    """
    A L{ChatClient} in json mode (made by L{connect}, so with its real
    L{JsonLink} and resuming), talking in memory to the fake json-mode
    server of L{_fakeJsonServerFactory}, which the test drives by hand.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.ui = FakeUI()
        self.factory = _fakeJsonServerFactory()
        self.endpoint = MemoryEndpoint(clock, self.factory)
        self.client = ChatClient(Target("ws", "127.0.0.1", 8080, "/ws"), self.ui, clock, random=lambda: 0.0)
        self.ui.start(self.client, None)
        connect(clock, self.client, nick="alice", endpoint=self.endpoint, refPrefix="c")
        self.flush()

    def flush(self) -> None:
        """
        Move bytes both ways (and run what is due) until nothing moves.
        """
        for _ in range(100):
            self.clock.advance(0)
            if not [pump for pump in self.endpoint.pumps if pump.flush()]:
                return
        raise AssertionError("the connections never went quiet")

    @property
    def server(self) -> Any:
        """
        The server's side of the latest connection.
        """
        return self.factory.connections[-1]

    def requests(self) -> list[Any]:
        """
        The requests the server received since the last call.
        """
        pending = self.factory.requests.pending
        taken = list(pending)
        del pending[:]
        return taken

    def closes(self) -> list[Any]:
        return list(self.factory.closes.pending)

    def serverSends(self, *events: dict[str, Any]) -> None:
        self.server.send(*events)
        self.flush()

    def welcome(self) -> None:
        self.serverSends(
            {"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]},
            {"type": "join", "room": "#lobby", "nick": "alice", "time": 0},
        )


def ack(ref: str, id: int) -> dict[str, Any]:
    return {"type": "ack", "ref": ref, "id": id, "room": "#lobby", "epoch": "e1"}


def test_jsonQuitWaitsForAcks(clock: Clock) -> None:
    """
    At the end of input the client closes its WebSocket only once every
    C{say} and C{msg} it sent has its C{ack}, showing what arrives
    meanwhile (the echoes come before the acks); after a second it says
    what it waits for. Status 0.
    """
    s = JsonMemorySession(clock)
    assert s.requests() == [{"type": "hello", "nick": "alice"}]
    s.welcome()
    s.client.userLine("hi")
    s.client.userLine("/msg bob psst")
    s.client.userEOF()
    s.flush()
    assert s.requests() == [
        {"type": "say", "text": "hi", "ref": "c1"},
        {"type": "msg", "to": "bob", "text": "psst", "ref": "c2"},
    ]
    assert s.closes() == []
    s.serverSends(msg("#lobby", 1, "alice", "hi"), ack("c1", 1))
    assert s.closes() == []
    s.clock.advance(1.0)
    assert s.ui.notices == ["waiting for the server to confirm 1 message (giving up after 10 s without an answer)"]
    s.serverSends(
        {"type": "private", "id": 7, "from": "alice", "to": "bob", "text": "psst", "time": 0},
        {"type": "ack", "ref": "c2", "id": 7, "to": "bob"},
    )
    assert s.closes() == [(True, 1000, None)]
    assert result(s.client.done) == 0
    assert s.ui.lines[-2:] == ["#lobby <alice> hi", "-> *bob* psst"]
    assert s.ui.statuses == []


def test_jsonQuitBeforeWelcome(clock: Clock) -> None:
    """
    Lines typed and ended before the welcome are sent after it, and the
    goodbye waits for their acks too.
    """
    s = JsonMemorySession(clock)
    s.requests()
    s.client.userLine("early")
    s.client.userEOF()
    s.flush()
    assert (s.requests(), s.closes()) == ([], [])
    s.welcome()
    assert s.requests() == [{"type": "say", "text": "early", "ref": "c1"}]
    assert s.closes() == []
    s.serverSends(msg("#lobby", 1, "alice", "early"), ack("c1", 1))
    assert s.closes() == [(True, 1000, None)]
    assert result(s.client.done) == 0


def test_jsonQuitRefused(clock: Clock) -> None:
    """
    An C{error} answering a C{say} confirms it too (it was refused, not
    lost): the goodbye goes, and the status is 3.
    """
    s = JsonMemorySession(clock)
    s.welcome()
    s.client.userLine("hi")
    s.client.userEOF()
    s.flush()
    s.serverSends({"type": "error", "code": "flood", "message": "slow down", "ref": "c1"})
    assert s.closes() == [(True, 1000, None)]
    assert result(s.client.done) == 3
    assert s.ui.lines[-1] == "!!! slow down"
    assert s.ui.statuses == ["1 request was refused"]


def test_jsonQuitUnconfirmed(clock: Clock) -> None:
    """
    A server that never acknowledges: after the confirm timeout the client
    drops the connection (no reconnect) and ends with status 1, naming the
    message on stderr.
    """
    s = JsonMemorySession(clock)
    s.welcome()
    s.client.userLine("/me waves")
    s.client.userEOF()
    s.flush()
    s.clock.advance(9.9)
    s.flush()
    assert not s.client.done.called
    s.clock.advance(0.1)
    s.flush()
    assert result(s.client.done) == 1
    assert s.ui.statuses == [
        "gave up waiting: the server confirmed nothing for 10 s",
        "1 message not confirmed by the server (it may or may not have gone through):",
        "  /me waves",
    ]
    assert len(s.endpoint.pumps) == 1


def test_jsonQuitWaitsAsLongAsTheServerConfirms(clock: Clock) -> None:
    """
    A server that confirms a long paste slowly (its flood control lets a
    request through every few seconds) is waited for as long as it keeps
    confirming: each ack starts the bound again. Status 0.
    """
    s = JsonMemorySession(clock)
    s.welcome()
    s.requests()
    for i in range(3):
        s.client.userLine("line %d" % (i,))
    s.client.userEOF()
    s.flush()
    refs = [r["ref"] for r in s.requests()]
    assert len(refs) == 3
    for i, ref in enumerate(refs, 1):
        s.clock.advance(9.0)
        s.flush()
        assert not s.client.done.called
        s.serverSends(msg("#lobby", i, "alice", "line %d" % (i - 1,)), {"type": "ack", "ref": ref, "room": "#lobby", "epoch": "e1", "id": i})
    assert result(s.client.done) == 0
    assert s.ui.statuses == []


def test_jsonQuitResumesLostConnection(clock: Clock) -> None:
    """
    When the connection is lost while the goodbye waits for an ack, the
    client reconnects, resumes, sends the message again with the same ref,
    and quits once that is acknowledged and its echo, in the rejoin's
    history, has arrived: status 0, the echo shown once.
    """
    s = JsonMemorySession(clock)
    s.welcome()
    s.requests()
    s.client.userLine("hi")
    s.client.userEOF()
    s.flush()
    assert s.requests() == [{"type": "say", "text": "hi", "ref": "c1"}]
    # stored and echoed, but the echo and the ack are lost with the connection
    s.server.transport.abortConnection()
    s.flush()
    assert not s.client.done.called
    assert s.ui.statuses == [
        "connection lost (peer dropped the TCP connection without previous WebSocket closing handshake):"
        " reconnecting in 0.0 s\u2026",
        "reconnected to 127.0.0.1:8080",
    ]
    assert len(s.endpoint.pumps) == 2
    assert s.requests() == [{"type": "hello", "nick": "alice", "rooms": ["#lobby"]}]
    s.serverSends(
        {"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]},
        {"type": "join", "room": "#lobby", "nick": "alice", "time": 0},
    )
    assert s.requests() == [{"type": "say", "text": "hi", "ref": "c1"}]
    assert [wasClean for wasClean, _, _ in s.closes()] == [False]
    # the first message's ack at once; its echo comes with the history
    s.serverSends(ack("c1", 1))
    assert len(s.closes()) == 1
    s.serverSends({"type": "history", "room": "#lobby", "epoch": "e1", "messages": [msg("#lobby", 1, "alice", "hi")]})
    assert s.closes()[1:] == [(True, 1000, None)]
    assert result(s.client.done) == 0
    echoes = [line for line in s.ui.lines if line.endswith("<alice> hi")]
    assert len(echoes) == 1 and re.fullmatch(r"#lobby \[[^\]]+\] <alice> hi", echoes[0]), s.ui.lines


@pytest_twisted.ensureDeferred
async def test_jsonSessionNeedsSubprotocol() -> None:
    """
    A WebSocket server that does not accept the C{chat.json} subprotocol is
    a failure to connect (status 1), not a chat.
    """
    from twisted.internet import reactor

    factory = _fakeJsonServerFactory(acceptJson=False)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        ui = FakeUI()
        portNumber = port.getHost().port
        client = ChatClient(Target("ws", "127.0.0.1", portNumber, "/"), ui, reactor)
        connect(reactor, client)
        assert await client.done.addTimeout(TIMEOUT, reactor) == 1
        assert ui.statuses == [
            "cannot connect to 127.0.0.1:%d: the server does not speak chat.json (wrong URL path?)" % (portNumber,)
        ]
        await factory.closes.get().addTimeout(TIMEOUT, reactor)
    finally:
        await stopListening(port)


@pytest_twisted.ensureDeferred
async def test_connectRefused() -> None:
    """
    Connecting to a port nobody listens on ends with status 1 and "cannot
    connect to HOST:PORT: connection refused".
    """
    from twisted.internet import reactor

    portNumber = freeLoopbackPort()
    ui = FakeUI()
    client = ChatClient(Target("tcp", "127.0.0.1", portNumber), ui, reactor)
    connect(reactor, client)
    assert await client.done.addTimeout(TIMEOUT, reactor) == 1
    assert ui.statuses == ["cannot connect to 127.0.0.1:%d: connection refused" % (portNumber,)]

