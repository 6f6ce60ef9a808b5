# -*- test-case-name: tests.test_client -*-
"""
The reactor-free core of the C{twisted-chat} terminal client.

Nothing here does I/O: L{parseTarget} turns the command-line URL into a
L{Target}, L{quitRequest} spots the lines that end the session, and
L{JsonChat} translates what a person types on the line chat into json-mode
requests and renders json-mode events as the very lines the line chat sends
(see docs/protocol.md), so a user sees the same chat whichever way they
connect. The rendering reuses the line chat's own helpers from
L{twisted_chat.wire.render}; the tests compare both renderings event by event.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Callable
from urllib.parse import urlsplit

from twisted_chat.core.events import Message
from twisted_chat.wire.commands import HELP
from twisted_chat.wire.render import messageLine, oneLine, partLine, stamp

DEFAULT_URL = "tcp://127.0.0.1:9000"
SUBPROTOCOL = "chat.json"

#: scheme -> (default port, is a WebSocket, uses TLS)
SCHEMES: dict[str, tuple[int, bool, bool]] = {
    "tcp": (9000, False, False),
    "tls": (9000, False, True),
    "ws": (80, True, False),
    "wss": (443, True, True),
}

_EXPECTED = "expected tcp://HOST:PORT, tls://HOST:PORT, ws://HOST:PORT/PATH or wss://HOST:PORT/PATH"


class BadURL(ValueError):
    """
    The URL given on the command line cannot be used; C{str()} says why in
    one line.
    """


class Target:
    """
    Where to connect: a parsed, validated C{twisted-chat} URL.
    """

    __slots__ = ("scheme", "host", "port", "path")

    def __init__(self, scheme: str, host: str, port: int, path: str = "") -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        #: the request path and query of a WebSocket URL; empty otherwise
        self.path = path

    @property
    def websocket(self) -> bool:
        """
        Whether this is the WebSocket json mode (C{ws}/C{wss}).
        """
        return SCHEMES[self.scheme][1]

    @property
    def secure(self) -> bool:
        """
        Whether the connection uses TLS (C{tls}/C{wss}).
        """
        return SCHEMES[self.scheme][2]

    @property
    def address(self) -> str:
        """
        C{HOST:PORT} for messages, IPv6 literals in brackets.
        """
        host = "[%s]" % (self.host,) if ":" in self.host else self.host
        return "%s:%d" % (host, self.port)

    @property
    def url(self) -> str:
        """
        The normalized URL (with port and, for WebSocket, path).
        """
        return "%s://%s%s" % (self.scheme, self.address, self.path)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Target):
            return NotImplemented
        return (self.scheme, self.host, self.port, self.path) == (
            other.scheme,
            other.host,
            other.port,
            other.path,
        )

    def __hash__(self) -> int:
        return hash((self.scheme, self.host, self.port, self.path))

    def __repr__(self) -> str:
        return "<Target %s>" % (self.url,)


def parseTarget(url: str) -> Target:
    """
    Parse a C{twisted-chat} URL: C{tcp://HOST:PORT} and C{tls://HOST:PORT}
    for the line chat (port 9000 when left out), C{ws://HOST:PORT/PATH} and
    C{wss://…} for WebSocket json mode (ports 80 and 443, path C{/} when
    left out). Raise L{BadURL} with a one-line reason for anything else.
    """
    if not url or any(c.isspace() for c in url):
        raise BadURL("bad URL %r: %s" % (url, _EXPECTED))
    if "://" not in url:
        raise BadURL("bad URL %r: no scheme; %s" % (url, _EXPECTED))
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise BadURL("bad URL %r: %s" % (url, e))
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise BadURL("bad URL %r: unknown scheme %r; %s" % (url, parts.scheme, _EXPECTED))
    defaultPort, websocket, _ = SCHEMES[scheme]
    if parts.username is not None or parts.password is not None:
        raise BadURL("bad URL %r: user names and passwords are not supported" % (url,))
    host = parts.hostname
    if not host:
        raise BadURL("bad URL %r: no host" % (url,))
    try:
        port = parts.port
    except ValueError:
        raise BadURL("bad URL %r: the port must be a number from 1 to 65535" % (url,))
    if port is None:
        if parts.netloc.endswith(":"):
            raise BadURL("bad URL %r: empty port" % (url,))
        port = defaultPort
    if not 1 <= port <= 65535:
        raise BadURL("bad URL %r: the port must be a number from 1 to 65535" % (url,))
    if parts.fragment:
        raise BadURL("bad URL %r: a fragment (#...) has no meaning here" % (url,))
    if websocket:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
    else:
        if parts.path not in ("", "/") or parts.query:
            raise BadURL("bad URL %r: %s:// URLs have no path" % (url, scheme))
        path = ""
    return Target(scheme, host, port, path)


def newRefPrefix() -> str:
    """
    A prefix for the C{ref}s of one session, unlike any other session's:
    48 random bits, e.g. C{"c3f9a0b1c2d4e-"}.
    """
    return "c%s-" % (secrets.token_hex(6),)


def quitRequest(line: str) -> str | None:
    """
    If C{line} ends the session, return the reason given (maybe empty),
    else C{None}. C{/quit [REASON]} ends it, and so does a line that is just
    C{bye}, as with the seed project's client.
    """
    stripped = line.strip()
    if stripped == "bye":
        return ""
    word, _, rest = stripped.partition(" ")
    if word.lower() == "/quit":
        return rest.strip()
    return None


#: how much of a typed line a status quotes
DESCRIBE_LENGTH = 120


def describeInput(line: str) -> str:
    """
    C{line} as typed, on one line and cut to L{DESCRIBE_LENGTH} characters,
    to name it in a status.
    """
    text = oneLine(line)
    if len(text) > DESCRIBE_LENGTH:
        text = text[: DESCRIBE_LENGTH - 1] + "\u2026"
    return text


def describeRequest(request: dict[str, Any]) -> str:
    """
    The line a user types for the C{say} or C{msg} C{request}, as
    L{describeInput} shows it.
    """
    text = str(request.get("text", ""))
    if request.get("type") == "msg":
        return describeInput("/msg %s %s" % (request.get("to"), text))
    if request.get("action") is True:
        return describeInput("/me " + text)
    return describeInput("/" + text if text.startswith("/") else text)


def _plural(n: int, word: str) -> str:
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def _roomKey(name: str) -> str:
    """
    The canonical form of a typed room name, as the server will use it
    (C{dev} and C{#Dev} both name C{#dev}); validation is the server's job.
    """
    return "#" + name[1:].lower() if name.startswith("#") else "#" + name.lower()


_COMMAND = re.compile(r"[A-Za-z]+\Z")


class JsonChat:
    """
    The json-mode conversation, seen from the client.

    L{translate} turns one typed line into json requests (and local lines,
    for C{/help} and usage errors); L{render} turns one server event into
    lines in the line chat's format. It remembers what the lines depend on:
    the nick, the rooms joined (in order, with the current one), and per room
    the last message position C{(epoch, id)} seen, which L{hello} sends as
    C{since} so that a reconnecting client gets exactly what it missed; the
    nick's owner C{token} and the highest private id seen, which L{hello}
    sends too; and the C{say} and C{msg} requests not yet acknowledged,
    which are sent again (same C{ref}) after the next C{welcome}. Requests
    made before the C{welcome} of a connection are held (L{outgoing}) and
    sent after those.

    C{now} returns the current time in seconds; it dates history stamps.
    The C{ref}s are C{refPrefix} and a count. The server takes a second
    request with a nick's ref (within an hour) for a resend of the first, so
    a session's refs must not repeat another's: give each session its own
    prefix (see L{newRefPrefix}).
    """

    def __init__(self, now: Callable[[], float], nick: str | None = None, refPrefix: str = "c") -> None:
        self._now = now
        self.refPrefix = refPrefix
        #: the nick we asked for, then the nick the server gave us
        self.nick = nick
        #: rooms we are in, in joining order
        self.rooms: list[str] = []
        #: the room plain text goes to, as the server sees it
        self.current: str | None = None
        #: room -> (epoch, highest message id seen)
        self.positions: dict[str, tuple[str, int]] = {}
        # rooms (or None for "the current one") of /history requests not yet
        # answered, oldest first
        self._historyRequests: list[str | None] = []
        # rooms of the welcome whose join events have not arrived yet
        self._helloRooms: list[str] = []
        # rooms we joined whose (join) history has not arrived yet
        self._joinHistories: set[str] = set()
        self._ref = 0
        #: whether the server has welcomed us on this connection
        self.welcomed = False
        #: requests the events call for (see L{takeRequests})
        self._pending: list[dict[str, Any]] = []
        #: the owner token the server gave us, and the nick it is for
        self.token: str | None = None
        self._tokenNick: str | None = None
        #: the highest private message id seen
        self.privateSince: int | None = None
        #: ref -> the C{say} or C{msg} request not acknowledged yet, oldest first
        self.unacked: dict[str, dict[str, Any]] = {}
        # requests made on this connection before its welcome, in order
        self._held: list[dict[str, Any]] = []
        #: the server's C{reconnect_after} hint (seconds) of its last notice
        self.reconnectAfter: float | None = None
        #: how many requests were refused: C{error} events from the server,
        #: and typed lines refused here (usage errors, unknown commands)
        self.refusals = 0
        # (room, epoch, id) of acknowledged messages whose echo has not been
        # seen while a history for their room is on its way (after a resume)
        self._echoes: list[tuple[str, str, int]] = []

    # -- requests --

    def hello(self) -> dict[str, Any]:
        """
        The first request of a connection: our nick if any (with its owner
        token, if a welcome gave us one for it), and after a reconnect the
        rooms we were in, where we were in each, and the highest private id
        seen.
        """
        request: dict[str, Any] = {"type": "hello"}
        if self.nick:
            request["nick"] = self.nick
            if self.token is not None and self._tokenNick is not None and self.nick.lower() == self._tokenNick.lower():
                request["token"] = self.token
        if self.rooms:
            rooms = list(self.rooms)
            if self.current in rooms:
                # the first room listed becomes the current one
                rooms.remove(self.current)
                rooms.insert(0, self.current)
            request["rooms"] = rooms
            since = {r: {"epoch": e, "id": i} for r, (e, i) in self.positions.items() if r in rooms}
            if since:
                request["since"] = since
        if self.privateSince is not None:
            request["private_since"] = self.privateSince
        # what the welcome and joins tell us is the truth from here on
        self._historyRequests = []
        self._joinHistories = set()
        self.welcomed = False
        return request

    def takeRequests(self) -> list[dict[str, Any]]:
        """
        The requests that the events rendered so far call for, to be sent
        now: a C{hello} without a nick after the server refused the one asked
        for (as on the line chat, the user then carries on as a guest).
        """
        pending, self._pending = self._pending, []
        return pending

    def outgoing(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """
        Of the translated C{requests}, those to send now: all of them once
        the server has welcomed us; before that none, as they are held and
        sent after the welcome (see L{takeRequests}), in order, after the
        unacknowledged ones of an earlier connection.
        """
        if self.welcomed:
            return requests
        self._held.extend(requests)
        return []

    def takeHeld(self) -> list[dict[str, Any]]:
        """
        The requests held until the welcome, to be sent now (when quitting
        before it: the server still handles them before the close).
        """
        held, self._held = self._held, []
        return held

    def _record(self, request: dict[str, Any]) -> dict[str, Any]:
        # a say or msg is kept until its ack (or error) arrives
        self.unacked[request["ref"]] = request
        return request

    def _nextRef(self) -> str:
        self._ref += 1
        return "%s%d" % (self.refPrefix, self._ref)

    def translate(self, line: str) -> tuple[list[dict[str, Any]], list[str]]:
        """
        Translate one typed line into C{(requests, lines)}: the json requests
        to send, and lines to show locally (C{/help}, usage errors), both
        possibly empty. C{/quit} is not handled here (see L{quitRequest}).
        The rules are the line chat's: empty lines are ignored, C{//text}
        says C{/text}, any other C{/word} is a command.
        """
        if not line.strip():
            return [], []
        if not line.startswith("/") or line.startswith("//"):
            text = line[1:] if line.startswith("//") else line
            return [self._record({"type": "say", "text": text, "ref": self._nextRef()})], []
        name, _, rest = line[1:].partition(" ")
        name = name.lower()
        rest = rest.strip()
        handler = getattr(self, "_cmd_" + name, None) if _COMMAND.match(name) else None
        if handler is None:
            self.refusals += 1
            return [], ["!!! unknown command /%s (try /help)" % (oneLine(name)[:32],)]
        result: tuple[list[dict[str, Any]], list[str]] = handler(rest)
        return result

    def _usage(self, usage: str) -> tuple[list[dict[str, Any]], list[str]]:
        self.refusals += 1
        return [], ["!!! usage: " + usage]

    def _cmd_help(self, rest: str) -> tuple[list[dict[str, Any]], list[str]]:
        return [], ["*** " + line for line in HELP]

    def _cmd_nick(self, rest: str) -> tuple[list[dict[str, Any]], list[str]]:
        nick, _, password = rest.partition(" ")
        if not nick:
            return self._usage("/nick NAME [PASSWORD]")
        if password:
            return self._cmd_login(rest)
        return [{"type": "nick", "nick": nick}], []

    def _cmd_login(self, rest: str) -> tuple[list[dict[str, Any]], list[str]]:
        nick, _, password = rest.partition(" ")
        if not nick or not password:
            return self._usage("/login NICK PASSWORD")
        return [{"type": "login", "nick": nick, "password": password, "ref": self._nextRef()}], []

    def _cmd_topic(self, rest: str) -> tuple[list[dict[str, Any]], list[str]]:
        if not rest:
            return [{"type": "who"}], []
        return [{"type": "topic", "topic": "" if rest == "-" else rest}], []

    def _cmd_kick(self, rest: str) -> tuple[list[dict[str, Any]], list[str]]:
        nick, _, reason = rest.partition(" ")
        if not nick:
            return self._usage("/kick NICK [REASON]")
        return [{"type": "kick", "nick": nick, "reason": reason.strip()}], []

    def _cmd_ban(self, rest: str) -> tuple[list[dict[str, Any]], list[str]]:
        target, _, reason = rest.partition(" ")
        if not target:
            return self._usage("/ban NICK|ADDRESS [REASON]")
        return [{"type": "ban", "target": target, "reason": reason.strip()}], []

    def _cmd_unban(self, rest: str) -> tuple[list[dict[str, Any]], list[str]]:
        if not rest or " " in rest:
            return self._usage("/unban NICK|ADDRESS")
        return [{"type": "unban", "target": rest}], []

    def _cmd_op(self, rest: str) -> tuple[list[dict[str, Any]], list[str]]:
        if not rest or " " in rest:
            return self._usage("/op NICK")
        return [{"type": "op", "nick": rest}], []

    def _cmd_notice(self, rest: str) -> tuple[list[dict[str, Any]], list[str]]:
        if not rest:
            return self._usage("/notice TEXT")
        return [{"type": "notice", "text": rest}], []

    def _cmd_join(self, rest: str) -> tuple[list[dict[str, Any]], list[str]]:
        if not rest or " " in rest:
            return self._usage("/join ROOM")
        key = _roomKey(rest)
        request: dict[str, Any] = {"type": "join", "room": rest}
        if key in self.rooms:
            # Already a member: the server only switches the current room.
            self.current = key
            return [request], ["*** %s is now your current room" % (key,)]
        position = self.positions.get(key)
        if position is not None:
            request["since"] = {"epoch": position[0], "id": position[1]}
        return [request], []

    def _cmd_part(self, rest: str) -> tuple[list[dict[str, Any]], list[str]]:
        if " " in rest:
            return self._usage("/part [ROOM]")
        request: dict[str, Any] = {"type": "part"}
        if rest:
            request["room"] = rest
        return [request], []

    def _cmd_rooms(self, rest: str) -> tuple[list[dict[str, Any]], list[str]]:
        return [{"type": "rooms"}], []

    def _cmd_who(self, rest: str) -> tuple[list[dict[str, Any]], list[str]]:
        if " " in rest:
            return self._usage("/who [ROOM]")
        request: dict[str, Any] = {"type": "who"}
        if rest:
            request["room"] = rest
        return [request], []

    def _cmd_msg(self, rest: str) -> tuple[list[dict[str, Any]], list[str]]:
        nick, _, text = rest.partition(" ")
        if not nick or not text.strip():
            return self._usage("/msg NICK TEXT")
        return [self._record({"type": "msg", "to": nick, "text": text, "ref": self._nextRef()})], []

    def _cmd_me(self, rest: str) -> tuple[list[dict[str, Any]], list[str]]:
        if not rest:
            return self._usage("/me ACTION")
        return [self._record({"type": "say", "text": rest, "action": True, "ref": self._nextRef()})], []

    def _cmd_history(self, rest: str) -> tuple[list[dict[str, Any]], list[str]]:
        n = 20
        if rest:
            try:
                n = int(rest)
            except ValueError:
                n = -1
            if n < 1:
                return self._usage("/history [N] with N a whole number from 1")
        self._historyRequests.append(self.current)
        return [{"type": "history", "limit": n}], []

    # -- events --

    def render(self, event: object) -> list[str]:
        """
        Update the state from one server event and return the lines that
        show it, exactly as the line chat would send them. Events of unknown
        types, and acks, show nothing.
        """
        if not isinstance(event, dict):
            return ["!!! unexpected data from the server: not a JSON object"]
        kind = event.get("type")
        handler = getattr(self, "_on_" + kind.replace("-", "_"), None) if isinstance(kind, str) else None
        if handler is None:
            return []
        try:
            lines: list[str] = handler(event)
        except (KeyError, TypeError, ValueError, AttributeError):
            return ["!!! malformed %s event from the server" % (oneLine(str(kind))[:32],)]
        return [oneLine(line) for line in lines]

    def _isMe(self, nick: str) -> bool:
        return self.nick is not None and nick.lower() == self.nick.lower()

    def _message(self, m: dict[str, Any]) -> Message:
        return Message(
            str(m["room"]),
            int(m["id"]),
            str(m["epoch"]),
            str(m["from"]),
            str(m["text"]),
            float(m["time"]) / 1000.0,
            m.get("action") is True,
        )

    def _seen(self, room: str, epoch: str, id: int) -> None:
        old = self.positions.get(room)
        if old is None or old[0] != epoch or old[1] < id:
            self.positions[room] = (epoch, id)

    def _known(self, room: str, epoch: str, id: int) -> bool:
        """
        Whether message C{id} of C{room} was seen already (at or below the
        position kept for the room, in the same epoch).
        """
        old = self.positions.get(room)
        return old is not None and old[0] == epoch and id <= old[1]

    def _seenPrivate(self, p: dict[str, Any]) -> None:
        id = p.get("id")
        if isinstance(id, int) and not isinstance(id, bool):
            if self.privateSince is None or id > self.privateSince:
                self.privateSince = id

    def _privateLine(self, p: dict[str, Any], when: str | None = None) -> str:
        prefix = "[" + when + "] " if when else ""
        sender, recipient, text = str(p["from"]), str(p["to"]), str(p["text"])
        if self._isMe(sender) and not self._isMe(recipient):
            return prefix + "-> *%s* %s" % (recipient, oneLine(text))
        return prefix + "*%s* %s" % (sender, oneLine(text))

    def _on_welcome(self, event: dict[str, Any]) -> list[str]:
        self.welcomed = True
        self.nick = str(event["nick"])
        token = event.get("token")
        if isinstance(token, str) and token:
            self.token, self._tokenNick = token, self.nick
        # what was never acknowledged goes again, with the same ref (the
        # server answers a duplicate with the first ack), then what was
        # typed since
        held, self._held = self._held, []
        heldRefs = {r.get("ref") for r in held}
        self._pending.extend(r for ref, r in self.unacked.items() if ref not in heldRefs)
        self._pending.extend(held)
        rooms = [str(r) for r in event.get("rooms") or []]
        # The joins that follow re-add the rooms one by one; the first room
        # of the hello is the current one.
        self.rooms = []
        self._helloRooms = list(rooms)
        self.current = rooms[0] if rooms else None
        where = ", ".join(rooms) if rooms else "no room"
        return ["*** Welcome to twisted-chat, %s! You are in %s. Type /help for commands." % (self.nick, where)]

    def _on_message(self, event: dict[str, Any]) -> list[str]:
        m = self._message(event)
        if self._known(m.room, m.epoch, m.id):
            return []
        self._seen(m.room, m.epoch, m.id)
        return [messageLine(m)]

    def _on_private(self, event: dict[str, Any]) -> list[str]:
        line = self._privateLine(event)
        self._seenPrivate(event)
        return [line]

    def _on_private_history(self, event: dict[str, Any]) -> list[str]:
        messages = event["messages"]
        if not messages:
            return []
        now = self._now()
        lines = ["*** %s while you were away:" % (_plural(len(messages), "private message"),)]
        for p in messages:
            self._seenPrivate(p)
            lines.append(self._privateLine(p, stamp(float(p["time"]) / 1000.0, now)))
        return lines

    def _on_join(self, event: dict[str, Any]) -> list[str]:
        room, nick = str(event["room"]), str(event["nick"])
        if self._isMe(nick):
            if room not in self.rooms:
                self.rooms.append(room)
            self._joinHistories.add(room)
            if room in self._helloRooms:
                # one of the hello's rooms: the welcome already named the current one
                self._helloRooms.remove(room)
            else:
                self.current = room
        return ["*** %s: %s joined" % (room, nick)]

    def _on_part(self, event: dict[str, Any]) -> list[str]:
        room, nick = str(event["room"]), str(event["nick"])
        lines = [partLine(room, nick, str(event.get("reason", "left")))]
        if self._isMe(nick):
            if room in self.rooms:
                self.rooms.remove(room)
            self.positions.pop(room, None)
            self._joinHistories.discard(room)
            if self.current == room:
                self.current = self.rooms[-1] if self.rooms else None
            if self.current is not None:
                lines.append("*** your current room is %s" % (self.current,))
            else:
                lines.append("*** you are in no room now: /join one to talk")
        return lines

    def _on_nick(self, event: dict[str, Any]) -> list[str]:
        old, new = str(event["old"]), str(event["new"])
        if self._isMe(old):
            self.nick = new
        if self.nick is not None and new == self.nick:
            return ["*** you are now %s" % (new,)]
        rooms = event.get("rooms")
        if isinstance(rooms, list) and rooms:
            return ["*** %s: %s is now known as %s" % (", ".join(str(r) for r in rooms), old, new)]
        return ["*** %s is now known as %s" % (old, new)]

    def _on_presence(self, event: dict[str, Any]) -> list[str]:
        room, members = str(event["room"]), [str(m) for m in event["members"]]
        total = event.get("total")
        if isinstance(total, int) and total > len(members):
            return ["*** %s: %d members, among them: %s" % (room, total, ", ".join(members))]
        if members:
            return ["*** %s: members: %s" % (room, ", ".join(members))]
        return ["*** %s: nobody is here" % (room,)]

    def _on_history(self, event: dict[str, Any]) -> list[str]:
        room, epoch = str(event["room"]), str(event["epoch"])
        messages = [self._message(m) for m in event["messages"]]
        recovered = event.get("recovered")
        if room in self._joinHistories:
            # the history that follows our own join of the room
            self._joinHistories.remove(room)
            requested = False
        else:
            requested = self._answersRequest(room)
        if not requested:
            # what came before (a resume, a rejoin) is not shown twice
            messages = [m for m in messages if not self._known(room, epoch, m.id)]
        lines: list[str] = []
        if recovered is False:
            old = self.positions.get(room)
            if old is not None and old[0] != epoch:
                # that position belongs to another id sequence: useless now
                del self.positions[room]
            lines.append(
                "*** %s: could not resume where you left off; some messages may be missing" % (room,)
            )
        for m in messages:
            self._seen(room, epoch, m.id)
        if not messages:
            if requested:
                lines.append("*** %s: no messages yet" % (room,))
            return lines
        if requested:
            lines.append("*** %s: history, %s:" % (room, _plural(len(messages), "message")))
        elif recovered is True:
            lines.append("*** %s: %s while you were away:" % (room, _plural(len(messages), "message")))
        else:
            lines.append("*** %s: last %s:" % (room, _plural(len(messages), "message")))
        now = self._now()
        for m in messages:
            lines.append(messageLine(m, stamp(m.time, now)))
        if requested:
            lines.append("*** %s: end of history" % (room,))
        return lines

    def _answersRequest(self, room: str) -> bool:
        """
        Whether a C{history} event for C{room} answers one of our C{/history}
        requests (rather than coming with a join), consuming that request.
        """
        for i, wanted in enumerate(self._historyRequests):
            if wanted is None or wanted == room:
                del self._historyRequests[i]
                return True
        return False

    def _on_rooms(self, event: dict[str, Any]) -> list[str]:
        rooms = event["rooms"]
        if not rooms:
            return ["*** rooms: none"]
        return ["*** rooms: " + ", ".join("%s (%d)" % (str(r["room"]), int(r["members"])) for r in rooms)]

    def _on_ack(self, event: dict[str, Any]) -> list[str]:
        self.unacked.pop(str(event.get("ref")), None)
        room, epoch, id = event.get("room"), event.get("epoch"), event.get("id")
        if isinstance(room, str) and isinstance(epoch, str) and isinstance(id, int):
            # The echo comes before the ack, except for a message sent again
            # after a resume: the server acknowledges the first one at once,
            # and its echo may still be on its way in the room's history.
            self._echoes.append((room, epoch, id))
            self.echoesPending()
        return []

    def echoesPending(self) -> bool:
        """
        Whether an acknowledged message of ours has not been shown yet while
        the history that will show it is still on its way (it was sent again
        after a resume, and acknowledged before the rejoin's history came).
        """
        waiting = self._helloRooms + list(self._joinHistories)
        self._echoes = [
            (room, epoch, id) for room, epoch, id in self._echoes if room in waiting and not self._known(room, epoch, id)
        ]
        return bool(self._echoes)

    def _on_error(self, event: dict[str, Any]) -> list[str]:
        self.refusals += 1
        ref = event.get("ref")
        if ref is not None:
            self.unacked.pop(str(ref), None)
        if not self.welcomed and self.nick and event.get("code") in ("bad-nick", "nick-taken"):
            # the hello was refused for its nick: try again as a guest
            self.nick = None
            self._pending.append(self.hello())
        return ["!!! " + str(event.get("message") or event.get("code") or "error")]

    def _on_notice(self, event: dict[str, Any]) -> list[str]:
        after = event.get("reconnect_after")
        if isinstance(after, (int, float)) and not isinstance(after, bool) and after >= 0:
            self.reconnectAfter = after / 1000.0
        return ["*** notice: " + str(event["text"])]

    def _on_epoch(self, event: dict[str, Any]) -> list[str]:
        # The server's store lost its messages: positions in the old epoch
        # are void; ids start again at 1 in the new one.
        room = str(event["room"])
        self.positions[room] = (str(event["epoch"]), 0)
        return [
            "*** %s: the message history was reset (the server lost its stored messages); message numbers start again"
            % (room,)
        ]

    def _on_topic(self, event: dict[str, Any]) -> list[str]:
        if event["topic"]:
            return ["*** %s: topic: %s (set by %s)" % (event["room"], event["topic"], event["by"])]
        return ["*** %s: topic cleared by %s" % (event["room"], event["by"])]
