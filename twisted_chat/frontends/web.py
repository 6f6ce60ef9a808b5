# -*- test-case-name: tests.frontends.test_web -*-
"""
The web port: the chat page at C{/}, its assets, WebSocket at C{/ws} (and
at C{/} for clients that upgrade there, like the seed's C{WsClient.js}),
Socket.IO at C{/socket.io/}, and optionally the C{/echo} endpoint for the
compliance suite.

Assets are read once at start-up from the package's C{page/} folder and served
from memory with strict security headers (no inline script is allowed).
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from autobahn.twisted.resource import WebSocketResource
from twisted.web import pages
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from twisted_chat.frontends.socketio.engineio import EngineResource
    from twisted_chat.frontends.websocket import ChatWebSocketFactory
    from twisted_chat.frontends.wscommon import EchoFactory

_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
    ".ico": b"image/x-icon",
}

CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
    b"object-src 'none'"
)

SECURITY_HEADERS = [
    (b"Content-Security-Policy", CSP),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Referrer-Policy", b"no-referrer"),
    (b"X-Frame-Options", b"DENY"),
    (b"Cross-Origin-Opener-Policy", b"same-origin"),
]


def _secure(request: Request) -> None:
    for name, value in SECURITY_HEADERS:
        request.setHeader(name, value)


class StaticBytes(Resource):
    """
    One in-memory file with its content type and the security headers.
    """

    def __init__(self, body: bytes, contentType: bytes) -> None:
        Resource.__init__(self)
        self.body = body
        self.contentType = contentType

    def getChild(self, path: bytes, request: Request) -> IResource:
        # Not a leaf: /app.js/anything (or //anything) is a 404, not the file.
        return pages.notFound()

    def render_GET(self, request: Request) -> bytes:
        _secure(request)
        request.setHeader(b"Content-Type", self.contentType)
        request.setHeader(b"Cache-Control", b"no-cache")
        return self.body

    def render_HEAD(self, request: Request) -> bytes:
        return self.render_GET(request)


class IndexResource(StaticBytes):
    """
    C{/}: the chat page, or a WebSocket if the request asks to upgrade.
    """

    def __init__(self, body: bytes, ws: WebSocketResource) -> None:
        StaticBytes.__init__(self, body, _TYPES[".html"])
        self.ws = ws

    def render_GET(self, request: Request) -> bytes:
        upgrade = request.getHeader(b"upgrade")
        if upgrade is not None and upgrade.lower() == b"websocket":
            return self.ws.render(request)
        return StaticBytes.render_GET(self, request)


class ChatRoot(Resource):
    """
    The root of the web port; anything unknown is a plain 404.
    """

    def getChild(self, path: bytes, request: Request) -> IResource:
        return pages.notFound()


def loadAssets() -> dict[str, bytes]:
    """
    The files of the package's C{page/} folder, by name.
    """
    folder = resources.files("twisted_chat.frontends") / "page"
    assets = {}
    for entry in folder.iterdir():
        if entry.is_file() and "." + entry.name.rpartition(".")[2] in _TYPES:
            assets[entry.name] = entry.read_bytes()
    return assets


def makeSite(
    wsFactory: ChatWebSocketFactory,
    echoFactory: EchoFactory | None = None,
    clock: IReactorTime | None = None,
    socketIo: EngineResource | None = None,
) -> Site:
    """
    Build the C{Site} for one or more C{--web} listeners; C{socketIo} is
    mounted at C{/socket.io/}, and then request bodies are bounded by its
    C{maxPayload}.
    """
    ws = WebSocketResource(wsFactory)
    assets = loadAssets()
    root = ChatRoot()
    root.putChild(b"", IndexResource(assets.get("index.html", b"<!doctype html><title>twisted-chat</title>"), ws))
    for name, body in assets.items():
        if name != "index.html":
            root.putChild(name.encode(), StaticBytes(body, _TYPES["." + name.rpartition(".")[2]]))
    root.putChild(b"ws", ws)
    if echoFactory is not None:
        root.putChild(b"echo", WebSocketResource(echoFactory))
    site = Site(root, reactor=clock)
    if socketIo is not None:
        from twisted_chat.frontends.socketio.engineio import BoundedRequest

        root.putChild(b"socket.io", socketIo)
        site.requestFactory = BoundedRequest
        site.maxRequestBody = socketIo.engine.maxPayload  # type: ignore[attr-defined]
    site.displayTracebacks = False
    site.noisy = False
    return site
