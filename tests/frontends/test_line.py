"""
Tests for the TCP line chat front-end (L{twisted_chat.frontends.line}) and the text
commands it shares with WebSocket text mode (L{twisted_chat.frontends.textmode}), driven
through in-memory transports: bytes in with C{dataReceived}, lines out from
C{transport.value()}.
"""

from __future__ import annotations

import re

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from zope.interface.verify import verifyObject

from twisted_chat.core.history import HOLD_FOR
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.frontends.line import LineChatFactory
from twisted_chat.stores.memory import MemoryStore
from twisted_chat.core.service import ChatService
from twisted_chat.wire.commands import HELP

from tests.support.fakes import fired, FlakyStore
from tests.support.lines import MemoryLine, quiet


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(clock: Clock) -> ChatService:
    return ChatService(store=MemoryStore(), clock=clock)


@pytest.fixture
def factory(service: ChatService, clock: Clock) -> LineChatFactory:
    settings = service.settings
    settings.maxLineLength, settings.idleTimeout, settings.maxOutgoing = 64, 60, 4096
    return LineChatFactory(service, clock=clock)


def login(factory: LineChatFactory, nick: str) -> MemoryLine:
    """
    Connect and take C{nick}; everyone's output so far is read.
    """
    line = MemoryLine(factory)
    line.say("/nick " + nick)
    return line


# -- connecting ---------------------------------------------------------------


def test_protocolIsAChatClient(factory: LineChatFactory) -> None:
    """
    A line connection is an L{IChatClient} of the service, and registers a
    streaming producer with its transport to learn when the peer stops reading.
    """
    conn = MemoryLine(factory)
    assert verifyObject(IChatClient, conn.protocol)
    assert conn.protocol.kind == "line"
    assert verifyObject(IPushProducer, conn.transport.producer)
    assert conn.transport.streaming is True


def test_welcome(factory: LineChatFactory) -> None:
    """
    A new connection is greeted with its guest nick and put in #lobby: it
    sees its own join and the member list; an empty room has no history lines.
    """
    conn = MemoryLine(factory)
    assert conn.lines() == [
        "*** Welcome to twisted-chat, guest-1! You are in #lobby. Type /help for commands.",
        "*** #lobby: guest-1 joined",
        "*** #lobby: members: guest-1",
    ]


def test_welcomeWithHistory(service: ChatService, clock: Clock) -> None:
    """
    A newcomer sees the members and then the room's recent messages, stamped
    HH:MM when from today (UTC) and with the date otherwise.
    """
    service.settings.idleTimeout = 0
    factory = LineChatFactory(service, clock=clock)
    clock.advance(9 * 3600 + 14 * 60)
    alice = login(factory, "alice")
    alice.say("morning all")
    clock.advance(86400)
    alice.say("next day")
    bob = MemoryLine(factory)
    assert bob.lines() == [
        "*** Welcome to twisted-chat, guest-2! You are in #lobby. Type /help for commands.",
        "*** #lobby: guest-2 joined",
        "*** #lobby: members: alice, guest-2",
        "*** #lobby: last 2 messages:",
        "#lobby [1970-01-01 09:14] <alice> morning all",
        "#lobby [09:14] <alice> next day",
    ]
    assert alice.lines() == ["*** #lobby: guest-2 joined"]


def test_disconnectIsSeenByOthers(factory: LineChatFactory, service: ChatService) -> None:
    """
    When a connection is lost, the others in its rooms see it leave with the
    reason C{disconnected}, and its nick is free again.
    """
    alice, bob = login(factory, "alice"), login(factory, "bob")
    quiet(alice, bob)
    bob.disconnect()
    assert alice.lines() == ["*** #lobby: bob left (disconnected)"]
    assert service.lookup("bob") is None


# -- framing --------------------------------------------------------------------


def test_lfAndCrlf(factory: LineChatFactory) -> None:
    """
    Lines may end in LF (nc) or CRLF (telnet); the CR is not part of the text.
    """
    alice = login(factory, "alice")
    alice.send(b"with lf\nwith crlf\r\n")
    assert alice.lines() == ["#lobby <alice> with lf", "#lobby <alice> with crlf"]


def test_lineSplitAcrossSegments(factory: LineChatFactory) -> None:
    """
    A line that arrives in several pieces is acted on once it is complete.
    """
    alice = login(factory, "alice")
    for piece in (b"hel", b"lo wor", b"ld\r"):
        alice.send(piece)
        assert alice.lines() == []
    alice.send(b"\n")
    assert alice.lines() == ["#lobby <alice> hello world"]


def test_utf8CharacterSplitAcrossSegments(factory: LineChatFactory) -> None:
    """
    A UTF-8 character split between two segments arrives whole.
    """
    alice = login(factory, "alice")
    data = "héllo wörld ✓\n".encode("utf-8")
    cut = data.index("é".encode("utf-8")) + 1
    alice.send(data[:cut])
    alice.send(data[cut:])
    assert alice.lines() == ["#lobby <alice> héllo wörld ✓"]


def test_manyLinesInOneSegment(factory: LineChatFactory) -> None:
    """
    Several lines in one segment are all acted on, in order; empty and blank
    lines are ignored.
    """
    alice = login(factory, "alice")
    bob = login(factory, "bob")
    quiet(alice, bob)
    alice.send(b"one\n\ntwo\r\n   \nthree\n/me counts\n")
    expected = ["#lobby <alice> one", "#lobby <alice> two", "#lobby <alice> three", "#lobby * alice counts"]
    assert alice.lines() == expected
    assert bob.lines() == expected


def test_invalidUtf8(factory: LineChatFactory) -> None:
    """
    A line that is not UTF-8 is refused with one error line and nobody sees
    anything; the connection stays and the next line works.
    """
    alice = login(factory, "alice")
    bob = login(factory, "bob")
    quiet(alice, bob)
    alice.send(b"caf\xe9 au lait\n")
    assert alice.lines() == ["!!! invalid UTF-8: line dropped"]
    assert bob.lines() == []
    assert alice.open
    alice.send(b"\xff\xfe\xfd\nfine\n")
    assert alice.lines() == ["!!! invalid UTF-8: line dropped", "#lobby <alice> fine"]


def test_lineAtTheLimit(factory: LineChatFactory) -> None:
    """
    A line of exactly the maximum length (64 bytes here), with LF or CRLF,
    is accepted.
    """
    alice = login(factory, "alice")
    text = "x" * 64
    alice.send(text + "\n")
    alice.send(text + "\r\n")
    assert alice.lines() == ["#lobby <alice> " + text] * 2


def test_lineOverTheLimitInOneSegment(factory: LineChatFactory) -> None:
    """
    A line one byte over the limit is refused with one error and nothing is
    said; the line after it, in the same segment, works.
    """
    alice = login(factory, "alice")
    bob = login(factory, "bob")
    quiet(alice, bob)
    alice.send(b"y" * 65 + b"\nafter\n")
    assert alice.lines() == ["!!! line too long (max 64 bytes): discarded", "#lobby <alice> after"]
    assert bob.lines() == ["#lobby <alice> after"]
    assert alice.open


def test_lineOverTheLimitInManySegmentsIsNeverBuffered(factory: LineChatFactory) -> None:
    """
    A huge line arriving in many segments gets one error as soon as it is
    too long; the rest of it is thrown away as it arrives (the buffer never
    holds more than one line's worth), and the next line works.
    """
    alice = login(factory, "alice")
    bob = login(factory, "bob")
    quiet(alice, bob)
    errors = []
    for _ in range(2000):
        alice.send(b"z" * 100)
        assert len(alice.protocol._buffer) <= 64 + 1
        errors += alice.lines()
    alice.send(b"z" * 50 + b"\r\nnext line\n")
    errors += alice.lines()
    assert errors == ["!!! line too long (max 64 bytes): discarded", "#lobby <alice> next line"]
    assert bob.lines() == ["#lobby <alice> next line"]
    assert alice.open


def test_lineOverTheLimitByteByByte(factory: LineChatFactory) -> None:
    """
    A too-long line that trickles in one byte at a time gets one error too,
    and the line after it works.
    """
    alice = login(factory, "alice")
    out = []
    for b in b"q" * 200 + b"\nok\n":
        alice.send(bytes([b]))
        assert len(alice.protocol._buffer) <= 64 + 1
        out += alice.lines()
    assert out == ["!!! line too long (max 64 bytes): discarded", "#lobby <alice> ok"]


def test_controlCharactersAreShownAsSpaces(factory: LineChatFactory) -> None:
    """
    Control characters in a message (which could move a terminal's cursor)
    reach the others as spaces; tabs and other text are kept.
    """
    alice = login(factory, "alice")
    bob = login(factory, "bob")
    quiet(alice, bob)
    alice.send("clear\x1b[2J\x07me\tplease\x7f ok\n")
    assert bob.lines() == ["#lobby <alice> clear [2J me\tplease  ok"]


# -- commands -------------------------------------------------------------------


def test_help(factory: LineChatFactory) -> None:
    """
    /help lists the commands as notice lines.
    """
    alice = login(factory, "alice")
    lines = alice.say("/help")
    assert lines == ["*** " + h for h in HELP]
    assert any(line.startswith("***   /msg NICK TEXT") for line in lines)


def test_commandsIgnoreCase(factory: LineChatFactory) -> None:
    """
    Command names are case-insensitive.
    """
    alice = login(factory, "alice")
    assert alice.say("/HELP") == ["*** " + h for h in HELP]


def test_nick(factory: LineChatFactory) -> None:
    """
    /nick confirms the new nick to its owner and tells the others in its
    rooms; it is then used on messages.
    """
    alice = MemoryLine(factory)
    bob = login(factory, "bob")
    quiet(alice, bob)
    assert alice.say("/nick Alice") == ["*** you are now Alice"]
    assert bob.lines() == ["*** #lobby: guest-1 is now known as Alice"]
    alice.say("hi")
    assert bob.lines() == ["#lobby <Alice> hi"]


def test_nickTaken(factory: LineChatFactory) -> None:
    """
    A nick someone else has, in any case, is refused with one error line.
    """
    login(factory, "alice")
    bob = login(factory, "bob")
    assert bob.say("/nick ALICE") == ["!!! the nickname ALICE is taken"]
    assert bob.nick == "bob"


def test_join(factory: LineChatFactory) -> None:
    """
    /join enters a room (the C{#} is optional) and makes it the current room:
    the joiner sees its join and the members, plain text goes there, and
    members of other rooms see nothing.
    """
    alice = login(factory, "alice")
    bob = login(factory, "bob")
    quiet(alice, bob)
    assert alice.say("/join Dev") == ["*** #dev: alice joined", "*** #dev: members: alice"]
    assert alice.say("in dev") == ["#dev <alice> in dev"]
    assert bob.lines() == []


def test_joinShowsHistory(factory: LineChatFactory) -> None:
    """
    Joining a room with messages shows its recent history after the members.
    """
    alice = login(factory, "alice")
    alice.say("/join dev")
    alice.say("in dev")
    bob = login(factory, "bob")
    quiet(alice)
    assert bob.say("/join #dev") == [
        "*** #dev: bob joined",
        "*** #dev: members: alice, bob",
        "*** #dev: last 1 message:",
        "#dev [00:00] <alice> in dev",
    ]
    assert alice.lines() == ["*** #dev: bob joined"]


def test_joinSwitchesCurrentRoom(factory: LineChatFactory) -> None:
    """
    /join of a room one is in already makes it the current room again.
    """
    alice = login(factory, "alice")
    alice.say("/join dev")
    assert alice.say("/join LOBBY") == ["*** #lobby is now your current room"]
    assert alice.say("back") == ["#lobby <alice> back"]


def test_part(factory: LineChatFactory) -> None:
    """
    /part leaves the current room (or the one named): the members see it,
    and the leaver is told its new current room, or that it is in none and
    cannot talk.
    """
    alice = login(factory, "alice")
    bob = login(factory, "bob")
    alice.say("/join dev")
    quiet(alice, bob)
    assert alice.say("/part") == ["*** #dev: alice left", "*** your current room is #lobby"]
    assert bob.lines() == []
    assert alice.say("/part #lobby") == ["*** #lobby: alice left", "*** you are in no room now: /join one to talk"]
    assert bob.lines() == ["*** #lobby: alice left"]
    assert alice.say("hello?") == ["!!! you are in no room: /join one first"]
    assert bob.lines() == []


def test_rooms(factory: LineChatFactory) -> None:
    """
    /rooms lists every room with its member count.
    """
    alice = login(factory, "alice")
    bob = login(factory, "bob")
    bob.say("/join dev")
    quiet(alice)
    assert alice.say("/rooms") == ["*** rooms: #dev (1), #lobby (2)"]
    alice.say("/part")
    bob.say("/part lobby")
    assert alice.say("/rooms") == ["*** rooms: #dev (1)"]
    bob.say("/part")
    assert alice.say("/rooms") == ["*** rooms: none"]


def test_who(factory: LineChatFactory) -> None:
    """
    /who lists the members of the current room, or of the one named.
    """
    alice = login(factory, "alice")
    bob = login(factory, "Bob")
    bob.say("/join dev")
    quiet(alice)
    assert alice.say("/who") == ["*** #lobby: members: alice, Bob"]
    assert alice.say("/who dev") == ["*** #dev: members: Bob"]
    assert alice.say("/who #nowhere") == ["*** #nowhere: nobody is here"]


def test_privateMessage(factory: LineChatFactory) -> None:
    """
    /msg sends a private message to one nick (any case): the target sees it
    marked with the sender, the sender sees an echo, nobody else sees it.
    """
    alice = login(factory, "alice")
    bob = login(factory, "bob")
    carol = login(factory, "carol")
    quiet(alice, bob, carol)
    assert alice.say("/msg BOB are you there?") == ["-> *bob* are you there?"]
    assert bob.lines() == ["*alice* are you there?"]
    assert carol.lines() == []


def test_privateMessageToNobody(factory: LineChatFactory) -> None:
    """
    /msg to a nick that is not online is refused with one error line.
    """
    alice = login(factory, "alice")
    assert alice.say("/msg zed hello") == ["!!! nobody called zed is online"]


def test_action(factory: LineChatFactory) -> None:
    """
    /me shows an action in the current room to every member, sender included.
    """
    alice = login(factory, "alice")
    bob = login(factory, "bob")
    quiet(alice, bob)
    assert alice.say("/me waves") == ["#lobby * alice waves"]
    assert bob.lines() == ["#lobby * alice waves"]


def test_historyUnavailable(clock: Clock) -> None:
    """
    When the store cannot be read (with --broker: Redis stalled), a joiner
    is told that the history cannot be read now, not shown an empty room,
    and so is a /history meanwhile; once the store answers, /history shows
    the messages.
    """
    store = FlakyStore()
    store.down = False
    factory = LineChatFactory(ChatService(store=store, clock=clock), clock=clock)
    alice = login(factory, "alice")
    alice.say("before the stall")
    store.down = True
    bob = MemoryLine(factory)
    clock.pump([0.5] * int(HOLD_FOR * 2 + 2))
    unavailable = "*** #lobby: the history cannot be read now (the message store is not answering); /history asks again"
    assert unavailable in bob.lines()
    assert bob.say("/history") == [unavailable]
    store.down = False
    assert bob.say("/history") == [
        "*** #lobby: history, 1 message:",
        "#lobby [00:00] <alice> before the stall",
        "*** #lobby: end of history",
    ]


def test_doubleSlashSendsASlash(factory: LineChatFactory) -> None:
    """
    A line starting with C{//} is a message starting with C{/}.
    """
    alice = login(factory, "alice")
    assert alice.say("//help is not a command") == ["#lobby <alice> /help is not a command"]


def test_history(factory: LineChatFactory) -> None:
    """
    /history N shows the last N messages of the current room, stamped and
    framed by notices; with none yet it says so.
    """
    alice = login(factory, "alice")
    assert alice.say("/history") == ["*** #lobby: no messages yet"]
    for text in ("one", "two", "three"):
        alice.say(text)
    assert alice.say("/history 2") == [
        "*** #lobby: history, 2 messages:",
        "#lobby [00:00] <alice> two",
        "#lobby [00:00] <alice> three",
        "*** #lobby: end of history",
    ]
    assert alice.say("/history") == [
        "*** #lobby: history, 3 messages:",
        "#lobby [00:00] <alice> one",
        "#lobby [00:00] <alice> two",
        "#lobby [00:00] <alice> three",
        "*** #lobby: end of history",
    ]


def test_historyIsLimitedToTheHistorySize(clock: Clock) -> None:
    """
    /history never shows more than the configured history size.
    """
    factory = LineChatFactory(ChatService(store=MemoryStore(), clock=clock, historySize=2), clock=clock)
    alice = login(factory, "alice")
    for text in ("one", "two", "three"):
        alice.say(text)
    assert alice.say("/history 10") == [
        "*** #lobby: history, 2 messages:",
        "#lobby [00:00] <alice> two",
        "#lobby [00:00] <alice> three",
        "*** #lobby: end of history",
    ]


def test_quit(factory: LineChatFactory, service: ChatService) -> None:
    """
    /quit says bye and closes the connection; the others see the reason;
    lines after it in the same segment are not acted on.
    """
    alice = login(factory, "alice")
    bob = login(factory, "bob")
    quiet(alice, bob)
    alice.send(b"/quit gone fishing\nnot said\n")
    assert alice.lines() == ["*** #lobby: alice left (quit: gone fishing)", "*** bye"]
    assert not alice.open
    assert bob.lines() == ["*** #lobby: alice left (quit: gone fishing)"]
    assert service.lookup("alice") is None


def test_quitWithoutReason(factory: LineChatFactory) -> None:
    """
    A plain /quit is shown to the others as C{quit}.
    """
    alice = login(factory, "alice")
    bob = login(factory, "bob")
    quiet(alice, bob)
    alice.say("/quit")
    assert not alice.open
    assert bob.lines() == ["*** #lobby: alice left (quit)"]


@pytest.mark.parametrize(
    "command, error",
    [
        ("/fly", "unknown command /fly (try /help)"),
        ("/", "unknown command / (try /help)"),
        ("/h3lp", "unknown command /h3lp (try /help)"),
        ("/_log x", "unknown command /_log (try /help)"),
        ("/nick", "usage: /nick NAME [PASSWORD]"),
        ("/nick two words", "this server has no registered nicks"),
        ("/nick b@d", "nicknames are 1-24 letters, digits, _ or -"),
        ("/join", "usage: /join ROOM"),
        ("/join a b", "usage: /join ROOM"),
        ("/join #a.b", "room names are # and 1-32 letters, digits, _ or -"),
        ("/part nowhere", "you are not in #nowhere"),
        ("/part a b", "usage: /part [ROOM]"),
        ("/who a b", "usage: /who [ROOM]"),
        ("/who !", "room names are # and 1-32 letters, digits, _ or -"),
        ("/msg", "usage: /msg NICK TEXT"),
        ("/msg bob", "usage: /msg NICK TEXT"),
        ("/msg bob    ", "usage: /msg NICK TEXT"),
        ("/me", "usage: /me ACTION"),
        ("/history x", "usage: /history [N] with N a whole number from 1"),
        ("/history 0", "usage: /history [N] with N a whole number from 1"),
        ("/history -3", "usage: /history [N] with N a whole number from 1"),
    ],
)
def test_refusedCommands(factory: LineChatFactory, command: str, error: str) -> None:
    """
    An unknown command or bad arguments get exactly one C{!!!} line that
    says what is wrong; nobody else sees anything and the connection stays
    and works.
    """
    alice = login(factory, "alice")
    bob = login(factory, "bob")
    quiet(alice, bob)
    assert alice.say(command) == ["!!! " + error]
    assert bob.lines() == []
    assert alice.open
    assert alice.nick == "alice"
    assert alice.say("still here") == ["#lobby <alice> still here"]


def test_messageTooLong(clock: Clock) -> None:
    """
    A message longer than the service accepts gets one error line.
    """
    factory = LineChatFactory(ChatService(store=MemoryStore(), clock=clock, maxTextLength=10), clock=clock)
    alice = login(factory, "alice")
    assert alice.say("x" * 11) == ["!!! message too long (max 10 characters): not sent"]


# -- idle timeout -----------------------------------------------------------------


def test_idleTimeout(factory: LineChatFactory, clock: Clock) -> None:
    """
    A connection with no input for the idle timeout is told so and closed;
    the others see it leave as idle. Any input, even part of a line,
    restarts the count.
    """
    alice = login(factory, "alice")
    bob = login(factory, "bob")
    quiet(alice, bob)
    clock.advance(59)
    alice.send(b"x")
    assert alice.open and bob.open
    clock.advance(1)
    assert bob.lines() == ["*** idle for 60 s: disconnecting", "*** #lobby: bob left (idle)"]
    assert not bob.open
    assert alice.lines() == ["*** #lobby: bob left (idle)"]
    clock.advance(58)
    assert alice.open
    assert alice.say("y") == ["#lobby <alice> xy"]
    clock.advance(59.9)
    assert alice.open
    clock.advance(0.1)
    assert alice.lines() == ["*** idle for 60 s: disconnecting", "*** #lobby: alice left (idle)"]
    assert not alice.open


def test_noIdleTimeout(service: ChatService, clock: Clock) -> None:
    """
    With an idle timeout of 0 a silent connection stays forever.
    """
    service.settings.idleTimeout = 0
    factory = LineChatFactory(service, clock=clock)
    alice = login(factory, "alice")
    clock.advance(10**7)
    assert alice.open
    assert alice.lines() == []


def test_limitsChangedForOpenConnections(factory: LineChatFactory, service: ChatService, clock: Clock) -> None:
    """
    An open line connection reads its limits from the service's settings
    (what a reload changes) when it needs them: a new line length limit and
    a new outgoing limit apply at once, a new idle timeout from the
    connection's next input on.
    """
    slow = login(factory, "slow")
    alice = login(factory, "alice")
    quiet(slow, alice)
    settings = service.settings
    settings.maxLineLength, settings.maxOutgoing, settings.idleTimeout = 16, 8192, 5
    assert alice.say("x" * 17) == ["!!! line too long (max 16 bytes): discarded"]
    assert alice.say("y" * 16) == ["#lobby <alice> " + "y" * 16]
    quiet(slow)
    slow.transport.producer.pauseProducing()
    said = 0
    while slow.open:
        alice.say("%03d %s" % (said, "x" * 12))
        said += 1
        assert said < 1000, "never dropped"
    assert 8192 - 30 < len(slow.transport.value()) <= 8192
    clock.advance(4.9)
    assert alice.open
    clock.advance(0.1)
    assert alice.lines()[0] == "*** idle for 5 s: disconnecting"
    assert not alice.open


# -- slow consumers -----------------------------------------------------------------


def test_slowConsumerIsDropped(factory: LineChatFactory) -> None:
    """
    A connection whose transport has paused it (its peer stopped reading) is
    aborted once more than C{maxOutgoing} bytes were written while paused;
    that is logged, the others see it leave as too slow and go on chatting.
    """
    slow = login(factory, "slow")
    alice = login(factory, "alice")
    bob = login(factory, "bob")
    quiet(slow, alice, bob)
    slow.transport.producer.pauseProducing()
    said = 0
    with capturedLogs() as events:
        while slow.open:
            alice.say("%03d %s" % (said, "x" * 40))
            said += 1
            assert said < 200, "never dropped"
    written = len(slow.transport.value())
    # 4096 bytes may be queued; the message that goes over is not written.
    assert 4096 - 60 < written <= 4096
    assert slow.transport.disconnected, "aborted, not closed gracefully"
    messages = [formatEvent(e) for e in events]
    assert any("dropping slow consumer 127.0.0.1:" in m and "(slow): over 4096 bytes queued" in m for m in messages), messages
    assert bob.lines()[-2:] == ["*** #lobby: slow left (too slow)", "#lobby <alice> %03d %s" % (said - 1, "x" * 40)]
    assert alice.say("after") == ["#lobby <alice> after"]
    assert bob.lines() == ["#lobby <alice> after"]


def test_stalledPeerIsDropped(factory: LineChatFactory) -> None:
    """
    A peer that stops reading is dropped once C{maxOutgoing} bytes have
    piled up beyond the transport's own buffer, although the transport
    pauses the connection again on every write, as Twisted's TCP transport does.
    """
    slow = login(factory, "slow")
    alice = login(factory, "alice")
    quiet(slow, alice)
    slow.transport.stalled = True
    said = 0
    while slow.open:
        seen = alice.say("x" * 60)
        said += 1
        assert said < 200, "never dropped"
    assert seen == ["*** #lobby: slow left (too slow)", "#lobby <alice> " + "x" * 60]
    written = len(slow.transport.value())
    # the transport's 1024 bytes, then at most 4096 while paused
    assert 1024 + 4096 - 76 < written <= 1024 + 76 + 4096
    assert slow.transport.disconnected
    assert alice.say("after") == ["#lobby <alice> after"]


def test_consumerThatCatchesUpIsKept(factory: LineChatFactory) -> None:
    """
    A connection whose peer reads again (the transport resumes it) starts
    counting afresh: lagging behind now and then is fine.
    """
    slow = login(factory, "slow")
    alice = login(factory, "alice")
    quiet(slow, alice)
    producer = slow.transport.producer
    for _ in range(5):
        producer.pauseProducing()
        for i in range(50):
            alice.say("x" * 60)
        producer.resumeProducing()
    assert slow.open
    assert len(slow.lines()) == 250


# -- shutdown ---------------------------------------------------------------------


def test_shutdownClosesEveryConnection(factory: LineChatFactory, service: ChatService) -> None:
    """
    Stopping the service tells every line connection the server is shutting
    down and closes it; the stop is then done.
    """
    service.startService()
    alice, bob = login(factory, "alice"), login(factory, "bob")
    quiet(alice, bob)
    d = service.stopService()
    # (This transport loses connections at once, so bob may also see alice go.)
    assert re.match('^\\*\\*\\* server shutting down \\(reconnect in about ([1-9]|1[01]) s\\)$', alice.lines()[-1])
    assert re.match('^\\*\\*\\* server shutting down \\(reconnect in about ([1-9]|1[01]) s\\)$', bob.lines()[-1])
    assert not alice.open and not bob.open
    done: list[object] = []
    d.addCallback(done.append)
    assert done == [None]


# -- end of input (half-close) ---------------------------------------------------


class SlowStore(MemoryStore):
    """
    A memory store whose commits wait until L{commit} is called.
    """

    def __init__(self) -> None:
        MemoryStore.__init__(self)
        self.waiting: list[tuple[Deferred[object], object]] = []

    def append(self, message: object, ref: object = None) -> Deferred[object]:
        MemoryStore.append(self, message, ref)  # type: ignore[arg-type]
        d: Deferred[object] = Deferred()
        self.waiting.append((d, message))
        return d

    def commit(self) -> None:
        waiting, self.waiting = self.waiting, []
        for d, message in waiting:
            d.callback(message)


def test_endOfInputAnswersWhatWasAskedThenCloses(clock: Clock) -> None:
    """
    When a client finishes sending but still reads (C{printf 'hi\\n' | nc -N
    HOST 9000}), the line it sent last is still stored and echoed to it, and
    only then does it leave the rooms and the connection close; the others
    see the message, then the departure.
    """
    store = SlowStore()
    service = ChatService(store=store, clock=clock)
    factory = LineChatFactory(service, clock=clock)
    alice, bob = login(factory, "alice"), login(factory, "bob")
    quiet(alice, bob)
    alice.send("last words\n")
    alice.protocol.readConnectionLost()
    assert alice.open and alice.lines() == []
    store.commit()
    assert alice.lines() == ["#lobby <alice> last words", "*** #lobby: alice left (disconnected)"]
    assert not alice.open
    assert bob.lines() == ["#lobby <alice> last words", "*** #lobby: alice left (disconnected)"]


def test_endOfInputWithNothingPendingClosesAtOnce(factory: LineChatFactory) -> None:
    """
    End of input with nothing in progress closes the connection at once.
    """
    alice, bob = login(factory, "alice"), login(factory, "bob")
    quiet(alice, bob)
    alice.protocol.readConnectionLost()
    assert not alice.open
    assert bob.lines() == ["*** #lobby: alice left (disconnected)"]


# -- edits, deletions, search, the bell (issue #19) ----------------------------


def test_editAndDeleteMyLastMessage(factory: LineChatFactory, clock: Clock) -> None:
    """
    C{/edit TEXT} replaces the text of my last message in the current room
    and C{/delete} deletes it; the room sees C{***} lines naming the author
    and the start of the original; reactions are not shown.
    """
    alice, bob = login(factory, "alice"), login(factory, "bob")
    quiet(alice, bob)
    assert alice.say("/edit nothing yet") == ["!!! you have said nothing in #lobby from here to edit or delete"]
    alice.say("the quick brown fox jumps over the lazy dog")
    clock.advance(0)
    quiet(alice, bob)
    alice.sendLine("/edit the quick brown fox")
    clock.advance(0)
    edited = '*** #lobby: alice edited "the quick brown fox jumps over…": the quick brown fox'
    assert bob.lines() == [edited]
    assert alice.lines() == [edited]
    assert bob.protocol.member is not None
    fired(bob.protocol.member.react(1, "👍"))
    clock.advance(0)
    assert bob.lines() == alice.lines() == []
    alice.sendLine("/delete")
    clock.advance(0)
    assert bob.lines() == alice.lines() == ['*** #lobby: alice deleted "the quick brown fox"']
    assert alice.say("/delete") == ["!!! you have said nothing in #lobby from here to edit or delete"]
    # the history shows neither the deleted message nor the updates
    assert bob.say("/history") == ["*** #lobby: no messages yet"]


def test_othersDeletedByAnOperator(factory: LineChatFactory, clock: Clock) -> None:
    """
    An operator's deletion of someone else's message names both.
    """
    op, alice = login(factory, "op"), login(factory, "alice")
    assert op.protocol.member is not None
    alice.say("spam spam spam")
    clock.advance(0)
    quiet(op, alice)
    fired(op.protocol.member.delete(1))
    clock.advance(0)
    assert alice.lines() == ["*** #lobby: op deleted alice's \"spam spam spam\""]


def test_search(factory: LineChatFactory, clock: Clock) -> None:
    """
    C{/search TEXT} lists the messages found, newest first, stamped.
    """
    alice = login(factory, "alice")
    alice.say("hello world")
    clock.advance(30)
    alice.say("unrelated")
    clock.advance(30)
    alice.say("world peace")
    clock.advance(0)
    quiet(alice)
    alice.sendLine("/search wor")
    clock.advance(0)
    assert alice.lines() == [
        '*** search "wor": 2 found',
        "#lobby [00:01] <alice> world peace",
        "#lobby [00:00] <alice> hello world",
    ]
    assert alice.say("/search") == ["!!! usage: /search TEXT"]


def test_bellOnMentions(factory: LineChatFactory, clock: Clock) -> None:
    """
    After C{/set bell on}, a line that mentions me starts with a bell;
    others do not, and nobody else gets one; C{/set bell off} stops it.
    """
    alice, bob, carol = login(factory, "alice"), login(factory, "bob"), login(factory, "carol")
    quiet(alice, bob, carol)
    bob.say("alice: before")
    clock.advance(0)
    assert alice.lines() == ["#lobby <bob> alice: before"]
    quiet(carol)
    assert alice.say("/set bell on") == ["*** bell on"]
    bob.say("alice: lunch?")
    bob.say("hey @ALICE")
    bob.say("no mention of alice")
    clock.advance(0)
    assert alice.lines() == ["\a#lobby <bob> alice: lunch?", "\a#lobby <bob> hey @ALICE", "#lobby <bob> no mention of alice"]
    assert carol.lines() == ["#lobby <bob> alice: lunch?", "#lobby <bob> hey @ALICE", "#lobby <bob> no mention of alice"]
    assert alice.say("/set bell off") == ["*** bell off"]
    bob.say("alice: after")
    clock.advance(0)
    assert alice.lines() == ["#lobby <bob> alice: after"]
    assert alice.say("/set bell maybe") == ["!!! usage: /set bell on|off"]
