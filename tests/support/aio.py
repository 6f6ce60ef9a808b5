"""
asyncio code in a test: L{runAsync} runs a coroutine in its own event loop
in a worker thread, so it works whichever reactor pytest-twisted runs in
the test's thread (the C{websockets} clients of the end-to-end tests).

Nothing here imports the reactor, Twisted or the project.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Awaitable, Callable, TypeVar

#: bound on the asyncio part of one test (see L{runAsync})
ASYNC_TEST_TIMEOUT = 60.0

_T = TypeVar("_T")


def runAsync(main: Callable[[], Awaitable[_T]], timeout: float = ASYNC_TEST_TIMEOUT) -> _T:
    """
    Run the coroutine function C{main} to completion in its own event loop,
    in a worker thread (pytest-twisted runs each test inside its reactor),
    and return its result; fail after C{timeout} s.
    """

    async def bounded() -> _T:
        return await asyncio.wait_for(main(), timeout)

    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(asyncio.run, bounded())
    try:
        return future.result(timeout + 5)
    except FutureTimeout:
        if future.done():
            # (a TimeoutError of the test itself, e.g. a bounded read: since
            # Python 3.11 the same class as the future's own timeout)
            raise
        raise AssertionError("the asyncio part of the test did not finish in %s s" % (timeout,))
    finally:
        pool.shutdown(wait=False)
