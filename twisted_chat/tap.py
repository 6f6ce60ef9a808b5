# -*- test-case-name: tests.test_tap -*-
"""
C{twistd chat}: options and the service tree.

One L{ChatService} first, then one listener per configured endpoint, every
front-end sharing that service. Stopping runs in reverse: listeners stop
accepting, then the chat service says goodbye to every connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from twisted.application import strports
from twisted.application.service import MultiService, Service
from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor
from twisted.python import usage

from twisted_chat._line import LineChatFactory
from twisted_chat._memstore import MemoryStore
from twisted_chat._service import ChatService

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorCore


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


def checkEndpoint(description: str) -> str:
    """
    Parse C{description} as a server endpoint string without touching the
    real reactor; raise L{usage.UsageError} with a one-line reason if bad.
    """
    try:
        serverFromString(MemoryReactor(), description)
    except (ValueError, TypeError, KeyError) as e:
        raise usage.UsageError("invalid endpoint %r: %s" % (description, e))
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
        ["retain-messages", None, 1000, "Messages kept per room (memory store).", _bounded("retain-messages", 1, 10**7)],
        ["shutdown-timeout", None, 5.0, "Seconds to wait for connections to close on shutdown.", _bounded("shutdown-timeout", 0, 600, float)],
    ]

    def __init__(self) -> None:
        usage.Options.__init__(self)
        self["line"] = []

    def opt_line(self, description: str) -> None:
        """
        Serve the line chat on this endpoint (repeatable; default tcp:9000; 'none' for off).
        """
        self["line"].append(description)

    def parseOptions(self, options: list[str] | None = None) -> None:
        """
        Parse, turning any usage error into a one-line message and exit
        status 1 (twistd would otherwise print the whole usage first).
        """
        try:
            usage.Options.parseOptions(self, options)
        except usage.UsageError as e:
            raise SystemExit("twistd chat: %s (see twistd chat --help)" % (e,))

    def postOptions(self) -> None:
        self["line"] = self._listeners(self["line"], ["tcp:9000"], "line")

    def _listeners(self, given: list[str], default: list[str], name: str) -> list[str]:
        if not given:
            given = default
        if "none" in given:
            if len(given) > 1:
                raise usage.UsageError("--%s none cannot be combined with other --%s addresses" % (name, name))
            return []
        return [checkEndpoint(d) for d in given]


def makeService(config: Options, reactor: IReactorCore | None = None) -> MultiService:
    """
    Build the service tree for C{twistd chat}.
    """
    top = MultiService()
    chat = ChatService(
        store=MemoryStore(retain=config["retain-messages"]),
        clock=reactor,  # type: ignore[arg-type]
        historySize=config["history-size"],
        shutdownTimeout=config["shutdown-timeout"],
    )
    chat.setServiceParent(top)
    lineFactory = LineChatFactory(
        chat,
        maxLineLength=config["max-line-length"],
        idleTimeout=config["idle-timeout"],
        maxOutgoing=config["max-outgoing"],
        clock=reactor,  # type: ignore[arg-type]
    )
    for description in config["line"]:
        _Listener(description, lineFactory, reactor).setServiceParent(top)
    return top


class _Listener(Service):
    """
    One listening endpoint. Bind errors end start-up with a one-line message
    and exit status 1 instead of a traceback (or, with a bare endpoint
    service, a daemon that runs without that port).
    """

    def __init__(self, description: str, factory: object, reactor: IReactorCore | None) -> None:
        self.description = description
        self._inner = strports.service(description, factory, reactor=reactor)  # type: ignore[arg-type]

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        try:
            self._inner.privilegedStartService()
        except Exception as e:
            raise SystemExit("twistd chat: cannot listen on %s: %s" % (self.description, _reason(e)))

    def startService(self) -> None:
        Service.startService(self)
        self._inner.startService()

    def stopService(self) -> object:
        Service.stopService(self)
        return self._inner.stopService()


def _reason(e: Exception) -> str:
    inner = getattr(e, "socketError", None)
    if inner is not None and getattr(inner, "strerror", None):
        return str(inner.strerror)
    return str(e)
