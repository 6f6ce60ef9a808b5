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

import json
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
from twisted_chat.core.events import DELETE, EDIT, REACT, Message, Private, PrivateUpdate, Update, applyUpdate
from twisted_chat.core.interfaces import IMessageStore, resumePosition, searchWords

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorFromThreads

SCHEMA_VERSION = "2"

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
CREATE TABLE IF NOT EXISTS reads (
    nick_key TEXT NOT NULL, room TEXT NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (nick_key, room)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS search_rooms (name TEXT PRIMARY KEY, no INTEGER NOT NULL UNIQUE);
"""

#: the columns schema 2 added to both message tables, in order (a database
#: of schema 1 gets them with ALTER TABLE when it is opened): kind (0 a
#: message, else an update: 1 edit, 2 delete, 3 react), the message an
#: update changes, what a message answers, the nicks it mentions (space
#: separated), its last edit, deleted, its reactions (JSON), an update's
#: emoji and on
_COLUMNS_2 = (
    ("kind", "INTEGER NOT NULL DEFAULT 0"),
    ("target", "INTEGER NOT NULL DEFAULT 0"),
    ("reply_to", "INTEGER NOT NULL DEFAULT 0"),
    ("mentions", "TEXT NOT NULL DEFAULT ''"),
    ("edited", "REAL NOT NULL DEFAULT 0"),
    ("deleted", "INTEGER NOT NULL DEFAULT 0"),
    ("reactions", "TEXT"),
    ("emoji", "TEXT NOT NULL DEFAULT ''"),
    ("react_on", "INTEGER NOT NULL DEFAULT 1"),
)
_KINDS = {EDIT: 1, DELETE: 2, REACT: 3}
_OPS = {v: k for k, v in _KINDS.items()}
#: the search index: one row per message (room messages: rowid = the room's
#: number << 32 | id; private messages: their id), kept in the transactions
#: that store, edit and delete them. Contentless: it keeps no copy of the
#: text (a row is taken out with the text it was indexed with, which the
#: message's row has: see _unindex)
_SEARCH = (
    "CREATE VIRTUAL TABLE search USING fts5(text, content = '', tokenize = \"unicode61 remove_diacritics 0\")"
)
#: what message rows are read as (see _entry)
_COLS = "id, sender, text, time, action, kind, target, reply_to, mentions, edited, deleted, reactions, emoji, react_on"
_PCOLS = "id, sender, recipient, text, time, kind, target, reply_to, edited, deleted, reactions, emoji, react_on"


#: the columns a new message's row gives (the others keep their defaults)
_MESSAGE_ROW = "messages (room, id, sender, text, time, action, ref, reply_to, mentions)"
_PRIVATE_ROW = "private (id, sender, recipient, sender_key, recipient_key, text, time, ref, reply_to)"


def _migrate(conn: sqlite3.Connection) -> None:
    """
    Bring a database of an earlier schema to this one (in the open
    transaction): the columns of schema 2, and the search index, built
    from the messages when it is missing.
    """
    for table in ("messages", "private"):
        have = {r[1] for r in conn.execute("PRAGMA table_info(%s)" % (table,))}
        for name, decl in _COLUMNS_2:
            if name not in have and not (table == "private" and name == "mentions"):
                conn.execute("ALTER TABLE %s ADD COLUMN %s %s" % (table, name, decl))
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'search'").fetchone() is None:
        conn.execute(_SEARCH)
        numbers = dict(conn.execute("SELECT name, no FROM search_rooms").fetchall())
        for (room,) in conn.execute("SELECT DISTINCT room FROM messages").fetchall():
            if room not in numbers:
                numbers[room] = len(numbers) + 1
                conn.execute("INSERT INTO search_rooms VALUES (?, ?)", (room, numbers[room]))
        conn.execute(
            "INSERT INTO search (rowid, text) SELECT (r.no << 32) + m.id, m.text FROM messages m "
            "JOIN search_rooms r ON r.name = m.room WHERE m.kind = 0 AND m.deleted = 0"
        )
        conn.execute("INSERT INTO search (rowid, text) SELECT id, text FROM private WHERE kind = 0 AND deleted = 0")
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))


def _unindex(conn: sqlite3.Connection, rowid: int, text: str) -> None:
    """
    Take the row C{rowid}, indexed with C{text}, out of the search index.
    """
    conn.execute("INSERT INTO search (search, rowid, text) VALUES ('delete', ?, ?)", (rowid, text))


def _reactions(text: str | None) -> dict[str, list[str]] | None:
    return json.loads(text) if text else None


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
        # (a deleted message's text is overwritten, not left in free pages)
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        if conn.execute("SELECT value FROM meta WHERE key='epoch'").fetchone() is None:
            conn.execute("INSERT INTO meta VALUES ('epoch', ?)", (secrets.token_hex(4),))
        _migrate(conn)
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
        seq = self._seq
        numbers = self._roomNo
        #: the last id of each sequence this batch takes ids from, before it
        before: dict[str, int] = {}
        #: rooms numbered by this batch (for the search index)
        numbered: list[str] = []
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
        last = {key: seq[key] for key in before}
        try:
            conn.execute("BEGIN")
            for room in numbered:
                conn.execute("INSERT INTO search_rooms VALUES (?, ?)", (room, numbers[room]))
            for step in steps:
                if len(step) == 2:
                    self._applyUpdate(conn, step[0], step[1])
                    continue
                rows, prows, srows = step
                # (a message's own columns: the update columns keep their defaults)
                if rows:
                    _insertRows(conn, _MESSAGE_ROW, 9, rows)
                if prows:
                    _insertRows(conn, _PRIVATE_ROW, 9, prows)
                if srows:
                    _insertRows(conn, "search(rowid, text)", 2, srows)
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
            for room in numbered:
                del numbers[room]
            for msg, _, _ in writes:
                msg.id = 0
            self.reactor.callFromThread(self._fire, writes, f, last)
            return
        self.reactor.callFromThread(self._fire, writes, None, last)

    def _applyUpdate(self, conn: sqlite3.Connection, update: Update | PrivateUpdate, ref: str | None) -> None:
        """
        In the batch's transaction: store C{update} as a row of its own and
        change its message's row (and search index row) as it says.
        """
        kind = _KINDS[update.op]
        if isinstance(update, Update):
            room = update.room
            row = conn.execute(
                "SELECT " + _COLS + " FROM messages WHERE room = ? AND id = ?", (room, update.target)
            ).fetchone()
            target: Message | Private | None = self._entry(row, room) if row is not None else None
            where, table = "room = ? AND id = ?", "messages"
            key: tuple[Any, ...] = (room, update.target)
            no = self._roomNo.get(room, 0)
            rowid = (no << 32) + update.target
        else:
            row = conn.execute("SELECT " + _PCOLS + " FROM private WHERE id = ?", (update.target,)).fetchone()
            target = self._privateEntry(row) if row is not None else None
            where, table, key, rowid = "id = ?", "private", (update.target,), update.target
        if target is not None and target.kind in ("message", "private"):
            update.original = target.text[:31]
            update.author = target.sender
            if target.deleted and update.op != DELETE:
                update.text = ""
                update.mentions = ()
            now = applyUpdate(target, update)
            sets = "text = ?, edited = ?, deleted = ?, reactions = ?"
            values: list[Any] = [now.text, now.edited, int(now.deleted), json.dumps(now.reactions) if now.reactions else None]
            if table == "messages":
                sets += ", mentions = ?"
                values.append(" ".join(now.mentions))
            conn.execute("UPDATE %s SET %s WHERE %s" % (table, sets, where), (*values, *key))
            if update.op == DELETE:
                if not target.deleted:
                    _unindex(conn, rowid, target.text)
                # (the text of its edits goes too)
                if table == "messages":
                    conn.execute(
                        "UPDATE messages SET text = '', mentions = '' WHERE room = ? AND target = ? AND kind = 1",
                        key,
                    )
                else:
                    conn.execute("UPDATE private SET text = '' WHERE target = ? AND kind = 1", key)
            elif update.op == EDIT and not target.deleted:
                _unindex(conn, rowid, target.text)
                conn.execute("INSERT INTO search (rowid, text) VALUES (?, ?)", (rowid, now.text))
        if isinstance(update, Update):
            _insertRows(conn, "messages", 16, [
                (update.room, update.id, update.sender, update.text, update.time, 0, ref, kind, update.target, 0,
                 " ".join(update.mentions), 0.0, 0, None, update.emoji, int(update.on))
            ])
        else:
            _insertRows(conn, "private", 16, [
                (update.id, update.sender, update.recipient, update.sender.lower(), update.recipient.lower(),
                 update.text, update.time, ref, kind, update.target, 0, 0.0, 0, None, update.emoji, int(update.on))
            ])

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

    def _entry(self, r: tuple[Any, ...], room: str) -> Message:
        """
        A row of messages (L{_COLS}) as a L{Message}, or an L{Update}.
        """
        if r[5]:
            return Update(
                room, r[0], self.epoch, r[1], _OPS[r[5]], r[6], r[2], r[3], r[12], bool(r[13]),
                tuple(r[8].split()) if r[8] else (),
            )
        return Message(
            room, r[0], self.epoch, r[1], r[2], r[3], bool(r[4]), tuple(r[8].split()) if r[8] else (), r[7], r[9],
            bool(r[10]), _reactions(r[11]),
        )

    def _privateEntry(self, r: tuple[Any, ...]) -> Private:
        """
        A row of private (L{_PCOLS}) as a L{Private}, or a L{PrivateUpdate}.
        """
        if r[5]:
            return PrivateUpdate(r[0], r[1], r[2], _OPS[r[5]], r[6], r[3], r[4], r[11], bool(r[12]))
        return Private(r[0], r[1], r[2], r[3], r[4], r[7], r[8], bool(r[9]), _reactions(r[10]))

    def _messages(self, rows: list[tuple[Any, ...]], room: str) -> list[Message]:
        return [self._entry(r, room) for r in rows]

    def recent(self, room: str, limit: int, before: int | None = None) -> Deferred[list[Message]]:
        if limit <= 0 or room not in self._rooms:
            # Nothing was ever appended to this room (an append notes its
            # room at once, before it is queued): no need to ask the thread.
            return succeed([])

        def query(conn: sqlite3.Connection) -> list[Message]:
            # (messages only: updates take ids, but are folded into them)
            if before is None:
                rows = conn.execute(
                    "SELECT " + _COLS + " FROM messages WHERE room = ? AND kind = 0 ORDER BY id DESC LIMIT ?",
                    (room, limit),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT " + _COLS + " FROM messages WHERE room = ? AND id < ? AND kind = 0 "
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
                "SELECT " + _COLS + " FROM messages WHERE room = ? AND id > ? ORDER BY id",
                (room, afterId),
            ).fetchall()
            return self._messages(rows, room)

        return self._call(query)

    def get(self, room: str, id: int) -> Deferred[Message | None]:
        if room not in self._rooms:
            return succeed(None)

        def query(conn: sqlite3.Connection) -> Message | None:
            row = conn.execute("SELECT " + _COLS + " FROM messages WHERE room = ? AND id = ?", (room, id)).fetchone()
            return None if row is None else self._entry(row, room)

        return self._call(query)

    def getPrivate(self, nick: str, id: int) -> Deferred[Private | None]:
        def query(conn: sqlite3.Connection) -> Private | None:
            row = conn.execute("SELECT " + _PCOLS + " FROM private WHERE id = ?", (id,)).fetchone()
            return None if row is None else self._privateEntry(row)

        return self._call(query)

    def privateFor(self, nick: str, afterId: int | None, limit: int) -> Deferred[list[Private]]:
        key = nick.lower()
        # (with a position: its updates too; the recent ones: messages only)
        kinds = "" if afterId is not None else " AND kind = 0"

        def query(conn: sqlite3.Connection) -> list[Private]:
            rows = conn.execute(
                "SELECT " + _PCOLS + " FROM private "
                "WHERE (recipient_key = ? OR sender_key = ?) AND id > ?" + kinds + " ORDER BY id DESC LIMIT ?",
                (key, key, afterId or 0, limit),
            ).fetchall()
            rows.reverse()
            return [self._privateEntry(r) for r in rows]

        return self._call(query)

    def unread(self, room: str, nick: str, afterId: int) -> Deferred[tuple[int, int]]:
        if room not in self._rooms:
            return succeed((0, 0))
        key = nick.lower()

        def query(conn: sqlite3.Connection) -> tuple[int, int]:
            count, mentioned = conn.execute(
                "SELECT count(*), coalesce(sum(instr(' ' || lower(mentions) || ' ', ?) > 0), 0) FROM messages "
                "WHERE room = ? AND id > ? AND kind = 0 AND deleted = 0 AND lower(sender) != ?",
                (" %s " % (key,), room, afterId, key),
            ).fetchone()
            return count, mentioned

        return self._call(query)

    def saveRead(self, nickKey: str, room: str, id: int) -> Deferred[None]:
        def save(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO reads VALUES (?, ?, ?)", (nickKey, room, id))

        return self._call(save)

    def reads(self, nickKey: str) -> Deferred[dict[str, int]]:
        def query(conn: sqlite3.Connection) -> dict[str, int]:
            return dict(conn.execute("SELECT room, id FROM reads WHERE nick_key = ?", (nickKey,)).fetchall())

        return self._call(query)

    def search(
        self, rooms: list[str], nick: str | None, text: str, before: int | None, limit: int
    ) -> Deferred[list[Message | Private]]:
        """
        The FTS5 index: every word of C{text} as a prefix (quoted: no
        query syntax reaches FTS5), per room and in the private messages,
        newest first.
        """
        words = searchWords(text)
        if not words or limit <= 0:
            return succeed([])
        match = " ".join('"%s"*' % (w.replace('"', '""'),) for w in words)

        def query(conn: sqlite3.Connection) -> list[Message | Private]:
            found: list[Message | Private] = []
            for room in rooms:
                no = self._roomNo.get(room)
                if no is None:
                    continue
                low = no << 32
                high = low + (before if before is not None else 1 << 32) - 1
                ids = [
                    r[0] - low
                    for r in conn.execute(
                        "SELECT rowid FROM search WHERE search MATCH ? AND rowid BETWEEN ? AND ? "
                        "ORDER BY rowid DESC LIMIT ?",
                        (match, low, high, limit),
                    )
                ]
                for id in ids:
                    row = conn.execute(
                        "SELECT " + _COLS + " FROM messages WHERE room = ? AND id = ? AND deleted = 0", (room, id)
                    ).fetchone()
                    if row is not None:
                        found.append(self._entry(row, room))
            if nick is not None:
                key = nick.lower()
                for row in conn.execute(
                    "SELECT " + ", ".join("p." + c.strip() for c in _PCOLS.split(",")) + " FROM search s "
                    "JOIN private p ON p.id = s.rowid WHERE search MATCH ? AND s.rowid < 4294967296 "
                    "AND (p.sender_key = ? OR p.recipient_key = ?) AND p.deleted = 0 ORDER BY s.rowid DESC LIMIT ?",
                    (match, key, key, limit),
                ):
                    found.append(self._privateEntry(row))
            found.sort(key=lambda m: (m.time, m.id), reverse=True)
            return found[:limit]

        return self._call(query)

    def refs(self, sinceTime: float) -> list[tuple[str, str, Message | Private]]:
        """
        Client refs of messages stored since C{sinceTime}, for idempotent
        resends across restarts: (sender key, ref, message). Synchronous: for
        start-up only.
        """
        out: list[tuple[str, str, Message | Private]] = []
        for row in self._conn.execute(
            "SELECT room, ref, " + _COLS + " FROM messages WHERE ref IS NOT NULL AND time > ?", (sinceTime,)
        ).fetchall():
            entry = self._entry(row[2:], row[0])
            out.append((entry.sender.lower(), row[1], entry))
        for row in self._conn.execute(
            "SELECT ref, " + _PCOLS + " FROM private WHERE ref IS NOT NULL AND time > ?", (sinceTime,)
        ).fetchall():
            private = self._privateEntry(row[1:])
            out.append((private.sender.lower(), row[0], private))
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
            numbers = self._roomNo
            for name, last in conn.execute("SELECT name, last_id FROM sequences").fetchall():
                # (what goes is taken out of the search index first, with
                # the text it was indexed with)
                if name == "@private":
                    conn.execute(
                        "INSERT INTO search (search, rowid, text) SELECT 'delete', id, text FROM private "
                        "WHERE id <= ? AND kind = 0 AND deleted = 0",
                        (last - keep * 10,),
                    )
                    deleted += conn.execute("DELETE FROM private WHERE id <= ?", (last - keep * 10,)).rowcount
                else:
                    if name in numbers:
                        conn.execute(
                            "INSERT INTO search (search, rowid, text) SELECT 'delete', ? + id, text FROM messages "
                            "WHERE room = ? AND id <= ? AND kind = 0 AND deleted = 0",
                            (numbers[name] << 32, name, last - keep),
                        )
                    deleted += conn.execute(
                        "DELETE FROM messages WHERE room = ? AND id <= ?", (name, last - keep)
                    ).rowcount
            if cutoff is not None:
                conn.execute(
                    "INSERT INTO search (search, rowid, text) SELECT 'delete', (r.no << 32) + m.id, m.text "
                    "FROM messages m JOIN search_rooms r ON r.name = m.room "
                    "WHERE m.time < ? AND m.kind = 0 AND m.deleted = 0",
                    (cutoff,),
                )
                conn.execute(
                    "INSERT INTO search (search, rowid, text) SELECT 'delete', id, text FROM private "
                    "WHERE time < ? AND kind = 0 AND deleted = 0",
                    (cutoff,),
                )
                deleted += conn.execute("DELETE FROM messages WHERE time < ?", (cutoff,)).rowcount
                deleted += conn.execute("DELETE FROM private WHERE time < ?", (cutoff,)).rowcount
            conn.execute("COMMIT")
            return deleted

        return self._call(prune)
