"""
Tests for the C{twisted-chat} terminal client: the reactor-free parts (the
URL in L{twisted_chat.client.target}, json mode in
L{twisted_chat.client.jsonchat} and L{twisted_chat.client.resume}), the
session logic (L{twisted_chat.client.session}), the links, the pipe UI and
TLS (L{twisted_chat.client.links}, L{twisted_chat.client.pipe},
L{twisted_chat.client.tls}), the command line (L{twisted_chat.client.cli})
and the terminal UI (L{twisted_chat.client.tty}).

In-memory tests drive protocols through L{StringTransport}s and a L{Clock};
a few tests use real loopback sockets (WebSocket, TLS), a pseudo-terminal,
or the real daemon (marked C{e2e}). The reactor is imported inside tests
only, and every awaited Deferred has a timeout.
"""

from __future__ import annotations

import calendar
import fcntl
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, DeferredQueue, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IHalfCloseableProtocol, IHandshakeListener
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport, StringTransportWithDisconnection
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_chat.client.cli import main, parseCommandLine
from twisted_chat.client.jsonchat import JsonChat, describeRequest, newRefPrefix
from twisted_chat.client.links import LineLink, connect
from twisted_chat.client.pipe import PipeUI
from twisted_chat.client.session import ChatClient, describeFailure
from twisted_chat.client.target import BadURL, Target, parseTarget
from twisted_chat.client.tls import OptionError, tlsCreator
from twisted_chat.client.typed import quitRequest
from twisted_chat.core.events import Private, PrivateHistory
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.core.service import ChatService
from twisted_chat.frontends.textmode import TextSession
from twisted_chat.wire.commands import HELP
from twisted_chat.stores.memory import MemoryStore

from tests.support.components import REPO

#: 2026-11-26 12:00:00 UTC
NOON = float(calendar.timegm((2026, 11, 26, 12, 0, 0)))

TIMEOUT = 10.0

#: a web front-end on a free loopback port (for C{startDaemon(web=…)})
LOOPBACK_WEB = "tcp:0:interface=127.0.0.1"


class FakeUI:
    """
    A UI that records what it is asked to show.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.statuses: list[str] = []
        self.notices: list[str] = []
        self.sink: Any = None
        self.closed = False
        self.queue: DeferredQueue[str] = DeferredQueue()

    def start(self, sink: Any, reactor: Any) -> None:
        self.sink = sink

    def showLine(self, line: str) -> None:
        self.lines.append(line)
        self.queue.put(line)

    def showStatus(self, text: str) -> None:
        self.statuses.append(text)

    def showNotice(self, text: str) -> None:
        self.notices.append(text)

    def close(self) -> Deferred[None]:
        self.closed = True
        return succeed(None)


def result(d: Deferred[Any]) -> Any:
    """
    The result a Deferred has already fired with.
    """
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


# -- URLs and the command line --


@pytest.mark.parametrize(
    "url, expected",
    [
        ("tcp://127.0.0.1:9000", Target("tcp", "127.0.0.1", 9000)),
        ("tcp://chat.example.org", Target("tcp", "chat.example.org", 9000)),
        ("tcp://chat.example.org:9000/", Target("tcp", "chat.example.org", 9000)),
        ("TLS://Chat.Example.org:9443", Target("tls", "chat.example.org", 9443)),
        ("tcp://[::1]:9000", Target("tcp", "::1", 9000)),
        ("ws://127.0.0.1:8080/ws", Target("ws", "127.0.0.1", 8080, "/ws")),
        ("ws://127.0.0.1:8080", Target("ws", "127.0.0.1", 8080, "/")),
        ("ws://example.org", Target("ws", "example.org", 80, "/")),
        ("wss://example.org/chat/ws?room=dev", Target("wss", "example.org", 443, "/chat/ws?room=dev")),
    ],
)
def test_parseTarget(url: str, expected: Target) -> None:
    """
    L{parseTarget} accepts the four schemes, fills in default ports (9000
    for the line chat, 80 and 443 for WebSocket) and the path C{/}, and
    keeps a WebSocket URL's path and query.
    """
    assert parseTarget(url) == expected


def test_targetProperties() -> None:
    """
    A L{Target} knows its transport and prints its address for people,
    IPv6 literals in brackets.
    """
    t = parseTarget("wss://[::1]:8443/ws")
    assert (t.websocket, t.secure, t.address, t.url) == (True, True, "[::1]:8443", "wss://[::1]:8443/ws")
    t = parseTarget("tcp://127.0.0.1:9000")
    assert (t.websocket, t.secure, t.address) == (False, False, "127.0.0.1:9000")
    assert parseTarget("tls://h:1").secure and not parseTarget("tls://h:1").websocket
    assert not parseTarget("ws://h").secure


@pytest.mark.parametrize(
    "url, reason",
    [
        ("127.0.0.1:9000", "no scheme"),
        ("localhost", "no scheme"),
        ("http://example.org", "unknown scheme 'http'"),
        ("tcp://:9000", "no host"),
        ("tcp://host:port", "the port must be a number"),
        ("tcp://host:0", "the port must be a number"),
        ("tcp://host:70000", "the port must be a number"),
        ("tcp://host:", "empty port"),
        ("tcp://host:9000/lobby", "tcp:// URLs have no path"),
        ("tls://host:9000?x=1", "tls:// URLs have no path"),
        ("tcp://bob:secret@host:9000", "user names and passwords"),
        ("ws://host/ws#frag", "fragment"),
        ("ws://host name/", "bad URL"),
        ("", "bad URL"),
    ],
)
def test_parseTargetErrors(url: str, reason: str) -> None:
    """
    L{parseTarget} refuses what it cannot use with L{BadURL}, whose message
    is one line naming the URL and the reason.
    """
    with pytest.raises(BadURL) as e:
        parseTarget(url)
    message = str(e.value)
    assert reason in message
    assert repr(url) in message
    assert "\n" not in message


def test_mainBadURL(capsys: pytest.CaptureFixture[str]) -> None:
    """
    A bad URL makes C{main} write one error line to stderr and exit with
    status 2, without starting anything.
    """
    with pytest.raises(SystemExit) as e:
        main(["http://example.org"])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("twisted-chat: error: bad URL 'http://example.org': unknown scheme")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--nick", "not a nick"], "bad --nick 'not a nick': nicknames are"),
        (["tls://h:1", "--insecure", "--cafile", "x.pem"], "--insecure and --cafile exclude each other"),
        (["tls://h:1", "--cafile", "/nonexistent/ca.pem"], "cannot read --cafile /nonexistent/ca.pem"),
    ],
)
def test_mainBadOptions(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """
    Options that cannot work are refused up front with one line and exit
    status 2.
    """
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_cafileWithoutCertificate(tmp_path: Path) -> None:
    """
    A C{--cafile} without a PEM certificate in it is refused.
    """
    path = tmp_path / "empty.pem"
    path.write_text("nothing here\n")
    with pytest.raises(OptionError, match="holds no PEM certificate"):
        parseCommandLine(["tls://h:1", "--cafile", str(path)])


def test_commandLineDefaults() -> None:
    """
    Without arguments the client connects to the line chat on
    C{127.0.0.1:9000}, with no nick and no TLS.
    """
    s = parseCommandLine([])
    assert s.target == Target("tcp", "127.0.0.1", 9000)
    assert (s.nick, s.creator, s.warnings) == (None, None, [])
    assert s.reconnectAttempts == 8
    assert s.confirmTimeout == 10.0


def test_commandLineConfirmTimeout(capsys: pytest.CaptureFixture[str]) -> None:
    """
    C{--confirm-timeout SECONDS} bounds the wait for confirmations when
    quitting; it must be above 0 and at most an hour (else status 2). The
    help describes the wait and the exit statuses.
    """
    assert parseCommandLine(["--confirm-timeout", "2.5", "ws://h/ws"]).confirmTimeout == 2.5
    for bad in ["0", "-1", "x", "3601", "nan"]:
        with pytest.raises(SystemExit) as e:
            parseCommandLine(["--confirm-timeout", bad])
        assert e.value.code == 2
        assert "--confirm-timeout: must be a number of seconds above 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parseCommandLine(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--confirm-timeout SECONDS" in text
    assert "Exit status: 0 when everything was confirmed; 3 when it was, but something was refused" in text


def test_commandLineReconnectAttempts(capsys: pytest.CaptureFixture[str]) -> None:
    """
    C{--reconnect-attempts N} sets how many failed attempts in a row end
    the session (0: never reconnect); anything but a whole number from 0 is
    a usage error (status 2).
    """
    assert parseCommandLine(["--reconnect-attempts", "0", "ws://h/ws"]).reconnectAttempts == 0
    assert parseCommandLine(["--reconnect-attempts", "3", "ws://h/ws"]).reconnectAttempts == 3
    for bad in ["-1", "x"]:
        with pytest.raises(SystemExit) as e:
            parseCommandLine(["--reconnect-attempts", bad])
        assert e.value.code == 2
        assert "--reconnect-attempts: must be a whole number" in capsys.readouterr().err


def test_commandLineTLS() -> None:
    """
    C{tls://} and C{wss://} verify certificates by default; C{--insecure}
    does not and says so; TLS options on a plain URL only earn a warning.
    """
    s = parseCommandLine(["wss://chat.example.org/ws", "--nick", "alice"])
    assert s.nick == "alice" and s.creator is not None and s.warnings == []
    assert type(s.creator).__name__ == "ClientTLSOptions"
    s = parseCommandLine(["tls://chat.example.org:9443", "--insecure"])
    assert type(s.creator).__name__ == "InsecureTLS"
    assert s.warnings == ["warning: --insecure: the server's certificate is NOT verified"]
    s = parseCommandLine(["tcp://h:1", "--insecure"])
    assert s.creator is None
    assert s.warnings == ["warning: --insecure has no effect on tcp:// (no TLS)"]


def test_quitRequest() -> None:
    """
    C{/quit [REASON]} (any case) and a line that is just C{bye} end the
    session; nothing else does.
    """
    assert quitRequest("/quit") == ""
    assert quitRequest("/QUIT  gone fishing ") == "gone fishing"
    assert quitRequest("bye") == ""
    assert quitRequest("  bye ") == ""
    for line in ["byebye", "bye now", "/quitter", "//quit", "say /quit", "", "Bye"]:
        assert quitRequest(line) is None, line


def test_describeFailure() -> None:
    """
    Connection failures are described in a few words.
    """
    assert describeFailure(Failure(ConnectionRefusedError())) == "connection refused"
    assert describeFailure(Failure(ConnectionLost())) == "connection lost"
    assert describeFailure(Failure(ValueError("odd\nthing"))) == "odd thing"


# -- json mode: typed lines to requests --


def translate(chat: JsonChat, line: str) -> tuple[list[dict[str, Any]], list[str]]:
    return chat.translate(line)


def test_translateText() -> None:
    """
    Plain text becomes a C{say} with a fresh C{ref}; C{//text} says
    C{/text}; empty lines are ignored.
    """
    chat = JsonChat(lambda: NOON)
    assert translate(chat, "hello there") == ([{"type": "say", "text": "hello there", "ref": "c1"}], [])
    assert translate(chat, "//slash") == ([{"type": "say", "text": "/slash", "ref": "c2"}], [])
    assert translate(chat, "") == ([], [])
    assert translate(chat, "   ") == ([], [])


@pytest.mark.parametrize(
    "line, request_",
    [
        ("/nick bob", {"type": "nick", "nick": "bob"}),
        ("/NICK bob", {"type": "nick", "nick": "bob"}),
        ("/join dev", {"type": "join", "room": "dev"}),
        ("/join #Dev", {"type": "join", "room": "#Dev"}),
        ("/part", {"type": "part"}),
        ("/part #dev", {"type": "part", "room": "#dev"}),
        ("/rooms", {"type": "rooms"}),
        ("/who", {"type": "who"}),
        ("/who #dev", {"type": "who", "room": "#dev"}),
        ("/msg bob are you there?", {"type": "msg", "to": "bob", "text": "are you there?", "ref": "c1"}),
        ("/me waves", {"type": "say", "text": "waves", "action": True, "ref": "c1"}),
        ("/history", {"type": "history", "limit": 20}),
        ("/history 5", {"type": "history", "limit": 5}),
        ("/login bob secret words", {"type": "login", "nick": "bob", "password": "secret words", "ref": "c1"}),
        ("/nick bob secret", {"type": "login", "nick": "bob", "password": "secret", "ref": "c1"}),
        ("/topic", {"type": "who"}),
        ("/topic lunch at noon", {"type": "topic", "topic": "lunch at noon"}),
        ("/topic -", {"type": "topic", "topic": ""}),
        ("/kick bob  stop it ", {"type": "kick", "nick": "bob", "reason": "stop it"}),
        ("/ban 10.0.0.1", {"type": "ban", "target": "10.0.0.1", "reason": ""}),
        ("/unban bob", {"type": "unban", "target": "bob"}),
        ("/op bob", {"type": "op", "nick": "bob"}),
        ("/notice maintenance", {"type": "notice", "text": "maintenance"}),
        ("/status", {"type": "status"}),
    ],
)
def test_translateCommands(line: str, request_: dict[str, Any]) -> None:
    """
    Each line-chat command becomes the json-mode request that does the same.
    """
    assert translate(JsonChat(lambda: NOON), line) == ([request_], [])


@pytest.mark.parametrize(
    "line",
    ["/nick", "/join", "/join a b", "/part a b", "/who a b", "/msg", "/msg bob", "/msg bob  ",
     "/me", "/history x", "/history 0", "/history -3", "/fly", "/f1y", "/", "/ leading space",
     "/login", "/login bob", "/kick", "/ban", "/unban", "/unban a b", "/op", "/op a b", "/notice", "/say hi"],
)
def test_translateErrorsLikeLineChat(line: str) -> None:
    """
    A usage error or an unknown command is answered locally with the very
    C{!!!} line the line chat sends, and nothing is sent.
    """
    service = ChatService(store=MemoryStore(), clock=Clock())
    session = Both(JsonChat(lambda: NOON))
    session.member = service.connect(session, nick="alice")
    session.handleText(line)
    requests, lines = translate(JsonChat(lambda: NOON), line)
    assert requests == []
    assert lines == session.text
    assert len(lines) == 1 and lines[0].startswith("!!! ")


def test_translateHelp() -> None:
    """
    C{/help} is answered locally with the line chat's help.
    """
    requests, lines = translate(JsonChat(lambda: NOON), "/help")
    assert requests == []
    assert lines == ["*** " + line for line in HELP]


def test_translateJoinKnownRoom() -> None:
    """
    C{/join} of a room already joined switches to it (the server is told,
    to switch there too) and says so locally, as the line chat does.
    """
    chat = JsonChat(lambda: NOON, nick="alice")
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]})
    chat.render({"type": "join", "room": "#lobby", "nick": "alice", "time": 0})
    chat.render({"type": "join", "room": "#dev", "nick": "alice", "time": 0})
    assert chat.current == "#dev"
    assert translate(chat, "/join Lobby") == (
        [{"type": "join", "room": "Lobby"}],
        ["*** #lobby is now your current room"],
    )
    assert chat.current == "#lobby"


def test_helloAndResume() -> None:
    """
    The first C{hello} carries only the nick; after messages were seen it
    also names the rooms (the current one first) and the last position seen
    in each, and a later C{/join} of a room left asks for what was missed.
    """
    chat = JsonChat(lambda: NOON, nick="alice")
    assert chat.hello() == {"type": "hello", "nick": "alice"}
    assert JsonChat(lambda: NOON).hello() == {"type": "hello"}
    for event in [
        {"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]},
        {"type": "join", "room": "#lobby", "nick": "alice", "time": 0},
        {"type": "history", "room": "#lobby", "epoch": "e1", "messages": [msg("#lobby", 7, "bob", "old")]},
        {"type": "join", "room": "#dev", "nick": "alice", "time": 0},
        msg("#dev", 3, "bob", "hi"),
        msg("#lobby", 8, "bob", "new"),
    ]:
        chat.render(event)
    assert chat.positions == {"#lobby": ("e1", 8), "#dev": ("e1", 3)}
    assert chat.hello() == {
        "type": "hello",
        "nick": "alice",
        "rooms": ["#dev", "#lobby"],
        "since": {"#dev": {"epoch": "e1", "id": 3}, "#lobby": {"epoch": "e1", "id": 8}},
    }
    # leaving a room forgets its position; a room parted and rejoined by
    # someone else's doing keeps it for /join
    chat.render({"type": "part", "room": "#dev", "nick": "alice", "reason": "left", "time": 0})
    assert "#dev" not in chat.positions
    chat.positions["#old"] = ("e1", 41)
    assert translate(chat, "/join old") == (
        [{"type": "join", "room": "old", "since": {"epoch": "e1", "id": 41}}],
        [],
    )


def test_helloRefusedNick() -> None:
    """
    When the server refuses the nick of the C{hello}, the client says why and
    says C{hello} again without a nick, to carry on as a guest, as a line
    chat user whose C{/nick} was refused does; later nick errors are only
    shown.
    """
    chat = JsonChat(lambda: NOON, nick="alice")
    assert chat.hello() == {"type": "hello", "nick": "alice"}
    refused = {"type": "error", "code": "nick-taken", "message": "the nickname alice is taken"}
    assert chat.render(refused) == ["!!! the nickname alice is taken"]
    assert chat.takeRequests() == [{"type": "hello"}]
    assert chat.takeRequests() == []
    chat.render({"type": "welcome", "nick": "guest-4", "server": "x", "rooms": ["#lobby"]})
    assert chat.nick == "guest-4"
    assert chat.render(dict(refused, message="the nickname bob is taken")) == ["!!! the nickname bob is taken"]
    assert chat.takeRequests() == []


def test_resumeResults() -> None:
    """
    A resumed room's history says how many messages were missed, or that
    some may be missing when the position could not be recovered (and a
    position of another epoch is then forgotten).
    """
    chat = JsonChat(lambda: NOON, nick="alice")
    chat.positions["#lobby"] = ("e1", 5)
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]})
    chat.render({"type": "join", "room": "#lobby", "nick": "alice", "time": 0})
    lines = chat.render(
        {"type": "history", "room": "#lobby", "epoch": "e1", "recovered": True,
         "messages": [msg("#lobby", 6, "bob", "missed", NOON - 60)]}
    )
    assert lines == ["*** #lobby: 1 message while you were away:", "#lobby [11:59] <bob> missed"]
    assert chat.positions["#lobby"] == ("e1", 6)

    chat.render({"type": "join", "room": "#dev", "nick": "alice", "time": 0})
    chat.positions["#dev"] = ("old-epoch", 9)
    lines = chat.render({"type": "history", "room": "#dev", "epoch": "e2", "recovered": False, "messages": []})
    assert lines == ["*** #dev: could not resume where you left off; some messages may be missing"]
    assert "#dev" not in chat.positions


def test_historyResetByTheServer() -> None:
    """
    The server's store lost its messages (an C{epoch} event): the user is
    told, the new epoch's messages from id 1 are shown (not taken for ones
    already seen), and a resume asks for the new epoch from its start.
    """
    chat = JsonChat(lambda: NOON, nick="alice")
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]})
    chat.render({"type": "join", "room": "#lobby", "nick": "alice", "time": 0})
    chat.render(msg("#lobby", 7, "bob", "before", NOON))
    lines = chat.render({"type": "epoch", "room": "#lobby", "epoch": "e2", "previous": "e1", "time": 0})
    assert lines == [
        "*** #lobby: the message history was reset (the server lost its stored messages); message numbers start again"
    ]
    assert chat.render(dict(msg("#lobby", 1, "bob", "after", NOON), epoch="e2")) == ["#lobby <bob> after"]
    assert chat.hello()["since"] == {"#lobby": {"epoch": "e2", "id": 1}}


def test_helloCarriesTokenAndPrivateSince() -> None:
    """
    The owner token of a welcome is sent with the same nick in later
    hellos (not with another nick), and so is the highest private message
    id seen, live or in a private history.
    """
    chat = JsonChat(lambda: NOON, nick="alice")
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": [], "owner": True, "token": "t0k"})
    chat.render({"type": "private", "id": 7, "from": "bob", "to": "alice", "text": "psst", "time": 0})
    chat.render({"type": "private-history", "messages": [
        {"id": 9, "from": "alice", "to": "bob", "text": "x", "time": 0},
        {"id": 8, "from": "bob", "to": "alice", "text": "y", "time": 0},
    ]})
    assert chat.hello() == {"type": "hello", "nick": "alice", "token": "t0k", "private_since": 9}
    # a welcome without a token keeps the one we have
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": [], "owner": True})
    assert chat.hello()["token"] == "t0k"
    chat.render({"type": "nick", "old": "alice", "new": "alicia", "time": 0})
    assert chat.hello() == {"type": "hello", "nick": "alicia", "private_since": 9}


def test_unackedRequestsAreResent() -> None:
    """
    Says and private messages are kept until their ack or error arrives;
    after the next welcome they are sent again with the same ref, before
    what was typed since the reconnect (held until the welcome), in order.
    """
    chat = JsonChat(lambda: NOON, nick="alice")
    chat.hello()
    # before the welcome requests are held, then follow it
    requests, _ = chat.translate("early")
    assert chat.outgoing(requests) == []
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]})
    assert chat.takeRequests() == [{"type": "say", "text": "early", "ref": "c1"}]
    sent = []
    for line in ["acked", "/msg bob refused", "/me waits", "/msg bob lost", "/who"]:
        requests, _ = chat.translate(line)
        sent += chat.outgoing(requests)
    assert [r.get("ref") for r in sent] == ["c2", "c3", "c4", "c5", None]
    chat.render({"type": "ack", "ref": "c1", "id": 1, "room": "#lobby", "epoch": "e1"})
    chat.render({"type": "ack", "ref": "c2", "id": 2, "room": "#lobby", "epoch": "e1"})
    chat.render({"type": "error", "code": "no-such-nick", "message": "no such nick", "ref": "c3"})
    assert list(chat.unacked) == ["c4", "c5"]
    # the connection drops; the user types on meanwhile
    chat.hello()
    requests, _ = chat.translate("typed while away")
    assert chat.outgoing(requests) == []
    requests, _ = chat.translate("/join dev")
    assert chat.outgoing(requests) == []
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]})
    assert chat.takeRequests() == [
        {"type": "say", "text": "waits", "action": True, "ref": "c4"},
        {"type": "msg", "to": "bob", "text": "lost", "ref": "c5"},
        {"type": "say", "text": "typed while away", "ref": "c6"},
        {"type": "join", "room": "dev"},
    ]
    assert chat.takeRequests() == []
    # quitting before a welcome still sends what was held
    chat.hello()
    chat.outgoing(chat.translate("last words")[0])
    assert chat.takeHeld() == [{"type": "say", "text": "last words", "ref": "c7"}]
    assert chat.takeHeld() == []


def test_echoesPendingAfterResume() -> None:
    """
    An ack whose message was already shown (the echo comes first) leaves
    nothing pending. After a resume, the ack of a message sent again may
    come before the rejoin's history that shows it: its echo is pending
    until that history arrives (or, if the history does not have it, is
    given up then).
    """
    chat = JsonChat(lambda: NOON, nick="alice")
    chat.hello()
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]})
    chat.render({"type": "join", "room": "#lobby", "nick": "alice", "time": 0})
    chat.render({"type": "history", "room": "#lobby", "epoch": "e1", "messages": []})
    chat.outgoing(chat.translate("hi")[0])
    chat.render(msg("#lobby", 1, "alice", "hi"))
    chat.render({"type": "ack", "ref": "c1", "id": 1, "room": "#lobby", "epoch": "e1"})
    assert (chat.unacked, chat.echoesPending()) == ({}, False)

    chat.outgoing(chat.translate("again")[0])
    chat.hello()
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]})
    assert chat.takeRequests() == [{"type": "say", "text": "again", "ref": "c2"}]
    chat.render({"type": "ack", "ref": "c2", "id": 2, "room": "#lobby", "epoch": "e1"})
    assert chat.echoesPending()
    chat.render({"type": "join", "room": "#lobby", "nick": "alice", "time": 0})
    assert chat.echoesPending()
    lines = chat.render({"type": "history", "room": "#lobby", "epoch": "e1", "recovered": True,
                         "messages": [msg("#lobby", 2, "alice", "again")]})
    assert lines[0] == "*** #lobby: 1 message while you were away:"
    assert not chat.echoesPending()

    # a history without it: nothing more to wait for
    chat.outgoing(chat.translate("lost")[0])
    chat.hello()
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]})
    chat.takeRequests()
    chat.render({"type": "join", "room": "#lobby", "nick": "alice", "time": 0})
    chat.render({"type": "ack", "ref": "c3", "id": 9, "room": "#lobby", "epoch": "e2"})
    assert chat.echoesPending()
    chat.render({"type": "history", "room": "#lobby", "epoch": "e2", "recovered": False, "messages": []})
    assert not chat.echoesPending()


def test_refusalsAndDescriptions() -> None:
    """
    Refusals are counted: every C{error} event, and every typed line the
    client refuses itself; the server's oddities are not refusals. A
    request is described as the line that was typed for it. Each session
    can have refs of its own.
    """
    chat = JsonChat(lambda: NOON)
    chat.translate("/fly")
    chat.translate("/msg bob")
    chat.translate("/help")
    chat.render({"type": "error", "code": "flood", "message": "slow down"})
    chat.render([1, 2])
    chat.render({"type": "presence"})
    assert chat.refusals == 3
    prefixes = {newRefPrefix() for _ in range(100)}
    assert len(prefixes) == 100 and all(re.fullmatch(r"c[0-9a-f]{12}-", p) for p in prefixes)
    chat = JsonChat(lambda: NOON, refPrefix="c0123456789ab-")
    assert chat.translate("hi")[0][0]["ref"] == "c0123456789ab-1"
    assert [describeRequest(chat.translate(line)[0][0]) for line in ["hi", "//slash", "/me waves", "/msg bob psst"]] == [
        "hi", "//slash", "/me waves", "/msg bob psst"
    ]
    assert describeRequest({"type": "say", "text": "x\ny" * 100}) == ("x y" * 40)[:119] + "\u2026"


def test_resumeShowsEachMessageOnce() -> None:
    """
    A resumed history shows only the messages after the position kept for
    the room (a live message at or below it is not shown again), while a
    requested C{/history} shows all; an unrecovered resume says that
    messages may be missing before the recent history. A notice's
    C{reconnect_after} (milliseconds) is kept in seconds.
    """
    chat = JsonChat(lambda: NOON, nick="alice")
    chat.positions["#lobby"] = ("e1", 5)
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]})
    chat.render({"type": "join", "room": "#lobby", "nick": "alice", "time": 0})
    lines = chat.render({"type": "history", "room": "#lobby", "epoch": "e1", "recovered": True,
                         "messages": [msg("#lobby", i, "bob", "m%d" % (i,)) for i in (4, 5, 6)]})
    assert lines == ["*** #lobby: 1 message while you were away:", "#lobby [12:00] <bob> m6"]
    assert chat.render(msg("#lobby", 6, "bob", "m6")) == []
    assert chat.render(msg("#lobby", 7, "bob", "m7")) == ["#lobby <bob> m7"]
    translate(chat, "/history 2")
    lines = chat.render({"type": "history", "room": "#lobby", "epoch": "e1",
                         "messages": [msg("#lobby", 6, "bob", "m6"), msg("#lobby", 7, "bob", "m7")]})
    assert lines[1:3] == ["#lobby [12:00] <bob> m6", "#lobby [12:00] <bob> m7"]

    chat.hello()
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]})
    chat.render({"type": "join", "room": "#lobby", "nick": "alice", "time": 0})
    lines = chat.render({"type": "history", "room": "#lobby", "epoch": "e2", "recovered": False,
                         "messages": [msg("#lobby", 1, "bob", "new", epoch="e2")]})
    assert lines == [
        "*** #lobby: could not resume where you left off; some messages may be missing",
        "*** #lobby: last 1 message:",
        "#lobby [12:00] <bob> new",
    ]
    assert chat.positions["#lobby"] == ("e2", 1)

    assert chat.reconnectAfter is None
    assert chat.render({"type": "notice", "text": "server shutting down", "reconnect_after": 2500}) == [
        "*** notice: server shutting down"
    ]
    assert chat.reconnectAfter == 2.5


def msg(room: str, id: int, sender: str, text: str, t: float = NOON, action: bool = False, epoch: str = "e1") -> dict[str, Any]:
    return {"type": "message", "room": room, "id": id, "epoch": epoch, "from": sender, "text": text,
            "time": int(t * 1000), "action": action}


# -- json mode: events to lines, compared with the line chat --


@implementer(IChatClient)
class Both(TextSession):
    """
    A service client that renders every event twice: as the line chat does
    (L{TextSession}) and through json mode (the server's C{eventObject},
    then L{JsonChat.render}), so the two can be compared.
    """

    kind = "test"

    def __init__(self, chat: JsonChat) -> None:
        self.chat = chat
        self.text: list[str] = []
        self.json: list[str] = []

    def sendText(self, text: str) -> None:
        self.text.append(text)

    def endSession(self, reason: str) -> None:
        pass

    def close(self, reason: str) -> None:
        pass

    def deliver(self, event: Any) -> None:
        from twisted_chat.frontends.jsonmode import eventObject

        self.deliverText(event)
        obj = eventObject(event)
        if obj is not None:
            self.json.extend(self.chat.render(json.loads(json.dumps(obj))))

    def sendError(self, message: str) -> None:
        TextSession.sendError(self, message)
        if self._requested:
            # json mode sent a request, which the server refused
            self.json.extend(self.chat.render({"type": "error", "code": "x", "message": message}))

    _requested = False

    def type(self, line: str) -> None:
        """
        The user types C{line}: the line chat acts on it; json mode
        translates it (for its local lines and state).
        """
        requests, local = self.chat.translate(line)
        self.json.extend(local)
        self._requested = bool(requests)
        try:
            self.handleText(line)
        finally:
            self._requested = False


@implementer(IChatClient)
class Quiet:
    kind = "quiet"

    def deliver(self, event: object) -> None:
        pass

    def close(self, reason: str) -> None:
        pass


def test_renderLikeLineChat() -> None:
    """
    Every service event, rendered through json mode by L{JsonChat}, gives
    the same lines as the line chat sends for it: joins, presence, history
    on join and on request (with stamps of today and of other days), room
    messages and actions, private messages both ways, parts with reasons,
    nick changes, room lists, notices and errors.
    """
    pytest.importorskip("twisted_chat.frontends.jsonmode")
    clock = Clock()
    clock.advance(NOON)
    service = ChatService(store=MemoryStore(), clock=clock)
    bob = service.connect(Quiet(), nick="bob")
    bob.join("#lobby")
    bob.say("morning all")
    clock.advance(86400)

    me = Both(JsonChat(clock.seconds, nick="alice"))
    me.member = service.connect(me, nick="alice")
    me.chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]})
    me.member.join("#lobby")
    bob.say("hi alice")
    bob.say("waves", action=True)
    me.type("hello \x1b[31mred")
    me.type("/me nods")
    bob.private("alice", "psst")
    me.type("/msg bob lunch?")
    me.type("/msg alice note to self")
    me.type("/msg nobody hello")
    me.type("/history 10")
    me.type("/join dev")
    me.type("/history")
    me.type("/who")
    me.type("/who #empty")
    me.type("/rooms")
    bob.join("#dev")
    bob.setNick("bobby")
    me.type("/nick alicia")
    bob.part("#dev")
    bob.quit("quit: gone home")
    me.type("/part #dev")
    me.type("/part")
    me.type("/rooms")
    me.type("/join #bad!")
    me.type("")
    me.type("/status")
    service.notice("maintenance at noon")
    me.deliver(
        PrivateHistory([Private(7, "bobby", "alicia", "while you were out", NOON + 3600)])
    )
    me.deliver(PrivateHistory([]))

    assert me.text == me.json
    # and it did cover the cases it claims to
    joined = "\n".join(me.text)
    for expected in [
        "*** #lobby: last 1 message:",
        "#lobby [2026-11-26 12:00] <bob> morning all",
        "#lobby <bob> hi alice",
        "#lobby * bob waves",
        "#lobby <alice> hello  [31mred",
        "*bob* psst",
        "-> *bob* lunch?",
        "*alice* note to self",
        "!!! nobody called nobody is online",
        "*** #lobby: history, 5 messages:",
        "*** #dev: no messages yet",
        "*** #empty: nobody is here",
        "*** rooms: #dev (1), #lobby (2)",
        "*** #lobby, #dev: bob is now known as bobby",
        "*** you are now alicia",
        "*** #dev: bobby left",
        "*** your current room is #lobby",
        "*** #lobby: bobby left (quit: gone home)",
        "*** you are in no room now: /join one to talk",
        "*** rooms: none",
        "*** notice: maintenance at noon",
        "*** 1 private message while you were away:",
        "[2026-11-26 13:00] *bobby* while you were out",
        "!!! room names are # and 1-32 letters, digits, _ or -",
        "!!! only server admins can see the status",
    ]:
        assert expected in joined, expected


def test_renderJoinHistoryVersusRequested() -> None:
    """
    The history that follows a join is told apart from the answer to a
    C{/history} sent at the same time, even when the request went out first.
    """
    chat = JsonChat(lambda: NOON, nick="alice")
    chat.translate("/history")
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]})
    chat.render({"type": "join", "room": "#lobby", "nick": "alice", "time": 0})
    m = msg("#lobby", 1, "bob", "hi")
    assert chat.render({"type": "history", "room": "#lobby", "epoch": "e1", "messages": [m]}) == [
        "*** #lobby: last 1 message:",
        "#lobby [12:00] <bob> hi",
    ]
    assert chat.render({"type": "history", "room": "#lobby", "epoch": "e1", "messages": [m]}) == [
        "*** #lobby: history, 1 message:",
        "#lobby [12:00] <bob> hi",
        "*** #lobby: end of history",
    ]


def test_renderOddEvents() -> None:
    """
    Acks and unknown event types show nothing; malformed events and
    non-objects show one C{!!!} line; control characters from the server
    never reach the terminal.
    """
    chat = JsonChat(lambda: NOON, nick="alice")
    assert chat.render({"type": "ack", "ref": "c1", "id": 3, "room": "#lobby", "epoch": "e"}) == []
    assert chat.render({"type": "from-the-future", "x": 1}) == []
    assert chat.render({"no": "type"}) == []
    assert chat.render([1, 2]) == ["!!! unexpected data from the server: not a JSON object"]
    assert chat.render({"type": "message", "room": "#lobby"}) == ["!!! malformed message event from the server"]
    assert chat.render({"type": "error", "code": "bad-room", "message": "no\x07pe"}) == ["!!! no pe"]
    assert chat.render({"type": "presence", "room": "#lo\x1b[2Jbby", "members": ["a"]}) == [
        "*** #lo [2Jbby: members: a"
    ]


# -- the session over the line chat, in memory --


class LineSession:
    """
    A L{ChatClient} with a L{FakeUI}, linked to the line chat through a
    L{LineLink} on a L{StringTransportWithDisconnection}.
    """

    def __init__(self, nick: str | None = None, tls: bool = False, connectNow: bool = True) -> None:
        self.clock = Clock()
        self.ui = FakeUI()
        self.client = ChatClient(Target("tls" if tls else "tcp", "127.0.0.1", 9000), self.ui, self.clock)
        self.ui.start(self.client, None)
        self.connecting: Deferred[object] = Deferred()
        self.client.connecting = self.connecting
        self.connecting.addErrback(self.client.connectFailure)
        self.link = LineLink(self.client, nick, tls=tls)
        self.transport = StringTransportWithDisconnection()
        self.transport.protocol = self.link
        if connectNow:
            self.connect()

    def connect(self) -> None:
        self.link.makeConnection(self.transport)
        if not self.connecting.called:
            self.connecting.callback(self.link)

    def sent(self) -> list[str]:
        data = self.transport.value().decode("utf-8")
        self.transport.clear()
        return data.splitlines()

    def serverSays(self, data: bytes) -> None:
        self.link.dataReceived(data)

    def serverCloses(self, reason: Exception | None = None) -> None:
        self.transport.connected = False
        self.link.connectionLost(Failure(reason if reason is not None else ConnectionDone()))


def test_lineSessionPassesLinesBothWays() -> None:
    """
    Typed lines go to the server as typed (after C{/nick} when a nick was
    given); the server's lines are shown as they come, split on LF with or
    without CR, even across segments.
    """
    s = LineSession(nick="alice")
    assert s.sent() == ["/nick alice"]
    s.client.userLine("hello there")
    s.client.userLine("/join dev")
    s.client.userLine("héllo")
    assert s.sent() == ["hello there", "/join dev", "héllo"]
    s.serverSays(b"*** you are now alice\r\n#lobby <alice> hello")
    s.serverSays(" there\n#lobby <alice> h\xc3".encode("latin-1") + b"\xa9llo\n")
    assert s.ui.lines == ["*** you are now alice", "#lobby <alice> hello there", "#lobby <alice> héllo"]
    assert not s.client.done.called


def test_lineSessionMakesServerLinesSafe() -> None:
    """
    Control characters and bad UTF-8 from the server are neutralized before
    they are shown.
    """
    s = LineSession()
    s.serverSays(b"#lobby <mallory> \x1b]0;pwned\x07 \xff!\n")
    assert s.ui.lines == ["#lobby <mallory>  ]0;pwned  \ufffd!"]


def test_lineSessionQueuesUntilOpen() -> None:
    """
    Lines typed before the connection is open are sent once it is, in
    order, after the C{/nick}.
    """
    s = LineSession(nick="bob", connectNow=False)
    s.client.userLine("one")
    s.client.userLine("two")
    assert s.transport.value() == b""
    s.connect()
    assert s.sent() == ["/nick bob", "one", "two"]


@pytest.mark.parametrize("line, sent", [("/quit", "/quit"), ("/quit off to lunch", "/quit off to lunch"), ("bye", "/quit")])
def test_lineSessionQuit(line: str, sent: str) -> None:
    """
    C{/quit} (with its reason) and C{bye} send C{/quit}; when the server
    then closes, the session ends with status 0 and no complaint. Input
    after that is ignored.
    """
    s = LineSession()
    s.client.userLine(line)
    assert s.sent() == [sent]
    s.client.userLine("too late")
    assert s.sent() == []
    s.serverSays(b"*** bye\n")
    s.serverCloses()
    assert result(s.client.done) == 0
    assert s.ui.lines == ["*** bye"]
    assert s.ui.statuses == []
    assert s.clock.getDelayedCalls() == []


def test_lineSessionQuitUnconfirmed() -> None:
    """
    A server that does not answer C{/quit} with C{*** bye} (the line chat's
    confirmation of every line before it) and close is disconnected once it
    has said nothing for the confirm timeout, 10 s by default (each line it
    sends meanwhile starts the bound again: it is working through ours);
    after a second of waiting the user is told, and at the end the lines
    sent are listed as unconfirmed and the status is 1.
    """
    s = LineSession()
    assert s.client.confirmTimeout == 10.0
    s.client.userLine("hello")
    s.client.userLine("/quit")
    assert s.sent() == ["hello", "/quit"]
    s.clock.advance(1.0)
    assert s.ui.notices == ["waiting for the server to confirm 1 line (giving up after 10 s without an answer)"]
    s.clock.advance(8.9)
    assert s.transport.connected
    s.serverSays(b"#lobby <guest-1> hello\n")
    s.clock.advance(9.9)
    assert s.transport.connected
    s.clock.advance(0.1)
    assert not s.transport.connected
    assert result(s.client.done) == 1
    assert s.ui.lines == ["#lobby <guest-1> hello"]
    assert s.ui.statuses == [
        "gave up waiting: the server confirmed nothing for 10 s",
        "1 line not confirmed by the server (it may or may not have gone through):",
        "  hello",
    ]
    assert s.clock.getDelayedCalls() == []


def test_lineSessionEndOfInput() -> None:
    """
    The end of the input sends C{/quit} and waits for the server's
    C{*** bye} and close: status 0. A close without C{*** bye} (the server
    went away first) leaves what was sent unconfirmed: status 1, listed.
    """
    s = LineSession()
    s.client.userLine("last words")
    s.client.userEOF()
    assert s.sent() == ["last words", "/quit"]
    assert not s.client.done.called
    s.serverSays(b"#lobby <guest-1> last words\n*** bye\n")
    s.serverCloses()
    assert result(s.client.done) == 0
    assert s.ui.statuses == []

    s = LineSession(nick="alice")
    s.client.userLine("last words")
    s.client.userEOF()
    s.serverSays(b"*** server shutting down (reconnect in about 5 s)\n")
    s.serverCloses()
    assert result(s.client.done) == 1
    assert s.ui.statuses == [
        "connection closed by server",
        "2 lines not confirmed by the server (they may or may not have gone through):",
        "  /nick alice",
        "  last words",
    ]


def test_lineSessionRefusals() -> None:
    """
    Every C{!!! } line from the server is a refusal: after a confirmed
    goodbye the status is 3, and stderr says how many; a C{!!! } line the
    client makes up itself (a line too long to show) is not one.
    """
    s = LineSession()
    s.link.maxLength = 40
    s.client.userLine("/msg nobody hi")
    s.client.userLine("/fly")
    s.serverSays(b"!!! nobody called nobody is online\n!!! unknown command /fly (try /help)\n")
    s.serverSays(b"x" * 50 + b"\n")
    s.client.userEOF()
    s.serverSays(b"*** bye\n")
    s.serverCloses()
    assert result(s.client.done) == 3
    assert s.ui.statuses == ["2 requests were refused"]


def test_lineSessionEndOfInputBeforeOpen() -> None:
    """
    Input that ends before the connection is open is still sent, and the
    session quits right after; a failure to connect is then still reported.
    """
    s = LineSession(connectNow=False)
    s.client.userLine("queued")
    s.client.userEOF()
    s.connect()
    assert s.sent() == ["queued", "/quit"]

    for typed in [[], ["never sent"]]:
        s = LineSession(connectNow=False)
        for line in typed:
            s.client.userLine(line)
        s.client.userEOF()
        s.connecting.errback(Failure(ConnectionRefusedError()))
        assert result(s.client.done) == 1
        assert s.ui.statuses == ["cannot connect to 127.0.0.1:9000: connection refused"]


def test_lineSessionQuitWhileConnecting() -> None:
    """
    C{/quit} typed while connecting (with nothing else typed) gives up the
    attempt: status 0, nothing said.
    """
    s = LineSession(connectNow=False)
    s.client.userLine("/quit")
    assert result(s.client.done) == 0
    assert s.ui.statuses == []


def test_lineSessionServerCloses() -> None:
    """
    When the server closes the connection first, the session ends with
    status 1 and says so; an unclean loss says why.
    """
    s = LineSession()
    s.serverSays(b"*** idle for 600 s: disconnecting\n")
    s.serverCloses()
    assert result(s.client.done) == 1
    assert s.ui.statuses == ["connection closed by server"]
    assert s.ui.lines == ["*** idle for 600 s: disconnecting"]

    s = LineSession()
    s.serverCloses(ConnectionLost())
    assert result(s.client.done) == 1
    assert s.ui.statuses == ["connection closed by server (connection lost)"]


def test_lineSessionConnectFails() -> None:
    """
    A failed connection attempt ends the session with status 1 and
    "cannot connect to HOST:PORT: reason".
    """
    s = LineSession(connectNow=False)
    s.connecting.errback(Failure(ConnectionRefusedError()))
    assert result(s.client.done) == 1
    assert s.ui.statuses == ["cannot connect to 127.0.0.1:9000: connection refused"]


def test_lineLinkOverTLSOpensAfterHandshake() -> None:
    """
    Over TLS the link opens when the handshake completes; a connection lost
    before that (a certificate refused) is a failure to connect.
    """
    s = LineSession(nick="alice", tls=True)
    assert verifyObject(IHandshakeListener, s.link)
    s.client.userLine("early")
    assert s.transport.value() == b""
    s.link.handshakeCompleted()
    assert s.sent() == ["/nick alice", "early"]

    s = LineSession(tls=True)
    s.serverCloses(ConnectionLost("certificate verify failed"))
    assert result(s.client.done) == 1
    assert s.ui.statuses == ["cannot connect to 127.0.0.1:9000: connection lost"]


def test_lineLinkTooLong() -> None:
    """
    A server line longer than the limit is not shown (nor buffered); the
    lines after it are.
    """
    s = LineSession()
    s.link.maxLength = 10
    s.serverSays(b"0123456789ABCDEF")
    s.serverSays(b"GHIJ\nshort\n")
    assert s.ui.lines == ["!!! a line from the server was too long (over 10 bytes): not shown", "short"]


def test_lineLinkLineAtTheLimitWithItsCrlfInPieces() -> None:
    """
    A server line of exactly the limit whose CR arrives before its LF is
    shown, as the server's own framing would take it.
    """
    s = LineSession()
    s.link.maxLength = 10
    s.serverSays(b"0123456789\r")
    s.serverSays(b"\nshort\n")
    assert s.ui.lines == ["0123456789", "short"]


# -- pipe mode --


class ResumeSession:
    """
    A L{ChatClient} for C{ws://} on a L{Clock}, whose C{redial} records the
    attempts, and whose random numbers come from C{randoms} (cycled).
    """

    def __init__(self, randoms: tuple[float, ...] = (0.5,), scheme: str = "ws", **kw: Any) -> None:
        self.clock = Clock()
        self.ui = FakeUI()
        self.randoms = list(randoms)
        self.client = ChatClient(Target(scheme, "127.0.0.1", 8080, "/ws"), self.ui, self.clock, random=self._random, **kw)
        self.ui.start(self.client, None)
        self.dials = 0
        self.client.redial = self._dial
        self.links: list[FakeLink] = []
        self.open()

    def _random(self) -> float:
        value = self.randoms.pop(0)
        self.randoms.append(value)
        return value

    def _dial(self) -> None:
        self.dials += 1

    def open(self, pending: list[str] | None = None) -> FakeLink:
        link = FakeLink(pending)
        self.links.append(link)
        self.client.linkOpened(link)
        return link

    def nextDelay(self) -> float:
        """
        In how many seconds the one pending attempt to reconnect is made.
        """
        calls = [c for c in self.clock.getDelayedCalls() if c.func == self.client._redialNow]
        assert len(calls) == 1, self.clock.getDelayedCalls()
        return float(calls[0].getTime() - self.clock.seconds())

    def waitsFor(self, delay: float) -> bool:
        """
        Whether the next attempt comes C{delay} seconds from now (and is
        made then).
        """
        before = self.dials
        if self.nextDelay() != pytest.approx(delay):
            return False
        self.clock.advance(delay)
        return self.dials == before + 1


class FakeLink:
    """
    A link that records what the session asks of it; C{pending} stands for
    what it sent and has not had confirmed.
    """

    unit = "message"

    def __init__(self, pending: list[str] | None = None) -> None:
        self.inputs: list[str] = []
        self.quits: list[str] = []
        self.aborted = False
        self.pending = pending if pending is not None else []

    def unconfirmed(self) -> tuple[int, list[str]]:
        return len(self.pending), list(self.pending)

    def refusals(self) -> int:
        return 0

    def sendInput(self, line: str) -> None:
        self.inputs.append(line)

    def sendQuit(self, reason: str) -> None:
        self.quits.append(reason)

    def abort(self) -> None:
        self.aborted = True


def test_reconnectBackoffWithJitter() -> None:
    """
    A lost WebSocket is reconnected after a random delay (full jitter) up to
    0.5 s, then up to twice as long after each failed attempt, never more
    than 15 s; the user is told each time. Once reconnected, the next loss
    starts from 0.5 s again.
    """
    s = ResumeSession(randoms=(1.0,), reconnectAttempts=20)
    s.client.linkClosed("connection lost", resumable=True)
    assert s.ui.statuses == ["connection lost (connection lost): reconnecting in 0.5 s\u2026"]
    bounds = []
    assert s.waitsFor(0.5)
    for _ in range(7):
        s.client.connectFailed("connection refused")
        delay = s.nextDelay()
        bounds.append(delay)
        assert s.waitsFor(delay)
    assert bounds == pytest.approx([1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0])
    assert s.ui.statuses[-1] == "cannot reconnect to 127.0.0.1:8080: connection refused: reconnecting in 15.0 s\u2026"
    assert s.client.done.called is False
    s.open()
    assert s.ui.statuses[-1] == "reconnected to 127.0.0.1:8080"
    s.client.linkClosed(None, resumable=True)
    assert s.waitsFor(0.5)

    # the delay is random below the bound: with 0.25, a quarter of it
    s = ResumeSession(randoms=(0.25,))
    s.client.linkClosed(None, resumable=True)
    assert s.waitsFor(0.125)
    s.client.connectFailed("connection refused")
    assert s.waitsFor(0.25)
    s = ResumeSession(randoms=(0.0,))
    s.client.linkClosed(None, resumable=True)
    assert s.waitsFor(0.0)


def test_reconnectHonoursHint() -> None:
    """
    The server's C{reconnect_after} hint is a lower bound on the first
    delay; a random delay longer than the hint is kept.
    """
    s = ResumeSession(randoms=(0.0,))
    s.client.linkClosed("server shutting down", resumable=True, retryAfter=4.0)
    assert s.ui.statuses == ["connection lost (server shutting down): reconnecting in 4.0 s\u2026"]
    assert s.waitsFor(4.0)
    # only the loss it came with: later attempts follow the backoff
    s.client.connectFailed("connection refused")
    assert s.waitsFor(0.0)

    s = ResumeSession(randoms=(1.0,))
    s.client.linkClosed(None, resumable=True, retryAfter=0.1)
    assert s.waitsFor(0.5)


def test_reconnectGivesUp() -> None:
    """
    After C{reconnectAttempts} failed attempts in a row the session ends
    with status 1 and says why; with 0 attempts it ends at once, as when
    the server closes the connection.
    """
    s = ResumeSession(reconnectAttempts=3)
    s.client.linkClosed(None, resumable=True)
    for _ in range(3):
        assert not s.client.done.called
        s.clock.advance(60)
        s.client.connectFailed("connection refused")
    assert result(s.client.done) == 1
    assert s.dials == 3
    assert s.ui.statuses[-1] == "cannot reconnect to 127.0.0.1:8080: connection refused (gave up after 3 attempts)"
    assert s.clock.getDelayedCalls() == []

    s = ResumeSession(reconnectAttempts=0)
    s.client.linkClosed("server shutting down", resumable=True, retryAfter=1.0)
    assert result(s.client.done) == 1
    assert s.ui.statuses == ["connection closed by server (server shutting down)"]
    assert s.clock.getDelayedCalls() == []


def test_noReconnectWhenNotResumable() -> None:
    """
    A close that is not resumable (the server's clean close, or any close
    of the line chat, whose C{connect} sets no C{redial}) ends the session
    with status 1 as before.
    """
    s = ResumeSession()
    s.client.linkClosed("kicked", resumable=False)
    assert result(s.client.done) == 1
    assert s.ui.statuses == ["connection closed by server (kicked)"]

    class Endpoint:
        def __init__(self) -> None:
            self.attempts: list[Deferred[Any]] = []

        def connect(self, factory: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            self.attempts.append(d)
            return d

    clock = Clock()
    ui = FakeUI()
    client = ChatClient(Target("tcp", "127.0.0.1", 9000), ui, clock)
    endpoint = Endpoint()
    connect(clock, client, endpoint=endpoint)  # type: ignore[arg-type]
    assert client.redial is None
    link = LineLink(client)
    link.makeConnection(StringTransportWithDisconnection())
    link.connectionLost(Failure(ConnectionLost()))
    assert result(client.done) == 1
    assert ui.statuses == ["connection closed by server (connection lost)"]
    clock.advance(60)
    assert len(endpoint.attempts) == 1

    clock = Clock()
    client = ChatClient(Target("ws", "127.0.0.1", 8080, "/ws"), FakeUI(), clock)
    connect(clock, client, endpoint=endpoint)  # type: ignore[arg-type]
    assert client.redial is not None


def test_quitWhileWaitingToReconnect() -> None:
    """
    C{/quit} (or the end of input) while waiting to reconnect ends the
    session with status 0 at once, and no attempt is made; C{/quit} while
    an attempt runs cancels it, also with status 0.
    """
    for quit in [lambda c: c.userLine("/quit"), lambda c: c.userEOF()]:
        s = ResumeSession()
        s.client.linkClosed(None, resumable=True)
        quit(s.client)
        assert result(s.client.done) == 0
        assert s.clock.getDelayedCalls() == []
        assert s.dials == 0

    s = ResumeSession()
    s.client.linkClosed(None, resumable=True)
    s.clock.advance(60)
    assert s.dials == 1
    attempt: Deferred[Any] = Deferred()
    attempt.addErrback(s.client.connectFailure)
    s.client.connecting = attempt
    s.client.userLine("bye")
    assert result(s.client.done) == 0


def test_linesTypedWhileReconnectingAreSent() -> None:
    """
    Lines typed while reconnecting are sent once the link is open again,
    even when the input ends meanwhile: a failed attempt then does not end
    the session, which quits once the lines are sent.
    """
    s = ResumeSession()
    s.client.linkClosed(None, resumable=True)
    s.client.userLine("still here?")
    s.clock.advance(60)
    link = s.open()
    assert link.inputs == ["still here?"]

    s = ResumeSession()
    s.client.linkClosed(None, resumable=True)
    s.client.userLine("one more")
    s.client.userEOF()
    assert not s.client.done.called
    s.clock.advance(s.nextDelay())
    s.client.connectFailed("connection refused")
    assert not s.client.done.called, "gave up with a typed line not sent"
    s.clock.advance(s.nextDelay())
    link = s.open()
    assert (link.inputs, link.quits) == (["one more"], [""])
    s.client.linkClosed(None)
    assert result(s.client.done) == 0
    assert s.clock.getDelayedCalls() == []


def test_linesTypedWhileReconnectingNeverSent() -> None:
    """
    When the goodbye's bound passes before the connection is back, the
    session ends with status 1 and lists the lines typed but not sent.
    """
    s = ResumeSession(randoms=(1.0,))
    s.client.linkClosed(None, resumable=True)
    s.client.userLine("one more")
    s.client.userEOF()
    waited = 0.0
    for _ in range(4):
        delay = s.nextDelay()
        waited += delay
        s.clock.advance(delay)
        s.client.connectFailed("connection refused")
    assert waited == pytest.approx(0.5 + 1 + 2 + 4)
    assert s.ui.notices == ["waiting for the server to confirm 1 message (giving up after 10 s without an answer)"]
    s.clock.advance(10 - waited)
    assert result(s.client.done) == 1
    assert s.ui.statuses[-3:] == ["gave up waiting: the server confirmed nothing for 10 s", "1 line typed but not sent:", "  one more"]
    assert s.clock.getDelayedCalls() == []


def test_quitWaitsForConfirmations() -> None:
    """
    The goodbye goes to the link at once (the link holds it until what it
    sent is confirmed); the session ends with status 0 once the link closes
    with nothing unconfirmed. If the link closes with something still
    unconfirmed, the status is 1 and each is listed (at most ten, the
    latest).
    """
    s = ResumeSession()
    pending = ["hi"]
    link = s.open(pending)
    s.client.userEOF()
    assert link.quits == [""]
    pending.clear()
    s.client.linkClosed(None)
    assert result(s.client.done) == 0
    assert s.ui.statuses == s.ui.notices == []

    s = ResumeSession()
    pending = ["line %d" % (i,) for i in range(12)]
    s.open(pending)
    s.client.userEOF()
    s.client.linkClosed("kicked")
    assert result(s.client.done) == 1
    assert s.ui.statuses == [
        "connection closed by server (kicked)",
        "12 messages not confirmed by the server (they may or may not have gone through):",
        "  \u2026 2 before these",
    ] + ["  line %d" % (i,) for i in range(2, 12)]


def test_quitResumesLostLink() -> None:
    """
    A link lost while the goodbye waits for confirmations is reconnected
    (as any lost link); the new link gets the goodbye too, and what it
    confirms ends the session with status 0. Without reconnecting (0
    attempts) the session ends with status 1 at once.
    """
    s = ResumeSession()
    pending = ["hi"]
    first = s.open(pending)
    s.client.userEOF()
    s.client.linkClosed("connection lost", resumable=True)
    assert not s.client.done.called
    assert s.waitsFor(0.25)
    second = s.open(pending)
    assert (first.quits, second.quits) == ([""], [""])
    pending.clear()
    s.client.linkClosed(None)
    assert result(s.client.done) == 0
    assert s.ui.statuses == [
        "connection lost (connection lost): reconnecting in 0.2 s\u2026",
        "reconnected to 127.0.0.1:8080",
    ]

    s = ResumeSession(reconnectAttempts=0)
    s.open(["hi"])
    s.client.userEOF()
    s.client.linkClosed("connection lost", resumable=True)
    assert result(s.client.done) == 1
    assert s.ui.statuses == [
        "connection closed by server (connection lost)",
        "1 message not confirmed by the server (it may or may not have gone through):",
        "  hi",
    ]


def test_quitInterrupted() -> None:
    """
    A first interrupt (Ctrl-C) quits like the end of input; a second one
    while waiting for confirmations stops waiting: the link is aborted and
    the session ends with status 1, listing what is unconfirmed.
    """
    s = ResumeSession()
    link = s.open(["hi"])
    s.client.userInterrupt()
    assert link.quits == [""] and not link.aborted
    s.client.userInterrupt()
    assert link.aborted
    s.client.linkClosed("connection lost", resumable=True)
    assert result(s.client.done) == 1
    assert s.ui.statuses == [
        "stopped waiting for the server",
        "1 message not confirmed by the server (it may or may not have gone through):",
        "  hi",
    ]
    assert s.clock.getDelayedCalls() == []


class PipeSession:
    """
    L{PipeUI} (on a L{StringTransport} standing in for stdio) and a
    L{ChatClient} linked to the line chat in memory.
    """

    def __init__(self) -> None:
        self.statuses: list[str] = []
        self.ui = PipeUI(stderr=self.statuses.append)
        self.stdio = StringTransport()
        self.clock = Clock()
        self.client = ChatClient(Target("tcp", "127.0.0.1", 9000), self.ui, self.clock)
        self.ui.sink = self.client
        self.ui.makeConnection(self.stdio)
        self.link = LineLink(self.client)
        self.net = StringTransport()
        self.link.makeConnection(self.net)

    def stdout(self) -> bytes:
        data: bytes = self.stdio.value()
        self.stdio.clear()
        return data

    def sent(self) -> bytes:
        data: bytes = self.net.value()
        self.net.clear()
        return data


def test_pipeMode() -> None:
    """
    In pipe mode each stdin line (LF or CRLF) is sent, each server line is
    written to stdout; the end of stdin sends C{/quit}, and once the server
    has closed the session ends with status 0 and stdout is flushed and
    closed.
    """
    p = PipeSession()
    assert verifyObject(IHalfCloseableProtocol, p.ui)
    p.ui.dataReceived(b"hello\r\nsecond li")
    assert p.sent() == b"hello\n"
    p.ui.dataReceived(b"ne\n")
    assert p.sent() == b"second line\n"
    p.link.dataReceived(b"#lobby <guest-1> hello\n#lobby <guest-1> second line\n")
    assert p.stdout() == b"#lobby <guest-1> hello\n#lobby <guest-1> second line\n"
    p.ui.readConnectionLost()
    assert p.sent() == b"/quit\n"
    p.link.dataReceived(b"*** bye\n")
    p.link.connectionLost(Failure(ConnectionDone()))
    assert result(p.client.done) == 0
    assert p.stdout() == b"*** bye\n"
    closed = p.ui.close()
    assert p.stdio.disconnecting and not closed.called
    p.ui.connectionLost(Failure(ConnectionDone()))
    assert closed.called
    assert p.statuses == []


def test_pipeModeServerCloses() -> None:
    """
    In pipe mode a close by the server is reported on stderr (not stdout)
    and ends the session with status 1.
    """
    p = PipeSession()
    p.link.connectionLost(Failure(ConnectionDone()))
    assert result(p.client.done) == 1
    assert p.statuses == ["connection closed by server"]
    assert p.stdout() == b""


def test_pipeModeStdoutGone() -> None:
    """
    When stdout goes away (the reader of the pipe exited) the session quits.
    """
    p = PipeSession()
    p.ui.writeConnectionLost()
    assert p.sent() == b"/quit\n"
    p.link.dataReceived(b"*** bye\n")
    assert p.stdout() == b""


def test_pipeModeLongInput() -> None:
    """
    An input line over the limit is not sent; it is reported on stderr, and
    counts as refused: the status is 3 after a confirmed goodbye.
    """
    p = PipeSession()
    p.ui.maxLength = 8
    p.ui.dataReceived(b"x" * 20 + b"\nok\n")
    assert p.sent() == b"ok\n"
    assert p.statuses == ["input line longer than 8 bytes: not sent"]
    p.ui.readConnectionLost()
    p.link.dataReceived(b"*** bye\n")
    p.link.connectionLost(Failure(ConnectionDone()))
    assert result(p.client.done) == 3
    assert p.statuses == ["input line longer than 8 bytes: not sent", "1 request was refused"]


# -- json mode over a real WebSocket (loopback) --


def _fakeJsonServerFactory(acceptJson: bool = True) -> Any:
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

    class FakeJsonServer(WebSocketServerProtocol):
        def onConnect(self, request: Any) -> Any:
            self.factory.connections.append(self)
            if self.factory.acceptJson and "chat.json" in request.protocols:
                return "chat.json"
            return None

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            self.factory.requests.put(json.loads(payload))

        def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
            self.factory.closes.put((wasClean, code, reason))

        def send(self, *objects: Any) -> None:
            for obj in objects:
                self.sendMessage(json.dumps(obj).encode("utf-8"))

    factory = WebSocketServerFactory()
    factory.protocol = FakeJsonServer
    factory.setProtocolOptions(openHandshakeTimeout=5, closeHandshakeTimeout=2)
    factory.acceptJson = acceptJson
    factory.connections = []
    factory.requests = DeferredQueue()
    factory.closes = DeferredQueue()
    return factory


async def _lines(ui: FakeUI, n: int, reactor: Any) -> list[str]:
    return [await ui.queue.get().addTimeout(TIMEOUT, reactor) for _ in range(n)]


@pytest_twisted.ensureDeferred
async def test_jsonSessionOverWebSocket() -> None:
    """
    Over a real WebSocket (subprotocol C{chat.json}) the client sends a
    C{hello} with its nick, translates typed lines into requests, shows
    events as line-chat lines, and on C{/quit} closes the WebSocket cleanly
    (with the reason) and ends with status 3, as a typed line was refused
    (the server's oddities it ignored are no refusals).
    """
    from twisted.internet import reactor

    factory = _fakeJsonServerFactory()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        ui = FakeUI()
        client = ChatClient(Target("ws", "127.0.0.1", port.getHost().port, "/ws"), ui, reactor)
        connect(reactor, client, nick="alice", refPrefix="c")
        assert await factory.requests.get().addTimeout(TIMEOUT, reactor) == {"type": "hello", "nick": "alice"}
        server = factory.connections[0]
        server.send(
            {"type": "welcome", "nick": "alice", "server": "twisted-chat/0", "rooms": ["#lobby"]},
            {"type": "join", "room": "#lobby", "nick": "alice", "time": 0},
            {"type": "presence", "room": "#lobby", "members": ["alice", "bob"]},
            {"type": "history", "room": "#lobby", "epoch": "e1", "messages": []},
        )
        assert await _lines(ui, 3, reactor) == [
            "*** Welcome to twisted-chat, alice! You are in #lobby. Type /help for commands.",
            "*** #lobby: alice joined",
            "*** #lobby: members: alice, bob",
        ]
        client.userLine("hi bob")
        assert await factory.requests.get().addTimeout(TIMEOUT, reactor) == {"type": "say", "text": "hi bob", "ref": "c1"}
        client.userLine("/fly")
        assert await _lines(ui, 1, reactor) == ["!!! unknown command /fly (try /help)"]
        server.send(msg("#lobby", 1, "alice", "hi bob"), {"type": "ack", "ref": "c1", "id": 1, "room": "#lobby", "epoch": "e1"})
        server.sendMessage(b"\x00\x01", isBinary=True)
        server.sendMessage(b"{not json")
        assert await _lines(ui, 3, reactor) == [
            "#lobby <alice> hi bob",
            "!!! unexpected binary frame from the server: ignored",
            "!!! a frame from the server was not valid JSON: ignored",
        ]
        client.userLine("/quit see you")
        wasClean, code, reason = await factory.closes.get().addTimeout(TIMEOUT, reactor)
        assert (wasClean, code, reason) == (True, 1000, "see you")
        assert await client.done.addTimeout(TIMEOUT, reactor) == 3
        assert ui.statuses == ["1 request was refused"]
    finally:
        await _stopListening(port)


@pytest_twisted.ensureDeferred
async def test_jsonSessionServerCloses() -> None:
    """
    With reconnecting disabled, a WebSocket closed by the server ends the
    session with status 1 and "connection closed by server", with the
    server's reason.
    """
    from twisted.internet import reactor

    factory = _fakeJsonServerFactory()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        ui = FakeUI()
        client = ChatClient(Target("ws", "127.0.0.1", port.getHost().port, "/"), ui, reactor, reconnectAttempts=0)
        connect(reactor, client)
        assert await factory.requests.get().addTimeout(TIMEOUT, reactor) == {"type": "hello"}
        server = factory.connections[0]
        server.send({"type": "notice", "text": "server shutting down"})
        # as the daemon does: 1001 "going away", which sendClose() refuses
        server.sendCloseFrame(1001, b"server shutting down", isReply=False)
        assert await client.done.addTimeout(TIMEOUT, reactor) == 1
        assert ui.lines == ["*** notice: server shutting down"]
        assert ui.statuses == ["connection closed by server (server shutting down)"]
        await factory.closes.get().addTimeout(TIMEOUT, reactor)
    finally:
        await _stopListening(port)


@pytest_twisted.ensureDeferred
async def test_jsonSessionReconnectsAndResumes() -> None:
    """
    Over a real WebSocket, when the server goes away (a notice with
    C{reconnect_after}, then 1001) the client reconnects by itself no sooner
    than the hint, says C{hello} with its nick, owner token, rooms and
    positions, and after the new welcome sends again, with the same ref, the
    message whose ack never came; missed messages are shown once.
    """
    from twisted.internet import reactor

    factory = _fakeJsonServerFactory()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        ui = FakeUI()
        client = ChatClient(Target("ws", "127.0.0.1", port.getHost().port, "/ws"), ui, reactor, random=lambda: 0.0)
        connect(reactor, client, nick="alice", refPrefix="c")
        assert await factory.requests.get().addTimeout(TIMEOUT, reactor) == {"type": "hello", "nick": "alice"}
        server = factory.connections[0]
        server.send(
            {"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"], "owner": True, "token": "s3cret"},
            {"type": "join", "room": "#lobby", "nick": "alice", "time": 0},
            msg("#lobby", 1, "bob", "one"),
        )
        assert (await _lines(ui, 3, reactor))[2] == "#lobby <bob> one"
        client.userLine("unacked")
        assert await factory.requests.get().addTimeout(TIMEOUT, reactor) == {"type": "say", "text": "unacked", "ref": "c1"}
        server.send({"type": "notice", "text": "server shutting down", "reconnect_after": 200})
        lostAt = reactor.seconds()
        server.sendCloseFrame(1001, b"server shutting down", isReply=False)
        assert await _lines(ui, 1, reactor) == ["*** notice: server shutting down"]
        hello = await factory.requests.get().addTimeout(TIMEOUT, reactor)
        assert reactor.seconds() - lostAt >= 0.2
        assert hello == {
            "type": "hello",
            "nick": "alice",
            "token": "s3cret",
            "rooms": ["#lobby"],
            "since": {"#lobby": {"epoch": "e1", "id": 1}},
        }
        assert ui.statuses == [
            "connection lost (server shutting down): reconnecting in 0.2 s\u2026",
            "reconnected to %s" % (client.target.address,),
        ]
        server = factory.connections[1]
        server.send(
            {"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"], "owner": True},
            {"type": "join", "room": "#lobby", "nick": "alice", "time": 0},
            {"type": "history", "room": "#lobby", "epoch": "e1", "recovered": True,
             "messages": [msg("#lobby", 1, "bob", "one"), msg("#lobby", 2, "bob", "two")]},
        )
        assert await factory.requests.get().addTimeout(TIMEOUT, reactor) == {"type": "say", "text": "unacked", "ref": "c1"}
        lines = await _lines(ui, 4, reactor)
        assert lines[2] == "*** #lobby: 1 message while you were away:"
        assert re.fullmatch(r"#lobby \[[^\]]+\] <bob> two", lines[3]), lines
        assert [line for line in ui.lines if line.endswith("<bob> one")] == ["#lobby <bob> one"]
        server.send({"type": "ack", "ref": "c1", "id": 3, "room": "#lobby", "epoch": "e1"})
        client.userLine("/quit")
        await factory.closes.get().addTimeout(TIMEOUT, reactor)
        assert await client.done.addTimeout(TIMEOUT, reactor) == 0
    finally:
        await _stopListening(port)


# -- json mode in memory: the goodbye waits for acknowledgements --


class MemoryEndpoint:
    """
    A client endpoint whose connections go, through C{iosim}, to protocols
    of C{serverFactory}, all on one clock.
    """

    def __init__(self, clock: Clock, serverFactory: Any) -> None:
        self.clock = clock
        self.serverFactory = serverFactory
        self.pumps: list[Any] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        from twisted.test import iosim

        client = factory.buildProtocol(None)
        server = self.serverFactory.buildProtocol(None)
        pump = iosim.connect(
            server, iosim.FakeTransport(server, True), client, iosim.FakeTransport(client, False), greet=False, clock=self.clock
        )
        self.pumps.append(pump)
        return succeed(client)


class JsonMemorySession:
    """
    A L{ChatClient} in json mode (made by L{connect}, so with its real
    L{JsonLink} and resuming), talking in memory to the fake json-mode
    server of L{_fakeJsonServerFactory}, which the test drives by hand.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.ui = FakeUI()
        self.factory = _fakeJsonServerFactory()
        self.endpoint = MemoryEndpoint(clock, self.factory)
        self.client = ChatClient(Target("ws", "127.0.0.1", 8080, "/ws"), self.ui, clock, random=lambda: 0.0)
        self.ui.start(self.client, None)
        connect(clock, self.client, nick="alice", endpoint=self.endpoint, refPrefix="c")
        self.flush()

    def flush(self) -> None:
        """
        Move bytes both ways (and run what is due) until nothing moves.
        """
        for _ in range(100):
            self.clock.advance(0)
            if not [pump for pump in self.endpoint.pumps if pump.flush()]:
                return
        raise AssertionError("the connections never went quiet")

    @property
    def server(self) -> Any:
        """
        The server's side of the latest connection.
        """
        return self.factory.connections[-1]

    def requests(self) -> list[Any]:
        """
        The requests the server received since the last call.
        """
        pending = self.factory.requests.pending
        taken = list(pending)
        del pending[:]
        return taken

    def closes(self) -> list[Any]:
        return list(self.factory.closes.pending)

    def serverSends(self, *events: dict[str, Any]) -> None:
        self.server.send(*events)
        self.flush()

    def welcome(self) -> None:
        self.serverSends(
            {"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]},
            {"type": "join", "room": "#lobby", "nick": "alice", "time": 0},
        )


def ack(ref: str, id: int) -> dict[str, Any]:
    return {"type": "ack", "ref": ref, "id": id, "room": "#lobby", "epoch": "e1"}


def test_jsonQuitWaitsForAcks(clock: Clock) -> None:
    """
    At the end of input the client closes its WebSocket only once every
    C{say} and C{msg} it sent has its C{ack}, showing what arrives
    meanwhile (the echoes come before the acks); after a second it says
    what it waits for. Status 0.
    """
    s = JsonMemorySession(clock)
    assert s.requests() == [{"type": "hello", "nick": "alice"}]
    s.welcome()
    s.client.userLine("hi")
    s.client.userLine("/msg bob psst")
    s.client.userEOF()
    s.flush()
    assert s.requests() == [
        {"type": "say", "text": "hi", "ref": "c1"},
        {"type": "msg", "to": "bob", "text": "psst", "ref": "c2"},
    ]
    assert s.closes() == []
    s.serverSends(msg("#lobby", 1, "alice", "hi"), ack("c1", 1))
    assert s.closes() == []
    s.clock.advance(1.0)
    assert s.ui.notices == ["waiting for the server to confirm 1 message (giving up after 10 s without an answer)"]
    s.serverSends(
        {"type": "private", "id": 7, "from": "alice", "to": "bob", "text": "psst", "time": 0},
        {"type": "ack", "ref": "c2", "id": 7, "to": "bob"},
    )
    assert s.closes() == [(True, 1000, None)]
    assert result(s.client.done) == 0
    assert s.ui.lines[-2:] == ["#lobby <alice> hi", "-> *bob* psst"]
    assert s.ui.statuses == []


def test_jsonQuitBeforeWelcome(clock: Clock) -> None:
    """
    Lines typed and ended before the welcome are sent after it, and the
    goodbye waits for their acks too.
    """
    s = JsonMemorySession(clock)
    s.requests()
    s.client.userLine("early")
    s.client.userEOF()
    s.flush()
    assert (s.requests(), s.closes()) == ([], [])
    s.welcome()
    assert s.requests() == [{"type": "say", "text": "early", "ref": "c1"}]
    assert s.closes() == []
    s.serverSends(msg("#lobby", 1, "alice", "early"), ack("c1", 1))
    assert s.closes() == [(True, 1000, None)]
    assert result(s.client.done) == 0


def test_jsonQuitRefused(clock: Clock) -> None:
    """
    An C{error} answering a C{say} confirms it too (it was refused, not
    lost): the goodbye goes, and the status is 3.
    """
    s = JsonMemorySession(clock)
    s.welcome()
    s.client.userLine("hi")
    s.client.userEOF()
    s.flush()
    s.serverSends({"type": "error", "code": "flood", "message": "slow down", "ref": "c1"})
    assert s.closes() == [(True, 1000, None)]
    assert result(s.client.done) == 3
    assert s.ui.lines[-1] == "!!! slow down"
    assert s.ui.statuses == ["1 request was refused"]


def test_jsonQuitUnconfirmed(clock: Clock) -> None:
    """
    A server that never acknowledges: after the confirm timeout the client
    drops the connection (no reconnect) and ends with status 1, naming the
    message on stderr.
    """
    s = JsonMemorySession(clock)
    s.welcome()
    s.client.userLine("/me waves")
    s.client.userEOF()
    s.flush()
    s.clock.advance(9.9)
    s.flush()
    assert not s.client.done.called
    s.clock.advance(0.1)
    s.flush()
    assert result(s.client.done) == 1
    assert s.ui.statuses == [
        "gave up waiting: the server confirmed nothing for 10 s",
        "1 message not confirmed by the server (it may or may not have gone through):",
        "  /me waves",
    ]
    assert len(s.endpoint.pumps) == 1


def test_jsonQuitWaitsAsLongAsTheServerConfirms(clock: Clock) -> None:
    """
    A server that confirms a long paste slowly (its flood control lets a
    request through every few seconds) is waited for as long as it keeps
    confirming: each ack starts the bound again. Status 0.
    """
    s = JsonMemorySession(clock)
    s.welcome()
    s.requests()
    for i in range(3):
        s.client.userLine("line %d" % (i,))
    s.client.userEOF()
    s.flush()
    refs = [r["ref"] for r in s.requests()]
    assert len(refs) == 3
    for i, ref in enumerate(refs, 1):
        s.clock.advance(9.0)
        s.flush()
        assert not s.client.done.called
        s.serverSends(msg("#lobby", i, "alice", "line %d" % (i - 1,)), {"type": "ack", "ref": ref, "room": "#lobby", "epoch": "e1", "id": i})
    assert result(s.client.done) == 0
    assert s.ui.statuses == []


def test_jsonQuitResumesLostConnection(clock: Clock) -> None:
    """
    When the connection is lost while the goodbye waits for an ack, the
    client reconnects, resumes, sends the message again with the same ref,
    and quits once that is acknowledged and its echo, in the rejoin's
    history, has arrived: status 0, the echo shown once.
    """
    s = JsonMemorySession(clock)
    s.welcome()
    s.requests()
    s.client.userLine("hi")
    s.client.userEOF()
    s.flush()
    assert s.requests() == [{"type": "say", "text": "hi", "ref": "c1"}]
    # stored and echoed, but the echo and the ack are lost with the connection
    s.server.transport.abortConnection()
    s.flush()
    assert not s.client.done.called
    assert s.ui.statuses == [
        "connection lost (peer dropped the TCP connection without previous WebSocket closing handshake):"
        " reconnecting in 0.0 s\u2026",
        "reconnected to 127.0.0.1:8080",
    ]
    assert len(s.endpoint.pumps) == 2
    assert s.requests() == [{"type": "hello", "nick": "alice", "rooms": ["#lobby"]}]
    s.serverSends(
        {"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]},
        {"type": "join", "room": "#lobby", "nick": "alice", "time": 0},
    )
    assert s.requests() == [{"type": "say", "text": "hi", "ref": "c1"}]
    assert [wasClean for wasClean, _, _ in s.closes()] == [False]
    # the first message's ack at once; its echo comes with the history
    s.serverSends(ack("c1", 1))
    assert len(s.closes()) == 1
    s.serverSends({"type": "history", "room": "#lobby", "epoch": "e1", "messages": [msg("#lobby", 1, "alice", "hi")]})
    assert s.closes()[1:] == [(True, 1000, None)]
    assert result(s.client.done) == 0
    echoes = [line for line in s.ui.lines if line.endswith("<alice> hi")]
    assert len(echoes) == 1 and re.fullmatch(r"#lobby \[[^\]]+\] <alice> hi", echoes[0]), s.ui.lines


@pytest_twisted.ensureDeferred
async def test_jsonSessionNeedsSubprotocol() -> None:
    """
    A WebSocket server that does not accept the C{chat.json} subprotocol is
    a failure to connect (status 1), not a chat.
    """
    from twisted.internet import reactor

    factory = _fakeJsonServerFactory(acceptJson=False)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        ui = FakeUI()
        portNumber = port.getHost().port
        client = ChatClient(Target("ws", "127.0.0.1", portNumber, "/"), ui, reactor)
        connect(reactor, client)
        assert await client.done.addTimeout(TIMEOUT, reactor) == 1
        assert ui.statuses == [
            "cannot connect to 127.0.0.1:%d: the server does not speak chat.json (wrong URL path?)" % (portNumber,)
        ]
        await factory.closes.get().addTimeout(TIMEOUT, reactor)
    finally:
        await _stopListening(port)


@pytest_twisted.ensureDeferred
async def test_connectRefused() -> None:
    """
    Connecting to a port nobody listens on ends with status 1 and "cannot
    connect to HOST:PORT: connection refused".
    """
    from twisted.internet import reactor

    portNumber = _freePort()
    ui = FakeUI()
    client = ChatClient(Target("tcp", "127.0.0.1", portNumber), ui, reactor)
    connect(reactor, client)
    assert await client.done.addTimeout(TIMEOUT, reactor) == 1
    assert ui.statuses == ["cannot connect to 127.0.0.1:%d: connection refused" % (portNumber,)]


async def _stopListening(port: Any) -> None:
    from twisted.internet import reactor

    d = port.stopListening()
    if d is not None:
        await d.addTimeout(TIMEOUT, reactor)


def _freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- TLS (loopback) --


@pytest.fixture(scope="module")
def selfSigned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """
    A self-signed certificate for C{localhost} (only), and its key.
    """
    from tests.support.tls import writeSelfSignedCertificate

    return writeSelfSignedCertificate(tmp_path_factory.mktemp("tls"), withAddress=False)


def _lineServerFactory(received: DeferredQueue[str], greeting: bytes = b"") -> Any:
    """
    A tiny line-chat server: greets, echoes every line as
    C{#lobby <me> LINE}, and answers C{/quit} with C{*** bye} and a close.
    """
    from twisted.internet.protocol import Factory
    from twisted.protocols.basic import LineOnlyReceiver

    class Echo(LineOnlyReceiver):
        delimiter = b"\n"

        def connectionMade(self) -> None:
            self.factory.connections.append(self)
            if greeting:
                self.transport.write(greeting)

        def lineReceived(self, line: bytes) -> None:
            text = line.decode("utf-8")
            received.put(text)
            if text.startswith("/quit"):
                self.sendLine(b"*** bye")
                self.transport.loseConnection()
            elif not text.startswith("/"):
                self.sendLine(b"#lobby <me> " + line)

        def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]
            self.factory.lost.put(type(reason.value).__name__)

    factory = Factory.forProtocol(Echo)
    factory.noisy = False
    factory.connections = []
    factory.lost = DeferredQueue()
    return factory


@pytest_twisted.ensureDeferred
async def test_tlsVerification(selfSigned: tuple[Path, Path]) -> None:
    """
    Over C{tls://} the server's certificate is verified: refused against
    the system's trust store, accepted with C{--cafile} naming it but only
    for the host name it is for, and accepted unverified with C{--insecure}.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from twisted.internet import reactor
    from twisted.internet.ssl import CertificateOptions

    certPath, keyPath = selfSigned
    options = CertificateOptions(
        privateKey=serialization.load_pem_private_key(keyPath.read_bytes(), None),
        certificate=x509.load_pem_x509_certificate(certPath.read_bytes()),
    )
    received: DeferredQueue[str] = DeferredQueue()
    factory = _lineServerFactory(received)
    port = reactor.listenSSL(0, factory, options, interface="127.0.0.1")
    portNumber = port.getHost().port
    try:
        for host, how, failure in [
            ("localhost", {}, "TLS error: certificate verify failed"),
            ("localhost", {"cafile": str(certPath)}, None),
            ("127.0.0.1", {"cafile": str(certPath)}, "TLS error: the server's certificate is not valid for 127.0.0.1"),
            ("127.0.0.1", {"insecure": True}, None),
        ]:
            target = Target("tls", host, portNumber)
            ui = FakeUI()
            client = ChatClient(target, ui, reactor)
            connect(reactor, client, creator=tlsCreator(target, **how))  # type: ignore[arg-type]
            if failure is None:
                client.userLine("secret")
                assert await ui.queue.get().addTimeout(TIMEOUT, reactor) == "#lobby <me> secret"
                assert await received.get().addTimeout(TIMEOUT, reactor) == "secret"
                client.userLine("/quit")
                assert await received.get().addTimeout(TIMEOUT, reactor) == "/quit"
                assert await client.done.addTimeout(TIMEOUT, reactor) == 0, (host, how)
            else:
                assert await client.done.addTimeout(TIMEOUT, reactor) == 1
                assert ui.statuses == ["cannot connect to %s:%d: %s" % (host, portNumber, failure)]
            await factory.lost.get().addTimeout(TIMEOUT, reactor)
    finally:
        await _stopListening(port)


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
    return bytes(screen).decode("ascii").rstrip("\n").split("\n")


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


class _PtyClient:
    """
    The client running under a pseudo-terminal, as a Twisted process.
    """

    def __init__(self) -> None:
        from twisted.internet.protocol import ProcessProtocol

        self.output = b""
        self.ended: Deferred[int] = Deferred()
        self._waiting: list[tuple[bytes, int, Deferred[None]]] = []
        outer = self

        class Proto(ProcessProtocol):
            def childDataReceived(self, fd: int, data: bytes) -> None:
                outer.output += data
                outer._check()

            def processEnded(self, reason: Failure) -> None:
                outer.ended.callback(getattr(reason.value, "exitCode", None))

        self.protocol = Proto()

    def _check(self) -> None:
        for item in list(self._waiting):
            pattern, start, d = item
            if pattern in self.output[start:]:
                self._waiting.remove(item)
                d.callback(None)

    def waitFor(self, pattern: bytes, start: int = 0) -> Deferred[None]:
        """
        Fires once the output (from offset C{start}) contains C{pattern}.
        """
        d: Deferred[None] = Deferred()
        self._waiting.append((pattern, start, d))
        self._check()
        return d

    def write(self, data: bytes) -> None:
        self.protocol.transport.write(data)


def _clientEnvironment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("PYTHONWARNINGS", None)
    env["TERM"] = "xterm"
    return env


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
    factory = _lineServerFactory(received, greeting=b"*** Welcome to the test server\n")
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    master, slave = os.openpty()
    probe = os.dup(master)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    before = termios.tcgetattr(slave)
    client = _PtyClient()
    try:
        url = "tcp://127.0.0.1:%d" % (port.getHost().port,)
        reactor.spawnProcess(
            client.protocol,
            sys.executable,
            [sys.executable, "-m", "twisted_chat.client.main", url, "--nick", "me"],
            env=_clientEnvironment(),
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
        await _stopListening(port)


# -- end to end, with the real daemon --


def installedClient() -> list[str]:
    """
    The command of the installed C{twisted-chat} console script (next to
    the interpreter running the tests).
    """
    script = Path(sys.executable).with_name("twisted-chat")
    if not script.exists():
        from tests.support.components import missingComponent

        missingComponent("the twisted-chat console script is not installed next to %s" % (sys.executable,))
    return [str(script)]


def _command(installed: bool) -> list[str]:
    return installedClient() if installed else [sys.executable, "-m", "twisted_chat.client.main"]


class ClientProcess:
    """
    C{python -m twisted_chat.client.main ARGS} (or, C{installed}, the installed
    C{twisted-chat ARGS}) with piped stdin, its output read by threads as it
    comes, so a test can wait for a line without sleeping.
    """

    def __init__(self, *args: str, installed: bool = False) -> None:
        self.proc = subprocess.Popen(
            [*_command(installed), *args],
            env=_clientEnvironment(),
            cwd=str(REPO),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = threading.Condition()
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read(self, stream: Any, into: list[str]) -> None:
        for raw in stream:
            with self._changed:
                into.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode("utf-8") + b"\n")
        self.proc.stdin.flush()

    def waitFor(self, wanted: str | Callable[[str], bool], timeout: float = TIMEOUT, stderr: bool = False) -> str:
        """
        Wait for a line of stdout (or stderr) that is (or satisfies) C{wanted}.
        """
        match = wanted if callable(wanted) else (lambda line: line == wanted)
        deadline = time.monotonic() + timeout
        lines = self.err if stderr else self.out
        with self._changed:
            while True:
                for line in lines:
                    if match(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no line %r; stdout:\n%s\nstderr:\n%s" % (wanted, "\n".join(self.out), "\n".join(self.err)))
                self._changed.wait(left)

    def waitCount(self, wanted: str | Callable[[str], bool], n: int, timeout: float = TIMEOUT) -> None:
        """
        Wait until at least C{n} lines of stdout are (or satisfy) C{wanted}.
        """
        match = wanted if callable(wanted) else (lambda line: line == wanted)
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(1 for line in self.out if match(line)) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "not %d lines %r; stdout:\n%s\nstderr:\n%s" % (n, wanted, "\n".join(self.out), "\n".join(self.err))
                    )
                self._changed.wait(left)

    def finish(self, timeout: float = TIMEOUT) -> int:
        """
        Close stdin and wait for the exit status.
        """
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self.wait(timeout)

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
            raise AssertionError("the client did not exit; stdout:\n%s" % ("\n".join(self.out),))
        for t in self._threads:
            t.join(timeout)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(TIMEOUT)


@pytest.fixture
def clientProcesses() -> Iterator[Callable[..., ClientProcess]]:
    started: list[ClientProcess] = []

    def start(*args: str, installed: bool = False) -> ClientProcess:
        p = ClientProcess(*args, installed=installed)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()
        for stream in (p.proc.stdin, p.proc.stdout, p.proc.stderr):
            if stream is not None:
                stream.close()


def runClient(
    *args: str, input: str = "", timeout: float = TIMEOUT, installed: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_command(installed), *args],
        env=_clientEnvironment(),
        cwd=str(REPO),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_pipeConnectRefused() -> None:
    """
    The program says "cannot connect to HOST:PORT: reason" on stderr and
    exits with status 1 when nobody listens.
    """
    portNumber = _freePort()
    done = runClient("tcp://127.0.0.1:%d" % (portNumber,))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == "twisted-chat: cannot connect to 127.0.0.1:%d: connection refused\n" % (portNumber,)


@pytest.mark.e2e
def test_e2eLineChat(chatDaemon: Any, clientProcesses: Callable[..., ClientProcess]) -> None:
    """
    Two clients in pipe mode chat through the real daemon over the line
    chat; each exits with status 0 when its input ends, after the server's
    goodbye.
    """
    url = "tcp://127.0.0.1:%d" % (chatDaemon.ports["line"],)
    bob = clientProcesses(url, "--nick", "bob")
    bob.waitFor("*** you are now bob")
    done = runClient(url, "--nick", "alice", input="hello bob\n/msg bob psst\n//slash\n")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"\*\*\* Welcome to twisted-chat, guest-\d+! You are in #lobby\. Type /help for commands\.", lines[0])
    for expected in ["*** you are now alice", "#lobby <alice> hello bob", "-> *bob* psst", "#lobby <alice> /slash"]:
        assert expected in lines, (expected, lines)
    assert lines[-1] == "*** bye"
    bob.waitFor("#lobby <alice> hello bob")
    bob.waitFor("*alice* psst")
    bob.waitFor("*** #lobby: alice left (quit)")
    assert bob.finish() == 0
    assert bob.out[-1] == "*** bye"
    assert bob.err == []


@pytest.mark.e2e
def test_e2eServerShutdown(chatDaemon: Any, clientProcesses: Callable[..., ClientProcess]) -> None:
    """
    When the daemon shuts down, a connected client shows the server's notice,
    says "connection closed by server" on stderr and exits with status 1.
    """
    url = "tcp://127.0.0.1:%d" % (chatDaemon.ports["line"],)
    alice = clientProcesses(url)
    alice.waitFor(lambda line: line.startswith("*** #lobby: members: "))
    chatDaemon.stop()
    assert alice.wait() == 1
    assert re.match('^\\*\\*\\* server shutting down \\(reconnect in about ([1-9]|1[01]) s\\)$', alice.out[-1]), alice.out[-1]
    assert alice.err == ["twisted-chat: connection closed by server"]


@pytest.mark.e2e
def test_e2eJsonModeLooksLikeLineChat(startDaemon: Callable[..., Any], clientProcesses: Callable[..., ClientProcess]) -> None:
    """
    Through the real daemon, a client in WebSocket json mode and one on the
    line chat see the same lines for the same things; the json client's
    C{/quit} closes its WebSocket and exits 0, and its help is the line
    chat's.
    """
    daemon = startDaemon(web="tcp:0:interface=127.0.0.1")
    line = clientProcesses("tcp://127.0.0.1:%d" % (daemon.ports["line"],), "--nick", "bob")
    line.waitFor("*** you are now bob")
    line.send("before you came")
    line.waitFor("#lobby <bob> before you came")
    ws = clientProcesses("ws://127.0.0.1:%d/ws" % (daemon.ports["web"],), "--nick", "alice")
    ws.waitFor("*** Welcome to twisted-chat, alice! You are in #lobby. Type /help for commands.")
    ws.waitFor("*** #lobby: members: alice, bob")
    ws.waitFor(lambda s: re.fullmatch(r"#lobby \[\d\d:\d\d\] <bob> before you came", s) is not None)
    ws.send("hi from json")
    line.waitFor("#lobby <alice> hi from json")
    ws.waitFor("#lobby <alice> hi from json")
    line.send("/me waves")
    ws.waitFor("#lobby * bob waves")
    ws.send("/msg bob psst")
    ws.waitFor("-> *bob* psst")
    line.waitFor("*alice* psst")
    ws.send("/join dev")
    ws.waitFor("*** #dev: alice joined")
    ws.send("/rooms")
    ws.waitFor("*** rooms: #dev (1), #lobby (2)")
    ws.send("/help")
    ws.waitFor("***   /quit [REASON]    leave")
    ws.send("/quit")
    assert ws.wait() == 0
    assert ws.err == []
    line.waitFor(lambda s: s.startswith("*** #lobby: alice left"))
    assert line.finish() == 0


@pytest.mark.e2e
def test_e2eResumeAcrossRestart(
    startDaemon: Callable[..., Any],
    clientProcesses: Callable[..., ClientProcess],
    lineClients: Callable[..., Any],
    tmp_path: Path,
) -> None:
    """
    A client in WebSocket json mode survives a restart of the daemon (SQLite
    store, same ports): it says it is reconnecting, reconnects by itself and
    shows what was said meanwhile and after exactly once, and nothing twice;
    its C{/quit} then exits 0.
    """
    webPort, linePort = _freePort(), _freePort()
    addresses = dict(line="tcp:%d:interface=127.0.0.1" % (linePort,), web="tcp:%d:interface=127.0.0.1" % (webPort,))
    daemon = startDaemon("--drain-spread", "0", **addresses)
    welcome = "*** Welcome to twisted-chat, alice! You are in #lobby. Type /help for commands."
    ws = clientProcesses("ws://127.0.0.1:%d/ws" % (webPort,), "--nick", "alice")
    ws.waitFor(welcome)
    liner = lineClients(linePort)
    first = liner.welcome()
    ws.waitFor(lambda s: s.startswith("*** #lobby: members: "))
    liner.send("one")
    ws.waitFor("#lobby <%s> one" % (first,))
    daemon.stop()
    assert daemon.stoppedCleanly
    assert (tmp_path / "chat.sqlite3").exists()

    startDaemon("--drain-spread", "0", **addresses)
    liner = lineClients(linePort)
    second = liner.welcome()
    liner.send("two")
    liner.send("three")
    # live, or (when said before the client was back) as missed history
    said = lambda nick, text: re.compile(r"#lobby (\[[^\]]+\] )?<%s> %s" % (re.escape(nick), text))
    ws.waitFor(lambda s: said(second, "three").fullmatch(s) is not None, timeout=45)
    ws.waitCount(welcome, 2)
    assert ws.out.count(welcome) == 2
    assert [s for s in ws.out if said(second, "two").fullmatch(s)] != []
    assert len([s for s in ws.out if said(second, "two").fullmatch(s)]) == 1, ws.out
    assert len([s for s in ws.out if said(second, "three").fullmatch(s)]) == 1, ws.out
    assert len([s for s in ws.out if s.endswith(" one")]) == 1, ws.out
    assert not any("may be missing" in s for s in ws.out), ws.out
    assert any(re.fullmatch(r"twisted-chat: connection lost \(server shutting down\): reconnecting in \d+\.\d s\u2026", s)
               for s in ws.err), ws.err
    ws.send("/quit")
    assert ws.wait() == 0


# -- end to end: the end of input waits for the server's confirmations --


def _wsURL(daemon: Any) -> str:
    return "ws://127.0.0.1:%d/ws" % (daemon.ports["web"],)


def _lineURL(daemon: Any) -> str:
    return "tcp://127.0.0.1:%d" % (daemon.ports["line"],)


@pytest.mark.e2e
def test_e2ePipedLineEchoed(startDaemon: Callable[..., Any]) -> None:
    """
    C{printf 'hi\\n' | twisted-chat ws://…}: the installed client waits for
    the message's acknowledgement before it quits, so its echo is printed;
    status 0, nothing on stderr.
    """
    daemon = startDaemon(web=LOOPBACK_WEB)
    done = runClient(_wsURL(daemon), "--nick", "alice", input="hi\n", installed=True)
    assert (done.returncode, done.stderr) == (0, ""), done
    assert done.stdout.splitlines()[-1] == "#lobby <alice> hi", done.stdout


@pytest.mark.e2e
def test_e2eSessionsDoNotShareRefs(startDaemon: Callable[..., Any]) -> None:
    """
    Two sessions with the same nick, one after the other: the second one's
    message is a new message, not taken for a resend of the first one's
    (the refs of each session are its own), so both are stored and echoed.
    """
    daemon = startDaemon(web=LOOPBACK_WEB)
    for text in ["first", "second"]:
        done = runClient(_wsURL(daemon), "--nick", "alice", input=text + "\n", installed=True)
        assert (done.returncode, done.stderr) == (0, ""), done
        assert done.stdout.splitlines()[-1] == "#lobby <alice> %s" % (text,), done.stdout


@pytest.mark.e2e
def test_e2ePipedManyLinesEchoed(
    startDaemon: Callable[..., Any], lineClients: Callable[..., Any]
) -> None:
    """
    Many lines piped at once (and a private message) over ws: every one is
    echoed, in order, before the client exits with status 0. (Flood control
    is off: it would refuse most of a paste.)
    """
    daemon = startDaemon("--flood-rate", "0", web=LOOPBACK_WEB)
    bob = lineClients(daemon.ports["line"])
    bob.welcome()
    bob.send("/nick bob")
    bob.expect("*** you are now bob")
    lines = ["line %d" % (i,) for i in range(200)] + ["/msg bob psst"]
    done = runClient(_wsURL(daemon), "--nick", "alice", input="\n".join(lines) + "\n", installed=True)
    assert (done.returncode, done.stderr) == (0, ""), done
    echoes = [line for line in done.stdout.splitlines() if line.startswith("#lobby <alice> ") or line.startswith("-> ")]
    assert echoes == ["#lobby <alice> line %d" % (i,) for i in range(200)] + ["-> *bob* psst"]
    bob.expect("*alice* psst")


@pytest.mark.e2e
@pytest.mark.parametrize("scheme", ["ws", "tcp"])
def test_e2ePipedRefused(startDaemon: Callable[..., Any], scheme: str) -> None:
    """
    A message the server refuses (a private message to nobody) is not lost
    but did not go through: the client shows the error, still waits for the
    rest, and exits with status 3, saying so on stderr; the same over the
    line chat and over ws.
    """
    daemon = startDaemon(web=LOOPBACK_WEB)
    url = _wsURL(daemon) if scheme == "ws" else _lineURL(daemon)
    done = runClient(url, "--nick", "alice", input="/msg nobody psst\nstill here\n", installed=True)
    assert done.returncode == 3, done
    assert done.stderr == "twisted-chat: 1 request was refused\n"
    out = done.stdout.splitlines()
    assert "!!! nobody called nobody is online" in out
    assert "#lobby <alice> still here" in out


class _StoppedDaemon:
    """
    C{with _StoppedDaemon(daemon):} the daemon is stopped (SIGSTOP, by its
    PID) for the block and always continued (SIGCONT) afterwards.
    """

    def __init__(self, daemon: Any) -> None:
        self.pid = daemon.proc.pid

    def __enter__(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def __exit__(self, *exc: object) -> None:
        os.kill(self.pid, signal.SIGCONT)


@pytest.mark.e2e
@pytest.mark.parametrize("scheme, bound", [("ws", None), ("tcp", 3)])
def test_e2eUnconfirmedExitsNonZero(
    startDaemon: Callable[..., Any], clientProcesses: Callable[..., ClientProcess], scheme: str, bound: int | None
) -> None:
    """
    When the server never confirms what was sent (it is stopped), the client
    gives up after 10 s (or C{--confirm-timeout} seconds) and exits with
    status 1, naming on stderr what was not confirmed; over ws each
    message, over the line chat every line (it confirms them all with the
    C{*** bye} that answers C{/quit}).
    """
    daemon = startDaemon(web=LOOPBACK_WEB)
    url = _wsURL(daemon) if scheme == "ws" else _lineURL(daemon)
    options = ["--confirm-timeout", str(bound)] if bound is not None else []
    client = clientProcesses(url, *options, installed=True)
    client.waitFor(lambda line: line.startswith("*** #lobby: members: "))
    with _StoppedDaemon(daemon):
        client.send("anyone there?")
        status = client.finish(timeout=TIMEOUT + (bound or 10))
    assert status == 1, (client.out, client.err)
    unit = "message" if scheme == "ws" else "line"
    seconds = bound or 10
    assert client.err == [
        "twisted-chat: waiting for the server to confirm 1 %s (giving up after %d s without an answer)" % (unit, seconds),
        "twisted-chat: gave up waiting: the server confirmed nothing for %d s" % (seconds,),
        "twisted-chat: 1 %s not confirmed by the server (it may or may not have gone through):" % (unit,),
        "twisted-chat:   anyone there?",
    ]


class MutingProxy:
    """
    A TCP proxy on 127.0.0.1 (a free port) to C{127.0.0.1:targetPort}, one
    thread per direction and connection. L{mute} makes the connections open
    so far throw away what the server sends (the client hears nothing);
    L{cut} closes them. Later connections are forwarded normally.
    """

    def __init__(self, targetPort: int) -> None:
        self.targetPort = targetPort
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._links: list[dict[str, Any]] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept, name="muting-proxy", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            if self._closed:
                client.close()
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.targetPort), timeout=TIMEOUT)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            link: dict[str, Any] = {"sockets": (client, upstream), "muted": False, "running": 2}
            with self._lock:
                self._links.append(link)
                self.accepted += 1
            for src, dst, fromServer in ((client, upstream, False), (upstream, client, True)):
                t = threading.Thread(target=self._pump, args=(link, src, dst, fromServer), daemon=True)
                self._threads.append(t)
                t.start()

    def _pump(self, link: dict[str, Any], src: socket.socket, dst: socket.socket, fromServer: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not (fromServer and link["muted"]):
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            # one side is gone: so is the other (which ends the other pump)
            self._shutdown(link)
            with self._lock:
                link["running"] -= 1
                last = link["running"] == 0
            if last:
                for s in link["sockets"]:
                    s.close()

    def _shutdown(self, link: dict[str, Any]) -> None:
        for s in link["sockets"]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def mute(self) -> None:
        with self._lock:
            for link in self._links:
                link["muted"] = True

    def cut(self) -> None:
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            self._shutdown(link)

    def close(self) -> None:
        self._closed = True
        # a connection wakes the thread blocked in accept(), which then ends
        socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT).close()
        self._thread.join(TIMEOUT)
        self.listener.close()
        self.cut()
        for t in self._threads:
            t.join(TIMEOUT)


@pytest.mark.e2e
def test_e2eConnectionLostWhileWaiting(
    startDaemon: Callable[..., Any], clientProcesses: Callable[..., ClientProcess], lineClients: Callable[..., Any]
) -> None:
    """
    The connection drops while the client waits for an acknowledgement (the
    server stored the message, its echo and ack were lost): the client
    reconnects, resumes (what it missed comes as "while you were away") and
    sends the message again with the same ref; the server answers with the
    first message, so it is stored and shown once, and the client exits
    with status 0 within the bound.
    """
    daemon = startDaemon(web=LOOPBACK_WEB)
    watcher = lineClients(daemon.ports["line"])
    watcher.welcome()
    proxy = MutingProxy(daemon.ports["web"])
    try:
        client = clientProcesses("ws://127.0.0.1:%d/ws" % (proxy.port,), "--nick", "alice", installed=True)
        client.waitFor(lambda line: line.startswith("*** #lobby: members: "))
        watcher.send("before")
        client.waitFor("#lobby <%s> before" % (watcher.nick,))
        proxy.mute()
        client.send("only once")
        watcher.expect("#lobby <alice> only once")
        client.proc.stdin.close()  # type: ignore[union-attr]
        client.waitFor("twisted-chat: waiting for the server to confirm 1 message (giving up after 10 s without an answer)", stderr=True)
        proxy.cut()
        assert client.wait() == 0, (client.out, client.err)
        assert proxy.accepted == 2
    finally:
        proxy.close()
    said = [line for line in client.out if line.endswith("<alice> only once")]
    assert len(said) == 1 and re.fullmatch(r"#lobby \[\d\d:\d\d\] <alice> only once", said[0]), client.out
    assert "*** #lobby: 1 message while you were away:" in client.out
    assert client.err[0] == "twisted-chat: waiting for the server to confirm 1 message (giving up after 10 s without an answer)"
    assert re.fullmatch(r"twisted-chat: connection lost \(.*\): reconnecting in 0\.\d s\u2026", client.err[1]), client.err
    assert client.err[2:] == ["twisted-chat: reconnected to 127.0.0.1:%d" % (proxy.port,)]
    # stored once: a second copy would have reached the watcher before the
    # ack reached the client, so before the watcher's next line
    watcher.send("after")
    between = watcher.expect("#lobby <%s> after" % (watcher.nick,))
    assert not [line for line in between if "only once" in line], between


@pytest.mark.e2e
@pytest_twisted.ensureDeferred
async def test_e2eTerminalEndOfInputWaits(startDaemon: Callable[..., Any]) -> None:
    """
    On a terminal, Ctrl-D (the end of input) waits for the server to confirm
    what was typed too: while the daemon is stopped, a notice above the
    input line says so; once it runs again the echo is shown and the client
    exits with status 0.
    """
    from twisted.internet import reactor

    daemon = startDaemon(web=LOOPBACK_WEB)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    client = _PtyClient()
    script = installedClient()[0]
    try:
        reactor.spawnProcess(
            client.protocol,
            script,
            [script, _wsURL(daemon), "--nick", "alice"],
            env=_clientEnvironment(),
            path=str(REPO),
            usePTY=(master, slave, os.ttyname(slave)),
        )
        await client.waitFor(b"*** #lobby: members: alice").addTimeout(TIMEOUT, reactor)
        await client.waitFor(b"> ").addTimeout(TIMEOUT, reactor)
        with _StoppedDaemon(daemon):
            client.write(b"hi\r\x04")
            await client.waitFor(b"twisted-chat: waiting for the server to confirm 1 message (giving up after 10 s without an answer)").addTimeout(
                TIMEOUT, reactor
            )
        await client.waitFor(b"#lobby <alice> hi").addTimeout(TIMEOUT, reactor)
        assert await client.ended.addTimeout(TIMEOUT, reactor) == 0
    finally:
        if not client.ended.called:
            client.protocol.transport.signalProcess("KILL")
            await client.ended.addTimeout(TIMEOUT, reactor)
