# -*- test-case-name: tests.core.test_service -*-
"""
What members say: room messages and private messages (stored first, then
delivered; idempotent with a client's C{ref}), and the history of rooms and
of private messages on request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import History, Message, Notice, Private, PrivateHistory
from twisted_chat.core.names import checkNick, findMentions, nickKey
from twisted_chat.core.refs import RefWindow


#: how many times C{limit} ids a history after an id reads at most (see
#: L{Messages.historyAfter})
AFTER_WIDEST = 32


def _done() -> Deferred[None]:
    from twisted.internet.defer import succeed

    return succeed(None)

if TYPE_CHECKING:
    from twisted_chat.core.member import Member
    from twisted_chat.core.nicks import Nicks
    from twisted_chat.core.parts import Host


class Messages:
    """
    Room and private messages, and history on request.
    """

    _log = Logger()

    def __init__(self, host: Host, nicks: Nicks, refWindow: float = 3600.0, logMessages: bool = False) -> None:
        self.host = host
        #: member -> fires when the last message it sent that had to wait
        #: (see L{inOrder}) was handed to the store
        self._sending: dict[Member, Deferred[None]] = {}
        self.nicks = nicks
        #: the refs of the last C{refWindow} seconds (see L{RefWindow})
        self.refs = RefWindow(refWindow)
        #: log the text of every message (--log-messages)
        self.logMessages = logMessages

    def once(self, member: Member, ref: object, make: Callable[[], Deferred[Any]]) -> Deferred[Any]:
        """
        Run C{make} unless this nick already sent C{ref} within the window;
        then answer with that first message (once it is stored) instead.
        """
        if ref is None:
            return make()
        return self.refs.once((nickKey(member.nick), str(ref)), self.host.now(), make)

    def checkText(self, text: object) -> str:
        if not isinstance(text, str):
            raise ChatError("bad-request", "text must be a string")
        if not text.strip():
            raise ChatError("empty-message", "empty message: nothing sent")
        limit = self.host.settings.maxTextLength
        if len(text) > limit:
            raise ChatError("too-long", "message too long (max %d characters): not sent" % (limit,))
        return text

    def notStored(self, f: Failure) -> Failure:
        """
        A message could not be stored: count it (the sender is answered,
        and the failure logged, by its front-end).
        """
        if not f.check(ChatError):
            self.host.stats.storeFailed()
        return f

    def checkReply(self, name: str | None, replyTo: object) -> int:
        """
        The id a message answers (0: none): a positive id, not beyond the
        last id of its room when the store knows it here. (That it names a
        message is L{replyTarget}'s to check, with the store.)
        """
        if replyTo is None or replyTo == 0:
            return 0
        if not isinstance(replyTo, int) or isinstance(replyTo, bool) or replyTo < 0:
            raise ChatError("bad-request", "'reply_to' is a message id")
        last = self.host.store.lastId(name if name is not None else "@private")
        if last and replyTo > last:
            raise ChatError("no-such-message", "there is no message %d to reply to" % (replyTo,))
        return replyTo

    def replyTarget(self, member: Member, name: str | None, reply: int) -> Deferred[None]:
        """
        Fires once the store says that C{reply} is a message of room
        C{name} (C{None}: a private message to or from C{member}'s nick),
        not an edit, a deletion or a reaction; fails with C{no-such-message}
        when it is not.
        """
        store = self.host.store
        key = nickKey(member.nick)

        def found(entry: Message | Private | None) -> None:
            if entry is not None and name is None and key not in (nickKey(entry.sender), nickKey(entry.recipient)):  # type: ignore[union-attr]
                entry = None
            if entry is None or entry.kind not in ("message", "private"):
                raise ChatError("no-such-message", "there is no message %d to reply to" % (reply,))

        d: Deferred[Any] = store.get(name, reply) if name is not None else store.getPrivate(member.nick, reply)
        return d.addCallback(found)

    def inOrder(self, member: Member, check: Deferred[None] | None, send: Callable[[], Deferred[Any]]) -> Deferred[Any]:
        """
        C{send()} once C{check} (the lookup of a reply's message, or None)
        passed and the message C{member} sent before this one, if it had
        to wait, is stored (or refused): a reply waits for its lookup, and
        what the member sends right after it waits for the reply, so that
        messages are stored in the order they were sent.
        """
        before = self._sending.get(member)
        if before is None and check is None:
            return send()
        handed: Deferred[None] = Deferred()
        self._sending[member] = handed

        def go(_: object) -> Deferred[Any]:
            return check if check is not None else _done()

        def start(_: object) -> Deferred[Any]:
            return send()

        def handedOn(result: object) -> object:
            if self._sending.get(member) is handed:
                del self._sending[member]
            handed.callback(None)
            return result

        waited: Deferred[Any] = Deferred()
        if before is None:
            waited.callback(None)
        else:
            before.addCallback(lambda _: waited.callback(None))
        waited.addCallback(go).addCallback(start)
        stored: Deferred[Any] = Deferred()

        def forward(result: object) -> None:
            if isinstance(result, Failure):
                stored.errback(result)
            else:
                stored.callback(result)

        waited.addBoth(handedOn).addBoth(forward)
        return stored

    def say(
        self, member: Member, name: str, text: str, action: bool, ref: object = None, replyTo: object = None
    ) -> Deferred[Message]:
        self.nicks.requireLogin(member)
        text = self.checkText(text)
        reply = self.checkReply(name, replyTo) if replyTo is not None else 0
        self.host.conversation.stopTyping(member, name)

        def make() -> Deferred[Message]:
            check = self.replyTarget(member, name, reply) if reply else None
            return self.inOrder(member, check, append)

        def append() -> Deferred[Message]:
            # (the store gives it its id as it stores it)
            msg = Message(name, 0, self.host.store.epoch, member.nick, text, self.host.now(), action, findMentions(text), reply)
            d = self.host.store.append(msg, None if ref is None else str(ref))

            def stored(final: Message) -> Any:
                self.host.stats.messageStored("room", self.host.now() - msg.time)
                if self.logMessages:
                    self._log.info("{nick} in {room}: {text}", nick=final.sender, room=name, text=final.text)
                return self.host.broker.deliverMessage(final)

            return d.addCallbacks(stored, self.notStored)

        return self.once(member, ref, make)

    def private(self, member: Member, nick: str, text: str, ref: object = None, replyTo: object = None) -> Deferred[Private]:
        self.nicks.requireLogin(member)
        target = self.nicks.lookup(checkNick(nick)) if isinstance(nick, str) else None
        remote = self.host.broker.remoteNick(nickKey(nick)) if target is None else None
        if (
            target is None
            and remote is None
            and not self.nicks.owned(nickKey(nick))
        ):
            raise ChatError("no-such-nick", "nobody called %s is online" % (nick,))
        # An owned (or registered) nick that is offline gets it later, in its
        # private history, when it comes back with its token or password.
        text = self.checkText(text)
        reply = self.checkReply(None, replyTo) if replyTo is not None else 0

        def make() -> Deferred[Private]:
            check = self.replyTarget(member, None, reply) if reply else None
            return self.inOrder(member, check, send)

        def send() -> Deferred[Private]:
            recipient = target.nick if target is not None else (remote or nick)
            # (the store gives it its id as it stores it)
            sent = Private(0, member.nick, recipient, text, self.host.now(), reply)
            return self.sendPrivate(member, sent, ref)

        return self.once(member, ref, make)

    def sendPrivate(self, member: Member, sent: Private, ref: object) -> Deferred[Any]:
        """
        Store the private message (or update) C{sent} from C{member} to
        C{sent.recipient}, then deliver it to both (the recipient through
        its node, or later in its private history when it is away).
        """
        recipient = sent.recipient
        target = self.nicks.lookup(recipient)
        remote = self.host.broker.remoteNick(nickKey(recipient)) if target is None else None
        d = self.host.broker.appendPrivate(sent, None if ref is None else str(ref))

        def stored(msg: Private) -> Private:
            self.host.stats.messageStored("private", self.host.now() - msg.time)
            mine = self.nicks.connectionsOf(nickKey(member.nick))
            if target is None:
                if remote is None and msg.kind == "private":
                    for m in mine:
                        self.host.send(m, msg)
                    if not member.gone:
                        self.host.send(member, Notice("%s is offline: they will see it when they come back" % (recipient,)))
                    return msg
                # (the broker routes it to the recipient's node)
            else:
                for m in self.nicks.connectionsOf(nickKey(recipient)):
                    self.host.send(m, msg)
            if target is None or nickKey(recipient) != nickKey(member.nick):
                for m in mine:
                    self.host.send(m, msg)
            return msg

        return d.addCallbacks(stored, self.notStored)

    def privateHistory(self, member: Member, afterId: int | None) -> None:
        if not member.owner:
            self.host.send(member, PrivateHistory([]))
            return

        def got(msgs: list[Private]) -> None:
            if not member.gone:
                self.host.send(member, PrivateHistory(msgs))

        def failed(f: Failure) -> None:
            self.host.logStoreFailure("private history of {nick} failed", f, nick=member.nick)
            if not member.gone:
                self.host.send(member, PrivateHistory([]))

        self.host.store.privateFor(member.nick, afterId, self.host.settings.historySize).addCallbacks(got, failed)

    def history(self, member: Member, name: str, limit: int, before: int | None, after: int | None = None) -> None:
        limit = max(0, min(int(limit), max(self.host.settings.historySize, 200)))
        store = self.host.store

        def got(msgs: list[Message]) -> None:
            if not member.gone:
                self.host.send(member, History(name, store.epoch, msgs))

        def failed(f: Failure) -> None:
            self.host.logStoreFailure("history of {room} failed", f, room=name)
            if not member.gone:
                self.host.send(member, History(name, store.epoch, [], None, "unavailable"))

        if after is None:
            store.recent(name, limit, before).addCallbacks(got, failed)
        else:
            self.historyAfter(name, limit, max(0, int(after)), None if before is None else int(before)).addCallbacks(
                got, failed
            )

    def historyAfter(self, name: str, limit: int, after: int, before: int | None) -> Deferred[list[Message]]:
        """
        The first C{limit} messages of room C{name} with ids above C{after}
        (and below C{before}). The room's ids have no holes within an
        epoch (see IMessageStore), but edits, deletions and reactions take
        ids too: a window of C{limit} ids after C{after} is read, and a
        window twice as wide while it holds fewer than C{limit} messages,
        up to C{before}, the room's last id (when the store knows it here)
        or L{AFTER_WIDEST} times C{limit} ids.
        """
        store = self.host.store
        last = store.lastId(name)

        def read(width: int) -> Deferred[list[Message]]:
            end = after + width + 1
            if before is not None:
                end = min(end, before)
            # (the last `width` messages below `end`: all those above `after`)
            d = store.recent(name, width, end)

            def got(msgs: list[Message]) -> list[Message] | Deferred[list[Message]]:
                msgs = [m for m in msgs if m.id > after]
                if (
                    len(msgs) >= limit
                    or (before is not None and end >= before)
                    or (last and end > last)
                    or width >= limit * AFTER_WIDEST
                ):
                    return msgs[:limit]
                return read(width * 2)

            return d.addCallback(got)

        if limit <= 0:
            from twisted.internet.defer import succeed

            return succeed([])
        return read(limit)
