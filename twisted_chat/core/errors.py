# -*- test-case-name: tests.core.test_service -*-
"""
The exceptions of the chat service: L{ChatError} for requests it refuses,
L{StoreUnavailable} for a message store that cannot be used for now, and
L{FailureLog}, which logs a store's failures the way an operator wants
them: the expected ones as one line, the unexpected ones with a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from twisted.logger import Logger
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime


class ChatError(Exception):
    """
    A request was refused; nothing changed.

    C{code} is machine-readable (it travels in json-mode C{error} events),
    C{message} is for people (it travels in C{!!! } lines).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


class StoreUnavailable(Exception):
    """
    The message store cannot do this now, for an operational reason that
    is not a bug and that an operator fixes outside the daemon: the disk is
    full, an I/O error, the database stayed locked, Redis is unreachable or
    does not answer in time. What was asked was not done (a message was not
    stored); the same request may succeed later.

    C{reason} says why, for people (one line, no traceback needed).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class _Repeats:
    """
    Failures of one kind logged by a L{FailureLog} within its interval.
    """

    __slots__ = ("since", "count", "why", "fields", "timer")

    def __init__(self, since: float) -> None:
        #: when the interval began
        self.since = since
        self.count = 0
        self.why = ""
        self.fields: dict[str, Any] = {}
        self.timer: IDelayedCall | None = None


class FailureLog:
    """
    Logs failures of the message store (or of what depends on it).

    A L{StoreUnavailable} is expected: it is logged as one warning line,
    C{"FORMAT: REASON"}, without a traceback. While failures of the same
    kind (the same format) repeat, they are not logged one by one: at most
    one line per C{interval} seconds says how many more there were, so a
    disk that stays full for a minute gives a handful of lines, not one per
    message. Any other failure is unexpected (a bug): it is logged with its
    traceback, every time.
    """

    def __init__(self, log: Logger, clock: Callable[[], IReactorTime], interval: float = 10.0) -> None:
        self._log = log
        self._clock = clock
        self.interval = interval
        self._repeats: dict[str, _Repeats] = {}

    def failure(self, format: str, failure: Failure, **fields: Any) -> None:
        """
        Log C{failure} of what C{format} (a L{twisted.logger} format, with
        C{fields}) describes.
        """
        if failure.check(StoreUnavailable):
            self.unavailable(format, str(failure.value), **fields)
        else:
            self._log.failure(format, failure, **fields)

    def unavailable(self, format: str, why: str, **fields: Any) -> None:
        """
        Log an expected failure of what C{format} describes, for the reason
        C{why}: one line now, or counted if one was logged less than
        C{interval} seconds ago.
        """
        repeats = self._repeats.get(format)
        if repeats is not None:
            repeats.count += 1
            repeats.why = why
            repeats.fields = fields
            return
        self._log.warn(format + ": {why}", why=why, **fields)
        self._count(format)

    def _count(self, format: str) -> None:
        """
        Count the failures of the kind C{format} for an interval from now.
        """
        clock = self._clock()
        repeats = self._repeats[format] = _Repeats(clock.seconds())
        repeats.timer = clock.callLater(self.interval, self._summary, format)

    def _summary(self, format: str) -> None:
        """
        The interval after a logged failure is over: say how many more
        failures of that kind there were. If there were any, the next
        interval counts again; if not, the next failure is logged at once.
        """
        repeats = self._repeats.pop(format)
        if repeats.count:
            self._says(format, repeats)
            self._count(format)

    def _says(self, format: str, repeats: _Repeats) -> None:
        self._log.warn(
            format + ": {why} (and {repeats} more times in {seconds:g} s)",
            why=repeats.why,
            repeats=repeats.count,
            seconds=round(self._clock().seconds() - repeats.since, 1),
            **repeats.fields,
        )

    def flush(self) -> None:
        """
        Log what is counted and not said yet, and stop waiting (on
        shutdown).
        """
        repeats, self._repeats = self._repeats, {}
        for format, r in repeats.items():
            if r.timer is not None and r.timer.active():
                r.timer.cancel()
            if r.count:
                self._says(format, r)
