# -*- test-case-name: tests.core.test_names -*-
"""
The rules for nicknames and room names, in one place.
"""

from __future__ import annotations

import re

from twisted_chat.core.errors import ChatError

NICK_MAX = 24
ROOM_MAX = 32

_NICK = re.compile(r"[A-Za-z0-9_-]{1,%d}\Z" % NICK_MAX)
_ROOM = re.compile(r"#?([A-Za-z0-9_-]{1,%d})\Z" % ROOM_MAX)

NICK_RULE = "nicknames are 1-%d letters, digits, _ or -" % NICK_MAX
ROOM_RULE = "room names are # and 1-%d letters, digits, _ or -" % ROOM_MAX


def checkNick(nick: object) -> str:
    """
    Return C{nick} if it is a valid nickname, else raise L{ChatError}
    C{bad-nick}. Case is kept for display; uniqueness ignores it.
    """
    if not isinstance(nick, str) or not _NICK.match(nick):
        raise ChatError("bad-nick", NICK_RULE)
    return nick


def nickKey(nick: str) -> str:
    """
    The case-insensitive identity of a nickname.
    """
    key = nick.lower()
    # (a nick already in lower case is its own key: one string, not two,
    # per connection)
    return nick if key == nick else key


def normalizeRoom(name: object) -> str:
    """
    Return the canonical form of a room name (C{#} added, lower case), or
    raise L{ChatError} C{bad-room}.
    """
    if not isinstance(name, str):
        raise ChatError("bad-room", ROOM_RULE)
    m = _ROOM.match(name)
    if m is None:
        raise ChatError("bad-room", ROOM_RULE)
    return "#" + m.group(1).lower()


_AT_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_-]{1,%d})(?![\w-])" % NICK_MAX)
_LEAD_MENTION = re.compile(r"([A-Za-z0-9_-]{1,%d})[:,](?:\s|\Z)" % NICK_MAX)


def findMentions(text: str) -> tuple[str, ...]:
    """
    The nicks C{text} mentions, as typed, each once (case-insensitively):
    C{@nick} anywhere, or C{nick:} / C{nick,} at its start. Computed once
    per message, when it is said; the common message (no C{@}, no C{:} or
    C{,} near its start) costs two substring tests.
    """
    head = text[: NICK_MAX + 1]
    if "@" not in text and ":" not in head and "," not in head:
        return ()
    found: dict[str, str] = {}
    lead = _LEAD_MENTION.match(text)
    if lead is not None:
        found[lead.group(1).lower()] = lead.group(1)
    if "@" in text:
        for m in _AT_MENTION.finditer(text):
            found.setdefault(m.group(1).lower(), m.group(1))
    return tuple(found.values())


def mentions(names: tuple[str, ...], nick: str) -> bool:
    """
    Whether C{nick} is among the mentioned C{names}.
    """
    key = nick.lower()
    return any(n.lower() == key for n in names)
