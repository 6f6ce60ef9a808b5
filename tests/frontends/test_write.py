"""
The fan-out write path (twisted_chat.frontends.write) and its use by the line
and WebSocket front-ends, on real loopback sockets with the real reactor.

Client ends are plain non-blocking sockets read by the test between reactor
turns, so a test decides exactly when (and whether) a client reads. Every
wait is bounded; nothing asserts on timing.
"""

from __future__ import annotations

import base64
import errno
import os
import socket
import struct
import time
from typing import Any, Callable

import pytest
import pytest_twisted
from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol
from twisted.internet import protocol, reactor, ssl, tcp
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport

from twisted_chat.frontends import write as _fastwrite
from twisted_chat.core.events import Message
from twisted_chat.frontends.write import FastWriter, WriteBatcher, batcherFor, fastWriterFor, supportsFastWrite
from twisted_chat.frontends.line import LineChatFactory
from twisted_chat.stores.memory import MemoryStore
from twisted_chat.core.service import ChatService
from twisted_chat.frontends.websocket import ChatWebSocketFactory, ChatWebSocketProtocol
from twisted_chat.frontends.wscommon import textFrame

TIMEOUT = 10.0


async def turn(n: int = 1) -> None:
    """
    Let the reactor run C{n} iterations (a flush runs in the first).
    """
    for _ in range(n):
        await deferLater(reactor, 0, lambda: None)


async def until(predicate: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        await deferLater(reactor, 0.005, lambda: None)


_open: list[socket.socket] = []


@pytest.fixture(autouse=True)
def closeClients() -> Any:
    yield
    while _open:
        _open.pop().close()


class Client:
    """
    The far end of a loopback connection: a non-blocking socket the test reads.
    """

    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        _open.append(self.sock)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.data = b""
        self.eof = False

    def pull(self) -> bytes:
        """
        Read whatever has arrived; returns everything read so far.
        """
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError:
                self.eof = True
                break
            if not chunk:
                self.eof = True
                break
            self.data += chunk
        return self.data

    async def read(self, n: int, what: str = "data") -> bytes:
        await until(lambda: len(self.pull()) >= n or self.eof, "%d bytes of %s" % (n, what))
        return self.data

    async def readUntil(self, marker: bytes, what: str = "") -> bytes:
        await until(lambda: marker in self.pull() or self.eof, what or repr(marker))
        return self.data

    async def closed(self) -> None:
        await until(lambda: (self.pull(), self.eof)[1], "the server to close")

    def close(self, reset: bool = False) -> None:
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


class Recorder(protocol.Protocol):
    """
    A server-side protocol that only remembers its connection's fate.
    """

    def __init__(self) -> None:
        self.made: Deferred[None] = Deferred()
        #: fires (with None) once the connection is lost; see C{reason}
        self.lost: Deferred[None] = Deferred()
        self.reason: Any = None

    def connectionMade(self) -> None:
        self.made.callback(None)

    def connectionLost(self, reason: Any = None) -> None:
        self.reason = reason
        self.lost.callback(None)


@pytest.fixture
def listen() -> Any:
    """
    C{listen(factory)} -> port number; every port is closed in teardown.
    """
    ports: list[Any] = []

    def start(factory: protocol.Factory) -> int:
        p = reactor.listenTCP(0, factory, interface="127.0.0.1")
        ports.append(p)
        return p.getHost().port

    yield start
    for p in ports:
        p.stopListening()


async def connected(listen: Any, rcvbuf: int | None = None) -> tuple[Recorder, Client]:
    servers: list[Recorder] = []

    class F(protocol.Factory):
        def buildProtocol(self, addr: Any) -> Recorder:
            p = Recorder()
            servers.append(p)
            return p

    client = Client(listen(F()), rcvbuf)
    await until(lambda: servers, "the server side")
    await servers[0].made
    return servers[0], client


def writers() -> list[Any]:
    return list(reactor.getWriters())


# -- which transports --


@pytest_twisted.ensureDeferred
async def test_onlyPlainTCPTransportsAreFast(listen: Any) -> None:
    """
    A plain TCP transport gets a fast writer; a test transport, a TLS
    transport and a TCP transport that started TLS do not.
    """
    server, client = await connected(listen)
    assert type(server.transport) is tcp.Server
    assert supportsFastWrite(server.transport)
    assert isinstance(fastWriterFor(server.transport), FastWriter)
    assert fastWriterFor(StringTransport()) is None
    server.transport.TLS = True  # what startTLS() sets
    try:
        assert not supportsFastWrite(server.transport)
    finally:
        server.transport.TLS = False
    client.close()
    await server.lost


@pytest_twisted.ensureDeferred
async def test_switchedOffByEnvironment(listen: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    With TWISTED_CHAT_FASTWRITE=0 (read at import) nothing is fast.
    """
    server, client = await connected(listen)
    monkeypatch.setattr(_fastwrite, "ENABLED", False)
    assert fastWriterFor(server.transport) is None
    client.close()
    await server.lost


# -- the batch --


@pytest_twisted.ensureDeferred
async def test_oneSendPerConnectionPerTurn(listen: Any) -> None:
    """
    Writes in one reactor turn go out together, in order, with one send()
    at the end of the turn, and the socket is never registered for writing.
    """
    server, client = await connected(listen)
    w = fastWriterFor(server.transport)
    assert w is not None
    batcher = w.batcher
    sends = batcher.sends
    for i in range(10):
        w.write(b"line %d\n" % (i,))
    assert client.pull() == b""  # nothing before the turn ends
    assert server.transport not in writers()
    await turn()
    assert batcher.sends == sends + 1
    assert server.transport not in writers()
    data = await client.read(70)
    assert data == b"".join(b"line %d\n" % (i,) for i in range(10))
    client.close()
    await server.lost


@pytest_twisted.ensureDeferred
async def test_orderWithPlainWritesInBetween(listen: Any) -> None:
    """
    Bytes written through transport.write() in the same turn go out after
    the fast ones written before them and before those written after.
    """
    server, client = await connected(listen)
    w = fastWriterFor(server.transport)
    assert w is not None
    w.write(b"a")
    server.transport.write(b"b")
    w.write(b"c")
    server.transport.writeSequence([b"d", b"e"])
    w.write(b"f")
    await turn(2)
    assert await client.read(6) == b"abcdef"
    client.close()
    await server.lost


@pytest_twisted.ensureDeferred
async def test_queuedDataTakesTwistedsPath(listen: Any) -> None:
    """
    While Twisted holds unsent bytes for a connection (a reader that does
    not keep up), a write goes through transport.write() behind them, and
    every byte arrives, in order, once the reader reads.
    """
    server, client = await connected(listen, rcvbuf=4096)
    server.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    w = fastWriterFor(server.transport)
    assert w is not None
    chunk = bytes(range(256)) * 256  # 64 KiB
    expected = b""
    for i in range(40):
        piece = b"%04d" % (i,) + chunk
        w.write(piece)
        expected += piece
        await turn()
    t = server.transport
    assert t._tempDataLen or t.dataBuffer, "the kernel took everything: no backlog to test"
    assert t in writers()
    w.write(b"tail")
    assert not w.queued  # straight into Twisted's buffer
    expected += b"tail"
    data = await client.read(len(expected))
    assert data == expected
    client.close()
    await server.lost


@pytest_twisted.ensureDeferred
async def test_partialSendLeavesTheRestToTwisted(listen: Any) -> None:
    """
    When send() takes only part of a batch, the rest waits in Twisted's
    buffer with the socket registered for writing, and arrives complete.
    """
    server, client = await connected(listen, rcvbuf=4096)
    t = server.transport
    t.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    w = fastWriterFor(t)
    assert w is not None
    big = os.urandom(1 << 20)
    w.write(big)
    sends = w.batcher.sends
    await turn()
    assert w.batcher.sends == sends + 1
    assert 0 < t._tempDataLen + len(t.dataBuffer) - t.offset < len(big)
    assert t in writers()
    assert await client.read(len(big)) == big
    client.close()
    await server.lost


@pytest_twisted.ensureDeferred
async def test_eagainLeavesEverythingToTwisted(listen: Any) -> None:
    """
    A send() that fails with EAGAIN (kernel buffer full) leaves the batch in
    Twisted's buffer; the reactor sends it when the socket is writable.
    """
    server, client = await connected(listen, rcvbuf=4096)
    t = server.transport
    t.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    filler = b""
    while True:  # fill the kernel buffers behind Twisted's back
        try:
            n = t.socket.send(b"x" * 65536)
        except BlockingIOError:
            break
        filler += b"x" * n
    w = fastWriterFor(t)
    assert w is not None
    w.write(b"after-the-filler")
    assert w.queued
    await turn()
    assert t._tempDataLen == len(b"after-the-filler")  # nothing taken
    assert t in writers()
    assert await client.read(len(filler) + 16) == filler + b"after-the-filler"
    client.close()
    await server.lost


class FailingSocket:
    """
    A socket whose send() fails with C{err}; everything else is the real one.
    """

    def __init__(self, real: socket.socket, err: int) -> None:
        self._real = real
        self._err = err
        self.sends = 0

    def send(self, data: bytes) -> int:
        self.sends += 1
        raise OSError(self._err, os.strerror(self._err))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.mark.parametrize("err", [errno.EPIPE, errno.ECONNRESET])
@pytest_twisted.ensureDeferred
async def test_sendErrorsAreHandedToTwisted(listen: Any, err: int) -> None:
    """
    EPIPE or ECONNRESET from the fast send() are not handled by it: the
    socket is registered for writing, Twisted's doWrite() meets the same
    error and loses the connection its usual way (connectionLost, no
    traceback).
    """
    server, client = await connected(listen)
    t = server.transport
    t.stopReading()  # so that only the write path can find out
    failing = FailingSocket(t.socket, err)
    t.socket = failing
    w = fastWriterFor(t)
    assert w is not None
    w.write(b"into the void")
    await turn()
    assert failing.sends >= 1
    await server.lost
    assert server.reason.check(Exception) is not None
    assert not t.connected
    client.close()


@pytest_twisted.ensureDeferred
async def test_realResetIsHandledByTwisted(listen: Any) -> None:
    """
    The same with a real reset from the peer.
    """
    server, client = await connected(listen)
    t = server.transport
    t.stopReading()
    client.close(reset=True)
    w = fastWriterFor(t)
    assert w is not None
    await deferLater(reactor, 0.05, lambda: None)
    w.write(b"x" * 1000)
    await turn()
    await server.lost


@pytest_twisted.ensureDeferred
async def test_loseConnectionAfterAFastWrite(listen: Any) -> None:
    """
    loseConnection() in the same turn as a fast write: the bytes arrive,
    then the end of the stream.
    """
    server, client = await connected(listen)
    w = fastWriterFor(server.transport)
    assert w is not None
    w.write(b"last words\n")
    server.transport.loseConnection()
    await client.closed()
    assert client.data == b"last words\n"
    await server.lost


@pytest_twisted.ensureDeferred
async def test_writeWhileDisconnectingTakesTwistedsPath(listen: Any) -> None:
    """
    A write after loseConnection() is not fast: Twisted writes it before
    closing, as it always does.
    """
    server, client = await connected(listen)
    w = fastWriterFor(server.transport)
    assert w is not None
    server.transport.loseConnection()
    w.write(b"still said\n")
    assert not w.queued
    await client.closed()
    assert client.data == b"still said\n"
    await server.lost


@pytest_twisted.ensureDeferred
async def test_abortDropsTheBatch(listen: Any) -> None:
    """
    abortConnection() in the same turn drops the queued bytes, like
    Twisted's buffer, without an error.
    """
    server, client = await connected(listen)
    w = fastWriterFor(server.transport)
    assert w is not None
    w.write(b"never sent")
    server.transport.abortConnection()
    await server.lost
    await client.closed()
    assert client.data == b""
    w.write(b"after the end")  # harmless
    await turn()


@pytest_twisted.ensureDeferred
async def test_halfCloseTakesTwistedsPath(listen: Any) -> None:
    """
    After loseWriteConnection() nothing is written fast: what Twisted
    still accepts goes out in order before the half-close.
    """
    server, client = await connected(listen)
    w = fastWriterFor(server.transport)
    assert w is not None
    w.write(b"before ")
    server.transport.loseWriteConnection()
    await turn()
    w.write(b"after")
    assert not w.queued
    await client.closed()
    assert client.data in (b"before ", b"before after")
    server.transport.loseConnection()
    await server.lost


class Producer:
    paused = 0
    resumed = 0

    def pauseProducing(self) -> None:
        self.paused += 1

    def resumeProducing(self) -> None:
        self.resumed += 1

    def stopProducing(self) -> None:
        pass


@pytest_twisted.ensureDeferred
async def test_producerPausedAndResumedAroundABigBatch(listen: Any) -> None:
    """
    A batch bigger than the transport's buffer size pauses its streaming
    producer as transport.write() would, and the producer is resumed once
    the batch has gone out, by Twisted's own doWrite().
    """
    server, client = await connected(listen)
    t = server.transport
    producer = Producer()
    t.registerProducer(producer, True)
    w = fastWriterFor(t)
    assert w is not None
    w.write(b"y" * (t.bufferSize + 1))
    assert producer.paused == 1 and t.producerPaused
    await until(lambda: producer.resumed, "the producer to be resumed")
    assert not t.producerPaused
    assert await client.read(t.bufferSize + 1) == b"y" * (t.bufferSize + 1)
    t.unregisterProducer()
    client.close()
    await server.lost


@pytest_twisted.ensureDeferred
async def test_pausedProducerTakesTwistedsPath(listen: Any) -> None:
    """
    While the producer is paused, writes go through transport.write().
    """
    server, client = await connected(listen)
    t = server.transport
    t.registerProducer(Producer(), True)
    t.producerPaused = True
    w = fastWriterFor(t)
    assert w is not None
    w.write(b"z")
    assert not w.queued
    t.producerPaused = False
    assert await client.read(1) == b"z"
    t.unregisterProducer()
    client.close()
    await server.lost


@pytest_twisted.ensureDeferred
async def test_lazyBytesWaitThenGoTogether(listen: Any) -> None:
    """
    Lazy writes (join notices) wait for the lazy flush and then leave with
    one send(); the socket is not registered for writing meanwhile.
    """
    server, client = await connected(listen)
    w = fastWriterFor(server.transport)
    assert w is not None
    for i in range(5):
        w.write(b"join %d\n" % (i,), lazy=True)
        await turn()
    assert client.pull() == b""
    assert server.transport not in writers()
    sends = w.batcher.sends
    assert await client.read(35) == b"".join(b"join %d\n" % (i,) for i in range(5))
    assert w.batcher.sends == sends + 1
    client.close()
    await server.lost


@pytest_twisted.ensureDeferred
async def test_lazyBytesGoWithTheNextWrite(listen: Any) -> None:
    """
    A normal write after lazy ones takes them along in this turn, in order.
    """
    server, client = await connected(listen)
    w = fastWriterFor(server.transport)
    assert w is not None
    w.write(b"joined; ", lazy=True)
    await turn(2)
    assert client.pull() == b""
    w.write(b"message")
    w.write(b"; joined again", lazy=True)
    await turn()
    assert await client.read(29) == b"joined; message; joined again"
    w.write(b"!", lazy=True)
    server.transport.write(b"?")  # Twisted's own write takes it too
    assert await client.read(31) == b"joined; message; joined again!?"
    client.close()
    await server.lost


def test_batcherPerReactor() -> None:
    """
    One batcher per reactor; a flush with nothing queued does nothing.
    """
    assert batcherFor(reactor) is batcherFor(reactor)
    b = WriteBatcher(reactor)
    b.flush()
    assert b.flushes == 0


# -- the line chat --


def message(text: str, id: int = 1) -> Message:
    return Message("#lobby", id, "e", "alice", text, 0.0)


@pytest.fixture
def service() -> Any:
    s = ChatService(store=MemoryStore(), clock=reactor, pruneInterval=0)
    s.startService()
    yield s
    s.stopService()


async def lineClient(port: int, rcvbuf: int | None = None) -> Client:
    c = Client(port, rcvbuf)
    await c.readUntil(b"*** #lobby: members: ", "the greeting")
    await c.readUntil(b"\n", "the greeting")
    return c


@pytest_twisted.ensureDeferred
async def test_lineBroadcastInOrderWithFewSends(listen: Any, service: ChatService) -> None:
    """
    A burst of broadcasts reaches line clients complete and in order, with
    one send() per client per turn rather than one per message.
    """
    service.settings.idleTimeout = 0
    port = listen(LineChatFactory(service))
    clients = [await lineClient(port) for _ in range(3)]
    await deferLater(reactor, WriteBatcher.lazyDelay * 2, lambda: None)  # the join notices
    for c in clients:
        c.pull()
        c.data = b""
    members = list(service.rooms["#lobby"].members)
    assert all(isinstance(m.client._fast, FastWriter) for m in members)
    batcher = members[0].client._fast.batcher
    sends = batcher.sends
    for i in range(50):
        service.broadcast(service.rooms["#lobby"], message("m%d" % (i,), i))
    await turn()
    assert batcher.sends - sends == len(clients)
    expected = b"".join(b"#lobby <alice> m%d\n" % (i,) for i in range(50))
    for c in clients:
        assert await c.read(len(expected)) == expected
        c.close()


@pytest_twisted.ensureDeferred
async def test_lineJoinNoticesTogetherInOneSend(listen: Any, service: ChatService) -> None:
    """
    Join notices that wait for each other (C{noticeDelay}) reach the
    members together: every join line, in order, in one send() per member;
    each newcomer gets the joins after its own, in one send() too.
    """
    service.settings.idleTimeout = 0
    port = listen(LineChatFactory(service))
    early = [await lineClient(port) for _ in range(3)]
    service.notices.flushAllNotices()
    await deferLater(reactor, WriteBatcher.lazyDelay * 2, lambda: None)  # (the lazy bytes)
    for c in early:
        c.pull()
        c.data = b""
    service.notices.noticeDelay = 3600.0  # (flushed below)
    late = [await lineClient(port) for _ in range(4)]
    nicks = [m.nick for m in service.rooms["#lobby"].members][3:]
    assert all(c.pull() == b"" for c in early)
    batcher = next(iter(service.rooms["#lobby"].members)).client._fast.batcher
    sends = batcher.sends
    service.notices.flushAllNotices()
    await turn()
    # (one each for the members owed anything: all but the last to join)
    assert batcher.sends - sends == len(early) + len(late) - 1
    expected = b"".join(b"*** #lobby: %s joined\n" % (nick.encode(),) for nick in nicks)
    for c in early:
        assert await c.read(len(expected)) == expected
    for i, c in enumerate(late[:-1]):
        owed = b"".join(b"*** #lobby: %s joined\n" % (nick.encode(),) for nick in nicks[i + 1 :])
        await c.readUntil(owed)
        assert c.data.endswith(owed)


@pytest_twisted.ensureDeferred
async def test_lineSlowConsumerDroppedOthersServed(listen: Any, service: ChatService) -> None:
    """
    A line client that does not read is dropped as a slow consumer once
    more than --max-outgoing is queued; a reading client gets every
    message, in order.
    """
    service.settings.idleTimeout, service.settings.maxOutgoing = 0, 256 * 1024
    factory = LineChatFactory(service)
    port = listen(factory)
    slow = await lineClient(port, rcvbuf=4096)
    fast = await lineClient(port)
    await turn(3)
    fast.pull()
    fast.data = b""
    room = service.rooms["#lobby"]
    slowMember = list(room.members)[0]  # the first to connect
    # a small kernel buffer on the server side too, so the backlog is Twisted's
    slowMember.client.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    expected = b""
    text = "x" * 1000
    for i in range(2000):
        if slowMember.gone:
            break
        service.broadcast(room, message(text, i))
        expected += b"#lobby <alice> " + text.encode() + b"\n"
        if i % 20 == 0:
            fast.pull()
            await turn()
    assert slowMember.gone, "the slow consumer was not dropped"
    leave = b"*** #lobby: %s left (too slow)\n" % (slowMember.nick.encode(),)
    data = await fast.readUntil(leave)
    data = await fast.read(len(expected) + len(leave))
    assert data.replace(leave, b"") == expected
    await slow.closed()
    fast.close()


@pytest_twisted.ensureDeferred
async def test_lineCloseSendsNoticeThenCloses(listen: Any, service: ChatService) -> None:
    """
    close(): the reason, then the end of the stream.
    """
    service.settings.idleTimeout = 0
    port = listen(LineChatFactory(service))
    c = await lineClient(port)
    member = next(iter(service.rooms["#lobby"].members))
    service.broadcast(service.rooms["#lobby"], message("first"))
    member.client.close("server shutting down")
    await c.closed()
    assert c.data.endswith(b"#lobby <alice> first\n*** server shutting down\n")


@pytest_twisted.ensureDeferred
async def test_lineOverTLSUntouched(service: ChatService) -> None:
    """
    Over TLS the line chat writes through the TLS transport (no fast
    writer) and works as before.
    """
    import twisted.test

    with open(os.path.join(os.path.dirname(twisted.test.__file__), "server.pem"), "rb") as f:
        pem = f.read()
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    options = ssl.CertificateOptions(
        privateKey=load_pem_private_key(pem, None), certificate=x509.load_pem_x509_certificate(pem)
    )
    service.settings.idleTimeout = 0
    port = reactor.listenSSL(0, LineChatFactory(service), options, interface="127.0.0.1")
    received: list[bytes] = []
    done: Deferred[None] = Deferred()

    class C(protocol.Protocol):
        def dataReceived(self, data: bytes) -> None:
            received.append(data)
            if b"#lobby <alice> over tls\n" in b"".join(received) and not done.called:
                done.callback(None)

    cf = protocol.ClientFactory.forProtocol(C)
    connector = reactor.connectSSL("127.0.0.1", port.getHost().port, cf, ssl.CertificateOptions())
    try:
        await until(lambda: "#lobby" in service.rooms, "the TLS client to join")
        member = next(iter(service.rooms["#lobby"].members))
        assert member.client._fast is None
        service.broadcast(service.rooms["#lobby"], message("over tls"))
        await done
    finally:
        connector.disconnect()
        await port.stopListening()
        await turn(3)


# -- room messages all at once (WriteBatcher.broadcast) --


async def lineClients(listen: Any, service: ChatService, n: int) -> list[Client]:
    """
    C{n} line clients in #lobby, greetings and join notices read.
    """
    service.settings.idleTimeout = 0
    port = listen(LineChatFactory(service))
    clients = [await lineClient(port) for _ in range(n)]
    await deferLater(reactor, WriteBatcher.lazyDelay * 2, lambda: None)  # the join notices
    for c in clients:
        c.pull()
        c.data = b""
    return clients


def membersOf(service: ChatService, room: str = "#lobby") -> list[Any]:
    """
    The members of C{room}, in the order their clients connected.
    """
    return list(service.rooms[room].members)


@pytest_twisted.ensureDeferred
async def test_roomMessagesGoThroughTheRoomsFanOut(listen: Any, service: ChatService) -> None:
    """
    A room message is handed to the batcher once for the room's fast
    connections, not delivered one by one; it goes out at the end of the
    turn, one send() per connection for everything of the turn.
    """
    clients = await lineClients(listen, service, 3)
    room = service.rooms["#lobby"]
    fan, groups, others = room.fanOut()
    assert others == ()
    assert [(key, len(sinks)) for key, sinks in groups] == [("line", 3)]
    delivered: list[Any] = []
    for m in room.members:
        m.client.deliver = delivered.append  # (the one-by-one path, not taken)
    sends = fan.sends
    service.broadcast(room, message("one", 1))
    service.broadcast(room, message("two", 2))
    assert fan.sends == sends  # nothing sent before the end of the turn
    await turn()
    assert fan.sends == sends + 3
    assert delivered == []
    for c in clients:
        assert await c.read(len(b"#lobby <alice> one\n#lobby <alice> two\n")) == b"#lobby <alice> one\n#lobby <alice> two\n"


@pytest_twisted.ensureDeferred
async def test_roomMessageBeforeTheAck(listen: Any, service: ChatService) -> None:
    """
    Something written to a connection after a room message (the sender's
    acknowledgement, a notice) comes after it: the pending room messages
    go first.
    """
    clients = await lineClients(listen, service, 2)
    first, second = membersOf(service)
    service.broadcast(service.rooms["#lobby"], message("echo", 1))
    first.client.sendNotice("acknowledged")
    await turn()
    assert await clients[0].read(len(b"#lobby <alice> echo\n*** acknowledged\n")) == (
        b"#lobby <alice> echo\n*** acknowledged\n"
    )
    assert await clients[1].read(len(b"#lobby <alice> echo\n")) == b"#lobby <alice> echo\n"


@pytest_twisted.ensureDeferred
async def test_roomMessagesInterleavedAcrossRooms(listen: Any, service: ChatService) -> None:
    """
    A member of two rooms gets their messages in the order they were
    broadcast, although each room's go out together.
    """
    clients = await lineClients(listen, service, 2)
    both, lobbyOnly = membersOf(service)
    both.join("#other")
    await turn(3)
    clients[0].pull()
    clients[0].data = b""
    lobby, other = service.rooms["#lobby"], service.rooms["#other"]
    service.broadcast(lobby, message("a1", 1))
    service.broadcast(other, Message("#other", 1, "e", "bob", "b1", 0.0))
    service.broadcast(lobby, message("a2", 2))
    expected = b"#lobby <alice> a1\n#other <bob> b1\n#lobby <alice> a2\n"
    assert await clients[0].read(len(expected)) == expected
    expected = b"#lobby <alice> a1\n#lobby <alice> a2\n"
    assert await clients[1].read(len(expected)) == expected
    await turn(2)
    assert clients[1].pull() == expected


@pytest_twisted.ensureDeferred
async def test_partBetweenRoomMessagesOfOneTurn(listen: Any, service: ChatService) -> None:
    """
    A member leaving between two messages of the same turn gets the first,
    then its leave notice, and not the second; the others get all three.
    """
    clients = await lineClients(listen, service, 2)
    stays, leaves = membersOf(service)
    room = service.rooms["#lobby"]
    service.broadcast(room, message("before", 1))
    leaves.part("#lobby")
    service.broadcast(room, message("after", 2))
    left = b"*** #lobby: %s left\n" % (leaves.nick.encode(),)
    expected = b"#lobby <alice> before\n" + left + b"#lobby <alice> after\n"
    assert await clients[0].read(len(expected)) == expected
    got = await clients[1].readUntil(left)
    assert got.startswith(b"#lobby <alice> before\n*** #lobby: ")
    await turn(3)
    assert b"after" not in clients[1].pull()


@pytest_twisted.ensureDeferred
async def test_closeAfterRoomMessage(listen: Any, service: ChatService) -> None:
    """
    A session ended right after a room message (the user quit) still
    sends that message before the connection closes.
    """
    clients = await lineClients(listen, service, 1)
    (member,) = membersOf(service)
    service.broadcast(service.rooms["#lobby"], message("last words", 1))
    member.client.endSession("quit")
    await clients[0].closed()
    assert clients[0].data.startswith(b"#lobby <alice> last words\n")


@pytest_twisted.ensureDeferred
async def test_busyConnectionGetsRoomMessagesBehindItsBacklog(listen: Any, service: ChatService) -> None:
    """
    A connection with bytes already waiting in Twisted's buffer gets the
    room's messages through its own path, behind them; the idle ones get
    them at once.
    """
    clients = await lineClients(listen, service, 2)
    busy, idle = membersOf(service)
    t = busy.client.transport
    t.write(b"backlog\n")  # (waits in Twisted's buffer until the reactor writes it)
    assert t._tempDataLen
    service.broadcast(service.rooms["#lobby"], message("m", 1))
    assert await clients[0].read(len(b"backlog\n#lobby <alice> m\n")) == b"backlog\n#lobby <alice> m\n"
    assert await clients[1].read(len(b"#lobby <alice> m\n")) == b"#lobby <alice> m\n"


@pytest_twisted.ensureDeferred
async def test_failingMemberDroppedAfterTheOthersHadTheMessage(listen: Any, service: ChatService) -> None:
    """
    A connection whose delivery fails is dropped, alone, and only once every
    other member has the message (so they see it before its leave notice).
    """
    clients = await lineClients(listen, service, 3)
    members = membersOf(service)
    bad = members[0]

    def broken(event: Any) -> None:
        raise RuntimeError("a bug in a front-end")

    bad.client.fastOpen = lambda: False  # (takes its own path...)
    bad.client.deliver = broken  # (...which fails)
    service.broadcast(service.rooms["#lobby"], message("m", 1))
    await turn()
    assert bad.gone
    left = b"*** #lobby: %s left (disconnected)\n" % (bad.nick.encode(),)
    for c in clients[1:]:
        assert await c.read(len(b"#lobby <alice> m\n") + len(left)) == b"#lobby <alice> m\n" + left
    await clients[0].closed()
    assert b"<alice> m" not in clients[0].data


class SlowHistory(MemoryStore):
    """
    A memory store whose history of #slow arrives when the test says.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[Deferred[list[Message]]] = []

    def recent(self, room: str, limit: int, before: int | None = None) -> Deferred[list[Message]]:
        if room != "#slow":
            return super().recent(room, limit, before)
        d: Deferred[list[Message]] = Deferred()
        self.pending.append(d)
        return d


@pytest_twisted.ensureDeferred
async def test_memberFetchingHistoryIsHeldNotFannedOut(listen: Any) -> None:
    """
    A member still waiting for a room's history gets that room's live
    messages after the history (held), never before or twice; the room's
    other members get them at once.
    """
    store = SlowHistory()
    service = ChatService(store=store, clock=reactor, pruneInterval=0)
    service.startService()
    try:
        clients = await lineClients(listen, service, 2)
        waiting, present = membersOf(service)
        present.join("#slow")
        store.pending.pop().callback([])
        waiting.join("#slow")
        await turn(3)
        for c in clients:
            c.pull()
            c.data = b""
        room = service.rooms["#slow"]
        fan, groups, others = room.fanOut()
        assert others == (waiting,) and [len(sinks) for _, sinks in groups] == [1]
        service.broadcast(room, Message("#slow", 1, "e", "bob", "live", 0.0))
        live = b"#slow <bob> live\n"
        assert await clients[1].read(len(live)) == live
        await turn(3)
        assert live not in clients[0].pull()
        store.pending.pop().callback([])
        got = await clients[0].readUntil(live)
        assert got.count(live) == 1 and got.endswith(live)
        # history sent: the member is back on the fast path
        assert room.fanOut()[2] == ()
    finally:
        service.stopService()


@pytest_twisted.ensureDeferred
async def test_memberWhoseHistoryIsAheadIsNotFannedOut(listen: Any) -> None:
    """
    A member whose history holds messages this node has yet to deliver
    (a cluster's store is ahead of its bus) is off the fast path until
    they have come by: they reach it once (in the history), and it is back
    in the fan-out with the next message.
    """
    from tests.support.fakes import LaggingBroker

    broker = LaggingBroker()
    service = ChatService(store=MemoryStore(), clock=reactor, pruneInterval=0, broker=broker)
    service.startService()
    try:
        clients = await lineClients(listen, service, 2)
        present, joiner = membersOf(service)
        for member in (present, joiner):
            member.join("#ahead")
        for i in (1, 2, 3):
            present.say("m%d" % (i,), "#ahead")
        joiner.part("#ahead")
        joiner.join("#ahead")  # its history: m1..m3, none delivered here yet
        room = service.rooms["#ahead"]
        assert room.fanOut()[2] == (joiner,)
        broker.catchUp()
        present.say("m4", "#ahead")
        broker.catchUp()
        got = await clients[1].readUntil(b"<alice> m4\n".replace(b"alice", present.nick.encode()))
        for i in (1, 2, 3, 4):
            assert got.count(b"> m%d\n" % (i,)) == 1, got
        assert room.fanOut()[2] == ()
    finally:
        service.stopService()


# -- WebSocket --


def wsHandshake(port: int, protocols: str | None = None, extensions: str | None = None) -> Client:
    c = Client(port)
    key = base64.b64encode(os.urandom(16)).decode()
    head = (
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n" % (port, key)
    )
    if protocols:
        head += "Sec-WebSocket-Protocol: %s\r\n" % (protocols,)
    if extensions:
        head += "Sec-WebSocket-Extensions: %s\r\n" % (extensions,)
    c.sock.setblocking(True)
    c.sock.sendall((head + "\r\n").encode())
    c.sock.setblocking(False)
    return c


def frames(data: bytes) -> tuple[list[tuple[int, int, bytes]], bytes]:
    """
    Parse unmasked server frames: [(opcode, rsv, payload)], rest.
    """
    out = []
    i = 0
    while len(data) - i >= 2:
        b0, b1 = data[i], data[i + 1]
        n = b1 & 0x7F
        j = i + 2
        if n == 126:
            if len(data) - j < 2:
                break
            (n,) = struct.unpack("!H", data[j : j + 2])
            j += 2
        elif n == 127:
            if len(data) - j < 8:
                break
            (n,) = struct.unpack("!Q", data[j : j + 8])
            j += 8
        if len(data) - j < n:
            break
        out.append((b0 & 0x0F, (b0 >> 4) & 7, data[j : j + n]))
        i = j + n
    return out, data[i:]


async def wsClient(port: int, protocols: str | None = None, extensions: str | None = None) -> Client:
    c = wsHandshake(port, protocols, extensions)
    await c.readUntil(b"\r\n\r\n", "the handshake")
    head, _, rest = c.data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    c.data = rest
    return c


async def greeted(port: int) -> Client:
    """
    A text-mode WebSocket client that has read its greeting.
    """
    c = await wsClient(port)
    await texts(c, lambda ts: any(t.startswith("*** #lobby: members") for t in ts), "the greeting")
    return c


async def jsonClient(port: int) -> Client:
    """
    A json-mode WebSocket client that said hello and got its welcome.
    """
    js = await wsClient(port, protocols="chat.json")
    js.sock.send(b"\x81\x90" + b"\x00\x00\x00\x00" + b'{"type":"hello"}')
    await texts(js, lambda ts: any('"type":"history"' in t for t in ts), "the json welcome")
    return js


async def texts(c: Client, until_: Callable[[list[str]], bool], what: str) -> list[str]:
    result: list[str] = []

    def ready() -> bool:
        nonlocal result
        fs, _ = frames(c.pull())
        result = [p.decode() for op, _, p in fs if op == 1]
        return until_(result) or c.eof

    await until(ready, what)
    return result


@pytest.fixture
def wsFactory(service: ChatService) -> ChatWebSocketFactory:
    return ChatWebSocketFactory(service)


@pytest.mark.parametrize("n", [0, 1, 125, 126, 1000, 65535, 65536, 70000])
def test_textFrameIsAutobahnsFrame(n: int) -> None:
    """
    textFrame() writes exactly the bytes of Autobahn's unmasked text frame.
    """
    payload = os.urandom(n)
    assert textFrame(payload) == PreparedMessage(payload, False, False, False).payloadHybi


@pytest_twisted.ensureDeferred
async def test_wsBroadcastFramesInOrder(listen: Any, service: ChatService, wsFactory: ChatWebSocketFactory) -> None:
    """
    Broadcasts to WebSocket clients (text and json mode) are well-formed
    frames, complete and in order, one send() per client per turn.
    """
    port = listen(wsFactory)
    text = await greeted(port)
    js = await jsonClient(port)
    await turn(3)
    for c in (text, js):
        c.pull()
        c.data = b""
    room = service.rooms["#lobby"]
    protos = [m.client for m in room.members]
    assert all(isinstance(p._fast, FastWriter) for p in protos)
    batcher = protos[0]._fast.batcher
    sends = batcher.sends
    for i in range(30):
        service.broadcast(room, message("w%d" % (i,), i))
    await turn()
    assert batcher.sends - sends == 2
    got = await texts(text, lambda ts: len(ts) >= 30, "30 text frames")
    assert got == ["#lobby <alice> w%d" % (i,) for i in range(30)]
    got = await texts(js, lambda ts: len(ts) >= 30, "30 json frames")
    assert ['"text":"w%d"' % (i,) in t for i, t in enumerate(got)] == [True] * 30
    text.close()
    js.close()


@pytest.mark.parametrize("end", ["close", "endSession"])
@pytest_twisted.ensureDeferred
async def test_wsCloseFrameAfterTheNotice(
    listen: Any, service: ChatService, wsFactory: ChatWebSocketFactory, end: str
) -> None:
    """
    close() right after a room message: the message, the notice and
    Autobahn's close frame, in that order, although Autobahn writes its
    frame through transport.write(). endSession() (the user quit): the
    message, then the close frame.
    """
    port = listen(wsFactory)
    c = await greeted(port)
    proto = next(iter(service.rooms["#lobby"].members)).client
    service.broadcast(service.rooms["#lobby"], message("before close"))
    if end == "close":
        proto.close("going away now")
        expected = [(1, b"#lobby <alice> before close"), (1, b"*** going away now")]
    else:
        proto.endSession("quit")
        expected = [(1, b"#lobby <alice> before close")]
    await until(lambda: any(op == 8 for op, _, _ in frames(c.pull())[0]), "the close frame")
    fs = [(op, p) for op, _, p in frames(c.data)[0]]
    assert fs[-1 - len(expected) : -1] == expected
    assert fs[-1][0] == 8
    code = struct.unpack("!H", fs[-1][1][:2])[0]
    assert code == (1001 if end == "close" else 1000)
    c.close()


@pytest_twisted.ensureDeferred
async def test_wsClosingStateGetsNothing(listen: Any, service: ChatService, wsFactory: ChatWebSocketFactory) -> None:
    """
    Once the close handshake has begun (Autobahn's CLOSING state), nothing
    more is delivered on that connection; the handshake completes.
    """
    port = listen(wsFactory)
    c = await greeted(port)
    member = next(iter(service.rooms["#lobby"].members))
    proto = member.client
    proto.sendClose(1000, "bye")
    assert proto.state == WebSocketProtocol.STATE_CLOSING
    proto.deliver(message("too late"))
    await until(lambda: any(op == 8 for op, _, _ in frames(c.pull())[0]), "the close frame")
    assert b"too late" not in c.data
    # answer the close: a masked close frame with code 1000
    c.sock.send(b"\x88\x82" + b"\x00\x00\x00\x00" + struct.pack("!H", 1000))
    await c.closed()
    assert proto.state == WebSocketProtocol.STATE_CLOSED
    assert b"too late" not in c.data


@pytest_twisted.ensureDeferred
async def test_wsEchoBeforeAck(listen: Any, service: ChatService, wsFactory: ChatWebSocketFactory) -> None:
    """
    A json client's own message comes back (through the room's fan-out)
    before its acknowledgement, and a text client in the room gets it too.
    """
    port = listen(wsFactory)
    text = await greeted(port)
    js = await jsonClient(port)
    await turn(3)
    js.pull()
    js.data = b""
    say = b'{"type":"say","text":"hi all","ref":"r1"}'
    js.sock.send(b"\x81" + bytes([0x80 | len(say)]) + b"\x00\x00\x00\x00" + say)
    got = await texts(js, lambda ts: any('"type":"ack"' in t for t in ts), "the ack")
    kinds = [t for t in got if '"type":"message"' in t or '"type":"ack"' in t]
    assert len(kinds) == 2 and '"text":"hi all"' in kinds[0] and '"ref":"r1"' in kinds[1]
    got = await texts(text, lambda ts: any(t.endswith("hi all") for t in ts), "the message")
    text.close()
    js.close()


@pytest_twisted.ensureDeferred
async def test_wsQueuedInAutobahnTakesItsOwnPath(
    listen: Any, service: ChatService, wsFactory: ChatWebSocketFactory
) -> None:
    """
    While Autobahn's own send queue holds bytes (a chopped write), room
    messages wait behind them instead of overtaking them.
    """
    port = listen(wsFactory)
    c = await greeted(port)
    await turn(3)
    c.pull()
    c.data = b""
    proto = next(iter(service.rooms["#lobby"].members)).client
    proto.sendData(b"\x81\x06queued", chopsize=2)
    assert proto.send_queue and not proto.fastOpen()
    service.broadcast(service.rooms["#lobby"], message("behind"))
    got = await texts(c, lambda ts: len(ts) >= 2, "two frames")
    assert got[:2] == ["queued", "#lobby <alice> behind"]
    c.close()


@pytest_twisted.ensureDeferred
async def test_wsHandshakeAnswerGoesWithTheGreeting(listen: Any, service: ChatService) -> None:
    """
    The handshake's answer (101) waits for the end of the reactor turn and
    leaves in one send() with the greeting written after it; the client
    gets both, in that order.
    """
    service.settings.idleTimeout = 0
    port = listen(ChatWebSocketFactory(service))
    batcher = batcherFor(reactor)
    sends = batcher.sends
    c = wsHandshake(port)
    await c.readUntil(b"*** #lobby: members: ", "the greeting")
    head, _, rest = c.data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    got, _ = frames(rest)
    assert got[0][2].startswith(b"*** Welcome to twisted-chat, ")
    assert batcher.sends - sends == 1
    member = next(iter(service.rooms["#lobby"].members))
    assert isinstance(member.client._fast, FastWriter)


@pytest_twisted.ensureDeferred
async def test_wsCompressionUsesAutobahn(listen: Any, service: ChatService) -> None:
    """
    With permessage-deflate negotiated, frames differ per connection: no
    fast writer, Autobahn compresses as before.
    """
    port = listen(ChatWebSocketFactory(service, compression=True))
    c = await wsClient(port, extensions="permessage-deflate")
    await until(lambda: "#lobby" in service.rooms, "the join")
    proto = next(iter(service.rooms["#lobby"].members)).client
    assert proto._perMessageCompress is not None
    assert proto._fast is None
    service.broadcast(service.rooms["#lobby"], message("compressed"))
    await until(lambda: len(frames(c.pull())[0]) >= 4, "frames")
    assert all(rsv == 4 for op, rsv, _ in frames(c.data)[0] if op == 1)
    c.close()


@pytest_twisted.ensureDeferred
async def test_wsSlowConsumerDropped(listen: Any, service: ChatService) -> None:
    """
    A WebSocket client that does not read is dropped as a slow consumer.
    """
    service.settings.maxOutgoing = 256 * 1024
    port = listen(ChatWebSocketFactory(service))
    slow = wsHandshake(port)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await until(lambda: "#lobby" in service.rooms, "the join")
    room = service.rooms["#lobby"]
    member = next(iter(room.members))
    member.client.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    for i in range(3000):
        if member.gone:
            break
        service.broadcast(room, message("x" * 1000, i))
        if i % 20 == 0:
            await turn()
    assert member.gone
    await slow.closed()


@pytest_twisted.ensureDeferred
async def test_wsOpenConnectionIsSlim(listen: Any, service: ChatService) -> None:
    """
    An open WebSocket connection drops its handshake leftovers and its
    copies of the factory's options (they are read from a per-factory
    class), yet still answers pings, queues if Autobahn needs to, and
    closes cleanly.
    """
    factory = ChatWebSocketFactory(service, maxMessageSize=12345)
    port = listen(factory)
    c = await greeted(port)
    proto = next(iter(service.rooms["#lobby"].members)).client
    d = proto.__dict__
    for name in ("http_headers", "http_request_data", "maxMessagePayloadSize", "autoPingInterval", "wasClean", "_results"):
        assert name not in d, name
    assert proto.maxMessagePayloadSize == 12345 == factory.maxMessagePayloadSize
    assert proto.autoPingInterval == factory.autoPingInterval
    assert isinstance(proto, ChatWebSocketProtocol) and type(proto) is not ChatWebSocketProtocol
    assert len(proto.send_queue) == 0 and not proto.send_queue
    # a ping (masked, key 0) is answered with a pong carrying its payload
    c.sock.send(b"\x89\x84\x00\x00\x00\x00ping")
    await until(lambda: any(op == 10 for op, _, _ in frames(c.pull())[0]), "the pong")
    assert [p for op, _, p in frames(c.data)[0] if op == 10] == [b"ping"]
    # Autobahn's own queue still works (chopped writes)
    proto.sendData(b"\x81\x02hi", chopsize=1)
    await until(lambda: any(p == b"hi" for op, _, p in frames(c.pull())[0]), "the chopped frame")
    proto.sendClose(1000, "bye")
    await until(lambda: any(op == 8 for op, _, _ in frames(c.pull())[0]), "the close frame")
    c.sock.send(b"\x88\x82\x00\x00\x00\x00" + struct.pack("!H", 1000))
    await c.closed()
    assert proto.wasClean
