# -*- test-case-name: tests.frontends.test_websocket -*-
"""
The WebSocket front-end (Autobahn): text mode and json mode on one endpoint.

The subprotocol picks the mode: C{chat.json} is json mode; none, or C{chat}
(the seed's handshake example), is text mode, where every frame is one line
of the line chat. Broadcast events are framed once per event
(C{prepareMessage}) and the prepared frame is kept on the event, so a
thousand recipients cost one framing.
"""

from __future__ import annotations

import sys
from typing import Any

import autobahn.util as _abutil
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.util import encode_truncate
from autobahn.websocket import protocol as _abprotocol
from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import Event
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.core.service import ChatService
from twisted_chat.frontends.jsonmode import JsonSession, encodeEvent
from twisted_chat.frontends.textmode import TextSession, closingText, roomEventText
from twisted_chat.frontends.throttle import ThrottledInput
from twisted_chat.frontends.write import LAZY_KINDS, FastWriter, OutgoingGuard, dropSlowConsumer, fastWriterFor, sync
from twisted_chat.frontends.wscommon import applyOptions, originAllowed, textFrame
from twisted_chat.frontends.wsslim import NoQueue, Unformatted, configuredClass, slim

# Autobahn colours the values in its log messages with click (ANSI escapes)
# whenever click is importable, and it does so eagerly: every sendData()
# and every handshake formats a dozen debug messages nobody sees, about a
# tenth of a handshake's CPU. Plain text is also what log files want.
_abutil._HAS_CLICK = False

JSON_PROTOCOL = "chat.json"
TEXT_PROTOCOL = "chat"

_OPEN = WebSocketProtocol.STATE_OPEN
_CONNECTING = WebSocketProtocol.STATE_CONNECTING
_GOING_AWAY = WebSocketProtocol.CLOSE_STATUS_CODE_GOING_AWAY


class _BinaryMessage:
    """
    A binary message, waiting with the text ones under flood control (to
    be answered with an error in its turn).
    """

    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


@implementer(IChatClient)
class ChatWebSocketProtocol(WebSocketServerProtocol, TextSession, JsonSession, ThrottledInput):  # type: ignore[misc]
    """
    One WebSocket chat connection, in text or json mode.

    Every message waits its turn under flood control (L{ThrottledInput}):
    a connection that has to wait is not read from meanwhile, and the
    messages Autobahn had already framed wait in order.
    """

    _log = Logger()
    factory: ChatWebSocketFactory
    # (options Autobahn copies from the factory onto each connection)
    autoFragmentSize: int
    maxMessagePayloadSize: int
    kind = "ws"
    json = False
    _guard: OutgoingGuard | None = None
    #: the shortcut past Autobahn's sendData() and transport.write()
    #: (None: TLS, test transports, before the connection is open)
    _fast: FastWriter | None = None
    #: the event.cache key of this connection's prepared broadcast frames
    _frameKey = "ws-text"
    _dropped = False
    _admitted: str | None = None
    _helloTimer: Any = None

    # -- Autobahn callbacks --

    def _connectionMade(self) -> None:
        # Autobahn's module global pformat is used there only for that debug
        # line; the reactor is single-threaded, so the swap is invisible.
        real = _abprotocol.pformat
        _abprotocol.pformat = Unformatted  # type: ignore[assignment]
        try:
            super()._connectionMade()
        finally:
            _abprotocol.pformat = real

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        # The handshake's answer (101) waits for the end of the reactor turn
        # with what onOpen writes after it (the greeting, the lobby): one
        # send() for all, instead of registering the socket for writing and
        # sending it on the next turn.
        if (
            self.state == _CONNECTING
            and not sync
            and not chopsize
            and data.startswith(b"HTTP/1.1 101 ")
            and self._fast is None
            and not self.send_queue
        ):
            fast = fastWriterFor(self.transport, self, self._frameKey)
            if fast is not None and fast.take(data):
                self._fast = fast
                return
        WebSocketServerProtocol.sendData(self, data, sync, chopsize)

    def onConnect(self, request: ConnectionRequest) -> Any:
        factory = self.factory
        origin = request.headers.get("origin")
        if not originAllowed(origin, request.headers.get("host"), factory.allowedOrigins):
            self._log.info(
                "refused WebSocket handshake from {peer}: origin {origin} not allowed",
                peer=request.peer,
                origin=origin,
            )
            raise ConnectionDeny(403, "origin not allowed")
        # (interned: thousands of connections from one address share it)
        host = sys.intern(str(getattr(self.transport.getPeer(), "host", request.peer)))  # type: ignore[union-attr]
        try:
            waiting = factory.service.admission.admitLater(host)
        except ChatError as e:
            raise self._deny(e, request)
        if waiting is None:
            return self._admittedAs(host, request)

        # (the machine's count decides: Autobahn waits for the Deferred)
        def admitted(_: None) -> Any:
            if self.state == WebSocketProtocol.STATE_CLOSED:
                factory.service.admission.release(host)
                return None
            return self._admittedAs(host, request)

        def refused(f: Failure) -> None:
            error = f.trap(ChatError) and f.value
            assert isinstance(error, ChatError)
            raise self._deny(error, request)

        return waiting.addCallbacks(admitted, refused)

    def _deny(self, e: ChatError, request: ConnectionRequest) -> ConnectionDeny:
        self._log.info("refused WebSocket handshake from {peer}: {why}", peer=request.peer, why=e.code)
        return ConnectionDeny(403 if e.code == "banned" else 503, e.message)

    def _admittedAs(self, host: str, request: ConnectionRequest) -> str | None:
        self._admitted = host
        if JSON_PROTOCOL in request.protocols:
            self.json = True
            self.kind = "ws-json"
            self._frameKey = "ws-json"
            return JSON_PROTOCOL
        self.kind = "ws-text"
        if TEXT_PROTOCOL in request.protocols:
            return TEXT_PROTOCOL
        return None

    def onOpen(self) -> None:
        transport = self.transport
        # Behind WebSocketResource, the HTTP channel is still registered as
        # the transport's producer; take its place to see backpressure.
        if getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()  # type: ignore[union-attr]
        self._guard = OutgoingGuard(self.factory.service.settings)
        transport.registerProducer(self._guard, True)  # type: ignore[union-attr]
        if self._perMessageCompress is None and not self.autoFragmentSize:
            # Frames are then the same bytes for every connection, and
            # Autobahn's framing and sendData() can be skipped.
            if self._fast is None:
                self._fast = fastWriterFor(transport, self, self._frameKey)
        else:
            # (the handshake's answer may have gone this way: it is in the
            # transport's buffer, sent at the end of this turn all the same)
            self._fast = None
        self.service = self.factory.service
        self._slim()
        if self.json:
            timeout = self.factory.helloTimeout
            if timeout:
                self._helloTimer = self.service.clock.callLater(timeout, self._noHello)
        else:
            self.startTextSession(self.service, self.peer or "", self._admitted or "")

    def _slim(self) -> None:
        factory = self.factory
        # (built as the factory's configured class already: see buildProtocol)
        slim(self, type(self) if factory._built is not None and factory._built[1] is type(self) else None)

    def _noHello(self) -> None:
        self._helloTimer = None
        if self.member is None and not self._helloPending and self.state == _OPEN:
            self.sendErrorObject("hello-required", "no hello within %g s: closing" % (self.factory.helloTimeout,))
            # 1008 (policy violation): sendClose() refuses it, as with 1001 in close()
            self.sendCloseFrame(1008, b"no hello", isReply=False)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        # (every message waits its turn under flood control, in order)
        self.takeInput(_BinaryMessage(payload) if isBinary else payload)

    # -- flood control (see _limits.ThrottledInput) --

    def handleInput(self, item: Any) -> None:
        if self.state != _OPEN:
            return
        if isinstance(item, _BinaryMessage):
            if self.json:
                self.sendErrorObject("bad-json", "binary frames are not supported: send text frames")
            else:
                self.sendError("binary frames are not supported: send text")
            return
        if self.json:
            self.handleJson(item)
        else:
            text = item.decode("utf-8")
            if text.endswith("\n"):
                text = text[:-1]
                if text.endswith("\r"):
                    text = text[:-1]
            self.handleText(text)

    def pauseInput(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeInput(self) -> None:
        if self.state != WebSocketProtocol.STATE_CLOSED:
            self.transport.resumeProducing()  # type: ignore[union-attr]

    def inputOpen(self) -> bool:
        return self.state == _OPEN and not self._dropped

    def inputFlooded(self, waiting: int) -> None:
        if self.json:
            self.sendErrorObject(
                "flood", "disconnected for flooding: more than %d requests waiting" % (self.service.settings.floodKick,)
            )

    def _stopWaiting(self) -> None:
        """
        The connection is closing: what waits for flood control will not be
        handled; read again, so that the closing handshake can finish.
        """
        if self._inbox is not None:
            self.dropInput()
            self.resumeInput()

    def onAutoPingTimeout(self) -> None:
        if self._inbox is not None:
            # Not read while it waits for flood control: its pong is among
            # the bytes waiting in the kernel. It is there (it floods): ask
            # again rather than drop it.
            self.autoPingTimeoutCall = None
            self._sendAutoPing()
            return
        WebSocketServerProtocol.onAutoPingTimeout(self)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.dropInput()
        if self._helloTimer is not None and self._helloTimer.active():
            self._helloTimer.cancel()
        self._helloTimer = None
        if self._admitted is not None:
            self.factory.service.admission.release(self._admitted)
            self._admitted = None
        if self.member is not None:
            self.member.quit("disconnected")

    def isOpen(self) -> bool:
        return self.state == _OPEN and not self._dropped

    # -- IChatClient --

    def deliver(self, event: Event) -> None:
        if self.state != _OPEN or self._dropped:
            return
        # The hot path of a broadcast: the frame was prepared for the first
        # recipient (see _sendPrepared) and is the same for every other one.
        pm = event.cache.get(self._frameKey)
        if pm is not None:
            fast = self._fast
            if fast is not None and (type(self.send_queue) is NoQueue or not self.send_queue):
                if fast.take(pm.payloadHybi, event.kind in LAZY_KINDS):
                    return
                # Twisted holds unsent bytes: the same frame behind them
                if not self._tooSlow(len(pm.payloadHybi)):
                    self.transport.write(pm.payloadHybi)  # type: ignore[union-attr]
                return
            if self._tooSlow(len(pm.payloadHybi)):
                return
            sync(fast)  # (Autobahn's path: room messages written before go first)
            self._unbounded(self.sendPreparedMessage, pm)
            return
        if self.json:
            self.deliverJson(event)
        else:
            self.deliverText(event)

    def close(self, reason: str, reconnectAfter: float | None = None) -> None:
        if self.state != _OPEN:
            return
        self._stopWaiting()
        sync(self._fast)
        if self.json:
            self.sendClosingNotice(reason, reconnectAfter)
        else:
            self.sendNotice(closingText(reason, reconnectAfter))
        # 1001 (going away): Autobahn's sendClose() refuses every code but
        # 1000 and 3000-4999, so send the close frame itself.
        self.sendCloseFrame(_GOING_AWAY, encode_truncate(reason, 123), isReply=False)

    def endSession(self, reason: str) -> None:
        if self.state == _OPEN:
            self._stopWaiting()
            sync(self._fast)  # (room messages written before the close go first)
            self.sendClose(1000, reason[:120])

    # -- room messages all at once (see _fastwrite.WriteBatcher.broadcast) --

    @property
    def fastSink(self) -> FastWriter | None:
        # (a text session with its bell on takes room messages one by one)
        return None if self.bell else self._fast

    def fastOpen(self) -> bool:
        return self.state == _OPEN and not self._dropped and (type(self.send_queue) is NoQueue or not self.send_queue)

    def fastFrame(self, event: Event) -> bytes:
        key = self._frameKey
        pm = event.cache.get(key)
        if pm is None:
            if self.json:
                data = encodeEvent(event)
                if data is None:
                    return b""
            else:
                data = self._utf8(event, roomEventText(event))
            pm = self._prepared(event, key, data)
        return pm.payloadHybi

    # -- output --

    def _sendOwn(self, data: bytes) -> None:
        # (not _send: that is Autobahn's own method, which sends its queue)
        if self.state != _OPEN or self._dropped:
            return
        if self._tooSlow(len(data)):
            return
        fast = self._fast
        if fast is None or self.send_queue:
            sync(fast)  # (Autobahn's path: room messages written before go first)
            self._unbounded(self.sendMessage, data, False)
            return
        frame = textFrame(data)
        if not fast.take(frame):
            self.transport.write(frame)  # type: ignore[union-attr]

    def _sendPrepared(self, event: Event, key: str, data: bytes) -> None:
        if self.state != _OPEN or self._dropped:
            return
        if self._tooSlow(len(data)):
            return
        pm = self._prepared(event, key, data)
        fast = self._fast
        if fast is None or self.send_queue:
            sync(fast)  # (Autobahn's path: room messages written before go first)
            self._unbounded(self.sendPreparedMessage, pm)
        elif not fast.take(pm.payloadHybi):
            self.transport.write(pm.payloadHybi)  # type: ignore[union-attr]

    def _unbounded(self, send: Any, *args: Any) -> None:
        """
        Send without Autobahn's size check: C{--ws-max-message} bounds what
        a client sends, but Autobahn checks what is sent against it too, and
        a history event or a long line echoed with its prefix may be larger.
        """
        own = "maxMessagePayloadSize" in self.__dict__
        limit, self.maxMessagePayloadSize = self.maxMessagePayloadSize, 0
        try:
            send(*args)
        finally:
            if own:
                self.maxMessagePayloadSize = limit
            else:
                # (the limit lives on the class: see _slim)
                del self.maxMessagePayloadSize

    def _tooSlow(self, nbytes: int) -> bool:
        guard = self._guard
        if guard is None or not guard.overLimit(nbytes):
            return False
        self._dropped = True
        dropSlowConsumer(self._log, self.peer or "", self.member, guard.limit, lambda: self.dropConnection(abort=True))
        return True

    def sendText(self, text: str) -> None:
        self._sendOwn(text.encode("utf-8"))

    def sendRendered(self, event: Event, text: str) -> None:
        self._sendPrepared(event, "ws-text", self._utf8(event, text))

    @staticmethod
    def _utf8(event: Event, text: str) -> bytes:
        """
        C{event}'s C{text}, encoded once for all its recipients.
        """
        data = event.cache.get("utf8")
        if data is None:
            data = event.cache["utf8"] = text.encode("utf-8")
        return data

    def _prepared(self, event: Event, key: str, data: bytes) -> PreparedMessage:
        """
        C{event}'s frame for C{key} (C{data} framed), prepared once for all
        its recipients.
        """
        pm = event.cache.get(key)
        if pm is None:
            pm = event.cache[key] = self.factory.prepareMessage(data)
        return pm

    def sendJson(self, data: bytes) -> None:
        self._sendOwn(data)

    def sendEventJson(self, event: Event, data: bytes) -> None:
        self._sendPrepared(event, "ws-json", data)


class ChatWebSocketFactory(WebSocketServerFactory):
    """
    Builds chat WebSocket connections that share one L{ChatService}; the
    limits that can be reloaded (C{maxOutgoing}…) are read from the
    service's C{settings}, the WebSocket protocol options are this factory's.
    """

    protocol = ChatWebSocketProtocol  # type: ignore[assignment]  # (Twisted's Factory says a callable of its own protocols)
    noisy = False

    def __init__(
        self,
        service: ChatService,
        allowedOrigins: list[str] | None = None,
        helloTimeout: float = 10.0,
        **options: Any,
    ) -> None:
        WebSocketServerFactory.__init__(self, server="twisted-chat")
        self.service = service
        self.allowedOrigins = list(allowedOrigins or [])
        self.helloTimeout = helloTimeout
        applyOptions(self, **options)

    #: (protocol, the class its connections are built as: a subclass
    #: holding this factory's protocol options, see wsslim.configuredClass)
    _built: tuple[Any, type] | None = None

    def setProtocolOptions(self, *args: Any, **options: Any) -> None:
        WebSocketServerFactory.setProtocolOptions(self, *args, **options)
        self._built = None

    def buildProtocol(self, addr: Any) -> ChatWebSocketProtocol:  # type: ignore[override]
        # Connections start as the configured class (the options as class
        # attributes), so Autobahn copies none of them into each one and
        # _slim has less to shed; made again if the options change.
        built = self._built
        if built is None or built[0] is not self.protocol:
            cls = configuredClass(self, self.protocol) or self.protocol
            built = self._built = (self.protocol, cls)
        p = built[1]()
        p.factory = self
        return p


