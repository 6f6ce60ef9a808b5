"""
Tests for idempotent requests (L{twisted_chat.core.refs}, through the
service): the same nick sending the same ref again gets the first message
back instead of storing a second one.
"""

from __future__ import annotations

from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from twisted_chat.core.events import Message, Private
from twisted_chat.stores.memory import MemoryStore
from twisted_chat.core.service import ChatService

from tests.support.fakes import connect, enter, fired, RecordingClient, say

T = TypeVar("T")


# -- idempotent refs ----------------------------------------------------------


class PendingStore(MemoryStore):
    """
    A memory store whose appends are confirmed (or failed) only when the
    test says so, like a database that has not committed yet.
    """

    def __init__(self, **kw: Any) -> None:
        MemoryStore.__init__(self, **kw)
        self.pending: list[tuple[Deferred[Any], Message | Private]] = []

    def append(self, message: Message | Private, ref: str | None = None) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.pending.append((d, message))
        return d

    def commit(self) -> None:
        """
        Store and confirm the oldest pending append.
        """
        d, message = self.pending.pop(0)
        d.callback(fired(MemoryStore.append(self, message)))

    def fail(self) -> None:
        """
        Fail the oldest pending append: nothing is stored.
        """
        d, _ = self.pending.pop(0)
        d.errback(OSError("disk full"))


def results(d: Deferred[T]) -> list[object]:
    """
    A list that gets C{d}'s result (or Failure) once it fires.
    """
    out: list[object] = []
    d.addBoth(out.append)
    return out


def roomMessages(client: RecordingClient) -> list[tuple[Any, ...]]:
    return [e for e in client.describe() if e[0] == "message"]


def test_sayWithTheSameRefTwiceStoresOneMessage(service: ChatService) -> None:
    """
    Saying again with a ref already used by the same nick (a resend after a
    lost ack) stores and delivers no second message: both calls answer with
    the same message, so both acks carry the same id.
    """
    alice, ca = enter(service, "alice", "#lobby")
    bob, cb = enter(service, "bob", "#lobby")
    first = fired(alice.say("hello", ref="r1"))
    again = fired(alice.say("hello", ref="r1"))
    assert (again.id, again.text) == (first.id, "hello") == (1, "hello")
    assert roomMessages(cb) == [("message", "#lobby", 1, "alice", "hello", False)]
    assert roomMessages(ca) == [("message", "#lobby", 1, "alice", "hello", False)]
    assert [m.id for m in fired(service.store.recent("#lobby", 10))] == [1]
    assert say(alice, "next").id == 2


def test_resendWhileTheFirstIsStillBeingStored() -> None:
    """
    A resend that arrives while the first send is still being stored waits
    for it: nothing is delivered or stored twice, and both answer with the
    one message once it is durable.
    """
    store = PendingStore()
    service = ChatService(store=store, clock=Clock())
    alice, _ = enter(service, "alice", "#lobby")
    bob, cb = enter(service, "bob", "#lobby")
    first = results(alice.say("hello", ref="r1"))
    again = results(alice.say("hello", ref="r1"))
    assert (first, again, len(store.pending)) == ([], [], 1)
    assert roomMessages(cb) == []
    store.commit()
    assert len(first) == len(again) == 1
    assert first[0] is again[0]
    assert isinstance(first[0], Message) and first[0].id == 1
    assert roomMessages(cb) == [("message", "#lobby", 1, "alice", "hello", False)]
    assert store.pending == []


def test_sameRefFromAnotherNickIsAnotherMessage(service: ChatService) -> None:
    """
    Refs belong to a nick: another nick using the same ref sends its own
    message.
    """
    alice, _ = enter(service, "alice", "#lobby")
    bob, cb = enter(service, "bob", "#lobby")
    a = fired(alice.say("from alice", ref="c1"))
    b = fired(bob.say("from bob", ref="c1"))
    assert (a.id, b.id) == (1, 2)
    assert roomMessages(cb) == [
        ("message", "#lobby", 1, "alice", "from alice", False),
        ("message", "#lobby", 2, "bob", "from bob", False),
    ]


def test_refIsForgottenAfterTheWindow(clock: Clock) -> None:
    """
    A ref is remembered for C{refWindow} seconds after its first use; a
    resend within that time is the same message, reusing the ref later
    sends a new one.
    """
    service = ChatService(store=MemoryStore(), clock=clock, refWindow=60.0)
    alice, _ = enter(service, "alice", "#lobby")
    bob, cb = enter(service, "bob", "#lobby")
    assert fired(alice.say("hello", ref="r1")).id == 1
    clock.advance(59)
    assert fired(alice.say("hello", ref="r1")).id == 1
    clock.advance(2)
    assert fired(alice.say("hello", ref="r1")).id == 2
    assert [e[2] for e in roomMessages(cb)] == [1, 2]


def test_failedSendCanBeRetriedWithTheSameRef() -> None:
    """
    When storing fails, the send and a resend waiting for it both fail,
    nothing is delivered, and trying again with the same ref sends the
    message once.
    """
    store = PendingStore()
    service = ChatService(store=store, clock=Clock())
    alice, _ = enter(service, "alice", "#lobby")
    bob, cb = enter(service, "bob", "#lobby")
    first = results(alice.say("hello", ref="r1"))
    waiting = results(alice.say("hello", ref="r1"))
    store.fail()
    for outcome in (first, waiting):
        assert len(outcome) == 1 and isinstance(outcome[0], Failure)
        assert outcome[0].check(OSError)
    assert roomMessages(cb) == []
    retry = results(alice.say("hello", ref="r1"))
    assert len(store.pending) == 1
    store.commit()
    assert len(retry) == 1 and isinstance(retry[0], Message)
    assert [(e[3], e[4]) for e in roomMessages(cb)] == [("alice", "hello")]
    assert [m.text for m in fired(store.recent("#lobby", 10))] == ["hello"]


def test_privateWithTheSameRefIsSentOnce(service: ChatService) -> None:
    """
    A private message resent with the same ref reaches the recipient once;
    both sends answer with the same message.
    """
    alice, ca = connect(service, "alice")
    bob, cb = connect(service, "bob")
    first = fired(alice.private("bob", "psst", ref="p1"))
    again = fired(alice.private("bob", "psst", ref="p1"))
    # the same message (kept compactly once stored: an equal copy, not the object)
    assert (again.id, again.sender, again.recipient, again.text, again.time) == (
        first.id, first.sender, first.recipient, first.text, first.time,
    )
    assert cb.describe() == [("private", first.id, "alice", "bob", "psst")]
    assert ca.describe() == [("private", first.id, "alice", "bob", "psst")]

