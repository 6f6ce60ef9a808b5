"""
A TCP proxy on loopback (asyncio) that can cut every connection through it.

Clients reach the daemons through one (their addresses stay the same while
a daemon restarts on its fixed ports), and the daemons reach Redis through
another; L{Proxy.cut} aborts every connection (both sides, no FIN: as a
network that dies).
"""

from __future__ import annotations

import asyncio
from typing import Callable

#: seconds to connect to the upstream
CONNECT_TIMEOUT = 3.0


class Proxy:
    """
    Listens on a free loopback port and relays each connection to
    C{upstream()} (host, port), read when the connection arrives.
    """

    def __init__(self, name: str, upstream: Callable[[], tuple[str, int]]) -> None:
        self.name = name
        self.upstream = upstream
        self.port = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            host, port = self.upstream()
            try:
                upReader, upWriter = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError):
                writer.transport.abort()
                return
            pair = (writer, upWriter)
            self._pairs.add(pair)
            try:
                await asyncio.gather(self._pump(reader, upWriter), self._pump(upReader, writer))
            finally:
                self._pairs.discard(pair)
                writer.transport.abort()
                upWriter.transport.abort()
        except asyncio.CancelledError:
            writer.transport.abort()
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    # a half-close goes through (the line chat answers
                    # what was sent before it)
                    if writer.can_write_eof() and not writer.transport.is_closing():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (OSError, ConnectionError):
            writer.transport.abort()

    def cut(self) -> int:
        """
        Abort every connection through the proxy; return how many.
        """
        pairs = list(self._pairs)
        for a, b in pairs:
            a.transport.abort()
            b.transport.abort()
        self.cuts += 1
        return len(pairs)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5)
            except asyncio.TimeoutError:
                pass
