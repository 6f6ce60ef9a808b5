"""
What happened during a run, as the clients saw it: every request and its
answer, every connection, and per connection and room every message seen
(an I{episode}: from a join or resume to a part or the end of the
connection). The checker (L{chaos.checker}) reads it afterwards.

Message texts carry a unique token, C{q.CLIENT.SEQ}, so that a message is
recognised in any rendering (line chat, json, Socket.IO) and mapped back to
its stored id.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

TOKEN = re.compile(r"\bq\.([\w-]+)\.(\d+)\b")

#: the text the store readers give an update entry (an edit, deletion or
#: reaction: an id of the room's sequence that is no message)
UPDATE = "\x00update"
#: and a deleted message (shown to json clients as deleted, not at all in
#: the text modes' histories)
DELETED = "\x00deleted"

#: the kinds of connection that see updates (json mode, Socket.IO json);
#: the others are shown messages only
SEES_UPDATES = ("ws-json", "ws-json-load", "ws-json-joiner", "sio-json")


def tokenOf(text: str) -> str | None:
    m = TOKEN.search(text)
    return m.group(0) if m is not None else None


@dataclass
class Request:
    """
    One C{say} (or pasted line) sent by a client.
    """

    client: str
    conn: str
    room: str
    token: str
    sent: float
    ref: str | None = None
    #: the request this one resends (same ref), if any
    resendOf: Request | None = None
    answered: float | None = None
    #: "ack" (stored: an ack or the echo), "error"
    answer: str = ""
    #: error code or line
    detail: str = ""
    epoch: str | None = None
    id: int | None = None
    #: the connection the answer came on
    answerConn: str = ""
    #: ids of resends of this request
    resent: bool = False


@dataclass
class Entry:
    t: float
    token: str | None
    epoch: str | None
    id: int | None
    live: bool


@dataclass
class Episode:
    """
    One connection's stay in one room.
    """

    client: str
    conn: str
    room: str
    start: float
    #: "join", "hello", "resume"
    how: str
    since: tuple[str, int] | None = None
    recovered: bool | None = None
    entries: list[Entry] = field(default_factory=list)
    notices: list[float] = field(default_factory=list)
    end: float | None = None
    endedBy: str = ""


@dataclass
class Connection:
    client: str
    conn: str
    kind: str
    node: str
    opened: float
    closed: float | None = None
    why: str = ""


class Journal:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.requests: list[Request] = []
        self.byToken: dict[str, Request] = {}
        self.episodes: list[Episode] = []
        self.connections: dict[str, Connection] = {}
        self.open: dict[tuple[str, str], Episode] = {}
        #: token -> (epoch, id) seen by json-mode clients (acks and events)
        self.ids: dict[str, set[tuple[str, int]]] = {}
        #: (t, client, what) for violations noticed as they happen
        self.immediate: list[tuple[str, str, str, str]] = []
        self.notes: list[str] = []
        self._conns: dict[str, int] = {}
        #: tokens of messages whose deletion was acknowledged (their text
        #: is gone from the store: not lost)
        self.deleted: set[str] = set()
        #: (client, op, token, ref, answer) of every edit, deletion and
        #: reaction sent (answer "" while unanswered)
        self.updates: list[list[str]] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    # connections

    def connect(self, client: str, kind: str, node: str) -> str:
        n = self._conns.get(client, 0) + 1
        self._conns[client] = n
        conn = "%s#%d" % (client, n)
        self.connections[conn] = Connection(client, conn, kind, node, self.now())
        return conn

    def closed(self, conn: str, why: str = "") -> None:
        c = self.connections.get(conn)
        if c is None or c.closed is not None:
            return
        c.closed = self.now()
        c.why = why
        for key in [k for k in self.open if k[0] == conn]:
            self.leave(conn, key[1], "closed")

    # requests

    def sent(self, client: str, conn: str, room: str, token: str, ref: str | None = None, resendOf: Request | None = None) -> Request:
        r = Request(client, conn, room, token, self.now(), ref, resendOf)
        self.requests.append(r)
        if resendOf is None:
            self.byToken[token] = r
        else:
            resendOf.resent = True
        return r

    def answer(self, r: Request, kind: str, conn: str, detail: str = "", epoch: str | None = None, id: int | None = None) -> None:
        if r.answered is not None:
            return
        r.answered = self.now()
        r.answer = kind
        r.detail = detail
        r.answerConn = conn
        r.epoch = epoch
        r.id = id
        if epoch is not None and id is not None:
            self.mapped(r.token, epoch, id)
        if kind == "error" and ("flood" in detail or "slow down" in detail):
            self.violation("flood-drop", r.client, "%s %s: %r dropped by flood control: %s" % (conn, r.room, r.token, detail))

    def mapped(self, token: str | None, epoch: str, id: int) -> None:
        if token is not None:
            self.ids.setdefault(token, set()).add((epoch, id))

    # rooms

    def join(self, client: str, conn: str, room: str, how: str, since: tuple[str, int] | None = None, recovered: bool | None = None) -> Episode:
        old = self.open.pop((conn, room), None)
        if old is not None:
            old.end = self.now()
            old.endedBy = "rejoin"
        e = Episode(client, conn, room, self.now(), how, since, recovered)
        self.episodes.append(e)
        self.open[(conn, room)] = e
        return e

    def episode(self, conn: str, room: str) -> Episode | None:
        return self.open.get((conn, room))

    def leave(self, conn: str, room: str, why: str) -> None:
        e = self.open.pop((conn, room), None)
        if e is not None:
            e.end = self.now()
            e.endedBy = why

    def seen(self, conn: str, room: str, token: str | None, epoch: str | None, id: int | None, live: bool) -> None:
        e = self.open.get((conn, room))
        if e is None:
            return
        e.entries.append(Entry(self.now(), token, epoch, id, live))
        if epoch is not None and id is not None:
            self.mapped(token, epoch, id)

    def notice(self, conn: str, room: str) -> None:
        e = self.open.get((conn, room))
        if e is not None:
            e.notices.append(self.now())

    def violation(self, kind: str, client: str, detail: str) -> None:
        self.immediate.append(("%.1f" % (self.now(),), kind, client, detail))

    def summary(self) -> dict[str, Any]:
        return {
            "requests": len(self.requests),
            "episodes": len(self.episodes),
            "connections": len(self.connections),
            "updates": len(self.updates),
        }
