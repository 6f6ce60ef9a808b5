# -*- test-case-name: tests.test_engineio -*-
"""
Engine.IO, protocol version 4: the transport layer under Socket.IO.

One L{EngineServer} keeps the sessions of this process. A session is reached
through HTTP long-polling (L{EngineResource}: GET to receive, POST to send,
packets joined by the record separator C{\\x1e}) or through a WebSocket
(L{EngineWebSocketProtocol}, one packet per frame), and can move from polling
to a WebSocket (the "upgrade": C{2probe}, C{3probe}, C{5}). The server pings
every C{pingInterval}; a session that does not answer within C{pingTimeout}
is closed, which is also how abandoned polling sessions expire.

What runs on top (Socket.IO) is a I{handler} made for each session by the
server's C{handlerFactory}: it gets C{onMessage(data)} for every message
packet (C{str}, or C{bytes} for binary data) and C{onClose(reason)} once,
and sends with L{EngineSocket.send}.

Written from the public protocol description (engine.io-protocol, v4); the
error codes and messages are the ones that specification's clients expect.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import secrets
from typing import TYPE_CHECKING, Any, Callable, Protocol, Union

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.logger import Logger
from twisted.web import pages
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from twisted_chat.core.errors import ChatError
from twisted_chat.frontends.write import OutgoingGuard
from twisted_chat.core.settings import Settings
from twisted_chat.frontends.wscommon import applyOptions, originAllowed

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: packet types
OPEN, CLOSE, PING, PONG, MESSAGE, UPGRADE, NOOP = range(7)

#: what separates the packets of one HTTP long-polling payload
SEPARATOR = "\x1e"

PROTOCOL_VERSION = "4"
POLLING = "polling"
WEBSOCKET = "websocket"

#: error code -> message, as the protocol's clients know them
UNKNOWN_TRANSPORT = 0
UNKNOWN_SID = 1
BAD_HANDSHAKE_METHOD = 2
BAD_REQUEST = 3
FORBIDDEN = 4
UNSUPPORTED_PROTOCOL_VERSION = 5
ERROR_MESSAGES = {
    UNKNOWN_TRANSPORT: "Transport unknown",
    UNKNOWN_SID: "Session ID unknown",
    BAD_HANDSHAKE_METHOD: "Bad handshake method",
    BAD_REQUEST: "Bad request",
    FORBIDDEN: "Forbidden",
    UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
}

Data = Union[str, bytes]
Packet = tuple[int, Union[str, bytes, None]]

_OPEN_STATE = WebSocketProtocol.STATE_OPEN


class ProtocolError(Exception):
    """
    Bytes that are not a valid packet or payload.
    """


class EngineError(Exception):
    """
    A request refused with an HTTP status and the protocol's JSON error body.
    """

    def __init__(self, code: int, status: int = 400, message: str | None = None) -> None:
        self.code = code
        self.status = status
        self.message = message if message is not None else ERROR_MESSAGES[code]
        Exception.__init__(self, self.message)

    def body(self) -> bytes:
        return json.dumps({"code": self.code, "message": self.message}, separators=(",", ":")).encode("utf-8")


# -- packets and payloads --


def encodePacket(ptype: int, data: Data | None = None, binaryAsBase64: bool = True) -> Data:
    """
    One packet as text: its type digit then its data. Binary message data is
    C{b} plus base64 (how HTTP long-polling carries it), or, with
    C{binaryAsBase64=False}, the raw bytes (a WebSocket binary frame, which
    has no type: it is always a message).
    """
    if isinstance(data, bytes):
        if not binaryAsBase64:
            return data
        return "b" + base64.b64encode(data).decode("ascii")
    return str(ptype) if data is None else str(ptype) + data


def decodePacket(text: str) -> Packet:
    """
    Parse one text packet (a WebSocket text frame or one record of a polling
    payload); C{b...} is a base64 binary message. Raises L{ProtocolError}.
    """
    if not text:
        raise ProtocolError("empty packet")
    first = text[0]
    if first == "b":
        try:
            return MESSAGE, base64.b64decode(text[1:].encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise ProtocolError("invalid base64 data")
    if first not in "0123456":
        raise ProtocolError("unknown packet type %r" % (first,))
    return int(first), text[1:] if len(text) > 1 else None


def encodePayload(packets: list[Packet]) -> bytes:
    """
    Packets joined for one HTTP long-polling response body (UTF-8).
    """
    return SEPARATOR.join(encodePacket(t, d) for t, d in packets).encode("utf-8")  # type: ignore[misc]


def decodePayload(body: bytes) -> list[Packet]:
    """
    The packets of one HTTP long-polling request body. Raises L{ProtocolError}.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("payload is not UTF-8")
    return [decodePacket(record) for record in text.split(SEPARATOR)]


def _packetSize(data: Data | None) -> int:
    return 1 + (len(data) if data is not None else 0)


# -- sessions --


class EngineHandler(Protocol):
    """
    What runs on top of one session (the Socket.IO connection).
    """

    def onMessage(self, data: Data) -> None: ...

    def onClose(self, reason: str) -> None: ...


class EngineSocket:
    """
    One Engine.IO session, on HTTP long-polling or a WebSocket.

    Packets for a polling client wait in C{_buffer} until it polls; past
    C{server.settings.maxOutgoing} bytes waiting, the client is too slow and the
    session is closed. A WebSocket client gets its packets at once.
    """

    _log = Logger()
    handler: EngineHandler | None = None

    def __init__(self, server: EngineServer, sid: str, transport: str, peer: str, host: str = "") -> None:
        self.server = server
        self.sid = sid
        self.transport = transport
        #: the client's address: as a peer ("tcp4:1.2.3.4:5678") and its host alone
        self.peer = peer
        self.host = host
        #: "open", "closing" (a server close waits for the client's next poll) or "closed"
        self.state = "open"
        self._buffer: list[Packet] = []
        self._buffered = 0
        self._poll: Request | None = None
        self._ws: EngineWebSocketProtocol | None = None
        self._probe: EngineWebSocketProtocol | None = None
        #: the probe answered 3probe: pending polls get a noop, output waits for the upgrade
        self.upgrading = False
        self._pingCall: IDelayedCall | None = None
        self._timeoutCall: IDelayedCall | None = None
        self._flushCall: IDelayedCall | None = None
        self._upgradeCall: IDelayedCall | None = None
        self._closeCall: IDelayedCall | None = None
        #: the handler asked to read nothing more for now (pauseInput)
        self.inputPaused = False
        #: a POST whose answer waits until input resumes
        self._heldPost: Request | None = None

    def __repr__(self) -> str:
        return "<EngineSocket %s %s %s>" % (self.sid, self.transport, self.state)

    @property
    def clock(self) -> IReactorTime:
        return self.server.clock

    # -- for the handler --

    def send(self, data: Data) -> None:
        """
        Send one message packet (text, or binary data).
        """
        self._sendPacket(MESSAGE, data)

    def pauseInput(self) -> None:
        """
        Read nothing more from the client for now (flood control): on a
        WebSocket its transport stops reading (the frames wait in the
        kernel); on polling, the POST being read is answered only once
        input resumes (the client sends no other meanwhile). Pings and
        pongs of the packets already read still count.
        """
        if self.inputPaused or self.state == "closed":
            return
        self.inputPaused = True
        ws = self._ws
        if ws is not None:
            ws.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeInput(self) -> None:
        """
        Read from the client again (see L{pauseInput}).
        """
        if not self.inputPaused:
            return
        self.inputPaused = False
        ws = self._ws
        if ws is not None and ws.state != WebSocketProtocol.STATE_CLOSED:
            ws.transport.resumeProducing()  # type: ignore[union-attr]
        self._answerPost()

    def holdPost(self, request: Request) -> bool:
        """
        A POST was read while input is paused: keep it unanswered until
        input resumes. C{False} if input is not paused (answer it now).
        """
        if not self.inputPaused or self.state == "closed":
            return False
        self._heldPost = request

        def gone(_: object) -> None:
            if self._heldPost is request:
                self._heldPost = None

        request.notifyFinish().addBoth(gone)
        return True

    @property
    def postHeld(self) -> bool:
        return self._heldPost is not None

    def _answerPost(self) -> None:
        request, self._heldPost = self._heldPost, None
        if request is not None and not request.finished and not request._disconnected:
            request.write(b"ok")
            request.finish()

    def close(self, reason: str = "server close") -> None:
        """
        End the session from the server's side, after what was sent so far.
        A polling client gets the close packet with its next poll (or at
        once, when a poll is waiting).
        """
        if self.state != "open":
            return
        if self._ws is not None:
            self._finish(reason)
            return
        self._buffer.append((CLOSE, None))
        if self._poll is not None and not self.upgrading:
            self._flush()
            self._finish(reason)
            return
        # Wait for the client's next poll, but not for ever.
        self.state = "closing"
        self._cancelPing()
        self._closeCall = self.clock.callLater(self.server.pingTimeout, self._finish, reason)

    # -- life cycle --

    def start(self, ws: EngineWebSocketProtocol | None = None) -> bytes:
        """
        Begin the session: returns the open packet's text (UTF-8) for the
        handshake response (or sends it on C{ws}), then starts pinging.
        """
        server = self.server
        handshake = {
            "sid": self.sid,
            "upgrades": [WEBSOCKET] if ws is None else [],
            "pingInterval": int(round(server.pingInterval * 1000)),
            "pingTimeout": int(round(server.pingTimeout * 1000)),
            "maxPayload": server.maxPayload,
        }
        packet = encodePacket(OPEN, json.dumps(handshake, separators=(",", ":")))
        if ws is not None:
            self._ws = ws
            ws.sendPacketText(packet)  # type: ignore[arg-type]
        self._schedulePing()
        self.handler = server.handlerFactory(self)
        return packet.encode("utf-8")  # type: ignore[union-attr]

    def _finish(self, reason: str) -> None:
        """
        The session is over: forget it, stop its timers and transports, and
        tell the handler (once).
        """
        if self.state == "closed":
            return
        self.state = "closed"
        self.server._forget(self)
        for name in ("_pingCall", "_timeoutCall", "_flushCall", "_upgradeCall", "_closeCall"):
            call = getattr(self, name)
            if call is not None and call.active():
                call.cancel()
            setattr(self, name, None)
        poll, self._poll = self._poll, None
        if poll is not None:
            self._respond(poll, [(CLOSE, None)] if reason != "client close" else [(NOOP, None)])
        # (its transport reads again, so that a WebSocket's close finishes)
        self.resumeInput()
        for ws in (self._ws, self._probe):
            if ws is not None:
                ws.closeTransport(reason)
        self._ws = self._probe = None
        self._buffer = []
        self._log.debug("engine.io session {sid} closed: {reason}", sid=self.sid, reason=reason)
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.onClose(reason)

    def fail(self, reason: str) -> None:
        """
        Close at once: a protocol error, a timeout, a transport gone.
        """
        self._finish(reason)

    # -- heartbeat --

    def _schedulePing(self) -> None:
        if self.server.pingInterval > 0:
            self._pingCall = self.clock.callLater(self.server.pingInterval, self._ping)

    def _cancelPing(self) -> None:
        for name in ("_pingCall", "_timeoutCall"):
            call = getattr(self, name)
            if call is not None and call.active():
                call.cancel()
            setattr(self, name, None)

    def _ping(self) -> None:
        self._pingCall = None
        self._sendPacket(PING, None)
        self._timeoutCall = self.clock.callLater(self.server.pingTimeout, self._pingTimedOut)

    def _pingTimedOut(self) -> None:
        self._timeoutCall = None
        if self.inputPaused:
            # Its pong waits, unread, behind what flood control holds: the
            # client is there (it floods). Wait again.
            self._timeoutCall = self.clock.callLater(self.server.pingTimeout, self._pingTimedOut)
            return
        self._log.info("engine.io session {sid} from {peer}: ping timeout", sid=self.sid, peer=self.peer)
        self.fail("ping timeout")

    def _pong(self) -> None:
        if self._timeoutCall is not None:
            if self._timeoutCall.active():
                self._timeoutCall.cancel()
            self._timeoutCall = None
            self._schedulePing()

    # -- incoming packets (from the session's transport) --

    def onPacket(self, packet: Packet) -> None:
        """
        Act on one packet from the client on the session's current transport.
        """
        if self.state != "open":
            return
        ptype, data = packet
        if ptype == MESSAGE:
            handler = self.handler
            if handler is not None:
                handler.onMessage(data if data is not None else "")
        elif ptype == PONG:
            self._pong()
        elif ptype == PING:
            self._sendPacket(PONG, data)
        elif ptype == CLOSE:
            self._finish("client close")
        elif ptype == NOOP:
            pass
        else:
            self._log.info(
                "engine.io session {sid} from {peer}: unexpected packet type {ptype}",
                sid=self.sid,
                peer=self.peer,
                ptype=ptype,
            )
            self.fail("parse error")

    # -- outgoing packets --

    def _sendPacket(self, ptype: int, data: Data | None) -> None:
        if self.state != "open":
            return
        ws = self._ws
        if ws is not None:
            ws.sendPacket(ptype, data)
            return
        self._buffer.append((ptype, data))
        self._buffered += _packetSize(data)
        limit = self.server.settings.maxOutgoing
        if self._buffered > limit:
            self._log.warn(
                "dropping slow engine.io client {peer} (session {sid}): over {limit} bytes waiting for a poll",
                peer=self.peer,
                sid=self.sid,
                limit=limit,
            )
            self.fail("too slow")
            return
        if self._poll is not None and not self.upgrading and self._flushCall is None:
            # Everything sent in this turn of the reactor goes in one response.
            self._flushCall = self.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        call, self._flushCall = self._flushCall, None
        if call is not None and call.active():
            call.cancel()
        poll = self._poll
        if poll is None or not self._buffer or self.upgrading:
            return
        self._poll = None
        packets, self._buffer, self._buffered = self._buffer, [], 0
        self._respond(poll, packets)

    def _respond(self, request: Request, packets: list[Packet]) -> None:
        if getattr(request, "_gone", False) or request.finished or request._disconnected:
            return
        request.write(encodePayload(packets))
        request.finish()

    # -- HTTP long-polling --

    def onPoll(self, request: Request) -> object:
        """
        A GET from the client: answer now if something is waiting, else
        hold the request until something is.
        """
        if self._poll is not None:
            self._log.info("engine.io session {sid} from {peer}: overlapping polls", sid=self.sid, peer=self.peer)
            self.fail("overlapping polls")
            raise EngineError(BAD_REQUEST)
        if self.upgrading:
            return encodePayload([(NOOP, None)])
        if self._buffer:
            packets, self._buffer, self._buffered = self._buffer, [], 0
            if self.state == "closing":
                self._finish("server close")
            return encodePayload(packets)
        self._poll = request

        def gone(_: object) -> None:
            request._gone = True  # type: ignore[attr-defined]
            if self._poll is request:
                self._poll = None

        request.notifyFinish().addBoth(gone)
        return NOT_DONE_YET

    def onData(self, body: bytes) -> None:
        """
        A POST from the client: its packets, in order. A malformed payload
        closes the session (L{ProtocolError} is raised for the 400).
        """
        try:
            packets = decodePayload(body)
        except ProtocolError as e:
            self._log.info(
                "engine.io session {sid} from {peer}: bad payload ({why})", sid=self.sid, peer=self.peer, why=str(e)
            )
            self.fail("parse error")
            raise
        for packet in packets:
            if self.state != "open":
                break
            self.onPacket(packet)

    # -- upgrade to WebSocket --

    def canUpgrade(self) -> bool:
        return self.state == "open" and self.transport == POLLING and self._probe is None

    def attachProbe(self, ws: EngineWebSocketProtocol) -> bool:
        """
        A WebSocket opened with this session's sid, to take over from polling.
        """
        if not self.canUpgrade():
            return False
        self._probe = ws
        self._upgradeCall = self.clock.callLater(self.server.upgradeTimeout, self._upgradeTimedOut)
        return True

    def _upgradeTimedOut(self) -> None:
        self._upgradeCall = None
        probe = self._probe
        if probe is not None:
            self._dropProbe()
            probe.closeTransport("upgrade timeout")

    def _dropProbe(self) -> None:
        self._probe = None
        self.upgrading = False
        if self._upgradeCall is not None and self._upgradeCall.active():
            self._upgradeCall.cancel()
        self._upgradeCall = None
        # What waited for the upgrade goes out by polling after all.
        if self._poll is not None and self._buffer and self._flushCall is None and self.state == "open":
            self._flushCall = self.clock.callLater(0, self._flush)

    def onProbePacket(self, ws: EngineWebSocketProtocol, packet: Packet) -> None:
        if ws is not self._probe or self.state == "closed":
            ws.closeTransport("not the probe")
            return
        ptype, data = packet
        if ptype == PING and data == "probe":
            ws.sendPacket(PONG, "probe")
            self.upgrading = True
            poll, self._poll = self._poll, None
            if poll is not None:
                self._respond(poll, [(NOOP, None)])
        elif ptype == UPGRADE:
            self._upgrade(ws)
        else:
            self._dropProbe()
            ws.closeTransport("unexpected packet during upgrade")

    def _upgrade(self, ws: EngineWebSocketProtocol) -> None:
        if self._upgradeCall is not None and self._upgradeCall.active():
            self._upgradeCall.cancel()
        self._upgradeCall = None
        self._probe = None
        self.upgrading = False
        poll, self._poll = self._poll, None
        if poll is not None:
            self._respond(poll, [(NOOP, None)])
        if self._flushCall is not None and self._flushCall.active():
            self._flushCall.cancel()
        self._flushCall = None
        self.transport = WEBSOCKET
        self._ws = ws
        ws.isProbe = False
        if self.inputPaused:
            ws.transport.pauseProducing()  # type: ignore[union-attr]
        packets, self._buffer, self._buffered = self._buffer, [], 0
        closing = self.state == "closing"
        for ptype, data in packets:
            ws.sendPacket(ptype, data)
        self._log.debug("engine.io session {sid} upgraded to websocket", sid=self.sid)
        if closing:
            self._finish("server close")

    def transportClosed(self, ws: EngineWebSocketProtocol) -> None:
        """
        A WebSocket of this session is gone.
        """
        if ws is self._probe:
            self._dropProbe()
        elif ws is self._ws:
            self._ws = None
            self._finish("transport close")


# -- the server --


class EngineServer:
    """
    The Engine.IO sessions of this process and their settings.

    Sessions live in memory here: behind a load balancer, every request of
    one polling session must reach this same process (sticky sessions).
    """

    _log = Logger()

    def __init__(
        self,
        handlerFactory: Callable[[EngineSocket], EngineHandler],
        clock: IReactorTime | None = None,
        pingInterval: float = 25.0,
        pingTimeout: float = 20.0,
        maxPayload: int = 100000,
        maxSessions: int = 10000,
        allowedOrigins: list[str] | None = None,
        upgradeTimeout: float = 10.0,
        admission: Any = None,
        settings: Settings | None = None,
    ) -> None:
        self.handlerFactory = handlerFactory
        #: the limits that can be reloaded (C{maxOutgoing}), read when
        #: needed: the chat service's settings, or defaults of its own
        self.settings = settings if settings is not None else Settings()
        #: who may open a session (the chat's Admission: connections per address, bans), or None
        self.admission = admission
        self._clock = clock
        self.pingInterval = pingInterval
        self.pingTimeout = pingTimeout
        self.maxPayload = maxPayload
        self.maxSessions = maxSessions
        self.allowedOrigins = list(allowedOrigins or [])
        self.upgradeTimeout = upgradeTimeout
        self.sessions: dict[str, EngineSocket] = {}

    @property
    def clock(self) -> IReactorTime:
        if self._clock is None:
            from twisted.internet import reactor

            self._clock = reactor  # type: ignore[assignment]
        return self._clock  # type: ignore[return-value]

    def full(self) -> bool:
        return len(self.sessions) >= self.maxSessions

    def admit(self, host: str) -> None:
        """
        Count a new session from C{host} with the admission policy, or raise
        L{EngineError} (503, or 403 for a banned address).
        """
        if self.admission is None:
            return
        try:
            self.admission.admit(host)
        except ChatError as e:
            self._log.info("refused an engine.io session from {host}: {why}", host=host, why=e.code)
            if e.code == "banned":
                raise EngineError(FORBIDDEN, 403, e.message)
            raise EngineError(BAD_REQUEST, 503, e.message)

    def release(self, host: str) -> None:
        if self.admission is not None:
            self.admission.release(host)

    def newSession(self, transport: str, peer: str, host: str = "", admitted: bool = False) -> EngineSocket:
        """
        A new session; C{admitted} when L{admit} was already called for it.
        """
        if self.full():
            if admitted:
                self.release(host)
            self._log.warn(
                "refused an engine.io session from {peer}: {count} sessions already",
                peer=peer,
                count=len(self.sessions),
            )
            raise EngineError(BAD_REQUEST, 503, "Too many sessions")
        if not admitted:
            self.admit(host)
        sid = secrets.token_urlsafe(15)
        while sid in self.sessions:
            sid = secrets.token_urlsafe(15)
        socket = EngineSocket(self, sid, transport, peer, host)
        self.sessions[sid] = socket
        return socket

    def _forget(self, socket: EngineSocket) -> None:
        if self.sessions.get(socket.sid) is socket:
            del self.sessions[socket.sid]
            self.release(socket.host)


def _peer(request: Request) -> str:
    """
    The client's address, written as Autobahn writes WebSocket peers.
    """
    address = request.getClientAddress()
    if isinstance(address, IPv4Address):
        return "tcp4:%s:%d" % (address.host, address.port)
    if isinstance(address, IPv6Address):
        return "tcp6:%s:%d" % (address.host, address.port)
    if isinstance(address, UNIXAddress):
        return "unix:%s" % (address.name or "",)
    return "unknown"


def _query(args: dict[bytes, list[bytes]], name: bytes) -> str | None:
    values = args.get(name)
    if not values:
        return None
    return values[0].decode("utf-8", "replace")


def checkQuery(transport: str | None, eio: str | None) -> None:
    """
    The query every request must carry; raises L{EngineError}.
    """
    if transport not in (POLLING, WEBSOCKET):
        raise EngineError(UNKNOWN_TRANSPORT)
    if eio != PROTOCOL_VERSION:
        raise EngineError(UNSUPPORTED_PROTOCOL_VERSION)


# -- HTTP --


class BoundedRequest(Request):
    """
    A request that keeps at most C{channel.site.maxRequestBody} bytes of its
    body: what is beyond is read and thrown away, and C{bodyTooLarge} is set,
    so a client cannot make the server hold an arbitrarily large upload.
    """

    bodyTooLarge = False
    _received = 0

    def _limit(self) -> int | None:
        site = getattr(self.channel, "site", None)
        return getattr(site, "maxRequestBody", None)

    def gotLength(self, length: int | None) -> None:
        limit = self._limit()
        if limit is not None and length is not None and length > limit:
            self.bodyTooLarge = True
            Request.gotLength(self, 0)
            return
        Request.gotLength(self, length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.bodyTooLarge:
            return
        limit = self._limit()
        self._received += len(data)
        if limit is not None and self._received > limit:
            self.bodyTooLarge = True
            self.content.close()
            self.content = io.BytesIO()
            return
        Request.handleContentChunk(self, data)


_COMMON_HEADERS = [
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Cache-Control", b"no-store"),
]


class EngineResource(Resource):
    """
    C{/socket.io/} on the web port: HTTP long-polling, CORS, and WebSocket
    upgrades (handed to Autobahn).
    """

    isLeaf = True
    _log = Logger()

    def __init__(self, server: EngineServer, wsFactory: EngineWebSocketFactory | None = None) -> None:
        Resource.__init__(self)
        self.engine = server
        self.wsFactory = wsFactory if wsFactory is not None else EngineWebSocketFactory(server)
        self.ws = WebSocketResource(self.wsFactory)

    def render(self, request: Request) -> object:
        if request.postpath not in ([], [b""]):
            return pages.notFound().render(request)
        for name, value in _COMMON_HEADERS:
            request.setHeader(name, value)
        origin = request.getHeader(b"origin")
        try:
            self._cors(request, origin)
            if request.method == b"OPTIONS":
                return self._preflight(request)
            upgrade = request.getHeader(b"upgrade")
            if upgrade is not None and upgrade.lower() == b"websocket":
                if request.method != b"GET":
                    raise EngineError(BAD_REQUEST)
                return self.ws.render(request)
            return self._polling(request)
        except EngineError as e:
            request.setResponseCode(e.status)
            request.setHeader(b"Content-Type", b"application/json")
            return e.body()

    def _cors(self, request: Request, origin: bytes | None) -> None:
        """
        Browsers send C{Origin} on cross-origin requests: those from a page of
        another origin are refused unless C{--allow-origin} lists it; allowed
        ones get the CORS headers that let the page read the response.
        """
        if origin is None:
            return
        text = origin.decode("latin-1")
        host = request.getHeader(b"host")
        if not originAllowed(text, host.decode("latin-1") if host is not None else None, self.engine.allowedOrigins):
            self._log.info(
                "refused engine.io request from {peer}: origin {origin} not allowed",
                peer=_peer(request),
                origin=text,
            )
            raise EngineError(FORBIDDEN, 403)
        request.setHeader(b"Access-Control-Allow-Origin", origin)
        request.setHeader(b"Access-Control-Allow-Credentials", b"true")
        request.setHeader(b"Vary", b"Origin")

    def _preflight(self, request: Request) -> bytes:
        request.setResponseCode(204)
        request.setHeader(b"Access-Control-Allow-Methods", b"GET, POST, OPTIONS")
        asked = request.getHeader(b"access-control-request-headers")
        request.setHeader(b"Access-Control-Allow-Headers", asked if asked else b"Content-Type")
        request.setHeader(b"Access-Control-Max-Age", b"86400")
        return b""

    def _polling(self, request: Request) -> object:
        args = request.args
        transport = _query(args, b"transport")
        checkQuery(transport, _query(args, b"EIO"))
        if transport != POLLING:
            # transport=websocket without an Upgrade header
            raise EngineError(BAD_REQUEST)
        sid = _query(args, b"sid")
        server = self.engine
        method = request.method
        if sid is None:
            if method != b"GET":
                raise EngineError(BAD_HANDSHAKE_METHOD)
            socket = server.newSession(POLLING, _peer(request), str(getattr(request.getClientAddress(), "host", "")))
            self._log.debug("engine.io polling session {sid} from {peer}", sid=socket.sid, peer=socket.peer)
            request.setHeader(b"Content-Type", b"text/plain; charset=UTF-8")
            return socket.start()
        socket = server.sessions.get(sid)
        if socket is None:
            raise EngineError(UNKNOWN_SID)
        if socket.transport != POLLING:
            raise EngineError(BAD_REQUEST)
        request.setHeader(b"Content-Type", b"text/plain; charset=UTF-8")
        if method == b"GET":
            return socket.onPoll(request)
        if method == b"POST":
            if getattr(request, "bodyTooLarge", False) or self._bodySize(request) > server.maxPayload:
                self._log.info(
                    "engine.io session {sid} from {peer}: payload over {limit} bytes",
                    sid=sid,
                    peer=socket.peer,
                    limit=server.maxPayload,
                )
                socket.fail("payload too large")
                raise EngineError(BAD_REQUEST, 413, "Payload too large")
            if socket.postHeld:
                # (a client sends one POST at a time; engine.io refuses this too)
                self._log.info("engine.io session {sid} from {peer}: overlapping posts", sid=sid, peer=socket.peer)
                socket.fail("overlapping posts")
                raise EngineError(BAD_REQUEST)
            request.content.seek(0)
            body = request.content.read()
            try:
                socket.onData(body)
            except ProtocolError:
                raise EngineError(BAD_REQUEST)
            if socket.holdPost(request):
                # Flood control: answered once the session's input resumes.
                return NOT_DONE_YET
            return b"ok"
        raise EngineError(BAD_REQUEST)

    @staticmethod
    def _bodySize(request: Request) -> int:
        content = request.content
        position = content.tell()
        content.seek(0, io.SEEK_END)
        size = content.tell()
        content.seek(position)
        return size


# -- WebSocket --


class EngineWebSocketProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    """
    The WebSocket transport of one session: a session of its own
    (C{transport=websocket} without a sid), or the probe that upgrades a
    polling session (with its sid).
    """

    _log = Logger()
    factory: EngineWebSocketFactory
    socket: EngineSocket | None = None
    isProbe = False
    _sid: str | None = None
    _guard: OutgoingGuard | None = None
    _closing = False
    #: the address admitted in onConnect, until a session takes it over
    _admitted: str | None = None

    def onConnect(self, request: ConnectionRequest) -> Any:
        server = self.factory.server
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
                host = str(getattr(self.transport.getPeer(), "host", ""))  # type: ignore[union-attr]
                server.admit(host)
                self._admitted = host
        except EngineError as e:
            raise ConnectionDeny(e.status, e.message)
        return None

    def onOpen(self) -> None:
        transport = self.transport
        # Behind WebSocketResource the HTTP channel is still the transport's
        # producer; take its place to see backpressure.
        if getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()  # type: ignore[union-attr]
        self._guard = OutgoingGuard(self.factory.server.settings)
        transport.registerProducer(self._guard, True)  # type: ignore[union-attr]
        server = self.factory.server
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
            socket = server.newSession(WEBSOCKET, self.peer, host or "", admitted=host is not None)
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
            self.factory.server.release(host)
        socket = self.socket
        if socket is not None:
            self.socket = None
            socket.transportClosed(self)

    # -- output --

    def sendPacket(self, ptype: int, data: Data | None) -> None:
        if isinstance(data, bytes):
            self._write(data, True)
        else:
            self._write(encodePacket(ptype, data).encode("utf-8"), False)  # type: ignore[union-attr]

    def sendPacketText(self, text: str) -> None:
        self._write(text.encode("utf-8"), False)

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


class EngineWebSocketFactory(WebSocketServerFactory):  # type: ignore[misc]
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


def makeEngineResource(server: EngineServer) -> IResource:
    """
    The resource to mount at C{/socket.io} for C{server}.
    """
    return EngineResource(server)
