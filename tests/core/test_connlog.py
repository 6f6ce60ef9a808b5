"""
Tests for how connections show in the log (L{twisted_chat.core.connlog},
through the service): by default a periodic summary and no line per
connection; with C{logConnections}, a debug line for each as well.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from twisted_chat.core.service import ChatService
from twisted_chat.stores.memory import MemoryStore

from tests.support.fakes import RecordingClient


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    """
    Every log event published while the test runs.
    """
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(events.append)


def started(logConnections: bool = False, summary: float = 60.0) -> tuple[ChatService, Clock]:
    clock = Clock()
    service = ChatService(MemoryStore(), clock=clock, logConnections=logConnections, connectionSummary=summary)
    service.startService()
    return service, clock


def texts(events: list[dict[str, Any]], containing: str) -> list[str]:
    return [formatEvent(e) for e in events if containing in formatEvent(e)]


def test_noLinePerConnectionByDefault(logged: list[dict[str, Any]]) -> None:
    """
    By default a connection and a disconnection log nothing of their own:
    a minute later one summary counts them by front-end and by reason (its
    label, not the text of a quit message), with the connections still
    open; a quiet minute logs nothing.
    """
    service, clock = started()
    amy = service.connect(RecordingClient(), "amy", peer="127.0.0.1:5000")  # type: ignore[arg-type]
    bob = service.connect(RecordingClient(), "bob", peer="127.0.0.1:5001")  # type: ignore[arg-type]
    service.connect(RecordingClient(), "cyd", peer="127.0.0.1:5002")  # type: ignore[arg-type]
    amy.quit("quit: bye")
    service.quit(bob, "disconnected")
    assert texts(logged, "connected from") == []
    assert texts(logged, "disconnected (") == []
    assert texts(logged, "connections since") == []
    clock.advance(60)
    assert texts(logged, "connections since") == [
        "connections since the last summary: 3 opened (test 3), 2 closed (disconnected 1, quit 1); 1 open"
    ]
    clock.advance(60)
    assert len(texts(logged, "connections since")) == 1


def test_summaryByFrontEnd(logged: list[dict[str, Any]]) -> None:
    """
    The summary names each front-end (the client's C{kind}) with its count,
    and carries the counts as fields for structured logs.
    """
    service, clock = started(summary=10)
    for kind, n in (("line", 2), ("ws-text", 3)):
        for _ in range(n):
            client = RecordingClient()
            client.kind = kind  # type: ignore[attr-defined]
            service.connect(client)  # type: ignore[arg-type]
    clock.advance(10)
    [event] = [e for e in logged if "connections since" in formatEvent(e)]
    assert formatEvent(event) == "connections since the last summary: 5 opened (line 2, ws-text 3), 0 closed (none); 5 open"
    assert event["openedBy"] == {"line": 2, "ws-text": 3}
    assert event["log_level"] == LogLevel.info


def test_lastSummaryOnShutdown(logged: list[dict[str, Any]]) -> None:
    """
    What happened since the last summary is told when the service stops.
    """
    service, clock = started()
    member = service.connect(RecordingClient(), "amy")  # type: ignore[arg-type]
    clock.advance(60)
    member.quit("quit: bye")
    service.stopService()
    assert texts(logged, "connections since")[-1] == (
        "connections since the last summary: 0 opened (none), 1 closed (quit 1); 0 open"
    )


def test_linePerConnectionAtDebug(logged: list[dict[str, Any]]) -> None:
    """
    With C{logConnections} every connection and disconnection is also a
    line of its own, at debug level, with its nick, peer, front-end and
    reason.
    """
    service, clock = started(logConnections=True)
    client = RecordingClient()
    client.kind = "line"  # type: ignore[attr-defined]
    amy = service.connect(client, "amy", peer="127.0.0.1:5000")  # type: ignore[arg-type]
    amy.quit("quit: bye")
    lines = [e for e in logged if "connected" in formatEvent(e)]
    assert [(formatEvent(e), e["log_level"]) for e in lines] == [
        ("amy connected from 127.0.0.1:5000 via line", LogLevel.debug),
        ("amy disconnected (quit: bye)", LogLevel.debug),
    ]
    clock.advance(60)
    assert texts(logged, "connections since") == [
        "connections since the last summary: 1 opened (line 1), 1 closed (quit 1); 0 open"
    ]


def test_noSummary(logged: list[dict[str, Any]]) -> None:
    """
    C{connectionSummary=0}: no summary, ever.
    """
    service, clock = started(summary=0)
    service.connect(RecordingClient(), "amy")  # type: ignore[arg-type]
    clock.advance(3600)
    service.stopService()
    assert texts(logged, "connections since") == []
