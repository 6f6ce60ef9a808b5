# -*- test-case-name: tests.frontends.test_write -*-
"""
Keeping open WebSocket connections small (a WebSocket connection is mostly
idle: its size is the server's capacity). Once a connection is open,
L{slim} sheds what Autobahn keeps per connection and no longer needs: the
handshake's leftovers, per-connection copies of the factory's options
(kept once, on a class made per factory: L{configuredClass}), state at its
default values, an empty send queue (L{NoQueue}) and traffic counters.
"""

from __future__ import annotations

from collections import deque
from types import FunctionType
from typing import Any

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.protocol import TrafficStats, WebSocketProtocol
from twisted.internet.defer import Deferred, succeed


#: what only the opening handshake reads: dropped once the connection is open
_HANDSHAKE_ONLY = (
    "http_headers",
    "http_request_data",
    "http_response_data",
    "http_status_line",
    "http_request_params",
    "http_request_uri",
    "http_request_host",
    "http_request_path",
    "websocket_protocols",
    "websocket_extensions",
    "websocket_origin",
    "_wskey",
)
#: the protocol options Autobahn copies from its factory into every connection
_CONFIG_ATTRS = tuple(WebSocketServerProtocol.CONFIG_ATTRS)
#: one TrafficStats for all connections: Autobahn adds to its counters on
#: every frame, nobody here reads them, and each one costs ~1 KB
_SHARED_STATS = TrafficStats()
_MISSING = object()
#: the is_open of every open connection (see ChatWebSocketProtocol._slim)
_OPENED: Deferred[None] = succeed(None)
#: Autobahn's per-connection state that an open, quiet connection has at
#: these values: kept as class attributes of the configured class instead
#: (reading falls back to them; Autobahn's first write makes its own again)
_STATE_DEFAULTS: dict[str, Any] = dict.fromkeys(
    (
        "autoPingPending", "autoPingTimeoutCall", "closeHandshakeTimeoutCall", "current_frame",
        "localCloseCode", "localCloseReason", "openHandshakeTimeoutCall", "remoteCloseCode",
        "remoteCloseReason", "trackedTimings", "wasNotCleanReason", "_perMessageCompress",
        "websocket_protocol_in_use",
    ),
    None,
)
_STATE_DEFAULTS.update(
    dict.fromkeys(
        (
            "closedByMe", "droppedByMe", "failedByMe", "inside_message", "triggered", "wasClean",
            "wasCloseHandshakeTimeout", "wasMaxFramePayloadSizeExceeded", "wasMaxMessagePayloadSizeExceeded",
            "wasOpenHandshakeTimeout", "wasServerConnectionDropTimeout", "wasServingFlashSocketPolicyFile",
        ),
        False,
    )
)


class Unformatted:
    """
    Stands for C{pformat(value)} in a debug log event: formatted only if
    someone reads it. Autobahn pretty-prints its 29 options for a debug line
    on every new connection, debug on or off: ~10% of a handshake.
    """

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        from pprint import pformat

        return pformat(self.value)

    __repr__ = __str__


class NoQueue:
    """
    The C{send_queue} of a connection that never queued a write (Autobahn
    queues only for its chopped and sync writes, which are not used here):
    empty, and a real deque from the first append on. An empty deque costs
    ~600 bytes per connection.
    """

    __slots__ = ("_proto",)

    def __init__(self, proto: WebSocketProtocol) -> None:
        self._proto = proto

    def __len__(self) -> int:
        return 0

    def __bool__(self) -> bool:
        return False

    def append(self, item: Any) -> None:
        q: deque[Any] = deque()
        self._proto.send_queue = q
        q.append(item)

    def popleft(self) -> Any:
        raise IndexError("pop from an empty deque")


def configuredClass(factory: Any, base: type) -> type | None:
    """
    A subclass of C{base} holding C{factory}'s current protocol options as
    class attributes, made once per factory (and again if the options
    change), so that connections need not carry copies of them.
    """
    if not all(hasattr(factory, name) for name in _CONFIG_ATTRS):
        return None
    values = tuple(getattr(factory, name) for name in _CONFIG_ATTRS)
    cache: dict[type, tuple[tuple[Any, ...], type]] = factory.__dict__.setdefault("_configuredClasses", {})
    known = cache.get(base)
    if known is not None and all(a is b for a, b in zip(known[0], values)):
        return known[1]
    if getattr(base, "_configuredFor", None) is not None:
        # already a configured class (of an older option set): derive from its parent
        base = base.__mro__[1]
        known = cache.get(base)
        if known is not None and all(a is b for a, b in zip(known[0], values)):
            return known[1]
    attrs: dict[str, Any] = dict(_STATE_DEFAULTS)
    attrs.update(
        websocket_extensions_in_use=(),
        is_open=_OPENED,
        _transport_details=None,
        trafficStats=_SHARED_STATS,
        websocket_version=13,
        send_state=WebSocketProtocol.SEND_STATE_GROUND,
    )
    if hasattr(factory, "service"):
        attrs["service"] = factory.service
    # (a function option, such as perMessageCompressionAccept, must not
    # become a method of the class: read through an instance, it is the
    # function itself, as it was as an instance attribute)
    attrs.update((name, staticmethod(v) if isinstance(v, FunctionType) else v) for name, v in zip(_CONFIG_ATTRS, values))
    attrs["_configuredFor"] = factory
    attrs["__module__"] = base.__module__
    cls = type(base.__name__, (base,), attrs)
    cache[base] = (values, cls)
    return cls


def slim(proto: Any, cls: type | None = None) -> None:
    """
    Shed what an open connection no longer needs (a WebSocket connection
    is mostly idle: its size is the server's capacity): the handshake's
    leftovers, the per-connection copies of the factory's options (kept
    once, on a subclass made per factory: C{cls} when the caller knows it
    already), an empty send queue and Autobahn's traffic counters; then
    rebuild the instance dict, which never shrinks by itself.
    """
    d = proto.__dict__
    for name in _HANDSHAKE_ONLY:
        d.pop(name, None)
    if cls is None:
        cls = configuredClass(proto.factory, type(proto))
    if cls is not None:
        for name in _CONFIG_ATTRS:
            value = d.get(name, _MISSING)
            if value is not _MISSING and value is getattr(cls, name, _MISSING):
                del d[name]
        for name, default in _STATE_DEFAULTS.items():
            if d.get(name, _MISSING) is default:
                del d[name]
        proto.__class__ = cls
        # the configured class also holds these, the same for all:
        if d.get("websocket_extensions_in_use") == []:
            del d["websocket_extensions_in_use"]  # (an empty tuple there)
        if getattr(d.get("is_open"), "called", False):
            # Resolved by Autobahn when the handshake succeeded, never
            # read again by a server connection: one resolved Deferred.
            del d["is_open"]
        # read by Autobahn only up to its _onOpen (TLS channel bindings)
        d.pop("_transport_details", None)
        # nobody reads Autobahn's traffic counters here: one shared
        d.pop("trafficStats", None)
        for name in ("websocket_version", "send_state", "service"):
            if d.get(name, _MISSING) == getattr(cls, name, _MISSING):
                del d[name]
    if type(proto.send_queue) is deque and not proto.send_queue:
        proto.send_queue = NoQueue(proto)
    if proto._listeners is None:
        # Autobahn's observable events ("message" listeners): none are
        # registered, so fire() returns before it needs these two
        d.pop("_results", None)
        d.pop("_valid_events", None)
    proto.__dict__ = dict(d)
