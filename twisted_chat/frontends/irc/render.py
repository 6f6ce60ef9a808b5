# -*- test-case-name: tests.frontends.irc.test_irc -*-
"""
The service's events as IRC lines, for one connection (L{Renderer}: an
C{on_<kind>} method per kind of event).

A room message is a C{PRIVMSG} from its sender's mask
(C{nick!nick@twisted-chat}) to the room, with the tags the client asked
for (C{time}, C{msgid}, C{account}); rendered once per variant and kept on
the event for every other client of that variant. A message longer than
an IRC line takes (one from another front-end) is cut into several
C{PRIVMSG}s (the first carries the C{msgid}). A client's own messages are
not relayed back to it (with C{echo-message} they come back once stored:
see L{twisted_chat.frontends.irc.chat}); what its nick does from another
connection (another device) is shown as anyone's: while the connection
has requests of its own in flight, the events of its nick are held, and
when the last is answered the ones it was given back (its echo covers
them) are dropped and the others shown (L{Renderer.ownRequest}). A leave is a C{PART}, a C{KICK}
(kicked or banned by an operator) or a C{QUIT} (any other reason: told
once, not once per room).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable

from twisted_chat.core.events import (
    AwayChanged,
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
    TopicChanged,
)
from twisted_chat.frontends.irc import numerics as N
from twisted_chat.frontends.irc.history import historyArrived, privateHistoryArrived
from twisted_chat.frontends.irc.own import OwnHolding
from twisted_chat.frontends.irc.privmsg import privmsgLines
from twisted_chat.frontends.irc.protocol import (
    MAX_BODY,
    SERVER_NAME,
    formatMessage,
    mask,
    msgidOf,
    privateMsgid,
    serverTime,
)
from twisted_chat.frontends.irc.updates import DraftsRendering
from twisted_chat.wire.render import stamp

if TYPE_CHECKING:
    from twisted_chat.frontends.irc.peer import Answer, Peer, Wanted

#: a leave by an operator: C{kicked by OP[: why]}, C{banned by OP[: why]}
_KICKED = re.compile(r"(?:kicked|banned) by ([A-Za-z0-9_-]+)(?:: (.*))?\Z", re.S)


class Renderer(OwnHolding, DraftsRendering):
    """
    What one IRC connection shows of the service's events.
    """

    def __init__(self, conn: Peer) -> None:
        OwnHolding.__init__(self)
        DraftsRendering.__init__(self, conn)
        #: kind of event -> who takes it instead of the client (a command
        #: that asked for it, while its request runs)
        self.captures: dict[str, Callable[[Event], None]] = {}
        #: room -> the answer its join's history goes into, until it came
        self.awaitingHistory: dict[str, Answer] = {}
        #: the CHATHISTORY request waiting for its history
        self.historyWanted: Wanted | None = None
        #: (nick, reason) of the quits told in this reactor turn
        self._quits: set[tuple[str, str]] | None = None

    @property
    def me(self) -> str:
        return self.conn.nick

    def flags(self) -> str:
        """
        Which tags this client's messages carry: C{t} (server-time), C{m}
        (message-tags: C{msgid}), C{a} (account-tag).
        """
        caps = self.conn.caps
        return (
            ("t" if caps.has("server-time") else "")
            + ("m" if caps.has("message-tags") else "")
            + ("a" if caps.has("account-tag") else "")
        )

    def userTags(self, nick: str, time: float | None = None) -> dict[str, str]:
        """
        The tags of what C{nick} did at C{time}, for this client.
        """
        tags: dict[str, str] = {}
        caps = self.conn.caps
        if time is not None and caps.has("server-time"):
            tags["time"] = serverTime(time)
        if caps.has("account-tag"):
            account = self.accountOf(nick)
            if account:
                tags["account"] = account
        return tags

    def accountOf(self, nick: str) -> str | None:
        info = self.conn.service.memberInfo(nick)
        return info.account if info is not None else None

    def deliver(self, event: Event) -> None:
        kind = event.kind
        capture = self.captures.get(kind)
        if capture is not None:
            capture(event)
            return
        handler = getattr(self, "on_" + kind.replace("-", "_"), None)
        if handler is not None:
            handler(event)

    # -- room messages --

    def messageLines(self, m: Message, playback: bool = False) -> list[str]:
        """
        The lines of room message C{m} for this client (C{playback}: played
        back on join, stamped in its text for a client without
        C{server-time}).
        """
        if m.deleted or m.kind != "message":
            # (a deleted message, an update: nothing to play back; updates
            # come live as on_update shows them)
            return []
        flags = self.flags()
        if playback and "t" not in flags:
            text = "[%s] %s" % (stamp(m.time, self.conn.service.now()), m.text)
            return privmsgLines("PRIVMSG", mask(m.sender), m.room, text, self._messageTags(m, flags), m.action)
        key = "irc-" + flags
        lines: list[str] | None = m.cache.get(key)
        if lines is None:
            lines = m.cache[key] = privmsgLines(
                "PRIVMSG", mask(m.sender), m.room, m.text, self._messageTags(m, flags), m.action
            )
        return lines

    def playbackLines(self, m: Message) -> list[str]:
        """
        The lines of room message C{m} in a history batch: the message,
        then its reactions (L{reactionLines}).
        """
        lines = self.messageLines(m, playback=True)
        if lines:
            room = m.room
            lines = lines + self.reactionLines(m.reactions, msgidOf(m), m.time, lambda nick: room)
        return lines

    def replaysReactions(self) -> bool:
        """
        Whether this client is shown the reactions of the messages in its
        history batches: one with C{batch}, C{message-tags} and
        C{draft/event-playback} (the chathistory draft allows nothing but
        C{PRIVMSG} and C{NOTICE} in a batch for a client without
        C{draft/event-playback}).
        """
        caps = self.conn.caps
        return caps.has("batch") and caps.has("message-tags") and caps.has("draft/event-playback")

    def reactionLines(
        self, reactions: dict[str, list[str]] | None, ref: str, time: float, targetOf: Callable[[str], str]
    ) -> list[str]:
        """
        The C{reactions} ({emoji: [nicks]}) of the message C{ref} (its
        msgid), played back after it: a C{TAGMSG} (to C{targetOf(nick)}) per
        emoji and nick, from the nick's mask, with C{+draft/react} and
        C{+draft/reply}, stamped with the message's C{time} (the chat keeps
        no time per reaction) and without a C{msgid} (the message's
        reactions are folded into it, their entries are not kept apart);
        nothing for a client that is not shown them (L{replaysReactions}).
        """
        if not reactions or not self.replaysReactions():
            return []
        lines = []
        for emoji, nicks in reactions.items():
            for nick in nicks:
                tags = self.userTags(nick, time)
                tags["+draft/react"] = emoji
                tags["+draft/reply"] = ref
                lines.append(formatMessage("TAGMSG", [targetOf(nick)], mask(nick), tags))
        return lines

    def _messageTags(self, m: Message, flags: str) -> dict[str, str]:
        tags: dict[str, str] = {}
        if "t" in flags:
            tags["time"] = serverTime(m.time)
        if "m" in flags:
            tags["msgid"] = msgidOf(m)
            if m.replyTo:
                tags["+draft/reply"] = "%s/%s/%d" % (m.room[1:], m.epoch, m.replyTo)
        if "a" in flags:
            account = self.accountOf(m.sender)
            if account:
                tags["account"] = account
        return tags

    def on_message(self, m: Message) -> None:
        if m.sender == self.me:
            # (echo-message gives this connection's own back once stored:
            # see chat.py; the nick's other connections' are shown)
            self._fromOwnNick(m, self._showMessage)  # type: ignore[arg-type]
            return
        self._showMessage(m)

    def _showMessage(self, m: Message) -> None:
        for line in self.messageLines(m):
            self.conn.sendLine(line)

    def privateLines(self, p: Private) -> list[str]:
        if p.deleted or p.kind != "private":
            return []
        tags = self.userTags(p.sender, p.time)
        if self.conn.caps.has("message-tags"):
            tags["msgid"] = privateMsgid(p)
            if p.replyTo:
                tags["+draft/reply"] = "pm/%d" % (p.replyTo,)
        text, action = p.text, False
        if text.startswith("\x01ACTION ") and text.endswith("\x01"):
            text, action = text[8:-1], True
        return privmsgLines("PRIVMSG", mask(p.sender), p.recipient, text, tags, action)

    def privatePlaybackLines(self, p: Private) -> list[str]:
        """
        The lines of private message C{p} in a history batch: the message,
        then its reactions (L{reactionLines}), to the other party when
        this client's nick reacted, else to this client.
        """
        lines = self.privateLines(p)
        if lines:
            me = self.me
            other = p.recipient if p.sender.lower() == me.lower() else p.sender
            lines = lines + self.reactionLines(
                p.reactions, privateMsgid(p), p.time, lambda nick: other if nick.lower() == me.lower() else me
            )
        return lines

    def on_private(self, p: Private) -> None:
        if p.sender == self.me and p.recipient != self.me:
            self._fromOwnNick(p, self._showPrivate)  # type: ignore[arg-type]
            return
        self._showPrivate(p)

    def _showPrivate(self, p: Private) -> None:
        for line in self.privateLines(p):
            self.conn.sendLine(line)

    # -- who comes and goes --

    def on_join(self, j: Joined) -> None:
        self.conn.sendLine(formatMessage("JOIN", [j.room], mask(j.nick), self.userTags(j.nick, j.time)))
        if j.nick != self.me and self.conn.caps.has("away-notify"):
            info = self.conn.service.memberInfo(j.nick)
            if info is not None and info.away:
                self.conn.sendLine(formatMessage("AWAY", [info.away], mask(j.nick)))

    def on_part(self, p: Parted) -> None:
        reason = p.reason
        if reason == "left" or reason.startswith("left: "):
            params = [p.room] if reason == "left" else [p.room, reason[6:]]
            self.conn.sendLine(formatMessage("PART", params, mask(p.nick), self.userTags(p.nick, p.time)))
            self._historyGone(p)
            return
        kicked = _KICKED.match(reason)
        if kicked is not None:
            op = kicked.group(1)
            self.conn.sendLine(
                formatMessage("KICK", [p.room, p.nick, kicked.group(2) or op], mask(op), self.userTags(op, p.time))
            )
            self._historyGone(p)
            return
        if p.nick == self.me:
            return
        key = (p.nick, reason)
        if self._quits is None:
            self._quits = set()
            self.conn.callLater(0, self._turnOver)
        elif key in self._quits:
            return
        self._quits.add(key)
        self.conn.sendLine(formatMessage("QUIT", [_quitText(reason)], mask(p.nick), self.userTags(p.nick, p.time)))

    def _turnOver(self) -> None:
        self._quits = None

    def _historyGone(self, p: Parted) -> None:
        """
        This client left a room whose join's history had not come yet: its
        answer is over.
        """
        if p.nick == self.me and p.room in self.awaitingHistory:
            self._historyCame(p.room)

    def on_nick(self, n: NickChanged) -> None:
        self.conn.sendLine(formatMessage("NICK", [n.new], mask(n.old), self.userTags(n.new, n.time)))

    def on_away(self, a: AwayChanged) -> None:
        if self.conn.caps.has("away-notify"):
            params = [a.away] if a.away else []
            self.conn.sendLine(formatMessage("AWAY", params, mask(a.nick), self.userTags(a.nick, a.time)))

    # -- rooms --

    def on_topic(self, t: TopicChanged) -> None:
        source = mask(t.by) if t.by else SERVER_NAME
        self.conn.sendLine(formatMessage("TOPIC", [t.room, t.topic], source, self.userTags(t.by, t.time)))

    def on_presence(self, p: Presence) -> None:
        for line in self.namesLines(p):
            self.conn.sendLine(line)

    def namesLines(self, p: Presence) -> list[str]:
        """
        C{353} lines naming the members of a room (operators with C{@}),
        as many as a line's length needs, then C{366}.
        """
        conn = self.conn
        ops = set()
        if conn.member is not None:
            ops = {nick.lower() for nick in conn.member.roomOperators(p.room)}
        names = [("@" if nick.lower() in ops else "") + nick for nick in p.members]
        head = formatMessage(N.RPL_NAMREPLY, [self.me, "=", p.room, "x"], SERVER_NAME)
        room = MAX_BODY - len(head.encode("utf-8")) - 2
        lines = []
        chunk: list[str] = []
        size = 0
        for name in names:
            if chunk and size + 1 + len(name) > room:
                lines.append(formatMessage(N.RPL_NAMREPLY, [self.me, "=", p.room, " ".join(chunk)], SERVER_NAME))
                chunk, size = [], 0
            chunk.append(name)
            size += len(name) + (1 if size else 0)
        if chunk:
            lines.append(formatMessage(N.RPL_NAMREPLY, [self.me, "=", p.room, " ".join(chunk)], SERVER_NAME))
        lines.append(formatMessage(N.RPL_ENDOFNAMES, [self.me, p.room, "End of /NAMES list"], SERVER_NAME))
        return lines

    def topicLines(self, room: str) -> list[str]:
        """
        C{332} and C{333} of C{room}, or nothing when it has no topic.
        """
        member = self.conn.member
        if member is None:
            return []
        name, topic, by, at = member.roomTopic(room)
        if not topic:
            return []
        lines = [formatMessage(N.RPL_TOPIC, [self.me, name, topic], SERVER_NAME)]
        if by and at:
            lines.append(formatMessage(N.RPL_TOPICWHOTIME, [self.me, name, mask(by), str(int(at))], SERVER_NAME))
        return lines

    def on_epoch(self, e: EpochChanged) -> None:
        self.conn.sendLine(
            formatMessage(
                "NOTICE",
                [e.room, "the message history was reset (the server lost its stored messages); message ids start again"],
                SERVER_NAME,
            )
        )

    def on_notice(self, n: Notice) -> None:
        for line in privmsgLines("NOTICE", SERVER_NAME, self.me, n.text, {}):
            self.conn.sendLine(line)

    # -- history --

    def playback(self, room: str, messages: list[Message], unavailable: bool = False) -> list[str] | None:
        """
        The lines of a join's history, as a C{chathistory} batch; None for
        a client that reads history itself (C{draft/chathistory}) or when
        there is none. When the store could not read it (C{unavailable}),
        a C{NOTICE} to the channel says so.
        """
        if unavailable:
            return [
                formatMessage(
                    "NOTICE",
                    [room, "the history cannot be read now (the message store is not answering); "
                     "CHATHISTORY or a rejoin asks again"],
                    SERVER_NAME,
                )
            ]  # fmt: skip
        if not messages or self.conn.caps.has("draft/chathistory"):
            return None
        # (a deleted message is left out, as the redaction draft allows)
        lines = [line for m in messages if not m.deleted for line in self.playbackLines(m)]
        unit = self.conn.batch("chathistory", [room], lines)
        return unit if isinstance(unit, list) else [unit]

    def on_history(self, h: History) -> None:
        if not h.onJoin:
            historyArrived(self.conn, h)
            return
        unavailable = h.reason == "unavailable"
        if h.room not in self.awaitingHistory:
            lines = self.playback(h.room, h.messages, unavailable)
            if lines:
                self.conn.sendUnit(lines)
            return
        lines = self.playback(h.room, h.messages, unavailable)
        if lines:
            self.conn.answer(self.awaitingHistory[h.room], lines)
        self._historyCame(h.room)

    def _historyCame(self, room: str) -> None:
        """
        The history of a join that was read from the store came (or will
        not come: the client left the room): its answer is complete, and
        once no join waits, what the client sent meanwhile is handled.
        """
        self.conn.finish(self.awaitingHistory.pop(room))
        if not self.awaitingHistory:
            self.conn.releaseInput()

    def on_private_history(self, ph: PrivateHistory) -> None:
        privateHistoryArrived(self.conn, ph)


def _quitText(reason: str) -> str:
    """
    What a C{QUIT} says for a leave of C{reason}: C{quit: WHY} is C{WHY}.
    """
    if reason.startswith("quit: "):
        return reason[6:]
    return reason[:1].upper() + reason[1:]
