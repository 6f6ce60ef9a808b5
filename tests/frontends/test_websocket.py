"""
Tests for the WebSocket front-end (L{twisted_chat.frontends.websocket}, L{twisted_chat.frontends.jsonmode})
in memory: a real Autobahn client talks to the real chat C{Site} through
C{iosim}, with every timer (the service's, the Site's and Autobahn's, which
go through C{txaio.config.loop}) on one L{Clock}.
"""

from __future__ import annotations

import re

import json
from typing import Any

import pytest
from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol
from twisted.internet.defer import Deferred, fail
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from twisted_chat import __version__
from twisted_chat.core.errors import StoreUnavailable
from twisted_chat.core.events import Message
from twisted_chat.core.service import ChatService
from twisted_chat.frontends.web import makeSite
from twisted_chat.frontends.websocket import ChatWebSocketFactory, ChatWebSocketProtocol
from twisted_chat.frontends.wscommon import originAllowed
from twisted_chat.stores.memory import MemoryStore

from tests.support.fakes import RecordingClient
from tests.support.harness import HOST, START, Network, RawClient, WebSocketPeer

GREETING = "*** Welcome to twisted-chat, %s! You are in #lobby. Type /help for commands."


class Peer(WebSocketPeer):
    """
    A WebSocket client that keeps every frame it receives and how it closed.
    """

    def __init__(self) -> None:
        WebSocketPeer.__init__(self)
        self.frames: list[tuple[bytes, bool]] = []

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.frames.append((payload, isBinary))

    def take(self) -> list[bytes]:
        """
        The payloads of the text frames received since the last C{take}.
        """
        frames, self.frames = self.frames, []
        assert not any(binary for _, binary in frames), "the server sent a binary frame"
        return [payload for payload, _ in frames]

    def lines(self) -> list[str]:
        """
        The text-mode lines received since the last call.
        """
        return [p.decode("utf-8") for p in self.take()]

    def objects(self) -> list[dict[str, Any]]:
        """
        The json-mode objects received since the last call.
        """
        return [json.loads(p) for p in self.take()]

    def sendObject(self, obj: object) -> None:
        self.sendMessage(json.dumps(obj).encode("utf-8"))


class CountingFactory(ChatWebSocketFactory):
    """
    The chat WebSocket factory, keeping every message it prepares.
    """

    def __init__(self, *args: Any, **kw: Any) -> None:
        ChatWebSocketFactory.__init__(self, *args, **kw)
        self.prepared: list[PreparedMessage] = []

    def prepareMessage(self, payload: bytes, isBinary: bool = False, doNotCompress: bool = False) -> PreparedMessage:
        pm = ChatWebSocketFactory.prepareMessage(self, payload, isBinary, doNotCompress)
        self.prepared.append(pm)
        return pm


class Chat:
    """
    The chat service behind its web C{Site}, with in-memory connections.
    """

    def __init__(
        self,
        clock: Clock,
        factoryClass: type[ChatWebSocketFactory] = ChatWebSocketFactory,
        store: MemoryStore | None = None,
        **options: Any,
    ) -> None:
        self.clock = clock
        self.service = ChatService(store=store if store is not None else MemoryStore(), clock=clock)
        self.service.startService()
        self.factory = factoryClass(self.service, **options)
        self.site = makeSite(self.factory, clock=clock)
        self.net = Network(clock, self.site, firstPort=40000, runDueCalls=False)

    def connect(self, path: str = "/ws", protocols: list[str] | None = None, origin: str | None = None) -> Peer:
        """
        Open a WebSocket to C{path} and run the handshake.
        """
        return self.net.websocket(path, origin=origin, protocols=protocols, peerClass=Peer)

    def open(self, client: Protocol) -> None:
        """
        Connect C{client} to the Site and move bytes until both sides are quiet.
        """
        self.net.open(client)

    def flush(self) -> None:
        """
        Move bytes on every connection until nothing moves any more.
        """
        self.net.flush()

    def json(self, nick: str) -> Peer:
        """
        A json-mode connection that has said hello as C{nick}; what it
        received so far is discarded.
        """
        peer = self.connect(protocols=["chat.json"])
        peer.sendObject({"type": "hello", "nick": nick})
        self.flush()
        assert peer.objects()[0]["type"] == "welcome"
        return peer

    def text(self, nick: str, path: str = "/ws") -> Peer:
        """
        A text-mode connection that has changed its nick to C{nick}; what it
        received so far is discarded.
        """
        peer = self.connect(path)
        peer.sendMessage(("/nick " + nick).encode("utf-8"))
        self.flush()
        assert peer.lines()[-1] == "*** you are now " + nick
        return peer

    def server(self, nick: str) -> ChatWebSocketProtocol:
        """
        The server side of the connection of C{nick}.
        """
        member = self.service.lookup(nick)
        assert member is not None, "%s is not connected" % (nick,)
        client = member.client
        assert isinstance(client, ChatWebSocketProtocol)
        return client


@pytest.fixture
def chat(clock: Clock) -> Chat:
    """
    The chat service and its Site with the default WebSocket options.
    """
    return Chat(clock)


def handshake(path: str = "/ws", origin: str | None = None) -> bytes:
    """
    The bytes of a WebSocket opening handshake request.
    """
    lines = [
        "GET %s HTTP/1.1" % (path,),
        "Host: " + HOST,
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append("Origin: " + origin)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -- text mode --


def test_textModeGreeting(chat: Chat) -> None:
    """
    A WebSocket without a subprotocol is a text-mode session: it is greeted
    with the line chat's welcome and joins #lobby, one line per frame.
    """
    peer = chat.connect("/ws")
    assert peer.opened
    assert peer.websocket_protocol_in_use is None
    assert peer.lines() == [
        GREETING % ("guest-1",),
        "*** #lobby: guest-1 joined",
        "*** #lobby: members: guest-1",
    ]


def test_textModeChatRoundTrip(chat: Chat) -> None:
    """
    A line sent as a text frame is said in #lobby; everyone there, the
    sender included, gets it as one chat line, whether they connected at
    C{/ws} or upgraded at C{/}.
    """
    alice = chat.text("alice", "/ws")
    bob = chat.text("bob", "/")
    alice.lines()
    alice.sendMessage("hello there, bøb".encode("utf-8"))
    chat.flush()
    assert alice.lines() == ["#lobby <alice> hello there, bøb"]
    assert bob.lines() == ["#lobby <alice> hello there, bøb"]


def test_textModeTrailingNewline(chat: Chat) -> None:
    """
    A text frame that ends in a newline (CRLF or LF), as some tools send
    lines, is the same line without it.
    """
    alice = chat.text("alice")
    alice.sendMessage(b"one\r\n")
    alice.sendMessage(b"two\n")
    chat.flush()
    assert alice.lines() == ["#lobby <alice> one", "#lobby <alice> two"]


def test_textSubprotocolChat(chat: Chat) -> None:
    """
    The subprotocol C{chat} (the seed's handshake example) is accepted and
    is text mode.
    """
    peer = chat.connect(protocols=["chat"])
    assert peer.websocket_protocol_in_use == "chat"
    assert peer.lines()[0] == GREETING % ("guest-1",)


def test_textModeQuit(chat: Chat) -> None:
    """
    C{/quit} in text mode answers C{*** bye} and closes the WebSocket
    normally (1000); the others see the user leave.
    """
    alice = chat.text("alice")
    bob = chat.text("bob")
    alice.lines()
    bob.sendMessage(b"/quit gone fishing")
    chat.flush()
    assert bob.lines() == ["*** #lobby: bob left (quit: gone fishing)", "*** bye"]
    assert bob.closed is not None and bob.closed[:2] == (True, 1000)
    assert alice.lines() == ["*** #lobby: bob left (quit: gone fishing)"]
    assert chat.service.lookup("bob") is None


def test_textModeBinaryFrame(chat: Chat) -> None:
    """
    A binary frame in text mode is answered with an error line; the
    connection stays open.
    """
    alice = chat.text("alice")
    alice.sendMessage(b"hello", isBinary=True)
    chat.flush()
    assert alice.lines() == ["!!! binary frames are not supported: send text"]
    alice.sendMessage(b"still here")
    chat.flush()
    assert alice.lines() == ["#lobby <alice> still here"]
    assert alice.closed is None


# -- json mode --


def test_jsonHello(chat: Chat) -> None:
    """
    In json mode (subprotocol C{chat.json}) a C{hello} is answered with
    C{welcome} (a first claim of a nick makes it the owner and gives it a
    token), then C{join}, C{presence} and C{history} for #lobby, whose
    history holds what was said before, then the owner's (empty) private
    history.
    """
    bob = chat.text("bob")
    bob.sendMessage(b"earlier")
    chat.flush()
    epoch = chat.service.store.epoch
    peer = chat.connect(protocols=["chat.json"])
    assert peer.websocket_protocol_in_use == "chat.json"
    assert peer.take() == []
    peer.sendObject({"type": "hello", "nick": "alice"})
    chat.flush()
    ms = int(START * 1000)
    objects = peer.objects()
    token = objects[0].get("token")
    assert isinstance(token, str) and len(token) >= 20
    assert objects == [
        {
            "type": "welcome",
            "nick": "alice",
            "server": "twisted-chat/" + __version__,
            "rooms": ["#lobby"],
            "owner": True,
            "token": token,
        },
        {"type": "join", "room": "#lobby", "nick": "alice", "time": ms},
        {"type": "presence", "room": "#lobby", "members": ["alice", "bob"]},
        {
            "type": "history",
            "room": "#lobby",
            "epoch": epoch,
            "messages": [
                {
                    "type": "message",
                    "room": "#lobby",
                    "id": 1,
                    "epoch": epoch,
                    "from": "bob",
                    "text": "earlier",
                    "time": ms,
                    "action": False,
                    "mentions": [],
                }
            ],
            # (alice owns her nick: where her reading stands)
            "read": {"id": 0, "unread": 1, "mentions": 0},
        },
        {"type": "private-history", "messages": []},
    ]
    assert bob.lines()[-1] == "*** #lobby: alice joined"


class UnreadableStore(MemoryStore):
    """
    A memory store whose history cannot be read (its writes work).
    """

    def recent(self, room: str, limit: int, before: int | None = None) -> Deferred[list[Message]]:
        return fail(StoreUnavailable("the disk is on fire"))

    def since(self, room: str, epoch: str, afterId: int, limit: int) -> Deferred[list[Message] | None]:
        return fail(StoreUnavailable("the disk is on fire"))


def test_jsonHistoryUnavailable(clock: Clock) -> None:
    """
    A join whose history the store cannot give, for longer than the server
    retries it, gets an empty history with C{reason: "unavailable"}, with
    C{since} (then not C{recovered}) or without.
    """
    chat = Chat(clock, store=UnreadableStore())
    chat.service.joinHistory.holdFor = 0.0
    alice = chat.json("alice")
    epoch = chat.service.store.epoch
    alice.sendObject({"type": "join", "room": "#new"})
    alice.sendObject({"type": "join", "room": "#old", "since": {"epoch": epoch, "id": 3}})
    chat.flush()
    assert [o for o in alice.objects() if o["type"] == "history"] == [
        {"type": "history", "room": "#new", "epoch": epoch, "messages": [], "reason": "unavailable"},
        {"type": "history", "room": "#old", "epoch": epoch, "messages": [], "recovered": False, "reason": "unavailable"},
    ]


def test_jsonSay(chat: Chat) -> None:
    """
    A json C{say} is delivered as a C{message} to everyone in the room, and
    the sender then gets an C{ack} with the message's id and its C{ref}.
    """
    alice = chat.json("alice")
    bob = chat.json("bob")
    alice.objects()
    chat.clock.advance(1.5)
    alice.sendObject({"type": "say", "text": "hi bob", "ref": "c1"})
    chat.flush()
    epoch = chat.service.store.epoch
    message = {
        "type": "message",
        "room": "#lobby",
        "id": 1,
        "epoch": epoch,
        "from": "alice",
        "text": "hi bob",
        "time": int(START * 1000) + 1500,
        "action": False,
        "mentions": [],
    }
    assert alice.objects() == [message, {"type": "ack", "ref": "c1", "id": 1, "room": "#lobby", "epoch": epoch}]
    assert bob.objects() == [message]


def test_jsonBadJson(chat: Chat) -> None:
    """
    A frame that is not a JSON object is answered with a C{bad-json} error
    and the connection stays usable.
    """
    alice = chat.json("alice")
    alice.sendMessage(b"{not json")
    alice.sendMessage(b"[1, 2]")
    chat.flush()
    assert [(o["type"], o["code"]) for o in alice.objects()] == [("error", "bad-json"), ("error", "bad-json")]
    alice.sendObject({"type": "say", "text": "still here"})
    chat.flush()
    assert [(o["type"], o["text"]) for o in alice.objects()] == [("message", "still here")]
    assert alice.closed is None


def test_jsonDeeplyNested(chat: Chat) -> None:
    """
    JSON nested too deeply for the parser is refused like any bad JSON,
    with a C{bad-json} error; the connection stays usable.
    """
    alice = chat.json("alice")
    alice.sendMessage(b"[" * 50000)
    chat.flush()
    assert [(o["type"], o["code"]) for o in alice.objects()] == [("error", "bad-json")]
    alice.sendObject({"type": "say", "text": "still here"})
    chat.flush()
    assert [(o["type"], o["text"]) for o in alice.objects()] == [("message", "still here")]
    assert alice.closed is None


def test_jsonUnknownType(chat: Chat) -> None:
    """
    A request of an unknown type is answered with an C{unknown-type} error
    that carries the request's C{ref}.
    """
    alice = chat.json("alice")
    alice.sendObject({"type": "fly", "ref": 7})
    alice.sendObject({"ref": "no-type"})
    chat.flush()
    errors = alice.objects()
    assert [(o["type"], o["code"], o["ref"]) for o in errors] == [
        ("error", "unknown-type", 7),
        ("error", "unknown-type", "no-type"),
    ]
    assert all(o["message"] for o in errors)


def test_jsonHelloRequired(chat: Chat) -> None:
    """
    Any request before C{hello} is refused with C{hello-required} and does
    nothing; a C{hello} afterwards still works.
    """
    bob = chat.json("bob")
    peer = chat.connect(protocols=["chat.json"])
    peer.sendObject({"type": "say", "text": "sneaky", "ref": "r1"})
    chat.flush()
    assert peer.objects() == [
        {"type": "error", "code": "hello-required", "message": "send a hello first", "ref": "r1"}
    ]
    assert bob.objects() == []
    peer.sendObject({"type": "hello"})
    chat.flush()
    assert peer.objects()[0] == {
        "type": "welcome",
        "nick": "guest-1",
        "server": "twisted-chat/" + __version__,
        "rooms": ["#lobby"],
        "owner": False,
    }


def test_jsonBinaryFrame(chat: Chat) -> None:
    """
    A binary frame in json mode is answered with an error event; the
    connection stays open.
    """
    alice = chat.json("alice")
    alice.sendMessage(b'{"type": "say", "text": "hi"}', isBinary=True)
    chat.flush()
    [error] = alice.objects()
    assert error["type"] == "error"
    assert error["code"] == "bad-json"
    assert "binary" in error["message"]
    assert alice.closed is None


def test_jsonShutdown(chat: Chat) -> None:
    """
    When the service stops, a json client gets a C{notice} and a text client
    a C{***} line, then both WebSockets are closed with 1001 (going away),
    and the service's stop completes once they are gone.
    """
    alice = chat.json("alice")
    bob = chat.text("bob")
    alice.objects()
    stopped: list[object] = []
    chat.service.stopService().addBoth(stopped.append)
    chat.flush()
    [notice] = alice.objects()
    assert notice["type"] == "notice" and notice["text"] == "server shutting down"
    assert 1000 <= notice["reconnect_after"] <= 11000
    assert alice.closed is not None and alice.closed[:2] == (True, 1001)
    [line] = bob.lines()
    assert re.match('^\\*\\*\\* server shutting down \\(reconnect in about ([1-9]|1[01]) s\\)$', line), line
    assert bob.closed is not None and bob.closed[:2] == (True, 1001)
    assert stopped == [None]


def test_messageTooBig(clock: Clock) -> None:
    """
    A message larger than the configured maximum closes that WebSocket with
    1009 (message too big); the others are not affected.
    """
    chat = Chat(clock, maxMessageSize=1024)
    alice = chat.text("alice")
    bob = chat.text("bob")
    alice.lines()
    bob.sendMessage(b"x" * 2000)
    chat.flush()
    assert bob.closed is not None and bob.closed[1] == 1009
    assert alice.lines() == ["*** #lobby: bob left (disconnected)"]
    alice.sendMessage(b"y" * 1000)
    chat.flush()
    assert alice.lines() == ["#lobby <alice> " + "y" * 1000]


# -- fan-out --


def test_fanOutPreparesOncePerEvent(clock: Clock) -> None:
    """
    A room message is framed once per mode, not once per recipient: every
    json recipient is sent the same prepared message, kept on the event,
    and so is every text recipient.
    """
    chat = Chat(clock, CountingFactory)
    factory = chat.factory
    assert isinstance(factory, CountingFactory)
    jsons = [chat.json("j%d" % (i,)) for i in range(3)]
    texts = [chat.text("t%d" % (i,)) for i in range(2)]
    bot = chat.service.connect(RecordingClient(), nick="bot")
    bot.join("#lobby")
    chat.flush()
    for peer in jsons + texts:
        peer.take()
    del factory.prepared[:]

    said: list[Message] = []
    bot.say("one framing for all").addCallback(said.append)
    chat.flush()

    [event] = said
    assert factory.prepared == [event.cache["ws-json"], event.cache["ws-text"]]
    assert event.cache["ws-json"].payload == event.cache["json"]
    for peer in jsons:
        [obj] = peer.objects()
        assert (obj["type"], obj["from"], obj["text"]) == ("message", "bot", "one framing for all")
    for peer in texts:
        assert peer.lines() == ["#lobby <bot> one framing for all"]


def test_fanOutSkipsClosingRecipient(chat: Chat) -> None:
    """
    A recipient whose WebSocket is closing is skipped without an error,
    for room messages and private ones alike: the others get the message,
    the closing one only finishes its close, and nobody is dropped as failed.
    """
    alice = chat.json("alice")
    bob = chat.text("bob")
    carol = chat.text("carol")
    alice.objects()
    bob.lines()
    bobServer = chat.server("bob")
    bobServer.sendClose(1000, "bye")
    assert bobServer.state == WebSocketProtocol.STATE_CLOSING

    with capturedLogs() as events:
        alice.sendObject({"type": "say", "text": "while bob closes", "ref": 1})
        alice.sendObject({"type": "msg", "to": "bob", "text": "psst", "ref": 2})
        chat.flush()

    assert [(o["type"], o.get("ref")) for o in alice.objects()] == [
        ("message", None),
        ("ack", 1),
        ("private", None),
        ("ack", 2),
        ("part", None),
    ]
    assert carol.lines() == ["#lobby <alice> while bob closes", "*** #lobby: bob left (disconnected)"]
    assert bob.lines() == []
    assert bob.closed is not None and bob.closed[:2] == (True, 1000)
    assert [e for e in events if "log_failure" in e] == []


# -- flood control --


def flooding(clock: Clock, rate: float = 5, kick: float = 100) -> Chat:
    """
    The chat with flood control: C{rate} requests a second, bursts of 10,
    at most C{kick} waiting.
    """
    chat = Chat(clock)
    settings = chat.service.settings
    settings.floodRate, settings.floodBurst, settings.floodKick = rate, 10, kick
    return chat


def tick(chat: Chat, seconds: float) -> None:
    """
    Let C{seconds} pass in steps of 0.05 s, as a reactor runs timers about
    when they are due, moving bytes after each step.
    """
    for _ in range(round(seconds / 0.05)):
        chat.clock.advance(0.05)
        chat.flush()


def says(nick: str, objects: list[dict[str, Any]]) -> list[str]:
    return [o["text"] for o in objects if o["type"] == "message" and o["from"] == nick]


def test_jsonPasteWaitsInsteadOfBeingDropped(clock: Clock) -> None:
    """
    Thirty json-mode messages sent at once (one read) at 5 requests a
    second, bursts of 10: ten are said and acknowledged at once, the
    connection is not read from meanwhile (its transport is paused) and
    the other twenty follow one every 0.2 s, in order, each acknowledged;
    no error. Then the connection is read again.
    """
    chat = flooding(clock)
    alice, bob = chat.json("alice"), chat.json("bob")
    clock.advance(10)
    chat.flush()
    alice.objects()
    for n in range(30):
        alice.sendObject({"type": "say", "text": "m%d" % n, "ref": n})
    chat.flush()
    transport = chat.server("alice").transport
    got = alice.objects()
    assert says("alice", got) == ["m%d" % n for n in range(10)]
    assert [o["ref"] for o in got if o["type"] == "ack"] == list(range(10))
    assert transport.paused  # type: ignore[union-attr]
    tick(chat, 0.1)
    for n in range(10, 30):
        tick(chat, 0.2)
        got = alice.objects()
        assert says("alice", got) == ["m%d" % n] and [o["ref"] for o in got if o["type"] == "ack"] == [n]
        assert transport.paused is (n < 29)  # type: ignore[union-attr]
    assert says("alice", bob.objects()) == ["m%d" % n for n in range(30)]
    assert alice.closed is None


def test_textPasteWaits(clock: Clock) -> None:
    """
    Text mode too: fifteen lines sent at once are all said, in order, the
    last five as the rate allows; nothing is refused.
    """
    chat = flooding(clock)
    alice = chat.text("alice")
    clock.advance(10)
    chat.flush()
    alice.lines()
    for n in range(15):
        alice.sendMessage(b"line %d" % (n,))
    chat.flush()
    assert alice.lines() == ["#lobby <alice> line %d" % n for n in range(10)]
    tick(chat, 1.1)
    assert alice.lines() == ["#lobby <alice> line %d" % n for n in range(10, 15)]


def test_jsonFloodPastTheBoundIsDisconnected(clock: Clock) -> None:
    """
    A json client with more than flood-kick requests waiting gets an
    error with code C{flood} and the reason, and is closed; the others see
    it leave as flooding.
    """
    chat = flooding(clock, kick=20)
    alice, bob = chat.json("alice"), chat.json("bob")
    clock.advance(10)
    chat.flush()
    alice.objects()
    bob.objects()
    for n in range(31):
        alice.sendObject({"type": "say", "text": "m%d" % n})
    chat.flush()
    reason = "disconnected for flooding: more than 20 requests waiting"
    got = alice.objects()
    assert says("alice", got) == ["m%d" % n for n in range(10)]
    assert [o for o in got if o["type"] in ("error", "notice")] == [
        {"type": "error", "code": "flood", "message": reason},
        {"type": "notice", "text": reason},
    ]
    assert alice.closed is not None
    assert chat.service.lookup("alice") is None
    assert [(o["nick"], o["reason"]) for o in bob.objects() if o["type"] == "part"] == [("alice", "flooding")]


def test_pingsWhileWaiting(clock: Clock) -> None:
    """
    A connection that is not read from while its requests wait is not
    dropped for missing pongs (they wait with the rest of its input): after
    a wait longer than the ping interval and timeout, it is still open,
    everything it sent was said, and pings work again.
    """
    chat = flooding(clock, rate=0.025)
    alice = chat.json("alice")
    clock.advance(1000)
    chat.flush()
    alice.objects()
    for n in range(12):
        alice.sendObject({"type": "say", "text": "m%d" % n})
    chat.flush()
    assert says("alice", alice.objects()) == ["m%d" % n for n in range(10)]
    tick(chat, 79)
    assert alice.closed is None
    assert says("alice", alice.objects()) == ["m10"]
    tick(chat, 2)
    assert says("alice", alice.objects()) == ["m11"]
    tick(chat, 80)
    assert alice.closed is None
    alice.sendObject({"type": "who"})
    chat.flush()
    assert [o["type"] for o in alice.objects()] == ["presence"]


def test_slowConsumerDropped(clock: Clock) -> None:
    """
    While the transport has paused a WebSocket's producer (its peer does not
    read), whatever is sent to it is counted; past the outgoing limit the
    connection is dropped, and everyone else keeps receiving. The limit is
    read from the service's settings when it is checked: here it is lowered
    (as a reload does) after the connections opened.
    """
    chat = Chat(clock)
    slow = chat.json("slow")
    alice = chat.json("alice")
    carol = chat.text("carol")
    slow.objects()
    alice.objects()
    chat.service.settings.maxOutgoing = 4096
    slowServer = chat.server("slow")
    guard = slowServer.transport.producer  # type: ignore[union-attr]
    assert guard is not None and guard is slowServer._guard
    guard.pauseProducing()

    texts = ["message %d %s" % (i, "." * 200) for i in range(40)]
    with capturedLogs() as events:
        for text in texts:
            alice.sendObject({"type": "say", "text": text})
        chat.flush()

    assert chat.service.lookup("slow") is None
    assert slow.closed is not None and slow.closed[0] is False
    got = [o["text"] for o in slow.objects() if o["type"] == "message"]
    assert got == texts[: len(got)] and len(got) < len(texts)
    objs = alice.objects()
    assert [o["text"] for o in objs if o["type"] == "message"] == texts
    assert [(o["nick"], o["reason"]) for o in objs if o["type"] == "part"] == [("slow", "too slow")]
    lines = carol.lines()
    assert [line for line in lines if line.startswith("#lobby <")] == ["#lobby <alice> " + t for t in texts]
    assert "*** #lobby: slow left (too slow)" in lines
    assert any("slow consumer" in e.get("log_format", "") for e in events)


# -- origin --


@pytest.mark.parametrize(
    "origin, host, allowed, expected",
    [
        (None, "localhost:8080", [], True),
        ("http://localhost:8080", "localhost:8080", [], True),
        ("HTTP://LocalHost:8080", "localhost:8080", [], True),
        ("http://localhost", "localhost:80", [], True),
        ("https://chat.example.com", "chat.example.com", [], True),
        ("http://localhost:8081", "localhost:8080", [], False),
        ("http://evil.example:8080", "localhost:8080", [], False),
        ("http://localhost:8080", None, [], False),
        ("file://localhost:8080", "localhost:8080", [], False),
        ("http://evil.example", "localhost:8080", ["http://evil.example"], True),
        ("http://evil.example", "localhost:8080", ["http://EVIL.example/"], True),
        ("http://other.example", "localhost:8080", ["http://evil.example"], False),
        ("http://anything.example", "localhost:8080", ["*"], True),
        ("null", "localhost:8080", [], False),
        ("null", "localhost:8080", ["*"], True),
        ("http://[::1", "localhost:8080", [], False),
        ("http://localhost:99999", "localhost:8080", [], False),
    ],
)
def test_originAllowed(origin: str | None, host: str | None, allowed: list[str], expected: bool) -> None:
    """
    A handshake is accepted without an C{Origin} (a program, not a page),
    from the page's own origin (same host and port as C{Host}), from an
    origin listed in C{allowed}, or from any with C{*}; C{null}, another
    port or host, and malformed origins are refused.
    """
    assert originAllowed(origin, host, allowed) is expected


@pytest.mark.parametrize("path", ["/ws", "/"])
@pytest.mark.parametrize("origin", ["http://evil.example", "http://localhost:8081", "null", "file://"])
def test_foreignOriginRefused(chat: Chat, path: str, origin: str) -> None:
    """
    A WebSocket handshake from a foreign Origin (including C{null}, which
    sandboxed and local pages send) is answered with HTTP 403 and joins
    nobody to the chat.
    """
    client = RawClient(handshake(path, origin))
    chat.open(client)
    assert client.received.startswith(b"HTTP/1.1 403 "), client.received[:200]
    assert chat.service.members == set()


def test_malformedOriginRefused(chat: Chat) -> None:
    """
    A WebSocket handshake whose Origin header cannot be parsed is refused
    as a bad request (HTTP 400).
    """
    client = RawClient(handshake("/ws", "http://[::1"))
    chat.open(client)
    assert client.received.startswith(b"HTTP/1.1 400 "), client.received[:200]
    assert chat.service.members == set()


@pytest.mark.parametrize("allowed", ["null", "*"])
def test_nullOriginAllowed(clock: Clock, allowed: str) -> None:
    """
    The C{null} origin is accepted when it is listed as allowed, or when
    any origin is (C{*}).
    """
    chat = Chat(clock, allowedOrigins=[allowed])
    peer = chat.connect(origin="null")
    assert peer.opened
    assert peer.lines()[0] == GREETING % ("guest-1",)


@pytest.mark.parametrize("path", ["/ws", "/"])
def test_sameOriginAccepted(chat: Chat, path: str) -> None:
    """
    A WebSocket handshake from the page's own origin is accepted.
    """
    peer = chat.connect(path, origin="http://" + HOST)
    assert peer.opened
    assert peer.lines()[0] == GREETING % ("guest-1",)


def test_allowedOriginAccepted(clock: Clock) -> None:
    """
    An origin in the factory's allowed list is accepted, while others are
    still refused.
    """
    chat = Chat(clock, allowedOrigins=["https://chat.example.com"])
    peer = chat.connect(origin="https://chat.example.com")
    assert peer.opened
    client = RawClient(handshake("/ws", "https://evil.example"))
    chat.open(client)
    assert client.received.startswith(b"HTTP/1.1 403 ")
