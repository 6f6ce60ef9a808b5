# -*- test-case-name: tests.cluster.test_protocol -*-
"""
The Lua scripts a node runs in Redis, each next to the function that runs
it (which lays out its KEYS and ARGV): storing a message, and changing
presence and bans, each as one atomic step with the bus message that
announces it. Those of updates (edits, deletions, reactions) and of
reading a room as it is now are in L{twisted_chat.cluster.updates}. The bodies the scripts publish are built from the fields of
L{twisted_chat.cluster.protocol} (L{luaTable}); the ones a node builds
itself come as an argument, encoded there too.

Keys are passed as KEYS where a script touches one known key; the
presence scripts build per-node keys from the prefix (a single Redis, not
Redis Cluster).
"""

from __future__ import annotations

import secrets
from typing import Mapping

from twisted.internet.defer import Deferred

from twisted_chat.cluster.commands import Commands
from twisted_chat.cluster.protocol import (
    BanAdded,
    BanLifted,
    MemberAdded,
    MemberGone,
    MemberJoined,
    MemberParted,
    MemberRenamed,
    MemberShared,
    MemberState,
    NodeDown,
    NodeRegistered,
    PrivateMessage,
    RoomMessage,
    encode,
    luaTable,
    wireKey,
)
from twisted_chat.cluster.shards import shardOf
from twisted_chat.core.events import Message, Private
from twisted_chat.core.names import nickKey


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _text(reply: object) -> str:
    return reply.decode("utf-8") if isinstance(reply, bytes) else str(reply)


def _refKey(redis: Commands, sender: str, ref: str | None) -> str:
    return redis.key("ref", nickKey(sender), ref or "")


#: state entries (of changed messages) a script trims at most in one call;
#: the rest go in the next (see _TRIM)
TRIM_BATCH = 200

# Trimming the state hashes of updates (see twisted_chat.cluster.updates):
# a changed message's state entries are indexed by id in a sorted set (a
# room's: PREFIX:stx:ROOM; a nick's private ones: PREFIX:pstx:NICKKEY, both
# parties' sets holding the id, the field "r" .. id of PREFIX:pst counting
# them). Those below the first id a stream keeps can never be read again
# (READ starts there): each script that moves a stream's start drops up to
# TRIM_BATCH of them, the entry of a private message once neither party's
# stream keeps it. Cheap when there is nothing to trim: the lowest id of the
# index and the first of the stream; a new message (SAY, PRIVATE) looks
# only when its XTRIM dropped entries. A room whose stream is empty (pruned
# by age) has nothing readable below its next id. A room's bound is its
# horizon (PREFIX:sth:ROOM), set where the stream is trimmed (SAY's XTRIM,
# PRUNE): not its first entry, which is later than the horizon when the
# messages just after it were deleted (XDEL) — those stay (as deleted)
# until a trim passes them.
_TRIM = """
local function horizon(h, hz, seq)
  local first = redis.call('XRANGE', h, '-', '+', 'COUNT', 1)
  if first[1] then
    redis.call('SET', hz, tonumber(string.match(first[1][1], '^(%%d+)')))
  else
    redis.call('SET', hz, tonumber(redis.call('GET', seq) or '0') + 1)
  end
end
local function trim(h, st, idx, hz)
  local low = redis.call('ZRANGE', idx, 0, 0, 'WITHSCORES')
  if not low[1] then return 0 end
  local bound = tonumber(redis.call('GET', hz) or '0')
  if tonumber(low[2]) >= bound then return 0 end
  local gone = redis.call('ZRANGEBYSCORE', idx, '-inf', '(' .. bound, 'LIMIT', 0, %d)
  for _, id in ipairs(gone) do redis.call('HDEL', st, id, 'e' .. id) end
  redis.call('ZREM', idx, unpack(gone))
  return #gone
end
local function ptrim(pm, idx, st)
  local low = redis.call('ZRANGE', idx, 0, 0, 'WITHSCORES')
  if not low[1] then return 0 end
  local first = redis.call('XRANGE', pm, '-', '+', 'COUNT', 1)
  local bound = '+inf'
  if first[1] then
    local f = tonumber(string.match(first[1][1], '^(%%d+)'))
    if tonumber(low[2]) >= f then return 0 end
    bound = '(' .. f
  end
  local gone = redis.call('ZRANGEBYSCORE', idx, '-inf', bound, 'LIMIT', 0, %d)
  for _, id in ipairs(gone) do
    if redis.call('HINCRBY', st, 'r' .. id, -1) <= 0 then redis.call('HDEL', st, id, 'e' .. id, 'r' .. id) end
  end
  redis.call('ZREM', idx, unpack(gone))
  return #gone
end
local function pindex(idx, st, id)
  if redis.call('ZADD', idx, id, id) == 1 then redis.call('HINCRBY', st, 'r' .. id, 1) end
end
""" % (TRIM_BATCH, TRIM_BATCH)


# Messages: give the message the next id (and the epoch, made if Redis has
# none), store it in its stream(s), remember the sender's ref, publish it.
# A ref seen before returns the message stored with it, unchanged.

SAY = _TRIM + """
local e = redis.call('GET', KEYS[1])
if not e then e = ARGV[1]; redis.call('SET', KEYS[1], e) end
if ARGV[7] == '1' then
  local old = redis.call('GET', KEYS[4])
  if old then return old end
end
local id = redis.call('INCR', KEYS[2])
local body = cjson.encode(%s)
redis.call('XADD', KEYS[3], id .. '-1', 'm', body)
if redis.call('XTRIM', KEYS[3], 'MAXLEN', '~', ARGV[9]) > 0 then
  horizon(KEYS[3], KEYS[10], KEYS[2])
  trim(KEYS[3], KEYS[8], KEYS[9], KEYS[10])
end
redis.call('SADD', KEYS[5], ARGV[2])
if ARGV[7] == '1' then redis.call('SET', KEYS[4], body, 'EX', ARGV[8]) end
local bus = KEYS[6]
if ARGV[14] ~= '0' and redis.call('GET', KEYS[7]) == ARGV[14] then bus = ARGV[13] end
redis.call('PUBLISH', bus, body)
return body
""" % luaTable(
    RoomMessage,
    room="ARGV[2]",
    id="id",
    epoch="e",
    sender="ARGV[3]",
    text="ARGV[4]",
    time="tonumber(ARGV[5])",
    action="(ARGV[6] == '1')",
    node="ARGV[10]",
    replyTo="tonumber(ARGV[11])",
    mentions="ARGV[12]",
)


def say(
    redis: Commands, message: Message, ref: str | None, node: str, refWindow: float, retain: int, shards: int = 0
) -> Deferred[str]:
    """
    Store room C{message} (keeping about C{retain} messages of its room);
    fires with the body of the stored L{RoomMessage}. It is published on
    the channel of its room's shard (of C{shards}) when the cluster's bus
    is sharded in as many (see L{sharding}), else on the common bus.
    """
    room = message.room
    keys = [
        redis.key("epoch"), redis.key("seq", room), redis.key("h", room), _refKey(redis, message.sender, ref),
        redis.key("rooms"), redis.key("bus"), redis.key("shards"), redis.key("st", room), redis.key("stx", room),
        redis.key("sth", room),
    ]
    args = [
        secrets.token_hex(4), room, message.sender, message.text, repr(message.time), _flag(message.action),
        _flag(ref is not None), str(int(refWindow)), str(retain), node, str(message.replyTo),
        " ".join(message.mentions), shardChannel(redis, room, shards) if shards else "", str(shards),
    ]
    return redis.eval(SAY, keys, args).addCallback(_text)


def shardChannel(redis: Commands, room: str, shards: int) -> str:
    """
    The channel of C{room}'s shard, of C{shards}.
    """
    return redis.key("bus", str(shardOf(room, shards)))


# The sharded bus: room messages go to their shard's channel once every
# node of the cluster asks for the same number of shards (nodes of a
# version before the sharded bus ask for none: while one is registered,
# every room message stays on the common bus, which every node hears).
# KEYS: nodes, each node's number of shards, the number in use. ARGV:
# node, its number (0: none). Returns the number in use ('0': none).
SHARDING = """
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local used = nil
for _, n in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local c = redis.call('HGET', KEYS[2], n)
  if not c or c == '0' or (used and c ~= used) then used = '0'; break end
  used = c
end
for _, n in ipairs(redis.call('HKEYS', KEYS[2])) do
  if n ~= ARGV[1] and redis.call('SISMEMBER', KEYS[1], n) == 0 then redis.call('HDEL', KEYS[2], n) end
end
if used and used ~= '0' then
  redis.call('SET', KEYS[3], used)
  return used
end
redis.call('DEL', KEYS[3])
return '0'
"""


def sharding(redis: Commands, node: str, shards: int) -> Deferred[int]:
    """
    Tell the cluster that C{node} hears C{shards} shards (it is subscribed
    to those of its rooms); fires with the number of shards room messages
    are published on now (0: the common bus).
    """
    keys = [redis.key("nodes"), redis.key("shardcounts"), redis.key("shards")]
    return redis.eval(SHARDING, keys, [node, str(shards)]).addCallback(lambda n: int(_text(n)))


PRIVATE = _TRIM + """
local e = redis.call('GET', KEYS[1])
if not e then e = ARGV[1]; redis.call('SET', KEYS[1], e) end
if ARGV[6] == '1' then
  local old = redis.call('GET', KEYS[5])
  if old then return old end
end
local id = redis.call('INCR', KEYS[2])
local body = cjson.encode(%s)
redis.call('XADD', KEYS[3], id .. '-1', 'p', body)
if redis.call('XTRIM', KEYS[3], 'MAXLEN', '~', ARGV[8]) > 0 then ptrim(KEYS[3], KEYS[7], KEYS[6]) end
if KEYS[4] ~= KEYS[3] then
  redis.call('XADD', KEYS[4], id .. '-1', 'p', body)
  if redis.call('XTRIM', KEYS[4], 'MAXLEN', '~', ARGV[8]) > 0 then ptrim(KEYS[4], KEYS[8], KEYS[6]) end
end
if ARGV[6] == '1' then redis.call('SET', KEYS[5], body, 'EX', ARGV[7]) end
for i = 12, #ARGV do redis.call('PUBLISH', ARGV[i], body) end
return body
""" % luaTable(
    PrivateMessage,
    id="id",
    sender="ARGV[2]",
    recipient="ARGV[3]",
    text="ARGV[4]",
    time="tonumber(ARGV[5])",
    node="ARGV[9]",
    replyTo="tonumber(ARGV[11])",
)

#: the (shared) sequence of private message ids
_PRIVATE_SEQUENCE = "@private"


def private(
    redis: Commands, message: Private, ref: str | None, node: str, refWindow: float, retain: int, channels: list[str]
) -> Deferred[str]:
    """
    Store private C{message} in the streams of both nicks and publish it
    on C{channels} (the other nodes of its recipient and sender); fires
    with the body of the stored L{PrivateMessage}.
    """
    keys = [
        redis.key("epoch"), redis.key("seq", _PRIVATE_SEQUENCE), redis.key("pm", nickKey(message.sender)),
        redis.key("pm", nickKey(message.recipient)), _refKey(redis, message.sender, ref), redis.key("pst"),
        redis.key("pstx", nickKey(message.sender)), redis.key("pstx", nickKey(message.recipient)),
    ]
    args = [
        secrets.token_hex(4), message.sender, message.recipient, message.text, repr(message.time),
        _flag(ref is not None), str(int(refWindow)), str(retain), node, "", str(message.replyTo), *channels,
    ]
    return redis.eval(PRIVATE, keys, args).addCallback(_text)


# Presence. A nick is claimed by one node (the nicks hash: key -> node);
# its owner may be connected on other nodes too (one person, several
# devices), each listing it in its members hash. When the claiming node
# lets go of it, the claim passes to another node that has it
# (_HAND_OVER, in the scripts that release a claim: KEYS[1] is the nicks
# hash, the nodes set is PREFIX:nodes).
_HAND_OVER = """
local function release(prefix, k, n)
  if redis.call('HGET', KEYS[1], k) ~= n then return end
  redis.call('HDEL', KEYS[1], k)
  for _, other in ipairs(redis.call('SMEMBERS', prefix .. ':nodes')) do
    if other ~= n and redis.call('HEXISTS', prefix .. ':m:' .. other, k) == 1 then
      redis.call('HSET', KEYS[1], k, other)
      return
    end
  end
end
"""

# KEYS: nicks, members of this node, bus, owner tokens. ARGV: key, nick,
# node, proof, state. Returns the node that holds the nick (not taken), or
# ''. With a proof that the member is the nick's owner ('*': logged in;
# else the hash of the owner token it presented, which must be the one the
# cluster keeps, if it keeps one), a nick another node holds is shared
# with it (announced as MemberShared) instead.
CLAIM = """
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder and holder ~= ARGV[3] then
  local proof = ARGV[4]
  local owner = proof == '*' or (proof ~= '' and (redis.call('HGET', KEYS[4], ARGV[1]) or proof) == proof)
  if not owner then return holder end
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
  redis.call('PUBLISH', KEYS[3], cjson.encode(%s))
  return ''
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
redis.call('PUBLISH', KEYS[3], cjson.encode(%s))
return ''
""" % (
    luaTable(MemberShared, node="ARGV[3]", key="ARGV[1]", nick="ARGV[2]"),
    luaTable(MemberAdded, node="ARGV[3]", key="ARGV[1]", nick="ARGV[2]", previous="''"),
)


def claim(redis: Commands, node: str, nick: str, proof: str, state: MemberState) -> Deferred[str]:
    """
    Claim C{nick} for a member of C{node} and announce it (L{MemberAdded});
    with a C{proof} that it is the nick's owner (C{"*"}: logged in; else
    the hash of the owner token it presented; C{""}: none), share it with
    the node that holds it instead (L{MemberShared}). Fires with the node
    that holds it when it was not taken, or C{""}.
    """
    keys = [redis.key("nicks"), redis.key("m", node), redis.key("bus"), redis.key("tok")]
    args = [nickKey(nick), nick, node, proof, state.encode()]
    return redis.eval(CLAIM, keys, args).addCallback(_text)


# KEYS: nicks, members of this node, bus. ARGV: old key, new key, node,
# state, event
RENAME = """
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


def rename(redis: Commands, state: MemberState, event: MemberRenamed) -> Deferred[str]:
    """
    Move a member's claim to its new nick and announce C{event}; fires with
    the node that holds the new nick instead, or C{""}.
    """
    keys = [redis.key("nicks"), redis.key("m", event.node), redis.key("bus")]
    args = [event.key, event.newKey, event.node, state.encode(), encode(event)]
    return redis.eval(RENAME, keys, args).addCallback(_text)


# KEYS: members of this node, bus. ARGV: key, state, event
STATE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
"""


def moved(redis: Commands, state: MemberState, event: MemberJoined | MemberParted) -> Deferred[object]:
    """
    Keep a member's new rooms and announce C{event}.
    """
    keys = [redis.key("m", event.node), redis.key("bus")]
    return redis.eval(STATE, keys, [event.key, state.encode(), encode(event)])


# KEYS: nicks, members of this node, bus. ARGV: key, node, event, prefix
GONE = _HAND_OVER + """
redis.call('HDEL', KEYS[2], ARGV[1])
release(ARGV[4], ARGV[1], ARGV[2])
redis.call('PUBLISH', KEYS[3], ARGV[3])
return 1
"""


def gone(redis: Commands, event: MemberGone) -> Deferred[object]:
    """
    Release a member's claim (to another node that has the nick, if any)
    and announce C{event}.
    """
    keys = [redis.key("nicks"), redis.key("m", event.node), redis.key("bus")]
    return redis.eval(GONE, keys, [event.key, event.node, encode(event), redis.prefix])


# Remove the members of dead nodes (or, with ARGV[3] == '1', of node
# ARGV[2] itself: a restarted node clearing what its previous life left).
# KEYS: nicks, nodes, bus. ARGV: prefix, this node, self, why they left
REAP = _HAND_OVER + """
local reaped = 0
local function reap(n)
  local flat = redis.call('HGETALL', ARGV[1] .. ':m:' .. n)
  local members = {}
  redis.call('DEL', ARGV[1] .. ':m:' .. n)
  redis.call('SREM', KEYS[2], n)
  for i = 1, #flat, 2 do
    release(ARGV[1], flat[i], n)
    members[flat[i]] = flat[i + 1]
  end
  if #flat > 0 then redis.call('PUBLISH', KEYS[3], cjson.encode(%s)) end
  reaped = reaped + 1
end
if ARGV[3] == '1' then
  reap(ARGV[2])
else
  for _, n in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if n ~= ARGV[2] and redis.call('EXISTS', ARGV[1] .. ':alive:' .. n) == 0 then reap(n) end
  end
end
return reaped
""" % luaTable(NodeDown, node="n", members="members", reason="ARGV[4]")


def reap(redis: Commands, node: str, own: bool, why: str) -> Deferred[object]:
    """
    Remove the members of dead nodes (with C{own}: of C{node} itself), each
    node's announced once (L{NodeDown}) as leaving for C{why}; a nick
    one of them held passes to another node that has it, if any.
    """
    keys = [redis.key("nicks"), redis.key("nodes"), redis.key("bus")]
    return redis.eval(REAP, keys, [redis.prefix, node, _flag(own), why])


# Register this node with its current members (start-up, or after Redis
# came back). KEYS: nicks, nodes, bus, owner tokens. ARGV: prefix, node,
# incarnation, ttl ms, then key, state, proof triples (proof: '' for a
# member that is not its nick's owner, '*' for one logged in with the
# nick's password, else the hash of the owner token it presented). An owner
# may be connected on other nodes too: its member shares a nick another
# node holds if its token is the one the cluster knows for the nick (or
# none is known: Redis came back empty). Returns the keys other nodes hold
# now, of the members that do not share them. The nick claims
# of members it had and has no more (they left while it could not tell
# Redis) are released; a claim whose node no longer lists the nick is
# stale and taken.
REGISTER = _HAND_OVER + """
local n = ARGV[2]
redis.call('SADD', KEYS[2], n)
redis.call('SET', ARGV[1] .. ':alive:' .. n, ARGV[3], 'PX', ARGV[4])
local now = {}
for i = 5, #ARGV, 3 do now[ARGV[i]] = true end
local before = redis.call('HKEYS', ARGV[1] .. ':m:' .. n)
redis.call('DEL', ARGV[1] .. ':m:' .. n)
for _, k in ipairs(before) do
  if not now[k] then release(ARGV[1], k, n) end
end
local lost = {}
local members = {}
for i = 5, #ARGV, 3 do
  local k = ARGV[i]
  local holder = redis.call('HGET', KEYS[1], k)
  if holder and holder ~= n and redis.call('HEXISTS', ARGV[1] .. ':m:' .. holder, k) == 0 then holder = nil end
  local proof = ARGV[i + 2]
  local owner = proof == '*' or (proof ~= '' and (redis.call('HGET', KEYS[4], k) or proof) == proof)
  if holder and holder ~= n and not owner then
    table.insert(lost, k)
  else
    if not holder then redis.call('HSET', KEYS[1], k, n) end
    redis.call('HSET', ARGV[1] .. ':m:' .. n, k, ARGV[i + 1])
    members[k] = ARGV[i + 1]
  end
end
redis.call('PUBLISH', KEYS[3], cjson.encode(%s))
return lost
""" % luaTable(NodeRegistered, node="n", members="members")


def register(
    redis: Commands, node: str, incarnation: str, ttl: float, members: dict[str, MemberState],
    owners: Mapping[str, str] = {},
) -> Deferred[list[str]]:
    """
    Register C{node} (alive for C{ttl} seconds) with its C{members} (nick
    key -> state; C{owners}: nick key -> the proof that the member is its
    nick's owner, who may be connected on other nodes too: the hash of
    its owner token, or C{"*"} when logged in) and announce it
    (L{NodeRegistered}); fires with the keys of those whose nick another
    node holds now.
    """
    keys = [redis.key("nicks"), redis.key("nodes"), redis.key("bus"), redis.key("tok")]
    args = [redis.prefix, node, incarnation, str(int(ttl * 1000))]
    for key, state in members.items():
        args += [key, state.encode(), owners.get(key, "")]

    def lost(reply: object) -> list[str]:
        return [_text(key) for key in reply] if isinstance(reply, list) else []

    return redis.eval(REGISTER, keys, args).addCallback(lost)


# Bans. KEYS: the room's bans, rooms with bans, bus. ARGV: key, host, room,
# event
BAN = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('PUBLISH', KEYS[3], ARGV[4])
return 1
"""


def ban(redis: Commands, event: BanAdded) -> Deferred[object]:
    """
    Keep the ban and announce C{event}.
    """
    keys = [redis.key("bans", event.room), redis.key("banrooms"), redis.key("bus")]
    return redis.eval(BAN, keys, [event.key, event.host, event.room, encode(event)])


# KEYS: the room's bans, bus. ARGV: key, event
UNBAN = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[2])
return 1
"""


def unban(redis: Commands, event: BanLifted) -> Deferred[object]:
    """
    Forget the ban and announce C{event}.
    """
    return redis.eval(UNBAN, [redis.key("bans", event.room), redis.key("bus")], [event.key, encode(event)])


# Retention. Delete messages older than ARGV[1] from stream KEYS[1].
PRUNE = _TRIM + """
local cutoff = tonumber(ARGV[1])
local n = 0
while true do
  local batch = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 100)
  if #batch == 0 then break end
  local stop = false
  for _, entry in ipairs(batch) do
    local body = cjson.decode(entry[2][2])
    if body['%s'] >= cutoff then stop = true; break end
    redis.call('XDEL', KEYS[1], entry[1])
    n = n + 1
  end
  if stop then break end
end
if n > 0 then horizon(KEYS[1], KEYS[2], KEYS[3]) end
return n
""" % wireKey(RoomMessage, "time")


def prune(redis: Commands, room: str, cutoff: float) -> Deferred[int]:
    """
    Delete the messages of C{room} older than C{cutoff}; fires with how many.
    """
    keys = [redis.key("h", room), redis.key("sth", room), redis.key("seq", room)]
    return redis.eval(PRUNE, keys, [repr(cutoff)]).addCallback(
        lambda n: int(n) if isinstance(n, (int, str)) else 0
    )
