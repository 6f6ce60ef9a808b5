# -*- test-case-name: tests.client.test_cli,tests.client.test_session -*-
"""
What the user typed, as the terminal client's session sees it: whether a
line ends the session (L{quitRequest}), and how to name a line in a
status (L{describeInput}).
"""

from __future__ import annotations

from twisted_chat.core.errors import ChatError
from twisted_chat.wire.commands import Command, parseLine
from twisted_chat.wire.render import oneLine

#: how much of a typed line a status quotes
DESCRIBE_LENGTH = 120


def quitRequest(line: str) -> str | None:
    """
    If C{line} ends the session, return the reason given (maybe empty),
    else C{None}. C{/quit [REASON]} ends it (white space around it does not
    matter), and so does a line that is just C{bye}, as with the seed
    project's client.
    """
    stripped = line.strip()
    if stripped == "bye":
        return ""
    try:
        said = parseLine(stripped)
    except ChatError:
        # (not a command: the link refuses it)
        return None
    if isinstance(said, Command) and said.name == "quit":
        return said.text
    return None


def describeInput(line: str) -> str:
    """
    C{line} as typed, on one line and cut to L{DESCRIBE_LENGTH} characters,
    to name it in a status.
    """
    text = oneLine(line)
    if len(text) > DESCRIBE_LENGTH:
        text = text[: DESCRIBE_LENGTH - 1] + "\u2026"
    return text
