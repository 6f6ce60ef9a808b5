# -*- test-case-name: tests.test_socketio -*-
"""
Socket.IO, protocol version 5, on Engine.IO v4 (L{twisted_chat.frontends.socketio.engineio}),
and the chat on top of it.

The protocol part is generic: L{SocketIoServer} is an Engine.IO handler
factory; each session gets a L{SocketIoConnection}, which decodes packets
(binary attachments included), connects namespaces and keeps one
L{NamespaceSocket} per connected namespace, with acknowledgements both ways.
What a namespace does is up to its handler: C{onConnect(auth)} (raise
L{ConnectRefused} to refuse, or return a Deferred to answer later),
C{onEvent(name, args, ack)} and C{onDisconnect(reason)}.

The chat is the handler of the main namespace C{/}: L{SocketIoChatClient},
an L{IChatClient} that reuses the line chat's commands and rendering (text
mode: C{message} events carry lines, as the seed's page expects) and json
mode's requests and event objects (json mode: one event per json-mode type).
See docs/protocol.md.

Written from the public protocol description (socket.io-protocol, v5).
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any, Callable, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat.frontends.socketio.engineio import (
    BAD_REQUEST,
    FORBIDDEN,
    Data,
    EngineError,
    EngineResource,
    EngineServer,
    EngineSocket,
    ProtocolError,
)
from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import Event
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.core.limits import Admission
from twisted_chat.frontends.jsonmode import JsonSession, _position, _str, isText
from twisted_chat.frontends.throttle import ThrottledInput
from twisted_chat.core.service import ChatService, Member
from twisted_chat.frontends.textmode import TextSession, closingText

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: packet types
CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK = range(7)

#: event names a client may not send: its library uses them itself
RESERVED_EVENTS = frozenset(
    ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"]
)

_DIGITS = frozenset("0123456789")
_encodeJson = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _noConstant(name: str) -> object:
    raise ValueError("%s is not JSON" % (name,))


_decodeJson = json.JSONDecoder(parse_constant=_noConstant).decode


class Packet:
    """
    One Socket.IO packet: C{type}, namespace C{nsp}, C{data} (C{None} when
    absent), ack C{id} (C{None} when absent).
    """

    __slots__ = ("type", "nsp", "data", "id", "attachments")

    def __init__(self, type: int, nsp: str = "/", data: Any = None, id: int | None = None, attachments: int = 0) -> None:
        self.type = type
        self.nsp = nsp
        self.data = data
        self.id = id
        self.attachments = attachments

    def __repr__(self) -> str:
        return "<Packet %d %s %r id=%r>" % (self.type, self.nsp, self.data, self.id)


# -- encoding --


def _deconstruct(data: Any, buffers: list[bytes]) -> Any:
    if isinstance(data, (bytes, bytearray, memoryview)):
        buffers.append(bytes(data))
        return {"_placeholder": True, "num": len(buffers) - 1}
    if isinstance(data, (list, tuple)):
        return [_deconstruct(item, buffers) for item in data]
    if isinstance(data, dict):
        return {key: _deconstruct(value, buffers) for key, value in data.items()}
    return data


def encodePacket(ptype: int, nsp: str = "/", data: Any = None, id: int | None = None) -> list[Data]:
    """
    The Engine.IO messages of one packet: its text, then its binary
    attachments. Binary values in the data of an EVENT or ACK are replaced by
    placeholders and the type becomes BINARY_EVENT or BINARY_ACK.
    """
    buffers: list[bytes] = []
    if data is not None and ptype in (EVENT, ACK, BINARY_EVENT, BINARY_ACK):
        data = _deconstruct(data, buffers)
        if buffers:
            ptype = BINARY_EVENT if ptype in (EVENT, BINARY_EVENT) else BINARY_ACK
        elif ptype == BINARY_EVENT:
            ptype = EVENT
        elif ptype == BINARY_ACK:
            ptype = ACK
    text = str(ptype)
    if buffers:
        text += "%d-" % (len(buffers),)
    if nsp != "/":
        text += nsp + ","
    if id is not None:
        text += str(id)
    if data is not None:
        text += _encodeJson(data)
    return [text, *buffers]


# -- decoding --


def _validPayload(ptype: int, data: Any, id: int | None) -> bool:
    if ptype == CONNECT:
        return data is None or isinstance(data, dict)
    if ptype == DISCONNECT:
        return data is None
    if ptype == CONNECT_ERROR:
        return isinstance(data, (str, dict))
    if ptype in (EVENT, BINARY_EVENT):
        if not isinstance(data, list) or not data:
            return False
        name = data[0]
        if isinstance(name, str):
            return name not in RESERVED_EVENTS
        return isinstance(name, (int, float)) and not isinstance(name, bool)
    # ACK, BINARY_ACK
    return isinstance(data, list) and id is not None


def decodeText(text: str, maxAttachments: int = 10) -> Packet:
    """
    Parse the text of one packet; raises L{ProtocolError}. A binary packet
    comes back with its placeholders still in place (see L{Decoder}).
    """
    if not text or text[0] not in "0123456":
        raise ProtocolError("unknown packet type")
    ptype = int(text[0])
    i = 1
    attachments = 0
    if ptype in (BINARY_EVENT, BINARY_ACK):
        dash = text.find("-", i)
        count = text[i:dash] if dash > 0 else ""
        if not count or len(count) > 6 or not set(count) <= _DIGITS:
            raise ProtocolError("bad attachment count")
        attachments = int(count)
        if attachments > maxAttachments:
            raise ProtocolError("too many attachments")
        i = dash + 1
    nsp = "/"
    if i < len(text) and text[i] == "/":
        comma = text.find(",", i)
        if comma < 0:
            nsp, i = text[i:], len(text)
        else:
            nsp, i = text[i:comma], comma + 1
    start = i
    while i < len(text) and text[i] in _DIGITS:
        i += 1
    id = None
    if i > start:
        if i - start > 15:
            raise ProtocolError("ack id too long")
        id = int(text[start:i])
    data = None
    if i < len(text):
        try:
            data = _decodeJson(text[i:])
        except (ValueError, RecursionError):
            raise ProtocolError("invalid payload")
        if "\\u" in text and not isText(data):
            # a lone \ud800-\udfff escape is no text: it could not be sent on
            raise ProtocolError("invalid payload: unpaired surrogate escape")
    if not _validPayload(ptype, data, id):
        raise ProtocolError("invalid payload for packet type %d" % (ptype,))
    return Packet(ptype, nsp, data, id, attachments)


def _reconstruct(data: Any, buffers: list[bytes]) -> Any:
    if isinstance(data, list):
        return [_reconstruct(item, buffers) for item in data]
    if isinstance(data, dict):
        if data.get("_placeholder") is True:
            num = data.get("num")
            if not isinstance(num, int) or isinstance(num, bool) or not 0 <= num < len(buffers):
                raise ProtocolError("bad placeholder")
            return buffers[num]
        return {key: _reconstruct(value, buffers) for key, value in data.items()}
    return data


class Decoder:
    """
    Turns Engine.IO messages into packets, joining a binary packet with the
    binary messages (its attachments) that follow it.
    """

    def __init__(self, maxAttachments: int = 10) -> None:
        self.maxAttachments = maxAttachments
        self._pending: Packet | None = None
        self._buffers: list[bytes] = []

    def feed(self, data: Data) -> Packet | None:
        """
        The packet completed by C{data}, or C{None} while attachments are
        still due. Raises L{ProtocolError}.
        """
        pending = self._pending
        if isinstance(data, bytes):
            if pending is None:
                raise ProtocolError("binary data without a binary packet")
            self._buffers.append(data)
            if len(self._buffers) < pending.attachments:
                return None
            self._pending = None
            buffers, self._buffers = self._buffers, []
            try:
                pending.data = _reconstruct(pending.data, buffers)
            except RecursionError:
                raise ProtocolError("payload nested too deeply")
            return pending
        if pending is not None:
            raise ProtocolError("text while attachments were due")
        packet = decodeText(data, self.maxAttachments)
        if packet.attachments:
            self._pending = packet
            return None
        if packet.type in (BINARY_EVENT, BINARY_ACK):
            # "50-[...]": binary in name only
            try:
                packet.data = _reconstruct(packet.data, [])
            except RecursionError:
                raise ProtocolError("payload nested too deeply")
        return packet


# -- connections and namespaces --


class ConnectRefused(Exception):
    """
    Raised by a namespace handler's C{onConnect}: the client gets a
    CONNECT_ERROR with C{message} (and C{data}, when given).
    """

    def __init__(self, message: str, data: object = None) -> None:
        Exception.__init__(self, message)
        self.message = message
        self.data = data

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"message": self.message}
        if self.data is not None:
            payload["data"] = self.data
        return payload


class NamespaceHandler(Protocol):
    """
    What serves one client in one namespace.
    """

    def onConnect(self, auth: dict[str, Any]) -> Deferred[None] | None: ...

    def onEvent(self, name: str, args: list[Any], ack: Callable[..., None] | None) -> None: ...

    def onDisconnect(self, reason: str) -> None: ...


class NamespaceSocket:
    """
    One client connected to one namespace (a Socket.IO "socket").
    """

    _log = Logger()
    handler: NamespaceHandler

    def __init__(self, connection: SocketIoConnection, nsp: str) -> None:
        self.connection = connection
        self.nsp = nsp
        self.sid = secrets.token_urlsafe(15)
        #: connected (after the CONNECT was answered) and closed (disconnected or refused)
        self.connected = False
        self.closed = False
        self._acks: dict[int, Callable[..., None]] = {}
        self._nextAck = 0
        # Packets sent while the handler's onConnect runs go after the CONNECT.
        self._held: list[list[Data]] | None = []

    # -- sending --

    def emit(self, event: str, *args: Any, callback: Callable[..., None] | None = None) -> None:
        """
        Send the event C{event} with C{args}; C{callback} is called with the
        client's acknowledgement, if it sends one.
        """
        id = None
        if callback is not None:
            id = self._nextAck
            self._nextAck += 1
            self._acks[id] = callback
        self._send(encodePacket(EVENT, self.nsp, [event, *args], id))

    def sendEncoded(self, text: str) -> None:
        """
        Send an already encoded packet without attachments (a broadcast
        rendered once for all its recipients).
        """
        self._send([text])

    def _send(self, parts: list[Data]) -> None:
        if self._held is not None:
            self._held.append(parts)
            return
        if not self.connected:
            return
        engine = self.connection.engine
        for part in parts:
            engine.send(part)

    def _ackFunction(self, id: int) -> Callable[..., None]:
        done = False

        def ack(*args: Any) -> None:
            nonlocal done
            if done:
                return
            done = True
            self._send(encodePacket(ACK, self.nsp, list(args), id))

        return ack

    # -- incoming --

    def _onPacket(self, packet: Packet) -> None:
        ptype = packet.type
        if ptype in (EVENT, BINARY_EVENT):
            ack = self._ackFunction(packet.id) if packet.id is not None else None
            name, args = packet.data[0], packet.data[1:]
            self.handler.onEvent(name, args, ack)
        elif ptype in (ACK, BINARY_ACK):
            callback = self._acks.pop(packet.id, None)  # type: ignore[arg-type]
            if callback is not None:
                callback(*packet.data)
        elif ptype == DISCONNECT:
            self.connection._remove(self)
            self._closed("client namespace disconnect")

    # -- ending --

    def disconnect(self) -> None:
        """
        Disconnect the client from this namespace (it will not reconnect by
        itself); the session ends with its last namespace.
        """
        if not self.connected:
            return
        self._send(encodePacket(DISCONNECT, self.nsp))
        connection = self.connection
        connection._remove(self)
        self._closed("server namespace disconnect")
        if not connection.sockets:
            connection.engine.close("server namespace disconnect")

    def closeConnection(self, reason: str = "server close") -> None:
        """
        Close the whole underlying session (its client may reconnect).
        """
        self.connection.engine.close(reason)

    def _closed(self, reason: str) -> None:
        if not self.connected:
            return
        self.connected = False
        self.closed = True
        self._acks.clear()
        self.handler.onDisconnect(reason)


class SocketIoConnection:
    """
    The Socket.IO side of one Engine.IO session: its namespaces.
    """

    _log = Logger()

    def __init__(self, server: SocketIoServer, engine: EngineSocket) -> None:
        self.server = server
        self.engine = engine
        self.sockets: dict[str, NamespaceSocket] = {}
        #: namespaces whose CONNECT the handler has not answered yet
        self._pending: dict[str, NamespaceSocket] = {}
        self._decoder = Decoder(server.maxAttachments)
        self._connectCall: IDelayedCall | None = engine.clock.callLater(server.connectTimeout, self._noConnect)

    def _noConnect(self) -> None:
        self._connectCall = None
        if not self.sockets:
            self._log.info(
                "socket.io session {sid} from {peer}: no namespace connected in time",
                sid=self.engine.sid,
                peer=self.engine.peer,
            )
            self.engine.fail("connect timeout")

    def _cancelConnectTimeout(self) -> None:
        call, self._connectCall = self._connectCall, None
        if call is not None and call.active():
            call.cancel()

    def _remove(self, socket: NamespaceSocket) -> None:
        if self.sockets.get(socket.nsp) is socket:
            del self.sockets[socket.nsp]

    # -- Engine.IO handler --

    def onMessage(self, data: Data) -> None:
        try:
            packet = self._decoder.feed(data)
        except ProtocolError as e:
            self._refuse(str(e))
            return
        if packet is None:
            return
        socket = self.sockets.get(packet.nsp)
        if packet.type == CONNECT and socket is None and packet.nsp not in self._pending:
            self._connect(packet.nsp, packet.data or {})
        elif socket is not None and packet.type not in (CONNECT, CONNECT_ERROR):
            socket._onPacket(packet)
        else:
            self._refuse("packet type %d for namespace %s in this state" % (packet.type, packet.nsp))

    def onClose(self, reason: str) -> None:
        self._cancelConnectTimeout()
        sockets, self.sockets = self.sockets, {}
        for socket in sockets.values():
            socket._closed(reason)
        pending, self._pending = self._pending, {}
        for socket in pending.values():
            socket._held = None
            socket.closed = True
            socket.handler.onDisconnect(reason)

    def _refuse(self, why: str) -> None:
        self._log.info(
            "socket.io session {sid} from {peer}: {why}; closing",
            sid=self.engine.sid,
            peer=self.engine.peer,
            why=why,
        )
        self.engine.fail("parse error")

    def _sendPacket(self, packet: list[Data]) -> None:
        for part in packet:
            self.engine.send(part)

    def _connect(self, nsp: str, auth: dict[str, Any]) -> None:
        factory = self.server.namespaces.get(nsp)
        if factory is None:
            self._sendPacket(encodePacket(CONNECT_ERROR, nsp, {"message": "Invalid namespace"}))
            return
        socket = NamespaceSocket(self, nsp)
        self._pending[nsp] = socket
        socket.handler = handler = factory(socket)
        try:
            result = handler.onConnect(auth)
        except ConnectRefused as e:
            self._refused(socket, e)
            return
        if isinstance(result, Deferred):
            result.addCallbacks(lambda _: self._accepted(socket), lambda f: self._connectFailed(socket, f))
        else:
            self._accepted(socket)

    def _accepted(self, socket: NamespaceSocket) -> None:
        if self._pending.get(socket.nsp) is not socket:
            return
        del self._pending[socket.nsp]
        if self.engine.state != "open":
            socket._held = None
            socket.closed = True
            socket.handler.onDisconnect("transport close")
            return
        self._cancelConnectTimeout()
        self.sockets[socket.nsp] = socket
        socket.connected = True
        self._sendPacket(encodePacket(CONNECT, socket.nsp, {"sid": socket.sid}))
        held, socket._held = socket._held or [], None
        for parts in held:
            socket._send(parts)

    def _refused(self, socket: NamespaceSocket, refusal: ConnectRefused) -> None:
        if self._pending.get(socket.nsp) is socket:
            del self._pending[socket.nsp]
        socket._held = None
        socket.closed = True
        self._sendPacket(encodePacket(CONNECT_ERROR, socket.nsp, refusal.payload()))

    def _connectFailed(self, socket: NamespaceSocket, f: Failure) -> None:
        if f.check(ConnectRefused):
            self._refused(socket, f.value)  # type: ignore[arg-type]
            return
        self._log.failure("connecting {peer} to {nsp} failed", f, peer=self.engine.peer, nsp=socket.nsp)
        self._refused(socket, ConnectRefused("server error"))


class SocketIoServer:
    """
    Socket.IO over an L{EngineServer}: give it as the engine's
    C{handlerFactory}. C{namespaces} maps names to handler factories.
    """

    def __init__(
        self,
        namespaces: dict[str, Callable[[NamespaceSocket], NamespaceHandler]],
        connectTimeout: float = 45.0,
        maxAttachments: int = 10,
    ) -> None:
        self.namespaces = namespaces
        self.connectTimeout = connectTimeout
        self.maxAttachments = maxAttachments

    def __call__(self, engine: EngineSocket) -> SocketIoConnection:
        return SocketIoConnection(self, engine)


# -- the chat --

#: a request's main field, for clients that send a bare string
_MAIN_FIELD = {
    "say": "text",
    "join": "room",
    "part": "room",
    "nick": "nick",
    "who": "room",
    "history": "room",
}


@implementer(IChatClient)
class SocketIoChatClient(TextSession, JsonSession, ThrottledInput):
    """
    One Socket.IO client of the chat, in the main namespace.

    The CONNECT's C{auth} picks the mode: text (the default) renders every
    event as a line of the line chat in a C{message} event; json
    (C{auth.mode == "json"}) sends every json-mode event object as an event
    named by its type, and C{auth} is json mode's C{hello}. In both modes
    the named requests (C{say}, C{join}, …) work, with acknowledgements.

    Every event waits its turn under flood control (L{ThrottledInput}): a
    session that has to wait reads nothing more meanwhile (its WebSocket is
    not read, its POST is not answered; see L{EngineSocket.pauseInput}) and
    the events it had sent already wait in order.
    """

    _log = Logger()
    kind = "sio-text"
    json = False
    #: the client's address, for json mode's hello (bans, per-address limits)
    _admitted: str | None = None
    #: fires when a json-mode hello is through (or fails with ConnectRefused)
    _connecting: Deferred[None] | None = None

    def __init__(self, service: ChatService, socket: NamespaceSocket) -> None:
        self.service = service
        self.socket = socket
        engine = socket.connection.engine
        self.peer = engine.peer
        self.host = engine.host
        self.member = None

    # -- namespace handler --

    def onConnect(self, auth: dict[str, Any]) -> Deferred[None] | None:
        mode = auth.get("mode", "text")
        if mode not in ("text", "json"):
            raise ConnectRefused('mode is "text" (the default) or "json"', {"code": "bad-request"})
        # (Admission was checked when the Engine.IO session was opened.)
        self._admitted = self.host
        if mode == "json":
            return self._helloJson(auth)
        self.startTextSession(self.service, self.peer, self.host)
        member = self.member
        assert member is not None
        nick = auth.get("nick")
        password = auth.get("password")
        try:
            if nick is not None and not isinstance(nick, str) or password is not None and not isinstance(password, str):
                raise ChatError("bad-request", "nick and password are strings")
            if nick and password:
                self.cmd_login(member, nick + " " + password)
            elif nick:
                member.setNick(nick)
        except ChatError as e:
            self.sendError(e.message)
        return None

    def _helloJson(self, auth: dict[str, Any]) -> Deferred[None]:
        """
        json mode's hello, with the CONNECT's auth as the request; the
        CONNECT is answered once the welcome was sent (a login with a
        password takes a while).
        """
        self.json = True
        self.kind = "sio-json"
        d = self._connecting = Deferred()
        try:
            self.json_hello(auth)
        except ChatError as e:
            self._refuseConnect(e.code, e.message)
        return d

    def _welcome(self, member: Member, *args: Any) -> None:
        JsonSession._welcome(self, member, *args)  # type: ignore[arg-type]
        d, self._connecting = self._connecting, None
        if d is not None:
            d.callback(None)

    def _refuseConnect(self, code: str, message: str) -> None:
        d, self._connecting = self._connecting, None
        member, self.member = self.member, None
        if member is not None:
            member.quit("disconnected")
        if d is not None:
            d.errback(ConnectRefused(message, {"code": code}))

    def isOpen(self) -> bool:
        return not self.socket.closed

    def onDisconnect(self, reason: str) -> None:
        self._connecting = None
        self.dropInput()
        member = self.member
        if member is not None:
            member.quit("too slow" if reason == "too slow" else "disconnected")

    def onEvent(self, name: str, args: list[Any], ack: Callable[..., None] | None) -> None:
        self.takeInput((name, args, ack))

    # -- flood control (see _limits.ThrottledInput) --

    def handleInput(self, item: Any) -> None:
        name, args, ack = item
        member = self.member
        if member is None or member.gone:
            return
        method = _REQUESTS.get(name) if isinstance(name, str) else None
        ref = None
        try:
            if method is None:
                raise ChatError("unknown-type", "unknown request %r" % (name,))
            request = self._request(name, args)
            ref = request.get("ref")
            if ref is not None and (not isinstance(ref, (str, int)) or isinstance(ref, bool)):
                ref = None
                raise ChatError("bad-request", "'ref' must be a string or an integer")
            method(self, request, ack)
        except ChatError as e:
            self._refuse(ack, e.code, e.message, ref)

    def pauseInput(self) -> None:
        self.socket.connection.engine.pauseInput()

    def resumeInput(self) -> None:
        self.socket.connection.engine.resumeInput()

    def inputOpen(self) -> bool:
        return not self.socket.closed

    def inputFlooded(self, waiting: int) -> None:
        if self.json:
            self.sendErrorObject(
                "flood", "disconnected for flooding: more than %d requests waiting" % (self.service.settings.floodKick,)
            )

    # -- requests --

    @staticmethod
    def _request(name: str, args: list[Any]) -> dict[str, Any]:
        """
        The request object of an event: its first argument, or for the
        shorthands a bare string (C{emit("join", "#dev")}, C{emit("msg",
        "bob", "hi")}).
        """
        if not args:
            return {}
        first = args[0]
        if isinstance(first, dict):
            return first
        if name == "msg" and len(args) >= 2:
            return {"to": first, "text": args[1]}
        if name == "message":
            return {"text": first}
        field = _MAIN_FIELD.get(name)
        if field is not None and isinstance(first, str):
            return {field: first}
        raise ChatError("bad-request", "send an object with the request's fields")

    def _ok(self, ack: Callable[..., None] | None, **fields: Any) -> None:
        if ack is not None:
            ack({"ok": True, **fields})

    def _refuse(self, ack: Callable[..., None] | None, code: str, message: str, ref: object = None) -> None:
        if ack is not None:
            ack({"ok": False, "code": code, "message": message})
        elif self.json:
            self.sendErrorObject(code, message, ref)
        else:
            self.sendError(message)

    def _settle(
        self, d: Deferred[Any], ack: Callable[..., None] | None, ref: object, fields: Callable[[Any], dict[str, Any]]
    ) -> None:
        """
        Answer a say or msg once it is stored (or refused).
        """

        def stored(result: object) -> None:
            values = fields(result)
            if ack is not None:
                ack({"ok": True, **values})
            elif ref is not None and self.json:
                self.sendObject({"type": "ack", "ref": ref, **values})

        def failed(f: Failure) -> None:
            if f.check(ChatError):
                self._refuse(ack, f.value.code, f.value.message, ref)  # type: ignore[union-attr]
            else:
                self.service.logStoreFailure("storing a message failed", f)
                self._refuse(ack, "server-error", "not stored: please try again", ref)

        d.addCallbacks(stored, failed)

    def req_message(self, request: dict[str, Any], ack: Callable[..., None] | None) -> None:
        text = request.get("text")
        if not self.json:
            # A line of the line chat, commands included.
            if not isinstance(text, str):
                raise ChatError("bad-request", "send a line of text")
            self.handleText(text)
            self._ok(ack)
            return
        self.req_say({"text": text}, ack)

    def req_say(self, request: dict[str, Any], ack: Callable[..., None] | None) -> None:
        assert self.member is not None
        ref = request.get("ref")
        d = self.member.say(
            _str(request, "text"),  # type: ignore[arg-type]
            _str(request, "room", required=False),
            request.get("action", False) is True,
            ref,
        )
        self._settle(d, ack, ref, lambda m: {"id": m.id, "room": m.room, "epoch": m.epoch})

    def req_msg(self, request: dict[str, Any], ack: Callable[..., None] | None) -> None:
        assert self.member is not None
        ref = request.get("ref")
        d = self.member.private(_str(request, "to"), _str(request, "text"), ref)  # type: ignore[arg-type]
        self._settle(d, ack, ref, lambda p: {"id": p.id, "to": p.recipient})

    def req_join(self, request: dict[str, Any], ack: Callable[..., None] | None) -> None:
        assert self.member is not None
        name, new = self.member.join(
            _str(request, "room"), since=_position(request.get("since"))  # type: ignore[arg-type]
        )
        if not new:
            self.member.who(name)
        self._ok(ack, room=name)

    def req_part(self, request: dict[str, Any], ack: Callable[..., None] | None) -> None:
        assert self.member is not None
        name = self.member.part(_str(request, "room", required=False))
        self._ok(ack, room=name)

    def req_nick(self, request: dict[str, Any], ack: Callable[..., None] | None) -> None:
        assert self.member is not None
        nick = self.member.setNick(_str(request, "nick"))  # type: ignore[arg-type]
        self._ok(ack, nick=nick)

    def req_who(self, request: dict[str, Any], ack: Callable[..., None] | None) -> None:
        self.json_who(request)
        self._ok(ack)

    def req_rooms(self, request: dict[str, Any], ack: Callable[..., None] | None) -> None:
        self.json_rooms(request)
        self._ok(ack)

    def req_history(self, request: dict[str, Any], ack: Callable[..., None] | None) -> None:
        self.json_history(request)
        self._ok(ack)

    # -- IChatClient --

    def deliver(self, event: Event) -> None:
        if self.socket.closed:
            return
        if self.json:
            self.deliverJson(event)
        else:
            self.deliverText(event)

    def close(self, reason: str, reconnectAfter: float | None = None) -> None:
        """
        The service ends this connection (shutdown, flooding): say why, then
        close the session; the client library reconnects by itself.
        """
        self.dropInput()
        if not self.socket.closed:
            if self.json:
                self.sendClosingNotice(reason, reconnectAfter)
            else:
                self.sendNotice(closingText(reason, reconnectAfter))
        member = self.member
        if member is not None:
            member.quit("disconnected")
        self.socket.closeConnection(reason)

    def endSession(self, reason: str) -> None:
        # /quit: a namespace disconnect, so the client does not reconnect.
        self.dropInput()
        self.socket.disconnect()

    # -- output --

    def sendText(self, text: str) -> None:
        self.socket.emit("message", text)

    def sendRendered(self, event: Event, text: str) -> None:
        packet = event.cache.get("sio-text")
        if packet is None:
            packet = event.cache["sio-text"] = encodePacket(EVENT, "/", ["message", text])[0]
        self.socket.sendEncoded(packet)

    def sendObject(self, obj: dict[str, Any]) -> None:
        self.socket.emit(obj["type"], obj)

    def sendErrorObject(self, code: str, message: str, ref: object = None) -> None:
        if self._connecting is not None:
            # The hello failed (a wrong password): refuse the CONNECT.
            self._refuseConnect(code, message)
            return
        JsonSession.sendErrorObject(self, code, message, ref)

    def sendJson(self, data: bytes) -> None:
        self.sendObject(json.loads(data))

    def sendEventJson(self, event: Event, data: bytes) -> None:
        packet = event.cache.get("sio-json")
        if packet is None:
            packet = event.cache["sio-json"] = '2["%s",%s]' % (event.kind, data.decode("utf-8"))
        self.socket.sendEncoded(packet)


_REQUESTS: dict[str, Callable[[SocketIoChatClient, dict[str, Any], Callable[..., None] | None], None]] = {
    "message": SocketIoChatClient.req_message,
    "say": SocketIoChatClient.req_say,
    "msg": SocketIoChatClient.req_msg,
    "join": SocketIoChatClient.req_join,
    "part": SocketIoChatClient.req_part,
    "nick": SocketIoChatClient.req_nick,
    "who": SocketIoChatClient.req_who,
    "rooms": SocketIoChatClient.req_rooms,
    "history": SocketIoChatClient.req_history,
}


class ChatAdmission:
    """
    The chat's connection limits and bans (the service's L{Admission}) as
    Engine.IO admits sessions: a refusal is an HTTP error, 403 for a banned
    address, else 503, with the chat's reason as its message.
    """

    _log = Logger()

    def __init__(self, admission: Admission) -> None:
        self.admission = admission

    def admit(self, host: str) -> None:
        try:
            self.admission.admit(host)
        except ChatError as e:
            self._log.info("refused an engine.io session from {host}: {why}", host=host, why=e.code)
            if e.code == "banned":
                raise EngineError(FORBIDDEN, 403, e.message)
            raise EngineError(BAD_REQUEST, 503, e.message)

    def release(self, host: str) -> None:
        self.admission.release(host)


def makeSocketIo(
    service: ChatService,
    clock: IReactorTime | None = None,
    allowedOrigins: list[str] | None = None,
    pingInterval: float = 25.0,
    pingTimeout: float = 20.0,
    maxPayload: int = 100000,
    maxSessions: int = 10000,
    connectTimeout: float = 45.0,
) -> EngineResource:
    """
    The chat's C{/socket.io/} resource: Engine.IO sessions whose main
    namespace is the chat. A session counts as a connection of its address
    (the service's admission: --max-connections, --max-per-ip, bans) from its
    handshake until it is closed. The reloadable limits (C{maxOutgoing}…)
    are the service's C{settings}.
    """
    sio = SocketIoServer({"/": lambda socket: SocketIoChatClient(service, socket)}, connectTimeout=connectTimeout)
    engine = EngineServer(
        sio,
        clock=clock,
        pingInterval=pingInterval,
        pingTimeout=pingTimeout,
        maxPayload=maxPayload,
        maxSessions=maxSessions,
        allowedOrigins=allowedOrigins,
        admission=ChatAdmission(service.admission),
        settings=service.settings,
    )
    return EngineResource(engine)
