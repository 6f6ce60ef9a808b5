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
from typing import Callable

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

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
    Counts this process's open descriptors every C{every} seconds; at
    C{highWater} (the limit minus L{reserve}) it calls every throttle's
    C{pause} (listening ports: stop accepting), and once they are below
    C{lowWater} its C{resume}.

    The reserve covers what a worker opens besides its connections (Redis,
    the log, the parent's channel, relays) and the accepts that come
    before a pause takes effect: those of the listening port's batch in
    progress (Twisted accepts up to the connections waiting, at most the
    listen queue) and of one interval.
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

    def check(self) -> None:
        """
        Count the open descriptors; pause or resume the throttles.
        """
        high, low = self.highWater, self.lowWater
        if high is None or low is None:
            return
        started = time.perf_counter()
        if started < self._next:
            return
        try:
            self.open = count = self.count()
        except OSError as e:
            self._log.warn("{what}: cannot count open descriptors ({why}): not guarding them", what=self.what, why=e)
            if self._loop is not None and self._loop.running:
                self._loop.stop()
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
