"""
Tests for C{twistd chat --workers N} (L{twisted_chat.daemon.workers}): the
worker pool in memory (start, relayed logs, restarts with back-off, SIGHUP,
stopping), the worker side (relayed log events, noticing that the parent
is gone), and the real parent with real workers sharing a loopback port
through a real Redis.
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import signal
import socket
import time
from typing import TYPE_CHECKING, Any, Callable

import pytest
from twisted.internet.error import ConnectionDone, ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, Logger, capturedLogs, formatEvent, formatEventAsClassicLogText
from twisted.python.failure import Failure

from twisted_chat import __version__
from twisted_chat.daemon.workers import (
    READY_FORMAT,
    ParentWatch,
    WorkerPool,
    _RelayObserver,
    shiftPort,
    socketFamily,
)

from tests.support.daemon import workerOf, workerPids

if TYPE_CHECKING:
    from tests.support.daemon import Daemon, LineClient, RedisServer

TIMEOUT = 10.0


# -- shiftPort and socketFamily ------------------------------------------------------


@pytest.mark.parametrize(
    "description, offset, wanted",
    [
        ("tcp:9464", 2, "tcp:9466"),
        ("tcp:9464:interface=127.0.0.1", 1, "tcp:9465:interface=127.0.0.1"),
        ("tcp6:9464:interface=\\:\\:1", 3, "tcp6:9467:interface=\\:\\:1"),
        ("tcp:interface=127.0.0.1:port=9000", 1, "tcp:interface=127.0.0.1:port=9001"),
        ("ssl:9443:privateKey=a\\:b.pem:certKey=c.pem", 1, "ssl:9444:privateKey=a\\:b.pem:certKey=c.pem"),
        ("tcp:0:interface=127.0.0.1", 5, "tcp:0:interface=127.0.0.1"),
        ("tcp:9464", 0, "tcp:9464"),
    ],
)
def test_shiftPort(description: str, offset: int, wanted: str) -> None:
    """
    shiftPort moves the port of a TCP or TLS endpoint string up, leaving
    everything else (escapes included) as it was, and port 0 alone.
    """
    assert shiftPort(description, offset) == wanted


@pytest.mark.parametrize(
    "description, why",
    [
        ("unix:/tmp/metrics.sock", "only tcp:, tcp6: and ssl:"),
        ("tcp:65535", "past 65535"),
        ("tcp:interface=127.0.0.1", "no port number"),
        ("tcp:http", "no port number"),
    ],
)
def test_shiftPortRefuses(description: str, why: str) -> None:
    """
    shiftPort refuses endpoints without a port it can move.
    """
    with pytest.raises(ValueError, match=why):
        shiftPort(description, 1)


def test_socketFamily() -> None:
    """
    socketFamily tells the address family of an open socket, and leaves it
    open.
    """
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family) as s:
            s.bind((host, 0))
            assert socketFamily(s.fileno()) == family
            os.fstat(s.fileno())


# -- the pool, in memory -------------------------------------------------------------


class _FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []
        self.ended = False

    def signalProcess(self, signame: str) -> None:
        if self.ended:
            raise ProcessExitedAlready()
        self.signals.append(signame)


class _ProcessReactor(MemoryReactorClock):
    """
    A memory reactor that records spawned processes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[dict[str, Any]] = []
        self._pids = iter(range(101, 10000))

    def spawnProcess(self, protocol: ProcessProtocol, executable: str, args: list[str], env: dict[str, str], childFDs: dict[int, Any]) -> _FakeProcess:
        process = _FakeProcess(next(self._pids))
        self.spawned.append(dict(protocol=protocol, executable=executable, args=args, env=env, childFDs=childFDs, process=process))
        protocol.makeConnection(process)  # type: ignore[arg-type]
        return process

    def end(self, index: int, reason: Exception) -> None:
        """
        The last process spawned for worker C{index} ends with C{reason}.
        """
        spawned = [s for s in self.spawned if s["args"][1] == str(index)][-1]
        spawned["process"].ended = True
        spawned["protocol"].processEnded(Failure(reason))

    def current(self, index: int) -> dict[str, Any]:
        return [s for s in self.spawned if s["args"][1] == str(index)][-1]


def makePool(count: int = 2, grace: float = 7.0) -> tuple[WorkerPool, _ProcessReactor, list[dict[str, Any]]]:
    reactor = _ProcessReactor()
    published: list[dict[str, Any]] = []
    pool = WorkerPool(
        count,
        lambda i: ["/usr/bin/worker", str(i)],
        lambda: {3: 30, 4: 31},
        reactor,
        grace=grace,
        environment={"HOME": "/nowhere"},
        publisher=published.append,
    )
    return pool, reactor, published


def test_poolStartsEveryWorker() -> None:
    """
    Starting the pool runs every worker with its command line, the given
    environment, pipes for stdin, stdout and stderr, and the inherited
    listening sockets; it logs their pids.
    """
    pool, reactor, _ = makePool(3)
    with capturedLogs() as events:
        pool.startService()
    assert [s["args"] for s in reactor.spawned] == [["/usr/bin/worker", str(i)] for i in range(3)]
    for s in reactor.spawned:
        assert s["executable"] == "/usr/bin/worker"
        assert s["env"] == {"HOME": "/nowhere"}
        assert s["childFDs"] == {0: "w", 1: "r", 2: "r", 3: 30, 4: 31}
    logged = [formatEvent(e) for e in events]
    assert logged[:3] == ["worker 0 started (pid 101)", "worker 1 started (pid 102)", "worker 2 started (pid 103)"]
    assert logged[-1] == "workers: 3 started (pids 101 102 103)"


def test_restartBackOff() -> None:
    """
    A worker that dies is restarted after 1 s, then after twice as long
    each time it dies again, up to 30 s; after it has lived a minute the
    next restart comes after 1 s again.
    """
    pool, reactor, _ = makePool(2)
    pool.startService()
    with capturedLogs() as events:
        reactor.end(1, ProcessTerminated(signal=9))
    assert [formatEvent(e) for e in events] == ["worker 1 (pid 102) was killed by signal 9", "worker 1: restarting in 1 s"]
    assert events[0]["log_level"] == LogLevel.error
    delays = []
    for _ in range(8):
        before = len(reactor.spawned)
        [call] = reactor.getDelayedCalls()
        delays.append(call.getTime() - reactor.seconds())
        reactor.advance(delays[-1] - 0.5)
        assert len(reactor.spawned) == before
        reactor.advance(0.5)
        assert len(reactor.spawned) == before + 1
        assert reactor.spawned[-1]["args"] == ["/usr/bin/worker", "1"]
        reactor.end(1, ProcessTerminated(exitCode=1))
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    reactor.advance(30)
    reactor.advance(60)
    with capturedLogs() as events:
        reactor.end(1, ProcessDone(0))
    assert [formatEvent(e) for e in events] == ["worker 1 (pid %d) exited with status 0" % (reactor.spawned[-1]["process"].pid,), "worker 1: restarting in 1 s"]
    assert reactor.current(0)["process"].signals == []


def test_signalAll() -> None:
    """
    signalAll sends a signal to every running worker and says how many
    got it.
    """
    pool, reactor, _ = makePool(3)
    pool.startService()
    reactor.end(2, ProcessTerminated(signal=9))
    assert pool.signalAll("HUP") == 2
    assert [s["process"].signals for s in reactor.spawned] == [["HUP"], ["HUP"], []]


def test_stopWaitsForEveryWorker() -> None:
    """
    Stopping the pool sends SIGTERM to every worker and is done once they
    have all exited; none is restarted.
    """
    pool, reactor, _ = makePool(2)
    pool.startService()
    d = pool.stopService()
    assert d is not None
    done: list[object] = []
    d.addCallback(done.append)
    assert [s["process"].signals for s in reactor.spawned] == [["TERM"], ["TERM"]]
    with capturedLogs() as events:
        reactor.end(0, ProcessDone(0))
        assert done == []
        reactor.end(1, ProcessDone(0))
    assert done == [None]
    assert [formatEvent(e) for e in events] == [
        "worker 0 (pid 101) stopped: exited with status 0",
        "worker 1 (pid 102) stopped: exited with status 0",
        "all workers stopped",
    ]
    assert reactor.getDelayedCalls() == []
    assert len(reactor.spawned) == 2


def test_stopKillsLaggards() -> None:
    """
    A worker still running C{grace} seconds after SIGTERM gets SIGKILL.
    """
    pool, reactor, _ = makePool(2, grace=7)
    pool.startService()
    done: list[object] = []
    pool.stopService().addCallback(done.append)  # type: ignore[union-attr]
    reactor.end(0, ProcessDone(0))
    reactor.advance(6.9)
    assert reactor.current(1)["process"].signals == ["TERM"]
    with capturedLogs() as events:
        reactor.advance(0.1)
    assert reactor.current(1)["process"].signals == ["TERM", "KILL"]
    assert [formatEvent(e) for e in events] == ["workers [1] still running 7 s after SIGTERM: sending SIGKILL"]
    reactor.end(1, ProcessTerminated(signal=9))
    assert done == [None]


def test_stopCancelsRestarts() -> None:
    """
    Stopping the pool while a worker waits to be restarted cancels the
    restart; with no worker running it is done at once.
    """
    pool, reactor, _ = makePool(1)
    pool.startService()
    reactor.end(0, ProcessTerminated(signal=9))
    assert len(reactor.getDelayedCalls()) == 1
    assert pool.stopService() is None
    assert reactor.getDelayedCalls() == []
    reactor.advance(60)
    assert len(reactor.spawned) == 1


def _eventLine(text: str, fmt: str | None = None, level: str = "info", namespace: str = "twisted_chat.x") -> bytes:
    record = {"time": 1000.5, "namespace": namespace, "level": level, "system": "%s#%s" % (namespace, level), "text": text, "format": fmt}
    return json.dumps(record).encode() + b"\n"


def test_relayedEvents() -> None:
    """
    Each JSON line a worker writes on its stdout (even split across reads)
    is logged by the parent as its own event, with the worker's time,
    namespace and level, and its index in the system: C{[w1:…]}.
    """
    pool, reactor, published = makePool(2)
    pool.startService()
    protocol = reactor.current(1)["protocol"]
    data = _eventLine("alice connected") + _eventLine("oops", level="warn")
    protocol.childDataReceived(1, data[:10])
    assert published == []
    protocol.childDataReceived(1, data[10:])
    assert [e["text"] for e in published] == ["alice connected", "oops"]
    first = published[0]
    assert (first["log_namespace"], first["log_level"], first["log_time"], first["worker"], first["worker_pid"]) == (
        "twisted_chat.x", LogLevel.info, 1000.5, 1, 102
    )
    assert published[1]["log_level"] == LogLevel.warn
    assert formatEventAsClassicLogText(first).endswith(" [w1:twisted_chat.x#info] alice connected\n")


def test_relayedText() -> None:
    """
    What a worker writes on its stderr, or on its stdout but not as an
    event, is logged line by line (errors for stderr); an unfinished last
    line is logged when the worker ends.
    """
    pool, reactor, published = makePool(1)
    pool.startService()
    protocol = reactor.current(0)["protocol"]
    protocol.childDataReceived(2, b"Traceback (most recent call last):\n  File x\nValueError: bad")
    protocol.childDataReceived(1, b"not json\n\n")
    reactor.end(0, ProcessTerminated(exitCode=1))
    assert [(e["text"], e["log_level"], e["log_system"]) for e in published] == [
        ("Traceback (most recent call last):", LogLevel.error, "w0:twisted_chat.daemon.workers.stderr#error"),
        ("  File x", LogLevel.error, "w0:twisted_chat.daemon.workers.stderr#error"),
        ("not json", LogLevel.info, "w0:twisted_chat.daemon.workers.stdout#info"),
        ("ValueError: bad", LogLevel.error, "w0:twisted_chat.daemon.workers.stderr#error"),
    ]


def test_readyOnceEveryWorkerIs() -> None:
    """
    The parent logs that it is ready once every worker has logged that it
    is, and only the first time.
    """
    pool, reactor, _ = makePool(2)
    pool.startService()
    ready = _eventLine("twisted-chat %s ready" % (__version__,), fmt=READY_FORMAT)
    with capturedLogs() as events:
        reactor.current(0)["protocol"].childDataReceived(1, ready)
        assert [formatEvent(e) for e in events] == ["worker 0 (pid 101) ready"]
        reactor.current(1)["protocol"].childDataReceived(1, ready)
        reactor.end(1, ProcessTerminated(signal=9))
        reactor.advance(1)
        reactor.current(1)["protocol"].childDataReceived(1, ready)
    logged = [formatEvent(e) for e in events]
    assert logged[1:3] == ["worker 1 (pid 102) ready", "twisted-chat %s ready: 2 workers" % (__version__,)]
    assert logged[-1] == "worker 1 (pid 103) ready"
    assert logged.count("twisted-chat %s ready: 2 workers" % (__version__,)) == 1


def test_relayObserverRoundTrip() -> None:
    """
    The events a worker's relay observer writes are logged by the parent
    with their text, a failure's traceback included.
    """
    out = io.StringIO()
    log = Logger(namespace="twisted_chat.test", observer=_RelayObserver(out))
    log.info("{nick} connected", nick="alice")
    try:
        1 / 0
    except ZeroDivisionError:
        log.failure("it broke")
    pool, reactor, published = makePool(1)
    pool.startService()
    reactor.current(0)["protocol"].childDataReceived(1, out.getvalue().encode())
    [connected, broke] = published
    assert connected["text"] == "alice connected"
    assert connected["log_system"] == "w0:twisted_chat.test#info"
    assert broke["log_level"] == LogLevel.critical
    assert broke["text"].startswith("it broke\n")
    assert "ZeroDivisionError" in broke["text"]


def test_parentWatch() -> None:
    """
    A worker stops its reactor once its stdin, a pipe from the parent,
    ends: the parent is gone.
    """
    reactor = MemoryReactorClock()
    readEnd, writeEnd = os.pipe()
    try:
        watch = ParentWatch(reactor, readEnd)
        watch.startService()
        [reader] = reactor.readers
        os.write(writeEnd, b"x")
        assert reader.doRead() is None
        assert not reactor.hasStopped
        os.close(writeEnd)
        writeEnd = -1
        with capturedLogs() as events:
            why = reader.doRead()
            assert isinstance(why, ConnectionDone)
            reader.connectionLost(Failure(why))
        assert reactor.hasStopped
        assert [formatEvent(e) for e in events] == ["the parent process is gone: stopping"]
        watch.stopService()
    finally:
        os.close(readEnd)
        if writeEnd != -1:
            os.close(writeEnd)


# -- the real thing ---------------------------------------------------------------------


def waitGone(pids: list[int], timeout: float = TIMEOUT) -> list[int]:
    """
    Wait (without polling: on pidfds) until the processes C{pids} have
    exited; return those still running after C{timeout} seconds.
    """
    fds = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    try:
        while fds:
            ready, _, _ = select.select(list(fds), [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            for fd in ready:
                del fds[fd]
                os.close(fd)
        return list(fds.values())
    finally:
        for fd in fds:
            os.close(fd)


def startWorkers(startDaemon: Callable[..., Daemon], redis: RedisServer, *args: str, **kw: Any) -> Daemon:
    """
    Start the daemon with two workers and Redis; wait until both are ready.
    """
    daemon = startDaemon("--broker", redis.url, "--workers", "2", *args, **kw)
    daemon.waitForLog(r"\] twisted-chat \S+ ready: 2 workers", TIMEOUT)
    return daemon


def joined(client: LineClient) -> LineClient:
    """
    Wait until C{client} has joined #lobby for good: in a cluster the
    history of a room comes from Redis after the "members" line, and a
    message said meanwhile is part of that history instead of arriving
    live. Its own message comes back once the history has been sent.
    """
    client.send("%s is here" % (client.nick,))
    client.expect("#lobby <%s> %s is here" % (client.nick, client.nick))
    return client


def oneOnEachWorker(daemon: Daemon, lineClients: Callable[..., LineClient], tries: int = 60) -> dict[int, LineClient]:
    """
    Connect line clients until one is served by each of the two workers;
    return the first of each (the others are closed).
    """
    port = daemon.ports["line"]
    found: dict[int, LineClient] = {}
    for _ in range(tries):
        client = lineClients(port)
        client.welcome()
        worker = workerOf(daemon, client)
        if worker in found:
            client.close()
            continue
        found[worker] = client
        if len(found) == 2:
            for client in found.values():
                joined(client)
            return found
    raise AssertionError("%d connections all went to worker(s) %s. Log:\n%s" % (tries, sorted(found), daemon.log))


@pytest.mark.e2e
def test_workersShareThePortAndTheRooms(
    startDaemon: Callable[..., Daemon], redisServer: RedisServer, lineClients: Callable[..., LineClient]
) -> None:
    """
    With --workers 2 the parent binds the line port once, both workers
    serve connections on it (each logs as C{[wI:…]}, with a node id of its
    own), and a message said on one worker reaches a client of the other.
    """
    daemon = startWorkers(startDaemon, redisServer)
    assert len(daemon.listening["line"]) == 1
    assert sorted(workerPids(daemon)) == [0, 1]
    daemon.waitForLog(r"\[w0:[^\]]*\] node \S+-w0: joined the cluster")
    daemon.waitForLog(r"\[w1:[^\]]*\] node \S+-w1: joined the cluster")
    clients = oneOnEachWorker(daemon, lineClients)
    first, second = clients[0], clients[1]
    first.send("hello from worker 0")
    second.expect("#lobby <%s> hello from worker 0" % (first.nick,))
    second.send("and back from worker 1")
    first.expect("#lobby <%s> and back from worker 1" % (second.nick,))


@pytest.mark.e2e
def test_deadWorkerIsRestarted(
    startDaemon: Callable[..., Daemon], redisServer: RedisServer, lineClients: Callable[..., LineClient]
) -> None:
    """
    A worker killed with SIGKILL is restarted by the parent; its clients
    are disconnected, and can connect again and chat with the clients of
    the other worker.
    """
    daemon = startWorkers(startDaemon, redisServer)
    clients = oneOnEachWorker(daemon, lineClients)
    victim = workerPids(daemon)[1]
    os.kill(victim, signal.SIGKILL)
    daemon.waitForLog(r"\] worker 1 \(pid %d\) was killed by signal 9" % (victim,))
    daemon.waitForLog(r"\] worker 1: restarting in 1 s")
    clients[1].readUntilClosed()
    assert clients[1].eof
    # meanwhile worker 0 serves every new connection
    again = lineClients(daemon.ports["line"])
    again.welcome()
    joined(again)
    again.send("back again")
    clients[0].expect("#lobby <%s> back again" % (again.nick,))
    clients[0].send("welcome back")
    again.expect("#lobby <%s> welcome back" % (clients[0].nick,))
    m = daemon.waitForLog(r"\] worker 1 started \(pid (?!%d\))(\d+)\)" % (victim,), TIMEOUT + 2)
    daemon.waitForLog(r"\] worker 1 \(pid %s\) ready$" % (m.group(1),), TIMEOUT)
    # and once restarted, worker 1 serves again
    clients = oneOnEachWorker(daemon, lineClients)
    clients[1].send("hello from the new worker 1")
    clients[0].expect("#lobby <%s> hello from the new worker 1" % (clients[1].nick,))


@pytest.mark.e2e
def test_sigtermStopsEveryWorker(startDaemon: Callable[..., Daemon], redisServer: RedisServer) -> None:
    """
    SIGTERM to the parent stops every worker (each says goodbye to its
    clients and exits 0), then the parent exits with status 0.
    """
    daemon = startWorkers(startDaemon, redisServer)
    pids = list(workerPids(daemon).values())
    assert len(pids) == 2
    assert daemon.stop() == 0
    assert daemon.stoppedCleanly
    assert waitGone(pids, 0.0) == []
    for index in (0, 1):
        assert re.search(r"\] worker %d \(pid \d+\) stopped: exited with status 0" % (index,), daemon.log)
    assert "] all workers stopped" in daemon.log


@pytest.mark.e2e
def test_sighupIsPassedOn(startDaemon: Callable[..., Daemon], redisServer: RedisServer) -> None:
    """
    SIGHUP to the parent makes every worker reload.
    """
    daemon = startWorkers(startDaemon, redisServer)
    daemon.signal(signal.SIGHUP)
    daemon.waitForLog(r"\] SIGHUP: passed on to 2 workers")
    daemon.waitForLog(r"\[w0:[^\]]*\] SIGHUP: reloading")
    daemon.waitForLog(r"\[w1:[^\]]*\] SIGHUP: reloading")


@pytest.mark.e2e
def test_metricsPortPerWorker(startDaemon: Callable[..., Daemon], redisServer: RedisServer) -> None:
    """
    Worker I serves --metrics on the given port + I.
    """
    base = _twoFreePorts()
    daemon = startWorkers(startDaemon, redisServer, metrics="tcp:%d:interface=127.0.0.1" % (base,))
    daemon.waitForLog(r"\[w0:[^\]]*\] metrics listening on tcp:127\.0\.0\.1:%d$" % (base,))
    daemon.waitForLog(r"\[w1:[^\]]*\] metrics listening on tcp:127\.0\.0\.1:%d$" % (base + 1,))
    for port in (base, base + 1):
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
            s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            assert s.recv(12).startswith(b"HTTP/1.")


def _twoFreePorts() -> int:
    """
    A loopback port that is free, and so is the next one.
    """
    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            base = first.getsockname()[1]
            if base >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", base + 1))
                except OSError:
                    continue
                return base
    raise AssertionError("no two free loopback ports in a row")


@pytest.mark.e2e
def test_workersStopWhenTheParentDies(tmp_path: Any, redisServer: RedisServer) -> None:
    """
    Workers whose parent was killed with SIGKILL notice that it is gone and
    exit, instead of serving on with nobody to manage them; they remove the
    parent's directory of private sockets, which it could not.
    """
    from tests.support.daemon import LOOPBACK, Daemon

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    daemon = Daemon(
        ["--line", LOOPBACK, "--web", "none", "--metrics", "none", "--broker", redisServer.url, "--workers", "2", "--log-connections"],
        tmp_path,
        env={"TMPDIR": str(temporary)},
    )
    left: list[int] = []
    try:
        daemon.waitForLog(r"\] twisted-chat \S+ ready: 2 workers", TIMEOUT * 2)
        [peers] = list(temporary.iterdir())
        assert (peers / "limits.sock").exists()
        pids = list(workerPids(daemon).values())
        daemon.proc.kill()
        daemon.proc.wait(TIMEOUT)
        left = waitGone(pids)
        assert left == [], daemon.log
        assert list(temporary.iterdir()) == []
    finally:
        daemon.stop()
        for pid in left:
            # (the test's own workers, left behind by the failure)
            os.kill(pid, signal.SIGKILL)


@pytest.mark.e2e
def test_workersWithTLS(
    startDaemon: Callable[..., Daemon], redisServer: RedisServer, tmp_path: Any
) -> None:
    """
    An ssl: line address is shared with the workers too: they speak TLS on
    the parent's socket.
    """
    import ssl

    from tests.support.tls import writeSelfSignedCertificate

    cert, key = writeSelfSignedCertificate(tmp_path, withAddress=False)
    # (startDaemon's own --line, a plain one, comes first: it probes that)
    daemon = startWorkers(startDaemon, redisServer, "--line", "ssl:0:interface=127.0.0.1:privateKey=%s:certKey=%s" % (key, cert))
    tlsPort = daemon.listening["line"][1][1]
    context = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", tlsPort), timeout=TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as s:
            s.settimeout(TIMEOUT)
            data = b""
            while b"\n" not in data:
                chunk = s.recv(4096)
                assert chunk, data
                data += chunk
    assert data.startswith(b"*** Welcome to twisted-chat, ")
