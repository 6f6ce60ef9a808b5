# -*- test-case-name: tests.frontends.socketio.test_relay -*-
"""
Engine.IO sessions on any worker and any node, without sticky routing.

A session id names its owner: C{RANDOM.MACHINE.WORKER}, where C{MACHINE}
is a short hash of the node's name (for the workers of one C{--workers}
parent: the parent's) and C{WORKER} the worker's index (empty without
C{--workers}). A polling GET or POST, or a WebSocket upgrade, for a session
this process does not have is passed to its owner (L{SessionRouter}):

* to a sibling worker of the same machine, over that worker's private
  UNIX socket (L{siblingSocket} in the directory the parent made);
* to another node, at the address it advertises in Redis
  (L{NodeDirectory}).

An HTTP request is forwarded with its headers and body and the answer
streamed back (L{HttpRelay}); an upgrade's two byte streams are spliced
(L{spliceUpgrade}). A relayed request carries C{X-Chat-Relay} (C{worker} or
C{node}) and is never relayed along the same kind of hop twice, so a
relay cannot loop. An owner that cannot be reached has lost its sessions
(a killed worker, a stopped node): the client gets Engine.IO's usual
"Session ID unknown", and starts a new session.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import TYPE_CHECKING, Callable, Protocol

import attr
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone, _HTTP11ClientFactory
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
    from twisted.web.iweb import IResponse

#: the header a relayed request carries: which kind of hop it came over
RELAY_HEADER = b"X-Chat-Relay"
#: a POST whose body was over the limit where it arrived (the owner then
#: answers 413 and closes the session, as it would have itself)
TOO_LARGE_HEADER = b"X-Chat-Body-Too-Large"
WORKER_HOP = b"worker"
NODE_HOP = b"node"

#: the host name of a sibling worker in a relayed request's URI (wN + this)
SIBLING_HOST = ".sibling.invalid"

#: seconds to connect to an owner
CONNECT_TIMEOUT = 5.0

#: headers of one connection, not passed on
_HOP_BY_HOP = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"host",
    )
)


def machineKey(name: str) -> str:
    """
    The short name of a machine in session ids: 8 URL-safe characters
    hashed from C{name} (the node id, or the parent's node id or host name
    for the workers of one parent).
    """
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=6).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def siblingSocket(directory: str, worker: int) -> str:
    """
    The path of worker C{worker}'s private socket in C{directory}.
    """
    return os.path.join(directory, "w%d.sock" % (worker,))


@attr.s(frozen=True, auto_attribs=True)
class Owner:
    """
    Who owns a session: a machine and, under C{--workers}, a worker index.
    """

    machine: str
    worker: int | None


def ownerOf(sid: str) -> Owner | None:
    """
    The owner a session id names, or None for one that names none (a
    session id of another server, or garbage).
    """
    parts = sid.split(".")
    if len(parts) != 3 or not parts[1]:
        return None
    worker: int | None = None
    if parts[2]:
        if not parts[2].isdigit() or len(parts[2]) > 4:
            return None
        worker = int(parts[2])
    return Owner(parts[1], worker)


@attr.s(frozen=True, auto_attribs=True)
class ToSibling:
    """
    Relay to sibling worker C{worker} of this machine.
    """

    worker: int


@attr.s(frozen=True, auto_attribs=True)
class ToNode:
    """
    Relay to the node (or the workers' parent) of C{machine}.
    """

    machine: str


class NodeDirectory(Protocol):
    """
    Where the other nodes can be reached (Redis, with C{--broker}).
    """

    def lookup(self, machine: str) -> Deferred[str | None]:
        """
        The C{HOST:PORT} the node of C{machine} advertises, or None.
        """


class SessionRouter:
    """
    The routing of one process: the owner suffix of the session ids it
    makes (C{sidSuffix}), and where a request for a session it does not
    have goes (L{decide}, then L{relay}).
    """

    _log = Logger()

    def __init__(
        self,
        machine: str,
        worker: int | None,
        workers: int,
        reactor: IReactorTime,
        peerDirectory: str | None = None,
        nodes: NodeDirectory | None = None,
        timeout: float = 60.0,
        idleTimeout: float = 10.0,
    ) -> None:
        self.machine = machine
        self.worker = worker
        self.workers = workers
        self.peerDirectory = peerDirectory
        self.nodes = nodes
        self.timeout = timeout
        #: seconds an owner keeps an idle connection open (a node's web
        #: port closes one after --handshake-timeout)
        self.idleTimeout = idleTimeout
        self.reactor = reactor
        self.sidSuffix = ".%s.%s" % (machine, "" if worker is None else worker)
        self._http: HttpRelay | None = None
        #: requests relayed, in all and by kind of hop (the metric
        #: chat_sio_relayed_total)
        self.relayed = 0
        self.relayedBy: dict[str, int] = {WORKER_HOP.decode(): 0, NODE_HOP.decode(): 0}

    def decide(self, sid: str, hop: bytes | None) -> ToSibling | ToNode | None:
        """
        Where a request for C{sid}, a session this process does not have,
        goes (C{hop}: the relay header it came with, if any): None when
        nobody else can have it.
        """
        owner = ownerOf(sid)
        if owner is None:
            return None
        if owner.machine == self.machine:
            if owner.worker is None or owner.worker == self.worker or hop == WORKER_HOP:
                return None
            if self.peerDirectory is None or not 0 <= owner.worker < self.workers:
                return None
            return ToSibling(owner.worker)
        if hop is not None or self.nodes is None:
            return None
        return ToNode(owner.machine)

    def endpoint(self, decision: ToSibling | ToNode, address: str | None) -> IStreamClientEndpoint:
        """
        The endpoint of C{decision}'s owner (C{address}: a node's C{HOST:PORT}).
        """
        if isinstance(decision, ToSibling):
            assert self.peerDirectory is not None
            return UNIXClientEndpoint(self.reactor, siblingSocket(self.peerDirectory, decision.worker), CONNECT_TIMEOUT)
        assert address is not None
        host, _, port = address.rpartition(":")
        return HostnameEndpoint(self.reactor, host.strip("[]"), int(port), CONNECT_TIMEOUT)

    def address(self, decision: ToSibling | ToNode) -> Deferred[str | None]:
        """
        The address to relay C{decision} to: a node's from the directory
        (None: it advertises none, it is gone), a sibling's its name.
        """
        if isinstance(decision, ToSibling):
            return succeed("w%d%s:80" % (decision.worker, SIBLING_HOST))
        assert self.nodes is not None
        return self.nodes.lookup(decision.machine)

    def relay(self, request: Request, decision: ToSibling | ToNode, upgrade: bool, unknown: Callable[[], bytes]) -> object:
        """
        Pass C{request} on to its session's owner; C{unknown()} writes the
        answer for a session nobody has (when the owner cannot be reached).
        """
        self.relayed += 1
        hop = WORKER_HOP if isinstance(decision, ToSibling) else NODE_HOP
        self.relayedBy[hop.decode()] += 1
        if upgrade:
            # (the HTTP channel reads nothing more until the splice is made)
            return spliceUpgrade(self, request, decision, hop, unknown)
        http = self._http
        if http is None:
            http = self._http = HttpRelay(self)
        return http.forward(request, decision, hop, unknown)


def forwardedHeaders(request: Request, hop: bytes) -> Headers:
    """
    The headers of C{request} as relayed: all but those of one connection,
    with the relay header and the client's address added.
    """
    headers = Headers()
    for name, values in request.requestHeaders.getAllRawHeaders():
        if name.lower() in _HOP_BY_HOP or name.lower() in (RELAY_HEADER.lower(), TOO_LARGE_HEADER.lower()):
            continue
        headers.setRawHeaders(name, values)
    host = request.getHeader(b"host")
    if host is not None:
        headers.setRawHeaders(b"Host", [host])
    headers.setRawHeaders(RELAY_HEADER, [hop])
    if getattr(request, "bodyTooLarge", False):
        headers.setRawHeaders(TOO_LARGE_HEADER, [b"1"])
    client = getattr(request.getClientAddress(), "host", None)
    forwarded = request.getHeader(b"x-forwarded-for") if hop == NODE_HOP or request.getHeader(RELAY_HEADER) else None
    if client is not None and not str(client).startswith("/"):
        forwarded = (forwarded + b", " if forwarded else b"") + str(client).encode("ascii", "replace")
    if forwarded:
        headers.setRawHeaders(b"X-Forwarded-For", [forwarded])
    return headers


@implementer(IAgentEndpointFactory)
class _OwnerEndpoints:
    """
    The agent's endpoints: the URI's host is the owner's address (a node's
    C{HOST:PORT}) or a sibling's name (C{wN}).
    """

    def __init__(self, router: SessionRouter) -> None:
        self.router = router

    def endpointForURI(self, uri: object) -> IStreamClientEndpoint:
        host = getattr(uri, "host").decode("ascii")
        port = getattr(uri, "port")
        if host.endswith(SIBLING_HOST) and host[1 : -len(SIBLING_HOST)].isdigit():
            return self.router.endpoint(ToSibling(int(host[1 : -len(SIBLING_HOST)])), None)
        return self.router.endpoint(ToNode(""), "%s:%d" % (host, port))


class _QuietFactory(_HTTP11ClientFactory):
    # (one per connection to an owner: no "Starting factory" line each)
    noisy = False


class _Pool(HTTPConnectionPool):
    _factory = _QuietFactory


class HttpRelay:
    """
    Polling requests passed on to their owners with an L{Agent} over a pool
    of persistent connections; each answer is streamed back as it comes.
    Bounded: C{router.timeout} seconds per request (more than a long poll
    is held), and a client that goes away cancels its relayed request.
    """

    _log = Logger()

    def __init__(self, router: SessionRouter) -> None:
        self.router = router
        reactor = router.reactor
        self.pool = _Pool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 16
        # (given up well before the owner closes it; a GET that meets a
        # connection closed all the same is sent again on a new one)
        self.pool.cachedConnectionTimeout = max(1, int(router.idleTimeout / 2))
        self.pool.retryAutomatically = True
        self.agent = Agent.usingEndpointFactory(reactor, _OwnerEndpoints(router), pool=self.pool)

    def forward(self, request: Request, decision: ToSibling | ToNode, hop: bytes, unknown: Callable[[], bytes]) -> object:
        router = self.router
        headers = forwardedHeaders(request, hop)
        content = request.content
        body = None
        if request.method == b"POST" and content is not None and not getattr(request, "bodyTooLarge", False):
            content.seek(0)
            body = _Body(content.read())
        state = _Relayed(request, router.reactor, router.timeout)

        def send(address: str | None) -> Deferred[IResponse] | None:
            if address is None or state.gone:
                return None
            host, _, port = address.rpartition(":")
            if ":" in host and not host.startswith("["):
                host = "[%s]" % (host,)
            uri = b"http://%s:%s%s" % (host.encode("ascii"), port.encode("ascii"), request.uri)
            d = self.agent.request(request.method, uri, headers, body)
            state.pending = d
            return d

        def answered(response: IResponse | None) -> Deferred[None] | None:
            if response is None:
                state.fail(unknown, "the owner is not reachable")
                return None
            state.respond(response)
            return None

        def failed(f: Failure) -> None:
            state.fail(unknown, f.getErrorMessage())

        router.address(decision).addCallback(send).addCallbacks(answered, failed)
        return NOT_DONE_YET


@implementer(IBodyProducer)
class _Body:
    """
    A relayed POST's body (bounded already: at most the largest payload),
    written at once.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: object) -> Deferred[None]:
        consumer.write(self.data)  # type: ignore[attr-defined]
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _Relayed:
    """
    One relayed HTTP request: its deadline, its cancellation when the
    client goes, and its answer copied back.
    """

    _log = Logger()

    def __init__(self, request: Request, reactor: IReactorTime, timeout: float) -> None:
        self.request = request
        self.gone = False
        self.pending: Deferred[IResponse] | None = None
        self.body: _StreamBack | None = None
        self.timer: IDelayedCall | None = reactor.callLater(timeout, self._timedOut)
        request.notifyFinish().addErrback(self._clientGone)

    def _stopTimer(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _clientGone(self, f: Failure) -> None:
        self.gone = True
        self._stopTimer()
        self._abort()

    def _abort(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.cancel()
        body, self.body = self.body, None
        if body is not None:
            body.abort()

    def _timedOut(self) -> None:
        self.timer = None
        self._log.info("relayed engine.io request timed out")
        self._abort()
        if not self.gone and not self.request.startedWriting:
            self.gone = True
            self.request.setResponseCode(504)
            self.request.finish()
        elif not self.gone:
            self.gone = True
            self.request.loseConnection()

    def fail(self, unknown: Callable[[], bytes], why: str) -> None:
        self.pending = None
        if self.gone:
            return
        self.gone = True
        self._stopTimer()
        self._log.info("engine.io relay: {why}; answering 'session unknown'", why=why)
        body = unknown()
        self.request.write(body)
        self.request.finish()

    def respond(self, response: IResponse) -> None:
        self.pending = None
        request = self.request
        if self.gone:
            response.deliverBody(_Discard())
            return
        request.setResponseCode(response.code, response.phrase)
        for name, values in response.headers.getAllRawHeaders():
            if name.lower() in _HOP_BY_HOP:
                continue
            request.responseHeaders.setRawHeaders(name, values)
        self.body = _StreamBack(self)
        response.deliverBody(self.body)

    def done(self, complete: bool) -> None:
        self.body = None
        self._stopTimer()
        if self.gone:
            return
        self.gone = True
        if complete:
            self.request.finish()
        else:
            self.request.loseConnection()


class _StreamBack(TwistedProtocol):
    """
    The body of an owner's answer, written to the client as it arrives.
    """

    def __init__(self, relayed: _Relayed) -> None:
        self.relayed = relayed

    def dataReceived(self, data: bytes) -> None:
        if not self.relayed.gone:
            self.relayed.request.write(data)

    def abort(self) -> None:
        transport = self.transport
        if transport is not None:
            transport.stopProducing()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.relayed.done(reason.check(ResponseDone, PotentialDataLoss) is not None)


class _Discard(TwistedProtocol):
    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        pass


# -- the WebSocket upgrade: two byte streams spliced ---------------------------------


class _Splice(TwistedProtocol):
    """
    One side of a splice: what it reads is written to the other side; each
    side's transport is the producer of the other's, so a slow reader
    slows its writer down; when either side closes, so does the other.
    """

    peer: _Splice | None = None
    closed = False

    def dataReceived(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.closed = True
        peer, self.peer = self.peer, None
        if peer is not None:
            peer.peer = None
            if peer.transport is not None and not peer.closed:
                peer.transport.loseConnection()


def spliceUpgrade(
    router: SessionRouter, request: Request, decision: ToSibling | ToNode, hop: bytes, unknown: Callable[[], bytes]
) -> object:
    """
    Relay a WebSocket upgrade: connect to the owner, send it the request,
    then splice the client's connection (taken over from the HTTP channel,
    as Autobahn's resource does) and the owner's, byte for byte. An owner
    that cannot be reached: the client gets "Session ID unknown".
    """
    log = Logger(namespace=__name__)
    channel = request.channel
    client = _Splice()
    state = {"gone": False}

    def clientGone(_: object) -> None:
        state["gone"] = True

    request.notifyFinish().addErrback(clientGone)

    def connect(address: str | None) -> Deferred[TwistedProtocol] | None:
        if address is None or state["gone"]:
            return None
        d = connectProtocol(router.endpoint(decision, address), _Splice())
        # (bounded by the endpoint's own connection timeout)
        return d

    def connected(owner: TwistedProtocol | None) -> None:
        if owner is None:
            if not state["gone"]:
                log.info("engine.io relay of an upgrade: the owner is not reachable; answering 'session unknown'")
                request.write(unknown())
                request.finish()
            return
        assert isinstance(owner, _Splice)
        if state["gone"] or channel.transport is None:
            assert owner.transport is not None
            owner.transport.loseConnection()
            return
        transport, channel.transport = channel.transport, None
        wrapper = getattr(transport, "wrappedProtocol", None)
        inner = getattr(transport, "protocol", None)
        if wrapper is not None:
            transport.wrappedProtocol = client  # type: ignore[attr-defined]
        elif inner is not None and hasattr(inner, "wrappedProtocol"):
            inner.wrappedProtocol = client
        else:
            transport.protocol = client  # type: ignore[attr-defined]
        client.makeConnection(transport)
        client.peer, owner.peer = owner, client
        if getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()  # type: ignore[attr-defined]
        assert owner.transport is not None
        transport.registerProducer(owner.transport, True)  # type: ignore[attr-defined]
        owner.transport.registerProducer(transport, True)  # type: ignore[attr-defined]
        data = request.method + b" " + request.uri + b" HTTP/1.1\r\n"
        headers = forwardedHeaders(request, hop)
        headers.setRawHeaders(b"Connection", [b"Upgrade"])
        headers.setRawHeaders(b"Upgrade", request.requestHeaders.getRawHeaders(b"upgrade") or [b"websocket"])
        for name, values in headers.getAllRawHeaders():
            for value in values:
                data += name + b": " + value + b"\r\n"
        owner.transport.write(data + b"\r\n")
        # (Twisted pauses the connection while a request is served: resume)
        producer = getattr(transport, "_networkProducer", None)
        if producer is not None:
            producer.resumeProducing()
        elif hasattr(transport, "resumeProducing"):
            transport.resumeProducing()

    def failed(f: Failure) -> None:
        connected(None)

    router.address(decision).addCallback(connect).addCallbacks(connected, failed)
    return NOT_DONE_YET
