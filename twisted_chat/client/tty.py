# -*- test-case-name: tests.client.test_tty -*-
"""
The terminal UI of C{twisted-chat}: an editable input line at the bottom,
chat lines scrolling above it.

Built on C{twisted.conch.insults} (key decoding, terminal control) and
L{HistoricRecvLine} (line editing and input history on the up and down
arrows), with the terminal in raw mode for the whole session. Incoming
lines are printed above the input line: the input line is erased, the chat
line written, and the input line redrawn with the cursor where it was.

Note: importing this module installs the default reactor (via
C{twisted.conch.recvline} → C{twisted.conch.insults.helper}); import it only
where the reactor is wanted anyway (L{twisted_chat.client.cli.main}, tests).
"""

from __future__ import annotations

import codecs
import os
import signal
import termios
import tty
import unicodedata
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from twisted.conch.insults.insults import ServerProtocol, modes
from twisted.conch.recvline import HistoricRecvLine
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from twisted_chat.client.ui import PROG, InputSink, Reactor, writeStderr
from twisted_chat.wire.render import oneLine

#: reset the terminal's insert mode (which line editing switches on)
RESET_INSERT_MODE = b"\x1b[4l"


def charWidth(ch: bytes) -> int:
    """
    The number of terminal columns the UTF-8 character C{ch} takes: 2 for
    wide (East Asian) characters, 0 for combining marks, 1 otherwise.
    """
    text = ch.decode("utf-8", "replace")
    if not text:
        return 0
    c = text[0]
    if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1


def _width(chars: list[bytes]) -> int:
    return sum(charWidth(c) for c in chars)


class ChatTerminal(HistoricRecvLine):
    """
    The input line: what RecvLine edits, plus UTF-8 input (one buffer entry
    per character, wide characters moving the cursor two columns), a few
    Emacs-style keys (C{^A ^E ^U ^K}), C{^D} on an empty line to quit
    (the end of input) and C{^C} to quit too, or, pressed while the client
    waits for the server to confirm what was sent, to stop waiting; and
    L{showLine} to print above the input without disturbing it.

    It does not reset (and so clear) the terminal when it starts, unlike
    RecvLine.
    """

    ps = (b"> ", b"> ")
    closed = False
    #: the status line above the input line (who is typing), if any
    status = ""

    def __init__(self, sink: InputSink, width: int = 80) -> None:
        self.sink = sink
        self.width = width
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def connectionMade(self) -> None:
        HistoricRecvLine.connectionMade(self)
        t = self.terminal
        self.keyHandlers.update(
            {
                b"\x01": self.handle_HOME,
                b"\x05": self.handle_END,
                b"\x08": self.handle_BACKSPACE,
                b"\x03": self.handle_INTERRUPT,
                b"\x04": self.handle_EOF,
                b"\x0b": self.handle_KILL_END,
                b"\x15": self.handle_KILL_START,
                # typeover mode cannot work with wide characters: stay in insert mode
                t.INSERT: lambda: None,
            }
        )

    def initializeScreen(self) -> None:
        self.setInsertMode()
        self.drawInputLine()

    def connectionLost(self, reason: Failure | None = None) -> None:
        if not self.closed:
            # the terminal went away (hang-up): end the session
            self.closed = True
            self.sink.userEOF()

    # -- keys --

    def keystrokeReceived(self, keyID: object, modifier: object) -> None:
        if self.closed or modifier is not None:
            return
        handler = self.keyHandlers.get(keyID)
        if handler is not None:
            handler()
        elif isinstance(keyID, bytes) and len(keyID) == 1:
            code = keyID[0]
            if 0x20 <= code < 0x7F:
                self.characterReceived(keyID, False)
            elif code >= 0x80:
                for c in self._decoder.decode(keyID):
                    self.characterReceived(c.encode("utf-8"), False)
            # other control characters are ignored

    def _deliverBuffer(self, buf: bytes) -> None:
        for c in buf.decode("utf-8", "replace"):
            self.characterReceived(c.encode("utf-8"), True)

    def handle_INTERRUPT(self) -> None:
        self.sink.userInterrupt()

    def handle_EOF(self) -> None:
        if self.lineBuffer:
            self.handle_DELETE()
        else:
            self.sink.userEOF()

    def handle_LEFT(self) -> None:
        if self.lineBufferIndex > 0:
            self.lineBufferIndex -= 1
            self._back(charWidth(self.lineBuffer[self.lineBufferIndex]))

    def handle_RIGHT(self) -> None:
        if self.lineBufferIndex < len(self.lineBuffer):
            self._forward(charWidth(self.lineBuffer[self.lineBufferIndex]))
            self.lineBufferIndex += 1

    def handle_HOME(self) -> None:
        self._back(_width(self.lineBuffer[: self.lineBufferIndex]))
        self.lineBufferIndex = 0

    def handle_END(self) -> None:
        self._forward(_width(self.lineBuffer[self.lineBufferIndex :]))
        self.lineBufferIndex = len(self.lineBuffer)

    def handle_BACKSPACE(self) -> None:
        if self.lineBufferIndex > 0:
            self.lineBufferIndex -= 1
            w = charWidth(self.lineBuffer.pop(self.lineBufferIndex))
            if w:
                self.terminal.cursorBackward(w)
                self.terminal.deleteCharacter(w)

    def handle_DELETE(self) -> None:
        if self.lineBufferIndex < len(self.lineBuffer):
            w = charWidth(self.lineBuffer.pop(self.lineBufferIndex))
            if w:
                self.terminal.deleteCharacter(w)

    def handle_TAB(self) -> None:
        column = _width(self.lineBuffer[: self.lineBufferIndex])
        for _ in range(self.TABSTOP - column % self.TABSTOP):
            self.characterReceived(b" ", True)

    def handle_KILL_START(self) -> None:
        w = _width(self.lineBuffer[: self.lineBufferIndex])
        del self.lineBuffer[: self.lineBufferIndex]
        self.lineBufferIndex = 0
        if w:
            self.terminal.cursorBackward(w)
            self.terminal.deleteCharacter(w)

    def handle_KILL_END(self) -> None:
        del self.lineBuffer[self.lineBufferIndex :]
        self.terminal.eraseToLineEnd()

    def _back(self, n: int) -> None:
        if n > 0:
            self.terminal.cursorBackward(n)

    def _forward(self, n: int) -> None:
        if n > 0:
            self.terminal.cursorForward(n)

    def handle_RETURN(self) -> None:
        if self.status:
            # the line entered stays on the screen, without the status
            # line above it (which is drawn again above the new prompt)
            self.clearInputLine()
            self.terminal.write(self.ps[self.pn] + b"".join(self.lineBuffer))
        HistoricRecvLine.handle_RETURN(self)

    def lineReceived(self, line: bytes) -> None:
        # RecvLine moved to a new line after the one entered, which stays
        # visible (as in nc); prompt again, then act on it.
        self.drawInputLine()
        self.sink.userLine(line.decode("utf-8", "replace"))

    # -- output --

    def _cursorRow(self) -> int:
        """
        How many rows below the first row of the input area the cursor
        is: the status line's, when shown, and those of a long input line
        that wrapped.
        """
        column = len(self.ps[self.pn]) + _width(self.lineBuffer[: self.lineBufferIndex])
        # (the status line above the prompt, when shown)
        return self._wrappedRows(column) + (1 if self.status else 0)

    def _wrappedRows(self, column: int) -> int:
        rows = column // max(self.width, 1)
        if rows and column % self.width == 0 and self.lineBufferIndex == len(self.lineBuffer):
            # after writing the last column the cursor waits there to wrap
            rows -= 1
        return rows

    def clearInputLine(self) -> None:
        """
        Erase the status line, the prompt and input, leaving the cursor at
        the start of the (now empty) line they started on.
        """
        rows = self._cursorRow()
        if rows:
            self.terminal.cursorUp(rows)
        self.terminal.write(b"\r")
        self.terminal.eraseToDisplayEnd()

    def drawInputLine(self) -> None:
        if self.status:
            self.terminal.write(self.status.encode("utf-8", "replace") + b"\r\n")
        HistoricRecvLine.drawInputLine(self)

    def setStatus(self, text: str) -> None:
        """
        Show C{text} on a line of its own above the input line (cut to the
        terminal's width), or no such line for C{""}.
        """
        text = oneLine(text)
        while text and _width([c.encode("utf-8") for c in text]) >= self.width:
            text = text[:-1]
        if self.closed or text == self.status:
            return
        self.clearInputLine()
        self.status = text
        self.redrawInputLine()

    def redrawInputLine(self) -> None:
        """
        Write the prompt and input again, the cursor where it was.
        """
        self.drawInputLine()
        self._back(_width(self.lineBuffer[self.lineBufferIndex :]))

    def showLine(self, text: str) -> None:
        """
        Print C{text} as a line above the input line.
        """
        if self.closed:
            return
        self.clearInputLine()
        self.terminal.write(text.encode("utf-8", "replace") + b"\n")
        self.redrawInputLine()

    def close(self) -> None:
        """
        Stop editing: erase the input line and leave insert mode, so the
        shell gets a clean line back.
        """
        if self.closed:
            return
        self.clearInputLine()
        self.terminal.resetModes([modes.IRM])
        self.closed = True


class _TerminalServer(ServerProtocol):
    """
    The insults protocol on stdio, with a Deferred for its end.
    """

    def __init__(self, sink: InputSink, width: int) -> None:
        ServerProtocol.__init__(self, ChatTerminal, sink, width)
        self.whenLost: Deferred[None] = Deferred()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        try:
            ServerProtocol.connectionLost(self, reason)
        finally:
            d, self.whenLost = self.whenLost, Deferred()
            d.callback(None)


class TerminalUI:
    """
    The UI for an interactive terminal (stdin and stdout both terminals).

    L{rawMode} must wrap the session: it puts the terminal in raw mode and
    always restores it (and the descriptors' blocking mode), even after an
    error. Statuses are written to stderr once the terminal is restored,
    after the session; chat lines and notices (what the client waits for)
    appear above the input line at once.
    """

    maxStatuses = 100

    def __init__(self, stdin: int = 0, stdout: int = 1, stderr: Callable[[str], None] | None = None) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self._stderr = stderr if stderr is not None else writeStderr
        self._server: _TerminalServer | None = None
        # (the platform's StandardIO: mypy knows only one platform's)
        self._stdio: Any = None
        self._statuses: list[str] = []
        # (what signal.signal() gives back: typeshed's type for it is private)
        self._oldWinch: Any = None
        self.closedCleanly = False

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.stdout).columns or 80
        except OSError:
            return 80

    @property
    def terminal(self) -> ChatTerminal | None:
        """
        The input line, while the UI runs.
        """
        server = self._server
        proto = server.terminalProtocol if server is not None else None
        return proto if isinstance(proto, ChatTerminal) else None

    def start(self, sink: InputSink, reactor: Reactor) -> None:
        from twisted.internet.stdio import StandardIO

        self._server = _TerminalServer(sink, self._columns())
        # (mypy reads the Windows StandardIO, which has no stdin and stdout)
        self._stdio = StandardIO(  # type: ignore[call-arg]
            self._server, stdin=self.stdin, stdout=self.stdout, reactor=reactor
        )
        try:
            self._oldWinch = signal.signal(signal.SIGWINCH, self._resized)
        except ValueError:  # not the main thread
            self._oldWinch = None

    def _resized(self, signum: int, frame: object) -> None:
        terminal = self.terminal
        if terminal is not None:
            terminal.width = self._columns()

    def showLine(self, line: str) -> None:
        terminal = self.terminal
        if terminal is not None:
            terminal.showLine(line)

    def showStatus(self, text: str) -> None:
        if len(self._statuses) < self.maxStatuses:
            self._statuses.append(text)

    def showNotice(self, text: str) -> None:
        terminal = self.terminal
        if terminal is not None:
            terminal.showLine("%s: %s" % (PROG, text))

    def showActivity(self, text: str) -> None:
        terminal = self.terminal
        if terminal is not None:
            terminal.setStatus(text)

    def close(self) -> Deferred[None]:
        if self._oldWinch is not None:
            signal.signal(signal.SIGWINCH, self._oldWinch)
            self._oldWinch = None
        terminal = self.terminal
        if terminal is not None:
            terminal.close()
        self.closedCleanly = True
        server, stdio = self._server, self._stdio
        if server is None or stdio is None or stdio.disconnected:
            return succeed(None)
        lost = server.whenLost
        stdio.loseConnection()
        return lost

    @contextmanager
    def rawMode(self) -> Iterator[None]:
        """
        Raw mode for the duration; on the way out, whatever happened, restore
        the terminal settings and blocking I/O, leave insert mode, and write
        the statuses (one per line) to stderr.
        """
        import fcntl

        saved = termios.tcgetattr(self.stdin)
        flags = {}
        for fd in (self.stdin, self.stdout):
            try:
                flags[fd] = fcntl.fcntl(fd, fcntl.F_GETFL)
            except OSError:
                pass
        tty.setraw(self.stdin, termios.TCSANOW)
        try:
            yield
        finally:
            for fd, fl in flags.items():
                try:
                    fcntl.fcntl(fd, fcntl.F_SETFL, fl)
                except OSError:
                    pass
            termios.tcsetattr(self.stdin, termios.TCSANOW, saved)
            try:
                os.write(self.stdout, RESET_INSERT_MODE + (b"" if self.closedCleanly else b"\r\n"))
            except OSError:
                pass
            statuses, self._statuses = self._statuses, []
            for text in statuses:
                self._stderr(text)
