# -*- test-case-name: tests.frontends.irc.test_irc -*-
"""
What an IRC connection's nick does from its other connections (another
device), and what it is given back of its own requests (L{OwnHolding}):
while the connection has requests of its own in flight, the events of its
nick are held, and when the last is answered the ones it was given back
(its echo covers them) are dropped and the others shown.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, TypeVar

from twisted.internet.defer import Deferred

from twisted_chat.core.events import Event, Message, Private

_T = TypeVar("_T")

#: how many stored ids a connection remembers it was given back, for the
#: events of them that come after the answer
GIVEN_KEPT = 256


def storedAs(event: object) -> tuple[object, ...] | None:
    """
    What names the stored message or update C{event} (its room's sequence
    or the private one), None for anything else.
    """
    if isinstance(event, Message):
        return ("room", event.room, event.epoch, event.id)
    if isinstance(event, Private):
        return ("private", event.id)
    return None


class OwnHolding:
    """
    The events of one connection's nick, held while its own requests are
    in flight (a part of L{Renderer
    <twisted_chat.frontends.irc.render.Renderer>}).
    """

    def __init__(self) -> None:
        #: this connection's requests (messages, edits, deletions,
        #: reactions) not answered yet
        self.ownInFlight = 0
        #: events of this nick (from its other connections, or this one's
        #: own) held while requests are in flight, with how to show each
        self.ownHeld: list[tuple[Event, Callable[[Event], None]]] = []
        #: what this connection was given back of its requests (storedAs),
        #: the last GIVEN_KEPT
        self.ownGiven: OrderedDict[tuple[object, ...], None] = OrderedDict()

    def ownRequest(self, request: Callable[[], Deferred[_T]]) -> Deferred[_T]:
        """
        Make C{request}, a request of this connection that stores a message
        or an update: the events of its nick are held until it (and any
        other in flight) is answered (L{ownAnswered}, which the caller
        calls once it showed the answer); what it was given back is
        remembered, its event not shown.
        """
        self.ownInFlight += 1
        try:
            d = request()
        except BaseException:
            self.ownAnswered()
            raise

        def given(result: _T) -> _T:
            key = storedAs(result)
            if key is not None:
                self.ownGiven[key] = None
                while len(self.ownGiven) > GIVEN_KEPT:
                    self.ownGiven.popitem(last=False)
            return result

        return d.addCallback(given)

    def ownAnswered(self) -> None:
        """
        One of this connection's requests was answered: with none left in
        flight, the held events of its nick that it was not given back are
        shown, in their order.
        """
        self.ownInFlight -= 1
        if self.ownInFlight:
            return
        held, self.ownHeld = self.ownHeld, []
        for event, show in held:
            self._fromOwnNick(event, show)

    def _fromOwnNick(self, event: Event, show: Callable[[Event], None]) -> None:
        """
        C{event} was done by this connection's nick: dropped if this
        connection was given it back, held while requests are in flight,
        else shown.
        """
        key = storedAs(event)
        if key is not None and key in self.ownGiven:
            del self.ownGiven[key]
            return
        if self.ownInFlight:
            self.ownHeld.append((event, show))
            return
        show(event)
