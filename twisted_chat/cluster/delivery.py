# -*- test-case-name: tests.cluster.test_redis -*-
"""
Room messages from the bus to this node's members (L{RoomDelivery}): in id
order, each once, with the gaps the bus left (a subscription lost while
Redis restarted) filled from the room's stream first.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_chat.cluster.protocol import RoomMessage, RoomUpdate
from twisted_chat.cluster.store import RedisStore
from twisted_chat.core.events import Message
from twisted_chat.core.interfaces import IClusterEvents


class RoomDelivery:
    """
    Each node remembers the last id it delivered per room. A message that
    comes after a gap makes it read the missing ones from the stream and
    deliver them first, holding newer ones back meanwhile; ids delivered
    already are dropped. A sender's acknowledgement waits until its own
    node has delivered its message (L{acknowledged}), so the echo comes
    before the ack.
    """

    _log = Logger()

    #: longest wait of an acknowledgement for this node's own delivery
    ackTimeout = 5.0

    def __init__(self, store: RedisStore, clock: IReactorTime, events: Callable[[], IClusterEvents]) -> None:
        self.store = store
        self.clock = clock
        self._events = events
        #: room -> the last message id delivered on this node
        self.lastIds: dict[str, int] = {}
        #: rooms whose gap is being filled -> bus messages waiting meanwhile
        self.filling: dict[str, list[RoomMessage | RoomUpdate]] = {}
        #: (room, id) -> acknowledgements waiting for this node's delivery
        self.waiters: dict[tuple[str, int], list[Deferred[Message | None]]] = {}

    def acknowledged(self, message: Message) -> Message | Deferred[Message]:
        """
        C{message}, stored; once this node has delivered it (the bus brings
        it, in id order with everyone else's), or at once if it has already.
        """
        if not self.store.setEpoch(message.epoch, authoritative=False):
            return message
        room, id = message.room, message.id
        if self.lastIds.get(room, 0) >= id and room not in self.filling:
            return message
        d: Deferred[Message | None] = Deferred()
        waiting = self.waiters.setdefault((room, id), [])
        waiting.append(d)

        def late(result: object, timeout: float) -> Message:
            # Stored, but this node has not seen it come back yet: it will
            # be delivered when the bus (or the catch-up) brings it.
            if d in waiting:
                waiting.remove(d)
            return message

        d.addTimeout(self.ackTimeout, self.clock, onTimeoutCancel=late)
        return d.addCallback(lambda _: message)

    def received(self, message: RoomMessage | RoomUpdate) -> None:
        """
        C{message} came by the bus.
        """
        room = message.room
        pending = self.filling.get(room)
        if pending is not None:
            pending.append(message)
            return
        if not self.store.setEpoch(message.epoch, authoritative=False):
            return  # (of an epoch Redis no longer has)
        pending = self.filling.get(room)
        if pending is not None:
            # (this message showed a new epoch, and the messages held back
            # meanwhile started filling the room from its first one)
            pending.append(message)
            return
        id = message.id
        last = self.lastIds.get(room)
        if last is not None and id <= last:
            return
        local = self._events().hasRoom(room)
        if not local and not self.waiters:
            # (no member here: nothing to deliver, only the position)
            self.lastIds[room] = id
            return
        if last is not None and id > last + 1 and local:
            self.filling[room] = [message]
            self._fill(room, last)
            return
        self._deliver(room, id, message.event())

    def _deliver(self, room: str, id: int, msg: Message) -> None:
        self.lastIds[room] = id
        self._events().deliverMessage(msg)
        if self.waiters:
            for key in [k for k in self.waiters if k[0] == room and k[1] <= id]:
                for d in self.waiters.pop(key):
                    d.callback(msg)

    def _fill(self, room: str, last: int) -> Deferred[None]:
        """
        Deliver what the bus did not bring (after C{last}) from the stream,
        then what waited meanwhile.
        """
        store = self.store
        epoch = store.epoch

        def got(msgs: list[Message]) -> None:
            if store.epoch != epoch:
                return  # (Redis was reset meanwhile: epochChanged started over)
            for msg in msgs:
                if msg.id > self.lastIds.get(room, 0):
                    self._deliver(room, msg.id, msg)
            for message in self.filling.pop(room, []):
                self.received(message)

        def failed(f: Failure) -> None:
            if store.epoch != epoch:
                return
            self._log.warn("could not fetch missed messages of {room}: {why}", room=room, why=f.getErrorMessage())
            waiting = self.filling.pop(room, [])
            if waiting:
                # Deliver on rather than hold the room back forever.
                self.lastIds[room] = waiting[0].id - 1
                for message in waiting:
                    self.received(message)

        return store.range(room, last, 10000).addCallbacks(got, failed)

    def deliveredUpTo(self, room: str) -> int:
        return self.lastIds.get(room, 0)

    def readUpTo(self, room: str, id: int) -> None:
        """
        The member that brought C{room} to this node read its history up to
        its latest message, C{id}. If no message of that room has come by
        the bus since this node started, that is where its delivery starts:
        without a position, a gap (the subscription lost, messages said
        meanwhile) could not be told from a first message, and would not be
        filled. (Only that member's read: a later joiner's history can run
        ahead of messages still on their way to the members already here.)
        """
        if room not in self.lastIds and room not in self.filling:
            self.lastIds[room] = id

    def forget(self, which: Callable[[str], bool]) -> None:
        """
        Forget the positions of the rooms C{which} selects (this node no
        longer hears them: see L{twisted_chat.cluster.shards}); a room
        whose gap is being filled keeps its own.
        """
        for room in [r for r in self.lastIds if which(r) and r not in self.filling]:
            del self.lastIds[room]

    def epochChanged(self, previous: str, epoch: str) -> None:
        """
        Redis came back without its data (no persistence, or a failover to
        an empty replica): ids start again at 1. Positions of the old epoch
        are void; the rooms with members here are delivered from the new
        epoch's first message on (by the catch-up after the reload, or by a
        fill when a message shows the gap), and their members are told.
        """
        events = self._events()
        self.lastIds = {room: 0 for room in events.localRooms()}
        # Bus messages of the new epoch held back behind a gap of the old
        # one (or behind the read that showed the new epoch) are delivered
        # in the new epoch's order, below.
        held = [m for waiting in self.filling.values() for m in waiting if m.epoch == epoch]
        self.filling.clear()
        # (acknowledgements waiting for old-epoch messages: those are gone)
        waiters, self.waiters = self.waiters, {}
        for ds in waiters.values():
            for d in ds:
                d.callback(None)
        events.epochChanged(previous, epoch)
        for message in held:
            self.received(message)

    async def catchUp(self, current: Callable[[], bool]) -> None:
        """
        After (re)subscribing: deliver what this node's rooms missed (until
        C{current} says this subscription is gone).
        """
        for room in self._events().localRooms():
            if not current():
                return
            last = self.lastIds.get(room)
            if last is None or room in self.filling:
                continue
            self.filling[room] = []
            await self._fill(room, last)
