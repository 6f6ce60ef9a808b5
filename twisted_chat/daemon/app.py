# -*- test-case-name: tests.test_tap -*-
"""
C{twistd chat}: options and the service tree.

One L{ChatService} first, then one listener per configured endpoint, every
front-end sharing that service. Stopping runs in reverse: listeners stop
accepting, then the chat service says goodbye to every connection.

With C{--broker} the chat service keeps its history and meets the other
nodes in Redis (a L{twisted_chat.cluster.redis.RedisCluster} before it in the
tree), and the listeners accept connections only once the shared state is
loaded. With C{--workers N} (N > 1) this process becomes a parent that binds
the ports and runs N workers (L{twisted_chat.daemon.workers}).
"""

from __future__ import annotations

import gc
import getopt
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any, Callable

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.testing import MemoryReactor
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from twisted_chat import __version__
from twisted_chat.frontends.line import LineChatFactory
from twisted_chat.stores.memory import MemoryStore
from twisted_chat.core.service import ChatService
from twisted_chat.core.settings import OPTIONS as _SETTINGS_OPTIONS, Settings
from twisted_chat.daemon.workers import READY_FORMAT

if TYPE_CHECKING:
    from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IReactorCore

    from twisted_chat.core.interfaces import IMessageStore


def _bounded(name: str, low: float, high: float, kind: Callable[[str], float] = int) -> Callable[[str], float]:
    def coerce(value: str) -> float:
        try:
            v = kind(value)
        except ValueError:
            raise ValueError("%s must be a number, not %r" % (name, value))
        if not low <= v <= high:
            raise ValueError("%s must be between %s and %s, not %s" % (name, low, high, value))
        return v

    coerce.coerceDoc = "From %s to %s." % (low, high)  # type: ignore[attr-defined]
    return coerce


def _choice(name: str, choices: list[str]) -> Callable[[str], str]:
    def coerce(value: str) -> str:
        if value not in choices:
            raise ValueError("%s must be one of %s, not %r" % (name, ", ".join(choices), value))
        return value

    coerce.coerceDoc = "One of %s." % (", ".join(choices),)  # type: ignore[attr-defined]
    return coerce


def _workerCount(value: str) -> int:
    if value == "auto":
        return os.cpu_count() or 1
    try:
        count = int(value)
    except ValueError:
        raise ValueError("workers must be a number or auto, not %r" % (value,))
    if not 1 <= count <= MAX_WORKERS:
        raise ValueError("workers must be between 1 and %d, not %s" % (MAX_WORKERS, value))
    return count


_workerCount.coerceDoc = "From 1 to 256, or auto."  # type: ignore[attr-defined]

#: the most worker processes --workers may ask for
MAX_WORKERS = 256

#: the front-ends whose listening sockets a parent shares with its workers
#: (each worker binds its own --metrics port: the given one + its index)
SHARED_FRONTENDS = ("line", "web")

#: options of a worker process only (set by its parent; not in --help)
_HIDDEN_OPTIONS = ("worker", "inherit-fds")


def checkEndpoint(description: str) -> str:
    """
    Parse C{description} as a server endpoint string without touching the
    real reactor; raise L{usage.UsageError} with a one-line reason if bad.
    """
    try:
        serverFromString(MemoryReactor(), description)
    except (ValueError, TypeError) as e:
        raise usage.UsageError("invalid endpoint %r: %s" % (description, e))
    except (IndexError, KeyError):
        # systemd: endpoints name sockets inherited through socket activation
        raise usage.UsageError(
            "endpoint %r names a socket this process did not inherit (LISTEN_FDS/LISTEN_PID, "
            "as systemd socket activation sets them)" % (description,)
        )
    except ImportError as e:
        raise usage.UsageError("endpoint %r needs a missing module: %s" % (description, e))
    return description


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run a twisted-chat server. Listen addresses are Twisted endpoint strings "
        "(tcp:9000, tcp:9000:interface=127.0.0.1, ssl:9443:privateKey=key.pem:certKey=cert.pem, "
        "unix:/run/chat.sock, systemd:domain=INET:index=0); every listener option can be "
        "repeated, and 'none' switches that front-end off."
    )

    optParameters = [
        ["max-line-length", None, 4096, "Longest line (bytes) a line-chat client may send.", _bounded("max-line-length", 64, 1 << 20)],
        ["idle-timeout", None, 600, "Seconds without input before a connection is closed (0: never).", _bounded("idle-timeout", 0, 10**7, float)],
        ["max-outgoing", None, 1 << 20, "Bytes queued for a client that does not read before it is dropped.", _bounded("max-outgoing", 1 << 12, 1 << 30)],
        ["history-size", None, 50, "Messages of history sent on join.", _bounded("history-size", 0, 10000)],
        ["store", None, None, "Where messages are kept: sqlite:PATH, or memory (lost on restart). [default: sqlite:chat.sqlite3; none with --broker]"],
        ["store-sync", None, "full", "SQLite durability: full (an acknowledged message survives a power loss) or normal (it survives a crash of the daemon).", _choice("store-sync", ["full", "normal"])],
        ["retain-messages", None, 10000, "Messages kept per room (private messages: ten times as many).", _bounded("retain-messages", 1, 10**9)],
        ["retain-days", None, 30.0, "Days messages are kept (0: no age limit).", _bounded("retain-days", 0, 36500, float)],
        ["ws-max-message", None, 65536, "Largest WebSocket message (bytes) a client may send; larger ones are closed with 1009.", _bounded("ws-max-message", 256, 1 << 26)],
        ["ws-ping-interval", None, 25.0, "Seconds between server pings on WebSocket connections (0: off).", _bounded("ws-ping-interval", 0, 3600, float)],
        ["ws-ping-timeout", None, 10.0, "Seconds to wait for a pong before dropping the peer.", _bounded("ws-ping-timeout", 1, 3600, float)],
        ["max-connections", None, 10000, "Connections in all; more are refused politely (0: no limit).", _bounded("max-connections", 0, 10**7)],
        ["max-per-ip", None, 50, "Connections from one address (0: no limit).", _bounded("max-per-ip", 0, 10**7)],
        ["max-rooms", None, 50, "Rooms one connection may be in.", _bounded("max-rooms", 1, 100000)],
        ["max-message-length", None, 4096, "Characters in one message.", _bounded("max-message-length", 1, 1 << 20)],
        ["flood-rate", None, 5.0, "Requests (messages and commands) a second per connection (0: no flood control).", _bounded("flood-rate", 0, 10**6, float)],
        ["flood-burst", None, 10.0, "Requests a connection may send at once before flood control makes the next ones wait.", _bounded("flood-burst", 1, 10**6, float)],
        ["flood-kick", None, 100.0, "Requests a connection may have waiting for flood control (read, not yet handled); past that it is disconnected for flooding.", _bounded("flood-kick", 1, 10**6, float)],
        ["handshake-timeout", None, 10.0, "Seconds a WebSocket client has to finish its handshake (and, in json mode, say hello).", _bounded("handshake-timeout", 1, 3600, float)],
        ["auth", None, None, "Password file of registered nicks (lines NICK:HASH; make them with twisted-chat-passwd)."],
        ["sio-ping-interval", None, 25.0, "Seconds between Engine.IO pings to Socket.IO clients.", _bounded("sio-ping-interval", 1, 3600, float)],
        ["sio-ping-timeout", None, 20.0, "Seconds a Socket.IO client has to answer a ping; a quiet polling session expires after interval + timeout.", _bounded("sio-ping-timeout", 1, 3600, float)],
        ["sio-max-payload", None, 100000, "Largest Socket.IO POST body or WebSocket message (bytes); larger POSTs get 413 and close the session.", _bounded("sio-max-payload", 1024, 1 << 26)],
        ["sio-max-sessions", None, 10000, "Socket.IO sessions at once (0: no Socket.IO at /socket.io/).", _bounded("sio-max-sessions", 0, 10**7)],
        ["limits", None, None, "A file of limits (lines NAME = VALUE, names as the options above: flood-rate, max-per-ip…), read at start and again on SIGHUP."],
        ["drain-spread", None, 10.0, "On shutdown, clients are told to reconnect after a random 1 to 1+N seconds, so a restart causes no reconnect storm.", _bounded("drain-spread", 0, 3600, float)],
        ["shutdown-timeout", None, 5.0, "Seconds to wait for connections to close on shutdown.", _bounded("shutdown-timeout", 0, 600, float)],
        ["broker", None, None, "Share rooms, nicks and history with every other node using the same Redis: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?prefix=P] (rediss:// for TLS, with &ca=PEMFILE to trust a private CA); the history then lives in Redis (no --store)."],
        ["workers", None, 1, "Worker processes (auto: one per CPU); more than 1 needs --broker. The parent binds the line and web ports and shares them with its workers, restarts a worker that dies, and stops them all on SIGTERM; worker I serves --metrics on the given port + I (tcp:0: each its own free port).", _workerCount],
        ["node-id", None, None, "This node's name among the nodes sharing --broker, unique to it and the same across its restarts (a restarted node then clears what its previous life left in Redis at once). [default: HOST-PID; worker I of a --workers parent: NODE-wI, NODE the given one or the host name]"],
        # a worker's own options, set by its parent (left out of --help)
        ["worker", None, None, "(internal) This process is worker N of a --workers parent.", _bounded("worker", 0, MAX_WORKERS - 1)],
        ["inherit-fds", None, None, "(internal) The listening sockets inherited from the parent: FRONTEND=FD,..."],
    ]

    optFlags = [
        ["check", None, "Check the options and files (auth, limits, store), print the result and exit."],
        ["log-messages", None, "Log the text of every message (for debugging; off by default for privacy)."],
        ["require-auth", None, "Only registered nicks may chat (needs --auth)."],
        ["ws-compression", None, "Accept permessage-deflate on WebSocket connections (off by default)."],
        ["ws-echo", None, "Also serve /echo, a WebSocket echo endpoint with the same options (for compliance testing)."],
    ]

    def __init__(self) -> None:
        usage.Options.__init__(self)
        self["line"] = []
        self["web"] = []
        self["allow-origin"] = []
        self["admin"] = []
        self["metrics"] = []

    def opt_metrics(self, description: str) -> None:
        """
        Serve /metrics (Prometheus), /healthz and /readyz on this endpoint (repeatable; default tcp:9464:interface=127.0.0.1; 'none' for off).
        """
        self["metrics"].append(description)

    def opt_admin(self, nick: str) -> None:
        """
        A server admin (a registered nick of the --auth file; repeatable): operator in every room, may send server notices.
        """
        self["admin"].append(nick)

    def opt_web(self, description: str) -> None:
        """
        Serve the chat page and WebSocket (/ws) on this endpoint (repeatable; default tcp:8080; 'none' for off; ssl: for https/wss).
        """
        self["web"].append(description)

    def opt_allow_origin(self, origin: str) -> None:
        """
        Also accept WebSocket handshakes and Socket.IO (CORS) requests from this Origin, e.g. https://example.com (repeatable; '*' for any).
        """
        self["allow-origin"].append(origin.rstrip("/"))

    def opt_line(self, description: str) -> None:
        """
        Serve the line chat on this endpoint (repeatable; default tcp:9000; 'none' for off).
        """
        self["line"].append(description)

    def getUsage(self, width: int | None = None) -> str:
        """
        The usage text, without the options only a worker process is given.
        """
        everything = self.longOpt
        self.longOpt = [o for o in everything if o.rstrip("=") not in _HIDDEN_OPTIONS]
        try:
            return usage.Options.getUsage(self, width)
        finally:
            self.longOpt = everything

    def parseOptions(self, options: list[str] | None = None) -> None:
        """
        Parse, turning any usage error into a one-line message and exit
        status 1 (twistd would otherwise print the whole usage first).
        """
        self.arguments = list(sys.argv[1:] if options is None else options)
        try:
            usage.Options.parseOptions(self, options)
        except usage.UsageError as e:
            raise SystemExit("twistd chat: %s (see twistd chat --help)" % (e,))

    def postOptions(self) -> None:
        self["line"] = self._listeners(self["line"], ["tcp:9000"], "line")
        self["web"] = self._listeners(self["web"], ["tcp:8080"], "web")
        self["metrics"] = self._listeners(self["metrics"], ["tcp:9464:interface=127.0.0.1"], "metrics")
        if self["limits"]:
            try:
                readLimits(self["limits"], self)
            except ValueError as e:
                raise usage.UsageError(str(e))
        self["passwords"] = {}
        if self["auth"]:
            from twisted_chat.core.auth import AuthFileError, loadPasswords

            try:
                self["passwords"] = loadPasswords(self["auth"])
            except AuthFileError as e:
                raise usage.UsageError(str(e))
        elif self["require-auth"] or self["admin"]:
            raise usage.UsageError("--require-auth and --admin need --auth FILE")
        for nick in self["admin"]:
            if nick.lower() not in self["passwords"]:
                raise usage.UsageError("admin %s is not a registered nick of %s" % (nick, self["auth"]))
        self["broker-url"] = None
        if self["broker"] is not None:
            from twisted_chat.cluster import redis as _redis

            try:
                self["broker-url"] = _redis.parseRedisURL(self["broker"])
            except ValueError as e:
                raise usage.UsageError("--broker: %s" % (e,))
            if self["store"] is not None:
                raise usage.UsageError("with --broker the history lives in Redis; drop --store")
        elif self["workers"] > 1:
            raise usage.UsageError(
                "--workers %d needs --broker redis://...: workers share rooms only through Redis" % (self["workers"],)
            )
        else:
            if self["store"] is None:
                self["store"] = "sqlite:chat.sqlite3"
            store = self["store"]
            if store != "memory" and not (store.startswith("sqlite:") and len(store) > len("sqlite:")):
                raise usage.UsageError("--store must be sqlite:PATH or memory, not %r" % (store,))
        self._checkWorkerOptions()
        if self["check"]:
            if self["broker-url"] is not None:
                checkBroker(self["broker-url"])
            elif self["store"] != "memory":
                from twisted_chat.stores.sqlite import StoreError, checkStore

                try:
                    checkStore(self["store"][len("sqlite:") :])
                except StoreError as e:
                    # the line start-up would end with (not a usage error)
                    raise SystemExit("twistd chat: %s" % (e,))
            print("twistd chat: configuration OK")
            raise SystemExit(0)

    def _checkWorkerOptions(self) -> None:
        """
        Check what --workers needs (a parent), and read the hidden options
        of a worker.
        """
        self["inherited"] = None
        if self["worker"] is not None:
            if self["inherit-fds"] is None:
                raise usage.UsageError("--worker needs --inherit-fds")
            self["inherited"] = _parseInherited(self["inherit-fds"], self)
            return
        if self["inherit-fds"] is not None:
            raise usage.UsageError("--inherit-fds is for worker processes (--worker N)")
        if self["workers"] <= 1:
            return
        for name in SHARED_FRONTENDS:
            for description in self[name]:
                if description.split(":", 1)[0].lower() not in ("tcp", "tcp6", "ssl"):
                    raise usage.UsageError(
                        "with --workers, --%s must be a tcp:, tcp6: or ssl: endpoint (the parent shares its "
                        "socket with the workers), not %r" % (name, description)
                    )
        from twisted_chat.daemon.workers import shiftPort

        for description in self["metrics"]:
            try:
                shiftPort(description, self["workers"] - 1)
            except ValueError as e:
                raise usage.UsageError("with --workers, worker I serves --metrics on its port + I: %s" % (e,))

    def workerArguments(self, index: int, inherit: str) -> list[str]:
        """
        The C{twistd chat} options of worker C{index} of this parent: the
        options given, without --workers, its --metrics ports moved up by
        C{index}, and the hidden worker options (C{inherit}: the
        --inherit-fds value).
        """
        from twisted_chat.daemon.workers import shiftPort

        opts, _ = getopt.getopt(self.arguments, self.shortOpt, self.longOpt)
        args = []
        for opt, value in opts:
            name = opt[2:] if opt.startswith("--") else self.synonyms[opt[1:]]
            name = self.synonyms.get(name, name).replace("_", "-")
            if name in ("workers", "metrics", "node-id") or name in _HIDDEN_OPTIONS:
                continue
            if name + "=" in self.longOpt:
                args.append("--%s=%s" % (name, value))
            else:
                args.append("--" + name)
        if self["metrics"]:
            args += ["--metrics=" + shiftPort(description, index) for description in self["metrics"]]
        else:
            args.append("--metrics=none")
        base = self["node-id"] or socket.gethostname()
        return args + ["--worker=%d" % (index,), "--node-id=%s-w%d" % (base, index), "--inherit-fds=" + inherit]

    def _listeners(self, given: list[str], default: list[str], name: str) -> list[str]:
        if not given:
            given = default
        if "none" in given:
            if len(given) > 1:
                raise usage.UsageError("--%s none cannot be combined with other --%s addresses" % (name, name))
            return []
        return [checkEndpoint(d) for d in given]


def _parseInherited(value: str, config: Options) -> dict[str, list[int]]:
    """
    Read --inherit-fds (C{line=3,web=4,...}: a listening socket for each
    --line and --web address, in order) into {front-end: [fd, ...]}.
    """
    found: dict[str, list[int]] = {name: [] for name in SHARED_FRONTENDS}
    for item in filter(None, value.split(",")):
        name, _, fd = item.partition("=")
        if name not in found or not fd.isdigit():
            raise usage.UsageError("--inherit-fds: expected FRONTEND=FD,... with FRONTEND line or web, not %r" % (item,))
        found[name].append(int(fd))
    for name in SHARED_FRONTENDS:
        if len(found[name]) != len(config[name]):
            raise usage.UsageError(
                "--inherit-fds gives %d %s sockets for %d --%s addresses" % (len(found[name]), name, len(config[name]), name)
            )
    return found


def checkBroker(url: Any) -> None:
    """
    Probe Redis before start-up; a failure ends it with a one-line reason
    and exit status 1 (as an unusable database does).
    """
    from twisted_chat.cluster import redis as _redis

    try:
        _redis.checkRedis(url)
    except ValueError as e:
        raise SystemExit("twistd chat: %s" % (e,))


#: the options a --limits file may set, and that SIGHUP reloads: every
#: limit of the service's L{Settings}
LIMIT_NAMES = tuple(_SETTINGS_OPTIONS)


def readLimits(path: str, into: dict[str, Any]) -> dict[str, Any]:
    """
    Read a limits file (C{NAME = VALUE} lines, C{#} comments) into C{into},
    checking every value as its command-line option does; raise
    C{ValueError} with the file and line of the first problem.
    """
    coercers = {row[0]: row[4] for row in Options.optParameters if len(row) > 4}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError("cannot read limits file %s: %s" % (path, getattr(e, "strerror", None) or e))
    found: dict[str, Any] = {}
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, value = (part.strip() for part in line.partition("="))
        if not sep or name not in LIMIT_NAMES:
            raise ValueError("%s line %d: expected NAME = VALUE with NAME one of %s" % (path, number, ", ".join(LIMIT_NAMES)))
        try:
            found[name] = coercers[name](value)
        except ValueError as e:
            raise ValueError("%s line %d: %s" % (path, number, e))
    into.update(found)
    return found


def makeStore(config: Options, reactor: object = None) -> IMessageStore:
    """
    Open the configured store; a database that cannot be used ends start-up
    with a one-line reason and exit status 1, and is left untouched.
    """
    retainDays = config["retain-days"] or None
    if config["store"] == "memory":
        return MemoryStore(retain=config["retain-messages"], retainDays=retainDays)
    from twisted_chat.stores.sqlite import SQLiteStore, StoreError

    try:
        return SQLiteStore(
            config["store"][len("sqlite:") :],
            reactor,  # type: ignore[arg-type]
            retainMessages=config["retain-messages"],
            retainDays=retainDays,
            sync=config["store-sync"],
        )
    except StoreError as e:
        raise SystemExit("twistd chat: %s" % (e,))


def makeService(config: Options, reactor: IReactorCore | None = None) -> MultiService:
    """
    Build the service tree for C{twistd chat}: a parent's (L{makeParent})
    with C{--workers} N > 1, else one node's.
    """
    if config.get("workers", 1) > 1 and config.get("worker") is None:
        return makeParent(config, reactor)
    url = config.get("broker-url")
    cluster = None
    if url is not None:
        from twisted_chat.cluster import redis as _redis

        checkBroker(url)
        cluster = _redis.RedisCluster(
            url,
            clock=reactor,
            nodeId=config.get("node-id"),
            retainMessages=config["retain-messages"],
            retainDays=config["retain-days"] or None,
        )
    # In a cluster the tree stops one service after the other, so the chat
    # service has said goodbye to every connection before Redis is let go.
    top = MultiService() if cluster is None else _StopInOrder()
    daemon = _Daemon(reactor)
    daemon.setServiceParent(top)
    chatOptions: dict[str, Any] = {}
    if cluster is not None:
        cluster.setServiceParent(top)
        daemon.ready, daemon.brokerName = cluster.ready, url.display()
        chatOptions.update(store=cluster.store, broker=cluster.broker)
    else:
        chatOptions.update(store=makeStore(config, reactor))
    chat = ChatService(
        clock=reactor,  # type: ignore[arg-type]
        settings=Settings.fromOptions(config),
        shutdownTimeout=config["shutdown-timeout"],
        passwords=config["passwords"],
        requireAuth=bool(config["require-auth"]),
        admins=config["admin"],
        drainSpread=config["drain-spread"],
        logMessages=bool(config["log-messages"]),
        **chatOptions,
    )
    from twisted_chat.daemon.ops import LagMonitor, PrometheusStats

    stats = PrometheusStats(chat)
    chat.stats = chat.admission.stats = stats
    chat.setServiceParent(top)
    lineFactory = LineChatFactory(chat, clock=reactor)  # type: ignore[arg-type]
    daemon.config, daemon.chat, daemon.lineFactory = config, chat, lineFactory
    from twisted_chat.core.stats import RecentErrors

    chat.recentErrors = daemon.recentErrors = RecentErrors()
    LagMonitor(stats, reactor or _globalReactor()).setServiceParent(top)
    worker = config.get("worker")
    inherited: dict[str, list[int]] = config.get("inherited") or {}
    if worker is not None:
        from twisted_chat.daemon.workers import ParentWatch

        daemon.worker = worker
        ParentWatch(reactor or _globalReactor()).setServiceParent(top)
    ready = cluster.ready if cluster is not None else None

    def listen(frontend: str, factory: IProtocolFactory) -> None:
        fds = inherited.get(frontend)
        for i, description in enumerate(config[frontend]):
            _Listener(
                frontend, description, factory, reactor, ready=ready, inherited=fds[i] if fds else None, throttle=cluster
            ).setServiceParent(top)

    listen("line", lineFactory)
    if config["web"]:
        site = _makeWebSite(config, chat, reactor)
        from twisted_chat.daemon.ops import HealthResource, ReadyResource

        site.resource.putChild(b"healthz", HealthResource())  # type: ignore[attr-defined]
        site.resource.putChild(b"readyz", ReadyResource(chat))  # type: ignore[attr-defined]
        listen("web", site)
    if config["metrics"]:
        from twisted.web.server import Site

        from twisted_chat.daemon.ops import makeAdminRoot

        metricsSite = Site(makeAdminRoot(chat, stats), reactor=reactor)
        metricsSite.noisy = False
        # (not held back until Redis is ready: /readyz says when it is)
        for description in config["metrics"]:
            _Listener("metrics", description, metricsSite, reactor).setServiceParent(top)
    return top


def makeParent(config: Options, reactor: IReactorCore | None = None) -> MultiService:
    """
    The tree of a C{--workers} parent: it binds every --line and --web
    address (logging each as a node does) without ever accepting on them,
    and runs the workers (L{twisted_chat.daemon.workers.WorkerPool}) that do.
    """
    from twisted_chat.daemon.workers import FIRST_INHERITED_FD, WorkerPool

    checkBroker(config["broker-url"])
    top = MultiService()
    daemon = _Daemon(reactor)
    daemon.config = config
    daemon.setServiceParent(top)
    shared: list[tuple[str, _Listener]] = []
    for frontend in SHARED_FRONTENDS:
        for description in config[frontend]:
            listener = _Listener(frontend, description, _NOBODY, reactor, serve=False)
            listener.setServiceParent(top)
            shared.append((frontend, listener))
    inherit = ",".join("%s=%d" % (frontend, FIRST_INHERITED_FD + i) for i, (frontend, _) in enumerate(shared))

    def inherited() -> dict[int, int]:
        return {
            FIRST_INHERITED_FD + i: listener.port.fileno()  # type: ignore[attr-defined, union-attr]
            for i, (_, listener) in enumerate(shared)
        }

    def arguments(index: int) -> list[str]:
        twistd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
        twistd += ["--nodaemon", "--pidfile=", "--logger=twisted_chat.daemon.workers.relayObserver"]
        reactorName = (getattr(config, "parent", None) or {}).get("reactor")
        if reactorName:
            twistd.append("--reactor=" + reactorName)
        return twistd + ["chat"] + config.workerArguments(index, inherit)

    pool = WorkerPool(
        config["workers"],
        arguments,
        inherited,
        reactor or _globalReactor(),
        grace=config["shutdown-timeout"] + WORKER_STOP_MARGIN,
    )
    daemon.workers = pool
    pool.setServiceParent(top)
    return top


#: seconds a worker has, beyond --shutdown-timeout, to exit on SIGTERM
#: before its parent sends SIGKILL
WORKER_STOP_MARGIN = 5.0


class _Nobody(Protocol):
    def connectionMade(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]


class _ForTheWorkers(ServerFactory):
    """
    The factory of a parent's listening ports: they never accept (their
    workers do), so it never builds a protocol.
    """

    protocol = _Nobody
    noisy = False

    def logPrefix(self) -> str:
        return "for the workers"


_NOBODY = _ForTheWorkers()


class _StopInOrder(MultiService):
    """
    A L{MultiService} that stops its children one after the other, last
    first, each once the one after it has stopped.
    """

    _log = Logger()

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        d: Deferred[Any] = succeed(None)
        for service in reversed(list(self)):
            d.addCallback(lambda _, s=service: maybeDeferred(s.stopService))
            d.addErrback(lambda f, s=service: self._log.failure("stopping {service!r} failed", f, service=s))
        return d.addCallback(lambda _: None)


def _globalReactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _makeWebSite(config: Options, chat: ChatService, reactor: IReactorCore | None) -> IProtocolFactory:
    import txaio

    from twisted_chat.frontends.web import makeSite
    from twisted_chat.frontends.websocket import ChatWebSocketFactory
    from twisted_chat.frontends.wscommon import EchoFactory

    txaio.use_twisted()
    if reactor is not None:
        txaio.config.loop = reactor
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
            clock=reactor,  # type: ignore[arg-type]
            allowedOrigins=config["allow-origin"],
            pingInterval=config["sio-ping-interval"],
            pingTimeout=config["sio-ping-timeout"],
            maxPayload=config["sio-max-payload"],
            maxSessions=config["sio-max-sessions"],
        )
    site = makeSite(wsFactory, echo, clock=reactor, socketIo=socketIo)  # type: ignore[arg-type]
    # A connection that has not sent a whole request (or idles between
    # requests) is closed after the handshake timeout, not Twisted's default
    # of 12 hours: such connections are not counted by --max-connections yet.
    # (Twisted suspends this timeout while a request is handled, so long
    # polls and WebSockets are not affected.)
    site.timeOut = config["handshake-timeout"]
    return site


def freezeStartupObjects() -> None:
    """
    Take the objects of start-up (modules, classes, functions: most of the
    process's objects, for its whole life) out of the garbage collector's
    view: every full collection walked them all, a reactor stall of tens of
    milliseconds each time (see docs/benchmarks.md). Garbage made later is
    collected as before.
    """
    gc.collect()
    gc.freeze()


class _Daemon(Service):
    """
    Process-level behaviour of C{twistd chat}.

    It logs C{ready} once the reactor runs (signal handlers are installed by
    then, so a SIGTERM from that moment on gets a graceful shutdown), and it
    makes a graceful SIGTERM shutdown exit with status 0: twistd would
    otherwise re-raise the signal after stopping, and the process would look
    killed to whoever started it. Stopped last (it is the first child), so
    only once every connection has been closed.

    In a cluster (C{--broker}) it logs C{ready} once the shared state is
    loaded from Redis instead. In a C{--workers} parent it passes SIGHUP on
    to the workers (whose pool logs when they are all ready); in a worker
    it leaves SIGINT to the parent and ignores more signals once stopping.
    """

    _log = Logger()

    def __init__(self, reactor: object) -> None:
        self._reactor = reactor
        self.config: Options | None = None
        self.chat: ChatService | None = None
        self.lineFactory: LineChatFactory | None = None
        self.recentErrors: Any = None
        #: in a cluster: fires once the shared state is loaded from Redis
        self.ready: Deferred[Any] | None = None
        self.brokerName = ""
        #: in a --workers parent: the workers (SIGHUP is passed on to them)
        self.workers: Any = None
        #: in a worker: its index
        self.worker: int | None = None

    def _theReactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor

            return reactor
        return self._reactor

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        if self.worker is not None and self._reactor is None:
            # A Ctrl-C in a terminal reaches the whole process group: the
            # parent stops its workers itself. (Before the reactor runs: it
            # leaves an ignored SIGINT alone.)
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _ignoreMoreSignals(self) -> None:
        """
        A worker being stopped ignores more SIGTERMs (say its parent's and
        systemd's both) instead of logging a traceback for each; its parent
        sends SIGKILL if it takes too long.
        """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def startService(self) -> None:
        Service.startService(self)
        reactor = self._theReactor()
        if self.worker is not None and self._reactor is None:
            reactor.addSystemEventTrigger("before", "shutdown", self._ignoreMoreSignals)
        if self.workers is not None:
            # the parent: the pool says when all its workers are ready
            pass
        elif self.ready is not None:
            self._log.info("waiting for Redis at {broker}", broker=self.brokerName)
            self.ready.addCallbacks(self._clusterReady, self._clusterFailed)
        elif hasattr(reactor, "callWhenRunning"):
            reactor.callWhenRunning(self._announce)
        if self._reactor is None and hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(self.reload))
        if self._reactor is None and hasattr(reactor, "callWhenRunning"):
            reactor.callWhenRunning(freezeStartupObjects)
        if self.recentErrors is not None:
            from twisted.logger import globalLogPublisher

            globalLogPublisher.addObserver(self.recentErrors)

    def _announce(self) -> None:
        self._log.info(READY_FORMAT, version=__version__)

    def _clusterReady(self, result: object) -> object:
        # (the reactor runs: Redis was reached through it)
        self._log.info("Redis at {broker} ready: accepting connections", broker=self.brokerName)
        self._announce()
        return result

    def _clusterFailed(self, f: Failure) -> None:
        self._log.failure("the shared state could not be loaded from Redis at {broker}: stopping", f, broker=self.brokerName)
        reactor = self._theReactor()
        if self.running and hasattr(reactor, "stop"):
            reactor.stop()

    def reload(self) -> None:
        """
        SIGHUP: read the auth file and the limits file again and put them
        into effect, keeping every connection. A file with an error is
        reported and ignored; what was in effect stays. A --workers parent
        passes the signal on to its workers.
        """
        if self.workers is not None:
            count = self.workers.signalAll("HUP")
            self._log.info("SIGHUP: passed on to {count} workers", count=count)
            return
        config, chat = self.config, self.chat
        if config is None or chat is None:
            return
        self._log.info("SIGHUP: reloading")
        if config["auth"]:
            from twisted_chat.core.auth import AuthFileError, loadPasswords

            try:
                passwords = loadPasswords(config["auth"])
            except AuthFileError as e:
                self._log.error("reload: auth file not reloaded: {why}", why=str(e))
            else:
                missing = [a for a in chat.admins if a not in passwords]
                if missing:
                    self._log.error("reload: auth file not reloaded: admins {admins} are missing", admins=missing)
                else:
                    chat.passwords = passwords
                    self._log.info("reload: {count} registered nicks", count=len(passwords))
        if config["limits"]:
            try:
                limits = readLimits(config["limits"], {})
            except ValueError as e:
                self._log.error("reload: limits not reloaded: {why}", why=str(e))
            else:
                # One object that the service and every front-end read: the
                # new values reach them all (docs/operations.md says when
                # each applies to open connections).
                chat.settings.update(limits)
                self._log.info("reload: limits {limits}", limits=limits)

    def stopService(self) -> None:
        Service.stopService(self)
        if self.recentErrors is not None:
            from twisted.logger import globalLogPublisher

            globalLogPublisher.removeObserver(self.recentErrors)
        reactor = self._theReactor()
        if getattr(reactor, "_exitSignal", None) == signal.SIGTERM:
            reactor._exitSignal = None


#: the listen queue of stream endpoints that do not set one (Twisted's is
#: 50: a burst of connections overflows it, and each refused SYN costs its
#: client a one-second retransmission)
LISTEN_BACKLOG = 1024


def withBacklog(description: str) -> str:
    """
    C{description} with C{backlog=LISTEN_BACKLOG} added to a TCP, TLS or
    UNIX endpoint that does not give one.
    """
    kind = description.split(":", 1)[0].lower()
    if kind in ("tcp", "tcp6", "ssl", "unix") and "backlog=" not in description:
        return "%s:backlog=%d" % (description, LISTEN_BACKLOG)
    return description


class _Listener(Service):
    """
    One listening endpoint of one front-end.

    It binds in C{privilegedStartService} (before twistd drops privileges),
    or in C{startService} under C{twist}, which never calls the former;
    a bind error ends start-up with a one-line message and exit status 1
    instead of a traceback, or, as with a bare endpoint service, a daemon
    that runs without that port. Once bound it logs the real address, so
    C{tcp:0} can be used and read back.

    Given a C{ready} Deferred (a cluster's), it binds all the same but
    accepts only once that fires. A worker's listener adopts the socket its
    parent bound (C{inherited}) instead; a parent's (C{serve=False}) binds
    and never accepts.
    """

    _log = Logger()

    def __init__(
        self,
        frontend: str,
        description: str,
        factory: IProtocolFactory,
        reactor: object,
        ready: Deferred[Any] | None = None,
        inherited: int | None = None,
        serve: bool = True,
        throttle: Any = None,
    ) -> None:
        self.frontend = frontend
        self.description = description
        self.factory = factory
        self._reactor = reactor
        self.port: IListeningPort | None = None
        #: accept only once this fires (bound at once all the same: the
        #: kernel's listen queue holds the connections that come before)
        self.ready = ready
        #: a listening socket inherited from a --workers parent, to adopt
        #: instead of binding
        self.inherited = inherited
        #: False in a --workers parent: bind, but never accept
        self.serve = serve
        #: whether the port is accepting connections
        self.accepting = False
        #: a cluster that pauses accepting while Redis is behind (addThrottle)
        self.throttle = throttle

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        self._bind()

    def startService(self) -> None:
        Service.startService(self)
        # twist (unlike twistd) only calls startService
        if self.port is None:
            self._bind()

    def _bind(self) -> None:
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        if self.inherited is not None:
            self._adopt(reactor)
        else:
            self._listen(reactor)
        self.accepting = True
        if not self.serve:
            self._hold()
        elif self.ready is not None:
            self._hold()
            self.ready.addCallback(self._accept, self.port)
            self.ready.addCallback(self._throttled, self.port)

    def _hold(self) -> None:
        stopReading = getattr(self.port, "stopReading", None)
        if stopReading is not None:
            stopReading()
        self.accepting = False

    def _throttled(self, result: object, port: IListeningPort) -> object:
        # (from now on the cluster may pause accepting while Redis is behind)
        addThrottle = getattr(self.throttle, "addThrottle", None)
        if addThrottle is not None and self.port is port:
            addThrottle(self._hold, lambda: self._accept(None, port))
        return result

    def _accept(self, result: object, port: IListeningPort) -> object:
        if self.port is port and not self.accepting:
            startReading = getattr(port, "startReading", None)
            if startReading is not None:
                startReading()
            self.accepting = True
        return result

    def _adopt(self, reactor: Any) -> None:
        """
        Serve on the listening socket inherited from a --workers parent (an
        C{ssl:} address: wrapped in TLS as the parent's endpoint would be).
        """
        from twisted_chat.daemon.workers import socketFamily

        fd = self.inherited
        assert fd is not None
        factory = self.factory
        if self.description.split(":", 1)[0].lower() == "ssl":
            from twisted.protocols.tls import TLSMemoryBIOFactory

            contextFactory = getattr(serverFromString(reactor, self.description), "_sslContextFactory", None)
            if contextFactory is None:
                raise SystemExit("twistd chat: cannot make TLS options for %s" % (self.description,))
            factory = TLSMemoryBIOFactory(contextFactory, False, factory)
        try:
            self.port = reactor.adoptStreamPort(fd, socketFamily(fd), factory)
        except OSError as e:
            raise SystemExit("twistd chat: cannot serve on %s (socket %d of the parent): %s" % (self.description, fd, e))
        os.close(fd)  # (adopted as a copy)
        self._log.info(
            "{frontend} serving {address} (the parent's socket)",
            frontend=self.frontend,
            address=_address(self.port),
        )

    def _listen(self, reactor: Any) -> None:
        outcome: list[object] = []
        serverFromString(reactor, withBacklog(self.description)).listen(self.factory).addBoth(outcome.append)
        if not outcome:
            raise SystemExit("twistd chat: %s did not start listening at once" % (self.description,))
        if isinstance(outcome[0], Failure):
            raise SystemExit(
                "twistd chat: cannot listen on %s: %s" % (self.description, _reason(outcome[0].value))
            )
        self.port = outcome[0]  # type: ignore[assignment]
        self._log.info(
            "{frontend} listening on {address}",
            frontend=self.frontend,
            address=_address(self.port),
        )

    def stopService(self) -> object:
        Service.stopService(self)
        self.accepting = False
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


def _address(port: Any) -> str:
    host = port.getHost()
    return "%s:%s:%s" % (host.type.lower(), host.host, host.port) if hasattr(host, "port") else str(host)


def _reason(e: Exception) -> str:
    inner = getattr(e, "socketError", None)
    if inner is not None and getattr(inner, "strerror", None):
        return str(inner.strerror)
    return str(e)
