# -*- test-case-name: tests.stores.test_store -*-
"""
The SQLite message store (the default).

All database work runs in one dedicated thread, never in the reactor.
Appends are queued; the thread takes everything queued at once and commits it
in one transaction, so a burst of messages costs one commit, not one each.
The thread gives the messages of a batch their ids, in queue order, as it
commits them; a batch that fails to commit gives its ids back, so a room's
ids have no holes whatever fails. Reads go through the same queue, so a
read sees every append queued before it. Deferreds fire in the reactor
thread, in queue order, so the service delivers messages in id order once
they are durable.

Failures the operator has to fix outside the daemon (the disk is full, an
I/O error, the database stayed locked) come back as L{StoreUnavailable}.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat.core.errors import FailureLog, StoreUnavailable
from twisted_chat.core.events import Message, Private
from twisted_chat.core.interfaces import IMessageStore
from twisted_chat.stores.sqlite_queries import StoreQueries
from twisted_chat.stores.sqlite_rows import MESSAGE_ROW, PRIVATE_ROW, insertRows
from twisted_chat.stores.sqlite_schema import StoreError, openDatabase
from twisted_chat.stores.sqlite_updates import storeUpdate

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorFromThreads

_STOP = object()


#: primary SQLite result codes of failures that are not bugs: the disk, the
#: file system or another process is in the way (see sqlite.org/rescode.html)
_OPERATIONAL = frozenset({
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_NOMEM,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL,
})  # fmt: skip


def _failure(path: str) -> Failure:
    """
    The exception being handled as a Failure: an operational SQLite error
    (see L{_OPERATIONAL}) as L{StoreUnavailable} saying why, anything else
    as it is, with its traceback.
    """
    f = Failure()
    e = f.value
    if isinstance(e, sqlite3.Error) and (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF in _OPERATIONAL:
        return Failure(StoreUnavailable("%s: %s" % (path, e)))
    return f


@implementer(IMessageStore)
class SQLiteStore(StoreQueries):
    """
    Messages in an SQLite file; see the module docstring.

    C{retainMessages} per room and C{retainDays} bound what is kept;
    L{prune} enforces both (the service calls it periodically).
    """

    _log = Logger()

    def __init__(
        self,
        path: str,
        reactor: IReactorFromThreads | None = None,
        retainMessages: int = 10000,
        retainDays: float | None = None,
        sync: str = "full",
        batchMax: int = 2000,
        fireBudget: float = 0.01,
        groupWait: float = 0.0005,
    ) -> None:
        self.path = path
        self.retainMessages = retainMessages
        self.retainDays = retainDays
        self.batchMax = batchMax
        #: under a steady stream of messages (a commit ended less than
        #: C{groupBusy} seconds ago) the thread waits C{groupWait} seconds
        #: for more before it commits: fewer transactions, each synced once
        self.groupWait = groupWait
        self.groupBusy = 0.002
        self._lastCommit = 0.0
        self._reactor = reactor
        self._conn = openDatabase(path, sync)
        conn = self._conn
        self.epoch: str = conn.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()[0]
        #: the last id committed per room (and "@private"), in the reactor
        self._last: dict[str, int] = dict(conn.execute("SELECT name, last_id FROM sequences").fetchall())
        #: the same, for the database thread only: it assigns ids from it
        self._seq: dict[str, int] = dict(self._last)
        #: rooms with messages, stored or queued (a room not in it has no
        #: history: no need to ask the thread)
        self._rooms: set[str] = set(self._last)
        #: room -> its number in the search index (the database thread's)
        self._roomNo: dict[str, int] = dict(conn.execute("SELECT name, no FROM search_rooms").fetchall())
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed: Deferred[None] | None = None
        self.committed = 0
        self.batches = 0
        #: results that arrived from the thread, to be fired in the reactor
        #: thread in arrival order: (Deferred, result, is it a failure)
        self._done: deque[tuple[Deferred[Any], Any, bool]] = deque()
        self._draining = False
        #: seconds of callbacks (acks, broadcasts) run per reactor turn at
        #: most, so that a big batch does not stall the reactor
        self.fireBudget = fireBudget
        self._failures = FailureLog(self._log, lambda: self.reactor)  # type: ignore[arg-type,return-value]
        #: messages that could not be committed since the last commit that
        #: could (for the line saying the store works again)
        self._lost = 0

    # -- life cycle --

    @property
    def reactor(self) -> IReactorFromThreads:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor  # type: ignore[assignment]
        return self._reactor  # type: ignore[return-value]

    def open(self) -> Deferred[None]:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="twisted-chat-sqlite", daemon=True)
            self._thread.start()
        return succeed(None)

    def close(self) -> Deferred[None]:
        """
        Commit everything queued, stop the thread and close the database.
        """
        if self._closed is not None:
            return self._closed
        d: Deferred[None] = Deferred()
        self._closed = d
        if self._thread is None:
            self._conn.close()
            d.callback(None)
        else:
            self._queue.put((_STOP, d))

        def closed(result: object) -> object:
            self._failures.flush()
            return result

        return d.addBoth(closed)

    # -- the database thread --

    def _run(self) -> None:
        q = self._queue
        conn = self._conn
        item = q.get()
        while True:
            if item[0] == "append":
                # Everything queued behind it goes into the same transaction.
                writes = [item[1:]]
                item = self._following(writes)
                if (
                    item is None
                    and self.groupWait > 0
                    and len(writes) < self.batchMax
                    and time.monotonic() - self._lastCommit < self.groupBusy
                ):
                    # Messages keep coming (the last commit was a moment
                    # ago): wait a little for the next ones, to commit (and
                    # sync) them together rather than one by one.
                    time.sleep(self.groupWait)
                    item = self._following(writes)
                self._commit(conn, writes)
                self._lastCommit = time.monotonic()
                if item is None:
                    item = q.get()
                continue
            if item[0] is _STOP:
                conn.close()
                self.reactor.callFromThread(self._arrived, [(item[1], None, False)])
                return
            _, fn, d = item
            try:
                result = fn(conn)
            except Exception:
                f = _failure(self.path)
                if conn.in_transaction:
                    # (a prune that failed half way must not leave its
                    # transaction open: every later BEGIN would fail)
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                self.reactor.callFromThread(self._arrived, [(d, f, True)])
            else:
                self.reactor.callFromThread(self._arrived, [(d, result, False)])
            item = q.get()

    def _following(self, writes: list[tuple[Any, str | None, Deferred[Any]]]) -> Any:
        """
        Add the appends queued now to C{writes} (up to C{batchMax}); the
        first other request queued behind them, if any.
        """
        q = self._queue
        while len(writes) < self.batchMax:
            try:
                following = q.get_nowait()
            except queue.Empty:
                return None
            if following[0] != "append":
                return following
            writes.append(following[1:])
        return None

    def _commit(self, conn: sqlite3.Connection, writes: list[tuple[Any, str | None, Deferred[Any]]]) -> None:
        """
        Give the messages of C{writes} their ids, in order, and commit them
        in one transaction (with their search index rows, and what updates
        change); if that fails, give the ids back.
        """
        #: the last id of each sequence this batch takes ids from, before it
        before: dict[str, int] = {}
        #: rooms numbered by this batch (for the search index)
        numbered: list[str] = []
        steps = self._number(writes, before, numbered)
        seq = self._seq
        last = {key: seq[key] for key in before}
        try:
            self._write(conn, steps, numbered, last)
        except Exception:
            f = _failure(self.path)
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            # Nothing of the batch is stored: its ids are not taken.
            seq.update(before)
            for room in numbered:
                del self._roomNo[room]
            for msg, _, _ in writes:
                msg.id = 0
            self.reactor.callFromThread(self._fire, writes, f, last)
            return
        self.reactor.callFromThread(self._fire, writes, None, last)

    def _number(
        self, writes: list[tuple[Any, str | None, Deferred[Any]]], before: dict[str, int], numbered: list[str]
    ) -> list[Any]:
        """
        Give the messages of C{writes} their ids, in order, noting in
        C{before} the last id of each sequence they take ids from (before
        them), and in C{numbered} the rooms they give a number in the search
        index; return their rows as steps: runs of plain rows (room
        messages, private messages, search index rows), and updates between
        them, in queue order.
        """
        seq = self._seq
        numbers = self._roomNo
        #: runs of plain rows, and updates between them, in queue order
        steps: list[Any] = []
        rooms: list[tuple[Any, ...]] = []
        privates: list[tuple[Any, ...]] = []
        search: list[tuple[int, str]] = []
        for msg, ref, _ in writes:
            if isinstance(msg, Private):
                n = seq.get("@private", 0)
                if "@private" not in before:
                    before["@private"] = n
                msg.id = seq["@private"] = n + 1
                if type(msg) is Private:
                    privates.append(
                        (n + 1, msg.sender, msg.recipient, msg.sender.lower(), msg.recipient.lower(), msg.text,
                         msg.time, ref, msg.replyTo)
                    )
                    search.append((n + 1, msg.text))
                else:
                    steps.append((rooms, privates, search))
                    rooms, privates, search = [], [], []
                    steps.append((msg, ref))
            else:
                room = msg.room
                n = seq.get(room, 0)
                if room not in before:
                    before[room] = n
                msg.id = seq[room] = n + 1
                if type(msg) is Message:
                    no = numbers.get(room)
                    if no is None:
                        no = numbers[room] = len(numbers) + 1
                        numbered.append(room)
                    rooms.append(
                        (room, n + 1, msg.sender, msg.text, msg.time, int(msg.action), ref, msg.replyTo,
                         " ".join(msg.mentions) if msg.mentions else "")
                    )
                    search.append(((no << 32) + n + 1, msg.text))
                else:
                    steps.append((rooms, privates, search))
                    rooms, privates, search = [], [], []
                    steps.append((msg, ref))
        steps.append((rooms, privates, search))
        return steps

    def _write(self, conn: sqlite3.Connection, steps: list[Any], numbered: list[str], last: dict[str, int]) -> None:
        """
        Write the rows of C{steps} (see L{_number}), the search index numbers
        of the rooms C{numbered} and the sequences' C{last} ids, in one
        transaction.
        """
        numbers = self._roomNo
        conn.execute("BEGIN")
        for room in numbered:
            conn.execute("INSERT INTO search_rooms VALUES (?, ?)", (room, numbers[room]))
        for step in steps:
            if len(step) == 2:
                storeUpdate(conn, step[0], step[1], self.epoch, self._roomNo)
                continue
            rows, prows, srows = step
            # (a message's own columns: the update columns keep their defaults)
            if rows:
                insertRows(conn, MESSAGE_ROW, 9, rows)
            if prows:
                insertRows(conn, PRIVATE_ROW, 9, prows)
            if srows:
                insertRows(conn, "search(rowid, text)", 2, srows)
        conn.executemany(
            "INSERT INTO sequences VALUES (?, ?) ON CONFLICT(name) DO UPDATE "
            "SET last_id = max(last_id, excluded.last_id)",
            list(last.items()),
        )
        conn.execute("COMMIT")

    def _fire(self, writes: list[tuple[Any, str | None, Deferred[Any]]], failure: Failure | None, last: dict[str, int]) -> None:
        if failure is None:
            self.committed += len(writes)
            self.batches += 1
            self._last.update(last)
            if self._lost:
                self._failures.flush()
                self._log.info(
                    "the database stores messages again ({lost} could not be stored)", lost=self._lost
                )
                self._lost = 0
            self._arrived([(d, msg, False) for msg, _, d in writes])
        else:
            self._lost += len(writes)
            self._failures.failure("committing a batch of {count} messages failed", failure, count=len(writes))
            self._arrived([(d, failure, True) for _, _, d in writes])

    def _arrived(self, results: list[tuple[Deferred[Any], Any, bool]]) -> None:
        """
        Results from the thread, in its order: fire them in that order, a
        time budget's worth per reactor turn.
        """
        self._done.extend(results)
        if not self._draining:
            self._drain()

    def _drain(self) -> None:
        """
        Fire queued results for at most C{fireBudget} seconds (at least one),
        then let the reactor serve others and go on in its next turn. Acks
        of a big batch each broadcast a message, so firing them all at once
        could stall the reactor for hundreds of milliseconds.
        """
        self._draining = True
        done = self._done
        clock = time.perf_counter
        deadline = clock() + self.fireBudget
        while done:
            d, result, failed = done.popleft()
            if failed:
                d.errback(result)
            else:
                d.callback(result)
            if clock() > deadline:
                break
        if done:
            self.reactor.callLater(0, self._drain)  # type: ignore[attr-defined]
        else:
            self._draining = False

    def _call(self, fn: Callable[[sqlite3.Connection], Any]) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        if self._closed is not None:
            d.errback(Failure(StoreError("the store is closed")))
            return d
        self._queue.put(("call", fn, d))
        return d

    def ping(self) -> Deferred[None]:
        """
        Fires once the database thread has run a trivial query: the store
        is alive and not stuck.
        """
        return self._call(lambda conn: conn.execute("SELECT 1").fetchone() and None)

    # -- IMessageStore --

    def lastId(self, room: str) -> int:
        return self._last.get(room, 0)

    def append(self, message: Message | Private, ref: str | None = None) -> Deferred[Any]:
        """
        Queue C{message} to be stored; the database thread gives it its id
        (C{message.id}) as it commits it, and the Deferred fires with it.
        """
        d: Deferred[Any] = Deferred()
        if self._closed is not None:
            d.errback(Failure(StoreError("the store is closed")))
            return d
        if isinstance(message, Message):
            self._rooms.add(message.room)
        self._queue.put(("append", message, None if ref is None else str(ref), d))
        return d
