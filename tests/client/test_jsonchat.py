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

from twisted_chat.client.jsonchat import CLIENT_HELP, JsonChat, describeRequest, newRefPrefix
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
    C{/help} is answered locally with the line chat's help, and the
    commands only this client has.
    """
    requests, lines = translate(JsonChat(lambda: NOON), "/help")
    assert requests == []
    assert lines == ["*** " + line for line in HELP + CLIENT_HELP]
    assert "*** " + CLIENT_HELP[0] in lines


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


def test_holeLeftByAnUnavailableHistoryIsFetched() -> None:
    """
    The server could not read the history of alice's join (its store
    stalled): alice is told it comes later, and the first live message
    (id 8) makes the client ask for the messages before it. They are
    shown, once, under a header of their own; nothing is asked again.
    """
    chat = JsonChat(lambda: NOON, nick="alice")
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]})
    chat.render({"type": "join", "room": "#lobby", "nick": "alice", "time": 0})
    lines = chat.render({"type": "history", "room": "#lobby", "epoch": "e1", "messages": [], "reason": "unavailable"})
    assert lines == [
        "*** #lobby: the history cannot be read now (the message store is not answering); "
        "it comes when the server can read it"
    ]
    assert chat.takeRequests() == []
    assert chat.render(msg("#lobby", 8, "bob", "live")) == ["#lobby <bob> live"]
    assert chat.takeRequests() == [{"type": "history", "room": "#lobby", "before": 8, "limit": 50}]
    assert chat.render(msg("#lobby", 9, "bob", "more")) == ["#lobby <bob> more"]
    assert chat.takeRequests() == []
    answer = [msg("#lobby", i, "carol", "m%d" % (i,)) for i in (6, 7)]
    assert chat.render({"type": "history", "room": "#lobby", "epoch": "e1", "messages": answer}) == [
        "*** #lobby: 2 messages from while the history could not be read:",
        "#lobby [12:00] <carol> m6",
        "#lobby [12:00] <carol> m7",
    ]
    chat.render(msg("#lobby", 10, "bob", "again"))
    assert chat.takeRequests() == [] and chat.holes == {}
    assert chat.hello()["since"] == {"#lobby": {"epoch": "e1", "id": 10}}


def test_holeOfAResumeIsAskedAgainUntilTheStoreAnswers() -> None:
    """
    A resume from id 4 whose history could not be read: the client asks
    for ids 5-8 when live id 9 comes; while the answers are unavailable it
    asks again on a later live message, at most every 5 s, and after a
    reconnect at once; the answer's messages outside the hole (4, 9) are
    not shown twice. A /history the server could not read tells the user
    to ask again, and leaves no hole.
    """
    now = [NOON]
    chat = JsonChat(lambda: now[0], nick="alice")
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]})
    chat.render({"type": "join", "room": "#lobby", "nick": "alice", "time": 0})
    chat.render({"type": "history", "room": "#lobby", "epoch": "e1", "messages": [msg("#lobby", 4, "bob", "m4")]})
    chat.hello()
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]})
    chat.render({"type": "join", "room": "#lobby", "nick": "alice", "time": 0})
    lines = chat.render({"type": "history", "room": "#lobby", "epoch": "e1", "messages": [], "recovered": False,
                         "reason": "unavailable"})  # fmt: skip
    assert lines == [
        "*** #lobby: the history cannot be read now (the message store is not answering); "
        "it comes when the server can read it"
    ]
    ask = {"type": "history", "room": "#lobby", "before": 9, "limit": 4}
    chat.render(msg("#lobby", 9, "bob", "m9"))
    assert chat.takeRequests() == [ask]
    assert chat.render({"type": "history", "room": "#lobby", "epoch": "e1", "messages": [], "reason": "unavailable"}) == []
    now[0] += 4
    chat.render(msg("#lobby", 10, "bob", "m10"))
    assert chat.takeRequests() == []
    now[0] += 2
    chat.render(msg("#lobby", 11, "bob", "m11"))
    assert chat.takeRequests() == [ask]
    chat.hello()
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]})
    chat.render({"type": "join", "room": "#lobby", "nick": "alice", "time": 0})
    chat.render({"type": "history", "room": "#lobby", "epoch": "e1", "messages": [], "recovered": True})
    chat.render(msg("#lobby", 12, "bob", "m12"))
    assert chat.takeRequests() == [ask]
    answer = [msg("#lobby", i, "bob", "m%d" % (i,)) for i in range(4, 10) if i != 6]
    assert chat.render({"type": "history", "room": "#lobby", "epoch": "e1", "messages": answer}) == [
        "*** #lobby: 3 messages from while the history could not be read:",
        "#lobby [12:00] <bob> m5",
        "#lobby [12:00] <bob> m7",
        "#lobby [12:00] <bob> m8",
    ]
    chat.translate("/history")
    assert chat.render({"type": "history", "room": "#lobby", "epoch": "e1", "messages": [], "reason": "unavailable"}) == [
        "*** #lobby: the history cannot be read now (the message store is not answering); /history asks again"
    ]
    assert chat.holes == {}


def test_holeRequestAnsweredWithAnError() -> None:
    """
    A request for a hole answered with an error (no history follows) is
    asked again later; the history that then comes fills the hole, and a
    /history after it is shown as its answer, not taken for the hole's.
    """
    now = [NOON]
    chat = JsonChat(lambda: now[0], nick="alice")
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]})
    chat.render({"type": "join", "room": "#lobby", "nick": "alice", "time": 0})
    chat.render({"type": "history", "room": "#lobby", "epoch": "e1", "messages": [], "reason": "unavailable"})
    chat.render(msg("#lobby", 3, "bob", "m3"))
    assert chat.takeRequests() == [{"type": "history", "room": "#lobby", "before": 3, "limit": 50}]
    chat.render({"type": "error", "code": "unavailable", "message": "try again"})
    now[0] += 6
    chat.render(msg("#lobby", 4, "bob", "m4"))
    assert chat.takeRequests() == [{"type": "history", "room": "#lobby", "before": 3, "limit": 50}]
    answer = [msg("#lobby", i, "bob", "m%d" % (i,)) for i in (1, 2)]
    assert chat.render({"type": "history", "room": "#lobby", "epoch": "e1", "messages": answer})[0] == (
        "*** #lobby: 2 messages from while the history could not be read:"
    )
    chat.translate("/history")
    assert chat.render({"type": "history", "room": "#lobby", "epoch": "e1", "messages": answer})[0] == (
        "*** #lobby: history, 2 messages:"
    )


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



# -- conversations: replies, edits, deletions, reactions, typing, search --


def _inLobby(*messages: dict[str, Any]) -> JsonChat:
    """
    alice, welcomed into #lobby whose join history holds C{messages}.
    """
    chat = JsonChat(lambda: NOON, nick="alice")
    for event in [
        {"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]},
        {"type": "join", "room": "#lobby", "nick": "alice", "time": 0},
        {"type": "history", "room": "#lobby", "epoch": "e1", "messages": list(messages)},
    ]:
        chat.render(event)
    return chat


def update(kind: str, id: int, seq: int, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "room": "#lobby", "id": id, "seq": seq, "epoch": "e1", "time": int(NOON * 1000), **fields}


def test_translateConversationCommands() -> None:
    """
    C{/edit} and C{/delete} act on my last message in the current room;
    C{/reply N} and C{/react N} on the Nth last message shown there (1: the
    last); C{/react} with a reaction of mine takes it back; C{/search}
    searches. Each of edit, delete, reply and react has a C{ref} and is
    waited for like a message.
    """
    chat = _inLobby(msg("#lobby", 1, "alice", "my first"), msg("#lobby", 2, "bob", "hi"))
    chat.render(msg("#lobby", 3, "alice", "my second"))
    chat.render(msg("#lobby", 4, "bob", "there"))
    assert translate(chat, "/edit my second, fixed") == (
        [{"type": "edit", "room": "#lobby", "id": 3, "text": "my second, fixed", "ref": "c1"}],
        [],
    )
    assert translate(chat, "/delete") == ([{"type": "delete", "room": "#lobby", "id": 3, "ref": "c2"}], [])
    assert translate(chat, "/reply 1 yes, there") == (
        [{"type": "say", "room": "#lobby", "text": "yes, there", "reply_to": 4, "ref": "c3"}],
        [],
    )
    assert translate(chat, "/REPLY 3 to bob's hi") == (
        [{"type": "say", "room": "#lobby", "text": "to bob's hi", "reply_to": 2, "ref": "c4"}],
        [],
    )
    assert translate(chat, "/react 2 \U0001f44d") == (
        [{"type": "react", "room": "#lobby", "id": 3, "emoji": "\U0001f44d", "on": True, "ref": "c5"}],
        [],
    )
    chat.render(update("react", 3, 5, emoji="\U0001f44d", nick="alice", on=True))
    assert translate(chat, "/react 2 \U0001f44d")[0][0]["on"] is False
    assert translate(chat, "/search lunch") == ([{"type": "search", "text": "lunch"}], [])
    assert [describeRequest(r) for r in chat.unacked.values()] == [
        "/edit my second, fixed",
        "/delete",
        "yes, there",
        "to bob's hi",
        "/react \U0001f44d",
        "/react -\U0001f44d",
    ]
    # a deleted message is no longer counted, nor mine to edit
    chat.render(update("delete", 3, 6, by="alice"))
    assert translate(chat, "/reply 2 x")[0][0]["reply_to"] == 2
    assert translate(chat, "/edit again")[0][0]["id"] == 1


@pytest.mark.parametrize(
    "line, error",
    [
        ("/edit", "!!! usage: /edit TEXT"),
        ("/reply 1", "!!! usage: /reply N TEXT, N = 1 for the last message of your current room, 2 the one before"),
        ("/reply x hello", "!!! usage: /reply N TEXT, N = 1 for the last message of your current room, 2 the one before"),
        ("/reply 0 hello", "!!! usage: /reply N TEXT, N = 1 for the last message of your current room, 2 the one before"),
        ("/react 1", "!!! usage: /react N EMOJI, N = 1 for the last message of your current room, 2 the one before"),
        ("/reply 3 hello", "!!! #lobby: there is no message 3 back (2 to choose from)"),
        ("/search", "!!! usage: /search TEXT"),
    ],
)
def test_translateConversationErrors(line: str, error: str) -> None:
    """
    A conversation command written wrongly, or naming a message that is not
    there, is refused here with one C{!!!} line and counts as refused.
    """
    chat = _inLobby(msg("#lobby", 1, "bob", "hi"), msg("#lobby", 2, "bob", "there"))
    assert translate(chat, line) == ([], [error])
    assert chat.refusals == 1 and chat.unacked == {}


def test_translateEditWithoutOwnMessage() -> None:
    """
    C{/edit} and C{/delete} without a message of mine in the current room,
    or outside any room, are refused here.
    """
    chat = _inLobby(msg("#lobby", 1, "bob", "hi"))
    assert translate(chat, "/edit x") == ([], ["!!! #lobby: you have no message here to edit"])
    assert translate(chat, "/delete") == ([], ["!!! #lobby: you have no message here to delete"])
    chat.render({"type": "part", "room": "#lobby", "nick": "alice", "reason": "left", "time": 0})
    assert translate(chat, "/reply 1 x") == ([], ["!!! you are in no room now: /join one first"])
    assert chat.refusals == 3


def test_renderEditsDeletionsReactionsReplies() -> None:
    """
    Edits and deletions show as the line chat shows them, naming the author
    and the start of the original (30 characters, then an ellipsis);
    reactions and replies likewise name the message; the message's new
    text is what the next one quotes.
    """
    long = "a message long enough to be cut short when quoted"
    chat = _inLobby(msg("#lobby", 1, "bob", long), msg("#lobby", 2, "alice", "lunch at 12?"))
    assert chat.render(update("edit", 2, 3, text="lunch at 12:30?", by="alice", mentions=[])) == [
        '*** #lobby: alice edited "lunch at 12?": lunch at 12:30?'
    ]
    assert chat.render(update("react", 2, 4, emoji="\U0001f44d", nick="bob", on=True)) == [
        '*** #lobby: bob reacted \U0001f44d to alice\'s "lunch at 12:30?"'
    ]
    assert chat.render(update("react", 2, 5, emoji="\U0001f44d", nick="bob", on=False)) == [
        '*** #lobby: bob took back \U0001f44d from alice\'s "lunch at 12:30?"'
    ]
    assert chat.render({**msg("#lobby", 6, "bob", "yes!"), "reply_to": 2}) == [
        '*** #lobby: bob replies to alice\'s "lunch at 12:30?":',
        "#lobby <bob> yes!",
    ]
    assert chat.render(update("delete", 1, 7, by="bob")) == [
        '*** #lobby: bob deleted "a message long enough to be cu\u2026"'
    ]
    assert chat.render(update("delete", 2, 8, by="carol")) == ['*** #lobby: carol deleted alice\'s "lunch at 12:30?"']
    assert chat.render({**msg("#lobby", 9, "bob", "hm"), "reply_to": 1}) == [
        "*** #lobby: bob replies to a deleted message:",
        "#lobby <bob> hm",
    ]
    # a message the client never saw is still named
    assert chat.render(update("edit", 100, 10, text="new", by="bob", mentions=[])) == [
        "*** #lobby: bob edited a message: new"
    ]
    # each update comes once, even when the server sends it again (a resume)
    assert chat.render(update("edit", 2, 3, text="lunch at 12:30?", by="alice", mentions=[])) == []
    assert chat.positions["#lobby"] == ("e1", 10)


def test_renderPrivateUpdates() -> None:
    """
    Edits, deletions and reactions of private messages (and replies to
    them) are shown as C{private: } lines; their C{seq} counts for
    C{private_since}.
    """
    chat = _inLobby()
    chat.render({"type": "private", "id": 4, "from": "bob", "to": "alice", "text": "are you there?", "time": 0})
    assert chat.render(
        {"type": "edit", "private": True, "id": 4, "seq": 5, "from": "bob", "to": "alice", "text": "you there?",
         "by": "bob", "time": 0}
    ) == ['*** private: bob edited "are you there?": you there?']
    assert chat.render(
        {"type": "private", "id": 6, "from": "alice", "to": "bob", "text": "yes", "time": 0, "reply_to": 4}
    ) == ['*** private: alice replies to bob\'s "you there?":', "-> *bob* yes"]
    assert chat.privateSince == 6
    assert chat.render(
        {"type": "delete", "private": True, "id": 4, "seq": 7, "from": "bob", "to": "alice", "by": "bob", "time": 0}
    ) == ['*** private: bob deleted "you there?"']
    assert chat.hello()["private_since"] == 7


def test_renderResumedUpdatesAndDeletedHistory() -> None:
    """
    A resume's C{history} shows the messages missed (a deleted one is not
    shown), then the updates missed, each once; the position counts the
    updates' C{seq}s, so the next resume starts after them.
    """
    chat = _inLobby(msg("#lobby", 1, "bob", "first"), msg("#lobby", 2, "alice", "second"))
    chat.hello()
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]})
    chat.render({"type": "join", "room": "#lobby", "nick": "alice", "time": 0})
    history = {
        "type": "history", "room": "#lobby", "epoch": "e1", "recovered": True,
        "messages": [{**msg("#lobby", 3, "bob", ""), "deleted": True}, msg("#lobby", 5, "bob", "later")],
        "updates": [
            update("edit", 1, 4, text="first!", by="bob", mentions=[]),
            update("delete", 3, 6, by="bob"),
            update("react", 2, 7, emoji="\U0001f389", nick="bob", on=True),
        ],
    }
    assert chat.render(history) == [
        "*** #lobby: 1 message while you were away:",
        "#lobby [12:00] <bob> later",
        '*** #lobby: bob edited "first": first!',
        "*** #lobby: bob deleted a message",
        '*** #lobby: bob reacted \U0001f389 to alice\'s "second"',
    ]
    assert chat.positions["#lobby"] == ("e1", 7)
    assert chat.hello()["since"] == {"#lobby": {"epoch": "e1", "id": 7}}
    # the same again (a second resume from an older position) shows nothing new
    chat.render({"type": "welcome", "nick": "alice", "server": "x", "rooms": ["#lobby"]})
    chat.render({"type": "join", "room": "#lobby", "nick": "alice", "time": 0})
    assert chat.render(history) == []


def test_renderSearch() -> None:
    """
    Search results show as the line chat shows them: a count, then the
    messages (room and private), stamped, newest first.
    """
    chat = _inLobby()
    found = {
        "type": "search",
        "text": "lunch",
        "results": [
            msg("#dev", 9, "bob", "lunch?"),
            {"type": "private", "id": 3, "from": "alice", "to": "bob", "text": "lunch at 1", "time": int(NOON * 1000)},
            msg("#lobby", 2, "carol", "no lunch", t=NOON - 86400),
        ],
    }
    assert chat.render(found) == [
        '*** search "lunch": 3 found',
        "#dev [12:00] <bob> lunch?",
        "[12:00] -> *bob* lunch at 1",
        "#lobby [2026-11-25 12:00] <carol> no lunch",
    ]
    assert chat.render({"type": "search", "text": "zzz", "results": []}) == ['*** search "zzz": 0 found']


def test_typingStatus() -> None:
    """
    Who is typing in the current room is the status line's text: C{active}
    adds a nick, C{paused} and C{done} (which the server also sends when an
    C{active} expires) remove it, and so do its message, its leaving and a
    lost connection; my own other connections are not shown; other rooms'
    typing shows when the room becomes the current one.
    """
    chat = _inLobby()
    chat.render({"type": "join", "room": "#dev", "nick": "alice", "time": 0})
    assert chat.current == "#dev"

    def typing(room: str, nick: str, state: str) -> None:
        assert chat.render({"type": "typing", "room": room, "nick": nick, "state": state}) == []

    typing("#dev", "bob", "active")
    assert chat.typingStatus() == "bob is typing\u2026"
    typing("#dev", "carol", "active")
    typing("#dev", "bob", "active")
    typing("#dev", "alice", "active")
    typing("#lobby", "dave", "active")
    assert chat.typingStatus() == "carol and bob are typing\u2026"
    chat.render(msg("#dev", 1, "carol", "hi"))
    assert chat.typingStatus() == "bob is typing\u2026"
    typing("#dev", "bob", "paused")
    assert chat.typingStatus() == ""
    translate(chat, "/join lobby")
    assert chat.typingStatus() == "dave is typing\u2026"
    for nick in ("erin", "frank", "gina"):
        typing("#lobby", nick, "active")
    assert chat.typingStatus() == "4 people are typing\u2026"
    chat.render({"type": "part", "room": "#lobby", "nick": "erin", "reason": "left", "time": 0})
    typing("#lobby", "frank", "done")
    assert chat.typingStatus() == "dave and gina are typing\u2026"
    chat.connectionLost()
    assert chat.typingStatus() == ""


def test_bell() -> None:
    """
    After C{/set bell on} a live message that mentions me starts with a bell
    (BEL), as on the line chat; C{/set bell off} stops it; a wrong C{/set}
    is refused.
    """
    chat = _inLobby()
    mention = {**msg("#lobby", 1, "bob", "alice: hi"), "mentions": ["Alice"]}
    assert chat.render(mention) == ["#lobby <bob> alice: hi"]
    assert translate(chat, "/set bell on") == ([], ["*** bell on"])
    assert chat.render({**mention, "id": 2}) == ["\a#lobby <bob> alice: hi"]
    assert chat.render({**msg("#lobby", 3, "bob", "no one"), "mentions": []}) == ["#lobby <bob> no one"]
    assert translate(chat, "/set bell off") == ([], ["*** bell off"])
    assert chat.render({**mention, "id": 4}) == ["#lobby <bob> alice: hi"]
    assert translate(chat, "/set beep on") == ([], ["!!! usage: /set bell on|off"])
