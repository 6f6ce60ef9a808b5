# -*- test-case-name: tests.frontends.irc.test_irc -*-
"""
What a client asks about the chat: C{NAMES}, C{LIST}, C{WHO}, C{WHOIS},
C{WHOWAS}, C{USERHOST}, C{ISON}, C{MOTD}, C{LUSERS}, C{VERSION}.

Everyone's mask is C{nick!nick@twisted-chat} (the chat does not show where
people connect from); C{WHO} and C{WHOIS} give as real name the front-end a
member uses (C{line}, C{ws-json}, C{irc}…), and say what the chat knows: the
rooms, whether away, the account a member logged in as, whether it is a
server admin. Of a member on another node of a cluster only the nick is
known.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import Event, Presence, RoomList
from twisted_chat.core.member import MemberInfo
from twisted_chat.core.names import normalizeRoom
from twisted_chat.frontends.irc import numerics as N
from twisted_chat.frontends.irc.protocol import SERVER_NAME, USER_HOST
from twisted_chat.frontends.irc.registration import VERSION, lusers, motd

if TYPE_CHECKING:
    from twisted_chat.core.service import Member
    from twisted_chat.frontends.irc.peer import Peer
    from twisted_chat.frontends.irc.protocol import IRCMessage


def ask(conn: Peer, kind: str, call: Callable[[], None]) -> Event | None:
    """
    The event of C{kind} that C{call} (a request of the member, answered
    at once) is answered with, taken from the client's events.
    """
    got: list[Event] = []
    conn.render.captures[kind] = got.append
    try:
        call()
    finally:
        del conn.render.captures[kind]
    return got[0] if got else None


def realname(info: MemberInfo) -> str:
    return info.frontend or "on another node"


class QueryCommands:
    """
    The commands that ask.
    """

    def req_NAMES(self, conn: Peer, msg: IRCMessage) -> None:
        member = _member(conn)
        if not msg.params or not msg.params[0]:
            conn.numeric(N.RPL_ENDOFNAMES, "*", "End of /NAMES list")
            return
        for target in msg.params[0].split(",")[:1]:
            try:
                name = normalizeRoom(target)
                presence = ask(conn, "presence", lambda: member.who(name))
            except ChatError:
                conn.numeric(N.RPL_ENDOFNAMES, target, "End of /NAMES list")
                continue
            if isinstance(presence, Presence):
                for line in conn.render.namesLines(presence):
                    conn.sendLine(line)

    def req_LIST(self, conn: Peer, msg: IRCMessage) -> None:
        member = _member(conn)
        wanted = None
        if msg.params and msg.params[0]:
            wanted = set()
            for target in msg.params[0].split(","):
                try:
                    wanted.add(normalizeRoom(target))
                except ChatError:
                    pass
        rooms = ask(conn, "rooms", member.listRooms)
        conn.numeric(N.RPL_LISTSTART, "Channel", "Users  Name")
        if isinstance(rooms, RoomList):
            for name, count in rooms.rooms:
                if wanted is None or name in wanted:
                    conn.numeric(N.RPL_LIST, name, str(count), member.roomTopic(name)[1])
        conn.numeric(N.RPL_LISTEND, "End of /LIST")

    def req_WHO(self, conn: Peer, msg: IRCMessage) -> None:
        member = _member(conn)
        target = msg.params[0] if msg.params else "*"
        try:
            if target.startswith("#"):
                self._whoRoom(conn, member, normalizeRoom(target))
            elif "*" not in target and "?" not in target:
                info = member.whois(target)
                self._whoLine(conn, "*", info, set())
        except ChatError:
            pass
        conn.numeric(N.RPL_ENDOFWHO, target, "End of /WHO list")

    def _whoRoom(self, conn: Peer, member: Member, name: str) -> None:
        presence = ask(conn, "presence", lambda: member.who(name))
        if not isinstance(presence, Presence):
            return
        ops = {nick.lower() for nick in member.roomOperators(name)}
        for nick in presence.members:
            info = conn.service.memberInfo(nick) or MemberInfo(nick, None, "", (), False, "", False)
            self._whoLine(conn, name, info, ops)

    def _whoLine(self, conn: Peer, room: str, info: MemberInfo, ops: set[str]) -> None:
        flags = ("G" if info.away else "H") + ("*" if info.admin else "") + ("@" if info.nick.lower() in ops else "")
        conn.numeric(N.RPL_WHOREPLY, room, info.nick, USER_HOST, SERVER_NAME, info.nick, flags, "0 " + realname(info))

    def req_WHOIS(self, conn: Peer, msg: IRCMessage) -> None:
        member = _member(conn)
        if not msg.params or not msg.params[-1]:
            conn.numeric(N.ERR_NONICKNAMEGIVEN, "No nickname given")
            return
        nick = msg.params[-1].split(",")[0]
        try:
            info = member.whois(nick)
        except ChatError as e:
            conn.numeric(N.ERR_NOSUCHNICK, nick, e.message)
            conn.numeric(N.RPL_ENDOFWHOIS, nick, "End of /WHOIS list")
            return
        conn.numeric(N.RPL_WHOISUSER, info.nick, info.nick, USER_HOST, "*", realname(info))
        if info.rooms:
            shown = []
            for room in info.rooms:
                ops = {n.lower() for n in member.roomOperators(room)}
                shown.append(("@" if info.nick.lower() in ops else "") + room)
            conn.numeric(N.RPL_WHOISCHANNELS, info.nick, " ".join(shown))
        where = "via " + info.frontend if info.local else "on another node of the cluster"
        conn.numeric(N.RPL_WHOISSERVER, info.nick, SERVER_NAME, "twisted-chat (%s)" % (where,))
        if info.away:
            conn.numeric(N.RPL_AWAY, info.nick, info.away)
        if info.admin:
            conn.numeric(N.RPL_WHOISOPERATOR, info.nick, "is a server admin")
        if info.account:
            conn.numeric(N.RPL_WHOISACCOUNT, info.nick, info.account, "is logged in as")
        conn.numeric(N.RPL_ENDOFWHOIS, info.nick, "End of /WHOIS list")

    def req_WHOWAS(self, conn: Peer, msg: IRCMessage) -> None:
        nick = msg.params[0] if msg.params else "*"
        conn.numeric(N.ERR_WASNOSUCHNICK, nick, "There was no such nickname (the chat keeps no record)")
        conn.numeric(N.RPL_ENDOFWHOWAS, nick, "End of WHOWAS")

    def req_USERHOST(self, conn: Peer, msg: IRCMessage) -> None:
        if not msg.params:
            conn.numeric(N.ERR_NEEDMOREPARAMS, "USERHOST", "Not enough parameters")
            return
        found = []
        for nick in msg.params[:5]:
            info = conn.service.memberInfo(nick)
            if info is not None:
                found.append("%s%s=%s%s@%s" % (info.nick, "*" if info.admin else "", "-" if info.away else "+", info.nick, USER_HOST))
        conn.numeric(N.RPL_USERHOST, " ".join(found))

    def req_ISON(self, conn: Peer, msg: IRCMessage) -> None:
        nicks = " ".join(msg.params).split()
        online = [info.nick for info in map(conn.service.memberInfo, nicks[:50]) if info is not None]
        conn.numeric(N.RPL_ISON, " ".join(online))

    def req_MOTD(self, conn: Peer, msg: IRCMessage) -> None:
        motd(conn)

    def req_LUSERS(self, conn: Peer, msg: IRCMessage) -> None:
        lusers(conn)

    def req_VERSION(self, conn: Peer, msg: IRCMessage) -> None:
        conn.numeric(N.RPL_VERSION, VERSION, SERVER_NAME, "a chat with line, WebSocket, Socket.IO and IRC front-ends")


def _member(conn: Peer) -> Member:
    member = conn.member
    assert member is not None
    return member
