# -*- test-case-name: tests.wire.test_wire -*-
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

from typing import Callable, NamedTuple

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
    "  /edit TEXT        replace the text of your last message in your current room",
    "  /delete           delete your last message in your current room",
    "  /search TEXT      search the rooms you are in (every word starts a word)",
    "  /set bell on|off  a bell on lines that mention you",
    "  /login NICK PASS  log in as a registered nick (also: /nick NICK PASS)",
    "  /quit [REASON]    leave",
    "operators of a room (its creator, and server admins):",
    "  /kick NICK [WHY]  put someone out of your current room",
    "  /ban NICK|ADDRESS [WHY]   keep them out;  /unban NICK|ADDRESS",
    "  /op NICK          make someone an operator too",
    "  /notice TEXT      (server admins) a notice to everyone",
    "  /status           (server admins) connections, rooms and recent errors",
]


class Command(NamedTuple):
    """
    One typed command, its arguments parsed: C{name} is a key of
    L{COMMANDS}; C{target} the word it acts on (a nick, a room, a nick or
    address); C{text} the rest (a message, a reason, a password, a topic);
    C{number} the N of C{/history N}.
    """

    name: str
    target: str = ""
    text: str = ""
    number: int = 0


#: how a command's arguments are read: C{(name, arguments, usage)} to the
#: command, or L{usageError}C{(usage)}; the arguments are what follows the
#: command and one space, stripped of white space around them
Arguments = Callable[[str, str, str], Command]


class Syntax(NamedTuple):
    """
    How one command is written: its arguments, and the usage shown when
    they are wrong (what follows C{usage: }).
    """

    arguments: Arguments
    usage: str


def usageError(usage: str) -> ChatError:
    """
    The refusal of a command written wrongly.
    """
    return ChatError("bad-request", "usage: " + usage)


# -- the shapes of arguments --

_BARE: dict[str, Command] = {}


def noArguments(name: str, rest: str, usage: str) -> Command:
    """
    None: anything after the command is ignored.
    """
    command = _BARE.get(name)
    if command is None:
        command = _BARE[name] = Command(name)
    return command


def word(name: str, rest: str, usage: str) -> Command:
    """
    Exactly one word: the C{target}.
    """
    if not rest or " " in rest:
        raise usageError(usage)
    return Command(name, rest)


def optionalWord(name: str, rest: str, usage: str) -> Command:
    """
    At most one word: the C{target}, or C{""}.
    """
    if " " in rest:
        raise usageError(usage)
    return Command(name, rest)


def wordAndText(name: str, rest: str, usage: str) -> Command:
    """
    A word (the C{target}), then text that is not blank (the C{text}, as
    typed).
    """
    target, _, text = rest.partition(" ")
    if not target or not text.strip():
        raise usageError(usage)
    return Command(name, target, text)


def wordAndReason(name: str, rest: str, usage: str) -> Command:
    """
    A word (the C{target}), then maybe a reason (the C{text}, stripped).
    """
    target, _, reason = rest.partition(" ")
    if not target:
        raise usageError(usage)
    return Command(name, target, reason.strip())


def text(name: str, rest: str, usage: str) -> Command:
    """
    Text that is not empty: the C{text}.
    """
    if not rest:
        raise usageError(usage)
    return Command(name, text=rest)


def optionalText(name: str, rest: str, usage: str) -> Command:
    """
    Text, maybe empty: the C{text}.
    """
    return Command(name, text=rest)


def number(name: str, rest: str, usage: str) -> Command:
    """
    Maybe a whole number from 1: the C{number} (L{DEFAULT_HISTORY} without).
    """
    if not rest:
        return Command(name, number=DEFAULT_HISTORY)
    try:
        n = int(rest)
    except ValueError:
        n = -1
    if n < 1:
        raise usageError(usage)
    return Command(name, number=n)


def nickAndPassword(name: str, rest: str, usage: str) -> Command:
    """
    C{/nick}: a nick (the C{target}); with a password after it, the command
    is C{/login NICK PASSWORD}.
    """
    nick, _, password = rest.partition(" ")
    if not nick:
        raise usageError(usage)
    return Command("login", nick, password) if password else Command(name, nick)


#: every command, by (lower-case) name
COMMANDS: dict[str, Syntax] = {
    "help": Syntax(noArguments, "/help"),
    "nick": Syntax(nickAndPassword, "/nick NAME [PASSWORD]"),
    "login": Syntax(wordAndText, "/login NICK PASSWORD"),
    "join": Syntax(word, "/join ROOM"),
    "part": Syntax(optionalWord, "/part [ROOM]"),
    "rooms": Syntax(noArguments, "/rooms"),
    "who": Syntax(optionalWord, "/who [ROOM]"),
    "msg": Syntax(wordAndText, "/msg NICK TEXT"),
    "me": Syntax(text, "/me ACTION"),
    "history": Syntax(number, "/history [N] with N a whole number from 1"),
    "topic": Syntax(optionalText, "/topic [TEXT]"),
    "kick": Syntax(wordAndReason, "/kick NICK [REASON]"),
    "ban": Syntax(wordAndReason, "/ban NICK|ADDRESS [REASON]"),
    "unban": Syntax(word, "/unban NICK|ADDRESS"),
    "op": Syntax(word, "/op NICK"),
    "notice": Syntax(text, "/notice TEXT"),
    "status": Syntax(noArguments, "/status"),
    "edit": Syntax(text, "/edit TEXT"),
    "delete": Syntax(noArguments, "/delete"),
    "search": Syntax(text, "/search TEXT"),
    "set": Syntax(wordAndText, "/set bell on|off"),
    "quit": Syntax(optionalText, "/quit [REASON]"),
}


def parseLine(line: str) -> str | Command | None:
    """
    What the typed C{line} asks for: C{None} for a blank line (ignored),
    the text to say in the current room (C{//TEXT} says C{/TEXT}), or a
    L{Command}. Raise L{ChatError} (C{unknown-command} or C{bad-request})
    for a command that is unknown or written wrongly.
    """
    if not line.strip():
        return None
    if line[0] != "/":
        # (most lines: chat)
        return line
    if line.startswith("//"):
        return line[1:]
    # the command's name up to the first space, in any case
    name, _, rest = line[1:].partition(" ")
    name = name.lower()
    syntax = COMMANDS.get(name)
    if syntax is None:
        raise ChatError("unknown-command", "unknown command /%s (try /help)" % (oneLine(name)[:32],))
    return syntax.arguments(name, rest.strip(), syntax.usage)


def newTopic(text: str) -> str:
    """
    The topic that C{/topic TEXT} sets: C{/topic -} clears it (C{""}).
    """
    return "" if text == "-" else text
