"""
Fixtures of the cluster's tests: nodes on a real Redis.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterator

import pytest
import pytest_twisted

from tests.support.daemon import RedisServer


@pytest.fixture
def nodes(redisServer: RedisServer) -> Iterator[Callable[..., Awaitable[Any]]]:
    """
    Start cluster nodes on C{redisServer}: C{await nodes(name, ttl=5.0)}
    (or with C{busShards=N}) returns a started L{tests.support.cluster.Node}; each still running is
    stopped in teardown.
    """
    # Imported here, after pytest-twisted has installed the reactor.
    from tests.support.cluster import Node

    started: list[Node] = []

    async def make(name: str, ttl: float = 5.0, busShards: int | None = None) -> Node:
        node = await Node(redisServer.url, name, ttl, busShards).start()
        started.append(node)
        return node

    yield make
    for node in started:
        if node.cluster.running:
            from twisted.internet.defer import ensureDeferred

            pytest_twisted.blockon(ensureDeferred(node.stop()))
