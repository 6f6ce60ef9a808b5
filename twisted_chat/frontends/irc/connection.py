# -*- test-case-name: tests.frontends.irc.test_irc -*-
"""
One IRC connection (L{IRCConnection}): bytes in, lines, commands; the
service's events out as IRC lines.

Framing is the line chat's (L{twisted_chat.wire.lines}) with IRC's limit
(L{MAX_LINE}: 8191 bytes of tags and 512 of message); a line is decoded
after framing, parsed (L{twisted_chat.frontends.irc.protocol}) and handed
to the C{req_<COMMAND>} handler of its command (L{COMMANDS}). Every line
waits its turn under the chat's flood control (L{ThrottledInput}), as a
line-chat line does; the connection counts against the service's
admission limits, bounds what it queues for a client that does not read
(L{OutgoingGuard}), closes a client that does not register in time, and
pings one that is silent (half the idle timeout), closing it when it stays
silent for the whole idle timeout.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Callable

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import Event
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.core.service import ChatService, Member
from twisted_chat.frontends.irc import numerics as N
from twisted_chat.frontends.irc.admission import admit
from twisted_chat.frontends.irc.caps import Capabilities
from twisted_chat.frontends.irc.commands import COMMANDS, UNREGISTERED, Handler
from twisted_chat.frontends.irc.peer import Answer, Registration
from twisted_chat.frontends.irc.protocol import (
    MAX_BODY,
    MAX_LINE,
    MAX_TAGS,
    SERVER_NAME,
    IRCMessage,
    IRCParseError,
    commandOf,
    formatMessage,
    parseMessage,
    withTags,
)
from twisted_chat.frontends.irc.registration import welcome
from twisted_chat.frontends.irc.render import Renderer
from twisted_chat.frontends.irc.replies import Reply, Unit
from twisted_chat.frontends.line import peerName
from twisted_chat.frontends.throttle import ThrottledInput
from twisted_chat.frontends.write import OutgoingGuard, dropSlowConsumer
from twisted_chat.wire.lines import LineFraming

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: seconds a client has to register (NICK and USER, and CAP END when it
#: negotiates) before it is closed
REGISTRATION_TIMEOUT = 60.0
#: the most lines a client may send before it is registered
REGISTRATION_LINES = 100


@implementer(IChatClient)
class IRCConnection(Protocol, TimeoutMixin, ThrottledInput, LineFraming):
    """
    One IRC client: a member of the chat once registered.
    """

    kind = "irc"
    _log = Logger()
    _closing = False
    _lost = False
    _admitted: str | None = None
    _forceClose: IDelayedCall | None = None
    #: lines read while an earlier command waits (a password check, a
    #: history read): they are handled, in order, once it is answered
    _held: list[object] | None = None
    #: the answer of the labeled command being handled
    _reply: Reply | None = None
    #: whether the silent client was pinged and has not answered yet
    _pinged = False
    _batches = 0
    _unregisteredLines = 0
    #: whether the welcome was sent (events before it are not shown)
    welcomed = False
    peer = "?"
    host = ""

    def __init__(
        self, service: ChatService, clock: IReactorTime | None = None, registrationTimeout: float = REGISTRATION_TIMEOUT
    ) -> None:
        self.service = service
        self.registrationTimeout = registrationTimeout
        self._guard = OutgoingGuard(service.settings)
        self.caps = Capabilities()
        self.registration = Registration()
        self.render = Renderer(self)
        if clock is not None:
            self.callLater = clock.callLater  # type: ignore[assignment]

    # -- the connection's life --

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.registerProducer(self._guard, True)  # type: ignore[attr-defined]
        address = self.transport.getPeer()
        self.peer = peerName(address)
        self.host = sys.intern(str(getattr(address, "host", self.peer)))
        admit(self.service, self.host, self.transport, lambda: self._lost, self._admittedAs, self._refused)

    def _refused(self, e: ChatError) -> None:
        self._log.info("refused IRC client {peer}: {why}", peer=self.peer, why=e.code)
        self.sendLine(formatMessage("ERROR", ["Closing link: " + e.message]))
        self.endSession()

    def _admittedAs(self, host: str) -> None:
        self._admitted = host
        self.setTimeout(self.registrationTimeout)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.setTimeout(None)
        self._closing = self._lost = True
        self.dropInput()
        if self._forceClose is not None and self._forceClose.active():
            self._forceClose.cancel()
        self._release()
        if self.member is not None:
            self.member.quit(self.registration.quitReason or "disconnected")

    def _release(self) -> None:
        if self._admitted is not None:
            self.service.admission.release(self._admitted)
            self._admitted = None

    @property
    def closing(self) -> bool:
        """
        Whether the connection is closing (or closed).
        """
        return self._closing

    @property
    def nick(self) -> str:
        """
        The client's nick as IRC numerics address it (C{*} before it has one).
        """
        if self.member is not None:
            return self.member.nick
        return self.registration.nick or "*"

    def registered(self, member: Member) -> None:
        """
        The client is a member of the chat now: greet it.
        """
        self.member = member
        self.setTimeout(self._pingInterval())
        welcome(self)
        self.welcomed = True
        if member.owner:
            member.privateHistory(None)

    def timeoutConnection(self) -> None:
        if self.member is None:
            self.closeLink("registration timed out")
            return
        if self.inputWaiting or self._held is not None:
            self.setTimeout(self._pingInterval())
            return
        if not self._pinged:
            self._pinged = True
            self.sendLine(formatMessage("PING", [SERVER_NAME]))
            self.setTimeout(self._pingInterval())
            return
        idle = self.service.settings.idleTimeout
        self._log.info("{peer} ({nick}) did not answer a ping: disconnecting", peer=self.peer, nick=self.nick)
        self.registration.quitReason = "ping timeout"
        self.closeLink("ping timeout: %d seconds" % (idle,))

    def _pingInterval(self) -> float | None:
        """
        Seconds of silence before a ping, and then before giving up: half
        the idle timeout in effect (None: never).
        """
        idle = self.service.settings.idleTimeout
        return idle / 2 if idle else None

    def closeLink(self, reason: str) -> None:
        """
        Say C{ERROR} with C{reason} and close (the member leaves with the
        reason set, C{disconnected} by default).
        """
        if self._closing:
            return
        self.sendLine(formatMessage("ERROR", ["Closing link: " + reason]))
        if self.member is not None:
            self.member.quit(self.registration.quitReason or "disconnected")
        self.endSession()

    def endSession(self) -> None:
        """
        Close after what was written.
        """
        self._closing = True
        self.dropInput()
        self.setTimeout(None)
        self._release()
        assert self.transport is not None
        self.transport.loseConnection()
        if not self._lost and self._forceClose is None:
            # (a peer that never takes what is queued must not keep its
            # place under --max-per-ip for ever)
            self._forceClose = self.callLater(
                max(1.0, self.service.shutdownTimeout), self.transport.abortConnection  # type: ignore[attr-defined]
            )

    # -- IChatClient --

    def deliver(self, event: Event) -> None:
        if not self._closing and self.welcomed:
            self.render.deliver(event)

    def close(self, reason: str, reconnectAfter: float | None = None) -> None:
        if reconnectAfter is not None:
            reason = "%s (reconnect in about %d s)" % (reason, max(1, round(reconnectAfter)))
        self.closeLink(reason)

    # -- output --

    def sendLine(self, line: str) -> None:
        """
        Send one line (gathered for the label of the command being handled).
        """
        if self._reply is not None:
            self._reply.add(line)
        else:
            self._write(line)

    def sendUnit(self, unit: Unit) -> None:
        """
        Send a line or a batch (gathered as L{sendLine} does).
        """
        self.answer(self._reply, unit)

    def answer(self, reply: Answer, unit: Unit) -> None:
        """
        Send a line or a batch that answers a command later: into its
        C{reply} (a L{Reply}, see L{later}), or straight out.
        """
        if reply is not None:
            reply.add(unit)
        elif isinstance(unit, str):
            self._write(unit)
        else:
            for line in unit:
                self._write(line)

    def later(self) -> Answer:
        """
        The labeled answer of the command being handled, which goes on
        after it returned (L{finish} ends it), or None without a label.
        """
        reply = self._reply
        if reply is not None:
            reply.later()
        return reply

    def finish(self, reply: Answer) -> None:
        if reply is not None:
            reply.done()

    def within(self, reply: Answer, f: Callable[[], None]) -> None:
        previous, self._reply = self._reply, reply
        try:
            f()
        finally:
            self._reply = previous

    def numeric(self, code: str, *params: str) -> None:
        self.sendLine(formatMessage(code, [self.nick, *params], SERVER_NAME))

    def fail(self, command: str, code: str, *context: str) -> None:
        """
        A standard reply C{FAIL COMMAND CODE [CONTEXT…] :DESCRIPTION}.
        """
        self.sendLine(formatMessage("FAIL", [command, code, *context], SERVER_NAME))

    def refuse(self, command: str, error: ChatError, target: str = "") -> None:
        """
        Answer the service's refusal C{error} of C{command} (about
        C{target}, a channel or nick) with its numeric.
        """
        code = N.refusal(command, error.code)
        if code is None:
            self.fail(command, error.code.upper().replace("-", "_"), error.message)
        elif code in N.TARGETED:
            self.numeric(code, target or "*", error.message)
        else:
            self.numeric(code, error.message)

    def batch(self, kind: str, params: list[str], lines: list[str]) -> Unit:
        """
        C{lines} as a batch of C{kind} (for a client with C{batch}; else
        just the lines).
        """
        if not self.caps.has("batch"):
            return lines
        ref = self.newBatchId()
        tag = {"batch": ref}
        return (
            [formatMessage("BATCH", ["+" + ref, kind, *params], SERVER_NAME)]
            + [withTags(line, tag) for line in lines]
            + [formatMessage("BATCH", ["-" + ref], SERVER_NAME)]
        )

    def newBatchId(self) -> str:
        self._batches += 1
        return "b%d" % (self._batches,)

    def _write(self, line: str) -> None:
        if self._closing and not line.startswith("ERROR"):
            return
        data = line.encode("utf-8") + b"\r\n"
        assert self.transport is not None
        if self._guard.overLimit(len(data)):
            self._closing = True
            dropSlowConsumer(self._log, self.peer, self.member, self._guard.limit, self.transport.abortConnection)  # type: ignore[attr-defined]
            return
        self.transport.write(data)

    # -- input --

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self._pinged = False
        if self.member is not None:
            self.resetTimeout()
        for line in self.frameLines(data, MAX_LINE):
            if self._closing:
                return
            self.takeInput(line)

    def inputIsFree(self, item: object) -> bool:
        return item is None

    def pauseInput(self) -> None:
        assert self.transport is not None
        self.transport.pauseProducing()  # type: ignore[attr-defined]

    def resumeInput(self) -> None:
        if not self._closing and self._held is None:
            assert self.transport is not None
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def inputOpen(self) -> bool:
        return not self._closing

    def inputFlooded(self, waiting: int) -> None:
        self.registration.quitReason = "flooding"

    def holdInput(self) -> None:
        """
        Keep what is read from now on until L{releaseInput}: a command
        waits for its answer (a password, a history read), and what
        follows it waits for that.
        """
        if self._held is None:
            self._held = []
            assert self.transport is not None
            self.transport.pauseProducing()  # type: ignore[attr-defined]

    def releaseInput(self) -> None:
        """
        Handle what was held (see L{holdInput}), in order, and read again.
        """
        held, self._held = self._held, None
        for i, item in enumerate(held or ()):
            if self._closing:
                return
            self.handleInput(item)
            if self._held is not None:
                # (held again: the rest waits behind it)
                self._held.extend((held or [])[i + 1 :])
                return
        if not self._closing and not self.inputWaiting:
            assert self.transport is not None
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def handleInput(self, item: object) -> None:
        if self._held is not None:
            self._held.append(item)
            return
        if item is None:
            self._tooLong()
            return
        assert isinstance(item, bytes)
        if self.member is None:
            self._unregisteredLines += 1
            if self._unregisteredLines > REGISTRATION_LINES:
                self.closeLink("too many lines before registration")
                return
        self.lineReceived(item)

    def _tooLong(self) -> None:
        self.numeric(N.ERR_INPUTTOOLONG, "Input line was too long (at most %d bytes, %d of tags)" % (MAX_BODY, MAX_TAGS))

    def lineReceived(self, raw: bytes) -> None:
        tags, body = b"", raw
        if raw.startswith(b"@"):
            tags, _, body = raw.partition(b" ")
        # (the tags with their space, the rest with its CRLF)
        if len(tags) + 1 > MAX_TAGS or len(body) + 2 > MAX_BODY:
            self._tooLong()
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(commandOf(raw), "INVALID_UTF8", "Message rejected: it is not valid UTF-8")
            return
        try:
            message = parseMessage(text)
        except IRCParseError as e:
            self.numeric(N.ERR_UNKNOWNCOMMAND, e.command, "Unknown command: " + e.reason)
            return
        if message is not None:
            self.dispatch(message)

    def dispatch(self, message: IRCMessage) -> None:
        """
        Hand C{message} to its command's handler; a refusal is answered
        with its numeric; a labeled command's answer is gathered.
        """
        command = message.command
        handler: Handler | None = COMMANDS.get(command)
        label = message.tags.get("label") if self.caps.has("labeled-response") else None
        reply = Reply(label, self._write, self.newBatchId if self.caps.has("batch") else None) if label else None
        self._reply = reply
        try:
            if handler is None:
                self.numeric(N.ERR_UNKNOWNCOMMAND, command, "Unknown command")
            elif self.member is None and command not in UNREGISTERED:
                self.numeric(N.ERR_NOTREGISTERED, "You have not registered")
            else:
                try:
                    handler(self, message)
                except ChatError as e:
                    self.refuse(command, e, message.params[0] if message.params else "")
        finally:
            self._reply = None
            if reply is not None:
                reply.done()


class IRCFactory(Factory):
    """
    Builds L{IRCConnection}s that all share one L{ChatService}; their
    limits are the service's C{settings}, read as they apply.
    """

    noisy = False

    def __init__(
        self, service: ChatService, clock: IReactorTime | None = None, registrationTimeout: float = REGISTRATION_TIMEOUT
    ) -> None:
        self.service = service
        self.clock = clock
        self.registrationTimeout = registrationTimeout

    def buildProtocol(self, addr: IAddress | None) -> IRCConnection:
        p = IRCConnection(self.service, self.clock, self.registrationTimeout)
        p.factory = self
        return p
