"""
Tests for the client session (L{twisted_chat.client.session}) and the line
link (L{twisted_chat.client.links}) in memory, on a L{Clock} over string
transports: the session over the line chat, and reconnecting, resuming and
quitting.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from twisted_chat.client.links import LineLink, connect
from twisted_chat.client.session import ChatClient
from twisted_chat.client.target import Target

from tests.support.client import FakeUI, result


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


# -- the line link --


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


# -- the session: reconnecting, resuming and quitting --


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

