# -*- test-case-name: tests.frontends.test_line,tests.frontends.test_line_fuzz -*-
"""
The TCP line chat front-end, fit for C{nc} and C{telnet}.

Framing is the line chat's (L{twisted_chat.wire.lines}: LF, with an
optional CR before it, never more than one line's worth buffered): an
over-long line is answered with an error and the rest of it is discarded as
it arrives. Lines are decoded after framing, so a UTF-8 character split
across TCP segments is fine; what they mean is L{TextSession}'s business.
"""

from __future__ import annotations

import sys

from typing import TYPE_CHECKING

from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import Event
from twisted_chat.frontends.write import LAZY_KINDS, FastWriter, OutgoingGuard, dropSlowConsumer, fastWriterFor, sync
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.frontends.throttle import ThrottledInput
from twisted_chat.core.service import ChatService
from twisted_chat.frontends.textmode import TextSession, closingText, roomEventText
from twisted_chat.wire.lines import LineFraming

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime


def peerName(address: IAddress | None) -> str:
    """
    C{host:port} of a peer address, for logs and per-IP accounting.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None:
        return str(address)
    return "%s:%s" % (host, port)


def _lineBytes(event: Event, text: str) -> bytes:
    """
    C{event}'s line C{text} as bytes, encoded for its first recipient and
    kept on the event for every other.
    """
    data = event.cache.get("line")
    if data is None:
        data = event.cache["line"] = text.encode("utf-8") + b"\n"
    return data


#: a stand-in for the end of the input, waiting in order with the lines
#: under flood control (as C{None} stands for a line that was too long)
_END = object()


@implementer(IChatClient, IHalfCloseableProtocol)
class LineChatProtocol(Protocol, TimeoutMixin, TextSession, ThrottledInput, LineFraming):
    """
    One line-chat connection.

    Every line waits its turn under flood control (L{ThrottledInput}): a
    connection that has to wait is not read from meanwhile (its bytes wait
    in the kernel) and its lines are handled in order as its rate allows.
    """

    kind = "line"
    renderKey = "line"
    _log = Logger()
    #: the shortcut past transport.write() (None: TLS, test transports...)
    _fast: FastWriter | None = None
    # Defaults as class attributes: a connection stores only what differs
    # (thousands of idle connections: each attribute is 8 bytes or more).
    # Limits are not copied here: they are read from service.settings.
    _closing = False
    #: the peer has finished sending (see readConnectionLost)
    _ended = False
    _admitted: str | None = None

    def __init__(self, service: ChatService, clock: IReactorTime | None = None) -> None:
        self.service = service
        self._guard = OutgoingGuard(service.settings)
        if clock is not None:
            self.callLater = clock.callLater  # type: ignore[assignment]

    # -- connection life cycle --

    def connectionMade(self) -> None:
        self.transport.registerProducer(self._guard, True)  # type: ignore[union-attr]
        self._fast = fastWriterFor(self.transport, self, "line")
        # Chat lines are small and wanted now: no Nagle delay (as WebSocket
        # connections, which Autobahn sets up with tcpNoDelay).
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            try:
                setNoDelay(True)
            except OSError:
                pass
        address = self.transport.getPeer()  # type: ignore[union-attr]
        peer = peerName(address)
        # (interned: thousands of connections from one address share it)
        host = sys.intern(str(getattr(address, "host", peer)))
        try:
            waiting = self.service.admission.admitLater(host)
        except ChatError as e:
            self._refused(e, peer)
            return
        if waiting is not None:
            # (the machine's count decides: nothing is read meanwhile)
            transport = self.transport
            transport.pauseProducing()  # type: ignore[union-attr]

            def admitted(_: None) -> None:
                if self._lost:
                    self.service.admission.release(host)
                    return
                transport.resumeProducing()  # type: ignore[union-attr]
                self._admittedAs(host, peer)

            def refused(f: Failure) -> None:
                error = f.trap(ChatError) and f.value
                if not self._lost and isinstance(error, ChatError):
                    self._refused(error, peer)

            waiting.addCallbacks(admitted, refused)
            return
        self._admittedAs(host, peer)

    def _refused(self, e: ChatError, peer: str) -> None:
        self._log.info("refused {peer}: {why}", peer=peer, why=e.code)
        self.sendError(e.message)
        self.endSession(e.code)

    def _admittedAs(self, host: str, peer: str) -> None:
        self._admitted = host
        idle = self.service.settings.idleTimeout
        if idle:
            self.setTimeout(idle)
        self.startTextSession(self.service, peer, host)

    def readConnectionLost(self) -> None:
        """
        The peer finished sending but still reads (C{printf '/who\\n' | nc
        HOST 9000}): answer what it asked (what waits for flood control
        first), then leave and close.
        """
        if self._closing or self._ended:
            return
        self._ended = True
        inbox = self._inbox
        if inbox is not None:
            inbox.items.append(_END)
            return
        self._endOfInput()

    def _endOfInput(self) -> None:
        if self.member is None or self.member.gone:
            self.endSession("disconnected")
            return
        self.leaveAfterPending("disconnected", bye=False)

    def writeConnectionLost(self) -> None:
        # The peer stopped reading: nothing more can reach it.
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.setTimeout(None)
        self._closing = True
        self._lost = True
        self.dropInput()
        if self._forceClose is not None and self._forceClose.active():
            self._forceClose.cancel()
        if self._admitted is not None:
            self.service.admission.release(self._admitted)
            self._admitted = None
        if self.member is not None:
            self.member.quit("disconnected")

    def timeoutConnection(self) -> None:
        if self.inputWaiting:
            # Not idle: its input waits for flood control.
            self.setTimeout(self.timeOut)
            return
        self.sendNotice("idle for %d s: disconnecting" % (self.timeOut or 0,))
        self._log.info("{peer} idle: disconnecting", peer=self.member.peer if self.member else "?")
        if self.member is not None:
            self.member.quit("idle")
        self.endSession("idle")

    #: the pending abort of a connection that does not close (see endSession)
    _forceClose: IDelayedCall | None = None
    _lost = False

    def endSession(self, reason: str) -> None:
        sync(self._fast)  # (room messages written before the close go first)
        self._closing = True
        self.dropInput()
        self.setTimeout(None)
        if self._admitted is not None:
            # The session is over (the socket closes in a moment): its place
            # under --max-per-ip is free from now, not from a later turn.
            self.service.admission.release(self._admitted)
            self._admitted = None
        self.transport.loseConnection()  # type: ignore[union-attr]
        if not self._lost and self._forceClose is None:
            # loseConnection() waits for the peer to take what is queued and,
            # over TLS, to answer close_notify; a peer that never does would
            # keep the connection, and its place under --max-per-ip, for ever.
            self._forceClose = self.callLater(
                max(1.0, self.service.shutdownTimeout), self.transport.abortConnection  # type: ignore[union-attr]
            )

    # -- IChatClient --

    def deliver(self, event: Event) -> None:
        if self._closing:
            return
        # The hot path of a broadcast: the line is the same for every
        # recipient and was encoded for the first one (see sendRendered).
        data = event.cache.get("line")
        if data is None:
            self.deliverText(event)
            return
        fast = self._fast
        if fast is None or not fast.take(data, event.kind in LAZY_KINDS):
            self._write(data)

    def close(self, reason: str, reconnectAfter: float | None = None) -> None:
        if not self._closing:
            self.sendNotice(closingText(reason, reconnectAfter))
            self.endSession(reason)

    # -- room messages all at once (see _fastwrite.WriteBatcher.broadcast) --

    @property
    def fastSink(self) -> FastWriter | None:
        # (a text session with its bell on takes room messages one by one)
        return None if self.bell else self._fast

    def fastOpen(self) -> bool:
        return not self._closing

    def fastFrame(self, event: Event) -> bytes:
        return _lineBytes(event, roomEventText(event))

    # -- output --

    def sendText(self, text: str) -> None:
        self._write(text.encode("utf-8") + b"\n")

    def sendRendered(self, event: Event, text: str) -> None:
        self._write(_lineBytes(event, text))

    def _write(self, data: bytes) -> None:
        if self._closing:
            return
        if self._guard.overLimit(len(data)):
            self._closing = True
            member = self.member
            dropSlowConsumer(
                self._log,
                member.peer if member else "?",
                member,
                self._guard.limit,
                self.transport.abortConnection,  # type: ignore[union-attr]
            )
            return
        fast = self._fast
        if fast is None or not fast.take(data):
            self.transport.write(data)  # type: ignore[union-attr]

    # -- input --

    def _inputSeen(self) -> None:
        """
        Restart the idle timer, with the idle timeout now in effect (a
        reload changes it for an open connection from its next input on).
        """
        idle = self.service.settings.idleTimeout or None
        if idle != self.timeOut:
            self.setTimeout(idle)
        else:
            self.resetTimeout()

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self._inputSeen()
        for line in self.frameLines(data, self.service.settings.maxLineLength):
            # (each line waits its turn under flood control, in order; a
            # line that closed the session discards what follows it)
            if self._closing:
                return
            self.takeInput(line)

    # -- flood control (see _limits.ThrottledInput) --

    def inputIsFree(self, item: object) -> bool:
        # (the end of the input and a discarded line are no requests)
        return item is _END or item is None

    def handleInput(self, item: object) -> None:
        if item is None:
            self._tooLong()
        elif item is _END:
            self._endOfInput()
        else:
            self.lineReceived(item)  # type: ignore[arg-type]

    def pauseInput(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeInput(self) -> None:
        # (after the end of the input, reading again would only find it again)
        if not self._closing and not self._ended:
            self.transport.resumeProducing()  # type: ignore[union-attr]

    def inputOpen(self) -> bool:
        return not self._closing

    def _tooLong(self) -> None:
        self.sendError("line too long (max %d bytes): discarded" % (self.service.settings.maxLineLength,))

    def lineReceived(self, line: bytes) -> None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self.sendError("invalid UTF-8: line dropped")
            return
        self.handleText(text)


class LineChatFactory(Factory):
    """
    Builds L{LineChatProtocol}s that all share one L{ChatService}; their
    limits (C{maxLineLength}, C{idleTimeout}, C{maxOutgoing}) are the
    service's C{settings}.
    """

    noisy = False

    def __init__(self, service: ChatService, clock: IReactorTime | None = None) -> None:
        self.service = service
        self.clock = clock

    def buildProtocol(self, addr: IAddress | None) -> LineChatProtocol:
        p = LineChatProtocol(self.service, self.clock)
        p.factory = self
        return p
