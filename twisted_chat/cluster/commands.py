# -*- test-case-name: tests.cluster.test_redis -*-
"""
The command connection to Redis as the parts of a node use it
(L{Commands}): the commands the cluster sends, with precise types, under
the cluster's key prefix, each counted while in flight so that a node
stops accepting connections while Redis is behind (L{Backpressure}).
"""

from __future__ import annotations

from typing import Awaitable, Callable, Protocol, TypeVar

import txredisapi
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

_T = TypeVar("_T")


class Backpressure:
    """
    Counts the Redis commands in flight; past C{highWater} it calls every
    throttle's C{pause} (listening ports: stop accepting), and once they
    have drained to C{lowWater} its C{resume}. A burst of connections then
    waits in the listen queue instead of piling up thousands of commands
    (and delaying heartbeats past their TTL).
    """

    _log = Logger()

    #: commands in flight at which a node stops accepting new connections,
    #: and the number below which it accepts again
    highWater = 2000
    lowWater = 500

    def __init__(self, node: str) -> None:
        self.node = node
        self.inflight = 0
        self.paused = False
        self._throttles: list[tuple[Callable[[], object], Callable[[], object]]] = []

    def addThrottle(self, pause: Callable[[], object], resume: Callable[[], object]) -> None:
        """
        Call C{pause} when too many commands are in flight, C{resume} when
        they have drained (a throttle that comes while paused starts paused).
        """
        self._throttles.append((pause, resume))
        if self.paused:
            pause()

    def track(self, d: Deferred[_T]) -> Deferred[_T]:
        """
        Count C{d}, a command's reply, until it fires.
        """
        self.inflight += 1
        if self.inflight >= self.highWater and not self.paused:
            self.paused = True
            self._log.warn(
                "node {node}: {count} Redis commands in flight: not accepting connections until they drain",
                node=self.node,
                count=self.inflight,
            )
            for pause, _ in self._throttles:
                pause()
        return d.addBoth(self._untrack)

    def _untrack(self, result: _T) -> _T:
        self.inflight -= 1
        if self.paused and self.inflight <= self.lowWater:
            self.paused = False
            self._log.info("node {node}: Redis caught up: accepting connections again", node=self.node)
            for _, resume in self._throttles:
                resume()
        return result


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def _optionalText(value: object) -> str | None:
    return None if value is None else _text(value)


def _texts(value: object) -> list[str]:
    if not value:
        return []
    if not isinstance(value, (list, tuple, set)):
        raise TypeError("Redis answered %r, not a list" % (value,))
    return [_text(v) for v in value]


def _hash(value: object) -> dict[str, str]:
    if not value:
        return {}
    if not isinstance(value, dict):
        raise TypeError("Redis answered %r, not a hash" % (value,))
    return {_text(k): _text(v) for k, v in value.items()}


def _number(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str, bytes)):
        raise TypeError("Redis answered %r, not an integer" % (value,))
    return int(value)


def _bodies(value: object) -> list[str]:
    """
    The bodies of the entries of an XRANGE/XREVRANGE reply (each entry
    keeps one: a message's JSON text).
    """
    return [_text(entry[1][1]) for entry in _entryList(value)]


def _entryList(value: object) -> list[list[list[object]]]:
    if not value:
        return []
    if not isinstance(value, list):
        raise TypeError("Redis answered %r, not a list of entries" % (value,))
    return value


class Ask(Protocol):
    """
    How each step of a load of the shared state waits for its reply: at
    most the command timeout, and no longer than the load is current (see
    L{twisted_chat.cluster.connection.RedisCluster}).
    """

    def __call__(self, d: Deferred[_T]) -> Awaitable[_T]: ...


class Commands:
    """
    The Redis commands of a node, on its command connection (txredisapi's
    connection handler, set by the node once it has one): each returns a
    Deferred of its reply with a precise type. C{connected} says whether
    the connection is up (the node sets C{connection} as it comes and
    goes); calling a command while it is not is an error.
    """

    def __init__(self, prefix: str, clock: IReactorTime, backpressure: Backpressure) -> None:
        self.prefix = prefix
        self.clock = clock
        self.backpressure = backpressure
        #: seconds a command given to L{timed} may wait for its reply
        self.timeout = 10.0
        #: txredisapi's handler of the command connection
        self.handler: txredisapi.ConnectionHandler | None = None
        #: the command connection while it is up
        self.connection: txredisapi.RedisProtocol | None = None

    def key(self, *parts: str) -> str:
        """
        The name of a key or channel of this cluster: C{PREFIX:part:part}.
        """
        return ":".join((self.prefix, *parts))

    @property
    def connected(self) -> bool:
        return self.connection is not None and bool(self.connection.connected)

    def timed(self, d: Deferred[_T]) -> Deferred[_T]:
        """
        C{d}, failed with a TimeoutError after C{timeout} seconds (its
        reply, if it comes later, is then ignored).
        """
        return d.addTimeout(self.timeout, self.clock)

    def _call(self, method: str, *args: object) -> Deferred[object]:
        d: Deferred[object] = getattr(self.handler, method)(*args)
        return self.backpressure.track(d)

    def get(self, key: str) -> Deferred[str | None]:
        return self._call("get", key).addCallback(_optionalText)

    def setIfAbsent(self, key: str, value: str) -> Deferred[object]:
        """
        C{SET key value NX}.
        """
        return self._call("set", key, value, None, None, True)

    def swap(self, key: str, value: str, milliseconds: int) -> Deferred[str | None]:
        """
        C{SET key value PX milliseconds GET}: the value it replaced.
        """
        return self._call("execute_command", "SET", key, value, "PX", str(milliseconds), "GET").addCallback(
            _optionalText
        )

    def delete(self, key: str) -> Deferred[object]:
        return self._call("delete", key)

    def incrby(self, key: str, amount: int) -> Deferred[int]:
        return self._call("incrby", key, amount).addCallback(_number)

    def smembers(self, key: str) -> Deferred[list[str]]:
        return self._call("smembers", key).addCallback(_texts)

    def hgetall(self, key: str) -> Deferred[dict[str, str]]:
        return self._call("hgetall", key).addCallback(_hash)

    def hset(self, key: str, field: str, value: str) -> Deferred[object]:
        return self._call("hset", key, field, value)

    def hget(self, key: str, field: str) -> Deferred[str | None]:
        return self._call("hget", key, field).addCallback(_optionalText)

    def hmget(self, key: str, fields: list[str]) -> Deferred[list[str | None]]:
        def texts(values: object) -> list[str | None]:
            return [_optionalText(v) for v in values] if isinstance(values, (list, tuple)) else []

        return self._call("hmget", key, fields).addCallback(texts)

    def hsetnx(self, key: str, field: str, value: str) -> Deferred[bool]:
        """
        Whether C{field} was new (and is set now).
        """
        return self._call("hsetnx", key, field, value).addCallback(bool)

    def publish(self, channel: str, message: str) -> Deferred[object]:
        return self._call("publish", channel, message)

    def ping(self) -> Deferred[object]:
        return self._call("ping")

    def entries(self, key: str, start: str, end: str, count: int, reverse: bool = False) -> Deferred[list[str]]:
        """
        The bodies of up to C{count} entries of the stream C{key} from
        C{start} to C{end} (C{XRANGE}), or from C{end} down to C{start}
        (C{XREVRANGE}, with C{reverse}).
        """
        if reverse:
            d = self._call("execute_command", "XREVRANGE", key, end, start, "COUNT", str(count))
        else:
            d = self._call("execute_command", "XRANGE", key, start, end, "COUNT", str(count))
        return d.addCallback(_bodies)

    def eval(self, script: str, keys: list[str], args: list[str]) -> Deferred[object]:
        """
        Run the Lua C{script} (see L{twisted_chat.cluster.scripts}).
        """
        return self._call("eval", script, keys, args)
