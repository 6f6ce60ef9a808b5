"""
One person, several devices, on several nodes: a nick's owner connected
through two nodes of a cluster (a phone and a laptop behind a load
balancer) keeps both connections; each gets everything the nick gets;
the cluster shows the nick once and it leaves with its last connection
anywhere. Nodes on a real Redis, as in test_redis.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import History, Joined, Message, Notice, Parted, Presence, Private, ReadMarker

from tests.support.cluster import Node, isMessage, squatting, until
from tests.support.fakes import WaitingClient


async def _aliceOnTwo(a: Node, b: Node) -> tuple[WaitingClient, WaitingClient]:
    """
    alice (owner) on node b, then her other device on node a with her token.
    """
    phone = b.connect("alice")
    token = phone.member.token
    assert token
    await until(lambda: a.chat.broker.remoteNick("alice") == "alice" and "alice" in a.chat.nicks.tokens)
    laptop = a.connect("alice", token=token)
    assert laptop.member.owner
    await until(lambda: b.chat.broker.replica.nodesOf("alice") == ["a"])
    return phone, laptop


async def _inRoom(a: Node, b: Node, c: Node) -> tuple[WaitingClient, WaitingClient, WaitingClient]:
    """
    carol on node c in #r; alice's phone (node b) and laptop (node a) join
    it, in that order, past their histories.
    """
    carol = c.connect("carol")
    carol.member.join("#r")
    await until(lambda: "carol" in b.chat.broker.remoteRoomNicks("#r") and "carol" in a.chat.broker.remoteRoomNicks("#r"))
    phone, laptop = await _aliceOnTwo(a, b)
    phone.member.join("#r")
    await until(lambda: a.chat.broker.remoteInRoom("alice", "#r"))
    laptop.member.join("#r")
    await laptop.waitFor(lambda e: isinstance(e, History))
    await until(lambda: c.chat.broker.replica.nodesOf("alice", "#r") == ["b", "a"])
    return carol, phone, laptop


def _count(client: WaitingClient, kind: type, nick: str) -> int:
    return len([e for e in client.events if isinstance(e, kind) and e.nick == nick])


@pytest_twisted.ensureDeferred
async def test_ownerOnTwoNodes(nodes: Any, redisServer: Any) -> None:
    """
    Both devices stay connected and get the room's messages, each other's
    (own) messages, private messages to and from the nick, and the read
    position; a third node shows the nick once, in the room and its lists.
    """
    a, b, c = await nodes("a"), await nodes("b"), await nodes("c")
    carol = c.connect("carol")
    carol.member.join("#r")
    await until(lambda: "carol" in a.chat.broker.remoteRoomNicks("#r") and "carol" in b.chat.broker.remoteRoomNicks("#r"))
    phone, laptop = await _aliceOnTwo(a, b)
    assert phone.closed == [] and laptop.closed == []
    phone.member.join("#r")
    await carol.waitFor(lambda e: isinstance(e, Joined) and e.nick == "alice")
    await until(lambda: a.chat.broker.remoteInRoom("alice", "#r"))
    laptop.member.join("#r")
    presence = await laptop.waitFor(lambda e: isinstance(e, Presence))
    assert presence.members == ["alice", "carol"]
    await laptop.waitFor(lambda e: isinstance(e, History))
    await until(lambda: c.chat.broker.replica.nodesOf("alice", "#r") == ["b", "a"])
    # the laptop's join is no news to the room
    said = await laptop.member.say("from the laptop")
    await carol.waitFor(isMessage("from the laptop"))
    assert _count(carol, Joined, "alice") == 1
    assert _count(phone, Joined, "alice") == 1  # (its own join only)
    # the phone sees what the laptop said, as her own message
    echo = await phone.waitFor(isMessage("from the laptop"))
    assert (echo.id, echo.sender) == (said.id, "alice")
    await carol.member.say("hi alice")
    await phone.waitFor(isMessage("hi alice"))
    await laptop.waitFor(isMessage("hi alice"))
    # member lists and room lists name her once, on every node
    for node in (a, b, c):
        assert node.chat.roomList() == [("#r", 2)]
    carol.member.who("#r")
    assert isinstance(carol.events[-1], Presence) and carol.events[-1].members == ["alice", "carol"]
    # private messages to her reach both devices; what she sends from one
    # reaches the other
    sent = await carol.member.private("alice", "psst")
    for device in (phone, laptop):
        got = await device.waitFor(lambda e: isinstance(e, Private) and e.text == "psst")
        assert (got.id, got.sender) == (sent.id, "carol")
    mine = await laptop.member.private("carol", "hello back")
    copy = await phone.waitFor(lambda e: isinstance(e, Private) and e.text == "hello back")
    assert (copy.id, copy.sender, copy.recipient) == (mine.id, "alice", "carol")
    await carol.waitFor(lambda e: isinstance(e, Private) and e.text == "hello back")
    assert len([e for e in carol.events if isinstance(e, Private) and e.text == "hello back"]) == 1
    # the read position follows her
    await laptop.member.markRead(said.id, "#r")
    marker = await phone.waitFor(lambda e: isinstance(e, ReadMarker))
    assert (marker.room, marker.id) == ("#r", said.id)
    # she keeps her nick while connected twice
    for device in (phone, laptop):
        with pytest.raises(ChatError) as e:
            device.member.setNick("alicia")
        assert e.value.code == "not-allowed"
    # someone else cannot take it on any node
    for node in (a, b, c):
        with pytest.raises(ChatError) as e:
            node.connect("alice")
        assert e.value.code == "nick-taken"


@pytest_twisted.ensureDeferred
async def test_leavesWithLastConnection(nodes: Any, redisServer: Any) -> None:
    """
    The room sees her leave only when her last connection anywhere does;
    the nick's claim passes to the node that still has her, and is free
    once she is gone from every node.
    """
    a, b, c = await nodes("a"), await nodes("b"), await nodes("c")
    carol, phone, laptop = await _inRoom(a, b, c)
    assert redisServer.command("HGET", "twisted-chat:nicks", "alice", decode=True) == "b"
    # the phone (whose node holds the claim) leaves the room, then the chat
    phone.member.part("#r")
    phone.member.quit()
    await until(lambda: c.chat.broker.replica.nodesOf("alice") == ["a"])
    await laptop.member.say("still here")
    await carol.waitFor(isMessage("still here"))
    assert _count(carol, Parted, "alice") == 0
    assert redisServer.command("HGET", "twisted-chat:nicks", "alice", decode=True) == "a"
    with pytest.raises(ChatError) as e:
        c.connect("alice")
    assert e.value.code == "nick-taken"
    # her last connection goes: the room sees her leave, once; the nick is free
    laptop.member.quit()
    parted = await carol.waitFor(lambda e: isinstance(e, Parted) and e.nick == "alice")
    assert parted.reason == "quit"
    await until(lambda: c.chat.broker.remoteNick("alice") is None)
    assert redisServer.command("HGET", "twisted-chat:nicks", "alice") is None
    c.connect("alice")


@pytest_twisted.ensureDeferred
async def test_nodeDownKeepsTheOtherDevice(nodes: Any, redisServer: Any) -> None:
    """
    The node of one device dies: the other stays connected, the nick stays
    in the room (no part seen) and its claim passes to the surviving node.
    """
    a, b, c = await nodes("a", ttl=1.5), await nodes("b", ttl=1.5), await nodes("c", ttl=1.5)
    carol, phone, laptop = await _inRoom(a, b, c)
    b.crash()
    await until(lambda: c.chat.broker.replica.nodesOf("alice") == ["a"])
    assert laptop.closed == []
    await laptop.member.say("after the crash")
    await carol.waitFor(isMessage("after the crash"))
    assert _count(carol, Parted, "alice") == 0
    assert redisServer.command("HGET", "twisted-chat:nicks", "alice", decode=True) == "a"
    assert c.chat.roomList() == [("#r", 2)]


@pytest_twisted.ensureDeferred
async def test_ownerTakesTheNickFromSomeoneElse(nodes: Any) -> None:
    """
    Someone without the owner's token has her (free) nick on node b; she
    connects on node a with her token: that connection gives way to her.
    """
    a, b = await nodes("a"), await nodes("b")
    squatter, token = await squatting(b, a)
    with pytest.raises(ChatError):
        a.connect("alice")
    owner = a.connect("alice", token=token)
    await until(lambda: bool(squatter.closed))
    assert squatter.closed == ["replaced by a new connection of alice"]
    assert owner.closed == []
    await until(lambda: b.chat.broker.remoteNick("alice") == "alice" and a.chat.broker.remoteNick("alice") is None)
    assert b.chat.lookup("alice") is None


@pytest_twisted.ensureDeferred
async def test_kickAndOpReachEveryDevice(nodes: Any) -> None:
    """
    An operator's kick puts every connection of the nick, on every node,
    out of the room; the room sees it leave once. Operator rights reach
    every connection too.
    """
    a, b, c = await nodes("a"), await nodes("b"), await nodes("c")
    carol, phone, laptop = await _inRoom(a, b, c)
    assert carol.member in c.chat.rooms["#r"].ops  # (the room's first member)
    assert carol.member.giveOp("alice") == "alice"
    for device in (phone, laptop):
        await device.waitFor(lambda e: isinstance(e, Notice) and "operator of #r" in e.text)
    assert carol.member.kick("alice", "enough") == "alice"
    for device in (phone, laptop):
        gone = await device.waitFor(lambda e: isinstance(e, Parted) and e.nick == "alice")
        assert gone.reason == "kicked by carol: enough"
    parted = await carol.waitFor(lambda e: isinstance(e, Parted) and e.nick == "alice")
    assert parted.reason == "kicked by carol: enough"
    await until(lambda: not c.chat.broker.remoteInRoom("alice", "#r"))
    await carol.member.say("after")
    assert _count(carol, Parted, "alice") == 1
    assert "#r" not in phone.member.rooms and "#r" not in laptop.member.rooms


@pytest_twisted.ensureDeferred
async def test_redisBackEmptyKeepsBothDevices(nodes: Any, redisServer: Any) -> None:
    """
    Redis restarts without its data: both nodes announce their members
    again; her two connections share the nick again (neither becomes a
    guest), the room still names her once, and her devices still get
    each other's messages.
    """
    a, b, c = await nodes("a"), await nodes("b"), await nodes("c")
    carol, phone, laptop = await _inRoom(a, b, c)
    redisServer.kill()
    await until(lambda: not any(n.cluster.connected for n in (a, b, c)))
    redisServer.start()
    await until(lambda: all(n.cluster.connected and n.cluster._subscriber is not None
                             and n.cluster._buffer is None for n in (a, b, c)))
    await until(lambda: sorted(c.chat.broker.replica.nodesOf("alice", "#r")) == ["a", "b"])
    assert phone.member.nick == laptop.member.nick == "alice"
    assert phone.closed == [] and laptop.closed == []
    assert redisServer.command("HGET", "twisted-chat:nicks", "alice", decode=True) in ("a", "b")
    await laptop.member.say("after the restart")
    await phone.waitFor(isMessage("after the restart"))
    await carol.waitFor(isMessage("after the restart"))
    assert c.chat.roomList() == [("#r", 2)]
    assert not [e for e in phone.events + laptop.events if isinstance(e, Notice) and "taken" in e.text]


@pytest_twisted.ensureDeferred
async def test_ownerOnANodeThatHasNotHeardOfHerOtherDevice(nodes: Any) -> None:
    """
    Her second device connects through node b before b has heard that
    node a has her nick (the announcement is on its way, or was missed in
    an outage): her token is still proof enough, the nick is shared, and
    neither connection becomes a guest.
    """
    a, b = await nodes("a"), await nodes("b")
    laptop = a.connect("alice")
    await until(lambda: "alice" in b.chat.nicks.tokens)
    b.chat.broker.replica.remove("alice")  # (b has not heard of it)
    phone = b.connect("alice", token=laptop.member.token)
    await until(lambda: a.chat.broker.replica.nodesOf("alice") == ["b"])
    assert phone.member.nick == laptop.member.nick == "alice"
    assert not [e for e in phone.events + laptop.events if isinstance(e, Notice) and "taken" in e.text]
    assert phone.closed == [] and laptop.closed == []
