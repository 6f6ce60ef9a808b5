# -*- test-case-name: tests.wire.test_wire -*-
"""
How the line chat shows things: one function per kind of line.

The server's text mode renders service events with these, and the terminal
client renders json-mode events with them, so that a user sees the very same
lines whichever way they connect (docs/protocol.md describes the lines).
Every function returns a whole line (its C{*** } prefix included) without
the line ending; text that came from a user is made safe for a terminal
(L{oneLine}).
"""

from __future__ import annotations

import time as _time
from typing import Iterable, Protocol, Sequence

#: the prefix of a system notice
NOTICE = "*** "
#: the prefix of an error: the line or command was refused
ERROR = "!!! "

_CONTROL = dict.fromkeys(
    [c for c in range(32) if c not in (9,)] + [127] + list(range(0x80, 0xA0)), " "
)


class SaidInRoom(Protocol):
    """
    A room message as the renderers read it (the service's
    L{twisted_chat.core.events.Message} is one).
    """

    @property
    def room(self) -> str: ...

    @property
    def sender(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def time(self) -> float: ...

    @property
    def action(self) -> bool: ...


def oneLine(text: str) -> str:
    """
    Make C{text} safe for one line on a terminal: newlines and other control
    characters (which could move a terminal's cursor) become spaces.
    """
    return text.translate(_CONTROL) if not text.isprintable() else text


def plural(n: int, word: str) -> str:
    """
    C{"1 message"}, C{"2 messages"}.
    """
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def stamp(t: float, now: float) -> str:
    """
    A history stamp: C{HH:MM} for today (UTC), C{YYYY-MM-DD HH:MM} otherwise.
    """
    tm = _time.gmtime(t)
    if _time.gmtime(now)[:3] == tm[:3]:
        return _time.strftime("%H:%M", tm)
    return _time.strftime("%Y-%m-%d %H:%M", tm)


def messageLine(m: SaidInRoom, when: str | None = None) -> str:
    """
    A room message as a line; C{when} is the stamp for replayed history.
    """
    prefix = m.room + (" [" + when + "] " if when else " ")
    if m.action:
        return prefix + "* " + m.sender + " " + oneLine(m.text)
    return prefix + "<" + m.sender + "> " + oneLine(m.text)


def privateLine(sender: str, recipient: str, text: str, me: str | None, when: str | None = None) -> str:
    """
    A private message as its recipient C{me} sees it: C{*SENDER* TEXT}, or
    C{-> *RECIPIENT* TEXT} for one of its own (sent to someone else);
    C{when} is the stamp of a replayed one.
    """
    prefix = "[" + when + "] " if when else ""
    mine = me is not None and sender.lower() == me.lower() and recipient.lower() != me.lower()
    if mine:
        return prefix + "-> *%s* %s" % (recipient, oneLine(text))
    return prefix + "*%s* %s" % (sender, oneLine(text))


def errorLine(message: str) -> str:
    return ERROR + message


def welcomeLine(nick: str, where: str) -> str:
    return NOTICE + "Welcome to twisted-chat, %s! You are in %s. Type /help for commands." % (nick, where)


def joinedLine(room: str, nick: str) -> str:
    return NOTICE + "%s: %s joined" % (room, nick)


def partLine(room: str, nick: str, reason: str) -> str:
    """
    C{nick} left C{room}, with the reason unless it just left.
    """
    if reason == "left":
        return NOTICE + "%s: %s left" % (room, nick)
    return NOTICE + "%s: %s left (%s)" % (room, nick, oneLine(reason))


def currentRoomLine(current: str | None) -> str:
    """
    Where plain text goes now, after leaving a room.
    """
    if current is not None:
        return NOTICE + "your current room is %s" % (current,)
    return NOTICE + "you are in no room now: /join one to talk"


def switchedLine(room: str) -> str:
    """
    C{/join} of a room already joined made it the current one.
    """
    return NOTICE + "%s is now your current room" % (room,)


def youAreNowLine(nick: str) -> str:
    return NOTICE + "you are now %s" % (nick,)


def nickLine(rooms: Iterable[str], old: str, new: str) -> str:
    """
    Someone in C{rooms} changed their nick.
    """
    return NOTICE + "%s: %s is now known as %s" % (", ".join(rooms), old, new)


def presenceLine(room: str, members: Sequence[str], total: int | None = None) -> str:
    """
    Who is in C{room}; in a big room C{members} names some of the C{total}.
    """
    if total is not None and total > len(members):
        return NOTICE + "%s: %d members, among them: %s" % (room, total, ", ".join(members))
    if members:
        return NOTICE + "%s: members: %s" % (room, ", ".join(members))
    return NOTICE + "%s: nobody is here" % (room,)


def roomsLine(rooms: Sequence[tuple[str, int]]) -> str:
    """
    Every room with its member count.
    """
    if rooms:
        return NOTICE + "rooms: " + ", ".join("%s (%d)" % r for r in rooms)
    return NOTICE + "rooms: none"


def topicLine(room: str, topic: str, by: str) -> str:
    """
    The topic of C{room}, or (C{""}) that C{by} cleared it.
    """
    if topic:
        return NOTICE + "%s: topic: %s (set by %s)" % (room, oneLine(topic), by)
    return NOTICE + "%s: topic cleared by %s" % (room, by)


def epochLine(room: str) -> str:
    return (
        NOTICE + "%s: the message history was reset (the server lost its stored messages); "
        "message numbers start again" % (room,)
    )


def historyUnavailableLine(room: str, fetched: bool = False) -> str:
    """
    A room's history (on joining, or asked for) could not be read: the
    message store did not answer (with --broker: Redis stalled or
    restarting). Nothing is lost; it can be asked for again, or it is
    C{fetched} by the client (the terminal client's, once the server can
    read it).
    """
    then = "it comes when the server can read it" if fetched else "/history asks again"
    return NOTICE + "%s: the history cannot be read now (the message store is not answering); %s" % (room, then)


def noticeLine(text: str) -> str:
    """
    A notice from the server (or its admins) to everyone.
    """
    return NOTICE + "notice: " + oneLine(text)


def privateHistoryLine(count: int) -> str:
    """
    The header of the private messages missed while away.
    """
    return NOTICE + "%s while you were away:" % (plural(count, "private message"),)


#: how much of a message's text an edit or deletion notice quotes
QUOTED = 30


def quoted(text: str) -> str:
    """
    The start of a message's C{text} as an edit or deletion notice quotes
    it: its first L{QUOTED} characters, and C{…} when there were more.
    """
    text = oneLine(text)
    return '"%s"' % (text[:QUOTED] + "…" if len(text) > QUOTED else text,)


def editLine(room: str | None, nick: str, original: str, text: str) -> str:
    """
    C{nick} edited its message that began with C{original} (in C{room};
    None: a private message): C{*** #room: NICK edited "START…": TEXT}.
    """
    where = room + ": " if room else ""
    return NOTICE + "%s%s edited %s: %s" % (where, nick, quoted(original), oneLine(text))


def deleteLine(room: str | None, by: str, author: str, original: str) -> str:
    """
    C{by} deleted C{author}'s message that began with C{original}:
    C{*** #room: NICK deleted "START…"} (C{BY deleted NICK's "START…"}
    when an operator deleted someone else's).
    """
    where = room + ": " if room else ""
    whose = "" if not author or author.lower() == by.lower() else author + "'s "
    return NOTICE + "%s%s deleted %s%s" % (where, by, whose, quoted(original))


def searchLines(text: str, results: Sequence[object], now: float, me: str | None) -> list[str]:
    """
    The answer to C{/search TEXT}: a header, then each message found (room
    messages and private ones, newest first), stamped.
    """
    lines = [NOTICE + "search %s: %s found" % (quoted(text), len(results))]
    for m in results:
        when = stamp(m.time, now)  # type: ignore[attr-defined]
        if hasattr(m, "room"):
            lines.append(messageLine(m, when))  # type: ignore[arg-type]
        else:
            lines.append(privateLine(m.sender, m.recipient, m.text, me, when))  # type: ignore[attr-defined]
    return lines


def historyLines(
    room: str, messages: Sequence[SaidInRoom], now: float, requested: bool, resumed: bool = False
) -> list[str]:
    """
    Past messages of C{room}, stamped (relative to C{now}), under a header:
    the answer to C{/history} (C{requested}: framed, and said when empty),
    the messages missed while away (C{resumed}), or the recent messages
    shown on joining (nothing when there are none).
    """
    if not messages:
        return [NOTICE + "%s: no messages yet" % (room,)] if requested else []
    count = plural(len(messages), "message")
    if requested:
        header = "%s: history, %s:" % (room, count)
    elif resumed:
        header = "%s: %s while you were away:" % (room, count)
    else:
        header = "%s: last %s:" % (room, count)
    lines = [NOTICE + header]
    lines.extend(messageLine(m, stamp(m.time, now)) for m in messages)
    if requested:
        lines.append(NOTICE + "%s: end of history" % (room,))
    return lines
