# -*- test-case-name: tests.cluster.test_redis -*-
"""
A node's membership of the cluster (L{RedisCluster}): its three
connections to Redis (one for commands, one subscribed to the bus and to
the node's own channel, one for its heartbeat) and loading the shared
state whenever the subscription is (re)made; the heartbeat that keeps the
node alive for the others is its
L{NodePresence<twisted_chat.cluster.presence.NodePresence>}. It hands the
service the node's store and broker.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Callable, ClassVar, TypeVar

import txredisapi
from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_chat.cluster import scripts
from twisted_chat.cluster.broker import RedisBroker
from twisted_chat.cluster.commands import Ask, Backpressure, Commands
from twisted_chat.cluster.links import Link, TroubleLog, backoff, endpoint
from twisted_chat.cluster.presence import NodePresence
from twisted_chat.cluster.protocol import NewerVersion, decode
from twisted_chat.cluster.shards import DEFAULT_SHARDS
from twisted_chat.cluster.store import RedisStore
from twisted_chat.cluster.url import RedisURL

_T = TypeVar("_T")


class _CommandProtocol(txredisapi.RedisProtocol):  # type: ignore[misc]  # (txredisapi has no type information)
    """
    The command connection: tells the cluster when it is (again) ready.

    Its set-up (AUTH, SELECT) is the cluster's (L{RedisCluster._setUp}),
    not txredisapi's: txredisapi stops reconnecting for good when its
    set-up fails, whatever the reason (a proxy that accepted and closed, a
    Redis restarting behind it). The factory has neither password nor
    database, so txredisapi's own C{connectionMade} only marks the
    connection usable once ours has done the set-up.
    """

    def connectionMade(self) -> None:
        cluster: RedisCluster = self.factory.cluster
        cluster._setUp(self, select=True).addCallback(self._setUpDone, cluster)

    def _setUpDone(self, ok: bool, cluster: RedisCluster) -> None:
        if ok:
            d: Deferred[object] = txredisapi.RedisProtocol.connectionMade(self)
            d.addCallback(self._setUpComplete, cluster)

    def _setUpComplete(self, _: object, cluster: RedisCluster) -> None:
        if self.connected:
            cluster._commandsUp(self)

    def connectionLost(self, why: Failure) -> None:
        txredisapi.RedisProtocol.connectionLost(self, why)
        cluster: RedisCluster = self.factory.cluster
        cluster._commandsDown(self, why)


class _HeartbeatProtocol(_CommandProtocol):
    """
    The heartbeat's connection: set up as the command connection, it only
    ever carries the heartbeat, which therefore never waits behind the
    node's other commands (under a burst of connections, hundreds of
    kilobytes of them can wait in the command connection's write buffer,
    which the reactor drains once per iteration).
    """

    def _setUpComplete(self, _: object, cluster: RedisCluster) -> None:
        if self.connected:
            cluster._heartUp(self)

    def connectionLost(self, why: Failure) -> None:
        txredisapi.RedisProtocol.connectionLost(self, why)
        cluster: RedisCluster = self.factory.cluster
        cluster._heartDown(self)


class _SubscriberProtocol(txredisapi.SubscriberProtocol):  # type: ignore[misc]  # (no type information)
    """
    The subscribed connection: hands every bus message to the cluster.
    Its set-up (AUTH) is the cluster's too (see L{_CommandProtocol}).
    """

    def connectionMade(self) -> None:
        cluster: RedisCluster = self.factory.cluster
        cluster._setUp(self, select=False).addCallback(self._setUpDone, cluster)

    def _setUpDone(self, ok: bool, cluster: RedisCluster) -> None:
        if ok:
            d: Deferred[object] = txredisapi.SubscriberProtocol.connectionMade(self)
            d.addCallback(self._setUpComplete, cluster)

    def _setUpComplete(self, _: object, cluster: RedisCluster) -> None:
        if self.connected:
            cluster._subscriberUp(self)

    def messageReceived(self, pattern: object, channel: str, message: str) -> None:
        cluster: RedisCluster = self.factory.cluster
        cluster._busMessage(message)

    def connectionLost(self, why: Failure) -> None:
        txredisapi.SubscriberProtocol.connectionLost(self, why)
        cluster: RedisCluster = self.factory.cluster
        cluster._subscriberDown(self, why)


class _Superseded(Exception):
    """
    A load of the shared state that another one (or a lost subscription)
    made pointless.
    """


class RedisCluster(Service):
    """
    The Redis side of one node: C{store} and C{broker} for the ChatService,
    and the connections behind them. C{ready} fires once the shared state
    is loaded; listeners accept connections only after that.
    """

    name = "redis"
    _log = Logger()

    #: seconds between heartbeats; a node is dead after nodeTTL without one
    heartbeat = 1.0
    nodeTTL = 10.0
    #: seconds before the first new attempt after a connection failed,
    #: doubling after each failed attempt up to retryMaxDelay (+-10 %)
    retryDelay = 0.5
    retryMaxDelay = 5.0
    #: called (without arguments) after every bus message and connection
    #: change of any node in this process: a hook for tests and probes
    observers: ClassVar[list[Callable[[], object]]] = []

    def __init__(
        self,
        url: RedisURL,
        clock: IReactorTime | None = None,
        nodeId: str | None = None,
        retainMessages: int = 10000,
        retainDays: float | None = None,
        refWindow: float = 3600.0,
        busShards: int = DEFAULT_SHARDS,
    ) -> None:
        self.url = url
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        #: the reactor (it connects to Redis, too, when the node starts)
        self.clock: IReactorTime = clock
        self.node = nodeId or "%s-%d" % (socket.gethostname(), os.getpid())
        self.prefix = url.prefix
        self.ready: Deferred[None] = Deferred()
        self.isReady = False
        self.backpressure = Backpressure(self.node)
        #: the commands of this node (its command connection)
        self.redis = Commands(self.prefix, clock, self.backpressure)
        #: the heartbeat's connection (not counted as backpressure)
        self.beats = Commands(self.prefix, clock, Backpressure(self.node))
        self.store = RedisStore(
            self.redis, self.node, lambda: self.synced, retainMessages, retainDays, refWindow, busShards
        )
        self.broker = RedisBroker(self.redis, self.node, self.store, busShards, lambda: self._notify())
        self.store.subscribing = self.broker.shards.ready
        self.trouble = TroubleLog(self.node, url, clock, lambda: self.commandTimeout, lambda: self.retryMaxDelay)
        #: registration, heartbeat, the shards in use
        self.presence = NodePresence(
            self.redis, self.beats, self.node, self.broker, self.trouble, lambda: self.nodeTTL,
            lambda: self.connected and self.isReady, lambda: self._stopping, lambda: self._notify(),
        )
        self._subscriber: _SubscriberProtocol | None = None
        self._factories: list[txredisapi.RedisFactory] = []
        self._links: list[Link] = []
        #: the subscription whose load of the shared state is complete
        self._loaded: _SubscriberProtocol | None = None
        #: loads of the shared state started (each knows whether it is
        #: still the current one)
        self._syncs = 0
        #: protocol versions of messages this node skipped (logged once each)
        self._newer: set[int] = set()
        self._stopping = False
        #: bus messages held back while the shared state loads
        self._buffer: list[str] | None = None

    @property
    def commandTimeout(self) -> float:
        """
        Seconds a user's message (or a history read) may wait for Redis
        before the user is told it was not confirmed; the connection stays.
        Also the bound on each step of a connection's set-up (AUTH, SELECT,
        SUBSCRIBE) and of loading the shared state: past it, the connection
        is dropped and made again.
        """
        return self.redis.timeout

    @commandTimeout.setter
    def commandTimeout(self, seconds: float) -> None:
        self.redis.timeout = seconds

    def key(self, *parts: str) -> str:
        return self.redis.key(*parts)

    def addThrottle(self, pause: Callable[[], object], resume: Callable[[], object]) -> None:
        """
        Call C{pause} when too many commands are in flight, C{resume} when
        they have drained (listening ports: stop and start accepting).
        """
        self.backpressure.addThrottle(pause, resume)

    # Connections

    def _link(self, protocol: type[txredisapi.RedisProtocol]) -> txredisapi.RedisFactory:
        """
        A connection of this node's, kept up by a L{Link}; returns its
        factory.
        """
        factory = txredisapi.RedisFactory(
            self.url.display(),
            # (no password nor database: the set-up is ours, see _CommandProtocol)
            None,
            1,
            isLazy=True,
            # (no reply timeout: txredisapi answers one by dropping the
            # connection and failing every command in flight; the commands
            # that need a bound get one of their own, see Commands.timed)
            replyTimeout=None,
            # (strings stay strings: an epoch such as "12345678"
            # must not come back as a number)
            convertNumbers=False,
        )
        factory.protocol = protocol
        factory.cluster = self
        self._factories.append(factory)
        link = Link(
            endpoint(self.url, self.clock),
            factory,
            lambda f: self._failed(f, "connecting"),
            lambda failures: backoff(failures, self.retryDelay, self.retryMaxDelay),
            self.clock,
        )
        self._links.append(link)
        return factory

    def startService(self) -> None:
        Service.startService(self)
        self._log.info("node {node}: connecting to Redis at {url}", node=self.node, url=self.url.display())
        self.redis.handler = self._link(_CommandProtocol).handler
        self._link(_SubscriberProtocol)
        self.beats.handler = self._link(_HeartbeatProtocol).handler
        for link in self._links:
            link.service.startService()
        self.presence.start(self.clock, self.heartbeat)

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        self._stopping = True
        self.broker.shards.stop()
        self.presence.stop()
        d: Deferred[object] = succeed(None)
        if self.redis.connected:
            # Leave cleanly: the others remove our members at once instead
            # of after the heartbeat expires.
            d = scripts.reap(self.redis, self.node, own=True, why="server shutting down")
            d.addCallback(lambda _: self.redis.delete(self.key("alive", self.node)))
            d.addErrback(lambda f: None)

        def disconnect(_: object) -> Deferred[object]:
            # (the services close their connections and stop retrying; the
            # factories then let go of what was still in their pools)
            d = gatherResults([link.service.stopService() for link in self._links], consumeErrors=True)
            d.addBoth(lambda _: gatherResults([f.disconnect() for f in self._factories], consumeErrors=True))
            return d.addErrback(lambda f: None)

        return d.addCallback(disconnect).addCallback(lambda _: None)

    @property
    def connected(self) -> bool:
        return self.redis.connected

    @property
    def synced(self) -> bool:
        """
        Both connections are up and the shared state has been loaded since
        the subscription was (re)made: this node serves the cluster.
        """
        return self.connected and self._subscriber is not None and self._loaded is self._subscriber

    # Set-up

    def _setUp(self, protocol: txredisapi.RedisProtocol, select: bool) -> Deferred[bool]:
        """
        Log in (and select the database) on a new connection; C{True} once
        done. On any failure (an error answer, the connection closed, no
        answer within commandTimeout) the connection is dropped and its
        ClientService tries again after a backoff: C{False}.
        """
        url = self.url

        async def setUp() -> None:
            if url.password is not None:
                await protocol.auth(url.password, url.username)
            if select:
                await protocol.select(url.db)

        def failed(f: Failure) -> bool:
            if protocol.connected:
                protocol.transport.abortConnection()
            self._failed(f, "setting up a connection")
            return False

        return self.redis.timed(ensureDeferred(setUp())).addCallbacks(lambda _: True, failed)

    def _failed(self, f: Failure, doing: str) -> None:
        """
        An attempt failed (C{doing} what): logged, unless this node is
        stopping (see L{TroubleLog}).
        """
        if not self._stopping:
            self.trouble.failed(f, doing)

    # The connections

    def _commandsUp(self, protocol: _CommandProtocol) -> None:
        self.redis.connection = protocol
        self._links[0].up()
        subscriber = self._subscriber
        if subscriber is not None and self._buffer is None and not self._stopping:
            # Only this connection was lost: what changed here meanwhile
            # (members who came or left) was not announced. Load and
            # announce again.
            self._sync(subscriber, subscribe=False)
        self._notify()

    def _commandsDown(self, protocol: _CommandProtocol, why: Failure) -> None:
        if self.redis.connection is protocol:
            self.redis.connection = None
            if not self._stopping:
                self.trouble.troubled("unreachable", why.getErrorMessage(), "the command connection")
        self._notify()

    def _heartUp(self, protocol: _HeartbeatProtocol) -> None:
        self.beats.connection = protocol
        self._links[2].up()

    def _heartDown(self, protocol: _HeartbeatProtocol) -> None:
        # (quietly: the heartbeat goes over the command connection
        # meanwhile, and the other two connections tell of Redis trouble)
        if self.beats.connection is protocol:
            self.beats.connection = None

    def _subscriberUp(self, protocol: _SubscriberProtocol) -> None:
        """
        (Re)subscribed: load the shared state, announce ours, catch up.
        """
        self._subscriber = protocol
        self._sync(protocol, subscribe=True)

    def _subscriberDown(self, protocol: _SubscriberProtocol, why: Failure) -> None:
        if self._subscriber is protocol:
            self._subscriber = None
            self._buffer = None
            self.broker.shards.lost()
            if not self._stopping:
                self.trouble.troubled("unreachable", why.getErrorMessage(), "the subscription")
        self._notify()

    def _sync(self, protocol: _SubscriberProtocol, subscribe: bool) -> None:
        """
        (Subscribe, then) load the shared state and announce ours, with
        the bus messages that arrive meanwhile held back. Each step waits
        at most commandTimeout. If it fails the subscription is dropped
        and made again after a backoff; if the subscription is lost, or
        another load starts, it stops where it is.
        """
        self._syncs += 1
        generation = self._syncs
        self._buffer = []
        self._loaded = None

        def current() -> bool:
            return self._subscriber is protocol and self._syncs == generation

        async def ask(d: Deferred[_T]) -> _T:
            result = await self.redis.timed(d)
            if not current():
                raise _Superseded()
            return result

        async def sync() -> None:
            if subscribe:
                # (one channel per SUBSCRIBE: see cluster.shards)
                await ask(protocol.subscribe(self.key("bus")))
                await ask(protocol.subscribe(self.key("node", self.node)))
                await ask(gatherResults(self.broker.shards.attach(protocol), consumeErrors=True))
            await self._load(ask, current)

        def failed(f: Failure) -> None:
            if isinstance(f.value, _Superseded) or not current():
                return
            self._failed(f, "loading the shared state")
            # (given up: its loss is no news, _subscriberDown stays quiet)
            self._subscriber = None
            self._buffer = None
            self.broker.shards.lost()
            protocol.transport.abortConnection()
            self._notify()

        def done(_: object) -> None:
            if current():
                self._syncDone(protocol)

        ensureDeferred(sync()).addCallbacks(done, failed)

    async def _load(self, ask: Ask, current: Callable[[], bool]) -> None:
        """
        Load the shared state (each step through C{ask}), register this
        node, deliver the bus messages held meanwhile and catch up.
        """
        redis = self.redis
        first = not self.isReady
        epochKey = self.key("epoch")
        await ask(redis.setIfAbsent(epochKey, secrets.token_hex(4)))
        epoch = await ask(redis.get(epochKey))
        if first:
            # A node restarted under the same id: clear what its previous
            # life left behind (its members leave, once, for everyone).
            await ask(scripts.reap(redis, self.node, own=True, why="disconnected"))
        await self.presence.register(ask)
        self.presence.sharding(await ask(scripts.sharding(redis, self.node, self.broker.shards.count)))
        for key, tokenHash in list(self.store.unsaved.items()):
            await ask(self.store.shareToken(key, tokenHash))
        shared = await self.broker.read(ask)
        self.store.setEpoch(epoch or "")
        self.broker.load(shared)
        buffered, self._buffer = self._buffer or [], None
        for raw in buffered:
            self._busMessage(raw)
        await self.broker.catchUp(current)

    def _syncDone(self, protocol: _SubscriberProtocol) -> None:
        self._loaded = protocol
        self._links[1].up()
        over = self.trouble.over()
        if not self.isReady:
            self.isReady = True
            self._log.info("node {node}: joined the cluster at {url}", node=self.node, url=self.url.display())
            self.ready.callback(None)
        elif over is not None:
            seconds, attempts = over
            self._log.info(
                "node {node}: Redis is back after {seconds:.1f} s{attempts}; state re-announced",
                node=self.node,
                seconds=seconds,
                attempts=" and %d failed attempt%s" % (attempts, "" if attempts == 1 else "s") if attempts else "",
            )
        else:
            self._log.info("node {node}: state re-announced to the cluster", node=self.node)
        self._notify()

    # The bus

    def _busMessage(self, raw: str) -> None:
        if self._buffer is not None:
            self._buffer.append(raw)
            return
        try:
            message = decode(raw)
            if message is not None:
                self.broker.received(message)
        except NewerVersion as e:
            if e.version not in self._newer:
                self._newer.add(e.version)
                self._log.warn(
                    "node {node}: another node speaks a newer version of the cluster protocol ({why}): its "
                    "messages are ignored until this node is upgraded",
                    node=self.node,
                    why=str(e),
                )
        except Exception:
            self._log.failure("bad message on the Redis bus: {raw!r}", raw=raw[:200])
        self._notify()

    def _notify(self) -> None:
        for observer in list(self.observers):
            observer()
