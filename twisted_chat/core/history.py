# -*- test-case-name: tests.core.test_history -*-
"""
The history a member gets when it joins a room (or resumes in it), with no
gap and no duplicate against the live messages.

While the history is read (asynchronous with a database or Redis), the
room's live events are held for the joiner and released right after the
history, minus any message it already contained; held messages just before
the history's first one are put in front of it. Everything else for the
joiner waits meanwhile too, behind them (C{member.backlog}): its other
rooms' events and what is sent to it alone (private messages, read
positions…), so that a connection gets its events in the order they
happened, its own echoes in the order it sent them (a client that joins
and at once says something in the room, then sends a private message, sees
the room message first). When
the history runs ahead of this node's deliveries (a store shared by several
nodes), the member keeps a floor for the room (C{member.floors}): live
messages up to it are skipped (see L{twisted_chat.core.service.ChatService.broadcast}).

A read that fails (the store is unreachable, or did not answer in time) is
read again, with a growing delay, while the member stays in the room, its
events still held: once the store answers, the member gets what it missed
with no hole before the live messages. A member's events are held for
L{HOLD_FOR} seconds at most (answers to what it asks meanwhile wait with
them): then the history is sent empty, marked C{unavailable}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from twisted_chat.core.events import EpochChanged, Event, History, Message

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

    from twisted_chat.core.member import Member
    from twisted_chat.core.parts import Host


def withHeldBefore(messages: list[Message], held: list[Event]) -> list[Message]:
    """
    A joiner's history C{messages}, with the live messages held for it
    during the read that came just before them: a history of the last N
    messages can start after messages stored since the member joined (a
    burst while the store was slow), which it must see all the same.
    """
    first = messages[0]
    older = {
        ev.id: ev for ev in held if isinstance(ev, Message) and ev.epoch == first.epoch and ev.id < first.id
    }
    if not older:
        return messages
    before: list[Message] = []
    id = first.id - 1
    while id in older:
        before.append(older[id])
        id -= 1
    return before[::-1] + messages if before else messages


#: A join's history read that failed is read again, after this many
#: seconds, then twice as long each time up to L{RETRY_MAX_DELAY}, while the
#: member waits for it in the room (its events held), until L{HOLD_FOR}
#: seconds after the join; then the history is sent empty, marked
#: C{unavailable}, and the held events follow (a read still under way is
#: not waited for). The bound keeps every answer to the member within the
#: 15 s a client may wait (a Redis that stalls makes the first read fail
#: after its 10 s: there is room for one more).
RETRY_FIRST_DELAY = 0.5
RETRY_MAX_DELAY = 5.0
HOLD_FOR = 12.0

#: what a join's read gives: (messages, recovered, why not)
_Read = tuple[list[Message], Union[bool, None], str]


class Gate:
    """
    The place in a member's backlog where the history of C{room} goes,
    once read: nothing behind it is delivered before it.
    """

    __slots__ = ("room",)

    def __init__(self, room: str) -> None:
        self.room = room

    def __repr__(self) -> str:
        return "<Gate %s>" % (self.room,)


def _indexOf(backlog: list[Any], gate: Gate) -> int:
    for i, entry in enumerate(backlog):
        if entry is gate:
            return i
    raise ValueError("%r is not in the backlog" % (gate,))


class JoinHistory:
    """
    Sends joiners their history and holds live events meanwhile.
    """

    def __init__(self, host: Host) -> None:
        self.host = host
        #: how long a member's events wait for its history at most (see
        #: L{HOLD_FOR})
        self.holdFor = HOLD_FOR

    def fetch(self, member: Member, name: str, since: tuple[str, int] | None, fresh: bool = False) -> None:
        """
        Send C{member} the history of C{name} it needs after joining, holding
        back live events of that room until the history has been sent, so
        nothing arrives twice or out of order. The history of a member that
        brought the room to this node (C{fresh}) tells the broker where the
        room stands (see L{IBroker.readUpTo}).
        """
        held = Gate(name)
        if member.held is None:
            member.held = {}
            member.backlog = []
            for room in member.rooms.values():
                room.resetFanOut()  # (everything waits: off the fast path)
        member.held[name] = held
        member.backlog.append(held)  # type: ignore[union-attr]
        _Reading(self, member, name, since, fresh, held).attempt(RETRY_FIRST_DELAY)

    def _fetched(
        self,
        member: Member,
        name: str,
        held: Gate,
        result: _Read,
        since: tuple[str, int] | None,
        fresh: bool,
        read: tuple[int, int, int] | None,
    ) -> None:
        """
        The history of C{name} was read for C{member}: it takes the place
        of its gate in the member's backlog, followed by the room's live
        events held meanwhile that it does not hold already; then what is
        no longer behind a gate is delivered.
        """
        messages, recovered, reason = result
        holds = member.held
        backlog = member.backlog
        if member.gone or holds is None or backlog is None or holds.get(name) is not held:
            return
        del holds[name]
        at = _indexOf(backlog, held)
        after = backlog[at + 1 :]
        mine = [ev for room, ev in (e for e in after if type(e) is tuple) if room == name]
        if messages and mine:
            messages = withHeldBefore(messages, mine)
        # The epoch of the history: its messages' (older than the store's if
        # Redis lost its data during the read: the member is told of the new
        # one right after, see below).
        epoch = messages[-1].epoch if messages else self.host.store.epoch
        # Told of the epoch this history is already in (the read is where
        # this node saw it first): before the history, and what the room
        # said before that notice (of the epoch the history replaced)
        # before it, as everyone else got it.
        told = next((k for k, ev in enumerate(mine) if isinstance(ev, EpochChanged) and ev.epoch == epoch), -1)
        first: list[Any] = [(name, ev) for ev in mine[: told + 1]]
        moved = {id(ev) for ev in mine[: told + 1]}
        history = History(name, epoch, messages, recovered, reason, onJoin=True)
        history.read = read  # (where the nick's reading stands, for an owner)
        last = messages[-1].id if messages else 0
        if recovered is True and since is not None and since[0] == epoch:
            # (a resume: the member has everything up to its position, also
            # when nothing came after it)
            last = max(last, since[1])

        def stays(entry: Any) -> bool:
            if type(entry) is not tuple or entry[0] != name:
                return True
            ev = entry[1]
            if isinstance(ev, Message) and ev.epoch == epoch and ev.id <= last:
                return False  # (in the history)
            if id(ev) in moved:
                return False  # (sent before it)
            return True

        backlog[at:] = first + [(None, history)] + [e for e in after if stays(e)]
        if fresh and reason != "unavailable":
            self._readUpTo(name, messages, recovered, since)
        self.release(member)
        room = member.rooms.get(name)
        if last and epoch == self.host.store.epoch and room is not None and not member.gone:
            delivered = self.host.broker.deliveredUpTo(name)
            if delivered is not None and delivered < last:
                # The history holds messages this node has not delivered
                # yet: they are on their way, and must not come twice.
                if member.floors is None:
                    member.floors = {}
                member.floors[name] = last
                room.resetFanOut()  # (off the fast path until it has caught up)

    def release(self, member: Member) -> None:
        """
        Deliver what waits for C{member} up to the first history still
        being read; once none is, its events go straight to it again.
        """
        backlog = member.backlog
        if backlog is None or member.gone:
            return
        i = 0
        while i < len(backlog):
            entry = backlog[i]
            if type(entry) is not tuple:
                break  # (a gate)
            i += 1
            self.host.deliverNow(member, entry[1])
            if member.gone or member.backlog is not backlog:
                return
        del backlog[:i]
        if not backlog:
            member.backlog = member.held = None
            for room in member.rooms.values():
                room.resetFanOut()  # (back on the fast path)

    def _readUpTo(self, name: str, messages: list[Message], recovered: bool | None, since: tuple[str, int] | None) -> None:
        """
        Tell the broker where room C{name} stands, from the history read by
        the member that brought the room to this node.
        """
        broker = self.host.broker
        if messages:
            if messages[-1].epoch == self.host.store.epoch:
                broker.readUpTo(name, messages[-1].id)
        elif recovered is True and since is not None:
            broker.readUpTo(name, since[1])
        elif self.host.settings.historySize > 0:
            broker.readUpTo(name, 0)

    def dropFloor(self, member: Member, name: str) -> None:
        """
        C{member} has caught up with the history that ran ahead in room C{name}.
        """
        floor = member.floors
        if floor is not None and floor.pop(name, None) is not None:
            if not floor:
                member.floors = None
            room = member.rooms.get(name)
            if room is not None:
                room.resetFanOut()  # (back on the fast path)

    def forget(self, member: Member, name: str) -> None:
        """
        C{member} left room C{name}: nothing more is held for it there.
        """
        held = member.held
        backlog = member.backlog
        if held is not None and backlog is not None:
            gate = held.pop(name, None)
            if gate is not None:
                # Neither its history nor the room's events held for it.
                at = _indexOf(backlog, gate)
                backlog[at:] = [e for e in backlog[at + 1 :] if type(e) is not tuple or e[0] != name]
                self.release(member)
        if member.floors is not None:
            member.floors.pop(name, None)
            if not member.floors:
                member.floors = None


class _Reading:
    """
    One joiner's history read, read again while it fails and the member
    waits for it, until L{JoinHistory.holdFor} after the join.
    """

    def __init__(
        self, history: JoinHistory, member: Member, name: str, since: tuple[str, int] | None, fresh: bool, held: Gate
    ) -> None:
        self.history = history
        self.host = history.host
        self.member = member
        self.name = name
        self.since = since
        self.fresh = fresh
        self.held = held
        self.clock = self.host.clock
        self.endAt = self.clock.seconds() + history.holdFor
        # (scheduled at the first failure: a join whose read works costs no timer)
        self.deadline: IDelayedCall | None = None

    def waiting(self) -> bool:
        """
        Whether the member is still in the room, waiting for this history.
        """
        holds = self.member.held
        return not self.member.gone and holds is not None and holds.get(self.name) is self.held

    def attempt(self, delay: float) -> None:
        """
        Read the history (again after C{delay} seconds if this fails).
        """
        # The node must hear the room before its history is read (a sharded
        # bus subscribes first): what is said after the read then reaches
        # this member live, what was said before is in it.
        receiving = self.host.broker.receiving(self.name)
        d = self.read() if receiving is None else receiving.addCallback(lambda _: self.read())
        if self.member.owner:
            # (and where the nick's reading stands: read position, unread
            # and mention counts)
            d.addCallbacks(self._withReadState, self._failed, errbackArgs=(delay,))
        else:
            d.addCallbacks(self._done, self._failed, errbackArgs=(delay,))

    def read(self) -> Deferred[_Read]:
        store = self.host.store
        if self.since is None:
            return self._recent("", None)
        epoch, afterId = self.since

        def resumed(msgs: list[Message] | None) -> _Read | Deferred[_Read]:
            if msgs is None:
                why = "epoch" if epoch != store.epoch else "gap"
                return self._recent(why, False)
            return (msgs, True, "")

        return store.since(self.name, epoch, afterId, self.host.resumeLimit).addCallback(resumed)

    def _recent(self, reason: str, recovered: bool | None) -> Deferred[_Read]:
        return self.host.store.recent(self.name, self.host.settings.historySize).addCallback(
            lambda msgs: (msgs, recovered, reason)
        )

    def _withReadState(self, result: _Read) -> Deferred[None]:
        def noRead(f: Failure) -> None:
            self.host.logStoreFailure("read position of {nick} failed", f, nick=self.member.nick)

        return (
            self.host.conversation.readState(self.member, self.name)
            .addErrback(noRead)
            .addCallback(lambda read: self._done(result, read))
        )

    def _done(self, result: _Read, read: tuple[int, int, int] | None = None) -> None:
        self._stopDeadline()
        self.history._fetched(self.member, self.name, self.held, result, self.since, self.fresh, read)

    def _failed(self, f: Failure, delay: float) -> None:
        self.host.logStoreFailure("history of {room} failed", f, room=self.name)
        now = self.clock.seconds()
        if not self.waiting():
            self._stopDeadline()
        elif now + delay < self.endAt:
            if self.deadline is None:
                self.deadline = self.clock.callLater(self.endAt - now, self._giveUp)
            # Read again (the room's events still held for the member): the
            # store is usually back within seconds (Redis stalled or
            # restarting), and the member then gets what it missed with no
            # hole before the live messages.
            self.clock.callLater(delay, self._retry, min(delay * 2, RETRY_MAX_DELAY))
        else:
            self._stopDeadline()
            self._giveUp()

    def _retry(self, delay: float) -> None:
        if self.waiting():
            self.attempt(delay)
        else:
            self._stopDeadline()

    def _giveUp(self) -> None:
        if self.waiting():
            self._done(([], False if self.since is not None else None, "unavailable"))

    def _stopDeadline(self) -> None:
        if self.deadline is not None and self.deadline.active():
            self.deadline.cancel()
