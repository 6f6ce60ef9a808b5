"""
Shared fixtures: the real daemon as a subprocess, and line-chat clients that
talk to it over loopback.

Nothing here imports the reactor (or a project module that does): pytest-
twisted installs the reactor chosen with --reactor, and an earlier import
would install the default one instead (STYLE.md B.5, item 4).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Awaitable, Callable, Iterator, TypeVar

import pytest

#: how long the daemon may take to start listening, and to exit on SIGTERM
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0

#: "<frontend> listening on tcp:<host>:<port>", as logged by twisted_chat.tap
_LISTENING = re.compile(r"\] ([\w-]+) listening on tcp:(\S+):(\d+)\s*$")


def twistdCommand(*args: str) -> list[str]:
    """
    The command line that runs C{twistd -n --pidfile= chat ARGS} with the
    interpreter running the tests: the C{twistd} script next to it if there
    is one, else twistd's entry point through C{-c}.
    """
    script = Path(sys.executable).with_name("twistd")
    if script.exists():
        prefix = [sys.executable, str(script)]
    else:
        prefix = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
    return prefix + ["-n", "--pidfile=", "chat", *args]


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    # The daemon's own warnings are not the tests' business.
    env.pop("PYTHONWARNINGS", None)
    return env


class Daemon:
    """
    A running C{twistd chat} subprocess and everything it has logged.

    Its output is read by a thread as it comes, so tests can wait for a log
    line (L{waitForLog}) without sleeping.
    """

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            twistdCommand(*args),
            cwd=cwd,
            env=_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid
        self.signalled: list[int] = []
        self.lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="twistd-output-%d" % (self.pid,), daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        try:
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self._changed:
                    self.lines.append(line)
                    self._changed.notify_all()
        finally:
            with self._changed:
                self._eof = True
                self._changed.notify_all()

    @property
    def log(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    @property
    def listening(self) -> dict[str, list[tuple[str, int]]]:
        """
        Every front-end's listening addresses so far, from the
        C{"X listening on tcp:HOST:PORT"} log lines: name -> [(host, port)].
        """
        found: dict[str, list[tuple[str, int]]] = {}
        with self._changed:
            lines = list(self.lines)
        for line in lines:
            m = _LISTENING.search(line)
            if m is not None:
                found.setdefault(m.group(1), []).append((m.group(2), int(m.group(3))))
        return found

    @property
    def ports(self) -> dict[str, int]:
        """
        Front-end name -> the port of its first listener, e.g. C{{"line": 40213}}.
        """
        return {name: addrs[0][1] for name, addrs in self.listening.items()}

    def waitForLog(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """
        Wait until a log line matches the regular expression C{pattern}; fail
        with the whole log if none does within C{timeout} seconds or the
        daemon's output ends first.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    m = regex.search(line)
                    if m is not None:
                        return m
                seen = len(self.lines)
                if self._eof:
                    why = "the daemon's output ended (exit status %s)" % (self.proc.poll(),)
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    why = "%s s passed" % (timeout,)
                    break
                self._changed.wait(left)
        raise AssertionError(
            "no log line matching %r: %s. Log:\n%s" % (pattern, why, "\n".join(self.lines))
        )

    def waitListening(self, frontends: tuple[str, ...], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for name in frontends:
            self.waitForLog(
                r"\] %s listening on tcp:" % (re.escape(name),),
                max(0.0, deadline - time.monotonic()),
            )

    def waitServing(self, timeout: float) -> None:
        """
        Wait until the daemon's reactor runs, so that it serves connections
        and handles SIGTERM (the listeners log their address before that):
        a line connection is greeted, then closed; a web port answers HTTP.
        """
        deadline = time.monotonic() + timeout
        ports = self.ports
        if "line" in ports:
            probe = LineClient(ports["line"], timeout=timeout)
            try:
                first = probe.readLine(deadline)
            finally:
                probe.close()
            assert first is not None and first.startswith("*** Welcome"), (first, self.log)
            # Wait until the probe has left too: otherwise its leave notice
            # may reach the first client a test connects (whether it does
            # depends on the order in which epoll reports the two sockets).
            m = re.match(r"\*\*\* Welcome to twisted-chat, (\S+)!", first)
            if m is not None:
                self.waitForLog(
                    r"\] %s disconnected" % (re.escape(m.group(1)),), max(0.0, deadline - time.monotonic())
                )
        elif "web" in ports:
            with socket.create_connection(("127.0.0.1", ports["web"]), timeout=timeout) as s:
                s.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
                assert s.recv(12).startswith(b"HTTP/1."), self.log

    def signal(self, signum: int) -> None:
        """
        Send C{signum} to the daemon if it is still running.
        """
        if self.proc.poll() is None:
            self.signalled.append(signum)
            self.proc.send_signal(signum)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """
        SIGTERM the daemon (unless it has exited or had a SIGTERM already:
        a second one during shutdown makes twistd log a traceback), wait at
        most C{timeout} seconds and return its exit status. A daemon that
        hangs is killed with SIGKILL and the test fails. Safe to call more
        than once.
        """
        if signal.SIGTERM not in self.signalled:
            self.signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
            self._finish()
            raise AssertionError(
                "twistd did not exit within %s s of SIGTERM; killed. Log:\n%s" % (timeout, self.log)
            )
        self._finish()
        return code

    @property
    def stoppedCleanly(self) -> bool:
        """
        Whether the daemon has exited after an orderly shutdown: status 0,
        once it has logged "Server Shut Down.".
        """
        return self.proc.poll() == 0 and any(line.endswith("Server Shut Down.") for line in self.lines)

    def _finish(self) -> None:
        self._reader.join(timeout=STOP_TIMEOUT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


LOOPBACK = "tcp:0:interface=127.0.0.1"

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
    try:
        return pool.submit(asyncio.run, bounded()).result(timeout + 5)
    except FutureTimeout:
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


class LineClient:
    """
    A blocking line-chat client for end-to-end tests; every read is bounded
    by a deadline, so a missing line fails the test instead of hanging it.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0, rcvbuf: int | None = None) -> None:
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect(), so the advertised window is small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self._buffer = b""
        self.eof = False
        #: the nick the server gave (after L{welcome}) and the current one
        self.guest = self.nick = ""
        #: every line read so far, for failure messages
        self.history: list[str] = []

    def send(self, line: str | bytes) -> None:
        data = line.encode("utf-8") if isinstance(line, str) else line
        self.sock.sendall(data + b"\n")

    def sendRaw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def readLine(self, deadline: float) -> str | None:
        """
        The next line (without its newline), or C{None} once the server has
        closed the connection. Fails when C{deadline} (monotonic) passes.
        """
        while b"\n" not in self._buffer:
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no complete line in time; lines so far:\n" + "\n".join(self.history[-40:]))
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                self.eof = True
            self._buffer += data
        raw, _, self._buffer = self._buffer.partition(b"\n")
        line = raw.decode("utf-8")
        self.history.append(line)
        return line

    def expect(self, wanted: str | Callable[[str], bool], timeout: float | None = None) -> list[str]:
        """
        Read lines until one equals C{wanted} (or satisfies it, if callable);
        return the lines read before it. Fails on timeout or end of stream.
        """
        match = wanted if callable(wanted) else (lambda line: line == wanted)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        before: list[str] = []
        while True:
            line = self.readLine(deadline)
            if line is None:
                raise AssertionError(
                    "connection closed before %r; lines so far:\n%s" % (wanted, "\n".join(self.history[-40:]))
                )
            if match(line):
                return before
            before.append(line)

    def readUntilClosed(self, timeout: float | None = None) -> list[str]:
        """
        Read lines until the server closes the connection; return them.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        lines = []
        while True:
            line = self.readLine(deadline)
            if line is None:
                if self._buffer:
                    lines.append(self._buffer.decode("utf-8"))
                return lines
            lines.append(line)

    def welcome(self) -> str:
        """
        Read the greeting and the #lobby join; return the nick given.
        """
        deadline = time.monotonic() + self.timeout
        first = self.readLine(deadline)
        m = re.match(r"\*\*\* Welcome to twisted-chat, (\S+)! You are in #lobby\.", first or "")
        assert m is not None, "unexpected greeting %r" % (first,)
        self.guest = self.nick = m.group(1)
        self.expect(lambda line: line.startswith("*** #lobby: members: "))
        return self.nick

    def close(self) -> None:
        self.sock.close()


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
