"""
Tests for the message stores: one suite that every L{IMessageStore} passes,
run against L{MemoryStore} and L{SQLiteStore} (a real file in C{tmp_path}),
then what only the SQLite store promises: durability across a reopen,
batched commits, and refusing a file it cannot use without touching it.

The SQLite store answers from its own thread through the reactor, so every
test here runs in the reactor (pytest-twisted) and waits on Deferreds with
a timeout; nothing imports the reactor at module level.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
import pytest_twisted
from twisted.internet.defer import gatherResults
from zope.interface.verify import verifyObject

from twisted_chat.core.errors import StoreUnavailable
from twisted_chat.core.events import DELETE, EDIT, REACT, Message, Private, PrivateUpdate, Update
from twisted_chat.core.interfaces import IMessageStore
from twisted_chat.core.names import findMentions
from twisted_chat.stores.memory import MemoryStore
from twisted_chat.stores.sqlite import SQLiteStore
from twisted_chat.stores.sqlite_schema import StoreError

from tests.support.fakes import within
from tests.support.sqlite import diskFull, snapshot, unprivileged

Store = Any  # MemoryStore | SQLiteStore: they share IMessageStore, not a base class


def msg(store: Store, room: str, n: int, text: str | None = None, time: float | None = None, **kw: Any) -> Message:
    """
    Message number C{n} of a test in C{room}: its text C{mN}, its time
    1000 + C{n}; no id (the store gives it one).
    """
    return Message(room, 0, store.epoch, kw.get("sender", "alice"), "m%d" % (n,) if text is None else text,
                   1000.0 + n if time is None else time, kw.get("action", False))


def pm(sender: str, recipient: str, text: str, time: float) -> Private:
    """
    A private message; no id (the store gives it one).
    """
    return Private(0, sender, recipient, text, time)


async def fill(store: Store, room: str, first: int, last: int, time: float | None = None) -> list[Message]:
    """
    Store messages C{first}..C{last} of C{room} (which must be the ids the
    store gives them); wait until they are durable.
    """
    msgs = await within(gatherResults([store.append(msg(store, room, i, time=time)) for i in range(first, last + 1)]))
    assert ids(msgs) == list(range(first, last + 1))
    return msgs


def ids(msgs: list[Any] | None) -> list[int] | None:
    return None if msgs is None else [m.id for m in msgs]


def openSQLite(path: Path, **kw: Any) -> SQLiteStore:
    from twisted.internet import reactor

    store = SQLiteStore(str(path), reactor, **kw)
    store.open()
    return store


@pytest.fixture(params=["memory", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_twisted.async_yield_fixture
async def makeStore(kind: str, tmp_path: Path) -> AsyncIterator[Callable[..., Store]]:
    """
    C{makeStore(retain=1000, retainDays=None)}: a new open store of the kind
    under test (an SQLite store in a new file of C{tmp_path}); closed in
    teardown.
    """
    made: list[Store] = []

    def make(retain: int = 1000, retainDays: float | None = None) -> Store:
        if kind == "memory":
            store: Store = MemoryStore(retain=retain, retainDays=retainDays)
            store.open()
        else:
            path = tmp_path / ("chat-%d.sqlite3" % (len(made),))
            store = openSQLite(path, retainMessages=retain, retainDays=retainDays)
        made.append(store)
        return store

    yield make
    for store in made:
        await within(store.close())


# == every store ===============================================================


@pytest_twisted.ensureDeferred
async def test_providesIMessageStore(makeStore: Callable[..., Store]) -> None:
    """
    The store provides L{IMessageStore}, has a non-empty string epoch, and
    opens and closes.
    """
    store = makeStore()
    assert verifyObject(IMessageStore, store)
    assert isinstance(store.epoch, str) and store.epoch
    assert await within(store.close()) is None


@pytest_twisted.ensureDeferred
async def test_eachNewStoreHasItsOwnEpoch(makeStore: Callable[..., Store]) -> None:
    """
    Two new stores (two daemon runs with memory, two database files) name
    different id sequences, so a position in one is never taken for one in
    the other.
    """
    assert makeStore().epoch != makeStore().epoch


@pytest_twisted.ensureDeferred
async def test_appendGivesIdsInAppendOrder(makeStore: Callable[..., Store]) -> None:
    """
    The store numbers what it stores: each room, and the private messages,
    count from 1 in the order of the appends, whatever id a message came
    with; an append fires with the stored message and its id. C{lastId} is
    0 for a room without messages and its highest stored id otherwise.
    """
    store = makeStore()
    assert (store.lastId("#dev"), store.lastId("@private")) == (0, 0)
    pending = [store.append(msg(store, "#dev", i)) for i in (1, 2)]
    pending.append(store.append(msg(store, "#ops", 1)))
    pending.append(store.append(Private(7, "alice", "bob", "hi", 1.0)))
    pending.append(store.append(Message("#dev", 42, store.epoch, "bob", "third", 3.0)))
    pending.append(store.append(pm("bob", "alice", "ho", 2.0)))
    stored = await within(gatherResults(pending))
    assert [(getattr(m, "room", "@private"), m.id, m.text) for m in stored] == [
        ("#dev", 1, "m1"), ("#dev", 2, "m2"), ("#ops", 1, "m1"), ("@private", 1, "hi"), ("#dev", 3, "third"),
        ("@private", 2, "ho"),
    ]
    assert [store.lastId(r) for r in ("#dev", "#ops", "#lobby", "@private")] == [3, 1, 0, 2]
    assert [(m.id, m.text) for m in await within(store.recent("#dev", 10))] == [(1, "m1"), (2, "m2"), (3, "third")]
    assert [(p.id, p.text) for p in await within(store.privateFor("alice", None, 10))] == [(1, "hi"), (2, "ho")]


@pytest_twisted.ensureDeferred
async def test_appendsFireInAppendOrderInTheReactorThread(makeStore: Callable[..., Store]) -> None:
    """
    The Deferreds of appends fire in the order of the appends, across rooms
    and private messages, and in the reactor's thread (the service
    broadcasts from their callbacks).
    """
    store = makeStore()
    fired: list[tuple[str, bool]] = []
    pending = []
    expected = []
    for i in range(1, 301):
        m: Message | Private
        if i % 7 == 0:
            m, name = pm("alice", "bob", "p%d" % (i,), float(i)), "p%d" % (i,)
        else:
            room = "#a" if i % 2 else "#b"
            m, name = msg(store, room, i), "%s/%d" % (room, i)
        expected.append((name, True))
        d = store.append(m)
        d.addCallback(lambda _, name=name: fired.append((name, threading.current_thread() is threading.main_thread())))
        pending.append(d)
    await within(gatherResults(pending))
    assert fired == expected


@pytest_twisted.ensureDeferred
async def test_readSeesEveryEarlierAppend(makeStore: Callable[..., Store]) -> None:
    """
    A read asked for right after an append, before that append has been
    confirmed, already sees the message.
    """
    store = makeStore()
    store.append(msg(store, "#dev", 1, "first"))
    store.append(pm("alice", "bob", "psst", 5.0))
    assert [m.text for m in await within(store.recent("#dev", 10))] == ["first"]
    assert [p.text for p in await within(store.privateFor("bob", None, 10))] == ["psst"]
    assert ids(await within(store.since("#dev", store.epoch, 0, 10))) == [1]


@pytest_twisted.ensureDeferred
async def test_messagesComeBackAsStored(makeStore: Callable[..., Store]) -> None:
    """
    A message comes back with its room, id, epoch, sender, text (any
    Unicode), time and action flag; a private message with its id, sender,
    recipient, text and time.
    """
    store = makeStore()
    await within(store.append(Message("#dév", 0, store.epoch, "Ünï", "naïve 😀 'quote' \"dq\"\n", 1764201600.125, True)))
    await within(store.append(pm("Alice", "BOB", "secret ✓", 1764201601.5)))
    [m] = await within(store.recent("#dév", 5))
    assert (m.room, m.id, m.epoch, m.sender, m.text, m.time, m.action) == (
        "#dév", 1, store.epoch, "Ünï", "naïve 😀 'quote' \"dq\"\n", 1764201600.125, True
    )
    [p] = await within(store.privateFor("bob", None, 5))
    assert (p.id, p.sender, p.recipient, p.text, p.time) == (1, "Alice", "BOB", "secret ✓", 1764201601.5)


@pytest_twisted.ensureDeferred
async def test_recentPagesOldestFirst(makeStore: Callable[..., Store]) -> None:
    """
    C{recent} gives at most C{limit} of a room's latest messages, oldest
    first; with C{before} the latest ones below that id, so paging backwards
    walks the whole history without overlap. A limit of 0 gives nothing,
    as does an unknown room; other rooms' messages never appear.
    """
    store = makeStore()
    await fill(store, "#dev", 1, 10)
    await fill(store, "#ops", 1, 2)
    assert ids(await within(store.recent("#dev", 4))) == [7, 8, 9, 10]
    pages = []
    before = None
    while True:
        page = await within(store.recent("#dev", 4, before))
        if not page:
            break
        pages.append(ids(page))
        before = page[0].id
    assert pages == [[7, 8, 9, 10], [3, 4, 5, 6], [1, 2]]
    assert ids(await within(store.recent("#dev", 50))) == list(range(1, 11))
    assert ids(await within(store.recent("#dev", 0))) == []
    assert ids(await within(store.recent("#nowhere", 5))) == []
    assert [(m.room, m.text) for m in await within(store.recent("#ops", 5))] == [("#ops", "m1"), ("#ops", "m2")]


@pytest_twisted.ensureDeferred
async def test_sinceGivesExactlyTheMissedMessages(makeStore: Callable[..., Store]) -> None:
    """
    C{since} with the store's epoch and a known id gives exactly the
    messages after that id, in order; at the latest id (or 0 in an empty
    room) it gives an empty list: nothing was missed.
    """
    store = makeStore()
    await fill(store, "#dev", 1, 6)
    await fill(store, "#ops", 1, 3)
    assert ids(await within(store.since("#dev", store.epoch, 4, 100))) == [5, 6]
    assert [m.room for m in await within(store.since("#dev", store.epoch, 4, 100))] == ["#dev", "#dev"]
    assert ids(await within(store.since("#dev", store.epoch, 0, 100))) == [1, 2, 3, 4, 5, 6]
    assert await within(store.since("#dev", store.epoch, 6, 100)) == []
    assert await within(store.since("#new", store.epoch, 0, 100)) == []
    # exactly the limit missed is still recoverable
    assert ids(await within(store.since("#dev", store.epoch, 2, 4))) == [3, 4, 5, 6]


@pytest.mark.parametrize(
    "epoch, afterId, limit",
    [
        ("other", 7, 100),
        ("same", 11, 100),
        ("same", -1, 100),
        ("same", 6, 100),
        ("same", 0, 100),
        ("same", 7, 2),
    ],
    ids=["other-epoch", "after-the-last-id", "negative-id", "gap-older-than-kept", "everything-since-the-start", "more-than-limit-missed"],
)
@pytest_twisted.ensureDeferred
async def test_sinceCannotRecover(makeStore: Callable[..., Store], epoch: str, afterId: int, limit: int) -> None:
    """
    C{since} answers C{None} (the position is gone) for another epoch, an id
    beyond the last one, a negative id, a gap older than what is kept, or
    more than C{limit} missed messages; next to it a recoverable position
    in the same store gives its messages.
    """
    store = makeStore(retain=3)
    await fill(store, "#dev", 1, 10)
    await within(store.prune(2000.0))
    # 8, 9, 10 are kept: after 7 is exactly recoverable
    assert ids(await within(store.since("#dev", store.epoch, 7, 100))) == [8, 9, 10]
    position = store.epoch if epoch == "same" else "x" + store.epoch
    assert await within(store.since("#dev", position, afterId, limit)) is None


@pytest_twisted.ensureDeferred
async def test_privateForFindsBothDirections(makeStore: Callable[..., Store]) -> None:
    """
    C{privateFor} gives the private messages a nick sent or received, with
    ids above C{afterId} (all with C{None}), whatever the case of the nick,
    oldest first and only the last C{limit}.
    """
    store = makeStore()
    for p in [
        pm("alice", "bob", "one", 10.0),
        pm("Bob", "carol", "two", 20.0),
        pm("carol", "alice", "three", 30.0),
        pm("carol", "BOB", "four", 40.0),
        pm("bob", "bob", "five", 50.0),
    ]:
        store.append(p)
    assert ids(await within(store.privateFor("BOB", None, 10))) == [1, 2, 4, 5]
    assert ids(await within(store.privateFor("bob", 0, 10))) == [1, 2, 4, 5]
    assert ids(await within(store.privateFor("bOb", 2, 10))) == [4, 5]
    assert ids(await within(store.privateFor("bob", 5, 10))) == []
    assert ids(await within(store.privateFor("bob", None, 2))) == [4, 5]
    assert ids(await within(store.privateFor("alice", None, 10))) == [1, 3]
    assert ids(await within(store.privateFor("dave", None, 10))) == []


@pytest_twisted.ensureDeferred
async def test_tokensRoundTrip(makeStore: Callable[..., Store]) -> None:
    """
    A saved token hash is in C{tokens()} under its nick key; saving again
    for the same nick replaces it.
    """
    store = makeStore()
    assert store.tokens() == {}
    await within(store.saveToken("alice", "h1"))
    await within(store.saveToken("bob", "h2"))
    assert store.tokens() == {"alice": "h1", "bob": "h2"}
    await within(store.saveToken("alice", "h3"))
    assert store.tokens() == {"alice": "h3", "bob": "h2"}


@pytest_twisted.ensureDeferred
async def test_pruneByCount(makeStore: Callable[..., Store]) -> None:
    """
    After pruning, a room keeps its last C{retain} messages and private
    messages their last ten times as many; rooms under the limit keep
    everything. Ids go on from the last one, not from what is kept.
    """
    store = makeStore(retain=3)
    await fill(store, "#dev", 1, 5)
    await fill(store, "#ops", 1, 2)
    await within(gatherResults([store.append(pm("alice", "bob", "p", 1.0)) for i in range(1, 36)]))
    await within(store.prune(2000.0))
    assert ids(await within(store.recent("#dev", 100))) == [3, 4, 5]
    assert ids(await within(store.recent("#ops", 100))) == [1, 2]
    assert ids(await within(store.privateFor("bob", None, 1000))) == list(range(6, 36))
    assert (store.lastId("#dev"), store.lastId("@private")) == (5, 35)
    await fill(store, "#dev", 6, 6)
    await within(store.prune(2000.0))
    assert ids(await within(store.recent("#dev", 100))) == [4, 5, 6]
    assert store.lastId("#dev") == 6


@pytest_twisted.ensureDeferred
async def test_pruneByAge(makeStore: Callable[..., Store]) -> None:
    """
    With C{retainDays}, pruning at time C{now} deletes the room and private
    messages older than that many days, keeps the younger ones, and answers
    how many it deleted. The room's last id stays, so the next message
    continues the sequence and a client that saw the last one is up to
    date, while one that missed pruned messages cannot resume.
    """
    day = 86400.0
    now = 100 * day
    store = makeStore(retainDays=2)
    await fill(store, "#dev", 1, 3, time=now - 3 * day)
    await fill(store, "#dev", 4, 5, time=now - 1 * day)
    await fill(store, "#old", 1, 2, time=now - 2.5 * day)
    store.append(pm("alice", "bob", "old", now - 5 * day))
    await within(store.append(pm("bob", "alice", "new", now - day)))
    assert await within(store.prune(now)) == 3 + 2 + 1
    assert ids(await within(store.recent("#dev", 100))) == [4, 5]
    assert await within(store.recent("#old", 100)) == []
    assert ids(await within(store.privateFor("alice", None, 100))) == [2]
    assert [store.lastId(r) for r in ("#dev", "#old", "@private")] == [5, 2, 2]
    assert await within(store.since("#old", store.epoch, 2, 100)) == []
    assert await within(store.since("#old", store.epoch, 1, 100)) is None
    assert (await within(store.append(msg(store, "#old", 3, time=now)))).id == 3
    assert ids(await within(store.recent("#old", 100))) == [3]
    assert store.lastId("#old") == 3
    assert await within(store.prune(now)) == 0


@pytest_twisted.ensureDeferred
async def test_noAgeLimitKeepsOldMessages(makeStore: Callable[..., Store]) -> None:
    """
    Without C{retainDays}, pruning deletes nothing by age, however old.
    """
    store = makeStore()
    await fill(store, "#dev", 1, 3, time=0.0)
    await within(store.append(pm("alice", "bob", "old", 0.0)))
    assert await within(store.prune(1e10)) == 0
    assert ids(await within(store.recent("#dev", 10))) == [1, 2, 3]
    assert ids(await within(store.privateFor("bob", None, 10))) == [1]


# == SQLite only ===============================================================


@pytest.fixture
def dbPath(tmp_path: Path) -> Path:
    return tmp_path / "chat.sqlite3"


def upd(store: Store, room: str, op: str, target: int, sender: str = "alice", text: str = "", emoji: str = "",
        on: bool = True, time: float = 2000.0) -> Update:
    """
    An update of message C{target}; no id (the store gives it one). An
    edit's mentions are computed as the service does.
    """
    return Update(room, 0, store.epoch, sender, op, target, text, time, emoji, on, findMentions(text))


@pytest_twisted.ensureDeferred
async def test_updatesTakeIdsAndFoldIntoTheirMessage(makeStore: Callable[..., Store]) -> None:
    """
    An update takes the next id of its room; the store fills in the start
    of the text before it and its author; recent() returns the messages
    only, as they are now, counting messages for its limit; since()
    returns messages and updates in id order; get() finds either.
    """
    store = makeStore()
    await fill(store, "#r", 1, 3)
    edit = await within(store.append(upd(store, "#r", EDIT, 1, text="m1 edited @bob")))
    await within(store.append(upd(store, "#r", REACT, 1, sender="bob", emoji="👍")))
    await within(store.append(upd(store, "#r", REACT, 1, sender="carol", emoji="👍")))
    await within(store.append(upd(store, "#r", REACT, 1, sender="Bob", emoji="👍", on=False)))
    await within(store.append(upd(store, "#r", DELETE, 2, sender="op")))
    assert (edit.id, edit.original, edit.author) == (4, "m1", "alice")
    recent = await within(store.recent("#r", 2))
    assert [(m.id, m.text, m.edited, m.deleted, m.reactions, m.mentions) for m in recent] == [
        (2, "", 0.0, True, None, ()),
        (3, "m3", 0.0, False, None, ()),
    ]
    [first] = await within(store.recent("#r", 1, before=2))
    assert (first.text, first.edited, first.reactions, first.mentions) == ("m1 edited @bob", 2000.0, {"👍": ["carol"]}, ("bob",))
    entries = await within(store.since("#r", store.epoch, 2, 100))
    assert [(e.kind, e.id) for e in entries] == [("message", 3)] + [("update", i) for i in range(4, 9)]
    assert [(e.op, e.target, e.sender) for e in entries[1:]] == [
        (EDIT, 1, "alice"), (REACT, 1, "bob"), (REACT, 1, "carol"), (REACT, 1, "Bob"), (DELETE, 2, "op")
    ]
    assert (await within(store.get("#r", 1))).text == "m1 edited @bob"
    assert (await within(store.get("#r", 5))).kind == "update"
    assert await within(store.get("#r", 99)) is None
    assert await within(store.unread("#r", "bob", 0)) == (2, 1)


@pytest_twisted.ensureDeferred
async def test_deletionRemovesTheTextOfTheMessageAndItsEdits(makeStore: Callable[..., Store]) -> None:
    """
    After a deletion, neither the message nor its earlier edits have text
    any more, and an edit that comes after it keeps none either; search
    does not find it.
    """
    store = makeStore()
    await fill(store, "#r", 1, 1)
    await within(store.append(upd(store, "#r", EDIT, 1, text="secret plans")))
    await within(store.append(upd(store, "#r", DELETE, 1)))
    late = await within(store.append(upd(store, "#r", EDIT, 1, text="more secrets")))
    assert late.text == ""
    entries = await within(store.since("#r", store.epoch, 0, 100))
    assert [(e.id, e.text) for e in entries] == [(1, ""), (2, ""), (3, ""), (4, "")]
    assert entries[0].deleted
    assert await within(store.search(["#r"], None, "secret", None, 10)) == []
    assert await within(store.search(["#r"], None, "m1", None, 10)) == []


@pytest_twisted.ensureDeferred
async def test_privateUpdates(makeStore: Callable[..., Store]) -> None:
    """
    Updates of private messages take ids of the private sequence, fold into
    the message, and come with the messages after a position.
    """
    store = makeStore()
    p = await within(store.append(pm("alice", "bob", "psst", 5.0)))
    u = await within(store.append(PrivateUpdate(0, "bob", "alice", REACT, p.id, "", 6.0, "👀")))
    assert (u.id, u.author, u.original) == (p.id + 1, "alice", "psst")
    [now] = await within(store.privateFor("alice", None, 10))
    assert (now.id, now.reactions) == (p.id, {"👀": ["bob"]})
    after = await within(store.privateFor("bob", 0, 10))
    assert [(e.kind, e.id) for e in after] == [("private", p.id), ("private-update", u.id)]
    assert (await within(store.getPrivate("bob", p.id))).reactions == {"👀": ["bob"]}


@pytest_twisted.ensureDeferred
async def test_readPositions(makeStore: Callable[..., Store]) -> None:
    store = makeStore()
    assert await within(store.reads("alice")) == {}
    await within(store.saveRead("alice", "#r", 4))
    await within(store.saveRead("alice", "#s", 1))
    await within(store.saveRead("alice", "#r", 2))
    assert await within(store.reads("alice")) == {"#r": 2, "#s": 1}


@pytest_twisted.ensureDeferred
async def test_search(makeStore: Callable[..., Store]) -> None:
    """
    A search finds the messages of the rooms asked whose words start with
    every word searched (case-insensitive), newest first, below C{before};
    with a nick, its private messages too.
    """
    store = makeStore()
    for i, (room, text) in enumerate([
        ("#a", "Hello World"), ("#a", "world peace"), ("#b", "hello worldwide"), ("#c", "hello world"),
        ("#a", "unrelated"), ("#a", 'quote" and * OR NEAR(x'),
    ]):
        await within(store.append(msg(store, room, i, text=text, time=100.0 + i)))
    await within(store.append(pm("alice", "bob", "hello world in private", 200.0)))
    await within(store.append(pm("carol", "dave", "hello world elsewhere", 201.0)))
    found = await within(store.search(["#a", "#b"], None, "hel WOR", None, 10))
    assert [(m.room, m.text) for m in found] == [("#b", "hello worldwide"), ("#a", "Hello World")]
    assert [m.text for m in await within(store.search(["#a"], None, "world", 2, 10))] == ["Hello World"]
    assert [m.text for m in await within(store.search(["#a", "#b"], None, "world", None, 1))] == ["hello worldwide"]
    found = await within(store.search(["#a"], "bob", "hello world", None, 10))
    assert [m.text for m in found] == ["hello world in private", "Hello World"]
    assert [m.text for m in await within(store.search(["#a"], None, 'quote" OR', None, 10))] == ['quote" and * OR NEAR(x']


@pytest_twisted.ensureDeferred
async def test_sqliteDeletedTextIsGoneFromTheFile(dbPath: Path) -> None:
    """
    A deleted message's text is not in the database file any more (nor
    its edits'), once the log is checkpointed: not hidden, removed.
    """
    store = openSQLite(dbPath)
    try:
        await within(store.append(msg(store, "#r", 1, text="zanzibar-plans-alpha")))
        await within(store.append(upd(store, "#r", EDIT, 1, text="zanzibar-plans-beta")))
        await within(store.append(pm("alice", "bob", "quixotic-private-note", 5.0)))
        p = (await within(store.privateFor("bob", None, 1)))[0]
        await within(store.append(upd(store, "#r", DELETE, 1)))
        await within(store.append(PrivateUpdate(0, "alice", "bob", DELETE, p.id, "", 6.0)))
        await within(store._call(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()))
    finally:
        await within(store.close())
    data = b"".join(f.read_bytes() for f in dbPath.parent.iterdir() if f.name.startswith(dbPath.name))
    for secret in (b"zanzibar-plans-alpha", b"zanzibar-plans-beta", b"quixotic-private-note"):
        assert secret not in data


@pytest_twisted.ensureDeferred
async def test_sqliteSearchIndexFollowsEditsDeletionsAndPruning(dbPath: Path) -> None:
    """
    The search index (contentless: rows are taken out with the text they
    were indexed with) follows edits, deletions and pruning, and stays
    consistent: what is found is what the messages say now.
    """
    store = openSQLite(dbPath, retainMessages=4)
    try:
        for i in range(1, 7):
            await within(store.append(msg(store, "#r", i, text="word%d common" % (i,))))
        await within(store.append(upd(store, "#r", EDIT, 5, text="changed common")))
        await within(store.append(upd(store, "#r", DELETE, 6)))
        await within(store.prune(0.0))
        found = await within(store.search(["#r"], None, "common", None, 10))
        # (retention counts the room's entries: 5 to 8 are kept, 6 deleted)
        assert [m.text for m in found] == ["changed common"]
        assert await within(store.search(["#r"], None, "word5", None, 10)) == []
        assert await within(store.search(["#r"], None, "word4", None, 10)) == []
        assert await within(store.search(["#r"], None, "word1", None, 10)) == []
        check = await within(store._call(lambda conn: conn.execute("INSERT INTO search (search) VALUES ('integrity-check')")))
        assert check is not None
    finally:
        await within(store.close())


#: the SQL of the database before schema 2 (as the code before issue #19 made it)
_OLD_CODE = "d98ba2b"


@pytest_twisted.ensureDeferred
async def test_sqliteOpensADatabaseOfTheOldCode(dbPath: Path, tmp_path: Path) -> None:
    """
    A database made by the code before updates and search (schema 1) opens:
    its messages, ids and epoch are kept, search finds its messages (the
    index is built at start-up), and updates work on its messages; an
    index that went missing is rebuilt the same way.
    """
    old = subprocess.run(
        ["git", "show", "%s:twisted_chat/stores/sqlite.py" % (_OLD_CODE,)],
        cwd=Path(__file__).parent, capture_output=True, text=True, check=True,
    ).stdout
    (tmp_path / "oldsqlite.py").write_text(old)
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "from oldsqlite import _open, SCHEMA_VERSION\n"
        "assert SCHEMA_VERSION == '1'\n"
        "conn = _open(%r, 'full')\n"
        "conn.execute(\"INSERT INTO messages VALUES ('#old', 1, 'alice', 'vintage hello', 1000.0, 0, NULL)\")\n"
        "conn.execute(\"INSERT INTO messages VALUES ('#old', 2, 'bob', 'classic reply', 1001.0, 0, 'r1')\")\n"
        "conn.execute(\"INSERT INTO private VALUES (1, 'alice', 'bob', 'alice', 'bob', 'old secret', 1002.0, NULL)\")\n"
        "conn.execute(\"INSERT INTO sequences VALUES ('#old', 2), ('@private', 1)\")\n"
        "print(conn.execute(\"SELECT value FROM meta WHERE key='epoch'\").fetchone()[0])\n"
        "conn.close()\n"
    ) % (str(tmp_path), str(dbPath))
    epoch = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip()
    for attempt, first in (("migrated", "vintage hello"), ("index dropped", "vintage hello again")):
        store = openSQLite(dbPath)
        try:
            assert store.epoch == epoch, attempt
            assert [(m.id, m.text) for m in await within(store.recent("#old", 10))] == [
                (1, first), (2, "classic reply")
            ]
            assert [m.text for m in await within(store.search(["#old"], "bob", "vint", None, 10))] == [first]
            assert [m.text for m in await within(store.search(["#old"], "bob", "secret", None, 10))] == ["old secret"]
            if attempt == "migrated":
                assert [(k, r) for k, r, _ in store.refs(0)] == [("bob", "r1")]
                edit = await within(store.append(upd(store, "#old", EDIT, 1, text="vintage hello again")))
                assert edit.id == 3
                await within(store._call(lambda conn: conn.execute("DROP TABLE search")))
            else:
                [m] = await within(store.recent("#old", 1, before=2))
                assert (m.text, m.edited) == ("vintage hello again", 2000.0)
        finally:
            await within(store.close())


@pytest_twisted.ensureDeferred
async def test_sqliteReopenKeepsEverything(dbPath: Path) -> None:
    """
    A new store on the same file (a restarted daemon) has the same epoch,
    the messages, private messages, last ids and tokens of the old one,
    including ids of pruned messages; a position from before the restart
    resumes exactly.
    """
    store = openSQLite(dbPath, retainMessages=4)
    await fill(store, "#dev", 1, 6)
    await fill(store, "#ops", 1, 2)
    await within(gatherResults([store.append(pm("alice", "bob", "p", 5.0)) for _ in range(8)]))
    await within(store.append(pm("alice", "bob", "psst", 5.0)))
    await within(store.saveToken("alice", "hash-a"))
    await within(store.prune(2000.0))
    epoch = store.epoch
    await within(store.close())

    again = openSQLite(dbPath, retainMessages=4)
    try:
        assert again.epoch == epoch
        assert [again.lastId(r) for r in ("#dev", "#ops", "@private", "#none")] == [6, 2, 9, 0]
        assert [(m.id, m.epoch, m.text) for m in await within(again.recent("#dev", 10))] == [
            (3, epoch, "m3"), (4, epoch, "m4"), (5, epoch, "m5"), (6, epoch, "m6")
        ]
        assert ids(await within(again.since("#ops", epoch, 1, 10))) == [2]
        assert [(p.id, p.text) for p in await within(again.privateFor("bob", 8, 10))] == [(9, "psst")]
        assert again.tokens() == {"alice": "hash-a"}
        assert (await within(again.append(msg(again, "#dev", 7)))).id == 7
        assert (await within(again.append(pm("bob", "alice", "re", 6.0)))).id == 10
        assert again.lastId("#dev") == 7
    finally:
        await within(again.close())


@pytest_twisted.ensureDeferred
async def test_sqliteRefsAfterReopen(dbPath: Path) -> None:
    """
    C{refs(sinceTime)} of a reopened store lists (sender key, ref, message)
    for the room and private messages stored with a ref after that time;
    messages without a ref, or older, are not listed.
    """
    store = openSQLite(dbPath)
    await within(gatherResults([
        store.append(Message("#dev", 0, store.epoch, "Alice", "old", 100.0), "r0"),
        store.append(Message("#dev", 0, store.epoch, "Alice", "hello", 200.0), "r1"),
        store.append(Message("#dev", 0, store.epoch, "bob", "no ref", 201.0)),
        store.append(Message("#ops", 0, store.epoch, "bob", "hi ops", 202.0, True), "r1"),
        store.append(pm("Bob", "alice", "psst", 203.0), "p1"),
    ]))
    epoch = store.epoch
    await within(store.close())

    again = openSQLite(dbPath)
    try:
        got = sorted(
            (key, ref, type(m).__name__, getattr(m, "room", None), m.id, m.sender, m.text, m.time)
            for key, ref, m in again.refs(150.0)
        )
        assert got == [
            ("alice", "r1", "Message", "#dev", 2, "Alice", "hello", 200.0),
            ("bob", "p1", "Private", None, 1, "Bob", "psst", 203.0),
            ("bob", "r1", "Message", "#ops", 1, "bob", "hi ops", 202.0),
        ]
        rooms = {m.room: m for _, _, m in again.refs(150.0) if isinstance(m, Message)}
        assert (rooms["#ops"].epoch, rooms["#ops"].action, rooms["#dev"].action) == (epoch, True, False)
        assert [p.recipient for _, _, p in again.refs(150.0) if isinstance(p, Private)] == ["alice"]
    finally:
        await within(again.close())


@pytest_twisted.ensureDeferred
async def test_sqliteBurstIsCommittedInBatches(dbPath: Path) -> None:
    """
    A burst of 20,000 appends is committed in far fewer transactions than
    messages; every Deferred fires, in append order, and all messages are
    in the file when it is reopened.
    """
    count = 20_000
    store = openSQLite(dbPath, retainMessages=count)
    order: list[int] = []
    pending = []
    for i in range(1, count + 1):
        d = store.append(Message("#burst", 0, store.epoch, "alice", "b%d" % (i,), float(i)))
        d.addCallback(lambda m, i=i: order.append((i, m.id)))
        pending.append(d)
    await within(gatherResults(pending), 60)
    assert order == [(i, i) for i in range(1, count + 1)]
    assert store.committed == count
    assert store.batches <= count // 100, "%d messages took %d commits" % (count, store.batches)
    await within(store.close())

    again = openSQLite(dbPath, retainMessages=count)
    try:
        assert ids(await within(again.recent("#burst", count))) == list(range(1, count + 1))
    finally:
        await within(again.close())


@pytest_twisted.ensureDeferred
async def test_sqliteCloseCommitsWhatWasQueued(dbPath: Path) -> None:
    """
    Closing right after appends (none of them confirmed yet) commits them
    all: their Deferreds succeed before the close's, and a reopened store
    has them. Appends after the close fail with L{StoreError}.
    """
    store = openSQLite(dbPath)
    events: list[str] = []
    for i in range(1, 101):
        store.append(msg(store, "#dev", i)).addCallback(lambda _, i=i: events.append("append %d" % (i,)))
    assert events == []
    await within(store.close().addCallback(lambda _: events.append("closed")))
    assert events == ["append %d" % (i,) for i in range(1, 101)] + ["closed"]
    late = store.append(msg(store, "#dev", 101))
    with pytest.raises(StoreError):
        await within(late)

    again = openSQLite(dbPath)
    try:
        assert ids(await within(again.recent("#dev", 1000))) == list(range(1, 101))
        assert again.lastId("#dev") == 100
    finally:
        await within(again.close())


@pytest_twisted.ensureDeferred
async def test_sqliteFailedBatchTakesNoIds(dbPath: Path) -> None:
    """
    When the database cannot commit (it is full), every append of the
    batch fails with L{StoreUnavailable} naming the file and the reason,
    and gives back the ids it took: once the database can write again, the
    rooms and the private messages go on from their last stored ids, with
    no hole, also after a reopen.
    """
    store = openSQLite(dbPath)
    try:
        await fill(store, "#dev", 1, 3)
        await within(store.append(pm("alice", "bob", "psst", 1.0)))
        await diskFull(store, True)
        long = "x" * 5000  # (a row larger than a page: it needs a new one)
        failed = [
            store.append(msg(store, "#dev", 4, long)),
            store.append(msg(store, "#ops", 1, long)),
            store.append(pm("alice", "bob", long, 2.0)),
            store.append(msg(store, "#dev", 5, long)),
        ]
        for d in failed:
            with pytest.raises(StoreUnavailable) as e:
                await within(d)
            assert str(e.value) == "%s: database or disk is full" % (dbPath,)
        assert [store.lastId(r) for r in ("#dev", "#ops", "@private")] == [3, 0, 1]
        await diskFull(store, False)
        later = await within(gatherResults([
            store.append(msg(store, "#dev", 4, "later")),
            store.append(msg(store, "#ops", 1, "first")),
            store.append(pm("bob", "alice", "back", 3.0)),
        ]))
        assert [m.id for m in later] == [4, 1, 2]
        assert [(m.id, m.text) for m in await within(store.recent("#dev", 10))][2:] == [(3, "m3"), (4, "later")]
        assert ids(await within(store.since("#dev", store.epoch, 3, 10))) == [4]
    finally:
        await within(store.close())

    again = openSQLite(dbPath)
    try:
        assert (await within(again.append(msg(again, "#dev", 5)))).id == 5
        assert (await within(again.append(pm("alice", "bob", "more", 4.0)))).id == 3
    finally:
        await within(again.close())


# -- files the SQLite store must not use --


def garbage(path: Path) -> str:
    path.write_bytes(b"this is not a database\n" * 500 + os.urandom(4096))
    return "file is not a database"


def foreignDatabase(path: Path) -> str:
    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.execute("INSERT INTO users VALUES ('root')")
    conn.commit()
    conn.close()
    return "is an SQLite database, but not a twisted-chat one"


def corruptedStore(path: Path) -> str:
    # like the store's own files: in WAL mode, with a meta table
    conn = sqlite3.connect(str(path))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE filler (x TEXT);"
        "INSERT INTO meta VALUES ('epoch', 'e1');"
    )
    conn.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,)] * 400)
    conn.commit()
    conn.close()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16384] = os.urandom(16384)
    path.write_bytes(bytes(data))
    return "malformed"


def directory(path: Path) -> str:
    path.mkdir()
    (path / "inside").write_bytes(b"x")
    return "is not a file"


@pytest.mark.parametrize("make", [garbage, foreignDatabase, corruptedStore, directory])
def test_sqliteRefusesUnusableFile(tmp_path: Path, make: Callable[[Path], str]) -> None:
    """
    A file that is not SQLite, another program's SQLite database, a
    corrupted database or a directory is refused with L{StoreError} naming
    the path and the reason, and the folder is left exactly as it was: the
    file byte for byte, no journal or WAL files beside it.
    """
    path = tmp_path / "chat.sqlite3"
    reason = make(path)
    before = snapshot(tmp_path)
    with pytest.raises(StoreError) as e:
        SQLiteStore(str(path))
    assert str(path) in str(e.value)
    assert reason in str(e.value)
    assert snapshot(tmp_path) == before


def test_sqliteRefusesAnUnwritableFolder(tmp_path: Path) -> None:
    """
    A database to be created in a folder the process cannot write to is
    refused with L{StoreError} saying so, and nothing is created.
    """
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        path = folder / "chat.sqlite3"
        code = (
            "import sys\n"
            "from twisted_chat.stores.sqlite import SQLiteStore\n"
            "from twisted_chat.stores.sqlite_schema import StoreError\n"
            "try:\n"
            "    SQLiteStore(sys.argv[1])\n"
            "except StoreError as e:\n"
            "    print(e)\n"
            "else:\n"
            "    print('opened')\n"
        )
        # In a child process: the check is about this process's rights.
        out = subprocess.run(
            [*unprivileged(), sys.executable, "-c", code, str(path)],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout
        assert out == "cannot create %s: folder %s is not writable\n" % (path, folder)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)
