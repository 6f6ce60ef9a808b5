"""
An IRC client for the unit tests of the IRC front-end: an
L{IRCConnection} over a L{StringTransportWithDisconnection}, lines in,
parsed lines out.
"""

from __future__ import annotations


from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection

from twisted_chat.core.service import ChatService
from twisted_chat.frontends.irc.connection import IRCConnection, IRCFactory
from twisted_chat.frontends.irc.protocol import IRCMessage, parseMessage



class Client:
    """
    One IRC connection to the front-end.
    """

    _port = 50000

    def __init__(self, factory: IRCFactory, host: str = "127.0.0.1") -> None:
        Client._port += 1
        addr = IPv4Address("TCP", host, Client._port)
        self.protocol: IRCConnection = factory.buildProtocol(addr)
        self.transport = StringTransportWithDisconnection(peerAddress=addr)
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)

    def send(self, data: str | bytes) -> None:
        self.protocol.dataReceived(data.encode("utf-8") if isinstance(data, str) else data)

    def raw(self) -> list[str]:
        """
        The lines the server sent since the last read (without CRLF).
        """
        data = self.transport.value()
        self.transport.clear()
        assert data == b"" or data.endswith(b"\r\n"), "incomplete line sent: %r" % (data,)
        return data.decode("utf-8").split("\r\n")[:-1] if data else []

    def lines(self) -> list[IRCMessage]:
        out = []
        for line in self.raw():
            m = parseMessage(line)
            assert m is not None
            out.append(m)
        return out

    def cmd(self, line: str) -> list[IRCMessage]:
        """
        Send one line; what came back.
        """
        self.send(line + "\r\n")
        return self.lines()

    def commands(self, line: str) -> list[str]:
        """
        Send one line; the commands (or numerics) of what came back.
        """
        return [m.command for m in self.cmd(line)]

    def register(self, nick: str, caps: str = "") -> list[IRCMessage]:
        """
        Register as C{nick} (with C{caps} requested first); the welcome.
        """
        if caps:
            self.send("CAP LS 302\r\nCAP REQ :%s\r\n" % (caps,))
        self.send("NICK %s\r\nUSER u 0 * :Real Name\r\n" % (nick,))
        if caps:
            self.send("CAP END\r\n")
        return self.lines()

    @property
    def open(self) -> bool:
        return bool(self.transport.connected)


def numeric(lines: list[IRCMessage], code: str) -> list[IRCMessage]:
    return [m for m in lines if m.command == code]


def makeFactory(service: ChatService, clock: Clock) -> IRCFactory:
    return IRCFactory(service, clock=clock)
