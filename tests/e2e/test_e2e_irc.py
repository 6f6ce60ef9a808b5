"""
End-to-end tests of the IRC front-end: the real daemon (C{twistd chat
--irc …}) as a subprocess, an IRC client from PyPI (C{pydle}, not our
code) in #lobby with a line-chat user, a json-mode WebSocket user
(C{websockets}) and twisted.words' own C{IRCClient}; and raw sockets for
bad input.

pydle is asyncio code: each scenario runs in L{runAsync} (its own loop in
a worker thread), every wait bounded by L{TIMEOUT}. The twisted.words test
runs in pytest-twisted's reactor, bounded the same way.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pydle
import pytest
import pytest_twisted
from tests.support.aio import runAsync
from tests.support.daemon import LOOPBACK
from tests.support.lines import lineUser
from tests.support.wsclients import JsonUser

from twisted_chat.core.auth import hashPassword

if TYPE_CHECKING:
    from conftest import Daemon, LineClient

pytestmark = pytest.mark.e2e

#: bound on every single wait (a line, a registration)
TIMEOUT = 10.0


def startIrc(startDaemon: Callable[..., Daemon], *args: str, web: str = "none") -> Daemon:
    """
    The daemon with IRC (and the line chat) on free loopback ports.
    """
    daemon = startDaemon("--irc", "tcp:0:interface=127.0.0.1", *args, web=web)
    daemon.waitListening(("irc",), TIMEOUT)
    return daemon


class Seen:
    """
    One IRC message as a client library gave it: command (numerics as
    three digits), parameters, source and tags.
    """

    def __init__(self, command: object, params: list[str], source: str, tags: dict[str, Any]) -> None:
        self.command = "%03d" % (command,) if isinstance(command, int) else str(command)
        self.params = list(params)
        self.source = source or ""
        self.tags = dict(tags or {})

    def __repr__(self) -> str:
        return "<%s %s %r %r>" % (self.source, self.command, self.params, self.tags)


class IrcUser(pydle.Client):  # type: ignore[misc]
    """
    A pydle client that asks for the capabilities of the chat's history
    (besides those pydle asks for itself) and keeps every message it gets,
    to wait for one.
    """

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.inbox: asyncio.Queue[Seen] = asyncio.Queue()
        self.signedOn = asyncio.Event()

    async def on_capability_server_time_available(self, value: str) -> bool:
        return True

    async def on_capability_batch_available(self, value: str) -> bool:
        return True

    async def on_capability_draft_chathistory_available(self, value: str) -> bool:
        return True

    async def on_raw(self, message: Any) -> None:
        await self.inbox.put(Seen(message.command, message.params, message.source, getattr(message, "tags", {})))
        await super().on_raw(message)

    async def on_connect(self) -> None:
        await super().on_connect()
        self.signedOn.set()

    async def expect(self, match: Callable[[Seen], bool]) -> list[Seen]:
        """
        Read messages until one satisfies C{match}; all of them, that one last.
        """
        got = []
        deadline = time.monotonic() + TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no such message within %s s; got %r" % (TIMEOUT, got))
            m = await asyncio.wait_for(self.inbox.get(), left)
            got.append(m)
            if match(m):
                return got


async def ircUser(daemon: Daemon, nick: str, cls: type[IrcUser] = IrcUser, **kw: Any) -> IrcUser:
    user = cls(nick, realname="pydle user", **kw)
    await asyncio.wait_for(user.connect("127.0.0.1", daemon.ports["irc"], tls=False), TIMEOUT)
    await asyncio.wait_for(user.signedOn.wait(), TIMEOUT)
    return user


def privmsg(text: str) -> Callable[[Seen], bool]:
    return lambda m: m.command == "PRIVMSG" and m.params[-1] == text


def test_oneConversation(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    An IRC client in #lobby chats with a line user and a json user: each
    sees the others' messages, joins, nick changes and leaves; then it
    reads the room's history with CHATHISTORY, by msgid.
    """
    daemon = startIrc(startDaemon, web=LOOPBACK)
    nc = lineUser(lineClients, daemon, "nc")

    async def scenario() -> None:
        irc = await ircUser(daemon, "pyd")
        await irc.join("#lobby")
        names = await irc.expect(lambda m: m.command == "353")
        assert names[-1].params[-1].split() == ["@nc", "pyd"]
        nc.expect("*** #lobby: pyd joined")
        js, _ = await JsonUser.hello(daemon, nick="js")
        await irc.expect(lambda m: m.command == "JOIN" and m.source.startswith("js!"))

        nc.send("hello from nc")
        [m] = (await irc.expect(privmsg("hello from nc")))[-1:]
        assert m.source == "nc!nc@twisted-chat" and m.params[0] == "#lobby"
        assert re.match(r"lobby/\w+/1\Z", m.tags["msgid"])
        assert m.tags["time"].endswith("Z")

        await js.send(type="say", text="hello from json")
        [m] = (await irc.expect(privmsg("hello from json")))[-1:]
        assert m.source.startswith("js!")

        await irc.message("#lobby", "hello from irc")
        nc.expect("#lobby <pyd> hello from irc")
        said = (await js.expect(lambda e: e["type"] == "message" and e["text"] == "hello from irc"))[-1]
        assert said["from"] == "pyd"
        # (pydle asks for echo-message: its own message comes back, stored)
        [echo] = (await irc.expect(privmsg("hello from irc")))[-1:]
        assert echo.tags["msgid"] == "lobby/%s/%d" % (said["epoch"], said["id"])

        nc.send("/nick ncat")
        [m] = (await irc.expect(lambda m: m.command == "NICK"))[-1:]
        assert (m.source, m.params) == ("nc!nc@twisted-chat", ["ncat"])

        # History: the last two, then the one before them, by msgid
        await irc.rawmsg("CHATHISTORY", "LATEST", "#lobby", "*", "2")
        batch = await irc.expect(lambda m: m.command == "BATCH" and m.params[0].startswith("-"))
        texts = [m.params[-1] for m in batch if m.command == "PRIVMSG" and "batch" in m.tags]
        assert texts == ["hello from json", "hello from irc"]
        first = [m for m in batch if m.command == "PRIVMSG" and "batch" in m.tags][0].tags["msgid"]
        await irc.rawmsg("CHATHISTORY", "BEFORE", "#lobby", "msgid=" + first, "10")
        batch = await irc.expect(lambda m: m.command == "BATCH" and m.params[0].startswith("-"))
        assert [m.params[-1] for m in batch if m.command == "PRIVMSG"] == ["hello from nc"]

        await js.close()
        [m] = (await irc.expect(lambda m: m.command == "QUIT"))[-1:]
        assert m.source.startswith("js!")
        await asyncio.wait_for(irc.quit("bye"), TIMEOUT)
        nc.expect("*** #lobby: pyd left (quit: bye)")

    runAsync(scenario)


def test_loginWithSasl(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient], tmp_path: Path) -> None:
    """
    A registered nick logs in with SASL PLAIN (pydle's own SASL) and gets
    the private messages sent to it while it was away; a wrong password is
    refused.
    """
    users = tmp_path / "users.txt"
    users.write_text("alice:%s\n" % (hashPassword("sesame"),))
    daemon = startIrc(startDaemon, "--auth", str(users))
    nc = lineUser(lineClients, daemon, "nc")
    nc.send("/msg alice are you there?")
    nc.expect("*** notice: alice is offline: they will see it when they come back")

    async def scenario() -> None:
        alice = await ircUser(daemon, "alice", sasl_username="alice", sasl_password="sesame")
        got = await alice.expect(privmsg("are you there?"))
        assert any(m.command == "903" for m in got)
        assert got[-1].source == "nc!nc@twisted-chat" and got[-1].params[0] == "alice"
        await alice.rawmsg("WHOIS", "alice")
        whois = await alice.expect(lambda m: m.command == "330")
        assert whois[-1].params[1:3] == ["alice", "alice"]
        await asyncio.wait_for(alice.quit(), TIMEOUT)

        mallory = IrcUser("alice", realname="x", sasl_username="alice", sasl_password="guess")
        await asyncio.wait_for(mallory.connect("127.0.0.1", daemon.ports["irc"], tls=False), TIMEOUT)
        await mallory.expect(lambda m: m.command == "904")
        await asyncio.wait_for(mallory.disconnect(expected=True), TIMEOUT)

    runAsync(scenario)


class DraftsUser(IrcUser):
    """
    An L{IrcUser} that also asks for the drafts of a conversation.
    """

    async def on_capability_draft_message_redaction_available(self, value: str) -> bool:
        return True

    async def on_capability_draft_read_marker_available(self, value: str) -> bool:
        return True


def test_drafts(startDaemon: Callable[..., Daemon], tmp_path: Path) -> None:
    """
    A logged-in IRC client (pydle, sending the drafts' lines raw) next to
    a json user: typing both ways, a reply, a reaction, the json user's
    edit and deletion, a REDACT of its own message, and its read position
    (MARKREAD), which a new JOIN gives back before 366 (read from the
    daemon's SQLite store).
    """
    users = tmp_path / "users.txt"
    users.write_text("alice:%s\n" % (hashPassword("sesame"),))
    daemon = startIrc(startDaemon, "--auth", str(users), web=LOOPBACK)

    async def scenario() -> None:
        js, _ = await JsonUser.hello(daemon, nick="js")
        alice = DraftsUser("alice", realname="pydle user", sasl_username="alice", sasl_password="sesame")
        await asyncio.wait_for(alice.connect("127.0.0.1", daemon.ports["irc"], tls=False), TIMEOUT)
        await asyncio.wait_for(alice.signedOn.wait(), TIMEOUT)
        await alice.join("#lobby")
        names = await alice.expect(lambda m: m.command == "366")
        assert [m.params for m in names if m.command == "MARKREAD"] == [["#lobby", "*"]]

        ack = await js.say("lunch?", "r1")
        [m] = (await alice.expect(privmsg("lunch?")))[-1:]
        lunch, when = m.tags["msgid"], m.tags["time"]
        assert lunch == "lobby/%s/%d" % (ack["epoch"], ack["id"])

        await alice.rawmsg("TAGMSG", "#lobby", tags={"+typing": "active"})
        typing = (await js.expect(lambda e: e["type"] == "typing"))[-1]
        assert (typing["nick"], typing["state"]) == ("alice", "active")
        await js.send(type="typing", room="#lobby", state="active")
        [m] = (await alice.expect(lambda m: m.command == "TAGMSG"))[-1:]
        assert m.source.startswith("js!") and m.tags["+typing"] == "active"

        await alice.rawmsg("PRIVMSG", "#lobby", "yes!", tags={"+draft/reply": lunch})
        said = (await js.expect(lambda e: e["type"] == "message" and e["text"] == "yes!"))[-1]
        assert said["reply_to"] == ack["id"]
        [echo] = (await alice.expect(privmsg("yes!")))[-1:]
        await alice.rawmsg("TAGMSG", "#lobby", tags={"+draft/react": "👍", "+draft/reply": lunch})
        react = (await js.expect(lambda e: e["type"] == "react"))[-1]
        assert (react["id"], react["emoji"], react["nick"], react["on"]) == (ack["id"], "👍", "alice", True)

        await js.send(type="edit", room="#lobby", id=ack["id"], text="lunch at 12?")
        [m] = (await alice.expect(lambda m: m.command == "NOTICE" and m.source.startswith("js!")))[-1:]
        assert m.params == ["#lobby", 'edited "lunch?": lunch at 12?'] and m.tags["+draft/reply"] == lunch
        await js.send(type="delete", room="#lobby", id=ack["id"])
        [m] = (await alice.expect(lambda m: m.command == "REDACT"))[-1:]
        assert m.source.startswith("js!") and m.params == ["#lobby", lunch]

        await alice.rawmsg("REDACT", "#lobby", echo.tags["msgid"])
        deleted = (await js.expect(lambda e: e["type"] == "delete" and e["by"] == "alice"))[-1]
        assert (deleted["id"], deleted["by"]) == (said["id"], "alice")

        await alice.rawmsg("MARKREAD", "#lobby", "timestamp=" + when)
        [m] = (await alice.expect(lambda m: m.command == "MARKREAD"))[-1:]
        assert m.params == ["#lobby", "timestamp=" + when]
        await alice.part("#lobby")
        await alice.expect(lambda m: m.command == "PART")
        await alice.join("#lobby")
        names = await alice.expect(lambda m: m.command == "366")
        assert [m.params for m in names if m.command == "MARKREAD"] == [["#lobby", "timestamp=" + when]]
        await js.close()
        await asyncio.wait_for(alice.quit(), TIMEOUT)

    runAsync(scenario)


class PlaybackUser(IrcUser):
    """
    An L{IrcUser} that has its joins play history back (no
    C{draft/chathistory}) with the events of its messages
    (C{draft/event-playback}).
    """

    async def on_capability_draft_chathistory_available(self, value: str) -> bool:
        return False

    async def on_capability_draft_event_playback_available(self, value: str) -> bool:
        return True


def test_reactionsPlayedBack(startDaemon: Callable[..., Daemon]) -> None:
    """
    A json user's reaction to its message is played back, after the
    message, in the history batch of a pydle client's join.
    """
    daemon = startIrc(startDaemon, web=LOOPBACK)

    async def scenario() -> None:
        js, _ = await JsonUser.hello(daemon, nick="js")
        ack = await js.say("lunch?", "r1")
        await js.send(type="react", room="#lobby", id=ack["id"], emoji="👍")
        await js.expect(lambda e: e["type"] == "react")
        late = await ircUser(daemon, "late", cls=PlaybackUser)
        await late.join("#lobby")
        got = await late.expect(lambda m: m.command == "BATCH" and str(m.params[0]).startswith("-"))
        [start] = [m for m in got if m.command == "BATCH" and str(m.params[0]).startswith("+")]
        ref = start.params[0][1:]
        batch = [m for m in got if m.tags.get("batch") == ref]
        assert [m.command for m in batch] == ["PRIVMSG", "TAGMSG"]
        lunch = batch[0].tags["msgid"]
        assert lunch == "lobby/%s/%d" % (ack["epoch"], ack["id"])
        react = batch[1]
        assert react.source.startswith("js!") and react.params == ["#lobby"]
        assert (react.tags["+draft/react"], react.tags["+draft/reply"]) == ("👍", lunch)
        assert react.tags["time"] == batch[0].tags["time"]
        await js.close()
        await asyncio.wait_for(late.quit(), TIMEOUT)

    runAsync(scenario)


class _Raw:
    """
    A raw IRC connection for bad input: bytes out, lines in, every read
    bounded.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def expect(self, pattern: str) -> list[str]:
        got = []
        deadline = time.monotonic() + TIMEOUT
        while True:
            while b"\r\n" not in self.buffer:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                data = self.sock.recv(65536)
                assert data, "closed; got %r" % (got,)
                self.buffer += data
            line, _, self.buffer = self.buffer.partition(b"\r\n")
            text = line.decode("utf-8")
            got.append(text)
            if re.search(pattern, text):
                return got

    def close(self) -> None:
        self.sock.close()


def test_badInputIsAnsweredAndHarmsNobody(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    Over-long lines, too many tags, invalid UTF-8, garbage and unknown
    commands each get their answer; the connection and everyone else go
    on, and a flood is slowed down, then disconnected, as on the line chat.
    """
    daemon = startIrc(startDaemon, "--flood-kick", "30")
    nc = lineUser(lineClients, daemon, "nc")
    raw = _Raw(daemon.ports["irc"])
    try:
        raw.send(b"NICK raw\r\nUSER r 0 * :r\r\nJOIN #lobby\r\n")
        raw.expect(r" 366 raw #lobby ")
        raw.send(b"PRIVMSG #lobby :" + b"x" * 1000 + b"\r\n")
        raw.expect(r" 417 raw :Input line was too long")
        raw.send(b"@" + b"t=" + b"v" * 10000 + b" PING x\r\n")
        raw.expect(r" 417 raw ")
        raw.send(b"PRIVMSG #lobby :caf\xe9\r\n")
        raw.expect(r"FAIL PRIVMSG INVALID_UTF8 ")
        raw.send(b"\x00\x01\x02 \xff\r\n:onlyasource\r\nFLY me\r\n")
        raw.expect(r" 421 raw FLY ")
        raw.send("PRIVMSG #lobby :still here é\r\n".encode())
        nc.expect("#lobby <raw> still here é")
        # a flood: more than --flood-kick lines at once
        raw.send(b"".join(b"PRIVMSG #lobby :flood %d\r\n" % (i,) for i in range(200)))
        raw.expect(r"^ERROR :Closing link: disconnected for flooding")
        nc.expect("*** #lobby: raw left (flooding)")
        nc.send("/who")
        nc.expect("*** #lobby: members: nc")
    finally:
        raw.close()


@pytest_twisted.inlineCallbacks
def test_twistedWordsClient(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> Any:
    """
    twisted.words' own IRC client signs on, joins #lobby and chats with a
    line user.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.internet.threads import deferToThread
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.words.protocols.irc import IRCClient

    daemon = startIrc(startDaemon)
    nc = lineUser(lineClients, daemon, "nc")
    signedOn: Deferred[None] = Deferred()
    joined: Deferred[str] = Deferred()
    heard: Deferred[tuple[str, str, str]] = Deferred()

    class Bot(IRCClient):
        nickname = "tw"

        def signedOn(self) -> None:
            signedOn.callback(None)

        def joined(self, channel: str) -> None:
            joined.callback(channel)

        def privmsg(self, user: str, channel: str, message: str) -> None:
            if not heard.called:
                heard.callback((user, channel, message))

    bot = Bot()
    yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", daemon.ports["irc"]), bot).addTimeout(TIMEOUT, reactor)
    try:
        yield signedOn.addTimeout(TIMEOUT, reactor)
        bot.join("#lobby")
        channel = yield joined.addTimeout(TIMEOUT, reactor)
        assert channel == "#lobby"
        # (the line client blocks: it waits in a thread, the reactor runs)
        yield deferToThread(nc.expect, "*** #lobby: tw joined")
        bot.say("#lobby", "hi from twisted.words")
        yield deferToThread(nc.expect, "#lobby <tw> hi from twisted.words")
        nc.send("hi tw")
        user, channel, message = yield heard.addTimeout(TIMEOUT, reactor)
        assert (user, channel, message) == ("nc!nc@twisted-chat", "#lobby", "hi tw")
        bot.quit("done")
        yield deferToThread(nc.expect, "*** #lobby: tw left (quit: done)")
    finally:
        bot.transport.loseConnection()


@pytest.mark.browser
@pytest.mark.timeout(120)
def test_browserPageAndIrc(startDaemon: Callable[..., Daemon], browserThread: Any) -> None:
    """
    The chat page (headless Chromium) and an IRC client in #lobby see each
    other arrive and talk.
    """
    from playwright.sync_api import expect

    daemon = startIrc(startDaemon, web=LOOPBACK)
    held: dict[str, Any] = {}

    def openPage() -> None:
        context = browserThread.browser.new_context()
        context.set_default_timeout(TIMEOUT * 1000)
        page = held["page"] = context.new_page()
        held["context"] = context
        page.goto("http://127.0.0.1:%d/" % (daemon.ports["web"],))
        page.get_by_label("Nickname").fill("web")
        page.get_by_role("button", name="Connect").click()
        expect(page.locator("body")).to_have_attribute("data-state", "online", timeout=TIMEOUT * 1000)

    def say(text: str) -> None:
        field = held["page"].get_by_label("Message", exact=True)
        field.fill(text)
        held["page"].get_by_role("button", name="Send").click()

    def sees(text: str) -> None:
        texts = held["page"].locator('#views li.msg[data-id][data-room="#lobby"] .text')
        expect(texts.last).to_have_text(text, timeout=TIMEOUT * 1000)

    def close() -> None:
        held["context"].close()

    async def scenario() -> None:
        irc = await ircUser(daemon, "pyd")
        await irc.join("#lobby")
        await irc.expect(lambda m: m.command == "366")
        try:
            await asyncio.to_thread(browserThread.call, openPage)
            await irc.expect(lambda m: m.command == "JOIN" and m.source.startswith("web!"))
            await asyncio.to_thread(browserThread.call, say, "hello from the page")
            [m] = (await irc.expect(privmsg("hello from the page")))[-1:]
            assert m.source == "web!web@twisted-chat"
            await irc.message("#lobby", "hello page, from IRC")
            await asyncio.to_thread(browserThread.call, sees, "hello page, from IRC")
        finally:
            if "context" in held:
                await asyncio.to_thread(browserThread.call, close)
        await asyncio.wait_for(irc.quit(), TIMEOUT)

    runAsync(scenario, timeout=90)


def test_clusterOfTwoNodes(
    startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient], redisServer: Any
) -> None:
    """
    With --broker, an IRC user on one node and a line user on another share
    #lobby: messages both ways, the nick of one is taken on the other, and
    the history (in Redis) is read with CHATHISTORY.
    """
    a = startIrc(startDaemon, "--broker", redisServer.url, "--node-id", "a")
    b = startDaemon("--broker", redisServer.url, "--node-id", "b")
    for daemon, name in ((a, "a"), (b, "b")):
        daemon.waitForLog(r"node %s: joined the cluster" % (name,), TIMEOUT)
    nc = lineUser(lineClients, b, "nc")

    async def scenario() -> None:
        irc = await ircUser(a, "pyd")
        await irc.join("#lobby")
        await irc.expect(lambda m: m.command == "366")
        await asyncio.to_thread(nc.expect, "*** #lobby: pyd joined")
        await asyncio.to_thread(nc.send, "hello from node b")
        [m] = (await irc.expect(privmsg("hello from node b")))[-1:]
        assert m.source == "nc!nc@twisted-chat"
        await irc.message("#lobby", "hello from node a")
        await asyncio.to_thread(nc.expect, "#lobby <pyd> hello from node a")
        await irc.rawmsg("NICK", "nc")
        [m] = (await irc.expect(lambda m: m.command in ("433", "NICK")))[-1:]
        assert m.command == "433"
        await irc.rawmsg("CHATHISTORY", "LATEST", "#lobby", "*", "10")
        batch = await irc.expect(lambda m: m.command == "BATCH" and m.params[0].startswith("-"))
        assert [m.params[-1] for m in batch if m.command == "PRIVMSG" and "batch" in m.tags] == [
            "hello from node b",
            "hello from node a",
        ]
        await asyncio.wait_for(irc.quit(), TIMEOUT)
        await asyncio.to_thread(nc.expect, "*** #lobby: pyd left (quit: Quitting)")

    runAsync(scenario)


def test_workersShareTheIrcPort(
    startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient], redisServer: Any
) -> None:
    """
    With --workers 2 the parent binds the IRC port once and its workers
    serve it: IRC users on it chat with a line user.
    """
    daemon = startIrc(startDaemon, "--broker", redisServer.url, "--workers", "2")
    assert len(daemon.listening["irc"]) == 1
    daemon.waitForLog(r"ready: 2 workers", 30)
    nc = lineUser(lineClients, daemon, "nc")

    async def scenario() -> None:
        users = []
        for i in range(4):
            user = await ircUser(daemon, "pyd%d" % (i,))
            await user.join("#lobby")
            await user.expect(lambda m: m.command == "366")
            users.append(user)
        for i, user in enumerate(users):
            await user.message("#lobby", "hello %d" % (i,))
            await asyncio.to_thread(nc.expect, "#lobby <pyd%d> hello %d" % (i, i))
        for user in users:
            await asyncio.wait_for(user.quit(), TIMEOUT)

    runAsync(scenario)
    # (the workers served them: which one is the kernel's choice)
    served = re.findall(r"\[(w\d):[^\]]*\] \S+ connected from \S+ via irc", daemon.log)
    assert len(served) == 4, daemon.log
