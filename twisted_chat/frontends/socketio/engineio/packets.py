# -*- test-case-name: tests.frontends.socketio.test_engineio -*-
"""
The Engine.IO v4 wire format: packets, HTTP long-polling payloads, and the
error codes and JSON bodies that the protocol's clients know.

Written from the public protocol description (engine.io-protocol, v4).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Literal, Union, overload

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

#: the data of a message: text, or binary
Data = Union[str, bytes]
#: one packet: its type and its data (None when it has none)
Packet = tuple[int, Union[str, bytes, None]]


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


def checkQuery(transport: str | None, eio: str | None) -> None:
    """
    The query every request must carry; raises L{EngineError}.
    """
    if transport not in (POLLING, WEBSOCKET):
        raise EngineError(UNKNOWN_TRANSPORT)
    if eio != PROTOCOL_VERSION:
        raise EngineError(UNSUPPORTED_PROTOCOL_VERSION)


@overload
def encodePacket(ptype: int, data: str | None = None) -> str: ...


@overload
def encodePacket(ptype: int, data: bytes, binaryAsBase64: Literal[True] = True) -> str: ...


@overload
def encodePacket(ptype: int, data: bytes, binaryAsBase64: Literal[False]) -> bytes: ...


@overload
def encodePacket(ptype: int, data: Data | None = None, binaryAsBase64: bool = True) -> Data: ...


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
    return SEPARATOR.join(encodePacket(t, d) for t, d in packets).encode("utf-8")


def decodePayload(body: bytes) -> list[Packet]:
    """
    The packets of one HTTP long-polling request body. Raises L{ProtocolError}.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("payload is not UTF-8")
    return [decodePacket(record) for record in text.split(SEPARATOR)]


def packetSize(data: Data | None) -> int:
    """
    What a packet with C{data} counts against a session's outgoing bound.
    """
    return 1 + (len(data) if data is not None else 0)
