"""
A node's way back to Redis when the path to it misbehaves: connections
accepted and closed during their set-up (a TCP proxy, a load balancer or
HAProxy in front of a Redis that is down), accepted and never answered,
a password Redis refuses, a Redis still loading its data. Each node is a
real L{RedisCluster} and L{ChatService} in this process, on a real
C{redis-server}, reached through L{RedisPath}, a TCP proxy on loopback
whose behaviour the test sets.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from twisted_chat.core.errors import ChatError, StoreUnavailable
from twisted_chat.core.events import Message, Notice

from tests.support.cluster import TIMEOUT, Node, isMessage, squatting, twoInRoom, until

#: what RedisPath does with each new connection
PASS, CLOSE, CLOSE_AFTER_FIRST, HOLD = "pass", "close", "close-after-first", "hold"


class _Downstream(Protocol):
    """
    A connection of a node to the proxy; in L{PASS} mode piped to Redis.
    """

    def __init__(self, path: "RedisPath") -> None:
        self.path = path
        self.mode = path.mode
        self.upstream: _Upstream | None = None
        self.pending: list[bytes] = []

    def connectionMade(self) -> None:
        self.path._accepted(self)
        if self.mode == CLOSE:
            self.transport.loseConnection()
        elif self.mode == PASS:
            from twisted.internet import reactor
            from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

            up = _Upstream(self)
            d = connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.path.upstreamPort, timeout=5), up)
            d.addCallbacks(self._piped, lambda f: self.transport.loseConnection())

    def _piped(self, up: "_Upstream") -> None:
        if not self.connected:
            up.transport.loseConnection()
            return
        self.upstream = up
        for data in self.pending:
            up.transport.write(data)
        self.pending = []

    def dataReceived(self, data: bytes) -> None:
        if self.mode == CLOSE_AFTER_FIRST:
            # (the client's first write is its first command: it waits for
            # the answer to AUTH or SELECT before it sends anything else)
            self.transport.loseConnection()
        elif self.mode == PASS:
            if self.upstream is None:
                self.pending.append(data)
            else:
                self.upstream.transport.write(data)
        # (HOLD: read and never answer)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.path._connections.discard(self)
        if self.upstream is not None:
            self.upstream.transport.loseConnection()


class _Upstream(Protocol):
    def __init__(self, downstream: _Downstream) -> None:
        self.downstream = downstream

    def dataReceived(self, data: bytes) -> None:
        self.downstream.transport.write(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.downstream.transport.loseConnection()


class RedisPath:
    """
    A TCP proxy on loopback in front of a real C{redis-server}. C{mode}
    says what it does with each new connection: L{PASS} pipes it to Redis,
    L{CLOSE} accepts and closes it at once, L{CLOSE_AFTER_FIRST} closes it
    when the client's first command arrives (unanswered), L{HOLD} accepts
    it and never answers. L{cut} aborts every connection it holds.
    """

    def __init__(self, upstreamPort: int, password: str | None = None) -> None:
        self.upstreamPort = upstreamPort
        self.password = password
        self.mode = PASS
        #: connections accepted so far
        self.accepted = 0
        self._connections: set[_Downstream] = set()
        self._waiting: list[tuple[int, Deferred[None]]] = []
        self._port: Any = None

    async def start(self) -> "RedisPath":
        from twisted.internet import reactor
        from twisted.internet.endpoints import TCP4ServerEndpoint

        factory = Factory.forProtocol(lambda: _Downstream(self))  # type: ignore[arg-type, return-value]
        factory.noisy = False
        self._port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        return self

    @property
    def url(self) -> str:
        auth = ":%s@" % (self.password,) if self.password is not None else ""
        return "redis://%s127.0.0.1:%d/0" % (auth, self._port.getHost().port)

    def _accepted(self, conn: _Downstream) -> None:
        self._connections.add(conn)
        self.accepted += 1
        for entry in list(self._waiting):
            if self.accepted >= entry[0]:
                self._waiting.remove(entry)
                entry[1].callback(None)

    def acceptedAtLeast(self, count: int, timeout: float = TIMEOUT) -> Deferred[None]:
        """
        Fires once C{count} connections in all have been accepted.
        """
        from twisted.internet import reactor
        from twisted.internet.defer import succeed

        if self.accepted >= count:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append((count, d))
        return d.addTimeout(timeout, reactor)

    def cut(self) -> None:
        for conn in list(self._connections):
            conn.transport.abortConnection()
            if conn.upstream is not None:
                conn.upstream.transport.abortConnection()

    async def stop(self) -> None:
        self.cut()
        if self._port is not None:
            await self._port.stopListening()


@pytest.fixture
def paths() -> Any:
    started: list[RedisPath] = []

    async def make(upstreamPort: int, password: str | None = None) -> RedisPath:
        path = await RedisPath(upstreamPort, password).start()
        started.append(path)
        return path

    yield make
    for path in started:
        pytest_twisted.blockon(Deferred.fromCoroutine(path.stop()))


class LogLines:
    """
    What the nodes log, as text, with the level of each line.
    """

    def __init__(self) -> None:
        self.lines: list[tuple[LogLevel, str]] = []
        self.failures: list[str] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if "log_failure" in event and "history of" not in event.get("log_format", ""):
            # (the chat service's tracebacks when a history read fails while
            # Redis is unreachable are another matter)
            self.failures.append(formatEvent(event) + "\n" + event["log_failure"].getTraceback())
        self.lines.append((event.get("log_level", LogLevel.info), formatEvent(event)))

    def of(self, node: str, minimum: LogLevel = LogLevel.info) -> list[str]:
        return [text for level, text in self.lines if "node %s:" % (node,) in text and level >= minimum]

    def matching(self, needle: str) -> list[str]:
        return [text for _, text in self.lines if needle in text]


@pytest.fixture
def logged() -> Any:
    lines = LogLines()
    globalLogPublisher.addObserver(lines)
    yield lines
    globalLogPublisher.removeObserver(lines)


def quickRetries(node: Node) -> Node:
    """
    Retry delays of tens of milliseconds instead of seconds, so that a
    test sees many attempts.
    """
    node.cluster.retryDelay = 0.02
    node.cluster.retryMaxDelay = 0.1
    return node


def synced(node: Node) -> Callable[[], bool]:
    """
    The node has both connections and has loaded the shared state since
    it (re)subscribed.
    """
    return lambda: node.cluster.synced


async def servesAgain(alice: Any, bob: Any, text: str) -> None:
    """
    bob says C{text}: it is acknowledged, echoed to bob and delivered to
    alice (on another node) with the same id.
    """
    sent = await bob.member.say(text)
    got = await alice.waitFor(isMessage(text))
    assert got.id == sent.id
    echo = await bob.waitFor(isMessage(text))
    assert echo.id == sent.id


@pytest.mark.parametrize("mode", [CLOSE, CLOSE_AFTER_FIRST, HOLD])
@pytest_twisted.ensureDeferred
async def test_backAfterSetUpFailed(redisServer: Any, paths: Any, logged: LogLines, mode: str) -> None:
    """
    While Redis is out of reach the path to it accepts connections and
    then closes them (at once, or on the client's first command: SELECT on
    the command connection, SUBSCRIBE on the other) or never answers them.
    The node keeps trying; once the path works again it serves again: a
    member who joined meanwhile is announced to the other node (and her
    owner token saved), a message is acknowledged and delivered. The
    series of failed attempts is one line in the log, not one (nor a
    traceback) per attempt.
    """
    path = await paths(redisServer.port)
    a = await Node(redisServer.url, "a").start()
    b = await quickRetries(Node(path.url, "b")).start()
    try:
        alice, bob = await twoInRoom(a, b, "#r")
        # (a connection held unanswered is given up after this)
        b.cluster.commandTimeout = 0.5
        path.mode = mode
        path.cut()
        await until(lambda: not b.cluster.connected)
        # (each connection, the command one and the subscribed one, tried
        # again and again)
        await path.acceptedAtLeast(path.accepted + 8)
        with pytest.raises(ChatError) as e:
            await bob.member.say("during")
        assert e.value.code == "unavailable"
        carol = b.connect("carol")
        carol.member.join("#r")
        path.mode = PASS
        await until(synced(b))
        b.cluster.commandTimeout = 10.0
        await until(lambda: "carol" in a.chat.broker.remoteRoomNicks("#r"))
        with pytest.raises(ChatError) as e:
            a.connect("carol")
        assert e.value.code == "nick-taken"
        await servesAgain(alice, bob, "back")
        # carol's owner token, issued while Redis was unreachable, was
        # saved once it was back: she owns her nick on the other node too
        carol.member.quit()
        await until(lambda: a.chat.broker.remoteNick("carol") is None)
        impostor = a.connect("carol")
        assert not impostor.member.owner
        impostor.member.quit()
        assert a.connect("carol", token=carol.member.token).member.owner
        warnings = logged.of("b", LogLevel.warn)
        assert len(warnings) == 1, warnings
        assert "lost Redis" in warnings[0]
        assert not logged.failures
        back = [line for line in logged.of("b") if "Redis is back" in line]
        assert len(back) == 1 and " failed attempts;" in back[0], logged.of("b")
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_refusedPassword(redisServerFactory: Any, paths: Any, logged: LogLines) -> None:
    """
    Redis' password changes under a running node, whose connections then
    drop: Redis refuses the node's password on every attempt. The node
    says so once, as an error, keeps trying with backoff, and serves again
    as soon as Redis accepts its password again.
    """
    server = redisServerFactory(password="pw")
    path = await paths(server.port, password="pw")
    a = await quickRetries(Node(path.url, "a")).start()
    try:
        alice = a.connect("alice")
        alice.member.join("#p")
        first = await alice.member.say("before")
        server.command("CONFIG", "SET", "requirepass", "changed")
        server.password = "changed"
        attempts = path.accepted
        server.command("CLIENT", "KILL", "TYPE", "normal")
        server.command("CLIENT", "KILL", "TYPE", "pubsub")
        await path.acceptedAtLeast(attempts + 8)
        with pytest.raises(ChatError) as e:
            await alice.member.say("during")
        assert e.value.code == "unavailable"
        errors = logged.of("a", LogLevel.error)
        assert len(errors) == 1, errors
        assert "refuses the password" in errors[0] and "WRONGPASS" in errors[0]
        server.command("CONFIG", "SET", "requirepass", "pw")
        server.password = "pw"
        await until(synced(a))
        after = await alice.member.say("after")
        assert (after.epoch, after.id) == (first.epoch, first.id + 1)
        await alice.waitFor(isMessage("after"))
        assert len(logged.of("a", LogLevel.error)) == 1
        assert any("Redis is back" in line for line in logged.of("a")), logged.of("a")
        assert not logged.failures
    finally:
        await a.stop()


@pytest_twisted.ensureDeferred
async def test_redisStillLoading(redisServerFactory: Any, paths: Any, logged: LogLines) -> None:
    """
    Redis restarts and takes its time loading its data: it accepts
    connections, AUTH and SELECT (which Redis allows while loading) and
    SUBSCRIBE, but answers everything else with C{-LOADING}. The node
    keeps trying with backoff, logs that once (not once per attempt), and
    serves again, on the same history, once Redis has loaded it.
    """
    from tests.support.daemon import RedisReplyError

    server = redisServerFactory()
    path = await paths(server.port)
    a = await quickRetries(Node(path.url, "a")).start()
    try:
        alice = a.connect("alice")
        alice.member.join("#l")
        first = await alice.member.say("before")
        # Enough keys that Redis, told to be slow at loading each one, is
        # still loading long after the node has tried a few times.
        filler: list[str] = []
        for i in range(20000):
            filler += ["filler:%d" % (i,), "x"]
        server.command("MSET", *filler)
        server.command("SAVE")
        server.kill()
        server.extraArgs = ("--key-load-delay", "1000", "--loading-process-events-interval-bytes", "1024")
        server.start(loaded=False)
        attempts = path.accepted
        await path.acceptedAtLeast(attempts + 5)
        with pytest.raises(RedisReplyError, match="LOADING"):
            server.command("PING")  # (still loading: the attempts above met it)
        with pytest.raises(ChatError) as e:
            await alice.member.say("during")
        assert e.value.code == "unavailable"
        loading = logged.matching("LOADING")
        assert len(loading) == 1 and "node a: Redis at" in loading[0] and "still loading" in loading[0], loading
        # Redis done loading (here: started again without the delay)
        server.kill()
        server.extraArgs = ()
        server.start()
        await until(synced(a))
        after = await alice.member.say("after")
        assert (after.epoch, after.id) == (first.epoch, first.id + 1)
        assert len(logged.matching("LOADING")) == 1
        assert not logged.failures
    finally:
        await a.stop()


@pytest_twisted.ensureDeferred
async def test_commandConnectionAloneLost(nodes: Any, redisServer: Any, logged: LogLines) -> None:
    """
    Only the command connections drop; the subscriptions stay. What node
    b could not announce meanwhile is announced once it is back: a member
    who came (her nick is taken on every node) and one who left (his nick
    is free again everywhere, not claimed for ever by b).
    """
    from twisted_chat.core.events import Notice

    a, b = await nodes("a"), quickRetries(await nodes("b"))
    alice, bob = await twoInRoom(a, b, "#c")
    dave = b.connect("dave")
    await until(lambda: a.chat.broker.remoteNick("dave") == "dave")
    redisServer.command("CLIENT", "KILL", "TYPE", "normal")
    # (b has not noticed yet: these go out on a connection that is gone)
    carol = b.connect("carol")
    carol.member.join("#c")
    dave.member.quit()
    await until(lambda: "carol" in a.chat.broker.remoteRoomNicks("#c") and a.chat.broker.remoteNick("dave") is None)
    await until(lambda: a.cluster.synced and b.cluster.synced)
    with pytest.raises(ChatError) as e:
        a.connect("carol")
    assert e.value.code == "nick-taken"
    again = a.connect("dave")
    await servesAgain(alice, bob, "still here")
    # (a's claim of dave went before alice's message, on the same
    # connection: it has been answered)
    await servesAgain(bob, alice, "me too")
    assert again.member.nick == "dave"
    assert not [n for n in again.of(Notice) if "taken" in n.text]
    assert not logged.failures


@pytest_twisted.ensureDeferred
async def test_subscriptionAloneLost(redisServer: Any, paths: Any, logged: LogLines) -> None:
    """
    Only the subscription of node b drops, and the path to Redis then
    accepts its new connections without ever answering. b is not ready
    meanwhile (it hears nothing from the other nodes); it keeps trying, and
    once the path works again its member gets what was said meanwhile,
    once, in order, before what comes next.
    """
    path = await paths(redisServer.port)
    a = await Node(redisServer.url, "a").start()
    b = await quickRetries(Node(path.url, "b")).start()
    try:
        alice, bob = await twoInRoom(a, b, "#s")
        await b.cluster.store.ping()
        # (a connection held unanswered is given up after this)
        b.cluster.commandTimeout = 0.5
        path.mode = HOLD
        attempts = path.accepted
        redisServer.command("CLIENT", "KILL", "TYPE", "pubsub")
        await path.acceptedAtLeast(attempts + 3)
        assert b.cluster.connected
        with pytest.raises(StoreUnavailable):
            await b.cluster.store.ping()
        await alice.member.say("while away")
        path.mode = PASS
        await until(synced(b))
        b.cluster.commandTimeout = 10.0
        await b.cluster.store.ping()
        await alice.member.say("after")
        await bob.waitFor(isMessage("after"))
        assert [m.text for m in bob.of(Message)] == ["while away", "after"]
        assert not logged.failures
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_shareMissedWhileAway(redisServer: Any, paths: Any, logged: LogLines) -> None:
    """
    Someone without the owner's token has her (free) nick on node b; b
    loses Redis; meanwhile she connects on node a with her token (b cannot
    hear that she shares the nick now). Once b is back, its connection of
    her nick gives way to her; hers stays.
    """
    path = await paths(redisServer.port)
    a = await Node(redisServer.url, "a").start()
    b = await quickRetries(Node(path.url, "b")).start()
    try:
        squatter, token = await squatting(b, a)
        path.mode = CLOSE
        path.cut()
        await until(lambda: not b.cluster.connected)
        owner = a.connect("alice", token=token)
        path.mode = PASS
        await until(synced(b))
        await until(lambda: bool(squatter.closed))
        assert squatter.closed == ["replaced by a new connection of alice"]
        assert owner.closed == [] and owner.member.nick == "alice"
        await until(lambda: a.chat.broker.remoteNick("alice") is None)
        assert redisServer.command("HGET", "twisted-chat:nicks", "alice", decode=True) == "a"
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_sameNewNickOnBothSidesOfAnOutage(redisServer: Any, paths: Any, logged: LogLines) -> None:
    """
    Node b is cut off from Redis; a newcomer there takes the new nick zed
    (and its owner token), and another newcomer takes zed on node a. They
    are two people, each the owner by their own token: once b is back, the
    nick stays with the one the cluster knew first, and b's becomes a guest
    (told why) instead of sharing it as if it were one person's.
    """
    path = await paths(redisServer.port)
    a = await Node(redisServer.url, "a").start()
    b = await quickRetries(Node(path.url, "b")).start()
    try:
        path.mode = CLOSE
        path.cut()
        await until(lambda: not b.cluster.connected)
        there = b.connect("zed")
        here = a.connect("zed")
        assert there.member.owner and here.member.owner
        path.mode = PASS
        await until(synced(b))
        await until(lambda: there.member.nick != "zed")
        assert there.member.nick.startswith("guest-")
        assert any(isinstance(e, Notice) and "taken on another server" in e.text for e in there.events)
        assert here.member.nick == "zed" and here.closed == []
        await until(lambda: b.chat.broker.remoteNick("zed") == "zed")
        assert a.chat.broker.remoteNick("zed") is None
        # the token b issued for zed is not the nick's: it proves nothing
        assert b.chat.nicks.tokens["zed"] == a.chat.nicks.tokens["zed"]
        with pytest.raises(ChatError) as e:
            b.connect("zed", token=there.member.token)
        assert e.value.code == "nick-taken"
    finally:
        await a.stop()
        await b.stop()
