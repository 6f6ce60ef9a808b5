"""
The IRC front-end: IRC clients (irssi, WeeChat, HexChat, bots) in the
chat's rooms, as channels. It only translates (see docs/protocol.md, "IRC"):

 - L{protocol}: IRC messages (tags, source, command, parameters), parsed
   and serialised, and a line's limits;
 - L{connection}: one client (L{IRCConnection}, an C{IChatClient}) and its
   factory (L{IRCFactory});
 - L{registration}, L{chat}, L{modes}, L{queries}, L{history}: the
   commands (C{req_<COMMAND>}), gathered in L{commands};
 - L{render}: the service's events as IRC lines;
 - L{peer}: a connection as the commands and the renderer see it (the
   typing Protocol L{peer.Peer}), below them and below L{connection};
 - L{caps}: IRCv3 capabilities; L{replies}: labeled responses;
   L{numerics}: the numerics.
"""

from twisted_chat.frontends.irc.connection import IRCConnection, IRCFactory

__all__ = ["IRCConnection", "IRCFactory"]
