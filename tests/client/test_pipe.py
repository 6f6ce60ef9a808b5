"""
Tests for the client's pipe mode (L{twisted_chat.client.pipe}): what is
read from standard input is sent, what the server says is written to
standard output, in memory.
"""

from __future__ import annotations


from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from twisted_chat.client.links import LineLink
from twisted_chat.client.pipe import PipeUI
from twisted_chat.client.session import ChatClient
from twisted_chat.client.target import Target

from tests.support.client import result


# -- pipe mode --


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

