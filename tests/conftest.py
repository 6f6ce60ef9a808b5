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
from typing import Any, Awaitable, Callable, Iterator, TypeVar

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

    def __init__(
        self, args: list[str], cwd: Path, command: list[str] | None = None, env: dict[str, str] | None = None, **popen: Any
    ) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            twistdCommand(*args) if command is None else command,
            cwd=cwd,
            env={**_environment(), **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **popen,
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


# --- A real redis-server for the scale-out tests -----------------------------

#: how long redis-server may take to answer PING, and to exit on SIGTERM
REDIS_START_TIMEOUT = 10.0
REDIS_STOP_TIMEOUT = 10.0


def missingComponent(why: str) -> None:
    """
    Something a test needs is not installed: fail on CI (C{CI=true}), where
    every component must be there, and skip elsewhere.
    """
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


def _freeLoopbackPort() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisReplyError(Exception):
    """
    Redis answered a command with an error reply (C{-ERR ...}); the message
    is the reply's text.
    """


class _RESPReader:
    """
    Parse one RESP2 reply from a blocking socket: simple strings as C{str},
    errors as L{RedisReplyError} (raised), integers as C{int}, bulk strings
    as C{bytes} (C{str} with C{decode}), arrays as C{list}, nil as C{None}.
    """

    def __init__(self, sock: socket.socket, decode: bool) -> None:
        self.sock = sock
        self.decode = decode
        self.buffer = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("redis closed the connection mid-reply")
        self.buffer += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n + 2:
            self._fill()
        data, self.buffer = self.buffer[:n], self.buffer[n + 2 :]
        return data

    def reply(self) -> object:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8")
        if kind == b"-":
            raise RedisReplyError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._exactly(n)
            return data.decode("utf-8") if self.decode else data
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self.reply() for _ in range(n)]
        raise ConnectionError("not a RESP2 reply: %r" % (line,))


def _encodeCommand(args: tuple[object, ...]) -> bytes:
    parts = [b"*%d\r\n" % (len(args),)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode("utf-8")
        else:
            data = str(arg).encode("ascii")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RedisServer:
    """
    A C{redis-server} subprocess of the tests' own, on loopback.

    It listens on C{127.0.0.1:port} (a free port picked at construction and
    kept across L{stop}/L{start}, so a test can restart Redis under a running
    daemon), keeps its files and its log (C{redis.log}) in C{directory}, and
    by default persists nothing (C{--save '' --appendonly no}). With
    C{persistent=True} it writes an append-only file synced on every write
    (C{--appendonly yes --appendfsync always}), so what it holds survives
    L{stop}, L{kill} and L{start}. C{password} sets C{requirepass} (and goes
    into L{url}); C{extraArgs} are more C{redis-server} options, e.g.
    C{("--maxmemory", "1mb")}.

    L{command} is a tiny blocking client for inspecting and resetting its
    state from a test. Only the process started here is ever signalled.
    """

    def __init__(
        self,
        directory: Path,
        persistent: bool = False,
        password: str | None = None,
        extraArgs: tuple[str, ...] = (),
        executable: str = "redis-server",
    ) -> None:
        self.host = "127.0.0.1"
        self.port = _freeLoopbackPort()
        self.directory = directory
        self.persistent = persistent
        self.password = password
        self.extraArgs = tuple(extraArgs)
        self.executable = executable
        self.logPath = directory / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """
        C{redis://127.0.0.1:PORT/0}, with C{:PASSWORD@} if it has one.
        """
        auth = ":%s@" % (self.password,) if self.password is not None else ""
        return "redis://%s%s:%d/0" % (auth, self.host, self.port)

    @property
    def pid(self) -> int | None:
        """
        The process id of the running server, C{None} when it is stopped.
        """
        return self.proc.pid if self.running else None  # type: ignore[union-attr]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log(self) -> str:
        try:
            return self.logPath.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def arguments(self) -> list[str]:
        args = [
            self.executable,
            "--port", str(self.port),
            "--bind", self.host,
            "--protected-mode", "no",
            "--daemonize", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.logPath),
            "--save", "",
        ]  # fmt: skip
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        return args + list(self.extraArgs)

    def start(self, timeout: float = REDIS_START_TIMEOUT, retryPort: bool | None = None) -> "RedisServer":
        """
        Start the server (again: same port, same directory) and wait until
        it answers PING, at most C{timeout} seconds; fails with its log if
        it exits or does not answer. Nothing happens if it is running.
        """
        if self.running:
            return self
        if retryPort is None:
            retryPort = self.proc is None
        self._reap()
        with open(self.logPath, "ab") as output:
            # Before --logfile takes over, errors (a bad option) go to stderr.
            self.proc = subprocess.Popen(
                self.arguments(),
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        why = "it did not answer PING within %s s" % (timeout,)
        while True:
            status = self.proc.poll()
            if status is not None:
                why = "it exited with status %s" % (status,)
                break
            try:
                # A short timeout per try: if something else holds the port
                # and accepts, the exit of redis-server is still noticed.
                if self.command("PING", timeout=min(1.0, max(0.05, deadline - time.monotonic()))) == "PONG":
                    return self
            except (OSError, RedisReplyError):
                # Not listening yet (refused), or still loading (-LOADING).
                pass
            if time.monotonic() >= deadline:
                break
            time.sleep(0.002)
        self.kill()
        if retryPort and "Address already in use" in self.log:
            # Something took the free port before Redis bound it: the first
            # start may pick another one (a restart must keep its port).
            self.port = _freeLoopbackPort()
            return self.start(timeout, retryPort=False)
        raise AssertionError("redis-server on port %d did not start: %s. Log:\n%s" % (self.port, why, self.log))

    def stop(self, timeout: float = REDIS_STOP_TIMEOUT) -> int | None:
        """
        SIGTERM the server and wait at most C{timeout} seconds for it to
        exit, then SIGKILL it. Returns its exit status (C{None} if it was
        never started). Safe to call more than once.
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> int | None:
        """
        SIGKILL the server (a crash: nothing is flushed) and reap it.
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait()

    def _reap(self) -> None:
        if self.proc is not None:
            self.proc.wait()

    def command(self, *args: object, decode: bool = False, timeout: float = 5.0) -> object:
        """
        Send one command on a fresh connection (authenticated if the server
        has a password) and return the reply: simple strings as C{str}
        (C{"PONG"}, C{"OK"}), integers as C{int}, bulk strings as C{bytes}
        (C{str} when C{decode}), arrays as lists, nil as C{None}; an error
        reply raises L{RedisReplyError}. E.g. C{command("KEYS", "*")},
        C{command("FLUSHALL")}.
        """
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            reader = _RESPReader(sock, decode)
            if self.password is not None:
                sock.sendall(_encodeCommand(("AUTH", self.password)))
                reader.reply()
            sock.sendall(_encodeCommand(args))
            return reader.reply()


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
    A Clock, advanced to C{_harness.START}, that is also Autobahn's timer
    loop for the test: what the in-memory clients of C{tests/_harness.py}
    run on. (A test module may define a C{clock} of its own.)
    """
    # Imported when the fixture runs, after pytest-twisted has installed the
    # reactor: _harness imports Twisted and Autobahn.
    from _harness import autobahnTimers
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
