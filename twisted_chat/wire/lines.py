# -*- test-case-name: tests.wire.test_wire -*-
"""
Line framing for the line chat, the one splitter of both ends: the server's
TCP line chat and the terminal client (its line-chat link and its piped
input).

A line ends with LF, with an optional CR before it (C{nc} sends LF,
C{telnet} CRLF). Nothing longer than a line's worth is ever buffered: a
line over the limit is reported in its place, in order, and the rest of it
is discarded as it arrives. Lines stay bytes: each user decodes a whole
line after framing, so a UTF-8 character split across reads is fine.
"""

from __future__ import annotations

from typing import Sequence

from twisted.internet.protocol import Protocol


class LineFraming:
    """
    The framing state of one stream, mixed into its protocol (a connection
    that has no partial line stores nothing: the defaults are class
    attributes).
    """

    #: the start of a line whose end has not arrived yet
    _buffer = b""
    #: whether the rest of an over-long line is being thrown away
    _discarding = False

    def frameLines(self, data: bytes, limit: int) -> Sequence[bytes | None]:
        """
        Take the bytes C{data} that arrived; return the lines they
        complete, in order, without their line endings, with C{None} in the
        place of each line longer than C{limit} bytes (it is discarded,
        also what is still to come of it).
        """
        if self._discarding:
            i = data.find(b"\n")
            if i == -1:
                return _NO_LINES
            data = data[i + 1 :]
            self._discarding = False
        buf = self._buffer + data if self._buffer else data
        i = buf.find(b"\n")
        if i == -1 and len(buf) <= limit + 1:
            # (the start of a line: the usual read of a line in pieces)
            self._buffer = buf
            return _NO_LINES
        lines: list[bytes | None] = []
        start = 0
        while i != -1:
            line = buf[start:i]
            start = i + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            lines.append(None if len(line) > limit else line)
            i = buf.find(b"\n", start)
        rest = buf[start:] if start else buf
        # (a line of the limit's length may wait for the LF after its CR)
        if len(rest) > limit + 1:
            self._buffer = b""
            self._discarding = True
            lines.append(None)
        else:
            self._buffer = rest
        return lines


#: what a read that completes no line gives
_NO_LINES: tuple[()] = ()


class LineProtocol(LineFraming, Protocol):
    """
    A protocol that receives lines of at most C{maxLength} bytes: each one
    goes to L{lineReceived}, each longer one to L{lineTooLong}.
    """

    maxLength = 1 << 20

    def dataReceived(self, data: bytes) -> None:
        for line in self.frameLines(data, self.maxLength):
            if line is None:
                self.lineTooLong()
            else:
                self.lineReceived(line)

    def lineReceived(self, line: bytes) -> None:
        """
        A whole line arrived (without its line ending).
        """
        raise NotImplementedError

    def lineTooLong(self) -> None:
        """
        A line over C{maxLength} bytes arrived (and is being discarded).
        """
        raise NotImplementedError
