"""
Tests for C{twistd chat}: its options (L{twisted_chat.daemon.options.Options}), the
service tree (L{twisted_chat.daemon.app.makeService}) and the plugin.
"""

from __future__ import annotations

from types import SimpleNamespace

import re
from typing import Any

import pytest
from twisted.application.service import IServiceMaker, MultiService, Service
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from twisted.logger import capturedLogs, formatEvent
from twisted.plugin import getPlugins

from twisted_chat.core.events import Message
from twisted_chat.frontends.line import LineChatFactory
from twisted_chat.stores.memory import MemoryStore
from twisted_chat.core.service import ChatService
from twisted_chat.daemon.app import Options, makeService


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def parseForTree(*args: str) -> Options:
    """
    Options for building a service tree in memory: no web port and no
    database file in the working directory.
    """
    return parse(*args, "--store", "memory", "--web", "none")


def refused(*args: str) -> str:
    """
    The message C{twistd chat ARGS} exits with.
    """
    with pytest.raises(SystemExit) as e:
        parse(*args)
    message = e.value.code
    assert isinstance(message, str), "exits with a message, not a bare status"
    return message


def lineListeners(reactor: MemoryReactorClock) -> list[tuple[int, LineChatFactory, str]]:
    return [(port, f, interface) for port, f, _, interface in reactor.tcpServers if isinstance(f, LineChatFactory)]


def chatServices(top: MultiService) -> list[ChatService]:
    return [s for s in top if isinstance(s, ChatService)]


# -- options ------------------------------------------------------------------


def test_defaults() -> None:
    """
    Without options the line chat listens on tcp:9000, the web port on
    tcp:8080, messages are kept in chat.sqlite3, with the documented limits.
    """
    options = parse()
    assert options["line"] == ["tcp:9000"]
    assert options["web"] == ["tcp:8080"]
    assert options["store"] == "sqlite:chat.sqlite3"
    assert options["store-sync"] == "full"
    assert options["retain-days"] == 30
    assert options["max-line-length"] == 4096
    assert options["idle-timeout"] == 600
    assert options["max-outgoing"] == 1 << 20
    assert options["history-size"] == 50
    assert options["retain-messages"] == 10000
    assert options["shutdown-timeout"] == 5.0


def test_numbers() -> None:
    """
    Numeric options are parsed as numbers; the idle timeout may be
    fractional or 0 (never).
    """
    options = parse(
        "--max-line-length", "64",
        "--idle-timeout", "0.5",
        "--max-outgoing", "65536",
        "--history-size", "0",
        "--retain-messages", "7",
        "--shutdown-timeout", "0",
    )
    assert (options["max-line-length"], options["idle-timeout"], options["max-outgoing"]) == (64, 0.5, 65536)
    assert (options["history-size"], options["retain-messages"], options["shutdown-timeout"]) == (0, 7, 0)
    assert parse("--idle-timeout", "0")["idle-timeout"] == 0


def test_lineIsRepeatable() -> None:
    """
    --line can be given several times; every endpoint is kept, in order,
    and none is added.
    """
    options = parse("--line", "tcp:9001:interface=127.0.0.1", "--line=unix:/tmp/chat.sock", "--line", "tcp:0")
    assert options["line"] == ["tcp:9001:interface=127.0.0.1", "unix:/tmp/chat.sock", "tcp:0"]


def test_lineNone() -> None:
    """
    --line none switches the line chat off; combined with an address it is
    refused.
    """
    assert parse("--line", "none")["line"] == []
    message = refused("--line", "none", "--line", "tcp:9000")
    assert "--line none cannot be combined with other --line addresses" in message


@pytest.mark.parametrize(
    "endpoint",
    ["tcp:notaport", "tcpp:80", "9000", "tcp:9000:interface=::1", "tcp:9000:bogus=1"],
)
def test_invalidEndpoint(endpoint: str) -> None:
    """
    An endpoint string that does not parse ends twistd with a one-line
    message naming it, without touching the network.
    """
    message = refused("--line", endpoint)
    assert "\n" not in message
    assert message.startswith("twistd chat: invalid endpoint %r" % (endpoint,))
    assert message.endswith("(see twistd chat --help)")


@pytest.mark.parametrize(
    "args, name",
    [
        (["--max-line-length", "63"], "max-line-length"),
        (["--max-line-length", "2000000"], "max-line-length"),
        (["--idle-timeout", "-1"], "idle-timeout"),
        (["--max-outgoing", "100"], "max-outgoing"),
        (["--history-size", "10001"], "history-size"),
        (["--retain-messages", "0"], "retain-messages"),
        (["--shutdown-timeout", "601"], "shutdown-timeout"),
    ],
)
def test_numbersOutOfRange(args: list[str], name: str) -> None:
    """
    A number outside its range ends twistd with a one-line message that
    gives the range.
    """
    message = refused(*args)
    assert "\n" not in message
    assert "%s must be between " % (name,) in message


@pytest.mark.parametrize("args", [["--max-line-length", "lots"], ["--idle-timeout", "soon"]])
def test_notANumber(args: list[str]) -> None:
    """
    A number option given something else ends twistd with a one-line message.
    """
    message = refused(*args)
    assert "\n" not in message
    assert "must be a number" in message


def test_unknownOption() -> None:
    """
    An unknown option ends twistd with one line, not the whole usage text.
    """
    assert refused("--colour", "blue") == "twistd chat: option --colour not recognized (see twistd chat --help)"


# -- the service tree -----------------------------------------------------------


def test_makeServiceBuildsOneChatService(store=MemoryStore()) -> None:
    """
    The tree has exactly one chat service, named C{chat}, configured from the
    options and using an in-memory store that keeps the configured number of
    messages.
    """
    options = parseForTree("--line", "none", "--history-size", "7", "--retain-messages", "3", "--shutdown-timeout", "2")
    top = makeService(options, reactor=MemoryReactorClock())
    [chat] = chatServices(top)
    assert top.getServiceNamed("chat") is chat
    assert chat.historySize == 7
    assert chat.shutdownTimeout == 2
    store = chat.store
    assert isinstance(store, MemoryStore)
    for i in range(1, 6):
        store.append(Message("#lobby", i, store.epoch, "alice", "m%d" % (i,), 0.0))
    kept: list[list[Message]] = []
    store.recent("#lobby", 10).addCallback(kept.append)
    assert [m.id for m in kept[0]] == [3, 4, 5]


def test_makeServiceListensOnEveryLineEndpoint() -> None:
    """
    Once started, the tree listens on every --line endpoint with one line
    factory that shares the chat service and carries the limits, and logs
    each listening address.
    """
    reactor = MemoryReactorClock()
    options = parseForTree(
        "--line", "tcp:9001:interface=127.0.0.1",
        "--line", "tcp:9002",
        "--max-line-length", "100",
        "--idle-timeout", "30",
        "--max-outgoing", "8192",
    )
    top = makeService(options, reactor=reactor)
    assert lineListeners(reactor) == []
    with capturedLogs() as events:
        top.privilegedStartService()
        top.startService()
    try:
        listeners = lineListeners(reactor)
        assert [(port, interface) for port, _, interface in listeners] == [(9001, "127.0.0.1"), (9002, "")]
        factory = listeners[0][1]
        assert listeners[1][1] is factory
        [chat] = chatServices(top)
        assert factory.service is chat
        settings = chat.settings
        assert (settings.maxLineLength, settings.idleTimeout, settings.maxOutgoing) == (100, 30, 8192)
        assert factory.clock is reactor
        logged = [formatEvent(e) for e in events]
        assert "line listening on tcp:0.0.0.0:9001" in logged
        assert "line listening on tcp:0.0.0.0:9002" in logged
    finally:
        top.stopService()


def test_makeServiceWithLineNoneListensNowhere() -> None:
    """
    With --line none the line chat listens nowhere.
    """
    reactor = MemoryReactorClock()
    top = makeService(parseForTree("--line", "none"), reactor=reactor)
    top.privilegedStartService()
    top.startService()
    try:
        assert lineListeners(reactor) == []
    finally:
        top.stopService()


def test_stoppingTheTreeSaysGoodbye() -> None:
    """
    Stopping the tree closes the line connections with a shutdown notice,
    and is done once they are gone.
    """
    reactor = MemoryReactorClock()
    top = makeService(parseForTree("--line", "tcp:9000"), reactor=reactor)
    top.privilegedStartService()
    top.startService()
    [(_, factory, _)] = lineListeners(reactor)
    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    transport = StringTransportWithDisconnection()
    transport.protocol = proto
    proto.makeConnection(transport)
    transport.clear()
    d = top.stopService()
    assert re.match('^\\*\\*\\* server shutting down \\(reconnect in about ([1-9]|1[01]) s\\)$', transport.value().decode().rstrip("\n"))
    assert not transport.connected
    done: list[object] = []
    d.addCallback(done.append)
    assert len(done) == 1


# -- the plugin -------------------------------------------------------------------


def test_pluginIsDiscoverable() -> None:
    """
    twistd finds the C{chat} plugin (the project is installed so that
    Twisted's plugin scan sees it), and it uses these options and this
    makeService.
    """
    makers = {p.tapname: p for p in getPlugins(IServiceMaker)}
    assert "chat" in makers
    chat = makers["chat"]
    assert chat.options is Options
    assert chat.makeService is makeService


# -- --broker and --workers -------------------------------------------------------

REDIS = "redis://127.0.0.1:6379/0"


def test_brokerParsesTheURL() -> None:
    """
    --broker takes a Redis URL, parsed at once; with it no store is
    configured (the history lives in Redis), and --workers defaults to 1.
    """
    options = parse("--broker", "redis://:secret@redis.example:6380/2?prefix=chat")
    url = options["broker-url"]
    assert (url.host, url.port, url.db, url.password, url.tls, url.prefix) == ("redis.example", 6380, 2, "secret", False, "chat")
    assert options["store"] is None
    assert options["workers"] == 1
    assert parse()["broker-url"] is None


def test_badBrokerURL() -> None:
    """
    A --broker URL that does not parse ends twistd with one line that says
    what is wrong with it.
    """
    message = refused("--broker", "http://127.0.0.1:6379")
    assert "\n" not in message
    assert message.startswith("twistd chat: --broker: ")
    assert "redis://" in message


def test_storeWithBrokerIsRefused() -> None:
    """
    --store given together with --broker is refused: the history lives in
    Redis.
    """
    message = refused("--broker", REDIS, "--store", "memory")
    assert message == "twistd chat: with --broker the history lives in Redis; drop --store (see twistd chat --help)"


def test_workersNeedABroker() -> None:
    """
    More than one worker without --broker is refused: workers share rooms
    only through Redis.
    """
    message = refused("--workers", "2")
    assert message == (
        "twistd chat: --workers 2 needs --broker redis://...: workers share rooms only through Redis"
        " (see twistd chat --help)"
    )
    assert parse("--workers", "1")["workers"] == 1


def test_workersAuto(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    --workers auto is one worker per CPU (so it needs --broker on a machine
    with more than one).
    """
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert parse("--broker", REDIS, "--workers", "auto")["workers"] == 6
    assert "--workers 6 needs --broker" in refused("--workers", "auto")
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert parse("--workers", "auto")["workers"] == 1


@pytest.mark.parametrize("value", ["0", "257", "many"])
def test_workersOutOfRange(value: str) -> None:
    """
    --workers must be a number from 1 to 256, or auto.
    """
    message = refused("--broker", REDIS, "--workers", value)
    assert "\n" not in message
    assert "workers must be" in message


@pytest.mark.parametrize(
    "args, wanted",
    [
        (["--line", "unix:/tmp/chat.sock"], "with --workers, --line must be a tcp:, tcp6: or ssl: endpoint"),
        (["--web", "systemd:domain=INET:index=0"], None),
        (["--metrics", "unix:/tmp/metrics.sock"], "with --workers, worker I serves --metrics on its port + I"),
        (["--metrics", "tcp:65535"], "past 65535"),
    ],
)
def test_workersNeedTCPListeners(args: list[str], wanted: str | None) -> None:
    """
    With --workers the line and web addresses must be TCP (or TLS) ones,
    which the parent shares with its workers, and the --metrics ports of
    every worker (the given one + its index) must exist.
    """
    message = refused("--broker", REDIS, "--workers", "2", *args)
    assert "\n" not in message
    if wanted is not None:
        assert wanted in message


def test_internalOptionsAreNotInTheHelp() -> None:
    """
    The options a parent gives its workers are left out of --help; the
    documented ones are in it.
    """
    text = Options().getUsage()
    assert "--workers=" in text and "--broker=" in text and "--node-id=" in text
    assert "--inherit-fds" not in text
    assert "--worker=" not in text


def test_workerArguments() -> None:
    """
    A worker gets the options of its parent (in full, even abbreviated
    ones) without --workers, with its own --metrics ports (the given ones +
    its index), its index, its node id and the sockets it inherits.
    """
    options = parse(
        "--broker", REDIS,
        "--workers=3",
        "--line", "tcp:9000",
        "--web", "none",
        "--metrics", "tcp:9464:interface=127.0.0.1",
        "--metrics", "tcp6:port=9500",
        "--history-s", "7",
        "--log-messages",
        "--allow-origin", "https://example.com",
        "--node-id", "chat1",
    )
    args = options.workerArguments(2, "line=3")
    assert args == [
        "--broker=" + REDIS,
        "--line=tcp:9000",
        "--web=none",
        "--history-size=7",
        "--log-messages",
        "--allow-origin=https://example.com",
        "--metrics=tcp:9466:interface=127.0.0.1",
        "--metrics=tcp6:port=9502",
        "--worker=2",
        "--node-id=chat1-w2",
        "--inherit-fds=line=3",
    ]
    worker = parse(*args)
    assert (worker["worker"], worker["workers"], worker["inherited"]) == (2, 1, {"line": [3], "web": [], "irc": []})
    assert (worker["history-size"], worker["allow-origin"], worker["node-id"]) == (7, ["https://example.com"], "chat1-w2")
    assert parse("--broker", REDIS, "--workers", "2", "--metrics", "none").workerArguments(0, "")[-4] == "--metrics=none"


def test_workerArgumentsKeepPortZero() -> None:
    """
    A --metrics port 0 stays 0 for every worker (each gets a free port),
    and the node id defaults to the host name and the worker index.
    """
    import socket

    args = parse("--broker", REDIS, "--workers", "2", "--metrics", "tcp:0:interface=127.0.0.1").workerArguments(1, "")
    assert "--metrics=tcp:0:interface=127.0.0.1" in args
    assert "--node-id=%s-w1" % (socket.gethostname(),) in args


@pytest.mark.parametrize(
    "args, wanted",
    [
        (["--worker", "1"], "--worker needs --inherit-fds"),
        (["--inherit-fds", "line=3"], "--inherit-fds is for worker processes"),
        (["--worker", "1", "--inherit-fds", "line=3,line=4"], "--inherit-fds gives 2 line sockets for 1 --line addresses"),
        (["--worker", "1", "--inherit-fds", "smtp=3"], "expected FRONTEND=FD"),
    ],
)
def test_workerOptionsChecked(args: list[str], wanted: str) -> None:
    """
    The options of a worker are checked like the others.
    """
    assert wanted in refused("--broker", REDIS, "--line", "tcp:9000", "--web", "none", *args)


class _ReadingPort:
    """
    A listening port that records whether it reads (accepts).
    """

    def __init__(self, address: IPv4Address) -> None:
        self.address = address
        self.reading = True
        self.listening = True

    def getHost(self) -> IPv4Address:
        return self.address

    def stopReading(self) -> None:
        self.reading = False

    def startReading(self) -> None:
        self.reading = True

    def stopListening(self) -> None:
        self.listening = self.reading = False


class _ReadingReactor(MemoryReactorClock):
    """
    A memory reactor whose TCP ports record whether they accept.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ports: list[_ReadingPort] = []

    def listenTCP(self, port: int, factory: object, backlog: int = 50, interface: str = "") -> _ReadingPort:  # type: ignore[override]
        super().listenTCP(port, factory, backlog, interface)  # type: ignore[arg-type]
        p = _ReadingPort(IPv4Address("TCP", interface or "0.0.0.0", port))
        self.ports.append(p)
        return p


class _FakeCluster(Service):
    """
    Stands in for L{twisted_chat.cluster.redis.RedisCluster}: a memory store, the
    local broker, and a C{ready} the test fires.
    """

    name = "redis"
    made: list[_FakeCluster] = []

    def __init__(
        self,
        url: object,
        clock: object = None,
        nodeId: str | None = None,
        retainMessages: int = 0,
        retainDays: float | None = None,
        busShards: int = 0,
    ) -> None:
        from twisted_chat.core.broker import LocalBroker

        self.url, self.clock, self.nodeId = url, clock, nodeId
        self.node = nodeId or "fake-node"
        #: (the command connection, never up: nothing is advertised)
        self.redis = SimpleNamespace(connected=False)
        self.retainMessages, self.retainDays, self.busShards = retainMessages, retainDays, busShards
        self.store = MemoryStore()
        self.broker = LocalBroker(self.store)
        self.ready: Deferred[None] = Deferred()
        self.events: list[str] = []
        #: (pause, resume) of each listener that Redis backpressure may hold
        self.throttles: list[tuple[Any, Any]] = []
        _FakeCluster.made.append(self)

    def key(self, *parts: str) -> str:
        return ":".join(("chat",) + parts)

    def addThrottle(self, pause: Any, resume: Any) -> None:
        self.throttles.append((pause, resume))

    def startService(self) -> None:
        Service.startService(self)
        self.events.append("started")

    def stopService(self) -> None:
        Service.stopService(self)
        self.events.append("stopped")


@pytest.fixture
def fakeRedis(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """
    RedisCluster replaced by L{_FakeCluster}, checkRedis by a probe that
    records its URL and succeeds.
    """
    from twisted_chat.cluster import redis as _redis

    probed: list[object] = []
    _FakeCluster.made = []
    monkeypatch.setattr(_redis, "RedisCluster", _FakeCluster)
    monkeypatch.setattr(_redis, "checkRedis", lambda url, timeout=5.0: probed.append(url))
    return probed


def test_brokerTree(fakeRedis: list[object]) -> None:
    """
    With --broker, Redis is probed, and the cluster service comes before
    the chat service in the tree (it starts first and stops last), which
    uses its store and broker; the cluster gets the retention options.
    """
    reactor = MemoryReactorClock()
    options = parse(
        "--broker", REDIS, "--line", "none", "--web", "none", "--metrics", "none", "--retain-messages", "5", "--retain-days", "0",
        "--bus-shards", "16",
    )
    top = makeService(options, reactor=reactor)
    assert fakeRedis == [options["broker-url"]]
    [cluster] = _FakeCluster.made
    [chat] = chatServices(top)
    names = [s.name for s in top]
    assert names.index("redis") < names.index("chat")
    assert chat.store is cluster.store and chat.broker is cluster.broker
    assert (cluster.url, cluster.clock, cluster.nodeId) == (options["broker-url"], reactor, None)
    assert (cluster.retainMessages, cluster.retainDays, cluster.busShards) == (5, None, 16)


def test_brokerUnreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    When Redis cannot be reached, start-up ends with its one-line reason
    (exit status 1), as with an unusable database.
    """
    from twisted_chat.cluster import redis as _redis

    def unreachable(url: object, timeout: float = 5.0) -> None:
        raise ValueError("cannot reach Redis at redis://127.0.0.1:6379/0: Connection refused")

    monkeypatch.setattr(_redis, "checkRedis", unreachable)
    with pytest.raises(SystemExit) as e:
        makeService(parse("--broker", REDIS, "--web", "none"), reactor=MemoryReactorClock())
    assert e.value.code == "twistd chat: cannot reach Redis at redis://127.0.0.1:6379/0: Connection refused"
    with pytest.raises(SystemExit) as e:
        parse("--broker", REDIS, "--check")
    assert e.value.code == "twistd chat: cannot reach Redis at redis://127.0.0.1:6379/0: Connection refused"


def test_checkProbesRedis(fakeRedis: list[object], capsys: pytest.CaptureFixture[str]) -> None:
    """
    --check with --broker probes Redis (and opens no database).
    """
    with pytest.raises(SystemExit) as e:
        parse("--broker", REDIS, "--check")
    assert e.value.code == 0
    assert len(fakeRedis) == 1
    assert capsys.readouterr().out == "twistd chat: configuration OK\n"


def test_listenersPauseWhileRedisIsBehind(fakeRedis: list[object]) -> None:
    """
    Once ready, the line and web listeners (not metrics) let the cluster
    pause and resume accepting while too many Redis commands are in flight.
    """
    reactor = _ReadingReactor()
    options = parse("--broker", REDIS, "--line", "tcp:9001", "--web", "tcp:9002", "--metrics", "tcp:9003")
    top = makeService(options, reactor=reactor)
    [cluster] = _FakeCluster.made
    top.privilegedStartService()
    top.startService()
    try:
        line, web, metrics = reactor.ports
        assert cluster.throttles == []
        cluster.ready.callback(None)
        assert len(cluster.throttles) == 2
        for pause, _ in cluster.throttles:
            pause()
        assert (line.reading, web.reading, metrics.reading) == (False, False, True)
        for _, resume in cluster.throttles:
            resume()
        assert (line.reading, web.reading, metrics.reading) == (True, True, True)
    finally:
        top.stopService()


def test_listenersWaitForRedis(fakeRedis: list[object]) -> None:
    """
    With --broker the line and web ports are bound at start-up but accept
    connections only once the shared state is loaded from Redis; the
    metrics port accepts at once. The daemon logs that it waits, then that
    it is ready.
    """
    reactor = _ReadingReactor()
    options = parse("--broker", REDIS, "--line", "tcp:9001", "--web", "tcp:9002", "--metrics", "tcp:9003")
    top = makeService(options, reactor=reactor)
    [cluster] = _FakeCluster.made
    with capturedLogs() as events:
        top.privilegedStartService()
        top.startService()
        try:
            line, web, metrics = reactor.ports
            assert [p.address.port for p in reactor.ports] == [9001, 9002, 9003]
            assert (line.reading, web.reading, metrics.reading) == (False, False, True)
            assert cluster.events == ["started"]
            logged = [formatEvent(e) for e in events]
            assert "waiting for Redis at redis://127.0.0.1:6379/0" in logged
            assert not any(text.endswith(" ready") for text in logged)
            cluster.ready.callback(None)
            assert (line.reading, web.reading, metrics.reading) == (True, True, True)
            logged = [formatEvent(e) for e in events]
            assert "Redis at redis://127.0.0.1:6379/0 ready: accepting connections" in logged
            assert logged[-1].startswith("twisted-chat ") and logged[-1].endswith(" ready")
        finally:
            top.stopService()
    assert cluster.events == ["started", "stopped"]
    assert not line.listening


def test_listenerStoppedBeforeReady(fakeRedis: list[object]) -> None:
    """
    A listener stopped before Redis is ready does not start accepting when
    it becomes ready.
    """
    reactor = _ReadingReactor()
    top = makeService(parse("--broker", REDIS, "--line", "tcp:9001", "--web", "none", "--metrics", "none"), reactor=reactor)
    [cluster] = _FakeCluster.made
    top.privilegedStartService()
    top.startService()
    top.stopService()
    cluster.ready.callback(None)
    [line] = reactor.ports
    assert not line.reading


def test_clusterStopsAfterTheChat(fakeRedis: list[object]) -> None:
    """
    On shutdown the cluster service is stopped only once the chat service
    has finished closing its connections.
    """
    reactor = MemoryReactorClock()
    top = makeService(parse("--broker", REDIS, "--line", "tcp:9000", "--web", "none", "--metrics", "none", "--shutdown-timeout", "3"), reactor=reactor)
    [cluster] = _FakeCluster.made
    [chat] = chatServices(top)
    top.privilegedStartService()
    top.startService()
    cluster.ready.callback(None)
    stopping: Deferred[None] = Deferred()
    chat.stopService = lambda: stopping  # type: ignore[method-assign]
    done: list[object] = []
    top.stopService().addCallback(done.append)
    assert cluster.events == ["started"]
    stopping.callback(None)
    assert cluster.events == ["started", "stopped"]
    assert done == [None]


def test_workerAdoptsInheritedSockets(fakeRedis: list[object]) -> None:
    """
    A worker serves on the sockets inherited from its parent (adopting
    them, with their address family, and closing its copy of the
    descriptor) instead of binding, and takes the node id it was given.
    """
    import os
    import socket

    server = socket.socket(socket.AF_INET6)
    server.bind(("::1", 0))
    server.listen()
    fd = os.dup(server.fileno())
    try:
        reactor = _ReadingReactor()
        options = parse(
            "--broker", REDIS, "--line", "tcp6:0:interface=\\:\\:1", "--web", "none", "--metrics", "tcp:9464",
            "--worker", "1", "--inherit-fds", "line=%d" % (fd,), "--node-id", "here-w1",
        )
        top = makeService(options, reactor=reactor)
        with capturedLogs() as events:
            top.privilegedStartService()
        [(adopted, family, factory)] = reactor.adoptedPorts
        assert (adopted, family) == (fd, socket.AF_INET6)
        # (through the worker's descriptor guard, which counts accepts)
        assert isinstance(factory.wrappedFactory, LineChatFactory)
        with pytest.raises(OSError):
            os.fstat(fd)
        assert [p.address.port for p in reactor.ports] == [9464]
        assert _FakeCluster.made[0].nodeId == "here-w1"
        assert "line serving tcp::::1234 (the parent's socket)" in [formatEvent(e) for e in events]
    finally:
        server.close()


def test_parentTree(fakeRedis: list[object]) -> None:
    """
    With --workers N the tree is a parent's: it probes Redis, binds the line
    and web ports (logging them as a node does) but never accepts on them,
    runs no chat service, and has a pool of N workers whose command line is
    twistd chat with the worker's options.
    """
    import os
    import stat

    from twisted_chat.daemon.parent import PeerDirectory
    from twisted_chat.daemon.workers import WorkerPool

    reactor = _ReadingReactor()
    options = parse("--broker", REDIS, "--workers", "3", "--line", "tcp:9001", "--web", "tcp:9002", "--metrics", "tcp:9464", "--shutdown-timeout", "2")
    top = makeService(options, reactor=reactor)
    assert len(fakeRedis) == 1
    assert chatServices(top) == []
    [directory] = [s for s in top if isinstance(s, PeerDirectory)]
    # (the pool runs inside the directory of its private sockets)
    pool = directory.getServiceNamed("workers")
    assert isinstance(pool, WorkerPool)
    assert len(pool.slots) == 3
    assert pool.grace == 2 + 5
    with capturedLogs() as events:
        for service in top:
            if service is not pool:
                service.privilegedStartService()
    logged = [formatEvent(e) for e in events]
    assert "line listening on tcp:0.0.0.0:9001" in logged
    assert "web listening on tcp:0.0.0.0:9002" in logged
    assert [(p.address.port, p.reading) for p in reactor.ports] == [(9001, False), (9002, False)]
    command = pool._arguments(1)
    assert command[command.index("chat") - 3 :command.index("chat")] == ["--nodaemon", "--pidfile=", "--logger=twisted_chat.daemon.workers.relayObserver"]
    peers = directory.path
    assert peers is not None and stat.S_IMODE(os.stat(peers).st_mode) == 0o700
    assert command[command.index("chat") + 1 :][-5:] == [
        "--metrics=tcp:9465", "--worker=1", command[-3], "--inherit-fds=line=3,web=4", "--peer-dir=" + peers
    ]
    # the parent counts the machine's connections on its socket there
    assert [(path, mode) for path, _, _, mode, _ in reactor.unixServers] == [(os.path.join(peers, "limits.sock"), 0o600)]
    # (the directory of the workers' private sockets goes with the parent)
    directory.stopService()
    assert not os.path.exists(peers)


def test_parentPassesSIGHUPOn() -> None:
    """
    SIGHUP to a parent is passed on to its workers.
    """
    from twisted_chat.daemon.control import Daemon

    sent: list[str] = []

    class Pool:
        def signalAll(self, signame: str) -> int:
            sent.append(signame)
            return 2

    daemon = Daemon(MemoryReactorClock())
    daemon.workers = Pool()
    with capturedLogs() as events:
        daemon.reload()
    assert sent == ["HUP"]
    assert [formatEvent(e) for e in events] == ["SIGHUP: passed on to 2 workers"]
