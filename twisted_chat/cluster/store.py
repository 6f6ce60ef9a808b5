# -*- test-case-name: tests.cluster.test_redis -*-
"""
The message store of a cluster (L{RedisStore}): ids, epochs and history
in Redis, shared by every node.
"""

from __future__ import annotations

from typing import Callable, cast

import txredisapi
from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat.cluster import scripts, updates
from twisted_chat.cluster.commands import Commands
import json

from twisted_chat.cluster.protocol import (
    PrivateMessage,
    PrivateUpdateMessage,
    RoomMessage,
    RoomUpdate,
    TokenSaved,
    decode,
    decodeAs,
    encode,
)
from twisted_chat.core.errors import ChatError, FailureLog, StoreUnavailable
from twisted_chat.core.events import Message, Private, PrivateUpdate, Update
from twisted_chat.core.interfaces import IMessageStore, resumePosition, searchWords, textMatches
from twisted_chat.core.names import mentions as mentionsNick
from twisted_chat.core.names import nickKey


def unavailable(what: str = "the message store is unreachable: not sent") -> ChatError:
    """
    The error a user gets for a request that needs Redis while it is
    unreachable.
    """
    return ChatError("unavailable", what + ", try again")


def _unreachable() -> Deferred[None]:
    return fail(StoreUnavailable("Redis is unreachable"))


def _folded(body: str, message: Message | Private) -> Message | Private:
    """
    C{message}, with what its body in a state hash says of its edits,
    deletion and reactions (keys C{ed}, C{dl}, C{rx}; see updates.UPDATE).
    """
    if '"ed"' in body or '"dl"' in body or '"rx"' in body:
        raw = json.loads(body)
        message.edited = float(raw.get("ed") or 0.0)
        message.deleted = raw.get("dl") is True
        rx = raw.get("rx")
        message.reactions = json.loads(rx) if isinstance(rx, str) and rx else None
    return message


def _entry(body: str) -> Message:
    """
    A room's stream entry (or state): a L{Message} as it is now, or an L{Update}.
    """
    message = decode(body)
    if isinstance(message, RoomMessage):
        m = message.event()
        _folded(body, m)
        return m
    if isinstance(message, RoomUpdate):
        return message.event()
    raise ValueError("not a room entry: %r" % (body[:200],))


def _messages(bodies: list[str]) -> list[Message]:
    return [_entry(body) for body in bodies]


def _privateEntry(body: str) -> Private:
    message = decode(body)
    if isinstance(message, PrivateMessage):
        p = message.event()
        _folded(body, p)
        return p
    if isinstance(message, PrivateUpdateMessage):
        return message.event()
    raise ValueError("not a private entry: %r" % (body[:200],))


def _privates(bodies: list[str]) -> list[Private]:
    return [_privateEntry(body) for body in bodies]


@implementer(IMessageStore)
class RedisStore:
    """
    Ids, epochs and history in Redis, shared by every node: a stream per
    room, one per nick for private messages, a counter per room.
    """

    _log = Logger()

    def __init__(
        self,
        redis: Commands,
        node: str,
        synced: Callable[[], bool],
        retainMessages: int = 10000,
        retainDays: float | None = None,
        refWindow: float = 3600.0,
        busShards: int = 0,
    ) -> None:
        self.redis = redis
        #: the shards of the bus this node hears (see cluster.shards)
        self.busShards = busShards
        self.node = node
        #: whether the node serves the cluster (subscribed, state loaded)
        self._synced = synced
        self.retainMessages = retainMessages
        self.retainDays = retainDays
        self.refWindow = refWindow
        self.epoch = ""
        #: epochs this node saw replaced (Redis came back empty)
        self.retired: set[str] = set()
        self._failures = FailureLog(self._log, lambda: redis.clock)
        #: nick key -> owner token hash issued while Redis was unreachable
        self.unsaved: dict[str, str] = {}
        self._epochWatchers: list[Callable[[str, str], None]] = []
        #: what a room message waits for before it is stored (the
        #: subscription to its room's shard on its way: Shards.ready)
        self.subscribing: Callable[[str], Deferred[None] | None] = lambda room: None

    def watchEpoch(self, changed: Callable[[str, str], None]) -> None:
        """
        Call C{changed(previous, epoch)} when Redis turns out to have lost
        its data (see L{setEpoch}).
        """
        self._epochWatchers.append(changed)

    def setEpoch(self, epoch: str, authoritative: bool = True) -> bool:
        """
        The epoch Redis holds is C{epoch} (read at (re)connection when
        C{authoritative}; else seen on a message). A new one means Redis
        lost its data: the broker starts the rooms over (see
        L{watchEpoch}). Returns C{False} for a message of an epoch already
        replaced (to be ignored).
        """
        old = self.epoch
        if epoch == old:
            return True
        if not authoritative and epoch in self.retired:
            return False
        self.epoch = epoch
        if old:
            self.retired.add(old)
            for changed in self._epochWatchers:
                changed(old, epoch)
        return True

    def open(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)

    def ping(self) -> Deferred[None]:
        """
        Readiness: Redis answers, and this node is subscribed to the bus
        with the shared state loaded (else it delivers nothing from the
        other nodes).
        """
        if not self.redis.connected:
            return _unreachable()
        if not self._synced():
            return fail(StoreUnavailable("not subscribed to the cluster's bus (reconnecting)"))
        return self.redis.ping().addCallbacks(lambda _: None, self.down)

    def down(self, f: Failure) -> Failure:
        """
        Redis not answering in time, or a connection lost or not there, as
        L{StoreUnavailable}; anything else as it is.
        """
        if isinstance(f.value, DeferredTimeout):
            raise StoreUnavailable("Redis did not answer within %g s" % (self.redis.timeout,))
        if isinstance(f.value, (txredisapi.ConnectionError, ConnectionError)):
            raise StoreUnavailable("Redis is unreachable (%s)" % (f.getErrorMessage(),))
        return f

    def lastId(self, room: str) -> int:
        return 0

    def append(self, message: Message | Private, ref: str | None = None) -> Deferred[Message | Private]:
        if isinstance(message, Private):
            return cast("Deferred[Message | Private]", self.appendPrivate(message, ref, []))
        if not self.redis.connected:
            return fail(unavailable())
        room = message.room
        stored = message

        def store(_: object = None) -> Deferred[str]:
            # (an update, like a message, on its room's shard of the bus)
            if isinstance(stored, Update):
                return updates.update(
                    self.redis, stored, ref, self.node, self.refWindow, self.retainMessages, self.busShards
                )
            return scripts.say(self.redis, stored, ref, self.node, self.refWindow, self.retainMessages, self.busShards)

        subscribing = self.subscribing(room)
        d = store() if subscribing is None else subscribing.addCallback(store)
        if isinstance(message, Update):
            return self.redis.timed(d).addCallbacks(lambda raw: decodeAs(raw, RoomUpdate).event(), self._failed)
        return self.redis.timed(d).addCallbacks(lambda raw: decodeAs(raw, RoomMessage).event(), self._failed)

    def appendPrivate(self, message: Private, ref: str | None, channels: list[str]) -> Deferred[Private]:
        """
        Store C{message} and publish it on C{channels} (those of the other
        nodes where its sender or recipient is connected).
        """
        if not self.redis.connected:
            return fail(unavailable())
        retain = self.retainMessages * 10
        if isinstance(message, PrivateUpdate):
            u = updates.privateUpdate(self.redis, message, ref, self.node, self.refWindow, retain, channels)
            return self.redis.timed(u).addCallbacks(
                lambda raw: decodeAs(raw, PrivateUpdateMessage).event(), self._failed
            )
        d = scripts.private(self.redis, message, ref, self.node, self.refWindow, retain, channels)
        return self.redis.timed(d).addCallbacks(lambda raw: decodeAs(raw, PrivateMessage).event(), self._failed)

    def _failed(self, f: Failure) -> Failure:
        """
        Why a message was not stored, as the C{ChatError} its sender gets.
        """
        if isinstance(f.value, ChatError):
            return f
        if isinstance(f.value, txredisapi.ResponseError) and f.getErrorMessage().startswith("LOADING"):
            # Refused before anything ran (Redis restarted and is loading
            # its data; the node logs that once, see TroubleLog)
            raise unavailable("the message store is loading its data: not sent")
        why = "no answer within %g s" % (self.redis.timeout,) if isinstance(f.value, DeferredTimeout) else f.getErrorMessage()
        self._failures.unavailable("Redis did not confirm a message", why)
        raise ChatError(
            "unavailable",
            "the message store did not confirm this message (Redis: %s); it may have been stored: "
            "resend it with the same ref to be sure" % (why,),
        )

    def _range(self, key: str, start: str, end: str, count: int, reverse: bool = False) -> Deferred[list[str]]:
        if not self.redis.connected:
            return fail(StoreUnavailable("Redis is unreachable"))
        d = self.redis.entries(key, start, end, count, reverse)
        return self.redis.timed(d).addErrback(self.down)

    def _read(self, msgs: list[Message]) -> list[Message]:
        """
        Messages read from a room's stream carry the epoch Redis holds now:
        a read can be where this node first sees that Redis lost its data
        (the new epoch's messages are on their way over the bus), and the
        broker starts the rooms over before anyone gets them (see
        L{setEpoch}).
        """
        if msgs:
            self.setEpoch(msgs[-1].epoch, authoritative=False)
        return msgs

    def _entries(
        self, room: str, lo: int, hi: int, count: int, reverse: bool = False, messagesOnly: bool = False
    ) -> Deferred[list[str]]:
        """
        The bodies of a room's entries as they are now (see updates.READ).
        """
        if not self.redis.connected:
            return fail(StoreUnavailable("Redis is unreachable"))
        d = updates.read(self.redis, room, lo, hi, count, reverse, messagesOnly)
        return self.redis.timed(d).addErrback(self.down)

    def range(self, room: str, afterId: int, limit: int) -> Deferred[list[Message]]:
        """
        Up to C{limit} entries (messages and updates) of C{room} after
        C{afterId}, oldest first.
        """
        d = self._entries(room, afterId + 1, 0, limit)
        return d.addCallback(_messages).addCallback(self._read)

    def recent(self, room: str, limit: int, before: int | None = None) -> Deferred[list[Message]]:
        if limit <= 0 or (before is not None and before <= 1):
            return succeed([])
        d = self._entries(room, 1, 0 if before is None else before - 1, limit, reverse=True, messagesOnly=True)
        return d.addCallback(lambda bodies: self._read(_messages(bodies[::-1])))

    def get(self, room: str, id: int) -> Deferred[Message | None]:
        d = self._entries(room, id, id, 1)
        return d.addCallback(lambda bodies: _entry(bodies[0]) if bodies else None)

    def getPrivate(self, nick: str, id: int) -> Deferred[Private | None]:
        redis = self.redis

        def got(state: str | None) -> Deferred[Private | None] | Private:
            if state is not None:
                return _privateEntry(state)
            d = self._range(redis.key("pm", nickKey(nick)), "%d-1" % (id,), "%d-1" % (id,), 1)
            return d.addCallback(lambda bodies: _privateEntry(bodies[0]) if bodies else None)

        if not redis.connected:
            return fail(StoreUnavailable("Redis is unreachable"))
        return redis.timed(redis.hget(redis.key("pst"), str(id))).addCallbacks(got, self.down)

    #: the entries of each room a search or an unread count reads at most
    scanLimit = 5000

    def unread(self, room: str, nick: str, afterId: int) -> Deferred[tuple[int, int]]:
        """
        Counted in the last L{scanLimit} entries of the room.
        """
        key = nick.lower()

        def count(msgs: list[Message]) -> tuple[int, int]:
            unread = [m for m in msgs if m.kind == "message" and not m.deleted and m.sender.lower() != key]
            return len(unread), sum(1 for m in unread if mentionsNick(m.mentions, nick))

        d = self._entries(room, afterId + 1, 0, self.scanLimit, reverse=True, messagesOnly=True)
        return d.addCallback(_messages).addCallback(count)

    def saveRead(self, nickKey: str, room: str, id: int) -> Deferred[None]:
        redis = self.redis
        if not redis.connected:
            return fail(StoreUnavailable("Redis is unreachable"))
        return redis.timed(redis.hset(redis.key("read", nickKey), room, str(id))).addCallbacks(
            lambda _: None, self.down
        )

    def reads(self, nickKey: str) -> Deferred[dict[str, int]]:
        redis = self.redis
        if not redis.connected:
            return fail(StoreUnavailable("Redis is unreachable"))
        return redis.timed(redis.hgetall(redis.key("read", nickKey))).addCallbacks(
            lambda found: {room: int(id) for room, id in found.items()}, self.down
        )

    def search(
        self, rooms: list[str], nick: str | None, text: str, before: int | None, limit: int
    ) -> Deferred[list[Message | Private]]:
        """
        A bounded scan: the last L{scanLimit} entries of each room (and of
        the nick's private messages), matched word by word in this node.
        """
        words = searchWords(text)
        if not words:
            return succeed([])

        async def run() -> list[Message | Private]:
            found: list[Message | Private] = []
            for room in rooms:
                hi = 0 if before is None else before - 1
                if before is not None and before <= 1:
                    continue
                bodies = await self._entries(room, 1, hi, self.scanLimit, reverse=True, messagesOnly=True)
                found.extend(m for m in _messages(bodies) if not m.deleted and textMatches(words, m.text))
            if nick is not None:
                bodies = await self._range(self.redis.key("pm", nickKey(nick)), "-", "+", self.scanLimit, True)
                for p in _privates(bodies):
                    if p.kind == "private":
                        state = await self.redis.timed(self.redis.hget(self.redis.key("pst"), str(p.id)))
                        if state is not None:
                            p = _privateEntry(state)
                        if not p.deleted and textMatches(words, p.text):
                            found.append(p)
            found.sort(key=lambda m: (m.time, m.id), reverse=True)
            return found[:limit]

        return ensureDeferred(run())

    def since(self, room: str, epoch: str, afterId: int, limit: int) -> Deferred[list[Message] | None]:
        if epoch != self.epoch or afterId < 0:
            return succeed(None)
        if not self.redis.connected:
            return fail(StoreUnavailable("Redis is unreachable"))

        def got(last: str | None) -> Deferred[list[Message] | None] | list[Message] | None:
            verdict = resumePosition(afterId, int(last or 0), limit)
            if verdict != "fetch":
                return [] if verdict == "current" else None

            def check(msgs: list[Message]) -> list[Message] | None:
                if not msgs or msgs[0].id != afterId + 1 or msgs[0].epoch != epoch:
                    # (ids of a new epoch, if Redis lost its data since the
                    # epoch was read: no continuation of that position)
                    return None
                return msgs

            return self.range(room, afterId, limit).addCallback(check)

        return self.redis.timed(self.redis.get(self.redis.key("seq", room))).addCallbacks(got, self.down)

    def privateFor(self, nick: str, afterId: int | None, limit: int) -> Deferred[list[Private]]:
        if limit <= 0:
            return succeed([])
        start = "%d-1" % ((afterId or 0) + 1)
        d = self._range(self.redis.key("pm", nickKey(nick)), start, "+", limit, reverse=True)
        redis = self.redis

        def fold(msgs: list[Private]) -> Deferred[list[Private]] | list[Private]:
            if afterId is None:
                msgs = [m for m in msgs if m.kind == "private"]
            ids = [str(m.id) for m in msgs if m.kind == "private"]
            if not ids:
                return msgs

            def folded(states: list[str | None]) -> list[Private]:
                now = dict(zip(ids, states))
                return [
                    _privateEntry(now[str(m.id)]) if m.kind == "private" and now.get(str(m.id)) else m  # type: ignore[arg-type]
                    for m in msgs
                ]

            return redis.timed(redis.hmget(redis.key("pst"), ids)).addCallbacks(folded, self.down)

        return d.addCallback(lambda bodies: _privates(bodies[::-1])).addCallback(fold)

    def refs(self, sinceTime: float) -> list[tuple[str, str, Message | Private]]:
        # Refs live in Redis (checked by the storing script itself).
        return []

    def tokens(self) -> dict[str, str]:
        # Loaded with the rest of the shared state (RedisBroker.load).
        return {}

    def saveToken(self, key: str, tokenHash: str) -> Deferred[None]:
        """
        Share a nick's new owner token. While Redis is unreachable it is
        kept here and saved (unless another node saved one for that nick
        first) when the node loads the shared state again.
        """
        if not self.redis.connected:
            self.unsaved[key] = tokenHash
            return succeed(None)

        def later(f: Failure) -> None:
            self.unsaved[key] = tokenHash

        return self.redis.timed(self.shareToken(key, tokenHash)).addErrback(later)

    def shareToken(self, key: str, tokenHash: str) -> Deferred[None]:
        """
        Save the owner token (hash) of the nick with key C{key}, unless one
        is saved already, and tell the other nodes (L{TokenSaved}).
        """
        redis = self.redis

        def saved(new: bool) -> Deferred[object] | None:
            self.unsaved.pop(key, None)
            if new:
                return redis.publish(redis.key("bus"), encode(TokenSaved(node=self.node, key=key, hash=tokenHash)))
            return None

        d = redis.hsetnx(redis.key("tok"), key, tokenHash).addCallback(saved)
        return d.addCallbacks(lambda _: None, self.down)

    def prune(self, now: float) -> Deferred[int]:
        """
        Delete the messages past C{retainDays} and the state entries (of
        changed messages) their rooms' streams no longer keep; index the
        state entries of a version before the indexes first (once, see
        L{updates.indexState}).
        """
        redis = self.redis
        if not redis.connected:
            return succeed(0)

        async def run() -> int:
            await updates.indexState(redis)
            if not self.retainDays:
                return 0
            cutoff = now - self.retainDays * 86400
            total = 0
            for room in await redis.smembers(redis.key("rooms")):
                pruned = await scripts.prune(redis, room, cutoff)
                if pruned:
                    await updates.trimRoom(redis, room)
                total += pruned
            return total

        return ensureDeferred(run()).addErrback(self.down)
