"""
Tests for the terminal UI (L{twisted_chat.client.tty} and
L{twisted_chat.client.ui}): in memory, and the real client under a
pseudo-terminal.
"""

from __future__ import annotations

import fcntl
import os
import struct
import sys
import termios
from typing import Any

import pytest_twisted
from twisted.internet.defer import DeferredQueue
from twisted.internet.testing import StringTransport

from tests.support.client import clientEnvironment, lineServerFactory, PtyClient, stopListening, TIMEOUT
from tests.support.components import REPO


# -- the terminal UI, in memory --


class Sink:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.eofs = 0
        self.interrupts = 0

    def userLine(self, line: str) -> None:
        self.lines.append(line)

    def userEOF(self) -> None:
        self.eofs += 1

    def userInterrupt(self) -> None:
        self.interrupts += 1

    def inputRefused(self) -> None:
        pass


def _terminal(width: int = 80) -> tuple[Any, Any, Sink]:
    from twisted.conch.insults.helper import TerminalBuffer

    from twisted_chat.client.tty import ChatTerminal

    sink = Sink()
    screen = TerminalBuffer()
    screen.connectionMade()
    term = ChatTerminal(sink, width=width)
    term.makeConnection(screen)
    return term, screen, sink


def _type(term: Any, data: bytes) -> None:
    for i in range(len(data)):
        term.keystrokeReceived(data[i : i + 1], None)


def _screen(screen: Any) -> list[str]:
    return bytes(screen).decode("utf-8").rstrip("\n").split("\n")


def test_terminalShowsLinesAboveInput() -> None:
    """
    A line that arrives while the user types is printed above the input
    line, which is redrawn intact with the cursor where it was.
    """
    term, screen, sink = _terminal()
    _type(term, b"hello wrld")
    for _ in range(3):
        term.keystrokeReceived(screen.LEFT_ARROW, None)
    term.showLine("#lobby <bob> hi")
    assert _screen(screen) == ["#lobby <bob> hi", "> hello wrld"]
    assert screen.reportCursorPosition() == (len("> hello w"), 1)
    _type(term, b"o")
    term.keystrokeReceived(b"\r", None)
    assert sink.lines == ["hello world"]
    assert _screen(screen) == ["#lobby <bob> hi", "> hello world", "> "]


def test_terminalStatusLine() -> None:
    """
    The status line (who is typing) is a line of its own right above the
    input line: chat lines arrive above both, the input stays intact, a
    line entered stays on the screen without it, and C{""} removes it.
    (TerminalBuffer keeps ASCII only: the real status ends with an ellipsis.)
    """
    term, screen, sink = _terminal(width=30)
    _type(term, b"hello wrld")
    term.keystrokeReceived(screen.LEFT_ARROW, None)
    term.setStatus("bob is typing...")
    assert _screen(screen) == ["bob is typing...", "> hello wrld"]
    term.showLine("#lobby <carol> hi")
    assert _screen(screen) == ["#lobby <carol> hi", "bob is typing...", "> hello wrld"]
    assert screen.reportCursorPosition() == (len("> hello wrl"), 2)
    _type(term, b"\r")
    assert sink.lines == ["hello wrld"]
    assert _screen(screen) == ["#lobby <carol> hi", "> hello wrld", "bob is typing...", "> "]
    term.setStatus("")
    assert _screen(screen) == ["#lobby <carol> hi", "> hello wrld", "> "]
    # a status wider than the terminal is cut, so it never wraps
    term.setStatus("alice, bob and carol are typing...")
    assert _screen(screen)[-2] == "alice, bob and carol are typi"


def test_terminalHistoryAndEditing() -> None:
    """
    The up and down arrows recall earlier lines; backspace, Home/End and
    C{^U} edit; UTF-8 input is one character per key press.
    """
    term, screen, sink = _terminal()
    _type(term, b"first\r")
    _type(term, b"second\r")
    term.keystrokeReceived(screen.UP_ARROW, None)
    term.keystrokeReceived(screen.UP_ARROW, None)
    _type(term, b"\x7f\x7fST\r")
    term.keystrokeReceived(screen.UP_ARROW, None)
    term.keystrokeReceived(screen.DOWN_ARROW, None)
    _type(term, b"abc\x01X\x05Y\r")
    _type(term, b"junk\x15ok\r")
    _type(term, "h\u00e9 \u4f60\u597d".encode("utf-8") + b"\x7f\r")
    assert sink.lines == ["first", "second", "firST", "XabcY", "ok", "h\u00e9 \u4f60"]


def test_terminalQuitKeys() -> None:
    """
    C{^D} on an empty line ends the input (elsewhere it deletes), C{^C} is
    an interrupt; other control characters are ignored.
    """
    term, screen, sink = _terminal()
    _type(term, b"ab\x01\x04\x07\x1b")
    assert sink.eofs == 0
    _type(term, b"\r")
    assert sink.lines == ["b"]
    _type(term, b"\x04")
    assert sink.eofs == 1
    _type(term, b"\x03")
    assert (sink.eofs, sink.interrupts) == (1, 1)


def test_terminalClose() -> None:
    """
    Closing the terminal UI erases the input line, leaves insert mode and
    ignores further output.
    """
    from twisted.conch.insults import insults

    term, screen, sink = _terminal()
    _type(term, b"half-typed")
    term.close()
    assert _screen(screen) == [""]
    assert not screen.modes.get(insults.modes.IRM)
    term.showLine("late")
    assert _screen(screen) == [""]


def test_terminalWideCharacters() -> None:
    """
    Wide characters count two columns when the cursor moves over them.
    """
    from twisted.conch.insults.insults import ServerProtocol

    from twisted_chat.client.tty import ChatTerminal, charWidth

    assert [charWidth(c.encode()) for c in "a\u00e9\u4f60\u0301"] == [1, 1, 2, 0]
    sink = Sink()
    server = ServerProtocol(ChatTerminal, sink, 80)
    out = StringTransport()
    server.makeConnection(out)
    server.dataReceived("\u4f60\u597d".encode("utf-8"))
    out.clear()
    server.dataReceived(b"\x1b[D")
    assert out.value() == b"\x1b[2D"
    server.dataReceived(b"\x7f")
    assert out.value() == b"\x1b[2D\x1b[2D\x1b[2P"
    server.dataReceived(b"\r")
    assert sink.lines == ["\u597d"]


# -- the real client under a pseudo-terminal --


@pytest_twisted.ensureDeferred
async def test_terminalUnderPty() -> None:
    """
    On a (pseudo-)terminal the client runs in raw mode with line editing:
    typed lines are sent, incoming lines appear above the input line
    without disturbing what is being typed, the up arrow recalls the last
    line, and C{/quit} exits with status 0 and the terminal settings
    restored.
    """
    from twisted.internet import reactor

    received: DeferredQueue[str] = DeferredQueue()
    factory = lineServerFactory(received, greeting=b"*** Welcome to the test server\n")
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    master, slave = os.openpty()
    probe = os.dup(master)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    before = termios.tcgetattr(slave)
    client = PtyClient()
    try:
        url = "tcp://127.0.0.1:%d" % (port.getHost().port,)
        reactor.spawnProcess(
            client.protocol,
            sys.executable,
            [sys.executable, "-m", "twisted_chat.client.main", url, "--nick", "me"],
            env=clientEnvironment(),
            path=str(REPO),
            usePTY=(master, slave, os.ttyname(slave)),
        )
        await client.waitFor(b"*** Welcome to the test server").addTimeout(TIMEOUT, reactor)
        assert await received.get().addTimeout(TIMEOUT, reactor) == "/nick me"
        await client.waitFor(b"> ").addTimeout(TIMEOUT, reactor)
        raw = termios.tcgetattr(probe)
        assert not raw[3] & (termios.ICANON | termios.ECHO), "not in raw mode"

        client.write(b"hello")
        await client.waitFor(b"hello").addTimeout(TIMEOUT, reactor)
        client.write(b"\r")
        assert await received.get().addTimeout(TIMEOUT, reactor) == "hello"
        await client.waitFor(b"#lobby <me> hello").addTimeout(TIMEOUT, reactor)

        # a line arriving while the user types goes above the input line
        client.write(b"par")
        await client.waitFor(b"par", len(client.output)).addTimeout(TIMEOUT, reactor)
        mark = len(client.output)
        factory.connections[0].sendLine(b"#lobby <bob> interrupting")
        await client.waitFor(b"> par", mark).addTimeout(TIMEOUT, reactor)
        redraw = client.output[mark:]
        assert b"\r\x1b[J#lobby <bob> interrupting\r\n> par" in redraw
        client.write(b"tial\r")
        assert await received.get().addTimeout(TIMEOUT, reactor) == "partial"

        # the up arrow recalls the last line
        client.write(b"\x1b[A\r")
        assert await received.get().addTimeout(TIMEOUT, reactor) == "partial"

        client.write(b"/quit\r")
        assert await received.get().addTimeout(TIMEOUT, reactor) == "/quit"
        assert await client.ended.addTimeout(TIMEOUT, reactor) == 0
        after = termios.tcgetattr(probe)
        assert after[:4] == before[:4], "terminal settings not restored"
        assert client.output.endswith(b"\x1b[4l"), client.output[-40:]
        assert b"\x1bc" not in client.output, "the screen was reset"
    finally:
        if not client.ended.called:
            client.protocol.transport.signalProcess("KILL")
            await client.ended.addTimeout(TIMEOUT, reactor)
        os.close(probe)
        await stopListening(port)

