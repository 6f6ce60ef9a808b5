# -*- test-case-name: tests.stores.test_store -*-
"""
The in-memory message store: history lives as long as the process.
"""

from __future__ import annotations

import secrets
from collections import deque
from typing import Any

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from twisted_chat.core.events import Message, Private
from twisted_chat.core.interfaces import IMessageStore, resumePosition


@implementer(IMessageStore)
class MemoryStore:
    """
    Keeps the last C{retain} messages per room (and ten times as many private
    messages) in memory, and with C{retainDays} drops older ones on L{prune}.
    Its epoch is new for every process, so a client resuming against a
    restarted daemon is told its position is gone.
    """

    def __init__(self, retain: int = 1000, retainDays: float | None = None) -> None:
        self.epoch = secrets.token_hex(4)
        self._retain = retain
        self._retainDays = retainDays
        self._tokens: dict[str, str] = {}
        self._rooms: dict[str, deque[Message]] = {}
        self._last: dict[str, int] = {}
        self._private: deque[Private] = deque(maxlen=retain * 10)
        self._lastPrivate = 0

    def open(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)

    def ping(self) -> Deferred[None]:
        return succeed(None)

    def lastId(self, room: str) -> int:
        if room == "@private":
            return self._lastPrivate
        return self._last.get(room, 0)

    def append(self, message: Message | Private, ref: str | None = None) -> Deferred[Any]:
        """
        Give C{message} the next id of its room (or of the private
        messages) and keep it; fires at once, with it.
        """
        if isinstance(message, Private):
            self._lastPrivate = message.id = self._lastPrivate + 1
            self._private.append(message)
        else:
            room = message.room
            q = self._rooms.get(room)
            if q is None:
                q = self._rooms[room] = deque(maxlen=self._retain)
            self._last[room] = message.id = self._last.get(room, 0) + 1
            q.append(message)
        return succeed(message)

    def recent(
        self, room: str, limit: int, before: int | None = None
    ) -> Deferred[list[Message]]:
        q = self._rooms.get(room, ())
        if before is None:
            msgs = list(q)[-limit:] if limit > 0 else []
        else:
            msgs = [m for m in q if m.id < before][-limit:] if limit > 0 else []
        return succeed(msgs)

    def since(
        self, room: str, epoch: str, afterId: int, limit: int
    ) -> Deferred[list[Message] | None]:
        if epoch != self.epoch:
            return succeed(None)
        verdict = resumePosition(afterId, self._last.get(room, 0), limit)
        if verdict != "fetch":
            return succeed([] if verdict == "current" else None)
        q = self._rooms.get(room, ())
        if not q or q[0].id > afterId + 1:
            return succeed(None)
        return succeed([m for m in q if m.id > afterId])

    def privateFor(
        self, nick: str, afterId: int | None, limit: int
    ) -> Deferred[list[Private]]:
        key = nick.lower()
        after = afterId or 0
        found = [
            p
            for p in self._private
            if p.id > after and (p.recipient.lower() == key or p.sender.lower() == key)
        ]
        return succeed(found[-limit:] if limit > 0 else [])

    def refs(self, sinceTime: float) -> list[tuple[str, str, Message | Private]]:
        # Nothing survives the process, so there is nothing to load.
        return []

    def tokens(self) -> dict[str, str]:
        return dict(self._tokens)

    def saveToken(self, nickKey: str, tokenHash: str) -> Deferred[None]:
        self._tokens[nickKey] = tokenHash
        return succeed(None)

    def prune(self, now: float) -> Deferred[int]:
        if not self._retainDays:
            return succeed(0)
        cutoff = now - self._retainDays * 86400
        dropped = 0
        queues: list[deque[Message] | deque[Private]] = [*self._rooms.values(), self._private]
        for q in queues:
            while q and q[0].time < cutoff:
                q.popleft()
                dropped += 1
        return succeed(dropped)
