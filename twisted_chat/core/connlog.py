# -*- test-case-name: tests.core.test_connlog -*-
"""
How connections show in the log: by default a count and a periodic
summary (a restart of a busy server is tens of thousands of connections in
a minute, and a log line per connection was a tenth of a handshake's CPU);
with C{--log-connections}, one line per connection and disconnection as
well, at debug level.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from twisted_chat.core.stats import reasonLabel


class ConnectionLog:
    """
    Counts connections and disconnections and logs a summary every
    C{interval} seconds in which any happened (0: no summary); with
    C{perConnection}, also one debug line for each.
    """

    _log = Logger()

    def __init__(
        self,
        clock: Callable[[], IReactorTime],
        interval: float = 60.0,
        perConnection: bool = False,
        openCount: Callable[[], int] = lambda: 0,
    ) -> None:
        self._clock = clock
        self.interval = interval
        self.perConnection = perConnection
        self._openCount = openCount
        #: since the last summary: front-end -> connections, reason -> disconnections
    #: (the bounded label of the reason: "quit: bye" counts as "quit")
        self.opened: dict[str, int] = {}
        self.closed: dict[str, int] = {}
        self._loop: LoopingCall | None = None

    def connected(self, nick: str, peer: str, frontend: str) -> None:
        opened = self.opened
        opened[frontend] = opened.get(frontend, 0) + 1
        if self.perConnection:
            self._log.debug("{nick} connected from {peer} via {frontend}", nick=nick, peer=peer, frontend=frontend)

    def disconnected(self, nick: str, reason: str) -> None:
        closed = self.closed
        label = reasonLabel(reason)
        closed[label] = closed.get(label, 0) + 1
        if self.perConnection:
            self._log.debug("{nick} disconnected ({reason})", nick=nick, reason=reason)

    def start(self) -> None:
        if self.interval > 0 and self._loop is None:
            self._loop = LoopingCall(self.summary)
            self._loop.clock = self._clock()
            self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        """
        Stop the periodic summary, after a last one for what is not told yet.
        """
        if self._loop is not None:
            if self._loop.running:
                self._loop.stop()
            self._loop = None
            self.summary()

    def summary(self) -> None:
        """
        Log what happened since the last summary (nothing if nothing did).
        """
        opened, closed = self.opened, self.closed
        if not opened and not closed:
            return
        self.opened, self.closed = {}, {}
        self._log.info(
            "connections since the last summary: {opened} opened ({byFrontend}), {closed} closed ({byReason}); {open} open",
            opened=sum(opened.values()),
            closed=sum(closed.values()),
            byFrontend=_counts(opened),
            byReason=_counts(closed),
            open=self._openCount(),
            openedBy=opened,
            closedBy=closed,
        )


def _counts(counts: dict[str, int]) -> str:
    """
    C{{"line": 3, "ws-text": 5}} as C{"line 3, ws-text 5"}.
    """
    return ", ".join("%s %d" % item for item in sorted(counts.items())) or "none"
