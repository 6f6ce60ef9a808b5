"""
Line-chat users: L{MemoryLine}, a connection of the real line protocol over
a string transport (no socket), and the users of a real daemon built on
L{tests.support.daemon.LineClient} (L{lineUser}, L{named}; and for asyncio
tests, whose blocking reads go through C{asyncio.to_thread},
L{lineUserAsync}, L{lineSays}, L{leaves}).

Imports Twisted: test modules import it, conftest.py must not.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransportWithDisconnection

from twisted_chat.frontends.line import LineChatFactory, LineChatProtocol

from tests.support.daemon import Daemon, LineClient


class StalledTransport(StringTransportWithDisconnection):
    """
    A transport that, like Twisted's TCP transport, pauses its streaming
    producer on every write while more than C{bufferSize} bytes wait for a
    peer that has C{stalled} (stopped reading).
    """

    bufferSize = 1024
    stalled = False

    def write(self, data: bytes) -> None:
        StringTransportWithDisconnection.write(self, data)
        if self.stalled and len(self.value()) > self.bufferSize and self.streaming:
            self.producer.pauseProducing()


class MemoryLine:
    """
    One line-chat connection from C{host} in memory: the factory's protocol
    over a L{StalledTransport}; each connection has a port of its own.
    """

    _port = 40000

    def __init__(self, factory: LineChatFactory, host: str = "127.0.0.1") -> None:
        MemoryLine._port += 1
        addr = IPv4Address("TCP", host, MemoryLine._port)
        self.protocol: LineChatProtocol = factory.buildProtocol(addr)
        self.transport = StalledTransport(peerAddress=addr)
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)

    @property
    def nick(self) -> str:
        assert self.protocol.member is not None
        return self.protocol.member.nick

    def send(self, data: str | bytes) -> None:
        """
        Deliver C{data} to the server as one TCP segment.
        """
        self.protocol.dataReceived(data.encode("utf-8") if isinstance(data, str) else data)

    def sendLine(self, line: str) -> None:
        """
        Send one line.
        """
        self.send(line + "\n")

    def say(self, line: str) -> list[str]:
        """
        Send one line; return what this connection got back.
        """
        self.sendLine(line)
        return self.lines()

    def lines(self) -> list[str]:
        """
        The lines the server sent since the last call.
        """
        data = self.transport.value()
        self.transport.clear()
        assert data == b"" or data.endswith(b"\n"), "incomplete line sent: %r" % (data,)
        return data.decode("utf-8").splitlines()

    @property
    def open(self) -> bool:
        return bool(self.transport.connected)

    def disconnect(self) -> None:
        """
        The peer closes the connection.
        """
        self.transport.loseConnection()


def quiet(*lines: MemoryLine) -> None:
    """
    Read (and forget) what each of C{lines} got so far.
    """
    for line in lines:
        line.lines()


def rename(client: LineClient, nick: str) -> list[str]:
    """
    Read the greeting and take C{nick} (C{client.guest} is the guest nick);
    return the lines that came between the greeting and the confirmation.
    """
    client.welcome()
    client.send("/nick " + nick)
    skipped = client.expect("*** you are now " + nick)
    client.nick = nick
    return skipped


def named(client: LineClient, nick: str) -> LineClient:
    """
    C{client}, welcomed and renamed to C{nick}.
    """
    rename(client, nick)
    return client


def lineUser(lineClients: Callable[..., LineClient], daemon: Daemon, nick: str, timeout: float = 10.0) -> LineClient:
    """
    A line-chat user of C{daemon} called C{nick}, in #lobby (through the
    C{lineClients} fixture; every read bounded by C{timeout}).
    """
    return named(lineClients(daemon.ports["line"], timeout=timeout), nick)


async def lineUserAsync(lineClients: Callable[..., LineClient], daemon: Daemon, nick: str) -> LineClient:
    """
    L{lineUser} for asyncio tests: the same user, its reads in a thread.
    """
    line = lineClients(daemon.ports["line"])
    await asyncio.to_thread(named, line, nick)
    return line


async def lineSays(line: LineClient, nick: str, *texts: str) -> None:
    """
    C{line} says each of C{texts} and waits until it is echoed back, that
    is, stored and delivered.
    """
    for text in texts:
        line.send(text)
        await asyncio.to_thread(line.expect, "#lobby <%s> %s" % (nick, text))


async def leaves(line: LineClient, nick: str) -> None:
    """
    Wait until C{line} sees C{nick} leave #lobby.
    """
    await asyncio.to_thread(line.expect, lambda s: s.startswith("*** #lobby: %s left" % (nick,)))
