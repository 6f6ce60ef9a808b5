"""
End-to-end tests of Socket.IO without sticky routing: the official
socket.io-client (npm, 4.x, driven by tests/sio/driver.mjs) over HTTP
long-polling, WebSocket, and polling then upgrade, against C{--workers 3}
(every request of a session may reach any worker: the kernel chooses) and
against two nodes sharing a real redis-server behind a round-robin TCP
proxy (every new connection goes to the next node). Every client must
connect and chat: what each one says is seen by all the others.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable

import pytest

from tests.support.daemon import LOOPBACK
from tests.support.proxy import RoundRobinProxy

if TYPE_CHECKING:
    from tests.support.daemon import Daemon
    from tests.support.sio import NodeClient

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

#: seconds: bound on every single wait
TIMEOUT = 20.0
WELCOME = re.compile(r"\*\*\* Welcome to twisted-chat, (\S+)! You are in #lobby\.")
#: clients per transport
PER_TRANSPORT = 2
TRANSPORTS = ["polling", "websocket", "polling,websocket"]


def chatAll(url: str, nodeClients: Callable[..., NodeClient]) -> list[NodeClient]:
    """
    Connect C{PER_TRANSPORT} clients of every transport to C{url}, each
    greeted in #lobby; then every client says a line that every other
    client sees. Returns the clients.
    """
    clients: list[tuple[NodeClient, str]] = []
    for transports in TRANSPORTS:
        for _ in range(PER_TRANSPORT):
            client = nodeClients(url, transports)
            opened = client.expectEvent("engine-open", TIMEOUT)
            assert opened["transport"] == transports.split(",")[0]
            welcome = client.expectOn("message", lambda args: WELCOME.match(args[0]) is not None)
            clients.append((client, WELCOME.match(welcome[0]).group(1)))  # type: ignore[union-attr]
    # the last one's arrival is seen by all the others before anyone speaks
    last = clients[-1][1]
    for client, nick in clients[:-1]:
        client.expectLine("*** #lobby: %s joined" % (last,))
    for i, (speaker, nick) in enumerate(clients):
        speaker.send("line %d from %s" % (i, nick))
        for client, _ in clients:
            client.expectLine("#lobby <%s> line %d from %s" % (nick, i, nick))
    for client, _ in clients:
        events = [e for e in client.seen if e["event"] in ("engine-close", "disconnect", "connect_error")]
        assert not events, events
    return [client for client, _ in clients]


def test_everyTransportOnThreeWorkers(
    startDaemon: Callable[..., Daemon], nodeClients: Callable[..., NodeClient], redisServer: Any
) -> None:
    """
    C{--workers 3}: socket.io-client over polling, WebSocket and polling
    then upgrade all connect and chat, whichever worker each of their
    requests reaches; the upgraded ones end on a WebSocket.
    """
    daemon = startDaemon("--broker", redisServer.url, "--workers", "3", web=LOOPBACK)
    daemon.waitForLog(r"\] twisted-chat \S+ ready: 3 workers", TIMEOUT)
    clients = chatAll("http://127.0.0.1:%d" % (daemon.ports["web"],), nodeClients)
    for client in clients[-PER_TRANSPORT:]:
        upgrades = [e for e in client.seen if e["event"] == "upgrade"] or [client.expectEvent("upgrade", TIMEOUT)]
        assert upgrades[0]["transport"] == "websocket"


def test_everyTransportOnTwoNodesBehindRoundRobin(
    startDaemon: Callable[..., Daemon], nodeClients: Callable[..., NodeClient], redisServer: Any
) -> None:
    """
    Two nodes on one Redis behind a round-robin TCP proxy (each new
    connection to the next node, no stickiness): socket.io-client over
    every transport connects and chats; a request for a session of the
    other node is relayed there (to the address it advertises).
    """
    nodes = [startDaemon("--broker", redisServer.url, "--node-id", "n%d" % (i,), web=LOOPBACK) for i in range(2)]
    with RoundRobinProxy([("127.0.0.1", node.ports["web"]) for node in nodes]) as proxy:
        clients = chatAll("http://127.0.0.1:%d" % (proxy.port,), nodeClients)
        for client in clients[-PER_TRANSPORT:]:
            upgrades = [e for e in client.seen if e["event"] == "upgrade"] or [client.expectEvent("upgrade", TIMEOUT)]
            assert upgrades[0]["transport"] == "websocket"
        assert proxy.accepted >= 2 * len(clients)
