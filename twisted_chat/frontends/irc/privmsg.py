# -*- test-case-name: tests.frontends.irc.test_irc -*-
"""
One message as IRC lines (L{privmsgLines}): cut into as many as an IRC
line's length needs.
"""

from __future__ import annotations

from twisted_chat.frontends.irc.protocol import MAX_BODY, formatMessage, splitText


def privmsgLines(command: str, source: str, target: str, text: str, tags: dict[str, str], action: bool = False) -> list[str]:
    """
    The lines of one message: C{text} cut into as many messages as an IRC
    line needs, C{tags} on each (C{msgid} on the first only).
    """
    head = len((":%s %s %s :" % (source, command, target)).encode("utf-8")) + 2
    if action:
        head += len("\x01ACTION \x01")
    room = max(64, MAX_BODY - head)
    pieces = [p for p in splitText(text, room) if p] or [" "]
    lines = []
    for i, piece in enumerate(pieces):
        if action:
            piece = "\x01ACTION " + piece + "\x01"
        if i == 1 and "msgid" in tags:
            tags = {k: v for k, v in tags.items() if k != "msgid"}
        lines.append(formatMessage(command, [target, piece], source, tags))
    return lines
