# -*- test-case-name: tests.cluster.test_redis -*-
"""
Guest numbers a node hands out without asking Redis each time
(L{GuestNumbers}): blocks of the cluster's shared counter, one in hand and
the next asked for as soon as it starts using one.
"""

from __future__ import annotations

import random
from typing import Callable

from twisted.python.failure import Failure

from twisted_chat.cluster.commands import Commands


class GuestNumbers:
    """
    The guest numbers of one node, taken from Redis (C{redis}) in blocks of
    C{block()} numbers at first: a block that runs out before the next
    arrives (a burst of guests while Redis answers slowly) doubles the
    blocks, up to C{most}.
    """

    def __init__(self, redis: Commands, block: Callable[[], int], most: int) -> None:
        self.redis = redis
        self._block = block
        self.most = most
        #: the numbers of the block in hand: after _guest, up to _end
        self._guest = 0
        self._end = 0
        #: the next block, once Redis gave it: (first - 1, last)
        self._next: tuple[int, int] | None = None
        self._asking = False
        self._ranOut = False
        #: the blocks asked for are block() times this
        self._growth = 1
        #: the numbers this node gives while it has no block: from a range
        #: of its own, chosen at random far above the shared counter
        self._own = random.randrange(10**8, 9 * 10**8, 10**5)

    def start(self, end: int) -> None:
        """
        The block in hand ends at C{end} (taken with the shared state); the
        next is asked for at once (a burst of guests right after the start
        must not run out while Redis is slow to answer).
        """
        self._end = end
        self._guest = end - self._block()
        self._next = None
        self._ask()

    def next(self) -> int:
        if self._guest >= self._end:
            if self._next is None:
                # Redis has not given the next block yet: a number of this
                # node's own range (a collision is improbable, and resolved
                # as any other), and bigger blocks from now on
                self._ranOut = True
                self._ask()
                self._own += 1
                return self._own
            (self._guest, self._end), self._next = self._next, None
        self._guest += 1
        if self._next is None:
            # (one block in hand, the next on its way)
            self._ask()
        return self._guest

    def _size(self) -> int:
        return min(self._block() * self._growth, self.most)

    def _ask(self) -> None:
        """
        Ask Redis for the next block (unless already asking).
        """
        if self._asking or not self.redis.connected:
            return
        if self._ranOut:
            self._ranOut = False
            if self._size() < self.most:
                self._growth *= 2
        size = self._size()
        self._asking = True

        def got(end: int) -> None:
            self._asking = False
            self._next = (end - size, end)

        def failed(f: Failure) -> None:
            self._asking = False

        self.redis.incrby(self.redis.key("guest"), size).addCallbacks(got, failed)
