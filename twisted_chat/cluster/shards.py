# -*- test-case-name: tests.cluster.test_shards -*-
"""
The sharded bus (L{Shards}): room messages travel on one of a fixed number
of channels (C{PREFIX:bus:S}, S the room's shard: L{shardOf}), and a node
subscribes only to the shards of the rooms it has members in.

A node subscribes to a room's shard I{before} its first member's history
is read (L{Shards.want} gives the join a Deferred to wait for): every
message stored after that read comes over the subscription, every message
before it is in the history, so the joiner misses nothing and the history
machinery (L{twisted_chat.core.history}) drops what comes twice. A shard
whose last room here emptied is kept for C{linger} seconds (a room whose
last member leaves and comes back does not make the node unsubscribe and
subscribe again); when it is let go, the positions of its rooms are
forgotten (see L{twisted_chat.cluster.delivery.RoomDelivery.forget}): the
node no longer hears them, and its next member there starts from the
history it reads, like a room this node never had.

Every SUBSCRIBE and UNSUBSCRIBE names one channel: txredisapi matches one
reply to one command, and a command naming several channels gets a reply
per channel (the later ones would be taken for the answers of the commands
sent next).
"""

from __future__ import annotations

from typing import Callable, Iterable, Protocol
from zlib import crc32

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure


#: shards of a cluster's bus unless told otherwise (--bus-shards)
DEFAULT_SHARDS = 4096


def shardOf(room: str, count: int) -> int:
    """
    The shard of C{room} among C{count}: the same on every node and every
    version (CRC-32 of the room's UTF-8 name), whatever Python's hash seed.
    """
    return crc32(room.encode("utf-8")) % count


class Subscriber(Protocol):
    """
    What L{Shards} uses of the subscribed connection.
    """

    def subscribe(self, channels: str) -> Deferred[object]: ...

    def unsubscribe(self, channels: str) -> Deferred[object]: ...


class Shards:
    """
    The shards this node is subscribed to, on one subscribed connection at
    a time (L{attach}; L{lost} when it goes).
    """

    _log = Logger()

    #: seconds a shard stays subscribed after its last room here emptied
    linger = 30.0

    def __init__(
        self,
        count: int,
        channel: Callable[[int], str],
        clock: IReactorTime,
        localRooms: Callable[[], Iterable[str]],
        forget: Callable[[Callable[[str], bool]], None],
        changed: Callable[[], object] = lambda: None,
    ) -> None:
        #: how many shards (0: none, every room message on the common bus)
        self.count = count
        self._channel = channel
        self._clock = clock
        self._localRooms = localRooms
        #: forget the positions of the rooms this predicate selects
        self._forget = forget
        #: called after each subscription made or let go (a hook for tests)
        self._changed = changed
        self._subscriber: Subscriber | None = None
        #: shard -> the rooms of it with members here (or joining)
        self.rooms: dict[int, set[str]] = {}
        #: shards whose SUBSCRIBE was answered (and no UNSUBSCRIBE sent since)
        self.subscribed: set[int] = set()
        #: shards whose SUBSCRIBE is on its way -> joins waiting for it
        self.pending: dict[int, list[Deferred[None]]] = {}
        #: shards let go of, not yet answered
        self.leaving: set[int] = set()
        #: shards without rooms here, each let go of when its timer runs out
        self._timers: dict[int, IDelayedCall] = {}

    def channelOf(self, room: str) -> str:
        """
        The channel of C{room}'s shard.
        """
        return self._channel(shardOf(room, self.count))

    # What the node's rooms need

    def want(self, room: str) -> Deferred[None] | None:
        """
        C{room} has (or is about to have) members here: None if this node
        hears its shard already (or has no subscription at all now: it
        subscribes to every shard it needs when it subscribes again, and
        catches its rooms up then), else a Deferred that fires once it
        does.
        """
        if not self.count:
            return None
        shard = shardOf(room, self.count)
        self.rooms.setdefault(shard, set()).add(room)
        timer = self._timers.pop(shard, None)
        if timer is not None:
            timer.cancel()
        if shard in self.subscribed or self._subscriber is None:
            return None
        d: Deferred[None] = Deferred()
        if shard not in self.pending:
            # (its failure: the connection is lost, see lost())
            self._subscribe(self._subscriber, shard).addErrback(lambda f: None)
        self.pending[shard].append(d)
        return d

    def ready(self, room: str) -> Deferred[None] | None:
        """
        A Deferred that fires once the SUBSCRIBE on its way for C{room}'s
        shard is answered (None if there is none). A message said in a
        room whose first member is still waiting for it is stored after it
        (see L{twisted_chat.cluster.store.RedisStore.append}): after that
        member's history read, so it reaches the member live, and after
        the subscription, so this node hears it (and acknowledges it at
        once).
        """
        if not self.count or not self.pending:
            return None
        waiting = self.pending.get(shardOf(room, self.count))
        if waiting is None:
            return None
        d: Deferred[None] = Deferred()
        waiting.append(d)
        return d

    def release(self, room: str) -> None:
        """
        C{room} has no member here any more: its shard is let go of
        C{linger} seconds after its last room here emptied.
        """
        if not self.count:
            return
        shard = shardOf(room, self.count)
        rooms = self.rooms.get(shard)
        if rooms is None:
            return
        rooms.discard(room)
        if rooms:
            return
        del self.rooms[shard]
        if shard in self._timers:
            return
        self._timers[shard] = self._clock.callLater(self.linger, self._expire, shard)

    def _expire(self, shard: int) -> None:
        del self._timers[shard]
        if shard in self.rooms:
            return
        subscriber = self._subscriber
        if subscriber is None:
            return
        if shard in self.subscribed:
            self.subscribed.discard(shard)
            self.leaving.add(shard)
            d = subscriber.unsubscribe(self._channel(shard))
            d.addCallbacks(lambda _: self._unsubscribed(subscriber, shard), lambda f: None)

    def _unsubscribed(self, subscriber: Subscriber, shard: int) -> None:
        if subscriber is not self._subscriber:
            return
        self.leaving.discard(shard)
        if shard not in self.subscribed and shard not in self.pending:
            # (no longer heard: positions of its rooms would go stale)
            count = self.count
            local = set(self._localRooms())
            self._forget(lambda room: room not in local and shardOf(room, count) == shard)
        self._changed()

    def _subscribe(self, subscriber: Subscriber, shard: int) -> Deferred[None]:
        waiting: list[Deferred[None]] = []
        self.pending[shard] = waiting
        done: Deferred[None] = Deferred()

        def subscribed(_: object) -> None:
            if subscriber is self._subscriber and self.pending.get(shard) is waiting:
                del self.pending[shard]
                self.subscribed.add(shard)
                for d in waiting:
                    if not d.called:  # (a join that gave up waiting)
                        d.callback(None)
                if shard not in self.rooms and shard not in self._timers:
                    # (its rooms emptied while it was being made)
                    self._timers[shard] = self._clock.callLater(self.linger, self._expire, shard)
            done.callback(None)
            self._changed()

        def failed(f: Failure) -> None:
            # (the connection went: lost() releases the joins waiting)
            done.errback(f)

        subscriber.subscribe(self._channel(shard)).addCallbacks(subscribed, failed)
        return done

    # The connection

    def attach(self, subscriber: Subscriber) -> list[Deferred[None]]:
        """
        A new subscribed connection: subscribe to the shard of every room
        with members here; one Deferred per shard, each firing once it is
        subscribed.
        """
        self._reset()
        self._subscriber = subscriber
        if not self.count:
            return []
        self.rooms = {}
        for room in self._localRooms():
            self.rooms.setdefault(shardOf(room, self.count), set()).add(room)
        return [self._subscribe(subscriber, shard) for shard in sorted(self.rooms)]

    def lost(self) -> None:
        """
        The subscribed connection is gone (or given up): nothing is heard
        until the next one. Joins waiting go ahead (the node catches their
        rooms up once subscribed again), and positions of rooms without
        members here are forgotten (they will be behind).
        """
        self._subscriber = None
        self._reset()
        local = set(self._localRooms())
        self._forget(lambda room: room not in local)

    def stop(self) -> None:
        """
        The node is stopping: no shard is let go of any more (its
        connection goes with it).
        """
        for timer in self._timers.values():
            timer.cancel()
        self._timers = {}

    def _reset(self) -> None:
        waiting = [d for ds in self.pending.values() for d in ds]
        self.pending = {}
        self.subscribed = set()
        self.leaving = set()
        for timer in self._timers.values():
            timer.cancel()
        self._timers = {}
        for d in waiting:
            if not d.called:
                d.callback(None)
