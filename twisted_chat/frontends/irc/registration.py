# -*- test-case-name: tests.frontends.irc.test_irc -*-
"""
Registration: C{CAP}, C{PASS}, C{NICK}, C{USER}, C{AUTHENTICATE} (SASL
C{PLAIN}), and the welcome (C{001}-C{005}, C{LUSERS}, the MOTD).

A client is registered once it gave C{NICK} and C{USER} and, if it started
a capability negotiation, ended it (C{CAP END}). It then becomes a member
of the chat under that nick: a guest that took it, as a line-chat user
does with C{/nick}; or, logged in (SASL C{PLAIN}, or C{PASS} with the
nick's password, on a server with C{--auth}), the registered nick itself.
A nick the chat refuses is answered C{432} (not letters, digits, C{_} or
C{-}, or too long) or C{433} (in use, or registered and not logged in),
and the client stays unregistered until it sends another.
"""

from __future__ import annotations

import base64
import binascii
import time as _time
from typing import TYPE_CHECKING

from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_chat import __version__
from twisted_chat.core.errors import ChatError
from twisted_chat.core.member import AWAY_MAX
from twisted_chat.core.names import NICK_MAX, ROOM_MAX, checkNick, nickKey
from twisted_chat.core.service import Member
from twisted_chat.frontends.irc import numerics as N
from twisted_chat.frontends.irc.protocol import SERVER_NAME, formatMessage, mask

if TYPE_CHECKING:
    from twisted_chat.frontends.irc.peer import Peer
    from twisted_chat.frontends.irc.protocol import IRCMessage

VERSION = "twisted-chat-" + __version__

_log = Logger()

#: SASL: the most bytes of a client's base64 response
SASL_MAX = 1200

#: the most targets of a command (ISUPPORT C{TARGMAX}; JOIN and PART: any)
TARGMAX = {"PRIVMSG": 4, "NOTICE": 4, "NAMES": 1, "WHOIS": 1, "KICK": 1}

MOTD = [
    "twisted-chat: one conversation, whatever people connect with.",
    "Channels are the chat's rooms: # and 1-%d letters, digits, _ or -," % (ROOM_MAX,),
    "case-insensitive. Try /join #lobby.",
    "The line chat, WebSocket, the browser page and Socket.IO are here too:",
    "everyone in #lobby sees everyone in #lobby.",
    "Nicks are 1-%d letters, digits, _ or -." % (NICK_MAX,),
]


def isupport(conn: Peer) -> list[str]:
    """
    The C{005} tokens: what this server is, truthfully.
    """
    settings = conn.service.settings
    targmax = ",".join("%s:%s" % item for item in sorted({**TARGMAX, "JOIN": "", "PART": ""}.items()))
    return [
        "AWAYLEN=%d" % (AWAY_MAX,),
        "CASEMAPPING=ascii",
        "CHANLIMIT=#:%d" % (settings.maxRoomsPerMember,),
        "CHANMODES=b,,,nt",
        "CHANNELLEN=%d" % (ROOM_MAX + 1,),
        "CHANTYPES=#",
        "CHATHISTORY=%d" % (max(settings.historySize, 200),),
        "MODES=4",
        "MSGREFTYPES=msgid",
        "NETWORK=twisted-chat",
        "NICKLEN=%d" % (NICK_MAX,),
        "PREFIX=(o)@",
        "TARGMAX=" + targmax,
        "TOPICLEN=300",
        "UTF8ONLY",
    ]


def welcome(conn: Peer) -> None:
    """
    C{001} to C{005}, the user counts and the MOTD.
    """
    nick = conn.nick
    conn.numeric(N.RPL_WELCOME, "Welcome to twisted-chat, %s" % (mask(nick),))
    conn.numeric(N.RPL_YOURHOST, "Your host is %s, running version %s" % (SERVER_NAME, VERSION))
    started = _time.strftime("%Y-%m-%d %H:%M:%S UTC", _time.gmtime(conn.service.startedAt))
    conn.numeric(N.RPL_CREATED, "This server was started %s" % (started,))
    conn.numeric(N.RPL_MYINFO, SERVER_NAME, VERSION, "-", "bnot", "bo")
    tokens = isupport(conn)
    for i in range(0, len(tokens), 12):
        conn.numeric(N.RPL_ISUPPORT, *tokens[i : i + 12], "are supported by this server")
    lusers(conn)
    motd(conn)


def lusers(conn: Peer) -> None:
    users = len(conn.service.members)
    conn.numeric(N.RPL_LUSERCLIENT, "There are %d users and 0 invisible on 1 servers" % (users,))
    conn.numeric(N.RPL_LUSERCHANNELS, str(len(conn.service.roomList())), "channels formed")
    conn.numeric(N.RPL_LUSERME, "I have %d clients and 0 servers" % (users,))


def motd(conn: Peer) -> None:
    conn.numeric(N.RPL_MOTDSTART, "- %s Message of the day -" % (SERVER_NAME,))
    for line in MOTD:
        conn.numeric(N.RPL_MOTD, "- " + line)
    conn.numeric(N.RPL_ENDOFMOTD, "End of /MOTD command")


class RegistrationCommands:
    """
    The commands of registration, and those a client may send before it.
    """

    def req_CAP(self, conn: Peer, msg: IRCMessage) -> None:
        if not msg.params:
            conn.numeric(N.ERR_NEEDMOREPARAMS, "CAP", "Not enough parameters")
            return
        sub = msg.params[0].upper()
        caps = conn.caps
        sasl = bool(conn.service.passwords)
        if sub == "LS":
            if len(msg.params) > 1 and msg.params[1].isdigit():
                caps.version = max(caps.version, int(msg.params[1]))
            if conn.member is None:
                caps.negotiating = True
            conn.sendLine(formatMessage("CAP", [conn.nick, "LS", caps.listed(sasl)], SERVER_NAME))
        elif sub == "LIST":
            conn.sendLine(formatMessage("CAP", [conn.nick, "LIST", " ".join(sorted(caps.enabled))], SERVER_NAME))
        elif sub == "REQ":
            asked = msg.params[1] if len(msg.params) > 1 else ""
            if conn.member is None:
                caps.negotiating = True
            answer = "ACK" if caps.request(asked, sasl) else "NAK"
            conn.sendLine(formatMessage("CAP", [conn.nick, answer, asked], SERVER_NAME))
        elif sub == "END":
            if conn.member is None:
                caps.negotiating = False
                self.complete(conn)
        else:
            conn.numeric("410", sub, "Invalid CAP command")

    def req_PASS(self, conn: Peer, msg: IRCMessage) -> None:
        if conn.member is not None:
            conn.numeric(N.ERR_ALREADYREGISTERED, "You may not reregister")
        elif not msg.params:
            conn.numeric(N.ERR_NEEDMOREPARAMS, "PASS", "Not enough parameters")
        else:
            conn.registration.password = msg.params[0]

    def req_USER(self, conn: Peer, msg: IRCMessage) -> None:
        if conn.member is not None:
            conn.numeric(N.ERR_ALREADYREGISTERED, "You may not reregister")
            return
        if len(msg.params) < 4 or not msg.params[0]:
            conn.numeric(N.ERR_NEEDMOREPARAMS, "USER", "Not enough parameters")
            return
        conn.registration.user = msg.params[0]
        conn.registration.realname = msg.params[3]
        self.complete(conn)

    def req_NICK(self, conn: Peer, msg: IRCMessage) -> None:
        if not msg.params or not msg.params[0]:
            conn.numeric(N.ERR_NONICKNAMEGIVEN, "No nickname given")
            return
        nick = msg.params[0]
        if conn.member is not None:
            try:
                conn.member.setNick(nick)
            except ChatError as e:
                conn.refuse("NICK", e, nick)
            return
        try:
            checkNick(nick)
        except ChatError as e:
            conn.refuse("NICK", e, nick)
            return
        if conn.service.memberInfo(nick) is not None and nickKey(nick) not in conn.service.passwords:
            # (a registered nick may be connected several times: logging
            # in decides, see complete)
            conn.numeric(N.ERR_NICKNAMEINUSE, nick, "Nickname is already in use")
            return
        conn.registration.nick = nick
        self.complete(conn)

    def req_PING(self, conn: Peer, msg: IRCMessage) -> None:
        if not msg.params:
            conn.numeric(N.ERR_NOORIGIN, "No origin specified")
            return
        conn.sendLine(formatMessage("PONG", [SERVER_NAME, msg.params[-1]], SERVER_NAME))

    def req_PONG(self, conn: Peer, msg: IRCMessage) -> None:
        # (any input answers a ping: see IRCConnection.dataReceived)
        pass

    def req_QUIT(self, conn: Peer, msg: IRCMessage) -> None:
        why = msg.params[0].strip()[:200] if msg.params and msg.params[0].strip() else ""
        conn.registration.quitReason = "quit: " + why if why else "quit"
        conn.closeLink(conn.registration.quitReason)

    def req_AUTHENTICATE(self, conn: Peer, msg: IRCMessage) -> None:
        reg = conn.registration
        if not msg.params:
            conn.numeric(N.ERR_NEEDMOREPARAMS, "AUTHENTICATE", "Not enough parameters")
            return
        word = msg.params[0]
        if not conn.caps.has("sasl") or not conn.service.passwords:
            conn.numeric(N.ERR_SASLFAIL, "SASL authentication failed: enable the sasl capability first")
            return
        if reg.account is not None or (conn.member is not None and conn.member.authenticated is not None):
            conn.numeric(N.ERR_SASLALREADY, "You have already authenticated using SASL")
            return
        if word == "*":
            reg.sasl = None
            conn.numeric(N.ERR_SASLABORTED, "SASL authentication aborted")
            return
        if reg.sasl is None:
            if word.upper() != "PLAIN":
                conn.numeric(N.RPL_SASLMECHS, "PLAIN", "are available SASL mechanisms")
                conn.numeric(N.ERR_SASLFAIL, "SASL authentication failed: only PLAIN")
                return
            reg.sasl = ""
            conn.sendLine(formatMessage("AUTHENTICATE", ["+"]))
            return
        if word != "+":
            reg.sasl += word
        if len(reg.sasl) > SASL_MAX:
            reg.sasl = None
            conn.numeric(N.ERR_SASLTOOLONG, "SASL message too long")
            return
        if len(word) == 400:
            return  # (more follows)
        response, reg.sasl = reg.sasl, None
        self._checkPlain(conn, response)

    def _checkPlain(self, conn: Peer, response: str) -> None:
        try:
            fields = base64.b64decode(response, validate=True).decode("utf-8").split("\0")
        except (binascii.Error, UnicodeDecodeError):
            fields = []
        if len(fields) != 3 or (fields[0] and nickKey(fields[0]) != nickKey(fields[1])):
            conn.numeric(N.ERR_SASLFAIL, "SASL authentication failed: PLAIN is authzid NUL authcid NUL password")
            return
        account, password = fields[1], fields[2]
        reply = conn.later()
        try:
            if conn.member is not None:
                d = conn.member.login(account, password).addCallback(lambda nick: None)
            else:
                d = conn.service.checkLogin(account, password)
        except ChatError:
            conn.answer(reply, formatMessage(N.ERR_SASLFAIL, [conn.nick, "SASL authentication failed"], SERVER_NAME))
            conn.finish(reply)
            return
        conn.holdInput()

        def loggedIn(_: None) -> None:
            if conn.member is None:
                conn.registration.account = account
            name = conn.member.nick if conn.member is not None else account
            conn.answer(
                reply,
                formatMessage(
                    N.RPL_LOGGEDIN, [conn.nick, mask(name), nickKey(account), "You are now logged in as " + account], SERVER_NAME
                ),
            )
            conn.answer(reply, formatMessage(N.RPL_SASLSUCCESS, [conn.nick, "SASL authentication successful"], SERVER_NAME))

        def failed(f: Failure) -> None:
            if not f.check(ChatError):
                _log.failure("SASL login of {peer} failed", f, peer=conn.peer)
            conn.answer(reply, formatMessage(N.ERR_SASLFAIL, [conn.nick, "SASL authentication failed"], SERVER_NAME))

        def done(_: object) -> None:
            conn.finish(reply)
            conn.releaseInput()

        d.addCallbacks(loggedIn, failed).addBoth(done)

    def complete(self, conn: Peer) -> None:
        """
        Register the client if it said all it has to.
        """
        reg = conn.registration
        if conn.member is not None or reg.nick is None or reg.user is None or conn.caps.negotiating or reg.pending:
            return
        if reg.account is not None:
            nick = reg.nick if nickKey(reg.nick) == nickKey(reg.account) else reg.account
            self._connect(conn, nick, authenticated=True)
        elif reg.password is not None and conn.service.passwords:
            self._connectWithPassword(conn, reg.nick, reg.password)
        elif nickKey(reg.nick) in conn.service.passwords:
            conn.numeric(
                N.ERR_NICKNAMEINUSE, reg.nick, "%s is registered: log in with SASL PLAIN or PASS to use it" % (reg.nick,)
            )
            reg.nick = None
        else:
            self._connect(conn, reg.nick)

    def _connect(self, conn: Peer, nick: str, authenticated: bool = False) -> None:
        service = conn.service
        try:
            if authenticated:
                member = service.connect(conn, nick=nick, peer=conn.peer, host=conn.host, authenticated=True)
            else:
                # A guest that takes the nick, as a line-chat user's /nick:
                # an IRC client has no owner token.
                member = service.connect(conn, peer=conn.peer, host=conn.host)
                try:
                    member.setNick(nick)
                except ChatError:
                    member.quit("disconnected")
                    raise
        except ChatError as e:
            conn.registration.nick = None
            conn.refuse("NICK", e, nick)
            return
        conn.registered(member)

    def _connectWithPassword(self, conn: Peer, nick: str, password: str) -> None:
        reg = conn.registration
        reg.pending = True
        conn.holdInput()
        d = conn.service.connectWithPassword(conn, nick, password, peer=conn.peer, host=conn.host)

        def connected(member: Member) -> None:
            reg.pending = False
            if conn.closing:
                member.quit("disconnected")
                return
            conn.registered(member)

        def failed(f: Failure) -> None:
            reg.pending = False
            if f.check(ChatError) and f.value.code == "nick-taken":  # type: ignore[union-attr]
                reg.nick = None
                conn.refuse("NICK", f.value, nick)  # type: ignore[arg-type]
                return
            if not f.check(ChatError):
                _log.failure("login of {peer} failed", f, peer=conn.peer)
            conn.numeric(N.ERR_PASSWDMISMATCH, "Password incorrect")
            conn.closeLink("wrong nick or password")

        d.addCallbacks(connected, failed).addBoth(lambda _: conn.releaseInput())
