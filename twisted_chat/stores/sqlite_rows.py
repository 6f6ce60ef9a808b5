# -*- test-case-name: tests.stores.test_store -*-
"""
How the SQLite store's rows look: the columns message rows are read as and
written with, rows as messages, and many rows in few INSERT statements.
"""

from __future__ import annotations

import json
import sqlite3
from itertools import chain
from typing import Any

from twisted_chat.core.events import DELETE, EDIT, REACT, Message, Private, PrivateUpdate, Update

KINDS = {EDIT: 1, DELETE: 2, REACT: 3}
OPS = {v: k for k, v in KINDS.items()}
#: what message rows are read as (see roomEntry)
COLS = "id, sender, text, time, action, kind, target, reply_to, mentions, edited, deleted, reactions, emoji, react_on"
PCOLS = "id, sender, recipient, text, time, kind, target, reply_to, edited, deleted, reactions, emoji, react_on"


#: the columns a new message's row gives (the others keep their defaults)
MESSAGE_ROW = "messages (room, id, sender, text, time, action, ref, reply_to, mentions)"
PRIVATE_ROW = "private (id, sender, recipient, sender_key, recipient_key, text, time, ref, reply_to)"


def reactions(text: str | None) -> dict[str, list[str]] | None:
    return json.loads(text) if text else None


def roomEntry(r: tuple[Any, ...], room: str, epoch: str) -> Message:
    """
    A row of messages (L{COLS}) of C{room} as a L{Message}, or an L{Update}.
    """
    if r[5]:
        return Update(
            room, r[0], epoch, r[1], OPS[r[5]], r[6], r[2], r[3], r[12], bool(r[13]),
            tuple(r[8].split()) if r[8] else (),
        )
    return Message(
        room, r[0], epoch, r[1], r[2], r[3], bool(r[4]), tuple(r[8].split()) if r[8] else (), r[7], r[9],
        bool(r[10]), reactions(r[11]),
    )


def privateEntry(r: tuple[Any, ...]) -> Private:
    """
    A row of private (L{PCOLS}) as a L{Private}, or a L{PrivateUpdate}.
    """
    if r[5]:
        return PrivateUpdate(r[0], r[1], r[2], OPS[r[5]], r[6], r[3], r[4], r[11], bool(r[12]))
    return Private(r[0], r[1], r[2], r[3], r[4], r[7], r[8], bool(r[9]), reactions(r[10]))


#: SQLite's smallest default limit of ? parameters in one statement
_MAX_PARAMETERS = 999
_INSERT_SQL: dict[tuple[str, int, int], str] = {}


def insertRows(conn: sqlite3.Connection, table: str, width: int, rows: list[tuple[Any, ...]]) -> None:
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
