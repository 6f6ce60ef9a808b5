# -*- test-case-name: tests.test_ws -*-
"""
The WebSocket front-end (Autobahn): text mode and json mode on one endpoint.

The subprotocol picks the mode: C{chat.json} is json mode; none, or C{chat}
(the seed's handshake example), is text mode, where every frame is one line
of the line chat. Broadcast events are framed once per event
(C{prepareMessage}) and the prepared frame is kept on the event, so a
thousand recipients cost one framing.
"""

from __future__ import annotations

import struct
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.util import encode_truncate
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.logger import Logger
from zope.interface import implementer

from twisted_chat._errors import ChatError
from twisted_chat._events import Event
from twisted_chat._fastwrite import LAZY_KINDS, FastWriter, fastWriterFor
from twisted_chat._interfaces import IChatClient
from twisted_chat._json import JsonSession
from twisted_chat._line import OutgoingGuard
from twisted_chat._service import ChatService
from twisted_chat._text import TextSession, closingText

JSON_PROTOCOL = "chat.json"
TEXT_PROTOCOL = "chat"

_OPEN = WebSocketProtocol.STATE_OPEN
_GOING_AWAY = WebSocketProtocol.CLOSE_STATUS_CODE_GOING_AWAY
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_HEAD16 = struct.Struct("!BBH").pack
_HEAD64 = struct.Struct("!BBQ").pack


def textFrame(payload: bytes) -> bytes:
    """
    One unfragmented, unmasked, uncompressed WebSocket text frame (RFC 6455
    5.2), as a server sends it; what Autobahn's C{sendMessage} writes for
    C{payload} when neither compression nor auto-fragmentation is on.
    """
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return _HEAD16(0x81, 126, n) + payload
    return _HEAD64(0x81, 127, n) + payload


def _hostPort(netloc: str, scheme: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit("//" + netloc)
        return (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme, 80)
    except ValueError:
        return None


def originAllowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """
    Is a handshake with this C{Origin} header acceptable?

    Browsers always send C{Origin}; a handshake without one comes from a
    program (wscat, a bot), which no web page can make on a user's behalf, so
    it is accepted. Otherwise the origin must be the page's own (same host and
    port as the C{Host} header) or listed in C{allowed} (C{*} allows any).
    """
    if origin is None:
        return True
    if "*" in allowed:
        return True
    origin = origin.strip()
    if origin.lower() in (a.lower().rstrip("/") for a in allowed):
        return True
    if origin == "null":
        return False
    try:
        parts = urlsplit(origin)
    except ValueError:  # e.g. "http://[::1"
        return False
    scheme = (parts.scheme or "").lower()
    if scheme not in _DEFAULT_PORTS or not parts.netloc:
        return False
    mine = _hostPort(host or "", scheme)
    theirs = _hostPort(parts.netloc, scheme)
    return mine is not None and mine == theirs


@implementer(IChatClient)
class ChatWebSocketProtocol(WebSocketServerProtocol, TextSession, JsonSession):  # type: ignore[misc]
    """
    One WebSocket chat connection, in text or json mode.
    """

    _log = Logger()
    factory: ChatWebSocketFactory
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
        host = str(getattr(self.transport.getPeer(), "host", request.peer))  # type: ignore[union-attr]
        try:
            factory.service.admission.admit(host)
        except ChatError as e:
            self._log.info("refused WebSocket handshake from {peer}: {why}", peer=request.peer, why=e.code)
            raise ConnectionDeny(403 if e.code == "banned" else 503, e.message)
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
        self._guard = OutgoingGuard(self.factory.maxOutgoing)
        transport.registerProducer(self._guard, True)  # type: ignore[union-attr]
        if self._perMessageCompress is None and not self.autoFragmentSize:
            # Frames are then the same bytes for every connection, and
            # Autobahn's framing and sendData() can be skipped.
            self._fast = fastWriterFor(transport)
        self.service = self.factory.service
        if self.json:
            timeout = self.factory.helloTimeout
            if timeout:
                self._helloTimer = self.service.clock.callLater(timeout, self._noHello)  # type: ignore[attr-defined]
        else:
            self.startTextSession(self.service, self.peer, self._admitted or "")

    def _noHello(self) -> None:
        self._helloTimer = None
        if self.member is None and not self._helloPending and self.state == _OPEN:
            self.sendErrorObject("hello-required", "no hello within %g s: closing" % (self.factory.helloTimeout,))
            # 1008 (policy violation): sendClose() refuses it, as with 1001 in close()
            self.sendCloseFrame(1008, b"no hello", isReply=False)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            if self.json:
                self.sendErrorObject("bad-json", "binary frames are not supported: send text frames")
            else:
                self.sendError("binary frames are not supported: send text")
            return
        if self.json:
            self.handleJson(payload)
        else:
            text = payload.decode("utf-8")
            if text.endswith("\n"):
                text = text[:-1]
                if text.endswith("\r"):
                    text = text[:-1]
            self.handleText(text)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
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
            if fast is not None and not self._guard.paused and not self.send_queue:  # type: ignore[union-attr]
                fast.write(pm.payloadHybi, event.kind in LAZY_KINDS)
                return
            if self._tooSlow(len(pm.payloadHybi)):
                return
            self.sendPreparedMessage(pm)
            return
        if self.json:
            self.deliverJson(event)
        else:
            self.deliverText(event)

    def close(self, reason: str, reconnectAfter: float | None = None) -> None:
        if self.state != _OPEN:
            return
        if self.json:
            notice: dict[str, Any] = {"type": "notice", "text": reason}
            if reconnectAfter is not None:
                notice["reconnect_after"] = int(reconnectAfter * 1000)
            self.sendObject(notice)
        else:
            self.sendNotice(closingText(reason, reconnectAfter))
        # 1001 (going away): Autobahn's sendClose() refuses every code but
        # 1000 and 3000-4999, so send the close frame itself.
        self.sendCloseFrame(_GOING_AWAY, encode_truncate(reason, 123), isReply=False)

    def endSession(self, reason: str) -> None:
        if self.state == _OPEN:
            self.sendClose(1000, reason[:120])

    # -- output --

    def _send(self, data: bytes) -> None:
        if self.state != _OPEN or self._dropped:
            return
        if self._tooSlow(len(data)):
            return
        fast = self._fast
        if fast is not None and not self.send_queue:
            fast.write(textFrame(data))
        else:
            self._unbounded(self.sendMessage, data, False)

    def _sendPrepared(self, event: Event, key: str, data: bytes) -> None:
        if self.state != _OPEN or self._dropped:
            return
        if self._tooSlow(len(data)):
            return
        pm = event.cache.get(key)
        if pm is None:
            pm = event.cache[key] = self.factory.prepareMessage(data)
        fast = self._fast
        if fast is not None and not self.send_queue:
            fast.write(pm.payloadHybi)
        else:
            self._unbounded(self.sendPreparedMessage, pm)

    def _unbounded(self, send: Any, *args: Any) -> None:
        """
        Send without Autobahn's size check: C{--ws-max-message} bounds what
        a client sends, but Autobahn checks what is sent against it too, and
        a history event or a long line echoed with its prefix may be larger.
        """
        limit, self.maxMessagePayloadSize = self.maxMessagePayloadSize, 0
        try:
            send(*args)
        finally:
            self.maxMessagePayloadSize = limit

    def _tooSlow(self, nbytes: int) -> bool:
        guard = self._guard
        if guard is None or not guard.overLimit(nbytes):
            return False
        self._dropped = True
        member = self.member
        self._log.warn(
            "dropping slow consumer {peer} ({nick}): over {limit} bytes queued",
            peer=self.peer,
            nick=member.nick if member else "?",
            limit=guard.limit,
        )
        if member is not None:
            member.quit("too slow")
        self.dropConnection(abort=True)
        return True

    def sendText(self, text: str) -> None:
        self._send(text.encode("utf-8"))

    def sendRendered(self, event: Event, text: str) -> None:
        data = event.cache.get("utf8")
        if data is None:
            data = event.cache["utf8"] = text.encode("utf-8")
        self._sendPrepared(event, "ws-text", data)

    def sendJson(self, data: bytes) -> None:
        self._send(data)

    def sendEventJson(self, event: Event, data: bytes) -> None:
        self._sendPrepared(event, "ws-json", data)


class ChatWebSocketFactory(WebSocketServerFactory):  # type: ignore[misc]
    """
    Builds chat WebSocket connections that share one L{ChatService}.
    """

    protocol = ChatWebSocketProtocol
    noisy = False

    def __init__(
        self,
        service: ChatService,
        allowedOrigins: list[str] | None = None,
        maxOutgoing: int = 1 << 20,
        helloTimeout: float = 10.0,
        **options: Any,
    ) -> None:
        WebSocketServerFactory.__init__(self, server="twisted-chat")
        self.service = service
        self.allowedOrigins = list(allowedOrigins or [])
        self.maxOutgoing = maxOutgoing
        self.helloTimeout = helloTimeout
        applyOptions(self, **options)


class EchoProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    """
    Echo every message back: the endpoint for the compliance suite.
    """

    def onConnect(self, request: ConnectionRequest) -> Any:
        if not originAllowed(request.headers.get("origin"), request.headers.get("host"), self.factory.allowedOrigins):
            raise ConnectionDeny(403, "origin not allowed")
        return None

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


class EchoFactory(WebSocketServerFactory):  # type: ignore[misc]
    protocol = EchoProtocol
    noisy = False

    def __init__(self, allowedOrigins: list[str] | None = None, **options: Any) -> None:
        WebSocketServerFactory.__init__(self, server="twisted-chat")
        self.allowedOrigins = list(allowedOrigins or [])
        applyOptions(self, **options)


def applyOptions(
    factory: WebSocketServerFactory,
    maxMessageSize: int = 65536,
    pingInterval: float = 25,
    pingTimeout: float = 10,
    compression: bool = False,
    handshakeTimeout: float = 10,
) -> None:
    """
    The WebSocket protocol options shared by the chat and echo endpoints,
    each set deliberately rather than inherited from Autobahn's defaults.
    """
    accept = None
    if compression:
        from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept

        def accept(offers: list[Any]) -> Any:
            for offer in offers:
                if isinstance(offer, PerMessageDeflateOffer):
                    return PerMessageDeflateOfferAccept(offer)
            return None

    factory.setProtocolOptions(
        # Answer protocol violations with the proper close code instead of
        # dropping TCP silently, so clients learn why.
        failByDrop=False,
        # Let Origin "null" (sandboxed pages, file://) reach onConnect, where
        # originAllowed() refuses it with 403 unless --allow-origin lists it
        # (or '*'); setProtocolOptions() would otherwise reset this to False
        # and Autobahn would answer 400 on its own.
        allowNullOrigin=True,
        maxMessagePayloadSize=maxMessageSize,
        maxFramePayloadSize=maxMessageSize,
        autoPingInterval=pingInterval,
        autoPingTimeout=pingTimeout,
        openHandshakeTimeout=handshakeTimeout,
        closeHandshakeTimeout=5,
        perMessageCompressionAccept=accept,
        webStatus=False,
        echoCloseCodeReason=False,
        tcpNoDelay=True,
    )
