# -*- test-case-name: tests.cluster.test_limits -*-
"""
Cluster-wide connection limits (C{--limits-scope cluster}): C{--max-per-ip}
and C{--max-connections} hold for every node sharing the C{--broker}.

Each node publishes its own share in Redis and the cluster's sums are kept
next to the shares, changed by the same Lua scripts:

  - C{PREFIX:limits:node:NODE}, a hash: the node's connections by address
    (C{hADDRESS}), C{*} its total, and C{#} the generation of its last full publish;
  - C{PREFIX:limits:total} and C{PREFIX:limits:host:ADDRESS}: the sums;
  - C{PREFIX:limits:nodes}, the set of the nodes that have a share, and
    C{PREFIX:limits:alive:NODE}, set for L{RedisCounts.ttl} seconds by each
    refresh (every L{RedisCounts.every} seconds).

A node whose C{alive} key has expired (killed with SIGKILL, its machine
gone) is reaped by the next refresh of any other node: its share is taken
off the sums and its hash deleted. An admission with a limit on is one
script (L{ACCOUNT}): check the sums, count the connection in the node's
share and the sums, or refuse. Without a limit nothing waits: the changes
of the node's share are sent by the next refresh.

Every script first checks the generation it is given against the one in
the node's hash; a node whose hash is missing or older (Redis restarted,
empty or from a snapshot, or the node was reaped while stalled) is told
so, and publishes its whole share again (L{PUBLISH}, which takes the old
one off the sums). A node also publishes again on each new connection to
Redis. Commands on one connection run in order, so whatever ran before a
publish is replaced by it, and what runs after it with the old generation
does nothing.

While Redis cannot be reached the limits hold for what can still be
counted (fail open to the machine: see L{ClusterCount}), which is logged
once, and once again when the cluster's count works again.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from twisted_chat.cluster.commands import Commands
    from twisted_chat.core.limits import MachineCount

#: the answer of a script whose generation is not the node's in Redis
STALE = "stale"

# Shared by the scripts: KEYS[1] the node's hash, KEYS[2] the set of nodes,
# KEYS[3] the total, KEYS[4] the node's alive key; ARGV[1] the generation,
# ARGV[2] the prefix of the sums' keys by address, ARGV[3] the node's id.
_COMMON = """
local function add(nodeKey, host, n)
  if redis.call('HINCRBY', nodeKey, 'h' .. host, n) <= 0 then redis.call('HDEL', nodeKey, 'h' .. host) end
  local hostKey = ARGV[2] .. 'host:' .. host
  if redis.call('INCRBY', hostKey, n) <= 0 then redis.call('DEL', hostKey) end
  redis.call('HINCRBY', nodeKey, '*', n)
  if redis.call('INCRBY', KEYS[3], n) <= 0 then redis.call('DEL', KEYS[3]) end
end
local function drop(nodeKey)
  local share = redis.call('HGETALL', nodeKey)
  for i = 1, #share, 2 do
    local field, n = share[i], tonumber(share[i + 1])
    if field == '*' then
      if redis.call('DECRBY', KEYS[3], n) <= 0 then redis.call('DEL', KEYS[3]) end
    elseif string.sub(field, 1, 1) == 'h' then
      local hostKey = ARGV[2] .. 'host:' .. string.sub(field, 2)
      if redis.call('DECRBY', hostKey, n) <= 0 then redis.call('DEL', hostKey) end
    end
  end
  redis.call('DEL', nodeKey)
end
"""

#: Apply the node's changes (pairs ADDRESS, DELTA from ARGV[9]); with
#: ARGV[4] > 0, refresh its alive key for that many ms and reap the nodes
#: whose alive key has expired; then, if ARGV[8] is "1", count a
#: connection from the address ARGV[5] unless that would pass ARGV[6] in all or ARGV[7] from
#: it (0: no limit). Returns {"ok", NODE, COUNT, ...: the nodes reaped and
#: their connections}, {the refusal's code}, or {"stale"}.
ACCOUNT = (
    _COMMON
    + """
if redis.call('HGET', KEYS[1], '#') ~= ARGV[1] then return {'stale'} end
for i = 9, #ARGV, 2 do add(KEYS[1], ARGV[i], tonumber(ARGV[i + 1])) end
local answer = {'ok'}
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[4], '1', 'PX', ARGV[4])
  for _, node in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if node ~= ARGV[3] and redis.call('EXISTS', ARGV[2] .. 'alive:' .. node) == 0 then
      local nodeKey = ARGV[2] .. 'node:' .. node
      answer[#answer + 1] = node
      answer[#answer + 1] = redis.call('HGET', nodeKey, '*') or '0'
      drop(nodeKey)
      redis.call('SREM', KEYS[2], node)
    end
  end
end
if ARGV[8] ~= '1' then return answer end
local host = ARGV[5]
local most, mostPerHost = tonumber(ARGV[6]), tonumber(ARGV[7])
if most > 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= most then return {'server-full'} end
if mostPerHost > 0 and tonumber(redis.call('GET', ARGV[2] .. 'host:' .. host) or '0') >= mostPerHost then
  return {'too-many-connections'}
end
add(KEYS[1], host, 1)
return answer
"""
)

#: Replace the node's share (pairs ADDRESS, COUNT from ARGV[5]) under the
#: generation ARGV[1], and set its alive key for ARGV[4] ms.
PUBLISH = (
    _COMMON
    + """
drop(KEYS[1])
redis.call('HSET', KEYS[1], '#', ARGV[1], '*', '0')
for i = 5, #ARGV, 2 do add(KEYS[1], ARGV[i], tonumber(ARGV[i + 1])) end
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SET', KEYS[4], '1', 'PX', ARGV[4])
return 'ok'
"""
)

#: Take the node's share off (it stops).
LEAVE = (
    _COMMON
    + """
drop(KEYS[1])
redis.call('SREM', KEYS[2], ARGV[3])
redis.call('DEL', KEYS[4])
return 'ok'
"""
)


def _text(reply: object) -> str:
    return reply.decode("utf-8") if isinstance(reply, bytes) else str(reply)


class NodeShare:
    """
    This node's connections, in all and by address.
    """

    def __init__(self) -> None:
        self.total = 0
        self.perHost: dict[str, int] = {}

    def add(self, host: str) -> None:
        self.perHost[host] = self.perHost.get(host, 0) + 1
        self.total += 1

    def remove(self, host: str) -> bool:
        """
        Take one connection from C{host} off; False if it had none.
        """
        count = self.perHost.get(host, 0)
        if count <= 0:
            return False
        if count == 1:
            del self.perHost[host]
        else:
            self.perHost[host] = count - 1
        self.total -= 1
        return True

    def refuses(self, host: str, maxConnections: int, maxPerHost: int) -> str:
        """
        The code of the refusal of one more connection from C{host} by
        this node's count alone, or "".
        """
        if maxConnections and self.total >= maxConnections:
            return "server-full"
        if maxPerHost and self.perHost.get(host, 0) >= maxPerHost:
            return "too-many-connections"
        return ""


class RedisCounts(Service):
    """
    This node's share of the cluster's connections in Redis (see the
    module's description), on the node's command connection C{redis}.
    C{limited()} says whether a limit is on now: a released connection is
    then taken off at once (after the current reactor turn), else with the
    next refresh.
    """

    _log = Logger()

    #: seconds between two refreshes, and seconds a node's share outlives
    #: its last refresh
    every = 1.0
    ttl = 10.0

    def __init__(self, redis: Commands, node: str, clock: IReactorTime, limited: Callable[[], bool]) -> None:
        self.redis = redis
        self.node = node
        self.clock = clock
        self.limited = limited
        self.share = NodeShare()
        #: changes of the share not sent yet
        self.pending: dict[str, int] = {}
        self._token = secrets.token_hex(6)
        self._published = 0
        self.generation = ""
        #: the connection the share was last published on (None: publish)
        self._publishedOn: object = None
        self._loop: LoopingCall | None = None
        self._flushing: IDelayedCall | None = None
        #: a refresh failed (and was logged) since the last one that worked
        self._failing = False

    def key(self, *parts: str) -> str:
        return self.redis.key("limits", *parts)

    def _keys(self) -> list[str]:
        return [self.key("node", self.node), self.key("nodes"), self.key("total"), self.key("alive", self.node)]

    @property
    def connected(self) -> bool:
        return self.redis.connected

    # the service: refreshes

    def start(self) -> None:
        """
        Refresh every L{every} seconds from now on (once the node has
        joined the cluster).
        """
        if self._loop is None and self.running:
            loop = self._loop = LoopingCall(self.refresh)
            loop.clock = self.clock
            loop.start(self.every, now=True)

    def stopService(self) -> Deferred[None] | None:
        """
        Stop refreshing, and take this node's share off the cluster's count
        (its connections are gone by now).
        """
        Service.stopService(self)
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        flushing, self._flushing = self._flushing, None
        if flushing is not None and flushing.active():
            flushing.cancel()
        redis = self.redis
        if not redis.connected or self._publishedOn is None:
            return None
        args = [self.generation, self.key(""), self.node]
        d = redis.timed(redis.eval(LEAVE, self._keys(), args))
        return d.addCallbacks(lambda _: None, lambda f: None)

    def refresh(self) -> Deferred[None] | None:
        """
        Send the changes of this node's share, say it lives, reap the
        nodes that do not. A failure is logged once, until one works.
        """
        if not self.redis.connected:
            return None

        def worked(_: object) -> None:
            if self._failing:
                self._log.info("cluster-wide connection limits: this node's share is refreshed again")
            self._failing = False

        def failed(f: Failure) -> None:
            if not self._failing:
                self._log.warn(
                    "cluster-wide connection limits: could not refresh this node's share: {why}", why=f.getErrorMessage()
                )
            self._failing = True

        return self._account("", 0, 0, alive=True).addCallbacks(worked, failed)

    def flush(self) -> None:
        """
        Send the changes of this node's share now (a failure is left to
        the next refresh, which publishes the whole share again).
        """
        self._flushing = None
        if self.redis.connected:
            self._account("", 0, 0, alive=False).addErrback(lambda f: None)

    # what the node's admission uses

    def ask(self, host: str, maxConnections: int, maxPerHost: int) -> Deferred[str]:
        """
        Count one more connection from C{host} for the cluster unless that
        would pass a limit: fires with "" (counted) or the refusal's code;
        fails if Redis did not answer (nothing is counted then).
        """

        def answered(code: str) -> str:
            if code != "ok":
                return code
            self.share.add(host)
            return ""

        return self._account(host, maxConnections, maxPerHost, alive=False, admit=True).addCallback(answered)

    def tell(self, host: str) -> None:
        """
        Count one more connection from C{host} (sent with the next refresh).
        """
        self.share.add(host)
        self.pending[host] = self.pending.get(host, 0) + 1

    def release(self, host: str) -> None:
        """
        A connection from C{host} is gone.
        """
        if not self.share.remove(host):
            return
        self.pending[host] = self.pending.get(host, 0) - 1
        if self.limited() and self._flushing is None and self.redis.connected:
            self._flushing = self.clock.callLater(0, self.flush)

    # the scripts

    def _account(
        self, host: str, maxConnections: int, maxPerHost: int, alive: bool, admit: bool = False, retry: bool = True
    ) -> Deferred[str]:
        redis = self.redis
        if not redis.connected:
            return fail(ConnectionError("Redis is not connected"))
        if self._publishedOn is not redis.connection:
            self._publish()
        generation = self.generation
        pending, self.pending = self.pending, {}
        args = [generation, self.key(""), self.node, str(int(self.ttl * 1000)) if alive else "0"]
        args += [host, str(maxConnections), str(maxPerHost), "1" if admit else ""]
        for changed, delta in pending.items():
            if delta:
                args += [changed, str(delta)]

        def answered(reply: object) -> Deferred[str] | str:
            items = [_text(item) for item in reply] if isinstance(reply, (list, tuple)) else [_text(reply)]
            code = items[0] if items else ""
            for node, count in zip(items[1::2], items[2::2]):
                self._log.info(
                    "cluster-wide connection limits: node {node} is gone: its {count} connections are released",
                    node=node,
                    count=count,
                )
            if code == STALE:
                # (the share is not in Redis as this node left it: publish
                # it again, with the changes just lost in it)
                if self.generation == generation:
                    self._publishedOn = None
                if retry:
                    return self._account(host, maxConnections, maxPerHost, alive, admit, retry=False)
                raise ConnectionError("the node's share of connections is not in Redis")
            if code == "ok" and admit and self.generation != generation:
                # (counted in Redis before a publish that replaced the share
                # without it: count it again)
                self.pending[host] = self.pending.get(host, 0) + 1
            return code

        def failed(f: Failure) -> Failure:
            # (whether it ran is not known: publish the share again)
            if self.generation == generation:
                self._publishedOn = None
            return f

        d = redis.timed(redis.eval(ACCOUNT, self._keys(), args))
        return d.addCallbacks(answered, failed)

    def _publish(self) -> None:
        """
        Send this node's whole share under a new generation (the changes
        not sent yet are in it).
        """
        redis = self.redis
        self._published += 1
        generation = self.generation = "%s.%d" % (self._token, self._published)
        self._publishedOn = redis.connection
        self.pending = {}
        args = [generation, self.key(""), self.node, str(int(self.ttl * 1000))]
        for host, count in self.share.perHost.items():
            args += [host, str(count)]

        def failed(f: Failure) -> None:
            if self.generation == generation:
                self._publishedOn = None

        redis.timed(redis.eval(PUBLISH, self._keys(), args)).addErrback(failed)


class ClusterCount:
    """
    The L{MachineCount} of a node's admission with C{--limits-scope
    cluster}: the cluster's count in Redis (L{RedisCounts}), and, while
    Redis cannot be reached, the machine's (C{machine}: a C{--workers}
    parent's count, told of every connection all along) or else this
    node's own count.
    """

    _log = Logger()

    def __init__(self, counts: RedisCounts, machine: MachineCount | None = None) -> None:
        self.counts = counts
        self.machine = machine
        self._alone = False

    @property
    def connected(self) -> bool:
        # (always: this node's own count is the last resort)
        return True

    def _machine(self) -> MachineCount | None:
        machine = self.machine
        return machine if machine is not None and machine.connected else None

    def _fellBack(self, why: str) -> None:
        if not self._alone:
            self._alone = True
            self._log.warn(
                "cluster-wide connection limits: {why}; the limits hold for this {scope} until it is back",
                why=why,
                scope="machine" if self._machine() is not None else "node",
            )

    def _clusterAgain(self) -> None:
        if self._alone:
            self._alone = False
            self._log.info("cluster-wide connection limits: counted in Redis again")

    def ask(self, host: str, maxConnections: int, maxPerHost: int) -> Deferred[str]:
        counts = self.counts
        if not counts.connected:
            self._fellBack("Redis is unreachable")
            return self._askHere(host, maxConnections, maxPerHost)
        local = counts.share.refuses(host, maxConnections, maxPerHost)
        if local:
            # (past a limit on this node alone: past it in the cluster too)
            return succeed(local)

        def answered(code: str) -> str:
            self._clusterAgain()
            machine = self._machine()
            if not code and machine is not None:
                machine.tell(host)
            return code

        def failed(f: Failure) -> Deferred[str]:
            self._fellBack("Redis did not answer (%s)" % (f.getErrorMessage(),))
            return self._askHere(host, maxConnections, maxPerHost)

        return counts.ask(host, maxConnections, maxPerHost).addCallbacks(answered, failed)

    def _askHere(self, host: str, maxConnections: int, maxPerHost: int) -> Deferred[str]:
        """
        Without Redis: the machine's count decides (or this node's).
        """
        machine = self._machine()
        if machine is None:
            code = self.counts.share.refuses(host, maxConnections, maxPerHost)
            if not code:
                self.counts.tell(host)
            return succeed(code)

        def answered(code: str) -> str:
            if not code:
                self.counts.tell(host)
            return code

        def failed(f: Failure) -> str:
            self.counts.tell(host)
            return ""

        return machine.ask(host, maxConnections, maxPerHost).addCallbacks(answered, failed)

    def tell(self, host: str) -> None:
        self.counts.tell(host)
        machine = self._machine()
        if machine is not None:
            machine.tell(host)

    def release(self, host: str) -> None:
        self.counts.release(host)
        machine = self.machine
        if machine is not None and machine.connected:
            machine.release(host)
