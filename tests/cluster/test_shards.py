"""
The sharded bus (twisted_chat.cluster.shards) on a real Redis: a node hears
only the shards of its rooms, subscribes before a joiner's history is read,
keeps a shard a while after its last room there emptied, and the cluster
falls back to the common bus while a node does not shard.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from twisted_chat.cluster.shards import shardOf
from twisted_chat.core.events import History, Message

from tests.cluster.test_protocol import _BusSpy
from tests.support.cluster import isMessage, twoInRoom, until


def _numsub(redisServer: Any, room: str, count: int) -> int:
    """
    How many connections are subscribed to C{room}'s shard (of C{count}).
    """
    channel = "twisted-chat:bus:%d" % (shardOf(room, count),)
    reply = redisServer.command("PUBSUB", "NUMSUB", channel, decode=True)
    assert isinstance(reply, list) and reply[0] == channel
    return int(reply[1])


def _otherShard(room: str, count: int) -> str:
    """
    A room in another shard than C{room}'s.
    """
    for i in range(1000):
        other = "#other%d" % (i,)
        if shardOf(other, count) != shardOf(room, count):
            return other
    raise AssertionError("no room in another shard")


def _received(history: list[History], live: list[Message]) -> list[str]:
    return [m.text for h in history for m in h.messages] + [m.text for m in live]


@pytest_twisted.ensureDeferred
async def test_nodeHearsOnlyTheShardsOfItsRooms(nodes: Any, redisServer: Any) -> None:
    """
    Node b, whose only member is in #x, is subscribed to #x's shard and
    not to the shard of #y, where only a has members: a message in #y does
    not reach b at all, one in #x reaches bob.
    """
    a, b = await nodes("a"), await nodes("b")
    count = a.cluster.broker.shards.count
    assert count > 1
    y = _otherShard("#x", count)
    alice, bob = await twoInRoom(a, b, "#x")
    alice.member.join(y)
    await alice.waitFor(lambda e: isinstance(e, History) and e.room == y)
    assert _numsub(redisServer, "#x", count) == 2
    assert _numsub(redisServer, y, count) == 1
    await alice.member.say("in y", y)
    await alice.member.say("in x", "#x")
    await bob.waitFor(isMessage("in x"))
    # (b never heard of #y's message: no position kept for it)
    assert y not in b.cluster.broker.delivery.lastIds
    assert [m.text for m in bob.of(Message)] == ["in x"]


@pytest_twisted.ensureDeferred
async def test_joinersHistoryWaitsForTheSubscription(nodes: Any, redisServer: Any) -> None:
    """
    bob brings #j to node b; b's SUBSCRIBE to its shard is slow. A message
    said meanwhile (acknowledged to alice) reaches bob at once, in his
    history, although nothing is said after it; and nothing twice.
    """
    a, b = await nodes("a"), await nodes("b")
    from twisted.internet.defer import Deferred

    alice = a.connect("alice")
    alice.member.join("#j")
    await alice.waitFor(lambda e: isinstance(e, History))
    await alice.member.say("before")
    # b's next SUBSCRIBE waits until released
    subscriber = b.cluster._subscriber
    release: Deferred[None] = Deferred()
    realSubscribe = subscriber.subscribe

    def slowSubscribe(channels: Any) -> Deferred[object]:
        return release.addCallback(lambda _: realSubscribe(channels))

    subscriber.subscribe = slowSubscribe
    try:
        bob = b.connect("bob")
        bob.member.join("#j")
        await until(lambda: "bob" in a.chat.broker.remoteRoomNicks("#j"))
        await alice.member.say("while subscribing")
    finally:
        del subscriber.subscribe
        release.callback(None)
    await bob.waitFor(lambda e: isinstance(e, History))
    await until(lambda: "while subscribing" in _received(bob.of(History), bob.of(Message)))
    await alice.member.say("after")
    await bob.waitFor(isMessage("after"))
    assert _received(bob.of(History), bob.of(Message)) == ["before", "while subscribing", "after"]


@pytest_twisted.ensureDeferred
async def test_ownMessageWhileSubscribingComesAfterTheHistory(nodes: Any, redisServer: Any) -> None:
    """
    bob brings #o to node b and says something at once, while b's SUBSCRIBE
    to its shard is still on its way: his message is stored after his
    history was read (it is not in it) and comes back to him live, after
    the history, like anyone's message said after a join.
    """
    a, b = await nodes("a"), await nodes("b")
    from twisted.internet.defer import Deferred, ensureDeferred

    subscriber = b.cluster._subscriber
    release: Deferred[None] = Deferred()
    realSubscribe = subscriber.subscribe

    def slowSubscribe(channels: Any) -> Deferred[object]:
        return release.addCallback(lambda _: realSubscribe(channels))

    subscriber.subscribe = slowSubscribe
    try:
        bob = b.connect("bob")
        bob.member.join("#o")
        said = ensureDeferred(bob.member.say("right away"))
    finally:
        del subscriber.subscribe
        release.callback(None)
    await said
    history = await bob.waitFor(lambda e: isinstance(e, History))
    live = await bob.waitFor(isMessage("right away"))
    assert history.messages == []
    assert bob.events.index(live) > bob.events.index(history)


@pytest_twisted.ensureDeferred
async def test_shardIsLetGoOfAfterItsLastRoomEmptied(nodes: Any, redisServer: Any) -> None:
    """
    bob leaves #k, the only room of its shard on b, and comes back: b keeps
    the subscription (no churn). Once bob has been gone for the linger
    time, b lets the shard go; a later joiner there gets everything said
    meanwhile (in the history) and after, each once.
    """
    from twisted.internet.task import Clock

    a, b = await nodes("a"), await nodes("b")
    shards = b.cluster.broker.shards
    count = shards.count
    clock = shards._clock = Clock()
    alice, bob = await twoInRoom(a, b, "#k")
    await alice.member.say("one")
    await bob.waitFor(isMessage("one"))
    bob.member.part("#k")
    clock.advance(shards.linger / 2)
    bob.member.join("#k")
    clock.advance(shards.linger)
    assert _numsub(redisServer, "#k", count) == 2
    assert shards.leaving == set()
    bob.member.part("#k")
    assert _numsub(redisServer, "#k", count) == 2
    clock.advance(shards.linger)
    await until(lambda: shardOf("#k", count) not in shards.leaving)
    assert _numsub(redisServer, "#k", count) == 1
    assert "#k" not in b.cluster.broker.delivery.lastIds
    await alice.member.say("while b was away")
    carol = b.connect("carol")
    carol.member.join("#k")
    history = await carol.waitFor(lambda e: isinstance(e, History))
    assert [m.text for m in history.messages][-2:] == ["one", "while b was away"]
    await alice.member.say("back")
    await carol.waitFor(isMessage("back"))
    assert [m.text for m in carol.of(Message)] == ["back"]
    assert _numsub(redisServer, "#k", count) == 2


@pytest_twisted.ensureDeferred
async def test_commonBusWhileANodeDoesNotShard(nodes: Any, redisServer: Any) -> None:
    """
    Room messages travel on their shard only while every registered node
    asks for the same number of shards: with a node that asks for none
    (--bus-shards 0), or one of a version before the sharded bus (it says
    nothing), they go on the common bus, and members everywhere get them.
    """
    a = await nodes("a")
    count = a.cluster.broker.shards.count
    assert a.cluster.presence.shardsInUse == count
    b = await nodes("b", busShards=0)
    await until(lambda: a.cluster.presence.shardsInUse == 0)
    alice, bob = await twoInRoom(a, b, "#m")
    spy = _BusSpy(redisServer)
    await alice.member.say("common")
    await bob.waitFor(isMessage("common"))
    await b.stop()
    await until(lambda: a.cluster.presence.shardsInUse == count)
    await alice.member.say("sharded")
    # a node of an older version registers: back to the common bus
    redisServer.command("SADD", "twisted-chat:nodes", "old")
    redisServer.command("SET", "twisted-chat:alive:old", "x", "EX", "60")
    await until(lambda: a.cluster.presence.shardsInUse == 0)
    await alice.member.say("common again")
    channels = [(channel, text) for channel, raw in spy.published() if (text := _text(raw)) is not None]
    shard = "twisted-chat:bus:%d" % (shardOf("#m", count),)
    assert channels == [
        ("twisted-chat:bus", "common"),
        (shard, "sharded"),
        ("twisted-chat:bus", "common again"),
    ]
    assert [m.text for m in alice.of(Message)] == ["common", "sharded", "common again"]


def _text(raw: str) -> str | None:
    from twisted_chat.cluster.protocol import RoomMessage, decode

    message = decode(raw)
    return message.text if isinstance(message, RoomMessage) else None


# Shards on its own: a clock and a recording subscriber, no sockets.


class _Subscriber:
    """
    Records each (UN)SUBSCRIBE; the test answers them.
    """

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, Any]] = []

    def _send(self, command: str, channels: Any) -> Any:
        from twisted.internet.defer import Deferred

        d: Deferred[object] = Deferred()
        self.sent.append((command, channels, d))
        return d

    def subscribe(self, channels: Any) -> Any:
        return self._send("SUBSCRIBE", channels)

    def unsubscribe(self, channels: Any) -> Any:
        return self._send("UNSUBSCRIBE", channels)

    def answer(self) -> None:
        for _, _, d in self.sent:
            if not d.called:
                d.callback(None)


def _shards(local: set[str]) -> tuple[Any, Any, list[str]]:
    from twisted.internet.task import Clock

    from twisted_chat.cluster.shards import Shards

    forgotten: list[str] = []
    positions = ["#a", "#b", "#c"]

    def forget(which: Any) -> None:
        forgotten.extend(r for r in positions if which(r))

    clock = Clock()
    return Shards(64, lambda s: "bus:%d" % (s,), clock, lambda: sorted(local), forget), clock, forgotten


def test_oneChannelPerSubscribe() -> None:
    """
    A new subscription subscribes to the shard of every local room, each
    with a SUBSCRIBE of its own (txredisapi takes one reply per command).
    """
    rooms = {"#a", "#b", "#c"}
    shards, clock, _ = _shards(rooms)
    sub = _Subscriber()
    made = shards.attach(sub)
    expected = sorted({"bus:%d" % (shardOf(r, 64),) for r in rooms})
    assert sorted(channels for _, channels, _ in sub.sent) == expected
    assert len(made) == len(expected)
    sub.answer()
    assert all(d.called for d in made)
    assert shards.want("#a") is None


def test_roomEmptiedWhileSubscribingIsLetGoAfterTheLinger() -> None:
    """
    A room whose only member left before its shard's SUBSCRIBE was answered
    (later than the linger) is let go a linger after the answer, and its
    position forgotten.
    """
    local: set[str] = set()
    shards, clock, forgotten = _shards(local)
    sub = _Subscriber()
    shards.attach(sub)
    local.add("#a")
    waiting = shards.want("#a")
    assert waiting is not None and not waiting.called
    local.discard("#a")
    shards.release("#a")
    # (Redis is slow: the linger runs out before the SUBSCRIBE is answered)
    clock.advance(shards.linger)
    assert [c for c, _, _ in sub.sent] == ["SUBSCRIBE"]
    sub.answer()
    assert waiting.called
    clock.advance(shards.linger)
    assert [c for c, _, _ in sub.sent] == ["SUBSCRIBE", "UNSUBSCRIBE"]
    sub.answer()
    assert "#a" in forgotten


def test_lostSubscriptionLetsWaitingJoinsGoOn() -> None:
    """
    The subscribed connection goes while a join waits for its shard: the
    join goes on (the node catches the room up once subscribed again), and
    positions of rooms without members here are forgotten.
    """
    local = {"#a"}
    shards, clock, forgotten = _shards(local)
    sub = _Subscriber()
    shards.attach(sub)
    local.add("#b")
    waiting = shards.want("#b")  # (#a and #b are in different shards of 64)
    assert waiting is not None and not waiting.called
    shards.lost()
    assert waiting.called
    assert forgotten == ["#c"]
    assert shards.want("#c") is None  # (no subscription: the next one makes it)
