# -*- test-case-name: tests.core.test_notices,tests.core.test_service -*-
"""
Join and leave notices told to a room together: the member that joins or
leaves at once, the others with the room's other notices of the next
L{NOTICE_DELAY} seconds (one loop over the room for all of them), or
before anything else that is said in the room or by one of them.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

if TYPE_CHECKING:
    from twisted_chat.core.events import Event
    from twisted_chat.core.member import Member
    from twisted_chat.core.parts import Host
    from twisted_chat.core.room import Room

#: how long the daemon lets join and leave notices wait to go to a room
#: together (see Notices.announce): as long as a lazy write waits
NOTICE_DELAY = 0.2


class Notices:
    """
    The join and leave notices of the service's rooms, and when they go.
    """

    _log = Logger()

    def __init__(self, host: Host, noticeDelay: float | None) -> None:
        self.host = host
        #: join and leave notices wait this long (at most) to go to a room
        #: together (see announce); None: each goes at once (the daemon
        #: gives NOTICE_DELAY)
        self.noticeDelay = noticeDelay
        self._noticeRooms: dict[Room[Member], None] = {}
        self._noticeCall: Any = None

    def stop(self) -> None:
        """
        The service stops: send every pending notice now.
        """
        if self._noticeCall is not None:
            self._noticeCall.cancel()
        self.flushAllNotices()

    def announce(self, room: Room[Member], event: Event, subject: Member | None = None) -> None:
        """
        Tell C{room} of a join or a leave (C{event}): C{subject}, the member
        that joins or leaves, at once (a member that leaves first gets the
        notices still owed to it, then is taken out of the room); the other
        members all at once, with the room's
        other notices of the next L{noticeDelay} seconds (one loop over the
        room for all of them, instead of one delivery per member for each),
        or before anything else that is said in the room or by one of them
        (see L{noticesFirst}). A member is told only of the joins and
        leaves that came after its own join.
        """
        serial = 0
        if subject is not None:
            if event.kind == "join":
                serial = room.members.get(subject, 0)
                self.host.send(subject, event)
            else:
                if room.notices is not None:
                    self._catchUp(room, subject)
                self.host.send(subject, event)
                room.remove(subject)
        if not serial:
            room.serial += 1
            serial = room.serial
        pending = room.notices
        if pending is None:
            pending = room.notices = []
            self._noticeRooms[room] = None
            if self._noticeCall is None and self.noticeDelay is not None:
                self._noticeCall = self.host.clock.callLater(self.noticeDelay, self.flushAllNotices)
        pending.append((serial, event))
        if self.noticeDelay is None:
            self.flushNotices(room)

    def _catchUp(self, room: Room[Member], member: Member) -> None:
        """
        C{member} leaves C{room}: first the notices still owed to it.
        """
        mine = room.members.get(member, 0)
        for serial, event in room.notices or ():
            if serial > mine:
                self._deliverIn(room.name, member, event)

    def _deliverIn(self, name: str, member: Member, event: Event) -> bool:
        """
        One event of room C{name} to C{member} (held while it reads the
        room's history); False if that failed (logged).
        """
        if member.held is not None:
            # (behind a history being read: in order, see core.history)
            member.backlog.append((name, event))  # type: ignore[union-attr]
            return True
        try:
            member.client.deliver(event)
        except Exception:
            self._log.failure("delivery to {nick} failed; dropping it", nick=member.nick)
            return False
        return True

    def noticesFirst(self, member: Member) -> None:
        """
        Send the pending join and leave notices of C{member}'s rooms now:
        something it does is about to be told to the others (a nick or
        away change), which must not come before its join.
        """
        for room in member.rooms.values():
            if room.notices is not None:
                self.flushNotices(room)

    def flushAllNotices(self) -> None:
        """
        Send the pending join and leave notices of every room.
        """
        self._noticeCall = None
        rooms, self._noticeRooms = self._noticeRooms, {}
        for room in rooms:
            self.flushNotices(room)

    def flushNotices(self, room: Room[Member]) -> None:
        """
        Send C{room}'s pending join and leave notices: the members that
        were there before the first get them all at once (see
        L{Room.noticeFan}); the others, one by one, those that came after
        their own join.
        """
        pending = room.notices
        room.notices = None
        self._noticeRooms.pop(room, None)
        if not pending:
            return
        fan, groups, late = room.noticeFan(pending[0][0])
        if groups:
            for _, event in pending:
                fan.broadcast(groups, event)
        failed: list[Member] | None = None
        name = room.name
        serials = [serial for serial, _ in pending]
        tails: dict[str, tuple[memoryview, list[int]]] = {}
        for m, mine in late:
            # (the notices after its own join: a tail of the pending ones)
            start = bisect_right(serials, mine)
            if start == len(serials):
                continue
            if self._takeTail(name, m, pending, start, tails):
                continue
            for _, event in pending[start:]:
                if not self._deliverIn(name, m, event):
                    if failed is None:
                        failed = []
                    failed.append(m)
                    break
        if failed is not None:
            for m in failed:
                self.host.dropFailed(m)

    @staticmethod
    def _takeTail(
        name: str,
        member: Member,
        pending: list[tuple[int, Event]],
        start: int,
        tails: dict[str, tuple[memoryview, list[int]]],
    ) -> bool:
        """
        Write C{pending[start:]} to C{member}'s fast connection in one go
        (a member that joined while the notices waited: filling a room, many
        do, each owed most of them), if it takes bytes now and is not
        reading the room's history; False if it must get them one by one.
        The bytes of all the pending notices are joined once per kind of
        connection (C{tails}: key -> the bytes and where each notice starts
        in them) and each member takes a view of its tail, not a copy.
        """
        client: Any = member.client
        sink = getattr(client, "fastSink", None)
        if sink is None or not client.fastOpen():
            return False
        floors = member.floors
        if member.held is not None or (floors is not None and name in floors):
            return False  # (held: behind a history being read, in order)
        known = tails.get(sink.key)
        if known is None:
            frame = client.fastFrame
            frames = [frame(event) for _, event in pending]
            offsets = [0]
            for f in frames:
                offsets.append(offsets[-1] + len(f))
            known = tails[sink.key] = (memoryview(b"".join(frames)), offsets)
        view, offsets = known
        tail = view[offsets[start] :]
        return not tail or bool(sink.take(tail))
