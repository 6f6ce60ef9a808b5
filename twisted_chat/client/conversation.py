# -*- test-case-name: tests.client.test_jsonchat -*-
"""
The conversation features of the terminal client's json mode, without I/O:
L{Conversation} remembers the messages shown, and so translates C{/edit},
C{/delete}, C{/reply}, C{/react}, C{/search} and C{/set bell} into
requests and renders edits, deletions, reactions, replies, search results
and who is typing the way the line chat does. L{JsonChat
<twisted_chat.client.jsonchat.JsonChat>} builds on it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from twisted_chat.client.resume import JsonObject, Resume
from twisted_chat.core.errors import ChatError
from twisted_chat.wire.commands import (
    Command,
    Syntax,
    noArguments,
    text as textArgument,
    usageError,
    wordAndText,
)
from twisted_chat.wire.render import (
    NOTICE,
    deleteLine,
    editLine,
    messageLine,
    oneLine,
    privateLine,
    quoted,
    stamp,
)

#: what a typed line gives: requests to send, and lines to show here
Translation = tuple[list[JsonObject], list[str]]


#: how many messages of each room (and private ones) the client remembers
#: to name them in those lines, and for C{/reply N} and C{/react N}
REMEMBERED = 1000


#: the start of a message's text as the line chat quotes it
quoteStart = quoted


@dataclass
class Shown:
    """
    A message the client has shown: what later lines (edits, deletions,
    reactions, replies) and commands (C{/edit}, C{/reply N}) need of it.
    """

    sender: str
    text: str
    deleted: bool = False
    #: emoji -> the nicks who reacted with it
    reactions: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def fromEvent(cls, m: JsonObject) -> Shown:
        reactions = m.get("reactions")
        return cls(
            str(m["from"]),
            str(m["text"]),
            m.get("deleted") is True,
            {str(e): [str(n) for n in nicks] for e, nicks in reactions.items()} if isinstance(reactions, dict) else {},
        )


#: the commands only this client has (the line chat's are in L{COMMANDS
#: <twisted_chat.wire.commands.COMMANDS>}), read the same way
CLIENT_COMMANDS: dict[str, Syntax] = {
    "edit": Syntax(textArgument, "/edit TEXT"),
    "delete": Syntax(noArguments, "/delete"),
    "reply": Syntax(wordAndText, "/reply N TEXT, N = 1 for the last message of your current room, 2 the one before"),
    "react": Syntax(wordAndText, "/react N EMOJI, N = 1 for the last message of your current room, 2 the one before"),
    "search": Syntax(textArgument, "/search TEXT"),
}


def typingLine(nicks: list[str]) -> str:
    """
    Who is typing in the current room, for the status line (C{""}: nobody).
    """
    if not nicks:
        return ""
    if len(nicks) == 1:
        return "%s is typing\u2026" % (nicks[0],)
    if len(nicks) <= 3:
        return "%s and %s are typing\u2026" % (", ".join(nicks[:-1]), nicks[-1])
    return "%d people are typing\u2026" % (len(nicks),)


class ReceivedMessage(NamedTuple):
    """
    A room message from a json-mode event.
    """

    room: str
    id: int
    epoch: str
    sender: str
    text: str
    #: seconds since the epoch
    time: float
    action: bool

    @classmethod
    def fromEvent(cls, m: JsonObject) -> ReceivedMessage:
        return cls(
            str(m["room"]),
            int(m["id"]),
            str(m["epoch"]),
            str(m["from"]),
            str(m["text"]),
            float(m["time"]) / 1000.0,
            m.get("action") is True,
        )



class Conversation(Resume):
    """
    What a json-mode client shows of the messages themselves: it remembers
    the messages shown (at most L{REMEMBERED} per room, and private ones),
    who is typing in each room, and whether a mention rings the bell; it
    gives the requests of the commands that name a message shown
    (C{req_NAME}) and the lines of the events that change one (C{on_TYPE}).

    A subclass gives the clock (C{_now}) and L{_record}, which sends a
    request that awaits its acknowledgement.
    """

    #: the current time in seconds
    _now: Callable[[], float]

    def __init__(self, nick: str | None = None) -> None:
        Resume.__init__(self, nick)
        # room -> id -> the messages shown (at most REMEMBERED per room)
        self._shown: dict[str, OrderedDict[int, Shown]] = {}
        # id -> the private messages shown
        self._privates: OrderedDict[int, Shown] = OrderedDict()
        #: room -> the nicks typing there, in the order they started
        self.typing: dict[str, list[str]] = {}
        #: start live messages that mention us with a bell (C{/set bell on})
        self.bell = False
        # the update of a history being shown (found fresh before its messages)
        self._freshUpdate: JsonObject | None = None

    def _record(self, request: JsonObject) -> Translation:
        """
        Send C{request}, keeping it until it is acknowledged.
        """
        raise NotImplementedError()

    # -- typed lines --

    def _currentRoom(self) -> str:
        if self.current is None:
            raise ChatError("not-in-room", "you are in no room now: /join one first")
        return self.current

    def _lastOwn(self, room: str, what: str) -> int:
        """
        The id of my last message (not deleted) shown in C{room}.
        """
        for id, m in reversed(sorted(self._shown.get(room, {}).items())):
            if self.isMe(m.sender) and not m.deleted:
                return id
        raise ChatError("no-such-message", "%s: you have no message here to %s" % (room, what))

    def _nth(self, command: Command) -> tuple[str, int]:
        """
        The room and id of message N (C{command.target}) of the current
        room, counted back from the last one shown (deleted ones skipped).
        """
        room = self._currentRoom()
        try:
            n = int(command.target)
        except ValueError:
            n = 0
        if n < 1:
            raise usageError(CLIENT_COMMANDS[command.name].usage)
        ids = sorted(id for id, m in self._shown.get(room, {}).items() if not m.deleted)
        if n > len(ids):
            raise ChatError(
                "no-such-message",
                "%s: there is no message %d back (%s to choose from)" % (room, n, len(ids)),
            )
        return room, ids[-n]

    def req_edit(self, command: Command) -> Translation:
        room = self._currentRoom()
        id = self._lastOwn(room, "edit")
        return self._record({"type": "edit", "room": room, "id": id, "text": command.text})

    def req_delete(self, command: Command) -> Translation:
        room = self._currentRoom()
        id = self._lastOwn(room, "delete")
        return self._record({"type": "delete", "room": room, "id": id})

    def req_reply(self, command: Command) -> Translation:
        room, id = self._nth(command)
        return self._record({"type": "say", "room": room, "text": command.text, "reply_to": id})

    def req_react(self, command: Command) -> Translation:
        room, id = self._nth(command)
        emoji = command.text.strip()
        nicks = self._shown[room][id].reactions.get(emoji, [])
        # the same reaction again takes it back
        on = not any(self.isMe(n) for n in nicks)
        return self._record({"type": "react", "room": room, "id": id, "emoji": emoji, "on": on})

    def req_set(self, command: Command) -> Translation:
        value = command.text.strip().lower()
        if command.target.lower() != "bell" or value not in ("on", "off"):
            raise usageError("/set bell on|off")
        self.bell = value == "on"
        return [], [NOTICE + "bell " + value]

    def req_search(self, command: Command) -> Translation:
        return [{"type": "search", "text": command.text}], []

    # -- what was shown --

    def _remember(self, room: str | None, id: int, shown: Shown) -> None:
        """
        Keep C{shown}, message C{id} of C{room} (C{None}: a private one).
        """
        kept = self._privates if room is None else self._shown.setdefault(room, OrderedDict())
        kept[id] = shown
        kept.move_to_end(id)
        while len(kept) > REMEMBERED:
            kept.popitem(last=False)

    def _recalled(self, event: JsonObject) -> Shown | None:
        """
        The message an update or reply C{event} names (by its C{id}), if shown.
        """
        id = event.get("id")
        if event.get("private") is True:
            return self._privates.get(id) if isinstance(id, int) else None
        return self._inRoom(str(event.get("room")), id) if isinstance(id, int) else None

    def _inRoom(self, room: str, id: int) -> Shown | None:
        kept = self._shown.get(room)
        return kept.get(id) if kept is not None else None

    # -- typing --

    def typingStatus(self) -> str:
        """
        Who is typing in the current room, for a status line (C{""}: nobody).
        """
        return typingLine(self.typing.get(self.current, []) if self.current is not None else [])

    def _typingEnded(self, room: str, nick: str) -> None:
        nicks = self.typing.get(room)
        if nicks:
            self.typing[room] = [n for n in nicks if n.lower() != nick.lower()]

    def connectionLost(self) -> None:
        """
        The connection is gone: nobody is known to be typing any more.
        """
        self.typing = {}

    # -- events --

    def _ring(self, event: JsonObject, lines: list[str]) -> None:
        """
        Start the C{lines} of a live message C{event} that mentions us with
        a bell, if asked for (C{/set bell on}).
        """
        if self.bell and lines and self.nick is not None:
            mentioned = event.get("mentions")
            if isinstance(mentioned, list) and any(isinstance(n, str) and self.isMe(n) for n in mentioned):
                # (as the line chat: the bell starts the line)
                lines[-1] = "\a" + lines[-1]

    def _privateLine(self, p: JsonObject, when: str | None = None) -> str:
        return privateLine(str(p["from"]), str(p["to"]), str(p["text"]), self.nick, when)


    def _replyLine(self, label: str, sender: str, replyTo: Shown | None) -> str:
        """
        The line that tells that the message after it is a reply.
        """
        if replyTo is None:
            what = "an earlier message"
        elif replyTo.deleted:
            what = "a deleted message"
        else:
            what = "%s's %s" % (replyTo.sender, quoteStart(replyTo.text))
        return NOTICE + "%s%s replies to %s:" % (label, sender, what)


    # -- edits, deletions, reactions (live, or missed and resumed) --

    def _newUpdate(self, event: JsonObject) -> tuple[str, Shown | None] | None:
        """
        For an update C{event} not seen yet: the label of its lines
        (C{"#room: "} or C{"private: "}) and the message it changes, if
        shown; C{None} for one seen already (it advances the position).
        """
        seq = event["seq"]
        if not isinstance(seq, int):
            raise TypeError("seq")
        fresh = event is self._freshUpdate
        if event.get("private") is True:
            if not fresh and self.privateSince is not None and seq <= self.privateSince:
                return None
            self.seenPrivate(seq)
            return "private: ", self._recalled(event)
        room, epoch = str(event["room"]), str(event["epoch"])
        if not fresh and self.known(room, epoch, seq):
            return None
        self.seen(room, epoch, seq)
        return room + ": ", self._recalled(event)

    def on_edit(self, event: JsonObject) -> list[str]:
        new = self._newUpdate(event)
        if new is None:
            return []
        label, shown = new
        by, text = str(event["by"]), str(event["text"])
        if shown is None:
            return [NOTICE + "%s%s edited a message: %s" % (label, by, oneLine(text))]
        original, shown.text = shown.text, text
        return [editLine(label[:-2], by, original, text)]

    def on_delete(self, event: JsonObject) -> list[str]:
        new = self._newUpdate(event)
        if new is None:
            return []
        label, shown = new
        by = str(event["by"])
        if shown is None or shown.deleted:
            return [NOTICE + "%s%s deleted a message" % (label, by)]
        original = shown.text
        shown.deleted, shown.text = True, ""
        return [deleteLine(label[:-2], by, shown.sender, original)]

    def on_react(self, event: JsonObject) -> list[str]:
        new = self._newUpdate(event)
        if new is None:
            return []
        label, shown = new
        nick, emoji, on = str(event["nick"]), oneLine(str(event["emoji"])), event.get("on") is not False
        what = "%s's %s" % (shown.sender, quoteStart(shown.text)) if shown is not None else "a message"
        if shown is not None:
            nicks = [n for n in shown.reactions.get(emoji, []) if n.lower() != nick.lower()]
            if on:
                nicks.append(nick)
            if nicks:
                shown.reactions[emoji] = nicks
            else:
                shown.reactions.pop(emoji, None)
        if on:
            return [NOTICE + "%s%s reacted %s to %s" % (label, nick, emoji, what)]
        return [NOTICE + "%s%s took back %s from %s" % (label, nick, emoji, what)]

    def _freshUpdates(self, updates: object) -> list[JsonObject]:
        """
        Of the C{updates} of a history, those after the position kept, to
        be shown (by L{_updateLines}) after the history's messages, whose
        ids come between theirs.
        """
        fresh = []
        for u in updates if isinstance(updates, list) else []:
            seq = u.get("seq") if isinstance(u, dict) else None
            if not isinstance(seq, int):
                raise TypeError("seq")
            if u.get("private") is True:
                seen = self.privateSince is not None and seq <= self.privateSince
            else:
                seen = self.known(str(u["room"]), str(u["epoch"]), seq)
            if not seen:
                fresh.append(u)
        return fresh

    def _updateLines(self, updates: list[JsonObject]) -> list[str]:
        lines: list[str] = []
        for u in updates:
            handler = {"edit": self.on_edit, "delete": self.on_delete, "react": self.on_react}.get(str(u.get("type")))
            if handler is not None:
                self._freshUpdate = u
                try:
                    lines.extend(handler(u))
                finally:
                    self._freshUpdate = None
        return lines

    def on_typing(self, event: JsonObject) -> list[str]:
        room, nick, state = str(event["room"]), str(event["nick"]), event.get("state")
        if self.isMe(nick):
            return []
        self._typingEnded(room, nick)
        if state == "active":
            self.typing.setdefault(room, []).append(nick)
        # (shown in the status line: see typingStatus)
        return []

    def on_read(self, event: JsonObject) -> list[str]:
        # (this client keeps no read position)
        return []

    def on_search(self, event: JsonObject) -> list[str]:
        results = event["results"]
        now = self._now()
        lines = [NOTICE + "search %s: %d found" % (quoted(str(event["text"])), len(results))]
        for r in results:
            when = stamp(float(r["time"]) / 1000.0, now)
            if r.get("type") == "private":
                lines.append(self._privateLine(r, when))
            else:
                lines.append(messageLine(ReceivedMessage.fromEvent(r), when))
        return lines
