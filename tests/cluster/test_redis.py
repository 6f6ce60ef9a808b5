"""
Scale-out through a real Redis: several chat services (nodes) in this
process, each with its own Redis connections, sharing rooms, history,
presence and resume. End-to-end tests with daemons are in
tests/e2e/test_e2e_cluster.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import pytest_twisted
from twisted.logger import capturedLogs, formatEvent

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import (
    EpochChanged,
    History,
    Joined,
    Message,
    Notice,
    Parted,
    Presence,
    Private,
    ReadMarker,
    SearchResults,
    TopicChanged,
    Typing,
    Update,
)
from twisted_chat.cluster.redis import RedisCluster, checkRedis, parseRedisURL

from tests.support.cluster import Node, isMessage, twoInRoom, until
from tests.support.fakes import WaitingClient


def test_parseURL() -> None:
    u = parseRedisURL("redis://:s3cret@10.0.0.5:6380/2?prefix=chat1")
    assert (u.host, u.port, u.db, u.password, u.username, u.tls, u.prefix) == (
        "10.0.0.5", 6380, 2, "s3cret", None, False, "chat1",
    )
    assert u.display() == "redis://10.0.0.5:6380/2"
    d = parseRedisURL("rediss://user:pw@redis.example")
    assert (d.port, d.db, d.tls, d.username, d.prefix) == (6379, 0, True, "user", "twisted-chat")
    for bad in ["http://x", "redis://", "redis://h/x", "redis://h:99999", "redis://h/0?pool=3", "redis://h?ca=/etc/hosts",
                "rediss://h?ca=/no/such/file"]:
        with pytest.raises(ValueError) as e:
            parseRedisURL(bad)
        assert "\n" not in str(e.value)


def test_checkRedis(redisServer: Any) -> None:
    checkRedis(parseRedisURL(redisServer.url))
    redisServer.stop()
    with pytest.raises(ValueError, match="cannot reach Redis at redis://127.0.0.1:%d/0" % redisServer.port):
        checkRedis(parseRedisURL(redisServer.url))


def test_checkRedisPassword(redisServerFactory: Any) -> None:
    server = redisServerFactory(password="pw")
    checkRedis(parseRedisURL(server.url))
    with pytest.raises(ValueError, match="refused"):
        checkRedis(parseRedisURL("redis://:wrong@127.0.0.1:%d/0" % server.port))


@pytest_twisted.ensureDeferred
async def test_roomAcrossNodes(nodes: Any) -> None:
    """
    Members on two nodes share a room: presence, join notices, messages in
    the same order with the same ids, the sender's echo before its ack.
    """
    a, b = await nodes("a"), await nodes("b")
    alice = a.connect("alice")
    alice.member.join("#room")
    bob = b.connect("bob")
    # b learns of alice's join through the bus
    await until(lambda: "alice" in b.chat.broker.remoteRoomNicks("#room"))
    bob.member.join("#room")
    presence = await bob.waitFor(lambda e: isinstance(e, Presence))
    assert presence.members == ["alice", "bob"]
    joined = await alice.waitFor(lambda e: isinstance(e, Joined) and e.nick == "bob")
    assert joined.room == "#room"
    await bob.waitFor(lambda e: isinstance(e, History))
    sent = await alice.member.say("hello from a")
    assert alice.of(Message)[-1].id == sent.id  # echo before the acknowledgement
    got = await bob.waitFor(isMessage("hello from a"))
    assert (got.id, got.sender, got.epoch) == (sent.id, "alice", sent.epoch)
    second = await bob.member.say("hello from b")
    assert second.id == sent.id + 1
    await alice.waitFor(isMessage("hello from b"))
    assert [m.text for m in alice.of(Message)] == [m.text for m in bob.of(Message)] == ["hello from a", "hello from b"]
    # the nick is taken on the other node too
    with pytest.raises(ChatError) as e:
        a.connect("bob")
    assert e.value.code == "nick-taken"
    # lists and rooms count members on every node
    assert a.chat.roomList() == [("#room", 2)]
    bob.member.part("#room")
    parted = await alice.waitFor(lambda e: isinstance(e, Parted) and e.nick == "bob")
    assert parted.reason == "left"


@pytest_twisted.ensureDeferred
async def test_historyAndResumeAcrossNodes(nodes: Any) -> None:
    a, b = await nodes("a"), await nodes("b")
    alice = a.connect("alice")
    alice.member.join("#h")
    await alice.waitFor(lambda e: isinstance(e, History))
    first = await alice.member.say("one")
    await alice.member.say("two")
    await alice.member.say("three")
    # a client that saw "one" on node a resumes on node b
    carol = b.connect("carol")
    carol.member.join("#h", since=(first.epoch, first.id))
    history = await carol.waitFor(lambda e: isinstance(e, History))
    assert history.recovered is True
    assert [m.text for m in history.messages] == ["two", "three"]
    # a plain join gets the recent history; an unknown epoch is refused
    dave = b.connect("dave")
    dave.member.join("#h", since=("other", 2))
    history = await dave.waitFor(lambda e: isinstance(e, History))
    assert (history.recovered, history.reason) == (False, "epoch")
    assert [m.text for m in history.messages] == ["one", "two", "three"]
    # paging with before=
    dave.member.history("#h", limit=1, before=3)
    page = await dave.waitFor(lambda e: isinstance(e, History) and not e.onJoin)
    assert [m.text for m in page.messages] == ["two"]


@pytest_twisted.ensureDeferred
async def test_idempotentAcrossNodes(nodes: Any) -> None:
    """
    A message resent with the same ref through another node is not stored
    twice: the first one comes back.
    """
    a, b = await nodes("a"), await nodes("b")
    alice = a.connect("alice")
    alice.member.join("#r")
    first = await alice.member.say("once", ref="r1")
    alice.member.quit()
    await until(lambda: b.chat.broker.remoteNick("alice") is None)
    again = b.connect("alice")
    again.member.join("#r")
    second = await again.member.say("once", ref="r1")
    assert second.id == first.id
    history = await again.waitFor(lambda e: isinstance(e, History))
    assert [m.text for m in history.messages] == ["once"]


@pytest_twisted.ensureDeferred
async def test_privateAcrossNodes(nodes: Any) -> None:
    a, b = await nodes("a"), await nodes("b")
    alice = a.connect("alice")
    bob = b.connect("bob")
    await until(lambda: a.chat.broker.remoteNick("bob") == "bob")
    sent = await alice.member.private("bob", "psst")
    got = await bob.waitFor(lambda e: isinstance(e, Private))
    assert (got.id, got.sender, got.recipient, got.text) == (sent.id, "alice", "bob", "psst")
    assert alice.of(Private)[-1].text == "psst"
    # bob's private history, asked on node b, has it
    assert bob.member.owner
    bob.member.privateHistory()
    history = await bob.waitFor(lambda e: type(e).__name__ == "PrivateHistory")
    assert [p.text for p in history.messages] == ["psst"]


@pytest_twisted.ensureDeferred
async def test_nickChangeAndTopicAcrossNodes(nodes: Any) -> None:
    a, b = await nodes("a"), await nodes("b")
    alice, bob = await twoInRoom(a, b, "#t")
    # alice created the room: she is its operator; bob, joining an existing
    # room through another node, is not
    alice.member.setTopic("cluster talk")
    topic = await bob.waitFor(lambda e: isinstance(e, TopicChanged))
    assert (topic.topic, topic.by) == ("cluster talk", "alice")
    with pytest.raises(ChatError):
        bob.member.setTopic("mine")
    bob.member.setNick("robert")
    changed = await alice.waitFor(lambda e: type(e).__name__ == "NickChanged")
    assert (changed.old, changed.new, changed.rooms) == ("bob", "robert", ("#t",))
    await until(lambda: a.chat.broker.remoteNick("bob") is None)
    a.connect("bob")  # free again
    # a newcomer on a third node sees the topic
    c = await nodes("c")
    carol = c.connect("carol")
    carol.member.join("#t")
    topic = await carol.waitFor(lambda e: isinstance(e, TopicChanged))
    assert topic.topic == "cluster talk"
    presence = carol.of(Presence)[0]
    assert presence.members == ["alice", "carol", "robert"]
    # an operator kicks a member of another node
    alice.member.kick("robert", "enough")
    parted = await alice.waitFor(lambda e: isinstance(e, Parted) and e.nick == "robert")
    assert parted.reason == "kicked by alice: enough"
    assert "#t" not in bob.member.rooms


@pytest_twisted.ensureDeferred
async def test_deadNodeExpires(nodes: Any) -> None:
    """
    A node that dies without a word: once its heartbeat expires its members
    leave, announced once to each member elsewhere, and its nicks are free.
    """
    a, b, c = await nodes("a", ttl=1.5), await nodes("b", ttl=1.5), await nodes("c", ttl=1.5)
    alice = a.connect("alice")
    alice.member.join("#x")
    carol = c.connect("carol")
    carol.member.join("#x")
    bob = b.connect("bob")
    await until(lambda: "carol" in b.chat.broker.remoteRoomNicks("#x"))
    bob.member.join("#x")
    await alice.waitFor(lambda e: isinstance(e, Joined) and e.nick == "bob")
    await carol.waitFor(lambda e: isinstance(e, Joined) and e.nick == "bob")
    b.crash()
    parted = await alice.waitFor(lambda e: isinstance(e, Parted) and e.nick == "bob")
    assert parted.reason == "disconnected"
    await carol.waitFor(lambda e: isinstance(e, Parted) and e.nick == "bob")
    assert len([e for e in alice.events if isinstance(e, Parted) and e.nick == "bob"]) == 1
    assert a.chat.roomList() == [("#x", 2)]
    a.connect("bob")


@pytest_twisted.ensureDeferred
async def test_ownerReconnectsWhileDeadNodeHoldsNick(nodes: Any, redisServer: Any) -> None:
    """
    The owner of a nick whose node died reconnects elsewhere with its token
    at once, without waiting for the heartbeat to expire (the dead node's
    stale connection is one more device of hers until then); the claim is
    hers once the dead node is reaped.
    """
    a, b = await nodes("a", ttl=1.5), await nodes("b", ttl=1.5)
    first = b.connect("alice")
    token = first.member.token
    assert token
    await until(lambda: a.chat.broker.remoteNick("alice") == "alice" and "alice" in a.chat.nicks.tokens)
    b.crash()
    with pytest.raises(ChatError):
        a.connect("alice")
    again = a.connect("alice", token=token)
    assert again.member.owner
    await until(lambda: a.chat.broker.remoteNick("alice") is None)
    assert redisServer.command("HGET", "twisted-chat:nicks", "alice", decode=True) == "a"
    assert again.closed == []


@pytest_twisted.ensureDeferred
async def test_redisRestart(nodes: Any, redisServerFactory: Any) -> None:
    """
    Redis restarts (with its append-only file): nodes reconnect, members
    stay connected, a message said (or a kick across nodes) during the
    outage is refused (never silently dropped), and messages published while a node was away are
    delivered once it is back, in order.
    """
    server = redisServerFactory(persistent=True)
    a = await Node(server.url, "a").start()
    b = await Node(server.url, "b").start()
    try:
        alice, bob = await twoInRoom(a, b, "#r")
        await alice.member.say("before")
        await bob.waitFor(isMessage("before"))
        server.stop()
        await until(lambda: not a.cluster.connected and not b.cluster.connected)
        with pytest.raises(ChatError) as e:
            await alice.member.say("during")
        assert e.value.code == "unavailable"
        # a kick of a member of the other node says why it failed, and that
        # the store has nothing to do with it
        with pytest.raises(ChatError) as e:
            alice.member.kick("bob")
        assert e.value.code == "unavailable"
        assert "cannot reach bob on another node" in e.value.message and "store" not in e.value.message
        server.start()
        await until(lambda: a.cluster.connected and b.cluster.connected and a.cluster._subscriber is not None
                     and b.cluster._subscriber is not None and a.cluster._buffer is None and b.cluster._buffer is None)
        after = await alice.member.say("after")
        got = await bob.waitFor(isMessage("after"))
        assert got.id == after.id
        assert [m.text for m in bob.of(Message)] == ["before", "after"]
        assert not alice.closed and not bob.closed
        assert b.chat.lookup("bob") is bob.member
        assert "bob" in a.chat.broker.remoteRoomNicks("#r")
    finally:
        await a.stop()
        await b.stop()


async def _saysAfterReset(alice: WaitingClient, bob: WaitingClient, before: list[Message]) -> None:
    """
    Redis lost everything under alice (node a) and bob (node b): both are
    told, once per room, and what alice says next reaches both live, once,
    in order, with ids from 1 in the new epoch.
    """
    old = before[-1].epoch
    for client in (alice, bob):
        told = await client.waitFor(lambda e: isinstance(e, EpochChanged))
        assert (told.room, told.previous) == ("#r", old) and told.epoch != old
    acks = [await alice.member.say("after %d" % (i,)) for i in range(1, 6)]
    epoch = acks[0].epoch
    assert epoch != old and [m.id for m in acks] == [1, 2, 3, 4, 5]
    assert {m.epoch for m in acks} == {epoch}
    await bob.waitFor(isMessage("after 5"))
    for client in (alice, bob):
        seen = [(m.epoch, m.id, m.text) for m in client.of(Message)]
        assert seen == [(old, m.id, m.text) for m in before] + [(epoch, i, "after %d" % (i,)) for i in range(1, 6)]
        # told before the first message of the new epoch
        kinds = [e.kind for e in client.events if e.kind in ("epoch", "message")]
        assert kinds == ["message"] * len(before) + ["epoch"] + ["message"] * 5
        assert not client.closed


@pytest_twisted.ensureDeferred
async def test_redisBackEmpty(nodes: Any, redisServer: Any) -> None:
    """
    Redis restarts without its data (no persistence, or a failover to an
    empty replica): ids start again at 1 in a new epoch. Members are told
    so, and every message acknowledged afterwards reaches everyone live,
    the sender included, although its id is below the last one delivered
    before the restart.
    """
    a, b = await nodes("a"), await nodes("b")
    alice, bob = await twoInRoom(a, b, "#r")
    before = [await alice.member.say("before %d" % (i,)) for i in range(1, 4)]
    await bob.waitFor(isMessage("before 3"))
    redisServer.kill()
    await until(lambda: not a.cluster.connected and not b.cluster.connected)
    redisServer.start()
    await until(lambda: all(n.cluster.connected and n.cluster._subscriber is not None
                             and n.cluster._buffer is None for n in (a, b)))
    await _saysAfterReset(alice, bob, before)


@pytest_twisted.ensureDeferred
async def test_redisFlushedUnderNodes(nodes: Any, redisServer: Any) -> None:
    """
    Redis loses its data without dropping a connection (FLUSHALL, say):
    the nodes notice the new epoch on the first message that carries it,
    the sender's own acknowledgement included, and start the room over.
    """
    a, b = await nodes("a"), await nodes("b")
    alice, bob = await twoInRoom(a, b, "#r")
    before = [await alice.member.say("before %d" % (i,)) for i in range(1, 4)]
    await bob.waitFor(isMessage("before 3"))
    redisServer.command("FLUSHALL")
    # (nobody can be told before a message shows the new epoch)
    first = await alice.member.say("after 1")
    assert first.id == 1 and first.epoch != before[-1].epoch
    rest = [await alice.member.say("after %d" % (i,)) for i in range(2, 6)]
    await bob.waitFor(isMessage("after 5"))
    for client in (alice, bob):
        seen = [(m.epoch, m.id, m.text) for m in client.of(Message)]
        assert seen == [(m.epoch, m.id, m.text) for m in before + [first] + rest]
        assert [(e.previous, e.epoch) for e in client.of(EpochChanged)] == [(before[-1].epoch, first.epoch)]


@pytest_twisted.ensureDeferred
async def test_gapIsFilledFromHistory(nodes: Any) -> None:
    """
    Messages a node missed on the bus (its subscription was down) are
    delivered from the stream, before anything newer, exactly once.
    """
    a, b = await nodes("a"), await nodes("b")
    alice, bob = await twoInRoom(a, b, "#g")
    await alice.member.say("m1")
    await bob.waitFor(isMessage("m1"))
    # b's subscription drops; two messages go by; it comes back
    sub = b.cluster._subscriber
    sub.transport.loseConnection()
    await until(lambda: b.cluster._subscriber is None)
    await alice.member.say("m2")
    await alice.member.say("m3")
    await until(lambda: b.cluster._subscriber is not None and b.cluster._buffer is None)
    await bob.waitFor(isMessage("m3"))
    await alice.member.say("m4")
    await bob.waitFor(isMessage("m4"))
    assert [m.text for m in bob.of(Message)] == ["m1", "m2", "m3", "m4"]
    assert [m.id for m in bob.of(Message)] == [1, 2, 3, 4]


@pytest_twisted.ensureDeferred
async def test_noticeOfCollision(nodes: Any) -> None:
    """
    Two nodes give the same nick at the same moment: one keeps it, the
    other member becomes a guest and is told why.
    """
    a, b = await nodes("a"), await nodes("b")
    x = a.connect("zed")
    y = b.connect("zed")  # neither node has heard of the other's yet
    await until(lambda: x.member.nick != "zed" or y.member.nick != "zed")
    loser = x if x.member.nick != "zed" else y
    assert loser.member.nick.startswith("guest-")
    assert any(isinstance(e, Notice) and "taken on another server" in e.text for e in loser.events)


@pytest_twisted.ensureDeferred
async def test_overTLS(redisServerFactory: Any, tmp_path: Any) -> None:
    """
    rediss:// with ca=: the probe and both connections of a node speak TLS
    to Redis, checking its certificate against that file.
    """
    import socket

    from tests.support.tls import writeSelfSignedCertificate

    cert, key = writeSelfSignedCertificate(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        tlsPort = s.getsockname()[1]
    server = redisServerFactory(
        extraArgs=("--tls-port", str(tlsPort), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                   "--tls-auth-clients", "no")
    )
    url = "rediss://127.0.0.1:%d/0?ca=%s" % (tlsPort, cert)
    checkRedis(parseRedisURL(url))
    with pytest.raises(ValueError):
        # (the system's trust store does not know this certificate)
        checkRedis(parseRedisURL("rediss://127.0.0.1:%d/0" % (tlsPort,)))
    a = await Node(url, "a").start()
    b = await Node(server.url, "b").start()  # plain TCP to the same Redis
    try:
        alice, bob = await twoInRoom(a, b, "#tls")
        await alice.member.say("over tls")
        await bob.waitFor(isMessage("over tls"))
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_banAndOpAcrossNodes(nodes: Any) -> None:
    """
    A ban given on one node holds on every node (also one where the room
    has no members yet, and for nodes that start later); an operator can
    make a member of another node an operator.
    """
    a, b = await nodes("a"), await nodes("b")
    alice, bob = await twoInRoom(a, b, "#mod")
    alice.member.ban("bob", "spam")
    parted = await alice.waitFor(lambda e: isinstance(e, Parted) and e.nick == "bob")
    assert parted.reason == "banned by alice: spam"
    assert "#mod" not in bob.member.rooms
    with pytest.raises(ChatError) as e:
        bob.member.join("#mod")
    assert e.value.code == "banned"
    c = await nodes("c")
    bob.member.quit()
    await until(lambda: c.chat.broker.remoteNick("bob") is None)
    again = c.connect("bob")
    with pytest.raises(ChatError) as e:
        again.member.join("#mod")
    assert e.value.code == "banned"
    # an address banned on a: refused on c, where the room has no member yet
    alice.member.ban("10.9.9.9")
    await until(lambda: "10.9.9.9" in c.chat.broker.bansOf("#mod"))
    with pytest.raises(ChatError) as e:
        c.connect("dave", host="10.9.9.9").member.join("#mod")
    assert e.value.code == "banned"
    assert "#mod" not in c.chat.rooms
    alice.member.unban("bob")
    await until(lambda: "bob" not in c.chat.broker.bansOf("#mod"))
    again.member.join("#mod")
    await until(lambda: len([e for e in alice.of(Joined) if e.nick == "bob"]) == 2)
    # bob (on c) is not an operator; alice (on a) makes him one
    with pytest.raises(ChatError):
        again.member.setTopic("bob's room")
    alice.member.giveOp("bob")
    await again.waitFor(lambda e: isinstance(e, Notice) and "operator of #mod" in e.text)
    again.member.setTopic("bob's room")
    topic = await alice.waitFor(lambda e: isinstance(e, TopicChanged))
    assert topic.topic == "bob's room"


@pytest_twisted.ensureDeferred
async def test_nodeThatWasThoughtDeadComesBack(nodes: Any, redisServer: Any) -> None:
    """
    A node whose heartbeat expired (a stalled process) is reaped by the
    others; at its next heartbeat it notices and announces its members
    again, who are then back in every replica.
    """
    a, b = await nodes("a", ttl=1.5), await nodes("b", ttl=1.5)
    alice, bob = await twoInRoom(a, b, "#z")
    redisServer.command("DEL", "twisted-chat:alive:b")
    await alice.waitFor(lambda e: isinstance(e, Parted) and e.nick == "bob")
    await until(lambda: a.chat.broker.remoteNick("bob") == "bob" and "bob" in a.chat.broker.remoteRoomNicks("#z"))
    assert redisServer.command("HGET", "twisted-chat:nicks", "bob") == b"b"
    with pytest.raises(ChatError):
        a.connect("bob")


@pytest_twisted.ensureDeferred
async def test_busyNodeIsNotThoughtDead(nodes: Any, redisServer: Any) -> None:
    """
    A node whose commands wait far longer than its heartbeat's TTL (here:
    behind a blocking command on its command connection, as behind the
    commands of a burst of connections) stays alive for the others: its
    heartbeat has a connection of its own. Its members do not leave.
    """
    a, b = await nodes("a", ttl=1.0), await nodes("b", ttl=1.0)
    alice, bob = await twoInRoom(a, b, "#busy")
    assert a.cluster.redis.connection is not None
    with capturedLogs() as events:
        # (everything a sends on its command connection now waits 3 s)
        blocked = a.cluster.redis.connection.execute_command("BLPOP", "twisted-chat:test:never", "3")
        assert await blocked is None
        sent = await alice.member.say("still here")
    got = await bob.waitFor(isMessage("still here"))
    assert got.id == sent.id
    assert [e for e in bob.events if isinstance(e, Parted)] == []
    assert not [e for e in events if "heartbeat had expired" in formatEvent(e)]
    assert b.chat.broker.remoteNick("alice") == "alice"


@pytest_twisted.ensureDeferred
async def test_guestsOfBurstsStayDistinctAcrossNodes(nodes: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Guests arriving in bursts on two nodes get nicks nobody else has: each
    node has its next block of guest numbers before its block runs out,
    so no guest is renamed for a collision.
    """
    from twisted_chat.cluster.broker import RedisBroker

    monkeypatch.setattr(RedisBroker, "guestBlock", 10)
    a, b = await nodes("a"), await nodes("b")
    guests: list[WaitingClient] = []
    for burst in (6, 10, 10):
        for node in (a, b):
            guests.extend(node.connect() for _ in range(burst))
        # (Redis answers in order: once a PING is answered, so are the
        # claims and the requests for guest numbers sent before it)
        await a.cluster.redis.ping()
        await b.cluster.redis.ping()
    nicks = [g.member.nick for g in guests]
    assert len(set(nicks)) == len(nicks) == 52
    assert not [e for g in guests for e in g.events if isinstance(e, Notice) and "taken on another server" in e.text]


@pytest_twisted.ensureDeferred
async def test_guestsOfABurstRightAfterStartStayDistinct(nodes: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A node holds a second block of guest numbers from the start: a burst
    of guests bigger than one block, right after the nodes joined, gets
    nicks nobody else has.
    """
    await _guestBurst(nodes, monkeypatch, 15)


@pytest_twisted.ensureDeferred
async def test_guestsBeyondTheBlocksStayDistinct(nodes: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    More guests at once than a node has guest numbers from Redis (its next
    block cannot come in between) still get nicks nobody else has: the
    node gives numbers of its own range meanwhile.
    """
    await _guestBurst(nodes, monkeypatch, 40)


def test_throttleWhileRedisIsBehind() -> None:
    """
    Past highWater commands in flight a node pauses its listeners (once),
    and resumes them when the commands have drained to lowWater.
    """
    from twisted.internet.defer import Deferred
    from twisted.internet.task import Clock

    cluster = RedisCluster(parseRedisURL("redis://127.0.0.1:1/0"), clock=Clock(), nodeId="t")
    track = cluster.backpressure.track
    cluster.backpressure.highWater, cluster.backpressure.lowWater = 4, 1
    calls: list[str] = []
    cluster.addThrottle(lambda: calls.append("pause"), lambda: calls.append("resume"))
    pending: list[Deferred[None]] = [track(Deferred()) for _ in range(5)]
    assert calls == ["pause"]
    for d in pending[:3]:
        d.callback(None)
    assert calls == ["pause"]
    pending[3].callback(None)
    assert calls == ["pause", "resume"]
    late: list[str] = []
    track(Deferred()), track(Deferred()), track(Deferred())
    cluster.addThrottle(lambda: late.append("pause"), lambda: late.append("resume"))
    assert late == ["pause"]  # (a listener that comes while paused starts paused)


@pytest_twisted.ensureDeferred
async def test_slowRedisIsAnErrorNotADisconnect(nodes: Any, redisServer: Any) -> None:
    """
    Redis that does not answer in time: the sender is told its message was
    not confirmed, nobody is disconnected, and the next message goes through.
    """
    a, b = await nodes("a"), await nodes("b")
    alice, bob = await twoInRoom(a, b, "#slow")
    a.cluster.commandTimeout = 0.3
    redisServer.command("CLIENT", "PAUSE", "1500", "WRITE")
    with pytest.raises(ChatError) as e:
        await alice.member.say("stuck")
    assert e.value.code == "unavailable" and "no answer within 0.3 s" in e.value.message
    assert a.cluster.connected
    a.cluster.commandTimeout = 10.0
    sent = await alice.member.say("unstuck")  # (answered once Redis resumes)
    got = await bob.waitFor(isMessage("unstuck"))
    assert got.id == sent.id
    # the paused one was stored after all, and came before it
    assert [m.text for m in bob.of(Message)] == ["stuck", "unstuck"]
    assert not alice.closed and not bob.closed


@pytest_twisted.ensureDeferred
async def test_redisFailuresAreLoggedWithoutTraceback(nodes: Any, redisServer: Any) -> None:
    """
    When Redis does not answer in time, or cannot be reached, what fails
    for it (history on join and on request, private history, a message not
    confirmed) is logged as one warning line
    per kind saying why, without a traceback, and repeats are summed up in
    one line. A join's history is read again until Redis answers, and then
    comes complete; a history request is answered unavailable, messages
    are not confirmed; the member stays connected.
    """
    from twisted.logger import LogLevel, capturedLogs, formatEvent

    a = await nodes("a")
    a.cluster.commandTimeout = 0.3
    alice = a.connect("alice")
    with capturedLogs() as events:
        redisServer.command("CLIENT", "PAUSE", "2000", "ALL")
        alice.member.join("#slow")
        slow = await alice.waitFor(lambda e: isinstance(e, History) and e.room == "#slow")
        redisServer.command("CLIENT", "PAUSE", "2000", "ALL")
        with pytest.raises(ChatError) as e:
            await alice.member.say("stuck", "#slow")
        assert e.value.code == "unavailable"
        redisServer.stop()
        await until(lambda: not a.cluster.connected)
        alice.member.history("#slow")
        down = await alice.waitFor(lambda e: isinstance(e, History) and e.room == "#slow" and e is not slow)
        alice.member.privateHistory()
        a.connect("bob")
        with pytest.raises(ChatError):
            await alice.member.say("down", "#slow")
        assert not alice.closed
        await a.stop()
    assert (slow.reason, down.reason) == ("", "unavailable")
    assert [e for e in events if "log_failure" in e] == []
    # (the summaries count real seconds, and the join's history was read
    # again as many times as the pause allowed)
    warnings = [
        re.sub(r" \(and \d+ more times in [\d.]+ s\)$", " (and N more times in T s)", formatEvent(e))
        for e in events
        if e["log_level"] >= LogLevel.warn
    ]
    assert [w for w in warnings if "failed" in w or "confirm" in w] == [
        "history of #slow failed: Redis did not answer within 0.3 s",
        "Redis did not confirm a message: no answer within 0.3 s",
        "private history of alice failed: Redis is unreachable",
        "history of #slow failed: Redis is unreachable (and N more times in T s)",
    ]


@pytest_twisted.ensureDeferred
async def test_stoppingNodeLeavesWithOneAnnouncement(nodes: Any, redisServer: Any) -> None:
    """
    A node stopped cleanly announces its leaving members once, as one
    event, with the reason; the others tell their members. Its heartbeat
    key is gone at once.
    """
    a, b = await nodes("a"), await nodes("b")
    alice, bob = await twoInRoom(a, b, "#bye")
    carol = b.connect("carol")
    carol.member.join("#bye")
    await alice.waitFor(lambda e: isinstance(e, Joined) and e.nick == "carol")
    await b.stop()
    await until(lambda: len([e for e in alice.of(Parted)]) == 2)
    assert sorted((e.nick, e.reason) for e in alice.of(Parted)) == [
        ("bob", "server shutting down"), ("carol", "server shutting down"),
    ]
    assert a.chat.roomList() == [("#bye", 1)]
    assert redisServer.command("EXISTS", "twisted-chat:alive:b") == 0


@pytest_twisted.ensureDeferred
async def test_numericLookingStringsStayStrings(nodes: Any, redisServer: Any) -> None:
    """
    An epoch (or anything else Redis keeps as text) that looks like a
    number is read back as the same text.
    """
    redisServer.command("SET", "twisted-chat:epoch", "12345678")
    a = await nodes("a")
    assert a.cluster.store.epoch == "12345678"
    alice = a.connect("alice")
    alice.member.join("#n")
    first = await alice.member.say("one")
    assert first.epoch == "12345678"
    bob = a.connect("bob")
    bob.member.join("#n", since=("12345678", 0))
    history = await bob.waitFor(lambda e: isinstance(e, History))
    assert history.recovered is True and [m.text for m in history.messages] == ["one"]


@pytest_twisted.ensureDeferred
async def test_laterJoinersHistoryDoesNotSkipEarlierMembers(nodes: Any, redisServer: Any) -> None:
    """
    bob brought #r to node a, but his history could not be read (Redis
    stalled for longer than a join's history is retried), so a knows
    nothing of where #r stands. carol joins later; her history already
    holds two messages still on their way to a over the bus. bob gets both
    live; carol gets each once (in her history).
    """
    a, b = await nodes("a"), await nodes("b")
    a.chat.joinHistory.holdFor = 0.0
    alice = b.connect("alice")
    alice.member.join("#r")
    await alice.waitFor(lambda e: isinstance(e, History))
    bob = a.connect("bob")
    a.cluster.commandTimeout = 0.3
    redisServer.command("CLIENT", "PAUSE", "1500", "ALL")
    bob.member.join("#r")
    failed = await bob.waitFor(lambda e: isinstance(e, History))
    assert failed.reason == "unavailable"
    redisServer.command("CLIENT", "UNPAUSE")
    a.cluster.commandTimeout = 10.0
    await until(lambda: "bob" in b.chat.broker.remoteRoomNicks("#r"))
    # (a's subscription to #r's shard, asked for by bob's join, is made)
    subscribed = a.cluster.broker.receiving("#r")
    if subscribed is not None:
        await subscribed
    # a hears nothing from the bus for a moment
    subscription = a.cluster._subscriber
    subscription.transport.pauseProducing()
    first = await alice.member.say("m1")
    await alice.member.say("m2")
    carol = a.connect("carol")
    carol.member.join("#r")
    history = await carol.waitFor(lambda e: isinstance(e, History))
    assert [m.text for m in history.messages] == ["m1", "m2"]
    subscription.transport.resumeProducing()
    await bob.waitFor(isMessage("m2"))
    await alice.member.say("m3")
    await bob.waitFor(isMessage("m3"))
    await carol.waitFor(isMessage("m3"))
    assert [(m.id, m.text) for m in bob.of(Message)] == [(first.id, "m1"), (first.id + 1, "m2"), (first.id + 2, "m3")]
    assert [m.text for m in carol.of(Message)] == ["m3"]


@pytest_twisted.ensureDeferred
async def test_joinerWhoseHistoryShowsTheNewEpochFirst(nodes: Any, redisServer: Any) -> None:
    """
    Redis lost its data, and node a hears of it first through carol's
    join: her history already holds the new epoch's messages, which reach
    a over the bus only afterwards. Everyone in the room is told of the
    new epoch before its first message (carol before her history), bob
    gets the new epoch's messages live from id 1, and carol each of them
    once.
    """
    a, b = await nodes("a"), await nodes("b")
    alice, bob = await twoInRoom(b, a, "#r")
    before = [await alice.member.say("before %d" % (i,)) for i in range(1, 4)]
    await bob.waitFor(isMessage("before 3"))
    old = before[-1].epoch
    # a hears nothing from the bus for a moment
    subscription = a.cluster._subscriber
    subscription.transport.pauseProducing()
    redisServer.command("FLUSHALL")
    first = await alice.member.say("after 1")
    await alice.member.say("after 2")
    new = first.epoch
    assert new != old and first.id == 1
    carol = a.connect("carol")
    carol.member.join("#r")
    history = await carol.waitFor(lambda e: isinstance(e, History))
    assert [(m.epoch, m.id, m.text) for m in history.messages] == [(new, 1, "after 1"), (new, 2, "after 2")]
    assert history.epoch == new
    subscription.transport.resumeProducing()
    await bob.waitFor(isMessage("after 2"))
    third = await alice.member.say("after 3")
    await carol.waitFor(isMessage("after 3"))
    await bob.waitFor(isMessage("after 3"))
    assert [(m.epoch, m.id) for m in carol.of(Message)] == [(new, 3)]
    seen = [(m.epoch, m.id, m.text) for m in bob.of(Message)]
    assert seen == [(old, m.id, m.text) for m in before] + [(new, i, "after %d" % (i,)) for i in (1, 2, 3)]
    assert third.id == 3
    for client in (bob, carol):
        told = client.of(EpochChanged)
        assert [(e.room, e.previous, e.epoch) for e in told] == [("#r", old, new)]
        # told before anything of the new epoch
        newer = [
            n for n, e in enumerate(client.events)
            if (isinstance(e, Message) and e.epoch == new)
            or (isinstance(e, History) and any(m.epoch == new for m in e.messages))
        ]
        assert client.events.index(told[0]) < newer[0]


@pytest_twisted.ensureDeferred
async def test_resumeIntoANewEpochNotYetSeen(nodes: Any, redisServer: Any) -> None:
    """
    Redis lost its data and holds ids of a new epoch past carol's position
    before node a has heard of it: her resume in the old epoch is not taken
    for a continuation of those ids (recovered: false), and she gets the
    new epoch's history.
    """
    a, b = await nodes("a"), await nodes("b")
    alice, bob = await twoInRoom(b, a, "#r")
    before = [await alice.member.say("before %d" % (i,)) for i in range(1, 3)]
    await bob.waitFor(isMessage("before 2"))
    subscription = a.cluster._subscriber
    subscription.transport.pauseProducing()
    redisServer.command("FLUSHALL")
    after = [await alice.member.say("after %d" % (i,)) for i in range(1, 5)]
    carol = a.connect("carol")
    carol.member.join("#r", since=(before[-1].epoch, before[-1].id))
    history = await carol.waitFor(lambda e: isinstance(e, History))
    subscription.transport.resumeProducing()
    assert (history.recovered, history.reason, history.epoch) == (False, "epoch", after[0].epoch)
    assert [(m.epoch, m.id) for m in history.messages] == [(m.epoch, m.id) for m in after]


@pytest_twisted.ensureDeferred
async def test_newEpochShowsWhileFillingAGap(nodes: Any, redisServer: Any) -> None:
    """
    Node a is filling a gap of the old epoch (the bus lost a message) when
    Redis turns out to have lost its data: the read of the gap returns the
    new epoch's messages. The new epoch's messages that came by the bus
    meanwhile are delivered all the same, from id 1, once each, after the
    notice (not dropped with the old epoch's gap).
    """
    from twisted_chat.cluster.protocol import RoomMessage

    def onTheBus(m: Message) -> RoomMessage:
        return RoomMessage(node="b", room=m.room, id=m.id, epoch=m.epoch, sender=m.sender, text=m.text,
                           time=m.time, action=m.action)  # fmt: skip

    a, b = await nodes("a"), await nodes("b")
    alice, bob = await twoInRoom(b, a, "#r")
    m1 = await alice.member.say("m1")
    await bob.waitFor(isMessage("m1"))
    # a hears nothing from the bus for a moment: what it brings is given
    # to a's delivery below, m2 lost
    subscription = a.cluster._subscriber
    subscription.transport.pauseProducing()
    await alice.member.say("m2")
    m3 = await alice.member.say("m3")
    redisServer.command("FLUSHALL")
    new = [await alice.member.say("n%d" % (i,)) for i in (1, 2)]
    delivery = a.cluster.broker.delivery
    delivery.received(onTheBus(m3))  # (after a gap: a reads from id 2 on)
    for m in new:
        delivery.received(onTheBus(m))
    await bob.waitFor(isMessage("n2"))
    subscription.transport.resumeProducing()
    n3 = await alice.member.say("n3")
    await bob.waitFor(isMessage("n3"))
    assert [(m.epoch, m.text) for m in bob.of(Message)] == [(m1.epoch, "m1")] + [(n3.epoch, t) for t in ("n1", "n2", "n3")]
    assert [m.id for m in bob.of(Message)][1:] == [1, 2, 3]
    kinds = [e.kind for e in bob.events if e.kind in ("epoch", "message")]
    assert kinds == ["message", "epoch", "message", "message", "message"]


def _allValues(redisServer: Any) -> bytes:
    """
    Every string, hash, stream and set value Redis holds, concatenated (to
    look for text that must be gone).
    """
    out = []
    for key in redisServer.command("KEYS", "*"):
        kind = redisServer.command("TYPE", key)
        if kind == "string":
            out.append(redisServer.command("GET", key))
        elif kind == "hash":
            out.extend(redisServer.command("HGETALL", key))
        elif kind == "stream":
            for _, fields in redisServer.command("XRANGE", key, "-", "+"):
                out.extend(fields)
    return b"".join(v if isinstance(v, bytes) else str(v).encode() for v in out)


@pytest_twisted.ensureDeferred
async def test_updatesAcrossNodes(nodes: Any, redisServer: Any) -> None:
    """
    Edits, reactions and deletions made on one node reach the members of
    the other in id order with the messages; a client resuming on either
    node gets the ones it missed once, in order; history has the messages
    as they are now; a deletion leaves the text nowhere in Redis; search
    scans what is kept.
    """
    a, b = await nodes("a"), await nodes("b")
    alice, bob = await twoInRoom(a, b, "#u")
    one = await alice.member.say("zebra-crossing first")
    two = await bob.member.say("@alice second")
    assert two.mentions == ("alice",)
    edit = await alice.member.edit(one.id, "zebra-crossing first, edited")
    react = await bob.member.react(one.id, "👍")
    delete = await bob.member.delete(two.id)
    assert [edit.id, react.id, delete.id] == [3, 4, 5]
    assert (edit.original, edit.author) == ("zebra-crossing first", "alice")
    await bob.waitFor(lambda e: isinstance(e, Update) and e.id == 5)
    await alice.waitFor(lambda e: isinstance(e, Update) and e.id == 5)
    for client in (alice, bob):
        assert [(e.kind, e.id) for e in client.events if isinstance(e, Message)] == [
            ("message", 1), ("message", 2), ("update", 3), ("update", 4), ("update", 5)
        ]
    # a client that saw message 2 resumes on node a, another on node b
    for node in (a, b):
        carol = node.connect()
        carol.member.join("#u", since=(one.epoch, two.id))
        history = await carol.waitFor(lambda e: isinstance(e, History))
        assert history.recovered is True
        assert [(u.id, u.op, u.target) for u in history.messages] == [(3, "edit", 1), (4, "react", 1), (5, "delete", 2)]
        assert history.messages[2].text == ""
    dave = b.connect()
    dave.member.join("#u", since=(one.epoch, 0))
    history = await dave.waitFor(lambda e: isinstance(e, History))
    assert [(m.id, m.kind, m.text) for m in history.messages] == [
        (1, "message", "zebra-crossing first, edited"), (2, "message", ""), (3, "update", "zebra-crossing first, edited"),
        (4, "update", ""), (5, "update", ""),
    ]
    assert history.messages[1].deleted and history.messages[0].reactions == {"👍": ["bob"]}
    erin = b.connect()
    erin.member.join("#u")
    plain = await erin.waitFor(lambda e: isinstance(e, History))
    assert [(m.id, m.text, m.deleted) for m in plain.messages] == [(1, "zebra-crossing first, edited", False), (2, "", True)]
    # the second message's text is gone from Redis; so is an edit's of a deleted message
    await alice.member.delete(one.id)
    data = _allValues(redisServer)
    assert b"@alice second" not in data and b"zebra-crossing" not in data
    # search (a scan of what is kept) finds what is not deleted
    three = await alice.member.say("quagga herd")
    await bob.waitFor(lambda e: isinstance(e, Message) and e.id == three.id)
    await bob.member.search("quag")
    found = await bob.waitFor(lambda e: isinstance(e, SearchResults))
    assert [m.text for m in found.results] == ["quagga herd"]


@pytest_twisted.ensureDeferred
async def test_typingAndReadMarkersAcrossNodes(nodes: Any) -> None:
    """
    Typing reaches the room's members on the other node; a read marker
    set on one node reaches the nick's connections on the other, and
    comes with its next join's history there.
    """
    a, b = await nodes("a"), await nodes("b")
    alice, bob = await twoInRoom(a, b, "#t")
    bob.member.typing("active")
    typing = await alice.waitFor(lambda e: isinstance(e, Typing))
    assert (typing.room, typing.nick, typing.state) == ("#t", "bob", "active")
    said = await bob.member.say("alice: read me")
    await alice.waitFor(lambda e: isinstance(e, Message) and e.id == said.id)
    await bob.member.say("and me")
    await alice.member.markRead(said.id)
    assert (await alice.waitFor(lambda e: isinstance(e, ReadMarker))).id == said.id
    alice.member.part("#t")
    rejoined = alice.next(lambda e: isinstance(e, History))
    alice.member.join("#t")
    history = await rejoined
    assert history.read == (said.id, 1, 0)


async def _guestBurst(nodes: Any, monkeypatch: pytest.MonkeyPatch, each: int) -> None:
    """
    Two nodes with blocks of 10 guest numbers, C{each} guests connecting
    to each at once, right after both joined: every guest has a nick
    nobody else has, and none was renamed for a collision.
    """
    from twisted_chat.cluster.broker import RedisBroker

    monkeypatch.setattr(RedisBroker, "guestBlock", 10)
    a, b = await nodes("a"), await nodes("b")
    await a.cluster.redis.ping()
    await b.cluster.redis.ping()
    guests = [node.connect() for node in (a, b) for _ in range(each)]
    await a.cluster.redis.ping()
    await b.cluster.redis.ping()
    nicks = [g.member.nick for g in guests]
    assert len(set(nicks)) == len(nicks) == 2 * each
    assert not [e for g in guests for e in g.events if isinstance(e, Notice) and "taken on another server" in e.text]
