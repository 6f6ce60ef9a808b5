"""
Tests for the Engine.IO v4 server (L{twisted_chat.frontends.socketio.engineio}) in memory: real
HTTP requests and a real Autobahn WebSocket client talk to the real C{Site}
through C{iosim}, every timer on one L{Clock}.

The behaviour checked is that of the public engine.io-protocol
specification (v4) and of its test suite, whose server echoes every message
and runs with C{pingInterval} 300 ms, C{pingTimeout} 200 ms and
C{maxPayload} 1000000: the same packets, status codes and error bodies.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import Site

from twisted_chat.frontends.socketio.engineio import (
    BAD_REQUEST,
    CLOSE,
    MESSAGE,
    NOOP,
    PING,
    PONG,
    BoundedRequest,
    EngineResource,
    EngineError,
    EngineServer,
    EngineSocket,
    ProtocolError,
    decodePacket,
    decodePayload,
    encodePacket,
    encodePayload,
)
from twisted_chat.core.settings import Settings

from tests.support.harness import HOST, PING_INTERVAL, PING_TIMEOUT, HttpExchange, Network, Response


class Echo:
    """
    The test suite's server side: every message goes back as it came.
    """

    def __init__(self, socket: EngineSocket) -> None:
        self.socket = socket
        self.closed: list[str] = []

    def onMessage(self, data: str | bytes) -> None:
        self.socket.send(data)

    def onClose(self, reason: str) -> None:
        self.closed.append(reason)


class Engine:
    """
    An L{EngineServer} whose sessions echo, at C{/engine.io/} of a C{Site}.
    """

    def __init__(self, clock: Clock, path: str = "engine.io", **options: Any) -> None:
        settings: dict[str, Any] = dict(pingInterval=PING_INTERVAL, pingTimeout=PING_TIMEOUT, maxPayload=1000000)
        settings.update(options)
        self.handlers: list[Echo] = []
        self.server = EngineServer(self._handler, clock=clock, **settings)
        root = Resource()
        root.putChild(path.encode(), EngineResource(self.server))
        self.site = Site(root, reactor=clock)
        self.site.requestFactory = BoundedRequest
        self.site.maxRequestBody = self.server.maxPayload  # type: ignore[attr-defined]
        self.site.noisy = False
        self.net = Network(clock, self.site)
        self.path = "/" + path + "/"

    def _handler(self, socket: EngineSocket) -> Echo:
        handler = Echo(socket)
        self.handlers.append(handler)
        return handler

    def url(self, query: str) -> str:
        return self.path + "?" + query

    def handshake(self) -> str:
        """
        Open a polling session; return its sid.
        """
        response = self.net.fetch("GET", self.url("EIO=4&transport=polling"))
        assert response.status == 200, response
        return json.loads(response.text[1:])["sid"]  # type: ignore[no-any-return]

    def poll(self, sid: str) -> HttpExchange:
        return self.net.send("GET", self.url("EIO=4&transport=polling&sid=" + sid))

    def post(self, sid: str, body: str | bytes, headers: dict[str, str] | None = None) -> Response:
        data = body.encode("utf-8") if isinstance(body, str) else body
        return self.net.fetch("POST", self.url("EIO=4&transport=polling&sid=" + sid), data, headers)


@pytest.fixture
def engine(clock: Clock) -> Engine:
    """
    The test suite's configuration: pingInterval 300 ms, pingTimeout 200 ms,
    maxPayload 1000000, echoing sessions.
    """
    return Engine(clock)


def errorOf(response: Response) -> tuple[int, dict[str, Any]]:
    return response.status, response.json()


# -- packets and payloads --


@pytest.mark.parametrize(
    "packet, text",
    [
        ((MESSAGE, "hello"), "4hello"),
        ((PING, "probe"), "2probe"),
        ((PONG, "probe"), "3probe"),
        ((PING, None), "2"),
        ((NOOP, None), "6"),
        ((CLOSE, None), "1"),
        ((MESSAGE, "€"), "4€"),
    ],
)
def test_textPackets(packet: tuple[int, str | None], text: str) -> None:
    """
    A packet is its type's digit followed by its data, both ways.
    """
    assert encodePacket(*packet) == text
    assert decodePacket(text) == packet


def test_binaryPacket() -> None:
    """
    Binary data is a message written as C{b} and base64 in a polling payload,
    and sent as is (no type byte) in a WebSocket frame.
    """
    assert encodePacket(MESSAGE, b"\x01\x02\x03\x04") == "bAQIDBA=="
    assert encodePacket(MESSAGE, b"\x01\x02\x03\x04", binaryAsBase64=False) == b"\x01\x02\x03\x04"
    assert decodePacket("bAQIDBA==") == (MESSAGE, b"\x01\x02\x03\x04")


def test_payloads() -> None:
    """
    The packets of one polling payload are separated by the record
    separator (0x1E), whatever the characters in them, and the payload is
    UTF-8.
    """
    packets = [(MESSAGE, "hello"), (PING, None), (MESSAGE, "world")]
    assert encodePayload(packets) == b"4hello\x1e2\x1e4world"
    assert decodePayload(b"4hello\x1e2\x1e4world") == packets
    assert encodePayload([(MESSAGE, "hello"), (MESSAGE, b"\x01\x02\x03\x04")]) == b"4hello\x1ebAQIDBA=="
    assert encodePayload([(MESSAGE, "€")]) == "4€".encode("utf-8")
    assert decodePayload("4€\x1e4é".encode("utf-8")) == [(MESSAGE, "€"), (MESSAGE, "é")]


@pytest.mark.parametrize("body", [b"", b"abc", b"9", b"4ok\x1e", b"b!!!", b"4\xff"])
def test_badPayloads(body: bytes) -> None:
    """
    An empty packet, an unknown type, bad base64 or bytes that are not
    UTF-8 are protocol errors.
    """
    with pytest.raises(ProtocolError):
        decodePayload(body)


# -- handshake --


def test_pollingHandshake(engine: Engine) -> None:
    """
    A GET with EIO=4 and transport=polling opens a session: 200 with the
    open packet, whose JSON has exactly sid, upgrades (websocket),
    pingInterval and pingTimeout in milliseconds, and maxPayload.
    """
    response = engine.net.fetch("GET", engine.url("EIO=4&transport=polling&t=N8hyd6w"))
    assert response.status == 200
    assert response.headers["content-type"] == "text/plain; charset=UTF-8"
    assert response.text.startswith("0")
    value = json.loads(response.text[1:])
    assert set(value) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert isinstance(value["sid"], str) and len(value["sid"]) >= 16
    assert value["upgrades"] == ["websocket"]
    assert value["pingInterval"] == 300
    assert value["pingTimeout"] == 200
    assert value["maxPayload"] == 1000000
    assert list(engine.server.sessions) == [value["sid"]]


@pytest.mark.parametrize("query", ["transport=polling", "EIO=abc&transport=polling", "EIO=3&transport=polling"])
def test_badVersion(engine: Engine, query: str) -> None:
    """
    A missing or other protocol version is refused: 400, code 5.
    """
    assert errorOf(engine.net.fetch("GET", engine.url(query))) == (
        400,
        {"code": 5, "message": "Unsupported protocol version"},
    )
    assert engine.server.sessions == {}


@pytest.mark.parametrize("query", ["EIO=4", "EIO=4&transport=abc"])
def test_badTransport(engine: Engine, query: str) -> None:
    """
    A missing or unknown transport is refused: 400, code 0.
    """
    assert errorOf(engine.net.fetch("GET", engine.url(query))) == (400, {"code": 0, "message": "Transport unknown"})


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_badHandshakeMethod(engine: Engine, method: str) -> None:
    """
    Only a GET opens a session: 400, code 2.
    """
    response = engine.net.fetch(method, engine.url("EIO=4&transport=polling"), b"4x")
    assert errorOf(response) == (400, {"code": 2, "message": "Bad handshake method"})


def test_unknownSid(engine: Engine) -> None:
    """
    A sid the server does not know is refused, on GET and POST: 400, code 1.
    """
    expected = (400, {"code": 1, "message": "Session ID unknown"})
    assert errorOf(engine.poll("nope").response) == expected
    assert errorOf(engine.post("nope", "4hi")) == expected


def test_websocketTransportWithoutUpgrade(engine: Engine) -> None:
    """
    transport=websocket on a plain GET is a bad request: 400, code 3.
    """
    response = engine.net.fetch("GET", engine.url("EIO=4&transport=websocket"))
    assert errorOf(response) == (400, {"code": 3, "message": "Bad request"})


def test_unknownPath(engine: Engine) -> None:
    """
    Only the Engine.IO path itself is served, nothing below it.
    """
    assert engine.net.fetch("GET", engine.path + "x?EIO=4&transport=polling").status == 404


def test_websocketHandshake(engine: Engine) -> None:
    """
    A WebSocket with EIO=4 and transport=websocket is a session of its own:
    its first frame is the open packet, with no upgrades.
    """
    peer = engine.net.websocket(engine.url("EIO=4&transport=websocket"))
    assert peer.opened
    [frame] = peer.take()
    assert isinstance(frame, str) and frame.startswith("0")
    value = json.loads(frame[1:])
    assert set(value) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert value["upgrades"] == []
    assert (value["pingInterval"], value["pingTimeout"], value["maxPayload"]) == (300, 200, 1000000)
    assert engine.server.sessions[value["sid"]].transport == "websocket"


@pytest.mark.parametrize(
    "query", ["transport=websocket", "EIO=abc&transport=websocket", "EIO=4", "EIO=4&transport=abc", "EIO=4&transport=polling"]
)
def test_websocketHandshakeRefused(engine: Engine, query: str) -> None:
    """
    A WebSocket without a valid version and transport is closed: the
    handshake is refused and no session is opened.
    """
    peer = engine.net.websocket(engine.url(query))
    assert not peer.opened
    assert peer.closed is not None
    assert engine.server.sessions == {}


# -- messages --


def test_pollingMessage(engine: Engine) -> None:
    """
    A POST answers 200 "ok"; what the session sends back comes with the
    next GET.
    """
    sid = engine.handshake()
    response = engine.post(sid, "4hello")
    assert (response.status, response.text) == (200, "ok")
    poll = engine.poll(sid).response
    assert (poll.status, poll.text) == (200, "4hello")
    assert poll.headers["content-type"] == "text/plain; charset=UTF-8"


def test_pollingSeveralMessages(engine: Engine) -> None:
    """
    Several packets in one POST are taken in order, and what waits for the
    client goes in one response, separated by the record separator.
    """
    sid = engine.handshake()
    assert engine.post(sid, "4test1\x1e4test2\x1e4test3").text == "ok"
    assert engine.poll(sid).response.text == "4test1\x1e4test2\x1e4test3"


def test_pollingBinary(engine: Engine) -> None:
    """
    Binary packets travel base64-encoded with the C{b} prefix, mixed with
    text packets.
    """
    sid = engine.handshake()
    assert engine.post(sid, "4hello\x1ebAQIDBA==").text == "ok"
    assert engine.poll(sid).response.text == "4hello\x1ebAQIDBA=="


def test_longPoll(engine: Engine) -> None:
    """
    A GET with nothing to send waits; it is answered as soon as there is
    something, with everything sent in the meantime.
    """
    sid = engine.handshake()
    poll = engine.poll(sid)
    assert not poll.done
    socket = engine.server.sessions[sid]
    socket.send("one")
    socket.send("two")
    engine.net.flush()
    assert poll.response.text == "4one\x1e4two"


def test_pollingInvalidPacket(engine: Engine) -> None:
    """
    An invalid packet in a POST is answered 400 and closes the session.
    """
    sid = engine.handshake()
    assert engine.post(sid, "abc").status == 400
    assert errorOf(engine.poll(sid).response) == (400, {"code": 1, "message": "Session ID unknown"})
    assert engine.handlers[0].closed == ["parse error"]


def test_duplicatePoll(engine: Engine) -> None:
    """
    A GET while another GET of the session waits is refused with 400, the
    waiting one gets the close packet, and the session is gone.
    """
    sid = engine.handshake()
    first = engine.poll(sid)
    second = engine.poll(sid)
    assert second.response.status == 400
    assert (first.response.status, first.response.text) == (200, "1")
    assert engine.poll(sid).response.status == 400


def test_websocketMessages(engine: Engine) -> None:
    """
    On a WebSocket every packet is one frame; binary data is a binary frame
    without a type.
    """
    peer = engine.net.websocket(engine.url("EIO=4&transport=websocket"))
    peer.take()
    peer.send("4hello")
    engine.net.flush()
    assert peer.take() == ["4hello"]
    peer.send(b"\x01\x02\x03\x04")
    engine.net.flush()
    assert peer.take() == [b"\x01\x02\x03\x04"]


@pytest.mark.parametrize("frame", ["abc", "bAQIDBA==", ""])
def test_websocketInvalidPacket(engine: Engine, frame: str) -> None:
    """
    An invalid packet on a WebSocket closes it and the session (base64 is
    only for polling).
    """
    peer = engine.net.websocket(engine.url("EIO=4&transport=websocket"))
    peer.send(frame)
    engine.net.flush()
    assert peer.closed is not None
    assert engine.server.sessions == {}


# -- heartbeat --


def test_pollingPingPong(engine: Engine) -> None:
    """
    The server pings every pingInterval; a client that answers with a pong
    keeps its session.
    """
    sid = engine.handshake()
    for _ in range(3):
        poll = engine.poll(sid)
        assert not poll.done
        engine.net.advance(PING_INTERVAL)
        assert (poll.response.status, poll.response.text) == (200, "2")
        assert engine.post(sid, "3").status == 200
        engine.net.advance(PING_TIMEOUT)
    assert sid in engine.server.sessions


def test_pollingPingTimeout(engine: Engine) -> None:
    """
    A polling client that neither polls nor pongs is gone after
    pingInterval + pingTimeout: its sid is unknown from then on.
    """
    sid = engine.handshake()
    engine.net.advance(PING_INTERVAL)
    engine.net.advance(PING_TIMEOUT - 0.01)
    assert sid in engine.server.sessions
    engine.net.advance(0.01 + 1e-6)
    assert errorOf(engine.poll(sid).response) == (400, {"code": 1, "message": "Session ID unknown"})
    assert engine.handlers[0].closed == ["ping timeout"]


def test_pollingPingWithoutPong(engine: Engine) -> None:
    """
    Receiving the ping is not enough: without a pong within pingTimeout the
    session is closed.
    """
    sid = engine.handshake()
    engine.net.advance(PING_INTERVAL)
    assert engine.poll(sid).response.text == "2"
    engine.net.advance(PING_TIMEOUT)
    assert engine.poll(sid).response.status == 400


def test_websocketPingPong(engine: Engine) -> None:
    """
    On a WebSocket the ping is a "2" frame, answered by "3".
    """
    peer = engine.net.websocket(engine.url("EIO=4&transport=websocket"))
    peer.take()
    for _ in range(3):
        engine.net.advance(PING_INTERVAL)
        assert peer.take() == ["2"]
        peer.send("3")
        engine.net.flush()
    assert peer.closed is None


def test_websocketPingTimeout(engine: Engine) -> None:
    """
    A WebSocket client that does not pong is closed.
    """
    peer = engine.net.websocket(engine.url("EIO=4&transport=websocket"))
    engine.net.advance(PING_INTERVAL)
    engine.net.advance(PING_TIMEOUT)
    assert peer.closed is not None
    assert engine.server.sessions == {}


# -- close --


def test_pollingClientClose(engine: Engine) -> None:
    """
    A close packet posted by the client ends the session; the waiting GET
    is answered with a noop.
    """
    sid = engine.handshake()
    poll = engine.poll(sid)
    assert engine.post(sid, "1").status == 200
    assert (poll.response.status, poll.response.text) == (200, "6")
    assert engine.poll(sid).response.status == 400
    assert engine.handlers[0].closed == ["client close"]


def test_websocketClientClose(engine: Engine) -> None:
    """
    A close packet on a WebSocket ends the session and the connection.
    """
    peer = engine.net.websocket(engine.url("EIO=4&transport=websocket"))
    peer.send("1")
    engine.net.flush()
    assert peer.closed is not None
    assert engine.server.sessions == {}


def test_serverCloseWithPoll(engine: Engine) -> None:
    """
    When the server ends a session, a waiting GET gets what was sent and the
    close packet.
    """
    sid = engine.handshake()
    poll = engine.poll(sid)
    socket = engine.server.sessions[sid]
    socket.send("bye")
    socket.close()
    engine.net.flush()
    assert poll.response.text == "4bye\x1e1"
    assert sid not in engine.server.sessions


def test_serverCloseWithoutPoll(engine: Engine) -> None:
    """
    When the server ends a session that has no GET waiting, the next GET
    gets what was sent and the close packet; a client that never comes back
    is forgotten after pingTimeout.
    """
    sid = engine.handshake()
    socket = engine.server.sessions[sid]
    socket.send("bye")
    socket.close()
    assert socket.state == "closing"
    assert engine.poll(sid).response.text == "4bye\x1e1"
    assert sid not in engine.server.sessions

    other = engine.handshake()
    engine.server.sessions[other].close()
    engine.net.advance(PING_TIMEOUT)
    assert other not in engine.server.sessions
    assert engine.handlers[1].closed == ["server close"]


# -- upgrade --


def test_upgrade(engine: Engine) -> None:
    """
    A WebSocket with the sid of a polling session is a probe: "2probe" is
    answered "3probe", the waiting GET gets a noop, and after "5" the
    session goes on over the WebSocket.
    """
    sid = engine.handshake()
    poll = engine.poll(sid)
    peer = engine.net.websocket(engine.url("EIO=4&transport=websocket&sid=" + sid))
    assert peer.opened and peer.take() == []
    peer.send("2probe")
    engine.net.flush()
    assert peer.take() == ["3probe"]
    assert (poll.response.status, poll.response.text) == (200, "6")
    peer.send("5")
    peer.send("4hello")
    engine.net.flush()
    assert peer.take() == ["4hello"]
    assert engine.server.sessions[sid].transport == "websocket"


def test_upgradeKeepsWaitingPackets(engine: Engine) -> None:
    """
    Packets sent while the upgrade is under way are not lost: they go over
    the WebSocket once the client has sent "5".
    """
    sid = engine.handshake()
    peer = engine.net.websocket(engine.url("EIO=4&transport=websocket&sid=" + sid))
    peer.send("2probe")
    engine.net.flush()
    assert peer.take() == ["3probe"]
    engine.server.sessions[sid].send("meanwhile")
    assert engine.poll(sid).response.text == "6"
    peer.send("5")
    engine.net.flush()
    assert peer.take() == ["4meanwhile"]


def test_pollAfterUpgrade(engine: Engine) -> None:
    """
    Once upgraded, polling requests with the sid are refused (400) and the
    WebSocket goes on.
    """
    sid = engine.handshake()
    peer = engine.net.websocket(engine.url("EIO=4&transport=websocket&sid=" + sid))
    peer.send("2probe")
    peer.send("5")
    engine.net.flush()
    assert errorOf(engine.poll(sid).response) == (400, {"code": 3, "message": "Bad request"})
    assert engine.post(sid, "4x").status == 400
    peer.take()
    peer.send("4hello")
    engine.net.flush()
    assert peer.take() == ["4hello"]


def test_secondWebSocketAfterUpgrade(engine: Engine) -> None:
    """
    A second WebSocket with the same sid is refused; the first goes on.
    """
    sid = engine.handshake()
    peer = engine.net.websocket(engine.url("EIO=4&transport=websocket&sid=" + sid))
    peer.send("2probe")
    peer.send("5")
    engine.net.flush()
    second = engine.net.websocket(engine.url("EIO=4&transport=websocket&sid=" + sid))
    assert not second.opened and second.closed is not None
    peer.take()
    peer.send("4hello")
    engine.net.flush()
    assert peer.take() == ["4hello"]


def test_probeWithUnknownSid(engine: Engine) -> None:
    """
    A WebSocket with an unknown sid is refused.
    """
    peer = engine.net.websocket(engine.url("EIO=4&transport=websocket&sid=nope"))
    assert not peer.opened and peer.closed is not None


def test_failedProbe(engine: Engine) -> None:
    """
    A probe that sends anything but the probe ping or the upgrade is
    closed; the session stays on polling, and what waited goes by polling.
    """
    sid = engine.handshake()
    peer = engine.net.websocket(engine.url("EIO=4&transport=websocket&sid=" + sid))
    peer.send("2probe")
    engine.net.flush()
    engine.server.sessions[sid].send("later")
    peer.send("4too early")
    engine.net.flush()
    assert peer.closed is not None
    assert engine.poll(sid).response.text == "4later"
    assert engine.server.sessions[sid].transport == "polling"


def test_upgradeTimeout(clock: Clock) -> None:
    """
    A probe that does not complete the upgrade in time is closed.
    """
    engine = Engine(clock, pingInterval=60, pingTimeout=60, upgradeTimeout=10)
    sid = engine.handshake()
    peer = engine.net.websocket(engine.url("EIO=4&transport=websocket&sid=" + sid))
    peer.send("2probe")
    engine.net.advance(10)
    assert peer.closed is not None
    assert engine.server.sessions[sid].transport == "polling"
    assert engine.poll(sid).done is False


# -- limits --


def test_payloadTooLarge(clock: Clock) -> None:
    """
    A POST body over maxPayload is refused with 413 and closes the session;
    the body is not kept.
    """
    engine = Engine(clock, maxPayload=1000)
    sid = engine.handshake()
    response = engine.post(sid, "4" + "x" * 1000)
    assert errorOf(response) == (413, {"code": 3, "message": "Payload too large"})
    assert engine.poll(sid).response.status == 400
    assert engine.handlers[0].closed == ["payload too large"]

    sid = engine.handshake()
    assert engine.post(sid, "4" + "x" * 999).text == "ok"


def test_payloadTooLargeChunked(clock: Clock) -> None:
    """
    A chunked body over the limit is refused as well.
    """
    engine = Engine(clock, maxPayload=1000)
    sid = engine.handshake()
    chunk = b"4" + b"x" * 1500
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk)
    exchange = engine.net.send(
        "POST", engine.url("EIO=4&transport=polling&sid=" + sid), body, {"Transfer-Encoding": "chunked"}
    )
    assert exchange.response.status == 413


def test_websocketMessageTooLarge(clock: Clock) -> None:
    """
    A WebSocket message over maxPayload closes the connection.
    """
    engine = Engine(clock, maxPayload=1000)
    peer = engine.net.websocket(engine.url("EIO=4&transport=websocket"))
    peer.send("4" + "x" * 1000)
    engine.net.flush()
    assert peer.closed is not None and peer.closed[1] == 1009
    assert engine.server.sessions == {}


def test_maxSessions(clock: Clock) -> None:
    """
    Past maxSessions, new sessions are refused with 503 (polling) or a
    refused handshake (WebSocket); closing one makes room.
    """
    engine = Engine(clock, maxSessions=2)
    first = engine.handshake()
    engine.handshake()
    assert errorOf(engine.net.fetch("GET", engine.url("EIO=4&transport=polling"))) == (
        503,
        {"code": 3, "message": "Too many sessions"},
    )
    peer = engine.net.websocket(engine.url("EIO=4&transport=websocket"))
    assert not peer.opened
    engine.post(first, "1")
    assert engine.net.fetch("GET", engine.url("EIO=4&transport=polling")).status == 200


def test_slowPollingClient(clock: Clock) -> None:
    """
    A polling client that lets more than maxOutgoing bytes pile up is
    dropped.
    """
    engine = Engine(clock, settings=Settings(maxOutgoing=10000))
    sid = engine.handshake()
    socket = engine.server.sessions[sid]
    for _ in range(11):
        socket.send("x" * 999)
    assert sid not in engine.server.sessions
    assert engine.handlers[0].closed == ["too slow"]


# -- Origin and CORS --


def test_corsAllowedOrigin(clock: Clock) -> None:
    """
    A request from an allowed origin gets Access-Control-Allow-Origin (that
    origin) and Access-Control-Allow-Credentials, so the page can read it.
    """
    engine = Engine(clock, allowedOrigins=["http://pages.example"])
    response = engine.net.fetch(
        "GET", engine.url("EIO=4&transport=polling"), headers={"Origin": "http://pages.example"}
    )
    assert response.status == 200
    assert response.headers["access-control-allow-origin"] == "http://pages.example"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["vary"] == "Origin"


def test_corsSameOrigin(engine: Engine) -> None:
    """
    A page of the server's own origin (same host and port) is allowed.
    """
    response = engine.net.fetch("GET", engine.url("EIO=4&transport=polling"), headers={"Origin": "http://" + HOST})
    assert response.status == 200
    assert response.headers["access-control-allow-origin"] == "http://" + HOST


def test_corsOtherOrigin(engine: Engine) -> None:
    """
    A request from another origin is refused: 403, code 4, and no session.
    """
    for method in ("GET", "POST"):
        response = engine.net.fetch(
            method, engine.url("EIO=4&transport=polling"), b"", {"Origin": "http://evil.example"}
        )
        assert errorOf(response) == (403, {"code": 4, "message": "Forbidden"})
        assert "access-control-allow-origin" not in response.headers
    assert engine.server.sessions == {}


def test_corsPreflight(clock: Clock) -> None:
    """
    A preflight OPTIONS from an allowed origin is answered 204 with the
    methods and the requested headers allowed; from another origin, 403.
    """
    engine = Engine(clock, allowedOrigins=["http://pages.example"])
    response = engine.net.fetch(
        "OPTIONS",
        engine.url("EIO=4&transport=polling"),
        headers={
            "Origin": "http://pages.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-token",
        },
    )
    assert response.status == 204
    assert response.headers["access-control-allow-origin"] == "http://pages.example"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert set(response.headers["access-control-allow-methods"].split(", ")) == {"GET", "POST", "OPTIONS"}
    assert response.headers["access-control-allow-headers"] == "content-type, x-token"
    refused = engine.net.fetch("OPTIONS", engine.url("EIO=4&transport=polling"), headers={"Origin": "http://evil.example"})
    assert refused.status == 403


def test_websocketOrigin(clock: Clock) -> None:
    """
    A WebSocket from another origin is refused; an allowed one opens.
    """
    engine = Engine(clock, allowedOrigins=["http://pages.example"])
    assert not engine.net.websocket(engine.url("EIO=4&transport=websocket"), origin="http://evil.example").opened
    assert engine.net.websocket(engine.url("EIO=4&transport=websocket"), origin="http://pages.example").opened


def test_securityHeaders(engine: Engine) -> None:
    """
    Responses are not cached and not content-sniffed.
    """
    response = engine.net.fetch("GET", engine.url("EIO=4&transport=polling"))
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_timersAllGone(engine: Engine, clock: Clock) -> None:
    """
    A closed session leaves no timer behind.
    """
    sid = engine.handshake()
    engine.post(sid, "1")
    peer = engine.net.websocket(engine.url("EIO=4&transport=websocket"))
    peer.send("1")
    engine.net.flush()
    engine.net.advance(10)
    assert [c for c in clock.getDelayedCalls() if c.func.__module__.startswith("twisted_chat.")] == []


class _Admission:
    """
    At most C{limit} sessions in all, counted by address.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.hosts: list[str] = []

    def admit(self, host: str) -> None:
        if len(self.hosts) >= self.limit:
            raise EngineError(BAD_REQUEST, 503, "the server is full")
        self.hosts.append(host)

    def release(self, host: str) -> None:
        self.hosts.remove(host)


def test_admission(clock: Clock) -> None:
    """
    Every session, polling or WebSocket, is admitted by the admission
    policy when it opens (by the client's address) and released when it
    closes, also when a WebSocket closes before its session opened.
    """
    admission = _Admission(2)
    engine = Engine(clock, admission=admission)
    sid = engine.handshake()
    peer = engine.net.websocket(engine.url("EIO=4&transport=websocket"))
    assert peer.opened and admission.hosts == ["127.0.0.1", "127.0.0.1"]
    assert errorOf(engine.net.fetch("GET", engine.url("EIO=4&transport=polling"))) == (
        503,
        {"code": 3, "message": "the server is full"},
    )
    assert not engine.net.websocket(engine.url("EIO=4&transport=websocket")).opened
    engine.post(sid, "1")
    peer.send("1")
    engine.net.flush()
    assert admission.hosts == []
