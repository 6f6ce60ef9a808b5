"""
Shared fixtures: the real daemon as a subprocess, and line-chat clients that
talk to it over loopback (the classes themselves are in
tests/support/daemon.py).

Nothing here imports the reactor (or a project module that does): pytest-
twisted installs the reactor chosen with --reactor, and an earlier import
would install the default one instead (STYLE.md B.5, item 4).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Awaitable, Callable, Iterator, TypeVar

import pytest
from hypothesis import settings as hypothesisSettings

# Property tests check behaviour, not speed: no per-example deadline (the
# default 200 ms fails examples whenever the machine is busy).
hypothesisSettings.register_profile("twisted-chat", deadline=None)
hypothesisSettings.load_profile("twisted-chat")

# The subprocess helpers live in tests.support.daemon (the fault harness
# uses them outside pytest); they are re-exported here, where the tests import them.
from tests.support.daemon import (  # noqa: F401
    LOOPBACK,
    REDIS_START_TIMEOUT,
    REDIS_STOP_TIMEOUT,
    START_TIMEOUT,
    STOP_TIMEOUT,
    Daemon,
    LineClient,
    RedisReplyError,
    RedisServer,
    _encodeCommand,
    _environment,
    _freeLoopbackPort,
    _RESPReader,
    twistdCommand,
)

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


@pytest.fixture
def startDaemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """
    Start the real C{twistd chat} daemon: C{startDaemon(*extraArgs)}.

    By default it serves the line chat on a free loopback port and no web
    front-end (C{--line tcp:0:interface=127.0.0.1 --web none}); pass
    C{line=} or C{web=} another endpoint (C{LOOPBACK} for a free loopback
    port), or C{None} to leave that option out and get the daemon's default.
    It waits until every front-end given an address has logged that it is
    listening and the daemon serves (a line connection is greeted, which
    takes a guest nick), and returns a L{Daemon} whose C{ports} maps
    front-end names ("line", "web") to ports. In teardown each daemon gets SIGTERM and must
    stop cleanly (see L{Daemon.stoppedCleanly}).
    """
    started: list[Daemon] = []

    def start(
        *extraArgs: str,
        line: str | None = LOOPBACK,
        web: str | None = "none",
        metrics: str | None = "none",
        timeout: float = START_TIMEOUT,
    ) -> Daemon:
        args: list[str] = []
        frontends = []
        for name, address in (("line", line), ("web", web), ("metrics", metrics)):
            if address is not None:
                args += ["--" + name, address]
                if address != "none":
                    frontends.append(name)
        args += extraArgs
        daemon = Daemon(args, tmp_path)
        started.append(daemon)
        daemon.waitListening(tuple(frontends), timeout)
        daemon.waitServing(timeout)
        return daemon

    yield start

    failures = []
    for daemon in started:
        try:
            daemon.stop()
        except AssertionError as e:
            failures.append(str(e))
            continue
        if not daemon.stoppedCleanly:
            failures.append(
                "twistd %s did not stop cleanly (status %s). Log:\n%s" % (daemon.args, daemon.proc.returncode, daemon.log)
            )
    assert not failures, "\n\n".join(failures)


@pytest.fixture
def chatDaemon(startDaemon: Callable[..., Daemon]) -> Daemon:
    """
    The daemon with its default options, line chat on a free loopback port.
    """
    return startDaemon()


@pytest.fixture
def runTwistd(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """
    Run C{twistd -n --pidfile= chat ARGS} to completion (for start-up
    failures): returns the finished process with its output.
    """

    def run(*args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            twistdCommand(*args),
            cwd=tmp_path,
            env=_environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def lineClients() -> Iterator[Callable[..., LineClient]]:
    """
    Open line-chat connections: C{lineClients(port, **kw)}; all are closed
    in teardown.
    """
    opened: list[LineClient] = []

    def connect(port: int, **kw: object) -> LineClient:
        client = LineClient(port, **kw)  # type: ignore[arg-type]
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


def missingComponent(why: str) -> None:
    """
    Something a test needs is not installed: fail on CI (C{CI=true}), where
    every component must be there, and skip elsewhere.
    """
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture
def redisServerFactory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """
    Start real C{redis-server}s: C{redisServerFactory(persistent=False,
    password=None, extraArgs=())} returns a started L{RedisServer}, each in
    its own directory under C{tmp_path}; all are killed in teardown. Fails
    on CI and skips elsewhere when C{redis-server} is not installed.
    """
    import shutil

    executable = shutil.which("redis-server")
    if executable is None:
        missingComponent("redis-server not installed")
    started: list[RedisServer] = []

    def start(**kw: object) -> RedisServer:
        server = RedisServer(tmp_path / ("redis-%d" % (len(started),)), executable=executable, **kw)  # type: ignore[arg-type]
        started.append(server)
        return server.start()

    yield start
    # SIGKILL: nothing in tmp_path needs flushing, and SIGTERM costs up to
    # 100 ms (Redis acts on it in its next serverCron tick, hz 10).
    for server in started:
        server.kill()


@pytest.fixture
def redisServer(redisServerFactory: Callable[..., RedisServer]) -> RedisServer:
    """
    A real C{redis-server} on a free loopback port, persisting nothing; see
    L{RedisServer}.
    """
    return redisServerFactory()


# -- TLS ----------------------------------------------------------------------


def writeSelfSignedCertificate(folder: Path, withAddress: bool = True) -> tuple[Path, Path]:
    """
    Write a self-signed certificate for C{localhost} (and, C{withAddress},
    for C{127.0.0.1}) and its key into C{folder} as C{cert.pem} and
    C{key.pem}; return their paths (certificate first).
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    if withAddress:
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certPath, keyPath = folder / "cert.pem", folder / "key.pem"
    certPath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyPath.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return certPath, keyPath


# -- Shared helpers of the in-memory web tests and the browser tests ----------
# This section's import is here rather than at the top of the file; the
# Playwright and Twisted names are for type checking only: this module
# imports neither when it is loaded.

from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Playwright
    from twisted.internet.task import Clock


@pytest.fixture
def clock() -> Iterator[Clock]:
    """
    A Clock, advanced to C{harness.START}, that is also Autobahn's timer
    loop for the test: what the in-memory clients of
    C{tests/support/harness.py} run on. (A test module may define a C{clock} of its own.)
    """
    # Imported when the fixture runs, after pytest-twisted has installed the
    # reactor: the harness imports Twisted and Autobahn.
    from tests.support.harness import autobahnTimers
    from twisted.internet.task import Clock

    with autobahnTimers(Clock()) as clock:
        yield clock


def lineUser(lineClients: Callable[..., LineClient], daemon: Daemon, nick: str, timeout: float = 10.0) -> LineClient:
    """
    A line-chat user of C{daemon} called C{nick}, in #lobby (through the
    L{lineClients} fixture; every read bounded by C{timeout}).
    """
    line = lineClients(daemon.ports["line"], timeout=timeout)
    line.welcome()
    line.send("/nick " + nick)
    line.expect("*** you are now " + nick)
    return line


#: where browser tests save screenshots, at the top of the repository
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
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


@pytest.fixture(scope="module")
def browserThread() -> Iterator[BrowserThread]:
    """
    Headless Debian Chromium, once for the module, in its own thread (see
    L{BrowserThread}). Missing Chromium (or Playwright) fails the test on
    CI, skips it elsewhere.
    """
    import importlib.util

    if importlib.util.find_spec("playwright") is None:
        missingComponent("Playwright for Python is not installed (pip install playwright; no 'playwright install')")
    if not os.path.exists(CHROMIUM):
        missingComponent("%s is missing (apt-get install chromium)" % (CHROMIUM,))
    thread = BrowserThread()
    try:
        thread.start()
        yield thread
    finally:
        thread.stop()
