# -*- test-case-name: tests.stores.test_store -*-
"""
Edits, deletions and reactions in the SQLite store: an update is stored as a
row of its own and changes its message's row and search index row.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from twisted_chat.core.events import DELETE, EDIT, Message, Private, PrivateUpdate, Update, applyUpdate
from twisted_chat.stores.sqlite_rows import COLS, KINDS, PCOLS, insertRows, privateEntry, roomEntry
from twisted_chat.stores.sqlite_search import unindex


def storeUpdate(
    conn: sqlite3.Connection, update: Update | PrivateUpdate, ref: str | None, epoch: str, roomNo: dict[str, int]
) -> None:
    """
    In the batch's transaction: store C{update} as a row of its own and
    change its message's row (and search index row) as it says.
    """
    kind = KINDS[update.op]
    if isinstance(update, Update):
        room = update.room
        row = conn.execute(
            "SELECT " + COLS + " FROM messages WHERE room = ? AND id = ?", (room, update.target)
        ).fetchone()
        target: Message | Private | None = roomEntry(row, room, epoch) if row is not None else None
        where, table = "room = ? AND id = ?", "messages"
        key: tuple[Any, ...] = (room, update.target)
        no = roomNo.get(room, 0)
        rowid = (no << 32) + update.target
    else:
        row = conn.execute("SELECT " + PCOLS + " FROM private WHERE id = ?", (update.target,)).fetchone()
        target = privateEntry(row) if row is not None else None
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
                unindex(conn, rowid, target.text)
            # (the text of its edits goes too)
            if table == "messages":
                conn.execute(
                    "UPDATE messages SET text = '', mentions = '' WHERE room = ? AND target = ? AND kind = 1",
                    key,
                )
            else:
                conn.execute("UPDATE private SET text = '' WHERE target = ? AND kind = 1", key)
        elif update.op == EDIT and not target.deleted:
            unindex(conn, rowid, target.text)
            conn.execute("INSERT INTO search (rowid, text) VALUES (?, ?)", (rowid, now.text))
    if isinstance(update, Update):
        insertRows(conn, "messages", 16, [
            (update.room, update.id, update.sender, update.text, update.time, 0, ref, kind, update.target, 0,
             " ".join(update.mentions), 0.0, 0, None, update.emoji, int(update.on))
        ])
    else:
        insertRows(conn, "private", 16, [
            (update.id, update.sender, update.recipient, update.sender.lower(), update.recipient.lower(),
             update.text, update.time, ref, kind, update.target, 0, 0.0, 0, None, update.emoji, int(update.on))
        ])
