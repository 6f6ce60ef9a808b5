# -*- test-case-name: tests.frontends.test_websocket -*-
"""
What every WebSocket endpoint of the daemon shares (the chat's, the echo
endpoint for the compliance suite, Engine.IO's): the Origin check, the
protocol options set deliberately rather than inherited from Autobahn's
defaults, unmasked text frames as a server sends them, and the echo
endpoint itself.
"""

from __future__ import annotations

import struct
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest

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


class EchoProtocol(WebSocketServerProtocol):
    """
    Echo every message back: the endpoint for the compliance suite.
    """

    def onConnect(self, request: ConnectionRequest) -> Any:
        if not originAllowed(request.headers.get("origin"), request.headers.get("host"), self.factory.allowedOrigins):
            raise ConnectionDeny(403, "origin not allowed")
        return None

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


class EchoFactory(WebSocketServerFactory):
    protocol = EchoProtocol
    noisy = False

    def __init__(self, allowedOrigins: list[str] | None = None, **options: Any) -> None:
        WebSocketServerFactory.__init__(self, server="twisted-chat")
        self.allowedOrigins = list(allowedOrigins or [])
        applyOptions(self, **options)


def _acceptDeflate(offers: list[Any]) -> Any:
    """
    Accept the first permessage-deflate offer (with --ws-compression).
    """
    from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept

    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


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
        perMessageCompressionAccept=_acceptDeflate if compression else None,
        webStatus=False,
        echoCloseCodeReason=False,
        tcpNoDelay=True,
    )
