"""
Headless Debian Chromium driven by Playwright, in a thread of its own
(L{BrowserThread}; the C{browserThread} fixture of conftest.py starts one
for a test module).

Nothing here imports the reactor or Twisted; Playwright is imported when
the browser starts (and its names for type checking only).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Callable, TypeVar

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Playwright

_T = TypeVar("_T")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: seconds: Playwright's bound on every single wait (an element, a page)
BROWSER_TIMEOUT = 10.0
#: seconds: bound on one test's whole browser scenario
SCENARIO_TIMEOUT = 90.0


class BrowserThread:
    """
    Playwright and headless Chromium, owned by one worker thread.

    pytest-twisted runs every test function inside its reactor greenlet,
    with the reactor running. Under the default reactor the Playwright sync
    API would work there, but under C{--reactor=asyncio} an asyncio loop is
    running in that thread and Playwright's own loop refuses to run
    ("Cannot run the event loop while another loop is running"). So every
    Playwright call is made in this thread (Playwright objects belong to the
    thread that created them), and the test thread only waits, with a
    timeout, for each scenario to finish.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="playwright")
        self._playwright: Playwright | None = None
        self.browser: Browser | None = None

    def call(self, fn: Callable[..., _T], *args: object, timeout: float = SCENARIO_TIMEOUT) -> _T:
        """
        Run C{fn(*args)} in the browser thread; return its result or raise
        its exception; fail after C{timeout} seconds.
        """
        future = self._pool.submit(fn, *args)
        try:
            return future.result(timeout)
        except FutureTimeout:
            raise AssertionError("the browser part of the test did not finish in %s s" % (timeout,)) from None

    def inContext(self, scenario: Callable[[BrowserContext], None], **options: object) -> None:
        """
        Run C{scenario(context)} in the browser thread with a fresh browser
        context (made with C{options}, waits bounded by L{BROWSER_TIMEOUT}),
        closed afterwards.
        """

        def run() -> None:
            assert self.browser is not None
            context = self.browser.new_context(**options)  # type: ignore[arg-type]
            try:
                context.set_default_timeout(BROWSER_TIMEOUT * 1000)
                scenario(context)
            finally:
                context.close()

        self.call(run)

    def start(self) -> None:
        self.call(self._start, timeout=60)

    def _start(self) -> None:
        from playwright.sync_api import expect, sync_playwright

        expect.set_options(timeout=BROWSER_TIMEOUT * 1000)
        self._playwright = sync_playwright().start()
        self.browser = self._playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            timeout=30000,
        )

    def stop(self) -> None:
        try:
            self.call(self._stop, timeout=30)
        finally:
            self._pool.shutdown(wait=False)

    def _stop(self) -> None:
        try:
            if self.browser is not None:
                self.browser.close()
        finally:
            if self._playwright is not None:
                self._playwright.stop()
