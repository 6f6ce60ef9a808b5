"""
End-to-end tests of durable history: the real daemon (C{twistd chat}) with
its default store, an SQLite file in its working directory (C{tmp_path}),
restarted, killed with SIGKILL, and refusing a database it cannot use.

json-mode users are the C{websockets} clients of tests/support/wsclients.py
(L{JsonUser}), run as in test_e2e_ws.py: one coroutine per test in its own
event loop in a worker thread, every wait bounded; line users are the
blocking L{LineClient}s of tests/support/lines.py, called from that
coroutine through C{asyncio.to_thread}.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.aio import runAsync
from tests.support.daemon import LOOPBACK
from tests.support.lines import leaves, lineSays, lineUserAsync
from tests.support.sqlite import snapshot, unprivileged
from tests.support.wsclients import one, texts, Users

if TYPE_CHECKING:
    from tests.support.daemon import Daemon, LineClient

pytestmark = pytest.mark.e2e

T = TypeVar("T")

#: bound on every single wait (a frame, a handshake, a line)
TIMEOUT = 10.0
#: for tests that send bursts: flood control would refuse them
NO_FLOOD = ("--flood-rate", "0")




# -- restarts -----------------------------------------------------------------


def test_restartKeepsHistoryAndIds(startDaemon: Callable[..., Daemon]) -> None:
    """
    After a clean restart (SIGTERM, start again on the same database) the
    history holds what was said before, a position from before the restart
    resumes exactly (same epoch), and new messages continue the ids.
    """
    first = startDaemon(web=LOOPBACK)

    async def before() -> list[dict[str, Any]]:
        async with Users() as users:
            amy, _ = await users.hello(first, nick="amy")
            return [await amy.say("before %d" % (i,), "r%d" % (i,)) for i in (1, 2, 3)]

    acks = runAsync(before)
    assert [a["id"] for a in acks] == [1, 2, 3]
    epoch = acks[0]["epoch"]
    assert first.stop() == 0 and first.stoppedCleanly, first.log

    second = startDaemon(web=LOOPBACK)

    async def after() -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
        async with Users() as users:
            amy, events = await users.hello(second, nick="amy", since={"#lobby": {"epoch": epoch, "id": 1}})
            ack = await amy.say("after", "r4")
            bob, _ = await users.hello(second, nick="bob")
            everything = await bob.allHistory()
            return events, ack, everything

    events, ack, everything = runAsync(after)
    resumed = one(events, "history")
    assert (resumed["epoch"], resumed["recovered"]) == (epoch, True)
    assert texts(resumed["messages"]) == [(2, "amy", "before 2"), (3, "amy", "before 3")]
    assert (ack["id"], ack["epoch"]) == (4, epoch)
    assert texts(everything) == [(1, "amy", "before 1"), (2, "amy", "before 2"), (3, "amy", "before 3"), (4, "amy", "after")]


def test_editsDeletionsAndReactionsResumeAcrossARestart(startDaemon: Callable[..., Daemon]) -> None:
    """
    Edits, reactions and deletions are stored in the room's sequence: a
    client that resumes after a restart gets exactly the ones it missed,
    in order, once (in the history's C{updates}), then live ones; history
    shows the messages as they are now, a deleted one without text.
    """
    first = startDaemon(web=LOOPBACK)

    async def before() -> tuple[str, int, list[int]]:
        async with Users() as users:
            amy, _ = await users.hello(first, nick="amy")
            bob, _ = await users.hello(first, nick="bob")
            one = await amy.say("first thougth", "s1")
            two = await amy.say("second @bob", "s2")
            await bob.until("message", 2)
            seqs = []
            for request in (
                {"type": "edit", "room": "#lobby", "id": one["id"], "text": "first thought", "ref": "e1"},
                {"type": "react", "room": "#lobby", "id": one["id"], "emoji": "👍", "ref": "e2"},
                {"type": "delete", "room": "#lobby", "id": two["id"], "ref": "e3"},
            ):
                _, ack = await amy.request(**request)
                seqs.append(ack["seq"])
            return one["epoch"], two["id"], seqs

    epoch, seen, seqs = runAsync(before)
    assert seqs == [3, 4, 5]
    assert first.stop() == 0 and first.stoppedCleanly, first.log
    second = startDaemon(web=LOOPBACK)

    async def after() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        async with Users() as users:
            bob, events = await users.hello(second, nick="bob", since={"#lobby": {"epoch": epoch, "id": seen}})
            amy, _ = await users.hello(second, nick="amy")
            await amy.request(type="react", room="#lobby", id=1, emoji="👍", on=False, ref="e4")
            live = (await bob.until("react"))[-1]
            carol, _ = await users.hello(second, nick="carol")
            return one(events, "history"), live, await carol.allHistory()

    resumed, live, everything = runAsync(after)
    assert (resumed["recovered"], resumed["messages"]) == (True, [])
    assert [(u["type"], u["id"], u["seq"]) for u in resumed["updates"]] == [("edit", 1, 3), ("react", 1, 4), ("delete", 2, 5)]
    assert (live["seq"], live["on"], live["nick"]) == (6, False, "amy")
    assert [(m["id"], m["text"], m.get("edited") is not None, m.get("deleted", False), m.get("reactions")) for m in everything] == [
        (1, "first thought", True, False, None),
        (2, "", False, True, None),
    ]


def test_kill9LosesNoAcknowledgedMessage(startDaemon: Callable[..., Daemon], tmp_path: Path) -> None:
    """
    SIGKILL in the middle of a burst of 2,000 acknowledged C{say}s loses
    none that was acknowledged (or seen as a message): after a restart on
    the same database each of them is in the history with its id, and ids
    are unique and increasing. Resending every unacknowledged C{say} with
    its ref then stores each missing one once and answers the ones already
    stored with their first id: every text is there exactly once.
    """
    from tests.support.daemon import Daemon

    # The client keeps at most `window` says unacknowledged (like a client
    # with a send window), so when it has seen `killAfter` acks the daemon
    # has been sent at most killAfter + window of them: the kill is
    # certainly in the middle of the burst.
    total, killAfter, window = 2000, 300, 500
    # Started by hand: the fixture's teardown wants a clean SIGTERM exit.
    killed = Daemon(["--line", LOOPBACK, "--web", LOOPBACK, "--metrics", "none", *NO_FLOOD, "--log-connections"], tmp_path)
    try:
        killed.waitListening(("line", "web"), 20.0)
        killed.waitServing(20.0)

        async def burst() -> tuple[dict[str, int], dict[int, str]]:
            async with Users() as users:
                user, _ = await users.hello(killed, nick="burst")
                acks: dict[str, int] = {}
                seen: dict[int, str] = {}
                progress = asyncio.Event()
                closed = False

                async def send() -> None:
                    try:
                        for i in range(total):
                            while i - len(acks) >= window and not closed:
                                progress.clear()
                                await asyncio.wait_for(progress.wait(), TIMEOUT)
                            if closed:
                                return
                            await user.send(type="say", text="burst %d" % (i,), ref="b%d" % (i,))
                    except ConnectionClosed:
                        pass

                sender = asyncio.create_task(send())
                try:
                    while True:
                        try:
                            event = await user.recv()
                        except ConnectionClosed:
                            break
                        if event["type"] == "ack":
                            acks[event["ref"]] = event["id"]
                            progress.set()
                            if len(acks) == killAfter:
                                killed.signal(signal.SIGKILL)
                        elif event["type"] == "message":
                            seen[event["id"]] = event["text"]
                        else:
                            assert event["type"] != "error", event
                finally:
                    closed = True
                    progress.set()
                    await asyncio.wait_for(sender, TIMEOUT)
                return acks, seen

        acks, seen = runAsync(burst)
    finally:
        if not killed.signalled:
            killed.signal(signal.SIGKILL)
        status = killed.stop()
    assert status == -signal.SIGKILL, killed.log
    assert killAfter <= len(acks) <= killAfter + window, "%d acks of %d" % (len(acks), total)

    daemon = startDaemon(*NO_FLOOD, web=LOOPBACK)

    async def recover() -> tuple[list[dict[str, Any]], dict[str, int], list[dict[str, Any]]]:
        async with Users() as users:
            user, _ = await users.hello(daemon, nick="burst")
            stored = await user.allHistory()
            resent: dict[str, int] = {}
            for i in range(total):
                ref = "b%d" % (i,)
                if ref not in acks:
                    resent[ref] = (await user.say("burst %d" % (i,), ref))["id"]
            return stored, resent, await user.allHistory()

    stored, resent, final = runAsync(recover)
    storedIds = [m["id"] for m in stored]
    byId = {m["id"]: m["text"] for m in stored}
    counts = "%d acked before the kill, %d messages seen, %d stored after the restart, %d resent" % (
        len(acks), len(seen), len(stored), len(resent))
    assert storedIds == sorted(set(storedIds)), counts
    lost = {ref: id for ref, id in acks.items() if byId.get(id) != "burst " + ref[1:]}
    assert not lost, "acknowledged but lost or changed: %r; %s" % (sorted(lost.items())[:10], counts)
    unseen = {id: text for id, text in seen.items() if byId.get(id) != text}
    assert not unseen, "delivered but lost: %r; %s" % (sorted(unseen.items())[:10], counts)
    storedRefs = {"b" + text.split()[1]: id for id, text in byId.items()}
    deduped = {ref: id for ref, id in resent.items() if ref in storedRefs}
    assert deduped == {ref: storedRefs[ref] for ref in deduped}, counts
    assert len(stored) - len(acks) == len(deduped), counts
    assert [m["id"] for m in final] == list(range(1, total + 1)), counts
    assert sorted(m["text"] for m in final) == sorted("burst %d" % (i,) for i in range(total)), counts


# -- resume -------------------------------------------------------------------


def test_resumeAfterADroppedConnection(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    A json user whose connection dropped resumes with the epoch and id it
    last saw: the history it gets is marked recovered and holds exactly
    what a line user said meanwhile, and the next live message follows it
    with no gap and no duplicate.
    """
    daemon = startDaemon(web=LOOPBACK)
    missed = ["missed %d" % (i,) for i in range(1, 6)]

    async def main() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        async with Users() as users:
            liner = await lineUserAsync(lineClients, daemon, "liner")
            amy, _ = await users.hello(daemon, nick="amy")
            await lineSays(liner, "liner", "before")
            last = (await amy.until("message"))[-1]
            amy.drop()
            await leaves(liner, "amy")
            await lineSays(liner, "liner", *missed)
            amy, events = await users.hello(
                daemon, nick="amy", since={"#lobby": {"epoch": last["epoch"], "id": last["id"]}}
            )
            await lineSays(liner, "liner", "live")
            live = (await amy.until("message"))[-1]
            return last, one(events, "history"), events, live

    last, resumed, events, live = runAsync(main)
    assert last["text"] == "before"
    assert (resumed["recovered"], resumed["epoch"]) == (True, last["epoch"])
    assert texts(resumed["messages"]) == [(last["id"] + i, "liner", t) for i, t in enumerate(missed, 1)]
    assert not [e for e in events if e["type"] == "message"], "a live message came before the history"
    assert (live["id"], live["text"]) == (last["id"] + len(missed) + 1, "live")


def test_resumeWithAnotherEpoch(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    Resuming with an epoch the database does not have is answered with
    C{recovered: false}, reason C{epoch}, the real epoch and the recent
    history (the last C{--history-size} messages).
    """
    daemon = startDaemon("--history-size", "3", web=LOOPBACK)

    async def main() -> dict[str, Any]:
        async with Users() as users:
            liner = await lineUserAsync(lineClients, daemon, "liner")
            await lineSays(liner, "liner", *("m%d" % (i,) for i in range(1, 6)))
            amy, events = await users.hello(daemon, nick="amy", since={"#lobby": {"epoch": "not-ours", "id": 2}})
            ack = await amy.say("x", "r1")
            history = one(events, "history")
            history["ackEpoch"] = ack["epoch"]
            return history

    history = runAsync(main)
    assert (history["recovered"], history["reason"]) == (False, "epoch")
    assert history["epoch"] == history["ackEpoch"] != "not-ours"
    assert texts(history["messages"]) == [(3, "liner", "m3"), (4, "liner", "m4"), (5, "liner", "m5")]


def test_resendAfterReconnectIsNotDuplicated(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    A json user that resends a C{say} with the same ref after reconnecting
    gets the first message's id in the ack, and the other users see the
    message once; the history has it once.
    """
    daemon = startDaemon(web=LOOPBACK)

    async def main() -> tuple[int, int, int, list[str], list[dict[str, Any]]]:
        async with Users() as users:
            liner = await lineUserAsync(lineClients, daemon, "liner")
            amy, _ = await users.hello(daemon, nick="amy")
            first = await amy.say("only once", "x1")
            amy.drop()
            await leaves(liner, "amy")
            amy, _ = await users.hello(daemon, nick="amy")
            again = await amy.say("only once", "x1")
            done = await amy.say("done", "x2")
            await asyncio.to_thread(liner.expect, "#lobby <amy> done")
            return first["id"], again["id"], done["id"], list(liner.history), await amy.allHistory()

    first, again, done, lines, history = runAsync(main)
    assert again == first
    assert done == first + 1
    assert [line for line in lines if line.startswith("#lobby ")] == ["#lobby <amy> only once", "#lobby <amy> done"]
    assert texts(history) == [(first, "amy", "only once"), (done, "amy", "done")]


# -- private history ------------------------------------------------------------


def test_privateHistoryForTheTokenOnly(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    Private messages a json user did not get to read (its connection died)
    are in the C{private-history} it gets on reconnecting with its nick's
    token and the last private id it saw: exactly those. A connection with
    the same nick and no token, or a wrong one, is not the owner and gets
    no private history.
    """
    daemon = startDaemon(web=LOOPBACK)
    unseen = ["unseen %d" % (i,) for i in range(1, 4)]

    async def main() -> dict[str, Any]:
        async with Users() as users:
            out: dict[str, Any] = {}
            liner = await lineUserAsync(lineClients, daemon, "liner")
            jay, events = await users.hello(daemon, nick="jay")
            out["welcome"] = welcome = events[0]
            liner.send("/msg jay seen")
            out["seen"] = seen = (await jay.until("private"))[-1]
            for text in unseen:
                liner.send("/msg jay " + text)
                await asyncio.to_thread(liner.expect, "-> *jay* " + text)
            jay.drop()
            await leaves(liner, "jay")

            jay, events = await users.hello(daemon, nick="jay", token=welcome["token"], private_since=seen["id"])
            out["owner"] = events[0]
            events += await jay.until("private-history")
            out["private"] = one(events, "private-history")
            await jay.close()
            await leaves(liner, "jay")

            out["strangers"] = []
            for token in (None, "not-the-token"):
                hello: dict[str, Any] = {"nick": "jay"}
                if token is not None:
                    hello["token"] = token
                stranger, events = await users.hello(daemon, **hello)
                # history reads and private history are answered in order: once
                # this history is here, no private history is still on its way
                await stranger.send(type="history")
                events += await stranger.until("history")
                out["strangers"].append(events)
                await stranger.close()
                await leaves(liner, "jay")
            return out

    out = runAsync(main)
    assert out["welcome"]["owner"] is True and isinstance(out["welcome"]["token"], str)
    assert (out["seen"]["from"], out["seen"]["to"], out["seen"]["text"]) == ("liner", "jay", "seen")
    assert out["owner"]["owner"] is True and "token" not in out["owner"]
    assert [(p["id"], p["from"], p["to"], p["text"]) for p in out["private"]["messages"]] == [
        (out["seen"]["id"] + i, "liner", "jay", text) for i, text in enumerate(unseen, 1)
    ]
    for events in out["strangers"]:
        assert (events[0]["type"], events[0]["owner"]) == ("welcome", False)
        assert "token" not in events[0]
        assert [e for e in events if e["type"] in ("private", "private-history")] == []


# -- history paging -------------------------------------------------------------


def test_historyPaging(startDaemon: Callable[..., Daemon]) -> None:
    """
    json C{history} with C{before} and C{limit} pages backwards through a
    room: each page is oldest first, the pages do not overlap, and together
    they are the whole history; a page before the first id is empty.
    """
    daemon = startDaemon(*NO_FLOOD, web=LOOPBACK)

    async def main() -> list[list[tuple[int, str, str]]]:
        async with Users() as users:
            amy, _ = await users.hello(daemon, nick="amy")
            for i in range(1, 26):
                await amy.say("m%d" % (i,), "r%d" % (i,))
            pages = [await amy.history(limit=10)]
            while pages[-1]:
                pages.append(await amy.history(before=pages[-1][0]["id"], limit=10))
            return [texts(p) for p in pages]

    pages = runAsync(main)
    expected = [(i, "amy", "m%d" % (i,)) for i in range(1, 26)]
    assert pages == [expected[15:25], expected[5:15], expected[0:5], []]


# -- unusable databases -----------------------------------------------------------


def test_corruptedDatabaseStopsStartUp(runTwistd: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    """
    A C{chat.sqlite3} that is not a database stops start-up with one line
    naming it and exit status 1; the file is left byte for byte as it was,
    with nothing beside it.
    """
    (tmp_path / "chat.sqlite3").write_bytes(b"garbage, not SQLite\n" * 200 + os.urandom(2048))
    before = snapshot(tmp_path)
    done = runTwistd("--line", LOOPBACK, "--web", "none")
    output = (done.stdout + done.stderr).splitlines()
    assert (done.returncode, output) == (1, ["twistd chat: cannot use chat.sqlite3: file is not a database"])
    assert snapshot(tmp_path) == before


def test_unwritableFolderStopsStartUp(tmp_path: Path) -> None:
    """
    A database to be created in a folder the daemon cannot write to stops
    start-up with one line saying so and exit status 1; nothing is created.
    """
    from tests.support.daemon import twistdCommand

    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        done = subprocess.run(
            [*unprivileged(), *twistdCommand("--line", LOOPBACK, "--web", "none", "--store", "sqlite:readonly/chat.sqlite3")],
            cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )
        output = (done.stdout + done.stderr).splitlines()
        assert (done.returncode, output) == (
            1, ["twistd chat: cannot create readonly/chat.sqlite3: folder %s is not writable" % (folder,)]
        )
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)
