# -*- test-case-name: tests.frontends.socketio.test_engineio -*-
"""
The HTTP long-polling transport of one Engine.IO session: the packets that
wait for the client's next GET, the GET held open until there is something
to answer, and the POST whose answer waits while the session reads nothing.

The session (L{twisted_chat.frontends.socketio.engineio.session}) decides
what goes out and when the session ends; this only holds requests and
packets, and answers requests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.web.server import Request

from twisted_chat.frontends.socketio.engineio.packets import CLOSE, Data, Packet, encodePayload, packetSize

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime


def answerable(request: Request) -> bool:
    """
    Whether C{request} can still be answered: not finished, and its client
    not gone (which Twisted may tell late: see C{Request.notifyFinish}).
    """
    return not request.finished and not request._disconnected


def respond(request: Request, packets: list[Packet]) -> None:
    """
    Answer a GET with C{packets}, unless it can no longer be answered.
    """
    if answerable(request):
        request.write(encodePayload(packets))
        request.finish()


class Polling:
    """
    The long-polling side of one session.

    Packets wait in L{waiting} until the client polls; a GET that finds
    nothing is held (L{poll}) and answered with everything sent in the same
    turn of the reactor (L{flushSoon}). While the session moves to a
    WebSocket (L{upgrading}), GETs are answered with a noop and the packets
    wait for the WebSocket.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        #: the packets for the client's next GET, and their size
        self.waiting: list[Packet] = []
        self.size = 0
        #: the GET held until there is something to answer
        self.poll: Request | None = None
        #: the WebSocket probe was answered: GETs get a noop, packets wait for the WebSocket
        self.upgrading = False
        self._flushCall: IDelayedCall | None = None
        #: a POST whose answer waits until the session reads again
        self._heldPost: Request | None = None

    # -- packets --

    def add(self, ptype: int, data: Data | None) -> int:
        """
        Keep a packet for the client's next GET; returns the size of what
        waits now.
        """
        self.waiting.append((ptype, data))
        self.size += packetSize(data)
        return self.size

    def addClose(self) -> None:
        """
        Put the close packet last in what waits (it is not counted).
        """
        self.waiting.append((CLOSE, None))

    def take(self) -> list[Packet]:
        """
        Everything that waits, which no longer does.
        """
        packets, self.waiting, self.size = self.waiting, [], 0
        return packets

    def flushSoon(self) -> None:
        """
        Answer the held GET with what waits at the end of this turn of the
        reactor: everything sent meanwhile goes in one response.
        """
        if self.poll is not None and self.waiting and not self.upgrading and self._flushCall is None:
            self._flushCall = self.clock.callLater(0, self.flush)

    def flush(self) -> None:
        """
        Answer the held GET with what waits, now.
        """
        self.cancelFlush()
        poll = self.poll
        if poll is None or not self.waiting or self.upgrading:
            return
        self.poll = None
        respond(poll, self.take())

    def cancelFlush(self) -> None:
        call, self._flushCall = self._flushCall, None
        if call is not None and call.active():
            call.cancel()

    # -- GET --

    def hold(self, request: Request) -> None:
        """
        Keep C{request} (a GET that found nothing) until there is something
        to answer, or until its client goes.
        """
        self.poll = request

        def gone(_: object) -> None:
            if self.poll is request:
                self.poll = None

        request.notifyFinish().addBoth(gone)

    def release(self, packets: list[Packet]) -> None:
        """
        Answer the held GET, if there is one, with C{packets} (a noop, or
        the close packet).
        """
        poll, self.poll = self.poll, None
        if poll is not None:
            respond(poll, packets)

    # -- POST --

    def holdPost(self, request: Request) -> None:
        """
        Keep C{request} (a POST that was read) unanswered until
        L{answerPost}.
        """
        self._heldPost = request

        def gone(_: object) -> None:
            if self._heldPost is request:
                self._heldPost = None

        request.notifyFinish().addBoth(gone)

    @property
    def postHeld(self) -> bool:
        return self._heldPost is not None

    def answerPost(self) -> None:
        """
        Answer the held POST, if there is one.
        """
        request, self._heldPost = self._heldPost, None
        if request is not None and answerable(request):
            request.write(b"ok")
            request.finish()
