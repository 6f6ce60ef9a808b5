"""
Fixtures of the daemon's tests.
"""

from __future__ import annotations

from typing import Iterator

import pytest


@pytest.fixture(autouse=True)
def autobahnLoopKept() -> Iterator[None]:
    """
    Put Autobahn's timer loop (C{txaio.config.loop}) back as it was after
    each test: C{makeService} makes the reactor it is given that loop, and
    these tests give it memory reactors, which would hold every Autobahn
    timer of the tests that come after (a chopped WebSocket write would
    never go out).
    """
    # Imported here, after pytest-twisted has installed the reactor.
    import txaio

    txaio.use_twisted()
    saved = txaio.config.loop
    yield
    txaio.config.loop = saved
