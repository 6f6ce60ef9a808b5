"""
End-to-end tests of the daemon under abuse: every limit of
docs/operations.md hit through real sockets on loopback with the answer a
client sees, flood control while others chat, and a barrage of random bytes
and malformed frames after which the daemon still serves.

WebSocket clients are the C{websockets} package's blocking client, or raw
sockets for frames no client library would send; every wait is bounded.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.lines import named
from tests.support.wsclients import hello, isType, receiveUntil, sendJson, webSocket

if TYPE_CHECKING:
    from tests.support.daemon import Daemon, LineClient

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0
LOOPBACK = "tcp:0:interface=127.0.0.1"
MEMORY = ("--store", "memory")


# -- helpers ------------------------------------------------------------------------


def closeCode(ws: Any) -> int:
    """
    Read until the server closes the WebSocket; the code it closed with.
    """
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:
            ws.recv(timeout=max(0.0, deadline - time.monotonic()))
    except ConnectionClosed as e:
        assert e.rcvd is not None, "closed without a close frame"
        return int(e.rcvd.code)


def handshakeStatus(daemon: Daemon) -> int:
    """
    The HTTP status of a refused WebSocket handshake.
    """
    with pytest.raises(InvalidStatus) as e:
        with webSocket(daemon, max_size=None):
            pass
    return int(e.value.response.status_code)


def probeGone(daemon: Daemon) -> None:
    """
    Wait until the daemon has seen the start-up probe (the fixture's first
    line connection) go, so that it no longer counts against any limit.
    """
    daemon.waitForLog(r"guest-1 disconnected")


# -- line chat limits ---------------------------------------------------------------


def test_lineTooLong(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    A line over C{--max-line-length} bytes is answered with one "line too
    long" error and dropped, however much of it comes; a line of exactly
    the limit is fine, and the connection stays.
    """
    daemon = startDaemon("--max-line-length", "64", *MEMORY)
    alice = named(lineClients(daemon.ports["line"]), "alice")
    alice.send("x" * 65)
    alice.expect("!!! line too long (max 64 bytes): discarded")
    alice.send("y" * 64)
    alice.expect("#lobby <alice> " + "y" * 64)
    alice.sendRaw(b"z" * 2_000_000 + b"\nafter the flood of bytes\n")
    assert alice.expect("#lobby <alice> after the flood of bytes", timeout=30) == [
        "!!! line too long (max 64 bytes): discarded"
    ]


def test_lineInvalidUtf8(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    A line that is not UTF-8 is answered "invalid UTF-8: line dropped" and
    goes nowhere; the connection stays.
    """
    daemon = startDaemon(*MEMORY)
    port = daemon.ports["line"]
    alice = named(lineClients(port), "alice")
    bob = named(lineClients(port), "bob")
    alice.sendRaw(b"caf\xc3\n\xff\xfe\n")
    alice.expect("!!! invalid UTF-8: line dropped")
    alice.expect("!!! invalid UTF-8: line dropped")
    alice.send("caf\u00e9")
    alice.expect("#lobby <alice> caf\u00e9")
    assert [line for line in bob.expect("#lobby <alice> caf\u00e9") if line.startswith("#lobby ")] == []


def test_messageTooLong(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    A message over C{--max-message-length} characters is refused, on the
    line chat with "message too long", in json mode with C{too-long}
    (carrying the request's ref); one of exactly the limit is said.
    """
    daemon = startDaemon("--max-message-length", "10", *MEMORY, web=LOOPBACK)
    alice = named(lineClients(daemon.ports["line"]), "alice")
    alice.send("\u00e9" * 11)
    alice.expect("!!! message too long (max 10 characters): not sent")
    alice.send("\u00e9" * 10)
    alice.expect("#lobby <alice> " + "\u00e9" * 10)
    with webSocket(daemon, max_size=None) as ws:
        hello(ws, "jason")
        sendJson(ws, type="say", text="0123456789!", ref="long")
        error = receiveUntil(ws, isType("error"))[-1]
        assert error == {
            "type": "error",
            "code": "too-long",
            "message": "message too long (max 10 characters): not sent",
            "ref": "long",
        }
        sendJson(ws, type="say", text="0123456789", ref="ok")
        assert receiveUntil(ws, isType("ack"))[-1]["ref"] == "ok"
    alice.expect("#lobby <jason> 0123456789")


def test_tooManyRooms(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    With C{--max-rooms 3}, joining a fourth room is refused (line: "you
    are in 3 rooms already", json: C{too-many-rooms}) until one is left; a
    json hello asking for more rooms than that is refused and may be
    repeated.
    """
    daemon = startDaemon("--max-rooms", "3", *MEMORY, web=LOOPBACK)
    alice = named(lineClients(daemon.ports["line"]), "alice")
    for room in ("#a", "#b"):
        alice.send("/join " + room)
        alice.expect("*** %s: members: alice" % (room,))
    alice.send("/join #c")
    alice.expect("!!! you are in 3 rooms already (the limit): /part one first")
    alice.send("/part #a")
    alice.expect("*** #a: alice left")
    alice.send("/join #c")
    alice.expect("*** #c: members: alice")
    with webSocket(daemon, max_size=None) as ws:
        sendJson(ws, type="hello", nick="jason", rooms=["#a", "#b", "#c", "#d"])
        assert receiveUntil(ws, isType("error"))[-1]["code"] == "too-many-rooms"
        hello(ws, "jason", rooms=["#a", "#b", "#c"])
        sendJson(ws, type="join", room="#d", ref="d")
        error = receiveUntil(ws, isType("error"))[-1]
        assert (error["code"], error["ref"]) == ("too-many-rooms", "d")


def test_nameRules(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    Nicks are 1-24 letters, digits, C{_} or C{-}, unique without regard to
    case; rooms are C{#} and 1-32 of the same, shown in lower case. Both
    front-ends refuse anything else with the rule (json: C{bad-nick},
    C{bad-room}, C{nick-taken}).
    """
    daemon = startDaemon(*MEMORY, web=LOOPBACK)
    port = daemon.ports["line"]
    alice = named(lineClients(port), "alice")
    nickRule = "!!! nicknames are 1-24 letters, digits, _ or -"
    roomRule = "!!! room names are # and 1-32 letters, digits, _ or -"
    for bad in ("n" * 25, "bad!", "caf\u00e9"):
        alice.send("/nick " + bad)
        alice.expect(nickRule)
    alice.send("/nick " + "N_-9" * 6)
    alice.expect("*** you are now " + "N_-9" * 6)
    for bad in ("#" + "r" * 33, "#bad.room", "#"):
        alice.send("/join " + bad)
        alice.expect(roomRule)
    alice.send("/join Dev-Team_" + "r" * 23)
    alice.expect("*** #dev-team_%s: members: %s" % ("r" * 23, "N_-9" * 6))
    bob = named(lineClients(port), "bob")
    bob.send("/nick " + ("N_-9" * 6).lower())
    bob.expect("!!! the nickname %s is taken" % (("N_-9" * 6).lower(),))
    with webSocket(daemon, max_size=None) as ws:
        for fields, code in (({"nick": "bad nick"}, "bad-nick"), ({"nick": "BOB"}, "nick-taken"), ({"rooms": ["#a b"]}, "bad-room")):
            sendJson(ws, type="hello", **fields)
            assert receiveUntil(ws, isType("error"))[-1]["code"] == code
        hello(ws, "jason")
        sendJson(ws, type="join", room="#" + "r" * 33)
        assert receiveUntil(ws, isType("error"))[-1]["code"] == "bad-room"


# -- WebSocket limits ----------------------------------------------------------------


def test_webSocketMessageLimits(startDaemon: Callable[..., Daemon]) -> None:
    """
    A WebSocket message of exactly C{--ws-max-message} bytes is taken; one
    byte more closes the connection with 1009 (message too big); a text
    frame that is not UTF-8 closes it with 1007.
    """
    daemon = startDaemon("--ws-max-message", "256", *MEMORY, web=LOOPBACK)
    with webSocket(daemon, jsonMode=False, max_size=None) as ws:
        receiveUntil(ws, lambda line: line.startswith("*** #lobby: members: "), parse=False)
        ws.send("x" * 256)
        receiveUntil(ws, lambda line: line.endswith("> " + "x" * 256), parse=False)
        ws.send("x" * 257)
        assert closeCode(ws) == 1009
    with webSocket(daemon, jsonMode=False, max_size=None) as ws:
        ws.send(b"caf\xc3", text=True)
        assert closeCode(ws) == 1007


def test_largeHistoryReachesJsonClient(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    C{--ws-max-message} (64 KiB by default) bounds what a client sends, not
    what it is sent: a json client joining a room whose recent history is
    larger than that gets the whole history in one event.
    """
    daemon = startDaemon("--flood-rate", "0", *MEMORY, web=LOOPBACK)
    alice = named(lineClients(daemon.ports["line"]), "alice")
    for n in range(20):
        alice.send("%02d" % (n,) + "x" * 4094)
    alice.expect(lambda line: line.startswith("#lobby <alice> 19x"))
    with webSocket(daemon, max_size=None) as ws:
        history = hello(ws, "jason")[-1]
        assert [m["text"][:2] for m in history["messages"]] == ["%02d" % (n,) for n in range(20)]
        assert len(json.dumps(history)) > 65536
        sendJson(ws, type="say", text="got it all")
        alice.expect("#lobby <jason> got it all")


def test_helloAndIdleTimeouts(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    A json-mode WebSocket that says no hello within C{--handshake-timeout}
    gets C{hello-required} and is closed with 1008 (policy violation), and
    a connection to the web port that never finishes its HTTP request is
    closed too; a line connection idle for C{--idle-timeout} is told so and
    closed, and the others see it leave (idle). A text-mode WebSocket,
    which needs no hello and has no idle timeout, stays.
    """
    daemon = startDaemon("--handshake-timeout", "1", "--idle-timeout", "1", *MEMORY, web=LOOPBACK)
    stalled = socket.create_connection(("127.0.0.1", daemon.ports["web"]), timeout=TIMEOUT)
    stalled.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
    with stalled, webSocket(daemon, jsonMode=False, max_size=None) as watcher, webSocket(daemon, max_size=None) as silent:
        receiveUntil(watcher, lambda line: line.startswith("*** #lobby: members: "), parse=False)
        opened = time.monotonic()
        idler = lineClients(daemon.ports["line"])
        error = json.loads(silent.recv(timeout=TIMEOUT))
        assert error == {"type": "error", "code": "hello-required", "message": "no hello within 1 s: closing"}
        assert closeCode(silent) == 1008
        assert time.monotonic() - opened >= 0.5
        lines = idler.readUntilClosed()
        nick = re.match(r"\*\*\* Welcome to twisted-chat, (\S+)!", lines[0]).group(1)  # type: ignore[union-attr]
        idle = "*** #lobby: %s left (idle)" % (nick,)
        assert lines[-2:] == ["*** idle for 1 s: disconnecting", idle]
        receiveUntil(watcher, lambda line: line == idle, parse=False)
        watcher.send("still here")
        receiveUntil(watcher, lambda line: line.endswith("> still here"), parse=False)
        assert stalled.recv(1024) == b""


# -- admission -----------------------------------------------------------------------


def test_maxPerIp(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    With C{--max-per-ip 2}, line and WebSocket connections from one address
    count together: a third line connection gets one "too many connections"
    line and is closed, a third WebSocket handshake gets HTTP 503; once one
    is gone, a new one is welcome.
    """
    daemon = startDaemon("--max-per-ip", "2", *MEMORY, web=LOOPBACK)
    probeGone(daemon)
    port = daemon.ports["line"]
    named(lineClients(port), "alice")
    with webSocket(daemon, max_size=None) as ws:
        hello(ws, "jason")
        refused = lineClients(port)
        assert refused.readUntilClosed() == ["!!! too many connections from your address (at most 2): close one first"]
        assert handshakeStatus(daemon) == 503
    daemon.waitForLog(r"jason disconnected")
    named(lineClients(port), "bob")
    daemon.waitForLog(r"refused WebSocket handshake from .*: too-many-connections")


def test_maxConnections(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    With C{--max-connections 2}, a third connection is refused: on the line
    chat with one "server is full" line and a close, on the web port with
    HTTP 503.
    """
    daemon = startDaemon("--max-connections", "2", *MEMORY, web=LOOPBACK)
    probeGone(daemon)
    port = daemon.ports["line"]
    alice = named(lineClients(port), "alice")
    named(lineClients(port), "bob")
    full = lineClients(port)
    assert full.readUntilClosed() == ["!!! the server is full (2 connections): please try again later"]
    assert handshakeStatus(daemon) == 503
    alice.send("/quit")
    assert alice.readUntilClosed()[-1] == "*** bye"
    with webSocket(daemon, max_size=None) as ws:
        assert hello(ws, "jason")[0]["nick"] == "jason"


# -- flood control -------------------------------------------------------------------


class Flooder(threading.Thread):
    """
    A line client that sends C{count} lines at once and reads what it gets
    until the server closes the connection.
    """

    def __init__(self, port: int, count: int) -> None:
        threading.Thread.__init__(self, name="flooder", daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.count = count
        self.received = b""
        self.error: BaseException | None = None
        self._read(lambda: b"*** #lobby: members: " in self.received and self.received.endswith(b"\n"))
        self.sock.sendall(b"/nick flooder\n")
        self._read(lambda: b"*** you are now flooder\n" in self.received)

    def _read(self, done: Callable[[], bool]) -> None:
        while not done():
            data = self.sock.recv(65536)
            if not data:
                return
            self.received += data

    def run(self) -> None:
        try:
            try:
                self.sock.sendall(b"".join(b"flood %d\n" % (n,) for n in range(self.count)))
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed on us mid-flood: what it got is still to be read
            self._read(lambda: False)
        except ConnectionResetError:
            pass
        except BaseException as e:
            self.error = e
        finally:
            self.sock.close()

    def lines(self) -> list[str]:
        return self.received.decode("utf-8").splitlines()


def test_pasteWaitsInsteadOfBeingDropped(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    With the default flood control (5 requests a second, bursts of 10), 30
    lines pasted at once into the line chat (one write, as from nc) are all
    said, in order, and the paster gets no error: the last twenty wait
    their turn. Another user who speaks while they wait is not held up:
    his message is said before the paste is through.
    """
    daemon = startDaemon(*MEMORY)
    port = daemon.ports["line"]
    paster = named(lineClients(port), "paster")
    alice = named(lineClients(port), "alice")
    paster.expect("*** #lobby: %s is now known as alice" % (alice.guest,))
    paster.sendRaw(b"".join(b"paste %d\n" % (n,) for n in range(30)))
    # the burst went through; the rest waits
    paster.expect("#lobby <paster> paste 10")
    alice.send("no waiting for me")
    # (the lines before the last of the paste)
    seen = paster.expect("#lobby <paster> paste 29")
    assert [line for line in seen if line.startswith("!!!")] == []
    assert "#lobby <alice> no waiting for me" in seen
    pasted = [line for line in paster.history if line.startswith("#lobby <paster> ")]
    assert pasted == ["#lobby <paster> paste %d" % (n,) for n in range(30)]
    assert "#lobby <alice> no waiting for me" in alice.expect("#lobby <paster> paste 29")
    paster.send("still here")
    alice.expect("#lobby <paster> still here")


def test_jsonBurstWaitsInsteadOfBeingDropped(startDaemon: Callable[..., Daemon]) -> None:
    """
    The same in json mode: 30 messages sent at once over a WebSocket are
    all acknowledged, in order, without an error.
    """
    daemon = startDaemon(*MEMORY, web=LOOPBACK)
    with webSocket(daemon, max_size=None) as ws:
        hello(ws, "jason")
        for n in range(30):
            sendJson(ws, type="say", text="burst %d" % (n,), ref=n)
        seen = receiveUntil(ws, lambda o: o["type"] in ("ack", "error") and o.get("ref") == 29)
        assert [o for o in seen if o["type"] == "error"] == []
        assert [o["ref"] for o in seen if o["type"] == "ack"] == list(range(30))
        assert [o["text"] for o in seen if o["type"] == "message"] == ["burst %d" % (n,) for n in range(30)]


def test_floodPastTheBoundWhileOthersChat(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    A line client that sends 2,000 lines at once, far more than the 100
    that may wait (--flood-kick), gets its first burst said, then is told
    it is disconnected for flooding, and closed; the others see at most
    that burst and see it leave (flooding). Two users chatting meanwhile
    get every one of their messages, in order.
    """
    daemon = startDaemon(*MEMORY)
    port = daemon.ports["line"]
    flooder = Flooder(port, 2000)
    alice = named(lineClients(port), "alice")
    bob = named(lineClients(port), "bob")
    flooder.start()
    for n in range(6):
        for sender, receiver in ((alice, bob), (bob, alice)):
            text = "%s says %d" % (sender.nick, n)
            sender.send(text)
            receiver.expect("#lobby <%s> %s" % (sender.nick, text))
            sender.expect("#lobby <%s> %s" % (sender.nick, text))
    flooder.join(TIMEOUT)
    assert not flooder.is_alive() and flooder.error is None
    for client in (alice, bob):
        if "*** #lobby: flooder left (flooding)" not in client.history:
            client.expect("*** #lobby: flooder left (flooding)")
        seen = [line for line in client.history if line.startswith("#lobby <flooder> ")]
        assert seen == ["#lobby <flooder> flood %d" % (n,) for n in range(len(seen))] and len(seen) <= 10, seen
        said = [line for line in client.history if line.startswith(("#lobby <alice> ", "#lobby <bob> "))]
        assert said == ["#lobby <%s> %s says %d" % (nick, nick, n) for n in range(6) for nick in ("alice", "bob")]
    # What the flooder got about its own lines: the first of them, then
    # the disconnection; never an error.
    lines = flooder.lines()
    lines = lines[lines.index("*** you are now flooder") + 1 :]
    lines = [line for line in lines if not line.startswith(("#lobby <alice> ", "#lobby <bob> ", "*** #lobby: "))]
    assert lines[-1] == "*** disconnected for flooding: more than 100 requests waiting"
    assert lines[:-1] == ["#lobby <flooder> flood %d" % (n,) for n in range(len(lines) - 1)]
    daemon.waitForLog(r"disconnecting flooder from 127\.0\.0\.1:\d+: flooding \(\d+ requests waiting\)")


def test_helloWithManyRoomsIsOneRequest(startDaemon: Callable[..., Daemon]) -> None:
    """
    A json hello that joins 20 rooms at once (more than the flood burst of
    10) is welcomed into all of them, without a flood refusal.
    """
    daemon = startDaemon(*MEMORY, web=LOOPBACK)
    rooms = ["#r%d" % (n,) for n in range(20)]
    with webSocket(daemon, max_size=None) as ws:
        sendJson(ws, type="hello", nick="jason", rooms=rooms)
        seen = receiveUntil(ws, lambda o: o["type"] == "history" and o["room"] == rooms[-1])
        assert seen[0]["rooms"] == rooms
        assert [o["room"] for o in seen if o["type"] == "join"] == rooms
        assert [o for o in seen if o["type"] == "error"] == []
        sendJson(ws, type="say", text="here", ref="s")
        assert receiveUntil(ws, lambda o: o["type"] in ("ack", "error"))[-1]["type"] == "ack"


# -- barrage ---------------------------------------------------------------------------


def randomBytes(rng: random.Random, size: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(size))


def lineBarrage(port: int, rng: random.Random, strings: int) -> list[bytes]:
    """
    C{strings} random byte strings (newlines and all) at the line port,
    over several connections, 500 each; returns what each connection got.
    """
    replies = []
    sent = 0
    while sent < strings:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            batch = b"".join(
                rng.choice([randomBytes(rng, rng.randrange(0, 120)), b"/" + randomBytes(rng, rng.randrange(0, 20))])
                + rng.choice([b"\n", b"\r\n", b""])
                for _ in range(500)
            )
            reply = b""
            try:
                sock.sendall(batch)
                sock.shutdown(socket.SHUT_WR)
                while True:
                    data = sock.recv(65536)
                    if not data:
                        break
                    reply += data
            except (ConnectionResetError, BrokenPipeError):
                pass
            replies.append(reply)
        sent += 500
    return replies


def rawFrame(rng: random.Random) -> bytes:
    """
    A WebSocket frame, most often malformed: any opcode and flags, masked
    or not, a length that may lie.
    """
    payload = rng.choice(
        [
            randomBytes(rng, rng.randrange(0, 200)),
            json.dumps({"type": rng.choice(["hello", "say", "join", "x"]), "text": "t", "nick": "n%d" % rng.randrange(9)}).encode(),
            b'{"type":"say","text":"\\ud800"}',
            b"[" * rng.randrange(1, 3000),
        ]
    )
    first = rng.getrandbits(8) if rng.random() < 0.5 else 0x80 | rng.choice([0x0, 0x1, 0x2, 0x8, 0x9, 0xA])
    masked = rng.random() < 0.9
    length = len(payload) if rng.random() < 0.8 else rng.randrange(0, 1 << 16)
    if length < 126:
        header = bytes([first, (0x80 if masked else 0) | length])
    else:
        header = bytes([first, (0x80 if masked else 0) | 126]) + struct.pack("!H", min(length, 0xFFFF))
    if masked:
        mask = randomBytes(rng, 4)
        payload = mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + payload


def webBarrage(port: int, rng: random.Random, connections: int) -> None:
    """
    C{connections} connections to the web port, each with garbage instead
    of HTTP, or with random and malformed frames after a WebSocket
    handshake (text or json mode); each is closed right away.
    """
    for n in range(connections):
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            try:
                kind = n % 4
                if kind == 0:
                    sock.sendall(randomBytes(rng, rng.randrange(1, 400)))
                else:
                    key = base64.b64encode(os.urandom(16)).decode("ascii")
                    protocol = "Sec-WebSocket-Protocol: chat.json\r\n" if kind == 2 else ""
                    sock.sendall(
                        (
                            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n" % (port, key, protocol)
                        ).encode("ascii")
                    )
                    head = b""
                    while b"\r\n\r\n" not in head:
                        data = sock.recv(4096)
                        assert data, "the handshake was not answered"
                        head += data
                    assert head.startswith(b"HTTP/1.1 101 "), head
                    sock.sendall(b"".join(rawFrame(rng) for _ in range(rng.randrange(1, 6))))
            except (ConnectionResetError, BrokenPipeError):
                pass


def test_barrage(startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient]) -> None:
    """
    After thousands of random byte strings at the line port and hundreds of
    connections with random or malformed data and frames at the web port,
    the daemon is alive, a line user and a json user chat, and its log has
    no traceback.
    """
    daemon = startDaemon("--flood-rate", "0", *MEMORY, web=LOOPBACK)
    rng = random.Random(20261127)
    started = time.monotonic()
    replies = lineBarrage(daemon.ports["line"], rng, 3000)
    webBarrage(daemon.ports["web"], rng, 200)
    assert time.monotonic() - started < 60
    assert daemon.proc.poll() is None, daemon.log
    # The line chat answered each connection in whole lines of UTF-8, and
    # the barrage got as far as line decoding and WebSocket framing.
    for reply in replies:
        assert reply.startswith(b"*** Welcome to twisted-chat, ") and reply.endswith(b"\n")
        reply.decode("utf-8")
    assert sum(reply.count(b"!!! invalid UTF-8: line dropped\n") for reply in replies) > 100
    daemon.waitForLog(r"failing WebSocket connection \(code=1002\)")
    alice = named(lineClients(daemon.ports["line"]), "alice")
    with webSocket(daemon, max_size=None) as ws:
        hello(ws, "jason")
        alice.expect("*** #lobby: jason joined")
        sendJson(ws, type="say", text="still standing?")
        alice.expect("#lobby <jason> still standing?")
        alice.send("yes")
        message = receiveUntil(ws, lambda o: o["type"] == "message" and o["from"] == "alice")[-1]
        assert message["text"] == "yes"
    log = daemon.log
    assert "Traceback" not in log, log
    assert "Unhandled" not in log, log
