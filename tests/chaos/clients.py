"""
The harness' clients: real, independent clients of the daemons, all at once.

* L{LineUser}: the TCP line chat (asyncio streams); L{Paster} pastes 20-30
  lines in one write;
* L{TextUser}: WebSocket text mode (the C{websockets} library);
* L{JsonUser}: WebSocket json mode with refs, C{since} resume on every
  reconnect, resends of unacknowledged requests (same ref) after a
  reconnect, and deliberate resends of acknowledged ones; L{Blaster} and
  L{Joiner} are its write-load variants;
* L{SioJsonUser} and L{SioTextUser}: socket.io-client from npm, driven
  through C{tests/sio/chaos_driver.mjs} (L{SioHub}, one node process);
* L{TerminalUser}: the C{twisted-chat} terminal client as a subprocess.

Every message text carries a token (L{chaos.journal.TOKEN}); what each
client sends and sees goes into the L{Journal}. Clients that know several
nodes reconnect to another one when theirs is gone. Every wait has a
deadline; L{Client.run} returns soon after C{ctx.stopping} is set.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from websockets.exceptions import ConnectionClosed, WebSocketException

from tests.chaos.journal import Journal, Request, tokenOf
from tests.chaos.topology import Node, _dieWithParent, environment

#: every room the chatters use (the write load has #load to itself)
ROOMS = ["#lobby", "#dev", "#ops"]
LOAD_ROOM = "#load"
#: seconds: bound on one wait for a reply the client needs to go on
WAIT = 15.0
SIO = Path(__file__).resolve().parent.parent / "sio"

_MESSAGE = re.compile(r"^(#[\w-]+) (\[[^\]]+\] )?(?:<([\w-]+)>|\* ([\w-]+)) (.*)$")
_WELCOME = re.compile(r"^\*\*\* Welcome to twisted-chat, ([\w-]+)!")
_JOINED = re.compile(r"^\*\*\* (#[\w-]+): ([\w-]+) joined")
_LEFT = re.compile(r"^\*\*\* (#[\w-]+): ([\w-]+) left")
_NICK = re.compile(r"you are now ([\w-]+)")
_CURRENT = re.compile(r"^\*\*\* (?:(#[\w-]+) is now your current room|your current room is (#[\w-]+))")
_RESET = re.compile(r"^\*\*\* (#[\w-]+): .*history was reset")
_NOTRESUMED = re.compile(r"^\*\*\* (#[\w-]+): could not resume")
_UNAVAILABLE = re.compile(r"^\*\*\* (#[\w-]+): the history cannot be read now")
_FILLED = re.compile(r"^\*\*\* (#[\w-]+): (\d+) messages? from while the history could not be read:")


class Context:
    """
    What every client shares: the journal, the nodes, the phase events.
    """

    def __init__(self, journal: Journal, nodes: list[Node], seed: int, topology: str) -> None:
        self.journal = journal
        self.nodes = nodes
        self.seed = seed
        self.topology = topology
        #: set while clients should chat (cleared for the quiet phase)
        self.chatting = asyncio.Event()
        #: set while the write-load phase runs
        self.loading = asyncio.Event()
        #: set when every client must finish
        self.stopping = asyncio.Event()
        self.sio: SioHub | None = None
        self.folder: Path | None = None


class Client:
    kind = ""

    def __init__(self, name: str, ctx: Context, node: int = 0, rooms: list[str] | None = None) -> None:
        self.name = name
        self.ctx = ctx
        self.journal = ctx.journal
        self.rng = random.Random("%s:%s" % (ctx.seed, name))
        self.nodeIndex = node % len(ctx.nodes)
        self.wanted = list(rooms if rooms is not None else ["#lobby"])
        self.seq = 0
        self.conn = ""
        self.connected = False

    @property
    def node(self) -> Node:
        return self.ctx.nodes[self.nodeIndex]

    def token(self) -> str:
        self.seq += 1
        return "q.%s.%d" % (self.name, self.seq)

    def text(self, token: str) -> str:
        return "%s %s" % (token, self.rng.choice(["hello", "how are you", "ok", "lunch?", "ship it", "+1", "brb"]))

    def otherNode(self) -> None:
        if len(self.ctx.nodes) > 1:
            self.nodeIndex = (self.nodeIndex + 1) % len(self.ctx.nodes)

    async def run(self) -> None:
        """
        Connect, play, and reconnect whenever the connection is gone, until
        the harness stops.
        """
        failures = 0
        while not self.ctx.stopping.is_set():
            try:
                opened = await self.session()
            except (OSError, asyncio.TimeoutError, ConnectionError, WebSocketException) as e:
                opened = False
                self.journal.notes.append("%.1f %s: %s" % (self.journal.now(), self.name, e or type(e).__name__))
            except Exception as e:  # a client bug: note it, go on
                opened = False
                self.journal.violation("harness-error", self.name, "%s: %r" % (type(e).__name__, e))
            finally:
                if self.conn:
                    self.journal.closed(self.conn)
                self.connected = False
            if self.ctx.stopping.is_set():
                return
            failures = 0 if opened else failures + 1
            if failures:
                self.otherNode()
            await self.pause(self.rng.uniform(0.1, 0.6) * min(failures + 1, 5))

    async def session(self) -> bool:
        raise NotImplementedError

    async def pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.ctx.stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def chooseAction(self, rooms: list[str]) -> str:
        x = self.rng.random()
        if x < 0.72:
            return "say"
        if x < 0.82:
            return "join" if len(rooms) < len(ROOMS) else "say"
        if x < 0.90:
            return "part" if len(rooms) > 1 else "say"
        if x < 0.95:
            return "reconnect"
        return "resend"


# -- text renderings (line chat, WebSocket text, Socket.IO text, terminal) --


class TextView:
    """
    Follows one connection's line-chat rendering: the nick, the rooms and
    the current one, messages seen per room, the answers (echo or C{!!!}
    line) to the lines sent. C{continuous}: one view across reconnects (the
    terminal client, which resumes and hides what it showed already).
    """

    def __init__(self, client: Client, conn: str, continuous: bool = False) -> None:
        self.client = client
        self.journal = client.journal
        self.conn = conn
        self.continuous = continuous
        self.nick = ""
        self.rooms: list[str] = []
        self.current: str | None = None
        self.pending: list[Request] = []
        self.errors: list[tuple[float, str]] = []
        self.welcomed = asyncio.Event()
        # (room, lines left) of the terminal client's fill of a history
        # the server could not read (see feed)
        self._filling: tuple[str, int] | None = None
        self._waiters: list[tuple[Callable[[str], bool], asyncio.Future[str]]] = []

    def feed(self, line: str) -> None:
        j = self.journal
        m = _MESSAGE.match(line)
        if m is not None and self._filling is not None and self._filling[0] == m.group(1) and m.group(2):
            # The terminal client's fill of what a history the server could
            # not read left out, shown after the live messages that came
            # since (older ones, by design): not checked here. Nothing was
            # shown of those before (the episode starts unrecovered).
            room, left = self._filling
            self._filling = (room, left - 1) if left > 1 else None
        elif m is not None:
            room, stamp, text = m.group(1), m.group(2), m.group(5)
            token = tokenOf(text)
            live = stamp is None
            j.seen(self.conn, room, token, None, None, live)
            # On one connection only a live line is the echo: one's own line
            # in the history of a later join is no answer. It was taken for
            # one: a line answered with an error ("did not confirm … may
            # have been stored", kept in self.errors until resolve()) counted
            # as acknowledged when a rejoin's history showed it, long after
            # the error (slow-answer). (The terminal client's view spans its
            # reconnects: there the resumed history shows a line whose echo
            # the lost connection took with it, and a resend is answered
            # without a new echo.)
            if token is not None and (live or self.continuous):
                r = j.byToken.get(token)
                if r is not None and r.client == self.client.name and r.answered is None:
                    j.answer(r, "ack", self.conn)
            elif token is not None:
                # Except the history of the join under way when the line
                # was sent, on this connection: a line said while the
                # history is read that is stored before the read is in
                # it, and not echoed again (the history is the echo) —
                # unless a "!!!" line that came may be its answer (see
                # resolve(): one left once the older lines took theirs).
                r = j.byToken.get(token)
                ep = j.episode(self.conn, room)
                if (
                    r is not None and r.client == self.client.name and r.answered is None and r.conn == self.conn
                    and ep is not None and r.room == room and r.sent >= ep.start and not self._mayBeErrorOf(r)
                ):  # fmt: skip
                    j.answer(r, "ack", self.conn)
        elif line.startswith("!!! "):
            self.errors.append((j.now(), line))
        elif line.startswith("*** "):
            self._notice(line)
        for waiter in list(self._waiters):
            predicate, future = waiter
            if not future.done() and predicate(line):
                future.set_result(line)
                self._waiters.remove(waiter)

    def _notice(self, line: str) -> None:
        j = self.journal
        m = _WELCOME.match(line)
        if m is not None:
            self.nick = m.group(1)
            self.welcomed.set()
            return
        m = _JOINED.match(line)
        if m is not None and m.group(2).lower() == self.nick.lower():
            room = m.group(1)
            if room not in self.rooms:
                self.rooms.append(room)
            self.current = room
            if not (self.continuous and j.episode(self.conn, room) is not None):
                j.join(self.client.name, self.conn, room, "join")
            return
        m = _LEFT.match(line)
        if m is not None and m.group(2).lower() == self.nick.lower():
            room = m.group(1)
            if room in self.rooms:
                self.rooms.remove(room)
            j.leave(self.conn, room, "part")
            return
        m = _RESET.match(line)
        if m is not None:
            j.notice(self.conn, m.group(1))
            return
        m = _NOTRESUMED.match(line)
        if m is None and self.continuous:
            # (the terminal client: a join or resume whose history could
            # not be read starts unrecovered; what it left out is fetched
            # later, see feed)
            m = _UNAVAILABLE.match(line)
        if m is not None:
            j.join(self.client.name, self.conn, m.group(1), "resume", recovered=False)
            return
        m = _FILLED.match(line)
        if m is not None:
            self._filling = (m.group(1), int(m.group(2)))
            return
        m = _CURRENT.match(line)
        if m is not None:
            self.current = m.group(1) or m.group(2)
            return
        if line.startswith("*** you are in no room"):
            self.current = None
            return
        m = _NICK.search(line)
        if m is not None and ("you are now" in line[:40] or "renamed" in line):
            self.nick = m.group(1)

    def _mayBeErrorOf(self, request: Request) -> bool:
        """
        Whether one of the C{!!!} lines so far answers C{request} when they
        are matched as resolve() does (each to the oldest line sent before
        it still without an answer). An error that came while a line sent
        before it waited for its own is that line's: a history that then
        shows C{request} is its answer. (Taken for C{request}'s, a line
        that timed out during a Redis stall, followed by one stored when
        Redis woke that the join's history showed, left the next line's
        error to the second and the next line unanswered: silence, redis2
        seed 98845461.)
        """
        waiting = [r for r in self.pending if r.answered is None]
        for t, _ in self.errors:
            for r in waiting:
                if r.sent <= t + 0.001:
                    if r is request:
                        return True
                    waiting.remove(r)
                    break
        return False

    def waitLine(self, predicate: Callable[[str], bool]) -> asyncio.Future[str]:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        return future

    def settled(self) -> bool:
        """
        Whether every line sent has had its answer (echo or error).
        """
        answered = sum(1 for r in self.pending if r.answered is not None)
        return answered + len(self.errors) >= len(self.pending)

    def resolve(self) -> None:
        """
        Match the C{!!!} lines to the requests that got no echo, in order
        (an error answers the oldest such request sent before it came).
        Errors that answer no request are noted (a flood refusal of a
        command too).
        """
        waiting = [r for r in self.pending if r.answered is None]
        for t, line in self.errors:
            for r in waiting:
                if r.sent <= t + 0.001:
                    waiting.remove(r)
                    r.answered = None
                    self.journal.answer(r, "error", self.conn, line)
                    r.answered = t
                    break
            else:
                if "slow down" in line:
                    self.journal.violation("flood-drop", self.client.name, "%s: a command refused by flood control: %s" % (self.conn, line))
        self.errors = []


class _TextClient(Client):
    """
    A client that sends lines and reads the line chat's rendering.
    """

    view: TextView

    async def sendLine(self, line: str) -> None:
        raise NotImplementedError

    async def sendLines(self, lines: list[str]) -> None:
        for line in lines:
            await self.sendLine(line)

    async def say(self, count: int = 1) -> None:
        view = self.view
        room = view.current
        if room is None:
            return
        lines = []
        for _ in range(count):
            token = self.token()
            view.pending.append(self.journal.sent(self.name, self.conn, room, token))
            lines.append(self.text(token))
        await self.sendLines(lines)

    async def command(self, line: str, done: Callable[[str], bool]) -> bool:
        """
        Send a command once every line sent before has its answer (bounded
        wait), and wait for its answer (C{done}) or a C{!!!} line.
        """
        for _ in range(int(WAIT / 0.1)):
            if self.view.settled():
                break
            await asyncio.sleep(0.1)
        else:
            return False
        errors = len(self.view.errors)
        future = self.view.waitLine(lambda s: done(s) or s.startswith("!!! "))
        await self.sendLine(line)
        stopping = asyncio.ensure_future(self.ctx.stopping.wait())
        try:
            await asyncio.wait([future, stopping], timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not future.done():
            future.cancel()
            conn = self.journal.connections.get(self.conn)
            if not self.ctx.stopping.is_set() and conn is not None and conn.closed is None:
                self.journal.violation("silence", self.name, "%s: no answer to %r within %s s" % (self.conn, line, WAIT))
            return False
        answer = future.result()
        if answer.startswith("!!! "):
            # a command's refusal: not the answer of a message
            del self.view.errors[errors:]
            if "slow down" in answer:
                self.journal.violation("flood-drop", self.name, "%s: %r refused by flood control: %s" % (self.conn, line, answer))
            return False
        return True

    async def play(self, alive: Callable[[], bool]) -> None:
        """
        Chat while the workload runs: say, join, part, reconnect.
        """
        while alive() and not self.ctx.stopping.is_set():
            if not self.ctx.chatting.is_set():
                await self.pause(0.3)
                continue
            await self.pause(self.rng.uniform(0.3, 1.2))
            if not alive() or not self.ctx.chatting.is_set():
                continue
            view = self.view
            action = self.chooseAction(view.rooms)
            if action == "join":
                room = self.rng.choice([r for r in ROOMS if r not in view.rooms])
                await self.command("/join " + room, lambda s, r=room: s.startswith("*** %s: %s joined" % (r, view.nick)))
            elif action == "part":
                room = view.current
                if room is not None:
                    await self.command("/part " + room, lambda s: s.startswith("*** your current room") or s.startswith("*** you are in no room"))
            elif action == "reconnect":
                return
            else:
                await self.say()

    async def rejoin(self) -> None:
        """
        After (re)connecting: take the nick and join the rooms wanted.
        """
        await self.command("/nick " + self.name, lambda s: "you are now" in s)
        for room in self.wanted:
            if room not in self.view.rooms:
                await self.command("/join " + room, lambda s, r=room: s.startswith("*** %s: %s joined" % (r, self.view.nick)))


class LineUser(_TextClient):
    kind = "line"

    async def session(self) -> bool:
        host, port = self.node.line
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=1 << 22), 5)
        self.writer = writer
        self.conn = self.journal.connect(self.name, self.kind, self.node.name)
        self.view = TextView(self, self.conn)
        reading = asyncio.create_task(self._read(reader))
        try:
            await asyncio.wait_for(self.view.welcomed.wait(), 10)
            self.connected = True
            await self.rejoin()
            await self.play(lambda: not reading.done())
            if self.ctx.stopping.is_set():
                # the end: leave cleanly (everything sent is answered first)
                writer.write(b"/quit\n")
                await asyncio.wait_for(reading, 10)
            else:
                while not reading.done() and not self.ctx.chatting.is_set() and not self.ctx.stopping.is_set():
                    await self.pause(0.2)
            return True
        finally:
            writer.transport.abort()
            reading.cancel()
            self.view.resolve()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                raw = await reader.readline()
                if not raw:
                    return
                self.view.feed(raw.decode("utf-8", "replace").rstrip("\r\n"))
        except (OSError, ConnectionError):
            pass
        finally:
            self.view.resolve()
            self.journal.closed(self.conn)

    async def sendLine(self, line: str) -> None:
        self.writer.write(line.encode("utf-8") + b"\n")

    async def sendLines(self, lines: list[str]) -> None:
        # one write: a paste
        self.writer.write(b"".join(line.encode("utf-8") + b"\n" for line in lines))


class Paster(LineUser):
    """
    A line user who pastes 20-30 lines in one write now and then.
    """

    kind = "line-paste"

    async def play(self, alive: Callable[[], bool]) -> None:
        while alive() and not self.ctx.stopping.is_set():
            await self.pause(self.rng.uniform(6, 12))
            if alive() and self.ctx.chatting.is_set() and self.view.settled():
                await self.say(self.rng.randint(20, 30))


class TextUser(_TextClient):
    kind = "ws-text"

    async def session(self) -> bool:
        from websockets.asyncio.client import connect

        host, port = self.node.web
        ws = await asyncio.wait_for(
            connect("ws://%s:%d/ws" % (host, port), open_timeout=5, close_timeout=3, proxy=None, max_size=None), 8
        )
        self.ws = ws
        self.conn = self.journal.connect(self.name, self.kind, self.node.name)
        self.view = TextView(self, self.conn)

        async def read() -> None:
            try:
                async for frame in ws:
                    if isinstance(frame, str):
                        self.view.feed(frame)
            except ConnectionClosed:
                pass
            finally:
                self.view.resolve()
                self.journal.closed(self.conn)

        reading = asyncio.create_task(read())
        try:
            await asyncio.wait_for(self.view.welcomed.wait(), 10)
            self.connected = True
            await self.rejoin()
            await self.play(lambda: not reading.done())
            while not reading.done() and not self.ctx.chatting.is_set() and not self.ctx.stopping.is_set():
                await self.pause(0.2)
            return True
        finally:
            ws.transport.abort()
            reading.cancel()
            self.view.resolve()

    async def sendLine(self, line: str) -> None:
        await self.ws.send(line)


# -- json mode --


class JsonLogic:
    """
    The json-mode conversation as a client keeps it: nick and owner token,
    positions per room, requests not acknowledged yet; turns server events
    into journal records. Shared by WebSocket json mode and Socket.IO json
    mode.
    """

    name: str
    journal: Journal
    conn: str

    def initJson(self) -> None:
        self.ownerToken: str | None = None
        self.positions: dict[str, tuple[str, int]] = {}
        #: ref -> the first request with that ref, while not acknowledged
        self.unacked: dict[str, Request] = {}
        #: ref -> every request with that ref, for the answer
        self.byRef: dict[str, list[Request]] = {}
        self.acked: list[Request] = []
        self.rooms: list[str] = []
        self.nick = ""
        self.helloSince: dict[str, tuple[str, int]] = {}
        self.refs = 0
        self.waiters: list[tuple[Callable[[dict[str, Any]], bool], asyncio.Future[dict[str, Any]]]] = []
        #: ref -> (request, journal record) of edits, deletions and
        #: reactions not acknowledged yet (sent again after a reconnect)
        self.updating: dict[str, tuple[dict[str, Any], list[str]]] = {}
        #: tokens of own messages deleted (or being deleted)
        self.deleting: set[str] = set()

    def nextRef(self) -> str:
        self.refs += 1
        return "%s-r%d" % (self.name, self.refs)

    def waitEvent(self, predicate: Callable[[dict[str, Any]], bool]) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters.append((predicate, future))
        return future

    def sinceNow(self) -> dict[str, dict[str, Any]]:
        return {room: {"epoch": e, "id": i} for room, (e, i) in self.positions.items()}

    def _position(self, room: str, epoch: str, id: int) -> None:
        old = self.positions.get(room)
        if old is None or old[0] != epoch or id > old[1]:
            self.positions[room] = (epoch, id)

    def request(self, room: str, token: str, ref: str, resendOf: Request | None = None) -> Request:
        r = self.journal.sent(self.name, self.conn, room, token, ref, resendOf)
        self.byRef.setdefault(ref, []).append(r)
        if resendOf is None:
            self.unacked[ref] = r
        return r

    def answered(self, ref: str | None, kind: str, detail: str = "", epoch: str | None = None, id: int | None = None) -> None:
        if ref is None:
            return
        for r in self.byRef.get(ref, []):
            if r.answered is None:
                self.journal.answer(r, kind, self.conn, detail, epoch, id)
        first = self.unacked.pop(ref, None)
        if first is not None and kind == "ack":
            self.acked.append(first)
        elif first is not None and kind == "error" and "may have been stored" in detail:
            # not confirmed: resend with the same ref (after a reconnect,
            # or now) — it must be stored once
            self.unacked[ref] = first

    def event(self, e: dict[str, Any]) -> None:
        j = self.journal
        kind = e.get("type")
        if kind == "welcome":
            self.nick = e.get("nick", self.nick)
            if e.get("token"):
                self.ownerToken = e["token"]
        elif kind == "join":
            if str(e.get("nick", "")).lower() == self.nick.lower():
                room = e["room"]
                since = self.helloSince.pop(room, None)
                j.join(self.name, self.conn, room, "resume" if since else "join", since)
                if room not in self.rooms:
                    self.rooms.append(room)
        elif kind == "history":
            room = e["room"]
            episode = j.episode(self.conn, room)
            if episode is not None and not episode.entries and episode.recovered is None:
                episode.recovered = e.get("recovered")
            # (after a since: the messages and the updates missed, in id order)
            entries = [(int(m["id"]), m.get("text", ""), m["epoch"]) for m in e.get("messages", [])]
            entries += [(int(u["seq"]), "", u["epoch"]) for u in e.get("updates", [])]
            for id, text, epoch in sorted(entries):
                j.seen(self.conn, room, tokenOf(text), epoch, id, False)
                self._position(room, epoch, id)
        elif kind == "message":
            room = e["room"]
            j.seen(self.conn, room, tokenOf(e.get("text", "")), e["epoch"], int(e["id"]), True)
            self._position(room, e["epoch"], int(e["id"]))
        elif kind in ("edit", "delete", "react") and "room" in e:
            # an update: an entry of the room's sequence (its seq), seen
            # exactly once, in order with the messages
            room = e["room"]
            j.seen(self.conn, room, None, e["epoch"], int(e["seq"]), True)
            self._position(room, e["epoch"], int(e["seq"]))
        elif kind == "epoch":
            room = e["room"]
            j.notice(self.conn, room)
            self.positions[room] = (e["epoch"], 0)
        elif kind == "part":
            if str(e.get("nick", "")).lower() == self.nick.lower():
                room = e["room"]
                j.leave(self.conn, room, "part")
                if room in self.rooms:
                    self.rooms.remove(room)
        elif kind == "nick":
            if str(e.get("old", "")).lower() == self.nick.lower():
                self.nick = e.get("new", self.nick)
        elif kind == "ack" and e.get("ref") in self.updating:
            _, record = self.updating.pop(e["ref"])
            record[4] = "ack"
            if record[1] == "delete":
                j.deleted.add(record[2])
        elif kind == "ack":
            self.answered(e.get("ref"), "ack", "", e.get("epoch"), e.get("id"))
        elif kind == "error" and e.get("ref") in self.updating:
            code = str(e.get("code"))
            if code not in ("unavailable", "server-error"):
                self.updating.pop(e["ref"])[1][4] = code
                if code not in ("no-such-message", "not-in-room"):
                    # (no-such-message: Redis lost the message, or it was
                    # pruned; not-in-room: sent again after a reconnect
                    # into fewer rooms; anything else should not be)
                    j.violation("update-refused", self.name, "%s: %s" % (self.conn, e))
        elif kind == "error":
            if e.get("ref") is not None:
                self.answered(e["ref"], "error", "%s: %s" % (e.get("code"), e.get("message")))
            elif e.get("code") == "flood":
                j.violation("flood-drop", self.name, "%s: a request refused by flood control: %s" % (self.conn, e.get("message")))
        for waiter in list(self.waiters):
            predicate, future = waiter
            if not future.done() and predicate(e):
                future.set_result(e)
                self.waiters.remove(waiter)


class JsonUser(Client, JsonLogic):
    kind = "ws-json"
    #: whether it edits, reacts to and deletes its messages now and then
    updates = True

    def __init__(self, *a: Any, **kw: Any) -> None:
        Client.__init__(self, *a, **kw)
        self.initJson()

    async def send(self, **request: Any) -> None:
        await self.ws.send(json.dumps(request))

    async def session(self) -> bool:
        from websockets.asyncio.client import connect

        host, port = self.node.web
        ws = await asyncio.wait_for(
            connect(
                "ws://%s:%d/ws" % (host, port),
                subprotocols=["chat.json"],  # type: ignore[list-item]
                open_timeout=5, close_timeout=3, proxy=None, max_size=None,
            ),
            8,
        )  # fmt: skip
        self.ws = ws
        self.conn = self.journal.connect(self.name, self.kind, self.node.name)

        async def read() -> None:
            try:
                async for frame in ws:
                    if isinstance(frame, str):
                        self.event(json.loads(frame))
            except ConnectionClosed:
                pass
            finally:
                self.journal.closed(self.conn)
                for _, future in self.waiters:
                    if not future.done():
                        future.set_exception(ConnectionError("connection closed"))
                self.waiters = []

        reading = asyncio.create_task(read())
        try:
            rooms = list(self.rooms) if self.rooms else list(self.wanted)
            self.helloSince = {r: p for r, p in self.positions.items() if r in rooms}
            hello: dict[str, Any] = {"type": "hello", "nick": self.name, "rooms": rooms}
            if self.helloSince:
                hello["since"] = {r: {"epoch": e, "id": i} for r, (e, i) in self.helloSince.items()}
            if self.ownerToken:
                hello["token"] = self.ownerToken
            welcome = self.waitEvent(lambda e: e.get("type") in ("welcome", "error"))
            await self.send(**hello)
            answer = await asyncio.wait_for(welcome, 10)
            if answer["type"] == "error":
                self.journal.notes.append("%.1f %s: hello refused: %s" % (self.journal.now(), self.name, answer))
                return False
            self.connected = True
            # requests the last connection did not see acknowledged: again,
            # with the same ref
            for ref, first in list(self.unacked.items()):
                self.request(first.room, first.token, ref, resendOf=first)
                await self.send(type="say", room=first.room, text=self.text(first.token), ref=ref)
            for request, _ in list(self.updating.values()):
                await self.send(**request)
            await self.play(lambda: not reading.done())
            while not reading.done() and not self.ctx.stopping.is_set() and not self.ctx.chatting.is_set():
                await self.pause(0.2)
            return True
        finally:
            ws.transport.abort()
            reading.cancel()

    def text(self, token: str) -> str:
        # the same text for a token, whenever it is (re)sent
        return "%s said by %s" % (token, self.name)

    async def say(self, room: str) -> None:
        token = self.token()
        ref = self.nextRef()
        self.request(room, token, ref)
        await self.send(type="say", room=room, text=self.text(token), ref=ref)

    async def update(self) -> bool:
        """
        Now and then edit, react to or delete one of its own acknowledged
        messages in a room it is in (issue #19): an entry of the room's
        sequence that every member must see once, in order.
        """
        mine = [
            r for r in self.acked
            if r.id is not None and r.room in self.rooms and r.token not in self.deleting
            and r.epoch == self.positions.get(r.room, ("", 0))[0]
        ]  # fmt: skip
        if not mine:
            return False
        r = self.rng.choice(mine)
        x = self.rng.random()
        op = "edit" if x < 0.4 else "react" if x < 0.85 else "delete"
        ref = self.nextRef()
        request: dict[str, Any] = {"type": op, "room": r.room, "id": r.id, "epoch": r.epoch, "ref": ref}
        if op == "edit":
            request["text"] = self.text(r.token) + " (edited %d)" % (self.refs,)
        elif op == "react":
            request["emoji"] = self.rng.choice(["👍", "🎉", "👀"])
            request["on"] = self.rng.random() < 0.7
        else:
            self.deleting.add(r.token)
        record = [self.name, op, r.token, ref, ""]
        self.journal.updates.append(record)
        self.updating[ref] = (request, record)
        await self.send(**request)
        return True

    async def play(self, alive: Callable[[], bool]) -> None:
        while alive() and not self.ctx.stopping.is_set():
            if not self.ctx.chatting.is_set():
                await self.pause(0.3)
                continue
            await self.pause(self.rng.uniform(0.3, 1.2))
            if not alive() or not self.ctx.chatting.is_set():
                continue
            if self.updates and self.rng.random() < 0.15 and await self.update():
                continue
            action = self.chooseAction(self.rooms)
            if action == "join":
                room = self.rng.choice([r for r in ROOMS if r not in self.rooms])
                await self.send(type="join", room=room)
            elif action == "part":
                await self.send(type="part", room=self.rng.choice(self.rooms))
            elif action == "reconnect":
                if self.rng.random() < 0.5:
                    self.otherNode()
                return
            elif action == "resend" and self.acked:
                first = self.rng.choice(self.acked)
                self.request(first.room, first.token, first.ref or "", resendOf=first)
                await self.send(type="say", room=first.room, text=self.text(first.token), ref=first.ref)
            elif self.rooms:
                await self.say(self.rng.choice(self.rooms))


class Blaster(JsonUser):
    """
    The write load: says in #load as fast as its window of 30 requests in
    flight allows (at most ~C{rate} a second), while the load phase runs.
    """

    kind = "ws-json-load"
    rate = 150.0

    async def play(self, alive: Callable[[], bool]) -> None:
        while alive() and not self.ctx.stopping.is_set():
            if not self.ctx.loading.is_set():
                await self.pause(0.2)
                continue
            if LOAD_ROOM not in self.rooms:
                await self.send(type="join", room=LOAD_ROOM)
                await self.pause(0.5)
                continue
            if len(self.unacked) < 30:
                await self.say(LOAD_ROOM)
            await asyncio.sleep(1.0 / self.rate)


class Joiner(JsonUser):
    """
    Joins and leaves #load over and over while the load phase runs (half
    the joins with C{since}: the last position seen), watched for
    duplicates and gaps between history and live messages.
    """

    kind = "ws-json-joiner"

    async def play(self, alive: Callable[[], bool]) -> None:
        while alive() and not self.ctx.stopping.is_set():
            if not self.ctx.loading.is_set():
                if LOAD_ROOM in self.rooms:
                    await self.send(type="part", room=LOAD_ROOM)
                await self.pause(0.3)
                continue
            if LOAD_ROOM in self.rooms:
                parted = self.waitEvent(lambda e: e.get("type") in ("part", "error") and e.get("room", LOAD_ROOM) == LOAD_ROOM)
                await self.send(type="part", room=LOAD_ROOM)
                try:
                    await asyncio.wait_for(parted, WAIT)
                except asyncio.TimeoutError:
                    return
                await self.pause(self.rng.uniform(0.02, 0.1))
            request: dict[str, Any] = {"type": "join", "room": LOAD_ROOM}
            position = self.positions.get(LOAD_ROOM)
            if position is not None and self.rng.random() < 0.5:
                request["since"] = {"epoch": position[0], "id": position[1]}
                self.helloSince[LOAD_ROOM] = position
            history = self.waitEvent(lambda e: e.get("type") in ("history", "error") and e.get("room", LOAD_ROOM) == LOAD_ROOM)
            await self.send(**request)
            try:
                await asyncio.wait_for(history, WAIT)
            except asyncio.TimeoutError:
                return
            await self.pause(self.rng.uniform(0.05, 0.25))


# -- Socket.IO --


class SioHub:
    """
    One node process (tests/sio/chaos_driver.mjs) holding every Socket.IO
    client; events are dispatched to the clients by id.
    """

    def __init__(self, logPath: Path) -> None:
        self.clients: dict[str, Any] = {}
        self.logPath = logPath
        self.proc: asyncio.subprocess.Process | None = None
        self._reading: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.log = open(self.logPath, "w")
        self.proc = await asyncio.create_subprocess_exec(
            "node", str(SIO / "chaos_driver.mjs"),
            cwd=SIO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            preexec_fn=_dieWithParent,
            limit=1 << 24,
        )  # fmt: skip
        self._reading = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            raw = await self.proc.stdout.readline()
            if not raw:
                return
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            client = self.clients.get(event.get("id"))
            if client is not None:
                try:
                    client.driverEvent(event)
                except Exception as e:
                    client.journal.violation("harness-error", client.name, "%s: %r" % (type(e).__name__, e))

    def command(self, **command: Any) -> None:
        if self.proc is not None and self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(json.dumps(command).encode("utf-8") + b"\n")

    async def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        if self._reading is not None:
            self._reading.cancel()
        self.log.close()


class _SioClient(Client):
    transports = ["websocket"]

    def auth(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def url(self) -> str:
        host, port = self.node.web
        return "http://%s:%d" % (host, port)

    async def session(self) -> bool:
        hub = self.ctx.sio
        assert hub is not None
        hub.clients[self.name] = self
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.down = asyncio.Event()
        self.acks: dict[int, Request] = {}
        self.ackNo = 0
        self.lastConnect = self.journal.now()
        hub.command(op="open", id=self.name, url=self.url(), transports=self.transports, auth=self.auth())
        try:
            while not self.ctx.stopping.is_set():
                await self.pause(0.5)
                if self.conn == "" and self.journal.now() - self.lastConnect > 8:
                    # our node is gone for now: try the other one
                    return False
        finally:
            hub.command(op="close", id=self.name)
            await asyncio.sleep(0.1)
        return True

    def driverEvent(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "connect":
            self.lastConnect = self.journal.now()
            self.opened()
        elif kind == "disconnect":
            self.lastConnect = self.journal.now()
            if self.conn:
                self.closedConn()
        elif kind == "connect_error":
            pass
        elif kind == "on":
            if not self.conn:
                self.opened()
            self.onEvent(event["name"], event["args"])
        elif kind == "ack":
            r = self.acks.pop(event["ack"], None)
            if r is not None:
                self.onAck(r, event["args"])

    def opened(self) -> None:
        if self.conn and self.journal.connections[self.conn].closed is None:
            return
        self.conn = self.journal.connect(self.name, self.kind, self.node.name)
        self.connected = True
        self.newConnection()

    def closedConn(self) -> None:
        self.journal.closed(self.conn)
        self.conn = ""
        self.connected = False

    def newConnection(self) -> None:
        pass

    def onEvent(self, name: str, args: list[Any]) -> None:
        pass

    def onAck(self, r: Request, args: list[Any]) -> None:
        pass

    def emit(self, name: str, arg: Any, r: Request | None = None) -> None:
        assert self.ctx.sio is not None
        if r is None:
            self.ctx.sio.command(op="emit", id=self.name, name=name, args=[arg])
            return
        self.ackNo += 1
        self.acks[self.ackNo] = r
        self.ctx.sio.command(op="emit", id=self.name, name=name, args=[arg], ack=self.ackNo)


class SioJsonUser(_SioClient, JsonLogic):
    kind = "sio-json"

    def __init__(self, *a: Any, **kw: Any) -> None:
        Client.__init__(self, *a, **kw)
        self.initJson()
        self.playing: asyncio.Task[None] | None = None

    def auth(self) -> dict[str, Any]:
        return {"mode": "json", "nick": self.name, "rooms": list(self.wanted)}

    def newConnection(self) -> None:
        # (the driver's auth function sent the same positions as since)
        self.helloSince = dict(self.positions)
        for ref, first in list(self.unacked.items()):
            r = self.request(first.room, first.token, ref, resendOf=first)
            self.emit("say", {"text": self.text(first.token), "room": first.room, "ref": ref}, r)
        if self.playing is None or self.playing.done():
            self.playing = asyncio.create_task(self.play())

    def text(self, token: str) -> str:
        return "%s said by %s" % (token, self.name)

    def onEvent(self, name: str, args: list[Any]) -> None:
        if args and isinstance(args[0], dict):
            self.event(args[0])

    def onAck(self, r: Request, args: list[Any]) -> None:
        reply = args[0] if args and isinstance(args[0], dict) else {}
        if reply.get("ok"):
            self.answered(r.ref, "ack", "", reply.get("epoch"), reply.get("id"))
        else:
            self.answered(r.ref, "error", "%s: %s" % (reply.get("code"), reply.get("message")))

    async def play(self) -> None:
        conn = self.conn
        while self.conn == conn and not self.ctx.stopping.is_set():
            await self.pause(self.rng.uniform(0.3, 1.2))
            if self.conn != conn or not self.ctx.chatting.is_set():
                continue
            action = self.chooseAction(self.rooms)
            if action == "join":
                self.emit("join", {"room": self.rng.choice([r for r in ROOMS if r not in self.rooms])})
            elif action == "part":
                self.emit("part", {"room": self.rng.choice(self.rooms)})
            elif action == "resend" and self.acked:
                first = self.rng.choice(self.acked)
                r = self.request(first.room, first.token, first.ref or "", resendOf=first)
                self.emit("say", {"text": self.text(first.token), "room": first.room, "ref": first.ref}, r)
            elif action in ("say", "reconnect", "resend") and self.rooms:
                room = self.rng.choice(self.rooms)
                token = self.token()
                ref = self.nextRef()
                r = self.request(room, token, ref)
                self.emit("say", {"text": self.text(token), "room": room, "ref": ref}, r)


class SioTextUser(_SioClient):
    kind = "sio-text"

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.playing: asyncio.Task[None] | None = None
        # polling first, then the upgrade (with --workers too: a request
        # that reaches another worker is relayed to the session's owner)
        self.transports = ["polling", "websocket"]

    def auth(self) -> dict[str, Any]:
        return {"nick": self.name}

    def newConnection(self) -> None:
        self.view = TextView(self, self.conn)
        if self.playing is None or self.playing.done():
            self.playing = asyncio.create_task(self.play())

    def closedConn(self) -> None:
        self.view.resolve()
        super().closedConn()

    def onEvent(self, name: str, args: list[Any]) -> None:
        if name == "message" and args and isinstance(args[0], str):
            self.view.feed(args[0])

    async def play(self) -> None:
        conn = self.conn
        view = self.view
        while self.conn == conn and not self.ctx.stopping.is_set():
            await self.pause(self.rng.uniform(0.3, 1.2))
            if self.conn != conn or not self.ctx.chatting.is_set() or view.current is None:
                continue
            action = self.chooseAction(view.rooms)
            if action == "join" and view.settled():
                self.emit("message", "/join " + self.rng.choice([r for r in ROOMS if r not in view.rooms]))
                await self.pause(1.0)
            else:
                token = self.token()
                view.pending.append(self.journal.sent(self.name, self.conn, view.current, token))
                self.emit("message", self.text(token))


# -- the terminal client --


class TerminalUser(Client):
    """
    C{twisted-chat ws://…/ws} as a subprocess: lines typed on its stdin,
    its stdout read as the line chat. It reconnects and resumes by itself
    (to the one address it knows).
    """

    kind = "terminal"

    async def run(self) -> None:
        script = Path(sys.executable).with_name("twisted-chat")
        host, port = self.node.web
        self.reconnects: list[float] = []
        while not self.ctx.stopping.is_set():
            proc = await asyncio.create_subprocess_exec(
                str(script), "ws://%s:%d/ws" % (host, port), "--nick", self.name, "--reconnect-attempts", "1000",
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=environment(), preexec_fn=_dieWithParent, limit=1 << 22,
            )  # fmt: skip
            self.conn = self.journal.connect(self.name, self.kind, self.node.name)
            self.view = TextView(self, self.conn, continuous=True)
            reading = asyncio.create_task(self._read(proc))
            statuses = asyncio.create_task(self._statuses(proc))
            try:
                await self.play(proc, lambda: proc.returncode is None and not reading.done())
                if proc.stdin is not None:
                    proc.stdin.close()  # end of input: it quits
                try:
                    await asyncio.wait_for(proc.wait(), 12)
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()
                try:
                    await asyncio.wait_for(asyncio.gather(reading, statuses), 5)
                except asyncio.TimeoutError:
                    pass
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                reading.cancel()
                statuses.cancel()
                self.view.resolve()
                # a request whose answer came after a reconnect was resent
                # by the client: not measured against the bound
                for r in self.view.pending:
                    if r.answered is not None and any(r.sent <= t <= r.answered for t in self.reconnects):
                        r.answerConn = self.conn + "'"
                self.journal.closed(self.conn, "exit %s" % (proc.returncode,))
            if not self.ctx.stopping.is_set():
                self.journal.notes.append("%.1f %s: exited (%s); starting again" % (self.journal.now(), self.name, proc.returncode))
                await self.pause(0.5)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                return
            self.view.feed(raw.decode("utf-8", "replace").rstrip("\r\n"))

    async def _statuses(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while True:
            raw = await proc.stderr.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace")
            if self.ctx.folder is not None:
                with open(self.ctx.folder / ("%s.stderr" % (self.name,)), "a") as f:
                    f.write("%.1f %s" % (self.journal.now(), line))
            if "reconnecting" in line or "connection lost" in line:
                self.reconnects.append(self.journal.now())

    async def play(self, proc: asyncio.subprocess.Process, alive: Callable[[], bool]) -> None:
        # the terminal client shows the welcome as a line of its own
        for _ in range(100):
            if self.view.current is not None or not alive():
                break
            await asyncio.sleep(0.1)
        while alive() and not self.ctx.stopping.is_set():
            await self.pause(self.rng.uniform(0.4, 1.5))
            if not alive() or not self.ctx.chatting.is_set():
                continue
            token = self.token()
            self.view.pending.append(self.journal.sent(self.name, self.conn, "#lobby", token))
            assert proc.stdin is not None
            proc.stdin.write((self.text(token) + "\n").encode("utf-8"))
