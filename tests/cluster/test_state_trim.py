"""
The state hashes of updates in Redis (a changed message as it is now)
follow their streams: entries of messages a stream no longer keeps go,
for rooms and for private messages, while what is kept still reads as it
is now. On a real redis-server, through the nodes of the cluster.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from twisted_chat.core.events import History, Message

from tests.support.fakes import WaitingClient

PREFIX = "twisted-chat"


def _firstId(redisServer: Any, key: str) -> int:
    """
    The id of the first entry the stream C{key} keeps.
    """
    first = redisServer.command("XRANGE", key, "-", "+", "COUNT", "1")
    return int(first[0][0].split(b"-")[0])


def _stateIds(redisServer: Any, key: str) -> set[int]:
    """
    The message ids the state hash C{key} has fields of (C{ID}, C{eID},
    C{rID}).
    """
    return {int(field.lstrip(b"er")) for field in redisServer.command("HKEYS", key)}


def _indexed(redisServer: Any, key: str) -> set[int]:
    return {int(m) for m in redisServer.command("ZRANGE", key, "0", "-1")}


async def _changeSome(member: Any, ids: list[int], tag: str) -> None:
    """
    Edit the first ten of C{ids}, react to the next five, edit and then
    delete the five after.
    """
    for id in ids[:10]:
        await member.edit(id, "%s edited %d" % (tag, id))
    for id in ids[10:15]:
        await member.react(id, "👍")
    for id in ids[15:20]:
        await member.edit(id, "%s doomed %d" % (tag, id))
        await member.delete(id)


async def _joined(node: Any, nick: str, room: str, since: tuple[str, int] | None = None) -> tuple[WaitingClient, History]:
    client = node.connect(nick)
    client.member.join(room, since=since)
    history = await client.waitFor(lambda e: isinstance(e, History))
    return client, history


@pytest_twisted.ensureDeferred
async def test_roomStateKeepsOnlyRetainedMessages(nodes: Any, redisServer: Any) -> None:
    """
    Many messages of a room with a small retention edited, reacted to and
    deleted, then many more said: the room's state hash keeps entries only
    for messages its stream keeps; history and a resume show those as they
    are now, and nothing of the trimmed ones.
    """
    a = await nodes("a")
    a.cluster.store.retainMessages = 60
    alice, _ = await _joined(a, "alice", "#t")
    early = [(await alice.member.say("early %d" % i)).id for i in range(30)]
    await _changeSome(alice.member, early, "early")
    st = "%s:st:#t" % (PREFIX,)
    assert set(early[:20]) <= _stateIds(redisServer, st)
    later = [(await alice.member.say("later %d" % i)).id for i in range(300)]
    edited, reacted, deleted = later[-6], later[-5], later[-4]
    await alice.member.edit(edited, "later edited")
    await alice.member.react(reacted, "🎉")
    await alice.member.edit(deleted, "later doomed")
    await alice.member.delete(deleted)
    for i in range(5):
        await alice.member.say("tail %d" % i)

    first = _firstId(redisServer, "%s:h:#t" % (PREFIX,))
    assert first > max(early) + 25
    kept = _stateIds(redisServer, st)
    assert min(kept) >= first
    assert {edited, reacted, deleted} <= kept
    assert _indexed(redisServer, "%s:stx:#t" % (PREFIX,)) == kept
    # history as it is now
    _, history = await _joined(a, "bob", "#t")
    now = {m.id: m for m in history.messages}
    assert min(now) >= first
    assert now[edited].text == "later edited" and now[edited].edited
    assert now[reacted].reactions == {"🎉": ["alice"]}
    assert now[deleted].deleted and now[deleted].text == ""
    assert [now[i].text for i in later[-3:]] == ["later 297", "later 298", "later 299"]
    # a resume from before the changes gets the messages as they are now,
    # then the updates
    _, resumed = await _joined(a, "carol", "#t", since=(history.messages[0].epoch, later[-7]))
    assert resumed.recovered is True
    texts = [(m.kind, m.id, m.text, m.deleted) for m in resumed.messages]
    assert texts[:3] == [
        ("message", edited, "later edited", False), ("message", reacted, "later 295", False), ("message", deleted, "", True),
    ]
    assert [m.op for m in resumed.messages if m.kind == "update"] == ["edit", "react", "edit", "delete"]
    # trimmed messages are not read, neither as they were nor deleted
    assert await a.cluster.store.get("#t", early[0]) is None
    assert await a.cluster.store.get("#t", early[15]) is None


@pytest_twisted.ensureDeferred
async def test_privateStateKeepsOnlyRetainedMessages(nodes: Any, redisServer: Any) -> None:
    """
    Private messages edited, reacted to and deleted, then many more sent:
    the private state hash keeps the entry of a message while either
    party's stream keeps it, and reads it as it is now; once neither does,
    nothing of it is left.
    """
    a = await nodes("a")
    a.cluster.store.retainMessages = 6  # private messages: 60
    alice, bob = a.connect("alice"), a.connect("bob")
    a.connect("carol")
    a.connect("dave")
    early = [(await alice.member.private("bob", "early %d" % i)).id for i in range(30)]
    for id in early[:10]:
        await alice.member.updatePrivate(id, "edit", "early edited %d" % id)
    for id in early[10:15]:
        await bob.member.updatePrivate(id, "react", emoji="👍")
    for id in early[15:20]:
        await alice.member.updatePrivate(id, "edit", "early doomed %d" % id)
        await alice.member.updatePrivate(id, "delete")
    pst = "%s:pst" % (PREFIX,)
    assert set(early[:15]) <= _stateIds(redisServer, pst)
    for i in range(150):
        await alice.member.private("bob", "more %d" % i)
    kept = (await alice.member.private("bob", "kept")).id
    await alice.member.updatePrivate(kept, "edit", "kept, edited")

    # alice's stream moves on past it, bob's still has it
    for i in range(300):
        await alice.member.private("carol", "to carol %d" % i)
    assert _firstId(redisServer, "%s:pm:alice" % (PREFIX,)) > kept
    assert _firstId(redisServer, "%s:pm:bob" % (PREFIX,)) < kept
    assert _stateIds(redisServer, pst) == {kept}
    assert kept not in _indexed(redisServer, "%s:pstx:alice" % (PREFIX,))
    assert _indexed(redisServer, "%s:pstx:bob" % (PREFIX,)) == {kept}
    bob.member.privateHistory()
    history = await bob.waitFor(lambda e: type(e).__name__ == "PrivateHistory")
    now = {p.id: p for p in history.messages}
    assert now[kept].text == "kept, edited" and now[kept].edited
    assert all(p.text.startswith(("more", "kept")) for p in history.messages)

    # and then bob's: nothing of it is left
    for i in range(300):
        await bob.member.private("dave", "to dave %d" % i)
    assert _firstId(redisServer, "%s:pm:bob" % (PREFIX,)) > kept
    assert redisServer.command("EXISTS", pst) == 0
    assert redisServer.command("EXISTS", "%s:pstx:bob" % (PREFIX,)) == 0
    assert await a.cluster.store.getPrivate("bob", kept) is None


@pytest_twisted.ensureDeferred
async def test_stateOfAnEarlierVersionIsIndexedAndTrimmed(nodes: Any, redisServer: Any) -> None:
    """
    State entries stored by a version that did not index them (no index
    keys, no reference counts) are indexed once by the next prune, and
    trimmed from then on like the others.
    """
    a = await nodes("a")
    a.cluster.store.retainMessages = 60
    alice, _ = await _joined(a, "alice", "#t")
    bob = a.connect("bob")
    early = [(await alice.member.say("early %d" % i)).id for i in range(30)]
    await _changeSome(alice.member, early, "early")
    private = [(await alice.member.private("bob", "psst %d" % i)).id for i in range(20)]
    for id in private[:5]:
        await bob.member.updatePrivate(id, "react", emoji="👍")
    # as an earlier version left them
    st, pst = "%s:st:#t" % (PREFIX,), "%s:pst" % (PREFIX,)
    redisServer.command("DEL", "%s:stx:#t" % (PREFIX,), "%s:pstx:alice" % (PREFIX,), "%s:pstx:bob" % (PREFIX,))
    redisServer.command("HDEL", pst, *("r%d" % id for id in private[:5]))
    redisServer.command("DEL", "%s:stindexed" % (PREFIX,))
    a.cluster.store.retainMessages = 6
    for i in range(300):
        await alice.member.say("later %d" % i)
        await alice.member.private("bob", "later %d" % i)
    assert set(early[:20]) <= _stateIds(redisServer, st)
    assert set(private[:5]) == _stateIds(redisServer, pst)

    await a.cluster.store.prune(a.chat.now())
    assert redisServer.command("EXISTS", st) == 0
    assert redisServer.command("EXISTS", pst) == 0
    _, history = await _joined(a, "carol", "#t")
    assert [m.text for m in history.messages if isinstance(m, Message)][-1] == "later 299"


@pytest_twisted.ensureDeferred
async def test_deletedFirstMessagesStayDeleted(nodes: Any, redisServer: Any) -> None:
    """
    The first messages of a room are deleted (taken out of its stream) and
    nothing was ever trimmed: the stream now starts after them, but they
    were not trimmed away; their entries stay in the state hash (what the
    room's ids were), also after more updates, which trim only what a trim
    of the stream passed.
    """
    a = await nodes("a")
    alice, _ = await _joined(a, "alice", "#d")
    ids = [(await alice.member.say("m %d" % i)).id for i in range(5)]
    await alice.member.delete(ids[0])
    await alice.member.delete(ids[1])
    assert _firstId(redisServer, "%s:h:#d" % (PREFIX,)) == ids[2]
    await alice.member.edit(ids[3], "m 3 edited")
    await alice.member.react(ids[4], "👍")
    assert {ids[0], ids[1]} <= _stateIds(redisServer, "%s:st:#d" % (PREFIX,))


@pytest_twisted.ensureDeferred
async def test_updatesAloneMoveTheHorizon(nodes: Any, redisServer: Any) -> None:
    """
    A room's stream is moved past its changed messages by updates alone
    (reactions taken and given back, nothing said): the state of those
    messages goes all the same.
    """
    a = await nodes("a")
    a.cluster.store.retainMessages = 60
    alice, _ = await _joined(a, "alice", "#u")
    ids = [(await alice.member.say("m %d" % i)).id for i in range(50)]
    for id in ids[:5]:
        await alice.member.edit(id, "m %d edited" % (id,))
    stream = "%s:h:#u" % (PREFIX,)
    for i in range(60):
        if _firstId(redisServer, stream) > ids[4]:
            break
        await alice.member.react(ids[-1], "👍", on=i % 2 == 0)
    first = _firstId(redisServer, stream)
    assert first > ids[4]
    assert not {id for id in _stateIds(redisServer, "%s:st:#u" % (PREFIX,)) if id < first}
