# -*- test-case-name: tests.cluster.test_protocol -*-
"""
The cluster's protocol: every message the nodes of a cluster send each
other through Redis, as a typed class, with its JSON encoding.

A message is a JSON object: C{"t"} names its type (the C{code} of its
class), C{"v"} is the protocol version (L{VERSION}; nodes older than the
field did not send it, and their format is version 1's), and the other
keys are its fields, one or two letters each to keep the bus small
(C{wire("r")} next to a field below says which key it travels as). Most
messages go to the cluster's bus (C{PREFIX:bus}), which every node
receives; L{PrivateMessage}, L{KickMember} and L{OpMember} go to the
channel of one node (C{PREFIX:node:NODE}). Room and private messages are
also what the history streams keep. The Lua scripts
(L{twisted_chat.cluster.scripts}) build the bodies they publish with
L{luaTable}, from these same fields.

A node handles what it reads with its C{on_<class name>} methods (see
L{twisted_chat.cluster.broker.RedisBroker.received}).

Compatibility (docs/design.md, "The bus protocol"): a node reads every
message of a version up to its own, and ignores the keys and message
types it does not know. So a new message type, or a new key whose absence
means what older nodes do, keeps the version; any other change (a key
renamed, removed, or read differently) takes the next version, and a node
skips the messages of a version above its own, with a warning in its log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from operator import itemgetter
from typing import Callable, ClassVar, Mapping, TypeVar

from twisted_chat.core.events import Message, Private, PrivateUpdate, Update

#: the version of the protocol this node speaks
VERSION = 1

_M = TypeVar("_M", bound="BusMessage")


class ProtocolError(ValueError):
    """
    Not a message of this protocol (not JSON, a key missing, a value of
    the wrong type); the text says what is wrong.
    """


class NewerVersion(ProtocolError):
    """
    A message of a protocol version above this node's (L{VERSION}).
    """

    def __init__(self, version: int) -> None:
        ProtocolError.__init__(self, "protocol version %d (this node speaks %d)" % (version, VERSION))
        self.version = version


# Values: how each kind of field is read from JSON.


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ProtocolError("not a string: %r" % (value,))
    return value


# (each reader checks the common case first: every message on the bus is
# read on every node)


def _integer(value: object) -> int:
    if type(value) is int:
        return value
    # (Lua's cjson writes integral numbers as integers; a float that is
    # integral is read as one too)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError("not an integer: %r" % (value,))
    if isinstance(value, float) and not value.is_integer():
        raise ProtocolError("not an integer: %r" % (value,))
    return int(value)


def _number(value: object) -> float:
    if type(value) is float:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError("not a number: %r" % (value,))
    return float(value)


def _flag(value: object) -> bool:
    if type(value) is not bool:
        raise ProtocolError("not a boolean: %r" % (value,))
    return value


def wire(
    key: str, read: Callable[[object], object] = _text, missing: object = None, write: Callable[[object], object] | None = None
) -> dict[str, object]:
    """
    The metadata of a message field: the JSON C{key} it travels as, how it
    is C{read} from JSON (and C{write}ten, when not as it is), and its
    value when a message has no such key (C{missing}; None: required).
    """
    return {"key": key, "read": read, "missing": missing, "write": write}


@dataclass(frozen=True, slots=True)
class MemberState:
    """
    A member of a node as the others know it: its nick and rooms. Kept in
    the node's members hash (C{PREFIX:m:NODE}, nick key -> state) and sent
    in L{NodeRegistered} and L{NodeDown}, as the JSON C{[nick, [room...]]}.
    """

    nick: str
    rooms: tuple[str, ...]

    def encode(self) -> str:
        return json.dumps([self.nick, list(self.rooms)])

    @classmethod
    def decode(cls, raw: object) -> MemberState:
        value = _json(_text(raw))
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], list)):
            raise ProtocolError("not a member's state: %r" % (raw,))
        return cls(_text(value[0]), tuple(_text(room) for room in value[1]))


@dataclass(frozen=True, slots=True)
class TopicState:
    """
    The topic of a room and who set it, kept in the topics hash
    (C{PREFIX:topic}, room -> state) as the JSON C{[topic, by]}; an empty
    topic is none.
    """

    topic: str
    by: str

    def encode(self) -> str:
        return json.dumps([self.topic, self.by])

    @classmethod
    def decode(cls, raw: object) -> TopicState:
        value = _json(_text(raw))
        if not (isinstance(value, list) and len(value) == 2):
            raise ProtocolError("not a topic: %r" % (raw,))
        return cls(_text(value[0]), _text(value[1]))


def _members(value: object) -> dict[str, MemberState]:
    if value == []:
        return {}  # (an empty Lua table, encoded as a list)
    if not isinstance(value, dict):
        raise ProtocolError("not a map of members: %r" % (value,))
    return {_text(key): MemberState.decode(state) for key, state in value.items()}


def _writeMembers(value: object) -> object:
    if not isinstance(value, Mapping):
        raise TypeError("not a map of members: %r" % (value,))
    return {key: state.encode() for key, state in value.items()}


# The messages.


@dataclass(frozen=True, slots=True)
class BusMessage:
    """
    What every message has: the node that sent it.
    """

    #: the value of C{"t"}
    code: ClassVar[str] = ""
    #: whether the node that sent it handles it too (else it ignores its own)
    toSenderToo: ClassVar[bool] = False

    node: str = field(metadata=wire("o"))


@dataclass(frozen=True, slots=True)
class RoomMessage(BusMessage):
    """
    A message said in a room, as stored (by the script that gave it its
    id): on the bus, in the room's stream, and the reply to the sender's
    node. Every node, the sender's included, delivers it to its members.
    """

    code = "m"
    toSenderToo = True

    room: str = field(metadata=wire("r"))
    id: int = field(metadata=wire("i", _integer))
    epoch: str = field(metadata=wire("e"))
    sender: str = field(metadata=wire("n"))
    text: str = field(metadata=wire("x"))
    time: float = field(metadata=wire("s", _number))
    action: bool = field(metadata=wire("a", _flag))
    #: the id of the message it answers (0: none)
    replyTo: int = field(default=0, metadata=wire("rt", _integer, 0))
    #: the nicks it mentions, space separated
    mentions: str = field(default="", metadata=wire("mn", missing=""))

    def event(self) -> Message:
        return Message(
            self.room, self.id, self.epoch, self.sender, self.text, self.time, self.action,
            tuple(self.mentions.split()) if self.mentions else (), self.replyTo,
        )


@dataclass(frozen=True, slots=True)
class RoomUpdate(BusMessage):
    """
    An edit, deletion or reaction (C{op}) of message C{target} of C{room},
    as stored by the script that gave it its id in the room's sequence: on
    the bus, in the room's stream, and the reply to the sender's node;
    delivered in id order with the room's messages. C{original} (the text
    before) and C{author} (of the message) travel on the bus only.
    """

    code = "u"
    toSenderToo = True

    room: str = field(metadata=wire("r"))
    id: int = field(metadata=wire("i", _integer))
    epoch: str = field(metadata=wire("e"))
    sender: str = field(metadata=wire("n"))
    op: str = field(metadata=wire("op"))
    target: int = field(metadata=wire("g", _integer))
    text: str = field(metadata=wire("x"))
    time: float = field(metadata=wire("s", _number))
    emoji: str = field(metadata=wire("em"))
    on: bool = field(metadata=wire("on", _flag))
    mentions: str = field(default="", metadata=wire("mn", missing=""))
    original: str = field(default="", metadata=wire("og", missing=""))
    author: str = field(default="", metadata=wire("au", missing=""))

    def event(self) -> Update:
        return Update(
            self.room, self.id, self.epoch, self.sender, self.op, self.target, self.text, self.time, self.emoji,
            self.on, tuple(self.mentions.split()) if self.mentions else (), self.original[:31], self.author,
        )


@dataclass(frozen=True, slots=True)
class PrivateUpdateMessage(BusMessage):
    """
    An edit, deletion or reaction of private message C{target}, between
    C{sender} (who did it) and C{recipient}: stored in both nicks' streams
    and sent to the channel of the recipient's node.
    """

    code = "pu"
    toSenderToo = True

    id: int = field(metadata=wire("i", _integer))
    sender: str = field(metadata=wire("n"))
    recipient: str = field(metadata=wire("to"))
    op: str = field(metadata=wire("op"))
    target: int = field(metadata=wire("g", _integer))
    text: str = field(metadata=wire("x"))
    time: float = field(metadata=wire("s", _number))
    emoji: str = field(metadata=wire("em"))
    on: bool = field(metadata=wire("on", _flag))
    original: str = field(default="", metadata=wire("og", missing=""))
    author: str = field(default="", metadata=wire("au", missing=""))

    def event(self) -> PrivateUpdate:
        return PrivateUpdate(
            self.id, self.sender, self.recipient, self.op, self.target, self.text, self.time, self.emoji, self.on,
            self.original[:31], self.author,
        )


@dataclass(frozen=True, slots=True)
class TypingSet(BusMessage):
    """
    C{nick}, on C{node}, is typing in C{room} (C{state}); never stored.
    """

    code = "ty"

    room: str = field(metadata=wire("r"))
    nick: str = field(metadata=wire("n"))
    state: str = field(metadata=wire("y"))


@dataclass(frozen=True, slots=True)
class ReadSet(BusMessage):
    """
    The owned C{nick} read C{room} up to C{id} (stored): its connections on
    other nodes are told.
    """

    code = "rd"

    nick: str = field(metadata=wire("n"))
    room: str = field(metadata=wire("r"))
    id: int = field(metadata=wire("i", _integer))


@dataclass(frozen=True, slots=True)
class PrivateMessage(BusMessage):
    """
    A private message, as stored: sent to the channel of its recipient's
    node (when that is another node), and kept in the streams of both
    nicks.
    """

    code = "p"
    toSenderToo = True

    id: int = field(metadata=wire("i", _integer))
    sender: str = field(metadata=wire("n"))
    recipient: str = field(metadata=wire("to"))
    text: str = field(metadata=wire("x"))
    time: float = field(metadata=wire("s", _number))
    replyTo: int = field(default=0, metadata=wire("rt", _integer, 0))

    def event(self) -> Private:
        return Private(self.id, self.sender, self.recipient, self.text, self.time, self.replyTo)


@dataclass(frozen=True, slots=True)
class MemberAdded(BusMessage):
    """
    A member connected on C{node} under C{nick} (whose key is C{key}),
    claiming it; C{previous} is the node that held the claim before (its
    owner took it over from there), or C{""}.
    """

    code = "on"

    key: str = field(metadata=wire("k"))
    nick: str = field(metadata=wire("n"))
    previous: str = field(metadata=wire("f", missing=""))


@dataclass(frozen=True, slots=True)
class MemberShared(BusMessage):
    """
    The owner of C{nick} (whose key is C{key}) connected on C{node} too,
    while another node holds the nick: both keep their connections (one
    person, several devices). A node that has the nick for someone who is
    not its owner gives it way. (Added after version 1 was fixed: a node
    of an earlier release ignores it, see L{decode}.)
    """

    code = "share"

    key: str = field(metadata=wire("k"))
    nick: str = field(metadata=wire("n"))


@dataclass(frozen=True, slots=True)
class MemberGone(BusMessage):
    """
    The member with nick key C{key} left C{node} (its parts came before).
    """

    code = "off"

    key: str = field(metadata=wire("k"))


@dataclass(frozen=True, slots=True)
class MemberJoined(BusMessage):
    """
    C{nick} (key C{key}) joined C{room} on C{node}.
    """

    code = "j"

    key: str = field(metadata=wire("k"))
    nick: str = field(metadata=wire("n"))
    room: str = field(metadata=wire("r"))
    time: float = field(metadata=wire("s", _number))


@dataclass(frozen=True, slots=True)
class MemberParted(BusMessage):
    """
    C{nick} (key C{key}) left C{room} on C{node}, for C{reason}.
    """

    code = "l"

    key: str = field(metadata=wire("k"))
    nick: str = field(metadata=wire("n"))
    room: str = field(metadata=wire("r"))
    time: float = field(metadata=wire("s", _number))
    reason: str = field(metadata=wire("y"))


@dataclass(frozen=True, slots=True)
class MemberRenamed(BusMessage):
    """
    C{nick} (key C{key}) on C{node} is now C{newNick} (key C{newKey}).
    """

    code = "nick"

    key: str = field(metadata=wire("k"))
    newKey: str = field(metadata=wire("nk"))
    nick: str = field(metadata=wire("n"))
    newNick: str = field(metadata=wire("nn"))
    time: float = field(metadata=wire("s", _number))


@dataclass(frozen=True, slots=True)
class TopicSet(BusMessage):
    """
    C{by} set the topic of C{room} to C{topic} (C{""}: cleared).
    """

    code = "topic"

    room: str = field(metadata=wire("r"))
    topic: str = field(metadata=wire("x"))
    by: str = field(metadata=wire("n"))
    time: float = field(metadata=wire("s", _number))


@dataclass(frozen=True, slots=True)
class TokenSaved(BusMessage):
    """
    The nick with key C{key} has an owner token now, whose hash is C{hash}.
    """

    code = "tok"

    key: str = field(metadata=wire("k"))
    hash: str = field(metadata=wire("h"))


@dataclass(frozen=True, slots=True)
class KickMember(BusMessage):
    """
    To the node of C{nick}: an operator on C{node} put it out of C{room}.
    """

    code = "kick"
    toSenderToo = True

    room: str = field(metadata=wire("r"))
    nick: str = field(metadata=wire("n"))
    reason: str = field(metadata=wire("y"))


@dataclass(frozen=True, slots=True)
class OpMember(BusMessage):
    """
    To the node of C{nick}: an operator on C{node} made it an operator of
    C{room}.
    """

    code = "op"
    toSenderToo = True

    room: str = field(metadata=wire("r"))
    nick: str = field(metadata=wire("n"))


@dataclass(frozen=True, slots=True)
class BanAdded(BusMessage):
    """
    C{key} (a nick key or an address; with a nick, C{host} is its address
    or C{""}) was banned from C{room} for C{reason}.
    """

    code = "ban"

    room: str = field(metadata=wire("r"))
    key: str = field(metadata=wire("k"))
    host: str = field(metadata=wire("h"))
    reason: str = field(metadata=wire("y"))


@dataclass(frozen=True, slots=True)
class BanLifted(BusMessage):
    """
    C{key} was unbanned from C{room}.
    """

    code = "unban"

    room: str = field(metadata=wire("r"))
    key: str = field(metadata=wire("k"))


@dataclass(frozen=True, slots=True)
class NodeRegistered(BusMessage):
    """
    C{node} (re)joined the cluster with these C{members} (nick key ->
    state): all it has, replacing what the others knew of it.
    """

    code = "node"

    members: Mapping[str, MemberState] = field(metadata=wire("m", _members, {}, _writeMembers))


@dataclass(frozen=True, slots=True)
class NodeDown(BusMessage):
    """
    C{node} is gone (its heartbeat expired, or it stopped) and so are its
    C{members}, for C{reason} (C{""}: "disconnected").
    """

    code = "down"

    members: Mapping[str, MemberState] = field(metadata=wire("m", _members, {}, _writeMembers))
    reason: str = field(metadata=wire("y", missing=""))


#: every message type of the protocol
MESSAGES: tuple[type[BusMessage], ...] = (
    RoomMessage,
    PrivateMessage,
    MemberAdded,
    MemberGone,
    MemberJoined,
    MemberParted,
    MemberRenamed,
    TopicSet,
    TokenSaved,
    KickMember,
    OpMember,
    BanAdded,
    BanLifted,
    NodeRegistered,
    NodeDown,
    RoomUpdate,
    PrivateUpdateMessage,
    TypingSet,
    ReadSet,
    MemberShared,
)
_BY_CODE = {cls.code: cls for cls in MESSAGES}


# Encoding and decoding.


def _json(raw: str | bytes) -> object:
    try:
        value: object = json.loads(raw)
    except ValueError as e:
        raise ProtocolError("not JSON: %s" % (e,))
    return value


def encode(message: BusMessage) -> str:
    """
    The JSON text of C{message}.
    """
    body: dict[str, object] = {"t": message.code, "v": VERSION}
    for f in fields(message):
        value = getattr(message, f.name)
        write: Callable[[object], object] | None = f.metadata["write"]
        body[f.metadata["key"]] = value if write is None else write(value)
    return json.dumps(body)


def decode(raw: str | bytes) -> BusMessage | None:
    """
    The message whose JSON text is C{raw}, or None for a type this node
    does not know (a later addition to the protocol: ignored). Raises
    L{NewerVersion} for a message of a later version, L{ProtocolError} for
    anything else it cannot read.
    """
    body = _json(raw)
    if type(body) is not dict:
        raise ProtocolError("not a JSON object: %r" % (body,))
    version = body.get("v", 1)
    if type(version) is not int:
        raise ProtocolError("bad version: %r" % (version,))
    if version > VERSION:
        raise NewerVersion(version)
    code = body.get("t")
    if type(code) is not str:
        raise ProtocolError("no type ('t'): %r" % (body,) if code is None else "not a string: %r" % (code,))
    cls = _BY_CODE.get(code)
    if cls is None:
        return None
    return _build(cls, body)


def decodeAs(raw: str | bytes, cls: type[_M]) -> _M:
    """
    The message whose JSON text is C{raw}, which must be a C{cls}.
    """
    message = decode(raw)
    if not isinstance(message, cls):
        raise ProtocolError("not a %s: %r" % (cls.__name__, raw))
    return message


#: how each field of a message type is read, in order: JSON key, reader
#: (None: a string, checked in place, the commonest case) and the value
#: when the key is missing
_Reader = tuple[str, "Callable[[object], object] | None", object]
_READERS: dict[type[BusMessage], tuple[_Reader, ...]] = {
    cls: tuple(
        (f.metadata["key"], None if f.metadata["read"] is _text else f.metadata["read"], f.metadata["missing"])
        for f in fields(cls)
    )
    for cls in MESSAGES
}
_ABSENT = object()
#: the Python type of each reader's values: with all keys there and all
#: values of these types (the messages nodes send), a message is built in
#: one step (L{_build})
_TYPES: dict[object, type] = {None: str, _integer: int, _number: float, _flag: bool}
_FAST: dict[type[BusMessage], tuple[Callable[[Mapping[str, object]], tuple[object, ...]], tuple[type, ...]]] = {
    cls: (itemgetter(*[key for key, _, _ in readers]), tuple(_TYPES[read] for _, read, _ in readers))
    for cls, readers in _READERS.items()
    if all(read in _TYPES for _, read, _ in readers)
}


def _build(cls: type[_M], body: Mapping[str, object]) -> _M:
    # (every message on the bus goes through here, on every node)
    construct: Callable[..., _M] = cls
    fast = _FAST.get(cls)
    if fast is not None:
        getter, types = fast
        try:
            values = getter(body)
        except KeyError:
            pass
        else:
            if tuple(map(type, values)) == types:
                return construct(*values)
    return _read(cls, body)


def _read(cls: type[_M], body: Mapping[str, object]) -> _M:
    """
    Each field by its reader: conversions, defaults for missing keys, and
    errors that say which key is wrong.
    """
    values: list[object] = []
    for key, read, missing in _READERS[cls]:
        value = body.get(key, _ABSENT)
        if value is _ABSENT:
            if missing is None:
                raise ProtocolError("%s without %r" % (cls.__name__, key))
            values.append(missing)
        elif read is None:
            if type(value) is not str:
                raise ProtocolError("%s %r: not a string: %r" % (cls.__name__, key, value))
            values.append(value)
        else:
            try:
                values.append(read(value))
            except ProtocolError as e:
                raise ProtocolError("%s %r: %s" % (cls.__name__, key, e))
    # (each value was read by its field's own reader, so is of its type)
    construct: Callable[..., _M] = cls
    return construct(*values)


def wireKey(cls: type[BusMessage], name: str) -> str:
    """
    The JSON key of field C{name} of C{cls}.
    """
    for f in fields(cls):
        if f.name == name:
            key: str = f.metadata["key"]
            return key
    raise TypeError("%s has no field %r" % (cls.__name__, name))


def luaTable(cls: type[BusMessage], **values: str) -> str:
    """
    A Lua table constructor for C{cjson.encode} that makes a C{cls}
    message: C{values} gives a Lua expression for each of its fields
    (exactly those), e.g. C{luaTable(MemberGone, node="ARGV[1]",
    key="ARGV[2]")}.
    """
    names = [f.name for f in fields(cls)]
    if sorted(values) != sorted(names):
        raise TypeError(
            "%s needs exactly the fields %s, not %s" % (cls.__name__, ", ".join(names), ", ".join(sorted(values)))
        )
    items = ["t='%s'" % (cls.code,), "v=%d" % (VERSION,)]
    items += ["['%s']=%s" % (wireKey(cls, name), values[name]) for name in names]
    return "{%s}" % (", ".join(items),)
