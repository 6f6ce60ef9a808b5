# -*- test-case-name: tests.daemon.test_tap,tests.daemon.test_ops -*-
"""
The command line of C{twistd chat}: L{Options} and the checks of its values
(numbers in range, endpoint strings, the auth, limits and store files, the
Redis URL, the options of a C{--workers} parent and of its workers), and
the reading of a C{--limits} file (L{readLimits}), which SIGHUP repeats.

Nothing here builds a service; L{twisted_chat.daemon.app.makeService} turns
the parsed options into the service tree.
"""

from __future__ import annotations

import getopt
import os
import socket
import sys
from typing import TYPE_CHECKING, Any, Callable, MutableMapping

from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor
from twisted.python import usage

from twisted_chat.core.settings import OPTIONS as _SETTINGS_OPTIONS

if TYPE_CHECKING:
    from twisted_chat.cluster.redis import RedisURL



class _Bounded:
    """
    The coercer of a number option: C{kind} of the value, from C{low} to
    C{high}. (twistd's help shows its C{coerceDoc}.)
    """

    def __init__(self, name: str, low: float, high: float, kind: Callable[[str], float] = int) -> None:
        self.name, self.low, self.high, self.kind = name, low, high, kind
        self.coerceDoc = "From %s to %s." % (low, high)

    def __call__(self, value: str) -> float:
        try:
            v = self.kind(value)
        except ValueError:
            raise ValueError("%s must be a number, not %r" % (self.name, value))
        if not self.low <= v <= self.high:
            raise ValueError("%s must be between %s and %s, not %s" % (self.name, self.low, self.high, value))
        return v


class _Choice:
    """
    The coercer of an option that takes one of a few words.
    """

    def __init__(self, name: str, choices: list[str]) -> None:
        self.name, self.choices = name, choices
        self.coerceDoc = "One of %s." % (", ".join(choices),)

    def __call__(self, value: str) -> str:
        if value not in self.choices:
            raise ValueError("%s must be one of %s, not %r" % (self.name, ", ".join(self.choices), value))
        return value


class _WorkerCount:
    """
    The coercer of --workers: a number of processes, or C{auto} (one per
    CPU).
    """

    coerceDoc = "From 1 to 256, or auto."

    def __call__(self, value: str) -> int:
        if value == "auto":
            return os.cpu_count() or 1
        try:
            count = int(value)
        except ValueError:
            raise ValueError("workers must be a number or auto, not %r" % (value,))
        if not 1 <= count <= MAX_WORKERS:
            raise ValueError("workers must be between 1 and %d, not %s" % (MAX_WORKERS, value))
        return count


#: the most worker processes --workers may ask for
MAX_WORKERS = 256

#: the front-ends whose listening sockets a parent shares with its workers
#: (each worker binds its own --metrics port: the given one + its index)
SHARED_FRONTENDS = ("line", "web", "irc")

#: options of a worker process only (set by its parent; not in --help)
_HIDDEN_OPTIONS = ("worker", "inherit-fds", "peer-dir")


def _checkAdvertise(value: str) -> str:
    """
    The coercer of --advertise: C{HOST:PORT} (an IPv6 host in brackets).
    """
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise ValueError("advertise must be HOST:PORT, not %r" % (value,))
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError("advertise: write an IPv6 address in brackets, [ADDRESS]:PORT, not %r" % (value,))
    return value


_checkAdvertise.coerceDoc = "HOST:PORT."  # type: ignore[attr-defined]


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

    # (twistd's rows: long name, short name, default, help[, coerce]: of
    # mixed types, which each option's coercer gives its values)
    optParameters: list[list[Any]] = [
        ["max-line-length", None, 4096, "Longest line (bytes) a line-chat client may send.", _Bounded("max-line-length", 64, 1 << 20)],
        ["idle-timeout", None, 600, "Seconds without input before a connection is closed (0: never).", _Bounded("idle-timeout", 0, 10**7, float)],
        ["max-outgoing", None, 1 << 20, "Bytes queued for a client that does not read before it is dropped.", _Bounded("max-outgoing", 1 << 12, 1 << 30)],
        ["history-size", None, 50, "Messages of history sent on join.", _Bounded("history-size", 0, 10000)],
        ["store", None, None, "Where messages are kept: sqlite:PATH, or memory (lost on restart). [default: sqlite:chat.sqlite3; none with --broker]"],
        ["store-sync", None, "full", "SQLite durability: full (an acknowledged message survives a power loss) or normal (it survives a crash of the daemon).", _Choice("store-sync", ["full", "normal"])],
        ["retain-messages", None, 10000, "Messages kept per room (private messages: ten times as many).", _Bounded("retain-messages", 1, 10**9)],
        ["retain-days", None, 30.0, "Days messages are kept (0: no age limit).", _Bounded("retain-days", 0, 36500, float)],
        ["ws-max-message", None, 65536, "Largest WebSocket message (bytes) a client may send; larger ones are closed with 1009.", _Bounded("ws-max-message", 256, 1 << 26)],
        ["ws-ping-interval", None, 25.0, "Seconds between server pings on WebSocket connections (0: off).", _Bounded("ws-ping-interval", 0, 3600, float)],
        ["ws-ping-timeout", None, 10.0, "Seconds to wait for a pong before dropping the peer.", _Bounded("ws-ping-timeout", 1, 3600, float)],
        ["max-connections", None, 10000, "Connections in all; more are refused politely (0: no limit).", _Bounded("max-connections", 0, 10**7)],
        ["max-per-ip", None, 50, "Connections from one address (0: no limit).", _Bounded("max-per-ip", 0, 10**7)],
        ["limits-scope", None, "machine", "Where --max-per-ip and --max-connections hold: machine (this process, or all the workers of a --workers parent), or cluster (every node sharing --broker, counted in Redis; while Redis is unreachable they hold per machine).", _Choice("limits-scope", ["machine", "cluster"])],
        ["max-rooms", None, 50, "Rooms one connection may be in.", _Bounded("max-rooms", 1, 100000)],
        ["max-message-length", None, 4096, "Characters in one message.", _Bounded("max-message-length", 1, 1 << 20)],
        ["flood-rate", None, 5.0, "Requests (messages and commands) a second per connection (0: no flood control).", _Bounded("flood-rate", 0, 10**6, float)],
        ["flood-burst", None, 10.0, "Requests a connection may send at once before flood control makes the next ones wait.", _Bounded("flood-burst", 1, 10**6, float)],
        ["flood-kick", None, 100.0, "Requests a connection may have waiting for flood control (read, not yet handled); past that it is disconnected for flooding.", _Bounded("flood-kick", 1, 10**6, float)],
        ["handshake-timeout", None, 10.0, "Seconds a WebSocket client has to finish its handshake (and, in json mode, say hello).", _Bounded("handshake-timeout", 1, 3600, float)],
        ["auth", None, None, "Password file of registered nicks (lines NICK:HASH; make them with twisted-chat-passwd)."],
        ["sio-ping-interval", None, 25.0, "Seconds between Engine.IO pings to Socket.IO clients.", _Bounded("sio-ping-interval", 1, 3600, float)],
        ["sio-ping-timeout", None, 20.0, "Seconds a Socket.IO client has to answer a ping; a quiet polling session expires after interval + timeout.", _Bounded("sio-ping-timeout", 1, 3600, float)],
        ["sio-max-payload", None, 100000, "Largest Socket.IO POST body or WebSocket message (bytes); larger POSTs get 413 and close the session.", _Bounded("sio-max-payload", 1024, 1 << 26)],
        ["sio-max-sessions", None, 10000, "Socket.IO sessions at once (0: no Socket.IO at /socket.io/).", _Bounded("sio-max-sessions", 0, 10**7)],
        ["limits", None, None, "A file of limits (lines NAME = VALUE, names as the options above: flood-rate, max-per-ip…), read at start and again on SIGHUP."],
        ["drain-spread", None, 10.0, "On shutdown, clients are told to reconnect after a random 1 to 1+N seconds, so a restart causes no reconnect storm.", _Bounded("drain-spread", 0, 3600, float)],
        ["connection-summary", None, 60.0, "Every N seconds in which connections opened or closed, log how many (by front-end and reason) and how many are open (0: never).", _Bounded("connection-summary", 0, 86400, float)],
        ["shutdown-timeout", None, 5.0, "Seconds to wait for connections to close on shutdown.", _Bounded("shutdown-timeout", 0, 600, float)],
        ["broker", None, None, "Share rooms, nicks and history with every other node using the same Redis: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?prefix=P] (rediss:// for TLS, with &ca=PEMFILE to trust a private CA); the history then lives in Redis (no --store)."],
        ["workers", None, 1, "Worker processes (auto: one per CPU); more than 1 needs --broker. The parent binds the line and web ports and shares them with its workers, restarts a worker that dies, and stops them all on SIGTERM; worker I serves --metrics on the given port + I (tcp:0: each its own free port).", _WorkerCount()],
        ["advertise", None, None, "With --broker: the HOST:PORT (plain HTTP, a --web address of this node) where the other nodes reach it to relay a Socket.IO request for one of its sessions. [default: the first plain tcp: --web listener's port, on its interface if it names one, else on this machine's host name]", _checkAdvertise],
        ["bus-shards", None, 4096, "With --broker: room messages travel on this many channels of the bus, a room's on one (by a hash of its name), and a node hears only the channels of its rooms; 0: every room message on the common bus, which every node hears. Used once every node of the cluster asks for the same number (else the common bus).", _Bounded("bus-shards", 0, 1 << 16)],
        ["node-id", None, None, "This node's name among the nodes sharing --broker, unique to it and the same across its restarts (a restarted node then clears what its previous life left in Redis at once). [default: HOST-PID; worker I of a --workers parent: NODE-wI, NODE the given one or the host name]"],
        # a worker's own options, set by its parent (left out of --help)
        ["worker", None, None, "(internal) This process is worker N of a --workers parent.", _Bounded("worker", 0, MAX_WORKERS - 1)],
        ["inherit-fds", None, None, "(internal) The listening sockets inherited from the parent: FRONTEND=FD,..."],
        ["peer-dir", None, None, "(internal) The directory of the workers' private sockets (Socket.IO relays, the parent's limits)."],
    ]

    optFlags = [
        ["check", None, "Check the options and files (auth, limits, store), print the result and exit."],
        ["log-messages", None, "Log the text of every message (for debugging; off by default for privacy)."],
        ["log-connections", None, "Log a line (at debug level) for every connection and disconnection, besides the periodic summary."],
        ["require-auth", None, "Only registered nicks may chat (needs --auth)."],
        ["ws-compression", None, "Accept permessage-deflate on WebSocket connections (off by default)."],
        ["ws-echo", None, "Also serve /echo, a WebSocket echo endpoint with the same options (for compliance testing)."],
    ]

    def __init__(self) -> None:
        usage.Options.__init__(self)
        self["line"] = []
        self["web"] = []
        self["irc"] = []
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

    def opt_irc(self, description: str) -> None:
        """
        Serve IRC on this endpoint (repeatable; default none; e.g. tcp:6667, or ssl:6697:privateKey=key.pem:certKey=cert.pem for TLS).
        """
        self["irc"].append(description)

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
        """
        Check the options together, fill in the defaults, and read the
        files they name (limits, auth) and the worker options.
        """
        self["line"] = self._listeners(self["line"], ["tcp:9000"], "line")
        self["web"] = self._listeners(self["web"], ["tcp:8080"], "web")
        self["irc"] = self._listeners(self["irc"], ["none"], "irc")
        self["metrics"] = self._listeners(self["metrics"], ["tcp:9464:interface=127.0.0.1"], "metrics")
        if self["limits"]:
            try:
                readLimits(self["limits"], self)
            except ValueError as e:
                raise usage.UsageError(str(e))
        self._checkAuth()
        self._checkStorage()
        if self["advertise"] is not None and self["broker-url"] is None:
            raise usage.UsageError("--advertise is for nodes sharing --broker redis://...")
        if self["limits-scope"] == "cluster" and self["broker-url"] is None:
            raise usage.UsageError("--limits-scope cluster is for nodes sharing --broker redis://...")
        self._checkWorkerOptions()
        if self["check"]:
            self._check()

    def _checkAuth(self) -> None:
        """
        Read the --auth file into C{passwords}; every --admin must be one of
        its nicks.
        """
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

    def _checkStorage(self) -> None:
        """
        Where the history lives: Redis (--broker, parsed into
        C{broker-url}; --workers needs it), or the --store (SQLite by
        default).
        """
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

    def _check(self) -> None:
        """
        --check: probe Redis or open the database as start-up would, say the
        configuration is OK and exit.
        """
        if self["broker-url"] is not None:
            checkBroker(self["broker-url"])
        elif self["store"] != "memory":
            from twisted_chat.stores.sqlite_schema import StoreError, checkStore

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

    def workerArguments(self, index: int, inherit: str, peers: str | None = None) -> list[str]:
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
        args += ["--worker=%d" % (index,), "--node-id=%s-w%d" % (base, index), "--inherit-fds=" + inherit]
        if peers is not None:
            args.append("--peer-dir=" + peers)
        return args

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
    --line, --web and --irc address, in order) into {front-end: [fd, ...]}.
    """
    found: dict[str, list[int]] = {name: [] for name in SHARED_FRONTENDS}
    for item in filter(None, value.split(",")):
        name, _, fd = item.partition("=")
        if name not in found or not fd.isdigit():
            raise usage.UsageError(
                "--inherit-fds: expected FRONTEND=FD,... with FRONTEND one of %s, not %r" % (", ".join(SHARED_FRONTENDS), item)
            )
        found[name].append(int(fd))
    for name in SHARED_FRONTENDS:
        if len(found[name]) != len(config[name]):
            raise usage.UsageError(
                "--inherit-fds gives %d %s sockets for %d --%s addresses" % (len(found[name]), name, len(config[name]), name)
            )
    return found


def checkBroker(url: RedisURL) -> None:
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


def readLimits(path: str, into: MutableMapping[str, object]) -> dict[str, object]:
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
    found: dict[str, object] = {}
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

