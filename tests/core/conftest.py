"""
Fixtures of the core's tests: a chat service on a memory store, its time
on a L{Clock}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from twisted.internet.task import Clock

    from twisted_chat.core.service import ChatService


@pytest.fixture
def clock() -> Clock:
    """
    A plain L{Clock} (the in-memory web tests' one of tests/conftest.py is
    also Autobahn's timer loop, which these tests do not need).
    """
    from twisted.internet.task import Clock

    return Clock()


@pytest.fixture
def service(clock: Clock) -> ChatService:
    """
    A chat service on a memory store, on C{clock}; not started.
    """
    from twisted_chat.core.service import ChatService
    from twisted_chat.stores.memory import MemoryStore

    return ChatService(store=MemoryStore(), clock=clock)
