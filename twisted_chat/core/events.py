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

    __slots__ = (
        "room", "id", "epoch", "sender", "text", "time", "action", "mentions", "replyTo", "edited", "deleted",
        "reactions",
    )
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
        mentions: tuple[str, ...] = (),
        replyTo: int = 0,
        edited: float = 0.0,
        deleted: bool = False,
        reactions: dict[str, list[str]] | None = None,
    ) -> None:
        Event.__init__(self)
        self.room = room
        self.id = id
        self.epoch = epoch
        self.sender = sender
        self.text = text
        self.time = time
        self.action = action
        #: the nicks the text mentions, as typed (computed once, when said)
        self.mentions = mentions
        #: the id of the message of the same room this one answers, or 0
        self.replyTo = replyTo
        #: the time of its last edit, or 0
        self.edited = edited
        #: deleted: C{text} is C{""}
        self.deleted = deleted
        #: emoji -> the nicks that reacted with it, in order (None: none)
        self.reactions = reactions

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

    __slots__ = ("id", "sender", "recipient", "text", "time", "mentions", "replyTo", "edited", "deleted", "reactions")
    kind = "private"

    def __init__(
        self,
        id: int,
        sender: str,
        recipient: str,
        text: str,
        time: float,
        replyTo: int = 0,
        edited: float = 0.0,
        deleted: bool = False,
        reactions: dict[str, list[str]] | None = None,
    ) -> None:
        Event.__init__(self)
        self.id = id
        self.sender = sender
        self.recipient = recipient
        self.text = text
        self.time = time
        #: (a private message mentions nobody: it has one reader)
        self.mentions: tuple[str, ...] = ()
        self.replyTo = replyTo
        self.edited = edited
        self.deleted = deleted
        self.reactions = reactions


#: what an update does to its message
EDIT, DELETE, REACT = "edit", "delete", "react"


class Update(Message):
    """
    An edit, deletion or reaction of message C{target} of C{room}: an entry
    of the room's sequence with an id of its own (C{id}, the "seq" of json
    mode), stored, delivered and resumed in id order with the messages.

    C{sender} is who did it; C{text} the new text of an edit (C{""}
    otherwise, and once the message was deleted); C{emoji} and C{on} a
    reaction's; C{original} the start of the text before (for the line
    chat's notices; not stored); C{author} the message's author.
    """

    __slots__ = ("op", "target", "emoji", "on", "original", "author")
    kind = "update"

    def __init__(
        self,
        room: str,
        id: int,
        epoch: str,
        sender: str,
        op: str,
        target: int,
        text: str,
        time: float,
        emoji: str = "",
        on: bool = True,
        mentions: tuple[str, ...] = (),
        original: str = "",
        author: str = "",
    ) -> None:
        Message.__init__(self, room, id, epoch, sender, text, time, False, mentions)
        self.op = op
        self.target = target
        self.emoji = emoji
        self.on = on
        self.original = original
        self.author = author

    def __repr__(self) -> str:
        return "<Update %s/%s:%d %s %s %d>" % (self.room, self.epoch, self.id, self.sender, self.op, self.target)


class PrivateUpdate(Private):
    """
    An edit, deletion or reaction of private message C{target}: an entry of
    the private sequence (C{id}), between C{sender} (who did it) and
    C{recipient} (the other party); C{author} wrote the message.
    """

    __slots__ = ("op", "target", "emoji", "on", "original", "author")
    kind = "private-update"

    def __init__(
        self,
        id: int,
        sender: str,
        recipient: str,
        op: str,
        target: int,
        text: str,
        time: float,
        emoji: str = "",
        on: bool = True,
        original: str = "",
        author: str = "",
    ) -> None:
        Private.__init__(self, id, sender, recipient, text, time)
        self.op = op
        self.target = target
        self.emoji = emoji
        self.on = on
        self.original = original
        self.author = author


class Typing(Event):
    """
    C{nick} is typing in C{room} (C{state}: active, paused, done).
    """

    __slots__ = ("room", "nick", "state")
    kind = "typing"

    def __init__(self, room: str, nick: str, state: str) -> None:
        Event.__init__(self)
        self.room = room
        self.nick = nick
        self.state = state


class ReadMarker(Event):
    """
    The recipient's nick has read C{room} up to message C{id} (told to
    every connection of the nick).
    """

    __slots__ = ("room", "id")
    kind = "read"

    def __init__(self, room: str, id: int) -> None:
        Event.__init__(self)
        self.room = room
        self.id = id


class SearchResults(Event):
    """
    The answer to a search for C{text}: messages (room or private), newest first.
    """

    __slots__ = ("text", "results")
    kind = "search"

    def __init__(self, text: str, results: list[Message | Private]) -> None:
        Event.__init__(self)
        self.text = text
        self.results = results


def applyUpdate(message: Message | Private, update: Update | PrivateUpdate) -> Message | Private:
    """
    A copy of C{message} as C{update} leaves it (a new object: the
    original may be shared, its renderings cached).
    """
    if isinstance(message, Message):
        m: Message | Private = Message(
            message.room, message.id, message.epoch, message.sender, message.text, message.time, message.action,
            message.mentions, message.replyTo, message.edited, message.deleted,
            None if message.reactions is None else {k: list(v) for k, v in message.reactions.items()},
        )
    else:
        m = Private(
            message.id, message.sender, message.recipient, message.text, message.time, message.replyTo,
            message.edited, message.deleted,
            None if message.reactions is None else {k: list(v) for k, v in message.reactions.items()},
        )
    op = update.op
    if op == EDIT:
        if not m.deleted:
            m.text = update.text
            m.mentions = update.mentions
            m.edited = update.time
    elif op == DELETE:
        m.text = ""
        m.mentions = ()
        m.deleted = True
        m.reactions = None
    elif op == REACT and not m.deleted:
        reactions = m.reactions if m.reactions is not None else {}
        nicks = reactions.setdefault(update.emoji, [])
        present = [n for n in nicks if n.lower() == update.sender.lower()]
        if update.on and not present:
            nicks.append(update.sender)
        elif not update.on and present:
            nicks.remove(present[0])
        if not nicks:
            del reactions[update.emoji]
        m.reactions = reactions or None
    return m


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

    __slots__ = ("room", "epoch", "messages", "recovered", "reason", "onJoin", "read")
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
        #: on a join of an owned nick: (read position, unread, mentions)
        self.read: tuple[int, int, int] | None = None


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
