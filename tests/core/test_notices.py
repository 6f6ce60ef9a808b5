"""
Join and leave notices told to a room together (L{Notices.announce}):
what each member sees, and in which order, when the daemon lets them wait
up to C{noticeDelay} seconds for each other.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from twisted_chat.core.events import AwayChanged

from twisted_chat.core.service import ChatService, Member
from twisted_chat.stores.memory import MemoryStore

from tests.support.fakes import RecordingClient, describe, say


def batched() -> tuple[ChatService, Clock]:
    clock = Clock()
    service = ChatService(store=MemoryStore(), clock=clock, pruneInterval=0, noticeDelay=0.2)
    service.startService()
    return service, clock


def enterLobby(service: ChatService, nick: str) -> tuple[Member, RecordingClient]:
    client = RecordingClient()
    member = service.connect(client, nick=nick)  # type: ignore[arg-type]
    member.join("#lobby")
    return member, client


def seen(client: RecordingClient) -> list[tuple[Any, ...]]:
    """
    The join, leave, nick, away and message events C{client} got, taken.
    """
    told = []
    for e in client.take():
        if isinstance(e, AwayChanged):
            told.append(("away", e.nick, e.away))
            continue
        d = describe(e)
        if d[0] == "message":
            told.append(("message", d[1], d[3], d[4]))
        elif d[0] in ("join", "part", "nick"):
            told.append(d)
    return told


def test_joinsToldTogetherAfterTheDelay() -> None:
    """
    The joiner hears of its own join at once, then its member list; the
    members already there hear of every join of the next 0.2 s together,
    in order; each member only of the joins after its own.
    """
    service, clock = batched()
    amy, ca = enterLobby(service, "amy")
    clock.advance(0.2)
    assert seen(ca) == [("join", "#lobby", "amy")]
    bob, cb = enterLobby(service, "bob")
    cyd, cc = enterLobby(service, "cyd")
    assert [describe(e)[:2] for e in cb.take()][:2] == [("join", "#lobby"), ("presence", "#lobby")]
    assert seen(ca) == []
    assert seen(cc) == [("join", "#lobby", "cyd")]
    clock.advance(0.19)
    assert seen(ca) == []
    clock.advance(0.01)
    assert seen(ca) == [("join", "#lobby", "bob"), ("join", "#lobby", "cyd")]
    assert seen(cb) == [("join", "#lobby", "cyd")]
    assert seen(cc) == []


def test_messageAfterAJoinComesAfterIt() -> None:
    """
    A message said in the room before the delay is over takes the room's
    pending notices along first: nobody sees someone talk before they
    joined.
    """
    service, clock = batched()
    amy, ca = enterLobby(service, "amy")
    clock.advance(0.2)
    ca.take()
    bob, cb = enterLobby(service, "bob")
    say(bob, "hi all")
    assert seen(ca) == [("join", "#lobby", "bob"), ("message", "#lobby", "bob", "hi all")]
    clock.advance(0.2)
    assert seen(ca) == []


def test_nickAndAwayAfterAJoinComeAfterIt() -> None:
    """
    A new member's nick change (a line client's first /nick) and away
    message reach the others after its join, not before.
    """
    service, clock = batched()
    amy, ca = enterLobby(service, "amy")
    clock.advance(0.2)
    ca.take()
    guest, cg = enterLobby(service, "guest-7")
    guest.setNick("bob")
    guest.setAway("lunch")
    assert seen(ca) == [("join", "#lobby", "guest-7"), ("nick", "guest-7", "bob", ("#lobby",)), ("away", "bob", "lunch")]


def test_leaverGetsWhatItWasOwedThenItsOwnLeave() -> None:
    """
    A member leaving before the delay is over first gets the notices owed
    to it, then its own leave at once; the others hear of it with the
    room's next notices, and the leaver hears nothing of the room after.
    """
    service, clock = batched()
    amy, ca = enterLobby(service, "amy")
    bob, cb = enterLobby(service, "bob")
    clock.advance(0.2)
    ca.take(), cb.take()
    cyd, cc = enterLobby(service, "cyd")
    bob.part("#lobby")
    assert seen(cb) == [("join", "#lobby", "cyd"), ("part", "#lobby", "bob", "left")]
    enterLobby(service, "dan")
    clock.advance(0.2)
    assert seen(ca) == [("join", "#lobby", "cyd"), ("part", "#lobby", "bob", "left"), ("join", "#lobby", "dan")]
    assert seen(cc)[1:] == [("part", "#lobby", "bob", "left"), ("join", "#lobby", "dan")]
    assert seen(cb) == []


def test_quitToldToEveryRoom() -> None:
    """
    A member that disconnects leaves every room it was in: each room hears
    of it with its next notices.
    """
    service, clock = batched()
    amy, ca = enterLobby(service, "amy")
    amy.join("#dev")
    bob, cb = enterLobby(service, "bob")
    bob.join("#dev")
    clock.advance(0.2)
    ca.take()
    bob.quit("disconnected")
    assert seen(ca) == []
    clock.advance(0.2)
    assert seen(ca) == [("part", "#lobby", "bob", "disconnected"), ("part", "#dev", "bob", "disconnected")]


def test_shutdownSendsPendingNotices() -> None:
    """
    Notices still waiting when the server shuts down are sent before the
    members are told of the shutdown.
    """
    service, clock = batched()
    amy, ca = enterLobby(service, "amy")
    clock.advance(0.2)
    ca.take()
    enterLobby(service, "bob")
    service.stopService()
    kinds = [describe(e)[0] for e in ca.take()]
    assert kinds[0] == "join"
