# -*- test-case-name: tests.test_line -*-
"""
Text mode: the line chat's commands and its rendering of events as lines.

Shared by the TCP line front-end and WebSocket text mode, which differ only
in framing. L{TextSession} parses one decoded line into a service request and
renders service events as lines; subclasses supply C{sendText} (one line out)
and C{sendRendered} (a pre-rendered, cached line for broadcasts).
"""

from __future__ import annotations

import time as _time
from typing import Callable

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import (
    EpochChanged,
    Event,
    History,
    Joined,
    Message,
    NickChanged,
    Notice,
    Parted,
    Presence,
    Private,
    PrivateHistory,
    RoomList,
    TopicChanged,
)
from twisted_chat.core.service import LOBBY, ChatService, Member

HELP = [
    "commands:",
    "  TEXT              say TEXT in your current room (//TEXT says /TEXT)",
    "  /nick NAME        change your nickname",
    "  /join ROOM        join a room (or switch to it); it becomes your current room",
    "  /part [ROOM]      leave a room (default: the current one)",
    "  /rooms            list rooms and how many are in each",
    "  /who [ROOM]       list who is in a room",
    "  /msg NICK TEXT    private message",
    "  /me ACTION        action in your current room",
    "  /history [N]      the last N messages of your current room",
    "  /topic [TEXT]     show or (operators) set the topic of your current room",
    "  /login NICK PASS  log in as a registered nick (also: /nick NICK PASS)",
    "  /quit [REASON]    leave",
    "operators of a room (its creator, and server admins):",
    "  /kick NICK [WHY]  put someone out of your current room",
    "  /ban NICK|ADDRESS [WHY]   keep them out;  /unban NICK|ADDRESS",
    "  /op NICK          make someone an operator too",
    "  /notice TEXT      (server admins) a notice to everyone",
    "  /status           (server admins) connections, rooms and recent errors",
]

_CONTROL = dict.fromkeys(
    [c for c in range(32) if c not in (9,)] + [127] + list(range(0x80, 0xA0)), " "
)


def oneLine(text: str) -> str:
    """
    Make C{text} safe for one line on a terminal: newlines and other control
    characters (which could move a terminal's cursor) become spaces.
    """
    return text.translate(_CONTROL) if not text.isprintable() else text


def closingText(reason: str, reconnectAfter: float | None) -> str:
    """
    What a text-mode user is told when the server closes the connection.
    """
    if reconnectAfter is None:
        return reason
    return "%s (reconnect in about %d s)" % (reason, max(1, round(reconnectAfter)))


def stamp(t: float, now: float) -> str:
    """
    A history stamp: C{HH:MM} for today (UTC), C{YYYY-MM-DD HH:MM} otherwise.
    """
    tm = _time.gmtime(t)
    if _time.gmtime(now)[:3] == tm[:3]:
        return _time.strftime("%H:%M", tm)
    return _time.strftime("%Y-%m-%d %H:%M", tm)


def messageLine(m: Message, when: str | None = None) -> str:
    """
    A room message as a line; C{when} is the stamp for replayed history.
    """
    prefix = m.room + (" [" + when + "] " if when else " ")
    if m.action:
        return prefix + "* " + m.sender + " " + oneLine(m.text)
    return prefix + "<" + m.sender + "> " + oneLine(m.text)


def messageText(m: Message) -> str:
    """
    L{messageLine} of a live room message, rendered once per event.
    """
    cache = m.cache
    text = cache.get("text")
    if text is None:
        text = cache["text"] = messageLine(m)
    return text


def partText(ev: Parted) -> str:
    if ev.reason == "left":
        return "*** %s: %s left" % (ev.room, ev.nick)
    return "*** %s: %s left (%s)" % (ev.room, ev.nick, oneLine(ev.reason))


def _plural(n: int, word: str) -> str:
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


class TextSession:
    """
    The text-mode half of a front-end: parse lines, render events.

    Subclasses implement C{sendText}, C{sendRendered} and C{endSession} and
    set C{self.member} once connected.
    """

    _log = Logger()
    member: Member | None = None
    #: the cache key under which a broadcast event's rendering is kept
    renderKey = "text"

    # -- to be supplied by the framing layer --

    def sendText(self, text: str) -> None:
        raise NotImplementedError

    def sendRendered(self, event: Event, text: str) -> None:
        """
        Send the line C{text} rendered for C{event}; framing layers override
        this to cache their encoded form on C{event.cache}.
        """
        self.sendText(text)

    def endSession(self, reason: str) -> None:
        """
        Close the connection after C{reason} was shown.
        """
        raise NotImplementedError

    def now(self) -> float:
        assert self.member is not None
        return self.member.service.now()

    def startTextSession(self, service: ChatService, peer: str, host: str = "") -> None:
        """
        Register with C{service} under a guest nick, greet the user and join
        the lobby, as every text-mode connection starts (on a server that
        requires login, the lobby waits until after C{/login}).
        """
        self.member = member = service.connect(self, peer=peer, host=host)  # type: ignore[arg-type]
        if service.requireAuth:
            self.sendNotice(
                "Welcome to twisted-chat, %s! This server is for registered users: /login NICK PASSWORD"
                % (member.nick,)
            )
            return
        self.sendNotice(
            "Welcome to twisted-chat, %s! You are in %s. Type /help for commands."
            % (member.nick, LOBBY)
        )
        member.join(LOBBY)

    # -- output --

    def sendError(self, message: str) -> None:
        self.sendText("!!! " + message)

    def sendNotice(self, message: str) -> None:
        self.sendText("*** " + message)

    def deliverText(self, event: Event) -> None:
        """
        Render a service event as lines.
        """
        kind = event.kind
        if kind == "message":
            self.sendRendered(event, messageText(event))  # type: ignore[arg-type]
        elif kind == "join":
            assert isinstance(event, Joined)
            self.sendRendered(event, "*** %s: %s joined" % (event.room, event.nick))
        elif kind == "part":
            assert isinstance(event, Parted)
            self.sendRendered(event, partText(event))
        elif kind == "private":
            assert isinstance(event, Private)
            self.sendText(self._privateLine(event))
        elif kind == "nick":
            assert isinstance(event, NickChanged)
            me = self.member
            if me is not None and event.new == me.nick:
                self.sendNotice("you are now %s" % (event.new,))
            else:
                self.sendNotice(
                    "%s: %s is now known as %s" % (", ".join(event.rooms), event.old, event.new)
                )
        elif kind == "presence":
            assert isinstance(event, Presence)
            if event.total is not None and event.total > len(event.members):
                self.sendNotice(
                    "%s: %d members, among them: %s" % (event.room, event.total, ", ".join(event.members))
                )
            elif event.members:
                self.sendNotice("%s: members: %s" % (event.room, ", ".join(event.members)))
            else:
                self.sendNotice("%s: nobody is here" % (event.room,))
        elif kind == "history":
            assert isinstance(event, History)
            self._history(event)
        elif kind == "private-history":
            assert isinstance(event, PrivateHistory)
            if event.messages:
                self.sendNotice("%s while you were away:" % (_plural(len(event.messages), "private message"),))
                for p in event.messages:
                    self.sendText(self._privateLine(p, stamp(p.time, self.now())))
        elif kind == "rooms":
            assert isinstance(event, RoomList)
            if event.rooms:
                self.sendNotice("rooms: " + ", ".join("%s (%d)" % r for r in event.rooms))
            else:
                self.sendNotice("rooms: none")
        elif kind == "topic":
            assert isinstance(event, TopicChanged)
            if event.topic:
                self.sendRendered(event, "*** %s: topic: %s (set by %s)" % (event.room, oneLine(event.topic), event.by))
            else:
                self.sendRendered(event, "*** %s: topic cleared by %s" % (event.room, event.by))
        elif kind == "epoch":
            assert isinstance(event, EpochChanged)
            self.sendRendered(
                event,
                "*** %s: the message history was reset (the server lost its stored messages); "
                "message numbers start again" % (event.room,),
            )
        elif kind == "notice":
            assert isinstance(event, Notice)
            self.sendNotice("notice: " + oneLine(event.text))

    def _privateLine(self, p: Private, when: str | None = None) -> str:
        me = self.member
        prefix = "[" + when + "] " if when else ""
        if me is not None and p.sender.lower() == me.nick.lower() and p.recipient.lower() != me.nick.lower():
            return prefix + "-> *%s* %s" % (p.recipient, oneLine(p.text))
        return prefix + "*%s* %s" % (p.sender, oneLine(p.text))

    def _history(self, event: History) -> None:
        msgs = event.messages
        if not msgs:
            if not event.onJoin:
                self.sendNotice("%s: no messages yet" % (event.room,))
            return
        if event.onJoin:
            self.sendNotice("%s: last %s:" % (event.room, _plural(len(msgs), "message")))
        else:
            self.sendNotice("%s: history, %s:" % (event.room, _plural(len(msgs), "message")))
        now = self.now()
        for m in msgs:
            self.sendText(messageLine(m, stamp(m.time, now)))
        if not event.onJoin:
            self.sendNotice("%s: end of history" % (event.room,))

    # -- input --

    def handleText(self, line: str) -> None:
        """
        Act on one decoded line from the user.
        """
        member = self.member
        if member is None or member.gone:
            return
        held = self.__dict__.get("_heldInput")
        if held is not None:
            # A login is being checked: what follows waits for its outcome.
            held.append(line)
            return
        if not line.strip():
            return
        try:
            if line.startswith("/") and not line.startswith("//"):
                self._command(member, line)
            else:
                if line.startswith("//"):
                    line = line[1:]
                self._watch(member.say(line))
        except ChatError as e:
            self.sendError(e.message)

    def _watch(self, d: Deferred[object]) -> None:
        pending = self.__dict__.setdefault("_pending", [])
        assert self.member is not None
        service = self.member.service
        pending.append(d)

        def settled(result: object) -> object:
            if d in pending:
                pending.remove(d)
            return result

        def failed(f: Failure) -> None:
            if f.check(ChatError):
                self.sendError(f.value.message)  # type: ignore[union-attr]
            else:
                service.logStoreFailure("storing a message failed", f)
                self.sendError("message not stored (server error): please try again")

        d.addBoth(settled).addErrback(failed)

    def _command(self, member: Member, line: str) -> None:
        name, _, rest = line[1:].partition(" ")
        name = name.lower()
        rest = rest.strip()
        handler: Callable[[Member, str], None] | None = getattr(self, "cmd_" + name, None)
        if handler is None or not name.isalpha():
            raise ChatError("unknown-command", "unknown command /%s (try /help)" % (oneLine(name)[:32],))
        handler(member, rest)

    def _usage(self, usage: str) -> ChatError:
        return ChatError("bad-request", "usage: " + usage)

    def cmd_help(self, member: Member, rest: str) -> None:
        for line in HELP:
            self.sendNotice(line)

    def cmd_nick(self, member: Member, rest: str) -> None:
        nick, _, password = rest.partition(" ")
        if not nick:
            raise self._usage("/nick NAME [PASSWORD]")
        if password:
            self.cmd_login(member, rest)
            return
        member.setNick(nick)

    def cmd_login(self, member: Member, rest: str) -> None:
        nick, _, password = rest.partition(" ")
        if not nick or not password:
            raise self._usage("/login NICK PASSWORD")

        def loggedIn(nick: str) -> None:
            self.sendNotice("you are logged in as %s" % (nick,))
            if not member.rooms and not member.gone:
                try:
                    member.join(LOBBY)
                except ChatError as e:
                    self.sendError(e.message)

        def release(result: object) -> object:
            held = self.__dict__.pop("_heldInput", None) or []
            for line in held:
                self.handleText(line)
            return result

        d = member.login(nick, password)  # (a refusal raises here: nothing is held)
        self.__dict__["_heldInput"] = []
        d.addCallback(loggedIn)
        self._watch(d)
        d.addBoth(release)

    def cmd_join(self, member: Member, rest: str) -> None:
        if not rest or " " in rest:
            raise self._usage("/join ROOM")
        name, new = member.join(rest)
        if not new:
            self.sendNotice("%s is now your current room" % (name,))

    def cmd_part(self, member: Member, rest: str) -> None:
        if " " in rest:
            raise self._usage("/part [ROOM]")
        member.part(rest or None)
        if member.current is not None:
            self.sendNotice("your current room is %s" % (member.current,))
        else:
            self.sendNotice("you are in no room now: /join one to talk")

    def cmd_rooms(self, member: Member, rest: str) -> None:
        member.listRooms()

    def cmd_who(self, member: Member, rest: str) -> None:
        if " " in rest:
            raise self._usage("/who [ROOM]")
        member.who(rest or None)

    def cmd_msg(self, member: Member, rest: str) -> None:
        nick, _, text = rest.partition(" ")
        if not nick or not text.strip():
            raise self._usage("/msg NICK TEXT")
        self._watch(member.private(nick, text))

    def cmd_me(self, member: Member, rest: str) -> None:
        if not rest:
            raise self._usage("/me ACTION")
        self._watch(member.say(rest, action=True))

    def cmd_history(self, member: Member, rest: str) -> None:
        if rest:
            try:
                n = int(rest)
            except ValueError:
                n = -1
            if n < 1:
                raise self._usage("/history [N] with N a whole number from 1")
        else:
            n = 20
        member.history(None, min(n, member.service.settings.historySize))

    def cmd_topic(self, member: Member, rest: str) -> None:
        if not rest:
            name, topic, by = member.topic()
            if topic:
                self.sendNotice("%s: topic: %s (set by %s)" % (name, oneLine(topic), by))
            else:
                self.sendNotice("%s: no topic" % (name,))
            return
        member.setTopic("" if rest == "-" else rest)

    def cmd_kick(self, member: Member, rest: str) -> None:
        nick, _, reason = rest.partition(" ")
        if not nick:
            raise self._usage("/kick NICK [REASON]")
        member.kick(nick, reason.strip())

    def cmd_ban(self, member: Member, rest: str) -> None:
        target, _, reason = rest.partition(" ")
        if not target:
            raise self._usage("/ban NICK|ADDRESS [REASON]")
        banned = member.ban(target, reason.strip())
        self.sendNotice("%s: %s is banned" % (member.current, banned))

    def cmd_unban(self, member: Member, rest: str) -> None:
        if not rest or " " in rest:
            raise self._usage("/unban NICK|ADDRESS")
        self.sendNotice("%s: %s is no longer banned" % (member.current, member.unban(rest)))

    def cmd_op(self, member: Member, rest: str) -> None:
        if not rest or " " in rest:
            raise self._usage("/op NICK")
        self.sendNotice("%s: %s is now an operator" % (member.current, member.giveOp(rest)))

    def cmd_status(self, member: Member, rest: str) -> None:
        member.status()

    def cmd_notice(self, member: Member, rest: str) -> None:
        if not rest:
            raise self._usage("/notice TEXT")
        member.serverNotice(rest)

    def cmd_quit(self, member: Member, rest: str) -> None:
        reason = "quit: " + oneLine(rest)[:200] if rest else "quit"
        self.leaveAfterPending(reason, bye=True)

    def leaveAfterPending(self, reason: str, bye: bool) -> None:
        """
        Quit with C{reason} once the requests still in progress (messages
        being stored, a login being checked, and the lines held behind it)
        have been answered, so that nothing said just before leaving goes
        unanswered; then close.
        """
        pending = list(self.__dict__.get("_pending", ()))
        if pending:
            # Lines held behind a login may start new requests: look again.
            DeferredList(pending, consumeErrors=True).addCallback(
                lambda _: self.leaveAfterPending(reason, bye)
            )
            return
        if self.member is not None:
            self.member.quit(reason)
        if bye:
            self.sendNotice("bye")
        self.endSession(reason)
