# -*- test-case-name: tests.test_redis -*-
"""
Scale-out on Redis: several nodes (processes, machines), one conversation.

One L{RedisCluster} per node holds two connections to Redis (through
C{txredisapi}): one for commands, one subscribed to the cluster's bus and
to this node's own channel. It offers the service a L{RedisStore} (ids,
epoch and history shared by every node, in Redis streams) and a
L{RedisBroker} (presence across nodes, fan-out through the bus).

Design, in short (docs/design.md has the long version):

  - A message is stored by a Lua script that assigns its id (C{INCR}), adds
    it to the room's stream (C{XADD}) and publishes it on the bus, in one
    atomic step: every node sees the messages of a room in id order, and
    delivers them to its own members only. The sender's acknowledgement
    waits for that delivery, so it still comes after the echo.
  - Each node remembers the last id it delivered per room; a gap (a
    subscription lost while Redis restarted) is filled from the stream
    before anything newer is delivered, so nothing acknowledged is lost
    and nothing is delivered twice.
  - Presence: each node keeps its members in a hash of its own and its
    nick claims in a shared hash, refreshes a heartbeat key with a TTL and
    tells the others of every change on the bus; every node keeps a replica
    of the others' members, so nick checks, /who and room lists stay
    synchronous. When a node's heartbeat expires, the first node to notice
    removes its members in one atomic script and announces it once; each
    node then tells its own members who left.
"""

from __future__ import annotations

import json
from itertools import islice
import os
import random
import secrets
import socket
from typing import Any, Callable

import txredisapi
from twisted.application.internet import ClientService
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.logger import FilteringLogObserver, LogLevel, LogLevelFilterPredicate, Logger, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat.core.errors import ChatError, FailureLog, StoreUnavailable
from twisted_chat.core.events import Message, Private, TopicChanged
from twisted_chat.core.interfaces import IBroker, IClusterEvents, IMessageStore, resumePosition
from twisted_chat.core.names import nickKey
from twisted_chat.cluster.url import RedisURL, checkRedis, parseRedisURL

__all__ = ["RedisCluster", "RedisURL", "checkRedis", "parseRedisURL"]

PRIVATE = "@private"


# Lua scripts. Keys are passed as KEYS where a script touches one known
# key; the presence scripts build per-node keys from the prefix (a single
# Redis, not Redis Cluster).

_SAY = """
local e = redis.call('GET', KEYS[1])
if not e then e = ARGV[1]; redis.call('SET', KEYS[1], e) end
if ARGV[7] == '1' then
  local old = redis.call('GET', KEYS[4])
  if old then return old end
end
local id = redis.call('INCR', KEYS[2])
local body = cjson.encode({t='m', r=ARGV[2], i=id, e=e, n=ARGV[3], x=ARGV[4], s=tonumber(ARGV[5]),
                           a=(ARGV[6] == '1'), o=ARGV[10]})
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[9], id .. '-1', 'm', body)
redis.call('SADD', KEYS[5], ARGV[2])
if ARGV[7] == '1' then redis.call('SET', KEYS[4], body, 'EX', ARGV[8]) end
redis.call('PUBLISH', KEYS[6], body)
return body
"""

_PRIVATE = """
local e = redis.call('GET', KEYS[1])
if not e then e = ARGV[1]; redis.call('SET', KEYS[1], e) end
if ARGV[6] == '1' then
  local old = redis.call('GET', KEYS[5])
  if old then return old end
end
local id = redis.call('INCR', KEYS[2])
local body = cjson.encode({t='p', i=id, n=ARGV[2], to=ARGV[3], x=ARGV[4], s=tonumber(ARGV[5]), o=ARGV[9]})
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], id .. '-1', 'p', body)
if KEYS[4] ~= KEYS[3] then redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], id .. '-1', 'p', body) end
if ARGV[6] == '1' then redis.call('SET', KEYS[5], body, 'EX', ARGV[7]) end
if ARGV[10] ~= '' then redis.call('PUBLISH', ARGV[10], body) end
return body
"""

# KEYS: nicks, members of this node, bus. ARGV: key, nick, node, force, state
_CLAIM = """
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder and holder ~= ARGV[3] and ARGV[4] ~= '1' then return holder end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
redis.call('PUBLISH', KEYS[3], cjson.encode({t='on', o=ARGV[3], k=ARGV[1], n=ARGV[2], f=holder or ''}))
return ''
"""

# KEYS: nicks, members of this node, bus. ARGV: old key, new key, node, state, event
_RENAME = """
local holder = redis.call('HGET', KEYS[1], ARGV[2])
if holder and holder ~= ARGV[3] then return holder end
if ARGV[1] ~= ARGV[2] then
  if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[3] then redis.call('HDEL', KEYS[1], ARGV[1]) end
  redis.call('HDEL', KEYS[2], ARGV[1])
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
redis.call('PUBLISH', KEYS[3], ARGV[5])
return ''
"""

# KEYS: members of this node, bus. ARGV: key, state, event
_STATE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
"""

# KEYS: nicks, members of this node, bus. ARGV: key, node, event
_GONE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('PUBLISH', KEYS[3], ARGV[3])
return 1
"""

# Remove the members of dead nodes (or, with ARGV[3] == '1', of node
# ARGV[2] itself: a restarted node clearing what its previous life left).
# KEYS: nodes, nicks, bus. ARGV: prefix, this node, self, why they left
_REAP = """
local reaped = 0
local function reap(n)
  local flat = redis.call('HGETALL', ARGV[1] .. ':m:' .. n)
  local members = {}
  for i = 1, #flat, 2 do
    if redis.call('HGET', KEYS[2], flat[i]) == n then redis.call('HDEL', KEYS[2], flat[i]) end
    members[flat[i]] = flat[i + 1]
  end
  redis.call('DEL', ARGV[1] .. ':m:' .. n)
  redis.call('SREM', KEYS[1], n)
  if #flat > 0 then redis.call('PUBLISH', KEYS[3], cjson.encode({t='down', o=n, m=members, y=ARGV[4]})) end
  reaped = reaped + 1
end
if ARGV[3] == '1' then
  reap(ARGV[2])
else
  for _, n in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if n ~= ARGV[2] and redis.call('EXISTS', ARGV[1] .. ':alive:' .. n) == 0 then reap(n) end
  end
end
return reaped
"""

# Register this node with its current members (start-up, or after Redis
# came back). KEYS: nodes, nicks, bus. ARGV: prefix, node, incarnation, ttl ms,
# then key, state pairs. Returns the keys other nodes hold now. The nick
# claims of members it had and has no more (they left while it could not
# tell Redis) are released.
_REGISTER = """
local n = ARGV[2]
redis.call('SADD', KEYS[1], n)
redis.call('SET', ARGV[1] .. ':alive:' .. n, ARGV[3], 'PX', ARGV[4])
local now = {}
for i = 5, #ARGV, 2 do now[ARGV[i]] = true end
for _, k in ipairs(redis.call('HKEYS', ARGV[1] .. ':m:' .. n)) do
  if not now[k] and redis.call('HGET', KEYS[2], k) == n then redis.call('HDEL', KEYS[2], k) end
end
redis.call('DEL', ARGV[1] .. ':m:' .. n)
local lost = {}
local members = {}
for i = 5, #ARGV, 2 do
  local holder = redis.call('HGET', KEYS[2], ARGV[i])
  if holder and holder ~= n then
    table.insert(lost, ARGV[i])
  else
    redis.call('HSET', KEYS[2], ARGV[i], n)
    redis.call('HSET', ARGV[1] .. ':m:' .. n, ARGV[i], ARGV[i + 1])
    members[ARGV[i]] = ARGV[i + 1]
  end
end
redis.call('PUBLISH', KEYS[3], cjson.encode({t='node', o=n, m=members}))
return lost
"""

# KEYS: the room's bans, rooms with bans, bus. ARGV: key, host, room, event
_BAN = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('PUBLISH', KEYS[3], ARGV[4])
return 1
"""

# KEYS: the room's bans, bus. ARGV: key, event
_UNBAN = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[2])
return 1
"""

# Delete messages older than ARGV[1] from stream KEYS[1].
_PRUNE = """
local cutoff = tonumber(ARGV[1])
local n = 0
while true do
  local batch = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 100)
  if #batch == 0 then break end
  local stop = false
  for _, entry in ipairs(batch) do
    local body = cjson.decode(entry[2][2])
    if body.s >= cutoff then stop = true; break end
    redis.call('XDEL', KEYS[1], entry[1])
    n = n + 1
  end
  if stop then break end
end
return n
"""


def _message(body: dict[str, Any]) -> Message:
    return Message(body["r"], int(body["i"]), body["e"], body["n"], body["x"], float(body["s"]), bool(body["a"]))


def _private(body: dict[str, Any]) -> Private:
    return Private(int(body["i"]), body["n"], body["to"], body["x"], float(body["s"]))


def _entries(reply: Any) -> list[dict[str, Any]]:
    """
    The JSON bodies of an XRANGE/XREVRANGE reply.
    """
    return [json.loads(fields[1]) for _, fields in reply or ()]


def _unavailable(what: str = "the message store is unreachable: not sent") -> ChatError:
    return ChatError("unavailable", what + ", try again")


def _unreachable() -> Deferred[Any]:
    return fail(StoreUnavailable("Redis is unreachable"))


class _Commands(txredisapi.RedisProtocol):
    """
    The command connection: tells the cluster when it is (again) ready.

    Its set-up (AUTH, SELECT) is the cluster's (L{RedisCluster._setUp}),
    not txredisapi's: txredisapi stops reconnecting for good when its
    set-up fails, whatever the reason (a proxy that accepted and closed, a
    Redis restarting behind it). The factory has neither password nor
    database, so txredisapi's own C{connectionMade} only marks the
    connection usable once ours has done the set-up.
    """

    def connectionMade(self) -> None:
        cluster = self.factory.cluster
        cluster._setUp(self, select=True).addCallback(self._setUpDone, cluster)

    def _setUpDone(self, ok: bool, cluster: RedisCluster) -> None:
        if ok:
            d = txredisapi.RedisProtocol.connectionMade(self)
            d.addCallback(lambda _: self.connected and cluster._commandsUp(self))

    def connectionLost(self, why: Failure) -> None:
        txredisapi.RedisProtocol.connectionLost(self, why)
        self.factory.cluster._commandsDown(self, why)


class _Subscriber(txredisapi.SubscriberProtocol):
    """
    The subscribed connection: hands every bus message to the cluster.
    Its set-up (AUTH) is the cluster's too (see L{_Commands}).
    """

    def connectionMade(self) -> None:
        cluster = self.factory.cluster
        cluster._setUp(self, select=False).addCallback(self._setUpDone, cluster)

    def _setUpDone(self, ok: bool, cluster: RedisCluster) -> None:
        if ok:
            d = txredisapi.SubscriberProtocol.connectionMade(self)
            d.addCallback(lambda _: self.connected and cluster._subscriberUp(self))

    def messageReceived(self, pattern: Any, channel: str, message: str) -> None:
        self.factory.cluster._busMessage(message)

    def connectionLost(self, why: Failure) -> None:
        txredisapi.SubscriberProtocol.connectionLost(self, why)
        self.factory.cluster._subscriberDown(self, why)


class _QuietClientService(ClientService):
    """
    A ClientService that does not log each retry ("Scheduling retry N to
    connect ..."): the cluster logs one line per series of failed attempts.
    """

    _log = Logger(observer=FilteringLogObserver(globalLogPublisher, [LogLevelFilterPredicate(LogLevel.warn)]))


@implementer(IStreamClientEndpoint)
class _Watched:
    """
    An endpoint that tells C{failed} why a connection attempt failed
    (refused, timed out, no such host) before passing the failure on.
    """

    def __init__(self, endpoint: Any, failed: Callable[[Failure], None]) -> None:
        self._endpoint = endpoint
        self._failed = failed

    def connect(self, factory: Any) -> Deferred[Any]:
        def failed(f: Failure) -> Failure:
            if not f.check(CancelledError):
                self._failed(f)
            return f

        return self._endpoint.connect(factory).addErrback(failed)


class _Link:
    """
    One of a node's two connections to Redis, kept up by a ClientService:
    it reconnects after any failure, whatever happened (refused, closed
    during its set-up, an error answer, no answer), with a backoff of its
    own that only a complete set-up resets (L{up}) -- not merely an
    accepted connection, which a proxy in front of a Redis that is down
    gives at once.
    """

    def __init__(self, cluster: RedisCluster, factory: Any) -> None:
        self.cluster = cluster
        self.factory = factory
        #: failed attempts since this connection was last fully set up
        self.failures = 0
        self.service = _QuietClientService(
            _Watched(cluster._endpoint(), cluster._connectFailed), factory, retryPolicy=self._retry, clock=cluster.clock
        )

    def _retry(self, attempt: int) -> float:
        # (ClientService counts again from 1 after each accepted connection)
        self.failures += 1
        return self.cluster._backoff(self.failures)

    def up(self) -> None:
        self.failures = 0


class _Superseded(Exception):
    """
    A load of the shared state that another one (or a lost subscription)
    made pointless.
    """


def _classify(f: Failure) -> tuple[str, str]:
    """
    What kind of failure C{f} is, for the log ("password", "unreachable",
    or the code of an error Redis answered, e.g. "LOADING"), and its text.
    """
    if f.check(txredisapi.ResponseError):
        text = f.getErrorMessage()
        code = text.split(" ", 1)[0]
        if code in ("WRONGPASS", "NOAUTH") or "invalid password" in text or "without any password" in text:
            return "password", text
        return code, text
    if f.check(DeferredTimeout):
        return "unreachable", "no answer"
    if f.check(txredisapi.ConnectionError):
        return "unreachable", "the connection was closed before Redis answered"
    return "unreachable", f.getErrorMessage()


class _Remote:
    __slots__ = ("node", "nick", "rooms")

    def __init__(self, node: str, nick: str, rooms: list[str]) -> None:
        self.node = node
        self.nick = nick
        self.rooms = set(rooms)


class RedisCluster(Service):
    """
    The Redis side of one node: C{store} and C{broker} for the ChatService,
    and the connections behind them. C{ready} fires once the shared state
    is loaded; listeners accept connections only after that.
    """

    name = "redis"
    _log = Logger()

    #: seconds between heartbeats; a node is dead after nodeTTL without one
    heartbeat = 1.0
    nodeTTL = 10.0
    #: seconds a user's message (or a history read) may wait for Redis
    #: before the user is told it was not confirmed; the connection stays.
    #: Also the bound on each step of a connection's set-up (AUTH, SELECT,
    #: SUBSCRIBE) and of loading the shared state: past it, the connection
    #: is dropped and made again
    commandTimeout = 10.0
    #: seconds before the first new attempt after a connection failed,
    #: doubling after each failed attempt up to retryMaxDelay (+-10 %)
    retryDelay = 0.5
    retryMaxDelay = 5.0
    #: Redis commands in flight at which this node stops accepting new
    #: connections, and the number below which it accepts again: a burst
    #: of connections then waits in the listen queue instead of piling up
    #: thousands of commands (and delaying heartbeats past the TTL)
    highWater = 2000
    lowWater = 500
    #: longest wait of an acknowledgement for this node's own delivery
    ackTimeout = 5.0
    #: called (without arguments) after every bus message and connection
    #: change of any node in this process: a hook for tests and probes
    observers: list[Any] = []

    def __init__(
        self,
        url: RedisURL,
        clock: Any = None,
        nodeId: str | None = None,
        retainMessages: int = 10000,
        retainDays: float | None = None,
        refWindow: float = 3600.0,
    ) -> None:
        self.url = url
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.node = nodeId or "%s-%d" % (socket.gethostname(), os.getpid())
        self.incarnation = secrets.token_hex(8)
        self.prefix = url.prefix
        self.retainMessages = retainMessages
        self.retainDays = retainDays
        self.refWindow = refWindow
        self.ready: Deferred[None] = Deferred()
        self.isReady = False
        self.store = RedisStore(self)
        self.broker = RedisBroker(self)
        self._commands: _Commands | None = None
        self._subscriber: _Subscriber | None = None
        self._factories: list[Any] = []
        self._links: list[_Link] = []
        #: the subscription whose load of the shared state is complete
        self._loaded: _Subscriber | None = None
        #: loads of the shared state started (each knows whether it is
        #: still the current one)
        self._syncs = 0
        #: the kind of failure of the current series of failed attempts
        #: (see _failed), None while all is well
        self._trouble: str | None = None
        self._troubleSince = 0.0
        self._failedAttempts = 0
        #: a heartbeat failed (and was logged) since the last one that worked
        self._beatFailing = False
        self._handler: Any = None
        self._heart: LoopingCall | None = None
        self._stopping = False
        self._inflight = 0
        self._paused = False
        self._throttles: list[tuple[Any, Any]] = []
        self._buffer: list[str] | None = None

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # Connections

    def _endpoint(self) -> Any:
        from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
        from twisted.internet.ssl import Certificate, optionsForClientTLS

        endpoint = HostnameEndpoint(self.clock, self.url.host, self.url.port, timeout=5)
        if self.url.tls:
            trust = None
            if self.url.ca is not None:
                with open(self.url.ca) as f:
                    trust = Certificate.loadPEM(f.read())
            endpoint = wrapClientTLS(optionsForClientTLS(self.url.host, trustRoot=trust), endpoint)
        return endpoint

    def _factory(self, protocol: type) -> _Link:
        f = txredisapi.RedisFactory(
            self.url.display(),
            # (no password nor database: the set-up is ours, see _Commands)
            None,
            1,
            isLazy=True,
            # (no reply timeout: txredisapi answers one by dropping the
            # connection and failing every command in flight; the commands
            # that need a bound get one of their own, see timed())
            replyTimeout=None,
            # (strings stay strings: an epoch such as "12345678"
            # must not come back as a number)
            convertNumbers=False,
        )
        f.protocol = protocol
        f.cluster = self
        self._factories.append(f)
        link = _Link(self, f)
        self._links.append(link)
        return link

    def startService(self) -> None:
        Service.startService(self)
        self._log.info("node {node}: connecting to Redis at {url}", node=self.node, url=self.url.display())
        commands = self._factory(_Commands)
        self._handler = commands.factory.handler
        self._factory(_Subscriber)
        for link in self._links:
            link.service.startService()
        self._heart = LoopingCall(self._beat)
        self._heart.clock = self.clock
        self._heart.start(self.heartbeat, now=False)

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        self._stopping = True
        if self._heart is not None and self._heart.running:
            self._heart.stop()
        d = succeed(None)
        if self._commands is not None and self._commands.connected:
            # Leave cleanly: the others remove our members at once instead
            # of after the heartbeat expires.
            d = self._reap(own=True, why="server shutting down")
            d.addCallback(lambda _: self.call("del", self.key("alive", self.node)))
            d.addErrback(lambda f: None)

        def disconnect(_: object) -> Deferred[Any]:
            from twisted.internet.defer import gatherResults

            # (the services close their connections and stop retrying; the
            # factories then let go of what was still in their pools)
            d = gatherResults([link.service.stopService() for link in self._links], consumeErrors=True)
            d.addBoth(lambda _: gatherResults([f.disconnect() for f in self._factories], consumeErrors=True))
            return d.addErrback(lambda f: None)

        return d.addCallback(disconnect).addCallback(lambda _: None)

    @property
    def connected(self) -> bool:
        return self._commands is not None and bool(self._commands.connected)

    def call(self, method: str, *args: Any) -> Deferred[Any]:
        return self._track(getattr(self._handler, method)(*args))

    def eval(self, script: str, keys: list[str], args: list[Any]) -> Deferred[Any]:
        return self._track(self._handler.eval(script, keys, [str(a) for a in args]))

    def command(self, *args: str) -> Deferred[Any]:
        return self._track(self._handler.execute_command(*args))

    def timed(self, d: Deferred[Any]) -> Deferred[Any]:
        """
        C{d}, failed with a TimeoutError after C{commandTimeout} seconds
        (its reply, if it comes later, is then ignored).
        """
        return d.addTimeout(self.commandTimeout, self.clock)

    # Backpressure

    def addThrottle(self, pause: Any, resume: Any) -> None:
        """
        Call C{pause} when too many commands are in flight, C{resume} when
        they have drained (listening ports: stop and start accepting).
        """
        self._throttles.append((pause, resume))
        if self._paused:
            pause()

    def _track(self, d: Deferred[Any]) -> Deferred[Any]:
        self._inflight += 1
        if self._inflight >= self.highWater and not self._paused:
            self._paused = True
            self._log.warn(
                "node {node}: {count} Redis commands in flight: not accepting connections until they drain",
                node=self.node, count=self._inflight,
            )
            for pause, _ in self._throttles:
                pause()
        return d.addBoth(self._untrack)

    def _untrack(self, result: Any) -> Any:
        self._inflight -= 1
        if self._paused and self._inflight <= self.lowWater:
            self._paused = False
            self._log.info("node {node}: Redis caught up: accepting connections again", node=self.node)
            for _, resume in self._throttles:
                resume()
        return result

    @property
    def synced(self) -> bool:
        """
        Both connections are up and the shared state has been loaded since
        the subscription was (re)made: this node serves the cluster.
        """
        return self.connected and self._subscriber is not None and self._loaded is self._subscriber

    def _backoff(self, failures: int) -> float:
        """
        Seconds to wait before the next attempt after C{failures} failed
        ones in a row.
        """
        delay = min(self.retryDelay * 2.0 ** min(failures - 1, 30), self.retryMaxDelay)
        return delay * random.uniform(0.9, 1.1)

    # Set-up, and what is logged about it

    def _setUp(self, protocol: Any, select: bool) -> Deferred[bool]:
        """
        Log in (and select the database) on a new connection; C{True} once
        done. On any failure (an error answer, the connection closed, no
        answer within commandTimeout) the connection is dropped and its
        ClientService tries again after a backoff: C{False}.
        """
        from twisted.internet.defer import ensureDeferred

        url = self.url

        async def setUp() -> None:
            if url.password is not None:
                await protocol.auth(url.password, url.username)
            if select:
                await protocol.select(url.db)

        def failed(f: Failure) -> bool:
            if protocol.connected:
                protocol.transport.abortConnection()
            self._failed(f, "setting up a connection")
            return False

        return self.timed(ensureDeferred(setUp())).addCallbacks(lambda _: True, failed)

    def _connectFailed(self, f: Failure) -> None:
        self._failed(f, "connecting")

    def _failed(self, f: Failure, doing: str) -> None:
        """
        An attempt failed (C{doing} what). The first failure of a series,
        and one of another kind than the series' (refused, then a refused
        password, then LOADING...), is logged: one line, not one per
        attempt; the end of the series is logged by L{_syncDone}.
        """
        if self._stopping:
            return
        self._failedAttempts += 1
        kind, why = _classify(f)
        if kind == "unreachable" and why == "no answer":
            why = "no answer within %g s" % (self.commandTimeout,)
        self._troubled(kind, why, doing)

    def _troubled(self, kind: str, why: str, doing: str) -> None:
        if kind == self._trouble:
            return
        if self._trouble is None:
            self._troubleSince = self.clock.seconds()
        self._trouble = kind
        fields = dict(node=self.node, url=self.url.display(), why=why, doing=doing, most=self.retryMaxDelay)
        if kind == "password":
            self._log.error(
                "node {node}: Redis at {url} refuses the password of --broker ({why}); trying again every "
                "{most:g} s until it accepts it: fix the URL's password (or Redis' requirepass or ACL user)",
                **fields,
            )
        elif kind == "LOADING":
            self._log.warn(
                "node {node}: Redis at {url} is still loading its data ({why}); trying again every {most:g} s at "
                "most until it is ready",
                **fields,
            )
        elif kind == "unreachable":
            self._log.warn(
                "node {node}: lost Redis at {url} ({doing}: {why}); reconnecting with backoff (at most {most:g} s "
                "apart) until it answers",
                **fields,
            )
        else:
            self._log.warn(
                "node {node}: Redis at {url} answered an error ({doing}: {why}); trying again every {most:g} s at "
                "most",
                **fields,
            )

    # The connections

    def _commandsUp(self, protocol: _Commands) -> None:
        self._commands = protocol
        self._links[0].up()
        subscriber = self._subscriber
        if subscriber is not None and self._buffer is None and not self._stopping:
            # Only this connection was lost: what changed here meanwhile
            # (members who came or left) was not announced. Load and
            # announce again.
            self._sync(subscriber, subscribe=False)
        self._notify()

    def _commandsDown(self, protocol: _Commands, why: Failure) -> None:
        if self._commands is protocol:
            self._commands = None
            if not self._stopping:
                self._troubled("unreachable", why.getErrorMessage(), "the command connection")
        self._notify()

    def _subscriberUp(self, protocol: _Subscriber) -> None:
        """
        (Re)subscribed: load the shared state, announce ours, catch up.
        """
        self._subscriber = protocol
        self._sync(protocol, subscribe=True)

    def _subscriberDown(self, protocol: _Subscriber, why: Failure) -> None:
        if self._subscriber is protocol:
            self._subscriber = None
            self._buffer = None
            if not self._stopping:
                self._troubled("unreachable", why.getErrorMessage(), "the subscription")
        self._notify()

    def _sync(self, protocol: _Subscriber, subscribe: bool) -> None:
        """
        (Subscribe, then) load the shared state and announce ours, with
        the bus messages that arrive meanwhile held back. Each step waits
        at most commandTimeout. If it fails the subscription is dropped
        and made again after a backoff; if the subscription is lost, or
        another load starts, it stops where it is.
        """
        from twisted.internet.defer import ensureDeferred

        self._syncs += 1
        generation = self._syncs
        self._buffer = []
        self._loaded = None

        def current() -> bool:
            return self._subscriber is protocol and self._syncs == generation

        async def ask(d: Deferred[Any]) -> Any:
            result = await self.timed(d)
            if not current():
                raise _Superseded()
            return result

        async def sync() -> None:
            if subscribe:
                await ask(protocol.subscribe([self.key("bus"), self.key("node", self.node)]))
            await self._loadAsync(ask, current)

        def failed(f: Failure) -> None:
            if f.check(_Superseded) or not current():
                return
            self._failed(f, "loading the shared state")
            # (given up: its loss is no news, _subscriberDown stays quiet)
            self._subscriber = None
            self._buffer = None
            protocol.transport.abortConnection()
            self._notify()

        ensureDeferred(sync()).addCallbacks(lambda _: current() and self._syncDone(protocol), failed)

    async def _loadAsync(self, ask: Callable[[Deferred[Any]], Any], current: Callable[[], bool]) -> None:
        first = not self.isReady
        epochKey = self.key("epoch")
        await ask(self.call("set", epochKey, secrets.token_hex(4), None, None, True))
        epoch = await ask(self.call("get", epochKey))
        if first:
            # A node restarted under the same id: clear what its previous
            # life left behind (its members leave, once, for everyone).
            await ask(self._reap(own=True, why="disconnected"))
        broker = self.broker
        await self._register(ask)
        nodes = await ask(self.call("smembers", self.key("nodes")))
        members: dict[str, dict[str, str]] = {}
        for n in nodes or ():
            if n != self.node:
                members[n] = await ask(self.call("hgetall", self.key("m", n))) or {}
        for key, tokenHash in list(self.store.unsaved.items()):
            await ask(self.store._saveToken(key, tokenHash))
        tokens = await ask(self.call("hgetall", self.key("tok"))) or {}
        topics = await ask(self.call("hgetall", self.key("topic"))) or {}
        guest = await ask(self.call("incrby", self.key("guest"), broker.guestBlock))
        bans: dict[str, dict[str, str]] = {}
        for room in await ask(self.call("smembers", self.key("banrooms"))) or ():
            bans[room] = await ask(self.call("hgetall", self.key("bans", room))) or {}
        self.store.setEpoch(epoch)
        broker.load(members, tokens, topics, guest, bans)
        buffered, self._buffer = self._buffer or [], None
        for raw in buffered:
            self._busMessage(raw)
        await broker.catchUp(current)

    def _syncDone(self, protocol: _Subscriber) -> None:
        self._loaded = protocol
        self._links[1].up()
        if not self.isReady:
            self.isReady = True
            self._log.info("node {node}: joined the cluster at {url}", node=self.node, url=self.url.display())
            self.ready.callback(None)
        elif self._trouble is not None:
            attempts = self._failedAttempts
            self._log.info(
                "node {node}: Redis is back after {seconds:.1f} s{attempts}; state re-announced",
                node=self.node,
                seconds=self.clock.seconds() - self._troubleSince,
                attempts=" and %d failed attempt%s" % (attempts, "" if attempts == 1 else "s") if attempts else "",
            )
        else:
            self._log.info("node {node}: state re-announced to the cluster", node=self.node)
        self._trouble = None
        self._failedAttempts = 0
        self._notify()

    def _reap(self, own: bool, why: str) -> Deferred[Any]:
        """
        Remove the members of dead nodes (with C{own}: of this node's id,
        left by its previous life or on the way out), announced once as
        leaving for C{why}.
        """
        return self.eval(
            _REAP,
            [self.key("nodes"), self.key("nicks"), self.key("bus")],
            [self.prefix, self.node, "1" if own else "0", why],
        )

    async def _register(self, ask: Callable[[Deferred[Any]], Any] | None = None) -> None:
        """
        Announce this node and all its members (start-up, Redis back, or a
        heartbeat that had expired); members whose nick another node took
        meanwhile become guests.
        """
        if ask is None:
            ask = self.timed
        lost = await ask(self.eval(
            _REGISTER,
            [self.key("nodes"), self.key("nicks"), self.key("bus")],
            [self.prefix, self.node, self.incarnation, int(self.nodeTTL * 1000), *self.broker.localState()],
        ))
        for key in lost or ():
            self.broker.lostNick(key)

    def _beat(self) -> None:
        if not self.connected or not self.isReady:
            return

        def alive(previous: Any) -> Any:
            from twisted.internet.defer import ensureDeferred

            if previous is None:
                # Our heartbeat had expired (this process stalled, or Redis
                # lost its data): the others may have seen our members leave.
                self._log.warn("node {node}: heartbeat had expired; announcing this node again", node=self.node)
                return ensureDeferred(self._register())
            if previous != self.incarnation:
                self._log.error(
                    "node id {node} is used by another process too: give each node its own --node-id",
                    node=self.node,
                )
            return self._reap(own=False, why="disconnected")

        def worked(_: object) -> None:
            self._beatFailing = False

        def failed(f: Failure) -> None:
            # Once until a heartbeat works again, and not at all while the
            # connections' trouble is logged already (Redis loading, say).
            if not self._beatFailing and self._trouble is None and not self._stopping:
                self._log.warn("node {node}: heartbeat failed: {why}", node=self.node, why=f.getErrorMessage())
            self._beatFailing = True

        d = self.command(
            "SET", self.key("alive", self.node), self.incarnation, "PX", str(int(self.nodeTTL * 1000)), "GET"
        )
        d.addCallback(alive)
        d.addCallbacks(worked, failed)

    def _busMessage(self, raw: str) -> None:
        if self._buffer is not None:
            self._buffer.append(raw)
            return
        try:
            body = json.loads(raw)
            self.broker.received(body)
        except Exception:
            self._log.failure("bad message on the Redis bus: {raw!r}", raw=raw[:200])
        self._notify()

    def _notify(self) -> None:
        for observer in list(self.observers):
            observer()


@implementer(IMessageStore)
class RedisStore:
    """
    Ids, epochs and history in Redis, shared by every node: a stream per
    room, one per nick for private messages, a counter per room.
    """

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster
        self.epoch = ""
        #: epochs this node saw replaced (Redis came back empty)
        self.retired: set[str] = set()
        self._failures = FailureLog(cluster._log, lambda: cluster.clock)
        #: nick key -> owner token hash issued while Redis was unreachable
        self.unsaved: dict[str, str] = {}

    def setEpoch(self, epoch: str, authoritative: bool = True) -> bool:
        """
        The epoch Redis holds is C{epoch} (read at (re)connection when
        C{authoritative}; else seen on a message). A new one means Redis
        lost its data: the broker starts the rooms over (see
        L{RedisBroker.epochChanged}). Returns C{False} for a message of an
        epoch already replaced (to be ignored).
        """
        old = self.epoch
        if epoch == old:
            return True
        if not authoritative and epoch in self.retired:
            return False
        self.epoch = epoch
        if old:
            self.retired.add(old)
            self.cluster.broker.epochChanged(old, epoch)
        return True

    def open(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)

    def ping(self) -> Deferred[None]:
        """
        Readiness: Redis answers, and this node is subscribed to the bus
        with the shared state loaded (else it delivers nothing from the
        other nodes).
        """
        if not self.cluster.connected:
            return _unreachable()
        if not self.cluster.synced:
            return fail(StoreUnavailable("not subscribed to the cluster's bus (reconnecting)"))
        return self.cluster.call("ping").addCallbacks(lambda _: None, self._down)

    def _down(self, f: Failure) -> Failure:
        """
        Redis not answering in time, or a connection lost or not there, as
        L{StoreUnavailable}; anything else as it is.
        """
        if f.check(DeferredTimeout):
            return Failure(StoreUnavailable("Redis did not answer within %g s" % (self.cluster.commandTimeout,)))
        if f.check(txredisapi.ConnectionError, ConnectionError):
            return Failure(StoreUnavailable("Redis is unreachable (%s)" % (f.getErrorMessage(),)))
        return f

    def lastId(self, room: str) -> int:
        return 0

    def _ref(self, sender: str, ref: str | None) -> str:
        return self.cluster.key("ref", nickKey(sender), ref or "")

    def append(self, message: Message | Private, ref: str | None = None) -> Deferred[Any]:
        if isinstance(message, Private):
            return self.appendPrivate(message, ref, None)
        c = self.cluster
        if not c.connected:
            return fail(_unavailable())
        room = message.room
        d = c.eval(
            _SAY,
            [c.key("epoch"), c.key("seq", room), c.key("h", room), self._ref(message.sender, ref), c.key("rooms"), c.key("bus")],
            [
                secrets.token_hex(4), room, message.sender, message.text, repr(message.time),
                "1" if message.action else "0", "1" if ref is not None else "0", int(c.refWindow),
                c.retainMessages, c.node,
            ],
        )
        return c.timed(d).addCallbacks(lambda raw: _message(json.loads(raw)), self._failed)

    def appendPrivate(self, message: Private, ref: str | None, channel: str | None) -> Deferred[Any]:
        c = self.cluster
        if not c.connected:
            return fail(_unavailable())
        d = c.eval(
            _PRIVATE,
            [
                c.key("epoch"), c.key("seq", PRIVATE), c.key("pm", nickKey(message.sender)),
                c.key("pm", nickKey(message.recipient)), self._ref(message.sender, ref),
            ],
            [
                secrets.token_hex(4), message.sender, message.recipient, message.text, repr(message.time),
                "1" if ref is not None else "0", int(c.refWindow), c.retainMessages * 10, c.node, channel or "",
            ],
        )
        return c.timed(d).addCallbacks(lambda raw: _private(json.loads(raw)), self._failed)

    def _failed(self, f: Failure) -> Failure:
        if f.check(ChatError):
            return f
        if f.check(txredisapi.ResponseError) and f.getErrorMessage().startswith("LOADING"):
            # Refused before anything ran (Redis restarted and is loading
            # its data; the node logs that once, see RedisCluster._failed)
            return Failure(_unavailable("the message store is loading its data: not sent"))
        why = (
            "no answer within %g s" % (self.cluster.commandTimeout,)
            if f.check(DeferredTimeout)
            else f.getErrorMessage()
        )
        self._failures.unavailable("Redis did not confirm a message", why)
        return Failure(
            ChatError(
                "unavailable",
                "the message store did not confirm this message (Redis: %s); it may have been stored: "
                "resend it with the same ref to be sure" % (why,),
            )
        )

    def _range(self, key: str, start: str, end: str, count: int, reverse: bool = False) -> Deferred[list[Any]]:
        c = self.cluster
        if not c.connected:
            return _unreachable()
        if reverse:
            d = c.command("XREVRANGE", key, end, start, "COUNT", str(count))
        else:
            d = c.command("XRANGE", key, start, end, "COUNT", str(count))
        return c.timed(d).addCallbacks(_entries, self._down)

    def range(self, room: str, afterId: int, limit: int) -> Deferred[list[Message]]:
        """
        Up to C{limit} messages of C{room} after C{afterId}, oldest first.
        """
        d = self._range(self.cluster.key("h", room), "%d-1" % (afterId + 1), "+", limit)
        return d.addCallback(lambda bodies: [_message(b) for b in bodies])

    def recent(self, room: str, limit: int, before: int | None = None) -> Deferred[list[Message]]:
        if limit <= 0 or (before is not None and before <= 1):
            return succeed([])
        end = "+" if before is None else "%d-1" % (before - 1)
        d = self._range(self.cluster.key("h", room), "-", end, limit, reverse=True)
        return d.addCallback(lambda bodies: [_message(b) for b in reversed(bodies)])

    def since(self, room: str, epoch: str, afterId: int, limit: int) -> Deferred[list[Message] | None]:
        if epoch != self.epoch or afterId < 0:
            return succeed(None)
        c = self.cluster
        if not c.connected:
            return _unreachable()

        def got(last: Any) -> Any:
            verdict = resumePosition(afterId, int(last or 0), limit)
            if verdict != "fetch":
                return [] if verdict == "current" else None

            def check(msgs: list[Message]) -> list[Message] | None:
                if not msgs or msgs[0].id != afterId + 1:
                    return None
                return msgs

            return self.range(room, afterId, limit).addCallback(check)

        return c.timed(c.call("get", c.key("seq", room))).addCallbacks(got, self._down)

    def privateFor(self, nick: str, afterId: int | None, limit: int) -> Deferred[list[Private]]:
        if limit <= 0:
            return succeed([])
        start = "%d-1" % ((afterId or 0) + 1)
        d = self._range(self.cluster.key("pm", nickKey(nick)), start, "+", limit, reverse=True)
        return d.addCallback(lambda bodies: [_private(b) for b in reversed(bodies)])

    def refs(self, sinceTime: float) -> list[tuple[str, str, Any]]:
        # Refs live in Redis (checked by the storing script itself).
        return []

    def tokens(self) -> dict[str, str]:
        # Loaded with the rest of the shared state (RedisBroker.load).
        return {}

    def saveToken(self, key: str, tokenHash: str) -> Deferred[None]:
        """
        Share a nick's new owner token. While Redis is unreachable it is
        kept here and saved (unless another node saved one for that nick
        first) when the node loads the shared state again.
        """
        c = self.cluster
        if not c.connected:
            self.unsaved[key] = tokenHash
            return succeed(None)

        def later(f: Failure) -> None:
            self.unsaved[key] = tokenHash

        return c.timed(self._saveToken(key, tokenHash)).addErrback(later)

    def _saveToken(self, key: str, tokenHash: str) -> Deferred[None]:
        c = self.cluster
        d = c.call("hsetnx", c.key("tok"), key, tokenHash)

        def saved(new: Any) -> Any:
            self.unsaved.pop(key, None)
            if new:
                return c.call("publish", c.key("bus"), json.dumps({"t": "tok", "o": c.node, "k": key, "h": tokenHash}))
            return None

        return d.addCallback(saved).addCallbacks(lambda _: None, self._down)

    def prune(self, now: float) -> Deferred[int]:
        c = self.cluster
        if not self.cluster.retainDays or not c.connected:
            return succeed(0)
        cutoff = now - self.cluster.retainDays * 86400

        async def run() -> int:
            total = 0
            for room in await c.call("smembers", c.key("rooms")) or ():
                total += int(await c.eval(_PRUNE, [c.key("h", room)], [repr(cutoff)]))
            return total

        from twisted.internet.defer import ensureDeferred

        return ensureDeferred(run()).addErrback(self._down)


@implementer(IBroker)
class RedisBroker:
    """
    Presence and fan-out across nodes (see the module docstring).
    """

    _log = Logger()
    guestBlock = 1000

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster
        #: the service of this node, as a broker sees it
        self.events: IClusterEvents = None  # type: ignore[assignment]
        #: nick key -> member of another node
        self.remote: dict[str, _Remote] = {}
        #: room -> nick key -> nick, of members on other nodes
        self.rooms: dict[str, dict[str, str]] = {}
        self.topics: dict[str, tuple[str, str]] = {}
        #: room -> banned nick key or address -> address banned with it
        self.bans: dict[str, dict[str, str]] = {}
        #: room -> the last message id delivered on this node
        self.lastIds: dict[str, int] = {}
        #: rooms whose gap is being filled -> bus messages waiting meanwhile
        self.filling: dict[str, list[dict[str, Any]]] = {}
        #: (room, id) -> acknowledgements waiting for this node's delivery
        self.waiters: dict[tuple[str, int], list[Deferred[Any]]] = {}
        self._guest = 0
        self._guestEnd = 0

    def attach(self, events: IClusterEvents) -> None:
        self.events = events

    # Replica

    def _add(self, node: str, key: str, nick: str, rooms: list[str]) -> None:
        self._remove(key)
        r = self.remote[key] = _Remote(node, nick, rooms)
        for name in r.rooms:
            self.rooms.setdefault(name, {})[key] = nick

    def _remove(self, key: str) -> _Remote | None:
        r = self.remote.pop(key, None)
        if r is not None:
            for name in r.rooms:
                inRoom = self.rooms.get(name)
                if inRoom is not None:
                    inRoom.pop(key, None)
                    if not inRoom:
                        del self.rooms[name]
        return r

    def load(
        self,
        members: dict[str, dict[str, str]],
        tokens: dict[str, str],
        topics: dict[str, str],
        guest: int,
        bans: dict[str, dict[str, str]],
    ) -> None:
        self.bans = bans
        self.remote.clear()
        self.rooms.clear()
        for node, entries in members.items():
            for key, state in entries.items():
                nick, rooms = json.loads(state)
                self._add(node, key, nick, rooms)
        self.events.knownTokens(tokens)
        self.topics = {}
        for room, raw in topics.items():
            topic, by = json.loads(raw)
            if topic:
                self.topics[room] = (topic, by)
        self._guestEnd = int(guest)
        self._guest = self._guestEnd - self.guestBlock

    def localState(self) -> list[str]:
        out: list[str] = []
        for m in self.events.localMembers():
            out += [nickKey(m.nick), self._state(m)]
        return out

    def lostNick(self, key: str) -> None:
        self.events.nickTaken(key)

    # IBroker: queries

    def remoteNick(self, key: str) -> str | None:
        r = self.remote.get(key)
        return None if r is None else r.nick

    def remoteRoomNicks(self, room: str, limit: int | None = None) -> list[str]:
        inRoom = self.rooms.get(room)
        if not inRoom:
            return []
        return list(inRoom.values() if limit is None else islice(inRoom.values(), limit))

    def remoteRoomCount(self, room: str) -> int:
        inRoom = self.rooms.get(room)
        return len(inRoom) if inRoom else 0

    def remoteRooms(self) -> dict[str, int]:
        return {name: len(keys) for name, keys in self.rooms.items()}

    def nextGuest(self) -> int | None:
        if self._guest >= self._guestEnd:
            return None
        self._guest += 1
        if self._guestEnd - self._guest == self.guestBlock // 5:
            c = self.cluster

            def refill(end: Any) -> None:
                self._guest, self._guestEnd = int(end) - self.guestBlock, int(end)

            if c.connected:
                c.call("incrby", c.key("guest"), self.guestBlock).addCallbacks(refill, lambda f: None)
        return self._guest

    def topicOf(self, room: str) -> tuple[str, str] | None:
        return self.topics.get(room)

    # IBroker: what happened here

    def _state(self, member: Any) -> str:
        return json.dumps([member.nick, list(member.rooms)])

    def _publish(self, script: str, keys: list[str], args: list[Any], what: str) -> Deferred[Any] | None:
        c = self.cluster
        if not self.events.isRunning():
            # Shutting down: the node leaves with one announcement of all
            # its members (RedisCluster.stopService), not one per member.
            return None
        if not c.connected:
            # Announced with everything else once Redis is back (_REGISTER).
            return None
        d = c.eval(script, keys, args)
        d.addErrback(lambda f: self._log.warn("could not tell the cluster {what}: {why}", what=what, why=f.getErrorMessage()))
        return d

    def memberAdded(self, member: Any, force: bool) -> None:
        c = self.cluster
        key = nickKey(member.nick)
        self._remove(key)
        d = self._publish(
            _CLAIM,
            [c.key("nicks"), c.key("m", c.node), c.key("bus")],
            [key, member.nick, c.node, "1" if force else "0", self._state(member)],
            "of a new member",
        )
        if d is not None:
            d.addCallback(lambda holder: holder and self._collision(member, key))

    def _collision(self, member: Any, key: str) -> None:
        if not member.gone and nickKey(member.nick) == key:
            self.events.nickTaken(key)

    def memberGone(self, member: Any) -> None:
        c = self.cluster
        key = nickKey(member.nick)
        self._publish(
            _GONE,
            [c.key("nicks"), c.key("m", c.node), c.key("bus")],
            [key, c.node, json.dumps({"t": "off", "o": c.node, "k": key})],
            "of a member who left",
        )

    def _event(self, member: Any, event: dict[str, Any], what: str) -> None:
        c = self.cluster
        event["o"] = c.node
        self._publish(
            _STATE,
            [c.key("m", c.node), c.key("bus")],
            [nickKey(member.nick), self._state(member), json.dumps(event)],
            what,
        )

    def joined(self, member: Any, room: str, event: Any) -> None:
        self._event(member, {"t": "j", "k": nickKey(member.nick), "n": member.nick, "r": room, "s": event.time}, "of a join")

    def parted(self, member: Any, room: str, event: Any) -> None:
        self._event(
            member,
            {"t": "l", "k": nickKey(member.nick), "n": member.nick, "r": room, "s": event.time, "y": event.reason},
            "of a part",
        )

    def nickChanged(self, member: Any, old: str, time: float) -> None:
        c = self.cluster
        oldKey, newKey = nickKey(old), nickKey(member.nick)
        event = {"t": "nick", "o": c.node, "k": oldKey, "nk": newKey, "n": old, "nn": member.nick, "s": time}
        d = self._publish(
            _RENAME,
            [c.key("nicks"), c.key("m", c.node), c.key("bus")],
            [oldKey, newKey, c.node, self._state(member), json.dumps(event)],
            "of a nick change",
        )
        if d is not None:
            d.addCallback(lambda holder: holder and self._collision(member, newKey))

    def topicChanged(self, event: Any) -> None:
        c = self.cluster
        if not c.connected:
            return
        if event.topic:
            self.topics[event.room] = (event.topic, event.by)
        else:
            self.topics.pop(event.room, None)
        body = {"t": "topic", "o": c.node, "r": event.room, "x": event.topic, "n": event.by, "s": event.time}
        d = c.call("hset", c.key("topic"), event.room, json.dumps([event.topic, event.by]))
        d.addCallback(lambda _: c.call("publish", c.key("bus"), json.dumps(body)))
        d.addErrback(lambda f: self._log.warn("could not share a topic: {why}", why=f.getErrorMessage()))

    def deliverMessage(self, message: Message) -> Any:
        """
        The bus delivers it here (in id order with everyone else's); the
        acknowledgement waits until it has.
        """
        if not self.cluster.store.setEpoch(message.epoch, authoritative=False):
            return message
        room, id = message.room, message.id
        if self.lastIds.get(room, 0) >= id and room not in self.filling:
            return message
        d: Deferred[Any] = Deferred()
        waiting = self.waiters.setdefault((room, id), [])
        waiting.append(d)

        def late(result: Any, timeout: float) -> Message:
            # Stored, but this node has not seen it come back yet: it will
            # be delivered when the bus (or the catch-up) brings it.
            if d in waiting:
                waiting.remove(d)
            return message

        d.addTimeout(self.cluster.ackTimeout, self.cluster.clock, onTimeoutCancel=late)
        return d.addCallback(lambda _: message)

    def appendPrivate(self, message: Private, ref: str | None) -> Any:
        r = self.remote.get(nickKey(message.recipient))
        channel = self.cluster.key("node", r.node) if r is not None else None
        return self.cluster.store.appendPrivate(message, ref, channel)

    def kickRemote(self, op: Any, room: str, nick: str, why: str) -> bool:
        return self._command(room, nick, {"t": "kick", "y": why})

    def opRemote(self, room: str, nick: str) -> bool:
        return self._command(room, nick, {"t": "op"})

    def _command(self, room: str, nick: str, body: dict[str, Any]) -> bool:
        """
        Send C{body} about C{nick} in C{room} to the node that has it.
        """
        r = self.remote.get(nickKey(nick))
        if r is None or room not in r.rooms:
            return False
        c = self.cluster
        if not c.connected:
            raise _unavailable("cannot reach %s on another node now (the cluster's Redis is unreachable)" % (r.nick,))
        body.update(o=c.node, r=room, n=r.nick)
        c.call("publish", c.key("node", r.node), json.dumps(body)).addErrback(lambda f: None)
        return True

    def bansOf(self, room: str) -> dict[str, str]:
        return self.bans.get(room, {})

    def banned(self, room: str, key: str, host: str, why: str) -> None:
        self.bans.setdefault(room, {})[key] = host
        c = self.cluster
        body = json.dumps({"t": "ban", "o": c.node, "r": room, "k": key, "h": host, "y": why})
        self._publish(_BAN, [c.key("bans", room), c.key("banrooms"), c.key("bus")], [key, host, room, body], "of a ban")

    def unbanned(self, room: str, key: str) -> None:
        inRoom = self.bans.get(room)
        if inRoom is not None:
            inRoom.pop(key, None)
        c = self.cluster
        body = json.dumps({"t": "unban", "o": c.node, "r": room, "k": key})
        self._publish(_UNBAN, [c.key("bans", room), c.key("bus")], [key, body], "of an unban")

    # What happened elsewhere

    def received(self, body: dict[str, Any]) -> None:
        kind = body["t"]
        if kind == "m":
            self._message(body)
            return
        if body.get("o") == self.cluster.node and kind not in ("p", "kick", "op"):
            return
        handler = getattr(self, "_on_" + kind, None)
        if handler is not None:
            handler(body)

    def _on_on(self, body: dict[str, Any]) -> None:
        key = body["k"]
        self._add(body["o"], key, body["n"], [])
        if body.get("f") == self.cluster.node:
            self.events.replaced(key)

    def _on_off(self, body: dict[str, Any]) -> None:
        r = self.remote.get(body["k"])
        if r is not None and r.node == body["o"]:
            self._remove(body["k"])

    def _on_j(self, body: dict[str, Any]) -> None:
        key, name = body["k"], body["r"]
        r = self.remote.get(key)
        if r is None or r.node != body["o"]:
            self._add(body["o"], key, body["n"], [name])
        else:
            r.rooms.add(name)
            self.rooms.setdefault(name, {})[key] = r.nick
        self.events.remoteJoined(name, body["n"], body["s"])

    def _on_l(self, body: dict[str, Any]) -> None:
        key, name = body["k"], body["r"]
        r = self.remote.get(key)
        if r is not None:
            r.rooms.discard(name)
            inRoom = self.rooms.get(name)
            if inRoom is not None:
                inRoom.pop(key, None)
                if not inRoom:
                    del self.rooms[name]
        self.events.remoteParted(name, body["n"], body["y"], body["s"])

    def _on_nick(self, body: dict[str, Any]) -> None:
        r = self._remove(body["k"])
        rooms = list(r.rooms) if r is not None else []
        self._add(body["o"], body["nk"], body["nn"], rooms)
        self.events.remoteNickChanged(body["n"], body["nn"], rooms, body["s"])

    def _on_topic(self, body: dict[str, Any]) -> None:
        if body["x"]:
            self.topics[body["r"]] = (body["x"], body["n"])
        else:
            self.topics.pop(body["r"], None)
        self.events.remoteTopic(TopicChanged(body["r"], body["x"], body["n"], body["s"]))

    def _on_tok(self, body: dict[str, Any]) -> None:
        self.events.knownTokens({body["k"]: body["h"]})

    def _on_p(self, body: dict[str, Any]) -> None:
        self.events.remotePrivate(_private(body))

    def _on_kick(self, body: dict[str, Any]) -> None:
        self.events.remoteKick(body["r"], body["n"], body["y"])

    def _on_op(self, body: dict[str, Any]) -> None:
        self.events.remoteOp(body["r"], body["n"])

    def _on_ban(self, body: dict[str, Any]) -> None:
        self.bans.setdefault(body["r"], {})[body["k"]] = body["h"]
        self.events.remoteBan(body["r"], body["k"], body["h"], body["y"])

    def _on_unban(self, body: dict[str, Any]) -> None:
        inRoom = self.bans.get(body["r"])
        if inRoom is not None:
            inRoom.pop(body["k"], None)
        self.events.remoteUnban(body["r"], body["k"])

    def _on_node(self, body: dict[str, Any]) -> None:
        node = body["o"]
        for key in [k for k, r in self.remote.items() if r.node == node]:
            self._remove(key)
        for key, state in (body.get("m") or {}).items():
            nick, rooms = json.loads(state)
            self._add(node, key, nick, rooms)

    def _on_down(self, body: dict[str, Any]) -> None:
        node = body["o"]
        now = self.events.now()
        self._log.info("node {node} is gone: its members left", node=node)
        members = body.get("m") or {}
        for key in [k for k, r in self.remote.items() if r.node == node]:
            self._remove(key)
        for key, state in members.items() if isinstance(members, dict) else ():
            nick, rooms = json.loads(state)
            for name in rooms:
                self.events.remoteParted(name, nick, body.get("y") or "disconnected", now)

    # Room messages, in id order

    def _message(self, body: dict[str, Any]) -> None:
        room = body["r"]
        pending = self.filling.get(room)
        if pending is not None:
            pending.append(body)
            return
        if not self.cluster.store.setEpoch(body["e"], authoritative=False):
            return  # (of an epoch Redis no longer has)
        id = int(body["i"])
        last = self.lastIds.get(room)
        if last is not None and id <= last:
            return
        if room not in self.events.localRooms() and not self.waiters:
            # (no member here: nothing to deliver, only the position)
            self.lastIds[room] = id
            return
        if last is not None and id > last + 1 and room in self.events.localRooms():
            self.filling[room] = [body]
            self._fill(room, last)
            return
        self._deliver(room, id, _message(body))

    def _deliver(self, room: str, id: int, msg: Message) -> None:
        self.lastIds[room] = id
        self.events.deliverMessage(msg)
        if self.waiters:
            for key in [k for k in self.waiters if k[0] == room and k[1] <= id]:
                for d in self.waiters.pop(key):
                    d.callback(msg)

    def _fill(self, room: str, last: int) -> Deferred[None]:
        """
        Deliver what the bus did not bring (after C{last}) from the stream,
        then what waited meanwhile.
        """
        store = self.cluster.store
        epoch = store.epoch

        def got(msgs: list[Message]) -> None:
            if store.epoch != epoch:
                return  # (Redis was reset meanwhile: epochChanged started over)
            for msg in msgs:
                if msg.id > self.lastIds.get(room, 0):
                    self._deliver(room, msg.id, msg)
            waiting = self.filling.pop(room, [])
            for body in waiting:
                self._message(body)

        def failed(f: Failure) -> None:
            if store.epoch != epoch:
                return
            self._log.warn("could not fetch missed messages of {room}: {why}", room=room, why=f.getErrorMessage())
            waiting = self.filling.pop(room, [])
            if waiting:
                # Deliver on rather than hold the room back forever.
                self.lastIds[room] = int(waiting[0]["i"]) - 1
                for body in waiting:
                    self._message(body)

        return store.range(room, last, 10000).addCallbacks(got, failed)

    def deliveredUpTo(self, room: str) -> int:
        return self.lastIds.get(room, 0)

    def readUpTo(self, room: str, id: int) -> None:
        """
        The member that brought C{room} to this node read its history up to
        its latest message, C{id}. If no message of that room has come by
        the bus since this node started, that is where its delivery starts:
        without a position, a gap (the subscription lost, messages said
        meanwhile) could not be told from a first message, and would not be
        filled. (Only that member's read: a later joiner's history can run
        ahead of messages still on their way to the members already here.)
        """
        if room not in self.lastIds and room not in self.filling:
            self.lastIds[room] = id

    def epochChanged(self, previous: str, epoch: str) -> None:
        """
        Redis came back without its data (no persistence, or a failover to
        an empty replica): ids start again at 1. Positions of the old epoch
        are void; the rooms with members here are delivered from the new
        epoch's first message on (by the catch-up after the reload, or by a
        fill when a message shows the gap), and their members are told.
        """
        self.lastIds = {room: 0 for room in self.events.localRooms()}
        self.filling.clear()
        # (acknowledgements waiting for old-epoch messages: those are gone)
        waiters, self.waiters = self.waiters, {}
        for ds in waiters.values():
            for d in ds:
                d.callback(None)
        self.events.epochChanged(previous, epoch)

    async def catchUp(self, current: Callable[[], bool] = lambda: True) -> None:
        """
        After (re)subscribing: deliver what this node's rooms missed (until
        C{current} says this subscription is gone).
        """
        for room in self.events.localRooms():
            if not current():
                return
            last = self.lastIds.get(room)
            if last is None or room in self.filling:
                continue
            self.filling[room] = []
            await self._fill(room, last)
