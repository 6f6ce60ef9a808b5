"""
Front-ends without a connection, for driving the chat service in memory:
L{RecordingClient}, the one recording L{IChatClient} every test uses, and
its variants (one that goes away when closed, one whose delivery breaks,
one a test can wait on); a clock whose thread pool runs work at once
(L{ImmediateThreads}); the helpers that connect them to a service; and a
broker whose deliveries lag behind the store, as in a cluster.

Imports Twisted: test modules import it, conftest.py must not (see its
docstring).
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat.core.broker import LocalBroker
from twisted_chat.core.events import (
    Event,
    History,
    Joined,
    Message,
    NickChanged,
    Notice,
    Parted,
    Presence,
    Private,
    PrivateHistory,
    PrivateUpdate,
    ReadMarker,
    RoomList,
    Typing,
    Update,
)
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.core.service import ChatService, Member
from twisted_chat.stores.memory import MemoryStore

T = TypeVar("T")
E = TypeVar("E", bound=Event)

#: seconds: bound on every wait of a L{WaitingClient}
TIMEOUT = 10.0


def fired(d: Deferred[T]) -> T:
    """
    The result of a Deferred that has already fired successfully.
    """
    results: list[object] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]  # type: ignore[return-value]


def within(d: Deferred[T], timeout: float = TIMEOUT) -> Deferred[T]:
    """
    C{d}, failing with a timeout if it has not fired within C{timeout} s
    (of the real reactor).
    """
    from twisted.internet import reactor

    return d.addTimeout(timeout, reactor)  # type: ignore[arg-type]


class ImmediateThreads(Clock):
    """
    A L{Clock} that is also a reactor's thread pool running work at once,
    in the calling thread: password checks then answer synchronously.
    """

    def getThreadPool(self) -> ImmediateThreads:
        return self

    def callInThreadWithCallback(self, onResult: Callable[[bool, object], None], f: Callable[..., object], *a: object, **kw: object) -> None:
        try:
            result = f(*a, **kw)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)

    def callFromThread(self, f: Callable[..., object], *a: object, **kw: object) -> None:
        f(*a, **kw)


@implementer(IChatClient)
class RecordingClient:
    """
    A front-end that keeps every event the service delivers to it, and the
    reasons it was closed with.
    """

    kind = "test"

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed: list[str] = []
        self.reconnectAfter: float | None = None
        #: the member, for the variants that act on it (see L{connect})
        self.member: Member | None = None

    def deliver(self, event: object) -> None:
        assert isinstance(event, Event)
        self.events.append(event)

    def close(self, reason: str, reconnectAfter: float | None = None) -> None:
        self.closed.append(reason)
        self.reconnectAfter = reconnectAfter

    def take(self) -> list[Event]:
        """
        The events delivered since the last C{take}.
        """
        events, self.events = self.events, []
        return events

    def describe(self) -> list[tuple[Any, ...]]:
        """
        The events since the last C{take}, as comparable tuples.
        """
        return [describe(e) for e in self.take()]

    def of(self, kind: type[E]) -> list[E]:
        """
        The events of class C{kind} delivered so far (not taken).
        """
        return [e for e in self.events if isinstance(e, kind)]

    def messages(self, *fields: str) -> list[tuple[Any, ...]]:
        """
        The room messages delivered so far (not taken), each as the tuple of
        its C{fields} ("id", "sender", "text" …).
        """
        return [tuple(getattr(m, f) for f in fields) for m in self.of(Message)]

    def said(self, nick: str) -> list[str]:
        """
        The texts of the room messages from C{nick} delivered so far.
        """
        return [m.text for m in self.of(Message) if m.sender == nick]


@implementer(IChatClient)
class ClosingClient(RecordingClient):
    """
    A front-end whose connection goes away when the service closes it.
    """

    def close(self, reason: str, reconnectAfter: float | None = None) -> None:
        RecordingClient.close(self, reason, reconnectAfter)
        assert self.member is not None
        self.member.quit("disconnected")


@implementer(IChatClient)
class BrokenClient(RecordingClient):
    """
    A front-end whose delivery fails once C{broken} is set.
    """

    broken = False

    def deliver(self, event: object) -> None:
        if self.broken:
            raise RuntimeError("this connection is broken")
        RecordingClient.deliver(self, event)


@implementer(IChatClient)
class WaitingClient(RecordingClient):
    """
    A front-end that records events and lets a test wait for one (with the
    real reactor); its connection goes away when the service closes it.
    """

    def __init__(self) -> None:
        RecordingClient.__init__(self)
        self._waiting: list[tuple[Callable[[Event], bool], Deferred[Any]]] = []

    def deliver(self, event: object) -> None:
        RecordingClient.deliver(self, event)
        for entry in list(self._waiting):
            match, d = entry
            if match(event):  # type: ignore[arg-type]
                self._waiting.remove(entry)
                d.callback(event)

    def close(self, reason: str, reconnectAfter: float | None = None) -> None:
        RecordingClient.close(self, reason, reconnectAfter)
        if self.member is not None:
            self.member.quit("disconnected")

    def waitFor(self, match: Callable[[Event], bool], timeout: float = TIMEOUT) -> Deferred[Any]:
        """
        The first event, delivered already or to come, that C{match}es.
        """
        for event in self.events:
            if match(event):
                return succeed(event)
        return self.next(match, timeout)

    def next(self, match: Callable[[Event], bool], timeout: float = TIMEOUT) -> Deferred[Any]:
        """
        The next event to come that C{match}es.
        """
        d: Deferred[Any] = Deferred()
        self._waiting.append((match, d))
        return within(d, timeout)


def describe(e: Event) -> tuple[Any, ...]:
    """
    C{e} as a comparable tuple of what a user would see of it.
    """
    if isinstance(e, Update):
        return (e.op, e.room, e.target, e.id, e.sender, e.text or e.emoji)
    if isinstance(e, PrivateUpdate):
        return ("private-" + e.op, e.target, e.id, e.sender, e.recipient, e.text or e.emoji)
    if isinstance(e, Typing):
        return ("typing", e.room, e.nick, e.state)
    if isinstance(e, ReadMarker):
        return ("read", e.room, e.id)
    if isinstance(e, Message):
        return ("message", e.room, e.id, e.sender, e.text, e.action)
    if isinstance(e, Joined):
        return ("join", e.room, e.nick)
    if isinstance(e, Parted):
        return ("part", e.room, e.nick, e.reason)
    if isinstance(e, Presence):
        return ("presence", e.room, e.members)
    if isinstance(e, History):
        return ("history", e.room, [m.id for m in e.messages], e.recovered, e.reason)
    if isinstance(e, NickChanged):
        return ("nick", e.old, e.new, e.rooms)
    if isinstance(e, Private):
        return ("private", e.id, e.sender, e.recipient, e.text)
    if isinstance(e, RoomList):
        return ("rooms", e.rooms)
    if isinstance(e, Notice):
        return ("notice", e.text)
    if isinstance(e, PrivateHistory):
        return ("private-history", [p.id for p in e.messages])
    raise AssertionError("unexpected event %r" % (e,))


def connect(service: ChatService, nick: str | None = None, client: RecordingClient | None = None) -> tuple[Member, RecordingClient]:
    """
    Connect a recording client, as a front-end does, and empty its record.
    """
    client = client if client is not None else RecordingClient()
    member = service.connect(client, nick=nick, peer="test")
    client.member = member
    client.take()
    return member, client


def enter(service: ChatService, nick: str, *rooms: str) -> tuple[Member, RecordingClient]:
    """
    Connect C{nick} and join C{rooms}; its record starts empty.
    """
    member, client = connect(service, nick)
    for room in rooms:
        member.join(room)
    client.take()
    return member, client


def say(member: Member, text: str, room: str | None = None, action: bool = False) -> Message:
    """
    C{member} says C{text}; the message, stored at once (a memory store).
    """
    return fired(member.say(text, room, action))


class LaggingBroker(LocalBroker):
    """
    A broker of a cluster whose deliveries lag behind the shared store (as
    with Redis: a history read on the command connection can return
    messages the subscription brings a moment later): stored messages wait
    until L{catchUp}.
    """

    def __init__(self) -> None:
        LocalBroker.__init__(self)
        self.pending: list[Message] = []
        self.delivered: dict[str, int] = {}

    def deliveredUpTo(self, room: str) -> int:
        return self.delivered.get(room, 0)

    def deliverMessage(self, message: Any) -> Any:
        self.pending.append(message)
        return message

    def catchUp(self) -> None:
        pending, self.pending = self.pending, []
        for m in pending:
            self.delivered[m.room] = m.id
            self.events.deliverMessage(m)


class FlakyStore(MemoryStore):
    """
    A memory store whose history reads fail while C{down} is set (as
    Redis' do while it is stalled or restarting); writes still work.
    """

    def __init__(self, **kw: Any) -> None:
        MemoryStore.__init__(self, **kw)
        self.down = True
        self.historyReads = 0

    def recent(self, room: str, limit: int, before: int | None = None) -> Deferred[list[Message]]:
        return self._read(MemoryStore.recent, room, limit, before)

    def since(self, room: str, epoch: str, afterId: int, limit: int) -> Deferred[list[Message] | None]:
        return self._read(MemoryStore.since, room, epoch, afterId, limit)

    def _read(self, method: Callable[..., Deferred[Any]], *args: Any) -> Deferred[Any]:
        self.historyReads += 1
        if self.down:
            return fail(OSError("disk on fire"))
        return method(self, *args)
