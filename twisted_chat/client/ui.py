# -*- test-case-name: tests.client.test_tty -*-
"""
The terminal client's two sides, as the session (L{twisted_chat.client.session.ChatClient})
sees them: the user's interface (L{ChatUI}: a pipe or a terminal) and what
it reports input to (L{InputSink}).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Protocol as TypingProtocol

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

#: the program's name, which starts its statuses on stderr
PROG = "twisted-chat"

#: the reactor, as the client uses it: TCP, time, name resolution and stdio
#: at once; Twisted has no one interface for that (its own HostnameEndpoint
#: takes C{Any})
Reactor = Any


class InputSink(TypingProtocol):
    """
    What a UI reports the user's input to (L{ChatClient}).
    """

    def userLine(self, line: str) -> None:
        """
        The user entered C{line} (decoded, without its line ending).
        """

    def userEOF(self) -> None:
        """
        The user's input ended (end of the pipe, Ctrl-D).
        """

    def userInterrupt(self) -> None:
        """
        The user pressed the interrupt key (Ctrl-C on a terminal).
        """

    def inputRefused(self) -> None:
        """
        A line the user typed could not be sent (the UI has said why).
        """


class ChatUI(TypingProtocol):
    """
    The user's side: show lines and statuses, feed input to a sink.
    """

    def start(self, sink: InputSink, reactor: Reactor) -> None:
        """
        Start reading input for C{sink}.
        """

    def showLine(self, line: str) -> None:
        """
        Show one chat line (on stdout).
        """

    def showStatus(self, text: str) -> None:
        """
        Tell the user about the client itself (on stderr).
        """

    def showNotice(self, text: str) -> None:
        """
        Tell the user, now, what the client is waiting for (on stderr, or
        above the input line of a terminal).
        """

    def showActivity(self, text: str) -> None:
        """
        Show C{text} in the status line (who is typing), replacing what it
        showed; C{""} empties it. A pipe shows no status line.
        """

    def close(self) -> Deferred[None]:
        """
        Stop reading, flush what was shown; fires once done.
        """


def writeStderr(text: str) -> None:
    try:
        sys.stderr.write("%s: %s\n" % (PROG, text))
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
