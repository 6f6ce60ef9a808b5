# -*- test-case-name: tests.frontends.irc.test_irc -*-
"""
An IRC connection against the service's admission limits (L{admit}): let
in at once, refused, or let in once the machine's count allows, nothing
being read meanwhile.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.python.failure import Failure

from twisted_chat.core.errors import ChatError
from twisted_chat.core.service import ChatService


def admit(
    service: ChatService,
    host: str,
    transport: Any,
    lost: Callable[[], bool],
    admitted: Callable[[str], None],
    refused: Callable[[ChatError], None],
) -> None:
    """
    Ask the service's admission for a connection from C{host} on
    C{transport}: C{admitted(host)} once it is let in, C{refused(error)}
    when it is not. When the machine's count decides later, C{transport}
    is paused until then; a connection C{lost} by then gives its place
    back.
    """
    try:
        waiting = service.admission.admitLater(host)
    except ChatError as e:
        refused(e)
        return
    if waiting is None:
        admitted(host)
        return
    # (the machine's count decides: nothing is read meanwhile)
    transport.pauseProducing()

    def let(_: None) -> None:
        if lost():
            service.admission.release(host)
            return
        transport.resumeProducing()
        admitted(host)

    def notLet(f: Failure) -> None:
        error = f.trap(ChatError) and f.value
        if not lost() and isinstance(error, ChatError):
            refused(error)

    waiting.addCallbacks(let, notLet)
