# -*- test-case-name: tests.frontends.socketio.test_engineio -*-
"""
The HTTP side of Engine.IO: the resource at C{/socket.io/}
(L{EngineResource}: long-polling GETs and POSTs, CORS and its preflights,
WebSocket upgrades handed to Autobahn) and the request class that bounds
what a client may upload (L{BoundedRequest}).
"""

from __future__ import annotations

import io

from autobahn.twisted.resource import WebSocketResource
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import pages
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from twisted_chat.frontends.socketio.engineio.packets import (
    BAD_HANDSHAKE_METHOD,
    BAD_REQUEST,
    FORBIDDEN,
    POLLING,
    UNKNOWN_SID,
    EngineError,
    ProtocolError,
    checkQuery,
)
from twisted_chat.frontends.socketio.engineio.relay import RELAY_HEADER, TOO_LARGE_HEADER, WORKER_HOP, SessionRouter
from twisted_chat.frontends.socketio.engineio.server import EngineServer
from twisted_chat.frontends.socketio.engineio.websocket import EngineWebSocketFactory
from twisted_chat.frontends.wscommon import originAllowed


def peerOf(request: Request) -> str:
    """
    The client's address, written as Autobahn writes WebSocket peers.
    """
    address = request.getClientAddress()
    if isinstance(address, IPv4Address):
        return "tcp4:%s:%d" % (address.host, address.port)
    if isinstance(address, IPv6Address):
        return "tcp6:%s:%d" % (address.host, address.port)
    if isinstance(address, UNIXAddress):
        relayedFor = _relayedFor(request)
        if relayedFor is not None:
            return "%s (relayed by a sibling worker)" % (relayedFor,)
        # (str() of a bytes name, as Autobahn writes it too)
        return "unix:%s" % (str(address.name or ""),)
    return "unknown"


def _relayedFor(request: Request) -> str | None:
    """
    The address a sibling worker relayed C{request} for: the last entry of
    its X-Forwarded-For, the peer that worker saw. Trusted only because it
    came over the private socket (mode 0600, in the parent's private
    directory): on a public port the header is the client's to write, and
    is never used.
    """
    if request.getHeader(RELAY_HEADER) != WORKER_HOP:
        return None
    forwarded = request.getHeader(b"x-forwarded-for")
    if not forwarded:
        return None
    last = forwarded.rsplit(b",", 1)[-1].strip().decode("ascii", "replace")
    return last[:64] or None


def _query(args: dict[bytes, list[bytes]], name: bytes) -> str | None:
    values = args.get(name)
    if not values:
        return None
    return values[0].decode("utf-8", "replace")


class BoundedRequest(Request):
    """
    A request that keeps at most C{channel.site.maxRequestBody} bytes of its
    body: what is beyond is read and thrown away, and C{bodyTooLarge} is set,
    so a client cannot make the server hold an arbitrarily large upload.
    """

    bodyTooLarge = False
    _received = 0

    def _limit(self) -> int | None:
        site = getattr(self.channel, "site", None)
        return getattr(site, "maxRequestBody", None)

    def gotLength(self, length: int | None) -> None:
        limit = self._limit()
        if limit is not None and length is not None and length > limit:
            self.bodyTooLarge = True
            Request.gotLength(self, 0)
            return
        Request.gotLength(self, length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.bodyTooLarge:
            return
        limit = self._limit()
        self._received += len(data)
        if limit is not None and self._received > limit:
            self.bodyTooLarge = True
            if self.content is not None:
                self.content.close()
            self.content = io.BytesIO()
            return
        Request.handleContentChunk(self, data)


_COMMON_HEADERS = [
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Cache-Control", b"no-store"),
]


def _body(request: Request) -> bytes:
    """
    The whole body of C{request}.
    """
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    return content.read()


def _bodySize(request: Request) -> int:
    content = request.content
    if content is None:
        return 0
    position = content.tell()
    content.seek(0, io.SEEK_END)
    size = content.tell()
    content.seek(position)
    return size


class EngineResource(Resource):
    """
    C{/socket.io/} on the web port: HTTP long-polling, CORS, and WebSocket
    upgrades (handed to Autobahn).
    """

    isLeaf = True
    _log = Logger()

    def __init__(self, server: EngineServer, wsFactory: EngineWebSocketFactory | None = None) -> None:
        Resource.__init__(self)
        self.engine = server
        self.wsFactory = wsFactory if wsFactory is not None else EngineWebSocketFactory(server)
        self.ws = WebSocketResource(self.wsFactory)
        #: where requests for other processes' sessions go (None: nowhere)
        self.router: SessionRouter | None = None

    def render(self, request: Request) -> object:
        if request.postpath not in ([], [b""]):
            return pages.notFound().render(request)
        router = self.router
        if router is not None and request.method != b"OPTIONS":
            sid = _query(request.args or {}, b"sid")
            if sid is not None and sid not in self.engine.sessions:
                decision = router.decide(sid, request.getHeader(RELAY_HEADER))
                if decision is not None:
                    upgrade = request.getHeader(b"upgrade")
                    return router.relay(
                        request,
                        decision,
                        upgrade is not None and upgrade.lower() == b"websocket",
                        lambda: self._unknown(request),
                    )
        for name, value in _COMMON_HEADERS:
            request.setHeader(name, value)
        origin = request.getHeader(b"origin")
        try:
            self._cors(request, origin)
            if request.method == b"OPTIONS":
                return self._preflight(request)
            upgrade = request.getHeader(b"upgrade")
            if upgrade is not None and upgrade.lower() == b"websocket":
                if request.method != b"GET":
                    raise EngineError(BAD_REQUEST)
                return self.ws.render(request)
            return self._polling(request)
        except EngineError as e:
            request.setResponseCode(e.status)
            request.setHeader(b"Content-Type", b"application/json")
            return e.body()

    def _open(self, request: Request, host: str) -> bytes:
        """
        Open a polling session for C{host} (admitted already): the
        handshake's answer.
        """
        socket = self.engine.newSession(POLLING, peerOf(request), host, admitted=True)
        self._log.debug("engine.io polling session {sid} from {peer}", sid=socket.sid, peer=socket.peer)
        request.setHeader(b"Content-Type", b"text/plain; charset=UTF-8")
        return socket.start()

    def _error(self, request: Request, e: EngineError) -> bytes:
        request.setResponseCode(e.status)
        request.setHeader(b"Content-Type", b"application/json")
        return e.body()

    def _unknown(self, request: Request) -> bytes:
        """
        Answer "Session ID unknown" (a relay that found no owner), with the
        headers this resource's answers have.
        """
        for name, value in _COMMON_HEADERS:
            request.setHeader(name, value)
        try:
            self._cors(request, request.getHeader(b"origin"))
            error = EngineError(UNKNOWN_SID)
        except EngineError as e:
            error = e
        request.setResponseCode(error.status)
        request.setHeader(b"Content-Type", b"application/json")
        return error.body()

    def _cors(self, request: Request, origin: bytes | None) -> None:
        """
        Browsers send C{Origin} on cross-origin requests: those from a page of
        another origin are refused unless C{--allow-origin} lists it; allowed
        ones get the CORS headers that let the page read the response.
        """
        if origin is None:
            return
        text = origin.decode("latin-1")
        host = request.getHeader(b"host")
        if not originAllowed(text, host.decode("latin-1") if host is not None else None, self.engine.allowedOrigins):
            self._log.info(
                "refused engine.io request from {peer}: origin {origin} not allowed",
                peer=peerOf(request),
                origin=text,
            )
            raise EngineError(FORBIDDEN, 403)
        request.setHeader(b"Access-Control-Allow-Origin", origin)
        request.setHeader(b"Access-Control-Allow-Credentials", b"true")
        request.setHeader(b"Vary", b"Origin")

    def _preflight(self, request: Request) -> bytes:
        request.setResponseCode(204)
        request.setHeader(b"Access-Control-Allow-Methods", b"GET, POST, OPTIONS")
        asked = request.getHeader(b"access-control-request-headers")
        request.setHeader(b"Access-Control-Allow-Headers", asked if asked else b"Content-Type")
        request.setHeader(b"Access-Control-Max-Age", b"86400")
        return b""

    def _polling(self, request: Request) -> object:
        args = request.args or {}
        transport = _query(args, b"transport")
        checkQuery(transport, _query(args, b"EIO"))
        if transport != POLLING:
            # transport=websocket without an Upgrade header
            raise EngineError(BAD_REQUEST)
        sid = _query(args, b"sid")
        server = self.engine
        method = request.method
        if sid is None:
            if method != b"GET":
                raise EngineError(BAD_HANDSHAKE_METHOD)
            host = str(getattr(request.getClientAddress(), "host", ""))
            waiting = server.admitLater(host)
            if waiting is None:
                return self._open(request, host)
            # (the machine's count decides: answered once it has)
            gone: list[object] = []
            request.notifyFinish().addErrback(gone.append)

            def admitted(_: None) -> None:
                if gone:
                    server.release(host)
                    return
                try:
                    body = self._open(request, host)
                except EngineError as e:
                    body = self._error(request, e)
                request.write(body)
                request.finish()

            def refused(f: Failure) -> None:
                error = f.trap(EngineError) and f.value
                assert isinstance(error, EngineError)
                if not gone:
                    request.write(self._error(request, error))
                    request.finish()

            waiting.addCallbacks(admitted, refused)
            return NOT_DONE_YET
        found = server.sessions.get(sid)
        if found is None:
            raise EngineError(UNKNOWN_SID)
        socket = found
        if socket.transport != POLLING:
            raise EngineError(BAD_REQUEST)
        request.setHeader(b"Content-Type", b"text/plain; charset=UTF-8")
        if method == b"GET":
            return socket.onPoll(request)
        if method != b"POST":
            raise EngineError(BAD_REQUEST)
        if (
            getattr(request, "bodyTooLarge", False)
            or request.getHeader(TOO_LARGE_HEADER) is not None
            or _bodySize(request) > server.maxPayload
        ):
            self._log.info(
                "engine.io session {sid} from {peer}: payload over {limit} bytes",
                sid=sid,
                peer=socket.peer,
                limit=server.maxPayload,
            )
            socket.fail("payload too large")
            raise EngineError(BAD_REQUEST, 413, "Payload too large")
        if socket.postHeld:
            # (a client sends one POST at a time; engine.io refuses this too)
            self._log.info("engine.io session {sid} from {peer}: overlapping posts", sid=sid, peer=socket.peer)
            socket.fail("overlapping posts")
            raise EngineError(BAD_REQUEST)
        try:
            socket.onData(_body(request))
        except ProtocolError:
            raise EngineError(BAD_REQUEST)
        if socket.holdPost(request):
            # Flood control: answered once the session's input resumes.
            return NOT_DONE_YET
        return b"ok"

