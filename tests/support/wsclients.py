"""
WebSocket users of the real daemon, with the C{websockets} package: the
blocking client (L{webSocket}, L{receiveUntil} …) for tests in the test's
thread, and the asyncio client (L{openWs}, L{JsonUser}, L{Users}) for
coroutines run by L{tests.support.aio.runAsync}. Every handshake and read
is bounded by L{TIMEOUT}; no proxy from the environment is used.

Nothing here imports the reactor or Twisted.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from websockets.asyncio.client import ClientConnection, connect
from websockets.sync.client import ClientConnection as SyncConnection
from websockets.sync.client import connect as connectSync

from tests.support.daemon import Daemon

#: seconds: bound on every single wait (a frame, a handshake, a close)
TIMEOUT = 10.0


def webUrl(daemon: Daemon, path: str = "/ws", scheme: str = "ws") -> str:
    """
    The URL of C{path} on C{daemon}'s web port.
    """
    return "%s://127.0.0.1:%d%s" % (scheme, daemon.ports["web"], path)


# -- the blocking client --


@contextmanager
def webSocket(daemon: Daemon, jsonMode: bool = True, scheme: str = "ws", **options: Any) -> Iterator[SyncConnection]:
    """
    A WebSocket to C{daemon}'s C{/ws} (over TLS with C{scheme="wss"}), in
    json mode (C{chat.json}) or text mode, before its hello; C{options} go
    to C{websockets.sync.client.connect}.
    """
    with connectSync(
        webUrl(daemon, scheme=scheme),
        subprotocols=["chat.json"] if jsonMode else None,  # type: ignore[list-item]
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
        proxy=None,
        **options,
    ) as ws:
        yield ws


def sendJson(ws: SyncConnection, **fields: Any) -> None:
    """
    Send one json-mode request made of C{fields}.
    """
    ws.send(json.dumps(fields))


def receive(ws: SyncConnection) -> dict[str, Any]:
    """
    The next json-mode object.
    """
    obj = json.loads(ws.recv(timeout=TIMEOUT))
    assert isinstance(obj, dict)
    return obj


def receiveUntil(ws: SyncConnection, match: Callable[[Any], bool], parse: bool = True) -> list[Any]:
    """
    Frames (parsed as JSON unless C{parse} is false) up to and including
    the first that matches, all within L{TIMEOUT}.
    """
    deadline = time.monotonic() + TIMEOUT
    seen = []
    while True:
        frame = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
        item = json.loads(frame) if parse else frame
        seen.append(item)
        if match(item):
            return seen


def isType(kind: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: obj["type"] == kind


def hello(ws: SyncConnection, nick: str, **fields: Any) -> list[dict[str, Any]]:
    """
    Say hello as C{nick}; return what came up to the first room's history.
    """
    sendJson(ws, type="hello", nick=nick, **fields)
    return receiveUntil(ws, isType("history"))


# -- the asyncio client --


def openWs(daemon: Daemon, path: str = "/ws", **kw: Any) -> Any:
    """
    A C{websockets} connection to the daemon's web port (an async context
    manager, or awaited a connection), with bounded handshakes and no proxy
    from the environment.
    """
    return connect(
        webUrl(daemon, path),
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
        proxy=None,
        max_size=None,
        **kw,
    )


class Users:
    """
    Opens json users (L{hello}) and closes them all when its C{async with}
    block ends.
    """

    def __init__(self) -> None:
        self.opened: list[JsonUser] = []

    async def __aenter__(self) -> Users:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for user in self.opened:
            await user.close()

    async def hello(self, daemon: Daemon, **hello: Any) -> tuple[JsonUser, list[dict[str, Any]]]:
        user, events = await JsonUser.hello(daemon, **hello)
        self.opened.append(user)
        return user, events


class JsonUser:
    """
    A json-mode WebSocket user; every read is bounded by L{TIMEOUT}.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def hello(cls, daemon: Daemon, **hello: Any) -> tuple[JsonUser, list[dict[str, Any]]]:
        """
        Connect, say C{hello} with C{hello}'s fields, and read up to the
        first room's C{history}: returns the user and those events.
        """
        ws = await openWs(daemon, subprotocols=["chat.json"])
        user = cls(ws)
        await user.send(type="hello", **hello)
        events = await user.until("history")
        assert events[0]["type"] == "welcome", events
        return user, events

    async def send(self, **request: Any) -> None:
        await self.ws.send(json.dumps(request))

    async def recv(self) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        assert isinstance(frame, str), frame
        event = json.loads(frame)
        assert isinstance(event, dict)
        return event

    async def until(self, kind: str, count: int = 1) -> list[dict[str, Any]]:
        """
        Read events until the C{count}th of type C{kind}; return them all,
        that one last. An C{error} event fails the test.
        """
        events = []
        while count:
            event = await self.recv()
            assert event["type"] != "error", event
            events.append(event)
            if event["type"] == kind:
                count -= 1
        return events

    async def expect(self, match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """
        Read events until one that C{match}es; return them all, that one
        last.
        """
        events = []
        while True:
            events.append(await self.recv())
            if match(events[-1]):
                return events

    async def say(self, text: str, ref: str) -> dict[str, Any]:
        """
        Say C{text} with C{ref} in the current room; return its C{ack}.
        """
        await self.send(type="say", text=text, ref=ref)
        while True:
            event = (await self.until("ack"))[-1]
            if event["ref"] == ref:
                return event

    async def request(self, **request: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """
        Send C{request} (which has a C{ref}) and read up to its C{ack}:
        returns the events before it, and the ack.
        """
        await self.send(**request)
        events: list[dict[str, Any]] = []
        while True:
            events.extend(await self.until("ack"))
            if events[-1]["ref"] == request["ref"]:
                return events[:-1], events[-1]

    async def history(self, before: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """
        One page of #lobby's history (json C{history} request).
        """
        request: dict[str, Any] = {"type": "history", "room": "#lobby", "limit": limit}
        if before is not None:
            request["before"] = before
        await self.send(**request)
        event = (await self.until("history"))[-1]
        assert event["room"] == "#lobby" and "recovered" not in event, event
        return list(event["messages"])

    async def allHistory(self) -> list[dict[str, Any]]:
        """
        The whole history of #lobby, paged backwards with C{before}.
        """
        pages: list[list[dict[str, Any]]] = []
        before = None
        while True:
            page = await self.history(before)
            if not page:
                return [m for p in reversed(pages) for m in p]
            pages.append(page)
            before = page[0]["id"]

    def drop(self) -> None:
        """
        Lose the connection (no close handshake), as when a network dies.
        """
        self.ws.transport.abort()

    async def close(self) -> None:
        """
        Close the connection (cleanly, if it is still open).
        """
        try:
            await asyncio.wait_for(self.ws.close(), TIMEOUT)
        finally:
            self.ws.transport.abort()


def one(events: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """
    The one event of type C{kind} among C{events}.
    """
    found = [e for e in events if e["type"] == kind]
    assert len(found) == 1, (kind, events)
    return found[0]


def texts(messages: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    """
    Json-mode messages as (id, from, text).
    """
    return [(m["id"], m["from"], m["text"]) for m in messages]
