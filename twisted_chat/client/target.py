# -*- test-case-name: tests.client.test_cli -*-
"""
Where the terminal client connects: the command line's URL, parsed and
checked into a L{Target} (L{parseTarget}).
"""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_URL = "tcp://127.0.0.1:9000"

#: scheme -> (default port, is a WebSocket, uses TLS)
SCHEMES: dict[str, tuple[int, bool, bool]] = {
    "tcp": (9000, False, False),
    "tls": (9000, False, True),
    "ws": (80, True, False),
    "wss": (443, True, True),
}

_EXPECTED = "expected tcp://HOST:PORT, tls://HOST:PORT, ws://HOST:PORT/PATH or wss://HOST:PORT/PATH"


class BadURL(ValueError):
    """
    The URL given on the command line cannot be used; C{str()} says why in
    one line.
    """


class Target:
    """
    Where to connect: a parsed, validated C{twisted-chat} URL.
    """

    __slots__ = ("scheme", "host", "port", "path")

    def __init__(self, scheme: str, host: str, port: int, path: str = "") -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        #: the request path and query of a WebSocket URL; empty otherwise
        self.path = path

    @property
    def websocket(self) -> bool:
        """
        Whether this is the WebSocket json mode (C{ws}/C{wss}).
        """
        return SCHEMES[self.scheme][1]

    @property
    def secure(self) -> bool:
        """
        Whether the connection uses TLS (C{tls}/C{wss}).
        """
        return SCHEMES[self.scheme][2]

    @property
    def address(self) -> str:
        """
        C{HOST:PORT} for messages, IPv6 literals in brackets.
        """
        host = "[%s]" % (self.host,) if ":" in self.host else self.host
        return "%s:%d" % (host, self.port)

    @property
    def url(self) -> str:
        """
        The normalized URL (with port and, for WebSocket, path).
        """
        return "%s://%s%s" % (self.scheme, self.address, self.path)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Target):
            return NotImplemented
        return (self.scheme, self.host, self.port, self.path) == (
            other.scheme,
            other.host,
            other.port,
            other.path,
        )

    def __hash__(self) -> int:
        return hash((self.scheme, self.host, self.port, self.path))

    def __repr__(self) -> str:
        return "<Target %s>" % (self.url,)


def parseTarget(url: str) -> Target:
    """
    Parse a C{twisted-chat} URL: C{tcp://HOST:PORT} and C{tls://HOST:PORT}
    for the line chat (port 9000 when left out), C{ws://HOST:PORT/PATH} and
    C{wss://…} for WebSocket json mode (ports 80 and 443, path C{/} when
    left out). Raise L{BadURL} with a one-line reason for anything else.
    """
    if not url or any(c.isspace() for c in url):
        raise BadURL("bad URL %r: %s" % (url, _EXPECTED))
    if "://" not in url:
        raise BadURL("bad URL %r: no scheme; %s" % (url, _EXPECTED))
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise BadURL("bad URL %r: %s" % (url, e))
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise BadURL("bad URL %r: unknown scheme %r; %s" % (url, parts.scheme, _EXPECTED))
    defaultPort, websocket, _ = SCHEMES[scheme]
    if parts.username is not None or parts.password is not None:
        raise BadURL("bad URL %r: user names and passwords are not supported" % (url,))
    host = parts.hostname
    if not host:
        raise BadURL("bad URL %r: no host" % (url,))
    try:
        port = parts.port
    except ValueError:
        raise BadURL("bad URL %r: the port must be a number from 1 to 65535" % (url,))
    if port is None:
        if parts.netloc.endswith(":"):
            raise BadURL("bad URL %r: empty port" % (url,))
        port = defaultPort
    if not 1 <= port <= 65535:
        raise BadURL("bad URL %r: the port must be a number from 1 to 65535" % (url,))
    if parts.fragment:
        raise BadURL("bad URL %r: a fragment (#...) has no meaning here" % (url,))
    if websocket:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
    else:
        if parts.path not in ("", "/") or parts.query:
            raise BadURL("bad URL %r: %s:// URLs have no path" % (url, scheme))
        path = ""
    return Target(scheme, host, port, path)
