# -*- test-case-name: tests.frontends.test_line -*-
"""
Text mode, the server's side: the line chat's commands carried out, and
service events rendered as lines.

Shared by the TCP line front-end, WebSocket text mode and Socket.IO text
mode, which differ only in framing. L{TextSession} reads one decoded line
with the line chat's grammar (L{twisted_chat.wire.commands}), has
L{TextCommands} carry out a command, and renders service events as lines
(L{twisted_chat.wire.render}); subclasses supply C{sendText} (one line out)
and C{sendRendered} (a pre-rendered, cached line for broadcasts).
"""

from __future__ import annotations

from typing import Callable, TypeVar, cast

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_chat.core.errors import ChatError
from twisted_chat.core.interfaces import IChatClient
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
    PrivateUpdate,
    RoomList,
    SearchResults,
    TopicChanged,
    Update,
)
from twisted_chat.core.names import mentions
from twisted_chat.core.service import LOBBY, ChatService, Member
from twisted_chat.wire.commands import COMMANDS, HELP, Command, newTopic, parseLine
from twisted_chat.wire.render import (
    currentRoomLine,
    deleteLine,
    editLine,
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
    presenceLine,
    privateHistoryLine,
    privateLine,
    roomsLine,
    searchLines,
    stamp,
    switchedLine,
    topicLine,
    welcomeLine,
    youAreNowLine,
)

_T = TypeVar("_T")


def closingText(reason: str, reconnectAfter: float | None) -> str:
    """
    What a text-mode user is told when the server closes the connection.
    """
    if reconnectAfter is None:
        return reason
    return "%s (reconnect in about %d s)" % (reason, max(1, round(reconnectAfter)))


def messageText(m: Message) -> str:
    """
    L{messageLine} of a live room message, rendered once per event.
    """
    cache = m.cache
    text = cache.get("text")
    if text is None:
        text = cache["text"] = messageLine(m)
    return text


def roomEventText(event: Event) -> str:
    """
    The line of an event that every member of its room gets the same (a
    message, a join or a leave notice: see
    L{twisted_chat.frontends.write.WriteBatcher.broadcast}), rendered once.
    """
    kind = event.kind
    if kind == "join":
        cache = event.cache
        text = cache.get("text")
        if text is None:
            assert isinstance(event, Joined)
            text = cache["text"] = joinedLine(event.room, event.nick)
        return text
    if kind == "part":
        cache = event.cache
        text = cache.get("text")
        if text is None:
            assert isinstance(event, Parted)
            text = cache["text"] = partLine(event.room, event.nick, event.reason)
        return text
    return messageText(event)  # type: ignore[arg-type]


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
    #: start lines that mention this user with a bell (C{/set bell on});
    #: such a session takes room messages one by one (no fast sink)
    bell = False

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
        # (a TextSession is mixed into IChatClient front-ends)
        self.member = member = service.connect(cast(IChatClient, self), peer=peer, host=host)
        if service.requireAuth:
            self.sendNotice(
                "Welcome to twisted-chat, %s! This server is for registered users: /login NICK PASSWORD"
                % (member.nick,)
            )
            return
        self.sendText(welcomeLine(member.nick, LOBBY))
        member.join(LOBBY)

    # -- output --

    def sendError(self, message: str) -> None:
        self.sendText(errorLine(message))

    def sendNotice(self, message: str) -> None:
        self.sendText("*** " + message)

    def deliverText(self, event: Event) -> None:
        """
        Render a service event as lines.
        """
        if type(event) is Message:
            if self.bell and event.mentions and self.member is not None and mentions(event.mentions, self.member.nick):
                self.sendText("\a" + messageText(event))
                return
            self.sendRendered(event, messageText(event))
            return
        # (one comparison a kind: cheaper than an isinstance() a class)
        kind = event.kind
        if kind == "update" or kind == "private-update":
            assert isinstance(event, (Update, PrivateUpdate))
            # (reactions are not shown: noise)
            room = event.room if isinstance(event, Update) else None
            if event.op == "edit":
                self.sendRendered(event, editLine(room, event.sender, event.original, event.text))
            elif event.op == "delete":
                self.sendRendered(event, deleteLine(room, event.sender, event.author, event.original))
        elif kind == "typing" or kind == "read":
            pass  # (not shown: noise)
        elif kind == "search":
            assert isinstance(event, SearchResults)
            me = self.member
            for line in searchLines(event.text, event.results, self.now(), me.nick if me is not None else None):
                self.sendText(line)
        elif kind == "join":
            assert isinstance(event, Joined)
            self.sendRendered(event, joinedLine(event.room, event.nick))
        elif kind == "part":
            assert isinstance(event, Parted)
            self.sendRendered(event, partLine(event.room, event.nick, event.reason))
        elif kind == "private":
            assert isinstance(event, Private)
            self.sendText(self._privateLine(event))
        elif kind == "nick":
            assert isinstance(event, NickChanged)
            me = self.member
            if me is not None and event.new == me.nick:
                self.sendText(youAreNowLine(event.new))
            else:
                self.sendText(nickLine(event.rooms, event.old, event.new))
        elif kind == "presence":
            assert isinstance(event, Presence)
            self.sendText(presenceLine(event.room, event.members, event.total))
        elif kind == "history":
            assert isinstance(event, History)
            if event.reason == "unavailable":
                # (not "no messages yet": the store did not answer)
                self.sendText(historyUnavailableLine(event.room))
            else:
                # (the messages as they are now: neither updates nor deleted ones)
                said = [m for m in event.messages if m.kind == "message" and not m.deleted]
                for line in historyLines(event.room, said, self.now(), requested=not event.onJoin):
                    self.sendText(line)
        elif kind == "private-history":
            assert isinstance(event, PrivateHistory)
            if event.messages:
                self.sendText(privateHistoryLine(len(event.messages)))
                for p in event.messages:
                    if p.kind == "private" and not p.deleted:
                        self.sendText(self._privateLine(p, stamp(p.time, self.now())))
        elif kind == "rooms":
            assert isinstance(event, RoomList)
            self.sendText(roomsLine(event.rooms))
        elif kind == "topic":
            assert isinstance(event, TopicChanged)
            self.sendRendered(event, topicLine(event.room, event.topic, event.by))
        elif kind == "epoch":
            assert isinstance(event, EpochChanged)
            self.sendRendered(event, epochLine(event.room))
        elif kind == "notice":
            assert isinstance(event, Notice)
            self.sendText(noticeLine(event.text))

    def _privateLine(self, p: Private, when: str | None = None) -> str:
        me = self.member
        return privateLine(p.sender, p.recipient, p.text, me.nick if me is not None else None, when)

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
        try:
            said = parseLine(line)
            if isinstance(said, str):
                self.watchRequest(self.noteSaid(member.say(said)))
            elif said is not None:
                _HANDLERS[said.name](_COMMANDS, self, member, said)
        except ChatError as e:
            self.sendError(e.message)

    def noteSaid(self, d: Deferred[Message]) -> Deferred[Message]:
        """
        Remember the id of the message C{d} stores, as this connection's
        last in its room (what C{/edit} and C{/delete} act on).
        """

        def said(m: Message) -> Message:
            self.__dict__.setdefault("_lastSaid", {})[m.room] = m.id
            return m

        return d.addCallback(said)

    def lastSaid(self, room: str | None) -> int:
        """
        The id of this connection's last message in C{room}; refused when
        there is none.
        """
        last = self.__dict__.get("_lastSaid", {}).get(room)
        if last is None:
            raise ChatError("no-such-message", "you have said nothing in %s from here to edit or delete" % (room,))
        return int(last)

    def setBell(self, on: bool) -> None:
        """
        Start (or stop) lines that mention this user with a bell; while on,
        room messages come one by one, so each can be looked at.
        """
        self.bell = on
        member = self.member
        if member is not None:
            for room in member.rooms.values():
                room.resetFanOut()

    def watchRequest(self, d: Deferred[_T]) -> None:
        """
        Keep the request C{d} among those in progress (see
        L{leaveAfterPending}) until it is answered; a refusal (or a store
        that failed) is shown as an error line.
        """
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

    def startLogin(self, member: Member, nick: str, password: str) -> None:
        """
        Log in as C{nick} with C{password} (C{/login}); what the user types
        while that is checked waits for its outcome.
        """

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
        self.watchRequest(d)
        d.addBoth(release)

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


class TextCommands:
    """
    The line chat's commands, carried out for a L{TextSession}: C{/NAME} is
    C{req_NAME(session, member, command)}, its arguments already checked by
    the grammar (L{twisted_chat.wire.commands}). Holds no state: one
    instance serves every session.
    """

    def req_help(self, session: TextSession, member: Member, command: Command) -> None:
        for line in HELP:
            session.sendNotice(line)

    def req_nick(self, session: TextSession, member: Member, command: Command) -> None:
        member.setNick(command.target)

    def req_login(self, session: TextSession, member: Member, command: Command) -> None:
        session.startLogin(member, command.target, command.text)

    def req_join(self, session: TextSession, member: Member, command: Command) -> None:
        name, new = member.join(command.target)
        if not new:
            session.sendText(switchedLine(name))

    def req_part(self, session: TextSession, member: Member, command: Command) -> None:
        member.part(command.target or None)
        session.sendText(currentRoomLine(member.current))

    def req_rooms(self, session: TextSession, member: Member, command: Command) -> None:
        member.listRooms()

    def req_who(self, session: TextSession, member: Member, command: Command) -> None:
        member.who(command.target or None)

    def req_msg(self, session: TextSession, member: Member, command: Command) -> None:
        session.watchRequest(member.private(command.target, command.text))

    def req_me(self, session: TextSession, member: Member, command: Command) -> None:
        session.watchRequest(session.noteSaid(member.say(command.text, action=True)))

    def req_edit(self, session: TextSession, member: Member, command: Command) -> None:
        session.watchRequest(member.edit(session.lastSaid(member.current), command.text))

    def req_delete(self, session: TextSession, member: Member, command: Command) -> None:
        room = member.current
        d = member.delete(session.lastSaid(room))

        def deleted(update: Update) -> Update:
            session.__dict__.get("_lastSaid", {}).pop(room, None)
            return update

        session.watchRequest(d.addCallback(deleted))

    def req_search(self, session: TextSession, member: Member, command: Command) -> None:
        session.watchRequest(member.search(command.text))

    def req_set(self, session: TextSession, member: Member, command: Command) -> None:
        value = command.text.strip().lower()
        if command.target.lower() != "bell" or value not in ("on", "off"):
            raise ChatError("bad-request", "usage: /set bell on|off")
        session.setBell(value == "on")
        session.sendNotice("bell " + value)

    def req_history(self, session: TextSession, member: Member, command: Command) -> None:
        member.history(None, min(command.number, member.service.settings.historySize))

    def req_topic(self, session: TextSession, member: Member, command: Command) -> None:
        if command.text:
            member.setTopic(newTopic(command.text))
            return
        name, topic, by = member.topic()
        if topic:
            session.sendText(topicLine(name, topic, by))
        else:
            session.sendNotice("%s: no topic" % (name,))

    def req_kick(self, session: TextSession, member: Member, command: Command) -> None:
        member.kick(command.target, command.text)

    def req_ban(self, session: TextSession, member: Member, command: Command) -> None:
        banned = member.ban(command.target, command.text)
        session.sendNotice("%s: %s is banned" % (member.current, banned))

    def req_unban(self, session: TextSession, member: Member, command: Command) -> None:
        session.sendNotice("%s: %s is no longer banned" % (member.current, member.unban(command.target)))

    def req_op(self, session: TextSession, member: Member, command: Command) -> None:
        session.sendNotice("%s: %s is now an operator" % (member.current, member.giveOp(command.target)))

    def req_status(self, session: TextSession, member: Member, command: Command) -> None:
        member.status()

    def req_notice(self, session: TextSession, member: Member, command: Command) -> None:
        member.serverNotice(command.text)

    def req_quit(self, session: TextSession, member: Member, command: Command) -> None:
        reason = "quit: " + oneLine(command.text)[:200] if command.text else "quit"
        session.leaveAfterPending(reason, bye=True)


_COMMANDS = TextCommands()
#: command name -> its handler in L{TextCommands}
_HANDLERS: dict[str, Callable[[TextCommands, TextSession, Member, Command], None]] = {
    name: getattr(TextCommands, "req_" + name) for name in COMMANDS
}
