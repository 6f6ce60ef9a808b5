# -*- test-case-name: tests.frontends.irc.test_irc_protocol -*-
"""
IRC messages: parsing what a client sends, serialising what the server
says (RFC 1459/2812 as the modern clients speak them, with IRCv3 message
tags), and the limits of a line.

A line is framed by L{twisted_chat.wire.lines} (LF with an optional CR,
never more than one line's worth buffered) with the limit L{MAX_LINE}: at
most L{MAX_TAGS} bytes of tags (the C{@} and the space after them
included) and L{MAX_BODY} bytes for the rest (the CRLF included). Lines are
decoded as UTF-8 after framing, once each.

This module is written for the chat (twisted.words' C{irc.parsemsg} knows
no tags, and its framing decodes before it frames).
"""

from __future__ import annotations

import re
import time as _time
from typing import TYPE_CHECKING, Iterator, NamedTuple

if TYPE_CHECKING:
    from twisted_chat.core.events import Message, Private

#: the server's name: the source of what it says
SERVER_NAME = "irc.twisted-chat"
#: the host part of every member's mask (C{nick!nick@HOST}): the chat does
#: not show where its users connect from
USER_HOST = "twisted-chat"

#: the most bytes of a message without its tags, CRLF included
MAX_BODY = 512
#: the most bytes of a message's tags, the leading C{@} and the space after
#: them included
MAX_TAGS = 8191
#: the longest line the framing takes
MAX_LINE = MAX_TAGS + MAX_BODY
#: the most parameters of a message (RFC 1459)
MAX_PARAMS = 15

#: what no parameter may carry
_BREAKS = re.compile(r"[\r\n\0]")

_UNESCAPE = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_ESCAPE = str.maketrans({";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"})


class IRCParseError(ValueError):
    """
    A line that is no IRC message; C{command} is its command when one
    could be read, else C{"*"}.
    """

    def __init__(self, command: str, reason: str) -> None:
        super().__init__(reason)
        self.command = command
        self.reason = reason


class IRCMessage(NamedTuple):
    """
    One IRC message: its C{tags} (name -> value, C{""} for a tag without
    one), C{source} (C{""} when none), C{command} (in upper case) and
    C{params} (the trailing one last, without its colon).
    """

    tags: dict[str, str]
    source: str
    command: str
    params: list[str]


def unescapeTag(value: str) -> str:
    """
    A tag value as sent (IRCv3 escapes) back into its text.
    """
    if "\\" not in value:
        return value
    out = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            i += 1
            if i < len(value):
                nxt = value[i]
                out.append(_UNESCAPE.get(nxt, nxt))
        else:
            out.append(c)
        i += 1
    return "".join(out)


def escapeTag(value: str) -> str:
    """
    A tag value escaped for the wire.
    """
    return value.translate(_ESCAPE)


def parseTags(text: str) -> dict[str, str]:
    """
    The tags of C{text}, the part of a line between C{@} and the first space.
    """
    tags: dict[str, str] = {}
    for item in text.split(";"):
        if not item:
            continue
        name, _, value = item.partition("=")
        if name:
            tags[name] = unescapeTag(value)
    return tags


def parseMessage(line: str) -> IRCMessage | None:
    """
    Parse one decoded line (without its line ending); None for a blank
    line. Raises L{IRCParseError} for a line that has no command.
    """
    rest = line.lstrip(" ")
    tags: dict[str, str] = {}
    if rest.startswith("@"):
        raw, _, rest = rest[1:].partition(" ")
        tags = parseTags(raw)
        rest = rest.lstrip(" ")
    source = ""
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    if not rest:
        if tags or source:
            raise IRCParseError("*", "a message needs a command")
        return None
    trailing: str | None = None
    head, sep, tail = rest.partition(" :")
    if sep:
        trailing = tail
    # (only spaces separate: str.split() would also split at \x1f, NBSP…)
    words = [w for w in head.split(" ") if w]
    if not words:
        raise IRCParseError("*", "a message needs a command")
    command = words[0].upper()
    if not (command.isascii() and (command.isalpha() or (command.isdigit() and len(command) == 3))):
        raise IRCParseError("*", "not a command: %s" % (words[0][:32],))
    params = words[1:]
    if trailing is not None:
        params.append(trailing)
    if len(params) > MAX_PARAMS:
        # (RFC 1459: the 15th takes the rest of the line)
        params = params[: MAX_PARAMS - 1] + [" ".join(params[MAX_PARAMS - 1 :])]
    return IRCMessage(tags, source, command, params)


def commandOf(raw: bytes) -> str:
    """
    The command of the undecoded line C{raw} (tags and source skipped), for
    an answer to a line that is not valid UTF-8: C{"*"} when none can be
    read.
    """
    words = [w for w in raw.split(b" ") if w]
    while words and words[0][:1] in (b"@", b":"):
        words.pop(0)
    if not words:
        return "*"
    word = words[0].decode("ascii", "replace").upper()
    return word if word.isalpha() or (word.isdigit() and len(word) == 3) else "*"


def formatMessage(
    command: str, params: tuple[str, ...] | list[str] = (), source: str = "", tags: dict[str, str] | None = None
) -> str:
    """
    One IRC line (without its line ending): the last parameter gets its
    colon when it needs one (empty, with a space, or starting with C{:}).
    Line breaks and NULs in a parameter (a topic set from another
    front-end, say) become spaces: they would end the line.
    """
    if any(_BREAKS.search(p) for p in params):
        params = [_BREAKS.sub(" ", p) for p in params]
    parts: list[str] = []
    if tags:
        parts.append("@" + ";".join(k + "=" + escapeTag(v) if v else k for k, v in tags.items()))
    if source:
        parts.append(":" + source)
    parts.append(command)
    if params:
        parts.extend(params[:-1])
        last = params[-1]
        if not last or " " in last or last[0] == ":":
            last = ":" + last
        parts.append(last)
    return " ".join(parts)


def withTags(line: str, tags: dict[str, str]) -> str:
    """
    C{line} (one formatted message, maybe tagged already) with C{tags}
    added in front of its own.
    """
    if not tags:
        return line
    extra = ";".join(k + "=" + escapeTag(v) if v else k for k, v in tags.items())
    if line.startswith("@"):
        return "@" + extra + ";" + line[1:]
    return "@" + extra + " " + line


def serverTime(t: float) -> str:
    """
    The IRCv3 C{time} tag of the Unix time C{t}: C{2026-01-02T03:04:05.678Z}.
    """
    whole = int(t)
    ms = int(round((t - whole) * 1000))
    if ms >= 1000:
        whole, ms = whole + 1, ms - 1000
    return _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(whole)) + ".%03dZ" % (ms,)


def safeText(text: str) -> str:
    """
    C{text} without the characters no IRC line may carry (NUL, CR; LF is
    where L{splitText} splits it).
    """
    if "\0" in text or "\r" in text:
        text = text.replace("\0", " ").replace("\r", "")
    return text


def splitText(text: str, room: int) -> Iterator[str]:
    """
    C{text} cut into pieces of at most C{room} bytes of UTF-8 each, at its
    newlines and between characters, for as many messages: a message from
    another front-end may be longer than an IRC line takes.
    """
    for piece in safeText(text).split("\n"):
        data = piece.encode("utf-8")
        if len(data) <= room:
            yield piece
            continue
        while data:
            cut = min(room, len(data))
            # (never inside a UTF-8 sequence: back off its continuation bytes)
            while cut < len(data) and cut > 0 and data[cut] & 0xC0 == 0x80:
                cut -= 1
            if cut == 0:
                cut = min(room, len(data))
            yield data[:cut].decode("utf-8", "replace")
            data = data[cut:]


def mask(nick: str) -> str:
    """
    The source of what C{nick} says: C{nick!nick@twisted-chat}.
    """
    return nick + "!" + nick + "@" + USER_HOST


def msgidOf(m: Message) -> str:
    """
    A room message's C{msgid}: C{ROOM/EPOCH/ID}, its room without the C{#}.
    """
    return "%s/%s/%d" % (m.room[1:], m.epoch, m.id)


def privateMsgid(p: Private) -> str:
    """
    A private message's C{msgid}: C{pm/ID}.
    """
    return "pm/%d" % (p.id,)


def parseMsgid(value: str) -> tuple[str, str, int] | None:
    """
    C{(room, epoch, id)} of a room message's C{msgid}, or None.
    """
    parts = value.split("/")
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return "#" + parts[0].lower(), parts[1], int(parts[2])
