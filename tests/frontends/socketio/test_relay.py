"""
Tests for the relay of Engine.IO requests to the process that owns their
session (L{twisted_chat.frontends.socketio.engineio.relay}), in memory:
two "workers" of one machine, each an L{EngineServer} behind its own
C{Site}, on one L{MemoryReactorClock}; a connection the relay makes to a
sibling's private socket is joined by C{iosim} to that sibling's site, so
real HTTP requests, the relay's real agent and a real Autobahn client all
run, and nothing touches a socket.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest
from twisted.internet.address import UNIXAddress
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.support.harness import HOST, Network, Peer, autobahnTimers
from twisted_chat.frontends.socketio.engineio import BoundedRequest, EngineResource, EngineServer, EngineSocket
from twisted_chat.frontends.socketio.engineio.relay import (
    SessionRouter,
    ToNode,
    ToSibling,
    machineKey,
    ownerOf,
    Owner,
    siblingSocket,
)

PEERS = "/run/chat-peers"
MACHINE = machineKey("box")


class Echo:
    def __init__(self, socket: EngineSocket) -> None:
        self.socket = socket

    def onMessage(self, data: str | bytes) -> None:
        self.socket.send(data)

    def onClose(self, reason: str) -> None:
        pass


class Worker:
    """
    One worker: its Engine.IO server at /engine.io/ with a router.
    """

    def __init__(self, reactor: MemoryReactorClock, index: int) -> None:
        self.server = EngineServer(Echo, clock=reactor, pingInterval=25.0, pingTimeout=20.0)
        self.resource = EngineResource(self.server)
        self.router = SessionRouter(MACHINE, index, 8, reactor, peerDirectory=PEERS)
        self.resource.router = self.router
        self.server.sidSuffix = self.router.sidSuffix
        root = Resource()
        root.putChild(b"engine.io", self.resource)
        self.site = Site(root, reactor=reactor)
        self.site.requestFactory = BoundedRequest
        self.site.maxRequestBody = self.server.maxPayload  # type: ignore[attr-defined]
        self.site.noisy = False
        self.net = Network(reactor, self.site)


class Machine:
    """
    Two workers, and the private sockets between them: a relay's
    connection to C{w0.sock} or C{w1.sock} reaches that worker's site;
    to any other, it is refused.
    """

    def __init__(self, reactor: MemoryReactorClock) -> None:
        self.reactor = reactor
        self.workers = [Worker(reactor, 0), Worker(reactor, 1)]
        self.pumps: list[iosim.IOPump] = []
        self._wired = 0
        #: connections made to each private socket
        self.connections: dict[str, int] = {}

    def flush(self) -> None:
        for _ in range(100):
            moved = False
            for worker in self.workers:
                worker.net.flush()
            while self._wired < len(self.reactor.unixClients):
                path, factory = self.reactor.unixClients[self._wired][:2]
                self._wired += 1
                moved = True
                self.connections[path] = self.connections.get(path, 0) + 1
                target = [w for i, w in enumerate(self.workers) if siblingSocket(PEERS, i) == path]
                if not target:
                    factory.clientConnectionFailed(None, Failure(ConnectionRefusedError("no such socket")))
                    continue
                client = factory.buildProtocol(None)
                server = target[0].site.buildProtocol(None)
                self.pumps.append(
                    iosim.connect(
                        server, iosim.FakeTransport(server, True, peerAddress=UNIXAddress(None)),
                        client, iosim.FakeTransport(client, False),
                        greet=False, clock=self.reactor,
                    )
                )
            for pump in self.pumps:
                if pump.flush():
                    moved = True
            if not moved:
                return
        raise AssertionError("never quiet")

    def url(self, query: str) -> str:
        return "/engine.io/?EIO=4&transport=polling" + query

    def fetch(self, worker: int, method: str, query: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
        exchange = self.workers[worker].net.send(method, self.url(query), body, headers)
        self.flush()
        assert exchange.done, exchange.received
        return exchange.response

    def handshake(self, worker: int) -> str:
        response = self.fetch(worker, "GET", "")
        assert response.status == 200
        return json.loads(response.text[1:])["sid"]  # type: ignore[no-any-return]


@pytest.fixture
def machine() -> Iterator[Machine]:
    with autobahnTimers(MemoryReactorClock()) as reactor:
        yield Machine(reactor)


# -- the decisions --


def test_sidNamesItsOwner(machine: Machine) -> None:
    """
    A session id ends with its machine and worker; C{ownerOf} reads them
    back, and names no owner for ids that do not have this form.
    """
    sid = machine.handshake(1)
    assert ownerOf(sid) == Owner(MACHINE, 1)
    assert sid.endswith(".%s.1" % (MACHINE,))
    assert ownerOf("abc.%s." % (MACHINE,)) == Owner(MACHINE, None)
    for garbage in ("abc", "abc.def", "a.b.c.d", "a..1", "a.b.x1", "a.b.99999"):
        assert ownerOf(garbage) is None
    assert machineKey("box") == MACHINE != machineKey("box2")
    assert len(MACHINE) == 8 and "." not in MACHINE


@pytest.mark.parametrize(
    "sid, hop, expected",
    [
        ("r.%s.1" % (MACHINE,), None, ToSibling(1)),
        ("r.%s.1" % (MACHINE,), b"node", ToSibling(1)),
        # a second hop inside one machine: never
        ("r.%s.1" % (MACHINE,), b"worker", None),
        # its own (a session that is gone)
        ("r.%s.0" % (MACHINE,), None, None),
        ("r.%s." % (MACHINE,), None, None),
        # past the number of workers
        ("r.%s.8" % (MACHINE,), None, None),
        # another machine, and no directory of nodes
        ("r.other123.1", None, None),
        ("garbage", None, None),
    ],
)
def test_decide(machine: Machine, sid: str, hop: bytes | None, expected: object) -> None:
    """
    Where a request for a session this worker does not have goes.
    """
    assert machine.workers[0].router.decide(sid, hop) == expected


def test_decideAnotherNode() -> None:
    """
    With a directory of nodes, another machine's session goes to its node,
    unless the request was relayed already (no second hop across nodes).
    """

    class Nodes:
        def lookup(self, machine: str) -> Any:
            raise AssertionError("not called by decide")

    router = SessionRouter(MACHINE, None, 1, MemoryReactorClock(), nodes=Nodes())
    assert router.sidSuffix == ".%s." % (MACHINE,)
    assert router.decide("r.other123.", None) == ToNode("other123")
    assert router.decide("r.other123.2", None) == ToNode("other123")
    assert router.decide("r.other123.", b"node") is None
    assert router.decide("r.other123.", b"worker") is None
    assert router.decide("r.%s." % (MACHINE,), None) is None


# -- relayed polling --


def test_pollingOnEitherWorker(machine: Machine) -> None:
    """
    A session opened on worker 1: its POSTs and GETs sent to worker 0 are
    relayed to worker 1 (one persistent connection) and answered as worker
    1 answers them; the session works whichever worker each request hits.
    """
    sid = machine.handshake(1)
    assert machine.fetch(0, "POST", "&sid=" + sid, b"4hello").text == "ok"
    assert machine.fetch(0, "GET", "&sid=" + sid).text == "4hello"
    assert machine.fetch(1, "POST", "&sid=" + sid, b"4again").text == "ok"
    assert machine.fetch(0, "GET", "&sid=" + sid).text == "4again"
    assert machine.connections == {siblingSocket(PEERS, 1): 1}
    assert machine.workers[0].router.relayed == 3
    assert sid in machine.workers[1].server.sessions and not machine.workers[0].server.sessions


def test_relayedRequestsAreAMetric(machine: Machine) -> None:
    """
    The requests a worker relayed are counted, by hop, in its metrics.
    """
    from prometheus_client import generate_latest

    from twisted_chat.core.service import ChatService
    from twisted_chat.daemon.ops import PrometheusStats
    from twisted_chat.stores.memory import MemoryStore

    stats = PrometheusStats(ChatService(store=MemoryStore(), clock=machine.reactor, pruneInterval=0))
    stats.watchRelay(machine.workers[0].router.relayedBy)
    sid = machine.handshake(1)
    assert machine.fetch(0, "POST", "&sid=" + sid, b"4hello").text == "ok"
    assert machine.fetch(0, "GET", "&sid=" + sid).text == "4hello"
    text = generate_latest(stats.registry).decode("utf-8")
    assert 'chat_sio_relayed_total{hop="worker"} 2.0' in text
    assert 'chat_sio_relayed_total{hop="node"} 0.0' in text


def test_ownerLogsTheRelayedClient(machine: Machine) -> None:
    """
    A request relayed by a sibling worker is logged by its owner with the
    client's address (from the relay's X-Forwarded-For, trusted because it
    came over the private socket), not the private socket's; the same
    headers sent by a client to a public port are ignored.
    """
    from twisted.logger import capturedLogs, formatEvent

    sid = machine.handshake(1)
    other = {"Origin": "http://elsewhere.example", "X-Forwarded-For": "198.51.100.66"}
    with capturedLogs() as events:
        assert machine.fetch(0, "POST", "&sid=" + sid, b"4hi", headers=other).status == 403
        assert machine.fetch(1, "POST", "&sid=" + sid, b"4hi", headers={**other, "X-Chat-Relay": "worker"}).status == 403
    said = [formatEvent(e) for e in events if "origin" in formatEvent(e)]
    assert len(said) == 2
    # (the relay appended the peer it saw to what the client sent)
    assert said[0] == (
        "refused engine.io request from 127.0.0.1 (relayed by a sibling worker): origin http://elsewhere.example not allowed"
    )
    assert said[1].startswith("refused engine.io request from tcp4:127.0.0.1:")


def test_relayedLongPollAnsweredLater(machine: Machine) -> None:
    """
    A GET relayed while nothing waits is held by the owner, and answered
    through the relay when a message comes.
    """
    sid = machine.handshake(1)
    held = machine.workers[0].net.send("GET", machine.url("&sid=" + sid))
    machine.flush()
    assert not held.done
    machine.workers[1].server.sessions[sid].send("late")
    machine.flush()
    assert held.done and held.response.text == "4late"


def test_ownerUnreachable(machine: Machine) -> None:
    """
    A session of a worker that cannot be reached (killed: its sessions are
    gone): Engine.IO's usual "Session ID unknown", so the client starts a
    new session.
    """
    response = machine.fetch(0, "GET", "&sid=gone.%s.5" % (MACHINE,))
    assert response.status == 400
    assert response.json() == {"code": 1, "message": "Session ID unknown"}


def test_relayedRequestIsNotRelayedAgain(machine: Machine) -> None:
    """
    A request that came over a worker's relay and names another worker is
    answered "Session ID unknown" at once: a relay never loops.
    """
    sid = machine.handshake(1)
    response = machine.fetch(0, "GET", "&sid=" + sid, headers={"X-Chat-Relay": "worker"})
    assert response.status == 400 and response.json()["message"] == "Session ID unknown"
    assert machine.connections == {}


def test_clientGoneDropsRelayedRequest(machine: Machine) -> None:
    """
    A client that goes away while its relayed long poll waits: the relayed
    request is dropped too (the owner's held GET ends, and the session is
    still there for the client's next one).
    """
    sid = machine.handshake(1)
    held = machine.workers[0].net.send("GET", machine.url("&sid=" + sid))
    machine.flush()
    assert machine.workers[1].server.sessions[sid]._polling.poll is not None
    assert held.transport is not None
    held.transport.loseConnection()
    machine.flush()
    assert all(p.serverIO.disconnected for p in machine.pumps)
    assert machine.workers[1].server.sessions[sid]._polling.poll is None
    assert sid in machine.workers[1].server.sessions
    assert machine.fetch(0, "POST", "&sid=" + sid, b"4still").text == "ok"
    assert machine.fetch(0, "GET", "&sid=" + sid).text == "4still"


def test_tooLargePostClosesTheOwnersSession(machine: Machine) -> None:
    """
    A POST over the limit where it arrives is still the owner's business:
    413, and the session is closed there, as if it had been sent there.
    """
    sid = machine.handshake(1)
    big = b"4" + b"x" * machine.workers[0].server.maxPayload
    response = machine.fetch(0, "POST", "&sid=" + sid, big)
    assert response.status == 413
    assert sid not in machine.workers[1].server.sessions


# -- the upgrade --


def test_upgradeOnAnotherWorker(machine: Machine) -> None:
    """
    A polling session of worker 1 upgraded through worker 0: the WebSocket
    is spliced to worker 1, the probe is answered, and after the upgrade
    messages go both ways over it.
    """
    sid = machine.handshake(1)
    from autobahn.twisted.websocket import WebSocketClientFactory

    factory = WebSocketClientFactory(
        "ws://" + HOST + "/engine.io/?EIO=4&transport=websocket&sid=" + sid, reactor=machine.reactor
    )
    factory.protocol = Peer
    peer = factory.buildProtocol(None)
    machine.workers[0].net.open(peer)
    machine.flush()
    assert peer.opened
    peer.send("2probe")
    machine.flush()
    assert peer.take() == ["3probe"]
    peer.send("5")
    machine.flush()
    peer.send("4over the websocket")
    machine.flush()
    assert peer.take() == ["4over the websocket"]
    assert machine.workers[1].server.sessions[sid].transport == "websocket"
    assert machine.connections == {siblingSocket(PEERS, 1): 1}


def test_upgradeOfAnUnreachableOwner(machine: Machine) -> None:
    """
    An upgrade for a session whose owner cannot be reached is refused with
    "Session ID unknown", as a local unknown sid is.
    """
    exchange = machine.workers[0].net.send(
        "GET",
        "/engine.io/?EIO=4&transport=websocket&sid=gone.%s.5" % (MACHINE,),
        headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"},
    )
    machine.flush()
    assert exchange.done
    assert exchange.response.status == 400
    assert exchange.response.json() == {"code": 1, "message": "Session ID unknown"}
