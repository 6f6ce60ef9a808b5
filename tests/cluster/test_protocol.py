"""
The cluster's bus protocol (twisted_chat.cluster.protocol): every message
in the format nodes of the previous version send and read, its version
field, clear errors for what is not a message, and -- with a real Redis
and two nodes -- that what the Lua scripts and the nodes publish is read
back as the right messages.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from typing import Any

import pytest
import pytest_twisted

from twisted_chat.cluster import protocol
from twisted_chat.cluster.broker import RedisBroker
from twisted_chat.cluster.protocol import (
    VERSION,
    BanAdded,
    BanLifted,
    KickMember,
    MemberAdded,
    MemberGone,
    MemberJoined,
    MemberParted,
    MemberRenamed,
    MemberState,
    NewerVersion,
    NodeDown,
    NodeRegistered,
    OpMember,
    PrivateMessage,
    ProtocolError,
    RoomMessage,
    TokenSaved,
    TopicSet,
    TopicState,
    decode,
    decodeAs,
    encode,
    luaTable,
)
from twisted_chat.cluster.shards import shardOf
from twisted_chat.core.events import Joined, Notice, Parted

from tests.support.cluster import twoInRoom, until

# Each message as the previous version (before the protocol had a version
# field) wrote it -- Lua's cjson for the first four and the last two, Python
# dicts for the others -- with the message it is.
PREVIOUS: list[tuple[dict[str, Any], protocol.BusMessage]] = [
    (
        {"t": "m", "r": "#a", "i": 7, "e": "0badcafe", "n": "alice", "x": "hi", "s": 1700000000.25, "a": False, "o": "n1"},
        RoomMessage(node="n1", room="#a", id=7, epoch="0badcafe", sender="alice", text="hi", time=1700000000.25, action=False),
    ),
    (
        {"t": "p", "i": 3, "n": "alice", "to": "bob", "x": "psst", "s": 1700000000.5, "o": "n1"},
        PrivateMessage(node="n1", id=3, sender="alice", recipient="bob", text="psst", time=1700000000.5),
    ),
    (
        {"t": "on", "o": "n1", "k": "alice", "n": "Alice", "f": "n2"},
        MemberAdded(node="n1", key="alice", nick="Alice", previous="n2"),
    ),
    (
        {"t": "on", "o": "n1", "k": "alice", "n": "Alice", "f": ""},
        MemberAdded(node="n1", key="alice", nick="Alice", previous=""),
    ),
    ({"t": "off", "o": "n1", "k": "alice"}, MemberGone(node="n1", key="alice")),
    (
        {"t": "j", "k": "alice", "n": "Alice", "r": "#a", "s": 1.5, "o": "n1"},
        MemberJoined(node="n1", key="alice", nick="Alice", room="#a", time=1.5),
    ),
    (
        {"t": "l", "k": "alice", "n": "Alice", "r": "#a", "s": 2.0, "y": "left", "o": "n1"},
        MemberParted(node="n1", key="alice", nick="Alice", room="#a", time=2.0, reason="left"),
    ),
    (
        {"t": "nick", "o": "n1", "k": "bob", "nk": "robert", "n": "bob", "nn": "Robert", "s": 3.0},
        MemberRenamed(node="n1", key="bob", newKey="robert", nick="bob", newNick="Robert", time=3.0),
    ),
    (
        {"t": "topic", "o": "n1", "r": "#a", "x": "cluster talk", "n": "alice", "s": 4.0},
        TopicSet(node="n1", room="#a", topic="cluster talk", by="alice", time=4.0),
    ),
    ({"t": "tok", "o": "n1", "k": "alice", "h": "c2hh"}, TokenSaved(node="n1", key="alice", hash="c2hh")),
    (
        {"t": "kick", "y": "enough", "o": "n1", "r": "#a", "n": "bob"},
        KickMember(node="n1", room="#a", nick="bob", reason="enough"),
    ),
    ({"t": "op", "o": "n1", "r": "#a", "n": "bob"}, OpMember(node="n1", room="#a", nick="bob")),
    (
        {"t": "ban", "o": "n1", "r": "#a", "k": "bob", "h": "10.0.0.9", "y": "spam"},
        BanAdded(node="n1", room="#a", key="bob", host="10.0.0.9", reason="spam"),
    ),
    ({"t": "unban", "o": "n1", "r": "#a", "k": "bob"}, BanLifted(node="n1", room="#a", key="bob")),
    (
        {"t": "node", "o": "n2", "m": {"bob": '["Bob", ["#a", "#b"]]'}},
        NodeRegistered(node="n2", members={"bob": MemberState("Bob", ("#a", "#b"))}),
    ),
    (
        {"t": "down", "o": "n2", "m": {"bob": '["Bob", ["#a"]]'}, "y": "server shutting down"},
        NodeDown(node="n2", members={"bob": MemberState("Bob", ("#a",))}, reason="server shutting down"),
    ),
]


#: the message types added since (version 1 still: older nodes ignore them), as sent
ADDED: dict[type[protocol.BusMessage], protocol.BusMessage] = {
    protocol.RoomUpdate: protocol.RoomUpdate(
        node="n1", room="#a", id=8, epoch="0badcafe", sender="bob", op="react", target=7, text="", time=2.5,
        emoji="+1", on=True, original="hi", author="alice",
    ),
    protocol.PrivateUpdateMessage: protocol.PrivateUpdateMessage(
        node="n1", id=4, sender="alice", recipient="bob", op="edit", target=3, text="psst!", time=3.5, emoji="",
        on=True,
    ),
    protocol.TypingSet: protocol.TypingSet(node="n1", room="#a", nick="bob", state="active"),
    protocol.ReadSet: protocol.ReadSet(node="n1", nick="bob", room="#a", id=8),
    protocol.MemberShared: protocol.MemberShared(node="n1", key="bob", nick="Bob"),
}


@pytest.mark.parametrize("message", list(ADDED.values()), ids=[cls.code for cls in ADDED])
def test_addedTypesRoundTrip(message: protocol.BusMessage) -> None:
    """
    The message types added for issue #19 are read back as sent; a node of
    the previous version skips them (an unknown type, see decode).
    """
    assert decode(encode(message)) == message


@pytest.mark.parametrize("body, message", PREVIOUS, ids=[body["t"] + str(i) for i, (body, _) in enumerate(PREVIOUS)])
def test_previousVersionIsRead(body: dict[str, Any], message: protocol.BusMessage) -> None:
    """
    A node reads what a node of the previous version sends (no version
    field: version 1).
    """
    assert decode(json.dumps(body)) == message


@pytest.mark.parametrize("body, message", PREVIOUS, ids=[body["t"] + str(i) for i, (body, _) in enumerate(PREVIOUS)])
def test_previousVersionReadsWhatIsSent(body: dict[str, Any], message: protocol.BusMessage) -> None:
    """
    What a node sends has the keys and values the previous version reads,
    and a version field besides (which that version never looks at).
    """
    sent = json.loads(encode(message))
    # (the keys added since, which that version ignores: a reply's id and
    # the mentions of a message)
    added = {"m": {"rt", "mn"}, "p": {"rt"}}.get(body["t"], set())
    assert {k: v for k, v in sent.items() if k not in added} == {**body, "v": VERSION}
    assert decode(encode(message)) == message


def test_everyTypeHasAHandler() -> None:
    """
    Every message type is handled by the broker (C{on_<class name>}), and
    every C{on_} method of the broker handles a message type.
    """
    assert {type(message) for _, message in PREVIOUS} | set(ADDED) == set(protocol.MESSAGES)
    handlers = {name for name in dir(RedisBroker) if name.startswith("on_")}
    assert handlers == {"on_" + cls.__name__ for cls in protocol.MESSAGES}


def test_missingKeysWithADefault() -> None:
    """
    A claim without its previous holder, a node without members, a down
    node without a reason: read with their defaults; an empty Lua table
    (which cjson writes as a list) is no members.
    """
    assert decode('{"t": "on", "o": "n1", "k": "a", "n": "A"}') == MemberAdded(node="n1", key="a", nick="A", previous="")
    assert decode('{"t": "node", "o": "n1"}') == NodeRegistered(node="n1", members={})
    assert decode('{"t": "node", "o": "n1", "m": []}') == NodeRegistered(node="n1", members={})
    assert decode('{"t": "down", "o": "n1", "m": {}}') == NodeDown(node="n1", members={}, reason="")


def test_numbersAsLuaWritesThem() -> None:
    """
    Lua's cjson writes an integral number as an integer (a time of a whole
    second) and may write an id as a float: read as their fields' types.
    """
    message = decode('{"t": "m", "r": "#a", "i": 7.0, "e": "x", "n": "a", "x": "hi", "s": 1700000000, "a": true, "o": "n"}')
    assert isinstance(message, RoomMessage)
    assert (message.id, message.time, message.action) == (7, 1700000000.0, True)
    assert (type(message.id), type(message.time)) == (int, float)


def test_laterAdditionsAreIgnored() -> None:
    """
    A message type this node does not know is ignored, and so is a key it
    does not know (what a later version of the same protocol may add).
    """
    assert decode('{"t": "shard", "v": 1, "o": "n9"}') is None
    assert decode('{"t": "off", "v": 1, "o": "n1", "k": "a", "z": [1, 2]}') == MemberGone(node="n1", key="a")


def test_newerVersionIsRefused() -> None:
    with pytest.raises(NewerVersion) as e:
        decode('{"t": "off", "v": %d, "o": "n1", "k": "a"}' % (VERSION + 1,))
    assert e.value.version == VERSION + 1
    assert str(e.value) == "protocol version %d (this node speaks %d)" % (VERSION + 1, VERSION)


@pytest.mark.parametrize(
    "raw, why",
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"o": "n1"}', "no type ('t')"),
        ('{"t": 5}', "not a string: 5"),
        ('{"t": "off", "v": "1", "o": "n1", "k": "a"}', "bad version: '1'"),
        ('{"t": "off", "o": "n1"}', "MemberGone without 'k'"),
        ('{"t": "m", "r": "#a", "i": "7", "e": "x", "n": "a", "x": "hi", "s": 1, "a": false, "o": "n"}',
         "RoomMessage 'i': not an integer: '7'"),
        ('{"t": "m", "r": "#a", "i": 7.5, "e": "x", "n": "a", "x": "hi", "s": 1, "a": false, "o": "n"}',
         "RoomMessage 'i': not an integer: 7.5"),
        ('{"t": "m", "r": "#a", "i": 7, "e": "x", "n": "a", "x": "hi", "s": true, "a": false, "o": "n"}',
         "RoomMessage 's': not a number: True"),
        ('{"t": "m", "r": "#a", "i": 7, "e": "x", "n": "a", "x": "hi", "s": 1, "a": 0, "o": "n"}',
         "RoomMessage 'a': not a boolean: 0"),
        ('{"t": "down", "o": "n1", "m": {"bob": "[\\"Bob\\"]"}}', "NodeDown 'm': not a member's state"),
        ('{"t": "node", "o": "n1", "m": "everyone"}', "NodeRegistered 'm': not a map of members: 'everyone'"),
    ],
)
def test_badMessagesSayWhatIsWrong(raw: str, why: str) -> None:
    with pytest.raises(ProtocolError) as e:
        decode(raw)
    assert str(e.value).startswith(why)
    assert "\n" not in str(e.value)


def test_decodeAs() -> None:
    """
    What a stream or a storing script gives back must be of the type asked.
    """
    body, message = PREVIOUS[0]
    assert decodeAs(json.dumps(body), RoomMessage) == message
    with pytest.raises(ProtocolError, match="not a PrivateMessage"):
        decodeAs(json.dumps(body), PrivateMessage)


def test_states() -> None:
    """
    The members and topics hashes keep JSON pairs, as before.
    """
    assert MemberState("Bob", ("#a", "#b")).encode() == '["Bob", ["#a", "#b"]]'
    assert MemberState.decode('["Bob", []]') == MemberState("Bob", ())
    assert TopicState("cluster talk", "alice").encode() == '["cluster talk", "alice"]'
    assert TopicState.decode('["", "alice"]') == TopicState("", "alice")
    with pytest.raises(ProtocolError):
        TopicState.decode('["only"]')


def test_luaTable() -> None:
    """
    A script's body names every field of its message, and nothing else.
    """
    assert luaTable(MemberGone, node="ARGV[1]", key="ARGV[2]") == "{t='off', v=%d, ['o']=ARGV[1], ['k']=ARGV[2]}" % VERSION
    with pytest.raises(TypeError, match="MemberGone needs exactly the fields node, key"):
        luaTable(MemberGone, node="ARGV[1]")
    with pytest.raises(TypeError):
        luaTable(MemberGone, node="ARGV[1]", key="ARGV[2]", nick="ARGV[3]")


class _BusSpy:
    """
    A blocking connection to Redis subscribed to every channel of the
    cluster; what was published is read at the end (Redis keeps it in the
    connection meanwhile), up to a last message of the spy's own.
    """

    def __init__(self, server: Any) -> None:
        from tests.support.daemon import encodeCommand, RESPReader

        self._encode = encodeCommand
        self.sock = socket.create_connection((server.host, server.port), timeout=10)
        self.reader = RESPReader(self.sock, decode=True)
        self.sock.sendall(encodeCommand(("PSUBSCRIBE", "twisted-chat:*")))
        assert self.reader.reply() == ["psubscribe", "twisted-chat:*", 1]
        self.server = server

    def published(self) -> list[tuple[str, str]]:
        """
        (channel, message) of everything published so far.
        """
        self.server.command("PUBLISH", "twisted-chat:spy", "end")
        out: list[tuple[str, str]] = []
        while True:
            reply = self.reader.reply()
            assert isinstance(reply, list) and reply[0] == "pmessage"
            channel, message = reply[2], reply[3]
            if channel == "twisted-chat:spy":
                self.sock.close()
                return out
            out.append((channel, message))


@pytest_twisted.ensureDeferred
async def test_everythingPublishedIsAMessage(nodes: Any, redisServer: Any) -> None:
    """
    Two nodes go through every kind of event: whatever they and their
    scripts publish is a message of this protocol, with its version, and
    every message type is among them, with the values of the event.
    """
    spy = _BusSpy(redisServer)
    a, b = await nodes("a"), await nodes("b")
    alice, bob = await twoInRoom(a, b, "#all")
    await alice.member.say("hi")
    psst = await alice.member.private("bob", "psst")
    await alice.member.edit(1, "hi!")
    await bob.member.react(1, "+1")
    await alice.member.updatePrivate(psst.id, "edit", text="psst!")
    bob.member.typing("active")
    await bob.member.markRead(2)
    alice.member.setTopic("cluster talk")
    bob.member.setNick("robert")
    await until(lambda: a.chat.broker.remoteNick("robert") == "robert")
    alice.member.giveOp("robert")
    await bob.waitFor(lambda e: isinstance(e, Notice) and "operator of #all" in e.text)
    alice.member.kick("robert", "enough")
    await alice.waitFor(lambda e: isinstance(e, Parted) and e.nick == "robert")
    alice.member.ban("robert", "spam")
    await until(lambda: "robert" in b.chat.broker.bansOf("#all"))
    alice.member.unban("robert")
    await until(lambda: "robert" not in b.chat.broker.bansOf("#all"))
    carol = b.connect("carol")
    await until(lambda: a.chat.broker.remoteNick("carol") == "carol" and "carol" in a.chat.nicks.tokens)
    carolToo = a.connect("carol", token=carol.member.token)  # (her other device)
    await until(lambda: b.chat.broker.replica.nodesOf("carol") == ["a"])
    carolToo.member.quit()
    carol.member.quit()
    await until(lambda: a.chat.broker.remoteNick("carol") is None)
    bob.member.join("#all")
    await until(lambda: len([e for e in alice.of(Joined) if e.nick == "robert"]) == 1)
    await b.stop()

    published = spy.published()
    seen: dict[type, list[protocol.BusMessage]] = {}
    for channel, raw in published:
        message = decode(raw)
        assert message is not None, raw
        assert json.loads(raw)["v"] == VERSION
        toNode = (PrivateMessage, protocol.PrivateUpdateMessage, KickMember, OpMember)
        expected = "twisted-chat:node:b" if isinstance(message, toNode) else "twisted-chat:bus"
        if isinstance(message, (RoomMessage, protocol.RoomUpdate)):
            # (on the channel of its room's shard: see cluster.shards)
            expected = "twisted-chat:bus:%d" % (shardOf(message.room, a.cluster.broker.shards.count),)
        assert channel == expected, raw
        seen.setdefault(type(message), []).append(message)
    assert set(seen) == set(protocol.MESSAGES)
    said = seen[RoomMessage][0]
    assert isinstance(said, RoomMessage)
    assert (said.node, said.room, said.id, said.sender, said.text, said.action) == ("a", "#all", 1, "alice", "hi", False)
    assert said.epoch == a.cluster.store.epoch
    [private] = seen[PrivateMessage]
    assert isinstance(private, PrivateMessage)
    assert (private.node, private.sender, private.recipient, private.text) == ("a", "alice", "bob", "psst")
    claims = {(m.node, m.nick, m.previous) for m in seen[MemberAdded] if isinstance(m, MemberAdded)}
    assert {("a", "alice", ""), ("b", "bob", ""), ("b", "carol", "")} <= claims
    assert seen[protocol.MemberShared] == [protocol.MemberShared(node="a", key="carol", nick="carol")]
    [down] = seen[NodeDown]
    assert isinstance(down, NodeDown)
    assert (down.node, down.members, down.reason) == ("b", {"robert": MemberState("robert", ("#all",))}, "server shutting down")
    # (and what the room's stream keeps is the message published)
    stored, edit, react = redisServer.command("XRANGE", "twisted-chat:h:#all", "-", "+", decode=True)
    assert decodeAs(stored[1][1], RoomMessage) == said
    # the updates: entries of the room's sequence, published with the start
    # of the text before them and its author, stored without
    edited, reacted = seen[protocol.RoomUpdate]
    assert isinstance(edited, protocol.RoomUpdate) and isinstance(reacted, protocol.RoomUpdate)
    assert (edited.id, edited.op, edited.target, edited.text, edited.original, edited.author) == (
        2, "edit", 1, "hi!", "hi", "alice"
    )
    assert (reacted.id, reacted.op, reacted.target, reacted.emoji, reacted.on, reacted.sender) == (
        3, "react", 1, "+1", True, "bob"
    )
    assert decodeAs(edit[1][1], protocol.RoomUpdate) == dataclasses.replace(edited, original="", author="")
    assert decodeAs(react[1][1], protocol.RoomUpdate).id == 3
    [typing] = seen[protocol.TypingSet]
    assert typing == protocol.TypingSet(node="b", room="#all", nick="bob", state="active")
    [read] = seen[protocol.ReadSet]
    assert read == protocol.ReadSet(node="b", nick="bob", room="#all", id=2)
    [privateEdit] = seen[protocol.PrivateUpdateMessage]
    assert isinstance(privateEdit, protocol.PrivateUpdateMessage)
    assert (privateEdit.target, privateEdit.text, privateEdit.sender, privateEdit.recipient) == (
        private.id, "psst!", "alice", "bob"
    )

