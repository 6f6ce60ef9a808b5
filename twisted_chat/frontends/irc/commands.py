# -*- test-case-name: tests.frontends.irc.test_irc -*-
"""
Every command an IRC client may send, and its handler: C{req_<COMMAND>}
of L{RegistrationCommands}, L{ChatCommands}, L{QueryCommands},
L{HistoryCommands} and L{DraftCommands}, each called with the connection (as a
L{twisted_chat.frontends.irc.peer.Peer}) and the message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from twisted_chat.frontends.irc.chat import ChatCommands
from twisted_chat.frontends.irc.drafts import DraftCommands
from twisted_chat.frontends.irc.history import HistoryCommands
from twisted_chat.frontends.irc.queries import QueryCommands
from twisted_chat.frontends.irc.registration import RegistrationCommands

if TYPE_CHECKING:
    from twisted_chat.frontends.irc.peer import Peer
    from twisted_chat.frontends.irc.protocol import IRCMessage

Handler = Callable[["Peer", "IRCMessage"], None]


def _table(*handlers: object) -> dict[str, Handler]:
    table: dict[str, Handler] = {}
    for handler in handlers:
        for name in dir(handler):
            if name.startswith("req_"):
                table[name[4:]] = getattr(handler, name)
    return table


#: command -> its handler
COMMANDS = _table(RegistrationCommands(), ChatCommands(), QueryCommands(), HistoryCommands(), DraftCommands())

#: the commands a client may send before it is registered
UNREGISTERED = frozenset({"CAP", "PASS", "NICK", "USER", "AUTHENTICATE", "PING", "PONG", "QUIT"})
