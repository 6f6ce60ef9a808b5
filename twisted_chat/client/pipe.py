# -*- test-case-name: tests.client.test_pipe -*-
"""
The terminal client's UI for pipes (L{PipeUI}): lines in from stdin, lines
out to stdout, statuses to stderr, for scripts.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat.client.ui import InputSink, Reactor, writeStderr
from twisted_chat.wire.lines import LineProtocol


@implementer(IHalfCloseableProtocol)
class PipeUI(LineProtocol):
    """
    Plain line mode for piped input: every line read from stdin is sent,
    every line shown goes to stdout, statuses go to C{stderr}. The end of
    stdin quits (stdout stays open until the server's last lines are out);
    so does stdout going away.
    """

    def __init__(self, sink: InputSink | None = None, stderr: Callable[[str], None] | None = None) -> None:
        self.sink = sink
        self._stderr = stderr if stderr is not None else writeStderr
        self._closed: Deferred[None] | None = None
        self._lost = False
        self._writable = True

    def start(self, sink: InputSink, reactor: Reactor) -> None:
        from twisted.internet.stdio import StandardIO

        self.sink = sink
        StandardIO(self, reactor=reactor)

    def lineReceived(self, line: bytes) -> None:
        if self.sink is not None:
            self.sink.userLine(line.decode("utf-8", "replace"))

    def lineTooLong(self) -> None:
        self.showStatus("input line longer than %d bytes: not sent" % (self.maxLength,))
        if self.sink is not None:
            self.sink.inputRefused()

    def readConnectionLost(self) -> None:
        if self.sink is not None:
            self.sink.userEOF()

    def writeConnectionLost(self) -> None:
        self._writable = False
        if self.sink is not None:
            self.sink.userEOF()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        self._writable = False
        if self._closed is not None:
            d, self._closed = self._closed, None
            d.callback(None)
        elif self.sink is not None:
            self.sink.userEOF()

    def showLine(self, line: str) -> None:
        if self._writable and self.transport is not None:
            self.transport.write(line.encode("utf-8", "replace") + b"\n")

    def showStatus(self, text: str) -> None:
        self._stderr(text)

    def showNotice(self, text: str) -> None:
        self._stderr(text)

    def showActivity(self, text: str) -> None:
        # (who is typing is not worth a line of a pipe's output)
        pass

    def close(self) -> Deferred[None]:
        if self._lost or self.transport is None:
            return succeed(None)
        if self._closed is None:
            self._closed = Deferred()
            self.transport.loseConnection()
        return self._closed
