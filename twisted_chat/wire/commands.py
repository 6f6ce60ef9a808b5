# -*- test-case-name: tests.test_wire -*-
"""
The line chat's slash-command grammar: what a typed line means.

L{parseLine} turns one typed line into the text to say, a L{Command}, or
nothing (a blank line), and refuses an unknown command or one written
wrongly with a L{ChatError} whose message is the C{!!! } line to show
(C{usage: /msg NICK TEXT}). The server's text mode carries commands out
(L{twisted_chat.frontends.textmode.TextCommands}); the terminal client
translates them into json-mode requests
(L{twisted_chat.client.jsonchat.JsonChat}): both read them here, so a
line means the same, and is refused with the same words, either way.

Each front-end handles command C{NAME} in its method C{req_NAME}.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from twisted_chat.core.errors import ChatError
from twisted_chat.wire.render import oneLine

#: what C{/history} without a number asks for
DEFAULT_HISTORY = 20

HELP = [
    "commands:",
    "  TEXT              say TEXT in your current room (//TEXT says /TEXT)",
    "  /nick NAME        change your nickname",
    "  /join ROOM        join a room (or switch to it); it becomes your current room",
    "  /part [ROOM]      leave a room (default: the current one)",
    "  /rooms            list rooms and how many are in each",
    "  /who [ROOM]       list who is in a room",
    "  /msg NICK TEXT    private message",
    "  /me ACTION        action in your current room",
    "  /history [N]      the last N messages of your current room",
    "  /topic [TEXT]     show or (operators) set the topic of your current room",
    "  /login NICK PASS  log in as a registered nick (also: /nick NICK PASS)",
    "  /quit [REASON]    leave",
    "operators of a room (its creator, and server admins):",
    "  /kick NICK [WHY]  put someone out of your current room",
    "  /ban NICK|ADDRESS [WHY]   keep them out;  /unban NICK|ADDRESS",
    "  /op NICK          make someone an operator too",
    "  /notice TEXT      (server admins) a notice to everyone",
    "  /status           (server admins) connections, rooms and recent errors",
]


class Arguments(enum.Enum):
    """
    How a command's arguments are written (after the command and one
    space; the whole is stripped of surrounding white space first).
    """

    #: none: anything after the command is ignored
    NONE = enum.auto()
    #: exactly one word (the L{Command.target})
    WORD = enum.auto()
    #: at most one word (the L{Command.target}, or C{""})
    OPTIONAL_WORD = enum.auto()
    #: a word, then text that is not blank (C{target}, C{text})
    WORD_TEXT = enum.auto()
    #: a word, then maybe a reason (C{target}, C{text} stripped)
    WORD_REASON = enum.auto()
    #: text that is not empty (C{text})
    TEXT = enum.auto()
    #: text, maybe empty (C{text})
    OPTIONAL_TEXT = enum.auto()
    #: maybe a whole number from 1 (C{count}, L{DEFAULT_HISTORY} without)
    COUNT = enum.auto()
    #: C{/nick}: a nick, then maybe a password (then it is C{/login})
    NICK = enum.auto()


@dataclass(frozen=True, slots=True)
class Syntax:
    """
    How one command is written: its arguments and the usage shown when
    they are wrong (what follows C{usage: }).
    """

    arguments: Arguments
    usage: str


#: every command, by (lower-case) name
COMMANDS: dict[str, Syntax] = {
    "help": Syntax(Arguments.NONE, "/help"),
    "nick": Syntax(Arguments.NICK, "/nick NAME [PASSWORD]"),
    "login": Syntax(Arguments.WORD_TEXT, "/login NICK PASSWORD"),
    "join": Syntax(Arguments.WORD, "/join ROOM"),
    "part": Syntax(Arguments.OPTIONAL_WORD, "/part [ROOM]"),
    "rooms": Syntax(Arguments.NONE, "/rooms"),
    "who": Syntax(Arguments.OPTIONAL_WORD, "/who [ROOM]"),
    "msg": Syntax(Arguments.WORD_TEXT, "/msg NICK TEXT"),
    "me": Syntax(Arguments.TEXT, "/me ACTION"),
    "history": Syntax(Arguments.COUNT, "/history [N] with N a whole number from 1"),
    "topic": Syntax(Arguments.OPTIONAL_TEXT, "/topic [TEXT]"),
    "kick": Syntax(Arguments.WORD_REASON, "/kick NICK [REASON]"),
    "ban": Syntax(Arguments.WORD_REASON, "/ban NICK|ADDRESS [REASON]"),
    "unban": Syntax(Arguments.WORD, "/unban NICK|ADDRESS"),
    "op": Syntax(Arguments.WORD, "/op NICK"),
    "notice": Syntax(Arguments.TEXT, "/notice TEXT"),
    "status": Syntax(Arguments.NONE, "/status"),
    "quit": Syntax(Arguments.OPTIONAL_TEXT, "/quit [REASON]"),
}


@dataclass(frozen=True, slots=True)
class Command:
    """
    One typed command, its arguments parsed: C{name} is a key of
    L{COMMANDS}; C{target} the word it acts on (a nick, a room, a nick or
    address); C{text} the rest (a message, a reason, a password, a topic);
    C{count} the number of C{/history}.
    """

    name: str
    target: str = ""
    text: str = ""
    count: int = 0


def usageError(usage: str) -> ChatError:
    """
    The refusal of a command written wrongly.
    """
    return ChatError("bad-request", "usage: " + usage)


def splitCommand(line: str) -> tuple[str, str] | None:
    """
    If C{line} is a command (it starts with C{/} but not C{//}), its name
    (lower case) and its arguments (stripped); else C{None}.
    """
    if not line.startswith("/") or line.startswith("//"):
        return None
    name, _, rest = line[1:].partition(" ")
    return name.lower(), rest.strip()


def parseLine(line: str) -> str | Command | None:
    """
    What the typed C{line} asks for: C{None} for a blank line (ignored),
    the text to say in the current room (C{//TEXT} says C{/TEXT}), or a
    L{Command}. Raise L{ChatError} (C{unknown-command} or C{bad-request})
    for a command that is unknown or written wrongly.
    """
    if not line.strip():
        return None
    split = splitCommand(line)
    if split is None:
        return line[1:] if line.startswith("//") else line
    name, rest = split
    syntax = COMMANDS.get(name)
    if syntax is None:
        raise ChatError("unknown-command", "unknown command /%s (try /help)" % (oneLine(name)[:32],))
    return parseArguments(name, syntax, rest)


def parseArguments(name: str, syntax: Syntax, rest: str) -> Command:
    """
    The command C{name} with the arguments C{rest} (stripped), written as
    C{syntax} says; L{ChatError} (C{bad-request}) if they are not.
    """
    shape = syntax.arguments
    if shape is Arguments.NONE:
        return Command(name)
    if shape is Arguments.COUNT:
        return Command(name, count=_count(rest, syntax.usage))
    if shape is Arguments.TEXT or shape is Arguments.OPTIONAL_TEXT:
        if not rest and shape is Arguments.TEXT:
            raise usageError(syntax.usage)
        return Command(name, text=rest)
    if shape is Arguments.WORD or shape is Arguments.OPTIONAL_WORD:
        if " " in rest or not rest and shape is Arguments.WORD:
            raise usageError(syntax.usage)
        return Command(name, target=rest)
    word, _, text = rest.partition(" ")
    if not word:
        raise usageError(syntax.usage)
    if shape is Arguments.WORD_REASON:
        return Command(name, word, text.strip())
    if shape is Arguments.NICK:
        # (with a password: a login, as /login NICK PASSWORD)
        return Command("login", word, text) if text else Command(name, word)
    if not text.strip():
        raise usageError(syntax.usage)
    return Command(name, word, text)


def _count(rest: str, usage: str) -> int:
    if not rest:
        return DEFAULT_HISTORY
    try:
        n = int(rest)
    except ValueError:
        n = -1
    if n < 1:
        raise usageError(usage)
    return n


def newTopic(text: str) -> str:
    """
    The topic that C{/topic TEXT} sets: C{/topic -} clears it (C{""}).
    """
    return "" if text == "-" else text
