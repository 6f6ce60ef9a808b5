# -*- test-case-name: tests.core.test_refs -*-
"""
Idempotent requests: a client's C{ref} for a message, remembered for a
while (an hour by default) with the message it made, so that the same nick
sending the same ref again (after a reconnect, say) gets the first message
back instead of storing a second one.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Iterable, Union

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from twisted_chat.core.events import Message, Private, PrivateUpdate, Update

#: a stored message, packed (see _packRef)
_Packed = tuple[Any, ...]


class _Ref:
    """
    A client ref seen recently: its message once stored, and who waits for it.
    """

    __slots__ = ("time", "message", "waiting")

    def __init__(self, time: float, message: Message | Private | None) -> None:
        self.time = time
        self.message = message
        self.waiting: list[Deferred[Any]] = []

    def result(self) -> Deferred[Any]:
        if self.message is not None:
            return succeed(self.message)
        d: Deferred[Any] = Deferred()
        self.waiting.append(d)
        return d

    def stored(self, message: Message | Private) -> None:
        self.message = message
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(message)

    def failed(self, f: Failure) -> None:
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.errback(f)


def _packRef(time: float, message: Message | Private) -> _Packed:
    """
    A stored message as a ref entry: a tuple of strings and numbers, which
    the garbage collector stops tracking, where a _Ref and a Message (two
    tracked objects per ref, up to 100,000 refs) made every full collection
    walk them all: a stall of a few hundred milliseconds.
    """
    if isinstance(message, PrivateUpdate):
        m = message
        return ("pu", time, m.id, m.sender, m.recipient, m.op, m.target, m.text, m.time, m.emoji, m.on)
    if isinstance(message, Update):
        u = message
        return ("u", time, u.room, u.id, u.epoch, u.sender, u.op, u.target, u.text, u.time, u.emoji, u.on)
    if isinstance(message, Private):
        return ("p", time, message.id, message.sender, message.recipient, message.text, message.time)
    return ("m", time, message.room, message.id, message.epoch, message.sender, message.text, message.time, message.action)


def _unpackRef(entry: _Packed) -> Message | Private:
    kind = entry[0]
    if kind == "p":
        return Private(*entry[2:])
    if kind == "u":
        return Update(*entry[2:])
    if kind == "pu":
        return PrivateUpdate(*entry[2:])
    return Message(*entry[2:])


class RefWindow:
    """
    The refs sent in the last C{window} seconds (at most C{limit}), by
    (sender nick key, ref): a ref still being stored waits with its first
    request; a stored one is kept packed.
    """

    limit = 100000

    def __init__(self, window: float) -> None:
        self.window = window
        self._refs: OrderedDict[tuple[str, str], Union[_Ref, _Packed]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._refs)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._refs

    def load(self, entries: Iterable[tuple[str, str, Message | Private]]) -> None:
        """
        Remember the refs the store kept (at start-up): (nick key, ref, message).
        """
        for key, ref, msg in entries:
            self._refs[(key, ref)] = _packRef(msg.time, msg)

    def once(self, key: tuple[str, str], now: float, make: Callable[[], Deferred[Any]]) -> Deferred[Any]:
        """
        Run C{make} (which stores a message) unless C{key} was sent within
        the window; then answer with that first message (once it is stored)
        instead. A first attempt that fails is forgotten, so the ref may be
        tried again.
        """
        refs = self._refs
        while refs:
            oldest = next(iter(refs.values()))
            if (oldest[1] if type(oldest) is tuple else oldest.time) > now - self.window and len(refs) < self.limit:  # type: ignore[union-attr]
                break
            refs.popitem(last=False)
        entry = refs.get(key)
        if entry is not None:
            return succeed(_unpackRef(entry)) if type(entry) is tuple else entry.result()  # type: ignore[union-attr]
        first = _Ref(now, None)
        refs[key] = first
        d = make()

        def stored(msg: Any) -> Any:
            first.stored(msg)
            if refs.get(key) is first:
                refs[key] = _packRef(first.time, msg)
            return msg

        def failed(f: Failure) -> Failure:
            if refs.get(key) is first:
                del refs[key]
            first.failed(f)
            return f

        return d.addCallbacks(stored, failed)
