# -*- test-case-name: tests.cluster.test_protocol -*-
"""
The Lua scripts of updates (edits, deletions, reactions), each next to the
function that runs it (which lays out its KEYS and ARGV): storing a room's
or a private update and changing its message, as one atomic step with the
bus message that announces it, and reading a room's entries as they are
now. Bodies are built from the fields of L{twisted_chat.cluster.protocol}
(L{luaTable}, L{wireKey}), as in L{twisted_chat.cluster.scripts}, whose
keys (refs, shards, the private sequence) these scripts share.
"""

from __future__ import annotations

import secrets

from twisted.internet.defer import Deferred

from twisted_chat.cluster.commands import Commands
from twisted_chat.cluster.protocol import (
    PrivateMessage,
    PrivateUpdateMessage,
    RoomUpdate,
    decode,
    luaTable,
    wireKey,
)
from twisted_chat.cluster.scripts import _PRIVATE_SEQUENCE, _TRIM, TRIM_BATCH, _flag, _refKey, _text, shardChannel
from twisted_chat.core.events import PrivateUpdate, Update
from twisted_chat.core.names import nickKey


# Updates (edits, deletions, reactions). The message as it is now is kept
# in the state hash (KEYS[5]: field id -> its body with the keys ed (last
# edit), dl (deleted) and rx (reactions, JSON) besides a RoomMessage's; the
# field "e" .. id lists the ids of its edits). A deletion removes the text
# from the stream: the message's entry and its edits' are XDEL'd, and their
# bodies without text stay in the state hash, where reads find them (READ).
# The ids of a room's state entries are indexed in KEYS[8], for trimming
# them once the stream no longer keeps them (see scripts._TRIM).

_APPLY = """
local function apply(cur, op, sender, text, mentions, time, emoji, on)
  local msg = cjson.decode(cur)
  if op == 'edit' then
    if not msg.dl then msg.x = text; msg.mn = mentions; msg.ed = time end
  elseif op == 'delete' then
    msg.x = ''; msg.mn = ''; msg.dl = true; msg.rx = nil
  elseif not msg.dl then
    local rx = {}
    if msg.rx and msg.rx ~= '' then rx = cjson.decode(msg.rx) end
    local list = rx[emoji] or {}
    local found = nil
    for i, n in ipairs(list) do if string.lower(n) == string.lower(sender) then found = i end end
    if on and not found then table.insert(list, sender) end
    if (not on) and found then table.remove(list, found) end
    if #list == 0 then rx[emoji] = nil else rx[emoji] = list end
    if next(rx) == nil then msg.rx = nil else msg.rx = cjson.encode(rx) end
  end
  return msg
end
local function current(st, h, target)
  local cur = redis.call('HGET', st, target)
  if not cur then
    local r = redis.call('XRANGE', h, target .. '-1', target .. '-1')
    if r[1] then cur = r[1][2][2] end
  end
  return cur
end
local function noteEdit(st, target, id)
  local edits = redis.call('HGET', st, 'e' .. target)
  redis.call('HSET', st, 'e' .. target, (edits or '') .. ' ' .. id)
end
"""

UPDATE = _APPLY + _TRIM + """
local e = redis.call('GET', KEYS[1])
if not e then e = ARGV[1]; redis.call('SET', KEYS[1], e) end
if ARGV[11] == '1' then
  local old = redis.call('GET', KEYS[4])
  if old then return old end
end
local op, target = ARGV[4], ARGV[5]
local text, mentions = ARGV[6], ARGV[10]
local cur = current(KEYS[5], KEYS[3], target)
local original, author = '', ''
if cur and string.find(cur, '"t":"m"', 1, true) then
  local was = cjson.decode(cur)
  original = was.x; author = was.n
  if was.dl and op ~= 'delete' then text = ''; mentions = '' end
  local msg = apply(cur, op, ARGV[3], text, mentions, tonumber(ARGV[7]), ARGV[8], ARGV[9] == '1')
  redis.call('HSET', KEYS[5], target, cjson.encode(msg))
  redis.call('ZADD', KEYS[8], target, target)
  if op == 'delete' then
    redis.call('XDEL', KEYS[3], target .. '-1')
    local edits = redis.call('HGET', KEYS[5], 'e' .. target)
    if edits then
      for eid in string.gmatch(edits, '%%d+') do
        local r = redis.call('XRANGE', KEYS[3], eid .. '-1', eid .. '-1')
        if r[1] then
          local u = cjson.decode(r[1][2][2])
          u.x = ''; u.mn = ''
          redis.call('HSET', KEYS[5], eid, cjson.encode(u))
          redis.call('ZADD', KEYS[8], eid, eid)
          redis.call('XDEL', KEYS[3], eid .. '-1')
        end
      end
      redis.call('HDEL', KEYS[5], 'e' .. target)
    end
  end
end
local id = redis.call('INCR', KEYS[2])
local update = %s
local body = cjson.encode(update)
redis.call('XADD', KEYS[3], id .. '-1', 'm', body)
if op == 'edit' and author ~= '' then noteEdit(KEYS[5], target, id) end
if redis.call('XTRIM', KEYS[3], 'MAXLEN', '~', ARGV[13]) > 0 then horizon(KEYS[3], KEYS[9], KEYS[2]) end
trim(KEYS[3], KEYS[5], KEYS[8], KEYS[9])
if ARGV[11] == '1' then redis.call('SET', KEYS[4], body, 'EX', ARGV[12]) end
update['%s'] = original
update['%s'] = author
local sent = cjson.encode(update)
local bus = KEYS[6]
if ARGV[16] ~= '0' and redis.call('GET', KEYS[7]) == ARGV[16] then bus = ARGV[15] end
redis.call('PUBLISH', bus, sent)
return sent
""" % (
    luaTable(
        RoomUpdate,
        room="ARGV[2]",
        id="id",
        epoch="e",
        sender="ARGV[3]",
        op="op",
        target="tonumber(target)",
        text="text",
        time="tonumber(ARGV[7])",
        emoji="ARGV[8]",
        on="(ARGV[9] == '1')",
        mentions="mentions",
        original="''",
        author="''",
        node="ARGV[14]",
    ),
    wireKey(RoomUpdate, "original"),
    wireKey(RoomUpdate, "author"),
)


def update(
    redis: Commands, update: Update, ref: str | None, node: str, refWindow: float, retain: int, shards: int = 0
) -> Deferred[str]:
    """
    Store room C{update} (an entry of its room's sequence) and change its
    message; fires with the body of the stored L{RoomUpdate}, published as
    L{twisted_chat.cluster.scripts.say} publishes a message (on its room's
    shard, or the common bus).
    """
    room = update.room
    keys = [
        redis.key("epoch"), redis.key("seq", room), redis.key("h", room), _refKey(redis, update.sender, ref),
        redis.key("st", room), redis.key("bus"), redis.key("shards"), redis.key("stx", room), redis.key("sth", room),
    ]
    args = [
        secrets.token_hex(4), room, update.sender, update.op, str(update.target), update.text, repr(update.time),
        update.emoji, _flag(update.on), " ".join(update.mentions), _flag(ref is not None), str(int(refWindow)),
        str(retain), node, shardChannel(redis, room, shards) if shards else "", str(shards),
    ]
    return redis.eval(UPDATE, keys, args).addCallback(_text)


# A room's entries as they are now: KEYS h, st, seq; ARGV lo, hi (0: the
# last), count, reverse ('1'), messages only ('1'). Entries are read from the
# stream, each replaced by its body in the state hash when it has one, and
# the ids missing between them (XDEL'd: deleted) filled from the state hash.
READ = """
local h, st = KEYS[1], KEYS[2]
local lo, hi, count = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rev, msgonly = ARGV[4] == '1', ARGV[5] == '1'
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
if hi == 0 or hi > last then hi = last end
local first = redis.call('XRANGE', h, '-', '+', 'COUNT', 1)
if not first[1] then return {} end
local oldest = tonumber(string.match(first[1][1], '^(%d+)'))
if lo < oldest then lo = oldest end
local hasst = redis.call('EXISTS', st) == 1
local out = {}
local function want(body) return not msgonly or not string.find(body, '"t":"u"', 1, true) end
local function add(id, body)
  if hasst then local o = redis.call('HGET', st, id); if o then body = o end end
  if want(body) then out[#out + 1] = body end
end
local function hole(id)
  if hasst then
    local o = redis.call('HGET', st, id)
    if o and want(o) then out[#out + 1] = o end
  end
end
local step = rev and -1 or 1
local cursor = rev and hi or lo
while #out < count and cursor >= lo and cursor <= hi do
  local chunk
  if rev then
    chunk = redis.call('XREVRANGE', h, cursor .. '-1', lo .. '-1', 'COUNT', count - #out + 16)
  else
    chunk = redis.call('XRANGE', h, cursor .. '-1', hi .. '-1', 'COUNT', count - #out + 16)
  end
  if #chunk == 0 then break end
  for _, entry in ipairs(chunk) do
    local id = tonumber(string.match(entry[1], '^(%d+)'))
    while cursor ~= id and #out < count do hole(cursor); cursor = cursor + step end
    if #out >= count then break end
    add(id, entry[2][2])
    cursor = id + step
    if #out >= count then break end
  end
end
while #out < count and cursor >= lo and cursor <= hi do hole(cursor); cursor = cursor + step end
return out
"""


def read(
    redis: Commands, room: str, lo: int, hi: int, count: int, reverse: bool = False, messagesOnly: bool = False
) -> Deferred[list[str]]:
    """
    The bodies of up to C{count} entries of C{room} with ids from C{lo} to
    C{hi} (0: the last) as they are now, oldest first (newest first with
    C{reverse}); with C{messagesOnly}, no updates.
    """
    keys = [redis.key("h", room), redis.key("st", room), redis.key("seq", room)]
    args = [str(lo), str(hi), str(count), _flag(reverse), _flag(messagesOnly)]

    def texts(bodies: object) -> list[str]:
        return [_text(b) for b in bodies] if isinstance(bodies, (list, tuple)) else []

    return redis.eval(READ, keys, args).addCallback(texts)


# Private updates: stored in both nicks' streams, the private message as it
# is now kept in KEYS[6] (field id -> body), its id indexed in both nicks'
# KEYS[7], KEYS[8] for trimming (scripts._TRIM); a deletion XDELs the
# message (from both streams) and its edits.
PRIVATE_UPDATE = _APPLY + _TRIM + """
local e = redis.call('GET', KEYS[1])
if not e then e = ARGV[1]; redis.call('SET', KEYS[1], e) end
if ARGV[11] == '1' then
  local old = redis.call('GET', KEYS[5])
  if old then return old end
end
local op, target = ARGV[4], ARGV[5]
local text = ARGV[6]
local cur = current(KEYS[6], KEYS[3], target)
local original, author = '', ''
if cur and string.find(cur, '"t":"p"', 1, true) then
  local was = cjson.decode(cur)
  original = was.x; author = was.n
  if was.dl and op ~= 'delete' then text = '' end
  local msg = apply(cur, op, ARGV[2], text, '', tonumber(ARGV[7]), ARGV[8], ARGV[9] == '1')
  if op == 'delete' then
    redis.call('HDEL', KEYS[6], target, 'r' .. target)
    redis.call('ZREM', KEYS[7], target)
    redis.call('ZREM', KEYS[8], target)
    redis.call('XDEL', KEYS[3], target .. '-1')
    redis.call('XDEL', KEYS[4], target .. '-1')
    local edits = redis.call('HGET', KEYS[6], 'e' .. target)
    if edits then
      for eid in string.gmatch(edits, '%%d+') do
        redis.call('XDEL', KEYS[3], eid .. '-1')
        redis.call('XDEL', KEYS[4], eid .. '-1')
      end
      redis.call('HDEL', KEYS[6], 'e' .. target)
    end
  else
    redis.call('HSET', KEYS[6], target, cjson.encode(msg))
    pindex(KEYS[7], KEYS[6], target)
    if KEYS[8] ~= KEYS[7] then pindex(KEYS[8], KEYS[6], target) end
  end
end
local id = redis.call('INCR', KEYS[2])
local update = %s
local body = cjson.encode(update)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[13], id .. '-1', 'p', body)
if KEYS[4] ~= KEYS[3] then redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[13], id .. '-1', 'p', body) end
if op == 'edit' and author ~= '' then noteEdit(KEYS[6], target, id) end
ptrim(KEYS[3], KEYS[7], KEYS[6])
if KEYS[4] ~= KEYS[3] then ptrim(KEYS[4], KEYS[8], KEYS[6]) end
if ARGV[11] == '1' then redis.call('SET', KEYS[5], body, 'EX', ARGV[12]) end
update['%s'] = original
update['%s'] = author
local sent = cjson.encode(update)
for i = 15, #ARGV do redis.call('PUBLISH', ARGV[i], sent) end
return sent
""" % (
    luaTable(
        PrivateUpdateMessage,
        id="id",
        sender="ARGV[2]",
        recipient="ARGV[3]",
        op="op",
        target="tonumber(target)",
        text="text",
        time="tonumber(ARGV[7])",
        emoji="ARGV[8]",
        on="(ARGV[9] == '1')",
        original="''",
        author="''",
        node="ARGV[14]",
    ),
    wireKey(PrivateUpdateMessage, "original"),
    wireKey(PrivateUpdateMessage, "author"),
)


def privateUpdate(
    redis: Commands, update: PrivateUpdate, ref: str | None, node: str, refWindow: float, retain: int,
    channels: list[str],
) -> Deferred[str]:
    """
    Store private C{update} in both nicks' streams, change its message, and
    publish it on C{channels}; fires with the body of the stored
    L{PrivateUpdateMessage}.
    """
    keys = [
        redis.key("epoch"), redis.key("seq", _PRIVATE_SEQUENCE), redis.key("pm", nickKey(update.sender)),
        redis.key("pm", nickKey(update.recipient)), _refKey(redis, update.sender, ref), redis.key("pst"),
        redis.key("pstx", nickKey(update.sender)), redis.key("pstx", nickKey(update.recipient)),
    ]
    args = [
        secrets.token_hex(4), update.sender, update.recipient, update.op, str(update.target), update.text,
        repr(update.time), update.emoji, _flag(update.on), "", _flag(ref is not None), str(int(refWindow)),
        str(retain), node, *channels,
    ]
    return redis.eval(PRIVATE_UPDATE, keys, args).addCallback(_text)


# Trimming outside the scripts that store: after PRUNE (by age) moved a
# room's start, and once when the indexes were new (below). KEYS: h, st,
# stx, sth (the horizon: see scripts._TRIM). Returns how many ids it
# dropped (at most TRIM_BATCH).
TRIM = _TRIM + """
return trim(KEYS[1], KEYS[2], KEYS[3], KEYS[4])
"""

# KEYS: a nick's pm stream, its pstx, pst.
PRIVATE_TRIM = _TRIM + """
return ptrim(KEYS[1], KEYS[2], KEYS[3])
"""


async def trimRoom(redis: Commands, room: str) -> int:
    """
    Drop every state entry of C{room} its stream no longer keeps, in
    steps of at most L{TRIM_BATCH}; returns how many ids went.
    """
    keys = [redis.key("h", room), redis.key("st", room), redis.key("stx", room), redis.key("sth", room)]
    return await _trimAll(redis, TRIM, keys)


async def trimPrivate(redis: Commands, key: str) -> int:
    """
    Drop the private state entries the stream of the nick with key C{key}
    no longer keeps (those the other party's keeps stay).
    """
    keys = [redis.key("pm", key), redis.key("pstx", key), redis.key("pst")]
    return await _trimAll(redis, PRIVATE_TRIM, keys)


async def _trimAll(redis: Commands, script: str, keys: list[str]) -> int:
    total = 0
    while True:
        n = await redis.eval(script, keys, [])
        dropped = int(n) if isinstance(n, (int, str, bytes)) else 0
        total += dropped
        if dropped < TRIM_BATCH:
            return total


# The indexes of the state hashes are newer than the hashes: entries of a
# version before them are indexed once (by the first node to prune, then
# PREFIX:stindexed is set). A room's state fields are its ids and "e" ..
# id: KEYS st, stx.
INDEX_ROOM = """
local n = 0
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  local id = string.match(f, '^e?(%d+)$')
  if id then n = n + redis.call('ZADD', KEYS[2], id, id) end
end
return n
"""

# KEYS: pst. ARGV: triples of id, the pstx of its sender, of its recipient
# (the nick keys are Python's lower case, not Lua's).
INDEX_PRIVATE = _TRIM + """
for i = 1, #ARGV, 3 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    pindex(ARGV[i + 1], KEYS[1], ARGV[i])
    if ARGV[i + 2] ~= ARGV[i + 1] then pindex(ARGV[i + 2], KEYS[1], ARGV[i]) end
  end
end
return 1
"""


async def indexState(redis: Commands) -> bool:
    """
    Index (and then trim) the state entries stored by a version without
    the indexes, unless that was done; returns whether it ran.
    """
    marker = redis.key("stindexed")
    if await redis.get(marker) is not None:
        return False
    for room in await redis.smembers(redis.key("rooms")):
        await redis.eval(INDEX_ROOM, [redis.key("st", room), redis.key("stx", room)], [])
        await trimRoom(redis, room)
    nicks: set[str] = set()
    args: list[str] = []
    for field, body in (await redis.hgetall(redis.key("pst"))).items():
        if not field.isdigit():
            continue
        try:
            message = decode(body)
        except ValueError:
            continue
        if not isinstance(message, PrivateMessage):
            continue
        parties = nickKey(message.sender), nickKey(message.recipient)
        nicks.update(parties)
        args += [field, *(redis.key("pstx", k) for k in parties)]
        if len(args) >= 3 * TRIM_BATCH:
            await redis.eval(INDEX_PRIVATE, [redis.key("pst")], args)
            args = []
    if args:
        await redis.eval(INDEX_PRIVATE, [redis.key("pst")], args)
    for key in sorted(nicks):
        await trimPrivate(redis, key)
    await redis.setIfAbsent(marker, "1")
    return True
