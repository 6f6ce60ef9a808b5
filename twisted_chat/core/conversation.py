# -*- test-case-name: tests.core.test_conversation -*-
"""
What makes a conversation beyond saying things: edits, deletions and
reactions (updates: stored entries of the room's sequence, delivered and
resumed like messages), typing (never stored, rate limited), read markers
(per owned nick, stored) and search.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import (
    DELETE,
    EDIT,
    REACT,
    Message,
    Private,
    PrivateUpdate,
    ReadMarker,
    SearchResults,
    Typing,
    Update,
)
from twisted_chat.core.interfaces import searchWords
from twisted_chat.core.names import findMentions, nickKey

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

    from twisted_chat.core.member import Member
    from twisted_chat.core.messages import Messages
    from twisted_chat.core.nicks import Nicks
    from twisted_chat.core.parts import Host

#: typing: at most one forwarded per member and room in this many seconds
TYPING_INTERVAL = 3.0
#: typing: an "active" not repeated for this long ends
TYPING_EXPIRY = 6.0
TYPING_STATES = ("active", "paused", "done")
#: the longest emoji (a sequence with modifiers and joiners)
EMOJI_MAX = 16
#: search: results by default, and at most
SEARCH_DEFAULT, SEARCH_MAX = 20, 100


def checkId(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ChatError("bad-request", "a message id is a positive integer")
    return value


def checkEmoji(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > EMOJI_MAX or any(c.isspace() for c in value):
        raise ChatError("bad-request", "an emoji is 1-%d characters without spaces" % (EMOJI_MAX,))
    return value


class _Typing:
    """
    One member's typing in one room: when an "active" was last forwarded,
    whether the others think it types, and its expiry.
    """

    __slots__ = ("forwarded", "active", "expiry")

    def __init__(self) -> None:
        self.forwarded = float("-inf")
        self.active = False
        self.expiry: IDelayedCall | None = None


class Conversation:
    """
    Edits, deletions, reactions, typing, read markers and search.
    """

    _log = Logger()

    def __init__(self, host: Host, nicks: Nicks, messages: Messages) -> None:
        self.host = host
        self.nicks = nicks
        self.messages = messages
        self._typing: dict[tuple[Member, str], _Typing] = {}

    # Updates

    def update(
        self,
        member: Member,
        name: str,
        id: object,
        op: str,
        text: object = "",
        emoji: object = "",
        on: bool = True,
        ref: object = None,
        epoch: object = None,
    ) -> Deferred[Update]:
        """
        Edit (C{text}), delete or react to (C{emoji}, C{on}) message C{id}
        of room C{name}: stored as an entry of the room's sequence, then
        delivered to the room; fires with the stored L{Update}. With an
        C{epoch}, refused when the room's ids are of another one now (the
        store lost its messages: C{id} names another message, or none).
        """
        self.nicks.requireLogin(member)
        target = checkId(id)
        if epoch is not None:
            if not isinstance(epoch, str):
                raise ChatError("bad-request", "'epoch' is a string")
            if epoch != self.host.store.epoch:
                raise ChatError("no-such-message", "that message is gone: the server lost its stored messages since")
        newText = self.messages.checkText(text) if op == EDIT else ""
        emojiText = checkEmoji(emoji) if op == REACT else ""
        store = self.host.store
        room = member.rooms.get(name)
        operator = room is not None and member in room.ops or self.nicks.isAdmin(member)

        def make() -> Deferred[Update]:
            def found(message: Message | None) -> Deferred[Update]:
                self._check(member, message, op, operator)
                assert message is not None
                update = Update(
                    name, 0, store.epoch, member.nick, op, target, newText, self.host.now(), emojiText, on,
                    findMentions(newText) if newText else (), message.text[:31], message.sender,
                )
                d = store.append(update, None if ref is None else str(ref))

                def stored(final: Update) -> Any:
                    return self.host.broker.deliverMessage(final)

                return d.addCallbacks(stored, self.messages.notStored)

            return store.get(name, target).addCallback(found)

        return self.messages.once(member, ref, make)

    def _check(self, member: Member, message: Message | Private | None, op: str, operator: bool) -> None:
        """
        Refuse an update of C{message} by C{member} that may not be.
        """
        if message is None or message.kind not in ("message", "private") or (message.deleted and op != DELETE):
            raise ChatError("no-such-message", "there is no such message")
        mine = nickKey(message.sender) == nickKey(member.nick)
        if op == EDIT and not mine:
            raise ChatError("not-author", "only its author can edit a message")
        if op == DELETE and not mine and not operator:
            raise ChatError("not-author", "only its author or an operator can delete a message")

    def updatePrivate(
        self,
        member: Member,
        id: object,
        op: str,
        text: object = "",
        emoji: object = "",
        on: bool = True,
        ref: object = None,
    ) -> Deferred[PrivateUpdate]:
        """
        Edit, delete or react to private message C{id}, between its two
        parties: stored in the private sequence, then delivered to both.
        """
        self.nicks.requireLogin(member)
        target = checkId(id)
        newText = self.messages.checkText(text) if op == EDIT else ""
        emojiText = checkEmoji(emoji) if op == REACT else ""
        if not member.owner:
            raise ChatError("no-such-message", "only a nick's owner can see its private messages")

        def make() -> Deferred[PrivateUpdate]:
            def found(message: Private | None) -> Deferred[PrivateUpdate]:
                key = nickKey(member.nick)
                if message is not None and key not in (nickKey(message.sender), nickKey(message.recipient)):
                    message = None
                self._check(member, message, op, False)
                assert message is not None
                other = message.recipient if nickKey(message.sender) == key else message.sender
                update = PrivateUpdate(
                    0, member.nick, other, op, target, newText, self.host.now(), emojiText, on,
                    message.text[:31], message.sender,
                )
                return self.messages.sendPrivate(member, update, ref)

            return self.host.store.getPrivate(member.nick, target).addCallback(found)

        return self.messages.once(member, ref, make)

    # Typing

    def typing(self, member: Member, name: str, state: object) -> None:
        """
        C{member} is typing in C{name} (C{state}: active, paused, done):
        forwarded to the room's other members at most once every
        L{TYPING_INTERVAL} seconds (a paused or done that ends a forwarded
        active always); an active not repeated ends after L{TYPING_EXPIRY}.
        """
        if state not in TYPING_STATES:
            raise ChatError("bad-request", "a typing state is active, paused or done")
        key = (member, name)
        typing = self._typing.get(key)
        now = self.host.now()
        if state == "active":
            if typing is None:
                typing = self._typing[key] = _Typing()
            if typing.expiry is not None and typing.expiry.active():
                typing.expiry.reset(TYPING_EXPIRY)
            else:
                typing.expiry = self.host.clock.callLater(TYPING_EXPIRY, self._expired, member, name)
            if now - typing.forwarded >= TYPING_INTERVAL:
                typing.forwarded = now
                typing.active = True
                self._tell(member, name, "active")
        elif typing is not None:
            if typing.active:
                typing.active = False
                self._tell(member, name, str(state))
            if state == "done":
                self.stopTyping(member, name)

    def _expired(self, member: Member, name: str) -> None:
        typing = self._typing.pop((member, name), None)
        if typing is not None and typing.active and not member.gone:
            self._tell(member, name, "done")

    def stopTyping(self, member: Member, name: str) -> None:
        """
        C{member} said something in C{name}, or left it: its typing there
        ends (nobody is told: its message, or its leaving, says it).
        """
        if not self._typing:
            return  # (the common case, on every message)
        typing = self._typing.pop((member, name), None)
        if typing is not None and typing.expiry is not None and typing.expiry.active():
            typing.expiry.cancel()

    def _tell(self, member: Member, name: str, state: str) -> None:
        event = Typing(name, member.nick, state)
        room = self.host.rooms.get(name)
        if room is not None:
            key = nickKey(member.nick)
            for m in room.snapshot():
                if nickKey(m.nick) != key:
                    self.host.send(m, event)
        self.host.broker.typing(name, member.nick, state)

    def remoteTyping(self, name: str, nick: str, state: str) -> None:
        """
        C{nick}, on another node, is typing in C{name}.
        """
        room = self.host.rooms.get(name)
        if room is not None:
            event = Typing(name, nick, state)
            key = nickKey(nick)
            for m in room.snapshot():
                if nickKey(m.nick) != key:
                    self.host.send(m, event)

    # Read markers

    def markRead(self, member: Member, name: str, id: object) -> Deferred[None]:
        """
        The nick of C{member} (owned or registered) has read C{name} up to
        C{id}: stored, then told to every connection of the nick.
        """
        target = checkId(id) if id != 0 else 0
        if not member.owner:
            raise ChatError("not-owner", "read markers are kept for owned or registered nicks only")
        nick = member.nick

        def saved(_: None) -> None:
            self.readMarker(nick, name, target)
            self.host.broker.readMarker(nick, name, target)

        def failed(f: Failure) -> None:
            self.host.logStoreFailure("saving the read marker of {nick} failed", f, nick=nick)
            raise ChatError("server-error", "not stored: please try again")

        return self.host.store.saveRead(nickKey(nick), name, target).addCallbacks(saved, failed)

    def readMarker(self, nick: str, name: str, id: int) -> None:
        """
        Tell every connection of this node that owns C{nick} its read position.
        """
        event = ReadMarker(name, id)
        for m in self.nicks.connectionsOf(nickKey(nick)):
            if m.owner:
                self.host.send(m, event)

    def readState(self, member: Member, name: str) -> Deferred[tuple[int, int, int] | None]:
        """
        (read position, unread, mentions) of C{member}'s nick in C{name};
        None for a nick that is not owned.
        """
        if not member.owner:
            from twisted.internet.defer import succeed

            return succeed(None)
        store = self.host.store
        nick = member.nick

        def got(reads: dict[str, int]) -> Deferred[tuple[int, int, int] | None]:
            position = reads.get(name, 0)

            def counted(counts: tuple[int, int]) -> tuple[int, int, int] | None:
                return (position, counts[0], counts[1])

            return store.unread(name, nick, position).addCallback(counted)

        d: Deferred[dict[str, int]] = store.reads(nickKey(nick))
        return d.addCallback(got)

    # Search

    def search(
        self, member: Member, text: object, name: str | None, before: object, limit: object
    ) -> Deferred[SearchResults]:
        """
        Search the rooms C{member} is in (or C{name}) and its own private
        messages: answered with L{SearchResults} (the Deferred fires with
        it once sent, or fails with L{ChatError} C{unavailable}).
        """
        if not isinstance(text, str) or not searchWords(text):
            raise ChatError("bad-request", "search for some words")
        if before is not None:
            if name is None:
                raise ChatError("bad-request", "'before' goes with a 'room'")
            before = checkId(before)
        if limit is None:
            limit = SEARCH_DEFAULT
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ChatError("bad-request", "'limit' must be a positive integer")
        rooms = [name] if name is not None else list(member.rooms)
        nick = member.nick if member.owner and name is None else None

        def got(results: list[Message | Private]) -> SearchResults:
            event = SearchResults(text, results)
            if not member.gone:
                self.host.send(member, event)
            return event

        def failed(f: Failure) -> SearchResults:
            self.host.logStoreFailure("search failed", f)
            raise ChatError("unavailable", "the search failed: please try again")

        return self.host.store.search(rooms, nick, text, before, min(limit, SEARCH_MAX)).addCallbacks(got, failed)
