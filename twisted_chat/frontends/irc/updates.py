# -*- test-case-name: tests.frontends.irc.test_irc -*-
"""
The drafts' events as IRC lines (L{DraftsRendering}, a part of L{Renderer
<twisted_chat.frontends.irc.render.Renderer>}): edits (a C{NOTICE}, IRC has
no edits), deletions (C{REDACT}, or a C{NOTICE}), reactions and typing
(C{TAGMSG}s) and read markers (C{MARKREAD}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from twisted_chat.core.events import (
    DELETE,
    REACT,
    Event,
    PrivateUpdate,
    ReadMarker,
    Typing,
    Update,
)
from twisted_chat.frontends.irc.drafts import timestampOf
from twisted_chat.frontends.irc.privmsg import privmsgLines
from twisted_chat.frontends.irc.protocol import SERVER_NAME, formatMessage, mask
from twisted_chat.wire.render import oneLine, quoted

if TYPE_CHECKING:
    from twisted_chat.frontends.irc.peer import Peer


class DraftsRendering:
    """
    What one IRC connection shows of edits, deletions, reactions, typing
    and read markers. The renderer gives its nick (C{me}), the tags of a
    user (C{userTags}) and how an event of its own nick is shown
    (C{_fromOwnNick}, of L{OwnHolding
    <twisted_chat.frontends.irc.own.OwnHolding>}).
    """

    def __init__(self, conn: Peer) -> None:
        self.conn = conn
        #: room -> the read position this client's MARKREAD is storing (its
        #: answer says it, not the event)
        self.ownReads: dict[str, int] = {}

    @property
    def me(self) -> str:
        raise NotImplementedError()

    def userTags(self, nick: str, time: float | None = None) -> dict[str, str]:
        raise NotImplementedError()

    def _fromOwnNick(self, event: Event, show: Callable[[Event], None]) -> None:
        raise NotImplementedError()

    def on_update(self, u: Update) -> None:
        if u.sender == self.me:
            # (echo-message gives this connection's own back once stored:
            # see drafts.py; the nick's other connections' are shown)
            self._fromOwnNick(u, self._showUpdate)  # type: ignore[arg-type]
            return
        self._showUpdate(u)

    def _showUpdate(self, u: Update) -> None:
        tags = self.userTags(u.sender, u.time)
        if self.conn.caps.has("message-tags"):
            tags["msgid"] = "%s/%s/%d" % (u.room[1:], u.epoch, u.id)
        ref = "%s/%s/%d" % (u.room[1:], u.epoch, u.target)
        for line in self.updateLines(u, u.room, ref, tags):
            self.conn.sendLine(line)

    def on_private_update(self, u: PrivateUpdate) -> None:
        if u.sender == self.me:
            self._fromOwnNick(u, self._showPrivateUpdate)  # type: ignore[arg-type]
            return
        self._showPrivateUpdate(u)

    def _showPrivateUpdate(self, u: PrivateUpdate) -> None:
        tags = self.userTags(u.sender, u.time)
        if self.conn.caps.has("message-tags"):
            tags["msgid"] = "pm/%d" % (u.id,)
        # (to the other party, as this nick's private messages go; from the
        # other party, to this client)
        target = u.recipient if u.sender == self.me else self.me
        for line in self.updateLines(u, target, "pm/%d" % (u.target,), tags):
            self.conn.sendLine(line)

    def updateLines(self, u: Update | PrivateUpdate, target: str, ref: str, tags: dict[str, str]) -> list[str]:
        """
        What this client sees of the edit, deletion or reaction C{u} of
        the message C{ref} (its msgid) sent to C{target}: a reaction is a
        C{TAGMSG} with C{+draft/react} (C{+draft/unreact}: taken back) for
        a client with C{message-tags}, nothing for others; a deletion a
        C{REDACT} for a client with C{draft/message-redaction}, else a
        C{NOTICE}; an edit a C{NOTICE} with the new text (IRC has no
        edits), C{+draft/reply} naming the message edited.
        """
        caps = self.conn.caps
        source = mask(u.sender)
        if u.op == REACT:
            if not caps.has("message-tags"):
                return []
            tags[("+draft/react" if u.on else "+draft/unreact")] = u.emoji
            tags["+draft/reply"] = ref
            return [formatMessage("TAGMSG", [target], source, tags)]
        if u.op == DELETE:
            if caps.has("draft/message-redaction"):
                return [formatMessage("REDACT", [target, ref], source, tags)]
            whose = "" if not u.author or u.author.lower() == u.sender.lower() else u.author + "'s "
            text = "deleted %s%s" % (whose, quoted(u.original))
        else:
            text = "edited %s: %s" % (quoted(u.original), oneLine(u.text))
        if caps.has("message-tags"):
            tags["+draft/reply"] = ref
        return privmsgLines("NOTICE", source, target, text, tags)

    def on_typing(self, t: Typing) -> None:
        if t.nick != self.me and self.conn.caps.has("message-tags"):
            tags = {"+typing": t.state}
            self.conn.sendLine(formatMessage("TAGMSG", [t.room], mask(t.nick), tags))

    def on_read(self, r: ReadMarker) -> None:
        if not self.conn.caps.has("draft/read-marker"):
            return
        if self.ownReads.get(r.room) == r.id:
            # (the answer of this client's MARKREAD says it)
            del self.ownReads[r.room]
            return
        conn = self.conn
        timestampOf(conn, r.room, r.id).addCallback(
            lambda value: conn.sendLine(formatMessage("MARKREAD", [r.room, value], SERVER_NAME))
        )
