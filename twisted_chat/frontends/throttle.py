# -*- test-case-name: tests.core.test_limits -*-
"""
Flood control, the front-ends' half: a connection whose member has to wait
(see L{twisted_chat.core.limits.FloodGuard}) stops being read, and what it
had read already waits here in order; nothing is refused or dropped.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger


if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

    from twisted_chat.core.service import Member


class _Inbox:
    """
    What a throttled connection has read and not handled yet, in order,
    and the timer that lets the next of it through.
    """

    __slots__ = ("items", "wake")

    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        self.wake: IDelayedCall | None = None


class ThrottledInput:
    """
    Flood control, the front-end's half: requests wait, they are not refused.

    A front-end hands everything it reads (a line, a frame, an event), in
    order, to L{takeInput}. While its member may make a request now
    (C{member.floodWait()} is 0) that is handled at once (L{handleInput}).
    Once it may not, the front-end stops reading (L{pauseInput}: the bytes
    wait in the kernel, or the HTTP POST for its answer), what it had read
    already waits here in order, and a timer on the service's clock lets it
    through as the member's bucket refills; when all of it went through,
    reading resumes (L{resumeInput}). More than C{settings.floodKick}
    requests waiting disconnect the connection for flooding.

    Only a connection that waits has an inbox: the others store nothing.
    """

    member: Member | None = None
    _inbox: _Inbox | None = None
    _log = Logger()

    # -- to be supplied by the front-end --

    def handleInput(self, item: Any) -> None:
        """
        Act on one thing read, in order.
        """
        raise NotImplementedError

    def pauseInput(self) -> None:
        """
        Stop reading from the peer.
        """
        raise NotImplementedError

    def resumeInput(self) -> None:
        """
        Read from the peer again.
        """
        raise NotImplementedError

    def inputOpen(self) -> bool:
        """
        Whether what waits can still be handled (the connection is not
        closing).
        """
        return True

    def inputIsFree(self, item: Any) -> bool:
        """
        Whether C{item} is no request (the end of the input, say): it is
        handled as soon as what came before it was, without a wait of its own.
        """
        return False

    def inputFlooded(self, waiting: int) -> None:
        """
        Told just before the service disconnects this connection for
        having C{waiting} requests waiting (json mode says so with an error
        code).
        """

    # -- the throttle --

    def takeInput(self, item: Any) -> None:
        """
        Handle C{item} now, or keep it until the member may make a request.
        What arrives once the connection is closing is ignored.
        """
        if not self.inputOpen():
            return
        inbox = self._inbox
        member = self.member
        if inbox is None:
            if member is None or member.gone:
                self.handleInput(item)
                return
            wait = member.floodWait()
            if wait <= 0:
                self.handleInput(item)
                return
            service = member.service
            service.stats.throttled()
            inbox = self._inbox = _Inbox()
            self.pauseInput()
            inbox.wake = service.clock.callLater(wait, self._wakeInput)
        inbox.items.append(item)
        if member is not None and not member.gone and len(inbox.items) > member.service.settings.floodKick:
            waiting = len(inbox.items)
            self.inputFlooded(waiting)
            # (the front-end's close() forgets what waits, as on any close)
            member.service.disconnectFlooder(member, waiting)
            self.dropInput()

    @property
    def inputWaiting(self) -> bool:
        """
        Whether input waits for flood control (reading is paused).
        """
        return self._inbox is not None

    def _wakeInput(self) -> None:
        inbox = self._inbox
        if inbox is None:
            return
        inbox.wake = None
        items = inbox.items
        while items:
            if not self.inputOpen():
                self.dropInput()
                return
            member = self.member
            if member is not None and not member.gone and not self.inputIsFree(items[0]):
                wait = member.floodWait()
                if wait > 0:
                    inbox.wake = member.service.clock.callLater(wait, self._wakeInput)
                    return
            try:
                self.handleInput(items.popleft())
            except Exception:
                # (as a failure while reading would be: logged; the next
                # request still gets its turn)
                self._log.failure("handling a request of {member!r} failed", member=self.member)
            if self._inbox is not inbox:
                return
        self._inbox = None
        self.resumeInput()

    def dropInput(self) -> None:
        """
        Forget what waits, and its timer: the connection is closing. (It
        does not resume reading.)
        """
        inbox, self._inbox = self._inbox, None
        if inbox is not None and inbox.wake is not None and inbox.wake.active():
            inbox.wake.cancel()
