"""
Property-based tests (hypothesis) of what untrusted input reaches: the line
chat's framing, the json-mode request parser, and the chat service under
random sequences of requests from several members. Everything runs in
memory, with time on a L{Clock}.

The end-to-end barrage against the real daemon is in tests/e2e/test_e2e_hardening.py.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat.core.auth import hashPassword
from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import Event, Message
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.frontends.jsonmode import JsonSession
from twisted_chat.frontends.line import LineChatProtocol
from twisted_chat.core.names import nickKey
from twisted_chat.core.service import ChatService, Member
from twisted_chat.core.settings import Settings
from twisted_chat.stores.memory import MemoryStore

from tests.support.fakes import RecordingClient

#: modest and without the "explain" phase, whose report (under -W error)
#: trips over a deprecation warning of one of its imports
FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[phase for phase in Phase if phase is not Phase.explain],
)

MAX_LINE = 64

# -- line framing --------------------------------------------------------------


class RecordingLine(LineChatProtocol):
    """
    The real line protocol, recording in order every decoded line its
    framing hands on and every error it answers with.
    """

    def __init__(self, service: ChatService, clock: Clock) -> None:
        service.settings.maxLineLength = MAX_LINE
        LineChatProtocol.__init__(self, service, clock=clock)
        self.seen: list[tuple[str, str]] = []

    def handleText(self, line: str) -> None:
        self.seen.append(("line", line))

    def sendError(self, message: str) -> None:
        self.seen.append(("error", message))
        LineChatProtocol.sendError(self, message)


def lineConnection(protocol: LineChatProtocol) -> StringTransportWithDisconnection:
    address = IPv4Address("TCP", "127.0.0.1", 40001)
    transport = StringTransportWithDisconnection(peerAddress=address)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return transport


TOO_LONG = "line too long (max %d bytes): discarded" % (MAX_LINE,)
BAD_UTF8 = "invalid UTF-8: line dropped"

#: byte strings that framing must take apart correctly wherever they fall
_TRICKY = [b"\n", b"\r\n", b"\r", b"\xff", b"\xc3", b"\xc3\xa9", b"\xe2\x82", b"/quit\n", b"/join x\n", b"x" * 70]


@FUZZ
@given(chunks=st.lists(st.one_of(st.binary(max_size=150), st.sampled_from(_TRICKY)), max_size=40))
def test_lineFramingNeverRaisesNorOverBuffers(chunks: list[bytes]) -> None:
    """
    Any bytes, cut anywhere, into a real line connection of the real
    service: C{dataReceived} never raises, never holds more than one line's
    worth (the limit and a CR) between calls, and the server only ever
    sends whole lines of valid UTF-8.
    """
    clock = Clock()
    protocol = LineChatProtocol(ChatService(store=MemoryStore(), clock=clock, settings=Settings(maxLineLength=MAX_LINE)), clock=clock)
    transport = lineConnection(protocol)
    for chunk in chunks:
        protocol.dataReceived(chunk)
        assert len(protocol._buffer) <= MAX_LINE + 1
    out = transport.value()
    assert out.endswith(b"\n")
    out.decode("utf-8")


_lineBody = st.one_of(
    st.text(max_size=80).map(lambda s: s.encode("utf-8")),
    st.binary(max_size=80),
    st.sampled_from([b"", b"\r", b"caf\xc3\xa9", b"caf\xc3", b"\xed\xa0\x80", b"y" * MAX_LINE, b"z" * (MAX_LINE + 1)]),
).map(lambda b: b.replace(b"\n", b""))


def expectedFraming(lines: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """
    What the line chat promises for each complete line: at most one CR
    before the LF is dropped; longer than the limit is one "too long"
    error, else invalid UTF-8 is one "invalid UTF-8" error, else the line.
    """
    seen = []
    for body, end in lines:
        line = (body + end)[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > MAX_LINE:
            seen.append(("error", TOO_LONG))
            continue
        try:
            seen.append(("line", line.decode("utf-8")))
        except UnicodeDecodeError:
            seen.append(("error", BAD_UTF8))
    return seen


@FUZZ
@given(lines=st.lists(st.tuples(_lineBody, st.sampled_from([b"\n", b"\r\n"])), max_size=25), data=st.data())
def test_lineFramingHandlesEveryCompleteLine(lines: list[tuple[bytes, bytes]], data: st.DataObject) -> None:
    """
    However a stream of lines is cut into segments, every complete line is
    handled exactly once and in order: valid ones as text, too long or
    invalid ones with exactly one error each; nothing is lost or merged.
    """
    stream = b"".join(body + end for body, end in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="cuts"))
    clock = Clock()
    protocol = RecordingLine(ChatService(store=MemoryStore(), clock=clock), clock)
    lineConnection(protocol)
    start = 0
    for cut in cuts + [len(stream)]:
        protocol.dataReceived(stream[start:cut])
        start = cut
    assert protocol.seen == expectedFraming(lines)


# -- the json-mode parser -------------------------------------------------------


class ImmediateThreads(Clock):
    """
    A L{Clock} that is also a reactor's thread pool running work at once,
    in the calling thread: password checks then answer synchronously.
    """

    def getThreadPool(self) -> ImmediateThreads:
        return self

    def callInThreadWithCallback(self, onResult: Callable[[bool, object], None], f: Callable[..., object], *a: object, **kw: object) -> None:
        try:
            result = f(*a, **kw)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)

    def callFromThread(self, f: Callable[..., object], *a: object, **kw: object) -> None:
        f(*a, **kw)


@implementer(IChatClient)
class JsonConnection(JsonSession):
    """
    json mode without the WebSocket: requests in through C{handleJson},
    every object sent kept in C{sent}.
    """

    kind = "ws-json"

    def __init__(self, service: ChatService, peer: str = "10.0.0.1:1") -> None:
        self.service = service
        self.peer = peer
        self.sent: list[dict[str, Any]] = []
        self.closed: list[str] = []

    def sendJson(self, data: bytes) -> None:
        obj = json.loads(data.decode("utf-8"))
        assert isinstance(obj, dict)
        self.sent.append(obj)

    def deliver(self, event: object) -> None:
        assert isinstance(event, Event)
        self.deliverJson(event)

    def close(self, reason: str, reconnectAfter: float | None = None) -> None:
        self.closed.append(reason)

    def take(self) -> list[dict[str, Any]]:
        sent, self.sent = self.sent, []
        return sent


#: what every server event must carry, and of which type
EVENT_FIELDS: dict[str, dict[str, Any]] = {
    "welcome": {"nick": str, "server": str, "rooms": list, "owner": bool},
    "message": {"room": str, "id": int, "epoch": str, "from": str, "text": str, "time": int, "action": bool},
    "private": {"id": int, "from": str, "to": str, "text": str, "time": int},
    "join": {"room": str, "nick": str, "time": int},
    "part": {"room": str, "nick": str, "reason": str, "time": int},
    "nick": {"old": str, "new": str, "time": int},
    "presence": {"room": str, "members": list},
    "history": {"room": str, "epoch": str, "messages": list},
    "private-history": {"messages": list},
    "rooms": {"rooms": list},
    "ack": {},
    "error": {"code": str, "message": str},
    "notice": {"text": str},
    "topic": {"room": str, "topic": str, "by": str, "time": int},
}

ERROR_CODES = {
    # docs/protocol.md
    "bad-json", "bad-request", "unknown-type", "hello-required", "bad-nick", "nick-taken", "bad-room",
    "not-in-room", "no-such-nick", "empty-message", "too-long", "too-many-rooms", "server-error",
    # registered nicks and moderation
    "nick-registered", "auth-required", "bad-login", "no-auth", "not-allowed", "banned", "flood",
}

REQUESTS = ["hello", "say", "msg", "join", "part", "nick", "who", "rooms", "history", "login", "topic", "kick", "ban", "unban", "op", "notice"]
#: requests that always get an answer (an event or an error) on the same connection
ANSWERED = {"hello", "say", "msg", "join", "part", "who", "rooms", "history", "topic", "kick", "notice"}


def checkEvent(obj: dict[str, Any]) -> None:
    kind = obj.get("type")
    assert kind in EVENT_FIELDS, obj
    for field, kind_ in EVENT_FIELDS[kind].items():
        assert isinstance(obj.get(field), kind_), (field, obj)
    if kind == "error":
        assert obj["code"] in ERROR_CODES, obj


#: short strings, some with lone surrogates (JSON can carry them as escapes)
_text = st.one_of(st.text(max_size=10), st.sampled_from(["\ud800", "a\udfffb", "\n", "\x00", "é", "\U0001f600", ""]))
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), _text)
_anyJson = st.recursive(
    _scalar, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)), max_leaves=8
)
_nick = st.sampled_from(["alice", "bob", "Alice", "fuzz", "guest-1", "", "bad nick", "x" * 25, "root"])
_room = st.sampled_from(["#lobby", "lobby", "#dev", "DEV", "#", "#" + "r" * 33, "#bad room", "10.0.0.1"])
_field = {
    "nick": st.one_of(_nick, _anyJson),
    "rooms": st.one_of(st.lists(_room, max_size=4), _anyJson),
    "room": st.one_of(_room, _anyJson),
    "text": st.one_of(_text, st.sampled_from(["hi", " ", "x" * 300]), _anyJson),
    "to": st.one_of(_nick, _anyJson),
    "target": st.one_of(_nick, _room, _anyJson),
    "reason": st.one_of(_text, _anyJson),
    "topic": st.one_of(_text, _anyJson),
    "ref": st.one_of(st.sampled_from(["r1", "r2", 7, True, 1.5]), _anyJson),
    "since": st.one_of(st.just({"#lobby": {"epoch": "e", "id": 3}}), _anyJson),
    "before": st.one_of(st.integers(-5, 2**65), _anyJson),
    "limit": st.one_of(st.integers(-5, 2**65), _anyJson),
    "password": st.one_of(st.sampled_from(["right", "wrong"]), _anyJson),
    "token": _anyJson,
    "private_since": _anyJson,
    "action": _anyJson,
}
_request = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(REQUESTS), st.sampled_from(["", "HELLO", "say1", "__init__"]), _anyJson)},
    optional=_field,
)
_payload = st.one_of(
    _request.map(lambda r: json.dumps(r).encode("utf-8")),
    _anyJson.map(lambda v: json.dumps(v).encode("utf-8")),
    st.binary(max_size=40),
    st.sampled_from([b"", b"{", b"[" * 5000, b'{"type":"say","text":"\\udc00"}', b'{"type":"hello","nick":"a\\ud800"}']),
)


def fuzzService() -> ChatService:
    clock = ImmediateThreads()
    clock.advance(1764201600)
    service = ChatService(store=MemoryStore(), 
        clock=clock, passwords={"alice": hashPassword("right", n=2)}, admins=["alice"], maxTextLength=200, maxRoomsPerMember=3
    )
    service.startService()
    return service


@FUZZ
@given(hello=st.booleans(), payloads=st.lists(_payload, min_size=1, max_size=10))
def test_jsonParserAnswersEverything(hello: bool, payloads: list[bytes]) -> None:
    """
    Random requests, random JSON and random bytes into a json-mode
    connection: nothing raises out of C{handleJson}; everything the server
    sends is a well-formed event (errors with a known code); what is not a
    JSON object gets exactly one C{bad-json}, an unknown type exactly one
    C{unknown-type}, a request before the hello exactly one
    C{hello-required}, and every request that always has an answer gets
    one. Neither this connection nor a bystander in #lobby is ever dropped.
    """
    service = fuzzService()
    bystander = JsonConnection(service, "10.0.0.2:2")
    bystander.handleJson(b'{"type":"hello","nick":"bob","rooms":["#lobby","#dev"]}')
    fuzzer = JsonConnection(service)
    if hello:
        fuzzer.handleJson(b'{"type":"hello","nick":"fuzz"}')
    for payload in payloads:
        fuzzer.take()
        before = fuzzer.member
        fuzzer.handleJson(payload)
        sent = fuzzer.take()
        for obj in sent:
            checkEvent(obj)
        try:
            request = json.loads(payload)
        except (ValueError, RecursionError):
            request = None
        if not isinstance(request, dict):
            assert [(o["type"], o["code"]) for o in sent] == [("error", "bad-json")]
            continue
        kind = request.get("type") if isinstance(request.get("type"), str) else None
        codes = [o["code"] for o in sent if o["type"] == "error"]
        if kind not in REQUESTS and "bad-json" not in codes and "bad-request" not in codes:
            assert [(o["type"], o["code"]) for o in sent] == [("error", "unknown-type")]
        elif before is None and kind in REQUESTS and kind != "hello" and "bad-json" not in codes and "bad-request" not in codes:
            assert [(o["type"], o["code"]) for o in sent] == [("error", "hello-required")]
        elif kind in ANSWERED:
            assert sent, request
        ref = request.get("ref")
        if isinstance(ref, (str, int)) and not isinstance(ref, bool) and "bad-json" not in codes:
            for o in sent:
                if o["type"] == "error":
                    assert o.get("ref") == ref, (o, request)
    for obj in bystander.take():
        checkEvent(obj)
    assert fuzzer.closed == []
    assert bystander.closed == []
    assert service.lookup("bob") is bystander.member
    assert bystander.member is not None and "#lobby" in bystander.member.rooms


def test_jsonLoneSurrogateRefused() -> None:
    """
    A request with an unpaired surrogate escape (C{"\\ud800"}) is refused
    as C{bad-json} and reaches nobody: JSON allows the escape, but it is not
    text and could not be sent on to anyone. A proper pair (an emoji
    written as two escapes) is text and is said.
    """
    service = fuzzService()
    bob = JsonConnection(service, "10.0.0.2:2")
    bob.handleJson(b'{"type":"hello","nick":"bob"}')
    eve = JsonConnection(service)
    eve.handleJson(b'{"type":"hello","nick":"eve"}')
    bob.take(), eve.take()
    eve.handleJson(b'{"type":"say","text":"x\\ud800y","ref":"\\udfff"}')
    assert [(o["type"], o.get("code")) for o in eve.take()] == [("error", "bad-json")]
    assert bob.take() == []
    eve.handleJson(b'{"type":"say","text":"\\ud83d\\ude00"}')
    assert [(o["type"], o.get("text")) for o in bob.take()] == [("message", "\U0001f600")]
    assert bob.closed == eve.closed == []


# -- the service under random requests -------------------------------------------


NICKS = st.sampled_from(["alice", "bob", "carol", "Alice", "BOB", "dave", "bad nick", "", "guest-1"])
ROOMS = st.sampled_from(["#lobby", "#dev", "dev", "#ops", "#x", "#Ops", "bad room", "#"])
OPT_ROOM = st.one_of(st.none(), ROOMS)
TEXT = st.sampled_from(["hi", "", " ", "x" * 30, "hello there"])
WHO = st.integers(0, 1000)


class ServiceMachine(RuleBasedStateMachine):
    """
    Several members doing random things to one service, with flood
    control on and time passing at random.
    """

    def __init__(self) -> None:
        RuleBasedStateMachine.__init__(self)
        self.clock = Clock()
        self.clock.advance(1764201600)
        self.service = ChatService(store=MemoryStore(), 
            clock=self.clock, floodRate=5, floodBurst=10, floodKick=20, maxRoomsPerMember=3, maxTextLength=20
        )
        self.service.startService()
        self.members: list[tuple[Member, RecordingClient]] = []
        self.checked: dict[int, int] = {}

    def live(self) -> list[Member]:
        return [m for m, _ in self.members if not m.gone]

    def pick(self, who: int) -> Member:
        """
        One of the connected members: front-ends make no requests for a
        member the service has let go.
        """
        live = self.live()
        return live[who % len(live)]

    def attempt(self, request: Callable[[], object]) -> None:
        """
        Make a request: it is refused with L{ChatError} or it works (its
        Deferred, if any, fires with a result or a L{ChatError}); nothing
        else may escape.
        """
        try:
            result = request()
        except ChatError:
            return
        if isinstance(result, Deferred):
            outcome: list[object] = []
            result.addBoth(outcome.append)
            assert outcome, "an in-memory request did not finish"
            if isinstance(outcome[0], Failure):
                outcome[0].trap(ChatError)

    @rule(nick=st.one_of(st.none(), NICKS), host=st.integers(1, 3))
    def connect(self, nick: str | None, host: int) -> None:
        client = RecordingClient()
        address = "10.0.0.%d" % (host,)
        try:
            member = self.service.connect(client, nick=nick, peer=address + ":1", host=address)
        except ChatError:
            return
        self.members.append((member, client))

    @precondition(lambda self: self.live())
    @rule(who=WHO, room=ROOMS)
    def join(self, who: int, room: str) -> None:
        self.attempt(lambda: self.pick(who).join(room))

    @precondition(lambda self: self.live())
    @rule(who=WHO, room=OPT_ROOM)
    def part(self, who: int, room: str | None) -> None:
        self.attempt(lambda: self.pick(who).part(room))

    @precondition(lambda self: self.live())
    @rule(who=WHO, text=TEXT, room=OPT_ROOM, action=st.booleans(), ref=st.sampled_from([None, "a", "b"]))
    def say(self, who: int, text: str, room: str | None, action: bool, ref: str | None) -> None:
        self.attempt(lambda: self.pick(who).say(text, room, action, ref))

    @precondition(lambda self: self.live())
    @rule(who=WHO, nick=NICKS)
    def nick(self, who: int, nick: str) -> None:
        self.attempt(lambda: self.pick(who).setNick(nick))

    @precondition(lambda self: self.live())
    @rule(who=WHO, nick=NICKS, text=TEXT)
    def private(self, who: int, nick: str, text: str) -> None:
        self.attempt(lambda: self.pick(who).private(nick, text))

    @precondition(lambda self: self.live())
    @rule(who=WHO, nick=NICKS, room=OPT_ROOM)
    def kick(self, who: int, nick: str, room: str | None) -> None:
        self.attempt(lambda: self.pick(who).kick(nick, "go", room))

    @precondition(lambda self: self.live())
    @rule(who=WHO, whom=st.one_of(NICKS, st.sampled_from(["10.0.0.1", "10.0.0.2"])), unban=st.booleans())
    def ban(self, who: int, whom: str, unban: bool) -> None:
        member = self.pick(who)
        self.attempt(lambda: member.unban(whom) if unban else member.ban(whom))

    @precondition(lambda self: self.live())
    @rule(who=WHO, text=TEXT)
    def topic(self, who: int, text: str) -> None:
        self.attempt(lambda: self.pick(who).setTopic(text))

    @precondition(lambda self: self.live())
    @rule(who=WHO, nick=NICKS)
    def op(self, who: int, nick: str) -> None:
        self.attempt(lambda: self.pick(who).giveOp(nick))

    @precondition(lambda self: self.live())
    @rule(who=WHO)
    def quit(self, who: int) -> None:
        self.pick(who).quit("quit")

    @rule(seconds=st.sampled_from([0.0, 0.05, 0.3, 2.0]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def membershipConsistent(self) -> None:
        service = self.service
        for member in service.members:
            assert not member.gone
            assert service.lookup(member.nick) is member
            for name, room in member.rooms.items():
                assert service.rooms.get(name) is room
                assert member in room.members
            assert (member.current is None) == (not member.rooms)
            assert member.current is None or member.current in member.rooms
        for name, room in service.rooms.items():
            assert room.name == name
            assert room.members, "an empty room is kept"
            for member in room.members:
                assert member in service.members
                assert member.rooms.get(name) is room
            assert room.ops <= set(room.members)
        for member, _ in self.members:
            if member.gone:
                assert member not in service.members
                assert member.rooms == {}

    @invariant()
    def nickRegistryConsistent(self) -> None:
        nicks = self.service.nicks.byKey
        assert len(nicks) == len(self.service.members)
        for key, member in nicks.items():
            assert member in self.service.members
            assert nickKey(member.nick) == key

    @invariant()
    def roomIdsIncrease(self) -> None:
        """
        Every member sees the live messages of a room in strictly
        increasing id order.
        """
        for member, client in self.members:
            last: dict[str, int] = {}
            for event in client.events:
                if isinstance(event, Message):
                    assert event.id > last.get(event.room, 0), (event, last)
                    last[event.room] = event.id


ServiceMachine.TestCase.settings = settings(FUZZ, max_examples=60, stateful_step_count=40)
test_serviceInvariants = ServiceMachine.TestCase


def test_jsonFramesAfterFloodKickIgnored() -> None:
    """
    Frames a json client still sends after it was disconnected for
    flooding (they arrive during the close handshake) are ignored: the
    departed member does not come back into a room as a ghost that nobody
    can remove.
    """
    clock = Clock()
    service = ChatService(store=MemoryStore(), clock=clock, floodRate=5, floodBurst=10, floodKick=20)
    bob = JsonConnection(service, "10.0.0.2:2")
    bob.handleJson(b'{"type":"hello","nick":"bob"}')
    eve = JsonConnection(service)
    eve.handleJson(b'{"type":"hello","nick":"eve"}')
    assert eve.member is not None
    service.disconnectFlooder(eve.member, 21)
    assert eve.closed == ["disconnected for flooding: more than 20 requests waiting"]
    clock.advance(5)
    eve.take()
    eve.handleJson(b'{"type":"join","room":"#dev"}')
    eve.handleJson(b'{"type":"say","text":"still here"}')
    assert eve.take() == []
    assert "#dev" not in service.rooms
    assert service.lookup("eve") is None
    bob.handleJson(b'{"type":"who","room":"#lobby"}')
    assert bob.take()[-1] == {"type": "presence", "room": "#lobby", "members": ["bob"]}
