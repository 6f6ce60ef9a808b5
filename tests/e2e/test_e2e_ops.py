"""
End-to-end tests of operability: the real daemon as a subprocess, seen as
an operator sees it: Prometheus metrics and probes over HTTP, JSON logs from
C{twist}, SIGHUP reloads, the drain on SIGTERM, systemd socket activation and
C{twistd chat --check}.

Everything is synchronous: line users are L{LineClient}s, json users the
C{websockets} package's threaded client; every wait is bounded, and waits
for the daemon are on its log (L{Daemon.waitForLog}).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from twisted_chat.core.auth import hashPassword

from tests.support.daemon import LOOPBACK, Daemon, LineClient, twistdCommand
from tests.support.lines import lineUser
from tests.support.sio import NodeClient
from tests.support.wsclients import hello, receiveUntil, webSocket

pytestmark = pytest.mark.e2e

#: bound on every single wait (a line, a frame, an HTTP answer)
TIMEOUT = 10.0

#: the startup probe of the startDaemon fixture is the first guest
PROBE_GONE = r"guest-1 disconnected \(disconnected\)"


# -- helpers ------------------------------------------------------------------


def http(port: int, path: str) -> tuple[int, str, bytes]:
    """
    GET C{path} on loopback C{port}, without any proxy from the
    environment: status, content type and body (also for error statuses).
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open("http://127.0.0.1:%d%s" % (port, path), timeout=TIMEOUT) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers.get("Content-Type", ""), e.read()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(daemon: Daemon) -> Samples:
    """
    The daemon's metrics as Prometheus reads them from C{/metrics} on the
    metrics port: sample name and sorted labels -> value.
    """
    status, contentType, text = http(daemon.ports["metrics"], "/metrics")
    assert (status, contentType.split(";")[0]) == (200, "text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode("utf-8"))
        for s in family.samples
    }


@pytest.fixture
def jsonUsers() -> Iterator[Callable[[Daemon, str], ClientConnection]]:
    """
    Open json-mode WebSocket users: C{jsonUsers(daemon, nick)} is a user who
    has said hello as C{nick} and got #lobby's history. All are closed in
    teardown.
    """
    with contextlib.ExitStack() as opened:

        def open(daemon: Daemon, nick: str) -> ClientConnection:
            ws = opened.enter_context(webSocket(daemon, compression=None))
            hello(ws, nick)
            return ws

        yield open


def said(room: str, nick: str, text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["type"] == "message" and (e["room"], e["from"], e["text"]) == (room, nick, text)


class Process(Daemon):
    """
    A L{Daemon} started from any command line (C{twist}, or C{twistd} under
    C{sh} for socket activation), with extra environment and C{Popen}
    arguments.
    """

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str] | None = None, **popen: Any) -> None:
        Daemon.__init__(self, command, cwd, command=command, env=env, **popen)


@pytest.fixture
def processes() -> Iterator[Callable[..., Process]]:
    """
    Start L{Process}es: C{processes(command, cwd, **kw)}; any still running
    in teardown is stopped (and the test fails if it hangs).
    """
    started: list[Process] = []

    def start(command: list[str], cwd: Path, **kw: Any) -> Process:
        process = Process(command, cwd, **kw)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


# -- metrics and probes -------------------------------------------------------


def test_metricsAfterAConversation(
    startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient], jsonUsers: Callable[..., ClientConnection]
) -> None:
    """
    After a scripted chat between two line users and two json users (six
    room messages, one private message, one json user gone, one line user
    quit, a flood), C{/metrics} on the metrics port shows: the messages by
    kind, one delivery per member of the room at the time of each room
    message, one commit-latency observation per message, the members by
    front-end, connections, rooms and memberships now, the disconnects by
    reason (the fixture's start-up probe was one), the flooder held back
    once by flood control (all its requests answered, none refused), and
    reactor lag. C{/metrics} is not served on the public web port.
    """
    daemon = startDaemon(
        "--store", "memory", "--flood-rate", "5", "--flood-burst", "6", web=LOOPBACK, metrics=LOOPBACK
    )
    daemon.waitForLog(PROBE_GONE)
    port = daemon.ports["line"]
    alice, bob = lineClients(port), lineClients(port)
    for client, nick in ((alice, "alice"), (bob, "bob")):
        client.welcome()
        client.send("/nick " + nick)
        client.expect("*** you are now " + nick)
    carol, dave = jsonUsers(daemon, "carol"), jsonUsers(daemon, "dave")
    # #lobby: alice, bob, carol, dave; each message is seen by all before the next
    for nick, text in (("alice", "one"), ("carol", "two"), ("dave", "three")):
        if nick == "alice":
            alice.send(text)
        else:
            (carol if nick == "carol" else dave).send(json.dumps({"type": "say", "text": text}))
        for line in (alice, bob):
            line.expect("#lobby <%s> %s" % (nick, text))
        for ws in (carol, dave):
            receiveUntil(ws, said("#lobby", nick, text))
    # #dev: bob, carol
    bob.send("/join dev")
    bob.expect("*** #dev: members: bob")
    carol.send(json.dumps({"type": "join", "room": "#dev"}))
    bob.expect("*** #dev: carol joined")
    bob.send("four")
    bob.expect("#dev <bob> four")
    carol.send(json.dumps({"type": "say", "room": "#dev", "text": "five"}))
    bob.expect("#dev <carol> five")
    receiveUntil(carol, said("#dev", "carol", "five"))
    alice.send("/msg bob psst")
    bob.expect("*alice* psst")
    dave.close()
    daemon.waitForLog(r"dave disconnected \(disconnected\)")
    # #lobby: alice, bob, carol
    carol.send(json.dumps({"type": "say", "room": "#lobby", "text": "six"}))
    for line in (alice, bob):
        line.expect("#lobby <carol> six")
    bob.send("/quit")
    bob.readUntilClosed()
    daemon.waitForLog(r"bob disconnected \(quit")

    flooder = lineClients(port)
    flooder.welcome()
    flooder.expect(lambda line: line.endswith(" <carol> six"))  # the end of #lobby's history
    flooder.sendRaw(b"/who\n" * 12)
    deadline = time.monotonic() + TIMEOUT
    answers = [flooder.readLine(deadline) or "(closed)" for _ in range(12)]
    assert all(a.startswith("*** #lobby: members: ") for a in answers), answers

    seen = scrape(daemon)

    assert seen[("chat_messages_total", (("kind", "room"),))] == 6
    assert seen[("chat_messages_total", (("kind", "private"),))] == 1
    assert seen[("chat_deliveries_total", ())] == 4 + 4 + 4 + 2 + 2 + 3
    assert seen[("chat_store_commit_seconds_count", ())] == 7
    assert seen[("chat_store_failures_total", ())] == 0
    assert seen[("chat_members", (("frontend", "line"),))] == 2
    assert seen[("chat_members", (("frontend", "ws-json"),))] == 1
    assert seen[("chat_connections", ())] == 3
    assert seen[("chat_rooms", ())] == 2
    assert seen[("chat_room_memberships", ())] == 4
    disconnects = {labels: v for (name, labels), v in seen.items() if name == "chat_disconnects_total"}
    assert disconnects == {(("reason", "disconnected"),): 2, (("reason", "quit"),): 1}
    assert seen[("chat_throttled_total", ())] == 1
    assert ("chat_refused_total", (("reason", "flood"),)) not in seen
    assert seen[("chat_reactor_lag_seconds_count", ())] >= 1
    assert ("chat_reactor_lag_max_seconds", ()) in seen

    assert http(daemon.ports["web"], "/metrics")[0] == 404


_SUMMARY = re.compile(r"connections since the last summary: \d+ opened \((.*)\), \d+ closed \((.*)\); (\d+) open")


def summedSummaries(lines: list[str]) -> tuple[dict[str, int], dict[str, int], int]:
    """
    The connection summaries logged so far, added up: opened by front-end,
    closed by reason, and the number open in the last one.
    """
    opened: dict[str, int] = {}
    closed: dict[str, int] = {}
    now = -1
    for line in lines:
        m = _SUMMARY.search(line)
        if m is None:
            continue
        for counts, into in ((m.group(1), opened), (m.group(2), closed)):
            if counts != "none":
                for item in counts.split(", "):
                    name, _, n = item.rpartition(" ")
                    into[name] = into.get(name, 0) + int(n)
        now = int(m.group(3))
    return opened, closed, now


def test_connectionsSummarisedByDefault(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    Without C{--log-connections} the daemon logs no line per connection:
    every C{--connection-summary} seconds in which connections came or went
    it logs how many, by front-end and by reason (not a quit message's
    text), and how many are open.
    """
    daemon = startDaemon("--connection-summary", "1", "--store", "memory", web=LOOPBACK, logConnections=False)
    alice, bob = lineClients(daemon.ports["line"]), lineClients(daemon.ports["line"])
    for client in (alice, bob):
        client.welcome()
    with webSocket(daemon) as ws:
        hello(ws, "cyd")
        bob.send("/quit bye")
        bob.readUntilClosed()
        # (the fixture's start-up probe was a line connection too, closed at once)
        expected = ({"line": 3, "ws-json": 1}, {"disconnected": 1, "quit": 1}, 2)
        daemon.waitUntil(lambda lines: True if summedSummaries(lines) == expected else None)
    alice.send("/nick amy")
    alice.expect("*** you are now amy")
    assert "connected from" not in daemon.log
    assert "disconnected (" not in daemon.log
    assert "bye" not in daemon.log


def test_probesOnBothPorts(startDaemon: Callable[..., Daemon]) -> None:
    """
    C{/healthz} and C{/readyz} answer 200 with JSON on the metrics port and
    on the web port; C{/readyz} asks the (SQLite) store and counts members.
    """
    daemon = startDaemon(web=LOOPBACK, metrics=LOOPBACK)
    daemon.waitForLog(PROBE_GONE)
    for port in (daemon.ports["metrics"], daemon.ports["web"]):
        status, contentType, body = http(port, "/healthz")
        assert (status, contentType, json.loads(body)) == (200, "application/json", {"status": "ok"})
        status, contentType, body = http(port, "/readyz")
        assert (status, contentType, json.loads(body)) == (
            200,
            "application/json",
            {"status": "ready", "store": "ok", "members": 0},
        )


# -- logs ---------------------------------------------------------------------


def twistCommand(*args: str, twistArgs: tuple[str, ...] = ()) -> list[str]:
    """
    C{twist --log-format=json chat ARGS} with the interpreter running the
    tests.
    """
    return [sys.executable, str(Path(sys.executable).with_name("twist")), "--log-format=json", *twistArgs, "chat", *args]


def jsonEvents(process: Process) -> list[dict[str, Any]]:
    """
    The process's log, one event per line: each line is an RFC 7464 JSON
    text (a record separator, then one JSON object).
    """
    events = []
    for line in process.lines:
        assert line.startswith("\x1e"), line
        events.append(json.loads(line[1:]))
    return events


@pytest.mark.skipif(not Path(sys.executable).with_name("twist").exists(), reason="no twist script")
@pytest.mark.parametrize("logMessages", [False, True])
def test_jsonLogs(processes: Callable[..., Process], tmp_path: Path, logMessages: bool) -> None:
    """
    C{twist --log-format=json chat} logs one JSON event per line with named
    fields: a connection's nick, peer and front-end, a disconnect's reason
    (with C{--log-connections}, at debug level: C{twist} shows them with
    C{--log-level=debug}).
    The text of a message appears nowhere in the log, unless
    C{--log-messages} is given; then the message event has it as C{text}.
    """
    secret = "hunter2 is my password"
    process = processes(
        twistCommand(
            "--line", LOOPBACK, "--web", "none", "--metrics", "none", "--store", "memory", "--log-connections",
            *(["--log-messages"] if logMessages else []),
            twistArgs=("--log-level=debug",),
        ),
        tmp_path,
    )
    port = int(process.waitForLog(r'"address": "tcp:127\.0\.0\.1:(\d+)"').group(1))
    process.waitForLog(r"twisted-chat \{version\} ready")
    user = LineClient(port)
    peer = "127.0.0.1:%d" % (user.sock.getsockname()[1],)
    try:
        user.welcome()
        user.send("/nick zed")
        user.send(secret)
        user.expect("#lobby <zed> " + secret)
    finally:
        user.close()
    process.waitForLog(r'"log_format": "\{nick\} disconnected \(\{reason\}\)"')
    assert process.stop() == 0

    events = jsonEvents(process)
    byFormat = {e["log_format"]: e for e in events if "log_format" in e}
    connected = byFormat["{nick} connected from {peer} via {frontend}"]
    assert (connected["nick"], connected["peer"], connected["frontend"]) == (
        "guest-1",
        peer,
        "line",
    )
    disconnected = byFormat["{nick} disconnected ({reason})"]
    assert (disconnected["nick"], disconnected["reason"]) == ("zed", "disconnected")
    assert byFormat["{old} is now known as {new}"]["new"] == "zed"
    if logMessages:
        message = byFormat["{nick} in {room}: {text}"]
        assert (message["nick"], message["room"], message["text"]) == ("zed", "#lobby", secret)
    else:
        assert "hunter2" not in process.log
    assert "Main loop terminated." in byFormat


# -- reload -------------------------------------------------------------------


def test_sighupReloadsLimitsAndPasswords(
    startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient], tmp_path: Path
) -> None:
    """
    SIGHUP re-reads the limits file and the auth file: a second connection
    from the same address, refused under C{max-per-ip = 1}, is accepted
    under C{max-per-ip = 3}, and a user added to the auth file can log in;
    the connection open before the reload is still there. A limits file
    broken afterwards is reported in the log on the next SIGHUP, and the
    limits in effect stay.
    """
    auth, limits = tmp_path / "users.txt", tmp_path / "limits.conf"
    auth.write_text("alice:%s\n" % (hashPassword("alice-pw"),))
    limits.write_text("max-per-ip = 1\n")
    daemon = startDaemon("--store", "memory", "--auth", str(auth), "--limits", str(limits))
    daemon.waitForLog(PROBE_GONE)
    port = daemon.ports["line"]
    TOO_MANY = "!!! too many connections from your address (at most %d): close one first"

    alice = lineClients(port)
    alice.welcome()
    alice.send("/login alice alice-pw")
    alice.expect("*** you are logged in as alice")
    assert lineClients(port).readUntilClosed() == [TOO_MANY % 1]
    alice.send("/login bob bob-pw")
    alice.expect("!!! wrong nick or password")

    auth.write_text("alice:%s\nbob:%s\n" % (hashPassword("alice-pw"), hashPassword("bob-pw")))
    limits.write_text("max-per-ip = 3\n")
    daemon.signal(signal.SIGHUP)
    daemon.waitForLog(r"reload: 2 registered nicks")
    daemon.waitForLog(r"reload: limits \{'max-per-ip': 3\}")

    bob = lineClients(port)
    bob.welcome()
    bob.send("/login bob bob-pw")
    bob.expect("*** you are logged in as bob")
    alice.send("still here")
    bob.expect("#lobby <alice> still here")

    limits.write_text("max-per-ip = 9\nmax-per-ip: 9\n")
    daemon.signal(signal.SIGHUP)
    daemon.waitForLog(r"reload: limits not reloaded: %s line 2: expected NAME = VALUE" % (re.escape(str(limits)),))
    lineClients(port).welcome()
    assert lineClients(port).readUntilClosed() == [TOO_MANY % 3]


class StalledWebSocket:
    """
    A text-mode WebSocket client on a raw socket with a small receive
    buffer that, once it has taken a nick, never reads again.
    """

    def __init__(self, port: int, nick: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        self.sock.sendall(
            (
                "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (port, key)
            ).encode("ascii")
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = self.sock.recv(4096)
            assert chunk, "closed during the handshake: %r" % (answer,)
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 101 "), answer
        payload = ("/nick " + nick).encode("utf-8")
        mask = os.urandom(4)
        self.sock.sendall(bytes((0x81, 0x80 | len(payload))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def close(self) -> None:
        self.sock.close()


class IdlePoller:
    """
    A Socket.IO client on HTTP long-polling (raw requests) that connects to
    the chat in text mode as C{nick}, reads its greeting, and then never
    polls again.
    """

    def __init__(self, port: int, nick: str) -> None:
        self.port = port
        status, body = self.request("GET", "/socket.io/?EIO=4&transport=polling")
        assert status == 200 and body.startswith(b"0{"), body
        self.sid = json.loads(body[1:])["sid"]
        target = "/socket.io/?EIO=4&transport=polling&sid=" + self.sid
        assert self.request("POST", target, b'40{"nick":"%s"}' % (nick.encode("ascii"),)) == (200, b"ok")
        status, body = self.request("GET", target)
        assert status == 200 and body.startswith(b"40{"), body

    def request(self, method: str, target: str, body: bytes | None = None) -> tuple[int, bytes]:
        connection = HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            connection.request(method, target, body, {"Content-Type": "text/plain;charset=UTF-8"} if body else {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


def test_sighupReachesEveryFrontEnd(
    startDaemon: Callable[..., Daemon],
    lineClients: Callable[..., LineClient],
    jsonUsers: Callable[[Daemon, str], ClientConnection],
    nodeClients: Callable[..., NodeClient],
    tmp_path: Path,
) -> None:
    """
    Limits changed in the --limits file and reloaded with SIGHUP reach every
    front-end, connections opened before the reload included: the line
    chat refuses a line over the new max-line-length and a message over the
    new max-message-length, so do a json-mode WebSocket user and a
    Socket.IO client (socket.io-client, json mode, on WebSocket); and a
    WebSocket client and a Socket.IO polling session that do not read are
    dropped once more than the new max-outgoing waits for them, as the log
    says with that limit.
    """
    limits = tmp_path / "limits.conf"
    limits.write_text("max-outgoing = 1048576\n")
    daemon = startDaemon("--store", "memory", "--flood-rate", "0", "--limits", str(limits), web=LOOPBACK)
    daemon.waitForLog(PROBE_GONE)
    talker = lineUser(lineClients, daemon, "talker")
    stalled = StalledWebSocket(daemon.ports["web"], "stalledws")
    try:
        talker.expect(lambda line: line.endswith(" is now known as stalledws"))
        IdlePoller(daemon.ports["web"], "poller")
        talker.expect(lambda line: line.endswith(" is now known as poller"))
        jay = jsonUsers(daemon, "jay")
        sio = nodeClients("http://127.0.0.1:%d" % (daemon.ports["web"],), "websocket", {"mode": "json", "nick": "sio"})
        sio.expectOn("welcome")
        talker.expect("*** #lobby: sio joined")

        limits.write_text("max-outgoing = 4096\nmax-line-length = 3100\nmax-message-length = 3000\n")
        daemon.signal(signal.SIGHUP)
        daemon.waitForLog(r"reload: limits \{'max-outgoing': 4096, 'max-line-length': 3100, 'max-message-length': 3000\}")

        TOO_LONG = "message too long (max 3000 characters): not sent"
        talker.send("x" * 3101)
        talker.expect("!!! line too long (max 3100 bytes): discarded")
        talker.send("y" * 3001)
        talker.expect("!!! " + TOO_LONG)
        jay.send(json.dumps({"type": "say", "text": "z" * 3001, "ref": "long"}))
        error = receiveUntil(jay, lambda e: e["type"] == "error")[-1]
        assert (error["code"], error["message"], error["ref"]) == ("too-long", TOO_LONG, "long")
        [ack] = sio.call("say", {"text": "s" * 3001})
        assert ack == {"ok": False, "code": "too-long", "message": TOO_LONG}
        jay.close()
        sio.close()
        talker.expect("*** #lobby: sio left (disconnected)")

        # The two that do not read: the talker fills what waits for them.
        left: set[str] = set()
        sent = 0
        deadline = time.monotonic() + 60
        while left != {"stalledws", "poller"}:
            assert time.monotonic() < deadline, "not dropped; left so far: %r; log:\n%s" % (left, daemon.log)
            for _ in range(10):
                talker.send("%05d %s" % (sent, "x" * 2990))
                sent += 1
            for line in talker.expect("#lobby <talker> %05d %s" % (sent - 1, "x" * 2990)):
                m = re.fullmatch(r"\*\*\* #lobby: (\S+) left \(too slow\)", line)
                if m is not None:
                    left.add(m.group(1))
        daemon.waitForLog(r"dropping slow consumer \S+ \(stalledws\): over 4096 bytes queued")
        daemon.waitForLog(r"dropping slow engine\.io client \S+ \(session \S+\): over 4096 bytes waiting for a poll")
    finally:
        stalled.close()


# -- shutdown -----------------------------------------------------------------


def test_drainHintsAreJittered(
    startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient], jsonUsers: Callable[..., ClientConnection]
) -> None:
    """
    On SIGTERM every client is told to come back after 1 to 1 + drain-spread
    seconds (json: C{reconnect_after} in milliseconds, then close code 1001;
    line: the C{***} line, in whole seconds, then the connection closes),
    the delays differ from client to client, and the daemon exits 0.
    """
    spread = 3
    daemon = startDaemon("--store", "memory", "--drain-spread", str(spread), web=LOOPBACK)
    daemon.waitForLog(PROBE_GONE)
    webUsers = [jsonUsers(daemon, "j%d" % (i,)) for i in range(5)]
    lineUsers = [lineClients(daemon.ports["line"]) for _ in range(3)]
    for user in lineUsers:
        user.welcome()
    daemon.signal(signal.SIGTERM)
    daemon.waitForLog(r"shutting down: closing 8 connections")
    hints = []
    for ws in webUsers:
        notice = receiveUntil(ws, lambda e: e["type"] == "notice")[-1]
        assert notice["text"] == "server shutting down"
        hints.append(notice["reconnect_after"])
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    lineHints = []
    for user in lineUsers:
        last = user.readUntilClosed()[-1]
        m = re.fullmatch(r"\*\*\* server shutting down \(reconnect in about (\d+) s\)", last)
        assert m is not None, last
        lineHints.append(int(m.group(1)))
    assert all(1000 <= ms <= 1000 * (1 + spread) for ms in hints), hints
    assert len(set(hints)) > 1, hints
    assert all(1 <= s <= 1 + spread for s in lineHints), lineHints
    assert daemon.stop() == 0


# -- systemd socket activation ------------------------------------------------


def test_socketActivation(processes: Callable[..., Process], tmp_path: Path) -> None:
    """
    Started as systemd starts it, with a listening socket as descriptor 3
    and C{LISTEN_FDS}, C{LISTEN_FDNAMES} and C{LISTEN_PID} (its own pid)
    set, C{--line systemd:domain=INET:index=0} serves the line chat on that
    socket, and SIGTERM ends it with status 0.
    """
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listening.bind(("127.0.0.1", 0))
        listening.listen(16)
        port = listening.getsockname()[1]
        command = twistdCommand(
            "--line", "systemd:domain=INET:index=0", "--web", "none", "--metrics", "none", "--store", "memory"
        )
        # sh sets LISTEN_PID to its own pid, which exec hands to twistd.
        # close_fds=False: descriptor 3 is made in the child, after the
        # parent's list of descriptors to keep is fixed (Python's own
        # descriptors are not inherited anyway).
        daemon = processes(
            ["sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", *command],
            tmp_path,
            env={"LISTEN_FDS": "1", "LISTEN_FDNAMES": "line"},
            preexec_fn=lambda: os.dup2(listening.fileno(), 3),
            close_fds=False,
        )
    finally:
        listening.close()
    daemon.waitForLog(r"\] line listening on tcp:127\.0\.0\.1:%d$" % (port,))
    user = LineClient(port)
    try:
        assert user.welcome() == "guest-1"
    finally:
        user.close()
    assert daemon.stop() == 0
    assert daemon.stoppedCleanly


def test_systemdEndpointWithoutSocket(runTwistd: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """
    A C{systemd:} endpoint in a process that inherited no socket ends
    start-up with status 1 and one line saying so.
    """
    done = runTwistd("--line", "systemd:domain=INET:index=0", "--web", "none", "--metrics", "none")
    assert done.returncode == 1
    assert (done.stdout + done.stderr).splitlines() == [
        "twistd chat: endpoint 'systemd:domain=INET:index=0' names a socket this process did not inherit "
        "(LISTEN_FDS/LISTEN_PID, as systemd socket activation sets them) (see twistd chat --help)"
    ]


# -- --check ------------------------------------------------------------------


def test_checkGoodConfiguration(runTwistd: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    """
    C{twistd chat --check} with usable options, auth file and limits file
    prints that the configuration is OK and exits 0, without creating the
    database or listening.
    """
    (tmp_path / "users.txt").write_text("alice:%s\n" % (hashPassword("pw"),))
    (tmp_path / "limits.conf").write_text("max-per-ip = 5\n")
    before = sorted(tmp_path.iterdir())
    done = runTwistd("--check", "--auth", "users.txt", "--limits", "limits.conf", "--admin", "alice")
    assert (done.returncode, done.stdout, done.stderr) == (0, "twistd chat: configuration OK\n", "")
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    "files, args, problem",
    [
        (
            {"chat.sqlite3": b"garbage, not SQLite\n" * 200},
            [],
            "cannot use chat.sqlite3: file is not a database",
        ),
        (
            {"limits.conf": b"max-per-ip = 3\nflood-rate = fast\n"},
            ["--limits", "limits.conf"],
            "limits.conf line 2: flood-rate must be a number, not 'fast' (see twistd chat --help)",
        ),
        (
            {"users.txt": b"alice\n"},
            ["--auth", "users.txt"],
            "users.txt line 1: expected NICK:HASH (see twistd chat --help)",
        ),
    ],
    ids=["corrupt database", "bad limits file", "bad auth file"],
)
def test_checkBadConfiguration(
    runTwistd: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
    files: dict[str, bytes],
    args: list[str],
    problem: str,
) -> None:
    """
    C{twistd chat --check} with an unusable database, limits file or auth
    file exits 1 with one line naming the file and the problem, and leaves
    the files as they were.
    """
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    done = runTwistd("--check", *args)
    assert (done.returncode, (done.stdout + done.stderr).splitlines()) == (1, ["twistd chat: " + problem])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files
