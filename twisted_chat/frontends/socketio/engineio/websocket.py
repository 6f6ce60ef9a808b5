# -*- test-case-name: tests.frontends.socketio.test_engineio -*-
"""
The WebSocket transport of Engine.IO (Autobahn): one packet per frame, for
a session of its own or as the probe that upgrades a polling session.
"""

from __future__ import annotations

from typing import Protocol, cast

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IAddress
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_chat.frontends.socketio.engineio.packets import (
    BAD_REQUEST,
    FORBIDDEN,
    MESSAGE,
    UNKNOWN_SID,
    WEBSOCKET,
    Data,
    EngineError,
    Packet,
    ProtocolError,
    checkQuery,
    decodePacket,
    encodePacket,
)
from twisted_chat.frontends.socketio.engineio.server import EngineServer
from twisted_chat.frontends.socketio.engineio.session import EngineSocket
from twisted_chat.frontends.wscommon import applyOptions, originAllowed
from twisted_chat.frontends.write import OutgoingGuard

_OPEN_STATE = WebSocketProtocol.STATE_OPEN


class _Stream(Protocol):
    """
    What a WebSocket's transport is (a TCP or TLS connection, or the HTTP
    channel's under C{WebSocketResource}) beyond C{ITransport}: a producer
    that can be paused, and a consumer whose producer can be replaced.
    """

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def registerProducer(self, producer: object, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...


class EngineWebSocketProtocol(WebSocketServerProtocol):
    """
    The WebSocket transport of one session: a session of its own
    (C{transport=websocket} without a sid), or the probe that upgrades a
    polling session (with its sid).
    """

    _log = Logger()
    #: the server of the factory that built this protocol
    server: EngineServer
    socket: EngineSocket | None = None
    isProbe = False
    _sid: str | None = None
    _guard: OutgoingGuard | None = None
    _closing = False
    #: the address admitted in onConnect, until a session takes it over
    _admitted: str | None = None

    @property
    def _stream(self) -> _Stream:
        # (Autobahn types its transport as ITransport; it is more, see _Stream)
        return cast(_Stream, self.transport)

    def onConnect(self, request: ConnectionRequest) -> Deferred[None] | None:  # type: ignore[override]  # (Autobahn waits for a Deferred)
        server = self.server
        params = request.params

        def first(name: str) -> str | None:
            values = params.get(name)
            return values[0] if values else None

        try:
            checkQuery(first("transport"), first("EIO"))
            if first("transport") != WEBSOCKET:
                raise EngineError(BAD_REQUEST)
            origin = request.headers.get("origin")
            if not originAllowed(origin, request.headers.get("host"), server.allowedOrigins):
                self._log.info(
                    "refused engine.io WebSocket from {peer}: origin {origin} not allowed",
                    peer=request.peer,
                    origin=origin,
                )
                raise EngineError(FORBIDDEN, 403)
            sid = first("sid")
            if sid is not None:
                socket = server.sessions.get(sid)
                if socket is None:
                    raise EngineError(UNKNOWN_SID)
                if not socket.canUpgrade():
                    raise EngineError(BAD_REQUEST)
                self._sid = sid
            else:
                if server.full():
                    raise EngineError(BAD_REQUEST, 503, "Too many sessions")
                transport = self.transport
                host = str(getattr(transport.getPeer(), "host", "")) if transport is not None else ""
                waiting = server.admitLater(host)
                if waiting is not None:
                    # (the machine's count decides: Autobahn waits for it)
                    return self._admitLater(waiting, host)
                self._admitted = host
        except EngineError as e:
            raise ConnectionDeny(e.status, e.message)
        return None

    def _admitLater(self, waiting: Deferred[None], host: str) -> Deferred[None]:
        def admitted(_: None) -> None:
            if self.state == WebSocketProtocol.STATE_CLOSED:
                self.server.release(host)
                return
            self._admitted = host

        def refused(f: Failure) -> None:
            error = f.trap(EngineError) and f.value
            assert isinstance(error, EngineError)
            raise ConnectionDeny(error.status, error.message)

        return waiting.addCallbacks(admitted, refused)

    def onOpen(self) -> None:
        stream = self._stream
        # Behind WebSocketResource the HTTP channel is still the transport's
        # producer; take its place to see backpressure.
        if getattr(stream, "producer", None) is not None:
            stream.unregisterProducer()
        server = self.server
        self._guard = OutgoingGuard(server.settings)
        stream.registerProducer(self._guard, True)
        if self._sid is not None:
            socket = server.sessions.get(self._sid)
            if socket is None or not socket.attachProbe(self):
                self.closeTransport("session gone")
                return
            self.socket = socket
            self.isProbe = True
            return
        host, self._admitted = self._admitted, None
        try:
            socket = server.newSession(WEBSOCKET, str(self.peer), host or "", admitted=host is not None)
        except EngineError:
            self.closeTransport("too many sessions")
            return
        self.socket = socket
        self._log.debug("engine.io websocket session {sid} from {peer}", sid=socket.sid, peer=self.peer)
        socket.start(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        socket = self.socket
        if socket is None or self._closing:
            return
        packet: Packet
        if isBinary:
            packet = (MESSAGE, payload)
        else:
            try:
                text = payload.decode("utf-8")
                if text.startswith("b"):
                    raise ProtocolError("base64 data on a WebSocket")
                packet = decodePacket(text)
            except (ProtocolError, UnicodeDecodeError) as e:
                self._log.info("engine.io WebSocket from {peer}: bad packet ({why})", peer=self.peer, why=str(e))
                if self.isProbe:
                    socket.transportClosed(self)
                    self.closeTransport("parse error")
                else:
                    socket.fail("parse error")
                return
        if self.isProbe:
            socket.onProbePacket(self, packet)
        else:
            socket.onPacket(packet)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        host, self._admitted = self._admitted, None
        if host is not None:
            # Admitted, but closed before its session was opened.
            self.server.release(host)
        socket = self.socket
        if socket is not None:
            self.socket = None
            socket.transportClosed(self)

    # -- for the session (see session.SessionWebSocket) --

    def sendPacket(self, ptype: int, data: Data | None) -> None:
        if isinstance(data, bytes):
            self._write(data, True)
        else:
            self._write(encodePacket(ptype, data).encode("utf-8"), False)

    def sendPacketText(self, text: str) -> None:
        self._write(text.encode("utf-8"), False)

    def pauseReading(self) -> None:
        self._stream.pauseProducing()

    def resumeReading(self) -> None:
        if self.state != WebSocketProtocol.STATE_CLOSED:
            self._stream.resumeProducing()

    def _write(self, data: bytes, binary: bool) -> None:
        if self.state != _OPEN_STATE or self._closing:
            return
        guard = self._guard
        if guard is not None and guard.overLimit(len(data)):
            self._log.warn(
                "dropping slow engine.io client {peer}: over {limit} bytes queued",
                peer=self.peer,
                limit=guard.limit,
            )
            self._closing = True
            socket, self.socket = self.socket, None
            self.dropConnection(abort=True)
            if socket is not None:
                socket.fail("too slow")
            return
        self.sendMessage(data, binary)

    def closeTransport(self, reason: str) -> None:
        """
        Close this WebSocket (it no longer serves a session).
        """
        if self._closing:
            return
        self._closing = True
        self.socket = None
        if self.state == _OPEN_STATE:
            self.sendClose(1000)
        elif self.state != WebSocketProtocol.STATE_CLOSED:
            self.dropConnection(abort=True)


class EngineWebSocketFactory(WebSocketServerFactory):
    """
    The WebSocket transport of an L{EngineServer}: frames up to
    C{maxPayload}; no WebSocket-level pings (Engine.IO pings itself).
    """

    protocol = EngineWebSocketProtocol
    noisy = False

    def __init__(self, server: EngineServer) -> None:
        WebSocketServerFactory.__init__(self, server="twisted-chat")
        self.server = server
        applyOptions(self, maxMessageSize=server.maxPayload, pingInterval=0, pingTimeout=10)

    def buildProtocol(self, addr: IAddress | None) -> EngineWebSocketProtocol:
        protocol = EngineWebSocketProtocol()
        protocol.factory = self
        protocol.server = self.server
        return protocol
