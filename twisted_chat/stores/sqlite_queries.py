# -*- test-case-name: tests.stores.test_store -*-
"""
What the SQLite store reads and keeps besides appends: history, private
messages, read markers, search, nick tokens and retention, each a query the
database thread runs (see L{twisted_chat.stores.sqlite}).
"""

from __future__ import annotations

import sqlite3
from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed

from twisted_chat.core.events import Message, Private
from twisted_chat.core.interfaces import resumePosition, searchWords
from twisted_chat.stores.sqlite_rows import COLS, PCOLS, privateEntry, roomEntry
from twisted_chat.stores.sqlite_search import findMessages, matchQuery


class StoreQueries:
    """
    The queries of L{twisted_chat.stores.sqlite.SQLiteStore}, which gives
    what they need: its epoch, its rooms, the rooms' numbers in the search
    index, retention, its connection (start-up only) and its queue of calls
    to the database thread.
    """

    epoch: str
    retainMessages: int
    retainDays: float | None
    _conn: sqlite3.Connection
    _rooms: set[str]
    _roomNo: dict[str, int]

    def _call(self, fn: Callable[[sqlite3.Connection], Any]) -> Deferred[Any]:
        """
        Run C{fn} with the connection in the database thread; the Deferred
        fires with its result.
        """
        raise NotImplementedError()

    def _entry(self, r: tuple[Any, ...], room: str) -> Message:
        """
        A row of messages (L{COLS}) as a L{Message}, or an L{Update}.
        """
        return roomEntry(r, room, self.epoch)

    def _privateEntry(self, r: tuple[Any, ...]) -> Private:
        """
        A row of private (L{PCOLS}) as a L{Private}, or a L{PrivateUpdate}.
        """
        return privateEntry(r)

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
                    "SELECT " + COLS + " FROM messages WHERE room = ? AND kind = 0 ORDER BY id DESC LIMIT ?",
                    (room, limit),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT " + COLS + " FROM messages WHERE room = ? AND id < ? AND kind = 0 "
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
                "SELECT " + COLS + " FROM messages WHERE room = ? AND id > ? ORDER BY id",
                (room, afterId),
            ).fetchall()
            return self._messages(rows, room)

        return self._call(query)

    def get(self, room: str, id: int) -> Deferred[Message | None]:
        if room not in self._rooms:
            return succeed(None)

        def query(conn: sqlite3.Connection) -> Message | None:
            row = conn.execute("SELECT " + COLS + " FROM messages WHERE room = ? AND id = ?", (room, id)).fetchone()
            return None if row is None else self._entry(row, room)

        return self._call(query)

    def getPrivate(self, nick: str, id: int) -> Deferred[Private | None]:
        def query(conn: sqlite3.Connection) -> Private | None:
            row = conn.execute("SELECT " + PCOLS + " FROM private WHERE id = ?", (id,)).fetchone()
            return None if row is None else self._privateEntry(row)

        return self._call(query)

    def privateFor(self, nick: str, afterId: int | None, limit: int) -> Deferred[list[Private]]:
        key = nick.lower()
        # (with a position: its updates too; the recent ones: messages only)
        kinds = "" if afterId is not None else " AND kind = 0"

        def query(conn: sqlite3.Connection) -> list[Private]:
            rows = conn.execute(
                "SELECT " + PCOLS + " FROM private "
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
        match = matchQuery(words)

        def query(conn: sqlite3.Connection) -> list[Message | Private]:
            return findMessages(conn, self.epoch, self._roomNo, rooms, nick, match, before, limit)

        return self._call(query)

    def refs(self, sinceTime: float) -> list[tuple[str, str, Message | Private]]:
        """
        Client refs of messages stored since C{sinceTime}, for idempotent
        resends across restarts: (sender key, ref, message). Synchronous: for
        start-up only.
        """
        out: list[tuple[str, str, Message | Private]] = []
        for row in self._conn.execute(
            "SELECT room, ref, " + COLS + " FROM messages WHERE ref IS NOT NULL AND time > ?", (sinceTime,)
        ).fetchall():
            entry = self._entry(row[2:], row[0])
            out.append((entry.sender.lower(), row[1], entry))
        for row in self._conn.execute(
            "SELECT ref, " + PCOLS + " FROM private WHERE ref IS NOT NULL AND time > ?", (sinceTime,)
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
