"""
The real daemon and redis-server as subprocesses, a blocking line-chat
client, and what a daemon's log says about its workers: shared by the
end-to-end tests (the fixtures of conftest.py start them) and by the fault
harness (tests/chaos), which runs outside pytest too.

Nothing here imports the reactor, Twisted or pytest.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

#: how long the daemon may take to start listening, and to exit on SIGTERM
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0

T = TypeVar("T")

#: "<frontend> listening on tcp:<host>:<port>", as logged by twisted_chat.daemon.listeners
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


def environment() -> dict[str, str]:
    """
    The environment of a daemon (or another program) started by the tests.
    """
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
            env={**environment(), **(env or {})},
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
        seen = [0]

        def matching(lines: list[str]) -> re.Match[str] | None:
            for line in lines[seen[0] :]:
                m = regex.search(line)
                if m is not None:
                    return m
            seen[0] = len(lines)
            return None

        return self.waitUntil(matching, timeout, "no log line matching %r" % (pattern,))

    def waitUntil(self, check: Callable[[list[str]], T | None], timeout: float = 10.0, what: str = "") -> T:
        """
        Wait until C{check(lines)} (called with every line logged so far,
        again each time more come) returns something other than None, and
        return that; fail with the whole log (and C{what} did not happen)
        if it does not within C{timeout} seconds or the daemon's output
        ends first.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = check(list(self.lines))
                if found is not None:
                    return found
                if self._eof:
                    why = "the daemon's output ended (exit status %s)" % (self.proc.poll(),)
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    why = "%s s passed" % (timeout,)
                    break
                self._changed.wait(left)
        raise AssertionError("%s: %s. Log:\n%s" % (what or "%r never held" % (check,), why, "\n".join(self.lines)))

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
            # (Only a daemon started with --log-connections logs it.)
            m = re.match(r"\*\*\* Welcome to twisted-chat, (\S+)!", first)
            if m is not None and "--log-connections" in self.args:
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
        SIGTERM the daemon (unless it has exited or had a SIGTERM already),
        wait at most C{timeout} seconds and return its exit status. A daemon that
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


def workerPids(daemon: Daemon) -> dict[int, int]:
    """
    Worker index -> pid of the worker that runs in that place now, from the
    parent's "worker I started (pid P)" lines.
    """
    found = {}
    for line in daemon.log.splitlines():
        m = re.search(r"\] worker (\d+) started \(pid (\d+)\)", line)
        if m is not None:
            found[int(m.group(1))] = int(m.group(2))
    return found


def workerOf(daemon: Daemon, client: LineClient) -> int:
    """
    The index of the worker that serves C{client}, from that worker's
    "connected from" log line (relayed by the parent as C{[wI:…]}).
    """
    host, port = client.sock.getsockname()[:2]
    m = daemon.waitForLog(r"\[w(\d+):[^\]]*\] \S+ connected from %s:%d via line" % (re.escape(host), port))
    return int(m.group(1))


class LineClient:
    """
    A blocking line-chat client for end-to-end tests; every read is bounded
    by a deadline, so a missing line fails the test instead of hanging it.
    """

    def __init__(
        self, port: int, host: str = "127.0.0.1", timeout: float = 10.0, rcvbuf: int | None = None, source: str | None = None
    ) -> None:
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source is not None:
            # (another loopback address: a client of its own for --max-per-ip)
            self.sock.bind((source, 0))
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



# --- A real redis-server for the scale-out tests -----------------------------

#: how long redis-server may take to answer PING, and to exit on SIGTERM
REDIS_START_TIMEOUT = 10.0
REDIS_STOP_TIMEOUT = 10.0


def freeLoopbackPort() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on (now).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisReplyError(Exception):
    """
    Redis answered a command with an error reply (C{-ERR ...}); the message
    is the reply's text.
    """


class RESPReader:
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


def encodeCommand(args: tuple[object, ...]) -> bytes:
    """
    A Redis command as RESP2 bytes.
    """
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
        self.port = freeLoopbackPort()
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

    def start(
        self, timeout: float = REDIS_START_TIMEOUT, retryPort: bool | None = None, loaded: bool = True
    ) -> "RedisServer":
        """
        Start the server (again: same port, same directory) and wait until
        it answers PING, at most C{timeout} seconds; fails with its log if
        it exits or does not answer. Nothing happens if it is running. With
        C{loaded=False} an answer that it is still loading its data
        (C{-LOADING}) will do.
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
            except RedisReplyError as e:
                # Still loading its data (-LOADING).
                if not loaded and str(e).startswith("LOADING"):
                    return self
            except OSError:
                # Not listening yet (refused).
                pass
            if time.monotonic() >= deadline:
                break
            time.sleep(0.002)
        self.kill()
        if retryPort and "Address already in use" in self.log:
            # Something took the free port before Redis bound it: the first
            # start may pick another one (a restart must keep its port).
            self.port = freeLoopbackPort()
            return self.start(timeout, retryPort=False, loaded=loaded)
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
            reader = RESPReader(sock, decode)
            if self.password is not None:
                sock.sendall(encodeCommand(("AUTH", self.password)))
                reader.reply()
            sock.sendall(encodeCommand(args))
            return reader.reply()
