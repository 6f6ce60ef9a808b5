"""
Tests for the IRC front-end in C{twistd chat}: the C{--irc} option, the
listeners of a node's tree and of a C{--workers} parent, in memory.
"""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent

from twisted_chat.core.service import ChatService
from twisted_chat.daemon.app import makeService
from twisted_chat.daemon.options import Options
from twisted_chat.frontends.irc import IRCFactory


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def test_ircIsOffByDefault() -> None:
    assert parse()["irc"] == []
    assert parse("--irc", "none")["irc"] == []


def test_ircIsRepeatableAndChecked() -> None:
    options = parse("--irc", "tcp:6667", "--irc", "tcp6:6697")
    assert options["irc"] == ["tcp:6667", "tcp6:6697"]
    with pytest.raises(SystemExit) as e:
        parse("--irc", "tcp:notaport")
    assert "invalid endpoint 'tcp:notaport'" in str(e.value)
    with pytest.raises(SystemExit) as e:
        parse("--irc", "none", "--irc", "tcp:6667")
    assert "--irc none cannot be combined" in str(e.value)


def test_nodeListensForIrc() -> None:
    """
    A node serves IRC on every --irc endpoint with one factory that shares
    the chat service, and logs each listening address.
    """
    reactor = MemoryReactorClock()
    options = parse("--store", "memory", "--web", "none", "--line", "none", "--irc", "tcp:6667", "--irc", "tcp:6668")
    top = makeService(options, reactor=reactor)
    with capturedLogs() as events:
        top.privilegedStartService()
        top.startService()
    try:
        ircs = [(port, f) for port, f, _, _ in reactor.tcpServers if isinstance(f, IRCFactory)]
        assert [port for port, _ in ircs] == [6667, 6668]
        assert ircs[0][1] is ircs[1][1]
        [chat] = [s for s in top if isinstance(s, ChatService)]
        assert ircs[0][1].service is chat
        logged = [formatEvent(e) for e in events]
        assert "irc listening on tcp:0.0.0.0:6667" in logged
    finally:
        top.stopService()


def test_workersShareTheIrcPort() -> None:
    """
    A --workers parent binds the --irc address too and hands it to its
    workers (--inherit-fds irc=FD).
    """
    options = parse(
        "--broker", "redis://127.0.0.1:1/0", "--workers", "2", "--line", "tcp:9000", "--web", "none", "--irc", "tcp:6667"
    )
    args = options.workerArguments(1, "line=3,irc=4")
    assert "--irc=tcp:6667" in args
    worker = parse(*args)
    assert worker["inherited"] == {"line": [3], "web": [], "irc": [4]}
    with pytest.raises(SystemExit) as e:
        parse("--broker", "redis://127.0.0.1:1/0", "--workers", "2", "--irc", "unix:/tmp/irc.sock")
    assert "with --workers, --irc must be a tcp:, tcp6: or ssl: endpoint" in str(e.value)
