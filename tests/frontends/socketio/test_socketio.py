"""
Tests for Socket.IO v5 (L{twisted_chat.frontends.socketio.packets},
L{twisted_chat.frontends.socketio.connection}) and the chat on it
(L{twisted_chat.frontends.socketio.chat}) in memory: the packet
format, the protocol over real Engine.IO sessions (an Autobahn WebSocket
client or HTTP long-polling through C{iosim}, timers on a L{Clock}), and the
chat on top of it with the real L{ChatService}.

The protocol facts are those of the public socket.io-protocol specification
(v5) and its test suite, whose server emits C{auth} with the handshake's
auth on connection, answers C{message} with C{message-back} and the same
arguments, acknowledges C{message-with-ack} with its arguments, and also
serves the namespace C{/custom}.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterator

import pytest
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site

from twisted_chat.core.auth import hashPassword
from twisted_chat.frontends.socketio.engineio import BoundedRequest, EngineResource, EngineServer, ProtocolError
from twisted_chat.core.events import Message
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.core.limits import Admission
from twisted_chat.core.service import ChatService
from twisted_chat.frontends.socketio.chat import SocketIoChatClient, makeSocketIo
from twisted_chat.frontends.socketio.connection import NamespaceSocket, SocketIoServer
from twisted_chat.frontends.socketio.packets import (
    ACK,
    BINARY_ACK,
    BINARY_EVENT,
    CONNECT,
    CONNECT_ERROR,
    DISCONNECT,
    EVENT,
    Decoder,
    decodeText,
    encodePacket,
    encodeText,
)
from twisted_chat.frontends.web import makeSite
from twisted_chat.frontends.websocket import ChatWebSocketFactory
from twisted_chat.stores.memory import MemoryStore
from zope.interface.verify import verifyObject

from tests.support.fakes import RecordingClient
from tests.support.harness import HOST, PING_INTERVAL, PING_TIMEOUT, Network, Peer, Response, autobahnTimers

WS = "/socket.io/?EIO=4&transport=websocket"
POLLING = "/socket.io/?EIO=4&transport=polling"
GREETING = "*** Welcome to twisted-chat, %s! You are in #lobby. Type /help for commands."


# -- the packet format --


@pytest.mark.parametrize(
    "packet, encoded",
    [
        ((CONNECT, "/", None, None), ["0"]),
        ((CONNECT, "/admin", {"sid": "oSO0OpakMV_3jnilAAAA"}, None), ['0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}']),
        ((CONNECT_ERROR, "/", {"message": "Not authorized"}, None), ['4{"message":"Not authorized"}']),
        ((EVENT, "/", ["foo"], None), ['2["foo"]']),
        ((EVENT, "/admin", ["bar"], None), ['2/admin,["bar"]']),
        ((EVENT, "/", ["foo"], 12), ['212["foo"]']),
        ((ACK, "/admin", ["bar"], 13), ['3/admin,13["bar"]']),
        ((ACK, "/", [], 12), ["312[]"]),
        ((DISCONNECT, "/", None, None), ["1"]),
        ((DISCONNECT, "/admin", None, None), ["1/admin,"]),
        ((EVENT, "/", ["baz", b"\x01\x02\x03\x04"], None), ['51-["baz",{"_placeholder":true,"num":0}]', b"\x01\x02\x03\x04"]),
        (
            (EVENT, "/admin", ["baz", b"\x01\x02", b"\x03\x04"], None),
            ['52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]', b"\x01\x02", b"\x03\x04"],
        ),
        ((ACK, "/", ["bar", b"\x01\x02\x03\x04"], 15), ['61-15["bar",{"_placeholder":true,"num":0}]', b"\x01\x02\x03\x04"]),
        ((EVENT, "/", ["héllo", {"a": [1, True, None]}], None), ['2["héllo",{"a":[1,true,null]}]']),
    ],
)
def test_encodeAndDecode(packet: tuple[int, str, Any, int | None], encoded: list[str | bytes]) -> None:
    """
    The specification's examples: type digit, attachment count and dash for
    binary packets, namespace and comma unless it is "/", ack id, JSON
    payload with binary values as placeholders, then the attachments. The
    decoder reads them back, attachments put in place.
    """
    ptype, nsp, data, id = packet
    assert encodePacket(ptype, nsp, data, id) == encoded
    decoder = Decoder()
    results = [decoder.feed(part) for part in encoded]
    assert results[:-1] == [None] * (len(encoded) - 1)
    decoded = results[-1]
    assert decoded is not None
    expectedType = ptype
    if any(isinstance(part, bytes) for part in encoded):
        expectedType = BINARY_EVENT if ptype == EVENT else BINARY_ACK
    assert (decoded.type, decoded.nsp, decoded.data, decoded.id) == (expectedType, nsp, data, id)


def test_encodeText() -> None:
    """
    A packet without binary values is one text message, the same as the
    first of L{encodePacket}'s (what a broadcast encodes once for all its
    recipients); binary data cannot go in one text message.
    """
    assert encodeText(EVENT, "/", ["message", "#lobby <bob> hi"]) == '2["message","#lobby <bob> hi"]'
    assert encodeText(ACK, "/admin", [{"ok": True}], 7) == '3/admin,7[{"ok":true}]'
    assert encodeText(EVENT, "/", ["x"]) == encodePacket(EVENT, "/", ["x"])[0]
    with pytest.raises(ValueError):
        encodeText(EVENT, "/", ["baz", b"\x01"])


def test_namespaceWithoutComma() -> None:
    """
    A namespace may end the packet without a comma.
    """
    packet = decodeText("0/random")
    assert (packet.type, packet.nsp, packet.data) == (CONNECT, "/random", None)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "7",
        '2{}',
        "2[]",
        '2abc["message-with-ack",1]',
        '2["connect"]',
        '2["disconnect"]',
        "2[true]",
        "1{}",
        "3[]",
        '0"x"',
        "0[1]",
        "5-[]",
        "5x-[]",
        '2["a",NaN]',
        "2[" * 100000,
    ],
)
def test_invalidPackets(text: str) -> None:
    """
    Unknown types, an EVENT payload that is not a non-empty array starting
    with an event name (reserved names excluded), an ack id that is not a
    number, a DISCONNECT with a payload, an ACK without an id, a CONNECT
    payload that is not an object, a bad attachment count, and what is not
    JSON (deep nesting included) are protocol errors.
    """
    with pytest.raises(ProtocolError):
        decodeText(text)


def test_attachmentErrors() -> None:
    """
    Binary data with no binary packet waiting for it, text while
    attachments are due, a placeholder without its attachment and more
    attachments than allowed are protocol errors.
    """
    with pytest.raises(ProtocolError):
        Decoder().feed(b"\x01")
    decoder = Decoder()
    assert decoder.feed('51-["a",{"_placeholder":true,"num":0}]') is None
    with pytest.raises(ProtocolError):
        decoder.feed('2["a"]')
    decoder = Decoder()
    assert decoder.feed('51-["a",{"_placeholder":true,"num":3}]') is None
    with pytest.raises(ProtocolError):
        decoder.feed(b"\x01")
    with pytest.raises(ProtocolError):
        Decoder(maxAttachments=2).feed('53-["a",1,2,3]')


# -- the protocol, with the test suite's server --


class SuiteNamespace:
    """
    The socket.io-protocol test suite's server for one namespace.
    """

    def __init__(self, socket: NamespaceSocket, log: list[tuple[str, object]]) -> None:
        self.socket = socket
        self.log = log

    def onConnect(self, auth: dict[str, Any]) -> None:
        self.log.append(("connect", self.socket.nsp))
        self.socket.emit("auth", auth)

    def onEvent(self, name: str, args: list[Any], ack: Callable[..., None] | None) -> None:
        if name == "message":
            self.socket.emit("message-back", *args)
        elif name == "message-with-ack" and ack is not None:
            ack(*args)
        elif name == "ask":
            self.socket.emit("question", *args, callback=lambda *reply: self.log.append(("answer", reply)))

    def onDisconnect(self, reason: str) -> None:
        self.log.append(("disconnect", reason))


class Suite:
    """
    Socket.IO at /socket.io/ with the test suite's namespaces "/" and "/custom".
    """

    def __init__(self, clock: Clock, connectTimeout: float = 1.0) -> None:
        self.log: list[tuple[str, object]] = []
        sio = SocketIoServer(
            {
                "/": lambda socket: SuiteNamespace(socket, self.log),
                "/custom": lambda socket: SuiteNamespace(socket, self.log),
            },
            connectTimeout=connectTimeout,
        )
        self.engine = EngineServer(sio, clock=clock, pingInterval=PING_INTERVAL, pingTimeout=PING_TIMEOUT, maxPayload=1000000)
        root = Resource()
        root.putChild(b"socket.io", EngineResource(self.engine))
        site = Site(root, reactor=clock)
        site.requestFactory = BoundedRequest
        self.net = Network(clock, site)

    def websocket(self) -> Peer:
        """
        A WebSocket session whose open packet was received.
        """
        peer = self.net.websocket(WS)
        [opening] = peer.take()
        assert isinstance(opening, str) and opening.startswith("0{")
        return peer

    def connected(self) -> Peer:
        """
        A WebSocket session connected to "/", its "auth" event received.
        """
        peer = self.websocket()
        self.exchange(peer, "40")
        return peer

    def exchange(self, peer: Peer, *frames: str | bytes) -> list[str | bytes]:
        for frame in frames:
            peer.send(frame)
        self.net.flush()
        return peer.take()


@pytest.fixture
def suite(clock: Clock) -> Suite:
    return Suite(clock)


def sidOf(frame: str | bytes, prefix: str) -> str:
    assert isinstance(frame, str) and frame.startswith(prefix), frame
    handshake = json.loads(frame[len(prefix) :])
    assert set(handshake) == {"sid"} and isinstance(handshake["sid"], str)
    return handshake["sid"]  # type: ignore[no-any-return]


def test_connectMain(suite: Suite) -> None:
    """
    CONNECT to "/" is answered with a CONNECT carrying the socket's sid,
    which differs from the Engine.IO session's; events sent on connection
    come after it.
    """
    peer = suite.websocket()
    [handshake, auth] = suite.exchange(peer, "40")
    sid = sidOf(handshake, "40")
    assert sid not in suite.engine.sessions
    assert auth == '42["auth",{}]'


def test_connectWithPayload(suite: Suite) -> None:
    """
    The CONNECT payload is the handshake's auth.
    """
    peer = suite.websocket()
    [handshake, auth] = suite.exchange(peer, '40{"token":"123"}')
    sidOf(handshake, "40")
    assert auth == '42["auth",{"token":"123"}]'


def test_connectCustomNamespace(suite: Suite) -> None:
    """
    A custom namespace is named in every packet, with a comma.
    """
    peer = suite.websocket()
    [handshake, auth] = suite.exchange(peer, '40/custom,{"token":"abc"}')
    sidOf(handshake, "40/custom,")
    assert auth == '42/custom,["auth",{"token":"abc"}]'


def test_unknownNamespace(suite: Suite) -> None:
    """
    CONNECT to a namespace that does not exist gets CONNECT_ERROR
    "Invalid namespace"; the session stays.
    """
    peer = suite.websocket()
    assert suite.exchange(peer, "40/random") == ['44/random,{"message":"Invalid namespace"}']
    assert peer.closed is None


def test_invalidHandshake(suite: Suite) -> None:
    """
    A first message that is not a packet closes the connection.
    """
    peer = suite.websocket()
    suite.exchange(peer, "4abc")
    assert peer.closed is not None


def test_noHandshake(clock: Clock, suite: Suite) -> None:
    """
    A session that connects to no namespace within the connect timeout is
    closed.
    """
    peer = suite.websocket()
    suite.net.advance(0.99)
    assert peer.closed is None
    suite.net.advance(0.01 + 1e-6)
    assert peer.closed is not None


def test_disconnectMain(suite: Suite) -> None:
    """
    DISCONNECT from "/" is not answered: the next frame is the ping.
    """
    peer = suite.connected()
    assert suite.exchange(peer, "41") == []
    assert ("disconnect", "client namespace disconnect") in suite.log
    suite.net.advance(PING_INTERVAL)
    assert peer.take() == ["2"]


def test_disconnectCustom(suite: Suite) -> None:
    """
    Disconnecting from one namespace leaves the others connected.
    """
    peer = suite.connected()
    suite.exchange(peer, "40/custom")
    frames = suite.exchange(peer, "41/custom", '42["message","message to main namespace"]')
    assert frames == ['42["message-back","message to main namespace"]']


def test_event(suite: Suite) -> None:
    """
    An EVENT's arguments arrive as sent.
    """
    peer = suite.connected()
    assert suite.exchange(peer, '42["message",1,"2",{"3":[true]}]') == ['42["message-back",1,"2",{"3":[true]}]']


def test_binaryEvent(suite: Suite) -> None:
    """
    A BINARY_EVENT's attachments follow it as binary frames, both ways.
    """
    peer = suite.connected()
    frames = suite.exchange(
        peer,
        '452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        b"\x01\x02\x03",
        b"\x04\x05\x06",
    )
    assert frames == [
        '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        b"\x01\x02\x03",
        b"\x04\x05\x06",
    ]


def test_eventWithAck(suite: Suite) -> None:
    """
    An EVENT with an id is acknowledged with an ACK of the same id.
    """
    peer = suite.connected()
    assert suite.exchange(peer, '42456["message-with-ack",1,"2",{"3":[false]}]') == ['43456[1,"2",{"3":[false]}]']


def test_binaryEventWithAck(suite: Suite) -> None:
    """
    An acknowledgement with binary data is a BINARY_ACK.
    """
    peer = suite.connected()
    frames = suite.exchange(
        peer,
        '452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        b"\x01\x02\x03",
        b"\x04\x05\x06",
    )
    assert frames == ['462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]', b"\x01\x02\x03", b"\x04\x05\x06"]


def test_serverRequestsAck(suite: Suite) -> None:
    """
    The server can ask for an acknowledgement too: the client's ACK (or
    BINARY_ACK) with that id reaches the callback, once.
    """
    peer = suite.connected()
    assert suite.exchange(peer, '42["ask","ready?"]') == ['420["question","ready?"]']
    suite.exchange(peer, '430["yes"]', '430["again"]')
    assert suite.exchange(peer, '42["ask","binary?"]') == ['421["question","binary?"]']
    suite.exchange(peer, '461-1[{"_placeholder":true,"num":0}]', b"\x07")
    assert [entry for entry in suite.log if entry[0] == "answer"] == [("answer", ("yes",)), ("answer", (b"\x07",))]


@pytest.mark.parametrize("frame", ["4abc", "42{}", '42abc["message-with-ack",1,"2",{"3":[false]}]', "40", "44{}"])
def test_invalidPacketCloses(suite: Suite, frame: str) -> None:
    """
    An invalid packet (unknown type, bad payload, bad ack id, CONNECT to a
    namespace already connected, CONNECT_ERROR from a client) closes the
    connection.
    """
    peer = suite.connected()
    suite.exchange(peer, frame)
    assert peer.closed is not None
    assert ("disconnect", "parse error") in suite.log


def test_eventBeforeConnect(suite: Suite) -> None:
    """
    An EVENT for a namespace the client has not connected to closes the
    connection.
    """
    peer = suite.websocket()
    suite.exchange(peer, '42["message"]')
    assert peer.closed is not None


def test_overPolling(suite: Suite) -> None:
    """
    The same packets travel over HTTP long-polling: POST "40", and the GET
    brings the CONNECT and the "auth" event in one payload.
    """
    response = suite.net.fetch("GET", POLLING)
    sid = json.loads(response.text[1:])["sid"]
    target = POLLING + "&sid=" + sid
    assert suite.net.fetch("POST", target, b"40").text == "ok"
    handshake, auth = suite.net.fetch("GET", target).text.split("\x1e")
    sidOf(handshake, "40")
    assert auth == '42["auth",{}]'
    assert suite.net.fetch("POST", target, b'42["message","hi"]\x1e42["message","there"]').text == "ok"
    assert suite.net.fetch("GET", target).text == '42["message-back","hi"]\x1e42["message-back","there"]'


# -- the chat --


class SioPeer:
    """
    A Socket.IO client over an in-memory WebSocket: it sends packets as
    text and reads back the events.
    """

    def __init__(self, chat: Chat, peer: Peer) -> None:
        self.chat = chat
        self.peer = peer
        self.decoder = Decoder()
        self.packets: list[Any] = []

    def send(self, *frames: str | bytes) -> None:
        for frame in frames:
            self.peer.send(frame)
        self.chat.net.flush()

    def emit(self, name: str, *args: Any, ack: int | None = None) -> None:
        self.send("4" + encodePacket(EVENT, "/", [name, *args], ack)[0])  # type: ignore[operator]

    def take(self) -> list[Any]:
        """
        The Socket.IO packets received since the last call.
        """
        for frame in self.peer.take():
            if frame == "2":
                continue
            if isinstance(frame, str):
                assert frame.startswith("4"), frame
                frame = frame[1:]
            packet = self.decoder.feed(frame)
            if packet is not None:
                self.packets.append(packet)
        packets, self.packets = self.packets, []
        return packets

    def events(self) -> list[tuple[str, list[Any]]]:
        """
        The events received since the last call (other packets must not be there).
        """
        packets = self.take()
        assert all(p.type == EVENT for p in packets), packets
        return [(p.data[0], p.data[1:]) for p in packets]

    def lines(self) -> list[str]:
        """
        The text-mode lines (C{message} events) received since the last call.
        """
        events = self.events()
        assert all(name == "message" and len(args) == 1 for name, args in events), events
        return [args[0] for _, args in events]

    def objects(self) -> list[dict[str, Any]]:
        """
        The json-mode objects received since the last call; each event is
        named by its object's type.
        """
        events = self.events()
        for name, args in events:
            assert len(args) == 1 and args[0]["type"] == name, (name, args)
        return [args[0] for _, args in events]

    def acks(self) -> dict[int, list[Any]]:
        return {p.id: p.data for p in self.take() if p.type == ACK}


class Chat:
    """
    The chat service and its web Site with Socket.IO, in memory.
    """

    def __init__(self, clock: Clock, service: dict[str, Any] | None = None, **options: Any) -> None:
        self.clock = clock
        self.service = ChatService(store=MemoryStore(), clock=clock, **(service or {}))
        self.service.startService()
        settings: dict[str, Any] = dict(pingInterval=25, pingTimeout=20)
        settings.update(options)
        self.resource = makeSocketIo(self.service, clock=clock, **settings)
        self.site = makeSite(ChatWebSocketFactory(self.service), clock=clock, socketIo=self.resource)
        self.net = Network(clock, self.site)

    def connect(self, auth: dict[str, Any] | None = None) -> tuple[SioPeer, list[Any]]:
        """
        A WebSocket session that sent CONNECT: the client and the packets
        it received in answer.
        """
        peer = self.net.websocket(WS)
        assert peer.take()[0].startswith("0{")  # type: ignore[union-attr]
        client = SioPeer(self, peer)
        client.send("40" + (json.dumps(auth) if auth is not None else ""))
        return client, client.take()

    def text(self, nick: str | None = None) -> SioPeer:
        """
        A text-mode client (called C{nick}), its greeting read.
        """
        client, packets = self.connect({"nick": nick} if nick else None)
        assert packets[0].type == CONNECT
        return client

    def json(self, nick: str, **auth: Any) -> SioPeer:
        """
        A json-mode client called C{nick}, its greeting read.
        """
        client, packets = self.connect({"mode": "json", "nick": nick, **auth})
        assert packets[0].type == CONNECT, packets
        return client

    def bot(self, nick: str) -> RecordingClient:
        bot = RecordingClient()
        member = self.service.connect(bot, nick=nick)  # type: ignore[arg-type]
        bot.member = member
        member.join("#lobby")
        return bot


@pytest.fixture
def chat(clock: Clock) -> Chat:
    return Chat(clock)


def test_textGreeting(chat: Chat) -> None:
    """
    A client that connects without auth is in text mode: after the
    CONNECT, the line chat's greeting arrives as C{message} events with one
    line each, and it is in #lobby like everyone.
    """
    chat.bot("bob")
    client, packets = chat.connect()
    assert packets[0].type == CONNECT and set(packets[0].data) == {"sid"}
    assert [(p.type, p.data[0]) for p in packets[1:]] == [(EVENT, "message")] * (len(packets) - 1)
    lines = [p.data[1] for p in packets[1:]]
    assert lines == [
        GREETING % ("guest-1",),
        "*** #lobby: guest-1 joined",
        "*** #lobby: members: bob, guest-1",
    ]
    member = chat.service.lookup("guest-1")
    assert member is not None and member.client.kind == "sio-text"  # type: ignore[attr-defined]
    verifyObject(IChatClient, member.client)


def test_textChat(chat: Chat) -> None:
    """
    What the seed's page sends with C{socket.send(text)} is said in the
    current room; room messages come back as the line chat's lines, to the
    sender too.
    """
    bob = chat.bot("bob")
    client = chat.text()
    client.emit("message", "hello, I am the ioclient")
    assert bob.messages("sender", "text") == [("guest-1", "hello, I am the ioclient")]
    assert client.lines() == ["#lobby <guest-1> hello, I am the ioclient"]
    member = chat.service.lookup("bob")
    member.say("hi there")  # type: ignore[union-attr]
    chat.net.flush()
    assert client.lines() == ["#lobby <bob> hi there"]


def test_textCommands(chat: Chat) -> None:
    """
    Text-mode C{message} events are lines of the line chat: commands work,
    and refusals are "!!!" lines.
    """
    client = chat.text()
    client.emit("message", "/nick alice")
    assert client.lines() == ["*** you are now alice"]
    client.emit("message", "/fly")
    assert client.lines() == ["!!! unknown command /fly (try /help)"]
    client.emit("message", "/join dev")
    assert client.lines() == ["*** #dev: alice joined", "*** #dev: members: alice"]


def test_textAuthNick(chat: Chat) -> None:
    """
    In text mode, auth C{nick} renames the connection at once.
    """
    client, packets = chat.connect({"nick": "alice"})
    assert [p.data[1] for p in packets[1:]][-1] == "*** you are now alice"
    chat.bot("bob")
    client.emit("message", "/nick bob")
    assert client.lines()[-1] == "!!! the nickname bob is taken"


def test_textRequestsWithAck(chat: Chat) -> None:
    """
    Named requests work in text mode too, acknowledged with a result
    object; without an ack callback a refusal is a "!!!" line.
    """
    client = chat.text("alice")
    client.take()
    client.emit("say", {"text": "acked", "ref": "r1"}, ack=1)
    packets = client.take()
    assert packets[0].type == EVENT and packets[0].data == ["message", "#lobby <alice> acked"]
    ack = packets[1]
    assert (ack.type, ack.id) == (ACK, 1)
    assert ack.data == [{"ok": True, "id": 1, "room": "#lobby", "epoch": chat.service.store.epoch}]
    client.emit("join", "nope!")
    assert client.lines() == ["!!! room names are # and 1-32 letters, digits, _ or -"]


def test_jsonMode(chat: Chat) -> None:
    """
    With auth C{{"mode": "json"}} the auth is json mode's hello, and every
    json-mode event arrives as the Socket.IO event named by its type, with
    the same object.
    """
    bob = chat.bot("bob")
    client, packets = chat.connect({"mode": "json", "nick": "alice"})
    assert packets[0].type == CONNECT
    objects = [p.data[1] for p in packets[1:]]
    assert [p.data[0] for p in packets[1:]] == [o["type"] for o in objects]
    welcome, joined, presence, history, private = objects
    assert welcome["nick"] == "alice" and welcome["rooms"] == ["#lobby"] and welcome["owner"] is True
    assert isinstance(welcome["token"], str)
    assert (joined["room"], joined["nick"]) == ("#lobby", "alice")
    assert presence == {"type": "presence", "room": "#lobby", "members": ["alice", "bob"]}
    assert history["messages"] == []
    assert private == {"type": "private-history", "messages": []}

    client.emit("say", {"text": "hello"}, ack=7)
    message, ack = client.take()
    assert message.data[0] == "message"
    assert {k: message.data[1][k] for k in ("room", "id", "from", "text", "action")} == {
        "room": "#lobby",
        "id": 1,
        "from": "alice",
        "text": "hello",
        "action": False,
    }
    assert (ack.id, ack.data) == (7, [{"ok": True, "id": 1, "room": "#lobby", "epoch": chat.service.store.epoch}])
    assert bob.messages("sender", "text") == [("alice", "hello")]
    client.emit("message", "plain send")
    assert bob.messages("sender", "text")[-1] == ("alice", "plain send")


def test_jsonRequests(chat: Chat) -> None:
    """
    join, part, nick, who, rooms, history and msg mirror json mode; each
    acknowledgement says what was done, and refusals carry the error code.
    """
    bob = chat.bot("bob")
    client = chat.json("alice")
    client.take()
    client.emit("join", {"room": "dev"}, ack=1)
    packets = client.take()
    assert [p.data[0] for p in packets[:-1]] == ["join", "presence", "history"]
    assert packets[-1].data == [{"ok": True, "room": "#dev"}]
    client.emit("part", "#dev", ack=2)
    assert client.acks() == {2: [{"ok": True, "room": "#dev"}]}
    client.emit("nick", "alicia", ack=3)
    packets = client.take()
    assert packets[0].data[1]["new"] == "alicia"
    assert packets[1].data == [{"ok": True, "nick": "alicia"}]
    client.emit("who", ack=4)
    packets = client.take()
    assert packets[0].data == ["presence", {"type": "presence", "room": "#lobby", "members": ["alicia", "bob"]}]
    client.emit("rooms")
    assert client.objects() == [{"type": "rooms", "rooms": [{"room": "#lobby", "members": 2}]}]
    client.emit("msg", "bob", "psst", ack=5)
    packets = client.take()
    assert packets[0].data[0] == "private" and packets[0].data[1]["text"] == "psst"
    assert packets[1].data == [{"ok": True, "id": 1, "to": "bob"}]
    assert [e.text for e in bob.events if e.kind == "private"] == ["psst"]
    client.emit("say", "one")
    client.emit("history", {"limit": 5}, ack=6)
    packets = client.take()
    history = [p for p in packets if p.type == EVENT and p.data[0] == "history"][0].data[1]
    assert [m["text"] for m in history["messages"]] == ["one"]

    client.emit("join", "nope!", ack=8)
    assert client.acks() == {8: [{"ok": False, "code": "bad-room", "message": "room names are # and 1-32 letters, digits, _ or -"}]}
    client.emit("fly", ack=9)
    assert client.acks() == {9: [{"ok": False, "code": "unknown-type", "message": "unknown request 'fly'"}]}
    client.emit("msg", {"to": "nobody", "text": "x", "ref": "m1"})
    assert client.objects() == [
        {"type": "error", "code": "no-such-nick", "message": "nobody called nobody is online", "ref": "m1"}
    ]
    client.emit("say", {"text": "x", "ref": True})
    assert client.objects()[0]["code"] == "bad-request"


def test_jsonRefWithoutAckCallback(chat: Chat) -> None:
    """
    In json mode a say with a ref but no ack callback is acknowledged with
    an C{ack} event, as in json mode; the same ref again is not stored twice.
    """
    client = chat.json("alice")
    client.take()
    client.emit("say", {"text": "once", "ref": "c1"})
    message, ack = client.objects()
    assert ack == {"type": "ack", "ref": "c1", "id": message["id"], "room": "#lobby", "epoch": message["epoch"]}
    client.emit("say", {"text": "once", "ref": "c1"})
    assert client.objects() == [ack]


def test_jsonResume(chat: Chat) -> None:
    """
    auth C{since} resumes: the history holds exactly what was missed,
    C{recovered: true}.
    """
    bob = chat.bot("bob")
    member = chat.service.lookup("bob")
    assert member is not None
    for text in ("one", "two", "three"):
        member.say(text)
    epoch = chat.service.store.epoch
    client = SioPeer(chat, chat.net.websocket(WS))
    client.peer.take()
    client.send("40" + json.dumps({"mode": "json", "nick": "alice", "since": {"#lobby": {"epoch": epoch, "id": 1}}}))
    objects = [p.data[1] for p in client.take()[1:]]
    [history] = [o for o in objects if o["type"] == "history"]
    assert history["type"] == "history" and history["recovered"] is True
    assert [m["text"] for m in history["messages"]] == ["two", "three"]
    assert bob.messages("sender", "text") == [("bob", "one"), ("bob", "two"), ("bob", "three")]


def test_connectRefused(chat: Chat) -> None:
    """
    A hello the chat refuses (nick taken, bad nick, bad mode) is a
    CONNECT_ERROR with the reason and the json-mode error code; nobody joins.
    """
    chat.bot("alice")
    for auth, message, code in [
        ({"mode": "json", "nick": "alice"}, "the nickname alice is taken", "nick-taken"),
        ({"mode": "json", "rooms": "#lobby"}, "'rooms' must be a list of room names", "bad-request"),
        ({"mode": "binary"}, 'mode is "text" (the default) or "json"', "bad-request"),
    ]:
        client, packets = chat.connect(auth)
        assert len(packets) == 1
        assert (packets[0].type, packets[0].data) == (CONNECT_ERROR, {"message": message, "data": {"code": code}})
        assert client.peer.closed is None
    assert sorted(m.nick for m in chat.service.members) == ["alice"]


def test_chatHasOnlyMainNamespace(chat: Chat) -> None:
    """
    The chat serves the main namespace only.
    """
    client, packets = chat.connect()
    client.send("40/admin,")
    [packet] = client.take()
    assert (packet.type, packet.nsp, packet.data) == (CONNECT_ERROR, "/admin", {"message": "Invalid namespace"})


def test_quitDisconnects(chat: Chat) -> None:
    """
    /quit ends with a DISCONNECT (so the client library does not reconnect)
    and the session closes.
    """
    bob = chat.bot("bob")
    client = chat.text("alice")
    client.take()
    client.emit("message", "/quit")
    packets = client.take()
    assert [p.data[1] for p in packets if p.type == EVENT][-1] == "*** bye"
    assert packets[-1].type == DISCONNECT
    assert client.peer.closed is not None
    assert chat.service.lookup("alice") is None
    assert bob.events[-1].kind == "part"


def test_transportGone(chat: Chat) -> None:
    """
    When the connection goes, the member leaves its rooms.
    """
    bob = chat.bot("bob")
    client = chat.text("alice")
    client.peer.dropConnection(abort=True)
    chat.net.flush()
    assert chat.service.lookup("alice") is None
    part = bob.events[-1]
    assert (part.kind, part.nick, part.reason) == ("part", "alice", "disconnected")


def test_shutdown(chat: Chat) -> None:
    """
    On shutdown every client is told why and its session is closed
    (without a DISCONNECT: the client library reconnects when it can).
    """
    text = chat.text("alice")
    jsonClient = chat.json("carol")
    text.take()
    jsonClient.take()
    done = chat.service.stopService()
    chat.net.flush()
    assert [line for line in text.lines() if line.startswith("*** server shutting down")]
    notices = [o for o in jsonClient.objects() if o["type"] == "notice"]
    assert [n["text"] for n in notices] == ["server shutting down"]
    assert 1000 <= notices[0]["reconnect_after"] <= 11000
    assert text.peer.closed is not None and jsonClient.peer.closed is not None
    results: list[object] = []
    done.addBoth(results.append)  # type: ignore[union-attr]
    assert results == [None]


def test_broadcastEncodedOnce(chat: Chat) -> None:
    """
    A room message is encoded once for all its Socket.IO recipients of a
    mode, and kept on the event.
    """
    clients = [chat.text("t%d" % (i,)) for i in range(3)] + [chat.json("j%d" % (i,)) for i in range(2)]
    for c in clients:
        c.take()
    bot = chat.bot("bob")
    member = chat.service.lookup("bob")
    member.say("to everyone")  # type: ignore[union-attr]
    chat.net.flush()
    [event] = [e for e in bot.events if isinstance(e, Message)]
    assert event.cache["sio-text"] == '2["message","#lobby <bob> to everyone"]'
    assert event.cache["sio-json"].startswith('2["message",{"type":"message"')
    for c in clients[:3]:
        assert c.lines()[-1] == "#lobby <bob> to everyone"
    for c in clients[3:]:
        assert c.objects()[-1]["text"] == "to everyone"


def test_chatOverPolling(chat: Chat) -> None:
    """
    The chat over HTTP long-polling: the greeting comes in one payload, a
    POSTed message is said, and a long poll is answered when someone speaks.
    """
    bob = chat.bot("bob")
    sid = json.loads(chat.net.fetch("GET", POLLING).text[1:])["sid"]
    target = POLLING + "&sid=" + sid
    chat.net.fetch("POST", target, b"40")
    packets = chat.net.fetch("GET", target).text.split("\x1e")
    assert packets[0].startswith('40{"sid":')
    assert packets[1] == '42["message","%s"]' % (GREETING % ("guest-1",),)
    assert chat.net.fetch("POST", target, '42["message","from a poller"]'.encode()).text == "ok"
    assert bob.messages("sender", "text") == [("guest-1", "from a poller")]
    assert chat.net.fetch("GET", target).text == '42["message","#lobby <guest-1> from a poller"]'
    poll = chat.net.send("GET", target)
    assert not poll.done
    chat.service.lookup("bob").say("long poll answered")  # type: ignore[union-attr]
    chat.net.flush()
    assert poll.response.text == '42["message","#lobby <bob> long poll answered"]'


def test_outgoingLimitChangedForOpenSessions(chat: Chat) -> None:
    """
    Socket.IO sessions read the outgoing limit from the service's settings
    (what a reload changes), on both transports: a polling session opened
    before the limit was lowered is dropped as too slow once more than the
    new limit waits for its next poll.
    """
    bob = chat.bot("bob")
    sid = json.loads(chat.net.fetch("GET", POLLING).text[1:])["sid"]
    target = POLLING + "&sid=" + sid
    chat.net.fetch("POST", target, b"40")
    chat.net.fetch("GET", target)
    assert chat.resource.engine.settings is chat.service.settings  # type: ignore[attr-defined]
    chat.service.settings.maxOutgoing = 8192
    member = chat.service.lookup("bob")
    assert member is not None
    said = 0
    while chat.service.lookup("guest-1") is not None:
        member.say("%03d %s" % (said, "x" * 1000))
        said += 1
        assert said < 100, "never dropped"
    assert said in (8, 9)
    assert bob.events[-1].kind == "part" and bob.events[-1].reason == "too slow"  # type: ignore[attr-defined]


# -- flood control --


def flooding(clock: Clock, rate: float = 5, kick: float = 100, **options: Any) -> Chat:
    """
    The chat with flood control: C{rate} requests a second, bursts of 10,
    at most C{kick} waiting.
    """
    chat = Chat(clock, service={"floodRate": rate, "floodBurst": 10, "floodKick": kick}, **options)
    return chat


def tick(chat: Chat, seconds: float) -> None:
    """
    Let C{seconds} pass in steps of 0.05 s, as a reactor runs timers about
    when they are due, moving bytes after each step.
    """
    for _ in range(round(seconds / 0.05)):
        chat.clock.advance(0.05)
        chat.net.flush()


def ackIds(client: SioPeer) -> list[int]:
    return [p.id for p in client.take() if p.type == ACK]


def serverTransport(chat: Chat, nick: str) -> Any:
    member = chat.service.lookup(nick)
    assert member is not None
    return member.client.socket.connection.engine._ws.transport  # type: ignore[attr-defined]


def test_floodWaitsOnWebSocket(clock: Clock) -> None:
    """
    Thirty requests sent at once on the WebSocket transport at 5 a second,
    bursts of 10: ten are acknowledged at once, the session's WebSocket is
    not read from meanwhile, and the other twenty follow one every 0.2 s,
    in order; nothing is refused; then it is read again.
    """
    chat = flooding(clock)
    alice = chat.json("alice")
    tick(chat, 10)
    alice.take()
    for n in range(30):
        alice.emit("say", {"text": "m%d" % n}, ack=n)
    assert ackIds(alice) == list(range(10))
    transport = serverTransport(chat, "alice")
    assert transport.paused
    tick(chat, 0.1)
    for n in range(10, 30):
        tick(chat, 0.2)
        assert ackIds(alice) == [n]
    assert not transport.paused


def test_floodWaitsOnPolling(clock: Clock) -> None:
    """
    On HTTP long-polling, a POST whose requests have to wait is answered
    only when they went through (the client sends nothing more meanwhile):
    its thirty messages are said in order, at the rate; a second POST while
    the first waits is refused (400) and ends the session, as engine.io's
    own server does.
    """
    chat = flooding(clock)
    bob = chat.bot("bob")
    sid = json.loads(chat.net.fetch("GET", POLLING).text[1:])["sid"]
    target = POLLING + "&sid=" + sid
    chat.net.fetch("POST", target, b'40{"mode":"json","nick":"poller"}')
    chat.net.fetch("GET", target)
    tick(chat, 10)
    payload = "\x1e".join('42%d["say",{"text":"m%d"}]' % (n, n) for n in range(30)).encode()
    post = chat.net.send("POST", target, payload)
    assert not post.done
    assert [text for _, text in bob.messages("sender", "text")] == ["m%d" % n for n in range(10)]
    tick(chat, 3.9)
    assert not post.done
    tick(chat, 0.2)
    assert post.response.text == "ok"
    assert [text for _, text in bob.messages("sender", "text")] == ["m%d" % n for n in range(30)]
    acks = [p for p in chat.net.fetch("GET", target).text.split("\x1e") if p.startswith("43")]
    assert [int(re.match(r"43(\d+)", p).group(1)) for p in acks] == list(range(30))  # type: ignore[union-attr]

    tick(chat, 10)
    held = chat.net.send("POST", target, "\x1e".join(['42["say",{"text":"again"}]'] * 11).encode())
    assert not held.done
    assert chat.net.fetch("POST", target, b'42["say",{"text":"overlap"}]').status == 400
    assert sid not in chat.resource.engine.sessions  # type: ignore[attr-defined]
    assert held.done


def test_floodPastTheBoundIsDisconnected(clock: Clock) -> None:
    """
    A Socket.IO client with more than flood-kick requests waiting gets a
    json-mode C{error} with code C{flood}, and its session is closed; the
    others see it leave as flooding.
    """
    chat = flooding(clock, kick=20)
    bob = chat.bot("bob")
    alice = chat.json("alice")
    tick(chat, 10)
    alice.take()
    # (all in one read: what a paused transport has not read cannot count)
    for n in range(31):
        alice.peer.send("4" + encodePacket(EVENT, "/", ["say", {"text": "m%d" % n}])[0])  # type: ignore[operator]
    chat.net.flush()
    errors = [o for o in alice.objects() if o["type"] == "error"]
    assert errors == [{"type": "error", "code": "flood", "message": "disconnected for flooding: more than 20 requests waiting"}]
    assert chat.service.lookup("alice") is None
    assert [(e.nick, e.reason) for e in bob.events if e.kind == "part"] == [("alice", "flooding")]
    assert alice.peer.closed is not None


def test_enginePingsWhileWaiting(clock: Clock) -> None:
    """
    A session whose WebSocket is not read while its requests wait is not
    closed for a late pong (it waits with the rest of its input): after a
    wait well past the ping interval and timeout it is still open, and
    what it sent went through.
    """
    chat = flooding(clock, rate=0.025, pingInterval=25, pingTimeout=20)
    alice = chat.json("alice")
    alice.take()
    for n in range(12):  # (in one read: two wait, 40 s each)
        alice.peer.send("4" + encodePacket(EVENT, "/", ["say", {"text": "m%d" % n}], n)[0])  # type: ignore[operator]
    chat.net.flush()
    assert ackIds(alice) == list(range(10))
    acked = []
    for _ in range(100):
        tick(chat, 1)
        if "2" in alice.peer.frames:
            alice.send("3")
        acked += ackIds(alice)
    assert acked == [10, 11]
    assert chat.service.lookup("alice") is not None and alice.peer.closed is None


def test_quietPollerExpires(clock: Clock) -> None:
    """
    A polling client that goes quiet is dropped after pingInterval +
    pingTimeout, and leaves its rooms.
    """
    chat = Chat(clock, pingInterval=25, pingTimeout=20)
    bob = chat.bot("bob")
    sid = json.loads(chat.net.fetch("GET", POLLING).text[1:])["sid"]
    chat.net.fetch("POST", POLLING + "&sid=" + sid, b"40")
    assert chat.service.lookup("guest-1") is not None
    chat.net.advance(25)
    chat.net.advance(20)
    assert chat.service.lookup("guest-1") is None
    assert bob.events[-1].kind == "part"
    assert chat.net.fetch("GET", POLLING + "&sid=" + sid).status == 400


def test_siteMountsSocketIo(chat: Chat) -> None:
    """
    The web port serves Socket.IO at /socket.io/ next to the page, and
    bounds request bodies by maxPayload.
    """
    response: Response = chat.net.fetch("GET", POLLING)
    assert response.status == 200 and response.text.startswith("0{")
    assert chat.site.requestFactory is BoundedRequest
    assert chat.site.maxRequestBody == chat.resource.engine.maxPayload  # type: ignore[attr-defined]
    assert chat.net.fetch("GET", "/").status == 200
    assert isinstance(chat.resource, EngineResource)
    assert SocketIoChatClient.kind == "sio-text"
    assert HOST


class QueuedThreads(Clock):
    """
    A L{Clock} that is also a reactor's thread pool whose work runs only when
    the test says so (L{runThreads}): a password check is then pending for
    as long as the test wants.
    """

    def __init__(self) -> None:
        Clock.__init__(self)
        self.work: list[tuple[Callable[[bool, object], None], Callable[..., object], tuple[object, ...]]] = []

    def getThreadPool(self) -> QueuedThreads:
        return self

    def callInThreadWithCallback(self, onResult: Callable[[bool, object], None], f: Callable[..., object], *a: object) -> None:
        self.work.append((onResult, f, a))

    def callFromThread(self, f: Callable[..., object], *a: object, **kw: object) -> None:
        f(*a, **kw)

    def runThreads(self) -> None:
        work, self.work = self.work, []
        for onResult, f, a in work:
            try:
                result = f(*a)
            except BaseException:
                onResult(False, Failure())
            else:
                onResult(True, result)


@pytest.fixture
def threads() -> Iterator[QueuedThreads]:
    """
    A L{QueuedThreads} clock that is also Autobahn's timer loop.
    """
    with autobahnTimers(QueuedThreads()) as clock:
        yield clock


def test_jsonPasswordLogin(threads: QueuedThreads) -> None:
    """
    A json-mode hello with a password is answered once the password is
    checked: the CONNECT then the welcome (authenticated) on success, a
    CONNECT_ERROR with code bad-login on a wrong password.
    """
    chat = Chat(threads, service={"passwords": {"alice": hashPassword("right", n=2)}})
    client, packets = chat.connect({"mode": "json", "nick": "alice", "password": "right"})
    assert packets == []
    threads.runThreads()
    chat.net.flush()
    packets = client.take()
    assert packets[0].type == CONNECT
    welcome = packets[1].data[1]
    assert (welcome["type"], welcome["nick"], welcome["authenticated"]) == ("welcome", "alice", True)

    other, packets = chat.connect({"mode": "json", "nick": "alice", "password": "wrong"})
    threads.runThreads()
    chat.net.flush()
    [refused] = other.take()
    assert (refused.type, refused.data) == (CONNECT_ERROR, {"message": "wrong nick or password", "data": {"code": "bad-login"}})
    assert [m.nick for m in chat.service.members] == ["alice"]
    other.peer.dropConnection(abort=True)
    chat.net.flush()
    assert chat.service.admission.total == 1


def test_jsonGuestOnRegisteredOnlyServerIsRefused(threads: QueuedThreads) -> None:
    """
    On a server for registered users only, a json-mode hello without a
    password (a guest, who could do nothing there) refuses the CONNECT with
    json mode's auth-required; with the password it is welcomed.
    """
    chat = Chat(threads, service={"passwords": {"alice": hashPassword("right", n=2)}, "requireAuth": True})
    client, packets = chat.connect({"mode": "json"})
    assert [(p.type, p.data) for p in packets] == [
        (CONNECT_ERROR, {"message": "log in first: send a login request, then join", "data": {"code": "auth-required"}})
    ]
    assert list(chat.service.members) == []
    client, packets = chat.connect({"mode": "json", "nick": "alice", "password": "right"})
    threads.runThreads()
    chat.net.flush()
    packets = client.take()
    assert packets[0].type == CONNECT and packets[1].data[0] == "welcome", packets
    assert chat.service.lookup("alice") is not None


def test_jsonHelloIgnoresRef(chat: Chat) -> None:
    """
    The CONNECT's auth is a hello, which has no ref to answer: one in auth,
    even one a request could not have, changes nothing.
    """
    client, packets = chat.connect({"mode": "json", "nick": "alice", "ref": {"not": "a ref"}})
    assert packets[0].type == CONNECT and packets[1].data[1]["type"] == "welcome", packets


def test_textAuthOfOtherTypes(chat: Chat) -> None:
    """
    In text mode a nick or password in auth that is not a string is an
    error line after the greeting; the client stays a guest.
    """
    client, packets = chat.connect({"nick": 7})
    assert packets[0].type == CONNECT
    lines = [p.data[1] for p in packets[1:]]
    assert lines[0] == GREETING % ("guest-1",)
    assert lines[-1] == "!!! nick and password are strings"


def test_textPasswordLogin(threads: QueuedThreads) -> None:
    """
    In text mode, auth C{nick} and C{password} log in as /login does.
    """
    chat = Chat(threads, service={"passwords": {"alice": hashPassword("right", n=2)}})
    client, packets = chat.connect({"nick": "alice", "password": "right"})
    assert packets[0].type == CONNECT
    threads.runThreads()
    chat.net.flush()
    assert "*** you are logged in as alice" in client.lines()
    assert chat.service.lookup("alice") is not None


def test_admission(clock: Clock) -> None:
    """
    A Socket.IO session counts as a connection of its address from its
    handshake on: past --max-per-ip a new one is refused (polling: 503 with
    the reason; WebSocket: a refused handshake), its closing makes room, and
    a banned address gets 403.
    """
    admission = Admission(maxPerHost=1)
    chat = Chat(clock, service={"admission": admission})
    first = chat.text("alice")
    response = chat.net.fetch("GET", POLLING)
    assert (response.status, response.json()["code"]) == (503, 3)
    assert response.json()["message"].startswith("too many connections from your address")
    assert not chat.net.websocket(WS).opened
    assert admission.total == 1
    first.peer.dropConnection(abort=True)
    chat.net.flush()
    assert admission.total == 0
    assert chat.net.fetch("GET", POLLING).status == 200
    assert admission.total == 1
    admission.bannedHosts.add("127.0.0.1")
    admission.maxPerHost = 0
    response = chat.net.fetch("GET", POLLING)
    assert (response.status, response.json()) == (403, {"code": 4, "message": "your address is banned from this server"})


def test_loneSurrogateEscapeIsRefused() -> None:
    """
    A packet whose JSON holds an unpaired \\ud800-\\udfff escape is refused
    as invalid (it is no text, and could not be sent on to anyone), while a
    properly paired escape is text like any other.
    """
    with pytest.raises(ProtocolError):
        decodeText('2["message","\\ud800"]')
    assert decodeText('2["message","\\ud83d\\ude00 ok"]').data == ["message", "\U0001f600 ok"]


def test_jsonConversationRequests(chat: Chat) -> None:
    """
    edit, delete, react, typing, read and search are Socket.IO events with
    json mode's names and fields, acknowledged with the update's ids; the
    room gets json mode's edit, react, delete and typing events.
    """
    bob = chat.bot("bob")
    assert bob.member is not None
    client = chat.json("alice")
    client.take()
    client.emit("say", {"text": "hello @bob"}, ack=1)
    message, _ = client.take()
    assert message.data[1]["mentions"] == ["bob"]
    client.emit("say", {"text": "again", "reply_to": 1}, ack=2)
    message, _ = client.take()
    assert message.data[1]["reply_to"] == 1
    client.emit("edit", {"id": 1, "text": "hello @bob!"}, ack=3)
    edit, ack = client.take()
    assert edit.data[0] == "edit" and {k: edit.data[1][k] for k in ("room", "id", "seq", "text", "by")} == {
        "room": "#lobby", "id": 1, "seq": 3, "text": "hello @bob!", "by": "alice"
    }
    assert ack.data == [{"ok": True, "id": 1, "seq": 3, "room": "#lobby", "epoch": chat.service.store.epoch}]
    client.emit("react", {"id": 1, "emoji": "🎉"}, ack=4)
    react, ack = client.take()
    assert react.data[0] == "react" and (react.data[1]["emoji"], react.data[1]["nick"], react.data[1]["on"]) == (
        "🎉", "alice", True
    )
    client.emit("delete", {"id": 2}, ack=5)
    delete, ack = client.take()
    assert delete.data[0] == "delete" and (delete.data[1]["id"], delete.data[1]["seq"]) == (2, 5)
    bob.member.typing("active")
    chat.net.flush()
    [typing] = client.take()
    assert typing.data == ["typing", {"type": "typing", "room": "#lobby", "nick": "bob", "state": "active"}]
    client.emit("typing", "active", ack=7)
    assert client.acks() == {7: [{"ok": True}]}
    assert [e.state for e in bob.events if e.kind == "typing"] == ["active"]
    client.emit("read", {"id": 5}, ack=8)
    read, ack = client.take()
    assert read.data == ["read", {"type": "read", "room": "#lobby", "id": 5}] and ack.data == [{"ok": True}]
    client.emit("search", "hello", ack=9)
    found, ack = client.take()
    assert found.data[0] == "search" and [m["text"] for m in found.data[1]["results"]] == ["hello @bob!"]
    client.emit("edit", {"id": 99, "text": "nothing"}, ack=10)
    assert client.acks() == {10: [{"ok": False, "code": "no-such-message", "message": "there is no such message"}]}
