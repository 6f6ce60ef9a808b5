"""
Tests for the line chat's language shared by the server and the terminal
client (L{twisted_chat.wire}): line framing (L{twisted_chat.wire.lines}),
the slash-command grammar (L{twisted_chat.wire.commands}) and the line
renderers (L{twisted_chat.wire.render}); and that both ends handle every
command of the grammar.
"""

from __future__ import annotations

import calendar

import pytest

from twisted_chat.client.conversation import CLIENT_COMMANDS
from twisted_chat.client.jsonchat import JsonChat
from twisted_chat.core.errors import ChatError
from twisted_chat.frontends.textmode import TextCommands
from twisted_chat.wire.commands import COMMANDS, DEFAULT_HISTORY, HELP, Command, parseLine
from twisted_chat.wire.lines import LineFraming, LineProtocol
from twisted_chat.wire.render import historyLines, messageLine, oneLine, presenceLine, privateLine, stamp

#: 2026-11-26 12:00:00 UTC
NOON = float(calendar.timegm((2026, 11, 26, 12, 0, 0)))


# -- framing --


def frame(framing: LineFraming, *reads: bytes, limit: int = 8) -> list[bytes | None]:
    """
    What C{framing} makes of C{reads}, in order.
    """
    lines: list[bytes | None] = []
    for data in reads:
        lines.extend(framing.frameLines(data, limit))
    return lines


def test_framesLfAndCrlf() -> None:
    """
    A line ends with LF, with or without a CR before it, which is not part
    of the line; a CR anywhere else is.
    """
    assert frame(LineFraming(), b"one\ntwo\r\n\r\n\nfo\rur\n") == [b"one", b"two", b"", b"", b"fo\rur"]


def test_framesAcrossReads() -> None:
    """
    A line split across reads, CRLF split too, comes out once, whole; what
    is not a line yet stays bytes (a UTF-8 character may be cut).
    """
    f = LineFraming()
    data = "h\xe9 ok\r\n".encode("utf-8")
    assert [frame(f, data[i : i + 1]) for i in range(len(data))] == [[]] * (len(data) - 1) + [["h\xe9 ok".encode("utf-8")]]


def test_lineAtTheLimitWithItsCrlfInPieces() -> None:
    """
    A line of exactly the limit waits for the LF after its CR, even when
    that CR arrived first: it is not too long.
    """
    f = LineFraming()
    assert frame(f, b"12345678\r") == []
    assert frame(f, b"\nnext\n") == [b"12345678", b"next"]


def test_overLongLineInOneRead() -> None:
    """
    A line over the limit is reported as C{None} in its place; the lines
    around it come through.
    """
    assert frame(LineFraming(), b"before\n123456789\nafter\n") == [b"before", None, b"after"]


def test_overLongLineIsNeverBuffered() -> None:
    """
    A line that grows over the limit is reported once, as soon as it is too
    long, and the rest of it is thrown away as it arrives (never more than
    the limit and a CR is kept); the line after it comes through.
    """
    f = LineFraming()
    out = frame(f, b"12345")
    assert out == []
    out = frame(f, b"6789ab")
    assert out == [None]
    for _ in range(100):
        assert frame(f, b"x" * 1000) == []
        assert len(f._buffer) <= 8 + 1
    assert frame(f, b"xx\r\nok\n") == [b"ok"]


def test_overLongLineByteByByte() -> None:
    """
    An over-long line arriving a byte at a time is reported once.
    """
    f = LineFraming()
    out: list[bytes | None] = []
    for b in b"q" * 50 + b"\nok\n":
        out += frame(f, bytes([b]))
    assert out == [None, b"ok"]


class Recorder(LineProtocol):
    maxLength = 4

    def __init__(self) -> None:
        self.got: list[bytes | str] = []

    def lineReceived(self, line: bytes) -> None:
        self.got.append(line)

    def lineTooLong(self) -> None:
        self.got.append("too long")


def test_lineProtocol() -> None:
    """
    L{LineProtocol} hands each line to C{lineReceived} and reports each one
    over C{maxLength} to C{lineTooLong}, in order.
    """
    p = Recorder()
    p.dataReceived(b"ab\r\nabcdef\nabcd")
    p.dataReceived(b"\r\n")
    assert p.got == [b"ab", "too long", b"abcd"]


# -- the grammar --


@pytest.mark.parametrize(
    "line, said",
    [
        ("", None),
        ("  \t ", None),
        ("hello", "hello"),
        (" /not a command", " /not a command"),
        ("//slash", "/slash"),
        ("/help me", Command("help")),
        ("/HeLp", Command("help")),
        ("/nick bob", Command("nick", "bob")),
        ("/nick bob secret words", Command("login", "bob", "secret words")),
        ("/login bob  secret ", Command("login", "bob", " secret")),
        ("/join  #dev ", Command("join", "#dev")),
        ("/part", Command("part")),
        ("/part #dev", Command("part", "#dev")),
        ("/rooms", Command("rooms")),
        ("/who", Command("who")),
        ("/msg bob  hi there", Command("msg", "bob", " hi there")),
        ("/me waves", Command("me", text="waves")),
        ("/history", Command("history", number=DEFAULT_HISTORY)),
        ("/history 5", Command("history", number=5)),
        ("/topic", Command("topic")),
        ("/topic new  topic", Command("topic", text="new  topic")),
        ("/kick bob  go away ", Command("kick", "bob", "go away")),
        ("/ban 10.0.0.1", Command("ban", "10.0.0.1")),
        ("/unban bob", Command("unban", "bob")),
        ("/op bob", Command("op", "bob")),
        ("/notice maintenance", Command("notice", text="maintenance")),
        ("/status", Command("status")),
        ("/quit", Command("quit")),
        ("/quit gone home", Command("quit", text="gone home")),
    ],
)
def test_parseLine(line: str, said: str | Command | None) -> None:
    """
    A typed line is nothing (blank), text to say (C{//} says C{/}), or a
    command (any case) with its arguments; C{/nick NICK PASSWORD} is a login.
    """
    assert parseLine(line) == said


@pytest.mark.parametrize(
    "line, code, message",
    [
        ("/fly", "unknown-command", "unknown command /fly (try /help)"),
        ("/", "unknown-command", "unknown command / (try /help)"),
        ("/say hi", "unknown-command", "unknown command /say (try /help)"),
        ("/\x1b[2J" + "x" * 40, "unknown-command", "unknown command / [2j" + "x" * 28 + " (try /help)"),
        ("/nick", "bad-request", "usage: /nick NAME [PASSWORD]"),
        ("/login bob", "bad-request", "usage: /login NICK PASSWORD"),
        ("/join", "bad-request", "usage: /join ROOM"),
        ("/join a b", "bad-request", "usage: /join ROOM"),
        ("/part a b", "bad-request", "usage: /part [ROOM]"),
        ("/who a b", "bad-request", "usage: /who [ROOM]"),
        ("/msg bob", "bad-request", "usage: /msg NICK TEXT"),
        ("/me", "bad-request", "usage: /me ACTION"),
        ("/history 0", "bad-request", "usage: /history [N] with N a whole number from 1"),
        ("/history x", "bad-request", "usage: /history [N] with N a whole number from 1"),
        ("/kick", "bad-request", "usage: /kick NICK [REASON]"),
        ("/ban", "bad-request", "usage: /ban NICK|ADDRESS [REASON]"),
        ("/unban", "bad-request", "usage: /unban NICK|ADDRESS"),
        ("/op a b", "bad-request", "usage: /op NICK"),
        ("/notice", "bad-request", "usage: /notice TEXT"),
    ],
)
def test_parseLineRefuses(line: str, code: str, message: str) -> None:
    """
    An unknown command, or one written wrongly, is refused with a code and
    the words to show (the name made safe for a terminal, and cut).
    """
    with pytest.raises(ChatError) as e:
        parseLine(line)
    assert (e.value.code, e.value.message) == (code, message)


def test_helpNamesEveryCommand() -> None:
    """
    The help mentions every command of the grammar (but C{/help}).
    """
    text = "\n".join(HELP)
    for name in set(COMMANDS) - {"help"}:
        assert "/" + name + " " in text, name


def test_bothEndsHandleEveryCommand() -> None:
    """
    The server's text mode carries out, and the client's json mode
    translates, every command of the grammar, and nothing else (but the
    client's own commands).
    """
    server = {n[4:] for n in dir(TextCommands) if n.startswith("req_")}
    client = {n[4:] for n in dir(JsonChat) if n.startswith("req_")}
    assert server == set(COMMANDS)
    assert client == set(COMMANDS) | set(CLIENT_COMMANDS)


# -- rendering --


class Said:
    def __init__(self, room: str, sender: str, text: str, time: float = NOON, action: bool = False) -> None:
        self.room, self.sender, self.text, self.time, self.action = room, sender, text, time, action


def test_renderers() -> None:
    """
    The line chat's lines (docs/protocol.md): messages and actions with or
    without a stamp (the date when not today), private messages both ways,
    presence in small and big rooms, histories; user text never carries
    control characters.
    """
    assert oneLine("a\nb\x1b\x07\tc\x85") == "a b  \tc "
    assert stamp(NOON - 60, NOON) == "11:59"
    assert stamp(NOON - 86400, NOON) == "2026-11-25 12:00"
    assert messageLine(Said("#lobby", "bob", "hi\nthere")) == "#lobby <bob> hi there"
    assert messageLine(Said("#lobby", "bob", "waves", action=True), "11:59") == "#lobby [11:59] * bob waves"
    assert privateLine("Alice", "bob", "psst", "alice") == "-> *bob* psst"
    assert privateLine("bob", "alice", "psst", "alice", "12:00") == "[12:00] *bob* psst"
    assert privateLine("alice", "alice", "note", "alice") == "*alice* note"
    assert presenceLine("#big", ["a", "b"], 5000) == "*** #big: 5000 members, among them: a, b"
    assert presenceLine("#empty", []) == "*** #empty: nobody is here"
    messages = [Said("#dev", "bob", "one", NOON - 60)]
    assert historyLines("#dev", messages, NOON, requested=False) == ["*** #dev: last 1 message:", "#dev [11:59] <bob> one"]
    assert historyLines("#dev", messages, NOON, requested=True) == [
        "*** #dev: history, 1 message:",
        "#dev [11:59] <bob> one",
        "*** #dev: end of history",
    ]
    assert historyLines("#dev", messages * 2, NOON, requested=False, resumed=True)[0] == (
        "*** #dev: 2 messages while you were away:"
    )
    assert historyLines("#dev", [], NOON, requested=True) == ["*** #dev: no messages yet"]
    assert historyLines("#dev", [], NOON, requested=False) == []
