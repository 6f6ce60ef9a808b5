# -*- test-case-name: tests.frontends.test_write -*-
"""
A shorter write path for broadcast fan-out, below Twisted's defaults.

C{transport.write()} on a plain TCP connection appends to the transport's
buffer and registers the socket with the reactor for writing; the bytes go
out on the next reactor turn, when C{epoll} reports the socket writable, and
the socket is unregistered again. For one small chat message to a thousand
idle connections that is three system calls per delivery (two C{epoll_ctl}
and a C{send}) plus the reactor's bookkeeping, where one C{send} would do.

L{WriteBatcher} keeps Twisted's buffer as the one place where a connection's
outgoing bytes wait (so bytes written by anyone else, such as Autobahn's
control frames, stay in order behind ours), but when that buffer was empty it
does not register the socket: it remembers the connection and, once the code
running in this reactor turn is done (a C{callLater(0)}, run before the
reactor polls again), sends everything queued for it with one C{send()}.
Ten messages broadcast in the same turn (a burst) therefore cost one
C{send()} per recipient, not ten; a single message costs exactly one.

It stays out of the way whenever Twisted's own machinery is involved:

 - only exact L{twisted.internet.tcp.Server} / L{tcp.Client} transports
   without TLS (TLS goes through its own protocol, unchanged);
 - only when Twisted has nothing buffered for the connection, no paused
   producer, and the connection is not disconnecting, half-closed, aborted
   or lost; otherwise the bytes go through C{transport.write()} as usual;
 - whatever C{send()} could not take (a partial send, C{EAGAIN}) stays in
   Twisted's buffer and the socket is registered for writing, exactly as if
   Twisted had tried itself; any other error (C{EPIPE}, C{ECONNRESET}) leaves
   the bytes where they are and registers the socket, so that Twisted's own
   C{doWrite()} meets the same error and closes the connection its own way.

Join and leave notices may be written I{lazily}: they wait in the same
buffer up to L{WriteBatcher.lazyDelay} (0.2 s) for other bytes to go out
with, so a room filling up at a thousand joins a second costs each member a
few C{send()}s a second instead of a thousand. Anything else written to the
connection takes them along at once, so the order of the stream is never
changed, only the moment the notices leave.

Room messages go one step further (L{WriteBatcher.broadcast}): the service
hands over the event once, with the room's writers grouped by the bytes they
need (line, WebSocket text or json frames), instead of one C{write} per
recipient. At the end of the turn each group's bytes are built once and the
room's idle connections get them in one tight loop, one C{send()} each; a
connection that is not idle (bytes already waiting, a paused producer, a
closing connection) gets the events through its protocol's usual
C{deliver()}, behind what it has waiting. Anything else written to any
fast connection meanwhile first sends the pending room messages
(L{FastWriter.take}), so a connection's stream keeps the order in which
things were written: a message's echo still comes before its
acknowledgement.

A protocol that uses it holds a L{FastWriter} (see L{fastWriterFor}); one
that takes room messages this way also implements C{fastOpen()} and
C{fastFrame(event)} (see L{FastWriter.client}).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet import tcp
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

if TYPE_CHECKING:
    from twisted_chat.core.service import Member
    from twisted_chat.core.settings import Settings

#: the events whose broadcast may be written lazily (see FastWriter.write):
#: join and leave notices, which in a big room arrive by the hundred
LAZY_KINDS = frozenset({"join", "part"})

#: TWISTED_CHAT_FASTWRITE=0 in the environment turns the shortcut off (every
#: write goes through transport.write()), for comparisons
ENABLED = os.environ.get("TWISTED_CHAT_FASTWRITE", "1") != "0"

#: transports whose internals this module knows (exact classes: a subclass
#: may change them)
_FAST_TYPES = frozenset({tcp.Server, tcp.Client})

_REQUIRED = (
    "_tempDataBuffer",
    "_tempDataLen",
    "dataBuffer",
    "connected",
    "disconnecting",
    "_writeDisconnected",
    "_writeDisconnecting",
    "producerPaused",
    "bufferSize",
    "_aborting",
    "TLS",
    "socket",
    "startWriting",
    "reactor",
)


def supportsFastWrite(transport: object) -> bool:
    """
    Is C{transport} a plain TCP transport whose write buffer L{WriteBatcher}
    may use?
    """
    cls = type(transport)
    if cls not in _FAST_TYPES:
        return False
    known = _checked.get(cls)
    if known is None:
        known = _checked[cls] = all(hasattr(transport, name) for name in _REQUIRED)
    return known and not transport.TLS  # type: ignore[attr-defined]


#: transport class -> whether it has every attribute the shortcut uses
_checked: dict[type, bool] = {}


class WriteBatcher:
    """
    One per reactor: the connections with bytes queued in this turn, and the
    one C{callLater(0)} that sends them; and the connections with only
    I{lazy} bytes queued (see L{FastWriter.write}), sent every
    C{lazyDelay} seconds unless something else sends them first.
    """

    #: how long lazy bytes (join and leave notices) may wait for company
    lazyDelay = 0.2

    _log = Logger()

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._dirty: list[FastWriter] = []
        self._lazy: list[FastWriter] = []
        #: room messages not sent yet: (groups, event), in broadcast order
        self._rooms: list[tuple[Any, Any]] = []
        self._call: Any = None
        self._lazyCall: Any = None
        #: statistics, for tests and benchmarks
        self.flushes = 0
        self.sends = 0

    def broadcast(self, groups: tuple[tuple[str, tuple[FastWriter, ...]], ...], event: Any) -> None:
        """
        Deliver C{event} to every writer of C{groups} (C{(key, writers)}
        pairs: writers of one key get the same bytes), at the end of this
        reactor turn, together with the other room messages of the turn.
        """
        self._rooms.append((groups, event))
        if self._call is None:
            self._call = self._reactor.callLater(0, self.flush)

    def _schedule(self, writer: FastWriter) -> None:
        self._dirty.append(writer)
        if self._call is None:
            self._call = self._reactor.callLater(0, self.flush)

    def _scheduleLazy(self, writer: FastWriter) -> None:
        self._lazy.append(writer)
        if self._lazyCall is None:
            self._lazyCall = self._reactor.callLater(self.lazyDelay, self.flushLazy)

    def flush(self) -> None:
        """
        Send the pending room messages, then what every queued connection
        has waiting, one C{send()} each.
        """
        # (a write queued while the room messages go out joins this flush)
        self._call = _FLUSHING
        try:
            if self._rooms:
                self.flushRooms()
            dirty = self._dirty
            if dirty:
                self._dirty = []
                self._send(dirty, _QUEUED)
        finally:
            self._call = None
            if self._rooms or self._dirty:
                self._call = self._reactor.callLater(0, self.flush)

    def flushRooms(self) -> None:
        """
        Send the pending room messages now (see L{broadcast}).
        """
        pending = self._rooms
        self._rooms = []
        failed: list[Any] = []
        i, n = 0, len(pending)
        while i < n:
            groups, event = pending[i]
            j = i + 1
            # A run of messages to the same room (same members) goes as one.
            while j < n and pending[j][0] is groups:
                j += 1
            events = [event] if j == i + 1 else [e for _, e in pending[i:j]]
            for _, group in groups:
                self._fan(group, events, failed)
            i = j
        # Dropped only once everyone had the messages (as the service does).
        for client in failed:
            member = getattr(client, "member", None)
            if member is not None:
                member.service.dropFailed(member)

    def _fan(self, group: tuple[FastWriter, ...], events: list[Any], failed: list[Any]) -> None:
        """
        Send C{events} to the writers of one group: the same bytes for all.
        """
        data = b""
        sends = 0
        for w in group:
            t = w.transport
            client = w.client
            # (FastWriter.take's conditions, inline: this loop runs once per
            # recipient; TLS transports never get a FastWriter)
            if (
                w.state
                or t._tempDataLen
                or t.dataBuffer
                or not t.connected
                or t.disconnecting
                or t.producerPaused
                or t._writeDisconnecting
                or t._writeDisconnected
                or t._aborting
                or not client.fastOpen()
            ):
                # Not idle: the protocol's own path, behind what waits.
                try:
                    for e in events:
                        client.deliver(e)
                except Exception:
                    self._log.failure("delivery to {client!r} failed; dropping it", client=client)
                    failed.append(client)
                continue
            if not data:
                frames = [client.fastFrame(e) for e in events]
                data = frames[0] if len(frames) == 1 else b"".join(frames)
                if not data:
                    return
            sends += 1
            try:
                sent = t.socket.send(data)
            except OSError:
                # EAGAIN: Twisted sends it when the socket is writable;
                # EPIPE, ECONNRESET...: Twisted's doWrite() meets it again
                # and closes the connection its own way.
                sent = 0
            if sent != len(data):
                rest = data[sent:] if sent else data
                t._tempDataBuffer.append(rest)
                t._tempDataLen = len(rest)
                if len(rest) > t.bufferSize:
                    t._maybePauseProducer()
                t.startWriting()
        self.sends += sends

    def flushLazy(self) -> None:
        """
        Send what connections with only lazy bytes have waiting.
        """
        self._lazyCall = None
        lazy = self._lazy
        if lazy:
            self._lazy = []
            self._send(lazy, _LAZY)

    def _send(self, writers: list[FastWriter], state: int) -> None:
        self.flushes += 1
        sends = 0
        for w in writers:
            if w.state != state:
                # (a lazy writer that got company was sent with its turn)
                continue
            w.state = _IDLE
            t = w.transport
            if not t.connected or t._aborting:
                # Lost or aborted meanwhile: Twisted drops its buffer too.
                continue
            buf = t._tempDataBuffer
            if not buf or t.dataBuffer:
                # Emptied or taken over by Twisted meanwhile: its business.
                continue
            # (join() returns a lone item itself, without copying it)
            data = b"".join(buf)
            sends += 1
            try:
                n = t.socket.send(data)
            except (BlockingIOError, InterruptedError):
                # EAGAIN: the kernel buffer is full; Twisted sends it when
                # the socket is writable again.
                t.startWriting()
                continue
            except OSError:
                # EPIPE, ECONNRESET...: leave the bytes where they are; the
                # reactor's doWrite() meets the same error and closes the
                # connection through Twisted's usual path.
                t.startWriting()
                continue
            if n == t._tempDataLen:
                buf.clear()
                t._tempDataLen = 0
                if t.producerPaused or t.disconnecting or t._writeDisconnecting:
                    # Twisted's doWrite() on an empty buffer resumes the
                    # producer, or finishes the (half-)close.
                    t.startWriting()
            else:
                rest = data[n:]
                t._tempDataBuffer = [rest]
                t._tempDataLen = len(rest)
                t.startWriting()
        self.sends += sends


#: WriteBatcher._call while a flush runs
_FLUSHING = object()

#: FastWriter.state: nothing of ours waits; bytes wait for this turn's
#: flush; only lazy bytes wait, for the lazy flush
_IDLE, _QUEUED, _LAZY = 0, 1, 2


_batchers: dict[Any, WriteBatcher] = {}


def batcherFor(reactor: Any) -> WriteBatcher:
    b = _batchers.get(reactor)
    if b is None:
        b = _batchers[reactor] = WriteBatcher(reactor)
    return b


class FastWriter:
    """
    The fast write path of one connection.
    """

    __slots__ = ("transport", "state", "client", "key")

    def __init__(self, transport: Any, batcher: WriteBatcher, client: Any = None, key: str = "") -> None:
        self.transport = transport
        _batchers.setdefault(transport.reactor, batcher)
        #: _IDLE, or whether our bytes wait in the transport's buffer for
        #: this turn's flush (_QUEUED) or for the lazy flush (_LAZY)
        self.state = _IDLE
        #: the protocol, for room messages (L{WriteBatcher.broadcast}): its
        #: C{fastOpen()} says whether it takes bytes now, C{fastFrame(event)}
        #: gives an event's bytes for it, and C{deliver(event)} delivers one
        #: its usual way
        self.client = client
        #: writers with the same key get the same bytes for a room message
        self.key = key

    @property
    def batcher(self) -> WriteBatcher:
        return _batchers[self.transport.reactor]

    @property
    def queued(self) -> bool:
        return self.state != _IDLE

    def write(self, data: bytes, lazy: bool = False) -> None:
        """
        Like C{transport.write(data)}, sent at the end of this reactor turn
        with everything else written to this connection in the same turn.

        C{lazy} bytes (notices nobody waits for, such as a join in a big
        room) may wait up to L{WriteBatcher.lazyDelay} seconds, so that a
        connection receiving many of them gets them in a few C{send()}s;
        anything written after them takes them along, so the order of the
        stream never changes.
        """
        if not self.take(data, lazy):
            self.transport.write(data)

    def take(self, data: bytes, lazy: bool = False) -> bool:
        """
        L{write} C{data} if it can go the short way; C{False} if not, and
        then the caller writes it with C{transport.write()} (after counting
        it against a slow consumer's allowance, for instance).
        """
        t = self.transport
        batcher = _batchers[t.reactor]
        if batcher._rooms:
            # Room messages written before this go first.
            batcher.flushRooms()
        state = self.state
        if state:
            # Behind our own bytes (and anything written through
            # transport.write() since): same buffer, same order.
            if t.producerPaused:
                return False
            if t.connected and not t._writeDisconnected:
                t._tempDataBuffer.append(data)
                n = t._tempDataLen = t._tempDataLen + len(data)
                if n > t.bufferSize:
                    t._maybePauseProducer()
                if state == _LAZY and not lazy:
                    self.state = _QUEUED
                    batcher._schedule(self)
            return True
        if (
            t._tempDataLen
            or t.dataBuffer
            or not t.connected
            or t.disconnecting
            or t._writeDisconnected
            or t._writeDisconnecting
            or t.producerPaused
            or t._aborting
            or t.TLS
        ):
            return False
        t._tempDataBuffer.append(data)
        t._tempDataLen = len(data)
        if len(data) > t.bufferSize:
            t._maybePauseProducer()
        if lazy:
            self.state = _LAZY
            batcher._scheduleLazy(self)
        else:
            self.state = _QUEUED
            batcher._schedule(self)
        return True


def fastWriterFor(transport: object, client: Any = None, key: str = "") -> FastWriter | None:
    """
    A L{FastWriter} for C{transport}, or L{None} when it must be written
    through C{transport.write()} only (TLS, test transports, other reactors'
    transports). With a C{client} (see L{FastWriter.client}) it also takes
    room messages (L{WriteBatcher.broadcast}).
    """
    if not ENABLED or not supportsFastWrite(transport):
        return None
    return FastWriter(transport, batcherFor(transport.reactor), client, key)  # type: ignore[attr-defined]


def sync(writer: FastWriter | None) -> None:
    """
    Send pending room messages before something written to C{writer}'s
    connection another way than L{FastWriter.take} (Autobahn's own send
    path, a close).
    """
    if writer is not None:
        batcher = _batchers[writer.transport.reactor]
        if batcher._rooms:
            batcher.flushRooms()


@implementer(IPushProducer)
class OutgoingGuard:
    """
    Bound what a connection may queue for a peer that does not read.

    Registered as the transport's streaming producer: the transport pauses it
    once its userspace buffer is full (64 KiB) and resumes it when drained.
    While paused, everything written is counted; past C{limit} bytes (the
    C{maxOutgoing} of C{settings}, read at every check, so a reload applies
    at once) the connection is aborted (a slow consumer) instead of growing
    server memory.
    """

    __slots__ = ("settings", "paused", "queued")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.paused = False
        self.queued = 0

    @property
    def limit(self) -> int:
        return self.settings.maxOutgoing

    def pauseProducing(self) -> None:
        # A transport calls this on every write while its buffer is full, not
        # only once: count from the first call, or nothing is ever dropped.
        if not self.paused:
            self.paused = True
            self.queued = 0

    def resumeProducing(self) -> None:
        self.paused = False
        self.queued = 0

    def stopProducing(self) -> None:
        self.paused = False

    def overLimit(self, nbytes: int) -> bool:
        """
        Account for C{nbytes} more; C{True} once the peer is too far behind.
        """
        if not self.paused:
            return False
        self.queued += nbytes
        return self.queued > self.settings.maxOutgoing


def dropSlowConsumer(log: Logger, peer: str, member: Member | None, limit: int, abort: Callable[[], object]) -> None:
    """
    A peer is over its outgoing limit (see L{OutgoingGuard}): log it, take
    it out of the chat and abort the connection.
    """
    log.warn(
        "dropping slow consumer {peer} ({nick}): over {limit} bytes queued",
        peer=peer,
        nick=member.nick if member else "?",
        limit=limit,
    )
    if member is not None:
        member.quit("too slow")
    abort()
