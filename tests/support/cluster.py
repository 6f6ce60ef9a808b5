"""
Cluster nodes in the test process: a L{Node} is a real L{RedisCluster}
and L{ChatService} on a real C{redis-server} (the C{nodes} fixture of
tests/cluster/conftest.py starts them), its users L{WaitingClient}s; and
the waits for what arrives through Redis.

Imports Twisted: test modules import it, conftest.py must not.
"""

from __future__ import annotations

from typing import Callable

from twisted_chat.cluster.redis import RedisCluster, parseRedisURL
from twisted_chat.core.events import Event, History, Joined, Message
from twisted_chat.core.service import ChatService

from tests.support.fakes import WaitingClient

#: seconds: bound on every wait for something that comes through Redis
TIMEOUT = 10.0


def isMessage(text: str) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, Message) and e.text == text


class Node:
    """
    One node of a cluster: a chat service on Redis at C{url}, called
    C{name}, that other nodes think dead C{ttl} s after its last heartbeat.
    """

    def __init__(self, url: str, name: str, ttl: float = 5.0, busShards: int | None = None) -> None:
        shards = {} if busShards is None else {"busShards": busShards}
        self.cluster = RedisCluster(parseRedisURL(url), nodeId=name, **shards)
        self.cluster.nodeTTL = ttl
        self.cluster.heartbeat = min(1.0, ttl / 3)
        self.chat = ChatService(store=self.cluster.store, broker=self.cluster.broker, pruneInterval=0)

    async def start(self) -> "Node":
        from twisted.internet import reactor

        self.cluster.startService()
        self.chat.startService()
        await self.cluster.ready.addTimeout(TIMEOUT, reactor)
        return self

    async def stop(self) -> None:
        if self.chat.running:
            await self.chat.stopService()
        if self.cluster.running:
            await self.cluster.stopService()

    def crash(self) -> None:
        """
        Go away like a killed process: no goodbye, connections just drop.
        """
        self.cluster._stopping = True
        self.cluster.presence.stop()
        for link in self.cluster._links:
            link.service.stopService()
        for f in self.cluster._factories:
            for conn in list(f.pool):
                conn.transport.abortConnection()
        self.cluster.running = False
        self.chat.running = False

    def connect(self, nick: str | None = None, token: str | None = None, host: str = "") -> WaitingClient:
        client = WaitingClient()
        client.member = self.chat.connect(client, nick, peer="test", token=token, host=host)
        return client


async def until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """
    Wait for state that arrives through Redis: C{predicate} is checked
    again whenever a node hears something from Redis or its connections
    change (RedisCluster.observers), until it holds or the time is up.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    if predicate():
        return
    done: Deferred[None] = Deferred()

    def check() -> None:
        if not done.called and predicate():
            done.callback(None)

    observers = RedisCluster.observers
    observers.append(check)
    try:
        await done.addTimeout(timeout, reactor)
    finally:
        observers.remove(check)


async def twoInRoom(a: Node, b: Node, room: str) -> tuple[WaitingClient, WaitingClient]:
    """
    alice on node C{a} and bob on node C{b}, both in C{room}, bob past the
    history of his join (so what is said next reaches him live).
    """
    alice = a.connect("alice")
    alice.member.join(room)
    bob = b.connect("bob")
    await until(lambda: "alice" in b.chat.broker.remoteRoomNicks(room))
    bob.member.join(room)
    await bob.waitFor(lambda e: isinstance(e, History))
    await alice.waitFor(lambda e: isinstance(e, Joined) and e.nick == "bob")
    return alice, bob


async def squatting(node: Node, other: Node) -> tuple[WaitingClient, str]:
    """
    alice's nick, owned (she connected on C{node} and left), used on
    C{node} by someone without her token (it was free), once C{other}
    knows of both: returns that connection and her token.
    """
    first = node.connect("alice")
    token = first.member.token
    assert token
    first.member.quit()
    await until(lambda: "alice" in other.chat.nicks.tokens and other.chat.broker.remoteNick("alice") is None)
    squatter = node.connect("alice")
    assert not squatter.member.owner
    await until(lambda: other.chat.broker.remoteNick("alice") == "alice")
    return squatter, token
