# -*- test-case-name: tests.frontends.socketio.test_engineio -*-
"""
One Engine.IO session (L{EngineSocket}): its heartbeat, the packets it
receives and sends, its end, and its move from HTTP long-polling to a
WebSocket (the "upgrade": C{2probe}, C{3probe}, C{5}).

The session is the same whichever transport carries it: polling
(L{twisted_chat.frontends.socketio.engineio.polling}) or a WebSocket (any
L{SessionWebSocket}); what runs on top is its L{EngineHandler}. It knows
the server that keeps it only as a L{SessionHost}.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Callable, Protocol

from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET, Request

from twisted_chat.frontends.socketio.engineio.packets import (
    BAD_REQUEST,
    CLOSE,
    MESSAGE,
    NOOP,
    OPEN,
    PING,
    PONG,
    POLLING,
    UPGRADE,
    WEBSOCKET,
    Data,
    EngineError,
    Packet,
    ProtocolError,
    decodePayload,
    encodePacket,
    encodePayload,
)
from twisted_chat.frontends.socketio.engineio.polling import Polling

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from twisted_chat.core.settings import Settings


class EngineHandler(Protocol):
    """
    What runs on top of one session (the Socket.IO connection): it gets
    every message, and the end of the session once; it sends with
    L{EngineSocket.send}.
    """

    def onMessage(self, data: Data) -> None: ...

    def onClose(self, reason: str) -> None: ...


class SessionWebSocket(Protocol):
    """
    A WebSocket as a session uses it: the session's transport, or the probe
    that may become it.
    """

    isProbe: bool

    def sendPacket(self, ptype: int, data: Data | None) -> None: ...

    def sendPacketText(self, text: str) -> None: ...

    def closeTransport(self, reason: str) -> None:
        """
        Close the WebSocket: it no longer serves the session.
        """

    def pauseReading(self) -> None: ...

    def resumeReading(self) -> None: ...


class SessionHost(Protocol):
    """
    What a session needs of the server that keeps it.
    """

    @property
    def clock(self) -> IReactorTime: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def pingInterval(self) -> float: ...

    @property
    def pingTimeout(self) -> float: ...

    @property
    def maxPayload(self) -> int: ...

    @property
    def upgradeTimeout(self) -> float: ...

    @property
    def handlerFactory(self) -> Callable[[EngineSocket], EngineHandler]: ...

    def forget(self, socket: EngineSocket) -> None:
        """
        The session is over.
        """


class Heartbeat:
    """
    The server's pings of one session: every C{pingInterval} a ping, which
    the client answers (L{pong}) within C{pingTimeout}, or the session
    L{expired}. A client whose input is held (flood control: its pong waits,
    unread, behind its own requests) is there, and gets more time.
    """

    def __init__(
        self, server: SessionHost, ping: Callable[[], None], held: Callable[[], bool], expired: Callable[[], None]
    ) -> None:
        self.server = server
        self._sendPing = ping
        self._held = held
        self._expired = expired
        self._pingCall: IDelayedCall | None = None
        self._timeoutCall: IDelayedCall | None = None

    def start(self) -> None:
        """
        Ping after C{pingInterval} (0: never).
        """
        if self.server.pingInterval > 0:
            self._pingCall = self.server.clock.callLater(self.server.pingInterval, self._ping)

    def stop(self) -> None:
        for call in (self._pingCall, self._timeoutCall):
            if call is not None and call.active():
                call.cancel()
        self._pingCall = self._timeoutCall = None

    def pong(self) -> None:
        """
        The client answered: the next ping after C{pingInterval}.
        """
        if self._timeoutCall is not None:
            if self._timeoutCall.active():
                self._timeoutCall.cancel()
            self._timeoutCall = None
            self.start()

    def _ping(self) -> None:
        self._pingCall = None
        self._sendPing()
        self._timeoutCall = self.server.clock.callLater(self.server.pingTimeout, self._timedOut)

    def _timedOut(self) -> None:
        self._timeoutCall = None
        if self._held():
            self._timeoutCall = self.server.clock.callLater(self.server.pingTimeout, self._timedOut)
            return
        self._expired()


class EngineSocket:
    """
    One Engine.IO session, on HTTP long-polling or a WebSocket.

    Packets for a polling client wait in its L{Polling} until it polls; past
    C{server.settings.maxOutgoing} bytes waiting, the client is too slow and
    the session is closed. A WebSocket client gets its packets at once.
    """

    _log = Logger()
    handler: EngineHandler | None = None

    def __init__(self, server: SessionHost, sid: str, transport: str, peer: str, host: str = "") -> None:
        self.server = server
        self.sid = sid
        self.transport = transport
        #: the client's address: as a peer ("tcp4:1.2.3.4:5678") and its host alone
        self.peer = peer
        self.host = host
        #: "open", "closing" (a server close waits for the client's next poll) or "closed"
        self.state = "open"
        self._polling = Polling(server.clock)
        self._ws: SessionWebSocket | None = None
        self._probe: SessionWebSocket | None = None
        self._heartbeat = Heartbeat(
            server, ping=lambda: self._sendPacket(PING, None), held=lambda: self.inputPaused, expired=self._pingTimedOut
        )
        self._upgradeCall: IDelayedCall | None = None
        self._closeCall: IDelayedCall | None = None
        #: the handler asked to read nothing more for now (pauseInput)
        self.inputPaused = False

    def __repr__(self) -> str:
        return "<EngineSocket %s %s %s>" % (self.sid, self.transport, self.state)

    @property
    def clock(self) -> IReactorTime:
        return self.server.clock

    # -- for the handler --

    def send(self, data: Data) -> None:
        """
        Send one message packet (text, or binary data).
        """
        self._sendPacket(MESSAGE, data)

    def pauseInput(self) -> None:
        """
        Read nothing more from the client for now (flood control): on a
        WebSocket its transport stops reading (the frames wait in the
        kernel); on polling, the POST being read is answered only once
        input resumes (the client sends no other meanwhile). Pings and
        pongs of the packets already read still count.
        """
        if self.inputPaused or self.state == "closed":
            return
        self.inputPaused = True
        if self._ws is not None:
            self._ws.pauseReading()

    def resumeInput(self) -> None:
        """
        Read from the client again (see L{pauseInput}).
        """
        if not self.inputPaused:
            return
        self.inputPaused = False
        if self._ws is not None:
            self._ws.resumeReading()
        self._polling.answerPost()

    def close(self, reason: str = "server close") -> None:
        """
        End the session from the server's side, after what was sent so far.
        A polling client gets the close packet with its next poll (or at
        once, when a poll is waiting).
        """
        if self.state != "open":
            return
        if self._ws is not None:
            self._finish(reason)
            return
        polling = self._polling
        polling.addClose()
        if polling.poll is not None and not polling.upgrading:
            polling.flush()
            self._finish(reason)
            return
        # Wait for the client's next poll, but not for ever.
        self.state = "closing"
        self._heartbeat.stop()
        self._closeCall = self.clock.callLater(self.server.pingTimeout, self._finish, reason)

    # -- life cycle --

    def start(self, ws: SessionWebSocket | None = None) -> bytes:
        """
        Begin the session: returns the open packet's text (UTF-8) for the
        handshake response (or sends it on C{ws}), then starts pinging.
        """
        server = self.server
        handshake = {
            "sid": self.sid,
            "upgrades": [WEBSOCKET] if ws is None else [],
            "pingInterval": int(round(server.pingInterval * 1000)),
            "pingTimeout": int(round(server.pingTimeout * 1000)),
            "maxPayload": server.maxPayload,
        }
        packet = encodePacket(OPEN, json.dumps(handshake, separators=(",", ":")))
        if ws is not None:
            self._ws = ws
            ws.sendPacketText(packet)
        self._heartbeat.start()
        self.handler = server.handlerFactory(self)
        return packet.encode("utf-8")

    def _finish(self, reason: str) -> None:
        """
        The session is over: forget it, stop its timers and transports, and
        tell the handler (once).
        """
        if self.state == "closed":
            return
        self.state = "closed"
        self.server.forget(self)
        self._heartbeat.stop()
        for call in (self._upgradeCall, self._closeCall):
            if call is not None and call.active():
                call.cancel()
        self._upgradeCall = self._closeCall = None
        polling = self._polling
        polling.cancelFlush()
        polling.release([(CLOSE, None)] if reason != "client close" else [(NOOP, None)])
        # (its transport reads again, so that a WebSocket's close finishes)
        self.resumeInput()
        for ws in (self._ws, self._probe):
            if ws is not None:
                ws.closeTransport(reason)
        self._ws = self._probe = None
        polling.take()
        self._log.debug("engine.io session {sid} closed: {reason}", sid=self.sid, reason=reason)
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.onClose(reason)

    def fail(self, reason: str) -> None:
        """
        Close at once: a protocol error, a timeout, a transport gone.
        """
        self._finish(reason)

    def _pingTimedOut(self) -> None:
        self._log.info("engine.io session {sid} from {peer}: ping timeout", sid=self.sid, peer=self.peer)
        self.fail("ping timeout")

    # -- incoming packets (from the session's transport) --

    def onPacket(self, packet: Packet) -> None:
        """
        Act on one packet from the client on the session's current transport.
        """
        if self.state != "open":
            return
        ptype, data = packet
        if ptype == MESSAGE:
            handler = self.handler
            if handler is not None:
                handler.onMessage(data if data is not None else "")
        elif ptype == PONG:
            self._heartbeat.pong()
        elif ptype == PING:
            self._sendPacket(PONG, data)
        elif ptype == CLOSE:
            self._finish("client close")
        elif ptype == NOOP:
            pass
        else:
            self._log.info(
                "engine.io session {sid} from {peer}: unexpected packet type {ptype}",
                sid=self.sid,
                peer=self.peer,
                ptype=ptype,
            )
            self.fail("parse error")

    # -- outgoing packets --

    def _sendPacket(self, ptype: int, data: Data | None) -> None:
        if self.state != "open":
            return
        ws = self._ws
        if ws is not None:
            ws.sendPacket(ptype, data)
            return
        polling = self._polling
        waiting = polling.add(ptype, data)
        limit = self.server.settings.maxOutgoing
        if waiting > limit:
            self._log.warn(
                "dropping slow engine.io client {peer} (session {sid}): over {limit} bytes waiting for a poll",
                peer=self.peer,
                sid=self.sid,
                limit=limit,
            )
            self.fail("too slow")
            return
        polling.flushSoon()

    # -- HTTP long-polling --

    def onPoll(self, request: Request) -> object:
        """
        A GET from the client: answer now if something is waiting, else
        hold the request until something is.
        """
        polling = self._polling
        if polling.poll is not None:
            self._log.info("engine.io session {sid} from {peer}: overlapping polls", sid=self.sid, peer=self.peer)
            self.fail("overlapping polls")
            raise EngineError(BAD_REQUEST)
        if polling.upgrading:
            return encodePayload([(NOOP, None)])
        if polling.waiting:
            packets = polling.take()
            if self.state == "closing":
                self._finish("server close")
            return encodePayload(packets)
        polling.hold(request)
        return NOT_DONE_YET

    def onData(self, body: bytes) -> None:
        """
        A POST from the client: its packets, in order. A malformed payload
        closes the session (L{ProtocolError} is raised for the 400).
        """
        try:
            packets = decodePayload(body)
        except ProtocolError as e:
            self._log.info(
                "engine.io session {sid} from {peer}: bad payload ({why})", sid=self.sid, peer=self.peer, why=str(e)
            )
            self.fail("parse error")
            raise
        for packet in packets:
            if self.state != "open":
                break
            self.onPacket(packet)

    def holdPost(self, request: Request) -> bool:
        """
        A POST was read while input is paused: keep it unanswered until
        input resumes. C{False} if input is not paused (answer it now).
        """
        if not self.inputPaused or self.state == "closed":
            return False
        self._polling.holdPost(request)
        return True

    @property
    def postHeld(self) -> bool:
        return self._polling.postHeld

    # -- upgrade to WebSocket --

    def canUpgrade(self) -> bool:
        return self.state == "open" and self.transport == POLLING and self._probe is None

    def attachProbe(self, ws: SessionWebSocket) -> bool:
        """
        A WebSocket opened with this session's sid, to take over from polling.
        """
        if not self.canUpgrade():
            return False
        self._probe = ws
        self._upgradeCall = self.clock.callLater(self.server.upgradeTimeout, self._upgradeTimedOut)
        return True

    def _upgradeTimedOut(self) -> None:
        self._upgradeCall = None
        probe = self._probe
        if probe is not None:
            self._dropProbe()
            probe.closeTransport("upgrade timeout")

    def _cancelUpgradeTimeout(self) -> None:
        call, self._upgradeCall = self._upgradeCall, None
        if call is not None and call.active():
            call.cancel()

    def _dropProbe(self) -> None:
        self._probe = None
        self._polling.upgrading = False
        self._cancelUpgradeTimeout()
        # What waited for the upgrade goes out by polling after all.
        if self.state == "open":
            self._polling.flushSoon()

    def onProbePacket(self, ws: SessionWebSocket, packet: Packet) -> None:
        if ws is not self._probe or self.state == "closed":
            ws.closeTransport("not the probe")
            return
        ptype, data = packet
        if ptype == PING and data == "probe":
            ws.sendPacket(PONG, "probe")
            self._polling.upgrading = True
            self._polling.release([(NOOP, None)])
        elif ptype == UPGRADE:
            self._upgrade(ws)
        else:
            self._dropProbe()
            ws.closeTransport("unexpected packet during upgrade")

    def _upgrade(self, ws: SessionWebSocket) -> None:
        self._cancelUpgradeTimeout()
        self._probe = None
        polling = self._polling
        polling.upgrading = False
        polling.release([(NOOP, None)])
        polling.cancelFlush()
        self.transport = WEBSOCKET
        self._ws = ws
        ws.isProbe = False
        if self.inputPaused:
            ws.pauseReading()
        packets = polling.take()
        closing = self.state == "closing"
        for ptype, data in packets:
            ws.sendPacket(ptype, data)
        self._log.debug("engine.io session {sid} upgraded to websocket", sid=self.sid)
        if closing:
            self._finish("server close")

    def transportClosed(self, ws: SessionWebSocket) -> None:
        """
        A WebSocket of this session is gone.
        """
        if ws is self._probe:
            self._dropProbe()
        elif ws is self._ws:
            self._ws = None
            self._finish("transport close")
