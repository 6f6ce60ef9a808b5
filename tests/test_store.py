"""
Tests for L{twisted_chat._memstore.MemoryStore}, the in-memory history.
"""

from __future__ import annotations

from typing import TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from twisted_chat._events import Message, Private
from twisted_chat._interfaces import IMessageStore
from twisted_chat._memstore import MemoryStore

T = TypeVar("T")


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


def fill(store: MemoryStore, room: str, count: int, start: int = 1) -> list[Message]:
    msgs = [Message(room, i, store.epoch, "alice", "m%d" % (i,), 1000.0 + i) for i in range(start, start + count)]
    for m in msgs:
        assert fired(store.append(m)) is None
    return msgs


def ids(msgs: list[Message] | None) -> list[int] | None:
    return None if msgs is None else [m.id for m in msgs]


def test_providesIMessageStore() -> None:
    """
    L{MemoryStore} provides L{IMessageStore}, and opens and closes at once.
    """
    store = MemoryStore()
    assert verifyObject(IMessageStore, store)
    assert fired(store.open()) is None
    assert fired(store.close()) is None


def test_everyStoreHasItsOwnEpoch() -> None:
    """
    Each store (each daemon process) names a new id sequence, so a position
    from a previous run is never taken for one in this run.
    """
    a, b = MemoryStore(), MemoryStore()
    assert isinstance(a.epoch, str) and a.epoch
    assert a.epoch != b.epoch


def test_lastIdPerRoom() -> None:
    """
    C{lastId} is 0 for a room without messages and the id of the last stored
    message otherwise, separately for each room and for private messages.
    """
    store = MemoryStore()
    assert store.lastId("#dev") == 0
    fill(store, "#dev", 3)
    fill(store, "#ops", 1)
    store.append(Private(7, "alice", "bob", "hi", 1.0))
    assert store.lastId("#dev") == 3
    assert store.lastId("#ops") == 1
    assert store.lastId("#lobby") == 0
    assert store.lastId("@private") == 7


def test_recentIsOldestFirstAndLimited() -> None:
    """
    C{recent} gives at most C{limit} of the room's latest messages, oldest
    first; C{before} keeps only the messages with lower ids; a limit of 0
    gives nothing.
    """
    store = MemoryStore()
    fill(store, "#dev", 10)
    fill(store, "#ops", 2)
    assert ids(fired(store.recent("#dev", 3))) == [8, 9, 10]
    assert ids(fired(store.recent("#dev", 50))) == list(range(1, 11))
    assert ids(fired(store.recent("#dev", 3, before=5))) == [2, 3, 4]
    assert ids(fired(store.recent("#dev", 0))) == []
    assert ids(fired(store.recent("#nowhere", 5))) == []
    assert [m.room for m in fired(store.recent("#ops", 5))] == ["#ops", "#ops"]


def test_retainBoundsTheHistory() -> None:
    """
    Only the last C{retain} messages of a room are kept; ids go on counting.
    """
    store = MemoryStore(retain=3)
    fill(store, "#dev", 5)
    assert ids(fired(store.recent("#dev", 100))) == [3, 4, 5]
    assert store.lastId("#dev") == 5


def test_sinceGivesExactlyTheMissedMessages() -> None:
    """
    C{since} with this store's epoch and a retained id gives the messages
    after that id, in order; at the latest id it gives an empty list.
    """
    store = MemoryStore()
    fill(store, "#dev", 6)
    assert ids(fired(store.since("#dev", store.epoch, 4, 100))) == [5, 6]
    assert ids(fired(store.since("#dev", store.epoch, 0, 100))) == [1, 2, 3, 4, 5, 6]
    assert ids(fired(store.since("#dev", store.epoch, 6, 100))) == []
    assert ids(fired(store.since("#new", store.epoch, 0, 100))) == []


def test_sinceCannotRecoverAnotherEpoch() -> None:
    """
    A position from another epoch (another daemon run) cannot be recovered.
    """
    store = MemoryStore()
    fill(store, "#dev", 3)
    other = "x" + store.epoch
    assert fired(store.since("#dev", other, 2, 100)) is None


def test_sinceCannotRecoverAGapOlderThanTheHistory() -> None:
    """
    A position older than the retained history, or with more missed
    messages than the limit, or from the future, cannot be recovered.
    """
    store = MemoryStore(retain=3)
    fill(store, "#dev", 10)
    # 8, 9, 10 are retained: after 7 is exactly recoverable, after 6 is not
    assert ids(fired(store.since("#dev", store.epoch, 7, 100))) == [8, 9, 10]
    assert fired(store.since("#dev", store.epoch, 6, 100)) is None
    assert fired(store.since("#dev", store.epoch, 7, 2)) is None
    assert fired(store.since("#dev", store.epoch, 11, 100)) is None
    assert fired(store.since("#dev", store.epoch, -1, 100)) is None


def test_privateForFindsBothDirections() -> None:
    """
    C{privateFor} gives the private messages a nick sent or received after a
    time, whatever the case of the nick, oldest first and at most C{limit}.
    """
    store = MemoryStore()
    store.append(Private(1, "alice", "bob", "one", 10.0))
    store.append(Private(2, "Bob", "carol", "two", 20.0))
    store.append(Private(3, "carol", "alice", "three", 30.0))
    store.append(Private(4, "carol", "BOB", "four", 40.0))
    assert [p.id for p in fired(store.privateFor("BOB", 0.0, 10))] == [1, 2, 4]
    assert [p.id for p in fired(store.privateFor("bob", 15.0, 10))] == [2, 4]
    assert [p.id for p in fired(store.privateFor("bob", 0.0, 1))] == [4]
    assert [p.id for p in fired(store.privateFor("dave", 0.0, 10))] == []
