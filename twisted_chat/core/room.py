# -*- test-case-name: tests.core.test_service -*-
"""
A room of one node: its members in joining order, how a message reaches
them (L{Room.fanOut}), its operators, bans and topic.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Any, Generic, Iterable, Protocol, TypeVar

from twisted_chat.core.events import Event


class RoomMember(Protocol):
    """
    What a room uses of its members (L{twisted_chat.core.member.Member}).
    """

    #: the connection (its optional C{fastSink}: see IChatClient)
    client: Any
    nick: str
    #: room name -> its gate, while that room's history is read (everything
    #: for the member then waits, in order: see twisted_chat.core.history)
    held: dict[str, Any] | None
    #: room name -> the last id of a history that ran ahead of this node
    floors: dict[str, int] | None


M = TypeVar("M", bound=RoomMember)


def sortedNicks(nicks: Iterable[str]) -> list[str]:
    """
    C{nicks} sorted as member lists show them (case-insensitively).
    """
    return sorted(nicks, key=str.lower)


class Room(Generic[M]):
    """
    A room and its members, in joining order.

    C{snapshot()} is the tuple a broadcast iterates over; it is rebuilt only
    when membership changes, so a broadcast neither copies the member list nor
    trips over a member that leaves in the middle of it.
    """

    __slots__ = (
        "name", "members", "_snapshot", "_fan", "ops", "bans", "banHosts", "topic", "topicBy", "topicAt", "presence",
        "serial", "notices",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        #: the members, in joining order, each with the room's serial
        #: number of its join (see L{serial})
        self.members: dict[M, int] = {}
        #: counts this room's joins and leaves (and those it hears of from
        #: other nodes): a notice is owed to the members that joined before it
        self.serial = 0
        #: join and leave notices not sent yet, (serial, event) in order:
        #: sent to the room all at once (see Notices.announce)
        self.notices: list[tuple[int, Event]] | None = None
        self._snapshot: tuple[M, ...] | None = None
        self._fan: tuple[Any, tuple[Any, ...], tuple[M, ...]] | None = None
        #: the room's operators (its creator first); a connection, not a nick,
        #: so nobody inherits operator rights by taking a nick
        self.ops: set[M] = set()
        #: banned nick keys and addresses
        self.bans: set[str] = set()
        #: nick key -> the address banned along with that nick (unbanned with it)
        self.banHosts: dict[str, str] = {}
        self.topic = ""
        self.topicBy = ""
        #: when the topic was set (0: not known, or no topic)
        self.topicAt = 0.0
        #: (limit, sorted nicks of the first `limit` members), or None
        self.presence: tuple[int, list[str]] | None = None

    def add(self, member: M, again: bool = False) -> None:
        """
        C{member} joins; C{again}: another connection of a nick already in
        the room (the member list names it once already).
        """
        self.serial += 1
        self.members[member] = self.serial
        self._snapshot = self._fan = None
        cached = self.presence
        if again:
            if cached is not None and len(self.members) > cached[0]:
                self.presence = None  # (a smaller room's list, cut at the limit)
        elif cached is not None and len(self.members) <= cached[0]:
            # One of the first cached[0]: in that list, in its place (a
            # member past them does not change it). Sorting the list again
            # for every join of a filling room was O(n log n) each.
            insort(cached[1], member.nick, key=str.lower)

    def remove(self, member: M, again: bool = False) -> None:
        """
        C{member} leaves; C{again}: the nick stays in the room through
        another connection (the member list keeps naming it).
        """
        present = self.members.pop(member, None) is not None
        cached = self.presence
        if again and present:
            if cached is not None and len(self.members) >= cached[0]:
                self.presence = None  # (the list was cut at the limit)
        elif present and cached is not None and len(self.members) < cached[0]:
            # The list had every member: out of it (in a bigger room, the
            # next member in joining order would take its place).
            nicks = cached[1]
            i = bisect_left(nicks, member.nick.lower(), key=str.lower)
            while i < len(nicks) and nicks[i] != member.nick:
                i += 1
            if i < len(nicks):
                del nicks[i]
            else:
                self.presence = None
        else:
            self.presence = None
        self.ops.discard(member)
        self._snapshot = self._fan = None

    def resetFanOut(self) -> None:
        """
        A member started or stopped waiting for this room's history (or
        for this node to catch up with it): L{fanOut} is built again.
        """
        self._fan = None

    def snapshot(self) -> tuple[M, ...]:
        s = self._snapshot
        if s is None:
            s = self._snapshot = tuple(self.members)
        return s

    def fanOut(self) -> tuple[Any, tuple[Any, ...], tuple[M, ...]]:
        """
        How a room message reaches the members: C{(fan, groups, others)}.
        Ms whose client offers a C{fastSink} (see L{IChatClient}) are
        handed to C{fan.broadcast(groups, event)} all at once, C{groups}
        being C{(key, sinks)} pairs (sinks of one key take the same bytes);
        the C{others} get C{deliver()} one by one. A member still fetching
        the history of any of its rooms is among the others (its events
        wait, in order, until that history is sent), and
        so is one whose history ran ahead of this node's deliveries (see
        C{member.floors}).
        Rebuilt only when membership changes (or a hold starts or ends).
        """
        f = self._fan
        if f is None:
            fan: Any = None
            groups: dict[str, list[Any]] = {}
            others: list[M] = []
            name = self.name
            for m in self.members:
                sink = getattr(m.client, "fastSink", None)
                held = m.held
                floor = m.floors
                if sink is None or held is not None or (floor is not None and name in floor):
                    others.append(m)
                    continue
                if fan is None:
                    fan = sink.batcher
                elif sink.batcher is not fan:
                    others.append(m)
                    continue
                groups.setdefault(sink.key, []).append(sink)
            f = self._fan = (fan, tuple((k, tuple(v)) for k, v in groups.items()), tuple(others))
        return f

    def noticeFan(self, first: int) -> tuple[Any, tuple[Any, ...], list[tuple[M, int]]]:
        """
        How the pending notices, the first of them numbered C{first}
        (see L{notices}), reach the members: C{(fan, groups, late)}. The
        C{groups} (as in L{fanOut}) are the fast connections owed every one
        of them (they joined before the first); the C{late}, with the
        serial of their join, are those to be given theirs one by one: the
        members that joined since, those without a fast sink, those
        reading a room's history (everything for them waits, in order) and those
        whose history ran ahead of this node.
        """
        fan: Any = None
        groups: dict[str, list[Any]] = {}
        late: list[tuple[M, int]] = []
        name = self.name
        for m, serial in self.members.items():
            sink = getattr(m.client, "fastSink", None)
            held = m.held
            floor = m.floors
            if (
                serial >= first
                or sink is None
                or held is not None
                or (floor is not None and name in floor)
            ):
                late.append((m, serial))
                continue
            if fan is None:
                fan = sink.batcher
            elif sink.batcher is not fan:
                late.append((m, serial))
                continue
            groups.setdefault(sink.key, []).append(sink)
        return fan, tuple((k, tuple(v)) for k, v in groups.items()), late
