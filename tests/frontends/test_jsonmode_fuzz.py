"""
Property-based tests (hypothesis) of the json-mode request parser
(L{twisted_chat.frontends.jsonmode}) under untrusted input, without the
WebSocket: requests in through C{handleJson}, in memory with time on a
L{Clock}.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from zope.interface import implementer

from twisted_chat.core.auth import hashPassword
from twisted_chat.core.events import Event
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.frontends.jsonmode import JsonSession
from twisted_chat.core.service import ChatService
from twisted_chat.stores.memory import MemoryStore

from tests.support.fakes import ImmediateThreads
from tests.support.fuzz import FUZZ


# -- the json-mode parser -------------------------------------------------------


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
