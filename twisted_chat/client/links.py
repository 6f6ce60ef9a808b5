# -*- test-case-name: tests.client.test_links,tests.client.test_session -*-
"""
The terminal client's links to the server (L{twisted_chat.client.session.ChatLink}):
L{LineLink} speaks the line chat (C{tcp://}, C{tls://}), L{JsonLink} WebSocket
json mode (C{ws://}, C{wss://}, through Autobahn, translating with
L{JsonChat}); L{connect} makes the one a target needs.
"""

from __future__ import annotations

import json
from collections import deque
from typing import TYPE_CHECKING, cast

from autobahn.exception import Disconnected
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.types import ConnectionResponse
from twisted.internet import error as neterror
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLClientConnectionCreator, IProtocol, ITCPTransport
from twisted.internet.protocol import Factory, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_chat import __version__
from twisted_chat.client.jsonchat import JsonChat, describeRequest, newRefPrefix
from twisted_chat.client.resume import JsonObject
from twisted_chat.client.session import ChatClient, describeFailure
from twisted_chat.client.target import Target
from twisted_chat.client.tls import tlsCreator
from twisted_chat.client.typed import describeInput
from twisted_chat.client.ui import PROG, Reactor
from twisted_chat.wire.lines import LineProtocol
from twisted_chat.wire.render import oneLine

if TYPE_CHECKING:
    from twisted.internet.interfaces import IStreamClientEndpoint

#: the WebSocket subprotocol of json mode
SUBPROTOCOL = "chat.json"


@implementer(IHandshakeListener)
class LineLink(LineProtocol):
    """
    The line chat (C{tcp://}, C{tls://}): typed lines go out as they are,
    received lines are shown as they are (made safe for a terminal).

    The line chat has no acknowledgements, but the server handles a
    connection's lines in order and answers C{/quit} with C{*** bye} only
    once it has answered every line before it: so the goodbye goes at once,
    and every line sent counts as unconfirmed from then on until that
    C{*** bye} arrives. Every C{!!! } line from the server is a refusal.

    Over TLS the link counts as open only once the handshake succeeded, so a
    certificate that fails verification is a failed connect, not a close.
    """

    unit = "line"
    #: the server's answer to C{/quit}, once it has answered what came before
    BYE = "*** bye"
    #: how many of the lines sent are kept, to say which were not confirmed
    keepSent = 100

    def __init__(self, client: ChatClient, nick: str | None = None, tls: bool = False) -> None:
        self.client = client
        self.nick = nick
        self.tls = tls
        self.opened = False
        self._sent: deque[str] = deque(maxlen=self.keepSent)
        self._sentCount = 0
        self._quitting = False
        self._bye = False
        self._refused = 0

    def connectionMade(self) -> None:
        if not self.tls:
            self._open()

    def handshakeCompleted(self) -> None:
        self._open()

    def _open(self) -> None:
        if self.opened:
            return
        self.opened = True
        if self.nick:
            self.sendInput("/nick " + self.nick)
        self.client.linkOpened(self)

    def lineReceived(self, line: bytes) -> None:
        text = oneLine(line.decode("utf-8", "replace"))
        if text.startswith("!!! "):
            self._refused += 1
        elif self._quitting and text == self.BYE:
            self._bye = True
        if self._quitting:
            # (the server answers lines in order: this is one of ours, or
            # what the room said meanwhile; either way it is still working
            # through them)
            self.client.progressed()
        self.client.showLine(text)

    def lineTooLong(self) -> None:
        self.client.showLine("!!! a line from the server was too long (over %d bytes): not shown" % (self.maxLength,))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.opened:
            self.client.connectFailed(describeFailure(reason))
        elif reason.check(neterror.ConnectionDone):
            self.client.linkClosed(None)
        else:
            self.client.linkClosed(describeFailure(reason))

    # -- ChatLink --

    def sendInput(self, line: str) -> None:
        self._write(line)
        if line.strip():
            self._sent.append(describeInput(line))
            self._sentCount += 1

    def _transport(self) -> ITCPTransport:
        # (once connected: TCP, maybe with TLS on it; either can abort)
        return cast(ITCPTransport, self.transport)

    def _write(self, line: str) -> None:
        self._transport().write(line.encode("utf-8", "replace") + b"\n")

    def sendQuit(self, reason: str) -> None:
        self._quitting = True
        self._write("/quit " + reason if reason else "/quit")

    def abort(self) -> None:
        self._transport().abortConnection()

    def unconfirmed(self) -> tuple[int, list[str]]:
        if not self._quitting or self._bye:
            return 0, []
        return self._sentCount, list(self._sent)

    def refusals(self) -> int:
        return self._refused


_GOING_AWAY = 1001


def _closeReason(text: str) -> str:
    """
    Cut C{text} to the 123 bytes a WebSocket close reason may have.
    """
    return text.encode("utf-8")[:120].decode("utf-8", "ignore")


class JsonLink(WebSocketClientProtocol):
    """
    WebSocket json mode (C{ws://}, C{wss://}): typed lines are translated
    into requests and events into lines by the factory's L{JsonChat}, which
    outlives the connection (it keeps the resume positions).
    """

    factory: JsonLinkFactory

    unit = "message"
    opened = False
    _refused: str | None = None
    # the goodbye's reason once asked for, and whether the close went out
    _quitting: str | None = None
    _closing = False
    # what the status line shows (who is typing)
    _activity = ""

    def onConnect(self, response: ConnectionResponse) -> None:
        if response.protocol != SUBPROTOCOL:
            self._refused = "the server does not speak %s (wrong URL path?)" % (SUBPROTOCOL,)

    def onOpen(self) -> None:
        if self._refused is not None:
            self.sendClose(1000)
            return
        self.opened = True
        self._sendRequest(self.factory.chat.hello())
        self.factory.client.linkOpened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        client = self.factory.client
        if isBinary:
            client.showLine("!!! unexpected binary frame from the server: ignored")
            return
        try:
            event = json.loads(payload.decode("utf-8"))
        except ValueError:
            client.showLine("!!! a frame from the server was not valid JSON: ignored")
            return
        chat = self.factory.chat
        unacked = len(chat.unacked)
        for line in chat.render(event):
            client.showLine(line)
        self._showActivity(chat.typingStatus())
        if len(chat.unacked) < unacked:
            client.progressed()
        for request in chat.takeRequests():
            self._sendRequest(request)
        if self._quitting is not None:
            self._closeWhenConfirmed()

    def _showActivity(self, text: str) -> None:
        if text != self._activity:
            self._activity = text
            self.factory.client.showActivity(text)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        client = self.factory.client
        self.factory.chat.connectionLost()
        self._showActivity("")
        if not self.opened:
            failed = self._refused or self.wasNotCleanReason or reason or "connection closed"
            client.connectFailed(oneLine(str(failed)))
            return
        chat = self.factory.chat
        retryAfter, chat.reconnectAfter = chat.reconnectAfter, None
        # lost without a close handshake (1006), or the server going away
        # (1001, on shutdown): worth connecting again and resuming
        resumable = not wasClean or code == _GOING_AWAY
        why: str | None
        if wasClean:
            why = oneLine(reason) if reason else None
        else:
            why = oneLine(str(self.wasNotCleanReason or "connection lost"))
        client.linkClosed(why, resumable=resumable, retryAfter=retryAfter)

    def _sendRequest(self, request: JsonObject) -> None:
        try:
            self.sendMessage(json.dumps(request, ensure_ascii=False).encode("utf-8"), isBinary=False)
        except Disconnected:
            pass

    # -- ChatLink --

    def sendInput(self, line: str) -> None:
        chat = self.factory.chat
        requests, lines = chat.translate(line)
        for text in lines:
            self.factory.client.showLine(text)
        # (/join switches rooms: who is typing there)
        self._showActivity(chat.typingStatus())
        for request in chat.outgoing(requests):
            self._sendRequest(request)

    def sendQuit(self, reason: str) -> None:
        self._quitting = reason
        self._closeWhenConfirmed()

    def _closeWhenConfirmed(self) -> None:
        """
        Once every C{say} and C{msg} has its C{ack} or C{error} (which come
        after their echo, or, after a resume, maybe before the history that
        has it: see L{JsonChat.echoesPending}), close; until then each event
        looks again.
        """
        chat = self.factory.chat
        if self._closing or chat.unacked or chat.echoesPending():
            return
        self._closing = True
        # what waits for the welcome still goes: the server handles it first
        for request in chat.takeHeld():
            self._sendRequest(request)
        reason = self._quitting
        self.sendClose(1000, _closeReason(reason) if reason else None)

    def abort(self) -> None:
        # not dropConnection(), which warns about an unclean close: this
        # one is ours, and the session says why it ends
        if self.transport is not None:
            # (TCP, maybe with TLS on it; either can abort)
            cast(ITCPTransport, self.transport).abortConnection()

    def unconfirmed(self) -> tuple[int, list[str]]:
        unacked = self.factory.chat.unacked
        latest = list(unacked.values())[-100:] if len(unacked) > 100 else list(unacked.values())
        return len(unacked), [describeRequest(r) for r in latest]

    def refusals(self) -> int:
        return self.factory.chat.refusals


class JsonLinkFactory(WebSocketClientFactory):
    """
    Builds L{JsonLink}s for one L{ChatClient}, offering the C{chat.json}
    subprotocol, with bounded frames and handshakes.
    """

    # (Factory types this as building protocols whose factory is any
    # Factory; a JsonLink's is this one)
    protocol = JsonLink  # type: ignore[assignment]
    noisy = False

    def __init__(self, client: ChatClient, target: Target, chat: JsonChat, reactor: Reactor = None) -> None:
        WebSocketClientFactory.__init__(
            self,
            url=target.url,
            protocols=[SUBPROTOCOL],
            useragent="%s/%s" % (PROG, __version__),
            reactor=reactor,
        )
        self.setProtocolOptions(
            maxFramePayloadSize=4 << 20,
            maxMessagePayloadSize=4 << 20,
            openHandshakeTimeout=15,
            closeHandshakeTimeout=2,
            autoPingInterval=30,
            autoPingTimeout=15,
        )
        self.client = client
        self.chat = chat


def endpointFor(
    reactor: Reactor, target: Target, creator: IOpenSSLClientConnectionCreator | None = None, timeout: float = 15
) -> IStreamClientEndpoint:
    """
    The client endpoint for C{target}: TCP to its host name (all its
    addresses tried, IPv6 and IPv4), wrapped in TLS when it is secure.
    """
    from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

    endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, target.host, target.port, timeout=timeout)
    if target.secure:
        if creator is None:
            creator = tlsCreator(target)
        endpoint = wrapClientTLS(creator, endpoint)
    return endpoint


def connect(
    reactor: Reactor,
    client: ChatClient,
    nick: str | None = None,
    creator: IOpenSSLClientConnectionCreator | None = None,
    endpoint: IStreamClientEndpoint | None = None,
    refPrefix: str | None = None,
) -> Deferred[IProtocol | None]:
    """
    Connect C{client} to its target with the right link; failures go to
    L{ChatClient.connectFailure}. The result is kept as
    C{client.connecting}, so that quitting early can cancel it. For
    WebSocket json mode, C{client.redial} connects again with the same
    L{JsonChat}, so that the session can resume; its refs start with
    C{refPrefix}, by default one of L{newRefPrefix}, new for each session.
    """
    target = client.target
    if endpoint is None:
        endpoint = endpointFor(reactor, target, creator)
    factory: Factory
    if target.websocket:
        chat = JsonChat(reactor.seconds, nick=nick, refPrefix=refPrefix if refPrefix is not None else newRefPrefix())
        factory = JsonLinkFactory(client, target, chat, reactor=reactor)
    else:
        factory = Factory.forProtocol(lambda: LineLink(client, nick, tls=target.secure))
        factory.noisy = False
    theEndpoint = endpoint

    def dial() -> Deferred[IProtocol | None]:
        d = theEndpoint.connect(factory)
        client.connecting = d
        return d.addErrback(client.connectFailure)

    if target.websocket:
        client.redial = dial
    return dial()
