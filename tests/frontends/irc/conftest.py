"""
The IRC front-end's unit tests share a service on a clock that runs password
checks at once (2026-01-01 00:00 UTC), with one registered nick (alice,
password "sesame"), and an IRC factory on it.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from twisted_chat.core.auth import hashPassword
from twisted_chat.core.service import ChatService
from twisted_chat.frontends.irc.connection import IRCFactory
from twisted_chat.stores.memory import MemoryStore

from tests.support.fakes import ImmediateThreads


@pytest.fixture
def clock() -> ImmediateThreads:
    clock = ImmediateThreads()
    clock.advance(1767225600)  # 2026-01-01 00:00 UTC
    return clock


@pytest.fixture
def service(clock: Clock) -> ChatService:
    return ChatService(store=MemoryStore(), clock=clock, passwords={"alice": hashPassword("sesame", n=2)})


@pytest.fixture
def factory(service: ChatService, clock: Clock) -> IRCFactory:
    return IRCFactory(service, clock=clock)
