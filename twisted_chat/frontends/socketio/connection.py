# -*- test-case-name: tests.frontends.socketio.test_socketio -*-
"""
Socket.IO v5 connections on Engine.IO sessions, and their namespaces.

L{SocketIoServer} is an Engine.IO handler factory: each session gets a
L{SocketIoConnection}, which decodes packets, connects namespaces and keeps
one L{NamespaceSocket} per connected namespace, with acknowledgements both
ways. What a namespace does is up to its handler (L{NamespaceHandler}):
C{onConnect(auth)} (raise L{ConnectRefused} to refuse, or return a Deferred
to answer later), C{onEvent(name, args, ack)} and C{onDisconnect(reason)}.

Nothing here knows the chat: see L{twisted_chat.frontends.socketio.chat}.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Callable, Protocol, Union

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_chat.frontends.socketio.engineio.packets import Data, ProtocolError
from twisted_chat.frontends.socketio.engineio.session import EngineSocket
from twisted_chat.frontends.socketio.packets import (
    ACK,
    BINARY_ACK,
    BINARY_EVENT,
    CONNECT,
    CONNECT_ERROR,
    DISCONNECT,
    EVENT,
    JSON,
    Decoder,
    Packet,
    encodePacket,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

#: an acknowledgement: called with the JSON values that answer an event
Ack = Callable[..., None]
#: an event's name: a string, or (the protocol allows it) a number
EventName = Union[str, float]


class ConnectRefused(Exception):
    """
    Raised by a namespace handler's C{onConnect}: the client gets a
    CONNECT_ERROR with C{message} (and C{data}, when given).
    """

    def __init__(self, message: str, data: JSON = None) -> None:
        Exception.__init__(self, message)
        self.message = message
        self.data = data

    def payload(self) -> dict[str, JSON]:
        payload: dict[str, JSON] = {"message": self.message}
        if self.data is not None:
            payload["data"] = self.data
        return payload


class NamespaceHandler(Protocol):
    """
    What serves one client in one namespace.
    """

    def onConnect(self, auth: dict[str, JSON]) -> Deferred[None] | None: ...

    def onEvent(self, name: EventName, args: list[JSON], ack: Ack | None) -> None: ...

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
        self._acks: dict[int, Ack] = {}
        self._nextAck = 0
        # Packets sent while the handler's onConnect runs go after the CONNECT.
        self._held: list[list[Data]] | None = []

    # -- sending --

    def emit(self, event: str, *args: JSON, callback: Ack | None = None) -> None:
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

    def _ackFunction(self, id: int) -> Ack:
        done = False

        def ack(*args: JSON) -> None:
            nonlocal done
            if done:
                return
            done = True
            self._send(encodePacket(ACK, self.nsp, list(args), id))

        return ack

    # -- for the connection --

    def sendHeld(self) -> None:
        """
        The CONNECT was answered: what was sent meanwhile goes out now.
        """
        held, self._held = self._held or [], None
        for parts in held:
            self._send(parts)

    def abandoned(self, reason: str | None = None) -> None:
        """
        The CONNECT is not answered: refused (no C{reason}: the handler
        refused it) or the session ended first (the handler is told
        C{reason}). What was sent meanwhile is dropped.
        """
        self._held = None
        self.closed = True
        if reason is not None:
            self.handler.onDisconnect(reason)

    def onPacket(self, packet: Packet) -> None:
        """
        A packet of this namespace from the client.
        """
        ptype = packet.type
        if ptype in (EVENT, BINARY_EVENT):
            ack = self._ackFunction(packet.id) if packet.id is not None else None
            name, args = packet.data[0], packet.data[1:]
            self.handler.onEvent(name, args, ack)
        elif ptype in (ACK, BINARY_ACK):
            callback = self._acks.pop(packet.id, None) if packet.id is not None else None
            if callback is not None:
                callback(*packet.data)
        elif ptype == DISCONNECT:
            self.connection.remove(self)
            self.closedBy("client namespace disconnect")

    def closedBy(self, reason: str) -> None:
        """
        The namespace is disconnected (by the client, or the session ended).
        """
        if not self.connected:
            return
        self.connected = False
        self.closed = True
        self._acks.clear()
        self.handler.onDisconnect(reason)

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
        connection.remove(self)
        self.closedBy("server namespace disconnect")
        if not connection.sockets:
            connection.engine.close("server namespace disconnect")

    def closeConnection(self, reason: str = "server close") -> None:
        """
        Close the whole underlying session (its client may reconnect).
        """
        self.connection.engine.close(reason)


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

    def remove(self, socket: NamespaceSocket) -> None:
        """
        C{socket}'s namespace is no longer connected.
        """
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
            socket.onPacket(packet)
        else:
            self._refuse("packet type %d for namespace %s in this state" % (packet.type, packet.nsp))

    def onClose(self, reason: str) -> None:
        self._cancelConnectTimeout()
        sockets, self.sockets = self.sockets, {}
        for socket in sockets.values():
            socket.closedBy(reason)
        pending, self._pending = self._pending, {}
        for socket in pending.values():
            socket.abandoned(reason)

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

    # -- connecting a namespace --

    def _connect(self, nsp: str, auth: dict[str, JSON]) -> None:
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
            socket.abandoned("transport close")
            return
        self._cancelConnectTimeout()
        self.sockets[socket.nsp] = socket
        socket.connected = True
        self._sendPacket(encodePacket(CONNECT, socket.nsp, {"sid": socket.sid}))
        socket.sendHeld()

    def _refused(self, socket: NamespaceSocket, refusal: ConnectRefused) -> None:
        if self._pending.get(socket.nsp) is socket:
            del self._pending[socket.nsp]
        socket.abandoned()
        self._sendPacket(encodePacket(CONNECT_ERROR, socket.nsp, refusal.payload()))

    def _connectFailed(self, socket: NamespaceSocket, f: Failure) -> None:
        if isinstance(f.value, ConnectRefused):
            self._refused(socket, f.value)
            return
        self._log.failure("connecting {peer} to {nsp} failed", f, peer=self.engine.peer, nsp=socket.nsp)
        self._refused(socket, ConnectRefused("server error"))


class SocketIoServer:
    """
    Socket.IO over an L{EngineServer
    <twisted_chat.frontends.socketio.engineio.server.EngineServer>}: give it
    as the engine's C{handlerFactory}. C{namespaces} maps names to handler
    factories.
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
