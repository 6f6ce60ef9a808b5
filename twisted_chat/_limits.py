# -*- test-case-name: tests.test_limits -*-
"""
Fairness under abuse: flood control per connection (the service's token
bucket, L{FloodGuard}, and the front-ends' half, L{ThrottledInput}), and
admission limits (connections in all, connections per address, banned
addresses).

Flood control throttles, it never drops: a connection that makes requests
faster than C{--flood-rate} (after a burst of C{--flood-burst}) is slowed
down to that rate. Its front-end stops reading from it while it has to
wait, so its input waits in the kernel (or its HTTP POST waits for an
answer), and what was read already waits in order; only a connection with
more than C{--flood-kick} requests waiting is disconnected.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from twisted_chat._errors import ChatError
from twisted_chat._settings import Settings

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

    from twisted_chat._service import Member

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


class _Inbox:
    """
    What a throttled connection has read and not handled yet, in order,
    and the timer that lets the next of it through.
    """

    __slots__ = ("items", "wake")

    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        self.wake: IDelayedCall | None = None


class ThrottledInput:
    """
    Flood control, the front-end's half: requests wait, they are not refused.

    A front-end hands everything it reads (a line, a frame, an event), in
    order, to L{takeInput}. While its member may make a request now
    (C{member.floodWait()} is 0) that is handled at once (L{handleInput}).
    Once it may not, the front-end stops reading (L{pauseInput}: the bytes
    wait in the kernel, or the HTTP POST for its answer), what it had read
    already waits here in order, and a timer on the service's clock lets it
    through as the member's bucket refills; when all of it went through,
    reading resumes (L{resumeInput}). More than C{settings.floodKick}
    requests waiting disconnect the connection for flooding.

    Only a connection that waits has an inbox: the others store nothing.
    """

    member: Member | None = None
    _inbox: _Inbox | None = None
    _log = Logger()

    # -- to be supplied by the front-end --

    def handleInput(self, item: Any) -> None:
        """
        Act on one thing read, in order.
        """
        raise NotImplementedError

    def pauseInput(self) -> None:
        """
        Stop reading from the peer.
        """
        raise NotImplementedError

    def resumeInput(self) -> None:
        """
        Read from the peer again.
        """
        raise NotImplementedError

    def inputOpen(self) -> bool:
        """
        Whether what waits can still be handled (the connection is not
        closing).
        """
        return True

    def inputIsFree(self, item: Any) -> bool:
        """
        Whether C{item} is no request (the end of the input, say): it is
        handled as soon as what came before it was, without a wait of its own.
        """
        return False

    def inputFlooded(self, waiting: int) -> None:
        """
        Told just before the service disconnects this connection for
        having C{waiting} requests waiting (json mode says so with an error
        code).
        """

    # -- the throttle --

    def takeInput(self, item: Any) -> None:
        """
        Handle C{item} now, or keep it until the member may make a request.
        What arrives once the connection is closing is ignored.
        """
        if not self.inputOpen():
            return
        inbox = self._inbox
        member = self.member
        if inbox is None:
            if member is None or member.gone:
                self.handleInput(item)
                return
            wait = member.floodWait()
            if wait <= 0:
                self.handleInput(item)
                return
            service = member.service
            service.stats.throttled()
            inbox = self._inbox = _Inbox()
            self.pauseInput()
            inbox.wake = service.clock.callLater(wait, self._wakeInput)
        inbox.items.append(item)
        if member is not None and not member.gone and len(inbox.items) > member.service.settings.floodKick:
            waiting = len(inbox.items)
            self.inputFlooded(waiting)
            # (the front-end's close() forgets what waits, as on any close)
            member.service.disconnectFlooder(member, waiting)
            self.dropInput()

    @property
    def inputWaiting(self) -> bool:
        """
        Whether input waits for flood control (reading is paused).
        """
        return self._inbox is not None

    def _wakeInput(self) -> None:
        inbox = self._inbox
        if inbox is None:
            return
        inbox.wake = None
        items = inbox.items
        while items:
            if not self.inputOpen():
                self.dropInput()
                return
            member = self.member
            if member is not None and not member.gone and not self.inputIsFree(items[0]):
                wait = member.floodWait()
                if wait > 0:
                    inbox.wake = member.service.clock.callLater(wait, self._wakeInput)
                    return
            try:
                self.handleInput(items.popleft())
            except Exception:
                # (as a failure while reading would be: logged; the next
                # request still gets its turn)
                self._log.failure("handling a request of {member!r} failed", member=self.member)
            if self._inbox is not inbox:
                return
        self._inbox = None
        self.resumeInput()

    def dropInput(self) -> None:
        """
        Forget what waits, and its timer: the connection is closing. (It
        does not resume reading.)
        """
        inbox, self._inbox = self._inbox, None
        if inbox is not None and inbox.wake is not None and inbox.wake.active():
            inbox.wake.cancel()


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
