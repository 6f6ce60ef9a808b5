# -*- test-case-name: tests.cluster.test_redis -*-
"""
A node's presence in the cluster (L{NodePresence}): registering it with
its members, the heartbeat that keeps it alive for the others (and
removes the members of nodes whose heartbeat expired), and the number of
shards of the bus the nodes agree on. L{twisted_chat.cluster.connection}
runs it for its L{RedisCluster<twisted_chat.cluster.connection.RedisCluster>}.
"""

from __future__ import annotations

import secrets
from typing import Callable

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_chat.cluster import scripts
from twisted_chat.cluster.broker import RedisBroker
from twisted_chat.cluster.commands import Ask, Commands
from twisted_chat.cluster.links import TroubleLog


class NodePresence:
    """
    Node C{node}'s registration and heartbeat, through C{redis} (the
    heartbeat itself through C{beats}, a connection of its own, while it
    is up): its members are C{broker}'s. C{ttl} tells how long the others think it
    alive after a heartbeat; C{serving} whether it beats at all (connected
    and ready), C{stopping} whether it is going away; C{notify} is called
    when the shards in use change.
    """

    # (the cluster's namespace: what it logs is logged as before)
    _log = Logger(namespace="twisted_chat.cluster.connection.RedisCluster")

    def __init__(
        self,
        redis: Commands,
        beats: Commands,
        node: str,
        broker: RedisBroker,
        trouble: TroubleLog,
        ttl: Callable[[], float],
        serving: Callable[[], bool],
        stopping: Callable[[], bool],
        notify: Callable[[], None],
    ) -> None:
        self.redis = redis
        self.beats = beats
        self.node = node
        self.broker = broker
        self.trouble = trouble
        self._ttl = ttl
        self._serving = serving
        self._stopping = stopping
        self._notify = notify
        self.incarnation = secrets.token_hex(8)
        #: the shards room messages are published on now (0: the common
        #: bus), as the cluster's nodes agreed (scripts.sharding)
        self.shardsInUse: int | None = None
        #: a heartbeat failed (and was logged) since the last one that worked
        self._beatFailing = False
        self._heart: LoopingCall | None = None

    def start(self, clock: IReactorTime, every: float) -> None:
        """
        Beat every C{every} seconds (the first after one interval).
        """
        self._heart = LoopingCall(self._beat)
        self._heart.clock = clock
        self._heart.start(every, now=False)

    def stop(self) -> None:
        """
        Beat no more.
        """
        if self._heart is not None and self._heart.running:
            self._heart.stop()

    async def register(self, ask: Ask | None = None) -> None:
        """
        Announce this node and all its members (start-up, Redis back, or a
        heartbeat that had expired); members whose nick another node took
        meanwhile become guests (unless they are its owner: then they share
        it with that node).
        """
        d = scripts.register(
            self.redis, self.node, self.incarnation, self._ttl(), self.broker.localState(), self.broker.localOwners()
        )
        lost = await (self.redis.timed(d) if ask is None else ask(d))
        for key in lost:
            self.broker.lostNick(key)

    def sharding(self, inUse: int) -> None:
        """
        Room messages are published on C{inUse} shards now (0: on the
        common bus); logged when that changes.
        """
        if inUse == self.shardsInUse:
            return
        self.shardsInUse = inUse
        self._notify()
        if inUse:
            self._log.info("node {node}: room messages travel on {n} shards of the bus", node=self.node, n=inUse)
        elif self.broker.shards.count:
            self._log.info(
                "node {node}: room messages travel on the common bus (not every node asks for {n} shards)",
                node=self.node,
                n=self.broker.shards.count,
            )

    def _beat(self) -> None:
        if not self._serving():
            return

        def alive(previous: str | None) -> Deferred[object] | Deferred[None]:
            if previous is None:
                # Our heartbeat had expired (this process stalled, or Redis
                # lost its data): the others may have seen our members leave.
                self._log.warn("node {node}: heartbeat had expired; announcing this node again", node=self.node)
                return ensureDeferred(self.register())
            if previous != self.incarnation:
                self._log.error(
                    "node id {node} is used by another process too: give each node its own --node-id",
                    node=self.node,
                )
            return scripts.reap(self.redis, self.node, own=False, why="disconnected")

        def worked(_: object) -> None:
            self._beatFailing = False

        def failed(f: Failure) -> None:
            # Once until a heartbeat works again, and not at all while the
            # connections' trouble is logged already (Redis loading, say).
            if not self._beatFailing and self.trouble.kind is None and not self._stopping():
                self._log.warn("node {node}: heartbeat failed: {why}", node=self.node, why=f.getErrorMessage())
            self._beatFailing = True

        def sharding(_: object) -> Deferred[None]:
            return scripts.sharding(self.redis, self.node, self.broker.shards.count).addCallback(self.sharding)

        # (on its own connection: not behind the commands of a burst of
        # connections; on the command connection while that one is down)
        beats = self.beats if self.beats.connected else self.redis
        d = beats.swap(self.redis.key("alive", self.node), self.incarnation, int(self._ttl() * 1000))
        d.addCallback(alive).addCallback(sharding).addCallbacks(worked, failed)
