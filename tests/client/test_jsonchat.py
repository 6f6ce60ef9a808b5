"""
Tests for json mode in the terminal client (L{twisted_chat.client.jsonchat}
and L{twisted_chat.client.resume}), without a reactor: typed lines become
requests, and events become the lines the line chat shows for them.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from twisted.internet.task import Clock
from zope.interface import implementer

from twisted_chat.client.jsonchat import JsonChat, describeRequest, newRefPrefix
from twisted_chat.core.events import Private, PrivateHistory
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.core.service import ChatService
from twisted_chat.frontends.textmode import TextSession
from twisted_chat.wire.commands import HELP
from twisted_chat.stores.memory import MemoryStore

from tests.support.client import msg, NOON


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

