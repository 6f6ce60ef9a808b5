# -*- test-case-name: tests.client.test_jsonchat -*-
"""
The terminal client's json mode, without I/O: L{JsonChat} translates what a
person types on the line chat into json-mode requests and renders json-mode
events as the very lines the line chat sends (see docs/protocol.md), so a
user sees the same chat whichever way they connect.

Both directions use the line chat's own language (L{twisted_chat.wire}):
its command grammar, so that a typed line is refused here with the words the
server's line chat would use, and its renderers; the tests compare both
renderings event by event.
"""

from __future__ import annotations

import secrets
from typing import Callable

from twisted_chat.client.conversation import CLIENT_COMMANDS, Conversation, ReceivedMessage, Shown, Translation
from twisted_chat.client.resume import Hole, JsonObject
from twisted_chat.client.typed import describeInput
from twisted_chat.core.errors import ChatError
from twisted_chat.wire.commands import (
    HELP,
    Command,
    newTopic,
    parseLine,
)
from twisted_chat.wire.render import (
    NOTICE,
    SaidInRoom,
    currentRoomLine,
    epochLine,
    errorLine,
    historyLines,
    historyUnavailableLine,
    joinedLine,
    messageLine,
    nickLine,
    noticeLine,
    oneLine,
    partLine,
    plural,
    presenceLine,
    privateHistoryLine,
    roomsLine,
    stamp,
    switchedLine,
    topicLine,
    welcomeLine,
    youAreNowLine,
)

def newRefPrefix() -> str:
    """
    A prefix for the C{ref}s of one session, unlike any other session's:
    48 random bits, e.g. C{"c3f9a0b1c2d4e-"}.
    """
    return "c%s-" % (secrets.token_hex(6),)


def describeRequest(request: JsonObject) -> str:
    """
    The line a user types for the C{say}, C{msg}, C{edit}, C{delete} or
    C{react} C{request}, as L{describeInput} shows it.
    """
    text = str(request.get("text", ""))
    kind = request.get("type")
    if kind == "edit":
        return describeInput("/edit " + text)
    if kind == "delete":
        return describeInput("/delete")
    if kind == "react":
        return describeInput("/react %s%s" % ("" if request.get("on", True) else "-", request.get("emoji")))
    if kind == "msg":
        return describeInput("/msg %s %s" % (request.get("to"), text))
    if request.get("action") is True:
        return describeInput("/me " + text)
    return describeInput("/" + text if text.startswith("/") else text)


def roomKey(name: str) -> str:
    """
    The canonical form of a typed room name, as the server will use it
    (C{dev} and C{#Dev} both name C{#dev}); validation is the server's job.
    """
    return "#" + name[1:].lower() if name.startswith("#") else "#" + name.lower()


#: what C{/help} adds for L{CLIENT_COMMANDS}
CLIENT_HELP = [
    "in this client (json mode) also:",
    "  /reply N TEXT     reply to message N of your current room (1 = the last one, 2 = the one before)",
    "  /react N EMOJI    react to message N with EMOJI; the same again takes it back",
]


class JsonChat(Conversation):
    """
    The json-mode conversation, seen from the client.

    L{translate} turns one typed line into json requests (and local lines,
    for C{/help} and usage errors): command C{/NAME} is C{req_NAME}; L{render}
    turns one server event into lines in the line chat's format: event
    C{TYPE} is C{on_TYPE}. Besides what a resume needs (L{Resume}) it
    remembers the C{say} and C{msg} requests not yet acknowledged, which
    are sent again (same C{ref}) after the next C{welcome}. Requests made
    before the C{welcome} of a connection are held (L{outgoing}) and sent
    after those.

    C{now} returns the current time in seconds; it dates history stamps.
    The C{ref}s are C{refPrefix} and a count. The server takes a second
    request with a nick's ref (within an hour) for a resend of the first, so
    a session's refs must not repeat another's: give each session its own
    prefix (see L{newRefPrefix}).
    """

    def __init__(self, now: Callable[[], float], nick: str | None = None, refPrefix: str = "c") -> None:
        Conversation.__init__(self, nick)
        self._now = now
        self.refPrefix = refPrefix
        self._ref = 0
        #: requests the events call for (see L{takeRequests})
        self._pending: list[JsonObject] = []
        #: ref -> the C{say} or C{msg} request not acknowledged yet, oldest first
        self.unacked: dict[str, JsonObject] = {}
        # requests made on this connection before its welcome, in order
        self._held: list[JsonObject] = []
        #: the server's C{reconnect_after} hint (seconds) of its last notice
        self.reconnectAfter: float | None = None
        #: how many requests were refused: C{error} events from the server,
        #: and typed lines refused here (usage errors, unknown commands)
        self.refusals = 0

    # -- requests --

    def takeRequests(self) -> list[JsonObject]:
        """
        The requests that the events rendered so far call for, to be sent
        now: a C{hello} without a nick after the server refused the one asked
        for (as on the line chat, the user then carries on as a guest).
        """
        pending, self._pending = self._pending, []
        return pending

    def outgoing(self, requests: list[JsonObject]) -> list[JsonObject]:
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

    def takeHeld(self) -> list[JsonObject]:
        """
        The requests held until the welcome, to be sent now (when quitting
        before it: the server still handles them before the close).
        """
        held, self._held = self._held, []
        return held

    def _nextRef(self) -> str:
        self._ref += 1
        return "%s%d" % (self.refPrefix, self._ref)

    def _record(self, request: JsonObject) -> Translation:
        # a say or msg gets a ref, and is kept until its ack (or error) arrives
        ref = request["ref"] = self._nextRef()
        self.unacked[ref] = request
        return [request], []

    # -- typed lines --

    def translate(self, line: str) -> Translation:
        """
        Translate one typed line into C{(requests, lines)}: the json requests
        to send, and lines to show locally (C{/help}, usage errors), both
        possibly empty. C{/quit} is not handled here (the session handles
        it: see L{twisted_chat.client.typed.quitRequest}). The rules are the
        line chat's (L{parseLine}): empty lines are ignored, C{//text} says
        C{/text}, any other C{/word} is a command.
        """
        try:
            said = self._parse(line)
            if said is None:
                return [], []
            if isinstance(said, str):
                return self._record({"type": "say", "text": said})
            handler: Callable[[Command], Translation] | None = getattr(self, "req_" + said.name, None)
            if handler is None:
                raise ChatError("unknown-command", "/%s is not available in this client" % (said.name,))
            return handler(said)
        except ChatError as e:
            self.refusals += 1
            return [], [errorLine(e.message)]

    def _parse(self, line: str) -> str | Command | None:
        """
        L{parseLine}, knowing the commands of L{CLIENT_COMMANDS} too.
        """
        if line.startswith("/") and not line.startswith("//"):
            name, _, rest = line[1:].partition(" ")
            syntax = CLIENT_COMMANDS.get(name.lower())
            if syntax is not None:
                return syntax.arguments(name.lower(), rest.strip(), syntax.usage)
        return parseLine(line)

    def req_help(self, command: Command) -> Translation:
        return [], [NOTICE + line for line in HELP + CLIENT_HELP]

    def req_quit(self, command: Command) -> Translation:
        # (the session ends itself before a /quit gets here)
        return [], []

    def req_nick(self, command: Command) -> Translation:
        return [{"type": "nick", "nick": command.target}], []

    def req_login(self, command: Command) -> Translation:
        return [{"type": "login", "nick": command.target, "password": command.text, "ref": self._nextRef()}], []

    def req_topic(self, command: Command) -> Translation:
        if not command.text:
            return [{"type": "who"}], []
        return [{"type": "topic", "topic": newTopic(command.text)}], []

    def req_kick(self, command: Command) -> Translation:
        return [{"type": "kick", "nick": command.target, "reason": command.text}], []

    def req_ban(self, command: Command) -> Translation:
        return [{"type": "ban", "target": command.target, "reason": command.text}], []

    def req_unban(self, command: Command) -> Translation:
        return [{"type": "unban", "target": command.target}], []

    def req_op(self, command: Command) -> Translation:
        return [{"type": "op", "nick": command.target}], []

    def req_notice(self, command: Command) -> Translation:
        return [{"type": "notice", "text": command.text}], []

    def req_status(self, command: Command) -> Translation:
        return [{"type": "status"}], []

    def req_join(self, command: Command) -> Translation:
        key = roomKey(command.target)
        request: JsonObject = {"type": "join", "room": command.target}
        if key in self.rooms:
            # Already a member: the server only switches the current room.
            self.current = key
            return [request], [switchedLine(key)]
        position = self.positions.get(key)
        if position is not None:
            request["since"] = {"epoch": position[0], "id": position[1]}
        return [request], []

    def req_part(self, command: Command) -> Translation:
        request: JsonObject = {"type": "part"}
        if command.target:
            request["room"] = command.target
        return [request], []

    def req_rooms(self, command: Command) -> Translation:
        return [{"type": "rooms"}], []

    def req_who(self, command: Command) -> Translation:
        request: JsonObject = {"type": "who"}
        if command.target:
            request["room"] = command.target
        return [request], []

    def req_msg(self, command: Command) -> Translation:
        return self._record({"type": "msg", "to": command.target, "text": command.text})

    def req_me(self, command: Command) -> Translation:
        return self._record({"type": "say", "text": command.text, "action": True})

    def req_history(self, command: Command) -> Translation:
        self.historyRequested()
        return [{"type": "history", "limit": command.number}], []

    # -- events --

    def render(self, event: object) -> list[str]:
        """
        Update the state from one server event and return the lines that
        show it, exactly as the line chat would send them. Events of unknown
        types, and acks, show nothing.
        """
        if not isinstance(event, dict):
            return [errorLine("unexpected data from the server: not a JSON object")]
        kind = event.get("type")
        handler = getattr(self, "on_" + kind.replace("-", "_"), None) if isinstance(kind, str) else None
        if handler is None:
            return []
        try:
            lines: list[str] = handler(event)
        except (KeyError, TypeError, ValueError, AttributeError):
            return [errorLine("malformed %s event from the server" % (oneLine(str(kind))[:32],))]
        lines = [oneLine(line) for line in lines]
        if kind == "message":
            self._ring(event, lines)
        return lines

    def on_welcome(self, event: JsonObject) -> list[str]:
        self.welcomed = True
        nick = self.nick = str(event["nick"])
        self.tokenGiven(event.get("token"))
        # what was never acknowledged goes again, with the same ref (the
        # server answers a duplicate with the first ack), then what was
        # typed since
        held, self._held = self._held, []
        heldRefs = {r.get("ref") for r in held}
        self._pending.extend(r for ref, r in self.unacked.items() if ref not in heldRefs)
        self._pending.extend(held)
        rooms = [str(r) for r in event.get("rooms") or []]
        self.welcomedTo(rooms)
        self.typing = {}
        return [welcomeLine(nick, ", ".join(rooms) if rooms else "no room")]

    def on_message(self, event: JsonObject) -> list[str]:
        m = ReceivedMessage.fromEvent(event)
        if self.known(m.room, m.epoch, m.id):
            return []
        hole = self.holeToFetch(m.room, m.epoch, m.id, self._now())
        if hole is not None:
            self._pending.append(hole.request())
        self.seen(m.room, m.epoch, m.id)
        lines = []
        replyTo = event.get("reply_to")
        if isinstance(replyTo, int):
            lines.append(self._replyLine(m.room + ": ", m.sender, self._inRoom(m.room, replyTo)))
        self._remember(m.room, m.id, Shown.fromEvent(event))
        # (a message ends its sender's typing)
        self._typingEnded(m.room, m.sender)
        lines.append(messageLine(m))
        return lines

    def on_private(self, event: JsonObject) -> list[str]:
        lines = []
        replyTo = event.get("reply_to")
        if isinstance(replyTo, int):
            lines.append(self._replyLine("private: ", str(event["from"]), self._privates.get(replyTo)))
        lines.append(self._privateLine(event))
        id = event.get("id")
        if isinstance(id, int):
            self._remember(None, id, Shown.fromEvent(event))
        self.seenPrivate(id)
        return lines

    def on_private_history(self, event: JsonObject) -> list[str]:
        updates = self._freshUpdates(event.get("updates"))
        messages = [p for p in event["messages"] if p.get("deleted") is not True]
        for p in event["messages"]:
            if isinstance(p.get("id"), int):
                self._remember(None, p["id"], Shown.fromEvent(p))
        lines = []
        if messages:
            now = self._now()
            lines.append(privateHistoryLine(len(messages)))
            for p in messages:
                self.seenPrivate(p.get("id"))
                lines.append(self._privateLine(p, stamp(float(p["time"]) / 1000.0, now)))
        for p in event["messages"]:
            self.seenPrivate(p.get("id"))
        return lines + self._updateLines(updates)

    def on_join(self, event: JsonObject) -> list[str]:
        room, nick = str(event["room"]), str(event["nick"])
        if self.isMe(nick):
            self.joined(room)
        return [joinedLine(room, nick)]

    def on_part(self, event: JsonObject) -> list[str]:
        room, nick = str(event["room"]), str(event["nick"])
        lines = [partLine(room, nick, str(event.get("reason", "left")))]
        self._typingEnded(room, nick)
        if self.isMe(nick):
            self.parted(room)
            self.typing.pop(room, None)
            self._shown.pop(room, None)
            lines.append(currentRoomLine(self.current))
        return lines

    def on_nick(self, event: JsonObject) -> list[str]:
        old, new = str(event["old"]), str(event["new"])
        for room in self.typing:
            self._typingEnded(room, old)
        if self.isMe(old):
            self.nick = new
        if self.nick is not None and new == self.nick:
            return [youAreNowLine(new)]
        rooms = event.get("rooms")
        if isinstance(rooms, list) and rooms:
            return [nickLine((str(r) for r in rooms), old, new)]
        return [NOTICE + "%s is now known as %s" % (old, new)]

    def on_presence(self, event: JsonObject) -> list[str]:
        total = event.get("total")
        members = [str(m) for m in event["members"]]
        return [presenceLine(str(event["room"]), members, total if isinstance(total, int) else None)]

    def on_history(self, event: JsonObject) -> list[str]:
        room, epoch = str(event["room"]), str(event["epoch"])
        updates = self._freshUpdates(event.get("updates"))
        events = event["messages"]
        messages = [ReceivedMessage.fromEvent(m) for m in events]
        recovered = event.get("recovered")
        requested = self.answersRequest(room)
        unavailable = event.get("reason") == "unavailable"
        if isinstance(requested, Hole):
            return [] if unavailable else self._filled(requested, epoch, events)
        if unavailable:
            # (not "could not resume": the messages left out are fetched
            # once the server can read them, see on_message)
            if not requested:
                self.historyUnavailable(room, epoch)
                if recovered is False:
                    self.notRecovered(room, epoch)
            return [historyUnavailableLine(room, fetched=not requested)]
        if not requested:
            # what came before (a resume, a rejoin) is not shown twice
            fresh = [not self.known(room, epoch, m.id) for m in messages]
            events = [e for e, f in zip(events, fresh) if f]
            messages = [m for m, f in zip(messages, fresh) if f]
        lines: list[str] = []
        if recovered is False:
            self.notRecovered(room, epoch)
            lines.append(NOTICE + "%s: could not resume where you left off; some messages may be missing" % (room,))
        for e, m in zip(events, messages):
            self._remember(room, m.id, Shown.fromEvent(e))
            self.seen(room, epoch, m.id)
        # a deleted message has no text left to show
        shown: list[SaidInRoom] = [m for e, m in zip(events, messages) if e.get("deleted") is not True]
        lines.extend(historyLines(room, shown, self._now(), requested, resumed=recovered is True))
        return lines + self._updateLines(updates)

    def _filled(self, hole: Hole, epoch: str, events: list[JsonObject]) -> list[str]:
        """
        The answer to our request for C{hole} (not C{unavailable}: then it
        is asked for again on a later live message): its messages, under a
        header.
        """
        if hole.before is None or epoch != hole.epoch:
            return []
        messages = [ReceivedMessage.fromEvent(e) for e in events]
        self.holeFilled(hole)
        inside = [(e, m) for e, m in zip(events, messages) if hole.after < m.id < hole.before]
        for e, m in inside:
            self._remember(hole.room, m.id, Shown.fromEvent(e))
        shown = [m for e, m in inside if e.get("deleted") is not True]
        lines = []
        if shown:
            lines.append(NOTICE + "%s: %s from while the history could not be read:" % (
                hole.room, plural(len(shown), "message")))  # fmt: skip
            lines.extend(messageLine(m, stamp(m.time, self._now())) for m in shown)
        if hole.wider():
            lines.append(NOTICE + "%s: some earlier messages may be missing" % (hole.room,))
        return lines

    def on_rooms(self, event: JsonObject) -> list[str]:
        rooms = event["rooms"]
        return [roomsLine([(str(r["room"]), int(r["members"])) for r in rooms] if rooms else [])]

    def on_ack(self, event: JsonObject) -> list[str]:
        self.unacked.pop(str(event.get("ref")), None)
        room, epoch, id = event.get("room"), event.get("epoch"), event.get("seq", event.get("id"))
        if isinstance(room, str) and isinstance(epoch, str) and isinstance(id, int):
            self.acknowledged(room, epoch, id)
        return []

    def on_error(self, event: JsonObject) -> list[str]:
        self.refusals += 1
        ref = event.get("ref")
        if ref is not None:
            self.unacked.pop(str(ref), None)
        if not self.welcomed and self.nick and event.get("code") in ("bad-nick", "nick-taken"):
            # the hello was refused for its nick: try again as a guest
            self.nick = None
            self._pending.append(self.hello())
        return [errorLine(str(event.get("message") or event.get("code") or "error"))]

    def on_notice(self, event: JsonObject) -> list[str]:
        after = event.get("reconnect_after")
        if isinstance(after, (int, float)) and not isinstance(after, bool) and after >= 0:
            self.reconnectAfter = after / 1000.0
        return [noticeLine(str(event["text"]))]

    def on_epoch(self, event: JsonObject) -> list[str]:
        room = str(event["room"])
        self.epochChanged(room, str(event["epoch"]))
        # (ids start again: those remembered name nothing now)
        self._shown.pop(room, None)
        return [epochLine(room)]

    def on_topic(self, event: JsonObject) -> list[str]:
        return [topicLine(str(event["room"]), str(event["topic"]) if event["topic"] else "", str(event["by"]))]
