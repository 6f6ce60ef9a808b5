"""
End-to-end tests of the web port: the real daemon (C{twistd chat}) as a
subprocess, driven by a third-party WebSocket client (the C{websockets}
package), a line-chat client, a raw socket and plain HTTP.

The C{websockets} client is asyncio code. Each test runs its coroutine with
L{runAsync}: a fresh event loop in a worker thread, so it works whichever
reactor pytest-twisted runs in the main thread; every wait in it is bounded.
"""

from __future__ import annotations

import re

import asyncio
import base64
import json
import os
import signal
import socket
import struct
import time
import urllib.request
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.aio import runAsync
from tests.support.daemon import LOOPBACK
from tests.support.wsclients import openWs, webUrl

if TYPE_CHECKING:
    from tests.support.daemon import Daemon, LineClient

pytestmark = pytest.mark.e2e

T = TypeVar("T")

#: bound on every single wait (a frame, a handshake, a close)
TIMEOUT = 10.0





async def recv(ws: ClientConnection) -> str:
    """
    The next text frame; fails if none comes in time.
    """
    frame = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(frame, str), "expected a text frame, got %r" % (frame,)
    return frame


async def readUntil(ws: ClientConnection, match: Callable[[str], bool]) -> list[str]:
    """
    Read text frames until one satisfies C{match}; return them all, that
    one last.
    """
    frames = []
    while True:
        frame = await recv(ws)
        frames.append(frame)
        if match(frame):
            return frames


async def closeCode(ws: ClientConnection) -> int:
    """
    Read (and drop) frames until the server closes; return the close code
    it sent.
    """
    try:
        while True:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    except ConnectionClosed as e:
        assert e.rcvd is not None, "the server closed TCP without a close frame"
        return e.rcvd.code


async def textUser(daemon: Daemon, nick: str, path: str = "/ws") -> ClientConnection:
    """
    A text-mode WebSocket user at C{path}, welcomed and renamed to C{nick}.
    """
    ws = await openWs(daemon, path)
    assert ws.subprotocol is None
    first = await recv(ws)
    assert first.startswith("*** Welcome to twisted-chat, "), first
    await readUntil(ws, lambda line: line.startswith("*** #lobby: members: "))
    await ws.send("/nick " + nick)
    await readUntil(ws, lambda line: line == "*** you are now " + nick)
    return ws


async def jsonUser(daemon: Daemon, nick: str) -> ClientConnection:
    """
    A json-mode WebSocket user who has said hello as C{nick} and got #lobby's
    history.
    """
    ws = await openWs(daemon, subprotocols=["chat.json"])
    assert ws.subprotocol == "chat.json"
    await ws.send(json.dumps({"type": "hello", "nick": nick}))
    frames = await readUntil(ws, lambda f: json.loads(f)["type"] == "history")
    welcome = json.loads(frames[0])
    assert (welcome["type"], welcome["nick"], welcome["rooms"]) == ("welcome", nick, ["#lobby"])
    assert welcome["server"].startswith("twisted-chat/")
    return ws


def lineUntilAll(client: LineClient, wanted: set[str]) -> None:
    """
    Read lines until every line in C{wanted} has been seen.
    """
    missing = set(wanted)
    deadline = time.monotonic() + TIMEOUT
    while missing:
        line = client.readLine(deadline)
        assert line is not None, "connection closed; still missing %r" % (missing,)
        missing.discard(line)


async def textUntilAll(ws: ClientConnection, wanted: set[str]) -> None:
    """
    Read text-mode lines until every line in C{wanted} has been seen.
    """
    missing = set(wanted)
    while missing:
        missing.discard(await recv(ws))


async def jsonUntilAll(ws: ClientConnection, wanted: set[tuple[str, str]]) -> None:
    """
    Read json-mode events until a #lobby message for every C{(from, text)}
    in C{wanted} has been seen.
    """
    missing = set(wanted)
    while missing:
        obj = json.loads(await recv(ws))
        if obj["type"] == "message":
            assert obj["room"] == "#lobby"
            missing.discard((obj["from"], obj["text"]))


class RawWebSocket:
    """
    A WebSocket client on a plain socket, to send frames no well-behaved
    client library would.
    """

    def __init__(self, port: int, path: str = "/ws") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        self.sock.sendall(
            (
                "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                % (path, port, key)
            ).encode("ascii")
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.buffer += data

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def sendFrame(self, opcode: int, payload: bytes, masked: bool = True) -> None:
        assert len(payload) < 126
        header = bytes([0x80 | opcode, (0x80 if masked else 0) | len(payload)])
        if masked:
            mask = os.urandom(4)
            payload = mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + payload)

    def readFrame(self) -> tuple[int, bytes]:
        """
        The next frame from the server: (opcode, payload).
        """
        first, second = self._take(2)
        assert not second & 0x80, "the server masked a frame"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._take(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._take(8))
        return first & 0x0F, self._take(length)

    def closeCode(self) -> int:
        """
        Read frames until the server's close frame; return its code.
        """
        while True:
            opcode, payload = self.readFrame()
            if opcode == 8:
                assert len(payload) >= 2, "a close frame without a code"
                return int(struct.unpack("!H", payload[:2])[0])

    def close(self) -> None:
        self.sock.close()


# -- chatting --


def test_allFrontEndsChat(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    A line user, a text-mode WebSocket user at C{/ws}, one at C{/} (like the
    seed's WsClient.js) and a json-mode user all chat in #lobby: every one of
    them sees what each of the others says.
    """
    daemon = startDaemon(web=LOOPBACK)
    said = [("liner", "from the line chat"), ("wstext", "from /ws"), ("wsroot", "from /"), ("jason", "from json")]
    chatLines = {"#lobby <%s> %s" % pair for pair in said}

    async def main() -> None:
        line = lineClients(daemon.ports["line"])
        await asyncio.to_thread(line.welcome)
        line.send("/nick liner")
        await asyncio.to_thread(line.expect, "*** you are now liner")
        wsText = await textUser(daemon, "wstext", "/ws")
        wsRoot = await textUser(daemon, "wsroot", "/")
        jason = await jsonUser(daemon, "jason")
        try:
            line.send("from the line chat")
            await wsText.send("from /ws")
            await wsRoot.send("from /")
            await jason.send(json.dumps({"type": "say", "text": "from json"}))
            await asyncio.gather(
                asyncio.to_thread(lineUntilAll, line, chatLines),
                textUntilAll(wsText, chatLines),
                textUntilAll(wsRoot, chatLines),
                jsonUntilAll(jason, set(said)),
            )
        finally:
            for ws in (wsText, wsRoot, jason):
                await ws.close()

    runAsync(main)


# -- origins --


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:1"])
def test_foreignOriginRefused(startDaemon: Callable[..., Daemon], origin: str) -> None:
    """
    A WebSocket handshake from a foreign Origin (another site, or another
    port of the same host) is refused with HTTP 403.
    """
    daemon = startDaemon(web=LOOPBACK)

    async def main() -> int:
        with pytest.raises(InvalidStatus) as info:
            async with openWs(daemon, origin=origin):
                pass
        return int(info.value.response.status_code)

    assert runAsync(main) == 403


def test_sameOriginAccepted(startDaemon: Callable[..., Daemon]) -> None:
    """
    A WebSocket handshake from the page's own origin (what a browser sends
    from the chat page) is accepted.
    """
    daemon = startDaemon(web=LOOPBACK)

    async def main() -> str:
        async with openWs(daemon, origin="http://127.0.0.1:%d" % (daemon.ports["web"],)) as ws:
            return await recv(ws)

    assert runAsync(main).startswith("*** Welcome to twisted-chat, ")


def test_allowOrigin(startDaemon: Callable[..., Daemon]) -> None:
    """
    C{--allow-origin} adds an origin whose pages may connect; other foreign
    origins are still refused with 403.
    """
    daemon = startDaemon("--allow-origin", "https://chat.example.com", web=LOOPBACK)

    async def main() -> tuple[str, int]:
        async with openWs(daemon, origin="https://chat.example.com") as ws:
            first = await recv(ws)
        with pytest.raises(InvalidStatus) as info:
            async with openWs(daemon, origin="https://other.example.com"):
                pass
        return first, int(info.value.response.status_code)

    first, status = runAsync(main)
    assert first.startswith("*** Welcome to twisted-chat, ")
    assert status == 403


# -- limits and protocol errors --


def test_messageTooBig(startDaemon: Callable[..., Daemon]) -> None:
    """
    A 70 kB message (over the default 64 KiB limit) closes the WebSocket
    with 1009 (message too big).
    """
    daemon = startDaemon(web=LOOPBACK)

    async def main() -> int:
        async with openWs(daemon) as ws:
            await recv(ws)
            await ws.send("x" * 70_000)
            return await closeCode(ws)

    assert runAsync(main) == 1009


def test_invalidUtf8(startDaemon: Callable[..., Daemon]) -> None:
    """
    A text frame that is not valid UTF-8 closes the WebSocket with 1007
    (invalid payload data).
    """
    daemon = startDaemon(web=LOOPBACK)

    async def main() -> int:
        async with openWs(daemon) as ws:
            await recv(ws)
            await ws.send(b"caf\xc3 \xff", text=True)
            return await closeCode(ws)

    assert runAsync(main) == 1007


@pytest.mark.parametrize(
    "opcode, masked",
    [(0x1, False), (0x3, True), (0xB, True)],
    ids=["unmasked-client-frame", "reserved-data-opcode", "reserved-control-opcode"],
)
def test_protocolViolation(startDaemon: Callable[..., Daemon], opcode: int, masked: bool) -> None:
    """
    A protocol violation (an unmasked client frame, a reserved opcode) is
    answered with a close frame with 1002 (protocol error), then the server
    closes the connection; it is not dropped silently.
    """
    daemon = startDaemon(web=LOOPBACK)
    raw = RawWebSocket(daemon.ports["web"])
    try:
        raw.sendFrame(opcode, b"hello", masked=masked)
        assert raw.closeCode() == 1002
        # Answer the close handshake as a client should; the server then
        # ends the TCP connection (a reset is fine: it reads nothing more
        # from a connection it has failed).
        raw.sendFrame(0x8, struct.pack("!H", 1002))
        with pytest.raises((EOFError, ConnectionResetError)):
            while True:
                raw.readFrame()
    finally:
        raw.close()


# -- shutdown --


def test_sigtermClosesWebSockets(startDaemon: Callable[..., Daemon]) -> None:
    """
    On SIGTERM, a json-mode user gets a C{notice} and a text-mode user a
    C{***} line saying the server is shutting down; both WebSockets are
    then closed with 1001 (going away), and the daemon stops cleanly.
    """
    daemon = startDaemon(web=LOOPBACK)

    async def main() -> tuple[list[Any], int, list[str], int]:
        jason = await jsonUser(daemon, "jason")
        wsText = await textUser(daemon, "wstext")
        daemon.signal(signal.SIGTERM)
        jsonFrames = [json.loads(f) for f in await readUntil(jason, lambda f: json.loads(f)["type"] == "notice")]
        textFrames = await readUntil(wsText, lambda line: "shutting down" in line)
        return jsonFrames, await closeCode(jason), textFrames, await closeCode(wsText)

    jsonFrames, jsonCode, textFrames, textCode = runAsync(main)
    notice = jsonFrames[-1]
    assert notice["text"] == "server shutting down"
    # clients are told to come back after a jittered 1-11 s: no reconnect storm
    assert 1000 <= notice["reconnect_after"] <= 11000
    assert jsonCode == 1001
    assert re.match('^\\*\\*\\* server shutting down \\(reconnect in about ([1-9]|1[01]) s\\)$', textFrames[-1]), textFrames[-1]
    assert textCode == 1001
    daemon.stop()
    assert daemon.stoppedCleanly, daemon.log


# -- HTTP --


def test_pageOverHttp(startDaemon: Callable[..., Daemon]) -> None:
    """
    The chat page is served over real HTTP at C{/} with its security
    headers, and its script at C{/app.js}.
    """
    daemon = startDaemon(web=LOOPBACK)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(webUrl(daemon, "/", "http"), timeout=TIMEOUT) as page:
        assert page.status == 200
        assert page.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Frame-Options"] == "DENY"
        body = page.read()
    assert b"<title>twisted-chat</title>" in body
    assert b'<script src="app.js"' in body
    with opener.open(webUrl(daemon, "/app.js", "http"), timeout=TIMEOUT) as script:
        assert script.status == 200
        assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert b"chat.json" in script.read()


def test_ownerOnTwoDevices(startDaemon: Callable[..., Daemon]) -> None:
    """
    The owner of a nick connects twice with its token (a phone and a
    laptop): both connections get the room's messages, the private
    messages to the nick and the read position; the others see the nick
    once and see it leave only with its last connection.
    """
    from tests.support.wsclients import Users, one

    daemon = startDaemon(web=LOOPBACK)

    async def main() -> dict[str, Any]:
        async with Users() as users:
            laptop, welcome = await users.hello(daemon, nick="amy")
            token = one(welcome, "welcome")["token"]
            bob, _ = await users.hello(daemon, nick="bob")
            await laptop.until("join")  # (bob's)
            phone, events = await users.hello(daemon, nick="amy", token=token)
            presence = one(events, "presence")
            await bob.send(type="say", text="hi amy")
            await bob.send(type="msg", to="amy", text="psst", ref="p1")
            got = {}
            for name, device in (("laptop", laptop), ("phone", phone)):
                seen = await device.expect(lambda e: e["type"] == "private")
                got[name] = [(e["type"], e.get("text")) for e in seen if e["type"] in ("message", "private")]
            await phone.request(type="read", room="#lobby", id=1, ref="r1")
            read = (await laptop.until("read"))[-1]
            await phone.close()
            await laptop.send(type="say", text="still here", ref="s1")
            afterPhone = await bob.expect(lambda e: e["type"] == "message" and e["text"] == "still here")
            await laptop.close()
            left = (await bob.until("part"))[-1]
            return {"presence": presence, "got": got, "read": read, "afterPhone": afterPhone, "left": left}

    result = runAsync(main)
    assert result["presence"]["members"] == ["amy", "bob"]
    assert result["got"]["laptop"] == result["got"]["phone"] == [("message", "hi amy"), ("private", "psst")]
    assert (result["read"]["room"], result["read"]["id"]) == ("#lobby", 1)
    # the phone's leaving was not told: the laptop's message came first
    assert "part" not in [e["type"] for e in result["afterPhone"]]
    assert result["afterPhone"][-1]["text"] == "still here"
    assert result["left"]["nick"] == "amy"
