# -*- test-case-name: tests.cluster.test_redis -*-
"""
Scale-out on Redis: what the daemon uses of the cluster (several nodes,
processes or machines, sharing one conversation through one Redis).

  - L{twisted_chat.cluster.url}: the C{--broker} URL and a start-up probe;
  - L{twisted_chat.cluster.connection}: L{RedisCluster}, a node's
    membership (its connections, the shared state), which hands the
    service its store and broker, with L{twisted_chat.cluster.presence}
    (its registration and heartbeat);
  - L{twisted_chat.cluster.store}: the shared message store;
  - L{twisted_chat.cluster.broker}: presence and fan-out, with
    L{twisted_chat.cluster.replica} (the other nodes' members) and
    L{twisted_chat.cluster.delivery} (room messages in order);
  - L{twisted_chat.cluster.protocol}: the messages nodes send each other,
    and L{twisted_chat.cluster.scripts} (with
    L{twisted_chat.cluster.updates}): the Lua scripts that store and
    announce atomically, on L{twisted_chat.cluster.commands} (the typed
    Redis commands) and L{twisted_chat.cluster.links} (the connections
    kept up).

docs/design.md ("Scale-out on Redis") has the design.
"""

from twisted_chat.cluster.connection import RedisCluster
from twisted_chat.cluster.url import RedisURL, checkRedis, parseRedisURL

__all__ = ["RedisCluster", "RedisURL", "checkRedis", "parseRedisURL"]
