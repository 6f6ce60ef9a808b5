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

from twisted_chat.core.events import DELETE, Message, Private, PrivateUpdate, Update, applyUpdate
from twisted_chat.core.interfaces import IMessageStore, resumePosition, searchWords, textMatches
from twisted_chat.core.names import mentions


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
        #: nick key -> room -> read position
        self._reads: dict[str, dict[str, int]] = {}

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
        messages) and keep it; fires at once, with it. An update
        (L{Update}, L{PrivateUpdate}) changes its message as it is kept.
        """
        if isinstance(message, Private):
            self._lastPrivate = message.id = self._lastPrivate + 1
            if isinstance(message, PrivateUpdate):
                self._apply(self._private, message)
            self._private.append(message)
        else:
            room = message.room
            q = self._rooms.get(room)
            if q is None:
                q = self._rooms[room] = deque(maxlen=self._retain)
            self._last[room] = message.id = self._last.get(room, 0) + 1
            if isinstance(message, Update):
                self._apply(q, message)
            q.append(message)
        return succeed(message)

    @staticmethod
    def _find(q: deque[Any], id: int) -> int | None:
        """
        The index of entry C{id} in C{q} (ids there are consecutive).
        """
        if not q:
            return None
        i = id - q[0].id
        if 0 <= i < len(q) and q[i].id == id:
            return i
        return None

    def _apply(self, q: deque[Any], update: Update | PrivateUpdate) -> None:
        """
        Change the kept message C{update} names (a new object in its place:
        the old one may be shared); a deletion also takes the text out of
        the message's edits, and an edit of a deleted message keeps none.
        """
        i = self._find(q, update.target)
        if i is None:
            return
        target = q[i]
        update.original = target.text[:31]
        update.author = target.sender
        if target.deleted and update.op != DELETE:
            update.text = ""
            update.mentions = ()
        q[i] = applyUpdate(target, update)
        if update.op == DELETE:
            for j in range(i + 1, len(q)):
                e = q[j]
                if isinstance(e, (Update, PrivateUpdate)) and e.target == update.target and e.text:
                    if isinstance(e, Update):
                        blank: Any = Update(e.room, e.id, e.epoch, e.sender, e.op, e.target, "", e.time, e.emoji, e.on)
                    else:
                        blank = PrivateUpdate(e.id, e.sender, e.recipient, e.op, e.target, "", e.time, e.emoji, e.on)
                    blank.author = e.author
                    q[j] = blank

    def get(self, room: str, id: int) -> Deferred[Message | None]:
        q = self._rooms.get(room)
        i = self._find(q, id) if q is not None else None
        return succeed(None if i is None else q[i])  # type: ignore[index]

    def getPrivate(self, nick: str, id: int) -> Deferred[Private | None]:
        i = self._find(self._private, id)
        return succeed(None if i is None else self._private[i])

    def recent(
        self, room: str, limit: int, before: int | None = None
    ) -> Deferred[list[Message]]:
        q = self._rooms.get(room, ())
        msgs: list[Message] = []
        if limit > 0:
            for m in reversed(q):
                if m.kind == "message" and (before is None or m.id < before):
                    msgs.append(m)
                    if len(msgs) >= limit:
                        break
        return succeed(msgs[::-1])

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

    def unread(self, room: str, nick: str, afterId: int) -> Deferred[tuple[int, int]]:
        key = nick.lower()
        unread = mentioned = 0
        for m in reversed(self._rooms.get(room, ())):
            if m.id <= afterId:
                break
            if m.kind == "message" and m.sender.lower() != key and not m.deleted:
                unread += 1
                if mentions(m.mentions, nick):
                    mentioned += 1
        return succeed((unread, mentioned))

    def saveRead(self, nickKey: str, room: str, id: int) -> Deferred[None]:
        self._reads.setdefault(nickKey, {})[room] = id
        return succeed(None)

    def reads(self, nickKey: str) -> Deferred[dict[str, int]]:
        return succeed(dict(self._reads.get(nickKey, {})))

    def search(
        self, rooms: list[str], nick: str | None, text: str, before: int | None, limit: int
    ) -> Deferred[list[Message | Private]]:
        words = searchWords(text)
        found: list[Message | Private] = []
        if words:
            for room in rooms:
                for m in self._rooms.get(room, ()):
                    if m.kind == "message" and not m.deleted and (before is None or m.id < before):
                        if textMatches(words, m.text):
                            found.append(m)
            if nick is not None:
                key = nick.lower()
                for p in self._private:
                    if p.kind == "private" and not p.deleted and (p.sender.lower() == key or p.recipient.lower() == key):
                        if textMatches(words, p.text):
                            found.append(p)
        found.sort(key=lambda m: (m.time, m.id), reverse=True)
        return succeed(found[:limit])

    def privateFor(
        self, nick: str, afterId: int | None, limit: int
    ) -> Deferred[list[Private]]:
        key = nick.lower()
        after = afterId or 0
        # (with a position: its updates too; the recent ones: messages only)
        found = [
            p
            for p in self._private
            if p.id > after
            and (afterId is not None or p.kind == "private")
            and (p.recipient.lower() == key or p.sender.lower() == key)
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
