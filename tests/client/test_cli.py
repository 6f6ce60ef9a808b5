"""
Tests for the terminal client's command line: the URL it is given
(L{twisted_chat.client.target}), its options and C{main}
(L{twisted_chat.client.cli}), and the requests and failures it describes
(L{twisted_chat.client.typed}, L{twisted_chat.client.session}).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.python.failure import Failure

from twisted_chat.client.cli import main, parseCommandLine
from twisted_chat.client.session import describeFailure
from twisted_chat.client.target import BadURL, Target, parseTarget
from twisted_chat.client.tls import OptionError
from twisted_chat.client.typed import quitRequest


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

