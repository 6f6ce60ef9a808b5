"""
What users and operators see when the SQLite store cannot write (its disk
is full), through the real service, a real database file and the line
chat: the failed messages are refused and take no id (a room's ids stay
1, 2, 3, … and a resume across the failure recovers), refs stay
idempotent, and the log says what happened in a few lines without a
traceback. Then L{FailureLog}, which makes those few lines, on its own.

The database is made "full" with C{PRAGMA max_page_count} set to its
current size on the store's own connection: a write that needs a new page
fails with SQLITE_FULL ("database or disk is full"), as on a full disk.
A message of 4,090 characters always needs a new page (its row is larger
than a page), so every such message fails while the database is full.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, Logger, capturedLogs, formatEvent
from twisted.python.failure import Failure

from twisted_chat.core.errors import FailureLog, StoreUnavailable
from twisted_chat.core.events import History
from twisted_chat.frontends.line import LineChatFactory
from twisted_chat.core.service import ChatService
from twisted_chat.stores.sqlite import SQLiteStore

from tests.support.fakes import WaitingClient, within
from tests.support.lines import MemoryLine
from tests.support.sqlite import diskFull

#: a message that needs a page of its own: it cannot be stored while full
LONG = "x" * 4090


class Site:
    """
    A chat service on an SQLite store in C{folder}, as a daemon runs it (its
    clock a L{Clock}, so the log's intervals are the test's to advance).
    """

    def __init__(self, folder: Path) -> None:
        from twisted.internet import reactor

        self.store = SQLiteStore(str(folder / "chat.sqlite3"), reactor)
        self.clock = Clock()
        self.service = ChatService(store=self.store, clock=self.clock, pruneInterval=0)
        self.service.startService()

    async def enter(self, nick: str, room: str, since: tuple[str, int] | None = None) -> tuple[WaitingClient, History]:
        """
        Connect C{nick} and join C{room} (resuming after C{since}); return
        the client and the history it got.
        """
        client = WaitingClient()
        client.member = self.service.connect(client, nick, peer="test")
        history = client.next(lambda e: isinstance(e, History) and e.room == room)
        client.member.join(room, since)
        return client, await history

    async def stop(self) -> None:
        if self.service.running:
            await within(self.service.stopService())


@pytest_twisted.async_yield_fixture
async def site(tmp_path: Path) -> AsyncIterator[Callable[[], Site]]:
    """
    C{site()}: a running service on the store in C{tmp_path} (a second call
    after stopping the first is the daemon restarted); stopped in teardown.
    """
    made: list[Site] = []

    def make() -> Site:
        made.append(Site(tmp_path))
        return made[-1]

    yield make
    for s in made:
        await s.stop()


async def refused(d: Deferred[Any]) -> StoreUnavailable:
    with pytest.raises(StoreUnavailable) as e:
        await within(d)
    return e.value


@pytest_twisted.ensureDeferred
async def test_failedWritesTakeNoIds(site: Callable[[], Site]) -> None:
    """
    Messages said while the disk is full are refused, saying why, and take
    no id: the next message after space returns continues the room's ids
    (and the private messages') with no hole, a member who left before the
    failure resumes after it with C{recovered: true} and exactly the
    messages stored, and the same holds after a restart.
    """
    s = site()
    alice, _ = await s.enter("alice", "#dev")
    bob, _ = await s.enter("bob", "#dev")
    for i in (1, 2, 3):
        await within(alice.member.say("before %d" % (i,)))
    first = await within(alice.member.private("bob", "psst"))
    epoch = s.store.epoch
    bob.member.part("#dev")

    await diskFull(s.store, True)
    for _ in range(3):
        why = await refused(alice.member.say(LONG))
        assert "database or disk is full" in str(why)
    await refused(alice.member.private("bob", LONG))
    await diskFull(s.store, False)

    after = await within(alice.member.say("after"))
    private = await within(alice.member.private("bob", "again"))
    assert (after.id, first.id, private.id) == (4, 1, 2)
    assert alice.messages("id", "text") == [(1, "before 1"), (2, "before 2"), (3, "before 3"), (4, "after")]
    _, resumed = await s.enter("carol", "#dev", since=(epoch, 3))
    assert (resumed.recovered, [(m.id, m.text) for m in resumed.messages]) == (True, [(4, "after")])

    await s.stop()
    s = site()
    dave, resumed = await s.enter("dave", "#dev", since=(epoch, 2))
    assert (resumed.recovered, [m.id for m in resumed.messages]) == (True, [3, 4])
    assert (await within(dave.member.say("restarted"))).id == 5


@pytest_twisted.ensureDeferred
async def test_aRefWhoseFirstTryFailedIsStoredAnew(site: Callable[[], Site]) -> None:
    """
    A message refused while the disk is full and resent with the same ref
    once space is back is stored (with the next id, no hole before it);
    sent again with that ref, before or after a restart, it is answered
    with that first id and not stored again.
    """
    s = site()
    alice, _ = await s.enter("alice", "#dev")
    await within(alice.member.say("one", ref="r0"))
    await diskFull(s.store, True)
    await refused(alice.member.say(LONG, ref="r1"))
    await refused(alice.member.say(LONG, ref="r1"))
    await diskFull(s.store, False)
    stored = await within(alice.member.say(LONG, ref="r1"))
    again = await within(alice.member.say(LONG, ref="r1"))
    assert (stored.id, again.id) == (2, 2)
    await s.stop()

    s = site()
    alice, history = await s.enter("alice", "#dev")
    assert (await within(alice.member.say(LONG, ref="r1"))).id == 2
    assert (await within(alice.member.say("one", ref="r0"))).id == 1
    assert [m.id for m in history.messages] == [1, 2]
    assert (await within(alice.member.say("three"))).id == 3


def logged(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """
    The warnings and worse, and all the store's lines, as (level, text);
    the store's summaries say "in T s" (they count real seconds).
    """
    out = []
    for e in events:
        fromStore = e["log_namespace"].startswith("twisted_chat.stores.sqlite")
        if e["log_level"] >= LogLevel.warn or fromStore:
            text = formatEvent(e)
            out.append((e["log_level"].name, re.sub(r" [\d.]+ s\)$", " T s)", text) if fromStore else text))
    return out


@pytest_twisted.ensureDeferred
async def test_aFullDiskIsLoggedInAFewLinesWithoutTraceback(site: Callable[[], Site]) -> None:
    """
    While the disk is full, every line typed in the line chat is answered
    with an error; the log says what failed and why in one line from the
    store and one from the service, without a traceback, then how many
    more failed, and that the database stores messages again once it does.
    """
    s = site()
    path = s.store.path
    user = MemoryLine(LineChatFactory(s.service, clock=s.clock))
    await diskFull(s.store, True)
    user.lines()
    with capturedLogs() as events:
        for _ in range(5):
            user.protocol.dataReceived(LONG.encode() + b"\n")
            # (answered once the store's earlier results have come back)
            await within(s.store.ping())
            assert user.lines() == ["!!! message not stored (server error): please try again"]
        await diskFull(s.store, False)
        user.protocol.dataReceived(b"back\n")
        await within(s.store.ping())
        assert user.lines() == ["#lobby <%s> back" % (user.protocol.member.nick,)]  # type: ignore[union-attr]
        s.clock.advance(10)
    full = "%s: database or disk is full" % (path,)
    assert [e for e in events if "log_failure" in e] == []
    assert logged(events) == [
        ("warn", "committing a batch of 1 messages failed: " + full),
        ("warn", "storing a message failed: " + full),
        ("warn", "committing a batch of 1 messages failed: %s (and 4 more times in T s)" % (full,)),
        ("info", "the database stores messages again (5 could not be stored)"),
        ("warn", "storing a message failed: %s (and 4 more times in 10 s)" % (full,)),
    ]


# == FailureLog ================================================================


def unavailable(why: str = "disk full") -> Failure:
    return Failure(StoreUnavailable(why))


def lines(events: list[dict[str, Any]]) -> list[str]:
    return [formatEvent(e) for e in events]


def test_failureLogSaysAnExpectedFailureInOneLine() -> None:
    """
    A L{StoreUnavailable} is one warning line, C{FORMAT: REASON}, without a
    traceback; its repeats within the interval are one line at its end
    with their number (and the last one's fields and reason); while they go
    on, one such line per interval; after an interval without any, the
    next failure is a line of its own again.
    """
    clock = Clock()
    log = FailureLog(Logger(namespace="test"), lambda: clock, interval=10.0)
    with capturedLogs() as events:
        log.failure("history of {room} failed", unavailable(), room="#a")
        for room in ("#b", "#c"):
            clock.advance(3)
            log.failure("history of {room} failed", unavailable("gone"), room=room)
        log.failure("saving the token of {nick} failed", unavailable(), nick="bob")
        clock.advance(4)
        clock.advance(5)
        log.failure("history of {room} failed", unavailable(), room="#d")
        clock.advance(5)
        clock.advance(10)
        clock.advance(10)
        log.failure("history of {room} failed", unavailable(), room="#e")
    assert lines(events) == [
        "history of #a failed: disk full",
        "saving the token of bob failed: disk full",
        "history of #c failed: gone (and 2 more times in 10 s)",
        "history of #d failed: disk full (and 1 more times in 10 s)",
        "history of #e failed: disk full",
    ]
    assert {e["log_level"] for e in events} == {LogLevel.warn}
    assert [e for e in events if "log_failure" in e] == []


def test_failureLogTracesUnexpectedFailures() -> None:
    """
    Any other failure is a bug: logged as critical with its traceback,
    every time, repeats or not.
    """
    clock = Clock()
    log = FailureLog(Logger(namespace="test"), lambda: clock)
    with capturedLogs() as events:
        for _ in range(2):
            try:
                1 / 0
            except ZeroDivisionError:
                log.failure("history of {room} failed", Failure(), room="#a")
    assert lines(events) == ["history of #a failed"] * 2
    assert [e["log_level"] for e in events] == [LogLevel.critical] * 2
    assert [e["log_failure"].type for e in events] == [ZeroDivisionError] * 2
    assert clock.getDelayedCalls() == []


def test_failureLogFlushSaysWhatItCounted() -> None:
    """
    C{flush} (on shutdown, or when the store works again) says the repeats
    counted so far and stops waiting; the next failure is a line of its own.
    """
    clock = Clock()
    log = FailureLog(Logger(namespace="test"), lambda: clock)
    with capturedLogs() as events:
        log.unavailable("storing a message failed", "disk full")
        log.unavailable("storing a message failed", "disk full")
        log.unavailable("pruning failed", "locked")
        clock.advance(3)
        log.flush()
        assert clock.getDelayedCalls() == []
        log.unavailable("storing a message failed", "disk full")
    assert lines(events) == [
        "storing a message failed: disk full",
        "pruning failed: locked",
        "storing a message failed: disk full (and 1 more times in 3 s)",
        "storing a message failed: disk full",
    ]

