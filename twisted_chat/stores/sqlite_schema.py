# -*- test-case-name: tests.stores.test_store -*-
"""
The SQLite store's database: its schema, bringing a database of schema 1 to
schema 2, and opening or checking a file, refused with L{StoreError} saying
why when it cannot be used.
"""

from __future__ import annotations

import os
import secrets
import sqlite3

from twisted_chat.stores.sqlite_search import buildIndex

SCHEMA_VERSION = "2"

SCHEMA = """
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
COLUMNS_2 = (
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


def migrate(conn: sqlite3.Connection) -> None:
    """
    Bring a database of an earlier schema to this one (in the open
    transaction): the columns of schema 2, and the search index, built
    from the messages when it is missing.
    """
    for table in ("messages", "private"):
        have = {r[1] for r in conn.execute("PRAGMA table_info(%s)" % (table,))}
        for name, decl in COLUMNS_2:
            if name not in have and not (table == "private" and name == "mentions"):
                conn.execute("ALTER TABLE %s ADD COLUMN %s %s" % (table, name, decl))
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'search'").fetchone() is None:
        buildIndex(conn)
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))


class StoreError(Exception):
    """
    The database cannot be used; the message says why, for people.
    """


def openDatabase(path: str, sync: str) -> sqlite3.Connection:
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
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        if conn.execute("SELECT value FROM meta WHERE key='epoch'").fetchone() is None:
            conn.execute("INSERT INTO meta VALUES ('epoch', ?)", (secrets.token_hex(4),))
        migrate(conn)
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
