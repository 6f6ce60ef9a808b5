"""
End-to-end tests of scale-out: real daemons (C{twistd chat --broker
redis://…}) on different ports sharing one real C{redis-server}, with a
line user on one and a json (WebSocket) user on the other. C{--workers}
end-to-end tests are in tests/daemon/test_workers.py.

json users and line users are those of tests/support/wsclients.py and
lines.py.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.aio import runAsync
from tests.support.daemon import LOOPBACK
from tests.support.lines import leaves, lineSays, lineUserAsync
from tests.support.wsclients import TIMEOUT, Users, one, texts

if TYPE_CHECKING:
    from tests.support.daemon import Daemon, LineClient

pytestmark = pytest.mark.e2e


def node(startDaemon: Callable[..., Daemon], redis: Any, name: str, *args: str, **kw: Any) -> Daemon:
    daemon = startDaemon("--broker", redis.url, "--node-id", name, *args, **kw)
    daemon.waitForLog(r"node %s: joined the cluster" % (name,), TIMEOUT)
    return daemon


def test_lineAndJsonUsersOnTwoDaemons(
    startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient], redisServer: Any
) -> None:
    """
    A line user on one daemon and a json user on another share #lobby:
    each sees the other join, in the member list, and every message, with
    the same ids; a nick taken on one daemon is taken on the other.
    """
    a = node(startDaemon, redisServer, "a")
    b = node(startDaemon, redisServer, "b", web=LOOPBACK)

    async def main() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with Users() as users:
            liner = await lineUserAsync(lineClients, a, "liner")
            amy, events = await users.hello(b, nick="amy")
            await asyncio.to_thread(liner.expect, "*** #lobby: amy joined")
            # Presence travels through Redis: b hears of liner within
            # moments, not necessarily before amy's hello was answered.
            for _ in range(50):
                await amy.send(type="who", room="#lobby")
                presence = (await amy.until("presence"))[-1]
                if "liner" in presence["members"]:
                    break
            await lineSays(liner, "liner", "hello from a")
            heard = (await amy.until("message"))[-1]
            ack = await amy.say("hello from b", ref="r1")
            await asyncio.to_thread(liner.expect, "#lobby <amy> hello from b")
            taken = lineClients(a.ports["line"])
            await asyncio.to_thread(taken.welcome)
            taken.send("/nick amy")
            await asyncio.to_thread(taken.expect, "!!! the nickname amy is taken")
            return presence, heard, ack

    presence, heard, ack = runAsync(main)
    assert sorted(presence["members"]) == ["amy", "liner"]
    assert (heard["from"], heard["text"]) == ("liner", "hello from a")
    assert ack["id"] == heard["id"] + 1 and ack["epoch"] == heard["epoch"]


def test_ownerOnTwoDaemons(
    startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient], redisServer: Any
) -> None:
    """
    One person, two devices, two daemons: amy's json connection on daemon
    a and her second one on daemon b (with her owner token) both stay; each
    gets the room's messages, what she says from the other, and private
    messages to her; a line user sees her join once and leave only when
    her last connection goes.
    """
    a = node(startDaemon, redisServer, "a", web=LOOPBACK)
    b = node(startDaemon, redisServer, "b", web=LOOPBACK)

    async def main() -> dict[str, Any]:
        async with Users() as users:
            liner = await lineUserAsync(lineClients, a, "liner")
            laptop, events = await users.hello(a, nick="amy")
            token = one(events, "welcome")["token"]
            await asyncio.to_thread(liner.expect, "*** #lobby: amy joined")
            phone, events = await users.hello(b, nick="amy", token=token)
            welcome = one(events, "welcome")
            seen: dict[str, Any] = {"welcome": welcome}
            await lineSays(liner, "liner", "hello amy")
            for device in (laptop, phone):
                heard = (await device.expect(lambda e: e["type"] == "message" and e["text"] == "hello amy"))[-1]
                assert heard["from"] == "liner"
            ack = await phone.say("from my phone", ref="p1")
            echo = (await laptop.expect(lambda e: e["type"] == "message" and e["text"] == "from my phone"))[-1]
            assert (echo["id"], echo["from"]) == (ack["id"], "amy")
            await asyncio.to_thread(liner.expect, "#lobby <amy> from my phone")
            liner.send("/msg amy psst")
            await asyncio.to_thread(liner.expect, "-> *amy* psst")
            for device in (laptop, phone):
                got = (await device.expect(lambda e: e["type"] == "private" and e["text"] == "psst"))[-1]
                assert (got["from"], got["to"]) == ("liner", "amy")
            await laptop.close()
            await phone.say("still here", ref="p2")
            await asyncio.to_thread(liner.expect, "#lobby <amy> still here")
            seen["before"] = list(liner.history)
            await phone.close()
            await leaves(liner, "amy")
            seen["after"] = list(liner.history)
            return seen

    seen = runAsync(main)
    assert (seen["welcome"]["nick"], seen["welcome"]["owner"]) == ("amy", True)
    joins = [s for s in seen["after"] if s.startswith("*** #lobby: amy joined")]
    assert len(joins) == 1, seen["after"]
    assert not [s for s in seen["before"] if s.startswith("*** #lobby: amy left")], seen["before"]
    assert len([s for s in seen["after"] if s.startswith("*** #lobby: amy left")]) == 1


def test_resumeOnAnotherDaemon(
    startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient], redisServer: Any
) -> None:
    """
    A json user whose connection to one daemon dropped resumes on another:
    exactly the messages it missed, marked recovered, then live ones.
    """
    a = node(startDaemon, redisServer, "a", web=LOOPBACK)
    b = node(startDaemon, redisServer, "b", web=LOOPBACK)
    missed = ["missed %d" % (i,) for i in range(1, 4)]

    async def main() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with Users() as users:
            liner = await lineUserAsync(lineClients, a, "liner")
            amy, _ = await users.hello(b, nick="amy")
            await lineSays(liner, "liner", "before")
            last = (await amy.until("message"))[-1]
            amy.drop()
            await leaves(liner, "amy")
            await lineSays(liner, "liner", *missed)
            amy, events = await users.hello(a, nick="amy", since={"#lobby": {"epoch": last["epoch"], "id": last["id"]}})
            await lineSays(liner, "liner", "live")
            live = (await amy.until("message"))[-1]
            return last, one(events, "history"), live

    last, resumed, live = runAsync(main)
    assert resumed["recovered"] is True
    assert texts(resumed["messages"]) == [(last["id"] + i, "liner", t) for i, t in enumerate(missed, 1)]
    assert (live["id"], live["text"]) == (last["id"] + len(missed) + 1, "live")


def test_updatesResumeOnAnotherDaemon(startDaemon: Callable[..., Daemon], redisServer: Any) -> None:
    """
    A json user whose connection to one daemon dropped resumes on another:
    the edits, reactions and deletions made meanwhile on either daemon
    come in its history's C{updates}, exactly once, in order; then live.
    """
    a = node(startDaemon, redisServer, "a", web=LOOPBACK)
    b = node(startDaemon, redisServer, "b", web=LOOPBACK)

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        async with Users() as users:
            amy, _ = await users.hello(a, nick="amy")
            bob, _ = await users.hello(b, nick="bob")
            said = await amy.say("hello wrold", "s1")
            await bob.until("message")
            bob.drop()
            await amy.request(type="edit", room="#lobby", id=said["id"], text="hello world", ref="e1")
            await amy.request(type="react", room="#lobby", id=said["id"], emoji="🎉", ref="e2")
            bob, events = await users.hello(a, nick="bob", since={"#lobby": {"epoch": said["epoch"], "id": said["id"]}})
            await amy.request(type="delete", room="#lobby", id=said["id"], ref="e3")
            live = (await bob.until("delete"))[-1]
            return one(events, "history"), live

    resumed, live = runAsync(main)
    assert resumed["recovered"] is True and resumed["messages"] == []
    assert [(u["type"], u["seq"]) for u in resumed["updates"]] == [("edit", 2), ("react", 3)]
    assert (live["type"], live["id"], live["seq"], live["by"]) == ("delete", 1, 4, "amy")


def test_killedDaemonsUsersLeave(
    startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient], redisServer: Any, tmp_path: Path
) -> None:
    """
    kill -9 of a daemon: users of the others see its users leave (once,
    when its heartbeat expires) and its nicks become free.
    """
    from tests.support.daemon import Daemon

    a = node(startDaemon, redisServer, "a")
    # Started by hand: the fixture's teardown wants a clean SIGTERM exit.
    killed = Daemon(["--line", LOOPBACK, "--web", "none", "--metrics", "none", "--broker", redisServer.url,
                     "--node-id", "doomed", "--log-connections"], tmp_path)
    try:
        killed.waitListening(("line",), 20.0)
        killed.waitForLog("node doomed: joined the cluster", TIMEOUT)

        async def main() -> list[str]:
            liner = await lineUserAsync(lineClients, a, "liner")
            victim = await lineUserAsync(lineClients, killed, "victim")
            await asyncio.to_thread(liner.expect, lambda s: s.endswith(" is now known as victim"))
            victim.send("last words")
            await asyncio.to_thread(liner.expect, "#lobby <victim> last words")
            killed.proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(liner.expect, "*** #lobby: victim left (disconnected)", 15.0)
            liner.send("/nick victim")
            await asyncio.to_thread(liner.expect, "*** you are now victim")
            return list(liner.history)

        lines = runAsync(main)
        assert len([s for s in lines if "victim left" in s]) == 1, lines
    finally:
        killed.proc.kill()
        killed.proc.wait(TIMEOUT)
        killed._finish()


def test_redisRestartMidConversation(
    startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient], redisServerFactory: Any
) -> None:
    """
    Redis restarts while users chat: nobody is disconnected, a line said
    while Redis is down gets an error (it is not silently dropped), and the
    conversation goes on, with history intact, once Redis is back.
    """
    redis = redisServerFactory(persistent=True)
    a = node(startDaemon, redis, "a")
    b = node(startDaemon, redis, "b", web=LOOPBACK)

    async def main() -> tuple[list[str], dict[str, Any], list[dict[str, Any]]]:
        async with Users() as users:
            liner = await lineUserAsync(lineClients, a, "liner")
            amy, _ = await users.hello(b, nick="amy")
            await lineSays(liner, "liner", "before")
            await amy.until("message")
            redis.stop()
            a.waitForLog("node a: lost Redis", TIMEOUT)
            liner.send("during")
            errors: list[str] = []
            await asyncio.to_thread(liner.expect, lambda s: s.startswith("!!!") and not errors.append(s))
            error = errors
            redis.start()
            a.waitForLog("node a: Redis is back", TIMEOUT)
            b.waitForLog("node b: Redis is back", TIMEOUT)
            await lineSays(liner, "liner", "after")
            after = (await amy.until("message"))[-1]
            history = await amy.history()
            return error, after, history

    error, after, history = runAsync(main)
    assert "unreachable" in error[-1] or "did not confirm" in error[-1], error
    assert after["text"] == "after"
    assert [m["text"] for m in history] == ["before", "after"]


def test_brokerUnreachableAtStart(runTwistd: Callable[..., Any], redisServer: Any) -> None:
    """
    A daemon whose Redis cannot be reached stops at once with one line and
    exit status 1.
    """
    port = redisServer.port
    redisServer.stop()
    result = runTwistd("--line", LOOPBACK, "--web", "none", "--broker", "redis://127.0.0.1:%d/0" % (port,))
    assert result.returncode == 1
    assert "cannot reach Redis at redis://127.0.0.1:%d/0" % (port,) in result.stdout + result.stderr


def test_killedWorkersUserResumesOnAnother(
    startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient], redisServer: Any
) -> None:
    """
    --workers 2: the worker of a json user is killed with SIGKILL; the user
    reconnects at once (to the other worker, or the restarted one) with its
    owner token and its last position: it keeps its nick and gets exactly
    the messages it missed, then live ones.
    """
    import os

    from tests.support.daemon import workerOf, workerPids

    daemon = startDaemon("--broker", redisServer.url, "--workers", "2", web=LOOPBACK)
    daemon.waitForLog(r"\] twisted-chat \S+ ready: 2 workers", TIMEOUT)
    missed = ["missed %d" % (i,) for i in range(1, 4)]

    async def main() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str, str]:
        async with Users() as users:
            amy, events = await users.hello(daemon, nick="amy")
            token = one(events, "welcome")["token"]
            port = amy.ws.transport.get_extra_info("sockname")[1]
            worker = int(daemon.waitForLog(r"\[w(\d+):[^\]]*\] amy connected from \S*127\.0\.0\.1:%d " % (port,)).group(1))
            # a line user on the other worker (the kernel picks the worker)
            for attempt in range(60):
                nick = "liner%d" % (attempt,)
                liner = await lineUserAsync(lineClients, daemon, nick)
                if await asyncio.to_thread(workerOf, daemon, liner) != worker:
                    break
                liner.close()
            else:
                raise AssertionError("every line connection went to worker %d" % (worker,))
            await lineSays(liner, nick, "before")
            last = (await amy.until("message"))[-1]
            os.kill(workerPids(daemon)[worker], signal.SIGKILL)
            with pytest.raises(ConnectionClosed):
                while True:
                    await amy.recv()
            await lineSays(liner, nick, *missed)
            amy, events = await users.hello(
                daemon, nick="amy", token=token, since={"#lobby": {"epoch": last["epoch"], "id": last["id"]}}
            )
            await lineSays(liner, nick, "live")
            live = (await amy.until("message"))[-1]
            return last, one(events, "history"), live, one(events, "welcome")["nick"], nick

    last, resumed, live, amyNick, liner = runAsync(main)
    assert amyNick == "amy"
    assert resumed["recovered"] is True
    assert texts(resumed["messages"]) == [(last["id"] + i, liner, t) for i, t in enumerate(missed, 1)]
    assert (live["id"], live["text"]) == (last["id"] + len(missed) + 1, "live")


def test_redisBackEmptyUsersAreToldAndKeepChatting(
    startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient], redisServer: Any
) -> None:
    """
    One node on a Redis that persists nothing; Redis restarts (empty).
    Everyone connected is told the history was reset (json: an C{epoch}
    event; line: a notice), and what alice says afterwards is echoed to her
    and reaches bob live, ids starting again at 1.
    """
    a = node(startDaemon, redisServer, "a", web=LOOPBACK)

    async def main() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str], dict[str, Any]]:
        async with Users() as users:
            bob = await lineUserAsync(lineClients, a, "bob")
            alice, _ = await users.hello(a, nick="alice")
            before = [await alice.say("before %d" % (i,), ref="b%d" % (i,)) for i in range(1, 4)]
            await asyncio.to_thread(bob.expect, "#lobby <alice> before 3")
            redisServer.kill()
            a.waitForLog("node a: lost Redis", TIMEOUT)
            redisServer.start()
            told = (await alice.until("epoch"))[-1]
            await asyncio.to_thread(bob.expect, lambda s: "history was reset" in s)
            notice = [s for s in bob.history if "history was reset" in s]
            echoes: list[dict[str, Any]] = []
            acks = []
            for i in range(1, 6):
                await alice.send(type="say", text="after %d" % (i,), ref="a%d" % (i,))
                events = await alice.until("ack")
                echoes += events[:-1]
                acks.append(events[-1])
            for i in range(1, 6):
                await asyncio.to_thread(bob.expect, "#lobby <alice> after %d" % (i,))
            return before + acks, [e for e in echoes if e["type"] == "message"], notice, told

    acks, echoes, notice, told = runAsync(main)
    old, new = acks[0]["epoch"], acks[-1]["epoch"]
    assert old != new and (told["room"], told["previous"], told["epoch"]) == ("#lobby", old, new)
    assert [a["id"] for a in acks] == [1, 2, 3, 1, 2, 3, 4, 5]
    assert [(e["id"], e["epoch"], e["text"]) for e in echoes] == [(i, new, "after %d" % (i,)) for i in range(1, 6)]
    assert notice == ["*** #lobby: the message history was reset (the server lost its stored messages); "
                      "message numbers start again"]


def test_noDuplicatesWhenJoiningUnderWriteLoad(
    startDaemon: Callable[..., Daemon], redisServer: Any
) -> None:
    """
    A writer on node a says hundreds of messages a second; json users on
    node b leave and join the room again and again, with and without
    C{since}. Every join gets history then live messages with no gap and
    no message twice, although the history is read on one Redis connection
    and live messages come on another.
    """
    a = node(startDaemon, redisServer, "a", "--flood-rate", "0", web=LOOPBACK)
    b = node(startDaemon, redisServer, "b", "--flood-rate", "0", web=LOOPBACK)

    async def main() -> list[list[int]]:
        async with Users() as users:
            writer, _ = await users.hello(a, nick="writer", rooms=["#load"])
            stop = asyncio.Event()

            async def write() -> None:
                n = 0
                while not stop.is_set():
                    for _ in range(50):
                        n += 1
                        await writer.send(type="say", room="#load", text="w%d" % (n,))
                    await asyncio.sleep(0.1)  # (pacing the writer: ~500 a second)

            async def drain() -> None:
                async for _ in writer.ws:  # (its echoes and acks)
                    pass

            async def joinAgainAndAgain(nick: str) -> list[list[int]]:
                joiner, _ = await users.hello(b, nick=nick)
                sessions: list[list[int]] = []
                last: dict[str, Any] | None = None
                for attempt in range(40):
                    since = {"epoch": last["epoch"], "id": last["id"]} if last is not None and attempt % 2 else None
                    await joiner.send(type="join", room="#load", **({"since": since} if since else {}))
                    ids: list[int] = []
                    while len(ids) < 20 or last is None or last["id"] != ids[-1]:
                        event = await joiner.recv()
                        assert event["type"] != "error", event
                        if event.get("room") != "#load":
                            continue
                        if event["type"] == "history":
                            ids += [m["id"] for m in event["messages"]]
                        elif event["type"] == "message":
                            ids.append(event["id"])
                            last = event
                    await joiner.send(type="part", room="#load")
                    while True:
                        event = await joiner.recv()
                        if event["type"] == "part" and event["nick"] == nick:
                            break
                    sessions.append(ids)
                return sessions

            task = asyncio.create_task(write())
            drainer = asyncio.create_task(drain())
            try:
                results = await asyncio.gather(*(joinAgainAndAgain("joiner%d" % (i,)) for i in range(4)))
            finally:
                stop.set()
                await task
                drainer.cancel()
            return [ids for sessions in results for ids in sessions]

    sessions = runAsync(main, timeout=120)
    assert len(sessions) == 160
    for ids in sessions:
        assert ids == list(range(ids[0], ids[0] + len(ids))), ids
