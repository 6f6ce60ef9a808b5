# -*- test-case-name: tests.frontends.socketio.test_engineio -*-
"""
Engine.IO, protocol version 4: the transport layer under Socket.IO.

C{packets} is the wire format; C{session} one session (L{EngineSocket}),
whichever transport carries it: HTTP long-polling (C{polling}) or a
WebSocket (C{websocket}); C{server} the sessions of this process
(L{EngineServer}); C{http} the resource at C{/socket.io/}
(L{EngineResource}). What runs on top of a session is its handler
(L{EngineHandler}), made by the server's C{handlerFactory}.

Written from the public protocol description (engine.io-protocol, v4).
"""

from twisted_chat.frontends.socketio.engineio.http import BoundedRequest, EngineResource
from twisted_chat.frontends.socketio.engineio.packets import (
    BAD_REQUEST, CLOSE, FORBIDDEN, MESSAGE, NOOP, OPEN, PING, PONG, UPGRADE, Data, EngineError, Packet, ProtocolError,
    decodePacket, decodePayload, encodePacket, encodePayload,
)
from twisted_chat.frontends.socketio.engineio.server import EngineServer, SessionAdmission
from twisted_chat.frontends.socketio.engineio.session import EngineHandler, EngineSocket

__all__ = [
    "BoundedRequest", "EngineResource",
    "BAD_REQUEST", "CLOSE", "FORBIDDEN", "MESSAGE", "NOOP", "OPEN", "PING", "PONG", "UPGRADE",
    "Data", "EngineError", "Packet", "ProtocolError",
    "decodePacket", "decodePayload", "encodePacket", "encodePayload",
    "EngineServer", "SessionAdmission",
    "EngineHandler", "EngineSocket",
]
