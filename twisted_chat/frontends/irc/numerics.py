# -*- test-case-name: tests.frontends.irc.test_irc -*-
"""
The IRC numerics the chat answers with, in one place (RFC 1459/2812 and
the IRCv3 ones, as documented at modern.ircdocs.horse), and how a refusal
of the service (a L{twisted_chat.core.errors.ChatError} code) is answered
for each command.
"""

from __future__ import annotations

RPL_WELCOME = "001"
RPL_YOURHOST = "002"
RPL_CREATED = "003"
RPL_MYINFO = "004"
RPL_ISUPPORT = "005"
RPL_UMODEIS = "221"
RPL_LUSERCLIENT = "251"
RPL_LUSERCHANNELS = "254"
RPL_LUSERME = "255"
RPL_AWAY = "301"
RPL_USERHOST = "302"
RPL_ISON = "303"
RPL_UNAWAY = "305"
RPL_NOWAWAY = "306"
RPL_WHOISREGNICK = "307"
RPL_WHOISUSER = "311"
RPL_WHOISSERVER = "312"
RPL_WHOISOPERATOR = "313"
RPL_ENDOFWHO = "315"
RPL_ENDOFWHOIS = "318"
RPL_WHOISCHANNELS = "319"
RPL_LISTSTART = "321"
RPL_LIST = "322"
RPL_LISTEND = "323"
RPL_CHANNELMODEIS = "324"
RPL_WHOISACCOUNT = "330"
RPL_NOTOPIC = "331"
RPL_TOPIC = "332"
RPL_TOPICWHOTIME = "333"
RPL_VERSION = "351"
RPL_WHOREPLY = "352"
RPL_NAMREPLY = "353"
RPL_ENDOFNAMES = "366"
RPL_BANLIST = "367"
RPL_ENDOFBANLIST = "368"
RPL_ENDOFWHOWAS = "369"
RPL_MOTD = "372"
RPL_MOTDSTART = "375"
RPL_ENDOFMOTD = "376"
ERR_NOSUCHNICK = "401"
ERR_NOSUCHCHANNEL = "403"
ERR_CANNOTSENDTOCHAN = "404"
ERR_TOOMANYCHANNELS = "405"
ERR_WASNOSUCHNICK = "406"
ERR_TOOMANYTARGETS = "407"
ERR_NOORIGIN = "409"
ERR_NORECIPIENT = "411"
ERR_NOTEXTTOSEND = "412"
ERR_INPUTTOOLONG = "417"
ERR_UNKNOWNCOMMAND = "421"
ERR_NONICKNAMEGIVEN = "431"
ERR_ERRONEUSNICKNAME = "432"
ERR_NICKNAMEINUSE = "433"
ERR_USERNOTINCHANNEL = "441"
ERR_NOTONCHANNEL = "442"
ERR_NOTREGISTERED = "451"
ERR_NEEDMOREPARAMS = "461"
ERR_ALREADYREGISTERED = "462"
ERR_PASSWDMISMATCH = "464"
ERR_UNKNOWNMODE = "472"
ERR_BANNEDFROMCHAN = "474"
ERR_NEEDREGGEDNICK = "477"
ERR_NOPRIVILEGES = "481"
ERR_CHANOPRIVSNEEDED = "482"
ERR_UMODEUNKNOWNFLAG = "501"
ERR_USERSDONTMATCH = "502"
ERR_INVALIDMODEPARAM = "696"
RPL_LOGGEDIN = "900"
RPL_SASLSUCCESS = "903"
ERR_SASLFAIL = "904"
ERR_SASLTOOLONG = "905"
ERR_SASLABORTED = "906"
ERR_SASLALREADY = "907"
RPL_SASLMECHS = "908"

#: a refusal of the service (its code) -> the numeric that answers it,
#: whatever the command (see L{refusal} for the ones that depend on it)
_BY_CODE = {
    "bad-nick": ERR_ERRONEUSNICKNAME,
    "nick-taken": ERR_NICKNAMEINUSE,
    "nick-registered": ERR_NICKNAMEINUSE,
    "bad-room": ERR_NOSUCHCHANNEL,
    "not-in-room": ERR_NOTONCHANNEL,
    "no-such-nick": ERR_NOSUCHNICK,
    "empty-message": ERR_NOTEXTTOSEND,
    "too-many-rooms": ERR_TOOMANYCHANNELS,
    "not-allowed": ERR_CHANOPRIVSNEEDED,
    "banned": ERR_BANNEDFROMCHAN,
    "auth-required": ERR_NEEDREGGEDNICK,
    "too-long": ERR_INPUTTOOLONG,
}

#: (command, code) -> numeric, where a command answers a code its own way
_BY_COMMAND = {
    ("PRIVMSG", "not-in-room"): ERR_CANNOTSENDTOCHAN,
    ("NOTICE", "not-in-room"): ERR_CANNOTSENDTOCHAN,
    ("PRIVMSG", "banned"): ERR_CANNOTSENDTOCHAN,
    ("NOTICE", "banned"): ERR_CANNOTSENDTOCHAN,
    ("KICK", "no-such-nick"): ERR_USERNOTINCHANNEL,
    ("MODE", "no-such-nick"): ERR_USERNOTINCHANNEL,
    ("MODE", "bad-request"): ERR_INVALIDMODEPARAM,
}

#: numerics whose parameters name a channel or nick before the text
TARGETED = frozenset(
    {
        ERR_ERRONEUSNICKNAME,
        ERR_NICKNAMEINUSE,
        ERR_NOSUCHCHANNEL,
        ERR_NOTONCHANNEL,
        ERR_NOSUCHNICK,
        ERR_TOOMANYCHANNELS,
        ERR_CHANOPRIVSNEEDED,
        ERR_BANNEDFROMCHAN,
        ERR_NEEDREGGEDNICK,
        ERR_CANNOTSENDTOCHAN,
    }
)


def refusal(command: str, code: str) -> str | None:
    """
    The numeric that answers the service's refusal C{code} of C{command};
    None when there is none (the refusal is then a C{FAIL}).
    """
    return _BY_COMMAND.get((command, code)) or _BY_CODE.get(code)
