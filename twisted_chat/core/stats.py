# -*- test-case-name: tests.daemon.test_ops -*-
"""
What the service reports about itself: the L{Stats} it calls as things
happen (the daemon's are Prometheus metrics, see
L{twisted_chat.daemon.ops}), the recent warnings and errors, and the
lines of C{/status}.
"""

from __future__ import annotations

import time
from typing import Any, Protocol


#: the bounded labels of disconnect and leave reasons (see L{reasonLabel})
_REASONS = (
    "quit",
    "disconnected",
    "idle",
    "too slow",
    "flooding",
    "kicked",
    "banned",
    "server shutting down",
    "internal error",
    "reconnected",
)


def reasonLabel(reason: str) -> str:
    """
    The bounded label for a disconnect or leave reason ("quit: bye" → "quit").
    """
    for known in _REASONS:
        if reason.startswith(known):
            return known
    return "other"


class Stats:
    """
    What the service reports; this base class records nothing.
    """

    def messageStored(self, kind: str, seconds: float) -> None:
        pass

    def storeFailed(self) -> None:
        pass

    def delivered(self, count: int) -> None:
        pass

    def disconnected(self, reason: str) -> None:
        pass

    def refused(self, why: str) -> None:
        pass

    def throttled(self) -> None:
        pass


class RecentErrors:
    """
    A log observer that keeps the last C{size} warnings and errors, for
    admins (C{/status}); added to the global log publisher by the daemon.
    """

    def __init__(self, size: int = 20) -> None:
        from collections import deque

        self.events: deque[tuple[float, str]] = deque(maxlen=size)

    def __call__(self, event: dict[str, Any]) -> None:
        from twisted.logger import LogLevel, formatEvent

        level = event.get("log_level")
        if level is None or level < LogLevel.warn:
            return
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text += ": " + failure.getErrorMessage()
        self.events.append((event.get("log_time") or time.time(), " ".join(text.split())[:300]))


class _Observed(Protocol):
    """
    What C{/status} reads of the service.
    """

    members: Any
    rooms: dict[str, Any]
    admission: Any


def statusLines(service: _Observed, errors: RecentErrors | None, started: float, now: float) -> list[str]:
    """
    What C{/status} tells an admin: this node, its connections by front-end,
    rooms, and recent warnings and errors.
    """
    import os
    import socket

    byKind: dict[str, int] = {}
    for m in list(service.members):
        kind = getattr(m.client, "kind", "other")
        byKind[kind] = byKind.get(kind, 0) + 1
    kinds = ", ".join("%s %d" % kv for kv in sorted(byKind.items())) or "none"
    lines = [
        "node %s pid %d, up %d s" % (socket.gethostname(), os.getpid(), max(0, int(now - started))),
        "connections: %d open, %d in the chat (%s)" % (service.admission.total, len(service.members), kinds),
        "rooms: %d; biggest: %s"
        % (
            len(service.rooms),
            ", ".join("%s (%d)" % (r.name, len(r.members)) for r in sorted(service.rooms.values(), key=lambda r: -len(r.members))[:5])
            or "none",
        ),
    ]
    recent = list(errors.events) if errors is not None else []
    if not recent:
        lines.append("recent errors: none")
    else:
        lines.append("recent errors (last %d):" % (len(recent),))
        for t, text in recent[-10:]:
            lines.append("  %s %s" % (time.strftime("%H:%M:%S", time.gmtime(t)), text))
    return lines
