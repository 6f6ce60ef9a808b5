"""
End-to-end tests of the terminal client C{twisted-chat} against the real
daemon on loopback: it chats in line and json mode, resumes across a
restart, and at the end of its input waits for the server's confirmations
(its exit status says whether it got them).
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import pytest_twisted

from tests.support.client import clientEnvironment, LOOPBACK_WEB, PtyClient, TIMEOUT
from tests.support.components import REPO
from tests.support.daemon import freeLoopbackPort


# -- end to end, with the real daemon --


def installedClient() -> list[str]:
    """
    The command of the installed C{twisted-chat} console script (next to
    the interpreter running the tests).
    """
    script = Path(sys.executable).with_name("twisted-chat")
    if not script.exists():
        from tests.support.components import missingComponent

        missingComponent("the twisted-chat console script is not installed next to %s" % (sys.executable,))
    return [str(script)]


def _command(installed: bool) -> list[str]:
    return installedClient() if installed else [sys.executable, "-m", "twisted_chat.client.main"]


class ClientProcess:
    """
    C{python -m twisted_chat.client.main ARGS} (or, C{installed}, the installed
    C{twisted-chat ARGS}) with piped stdin, its output read by threads as it
    comes, so a test can wait for a line without sleeping.
    """

    def __init__(self, *args: str, installed: bool = False) -> None:
        self.proc = subprocess.Popen(
            [*_command(installed), *args],
            env=clientEnvironment(),
            cwd=str(REPO),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = threading.Condition()
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read(self, stream: Any, into: list[str]) -> None:
        for raw in stream:
            with self._changed:
                into.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode("utf-8") + b"\n")
        self.proc.stdin.flush()

    def waitFor(self, wanted: str | Callable[[str], bool], timeout: float = TIMEOUT, stderr: bool = False) -> str:
        """
        Wait for a line of stdout (or stderr) that is (or satisfies) C{wanted}.
        """
        match = wanted if callable(wanted) else (lambda line: line == wanted)
        deadline = time.monotonic() + timeout
        lines = self.err if stderr else self.out
        with self._changed:
            while True:
                for line in lines:
                    if match(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no line %r; stdout:\n%s\nstderr:\n%s" % (wanted, "\n".join(self.out), "\n".join(self.err)))
                self._changed.wait(left)

    def waitCount(self, wanted: str | Callable[[str], bool], n: int, timeout: float = TIMEOUT) -> None:
        """
        Wait until at least C{n} lines of stdout are (or satisfy) C{wanted}.
        """
        match = wanted if callable(wanted) else (lambda line: line == wanted)
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(1 for line in self.out if match(line)) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "not %d lines %r; stdout:\n%s\nstderr:\n%s" % (n, wanted, "\n".join(self.out), "\n".join(self.err))
                    )
                self._changed.wait(left)

    def finish(self, timeout: float = TIMEOUT) -> int:
        """
        Close stdin and wait for the exit status.
        """
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self.wait(timeout)

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
            raise AssertionError("the client did not exit; stdout:\n%s" % ("\n".join(self.out),))
        for t in self._threads:
            t.join(timeout)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(TIMEOUT)


@pytest.fixture
def clientProcesses() -> Iterator[Callable[..., ClientProcess]]:
    started: list[ClientProcess] = []

    def start(*args: str, installed: bool = False) -> ClientProcess:
        p = ClientProcess(*args, installed=installed)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()
        for stream in (p.proc.stdin, p.proc.stdout, p.proc.stderr):
            if stream is not None:
                stream.close()


def runClient(
    *args: str, input: str = "", timeout: float = TIMEOUT, installed: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_command(installed), *args],
        env=clientEnvironment(),
        cwd=str(REPO),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_pipeConnectRefused() -> None:
    """
    The program says "cannot connect to HOST:PORT: reason" on stderr and
    exits with status 1 when nobody listens.
    """
    portNumber = freeLoopbackPort()
    done = runClient("tcp://127.0.0.1:%d" % (portNumber,))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == "twisted-chat: cannot connect to 127.0.0.1:%d: connection refused\n" % (portNumber,)


@pytest.mark.e2e
def test_e2eLineChat(chatDaemon: Any, clientProcesses: Callable[..., ClientProcess]) -> None:
    """
    Two clients in pipe mode chat through the real daemon over the line
    chat; each exits with status 0 when its input ends, after the server's
    goodbye.
    """
    url = "tcp://127.0.0.1:%d" % (chatDaemon.ports["line"],)
    bob = clientProcesses(url, "--nick", "bob")
    bob.waitFor("*** you are now bob")
    done = runClient(url, "--nick", "alice", input="hello bob\n/msg bob psst\n//slash\n")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"\*\*\* Welcome to twisted-chat, guest-\d+! You are in #lobby\. Type /help for commands\.", lines[0])
    for expected in ["*** you are now alice", "#lobby <alice> hello bob", "-> *bob* psst", "#lobby <alice> /slash"]:
        assert expected in lines, (expected, lines)
    assert lines[-1] == "*** bye"
    bob.waitFor("#lobby <alice> hello bob")
    bob.waitFor("*alice* psst")
    bob.waitFor("*** #lobby: alice left (quit)")
    assert bob.finish() == 0
    assert bob.out[-1] == "*** bye"
    assert bob.err == []


@pytest.mark.e2e
def test_e2eServerShutdown(chatDaemon: Any, clientProcesses: Callable[..., ClientProcess]) -> None:
    """
    When the daemon shuts down, a connected client shows the server's notice,
    says "connection closed by server" on stderr and exits with status 1.
    """
    url = "tcp://127.0.0.1:%d" % (chatDaemon.ports["line"],)
    alice = clientProcesses(url)
    alice.waitFor(lambda line: line.startswith("*** #lobby: members: "))
    chatDaemon.stop()
    assert alice.wait() == 1
    assert re.match('^\\*\\*\\* server shutting down \\(reconnect in about ([1-9]|1[01]) s\\)$', alice.out[-1]), alice.out[-1]
    assert alice.err == ["twisted-chat: connection closed by server"]


@pytest.mark.e2e
def test_e2eJsonModeLooksLikeLineChat(startDaemon: Callable[..., Any], clientProcesses: Callable[..., ClientProcess]) -> None:
    """
    Through the real daemon, a client in WebSocket json mode and one on the
    line chat see the same lines for the same things; the json client's
    C{/quit} closes its WebSocket and exits 0, and its help is the line
    chat's.
    """
    daemon = startDaemon(web="tcp:0:interface=127.0.0.1")
    line = clientProcesses("tcp://127.0.0.1:%d" % (daemon.ports["line"],), "--nick", "bob")
    line.waitFor("*** you are now bob")
    line.send("before you came")
    line.waitFor("#lobby <bob> before you came")
    ws = clientProcesses("ws://127.0.0.1:%d/ws" % (daemon.ports["web"],), "--nick", "alice")
    ws.waitFor("*** Welcome to twisted-chat, alice! You are in #lobby. Type /help for commands.")
    ws.waitFor("*** #lobby: members: alice, bob")
    ws.waitFor(lambda s: re.fullmatch(r"#lobby \[\d\d:\d\d\] <bob> before you came", s) is not None)
    ws.send("hi from json")
    line.waitFor("#lobby <alice> hi from json")
    ws.waitFor("#lobby <alice> hi from json")
    line.send("/me waves")
    ws.waitFor("#lobby * bob waves")
    ws.send("/msg bob psst")
    ws.waitFor("-> *bob* psst")
    line.waitFor("*alice* psst")
    ws.send("/join dev")
    ws.waitFor("*** #dev: alice joined")
    ws.send("/rooms")
    ws.waitFor("*** rooms: #dev (1), #lobby (2)")
    ws.send("/help")
    ws.waitFor("***   /quit [REASON]    leave")
    ws.send("/quit")
    assert ws.wait() == 0
    assert ws.err == []
    line.waitFor(lambda s: s.startswith("*** #lobby: alice left"))
    assert line.finish() == 0


@pytest.mark.e2e
def test_e2eResumeAcrossRestart(
    startDaemon: Callable[..., Any],
    clientProcesses: Callable[..., ClientProcess],
    lineClients: Callable[..., Any],
    tmp_path: Path,
) -> None:
    """
    A client in WebSocket json mode survives a restart of the daemon (SQLite
    store, same ports): it says it is reconnecting, reconnects by itself and
    shows what was said meanwhile and after exactly once, and nothing twice;
    its C{/quit} then exits 0.
    """
    webPort, linePort = freeLoopbackPort(), freeLoopbackPort()
    addresses = dict(line="tcp:%d:interface=127.0.0.1" % (linePort,), web="tcp:%d:interface=127.0.0.1" % (webPort,))
    daemon = startDaemon("--drain-spread", "0", **addresses)
    welcome = "*** Welcome to twisted-chat, alice! You are in #lobby. Type /help for commands."
    ws = clientProcesses("ws://127.0.0.1:%d/ws" % (webPort,), "--nick", "alice")
    ws.waitFor(welcome)
    liner = lineClients(linePort)
    first = liner.welcome()
    ws.waitFor(lambda s: s.startswith("*** #lobby: members: "))
    liner.send("one")
    ws.waitFor("#lobby <%s> one" % (first,))
    daemon.stop()
    assert daemon.stoppedCleanly
    assert (tmp_path / "chat.sqlite3").exists()

    startDaemon("--drain-spread", "0", **addresses)
    liner = lineClients(linePort)
    second = liner.welcome()
    liner.send("two")
    liner.send("three")
    # live, or (when said before the client was back) as missed history
    said = lambda nick, text: re.compile(r"#lobby (\[[^\]]+\] )?<%s> %s" % (re.escape(nick), text))
    ws.waitFor(lambda s: said(second, "three").fullmatch(s) is not None, timeout=45)
    ws.waitCount(welcome, 2)
    assert ws.out.count(welcome) == 2
    assert [s for s in ws.out if said(second, "two").fullmatch(s)] != []
    assert len([s for s in ws.out if said(second, "two").fullmatch(s)]) == 1, ws.out
    assert len([s for s in ws.out if said(second, "three").fullmatch(s)]) == 1, ws.out
    assert len([s for s in ws.out if s.endswith(" one")]) == 1, ws.out
    assert not any("may be missing" in s for s in ws.out), ws.out
    assert any(re.fullmatch(r"twisted-chat: connection lost \(server shutting down\): reconnecting in \d+\.\d s\u2026", s)
               for s in ws.err), ws.err
    ws.send("/quit")
    assert ws.wait() == 0


# -- end to end: the end of input waits for the server's confirmations --


def _wsURL(daemon: Any) -> str:
    return "ws://127.0.0.1:%d/ws" % (daemon.ports["web"],)


def _lineURL(daemon: Any) -> str:
    return "tcp://127.0.0.1:%d" % (daemon.ports["line"],)


@pytest.mark.e2e
def test_e2ePipedLineEchoed(startDaemon: Callable[..., Any]) -> None:
    """
    C{printf 'hi\\n' | twisted-chat ws://…}: the installed client waits for
    the message's acknowledgement before it quits, so its echo is printed;
    status 0, nothing on stderr.
    """
    daemon = startDaemon(web=LOOPBACK_WEB)
    done = runClient(_wsURL(daemon), "--nick", "alice", input="hi\n", installed=True)
    assert (done.returncode, done.stderr) == (0, ""), done
    assert done.stdout.splitlines()[-1] == "#lobby <alice> hi", done.stdout


@pytest.mark.e2e
def test_e2eSessionsDoNotShareRefs(startDaemon: Callable[..., Any]) -> None:
    """
    Two sessions with the same nick, one after the other: the second one's
    message is a new message, not taken for a resend of the first one's
    (the refs of each session are its own), so both are stored and echoed.
    """
    daemon = startDaemon(web=LOOPBACK_WEB)
    for text in ["first", "second"]:
        done = runClient(_wsURL(daemon), "--nick", "alice", input=text + "\n", installed=True)
        assert (done.returncode, done.stderr) == (0, ""), done
        assert done.stdout.splitlines()[-1] == "#lobby <alice> %s" % (text,), done.stdout


@pytest.mark.e2e
def test_e2ePipedManyLinesEchoed(
    startDaemon: Callable[..., Any], lineClients: Callable[..., Any]
) -> None:
    """
    Many lines piped at once (and a private message) over ws: every one is
    echoed, in order, before the client exits with status 0. (Flood control
    is off: it would refuse most of a paste.)
    """
    daemon = startDaemon("--flood-rate", "0", web=LOOPBACK_WEB)
    bob = lineClients(daemon.ports["line"])
    bob.welcome()
    bob.send("/nick bob")
    bob.expect("*** you are now bob")
    lines = ["line %d" % (i,) for i in range(200)] + ["/msg bob psst"]
    done = runClient(_wsURL(daemon), "--nick", "alice", input="\n".join(lines) + "\n", installed=True)
    assert (done.returncode, done.stderr) == (0, ""), done
    echoes = [line for line in done.stdout.splitlines() if line.startswith("#lobby <alice> ") or line.startswith("-> ")]
    assert echoes == ["#lobby <alice> line %d" % (i,) for i in range(200)] + ["-> *bob* psst"]
    bob.expect("*alice* psst")


@pytest.mark.e2e
@pytest.mark.parametrize("scheme", ["ws", "tcp"])
def test_e2ePipedRefused(startDaemon: Callable[..., Any], scheme: str) -> None:
    """
    A message the server refuses (a private message to nobody) is not lost
    but did not go through: the client shows the error, still waits for the
    rest, and exits with status 3, saying so on stderr; the same over the
    line chat and over ws.
    """
    daemon = startDaemon(web=LOOPBACK_WEB)
    url = _wsURL(daemon) if scheme == "ws" else _lineURL(daemon)
    done = runClient(url, "--nick", "alice", input="/msg nobody psst\nstill here\n", installed=True)
    assert done.returncode == 3, done
    assert done.stderr == "twisted-chat: 1 request was refused\n"
    out = done.stdout.splitlines()
    assert "!!! nobody called nobody is online" in out
    assert "#lobby <alice> still here" in out


class _StoppedDaemon:
    """
    C{with _StoppedDaemon(daemon):} the daemon is stopped (SIGSTOP, by its
    PID) for the block and always continued (SIGCONT) afterwards.
    """

    def __init__(self, daemon: Any) -> None:
        self.pid = daemon.proc.pid

    def __enter__(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def __exit__(self, *exc: object) -> None:
        os.kill(self.pid, signal.SIGCONT)


@pytest.mark.e2e
@pytest.mark.parametrize("scheme, bound", [("ws", None), ("tcp", 3)])
def test_e2eUnconfirmedExitsNonZero(
    startDaemon: Callable[..., Any], clientProcesses: Callable[..., ClientProcess], scheme: str, bound: int | None
) -> None:
    """
    When the server never confirms what was sent (it is stopped), the client
    gives up after 10 s (or C{--confirm-timeout} seconds) and exits with
    status 1, naming on stderr what was not confirmed; over ws each
    message, over the line chat every line (it confirms them all with the
    C{*** bye} that answers C{/quit}).
    """
    daemon = startDaemon(web=LOOPBACK_WEB)
    url = _wsURL(daemon) if scheme == "ws" else _lineURL(daemon)
    options = ["--confirm-timeout", str(bound)] if bound is not None else []
    client = clientProcesses(url, *options, installed=True)
    client.waitFor(lambda line: line.startswith("*** #lobby: members: "))
    with _StoppedDaemon(daemon):
        client.send("anyone there?")
        status = client.finish(timeout=TIMEOUT + (bound or 10))
    assert status == 1, (client.out, client.err)
    unit = "message" if scheme == "ws" else "line"
    seconds = bound or 10
    assert client.err == [
        "twisted-chat: waiting for the server to confirm 1 %s (giving up after %d s without an answer)" % (unit, seconds),
        "twisted-chat: gave up waiting: the server confirmed nothing for %d s" % (seconds,),
        "twisted-chat: 1 %s not confirmed by the server (it may or may not have gone through):" % (unit,),
        "twisted-chat:   anyone there?",
    ]


class MutingProxy:
    """
    A TCP proxy on 127.0.0.1 (a free port) to C{127.0.0.1:targetPort}, one
    thread per direction and connection. L{mute} makes the connections open
    so far throw away what the server sends (the client hears nothing);
    L{cut} closes them. Later connections are forwarded normally.
    """

    def __init__(self, targetPort: int) -> None:
        self.targetPort = targetPort
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._links: list[dict[str, Any]] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept, name="muting-proxy", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            if self._closed:
                client.close()
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.targetPort), timeout=TIMEOUT)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            link: dict[str, Any] = {"sockets": (client, upstream), "muted": False, "running": 2}
            with self._lock:
                self._links.append(link)
                self.accepted += 1
            for src, dst, fromServer in ((client, upstream, False), (upstream, client, True)):
                t = threading.Thread(target=self._pump, args=(link, src, dst, fromServer), daemon=True)
                self._threads.append(t)
                t.start()

    def _pump(self, link: dict[str, Any], src: socket.socket, dst: socket.socket, fromServer: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not (fromServer and link["muted"]):
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            # one side is gone: so is the other (which ends the other pump)
            self._shutdown(link)
            with self._lock:
                link["running"] -= 1
                last = link["running"] == 0
            if last:
                for s in link["sockets"]:
                    s.close()

    def _shutdown(self, link: dict[str, Any]) -> None:
        for s in link["sockets"]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def mute(self) -> None:
        with self._lock:
            for link in self._links:
                link["muted"] = True

    def cut(self) -> None:
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            self._shutdown(link)

    def close(self) -> None:
        self._closed = True
        # a connection wakes the thread blocked in accept(), which then ends
        socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT).close()
        self._thread.join(TIMEOUT)
        self.listener.close()
        self.cut()
        for t in self._threads:
            t.join(TIMEOUT)


@pytest.mark.e2e
def test_e2eConnectionLostWhileWaiting(
    startDaemon: Callable[..., Any], clientProcesses: Callable[..., ClientProcess], lineClients: Callable[..., Any]
) -> None:
    """
    The connection drops while the client waits for an acknowledgement (the
    server stored the message, its echo and ack were lost): the client
    reconnects, resumes (what it missed comes as "while you were away") and
    sends the message again with the same ref; the server answers with the
    first message, so it is stored and shown once, and the client exits
    with status 0 within the bound.
    """
    daemon = startDaemon(web=LOOPBACK_WEB)
    watcher = lineClients(daemon.ports["line"])
    watcher.welcome()
    proxy = MutingProxy(daemon.ports["web"])
    try:
        client = clientProcesses("ws://127.0.0.1:%d/ws" % (proxy.port,), "--nick", "alice", installed=True)
        client.waitFor(lambda line: line.startswith("*** #lobby: members: "))
        watcher.send("before")
        client.waitFor("#lobby <%s> before" % (watcher.nick,))
        proxy.mute()
        client.send("only once")
        watcher.expect("#lobby <alice> only once")
        client.proc.stdin.close()  # type: ignore[union-attr]
        client.waitFor("twisted-chat: waiting for the server to confirm 1 message (giving up after 10 s without an answer)", stderr=True)
        proxy.cut()
        assert client.wait() == 0, (client.out, client.err)
        assert proxy.accepted == 2
    finally:
        proxy.close()
    said = [line for line in client.out if line.endswith("<alice> only once")]
    assert len(said) == 1 and re.fullmatch(r"#lobby \[\d\d:\d\d\] <alice> only once", said[0]), client.out
    assert "*** #lobby: 1 message while you were away:" in client.out
    assert client.err[0] == "twisted-chat: waiting for the server to confirm 1 message (giving up after 10 s without an answer)"
    assert re.fullmatch(r"twisted-chat: connection lost \(.*\): reconnecting in 0\.\d s\u2026", client.err[1]), client.err
    assert client.err[2:] == ["twisted-chat: reconnected to 127.0.0.1:%d" % (proxy.port,)]
    # stored once: a second copy would have reached the watcher before the
    # ack reached the client, so before the watcher's next line
    watcher.send("after")
    between = watcher.expect("#lobby <%s> after" % (watcher.nick,))
    assert not [line for line in between if "only once" in line], between


@pytest.mark.e2e
@pytest_twisted.ensureDeferred
async def test_e2eTerminalEndOfInputWaits(startDaemon: Callable[..., Any]) -> None:
    """
    On a terminal, Ctrl-D (the end of input) waits for the server to confirm
    what was typed too: while the daemon is stopped, a notice above the
    input line says so; once it runs again the echo is shown and the client
    exits with status 0.
    """
    from twisted.internet import reactor

    daemon = startDaemon(web=LOOPBACK_WEB)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    client = PtyClient()
    script = installedClient()[0]
    try:
        reactor.spawnProcess(
            client.protocol,
            script,
            [script, _wsURL(daemon), "--nick", "alice"],
            env=clientEnvironment(),
            path=str(REPO),
            usePTY=(master, slave, os.ttyname(slave)),
        )
        await client.waitFor(b"*** #lobby: members: alice").addTimeout(TIMEOUT, reactor)
        await client.waitFor(b"> ").addTimeout(TIMEOUT, reactor)
        with _StoppedDaemon(daemon):
            client.write(b"hi\r\x04")
            await client.waitFor(b"twisted-chat: waiting for the server to confirm 1 message (giving up after 10 s without an answer)").addTimeout(
                TIMEOUT, reactor
            )
        await client.waitFor(b"#lobby <alice> hi").addTimeout(TIMEOUT, reactor)
        assert await client.ended.addTimeout(TIMEOUT, reactor) == 0
    finally:
        if not client.ended.called:
            client.protocol.transport.signalProcess("KILL")
            await client.ended.addTimeout(TIMEOUT, reactor)


@pytest.mark.e2e
def test_e2eConversationCommands(startDaemon: Callable[..., Any], clientProcesses: Callable[..., ClientProcess]) -> None:
    """
    Through the real daemon, two json-mode clients reply, react, edit,
    delete and search: each sees the other's doing as the line chat
    describes it, and a session whose edits, deletions and reactions were
    all acknowledged exits 0.
    """
    daemon = startDaemon(web=LOOPBACK_WEB)
    url = "ws://127.0.0.1:%d/ws" % (daemon.ports["web"],)
    bob = clientProcesses(url, "--nick", "bob")
    bob.waitFor("*** #lobby: members: bob")
    bob.send("lunch at 12?")
    bob.waitFor("#lobby <bob> lunch at 12?")
    alice = clientProcesses(url, "--nick", "alice")
    alice.waitFor(lambda s: re.fullmatch(r"#lobby \[\d\d:\d\d\] <bob> lunch at 12\?", s) is not None)
    alice.send("/reply 1 yes")
    for who in (alice, bob):
        who.waitFor("*** #lobby: alice replies to bob's \"lunch at 12?\":")
        who.waitFor("#lobby <alice> yes")
    alice.send("/react 2 \U0001f44d")
    bob.waitFor("*** #lobby: alice reacted \U0001f44d to bob's \"lunch at 12?\"")
    bob.send("/edit lunch at 12:30?")
    alice.waitFor("*** #lobby: bob edited \"lunch at 12?\": lunch at 12:30?")
    alice.send("/delete")
    bob.waitFor("*** #lobby: alice deleted \"yes\"")
    # (once alice's client has its own deletion back: before, it still has
    # the message, and the server answers that it is gone)
    alice.waitFor("*** #lobby: alice deleted \"yes\"")
    alice.send("/edit nothing left to edit")
    alice.waitFor("!!! #lobby: you have no message here to edit")
    alice.send("/search lunch")
    alice.waitFor("*** search \"lunch\": 1 found")
    alice.waitFor(lambda s: re.fullmatch(r"#lobby \[\d\d:\d\d\] <bob> lunch at 12:30\?", s) is not None)
    alice.send("/react 1 \U0001f44d")
    # (the same reaction again takes it back)
    bob.waitFor("*** #lobby: alice took back \U0001f44d from bob's \"lunch at 12:30?\"")
    assert bob.finish() == 0
    # the /edit refused here counts: status 3
    assert alice.finish() == 3
    assert alice.err == ["twisted-chat: 1 request was refused"]
