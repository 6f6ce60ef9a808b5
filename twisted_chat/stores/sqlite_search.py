# -*- test-case-name: tests.stores.test_store -*-
"""
The SQLite store's full-text search: the FTS5 index of the messages, built
when a database has none, kept by the transactions that store, edit, delete
and prune messages, and its queries.
"""

from __future__ import annotations

import sqlite3

from twisted_chat.core.events import Message, Private
from twisted_chat.stores.sqlite_rows import COLS, PCOLS, privateEntry, roomEntry

#: the search index: one row per message (room messages: rowid = the room's
#: number << 32 | id; private messages: their id), kept in the transactions
#: that store, edit and delete them. Contentless: it keeps no copy of the
#: text (a row is taken out with the text it was indexed with, which the
#: message's row has: see unindex)
SEARCH_TABLE = (
    "CREATE VIRTUAL TABLE search USING fts5(text, content = '', tokenize = \"unicode61 remove_diacritics 0\")"
)


def buildIndex(conn: sqlite3.Connection) -> None:
    """
    Create the search index and fill it from the messages (in the open
    transaction): for a database of schema 1, or one whose index went
    missing.
    """
    conn.execute(SEARCH_TABLE)
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


def unindex(conn: sqlite3.Connection, rowid: int, text: str) -> None:
    """
    Take the row C{rowid}, indexed with C{text}, out of the search index.
    """
    conn.execute("INSERT INTO search (search, rowid, text) VALUES ('delete', ?, ?)", (rowid, text))


def matchQuery(words: list[str]) -> str:
    """
    An FTS5 query for C{words}: every word as a prefix, quoted (no query
    syntax reaches FTS5).
    """
    return " ".join('"%s"*' % (w.replace('"', '""'),) for w in words)


def findMessages(
    conn: sqlite3.Connection,
    epoch: str,
    roomNo: dict[str, int],
    rooms: list[str],
    nick: str | None,
    match: str,
    before: int | None,
    limit: int,
) -> list[Message | Private]:
    """
    The messages that C{match} (see L{matchQuery}) finds, in C{rooms} (their
    numbers in the index in C{roomNo}) and in C{nick}'s private messages,
    newest first.
    """
    found: list[Message | Private] = []
    for room in rooms:
        no = roomNo.get(room)
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
                "SELECT " + COLS + " FROM messages WHERE room = ? AND id = ? AND deleted = 0", (room, id)
            ).fetchone()
            if row is not None:
                found.append(roomEntry(row, room, epoch))
    if nick is not None:
        key = nick.lower()
        for row in conn.execute(
            "SELECT " + ", ".join("p." + c.strip() for c in PCOLS.split(",")) + " FROM search s "
            "JOIN private p ON p.id = s.rowid WHERE search MATCH ? AND s.rowid < 4294967296 "
            "AND (p.sender_key = ? OR p.recipient_key = ?) AND p.deleted = 0 ORDER BY s.rowid DESC LIMIT ?",
            (match, key, key, limit),
        ):
            found.append(privateEntry(row))
    found.sort(key=lambda m: (m.time, m.id), reverse=True)
    return found[:limit]
