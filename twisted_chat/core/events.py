# -*- test-case-name: tests.core.test_service -*-
"""
What the service tells front-ends.

Events are small immutable-by-convention objects shared by every recipient
of one broadcast. A front-end renders an event once and keeps the result in
the event's C{cache} dict (keyed by the front-end's format), so a message sent
to a thousand line users is encoded once, not a thousand times.
"""

from __future__ import annotations

from typing import Any, ClassVar


class Event:
    """
    Base class: C{kind} names the event, C{cache} holds renderings.
    """

    __slots__ = ("cache",)
    kind: ClassVar[str] = "event"

    def __init__(self) -> None:
        self.cache: dict[str, Any] = {}


class Message(Event):
    """
    A message said in a room.
    """

    __slots__ = ("room", "id", "epoch", "sender", "text", "time", "action")
    kind = "message"

    def __init__(
        self,
        room: str,
        id: int,
        epoch: str,
        sender: str,
        text: str,
        time: float,
        action: bool = False,
    ) -> None:
        Event.__init__(self)
        self.room = room
        self.id = id
        self.epoch = epoch
        self.sender = sender
        self.text = text
        self.time = time
        self.action = action

    def __repr__(self) -> str:
        return "<Message %s/%s:%d %s: %r>" % (
            self.room,
            self.epoch,
            self.id,
            self.sender,
            self.text,
        )


class Private(Event):
    """
    A private message from C{sender} to C{recipient}.
    """

    __slots__ = ("id", "sender", "recipient", "text", "time")
    kind = "private"

    def __init__(
        self, id: int, sender: str, recipient: str, text: str, time: float
    ) -> None:
        Event.__init__(self)
        self.id = id
        self.sender = sender
        self.recipient = recipient
        self.text = text
        self.time = time


class Joined(Event):
    """
    C{nick} joined C{room}.
    """

    __slots__ = ("room", "nick", "time")
    kind = "join"

    def __init__(self, room: str, nick: str, time: float) -> None:
        Event.__init__(self)
        self.room = room
        self.nick = nick
        self.time = time


class Parted(Event):
    """
    C{nick} left C{room}; C{reason} says why ("left", "quit", "disconnected"…).
    """

    __slots__ = ("room", "nick", "reason", "time")
    kind = "part"

    def __init__(self, room: str, nick: str, reason: str, time: float) -> None:
        Event.__init__(self)
        self.room = room
        self.nick = nick
        self.reason = reason
        self.time = time


class NickChanged(Event):
    """
    C{old} is now known as C{new}; C{rooms} are the rooms the recipient shares
    with them (for the recipient itself: all its rooms).
    """

    __slots__ = ("old", "new", "rooms", "time")
    kind = "nick"

    def __init__(self, old: str, new: str, rooms: tuple[str, ...], time: float) -> None:
        Event.__init__(self)
        self.old = old
        self.new = new
        self.rooms = rooms
        self.time = time


class TopicChanged(Event):
    """
    The topic of C{room} is C{topic} (set by C{by}; C{""} clears it).
    """

    __slots__ = ("room", "topic", "by", "time")
    kind = "topic"

    def __init__(self, room: str, topic: str, by: str, time: float) -> None:
        Event.__init__(self)
        self.room = room
        self.topic = topic
        self.by = by
        self.time = time


class AwayChanged(Event):
    """
    C{nick} is away with the message C{away}, or back (C{away} is C{""});
    told to the members that share a room with it.
    """

    __slots__ = ("nick", "away", "time")
    kind = "away"

    def __init__(self, nick: str, away: str, time: float) -> None:
        Event.__init__(self)
        self.nick = nick
        self.away = away
        self.time = time


class EpochChanged(Event):
    """
    The message history of C{room} was lost (a store shared by several
    nodes came back empty): its id sequence starts again from 1 in epoch
    C{epoch}. Positions a client kept in C{previous} are gone.
    """

    __slots__ = ("room", "epoch", "previous", "time")
    kind = "epoch"

    def __init__(self, room: str, epoch: str, previous: str, time: float) -> None:
        Event.__init__(self)
        self.room = room
        self.epoch = epoch
        self.previous = previous
        self.time = time


class Presence(Event):
    """
    The members of C{room}, sorted case-insensitively.
    """

    __slots__ = ("room", "members", "total")
    kind = "presence"

    def __init__(self, room: str, members: list[str], total: int | None = None) -> None:
        Event.__init__(self)
        self.room = room
        self.members = members
        #: in a big room, C{members} lists only some: the total is here
        self.total = total


class History(Event):
    """
    Past messages of C{room}, oldest first.

    C{recovered} is C{None} for a plain history request, C{True} when a
    resume found exactly the missed messages, C{False} when the requested
    position was gone and C{messages} is the recent history instead.
    C{reason} says why on C{False}.
    """

    __slots__ = ("room", "epoch", "messages", "recovered", "reason", "onJoin")
    kind = "history"

    def __init__(
        self,
        room: str,
        epoch: str,
        messages: list[Message],
        recovered: bool | None = None,
        reason: str = "",
        onJoin: bool = False,
    ) -> None:
        Event.__init__(self)
        self.room = room
        self.epoch = epoch
        self.messages = messages
        self.recovered = recovered
        self.reason = reason
        self.onJoin = onJoin


class RoomList(Event):
    """
    All rooms with their member counts, sorted by name.
    """

    __slots__ = ("rooms",)
    kind = "rooms"

    def __init__(self, rooms: list[tuple[str, int]]) -> None:
        Event.__init__(self)
        self.rooms = rooms


class Notice(Event):
    """
    A server notice for people (shutdown, admin broadcast…).
    """

    __slots__ = ("text",)
    kind = "notice"

    def __init__(self, text: str) -> None:
        Event.__init__(self)
        self.text = text


class PrivateHistory(Event):
    """
    Private messages to or from the recipient that it missed while away.
    """

    __slots__ = ("messages",)
    kind = "private-history"

    def __init__(self, messages: list[Private]) -> None:
        Event.__init__(self)
        self.messages = messages
