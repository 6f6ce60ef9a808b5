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

import os
import queue
import secrets
import sqlite3
import threading
import time
from collections import deque
from itertools import chain
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat.core.errors import FailureLog, StoreUnavailable
from twisted_chat.core.events import Message, Private
from twisted_chat.core.interfaces import IMessageStore, resumePosition

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorFromThreads

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sequences (name TEXT PRIMARY KEY, last_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL,
    id INTEGER NOT NULL,
    sender TEXT NOT NULL,
    text TEXT NOT NULL,
    time REAL NOT NULL,
    action INTEGER NOT NULL DEFAULT 0,
    ref TEXT,
    PRIMARY KEY (room, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_time ON messages (time);
CREATE TABLE IF NOT EXISTS private (
    id INTEGER PRIMARY KEY,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    sender_key TEXT NOT NULL,
    recipient_key TEXT NOT NULL,
    text TEXT NOT NULL,
    time REAL NOT NULL,
    ref TEXT
);
CREATE INDEX IF NOT EXISTS private_recipient ON private (recipient_key, id);
CREATE INDEX IF NOT EXISTS private_sender ON private (sender_key, id);
CREATE INDEX IF NOT EXISTS private_time ON private (time);
CREATE TABLE IF NOT EXISTS nicks (nick_key TEXT PRIMARY KEY, token_hash TEXT NOT NULL);
"""

_STOP = object()

#: SQLite's smallest default limit of ? parameters in one statement
_MAX_PARAMETERS = 999
_INSERT_SQL: dict[tuple[str, int, int], str] = {}


def _insertRows(conn: sqlite3.Connection, table: str, width: int, rows: list[tuple[Any, ...]]) -> None:
    """
    INSERT C{rows} into C{table} with a few multi-row statements (chunks of
    powers of two, so the statement cache holds a handful of SQL strings).

    executemany() runs one statement per row and releases and re-takes the
    GIL around each; while the reactor thread is busy, every re-take waits
    for its switch interval (5 ms), so a batch of a thousand rows could take
    seconds. One statement per chunk of up to 128 rows takes it a few times.
    """
    biggest = 1
    while biggest * 2 * width <= _MAX_PARAMETERS:
        biggest *= 2
    i, n = 0, len(rows)
    size = biggest
    while i < n:
        while size > n - i:
            size //= 2
        key = (table, width, size)
        sql = _INSERT_SQL.get(key)
        if sql is None:
            one = "(" + ", ".join(["?"] * width) + ")"
            sql = _INSERT_SQL[key] = "INSERT INTO %s VALUES %s" % (table, ", ".join([one] * size))
        conn.execute(sql, list(chain.from_iterable(rows[i : i + size])))
        i += size


class StoreError(Exception):
    """
    The database cannot be used; the message says why, for people.
    """


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


def _open(path: str, sync: str) -> sqlite3.Connection:
    """
    Open (or create) the database at C{path} and check it is ours; raise
    L{StoreError} without changing anything if it is not usable.
    """
    exists = os.path.exists(path)
    if exists and not os.path.isfile(path):
        raise StoreError("%s is not a file" % (path,))
    folder = os.path.dirname(os.path.abspath(path))
    if not exists and not os.access(folder, os.W_OK):
        raise StoreError("cannot create %s: folder %s is not writable" % (path, folder))
    if exists and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError("cannot read and write %s: permission denied" % (path,))
    conn = None
    try:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if exists:
            # Reading the schema fails at once on a file that is not SQLite.
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "meta" not in tables:
                conn.close()
                raise StoreError("%s is an SQLite database, but not a twisted-chat one" % (path,))
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                conn.close()
                raise StoreError("%s is corrupted: %s" % (path, check))
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=%s" % ("FULL" if sync == "full" else "NORMAL",))
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        if conn.execute("SELECT value FROM meta WHERE key='epoch'").fetchone() is None:
            conn.execute("INSERT INTO meta VALUES ('epoch', ?)", (secrets.token_hex(4),))
            conn.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as e:
        if conn is not None:
            # Closed now, not whenever it is collected: it removes the
            # -wal and -shm files that reading a WAL-mode file created.
            conn.close()
        raise StoreError("cannot use %s: %s" % (path, e))
    return conn


def checkStore(path: str) -> None:
    """
    Check, without changing anything, that C{path} can be used as the
    database: raise L{StoreError} saying why not.
    """
    if not os.path.exists(path):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.access(folder, os.W_OK):
            raise StoreError("cannot create %s: folder %s is not writable" % (path, folder))
        return
    if not os.path.isfile(path):
        raise StoreError("%s is not a file" % (path,))
    if not os.access(path, os.R_OK | os.W_OK):
        raise StoreError("cannot read and write %s: permission denied" % (path,))
    try:
        conn = sqlite3.connect("file:%s?mode=ro" % (os.path.abspath(path),), uri=True)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "meta" not in tables:
                raise StoreError("%s is an SQLite database, but not a twisted-chat one" % (path,))
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StoreError("%s is corrupted: %s" % (path, check))
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        raise StoreError("cannot use %s: %s" % (path, e))


@implementer(IMessageStore)
class SQLiteStore:
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
        self._conn = _open(path, sync)
        conn = self._conn
        self.epoch: str = conn.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()[0]
        #: the last id committed per room (and "@private"), in the reactor
        self._last: dict[str, int] = dict(conn.execute("SELECT name, last_id FROM sequences").fetchall())
        #: the same, for the database thread only: it assigns ids from it
        self._seq: dict[str, int] = dict(self._last)
        #: rooms with messages, stored or queued (a room not in it has no
        #: history: no need to ask the thread)
        self._rooms: set[str] = set(self._last)
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
        in one transaction; if that fails, give the ids back.
        """
        seq = self._seq
        #: the last id of each sequence this batch takes ids from, before it
        before: dict[str, int] = {}
        rooms = []
        privates = []
        for msg, ref, _ in writes:
            if type(msg) is Private:
                n = seq.get("@private", 0)
                if "@private" not in before:
                    before["@private"] = n
                msg.id = seq["@private"] = n + 1
                privates.append(
                    (n + 1, msg.sender, msg.recipient, msg.sender.lower(), msg.recipient.lower(), msg.text, msg.time, ref)
                )
            else:
                room = msg.room
                n = seq.get(room, 0)
                if room not in before:
                    before[room] = n
                msg.id = seq[room] = n + 1
                rooms.append((room, n + 1, msg.sender, msg.text, msg.time, int(msg.action), ref))
        last = {key: seq[key] for key in before}
        try:
            conn.execute("BEGIN")
            if rooms:
                _insertRows(conn, "messages", 7, rooms)
            if privates:
                _insertRows(conn, "private", 8, privates)
            conn.executemany(
                "INSERT INTO sequences VALUES (?, ?) ON CONFLICT(name) DO UPDATE "
                "SET last_id = max(last_id, excluded.last_id)",
                list(last.items()),
            )
            conn.execute("COMMIT")
        except Exception:
            f = _failure(self.path)
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            # Nothing of the batch is stored: its ids are not taken.
            seq.update(before)
            for msg, _, _ in writes:
                msg.id = 0
            self.reactor.callFromThread(self._fire, writes, f, last)
            return
        self.reactor.callFromThread(self._fire, writes, None, last)

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
        if type(message) is Message:
            self._rooms.add(message.room)
        self._queue.put(("append", message, None if ref is None else str(ref), d))
        return d

    def _messages(self, rows: list[tuple[Any, ...]], room: str) -> list[Message]:
        epoch = self.epoch
        return [Message(room, r[0], epoch, r[1], r[2], r[3], bool(r[4])) for r in rows]

    def recent(self, room: str, limit: int, before: int | None = None) -> Deferred[list[Message]]:
        if limit <= 0 or room not in self._rooms:
            # Nothing was ever appended to this room (an append notes its
            # room at once, before it is queued): no need to ask the thread.
            return succeed([])

        def query(conn: sqlite3.Connection) -> list[Message]:
            if before is None:
                rows = conn.execute(
                    "SELECT id, sender, text, time, action FROM messages WHERE room = ? "
                    "ORDER BY id DESC LIMIT ?",
                    (room, limit),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT id, sender, text, time, action FROM messages WHERE room = ? AND id < ? "
                    "ORDER BY id DESC LIMIT ?",
                    (room, before, limit),
                ).fetchall()
            rows.reverse()
            return self._messages(rows, room)

        return self._call(query)

    def since(self, room: str, epoch: str, afterId: int, limit: int) -> Deferred[list[Message] | None]:
        if epoch != self.epoch or afterId < 0:
            return succeed(None)

        def query(conn: sqlite3.Connection) -> list[Message] | None:
            row = conn.execute("SELECT last_id FROM sequences WHERE name = ?", (room,)).fetchone()
            verdict = resumePosition(afterId, row[0] if row else 0, limit)
            if verdict != "fetch":
                return [] if verdict == "current" else None
            first = conn.execute("SELECT min(id) FROM messages WHERE room = ?", (room,)).fetchone()[0]
            if first is None or first > afterId + 1:
                return None
            rows = conn.execute(
                "SELECT id, sender, text, time, action FROM messages WHERE room = ? AND id > ? ORDER BY id",
                (room, afterId),
            ).fetchall()
            return self._messages(rows, room)

        return self._call(query)

    def privateFor(self, nick: str, afterId: int | None, limit: int) -> Deferred[list[Private]]:
        key = nick.lower()

        def query(conn: sqlite3.Connection) -> list[Private]:
            rows = conn.execute(
                "SELECT id, sender, recipient, text, time FROM private "
                "WHERE (recipient_key = ? OR sender_key = ?) AND id > ? ORDER BY id DESC LIMIT ?",
                (key, key, afterId or 0, limit),
            ).fetchall()
            rows.reverse()
            return [Private(*r) for r in rows]

        return self._call(query)

    def refs(self, sinceTime: float) -> list[tuple[str, str, Message | Private]]:
        """
        Client refs of messages stored since C{sinceTime}, for idempotent
        resends across restarts: (sender key, ref, message). Synchronous: for
        start-up only.
        """
        out: list[tuple[str, str, Message | Private]] = []
        for room, id, sender, text, t, action, ref in self._conn.execute(
            "SELECT room, id, sender, text, time, action, ref FROM messages WHERE ref IS NOT NULL AND time > ?",
            (sinceTime,),
        ):
            out.append((sender.lower(), ref, Message(room, id, self.epoch, sender, text, t, bool(action))))
        for id, sender, recipient, text, t, ref in self._conn.execute(
            "SELECT id, sender, recipient, text, time, ref FROM private WHERE ref IS NOT NULL AND time > ?",
            (sinceTime,),
        ):
            out.append((sender.lower(), ref, Private(id, sender, recipient, text, t)))
        return out

    def tokens(self) -> dict[str, str]:
        """
        Nick key -> token hash, for nick ownership. Synchronous: start-up only.
        """
        return dict(self._conn.execute("SELECT nick_key, token_hash FROM nicks").fetchall())

    def saveToken(self, nickKey: str, tokenHash: str) -> Deferred[None]:
        def save(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO nicks VALUES (?, ?)", (nickKey, tokenHash))

        return self._call(save)

    def prune(self, now: float) -> Deferred[int]:
        """
        Delete what retention no longer keeps; fires with the number of rows
        deleted.
        """
        keep = self.retainMessages
        cutoff = now - self.retainDays * 86400 if self.retainDays else None

        def prune(conn: sqlite3.Connection) -> int:
            deleted = 0
            conn.execute("BEGIN")
            for name, last in conn.execute("SELECT name, last_id FROM sequences").fetchall():
                if name == "@private":
                    deleted += conn.execute("DELETE FROM private WHERE id <= ?", (last - keep * 10,)).rowcount
                else:
                    deleted += conn.execute(
                        "DELETE FROM messages WHERE room = ? AND id <= ?", (name, last - keep)
                    ).rowcount
            if cutoff is not None:
                deleted += conn.execute("DELETE FROM messages WHERE time < ?", (cutoff,)).rowcount
                deleted += conn.execute("DELETE FROM private WHERE time < ?", (cutoff,)).rowcount
            conn.execute("COMMIT")
            return deleted

        return self._call(prune)
