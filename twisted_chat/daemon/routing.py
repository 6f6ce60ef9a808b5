# -*- test-case-name: tests.daemon.test_routing -*-
"""
The daemon's side of Socket.IO without sticky routing (the relay itself is
L{twisted_chat.frontends.socketio.engineio.relay}): which machine and
worker this process is, the private socket a worker serves its siblings
on, and, with C{--broker}, the address this node advertises in Redis
(L{RedisNodeDirectory}) and where the other nodes are.
"""

from __future__ import annotations

import os
import re
import socket
from typing import TYPE_CHECKING, Callable

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Site

from twisted_chat.daemon.listeners import Listener
from twisted_chat.daemon.options import MAX_WORKERS, Options
from twisted_chat.frontends.socketio.engineio.relay import SessionRouter, machineKey, siblingSocket

if TYPE_CHECKING:
    from twisted.internet.interfaces import IListeningPort, IReactorTime

    from twisted_chat.cluster.redis import RedisCluster
    from twisted_chat.daemon.runtime import IDaemonReactor
    from twisted_chat.frontends.socketio.engineio import EngineResource

#: seconds between two refreshes of a node's advertised address, and how
#: long it lasts in Redis without one
ADVERTISE_EVERY = 10.0
ADVERTISE_TTL = 30.0
#: seconds a node's address looked up is remembered
LOOKUP_CACHE = 10.0

_WORKER_SUFFIX = re.compile(r"-w\d+$")


def machineName(config: Options, cluster: RedisCluster | None) -> str:
    """
    The name session ids are owned by: a worker's parent's (its node id
    without the C{-wI} its parent added), or this node's.
    """
    node = config.get("node-id") or (cluster.node if cluster is not None else socket.gethostname())
    if config.get("worker") is not None:
        return _WORKER_SUFFIX.sub("", node)
    return str(node)


def defaultAdvertise(config: Options, port: IListeningPort | None) -> str | None:
    """
    The C{HOST:PORT} this node advertises when C{--advertise} is not given:
    the port of its first plain (C{tcp:}, C{tcp6:}) C{--web} listener, on
    its interface if it names one (not a wildcard), else on this machine's
    host name; None without one (nothing is advertised: the other nodes
    answer "Session ID unknown" for this node's sessions).
    """
    if port is None:
        return None
    address = port.getHost()
    number = getattr(address, "port", None)
    if number is None:
        return None
    host = str(getattr(address, "host", "") or "")
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    if ":" in host:
        host = "[%s]" % (host,)
    return "%s:%d" % (host, number)


class RedisNodeDirectory(Service):
    """
    With C{--broker}: this node's address in Redis (C{PREFIX:sio:MACHINE},
    set once the cluster is ready, refreshed every L{ADVERTISE_EVERY}
    seconds, expiring after L{ADVERTISE_TTL} without one), and the other
    nodes' addresses looked up there (remembered L{LOOKUP_CACHE} seconds).
    """

    _log = Logger()

    def __init__(self, cluster: RedisCluster, machine: str, advertise: Callable[[], str | None], clock: IReactorTime) -> None:
        self.cluster = cluster
        self.machine = machine
        self.advertise = advertise
        self.clock = clock
        self._loop: LoopingCall | None = None
        self._cache: dict[str, tuple[str, float]] = {}
        self._failing = False

    def key(self, machine: str) -> str:
        return self.cluster.key("sio", machine)

    def startService(self) -> None:
        Service.startService(self)
        loop = self._loop = LoopingCall(self.refresh)
        loop.clock = self.clock

        def start(result: object) -> object:
            if self._loop is loop and not loop.running:
                loop.start(ADVERTISE_EVERY, now=True)
            return result

        self.cluster.ready.addCallback(start)

    def stopService(self) -> None:
        Service.stopService(self)
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()

    def refresh(self) -> Deferred[None] | None:
        """
        Advertise this node's address (again).
        """
        address = self.advertise()
        redis = self.cluster.redis
        if address is None or not redis.connected:
            return None

        def worked(_: object) -> None:
            if self._failing:
                self._log.info("advertising this node's Socket.IO address works again")
            self._failing = False

        def failed(f: Failure) -> None:
            if not self._failing:
                self._log.warn("could not advertise this node's Socket.IO address: {why}", why=f.getErrorMessage())
            self._failing = True

        d = redis.timed(redis.swap(self.key(self.machine), address, int(ADVERTISE_TTL * 1000)))
        return d.addCallbacks(worked, failed)

    def lookup(self, machine: str) -> Deferred[str | None]:
        now = self.clock.seconds()
        cached = self._cache.get(machine)
        if cached is not None and cached[1] > now:
            return succeed(cached[0])
        redis = self.cluster.redis
        if not redis.connected:
            return succeed(None)

        def found(address: str | None) -> str | None:
            if address is not None:
                if len(self._cache) > 10000:
                    self._cache.clear()
                self._cache[machine] = (address, now + LOOKUP_CACHE)
            return address

        def failed(f: Failure) -> None:
            self._log.info("could not look up node {machine}: {why}", machine=machine, why=f.getErrorMessage())
            return None

        return redis.timed(redis.get(self.key(machine))).addCallbacks(found, failed)


def addRouting(
    top: MultiService,
    config: Options,
    reactor: IDaemonReactor,
    cluster: RedisCluster | None,
    engine: EngineResource,
    webListeners: Callable[[], list[Listener]],
) -> SessionRouter | None:
    """
    Give C{engine} its router when sessions may be asked for elsewhere (a
    worker, or a node with C{--broker}): session ids name this process; a
    worker serves its siblings on its private socket; a node advertises its
    address. Returns the router (None: this process is alone).
    """
    worker = config.get("worker")
    peers = config.get("peer-dir")
    if worker is None and cluster is None:
        return None
    machine = machineKey(machineName(config, cluster))
    directory = None
    if cluster is not None:

        def advertise() -> str | None:
            if config.get("advertise"):
                return str(config["advertise"])
            # (the relay speaks plain HTTP: the first tcp: or tcp6: listener)
            plain = [l for l in webListeners() if l.description.split(":", 1)[0].lower() in ("tcp", "tcp6")]
            return defaultAdvertise(config, plain[0].port if plain else None)

        directory = RedisNodeDirectory(cluster, machine, advertise, reactor)
        directory.setServiceParent(top)
    router = SessionRouter(
        machine,
        worker,
        MAX_WORKERS,
        reactor,
        peerDirectory=peers if worker is not None else None,
        nodes=directory,
        timeout=config["sio-ping-interval"] + config["sio-ping-timeout"] + 10.0,
        idleTimeout=config["handshake-timeout"],
    )
    engine.router = router
    engine.engine.sidSuffix = router.sidSuffix
    if worker is not None and peers:
        path = siblingSocket(peers, worker)
        try:
            # (what a killed predecessor in this place left behind)
            os.unlink(path)
        except OSError:
            pass
        private = Site(_PrivateRoot(engine), reactor=reactor)
        private.noisy = False
        private.displayTracebacks = False
        from twisted_chat.frontends.socketio.engineio import BoundedRequest

        private.requestFactory = BoundedRequest
        private.maxRequestBody = engine.engine.maxPayload  # type: ignore[attr-defined]
        description = "unix:%s:mode=600" % (path.replace("\\", "\\\\").replace(":", "\\:"),)
        ready = cluster.ready if cluster is not None else None
        Listener("sio-relay", description, private, reactor, ready=ready).setServiceParent(top)
    return router


def _PrivateRoot(engine: EngineResource) -> object:
    """
    The root of a worker's private site: only C{/socket.io/}.
    """
    from twisted_chat.frontends.web import ChatRoot

    root = ChatRoot()
    root.putChild(b"socket.io", engine)
    return root
