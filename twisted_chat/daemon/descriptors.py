# -*- test-case-name: tests.daemon.test_descriptors -*-
"""
A worker's guard against running out of file descriptors
(L{DescriptorGuard}): the workers of a C{--workers} parent accept from
one shared listening socket, and the kernel does not spread its
connections evenly (a busy worker takes big batches). A worker whose open
descriptors reach a high-water mark below its limit stops accepting, so
the kernel's next C{accept()} goes to another worker, and accepts again
once it has closed some. Without it the worker at its limit accepts and
closes every connection that comes to it (Twisted's answer to C{EMFILE})
while the others have room.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.interfaces import IAddress, IProtocol, IProtocolFactory, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

#: where the open descriptors of this process are listed
_FD_DIRS = ("/proc/self/fd", "/dev/fd")


def openDescriptors() -> int:
    """
    The number of file descriptors this process has open: the size of
    C{/proc/self/fd} where the kernel gives it (Linux 6.2 and later: a
    C{stat}), else the length of its listing.
    """
    for folder in _FD_DIRS:
        try:
            size = os.stat(folder).st_size
        except OSError:
            continue
        if size > 0:
            return size
        return len(os.listdir(folder))
    raise OSError("no %s to count open descriptors in" % (" or ".join(_FD_DIRS),))


def descriptorLimit() -> int | None:
    """
    This process's (soft) limit of open descriptors, or C{None} when there
    is none to speak of.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    return soft


class DescriptorGuard(Service):
    """
    Counts this process's open descriptors every C{every} seconds, and
    again as soon as the last count plus the connections accepted since
    (told by the factories it is L{counting}) reaches C{highWater}, the
    limit minus L{reserve}. At C{highWater} it calls every throttle's
    C{pause} (listening ports: stop accepting), and once fewer than
    C{lowWater} are open its C{resume}.

    The reserve covers what a worker opens besides its connections (Redis,
    the log, the parent's channel, relays) and the accepts that come
    before a pause takes effect: the rest of the listening port's batch in
    progress (Twisted accepts up to the connections waiting, at most the
    listen queue, in one go).
    """

    _log = Logger()

    #: descriptors kept free below the limit (a quarter of it at most)
    reserve = 512
    #: descriptors to close below the high-water mark before accepting again
    hysteresis = 128
    #: seconds between counts
    every = 0.1

    def __init__(
        self,
        clock: IReactorTime,
        limit: int | None = None,
        count: Callable[[], int] = openDescriptors,
        what: str = "this process",
    ) -> None:
        self.clock = clock
        self.limit = descriptorLimit() if limit is None else limit
        self.count = count
        self.what = what
        self.paused = False
        #: the count of the last check
        self.open = 0
        #: connections accepted since
        self._since = 0
        self._throttles: list[tuple[Callable[[], object], Callable[[], object]]] = []
        self._loop: LoopingCall | None = None
        #: (when counting is slow, a listing: not before this time.perf_counter())
        self._next = 0.0

    @property
    def highWater(self) -> int | None:
        """
        The open descriptors at which accepting stops (C{None}: no limit).
        """
        if self.limit is None:
            return None
        return self.limit - min(self.reserve, self.limit // 4)

    @property
    def lowWater(self) -> int | None:
        """
        The open descriptors below which accepting resumes.
        """
        high = self.highWater
        if high is None or self.limit is None:
            return None
        return high - min(self.hysteresis, self.limit // 8)

    def addThrottle(self, pause: Callable[[], object], resume: Callable[[], object]) -> None:
        """
        Call C{pause} near the limit, C{resume} once descriptors are free
        again (a throttle that comes while paused starts paused).
        """
        self._throttles.append((pause, resume))
        if self.paused:
            pause()

    def counting(self, factory: IProtocolFactory) -> IProtocolFactory:
        """
        C{factory}, telling this guard of each connection it is given.
        """
        return _Counting(factory, self)

    def accepted(self) -> None:
        """
        A connection was accepted: count the open descriptors again if
        they may have reached the high-water mark.
        """
        self._since += 1
        high = self.highWater
        if not self.paused and high is not None and self.open + self._since >= high and self._loop is not None:
            self.check(now=True)

    def startService(self) -> None:
        Service.startService(self)
        if self.highWater is None:
            return
        self._loop = LoopingCall(self.check)
        self._loop.clock = self.clock
        self._loop.start(self.every, now=True)

    def stopService(self) -> None:
        Service.stopService(self)
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()

    def check(self, now: bool = False) -> None:
        """
        Count the open descriptors (unless that is slow and was done a
        moment ago, and not C{now}); pause or resume the throttles.
        """
        high, low = self.highWater, self.lowWater
        if high is None or low is None:
            return
        started = time.perf_counter()
        if started < self._next and not now:
            return
        try:
            self.open = count = self.count()
            self._since = 0
        except OSError as e:
            self._log.warn("{what}: cannot count open descriptors ({why}): not guarding them", what=self.what, why=e)
            loop, self._loop = self._loop, None
            if loop is not None and loop.running:
                loop.stop()
            return
        # (a listing costs more the more are open: at most ~5 % of the time)
        self._next = started + 20 * (time.perf_counter() - started)
        if not self.paused and count >= high:
            self.paused = True
            self._log.warn(
                "{what}: {count} of {limit} file descriptors open: not accepting connections"
                " until fewer than {low} are",
                what=self.what,
                count=count,
                limit=self.limit,
                low=low,
            )
            for pause, _ in self._throttles:
                pause()
        elif self.paused and count < low:
            self.paused = False
            self._log.info(
                "{what}: {count} file descriptors open: accepting connections again", what=self.what, count=count
            )
            for _, resume in self._throttles:
                resume()


@implementer(IProtocolFactory)
class _Counting:
    """
    A protocol factory that tells its L{DescriptorGuard} of each
    connection before the factory it stands for is given it.
    """

    def __init__(self, factory: IProtocolFactory, guard: DescriptorGuard) -> None:
        self.wrappedFactory = factory
        self.guard = guard

    def buildProtocol(self, addr: IAddress) -> IProtocol | None:
        self.guard.accepted()
        return self.wrappedFactory.buildProtocol(addr)

    def doStart(self) -> None:
        self.wrappedFactory.doStart()

    def doStop(self) -> None:
        self.wrappedFactory.doStop()

    def logPrefix(self) -> str:
        prefix = getattr(self.wrappedFactory, "logPrefix", None)
        return str(prefix()) if prefix is not None else self.wrappedFactory.__class__.__name__

    def __getattr__(self, name: str) -> Any:
        # (anything else a port or a TLS wrapper asks the factory)
        return getattr(self.wrappedFactory, name)
