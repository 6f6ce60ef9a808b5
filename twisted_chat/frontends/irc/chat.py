# -*- test-case-name: tests.frontends.irc.test_irc -*-
"""
The chat's commands in IRC: C{JOIN}, C{PART}, C{PRIVMSG}, C{NOTICE},
C{TAGMSG}, C{TOPIC}, C{AWAY}, and the operators' C{KICK} and C{MODE}
(C{+b}/C{-b} bans, C{+o}). Each is a call on the client's member; what the
service says back arrives as events (L{twisted_chat.frontends.irc.render}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Union

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import Event, History, Joined, Message, Presence, Private
from twisted_chat.core.names import normalizeRoom
from twisted_chat.frontends.irc import numerics as N
from twisted_chat.frontends.irc.drafts import DraftError, readMarks, refused, react, replyTo, tagmsg
from twisted_chat.frontends.irc.modes import mode
from twisted_chat.frontends.irc.protocol import SERVER_NAME, formatMessage
from twisted_chat.frontends.irc.registration import TARGMAX

if TYPE_CHECKING:
    from twisted_chat.core.service import Member
    from twisted_chat.frontends.irc.peer import Answer, Peer
    from twisted_chat.frontends.irc.protocol import IRCMessage

def _params(conn: Peer, msg: IRCMessage, count: int) -> bool:
    """
    Whether C{msg} has C{count} parameters; if not, say so (C{461}).
    """
    if len(msg.params) < count or not msg.params[0]:
        conn.numeric(N.ERR_NEEDMOREPARAMS, msg.command, "Not enough parameters")
        return False
    return True


class ChatCommands:
    """
    The commands that are chat.
    """

    def req_JOIN(self, conn: Peer, msg: IRCMessage) -> None:
        if not _params(conn, msg, 1):
            return
        member = _member(conn)
        if msg.params[0] == "0":
            for name in list(member.rooms):
                member.part(name)
            return
        names = msg.params[0].split(",")
        if not conn.caps.has("draft/read-marker"):
            self.joinAll(conn, member, names, {})
            return
        # (the read position of each room comes before its 366: read first)
        rooms = []
        for name in names:
            try:
                rooms.append(normalizeRoom(name))
            except ChatError:
                pass
        got: list[dict[str, str]] = []
        d = readMarks(conn, member, rooms).addCallback(got.append)
        if got:
            self.joinAll(conn, member, names, got[0])
            return
        reply = conn.later()
        conn.holdInput()

        def read(_: object) -> None:
            conn.within(reply, lambda: self.joinAll(conn, member, names, got[0] if got else {}))
            conn.finish(reply)
            if not conn.render.awaitingHistory:
                conn.releaseInput()

        d.addBoth(read)

    def joinAll(self, conn: Peer, member: Member, names: list[str], marks: dict[str, str]) -> None:
        """
        Join each of C{names}; C{marks}: the C{MARKREAD} of each room (for
        a client with C{draft/read-marker}).
        """
        for name in names:
            if member.gone:
                return
            try:
                self.join(conn, member, name, marks)
            except ChatError as e:
                conn.refuse("JOIN", e, name)

    def join(self, conn: Peer, member: Member, name: str, marks: dict[str, str] | None = None) -> None:
        """
        Join C{name}; the answer: C{JOIN}, the topic, the names (with the
        C{MARKREAD} of the room before C{366} for a client with
        C{draft/read-marker}), and (for a client without
        C{draft/chathistory}) the recent history.
        """
        render = conn.render
        got: list[Event] = []
        for kind in ("join", "presence", "topic", "history"):
            render.captures[kind] = got.append
        try:
            room, new = member.join(name)
        finally:
            for kind in ("join", "presence", "topic", "history"):
                del render.captures[kind]
        if not new:
            return
        for event in got:
            if isinstance(event, Joined):
                render.on_join(event)
        for line in render.topicLines(room):
            conn.sendLine(line)
        for event in got:
            if isinstance(event, Presence):
                lines = render.namesLines(event)
                if conn.caps.has("draft/read-marker"):
                    mark = (marks or {}).get(room, "*")
                    lines.insert(len(lines) - 1, formatMessage("MARKREAD", [room, mark], SERVER_NAME))
                for line in lines:
                    conn.sendLine(line)
        history = [event for event in got if isinstance(event, History)]
        if history:
            render.on_history(history[0])
        elif room in member.rooms:
            # Read from the store: it comes later, into this answer, and
            # what the client sends next waits for it (a PING after a JOIN
            # is answered after everything the JOIN brings).
            render.awaitingHistory[room] = conn.later()
            conn.holdInput()

    def req_PART(self, conn: Peer, msg: IRCMessage) -> None:
        if not _params(conn, msg, 1):
            return
        member = _member(conn)
        why = msg.params[1].strip()[:200] if len(msg.params) > 1 else ""
        for name in msg.params[0].split(","):
            try:
                member.part(name, "left: " + why if why else "left")
            except ChatError as e:
                conn.refuse("PART", e, name)

    def req_PRIVMSG(self, conn: Peer, msg: IRCMessage) -> None:
        self.send(conn, msg)

    def req_NOTICE(self, conn: Peer, msg: IRCMessage) -> None:
        # (the chat has one kind of message: a notice is said as one)
        self.send(conn, msg)

    def req_TAGMSG(self, conn: Peer, msg: IRCMessage) -> None:
        # (its client tags: +typing, +draft/react; see drafts.py; others
        # are not relayed)
        if not _params(conn, msg, 1):
            return
        tagmsg(conn, msg)

    def send(self, conn: Peer, msg: IRCMessage) -> None:
        """
        C{PRIVMSG} or C{NOTICE}: say the text in each room named, send it
        privately to each nick.
        """
        command = msg.command
        if not msg.params or not msg.params[0]:
            conn.numeric(N.ERR_NORECIPIENT, "No recipient given (%s)" % (command,))
            return
        if len(msg.params) < 2 or not msg.params[1]:
            conn.numeric(N.ERR_NOTEXTTOSEND, "No text to send")
            return
        targets = [t for t in msg.params[0].split(",") if t]
        if len(targets) > TARGMAX[command]:
            conn.numeric(N.ERR_TOOMANYTARGETS, msg.params[0], "Too many targets (at most %d)" % (TARGMAX[command],))
            return
        text, action = msg.params[1], False
        if text.startswith("\x01ACTION") and text.endswith("\x01") and len(text) > 8:
            text, action = text[8:-1], True
        member = _member(conn)
        for target in targets:
            if "+draft/react" in msg.tags or "+draft/unreact" in msg.tags:
                react(conn, command, target, msg)
            try:
                if target.startswith("#"):
                    self._sayInRoom(conn, member, command, target, text, action, msg)
                else:
                    self._sayPrivately(conn, member, command, target, text if not action else msg.params[1], msg)
            except ChatError as e:
                if e.code == "no-such-message":
                    # (a +draft/reply to a message the room has not)
                    refused(conn, None, command, e, target, msg.tags.get("+draft/reply", ""))
                else:
                    conn.refuse(command, e, target)
            except DraftError as e:
                refused(conn, None, command, e)

    def _sayInRoom(
        self, conn: Peer, member: Member, command: str, target: str, text: str, action: bool, msg: IRCMessage
    ) -> None:
        name = normalizeRoom(target)
        if name not in member.rooms:
            raise ChatError("not-in-room", "Cannot send to channel (you are not in %s)" % (name,))
        reply = replyTo(conn, command, target, msg)
        d = conn.render.ownRequest(lambda: member.say(text, name, action, replyTo=reply))
        self._confirm(conn, d, command, target, lambda m: conn.render.messageLines(m))

    def _sayPrivately(
        self, conn: Peer, member: Member, command: str, target: str, text: str, msg: IRCMessage
    ) -> None:
        reply = replyTo(conn, command, target, msg)
        d = conn.render.ownRequest(lambda: member.private(target, text, replyTo=reply))
        info = conn.service.memberInfo(target)
        if info is not None and info.away and command == "PRIVMSG":
            conn.numeric(N.RPL_AWAY, info.nick, info.away)
        self._confirm(conn, d, command, target, lambda p: conn.render.privateLines(p))

    def _confirm(
        self,
        conn: Peer,
        d: Deferred[Any],
        command: str,
        target: str,
        lines: Callable[[Any], list[str]],
    ) -> None:
        """
        Once the message (of L{Rendering.ownRequest}) is stored: its echo
        (with C{echo-message}), or a C{FAIL} if it could not be stored.
        """
        reply: Answer = conn.later()

        def stored(said: Union[Message, Private]) -> None:
            if conn.caps.has("echo-message"):
                for line in lines(said):
                    conn.answer(reply, line)

        def failed(f: Failure) -> None:
            if f.check(ChatError):
                error: ChatError = f.value  # type: ignore[assignment]
                code = N.refusal(command, error.code)
                if code is not None:
                    conn.answer(reply, formatMessage(code, [conn.nick, target, error.message], SERVER_NAME))
                    return
                conn.answer(reply, formatMessage("FAIL", [command, error.code.upper().replace("-", "_"), target, error.message], SERVER_NAME))
                return
            conn.service.logStoreFailure("storing a message failed", f)
            conn.answer(
                reply,
                formatMessage("FAIL", [command, "MESSAGE_ERROR", target, "not stored (server error): please try again"], SERVER_NAME),
            )

        def answered(_: object) -> None:
            conn.render.ownAnswered()

        d.addCallbacks(stored, failed).addBoth(lambda _: conn.finish(reply))
        d.addBoth(answered)

    def req_TOPIC(self, conn: Peer, msg: IRCMessage) -> None:
        if not _params(conn, msg, 1):
            return
        member = _member(conn)
        name = normalizeRoom(msg.params[0])
        if len(msg.params) > 1:
            member.setTopic(msg.params[1], name)
            return
        lines = conn.render.topicLines(name)
        if not lines:
            conn.numeric(N.RPL_NOTOPIC, name, "No topic is set")
        for line in lines:
            conn.sendLine(line)

    def req_AWAY(self, conn: Peer, msg: IRCMessage) -> None:
        member = _member(conn)
        message = msg.params[0] if msg.params else ""
        member.setAway(message)
        if member.away:
            conn.numeric(N.RPL_NOWAWAY, "You have been marked as being away")
        else:
            conn.numeric(N.RPL_UNAWAY, "You are no longer marked as being away")

    def req_KICK(self, conn: Peer, msg: IRCMessage) -> None:
        if not _params(conn, msg, 2):
            return
        member = _member(conn)
        name = normalizeRoom(msg.params[0])
        why = msg.params[2] if len(msg.params) > 2 else ""
        for nick in msg.params[1].split(",")[: TARGMAX["KICK"]]:
            try:
                member.kick(nick, why, name)
            except ChatError as e:
                if e.code == "no-such-nick":
                    conn.numeric(N.ERR_USERNOTINCHANNEL, nick, name, "They aren't on that channel")
                else:
                    conn.refuse("KICK", e, name)

    def req_MODE(self, conn: Peer, msg: IRCMessage) -> None:
        if not _params(conn, msg, 1):
            return
        mode(conn, _member(conn), msg)


def _member(conn: Peer) -> Member:
    member = conn.member
    assert member is not None
    return member
