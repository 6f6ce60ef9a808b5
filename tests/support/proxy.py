"""
A small round-robin TCP proxy for the tests (L{RoundRobinProxy}): each new
connection goes to the next backend in turn, with no stickiness at all, as
a plain layer-4 load balancer would. One thread, C{selectors}, loopback
only; every byte is passed on unchanged in both directions.

Nothing here imports the reactor, Twisted or pytest.
"""

from __future__ import annotations

import selectors
import socket
import threading
from types import TracebackType

#: bytes read at once
CHUNK = 65536


class RoundRobinProxy:
    """
    Listen on a free loopback port (C{port}); connection I goes to
    C{backends[I % len(backends)]}. C{accepted} counts connections. Use as
    a context manager (stopped, every connection closed, on exit).
    """

    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = backends
        self.accepted = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        #: socket -> (its peer, bytes waiting to be written to the peer)
        self._peers: dict[socket.socket, socket.socket] = {}
        self._pending: dict[socket.socket, bytearray] = {}
        self._stop = threading.Event()
        self._wake, self._waker = socket.socketpair()
        self._selector.register(self._wake, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, name="round-robin-proxy", daemon=True)

    def __enter__(self) -> RoundRobinProxy:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._waker.send(b"x")
        self._thread.join(10)
        for sock in list(self._peers):
            sock.close()
        for sock in (self._listener, self._wake, self._waker):
            sock.close()
        self._selector.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, events in self._selector.select(timeout=1.0):
                if key.data == "wake":
                    return
                if key.fileobj is self._listener:
                    self._accept()
                    continue
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock not in self._peers:
                    continue
                if events & selectors.EVENT_WRITE:
                    self._flush(sock)
                if events & selectors.EVENT_READ and sock in self._peers:
                    self._read(sock)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        backend = self.backends[self.accepted % len(self.backends)]
        self.accepted += 1
        try:
            upstream = socket.create_connection(backend, timeout=5)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            self._pending[sock] = bytearray()
        self._peers[client], self._peers[upstream] = upstream, client
        self._selector.register(client, selectors.EVENT_READ, None)
        self._selector.register(upstream, selectors.EVENT_READ, None)

    def _read(self, sock: socket.socket) -> None:
        peer = self._peers[sock]
        try:
            data = sock.recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            # the end: what is still waiting for the peer goes out first
            rest = self._pending.get(peer)
            if rest:
                try:
                    peer.settimeout(5)
                    peer.sendall(rest)
                except OSError:
                    pass
            self._close(sock)
            return
        self._pending[peer] += data
        self._flush(peer)

    def _flush(self, sock: socket.socket) -> None:
        pending = self._pending.get(sock)
        if pending is None:
            return
        try:
            sent = sock.send(pending) if pending else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(sock)
            return
        del pending[:sent]
        self._selector.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0), None)

    def _close(self, sock: socket.socket) -> None:
        peer = self._peers.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._peers.pop(s, None)
            self._pending.pop(s, None)
            try:
                self._selector.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
