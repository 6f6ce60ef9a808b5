# -*- test-case-name: tests.daemon.test_tap,tests.daemon.test_ops -*-
"""
The service tree of one node of C{twistd chat} (L{makeNode}).

One L{ChatService} first, then one listener per configured endpoint, every
front-end sharing that service. Stopping runs in reverse: listeners stop
accepting, then the chat service says goodbye to every connection.

With C{--broker} the chat service keeps its history and meets the other
nodes in Redis (a L{twisted_chat.cluster.redis.RedisCluster} before it in the
tree), and the listeners accept connections only once the shared state is
loaded. The store (L{makeStore}) and the web site (L{makeWebSite}: the page,
WebSocket, Socket.IO and the probes) are made here too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Site

from twisted_chat.core.notices import NOTICE_DELAY
from twisted_chat.core.service import ChatService
from twisted_chat.core.settings import Settings
from twisted_chat.core.stats import RecentErrors
from twisted_chat.daemon.control import Daemon
from twisted_chat.daemon.listeners import Listener, Throttle
from twisted_chat.daemon.options import Options, checkBroker
from twisted_chat.daemon.ops import HealthResource, LagMonitor, PrometheusStats, ReadyResource, makeAdminRoot
from twisted_chat.frontends.line import LineChatFactory
from twisted_chat.frontends.webport import WebPortFactory
from twisted_chat.stores.memory import MemoryStore

if TYPE_CHECKING:
    from twisted.internet.interfaces import IProtocolFactory

    from twisted_chat.cluster.limits import RedisCounts
    from twisted_chat.cluster.redis import RedisCluster
    from twisted_chat.core.interfaces import IBroker, IMessageStore
    from twisted_chat.daemon.runtime import IDaemonReactor


def makeNode(config: Options, reactor: IDaemonReactor, process: bool) -> MultiService:
    """
    The tree of one node (a worker of a C{--workers} parent is one too):
    the L{Daemon}, the cluster (with C{--broker}), the chat service, the
    lag monitor, then the listeners. C{process}: whether C{reactor} is this
    process's own (see L{Daemon}).
    """
    cluster = _makeCluster(config, reactor)
    # In a cluster the tree stops one service after the other, so the chat
    # service has said goodbye to every connection before Redis is let go.
    top = MultiService() if cluster is None else StopInOrder()
    daemon = Daemon(reactor, process=process)
    daemon.setServiceParent(top)
    if cluster is not None:
        cluster.setServiceParent(top)
        daemon.ready, daemon.brokerName = cluster.ready, config["broker-url"].display()
        chat = _makeChat(config, reactor, cluster.store, cluster.broker)
    else:
        chat = _makeChat(config, reactor, makeStore(config, reactor))
    stats = PrometheusStats(chat)
    chat.stats = chat.admission.stats = stats
    clusterCounts = _clusterLimits(config, reactor, cluster, chat, top)
    chat.setServiceParent(top)
    lineFactory = LineChatFactory(chat, clock=reactor)
    daemon.config, daemon.chat, daemon.lineFactory = config, chat, lineFactory
    chat.recentErrors = daemon.recentErrors = RecentErrors()
    LagMonitor(stats, reactor).setServiceParent(top)
    throttles: list[Throttle] = [cluster] if cluster is not None else []
    counted: Callable[[IProtocolFactory], IProtocolFactory] = lambda factory: factory
    worker = config.get("worker")
    if worker is not None:
        counted = _asWorker(config, reactor, worker, daemon, chat, throttles, top)
    if clusterCounts is not None:
        from twisted_chat.cluster.limits import ClusterCount

        # (with the machine's count, if any, while Redis is unreachable)
        chat.admission.machine = ClusterCount(clusterCounts, chat.admission.machine)
    _listen(top, config, reactor, cluster, throttles, "line", counted(lineFactory))
    if config["web"]:
        site = makeWebSite(config, chat, reactor)
        web = _listen(top, config, reactor, cluster, throttles, "web", counted(site))
        engine = site.site.resource.children.get(b"socket.io")
        if engine is not None:
            from twisted_chat.daemon.routing import addRouting

            router = addRouting(top, config, reactor, cluster, engine, lambda: web)
            if router is not None:
                stats.watchRelay(router.relayedBy)
    if config["irc"]:
        from twisted_chat.frontends.irc import IRCFactory

        _listen(top, config, reactor, cluster, throttles, "irc", counted(IRCFactory(chat, clock=reactor)))
    if config["metrics"]:
        metricsSite = Site(makeAdminRoot(chat, stats), reactor=reactor)
        metricsSite.noisy = False
        # (not held back until Redis is ready: /readyz says when it is)
        for description in config["metrics"]:
            Listener("metrics", description, metricsSite, reactor).setServiceParent(top)
    return top


def _asWorker(
    config: Options,
    reactor: IDaemonReactor,
    worker: int,
    daemon: Daemon,
    chat: ChatService,
    throttles: list[Throttle],
    top: MultiService,
) -> Callable[[IProtocolFactory], IProtocolFactory]:
    """
    What a worker of a C{--workers} parent adds to its tree: the guard of
    its descriptors (added to C{throttles}; returns what makes a factory
    count its connections for it), the watch on its parent, and the
    machine-wide count of connections.
    """
    from twisted_chat.daemon.descriptors import DescriptorGuard
    from twisted_chat.daemon.workers import ParentWatch

    daemon.worker = worker
    # (near its descriptor limit a worker leaves the shared sockets'
    # connections to the others)
    guard = DescriptorGuard(reactor, what="worker %d" % (worker,))
    guard.setServiceParent(top)
    throttles.append(guard)
    peers = config.get("peer-dir")

    def cleanUp() -> None:
        # (a parent killed with SIGKILL could not remove its directory)
        if peers:
            import shutil

            shutil.rmtree(peers, ignore_errors=True)

    ParentWatch(reactor, cleanUp=cleanUp).setServiceParent(top)
    if peers:
        from twisted_chat.daemon.machine import ParentCount

        # --max-per-ip and --max-connections hold for the whole machine
        count = ParentCount(peers, reactor)
        count.setServiceParent(top)
        chat.admission.machine = count
    return guard.counting


def _makeCluster(config: Options, reactor: IDaemonReactor) -> RedisCluster | None:
    """
    With C{--broker}: probe Redis (start-up ends with its one-line reason
    if it cannot be reached), then the cluster service that shares the
    rooms, nicks and history through it.
    """
    url = config.get("broker-url")
    if url is None:
        return None
    from twisted_chat.cluster import redis as _redis

    checkBroker(url)
    return _redis.RedisCluster(
        url,
        clock=reactor,
        nodeId=config.get("node-id"),
        retainMessages=config["retain-messages"],
        retainDays=config["retain-days"] or None,
        busShards=config["bus-shards"],
    )


def _clusterLimits(
    config: Options, reactor: IDaemonReactor, cluster: RedisCluster | None, chat: ChatService, top: MultiService
) -> RedisCounts | None:
    """
    With C{--limits-scope cluster}: this node's share of the cluster's
    connections in Redis, in C{top} before the chat service (so it stops
    after it, once the connections are gone), refreshed once the node has
    joined the cluster.
    """
    if cluster is None or config.get("limits-scope") != "cluster":
        return None
    from twisted_chat.cluster.limits import RedisCounts

    settings = chat.admission.settings
    counts = RedisCounts(
        cluster.redis, cluster.node, reactor, lambda: bool(settings.maxConnections or settings.maxPerHost)
    )
    counts.every, counts.ttl = cluster.heartbeat, cluster.nodeTTL
    counts.setServiceParent(top)

    def start(result: object) -> object:
        counts.start()
        return result

    cluster.ready.addCallback(start)
    return counts


def _makeChat(config: Options, reactor: IDaemonReactor, store: IMessageStore, broker: IBroker | None = None) -> ChatService:
    """
    The chat service, configured from the options.
    """
    return ChatService(
        store=store,
        broker=broker,
        clock=reactor,
        settings=Settings.fromOptions(config),
        shutdownTimeout=config["shutdown-timeout"],
        passwords=config["passwords"],
        requireAuth=bool(config["require-auth"]),
        admins=config["admin"],
        drainSpread=config["drain-spread"],
        logMessages=bool(config["log-messages"]),
        logConnections=bool(config["log-connections"]),
        connectionSummary=config["connection-summary"],
        noticeDelay=NOTICE_DELAY,
    )


def _listen(
    top: MultiService,
    config: Options,
    reactor: IDaemonReactor,
    cluster: RedisCluster | None,
    throttles: list[Throttle],
    frontend: str,
    factory: IProtocolFactory,
) -> list[Listener]:
    """
    Add a listener to C{top} for every address of C{frontend}: on the
    socket inherited from the parent in a worker, accepting only once the
    cluster is ready, and paused by C{throttles} (the cluster while Redis
    is behind, a worker near its descriptor limit). Returns them.
    """
    inherited: dict[str, list[int]] = config.get("inherited") or {}
    fds = inherited.get(frontend)
    ready = cluster.ready if cluster is not None else None
    listeners = []
    for i, description in enumerate(config[frontend]):
        listener = Listener(
            frontend, description, factory, reactor, ready=ready, inherited=fds[i] if fds else None, throttles=throttles
        )
        listener.setServiceParent(top)
        listeners.append(listener)
    return listeners


def makeStore(config: Options, reactor: IDaemonReactor | None = None) -> IMessageStore:
    """
    Open the configured store; a database that cannot be used ends start-up
    with a one-line reason and exit status 1, and is left untouched.
    """
    retainDays = config["retain-days"] or None
    if config["store"] == "memory":
        return MemoryStore(retain=config["retain-messages"], retainDays=retainDays)
    from twisted_chat.stores.sqlite import SQLiteStore
    from twisted_chat.stores.sqlite_schema import StoreError

    try:
        return SQLiteStore(
            config["store"][len("sqlite:") :],
            reactor,
            retainMessages=config["retain-messages"],
            retainDays=retainDays,
            sync=config["store-sync"],
        )
    except StoreError as e:
        raise SystemExit("twistd chat: %s" % (e,))


def makeWebSite(config: Options, chat: ChatService, reactor: IDaemonReactor) -> WebPortFactory:
    """
    The factory of the C{--web} listeners: the chat page, WebSocket at
    C{/ws} and C{/} (and C{/echo} with C{--ws-echo}), Socket.IO at
    C{/socket.io/} (unless C{--sio-max-sessions 0}), and the C{/healthz}
    and C{/readyz} probes; a WebSocket upgrade goes straight to Autobahn,
    the rest to the C{Site} (see L{twisted_chat.frontends.webport}).
    """
    import txaio

    from twisted_chat.frontends.web import makeSite
    from twisted_chat.frontends.websocket import ChatWebSocketFactory
    from twisted_chat.frontends.wscommon import EchoFactory

    txaio.use_twisted()
    # (txaio.config exists once a framework is chosen, as just done)
    txaio.config.loop = reactor  # type: ignore[attr-defined]
    wsOptions = dict(
        maxMessageSize=config["ws-max-message"],
        pingInterval=config["ws-ping-interval"],
        pingTimeout=config["ws-ping-timeout"],
        compression=bool(config["ws-compression"]),
        handshakeTimeout=config["handshake-timeout"],
    )
    wsFactory = ChatWebSocketFactory(
        chat,
        allowedOrigins=config["allow-origin"],
        helloTimeout=config["handshake-timeout"],
        **wsOptions,
    )
    echo = EchoFactory(allowedOrigins=config["allow-origin"], **wsOptions) if config["ws-echo"] else None
    socketIo = None
    if config["sio-max-sessions"]:
        from twisted_chat.frontends.socketio.chat import makeSocketIo

        socketIo = makeSocketIo(
            chat,
            clock=reactor,
            allowedOrigins=config["allow-origin"],
            pingInterval=config["sio-ping-interval"],
            pingTimeout=config["sio-ping-timeout"],
            maxPayload=config["sio-max-payload"],
            maxSessions=config["sio-max-sessions"],
        )
    site = makeSite(wsFactory, echo, clock=reactor, socketIo=socketIo)
    # A connection that has not sent a whole request (or idles between
    # requests) is closed after the handshake timeout, not Twisted's default
    # of 12 hours: such connections are not counted by --max-connections yet.
    # (Twisted suspends this timeout while a request is handled, so long
    # polls and WebSockets are not affected.)
    site.timeOut = config["handshake-timeout"]
    site.resource.putChild(b"healthz", HealthResource())
    site.resource.putChild(b"readyz", ReadyResource(chat))
    upgrades: dict[bytes, IProtocolFactory] = {b"/ws": wsFactory, b"/": wsFactory}
    if echo is not None:
        upgrades[b"/echo"] = echo
    return WebPortFactory(site, upgrades, reactor, config["handshake-timeout"])


class StopInOrder(MultiService):
    """
    A L{MultiService} that stops its children one after the other, last
    first, each once the one after it has stopped.
    """

    _log = Logger()

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        d: Deferred[None] = succeed(None)
        for service in reversed(list(self)):
            d.addCallback(self._stop, service)
        return d

    def _stop(self, _: None, service: IService) -> Deferred[None]:
        """
        Stop C{service}; a failure is logged, and the next one is stopped
        all the same.
        """

        def failed(f: Failure) -> None:
            self._log.failure("stopping {service!r} failed", f, service=service)

        return maybeDeferred(service.stopService).addCallbacks(lambda _: None, failed)
