# -*- test-case-name: tests.cluster.test_redis -*-
"""
The broker of a node in a cluster (L{RedisBroker}): it tells the other
nodes what happened here, through the bus, and tells the service what
happened there (L{IClusterEvents}), handling each bus message in its
C{on_<message class>} method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat.cluster import scripts
from twisted_chat.cluster.commands import Ask, Commands
from twisted_chat.cluster.delivery import RoomDelivery
from twisted_chat.cluster.guests import GuestNumbers
from twisted_chat.cluster.protocol import (
    BanAdded,
    BanLifted,
    MESSAGES,
    BusMessage,
    KickMember,
    MemberAdded,
    MemberGone,
    MemberJoined,
    MemberParted,
    MemberRenamed,
    MemberShared,
    MemberState,
    NodeDown,
    NodeRegistered,
    OpMember,
    PrivateMessage,
    PrivateUpdateMessage,
    ReadSet,
    RoomMessage,
    RoomUpdate,
    TokenSaved,
    TypingSet,
    TopicSet,
    TopicState,
    encode,
)
from twisted_chat.cluster.replica import Replica
from twisted_chat.cluster.shards import Shards
from twisted_chat.cluster.store import RedisStore, unavailable
from twisted_chat.core.events import Joined, Message, Parted, Private, TopicChanged
from twisted_chat.core.interfaces import IBroker, IClusterEvents, MemberView
from twisted_chat.core.names import nickKey


_T = TypeVar("_T")


#: the name of the method that handles each message type
_HANDLERS = {cls: "on_" + cls.__name__ for cls in MESSAGES}


def _state(member: MemberView) -> MemberState:
    return MemberState(member.nick, tuple(member.rooms))


@dataclass(frozen=True)
class SharedState:
    """
    What a broker keeps of the state the nodes share in Redis.
    """

    #: node -> nick key -> state, of the other nodes
    members: Mapping[str, Mapping[str, MemberState]]
    #: nick key -> owner token hash
    tokens: dict[str, str]
    topics: Mapping[str, TopicState]
    #: the end of this node's block of guest numbers
    guest: int
    #: room -> banned nick key or address -> address banned with it
    bans: dict[str, dict[str, str]]


async def readShared(redis: Commands, node: str, ask: Ask, guestBlock: int) -> SharedState:
    """
    The state the nodes share, as C{node} needs it (each reply through
    C{ask}), taking a new block of C{guestBlock} guest numbers.
    """
    members: dict[str, dict[str, MemberState]] = {}
    for n in await ask(redis.smembers(redis.key("nodes"))):
        if n != node:
            states = await ask(redis.hgetall(redis.key("m", n)))
            members[n] = {key: MemberState.decode(state) for key, state in states.items()}
    tokens = await ask(redis.hgetall(redis.key("tok")))
    topics = await ask(redis.hgetall(redis.key("topic")))
    guest = await ask(redis.incrby(redis.key("guest"), guestBlock))
    bans: dict[str, dict[str, str]] = {}
    for room in await ask(redis.smembers(redis.key("banrooms"))):
        bans[room] = await ask(redis.hgetall(redis.key("bans", room)))
    return SharedState(members, tokens, {r: TopicState.decode(raw) for r, raw in topics.items()}, guest, bans)


@implementer(IBroker)
class RedisBroker:
    """
    Presence and fan-out across nodes: a replica of the other nodes'
    members (L{Replica}), room messages delivered in order (L{RoomDelivery}),
    shared topics, bans and guest numbers.
    """

    _log = Logger()
    #: guest numbers taken from Redis at a time, at first: a node holds one
    #: block and asks for the next as soon as it starts using one, and a
    #: block that runs out before the next arrives (a burst of guests while
    #: Redis answers slowly) doubles the blocks, up to guestBlockMost
    guestBlock = 1000
    guestBlockMost = 64000

    def __init__(
        self, redis: Commands, node: str, store: RedisStore, busShards: int = 0, changed: Callable[[], object] = lambda: None
    ) -> None:
        self.redis = redis
        self.node = node
        self.store = store
        self._events: IClusterEvents | None = None
        self.replica = Replica()
        self.delivery = RoomDelivery(store, redis.clock, lambda: self.events)
        #: the shards of the bus this node is subscribed to
        self.shards = Shards(
            busShards,
            lambda shard: redis.key("bus", str(shard)),
            redis.clock,
            lambda: self.events.localRooms(),
            self.delivery.forget,
            changed,
        )
        store.watchEpoch(self.delivery.epochChanged)
        self.topics: dict[str, tuple[str, str]] = {}
        #: room -> banned nick key or address -> address banned with it
        self.bans: dict[str, dict[str, str]] = {}
        self.guests = GuestNumbers(redis, lambda: self.guestBlock, self.guestBlockMost)

    @property
    def events(self) -> IClusterEvents:
        """
        The service of this node, as a broker sees it.
        """
        if self._events is None:
            raise RuntimeError("the broker serves no service yet (attach)")
        return self._events

    def attach(self, events: IClusterEvents) -> None:
        self._events = events

    # The shared state

    async def read(self, ask: Ask) -> SharedState:
        """
        Read the shared state (each reply through C{ask}), taking a new
        block of guest numbers (see L{readShared}).
        """
        return await readShared(self.redis, self.node, ask, self.guestBlock)

    def load(self, shared: SharedState) -> None:
        """
        Start again from the C{shared} state.
        """
        self.bans = shared.bans
        self.replica.load(shared.members)
        for key in list(self.replica.remote):
            # (a share announced while this node could not hear it)
            self.events.sharedElsewhere(key)
        self.events.knownTokens(shared.tokens)
        self.topics = {room: (t.topic, t.by) for room, t in shared.topics.items() if t.topic}
        self.guests.start(shared.guest)

    def localState(self) -> dict[str, MemberState]:
        """
        This node's members: nick key -> state.
        """
        return {nickKey(m.nick): _state(m) for m in self.events.localMembers()}

    def localOwners(self) -> dict[str, str]:
        """
        This node's members that are their nicks' owners (who may be
        connected on other nodes too): nick key -> the hash of the owner
        token they presented, or C{"*"} when logged in.
        """
        owners = {}
        for m in self.events.localMembers():
            key = nickKey(m.nick)
            if m.authenticated is not None:
                owners[key] = "*"
            elif m.owner:
                owners[key] = self.events.tokenHash(key) or ""
        return owners

    def lostNick(self, key: str) -> None:
        """
        Another node holds the nick with key C{key} now.
        """
        self.events.nickTaken(key)

    async def catchUp(self, current: Callable[[], bool]) -> None:
        """
        See L{RoomDelivery.catchUp}.
        """
        await self.delivery.catchUp(current)

    # IBroker: queries

    def remoteNick(self, key: str) -> str | None:
        r = self.replica.get(key)
        return None if r is None else r.nick

    def remoteRoomNicks(self, room: str, limit: int | None = None) -> list[str]:
        return self.replica.roomNicks(room, limit)

    def remoteRoomCount(self, room: str) -> int:
        return self.replica.roomCount(room)

    def remoteRooms(self) -> dict[str, int]:
        return self.replica.roomCounts()

    def remoteInRoom(self, key: str, room: str) -> bool:
        return self.replica.inRoom(key, room)

    def nextGuest(self) -> int | None:
        return self.guests.next()

    def topicOf(self, room: str) -> tuple[str, str] | None:
        return self.topics.get(room)

    def bansOf(self, room: str) -> dict[str, str]:
        return self.bans.get(room, {})

    def deliveredUpTo(self, room: str) -> int:
        return self.delivery.deliveredUpTo(room)

    def readUpTo(self, room: str, id: int) -> None:
        self.delivery.readUpTo(room, id)

    def receiving(self, room: str) -> Deferred[None] | None:
        """
        See L{Shards.want}; a subscription not made within the command
        timeout fails the join's history like a read that timed out.
        """
        d = self.shards.want(room)
        if d is None:
            return None
        return self.redis.timed(d).addErrback(self.store.down)

    # IBroker: what happened here

    def _publish(self, what: str, run: Callable[[Commands], Deferred[_T]]) -> Deferred[_T | None] | None:
        """
        C{run} a script that announces something (C{what}, for the log);
        None when the node does not announce it now. Its failure is logged
        (and its result is then None).
        """
        if not self.events.isRunning():
            # Shutting down: the node leaves with one announcement of all
            # its members (RedisCluster.stopService), not one per member.
            return None
        if not self.redis.connected:
            # Announced with everything else once Redis is back (register).
            return None
        def failed(f: Failure) -> None:
            self._log.warn("could not tell the cluster {what}: {why}", what=what, why=f.getErrorMessage())

        return run(self.redis).addErrback(failed)

    def memberAdded(self, member: MemberView, share: bool) -> None:
        key = nickKey(member.nick)
        proof = ""
        if share:
            proof = "*" if member.authenticated is not None else (self.events.tokenHash(key) or "")
        else:
            self.replica.remove(key)
        d = self._publish("of a new member", lambda redis: scripts.claim(redis, self.node, member.nick, proof, _state(member)))
        if d is not None:
            d.addCallback(lambda holder: self._collision(member, key) if holder else None)

    def _collision(self, member: MemberView, key: str) -> None:
        if not member.gone and nickKey(member.nick) == key:
            self.events.nickTaken(key)

    def memberGone(self, member: MemberView) -> None:
        event = MemberGone(node=self.node, key=nickKey(member.nick))
        self._publish("of a member who left", lambda redis: scripts.gone(redis, event))

    def joined(self, member: MemberView, room: str, event: Joined) -> None:
        message = MemberJoined(node=self.node, key=nickKey(member.nick), nick=member.nick, room=room, time=event.time)
        self._publish("of a join", lambda redis: scripts.moved(redis, _state(member), message))

    def parted(self, member: MemberView, room: str, event: Parted) -> None:
        if not self.events.hasRoom(room):
            self.shards.release(room)
        message = MemberParted(
            node=self.node, key=nickKey(member.nick), nick=member.nick, room=room, time=event.time, reason=event.reason
        )
        self._publish("of a part", lambda redis: scripts.moved(redis, _state(member), message))

    def nickChanged(self, member: MemberView, old: str, time: float) -> None:
        newKey = nickKey(member.nick)
        event = MemberRenamed(node=self.node, key=nickKey(old), newKey=newKey, nick=old, newNick=member.nick, time=time)
        d = self._publish("of a nick change", lambda redis: scripts.rename(redis, _state(member), event))
        if d is not None:
            d.addCallback(lambda holder: self._collision(member, newKey) if holder else None)

    def topicChanged(self, event: TopicChanged) -> None:
        redis = self.redis
        if not redis.connected:
            return
        if event.topic:
            self.topics[event.room] = (event.topic, event.by)
        else:
            self.topics.pop(event.room, None)
        message = TopicSet(node=self.node, room=event.room, topic=event.topic, by=event.by, time=event.time)
        d = redis.hset(redis.key("topic"), event.room, TopicState(event.topic, event.by).encode())
        d.addCallback(lambda _: redis.publish(redis.key("bus"), encode(message)))
        d.addErrback(lambda f: self._log.warn("could not share a topic: {why}", why=f.getErrorMessage()))

    def deliverMessage(self, message: Message) -> Message | Deferred[Message]:
        """
        The bus delivers it here (in id order with everyone else's); the
        acknowledgement waits until it has.
        """
        return self.delivery.acknowledged(message)

    def appendPrivate(self, message: Private, ref: str | None) -> Deferred[Private]:
        """
        Stored, then published to every other node where either party is
        connected (the sender's other devices see what it sent).
        """
        nodes = dict.fromkeys(self.replica.nodesOf(nickKey(message.recipient)))
        nodes.update(dict.fromkeys(self.replica.nodesOf(nickKey(message.sender))))
        channels = [self.redis.key("node", n) for n in nodes if n != self.node]
        return self.store.appendPrivate(message, ref, channels)

    def kickRemote(self, op: object, room: str, nick: str, why: str) -> bool:
        return self._command(room, nick, lambda holder: KickMember(node=self.node, room=room, nick=holder, reason=why))

    def opRemote(self, room: str, nick: str) -> bool:
        return self._command(room, nick, lambda holder: OpMember(node=self.node, room=room, nick=holder))

    def _command(self, room: str, nick: str, make: Callable[[str], BusMessage]) -> bool:
        """
        Send the message C{make} makes (given the nick as its holders spell
        it) about C{nick} in C{room} to every other node that has it there.
        """
        key = nickKey(nick)
        nodes = self.replica.nodesOf(key, room)
        r = self.replica.get(key)
        if not nodes or r is None:
            return False
        redis = self.redis
        if not redis.connected:
            raise unavailable("cannot reach %s on another node now (the cluster's Redis is unreachable)" % (r.nick,))
        for node in nodes:
            redis.publish(redis.key("node", node), encode(make(r.nick))).addErrback(lambda f: None)
        return True

    def banned(self, room: str, key: str, host: str, why: str) -> None:
        self.bans.setdefault(room, {})[key] = host
        event = BanAdded(node=self.node, room=room, key=key, host=host, reason=why)
        self._publish("of a ban", lambda redis: scripts.ban(redis, event))

    def unbanned(self, room: str, key: str) -> None:
        inRoom = self.bans.get(room)
        if inRoom is not None:
            inRoom.pop(key, None)
        event = BanLifted(node=self.node, room=room, key=key)
        self._publish("of an unban", lambda redis: scripts.unban(redis, event))

    # What happened elsewhere: one on_<class name> method per message

    def received(self, message: BusMessage) -> None:
        """
        Handle C{message}, which came by the bus or this node's channel
        (a node ignores its own announcements).
        """
        if message.node == self.node and not message.toSenderToo:
            return
        handler: Callable[[BusMessage], None] = getattr(self, _HANDLERS[type(message)])
        handler(message)

    def on_RoomMessage(self, message: RoomMessage) -> None:
        self.delivery.received(message)

    def on_PrivateMessage(self, message: PrivateMessage) -> None:
        self.events.remotePrivate(message.event())

    def on_RoomUpdate(self, message: RoomUpdate) -> None:
        self.delivery.received(message)

    def on_PrivateUpdateMessage(self, message: PrivateUpdateMessage) -> None:
        self.events.remotePrivate(message.event())

    def on_TypingSet(self, message: TypingSet) -> None:
        self.events.remoteTyping(message.room, message.nick, message.state)

    def on_ReadSet(self, message: ReadSet) -> None:
        self.events.remoteRead(message.nick, message.room, message.id)

    def _announce(self, message: BusMessage) -> None:
        """
        Publish C{message} on the bus, at most once (lost while Redis is
        unreachable: what is announced this way is not stored).
        """
        redis = self.redis
        if not redis.connected:
            return
        redis.publish(redis.key("bus"), encode(message)).addErrback(
            lambda f: self._log.warn("could not announce {what}: {why}", what=message.code, why=f.getErrorMessage())
        )

    def typing(self, room: str, nick: str, state: str) -> None:
        self._announce(TypingSet(node=self.node, room=room, nick=nick, state=state))

    def readMarker(self, nick: str, room: str, id: int) -> None:
        self._announce(ReadSet(node=self.node, nick=nick, room=room, id=id))

    def on_MemberAdded(self, message: MemberAdded) -> None:
        if message.previous:
            # (a node of an earlier release took the nick over from there)
            self.replica.remove(message.key, message.previous)
        self.replica.add(message.node, message.key, message.nick, [])
        if message.previous == self.node:
            self.events.replaced(message.key)

    def on_MemberShared(self, message: MemberShared) -> None:
        self.replica.add(message.node, message.key, message.nick, [])
        self.events.sharedElsewhere(message.key)

    def on_MemberGone(self, message: MemberGone) -> None:
        self.replica.remove(message.key, message.node)

    def on_MemberJoined(self, message: MemberJoined) -> None:
        # (a nick already in the room through another node, or this one,
        # is not announced again)
        there = self.replica.inRoom(message.key, message.room)
        self.replica.joined(message.node, message.key, message.nick, message.room)
        if not there:
            self.events.remoteJoined(message.room, message.nick, message.time)

    def on_MemberParted(self, message: MemberParted) -> None:
        self.replica.parted(message.node, message.key, message.room)
        if not self.replica.inRoom(message.key, message.room):
            self.events.remoteParted(message.room, message.nick, message.reason, message.time)

    def on_MemberRenamed(self, message: MemberRenamed) -> None:
        r = self.replica.remove(message.key, message.node)
        rooms = list(r.rooms) if r is not None else []
        self.replica.add(message.node, message.newKey, message.newNick, rooms)
        self.events.remoteNickChanged(message.nick, message.newNick, rooms, message.time)

    def on_TopicSet(self, message: TopicSet) -> None:
        if message.topic:
            self.topics[message.room] = (message.topic, message.by)
        else:
            self.topics.pop(message.room, None)
        self.events.remoteTopic(TopicChanged(message.room, message.topic, message.by, message.time))

    def on_TokenSaved(self, message: TokenSaved) -> None:
        self.events.knownTokens({message.key: message.hash})

    def on_KickMember(self, message: KickMember) -> None:
        self.events.remoteKick(message.room, message.nick, message.reason)

    def on_OpMember(self, message: OpMember) -> None:
        self.events.remoteOp(message.room, message.nick)

    def on_BanAdded(self, message: BanAdded) -> None:
        self.bans.setdefault(message.room, {})[message.key] = message.host
        self.events.remoteBan(message.room, message.key, message.host, message.reason)

    def on_BanLifted(self, message: BanLifted) -> None:
        inRoom = self.bans.get(message.room)
        if inRoom is not None:
            inRoom.pop(message.key, None)
        self.events.remoteUnban(message.room, message.key)

    def on_NodeRegistered(self, message: NodeRegistered) -> None:
        self.replica.setNode(message.node, message.members)
        for key in message.members:
            # (its owner, sharing the nick: see scripts.REGISTER)
            self.events.sharedElsewhere(key)

    def on_NodeDown(self, message: NodeDown) -> None:
        now = self.events.now()
        self._log.info("node {node} is gone: its members left", node=message.node)
        self.replica.dropNode(message.node)
        for key, state in message.members.items():
            for name in state.rooms:
                # (a nick still in the room through another node stays)
                if not self.replica.inRoom(key, name):
                    self.events.remoteParted(name, state.nick, message.reason or "disconnected", now)
