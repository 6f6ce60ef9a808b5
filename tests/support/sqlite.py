"""
SQLite database files under test: a full disk, a folder's contents, and
running a program without the power to ignore file permissions.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from twisted_chat.stores.sqlite import SQLiteStore

#: a max_page_count far above any test database
NO_LIMIT = 1 << 30


def diskFull(store: SQLiteStore, full: bool) -> Deferred[None]:
    """
    Make C{store}'s database full (not one page more, as on a full disk), or
    not any more; in the store's thread, as the pragma holds for its
    connection only. Fails if that takes more than L{fakes.TIMEOUT}.
    """
    from tests.support.fakes import within

    def limit(conn: sqlite3.Connection) -> None:
        pages = NO_LIMIT
        if full:
            # (no free page inside the file to reuse either)
            assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute("PRAGMA max_page_count = %d" % (pages,))

    return within(store._call(limit))


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """
    Every entry of C{folder}: file name -> bytes (None for a directory).
    """
    return {p.name: (None if p.is_dir() else p.read_bytes()) for p in folder.iterdir()}


def unprivileged() -> list[str]:
    """
    A command prefix that runs a program without the power to ignore file
    permissions: nothing as a normal user; as root, C{setpriv} dropping
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (root still owns the folders
    and can read the interpreter, but read-only means read-only).
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file permissions cannot be enforced")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
