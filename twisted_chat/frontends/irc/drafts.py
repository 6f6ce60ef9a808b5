# -*- test-case-name: tests.frontends.irc.test_irc_drafts -*-
"""
The IRCv3 drafts of a conversation (docs/protocol.md, "IRC",
"Conversations"), for the clients that negotiate them:

 - client tags on C{TAGMSG} (with C{message-tags}): C{+typing} (the
   service's typing), C{+draft/react} with C{+draft/reply} (a reaction;
   C{+draft/unreact} takes it back);
 - C{+draft/reply} on C{PRIVMSG}: a reply (L{replyTo});
 - C{REDACT} (C{draft/message-redaction}): a deletion, or the taking back
   of one's reaction when the msgid is the reaction's;
 - C{MARKREAD} (C{draft/read-marker}): the nick's read position in a room,
   as the time of the last message read (L{readMarks}, L{MarkRead}).

Messages are named by their C{msgid} (C{ROOM/EPOCH/ID}, C{pm/ID});
refusals are C{FAIL} standard replies with the codes of the drafts
(C{UNKNOWN_MSGID}, C{REDACT_FORBIDDEN}, C{INVALID_TARGET},
C{INVALID_PARAMS}, C{NEED_MORE_PARAMS}, C{ACCOUNT_REQUIRED},
C{INTERNAL_ERROR}).
"""

from __future__ import annotations

import calendar
import re
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.python.failure import Failure

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import DELETE, REACT, Message, PrivateUpdate, Update
from twisted_chat.core.names import nickKey, normalizeRoom
from twisted_chat.frontends.irc.protocol import SERVER_NAME, formatMessage, mask, parseMsgid, serverTime

if TYPE_CHECKING:
    from twisted_chat.core.service import Member
    from twisted_chat.frontends.irc.peer import Answer, Peer
    from twisted_chat.frontends.irc.protocol import IRCMessage

#: the typing tag (and the draft name some clients still send)
TYPING_TAGS = ("+typing", "+draft/typing")
#: MARKREAD: how many of a room's latest messages a timestamp is looked for in
MARK_SCAN = 1000
_PAGE = 200
_UNKNOWN = "This message does not exist or is too old"
_TIMESTAMP = re.compile(r"timestamp=(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,3}))?Z\Z")

#: the service's refusals as the drafts' codes
_CODES = {
    "no-such-message": "UNKNOWN_MSGID",
    "not-author": "REDACT_FORBIDDEN",
    "not-in-room": "INVALID_TARGET",
    "bad-room": "INVALID_TARGET",
    "not-owner": "ACCOUNT_REQUIRED",
    "auth-required": "ACCOUNT_REQUIRED",
    "bad-request": "INVALID_PARAMS",
    "server-error": "INTERNAL_ERROR",
    "unavailable": "INTERNAL_ERROR",
}


class DraftError(Exception):
    """
    A request that is refused: C{FAIL COMMAND CODE CONTEXT… :DESCRIPTION}
    (C{context}: the context, then the description).
    """

    def __init__(self, code: str, *context: str) -> None:
        super().__init__(code)
        self.code = code
        self.context = context


def millis(t: float) -> int:
    """
    The time C{t} in whole milliseconds, as C{server-time} shows it.
    """
    return int(round(t * 1000))


def parseTimestamp(value: str) -> int | None:
    """
    The milliseconds of a C{timestamp=YYYY-MM-DDThh:mm:ss.sssZ}, or None.
    """
    found = _TIMESTAMP.match(value)
    if found is None:
        return None
    y, mo, d, h, mi, s = (int(found.group(i)) for i in range(1, 7))
    try:
        whole = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        return None
    return whole * 1000 + int((found.group(7) or "0").ljust(3, "0"))


def reference(conn: Peer, target: str, msgid: str) -> tuple[str | None, int]:
    """
    C{(room, id)} of the message C{msgid} sent to C{target} (room None: a
    private message, C{pm/ID}); L{DraftError} C{UNKNOWN_MSGID} when it
    names no message of that target (or of an epoch whose messages are
    gone).
    """
    if not target.startswith("#"):
        if msgid.startswith("pm/") and msgid[3:].isdigit() and int(msgid[3:]) > 0:
            return None, int(msgid[3:])
        raise DraftError("UNKNOWN_MSGID", target, msgid, _UNKNOWN)
    try:
        room = normalizeRoom(target)
    except ChatError:
        raise DraftError("INVALID_TARGET", target, "no such channel")
    parsed = parseMsgid(msgid)
    if parsed is None or parsed[0] != room or parsed[1] != conn.service.store.epoch or parsed[2] < 1:
        raise DraftError("UNKNOWN_MSGID", target, msgid, _UNKNOWN)
    return room, parsed[2]


def refused(conn: Peer, reply: Answer, command: str, e: DraftError | ChatError, *context: str) -> None:
    """
    Answer the refusal C{e} of C{command} (about C{context}) with a C{FAIL}.
    """
    if isinstance(e, DraftError):
        line = formatMessage("FAIL", [command, e.code, *e.context], SERVER_NAME)
    else:
        code = _CODES.get(e.code, e.code.upper().replace("-", "_"))
        line = formatMessage("FAIL", [command, code, *context, e.message], SERVER_NAME)
    conn.answer(reply, line)


def replyTo(conn: Peer, command: str, target: str, msg: IRCMessage) -> int | None:
    """
    The id of the message a C{PRIVMSG} to C{target} answers (its
    C{+draft/reply}), None when it answers none; L{DraftError} when the tag
    names no message of that target.
    """
    value = msg.tags.get("+draft/reply")
    if not value:
        return None
    return reference(conn, target, value)[1]


def echo(
    conn: Peer, d: Deferred[Any], command: str, context: tuple[str, ...], lines: Callable[[dict[str, str]], list[str]]
) -> None:
    """
    Once the request behind C{d} (of L{Rendering.ownRequest}) is stored: C{lines} (given the tags of the
    stored update: its C{msgid}, C{time}) for a client with
    C{echo-message}, or the C{FAIL} of its refusal; in the command's answer.
    """
    reply = conn.later()

    def stored(update: object) -> None:
        if conn.caps.has("echo-message"):
            for line in lines(updateTags(conn, update)):
                conn.answer(reply, line)

    def failed(f: Failure) -> None:
        if f.check(ChatError):
            refused(conn, reply, command, f.value, *context)  # type: ignore[arg-type]
            return
        conn.service.logStoreFailure("storing an update failed", f)
        conn.answer(reply, formatMessage("FAIL", [command, "INTERNAL_ERROR", *context, "not stored (server error): please try again"], SERVER_NAME))

    def answered(_: object) -> None:
        conn.render.ownAnswered()

    d.addCallbacks(stored, failed).addBoth(lambda _: conn.finish(reply))
    d.addBoth(answered)


def updateTags(conn: Peer, update: object) -> dict[str, str]:
    """
    The tags of the stored update C{update} for this client: C{time} (with
    C{server-time}) and its C{msgid} (with C{message-tags}).
    """
    tags: dict[str, str] = {}
    if not isinstance(update, (Update, PrivateUpdate)):
        return tags
    if conn.caps.has("server-time"):
        tags["time"] = serverTime(update.time)
    if conn.caps.has("message-tags"):
        if isinstance(update, Update):
            tags["msgid"] = "%s/%s/%d" % (update.room[1:], update.epoch, update.id)
        else:
            tags["msgid"] = "pm/%d" % (update.id,)
    return tags


def _member(conn: Peer) -> Member:
    member = conn.member
    assert member is not None
    return member


# -- TAGMSG: typing and reactions --


def tagmsg(conn: Peer, msg: IRCMessage) -> None:
    """
    C{TAGMSG target}: its C{+typing} is the member's typing in the room
    (typing to a nick is not relayed: the chat has none), its
    C{+draft/react} (or C{+draft/unreact}) with C{+draft/reply} a reaction.
    """
    target = msg.params[0]
    member = _member(conn)
    tags = msg.tags
    state = next((tags[t] for t in TYPING_TAGS if t in tags), None)
    if state is not None and target.startswith("#"):
        try:
            member.typing(state, target)
        except ChatError as e:
            refused(conn, None, "TAGMSG", e, target)
            return
    if "+draft/react" in tags or "+draft/unreact" in tags:
        react(conn, "TAGMSG", target, msg)


def react(conn: Peer, command: str, target: str, msg: IRCMessage) -> None:
    """
    The reaction C{+draft/react} (or its taking back, C{+draft/unreact})
    to the message C{+draft/reply} of C{target}.
    """
    tags = msg.tags
    on = "+draft/react" in tags
    emoji = tags["+draft/react"] if on else tags["+draft/unreact"]
    msgid = tags.get("+draft/reply", "")
    try:
        if not msgid:
            raise DraftError("INVALID_PARAMS", target, "a reaction needs +draft/reply: the msgid of the message")
        room, id = reference(conn, target, msgid)
        member = _member(conn)
        if room is None:
            d: Deferred[Any] = conn.render.ownRequest(lambda: member.updatePrivate(id, REACT, emoji=emoji, on=on))
        else:
            d = conn.render.ownRequest(lambda: member.react(id, emoji, on, room))
    except DraftError as e:
        refused(conn, None, command, e)
        return
    except ChatError as e:
        refused(conn, None, command, e, target, msgid)
        return

    def lines(tags: dict[str, str]) -> list[str]:
        tags[("+draft/react" if on else "+draft/unreact")] = emoji
        tags["+draft/reply"] = msgid
        return [formatMessage("TAGMSG", [target], mask(conn.nick), tags)]

    echo(conn, d, command, (target, msgid), lines)


class DraftCommands:
    """
    C{REDACT} and C{MARKREAD}.
    """

    def req_REDACT(self, conn: Peer, msg: IRCMessage) -> None:
        if not conn.caps.has("draft/message-redaction"):
            # (the draft: "To redact a message, a client MUST negotiate the
            # draft/message-redaction capability")
            conn.numeric("421", "REDACT", "Unknown command (CAP REQ draft/message-redaction first)")
            return
        if len(msg.params) < 2 or not msg.params[0] or not msg.params[1]:
            conn.fail("REDACT", "NEED_MORE_PARAMS", "REDACT", "Not enough parameters")
            return
        target, msgid = msg.params[0], msg.params[1]
        reason = msg.params[2] if len(msg.params) > 2 else ""
        try:
            room, id = reference(conn, target, msgid)
        except DraftError as e:
            refused(conn, None, "REDACT", e)
            return
        member = _member(conn)
        if room is not None and room not in member.rooms:
            refused(conn, None, "REDACT", DraftError("INVALID_TARGET", target, "you are not in that channel"))
            return
        if room is None:
            d: Deferred[Any] = succeed(None)
        else:
            # (the msgid of one's own reaction: the reaction is taken back)
            d = conn.service.store.get(room, id)

        def redact(entry: Message | None) -> Deferred[Any]:
            if room is None:
                return member.updatePrivate(id, DELETE)
            if isinstance(entry, Update) and entry.op == REACT:
                if entry.on and nickKey(entry.sender) == nickKey(member.nick):
                    return member.react(entry.target, entry.emoji, False, room)
                raise ChatError("not-author", "only its author can take a reaction back")
            return member.delete(id, room)

        def lines(tags: dict[str, str]) -> list[str]:
            params = [target, msgid] + ([reason] if reason else [])
            return [formatMessage("REDACT", params, mask(conn.nick), tags)]

        echo(conn, conn.render.ownRequest(lambda: d.addCallback(redact)), "REDACT", (target, msgid), lines)

    def req_MARKREAD(self, conn: Peer, msg: IRCMessage) -> None:
        if not msg.params or not msg.params[0]:
            conn.fail("MARKREAD", "NEED_MORE_PARAMS", "Missing parameters")
            return
        MarkRead(conn, msg.params[0], msg.params[1] if len(msg.params) > 1 else None).run()


# -- read markers --


def timestampOf(conn: Peer, room: str, id: int) -> Deferred[str]:
    """
    The C{MARKREAD} value of read position C{id} in C{room}: the
    C{timestamp=} of that message, or C{*} (none, or gone).
    """
    if id <= 0:
        return succeed("*")

    def got(m: Message | None) -> str:
        return "*" if m is None else "timestamp=" + serverTime(m.time)

    def failed(f: Failure) -> str:
        conn.service.logStoreFailure("reading a message for a read marker failed", f)
        return "*"

    return conn.service.store.get(room, id).addCallbacks(got, failed)


def readMarks(conn: Peer, member: Member, rooms: list[str]) -> Deferred[dict[str, str]]:
    """
    The C{MARKREAD} value of each of C{rooms} for C{member}'s nick (C{*}
    for a nick that is not owned: the chat keeps no read position for it).
    """
    if not member.owner:
        return succeed({room: "*" for room in rooms})

    def got(reads: dict[str, int]) -> Deferred[dict[str, str]]:
        ds = [timestampOf(conn, room, reads.get(room, 0)) for room in rooms]
        return gatherResults(ds).addCallback(lambda values: dict(zip(rooms, values)))

    def failed(f: Failure) -> dict[str, str]:
        conn.service.logStoreFailure("read positions of {nick} failed", f, nick=member.nick)
        return {room: "*" for room in rooms}

    d: Deferred[dict[str, int]] = conn.service.store.reads(nickKey(member.nick))
    return d.addCallbacks(got, failed)


class MarkRead:
    """
    One C{MARKREAD target [timestamp]}: a get answers the stored position;
    a set finds the last message of the room at or before the timestamp
    (among the latest L{MARK_SCAN}), stores it as the read position when it
    is after the stored one, and answers the position.
    """

    def __init__(self, conn: Peer, target: str, value: str | None) -> None:
        self.conn = conn
        self.target = target
        self.value = value
        self.member = _member(conn)
        self.reply = conn.later()

    def run(self) -> None:
        conn, target = self.conn, self.target
        try:
            if not target.startswith("#"):
                # (the chat keeps read positions of rooms only)
                if self.value is not None:
                    raise DraftError("INVALID_PARAMS", target, "read markers are kept for channels only")
                self.say("*")
                return
            try:
                self.room = normalizeRoom(target)
            except ChatError:
                raise DraftError("INVALID_PARAMS", target, "no such channel")
            if self.value is None:
                readMarks(conn, self.member, [self.room]).addCallback(lambda marks: self.say(marks[self.room]))
                return
            ms = parseTimestamp(self.value)
            if ms is None:
                raise DraftError("INVALID_PARAMS", self.value, "the timestamp is timestamp=YYYY-MM-DDThh:mm:ss.sssZ")
            if not self.member.owner:
                raise ChatError("not-owner", "read markers are kept for owned or registered nicks only")
        except DraftError as e:
            refused(conn, self.reply, "MARKREAD", e)
            self.done()
            return
        except ChatError as e:
            refused(conn, self.reply, "MARKREAD", e, target)
            self.done()
            return
        d: Deferred[dict[str, int]] = conn.service.store.reads(nickKey(self.member.nick))
        d.addCallback(lambda reads: self.find(ms, reads.get(self.room, 0), None, 0)).addErrback(self.failed)

    def find(self, ms: int, stored: int, before: int | None, scanned: int) -> Deferred[None] | None:
        """
        Look for the last message at or before C{ms}, a page at a time.
        """

        def got(page: list[Message]) -> Deferred[None] | None:
            for m in reversed(page):
                if millis(m.time) <= ms:
                    return self.found(m, stored)
            if len(page) < _PAGE or scanned + len(page) >= MARK_SCAN:
                # (older than all the room has, or than what is looked at:
                # not after the stored position)
                return self.keep(stored)
            return self.find(ms, stored, page[0].id, scanned + len(page))

        return self.conn.service.store.recent(self.room, _PAGE, before).addCallback(got)

    def found(self, m: Message, stored: int) -> Deferred[None] | None:
        if m.id <= stored:
            return self.keep(stored)
        self.conn.render.ownReads[self.room] = m.id

        def saved(_: None) -> None:
            self.say("timestamp=" + serverTime(m.time))

        def failed(f: Failure) -> None:
            self.conn.render.ownReads.pop(self.room, None)
            self.failed(f)

        return self.member.markRead(m.id, self.room).addCallbacks(saved, failed)

    def keep(self, stored: int) -> Deferred[None]:
        """
        The timestamp is not after the stored position: answer that.
        """
        return timestampOf(self.conn, self.room, stored).addCallback(self.say)

    def say(self, value: str) -> None:
        self.conn.answer(self.reply, formatMessage("MARKREAD", [self.target, value], SERVER_NAME))
        self.done()

    def failed(self, f: Failure) -> None:
        if f.check(ChatError):
            refused(self.conn, self.reply, "MARKREAD", f.value, self.target)  # type: ignore[arg-type]
        else:
            self.conn.service.logStoreFailure("MARKREAD of {nick} failed", f, nick=self.member.nick)
            self.conn.answer(
                self.reply,
                formatMessage("FAIL", ["MARKREAD", "INTERNAL_ERROR", self.target, "The read timestamp could not be set"], SERVER_NAME),
            )
        self.done()

    def done(self) -> None:
        self.conn.finish(self.reply)
