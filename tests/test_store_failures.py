"""
L{FailureLog}: how failures of the message store are logged.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import LogLevel, Logger, capturedLogs, formatEvent
from twisted.python.failure import Failure

from twisted_chat._errors import FailureLog, StoreUnavailable


# == FailureLog ================================================================


def unavailable(why: str = "disk full") -> Failure:
    return Failure(StoreUnavailable(why))


def lines(events: list[dict[str, Any]]) -> list[str]:
    return [formatEvent(e) for e in events]


def test_failureLogSaysAnExpectedFailureInOneLine() -> None:
    """
    A L{StoreUnavailable} is one warning line, C{FORMAT: REASON}, without a
    traceback; its repeats within the interval are one line at its end
    with their number (and the last one's fields and reason); while they go
    on, one such line per interval; after an interval without any, the
    next failure is a line of its own again.
    """
    clock = Clock()
    log = FailureLog(Logger(namespace="test"), lambda: clock, interval=10.0)
    with capturedLogs() as events:
        log.failure("history of {room} failed", unavailable(), room="#a")
        for room in ("#b", "#c"):
            clock.advance(3)
            log.failure("history of {room} failed", unavailable("gone"), room=room)
        log.failure("saving the token of {nick} failed", unavailable(), nick="bob")
        clock.advance(4)
        clock.advance(5)
        log.failure("history of {room} failed", unavailable(), room="#d")
        clock.advance(5)
        clock.advance(10)
        clock.advance(10)
        log.failure("history of {room} failed", unavailable(), room="#e")
    assert lines(events) == [
        "history of #a failed: disk full",
        "saving the token of bob failed: disk full",
        "history of #c failed: gone (and 2 more times in 10 s)",
        "history of #d failed: disk full (and 1 more times in 10 s)",
        "history of #e failed: disk full",
    ]
    assert {e["log_level"] for e in events} == {LogLevel.warn}
    assert [e for e in events if "log_failure" in e] == []


def test_failureLogTracesUnexpectedFailures() -> None:
    """
    Any other failure is a bug: logged as critical with its traceback,
    every time, repeats or not.
    """
    clock = Clock()
    log = FailureLog(Logger(namespace="test"), lambda: clock)
    with capturedLogs() as events:
        for _ in range(2):
            try:
                1 / 0
            except ZeroDivisionError:
                log.failure("history of {room} failed", Failure(), room="#a")
    assert lines(events) == ["history of #a failed"] * 2
    assert [e["log_level"] for e in events] == [LogLevel.critical] * 2
    assert [e["log_failure"].type for e in events] == [ZeroDivisionError] * 2
    assert clock.getDelayedCalls() == []


def test_failureLogFlushSaysWhatItCounted() -> None:
    """
    C{flush} (on shutdown, or when the store works again) says the repeats
    counted so far and stops waiting; the next failure is a line of its own.
    """
    clock = Clock()
    log = FailureLog(Logger(namespace="test"), lambda: clock)
    with capturedLogs() as events:
        log.unavailable("storing a message failed", "disk full")
        log.unavailable("storing a message failed", "disk full")
        log.unavailable("pruning failed", "locked")
        clock.advance(3)
        log.flush()
        assert clock.getDelayedCalls() == []
        log.unavailable("storing a message failed", "disk full")
    assert lines(events) == [
        "storing a message failed: disk full",
        "pruning failed: locked",
        "storing a message failed: disk full (and 1 more times in 3 s)",
        "storing a message failed: disk full",
    ]

