# -*- test-case-name: tests.core.test_limits -*-
"""
Fairness under abuse: flood control per connection (the service's token
bucket, L{FloodGuard}; the front-ends' half is
L{twisted_chat.frontends.throttle.ThrottledInput}), and admission limits
(connections in all, connections per address, banned addresses).

Flood control throttles, it never drops: a connection that makes requests
faster than C{--flood-rate} (after a burst of C{--flood-burst}) is slowed
down to that rate. Its front-end stops reading from it while it has to
wait, so its input waits in the kernel (or its HTTP POST waits for an
answer), and what was read already waits in order; only a connection with
more than C{--flood-kick} requests waiting is disconnected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from twisted_chat.core.errors import ChatError
from twisted_chat.core.settings import Settings

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

#: seconds of waiting so short they count as none: what is left after a
#: timer fired exactly when asked, because of float error (clocks count
#: seconds since 1970: a difference of two of them is off by up to ~0.2 µs)
_NO_WAIT = 1e-6


class FloodGuard:
    """
    A token bucket for one connection's requests.

    Each request costs one token (L{spend}); tokens come back at C{rate} a
    second up to C{burst}. The service never refuses a request for want of a
    token: a front-end asks L{wait} before it hands one over, and holds it
    for that long. A request made without a token (the one request of a
    front-end that costs two, or lines held behind a login) leaves a debt:
    the next wait is longer.
    """

    __slots__ = ("tokens", "at")

    def __init__(self, burst: float, now: float) -> None:
        self.tokens = burst
        self.at = now

    def _refill(self, now: float, rate: float, burst: float) -> float:
        elapsed = now - self.at
        self.at = now
        tokens = self.tokens
        if elapsed > 0:
            tokens = self.tokens = min(burst, tokens + elapsed * rate)
        return tokens

    def spend(self, now: float, rate: float, burst: float) -> None:
        """
        Charge one request.
        """
        self.tokens = self._refill(now, rate, burst) - 1

    def wait(self, now: float, rate: float, burst: float) -> float:
        """
        Seconds until the next request may be made: 0 while a token is left.
        """
        tokens = self._refill(now, rate, burst)
        if tokens >= 1:
            return 0.0
        wait = (1 - tokens) / rate
        return wait if wait >= _NO_WAIT else 0.0


class MachineCount(Protocol):
    """
    The connections of a whole machine (a C{--workers} parent keeps the
    count; see L{twisted_chat.daemon.machine}): a worker asks it before
    admitting a connection while a limit is on, and tells it about every
    connection it admits and releases, so the count is right when a limit
    is switched on later.
    """

    @property
    def connected(self) -> bool:
        """
        Whether the count can be asked now (else this process counts alone).
        """

    def ask(self, host: str, maxConnections: int, maxPerHost: int) -> Deferred[str]:
        """
        Count one more connection from C{host} unless that would pass a
        limit: fires with "" (counted) or the code of the refusal.
        """

    def tell(self, host: str) -> None:
        """
        Count one more connection from C{host} (no limit to check).
        """

    def release(self, host: str) -> None:
        """
        A connection from C{host} (counted by L{ask} or L{tell}) is gone.
        """


def refusal(code: str, maxConnections: int, maxPerHost: int) -> tuple[str, str]:
    """
    The code and message of a refused connection.
    """
    if code == "server-full":
        return code, "the server is full (%d connections): please try again later" % (maxConnections,)
    return "too-many-connections", "too many connections from your address (at most %d): close one first" % (maxPerHost,)


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
        #: the machine's count, in a worker of a --workers parent: the
        #: limits then hold for the whole machine (see L{admitLater})
        self.machine: MachineCount | None = None
        #: hosts of connections the machine counted (and must be told of
        #: when they are released), with how many
        self._machineCounted: dict[str, int] = {}

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
            raise self._refuse(*refusal("server-full", maxConnections, 0))
        count = self.perHost.get(host, 0)
        maxPerHost = settings.maxPerHost
        if maxPerHost and count >= maxPerHost:
            raise self._refuse(*refusal("too-many-connections", 0, maxPerHost))
        self.perHost[host] = count + 1
        self.total += 1

    def admitLater(self, host: str) -> Deferred[None] | None:
        """
        L{admit}, for the whole machine when this process is one of its
        workers: None when the answer is known now (admitted: no limit is
        on, or this process counts alone), or a Deferred that fires once
        the machine has counted the connection, or fails with the
        L{ChatError} of its refusal (nothing is counted then). Raises the
        L{ChatError} of a refusal known now (a banned address). A caller
        whose connection is gone by the time the Deferred fires releases
        it as usual.
        """
        machine = self.machine
        if machine is None or not machine.connected:
            self.admit(host)
            return None
        if host in self.bannedHosts:
            raise self._refuse("banned", "your address is banned from this server")
        settings = self.settings
        maxConnections, maxPerHost = settings.maxConnections, settings.maxPerHost
        self.perHost[host] = self.perHost.get(host, 0) + 1
        self.total += 1
        self._machineCounted[host] = self._machineCounted.get(host, 0) + 1
        if not maxConnections and not maxPerHost:
            # (the fast path: nothing to wait for; the machine counts it all the same)
            machine.tell(host)
            return None

        def answered(code: str) -> None:
            if code:
                self._forget(host)
                self._uncount(host)
                raise self._refuse(*refusal(code, maxConnections, maxPerHost))

        def failed(f: Any) -> None:
            # (the parent went away while asked: counted here only)
            self._forget(host)
            return None

        return machine.ask(host, maxConnections, maxPerHost).addCallbacks(answered, failed)

    def _forget(self, host: str) -> bool:
        count = self._machineCounted.get(host, 0)
        if count <= 0:
            return False
        if count == 1:
            del self._machineCounted[host]
        else:
            self._machineCounted[host] = count - 1
        return True

    def release(self, host: str) -> None:
        machine = self.machine
        if machine is not None and self._forget(host) and machine.connected:
            machine.release(host)
        self._uncount(host)

    def _uncount(self, host: str) -> None:
        count = self.perHost.get(host, 0)
        if count <= 1:
            self.perHost.pop(host, None)
        else:
            self.perHost[host] = count - 1
        if self.total > 0:
            self.total -= 1
