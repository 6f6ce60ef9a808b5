"""
Tests for what the service tells a member about others and about rooms,
added for front-ends such as IRC that show it (L{Member.whois},
L{Member.setAway}, L{Member.roomTopic}, L{Member.roomOperators},
L{Member.roomBans}, L{Member.history} with C{after},
L{ChatService.memberInfo}, L{ChatService.checkLogin}).
"""

from __future__ import annotations


import pytest
from twisted.internet.task import Clock

from twisted_chat.core.auth import hashPassword
from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import AwayChanged, History
from twisted_chat.core.member import MemberInfo
from twisted_chat.core.service import ChatService
from twisted_chat.stores.memory import MemoryStore

from tests.support.fakes import ImmediateThreads, enter, fired


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(clock: Clock) -> ChatService:
    return ChatService(store=MemoryStore(), clock=clock)


def test_whois(service: ChatService) -> None:
    alice, _ = enter(service, "Alice", "#a", "#b")
    bob, _ = enter(service, "bob")
    assert bob.whois("ALICE") == MemberInfo("Alice", None, "", ("#a", "#b"), False, "test", True)
    with pytest.raises(ChatError) as e:
        bob.whois("nobody")
    assert e.value.code == "no-such-nick"
    with pytest.raises(ChatError):
        bob.whois("not a nick!")
    assert service.memberInfo("nobody") is None


def test_awayIsToldToWhoSharesARoomOnce(service: ChatService, clock: Clock) -> None:
    alice, _ = enter(service, "alice", "#a", "#b")
    bob, bobSees = enter(service, "bob", "#a", "#b")
    carol, carolSees = enter(service, "carol", "#c")
    clock.advance(5)
    alice.setAway("  lunch ")
    [event] = bobSees.of(AwayChanged)
    assert (event.nick, event.away, event.time) == ("alice", "lunch", 5)
    assert carolSees.of(AwayChanged) == []
    assert carol.whois("alice").away == "lunch"
    alice.setAway("lunch")  # (no change: nothing to tell)
    assert len(bobSees.of(AwayChanged)) == 1
    alice.setAway("")
    assert [e.away for e in bobSees.of(AwayChanged)] == ["lunch", ""]
    assert carol.whois("alice").away == ""


def test_awayMessageLimit(service: ChatService) -> None:
    alice, _ = enter(service, "alice")
    with pytest.raises(ChatError) as e:
        alice.setAway("x" * 201)
    assert e.value.code == "too-long"
    alice.setAway("x" * 200)


def test_roomTopicWithItsTime(service: ChatService, clock: Clock) -> None:
    alice, _ = enter(service, "alice", "#a")
    bob, _ = enter(service, "bob")
    assert bob.roomTopic("#a") == ("#a", "", "", 0.0)
    clock.advance(42)
    alice.setTopic("plans")
    # (anyone may read a room's topic, a member or not)
    assert bob.roomTopic("A") == ("#a", "plans", "alice", 42.0)


def test_roomOperators(service: ChatService) -> None:
    alice, _ = enter(service, "alice", "#a")
    bob, _ = enter(service, "bob", "#a")
    carol, _ = enter(service, "carol")
    assert carol.roomOperators("#a") == ["alice"]
    alice.giveOp("bob")
    assert carol.roomOperators("#a") == ["alice", "bob"]
    assert carol.roomOperators("#nobody") == []


def test_roomBans(service: ChatService) -> None:
    alice, _ = enter(service, "alice", "#a")
    bob, _ = enter(service, "bob", "#a")
    alice.ban("10.0.0.9")
    alice.ban("Mallory")
    assert bob.roomBans("#a") == ["10.0.0.9", "mallory"]
    with pytest.raises(ChatError) as e:
        bob.roomBans("#elsewhere")
    assert e.value.code == "not-in-room"


def test_historyAfter(service: ChatService) -> None:
    alice, seen = enter(service, "alice", "#a")
    for i in range(1, 11):
        fired(alice.say("m%d" % (i,)))
    seen.events.clear()
    alice.history("#a", limit=3, after=4)
    [h] = seen.of(History)
    assert [m.text for m in h.messages] == ["m5", "m6", "m7"]
    seen.events.clear()
    alice.history("#a", limit=5, after=7, before=9)
    [h] = seen.of(History)
    assert [m.text for m in h.messages] == ["m8"]
    seen.events.clear()
    alice.history("#a", limit=5, after=10)
    [h] = seen.of(History)
    assert h.messages == []


def test_checkLogin() -> None:
    service = ChatService(store=MemoryStore(), clock=ImmediateThreads(), passwords={"alice": hashPassword("sesame", n=2)})
    assert fired(service.checkLogin("Alice", "sesame")) is None
    with pytest.raises(ChatError) as e:
        fired(service.checkLogin("alice", "wrong"))
    assert e.value.code == "bad-login"
    # (the nick was not taken)
    assert service.memberInfo("alice") is None


def test_checkLoginWithoutRegisteredNicks(service: ChatService) -> None:
    with pytest.raises(ChatError) as e:
        service.checkLogin("alice", "x")
    assert e.value.code == "no-auth"
