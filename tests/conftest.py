"""
The fixtures every test folder shares: the real daemon as a subprocess
(C{startDaemon}, C{chatDaemon}, C{runTwistd}), line-chat clients that talk
to it over loopback (C{lineClients}), real C{redis-server}s, the Clock of
the in-memory web tests, and headless Chromium. The code behind them, and
every other helper shared by several test modules, is in tests/support/.

Nothing here imports the reactor (or a project module that does): pytest-
twisted installs the reactor chosen with --reactor when pytest starts, and
an earlier import would install the default one instead, after which
C{pytest --reactor=asyncio} fails with WrongReactorAlreadyInstalledError.
Fixtures import Twisted when they run.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import pytest
from hypothesis import settings as hypothesisSettings

from tests.support.browser import CHROMIUM, BrowserThread
from tests.support.components import missingComponent
from tests.support.daemon import LOOPBACK, START_TIMEOUT, Daemon, LineClient, RedisServer, environment, twistdCommand

if TYPE_CHECKING:
    from twisted.internet.task import Clock

# Property tests check behaviour, not speed: no per-example deadline (the
# default 200 ms fails examples whenever the machine is busy).
hypothesisSettings.register_profile("twisted-chat", deadline=None)
hypothesisSettings.load_profile("twisted-chat")


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

    The daemon logs every connection and disconnection (C{--log-connections}):
    tests wait for those lines; C{logConnections=False} leaves it at the
    daemon's default (a periodic summary only).
    """
    started: list[Daemon] = []

    def start(
        *extraArgs: str,
        line: str | None = LOOPBACK,
        web: str | None = "none",
        metrics: str | None = "none",
        timeout: float = START_TIMEOUT,
        logConnections: bool = True,
    ) -> Daemon:
        args: list[str] = ["--log-connections"] if logConnections else []
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
            env=environment(),
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


@pytest.fixture
def clock() -> Iterator[Clock]:
    """
    A Clock, advanced to C{harness.START}, that is also Autobahn's timer
    loop for the test: what the in-memory clients of tests/support/harness.py
    run on. (A test module may define a C{clock} of its own.)
    """
    # Imported when the fixture runs, after pytest-twisted has installed the
    # reactor: the harness imports Twisted and Autobahn.
    from tests.support.harness import autobahnTimers
    from twisted.internet.task import Clock

    with autobahnTimers(Clock()) as clock:
        yield clock


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
