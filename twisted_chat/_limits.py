# -*- test-case-name: tests.test_limits -*-
"""
Fairness under abuse: flood control per connection, and admission limits
(connections in all, connections per address, banned addresses).
"""

from __future__ import annotations

from typing import Any

from twisted_chat._errors import ChatError
from twisted_chat._settings import Settings


class FloodGuard:
    """
    A token bucket for one connection's requests, and a second, leaky one
    for its refusals.

    Each request costs one token; tokens come back at C{rate} a second up to
    C{burst}. A request with no token left is refused (and dropped). Every
    refusal adds a strike; strikes leak away at C{rate} a second, so a client
    that is only a little too fast is slowed down, while one that keeps
    flooding gathers C{kickAfter} strikes within seconds and is disconnected.
    """

    __slots__ = ("tokens", "strikes", "at")

    def __init__(self, burst: float, now: float) -> None:
        self.tokens = burst
        self.strikes = 0.0
        self.at = now

    def take(self, now: float, rate: float, burst: float) -> bool:
        elapsed = now - self.at
        self.at = now
        if elapsed > 0:
            self.tokens = min(burst, self.tokens + elapsed * rate)
            self.strikes = max(0.0, self.strikes - elapsed * rate)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.strikes += 1
        return False


class Admission:
    """
    Who may open a connection: at most C{maxConnections} in all and
    C{maxPerHost} from one address (0: no limit), and none from a banned one.

    Front-ends call L{admit} before anything else and L{release} when the
    connection is gone; both are cheap dictionary operations.

    The two limits are read from C{settings} (the service's L{Settings},
    changed on reload) at every admission; without one, the admission gets
    settings of its own with the limits given.
    """

    def __init__(self, maxConnections: int = 0, maxPerHost: int = 0, settings: Settings | None = None) -> None:
        if settings is None:
            settings = Settings(maxConnections=maxConnections, maxPerHost=maxPerHost)
        self.settings = settings
        self.total = 0
        self.perHost: dict[str, int] = {}
        self.bannedHosts: set[str] = set()
        #: told about refusals (metrics); set by the service
        self.stats: Any = None

    @property
    def maxConnections(self) -> int:
        return self.settings.maxConnections

    @maxConnections.setter
    def maxConnections(self, value: int) -> None:
        self.settings.maxConnections = value

    @property
    def maxPerHost(self) -> int:
        return self.settings.maxPerHost

    @maxPerHost.setter
    def maxPerHost(self, value: int) -> None:
        self.settings.maxPerHost = value

    def _refuse(self, code: str, message: str) -> ChatError:
        if self.stats is not None:
            self.stats.refused(code)
        return ChatError(code, message)

    def admit(self, host: str) -> None:
        """
        Count a new connection from C{host}, or raise L{ChatError} saying why
        it is refused (nothing is counted then).
        """
        if host in self.bannedHosts:
            raise self._refuse("banned", "your address is banned from this server")
        settings = self.settings
        maxConnections = settings.maxConnections
        if maxConnections and self.total >= maxConnections:
            raise self._refuse(
                "server-full", "the server is full (%d connections): please try again later" % (maxConnections,)
            )
        count = self.perHost.get(host, 0)
        maxPerHost = settings.maxPerHost
        if maxPerHost and count >= maxPerHost:
            raise self._refuse(
                "too-many-connections",
                "too many connections from your address (at most %d): close one first" % (maxPerHost,),
            )
        self.perHost[host] = count + 1
        self.total += 1

    def release(self, host: str) -> None:
        count = self.perHost.get(host, 0)
        if count <= 1:
            self.perHost.pop(host, None)
        else:
            self.perHost[host] = count - 1
        if self.total > 0:
            self.total -= 1
