"""
Tests for fairness under abuse (L{twisted_chat._limits}): the flood-control
token bucket, admission limits, and how the chat service and the line
front-end apply them. Time is a L{Clock}; connections are in memory.
"""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport, StringTransportWithDisconnection
from zope.interface import implementer

from twisted_chat._errors import ChatError
from twisted_chat._events import Event, Message, Parted
from twisted_chat._interfaces import IChatClient
from twisted_chat._limits import Admission, FloodGuard
from twisted_chat._line import LineChatFactory, LineChatProtocol
from twisted_chat._service import ChatService, Member

# -- the token bucket ---------------------------------------------------------


def test_floodGuardBurst() -> None:
    """
    A fresh guard lets C{burst} requests through at once, then refuses, and
    every refusal is a strike.
    """
    guard = FloodGuard(3, now=100.0)
    assert [guard.take(100.0, rate=1, burst=3) for _ in range(5)] == [True, True, True, False, False]
    assert guard.strikes == 2


def test_floodGuardRefillsAtRate() -> None:
    """
    Spent tokens come back at C{rate} a second: at rate 2, one request more
    passes after half a second, and none before.
    """
    guard = FloodGuard(3, now=0.0)
    for _ in range(3):
        assert guard.take(0.0, rate=2, burst=3)
    assert not guard.take(0.4, rate=2, burst=3)
    assert guard.take(0.5, rate=2, burst=3)
    assert not guard.take(0.5, rate=2, burst=3)


def test_floodGuardRefillStopsAtBurst() -> None:
    """
    However long a connection stays quiet, it saves up at most C{burst}
    requests.
    """
    guard = FloodGuard(3, now=0.0)
    guard.take(0.0, rate=5, burst=3)
    passed = [guard.take(3600.0, rate=5, burst=3) for _ in range(5)]
    assert passed == [True, True, True, False, False]


def test_floodGuardStrikesLeak() -> None:
    """
    Strikes leak away at C{rate} a second, down to zero and no further.
    """
    guard = FloodGuard(1, now=0.0)
    guard.take(0.0, rate=2, burst=1)
    for _ in range(4):
        guard.take(0.0, rate=2, burst=1)
    assert guard.strikes == 4
    guard.take(1.0, rate=2, burst=1)  # 2 leaked, and a token came back
    assert guard.strikes == 2
    guard.take(60.0, rate=2, burst=1)
    assert guard.strikes == 0


def test_floodGuardClockGoingBack() -> None:
    """
    A clock that steps backwards gives no tokens and takes none away.
    """
    guard = FloodGuard(2, now=50.0)
    assert guard.take(50.0, rate=1, burst=2)
    assert guard.take(10.0, rate=1, burst=2)
    assert not guard.take(10.0, rate=1, burst=2)
    assert guard.take(11.0, rate=1, burst=2)


# -- admission ----------------------------------------------------------------


def refusal(admission: Admission, host: str) -> ChatError:
    with pytest.raises(ChatError) as e:
        admission.admit(host)
    return e.value


def test_admissionTotal() -> None:
    """
    Past C{maxConnections} in all, a connection is refused as C{server-full},
    whatever its address; one that leaves makes room for one more.
    """
    admission = Admission(maxConnections=2)
    admission.admit("10.0.0.1")
    admission.admit("10.0.0.2")
    e = refusal(admission, "10.0.0.3")
    assert (e.code, e.message) == ("server-full", "the server is full (2 connections): please try again later")
    admission.release("10.0.0.1")
    admission.admit("10.0.0.3")
    assert refusal(admission, "10.0.0.1").code == "server-full"


def test_admissionPerHost() -> None:
    """
    Past C{maxPerHost} from one address, that address is refused as
    C{too-many-connections}; other addresses are not affected, and a
    refused connection is not counted.
    """
    admission = Admission(maxPerHost=2)
    admission.admit("10.0.0.1")
    admission.admit("10.0.0.1")
    for _ in range(3):
        e = refusal(admission, "10.0.0.1")
        assert (e.code, e.message) == (
            "too-many-connections",
            "too many connections from your address (at most 2): close one first",
        )
    admission.admit("10.0.0.2")
    admission.release("10.0.0.1")
    admission.admit("10.0.0.1")
    assert admission.total == 3
    assert admission.perHost == {"10.0.0.1": 2, "10.0.0.2": 1}


def test_admissionBannedHost() -> None:
    """
    A banned address is refused as C{banned} even on an empty server.
    """
    admission = Admission()
    admission.bannedHosts.add("10.6.6.6")
    e = refusal(admission, "10.6.6.6")
    assert (e.code, e.message) == ("banned", "your address is banned from this server")
    assert admission.total == 0
    admission.admit("10.0.0.1")


def test_admissionZeroIsNoLimit() -> None:
    """
    C{0} means no limit, for the total and per address.
    """
    admission = Admission(0, 0)
    for _ in range(1000):
        admission.admit("10.0.0.1")
    assert admission.total == 1000


def test_admissionReleaseNeverGoesNegative() -> None:
    """
    Releasing more than was admitted leaves the counts at zero, so the
    limits are never loosened by a double release.
    """
    admission = Admission(maxConnections=1, maxPerHost=1)
    admission.admit("10.0.0.1")
    admission.release("10.0.0.1")
    admission.release("10.0.0.1")
    admission.release("10.9.9.9")
    assert (admission.total, admission.perHost) == (0, {})
    admission.admit("10.0.0.1")
    assert refusal(admission, "10.0.0.2").code == "server-full"


# -- flood control in the service ---------------------------------------------


@implementer(IChatClient)
class Recorder:
    """
    A front-end that keeps the events it is given and the reason it was
    closed with.
    """

    kind = "test"

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed: list[str] = []

    def deliver(self, event: object) -> None:
        assert isinstance(event, Event)
        self.events.append(event)

    def close(self, reason: str) -> None:
        self.closed.append(reason)

    def said(self, nick: str) -> list[str]:
        return [e.text for e in self.events if isinstance(e, Message) and e.sender == nick]


FLOOD = dict(floodRate=5.0, floodBurst=10.0, floodKick=20.0)
SLOW_DOWN = "slow down: at most 5 requests a second (bursts of 10); this one was dropped"


def chatter(service: ChatService, nick: str) -> tuple[Member, Recorder]:
    """
    C{nick} connected and in #lobby, with a full flood budget.
    """
    client = Recorder()
    member = service.connect(client, nick=nick, peer="test")
    member.join("#lobby")
    service.clock.advance(10)  # type: ignore[attr-defined]
    return member, client


def trySay(member: Member, text: str) -> ChatError | None:
    """
    Say C{text}; the refusal, if it was refused.
    """
    try:
        d: Deferred[object] = member.say(text)  # type: ignore[assignment]
    except ChatError as e:
        return e
    failures: list[object] = []
    d.addErrback(failures.append)
    assert not failures
    return None


def test_serviceFloodBurstThenRefused() -> None:
    """
    With flood rate 5/s and burst 10, ten messages sent at once are
    delivered; the eleventh is refused with C{flood} and reaches nobody.
    """
    clock = Clock()
    service = ChatService(clock=clock, **FLOOD)
    alice, _ = chatter(service, "alice")
    bob, bobClient = chatter(service, "bob")
    for n in range(10):
        assert trySay(alice, "m%d" % n) is None
    e = trySay(alice, "m10")
    assert e is not None
    assert (e.code, e.message) == ("flood", SLOW_DOWN)
    assert bobClient.said("alice") == ["m%d" % n for n in range(10)]


def test_serviceFloodTokensComeBackAtRate() -> None:
    """
    After the burst is spent, one more message passes every 1/rate
    seconds (0.2 s at 5/s), and not before.
    """
    clock = Clock()
    service = ChatService(clock=clock, **FLOOD)
    alice, _ = chatter(service, "alice")
    bob, bobClient = chatter(service, "bob")
    for n in range(10):
        trySay(alice, "burst")
    clock.advance(0.1)
    assert trySay(alice, "too soon") is not None
    clock.advance(0.1)
    assert trySay(alice, "on time") is None
    assert trySay(alice, "too soon again") is not None
    clock.advance(1.0)
    for n in range(5):
        assert trySay(alice, "later %d" % n) is None
    assert trySay(alice, "one too many") is not None
    assert bobClient.said("alice") == ["burst"] * 10 + ["on time"] + ["later %d" % n for n in range(5)]


def test_serviceFloodCountsCommands() -> None:
    """
    Every request costs a token, not only messages: a burst of C{who}
    requests is refused like a burst of messages.
    """
    clock = Clock()
    service = ChatService(clock=clock, **FLOOD)
    alice, _ = chatter(service, "alice")
    for _ in range(10):
        alice.who()
    with pytest.raises(ChatError) as e:
        alice.who()
    assert e.value.code == "flood"
    with pytest.raises(ChatError) as e:
        alice.setNick("alicia")
    assert e.value.code == "flood"
    assert alice.nick == "alice"


def test_serviceFloodDisconnects() -> None:
    """
    A member that keeps flooding is disconnected at its twentieth refused
    request: its connection is closed with "disconnected for flooding", and
    the others see it leave with the reason C{flooding}.
    """
    clock = Clock()
    service = ChatService(clock=clock, **FLOOD)
    alice, aliceClient = chatter(service, "alice")
    bob, bobClient = chatter(service, "bob")
    refusals = []
    for n in range(100):
        e = trySay(alice, "spam %d" % n)
        if e is not None:
            refusals.append(e.message)
        if alice.gone:
            break
    assert refusals == [SLOW_DOWN] * 19 + ["disconnected for flooding"]
    assert aliceClient.closed == ["disconnected for flooding"]
    assert service.lookup("alice") is None
    parts = [(e.room, e.nick, e.reason) for e in bobClient.events if isinstance(e, Parted)]
    assert parts == [("#lobby", "alice", "flooding")]
    assert len(bobClient.said("alice")) == 10


def test_serviceFloodSlowsButKeepsAClientSlightlyTooFast() -> None:
    """
    A member sending at twice the rate for a minute has about half its
    messages refused, but is never disconnected: its strikes leak away as
    fast as they come.
    """
    clock = Clock()
    service = ChatService(clock=clock, **FLOOD)
    alice, aliceClient = chatter(service, "alice")
    bob, bobClient = chatter(service, "bob")
    refused = 0
    for n in range(600):
        if trySay(alice, "m%d" % n) is not None:
            refused += 1
        clock.advance(0.1)
    assert not alice.gone
    assert aliceClient.closed == []
    assert 280 <= refused <= 300
    assert len(bobClient.said("alice")) == 600 - refused


def test_serviceFloodRateZeroIsOff() -> None:
    """
    With flood rate 0 (the service's default), there is no flood control.
    """
    clock = Clock()
    service = ChatService(clock=clock)
    alice, _ = chatter(service, "alice")
    bob, bobClient = chatter(service, "bob")
    for n in range(500):
        assert trySay(alice, "m%d" % n) is None
    assert len(bobClient.said("alice")) == 500


# -- admission at a line connection -------------------------------------------


class LineConnection:
    """
    One in-memory line connection from C{host}.
    """

    _port = 50000

    def __init__(self, factory: LineChatFactory, host: str) -> None:
        LineConnection._port += 1
        address = IPv4Address("TCP", host, LineConnection._port)
        self.protocol: LineChatProtocol = factory.buildProtocol(address)
        self.transport = StringTransportWithDisconnection(peerAddress=address)
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)

    def lines(self) -> list[str]:
        data = self.transport.value()
        self.transport.clear()
        return data.decode("utf-8").splitlines()

    @property
    def open(self) -> bool:
        return bool(self.transport.connected)


def test_lineAdmissionRefusesWithOneLine() -> None:
    """
    A line connection past the per-address limit gets exactly one C{!!!}
    line saying why and is closed, without a nick or a join; a connection
    from another address is welcome, and so is one from the first address
    once one of its connections is gone.
    """
    clock = Clock()
    service = ChatService(clock=clock, admission=Admission(maxConnections=3, maxPerHost=2))
    factory = LineChatFactory(service, clock=clock)
    first = LineConnection(factory, "10.0.0.1")
    LineConnection(factory, "10.0.0.1")
    third = LineConnection(factory, "10.0.0.1")
    assert third.lines() == ["!!! too many connections from your address (at most 2): close one first"]
    assert not third.open
    assert len(service.members) == 2
    other = LineConnection(factory, "10.0.0.2")
    assert other.lines()[0].startswith("*** Welcome to twisted-chat, ")
    full = LineConnection(factory, "10.0.0.3")
    assert full.lines() == ["!!! the server is full (3 connections): please try again later"]
    assert not full.open
    first.transport.loseConnection()
    again = LineConnection(factory, "10.0.0.1")
    assert again.open
    assert again.lines()[0].startswith("*** Welcome to twisted-chat, ")
    assert service.admission.total == 3


def test_lineCloseIsForcedAfterShutdownTimeout() -> None:
    """
    A line connection the server ends (here: refused at admission) whose
    peer does not let it close (a TLS peer that never answers close_notify,
    a peer that never reads) is aborted after the shutdown timeout, so it
    cannot keep a connection slot for ever; one that closes in time leaves
    nothing scheduled.
    """
    clock = Clock()
    service = ChatService(clock=clock, shutdownTimeout=3, admission=Admission(maxPerHost=1))
    service.settings.idleTimeout = 0
    factory = LineChatFactory(service, clock=clock)
    LineConnection(factory, "10.0.0.1")
    address = IPv4Address("TCP", "10.0.0.1", 50999)
    stuck = factory.buildProtocol(address)
    transport = StringTransport(peerAddress=address)
    stuck.makeConnection(transport)
    assert transport.value() == b"!!! too many connections from your address (at most 1): close one first\n"
    assert transport.disconnecting and not transport.disconnected
    clock.advance(2.9)
    assert not transport.disconnected
    clock.advance(0.1)
    assert transport.disconnected
    quick = LineConnection(factory, "10.0.0.1")
    assert not quick.open
    assert clock.getDelayedCalls() == []
