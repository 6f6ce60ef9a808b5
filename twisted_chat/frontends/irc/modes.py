# -*- test-case-name: tests.frontends.irc.test_irc -*-
"""
C{MODE}: what a room's modes are in the chat.

A room is always C{+nt} (only members speak in it; only operators set its
topic); C{b} is its ban list (the chat bans nicks and addresses:
C{+b nick}, C{+b nick!*@*}, C{+b *!*@ADDRESS}; a nick ban also bans that
user's address, as the line chat's C{/ban}); C{+o nick} makes an operator
(the chat has no C{-o}: an operator stays one until it leaves). Users have
no modes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterator

from twisted_chat.core.errors import ChatError
from twisted_chat.core.names import nickKey, normalizeRoom
from twisted_chat.frontends.irc import numerics as N
from twisted_chat.frontends.irc.protocol import formatMessage, mask

if TYPE_CHECKING:
    from twisted_chat.core.service import Member
    from twisted_chat.frontends.irc.peer import Peer
    from twisted_chat.frontends.irc.protocol import IRCMessage

#: the most mode changes of one C{MODE} (ISUPPORT C{MODES})
MODES = 4

#: a ban mask the chat can keep: a nick (C{nick}, C{nick!*@*}) or an
#: address (C{*!*@ADDRESS})
_NICK_MASK = re.compile(r"([A-Za-z0-9_-]+)(?:!\*@\*)?\Z")
_HOST_MASK = re.compile(r"\*!\*@([^*?!@\s]+)\Z")


def banTarget(banMask: str) -> str | None:
    """
    What the chat bans for the IRC ban mask C{banMask}: a nick or an
    address; None for a mask it cannot keep (other wildcards).
    """
    m = _NICK_MASK.match(banMask) or _HOST_MASK.match(banMask)
    return m.group(1) if m is not None else None


def modeChanges(modes: str, args: list[str]) -> Iterator[tuple[str, str, str | None]]:
    """
    C{(sign, mode, argument)} of each change in C{modes} (C{+b-o…}), with
    its argument from C{args} for the modes that take one (C{b} when
    there is one left: without, it asks for the list).
    """
    sign = "+"
    rest = list(args)
    for c in modes:
        if c in "+-":
            sign = c
            continue
        arg = rest.pop(0) if c in "bo" and rest else None
        yield sign, c, arg


def banMask(key: str) -> str:
    """
    How a ban of the chat (a nick key or an address) looks as an IRC mask.
    """
    if _NICK_MASK.match(key):
        return key + "!*@*"
    return "*!*@" + key


def mode(conn: Peer, member: Member, msg: IRCMessage) -> None:
    """
    C{MODE TARGET [CHANGES [ARGUMENTS…]]}.
    """
    target = msg.params[0]
    if not target.startswith("#"):
        if nickKey(target) != nickKey(conn.nick):
            conn.numeric(N.ERR_USERSDONTMATCH, "Can't change mode for other users")
        elif len(msg.params) == 1:
            conn.numeric(N.RPL_UMODEIS, "+")
        else:
            conn.numeric(N.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag (users have no modes here)")
        return
    name = normalizeRoom(target)
    if len(msg.params) == 1:
        conn.numeric(N.RPL_CHANNELMODEIS, name, "+nt")
        return
    for sign, c, arg in list(modeChanges(msg.params[1], msg.params[2:]))[:MODES]:
        try:
            _change(conn, member, name, sign, c, arg)
        except ChatError as e:
            if e.code == "no-such-nick" and arg is not None:
                conn.numeric(N.ERR_USERNOTINCHANNEL, arg, name, "They aren't on that channel")
            else:
                conn.refuse("MODE", e, name)


def _change(conn: Peer, member: Member, name: str, sign: str, c: str, arg: str | None) -> None:
    if c == "b":
        if arg is None:
            for key in member.roomBans(name):
                conn.numeric(N.RPL_BANLIST, name, banMask(key))
            conn.numeric(N.RPL_ENDOFBANLIST, name, "End of channel ban list")
            return
        what = banTarget(arg)
        if what is None:
            conn.numeric(
                N.ERR_INVALIDMODEPARAM, name, "b", arg, "bans are of a nick (nick!*@*) or an address (*!*@ADDRESS)"
            )
            return
        if sign == "+":
            member.ban(what, "", name)
        else:
            member.unban(what, name)
        conn.sendLine(formatMessage("MODE", [name, sign + "b", arg], mask(conn.nick)))
    elif c == "o":
        if arg is None:
            conn.numeric(N.ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters")
        elif sign == "-":
            conn.numeric(N.ERR_UNKNOWNMODE, "o", "is unknown mode char to me: operators stay operators until they leave")
        else:
            nick = member.giveOp(arg, name)
            conn.sendLine(formatMessage("MODE", [name, "+o", nick], mask(conn.nick)))
    elif c in "nt":
        if sign == "-":
            conn.numeric(N.ERR_UNKNOWNMODE, c, "is always set here")
    else:
        conn.numeric(N.ERR_UNKNOWNMODE, c, "is unknown mode char to me")

