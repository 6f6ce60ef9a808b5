# -*- test-case-name: tests.frontends.socketio.test_socketio -*-
"""
The Socket.IO v5 wire format: packets as text (type, attachment count,
namespace, ack id, JSON data), binary attachments as their own Engine.IO
messages, and a L{Decoder} that joins the two.

Written from the public protocol description (socket.io-protocol, v5).
"""

from __future__ import annotations

import json
from typing import Any

from twisted_chat.frontends.socketio.engineio.packets import Data, ProtocolError

#: packet types
CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK = range(7)

#: event names a client may not send: its library uses them itself
RESERVED_EVENTS = frozenset(
    ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"]
)

#: decoded JSON, with the attachments (bytes) in place: it has any shape
#: the client chose (json.loads returns Any)
JSON = Any

_DIGITS = frozenset("0123456789")
_encodeJson = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_encodeLoosely = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _noConstant(name: str) -> object:
    raise ValueError("%s is not JSON" % (name,))


_decodeJson = json.JSONDecoder(parse_constant=_noConstant).decode


def isText(value: JSON) -> bool:
    """
    Whether every string in the decoded JSON C{value} is real text: a lone
    surrogate (from an unpaired C{\\ud800}-C{\\udfff} escape) cannot be
    encoded as UTF-8, so it could not be sent on to anyone.
    """
    try:
        _encodeLoosely(value).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        return False
    return True


class Packet:
    """
    One Socket.IO packet: C{type}, namespace C{nsp}, C{data} (C{None} when
    absent), ack C{id} (C{None} when absent).
    """

    __slots__ = ("type", "nsp", "data", "id", "attachments")

    def __init__(
        self, type: int, nsp: str = "/", data: JSON = None, id: int | None = None, attachments: int = 0
    ) -> None:
        self.type = type
        self.nsp = nsp
        self.data = data
        self.id = id
        self.attachments = attachments

    def __repr__(self) -> str:
        return "<Packet %d %s %r id=%r>" % (self.type, self.nsp, self.data, self.id)


# -- encoding --


def _deconstruct(data: JSON, buffers: list[bytes]) -> JSON:
    if isinstance(data, (bytes, bytearray, memoryview)):
        buffers.append(bytes(data))
        return {"_placeholder": True, "num": len(buffers) - 1}
    if isinstance(data, (list, tuple)):
        return [_deconstruct(item, buffers) for item in data]
    if isinstance(data, dict):
        return {key: _deconstruct(value, buffers) for key, value in data.items()}
    return data


def _encode(ptype: int, nsp: str, data: JSON, id: int | None) -> tuple[str, list[bytes]]:
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
    return text, buffers


def encodePacket(ptype: int, nsp: str = "/", data: JSON = None, id: int | None = None) -> list[Data]:
    """
    The Engine.IO messages of one packet: its text, then its binary
    attachments. Binary values in the data of an EVENT or ACK are replaced by
    placeholders and the type becomes BINARY_EVENT or BINARY_ACK.
    """
    text, buffers = _encode(ptype, nsp, data, id)
    return [text, *buffers]


def encodeText(ptype: int, nsp: str = "/", data: JSON = None, id: int | None = None) -> str:
    """
    The one Engine.IO message of a packet whose data holds no binary values
    (C{ValueError} if it does).
    """
    text, buffers = _encode(ptype, nsp, data, id)
    if buffers:
        raise ValueError("binary data in a text-only packet")
    return text


# -- decoding --


def _validPayload(ptype: int, data: JSON, id: int | None) -> bool:
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


def _reconstruct(data: JSON, buffers: list[bytes]) -> JSON:
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
