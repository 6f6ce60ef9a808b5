"""
Tests for fairness under abuse (L{twisted_chat.core.limits}): the flood-control
token bucket, admission limits, and how the chat service and the line
front-end apply them. Time is a L{Clock}; connections are in memory.
"""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import Parted
from twisted_chat.core.limits import Admission, FloodGuard
from twisted_chat.frontends.line import LineChatFactory
from twisted_chat.core.service import ChatService, Member
from twisted_chat.core.settings import Settings
from twisted_chat.stores.memory import MemoryStore

from tests.support.fakes import RecordingClient
from tests.support.lines import MemoryLine


# -- the token bucket ---------------------------------------------------------


def test_floodGuardBurst() -> None:
    """
    A fresh guard lets C{burst} requests through at once (no wait), then
    says how long the next one has to wait: one token's worth at C{rate}.
    """
    guard = FloodGuard(3, now=100.0)
    waits = []
    for _ in range(3):
        waits.append(guard.wait(100.0, rate=2, burst=3))
        guard.spend(100.0, rate=2, burst=3)
    assert waits == [0.0, 0.0, 0.0]
    assert guard.wait(100.0, rate=2, burst=3) == pytest.approx(0.5)


def test_floodGuardRefillsAtRate() -> None:
    """
    Spent tokens come back at C{rate} a second: at rate 2, the wait after
    the burst shrinks as time passes and is over after half a second.
    """
    guard = FloodGuard(3, now=0.0)
    for _ in range(3):
        guard.spend(0.0, rate=2, burst=3)
    assert guard.wait(0.1, rate=2, burst=3) == pytest.approx(0.4)
    assert guard.wait(0.5, rate=2, burst=3) == 0.0
    guard.spend(0.5, rate=2, burst=3)
    assert guard.wait(0.5, rate=2, burst=3) == pytest.approx(0.5)


def test_floodGuardWaitIsExact() -> None:
    """
    Waiting exactly as long as asked is enough, whatever the float error
    of the refill: a front-end's timer never has to fire twice.
    """
    guard = FloodGuard(10, now=1764201600.0)
    now = 1764201600.0
    for _ in range(10):
        guard.spend(now, rate=3, burst=10)
    for _ in range(100):
        wait = guard.wait(now, rate=3, burst=10)
        assert wait > 0
        now += wait
        assert guard.wait(now, rate=3, burst=10) == 0.0
        guard.spend(now, rate=3, burst=10)


def test_floodGuardRefillStopsAtBurst() -> None:
    """
    However long a connection stays quiet, it saves up at most C{burst}
    requests.
    """
    guard = FloodGuard(3, now=0.0)
    guard.spend(0.0, rate=5, burst=3)
    passed = []
    for _ in range(5):
        passed.append(guard.wait(3600.0, rate=5, burst=3) == 0.0)
        guard.spend(3600.0, rate=5, burst=3)
    assert passed == [True, True, True, False, False]


def test_floodGuardDebt() -> None:
    """
    A request charged without a token (the service never refuses one)
    makes the next wait longer by one token's worth.
    """
    guard = FloodGuard(1, now=0.0)
    guard.spend(0.0, rate=2, burst=1)
    guard.spend(0.0, rate=2, burst=1)
    assert guard.wait(0.0, rate=2, burst=1) == pytest.approx(1.0)


def test_floodGuardClockGoingBack() -> None:
    """
    A clock that steps backwards gives no tokens and takes none away.
    """
    guard = FloodGuard(2, now=50.0)
    guard.spend(50.0, rate=1, burst=2)
    assert guard.wait(10.0, rate=1, burst=2) == 0.0
    guard.spend(10.0, rate=1, burst=2)
    assert guard.wait(10.0, rate=1, burst=2) == pytest.approx(1.0)
    assert guard.wait(11.0, rate=1, burst=2) == 0.0


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


FLOOD = dict(floodRate=5.0, floodBurst=10.0, floodKick=20.0)


def chatter(service: ChatService, nick: str) -> tuple[Member, RecordingClient]:
    """
    C{nick} connected and in #lobby, with a full flood budget.
    """
    client = RecordingClient()
    member = service.connect(client, nick=nick, peer="test")
    member.join("#lobby")
    service.clock.advance(10)  # type: ignore[attr-defined]
    return member, client


def test_serviceFloodWait() -> None:
    """
    With flood rate 5/s and burst 10, a member may make ten requests at
    once (messages or commands alike); then it is told to wait 0.2 s for
    the next, and less as time passes. The service refuses nothing: a
    request made anyway is done, and the wait grows.
    """
    clock = Clock()
    service = ChatService(store=MemoryStore(), clock=clock, **FLOOD)
    alice, _ = chatter(service, "alice")
    bob, bobClient = chatter(service, "bob")
    for n in range(9):
        assert alice.floodWait() == 0.0
        alice.say("m%d" % n)
    assert alice.floodWait() == 0.0
    alice.who()
    assert alice.floodWait() == pytest.approx(0.2)
    clock.advance(0.15)
    assert alice.floodWait() == pytest.approx(0.05)
    alice.say("anyway")
    assert alice.floodWait() == pytest.approx(0.25)
    assert bobClient.said("alice") == ["m%d" % n for n in range(9)] + ["anyway"]
    assert bob.floodWait() == 0.0


def test_serviceFloodRateZeroIsOff() -> None:
    """
    With flood rate 0 (the service's default), there is no flood control:
    a member never has to wait.
    """
    clock = Clock()
    service = ChatService(store=MemoryStore(), clock=clock)
    alice, _ = chatter(service, "alice")
    bob, bobClient = chatter(service, "bob")
    for n in range(500):
        assert alice.floodWait() == 0.0
        alice.say("m%d" % n)
    assert len(bobClient.said("alice")) == 500


def test_serviceFloodRateReadLive() -> None:
    """
    The flood rate and burst are read from the service's settings at every
    request: a reload that changes them applies to the next wait.
    """
    clock = Clock()
    service = ChatService(store=MemoryStore(), clock=clock, **FLOOD)
    alice, _ = chatter(service, "alice")
    for _ in range(10):
        alice.say("burst")
    assert alice.floodWait() == pytest.approx(0.2)
    service.settings.floodRate = 1.0
    assert alice.floodWait() == pytest.approx(1.0)
    service.settings.floodRate = 0.0
    assert alice.floodWait() == 0.0


def test_disconnectFlooder() -> None:
    """
    A front-end that holds more than flood-kick requests of a member has
    the service disconnect it: its connection is closed with the reason,
    it leaves its rooms (the others see C{flooding}), and that is logged
    and counted.
    """
    clock = Clock()
    refused: list[str] = []
    service = ChatService(store=MemoryStore(), clock=clock, **FLOOD)
    service.stats.refused = refused.append  # type: ignore[method-assign]
    alice, aliceClient = chatter(service, "alice")
    bob, bobClient = chatter(service, "bob")
    with capturedLogs() as events:
        service.disconnectFlooder(alice, 21)
    assert aliceClient.closed == ["disconnected for flooding: more than 20 requests waiting"]
    assert alice.gone and service.lookup("alice") is None
    assert [(e.room, e.nick, e.reason) for e in bobClient.events if isinstance(e, Parted)] == [
        ("#lobby", "alice", "flooding")
    ]
    assert refused == ["flood"]
    assert [formatEvent(e) for e in events if e["log_level"].name == "warn"] == [
        "disconnecting alice from test: flooding (21 requests waiting)"
    ]
    service.disconnectFlooder(alice, 22)
    assert aliceClient.closed == ["disconnected for flooding: more than 20 requests waiting"]


# -- admission at a line connection -------------------------------------------


def test_lineAdmissionRefusesWithOneLine() -> None:
    """
    A line connection past the per-address limit gets exactly one C{!!!}
    line saying why and is closed, without a nick or a join; a connection
    from another address is welcome, and so is one from the first address
    once one of its connections is gone.
    """
    clock = Clock()
    service = ChatService(store=MemoryStore(), clock=clock, admission=Admission(maxConnections=3, maxPerHost=2))
    factory = LineChatFactory(service, clock=clock)
    first = MemoryLine(factory, "10.0.0.1")
    MemoryLine(factory, "10.0.0.1")
    third = MemoryLine(factory, "10.0.0.1")
    assert third.lines() == ["!!! too many connections from your address (at most 2): close one first"]
    assert not third.open
    assert len(service.members) == 2
    other = MemoryLine(factory, "10.0.0.2")
    assert other.lines()[0].startswith("*** Welcome to twisted-chat, ")
    full = MemoryLine(factory, "10.0.0.3")
    assert full.lines() == ["!!! the server is full (3 connections): please try again later"]
    assert not full.open
    first.transport.loseConnection()
    again = MemoryLine(factory, "10.0.0.1")
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
    service = ChatService(store=MemoryStore(), clock=clock, shutdownTimeout=3, admission=Admission(maxPerHost=1))
    service.settings.idleTimeout = 0
    factory = LineChatFactory(service, clock=clock)
    MemoryLine(factory, "10.0.0.1")
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
    quick = MemoryLine(factory, "10.0.0.1")
    assert not quick.open
    assert clock.getDelayedCalls() == []


# -- flood control at a line connection ---------------------------------------


class FloodedLines:
    """
    alice and bob on the line chat of one service with flood control (5
    requests a second, bursts of 10, at most C{kick} waiting), both in
    #lobby with a full flood budget and nothing left to read.
    """

    def __init__(self, kick: float = 100, rate: float = 5, idle: float = 0) -> None:
        self.clock = Clock()
        self.service = ChatService(store=MemoryStore(), 
            clock=self.clock, settings=Settings(floodRate=rate, floodBurst=10, floodKick=kick, idleTimeout=0)
        )
        factory = LineChatFactory(self.service, clock=self.clock)
        self.alice = MemoryLine(factory, "10.0.0.1")
        self.bob = MemoryLine(factory, "10.0.0.2")
        self.alice.send("/nick alice\n")
        self.bob.send("/nick bob\n")
        self.clock.advance(10)
        self.alice.lines()
        self.bob.lines()
        # (from the next input on)
        self.service.settings.idleTimeout = idle

    def tick(self, seconds: float = 0.2) -> None:
        """
        Let C{seconds} pass, in steps of 0.05 s as a reactor would (a timer
        runs about when it is due, not after all of it); a hair more than
        asked, so that a timer due at the end runs whatever the float error.
        """
        steps = round(seconds / 0.05)
        for _ in range(steps):
            self.clock.advance(0.05)
        self.clock.advance(1e-9)


def paste(count: int, start: int = 0) -> bytes:
    return b"".join(b"line %d\n" % (n,) for n in range(start, start + count))


def echoes(count: int, start: int = 0) -> list[str]:
    return ["#lobby <alice> line %d" % (n,) for n in range(start, start + count)]


def test_linePasteWaitsInsteadOfBeingDropped() -> None:
    """
    Thirty lines pasted at once (one chunk) at 5 requests a second, bursts
    of 10: the first ten are said at once, the connection stops being read
    (its transport is paused) and the other twenty follow one every 0.2 s,
    in order; nothing is refused. Once all went through, reading resumes.
    """
    chat = FloodedLines()
    alice, bob = chat.alice, chat.bob
    alice.send(paste(30))
    assert alice.lines() == echoes(10)
    assert alice.transport.producerState == "paused"
    for n in range(10, 30):
        chat.tick()
        assert alice.lines() == echoes(1, n)
        assert alice.transport.producerState == ("producing" if n == 29 else "paused")
    assert bob.lines() == echoes(30)
    chat.tick(10)
    assert alice.lines() == [] and chat.clock.getDelayedCalls() == []


def test_lineInputArrivingWhileWaitingWaitsBehind() -> None:
    """
    Lines that still arrive while a connection waits (a transport that
    had more already, as TLS may) wait behind the others, in order.
    """
    chat = FloodedLines()
    alice = chat.alice
    alice.send(paste(12))
    alice.send(paste(3, 12))
    chat.tick(1.0)
    assert alice.lines() == echoes(15)


def test_linePasteKeepsTheOrderOfEverything() -> None:
    """
    What is not a message waits its turn too: a line that is too long, a
    line of invalid UTF-8, a command and its answer come in the order they
    were typed, between the echoes.
    """
    chat = FloodedLines()
    alice = chat.alice
    alice.send(paste(11) + b"x" * 5000 + b"\n" + b"caf\xe9\n/who\n" + paste(2, 11))
    assert alice.lines() == echoes(10)
    chat.tick(2.0)
    assert alice.lines() == echoes(1, 10) + [
        "!!! line too long (max 4096 bytes): discarded",
        "!!! invalid UTF-8: line dropped",
        "*** #lobby: members: alice, bob",
    ] + echoes(2, 11)


def test_lineOthersDoNotWait() -> None:
    """
    While alice's paste waits, bob is not slowed down: what he says is
    said at once, before the rest of her paste.
    """
    chat = FloodedLines()
    alice, bob = chat.alice, chat.bob
    alice.send(paste(30))
    chat.tick()
    bob.send("hi alice\n")
    assert bob.lines()[-1] == "#lobby <bob> hi alice"
    assert alice.lines()[-1] == "#lobby <bob> hi alice"
    chat.tick(4.0)
    assert alice.lines() == echoes(19, 11)


def test_lineFloodPastTheBoundIsDisconnected() -> None:
    """
    With flood-kick 20, twenty lines may wait (30 pasted: all said in
    time); a connection with twenty-one waiting is disconnected with the
    reason, nothing more of it is said, and the others see it leave as
    flooding.
    """
    chat = FloodedLines(kick=20)
    alice, bob = chat.alice, chat.bob
    alice.send(paste(30))
    chat.tick(5.0)
    assert alice.lines() == echoes(30) and alice.open
    chat.tick(10.0)
    with capturedLogs() as events:
        alice.send(paste(31, 30))
    assert alice.lines() == echoes(10, 30) + [
        "*** #lobby: alice left (flooding)",
        "*** disconnected for flooding: more than 20 requests waiting",
    ]
    assert not alice.open
    assert bob.lines() == echoes(40) + ["*** #lobby: alice left (flooding)"]
    assert any("disconnecting alice from 10.0.0.1:" in formatEvent(e) for e in events)
    chat.tick(10.0)
    assert bob.lines() == [] and chat.clock.getDelayedCalls() == []


def test_lineQuitWaitsItsTurn() -> None:
    """
    C{/quit} typed after a paste that has to wait quits once the paste was
    said, not before.
    """
    chat = FloodedLines()
    alice, bob = chat.alice, chat.bob
    alice.send(paste(12) + b"/quit done\n")
    assert alice.open
    chat.tick(1.0)
    assert alice.lines() == echoes(12) + ["*** #lobby: alice left (quit: done)", "*** bye"]
    assert not alice.open
    assert bob.lines() == echoes(12) + ["*** #lobby: alice left (quit: done)"]


def test_lineEndOfInputWaitsItsTurn() -> None:
    """
    A peer that finishes sending right after a paste (C{printf ... | nc})
    has the whole paste said before it is let go.
    """
    chat = FloodedLines()
    alice, bob = chat.alice, chat.bob
    alice.send(paste(15))
    alice.protocol.readConnectionLost()
    chat.tick(0.8)
    assert alice.open and alice.lines() == echoes(14)
    chat.tick()
    assert alice.lines() == echoes(1, 14) + ["*** #lobby: alice left (disconnected)"]
    assert not alice.open
    assert bob.lines() == echoes(15) + ["*** #lobby: alice left (disconnected)"]


def test_lineWaitingIsNotIdle() -> None:
    """
    A connection whose lines wait for flood control is not idle, however
    long they wait; once they went through, the idle timeout counts again.
    """
    chat = FloodedLines(rate=0.5, idle=3)
    alice = chat.alice
    alice.send(paste(12))
    chat.tick(3.5)
    assert alice.open and alice.lines() == echoes(11)
    chat.tick(2.0)
    assert alice.open and alice.lines() == echoes(1, 11)
    chat.tick(3.0)
    assert not alice.open
    assert alice.lines()[0] == "*** idle for 3 s: disconnecting"
