"""
Tests for the IRC front-end (L{twisted_chat.frontends.irc}), driven through
in-memory transports: IRC lines in with C{dataReceived}, lines out from
C{transport.value()}, time from a L{Clock}.
"""

from __future__ import annotations

import base64

from tests.support.fakes import FlakyStore
from tests.support.irc import Client, numeric
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_chat.core.events import Message
from twisted_chat.core.history import HOLD_FOR
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.core.service import ChatService
from twisted_chat.frontends.irc.connection import IRCFactory
from twisted_chat.frontends.line import LineChatFactory, LineChatProtocol
from twisted_chat.stores.memory import MemoryStore


def joined(factory: IRCFactory, nick: str, room: str = "#lobby", caps: str = "") -> Client:
    c = Client(factory)
    c.register(nick, caps)
    c.cmd("JOIN " + room)
    return c


@implementer(IChatClient)
class Silent:
    """
    A member's connection that shows nothing.
    """

    kind = "test"

    def deliver(self, event: object) -> None:
        pass

    def close(self, reason: str, reconnectAfter: float | None = None) -> None:
        pass


class Line:
    """
    A line-chat user next to the IRC ones.
    """

    def __init__(self, service: ChatService, clock: Clock) -> None:
        addr = IPv4Address("TCP", "127.0.0.2", 41000)
        self.protocol: LineChatProtocol = LineChatFactory(service, clock=clock).buildProtocol(addr)
        self.transport = StringTransportWithDisconnection(peerAddress=addr)
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)

    def say(self, line: str) -> list[str]:
        self.protocol.dataReceived(line.encode("utf-8") + b"\n")
        return self.lines()

    def lines(self) -> list[str]:
        data = self.transport.value()
        self.transport.clear()
        return data.decode("utf-8").splitlines()


# -- registration --


def test_connectionIsAChatClient(factory: IRCFactory) -> None:
    c = Client(factory)
    assert verifyObject(IChatClient, c.protocol)


def test_registration(factory: IRCFactory) -> None:
    c = Client(factory)
    assert c.cmd("NICK bob") == []
    lines = c.cmd("USER bob 0 * :Bob Builder")
    codes = [m.command for m in lines]
    assert codes[:5] == ["001", "002", "003", "004", "005"]
    assert codes[-1] == "376"
    assert "375" in codes and "372" in codes
    welcome = lines[0]
    assert welcome.source == "irc.twisted-chat"
    assert welcome.params[0] == "bob"
    assert "bob!bob@twisted-chat" in welcome.params[1]
    assert c.protocol.member is not None and c.protocol.member.nick == "bob"
    # not in any room until it joins one (as IRC clients expect)
    assert c.protocol.member.rooms == {}


def test_isupportIsTruthful(factory: IRCFactory, service: ChatService) -> None:
    service.settings.maxRoomsPerMember = 7
    c = Client(factory)
    tokens = [t for m in numeric(c.register("bob"), "005") for t in m.params[1:-1]]
    for token in [
        "CASEMAPPING=ascii",
        "CHANTYPES=#",
        "CHANNELLEN=33",
        "NICKLEN=24",
        "PREFIX=(o)@",
        "CHANMODES=b,,,nt",
        "CHANLIMIT=#:7",
        "UTF8ONLY",
        "AWAYLEN=200",
        "TOPICLEN=300",
        "MSGREFTYPES=msgid",
    ]:
        assert token in tokens
    assert any(t.startswith("TARGMAX=") and "PRIVMSG:4" in t for t in tokens)
    assert "CHATHISTORY=200" in tokens


def test_nickThatTheChatRefuses(factory: IRCFactory) -> None:
    c = Client(factory)
    [m] = c.cmd("NICK [bob]")
    assert m.command == "432"
    assert m.params[:2] == ["*", "[bob]"]
    assert "letters, digits, _ or -" in m.params[2]
    [m] = c.cmd("NICK " + "x" * 25)
    assert m.command == "432"
    # still unregistered: a good nick then registers it
    c.cmd("USER u 0 * :x")
    assert c.protocol.member is None
    assert "001" in c.commands("NICK bob_")


def test_nickInUse(factory: IRCFactory) -> None:
    Client(factory).register("bob")
    c = Client(factory)
    [m] = c.cmd("NICK BOB")
    assert (m.command, m.params[1]) == ("433", "BOB")
    assert "001" in [m.command for m in c.register("bob2")]


def test_registeredNickNeedsALogin(factory: IRCFactory) -> None:
    c = Client(factory)
    c.cmd("NICK alice")
    [m] = c.cmd("USER u 0 * :x")
    assert m.command == "433"
    assert "log in" in m.params[-1]
    assert c.protocol.member is None


def test_commandsBeforeRegistration(factory: IRCFactory) -> None:
    c = Client(factory)
    [m] = c.cmd("JOIN #lobby")
    assert m.command == "451"
    [m] = c.cmd("PING :x")
    assert (m.command, m.params[-1]) == ("PONG", "x")


def test_capNegotiationHoldsRegistration(factory: IRCFactory) -> None:
    c = Client(factory)
    [ls] = c.cmd("CAP LS 302")
    assert ls.command == "CAP" and ls.params[:2] == ["*", "LS"]
    offered = ls.params[2].split()
    for cap in [
        "server-time",
        "message-tags",
        "echo-message",
        "batch",
        "labeled-response",
        "draft/chathistory",
        "away-notify",
        "account-tag",
        "multi-prefix",
        "sasl=PLAIN",
    ]:
        assert cap in offered
    assert c.cmd("NICK bob\r\nUSER u 0 * :x") == []
    [ack] = c.cmd("CAP REQ :server-time echo-message")
    assert ack.params[1:] == ["ACK", "server-time echo-message"]
    [nak] = c.cmd("CAP REQ :server-time no-such-cap")
    assert nak.params[1] == "NAK"
    [listed] = c.cmd("CAP LIST")
    assert listed.params[2].split() == ["echo-message", "server-time"]
    assert c.commands("CAP END")[0] == "001"


def test_saslIsOfferedOnlyWithRegisteredNicks(clock: Clock) -> None:
    factory = IRCFactory(ChatService(store=MemoryStore(), clock=clock), clock=clock)
    [ls] = Client(factory).cmd("CAP LS 302")
    assert "sasl" not in ls.params[2]


def plain(nick: str, password: str) -> str:
    return base64.b64encode(("\0%s\0%s" % (nick, password)).encode()).decode()


def test_saslPlain(factory: IRCFactory) -> None:
    c = Client(factory)
    c.cmd("CAP LS 302\r\nCAP REQ :sasl\r\nNICK whoever\r\nUSER u 0 * :x")
    [m] = c.cmd("AUTHENTICATE PLAIN")
    assert m.command == "AUTHENTICATE" and m.params == ["+"]
    codes = c.commands("AUTHENTICATE " + plain("alice", "sesame"))
    assert codes == ["900", "903"]
    lines = c.cmd("CAP END")
    assert lines[0].command == "001"
    # the nick is the account's
    assert lines[0].params[0] == "alice"
    assert c.protocol.member is not None and c.protocol.member.authenticated == "alice"


def test_saslWrongPassword(factory: IRCFactory) -> None:
    c = Client(factory)
    c.cmd("CAP REQ :sasl\r\nAUTHENTICATE PLAIN")
    assert c.commands("AUTHENTICATE " + plain("alice", "nope")) == ["904"]
    assert c.commands("AUTHENTICATE FOO")[-1] == "904"
    c.cmd("AUTHENTICATE PLAIN")
    assert c.commands("AUTHENTICATE *") == ["906"]


def test_passLogsIn(factory: IRCFactory) -> None:
    c = Client(factory)
    lines = c.cmd("PASS sesame\r\nNICK alice\r\nUSER u 0 * :x")
    assert lines[0].command == "001"
    assert c.protocol.member is not None and c.protocol.member.authenticated == "alice"


def test_wrongPassCloses(factory: IRCFactory) -> None:
    c = Client(factory)
    lines = c.cmd("PASS nope\r\nNICK alice\r\nUSER u 0 * :x")
    assert [m.command for m in lines] == ["464", "ERROR"]
    assert not c.open


def test_registrationTimeout(factory: IRCFactory, clock: Clock) -> None:
    c = Client(factory)
    c.cmd("NICK bob")
    clock.advance(59)
    assert c.open
    clock.advance(1)
    [m] = c.lines()
    assert m.command == "ERROR" and "registration timed out" in m.params[0]
    assert not c.open


# -- chat --


def test_joinAnswer(factory: IRCFactory, service: ChatService) -> None:
    alice = joined(factory, "bob", "#dev")
    alice.cmd("TOPIC #dev :plans")
    c = Client(factory)
    c.register("carol")
    lines = c.cmd("JOIN #Dev")
    assert [m.command for m in lines] == ["JOIN", "332", "333", "353", "366"]
    assert lines[0].source == "carol!carol@twisted-chat" and lines[0].params == ["#dev"]
    assert lines[1].params[1:] == ["#dev", "plans"]
    assert lines[2].params[1:3] == ["#dev", "bob!bob@twisted-chat"]
    assert lines[3].params[1:] == ["=", "#dev", "@bob carol"]
    # the others see the join
    [m] = alice.lines()
    assert (m.source, m.command, m.params) == ("carol!carol@twisted-chat", "JOIN", ["#dev"])


def test_joinSeveralAndBadNames(factory: IRCFactory) -> None:
    c = Client(factory)
    c.register("bob")
    lines = c.cmd("JOIN #a,nope!,#b")
    assert [m.command for m in lines if m.command in ("JOIN", "403")] == ["JOIN", "403", "JOIN"]
    [bad] = numeric(lines, "403")
    assert bad.params[1] == "nope!"


def test_privmsgBetweenIrcAndLine(factory: IRCFactory, service: ChatService, clock: Clock) -> None:
    irc = joined(factory, "bob")
    line = Line(service, clock)
    line.lines()
    irc.lines()
    line.say("hello from nc")
    [m] = irc.lines()
    assert (m.source, m.command, m.params) == (m.source, "PRIVMSG", ["#lobby", "hello from nc"])
    assert m.source.startswith("guest-")
    # no echo without echo-message
    assert irc.cmd("PRIVMSG #lobby :hi there") == []
    assert line.lines() == ["#lobby <bob> hi there"]
    irc.cmd("PRIVMSG #lobby :\x01ACTION waves\x01")
    assert line.lines() == ["#lobby * bob waves"]


def test_echoMessageWithTags(factory: IRCFactory, service: ChatService, clock: Clock) -> None:
    clock.advance(0.25)
    irc = joined(factory, "bob", caps="echo-message server-time message-tags")
    [m] = irc.cmd("PRIVMSG #lobby :hi")
    assert (m.command, m.params) == ("PRIVMSG", ["#lobby", "hi"])
    assert m.tags["time"] == "2026-01-01T00:00:00.250Z"
    assert m.tags["msgid"] == "lobby/%s/1" % (service.store.epoch,)


def test_privateMessages(factory: IRCFactory, service: ChatService, clock: Clock) -> None:
    bob = Client(factory)
    bob.register("bob")
    carol = Client(factory)
    carol.register("carol")
    assert carol.cmd("PRIVMSG bob :psst") == []
    [m] = bob.lines()
    assert (m.source, m.params) == ("carol!carol@twisted-chat", ["bob", "psst"])
    [m] = carol.cmd("PRIVMSG nobody :hi")
    assert (m.command, m.params[1]) == ("401", "nobody")


def test_refusals(factory: IRCFactory) -> None:
    alice = joined(factory, "alice0", "#ops")
    bob = joined(factory, "bob", "#lobby")
    assert [m.command for m in bob.cmd("PRIVMSG #ops :hi")] == ["404"]
    assert [m.command for m in bob.cmd("PART #ops")] == ["442"]
    assert [m.command for m in bob.cmd("PRIVMSG #lobby")] == ["412"]
    assert [m.command for m in bob.cmd("PRIVMSG")] == ["411"]
    assert [m.command for m in bob.cmd("JOIN")] == ["461"]
    assert [m.command for m in bob.cmd("FLY away")] == ["421"]
    assert [m.command for m in bob.cmd("PRIVMSG a,b,c,d,e :hi")] == ["407"]
    bob.cmd("JOIN #ops")
    alice.lines()
    assert [m.command for m in bob.cmd("TOPIC #ops :mine")] == ["482"]
    assert [m.command for m in bob.cmd("KICK #ops alice0")] == ["482"]
    assert [m.command for m in alice.cmd("KICK #ops nobody")] == ["441"]
    assert [m.command for m in bob.cmd("USER x 0 * :y")] == ["462"]


def test_kickAndBan(factory: IRCFactory, service: ChatService, clock: Clock) -> None:
    op = joined(factory, "op", "#r")
    bob = joined(factory, "bob", "#r")
    op.lines()
    assert op.cmd("KICK #r bob :behave")[0].params == ["#r", "bob", "behave"]
    [m] = bob.lines()
    assert (m.source, m.command, m.params) == ("op!op@twisted-chat", "KICK", ["#r", "bob", "behave"])
    bob.cmd("JOIN #r")
    op.lines()
    lines = op.cmd("MODE #r +b bob")
    bob.lines()
    assert [(m.command, m.params) for m in lines] == [
        ("KICK", ["#r", "bob", "op"]),
        ("MODE", ["#r", "+b", "bob"]),
    ]
    assert [m.command for m in bob.cmd("JOIN #r")] == ["474"]
    listed = op.cmd("MODE #r +b")
    assert [(m.command, m.params[2]) for m in listed] == [
        ("367", "*!*@127.0.0.1"),
        ("367", "bob!*@*"),
        ("368", "End of channel ban list"),
    ]
    assert op.cmd("MODE #r -b bob!*@*")[0].params == ["#r", "-b", "bob!*@*"]
    assert [m.command for m in op.cmd("MODE #r +b *!bob@*")] == ["696"]
    assert "JOIN" in bob.commands("JOIN #r")


def test_opAndNamesPrefix(factory: IRCFactory) -> None:
    op = joined(factory, "op", "#r")
    bob = joined(factory, "bob", "#r")
    carol = joined(factory, "carol", "#r")
    op.lines()
    assert [m.params for m in op.cmd("MODE #r +o bob")] == [["#r", "+o", "bob"]]
    names = numeric(carol.cmd("NAMES #r"), "353")
    assert names[0].params[-1] == "@bob carol @op"
    assert [m.command for m in op.cmd("MODE #r -o bob")] == ["472"]
    assert [m.params[-1] for m in op.cmd("MODE #r")] == ["+nt"]


def test_partQuitAndNick(factory: IRCFactory, service: ChatService, clock: Clock) -> None:
    bob = joined(factory, "bob", "#a")
    bob.cmd("JOIN #b")
    carol = joined(factory, "carol", "#a")
    carol.cmd("JOIN #b")
    bob.lines()
    [m] = bob.cmd("NICK bobby")
    assert (m.source, m.command, m.params) == ("bob!bob@twisted-chat", "NICK", ["bobby"])
    # once, though they share two rooms
    [m] = carol.lines()
    assert (m.command, m.params) == ("NICK", ["bobby"])
    bob.cmd("PART #a :see you")
    [m] = carol.lines()
    assert (m.command, m.params) == ("PART", ["#a", "see you"])
    bob.cmd("JOIN #a")
    carol.lines()
    [m] = bob.cmd("QUIT :bye now")
    assert m.command == "ERROR"
    assert not bob.open
    # one QUIT, though it left two rooms
    lines = carol.lines()
    assert [(m.command, m.params) for m in lines] == [("QUIT", ["bye now"])]
    clock.advance(0)


def test_lineUsersPartsAreQuits(factory: IRCFactory, service: ChatService, clock: Clock) -> None:
    bob = joined(factory, "bob")
    line = Line(service, clock)
    line.say("/nick nc")
    bob.lines()
    line.say("/quit")
    [m] = bob.lines()
    assert (m.source, m.command, m.params) == ("nc!nc@twisted-chat", "QUIT", ["Quit"])


def test_historyOnJoinWithoutChathistory(factory: IRCFactory, service: ChatService, clock: Clock) -> None:
    bob = joined(factory, "bob", "#r")
    bob.cmd("PRIVMSG #r :one\r\nPRIVMSG #r :two")
    plain = Client(factory)
    plain.register("plain")
    lines = plain.cmd("JOIN #r")
    assert [(m.command, m.params) for m in lines if m.command == "PRIVMSG"] == [
        ("PRIVMSG", ["#r", "[00:00] one"]),
        ("PRIVMSG", ["#r", "[00:00] two"]),
    ]
    tagged = Client(factory)
    tagged.register("tagged", "batch server-time")
    lines = tagged.cmd("JOIN #r")
    commands = [m.command for m in lines]
    assert commands == ["JOIN", "353", "366", "BATCH", "PRIVMSG", "PRIVMSG", "BATCH"]
    start = lines[3]
    assert start.params[1:] == ["chathistory", "#r"]
    ref = start.params[0][1:]
    assert all(m.tags.get("batch") == ref and "time" in m.tags for m in lines[4:6])
    assert [m.params[1] for m in lines[4:6]] == ["one", "two"]
    # a client that reads history itself gets none
    reader = Client(factory)
    reader.register("reader", "batch server-time draft/chathistory")
    assert [m.command for m in reader.cmd("JOIN #r")] == ["JOIN", "353", "366"]


def test_joinHistoryUnavailable(clock: Clock) -> None:
    """
    A join whose history the store could not read (with --broker: Redis
    stalled) gets a NOTICE to the channel saying so, not a silent empty
    room, whether or not the client reads history itself.
    """
    store = FlakyStore()
    store.down = False
    service = ChatService(store=store, clock=clock)
    factory = IRCFactory(service, clock=clock)
    bob = joined(factory, "bob", "#r")
    bob.cmd("PRIVMSG #r :one")
    store.down = True
    for caps in ("", "batch server-time draft/chathistory"):
        c = Client(factory)
        c.register("c%d" % (len(caps),), caps)
        c.cmd("JOIN #r")
        clock.pump([0.5] * int(HOLD_FOR * 2 + 2))
        notices = [m.params for m in c.lines() if m.command == "NOTICE"]
        assert notices == [["#r", "the history cannot be read now (the message store is not answering); "
                                  "CHATHISTORY or a rejoin asks again"]]  # fmt: skip


def test_chathistory(factory: IRCFactory, service: ChatService) -> None:
    bob = joined(factory, "bob", "#r")
    for i in range(1, 11):
        bob.cmd("PRIVMSG #r :m%d" % (i,))
    epoch = service.store.epoch
    c = joined(factory, "reader", "#r", caps="batch server-time message-tags draft/chathistory")

    def texts(line: str) -> list[str]:
        lines = c.cmd(line)
        assert lines[0].command == "BATCH" and lines[-1].command == "BATCH", lines
        return [m.params[1] for m in lines[1:-1]]

    assert texts("CHATHISTORY LATEST #r * 3") == ["m8", "m9", "m10"]
    assert texts("CHATHISTORY BEFORE #r msgid=r/%s/5 2" % (epoch,)) == ["m3", "m4"]
    assert texts("CHATHISTORY AFTER #r msgid=r/%s/5 2" % (epoch,)) == ["m6", "m7"]
    assert texts("CHATHISTORY LATEST #r msgid=r/%s/8 5" % (epoch,)) == ["m9", "m10"]
    assert texts("CHATHISTORY AROUND #r msgid=r/%s/5 3" % (epoch,)) == ["m4", "m5", "m6"]
    assert texts("CHATHISTORY BETWEEN #r msgid=r/%s/2 msgid=r/%s/9 3" % (epoch, epoch)) == ["m3", "m4", "m5"]
    assert texts("CHATHISTORY BETWEEN #r msgid=r/%s/9 msgid=r/%s/2 3" % (epoch, epoch)) == ["m6", "m7", "m8"]
    # the msgid of each message refers to it
    lines = c.cmd("CHATHISTORY LATEST #r * 1")
    assert lines[1].tags["msgid"] == "r/%s/10" % (epoch,)
    [m] = c.cmd("CHATHISTORY BEFORE #r timestamp=2020-01-01T00:00:00.000Z 5")
    assert m.command == "FAIL" and m.params[:2] == ["CHATHISTORY", "INVALID_PARAMS"]
    [m] = c.cmd("CHATHISTORY SIDEWAYS #r * 5")
    assert m.command == "FAIL"
    [m] = c.cmd("CHATHISTORY LATEST nope! * 5")
    assert m.command == "FAIL" and m.params[1] == "INVALID_TARGET"


def test_labeledResponse(factory: IRCFactory) -> None:
    c = Client(factory)
    c.register("bob", "labeled-response batch echo-message message-tags")
    [m] = c.cmd("@label=a1 PING :x")
    assert (m.command, m.tags["label"]) == ("PONG", "a1")
    [m] = c.cmd("@label=a2 PONG :x")
    assert (m.command, m.tags["label"]) == ("ACK", "a2")
    lines = c.cmd("@label=a3 JOIN #r")
    assert lines[0].command == "BATCH" and lines[0].tags["label"] == "a3"
    assert lines[0].params[1] == "labeled-response"
    ref = lines[0].params[0][1:]
    assert [m.command for m in lines[1:-1]] == ["JOIN", "353", "366"]
    assert all(m.tags["batch"] == ref for m in lines[1:-1])
    [m] = c.cmd("@label=a4 PRIVMSG #r :hi")
    assert (m.command, m.tags["label"], m.params) == ("PRIVMSG", "a4", ["#r", "hi"])


def test_awayAndWhois(factory: IRCFactory) -> None:
    bob = joined(factory, "bob", "#r")
    carol = joined(factory, "carol", "#r", caps="away-notify")
    bob.lines()
    assert bob.commands("AWAY :lunch") == ["306"]
    [m] = carol.lines()
    assert (m.source, m.command, m.params) == ("bob!bob@twisted-chat", "AWAY", ["lunch"])
    lines = carol.cmd("PRIVMSG bob :there?")
    assert [(m.command, m.params[1:]) for m in lines] == [("301", ["bob", "lunch"])]
    whois = carol.cmd("WHOIS bob")
    assert [m.command for m in whois] == ["311", "319", "312", "301", "318"]
    assert whois[1].params[-1] == "@#r"
    assert "irc" in whois[2].params[-1]
    who = carol.cmd("WHO #r")
    assert [(m.params[5], m.params[6]) for m in who[:-1]] == [("bob", "G@"), ("carol", "H")]
    bob.lines()
    assert bob.commands("AWAY") == ["305"]
    [m] = carol.lines()
    assert (m.command, m.params) == ("AWAY", [])
    assert [m.command for m in carol.cmd("WHOIS nobody")] == ["401", "318"]


def test_list(factory: IRCFactory) -> None:
    bob = joined(factory, "bob", "#a")
    bob.cmd("TOPIC #a :the a room")
    joined(factory, "carol", "#b")
    lines = bob.cmd("LIST")
    assert [(m.command, m.params[1:]) for m in lines] == [
        ("321", ["Channel", "Users  Name"]),
        ("322", ["#a", "1", "the a room"]),
        ("322", ["#b", "1", ""]),
        ("323", ["End of /LIST"]),
    ]


def test_tooLongAndInvalidUtf8(factory: IRCFactory) -> None:
    c = Client(factory)
    c.register("bob")
    [m] = c.cmd("PRIVMSG #r :" + "x" * 600)
    assert m.command == "417"
    [m] = c.cmd("@" + "a=" + "b" * 9000 + " PING x")
    assert m.command == "417"
    # tags within their 8191 bytes are fine
    [m] = c.cmd("@" + "a=" + "b" * 8000 + " PING x")
    assert m.command == "PONG"
    c.send(b"PRIVMSG #r :caf\xe9\r\n")
    [m] = c.lines()
    assert (m.command, m.params[:2]) == ("FAIL", ["PRIVMSG", "INVALID_UTF8"])
    assert c.open
    # a character split across reads is fine
    c.cmd("JOIN #r")
    c.send("PRIVMSG #r :caf".encode() + b"\xc3")
    c.send(b"\xa9\r\n")
    assert c.lines() == []


def test_longMessagesFromOthersAreSplit(factory: IRCFactory, service: ChatService, clock: Clock) -> None:
    irc = joined(factory, "bob")
    line = Line(service, clock)
    irc.lines()
    line.say("é" * 700 + "\nsecond line")
    lines = irc.raw()
    assert len(lines) == 5
    assert all(len(line.encode()) + 2 <= 512 for line in lines)
    from twisted_chat.frontends.irc.protocol import parseMessage

    texts = [parseMessage(line).params[1] for line in lines]  # type: ignore[union-attr]
    assert "".join(texts[:4]) == "é" * 700 and texts[4] == "second line"


def test_floodIsThrottledAsTheLineChat(factory: IRCFactory, service: ChatService, clock: Clock) -> None:
    service.settings.floodRate, service.settings.floodBurst = 5, 10
    c = joined(factory, "bob", caps="echo-message")
    clock.advance(10)
    c.send("".join("PRIVMSG #lobby :m%d\r\n" % (i,) for i in range(20)))
    assert len(c.lines()) == 10
    assert c.transport.producerState == "paused"
    clock.advance(1)
    assert len(c.lines()) == 5
    clock.advance(1)
    assert len(c.lines()) == 5
    assert c.transport.producerState == "producing"


def test_floodKick(factory: IRCFactory, service: ChatService, clock: Clock) -> None:
    service.settings.floodRate, service.settings.floodBurst, service.settings.floodKick = 5, 10, 20
    c = joined(factory, "bob")
    other = joined(factory, "carol")
    other.lines()
    clock.advance(10)
    c.send("".join("PRIVMSG #lobby :m%d\r\n" % (i,) for i in range(40)))
    lines = c.lines()
    assert lines[-1].command == "ERROR" and "flooding" in lines[-1].params[0]
    assert not c.open
    assert [m.command for m in other.lines()][-1] == "QUIT"


def test_connectionLimits(factory: IRCFactory, service: ChatService) -> None:
    service.settings.maxPerHost = 1
    Client(factory)
    c = Client(factory)
    [m] = c.lines()
    assert m.command == "ERROR" and "too many connections" in m.params[0]
    assert not c.open


def test_idlePing(factory: IRCFactory, service: ChatService, clock: Clock) -> None:
    service.settings.idleTimeout = 100
    c = Client(factory)
    c.register("bob")
    clock.advance(50)
    [m] = c.lines()
    assert (m.command, m.params) == ("PING", ["irc.twisted-chat"])
    c.send("PONG :irc.twisted-chat\r\n")
    clock.advance(49)
    assert c.open and c.lines() == []
    clock.advance(1)
    assert [m.command for m in c.lines()] == ["PING"]
    clock.advance(50)
    [m] = c.lines()
    assert m.command == "ERROR" and "ping timeout" in m.params[0]
    assert not c.open


def test_serverShutdown(factory: IRCFactory, service: ChatService) -> None:
    c = Client(factory)
    c.register("bob")
    c.protocol.close("server shutting down", 3.2)
    [m] = c.lines()
    assert (m.command, m.params) == ("ERROR", ["Closing link: server shutting down (reconnect in about 3 s)"])


def test_noticeIsSaidAndAccountTagged(factory: IRCFactory, service: ChatService, clock: Clock) -> None:
    alice = Client(factory)
    alice.cmd("PASS sesame\r\nNICK alice\r\nUSER u 0 * :x\r\nJOIN #lobby")
    bob = joined(factory, "bob", caps="account-tag")
    line = Line(service, clock)
    line.lines()
    alice.lines()
    bob.lines()
    assert alice.cmd("NOTICE #lobby :heads up") == []
    [m] = bob.lines()
    assert (m.source, m.command, m.params, m.tags) == (
        "alice!alice@twisted-chat",
        "PRIVMSG",
        ["#lobby", "heads up"],
        {"account": "alice"},
    )
    assert line.lines() == ["#lobby <alice> heads up"]
    # a guest has no account
    bob.cmd("PRIVMSG #lobby :me too")
    [m] = alice.lines()
    assert m.tags == {}


def test_clientThatDoesNotReadIsDropped(factory: IRCFactory, service: ChatService, clock: Clock) -> None:
    service.settings.maxOutgoing = 4096
    irc = joined(factory, "bob")
    line = Line(service, clock)
    irc.lines()
    # the peer stops reading: the transport's buffer is full from now on
    irc.protocol._guard.pauseProducing()
    seen = []
    for i in range(100):
        seen += line.say("message %d %s" % (i, "x" * 100))
        if not irc.open:
            break
    assert not irc.open
    assert i < 60
    assert service.memberInfo("bob") is None
    assert "*** #lobby: bob left (too slow)" in seen


def test_lineBreaksFromOtherFrontEndsCannotInjectLines(factory: IRCFactory, service: ChatService) -> None:
    irc = joined(factory, "bob", "#r", caps="away-notify")
    other = service.connect(Silent(), nick="json")  # (a member of another front-end)
    other.join("#r")
    irc.cmd("MODE #r +o json")
    other.setTopic("nice\r\nPRIVMSG bob :injected", "#r")
    other.setAway("away\nQUIT")
    other.say("two\r\nlines", "#r")
    lines = irc.lines()
    assert [(m.command, m.params) for m in lines] == [
        ("TOPIC", ["#r", "nice  PRIVMSG bob :injected"]),
        ("AWAY", ["away QUIT"]),
        ("PRIVMSG", ["#r", "two"]),
        ("PRIVMSG", ["#r", "lines"]),
    ]


class SlowStore(MemoryStore):
    """
    A store whose history reads answer when the test says so.
    """

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[Deferred[list[Message]], list[Message]]] = []

    def recent(self, room: str, limit: int, before: int | None = None) -> Deferred[list[Message]]:
        d: Deferred[list[Message]] = Deferred()
        self.reads.append((d, super().recent(room, limit, before).result))
        return d

    def answer(self) -> None:
        reads, self.reads = self.reads, []
        for d, messages in reads:
            d.callback(messages)


def test_historyReadLaterStaysInTheLabeledAnswer(clock: Clock) -> None:
    store = SlowStore()
    service = ChatService(store=store, clock=clock)
    factory = IRCFactory(service, clock=clock)
    bob = Client(factory)
    bob.register("bob")
    bob.cmd("JOIN #r\r\nPRIVMSG #r :earlier")
    store.answer()
    c = Client(factory)
    c.register("carol", "labeled-response batch")
    # the answer waits for the history, and so does what carol sends next
    assert c.cmd("@label=j JOIN #r\r\nPING :after") == []
    store.answer()
    lines = c.lines()
    assert [m.command for m in lines] == ["BATCH", "JOIN", "353", "366", "BATCH", "PRIVMSG", "BATCH", "BATCH", "PONG"]
    assert lines[0].tags == {"label": "j"}
    assert lines[4].tags["batch"] == lines[0].params[0][1:] and lines[4].params[1] == "chathistory"
    assert lines[5].params == ["#r", "[00:00] earlier"]


def test_saslAfterRegistrationLogsIn(factory: IRCFactory) -> None:
    c = Client(factory)
    c.register("bob", "sasl")
    c.cmd("AUTHENTICATE PLAIN")
    lines = c.cmd("AUTHENTICATE " + plain("alice", "sesame"))
    assert [(m.command, m.params) for m in lines] == [
        ("NICK", ["alice"]),
        ("900", ["alice", "alice!alice@twisted-chat", "alice", "You are now logged in as alice"]),
        ("903", ["alice", "SASL authentication successful"]),
    ]
    assert c.protocol.member is not None and c.protocol.member.authenticated == "alice"
    assert c.commands("AUTHENTICATE PLAIN") == ["907"]


def test_deletedMessagesAndUpdatesAreNotPlayedBack(factory: IRCFactory, service: ChatService) -> None:
    """
    A message deleted since (issue #19) is not played back on join, and
    an edited message is played back as it is now; a client without the
    IRCv3 drafts sees edits and deletions as NOTICEs, reactions not at all
    (see tests/frontends/irc/test_irc_drafts.py).
    """
    bob = joined(factory, "bob", "#r")
    bob.cmd("PRIVMSG #r :one\r\nPRIVMSG #r :two")
    watcher = joined(factory, "watcher", "#r")
    member = service.lookup("bob")
    assert member is not None
    member.edit(1, "one, edited")
    member.react(1, "👍")
    member.delete(2)
    assert [(m.command, m.params) for m in watcher.cmd("PING :x")] == [
        ("NOTICE", ["#r", 'edited "one": one, edited']),
        ("NOTICE", ["#r", 'deleted "two"']),
        ("PONG", ["irc.twisted-chat", "x"]),
    ]
    plain = Client(factory)
    plain.register("plain")
    lines = plain.cmd("JOIN #r")
    assert [(m.command, m.params) for m in lines if m.command == "PRIVMSG"] == [
        ("PRIVMSG", ["#r", "[00:00] one, edited"]),
    ]
