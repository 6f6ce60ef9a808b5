# -*- test-case-name: tests.frontends.irc.test_irc -*-
"""
One IRC client as its commands and its renderer see it (L{Peer}), and
what they keep on it: its registration so far (L{Registration}), the
answers that go on after a command returned (L{Answer}, L{Wanted}), and
what the commands use of its renderer (L{Rendering}).

The commands (L{twisted_chat.frontends.irc.registration}, C{chat},
C{modes}, C{queries}, C{history}) and the renderer
(L{twisted_chat.frontends.irc.render}) are written against these, not
against L{twisted_chat.frontends.irc.connection.IRCConnection}, which
stands above them all: it builds its renderer and hands each line to
its command's handler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, NamedTuple, Protocol, TypeVar, Union

from zope.interface import implementer

from twisted_chat.core.interfaces import IChatClient
from twisted_chat.frontends.irc.replies import Reply, Unit

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IDelayedCall
    from twisted_chat.core.errors import ChatError
    from twisted_chat.core.events import Event, History, Joined, Message, Presence, Private
    from twisted_chat.core.service import ChatService, Member
    from twisted_chat.frontends.irc.caps import Capabilities

_T = TypeVar("_T")

#: where the answer of a command goes: gathered for its label (a L{Reply}),
#: or straight out (None)
Answer = Union[Reply, None]


class Registration:
    """
    One client's registration: what it said so far.
    """

    __slots__ = ("nick", "user", "realname", "password", "account", "sasl", "quitReason", "pending")

    def __init__(self) -> None:
        self.nick: str | None = None
        self.user: str | None = None
        self.realname = ""
        self.password: str | None = None
        #: the registered nick the client logged in as through SASL
        self.account: str | None = None
        #: the SASL response read so far (None: no exchange under way)
        self.sasl: str | None = None
        #: why the member leaves when the connection closes (None:
        #: disconnected)
        self.quitReason: str | None = None
        #: whether a password check is under way
        self.pending = False


class Wanted(NamedTuple):
    """
    A C{CHATHISTORY} request waiting for its history: what to keep of it.
    """

    target: str
    sub: str
    #: message ids to keep: above C{low}, below C{high} (None: no bound)
    low: int | None
    high: int | None
    limit: int
    #: for a room: its epoch in the references (None: none given)
    epoch: str | None
    reply: Answer


class Rendering(Protocol):
    """
    What the commands use of a client's renderer
    (L{twisted_chat.frontends.irc.render.Renderer}).
    """

    #: the CHATHISTORY request waiting for its history
    historyWanted: Wanted | None
    #: room -> the read position this client's MARKREAD is storing
    ownReads: dict[str, int]

    @property
    def captures(self) -> dict[str, Callable[[Event], None]]:
        """
        Kind of event -> who takes it instead of the client (a command
        that asked for it, while its request runs).
        """

    @property
    def awaitingHistory(self) -> dict[str, Answer]:
        """
        Room -> the answer its join's history goes into, until it came.
        """

    def messageLines(self, m: Message, playback: bool = False) -> list[str]: ...

    def privateLines(self, p: Private) -> list[str]: ...

    def playbackLines(self, m: Message) -> list[str]:
        """
        Room message C{m} in a history batch, with its reactions.
        """

    def privatePlaybackLines(self, p: Private) -> list[str]:
        """
        Private message C{p} in a history batch, with its reactions.
        """

    def namesLines(self, p: Presence) -> list[str]: ...

    def ownRequest(self, request: Callable[[], Deferred[_T]]) -> Deferred[_T]:
        """
        Make C{request}, a request of this connection that stores a message
        or an update: the events of its nick wait until it is answered
        (L{ownAnswered}).
        """

    def ownAnswered(self) -> None:
        """
        One of this connection's requests was answered.
        """

    def topicLines(self, room: str) -> list[str]: ...

    def on_join(self, j: Joined) -> None: ...

    def on_history(self, h: History) -> None: ...


# (A Peer is the connection the service calls back: declaring it here lets
# the commands hand it to ChatService.connect, which takes an IChatClient.)
@implementer(IChatClient)
class Peer(Protocol):
    """
    One IRC client as its commands and its renderer use it
    (L{twisted_chat.frontends.irc.connection.IRCConnection}).
    """

    # -- what it is --

    @property
    def kind(self) -> str:
        """
        The front-end's short name (C{irc}), as the service knows it.
        """

    @property
    def service(self) -> ChatService: ...

    @property
    def member(self) -> Member | None:
        """
        The client's member of the chat (None until it is registered).
        """

    @property
    def caps(self) -> Capabilities: ...

    @property
    def registration(self) -> Registration: ...

    @property
    def render(self) -> Rendering: ...

    @property
    def nick(self) -> str:
        """
        The client's nick as IRC numerics address it (C{*} before it has one).
        """

    @property
    def peer(self) -> str:
        """
        The client's address, as the log names it.
        """

    @property
    def host(self) -> str:
        """
        The client's host, as admission and bans know it.
        """

    @property
    def closing(self) -> bool:
        """
        Whether the connection is closing (or closed).
        """

    # -- its life --

    def registered(self, member: Member) -> None:
        """
        The client is a member of the chat now: greet it.
        """

    def closeLink(self, reason: str) -> None:
        """
        Say C{ERROR} with C{reason} and close.
        """

    def deliver(self, event: Event) -> None: ...

    def close(self, reason: str, reconnectAfter: float | None = None) -> None: ...

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall: ...

    # -- what it reads --

    def holdInput(self) -> None:
        """
        Keep what is read from now on until L{releaseInput}.
        """

    def releaseInput(self) -> None:
        """
        Handle what was held, in order, and read again.
        """

    # -- what it says --

    def sendLine(self, line: str) -> None:
        """
        Send one line (gathered for the label of the command being handled).
        """

    def sendUnit(self, unit: Unit) -> None:
        """
        Send a line or a batch (gathered as L{sendLine} does).
        """

    def answer(self, reply: Answer, unit: Unit) -> None:
        """
        Send a line or a batch that answers a command later: into its
        C{reply}, or straight out.
        """

    def later(self) -> Answer:
        """
        The labeled answer of the command being handled, which goes on
        after it returned (L{finish} ends it), or None without a label.
        """

    def finish(self, reply: Answer) -> None: ...

    def within(self, reply: Answer, f: Callable[[], None]) -> None:
        """
        Call C{f}, what it says going into C{reply} (a command's answer
        that goes on after the command returned, see L{later}).
        """

    def numeric(self, code: str, *params: str) -> None: ...

    def fail(self, command: str, code: str, *context: str) -> None:
        """
        A standard reply C{FAIL COMMAND CODE [CONTEXT…] :DESCRIPTION}.
        """

    def refuse(self, command: str, error: ChatError, target: str = "") -> None:
        """
        Answer the service's refusal C{error} of C{command} (about
        C{target}, a channel or nick) with its numeric.
        """

    def batch(self, kind: str, params: list[str], lines: list[str]) -> Unit:
        """
        C{lines} as a batch of C{kind} (for a client with C{batch}; else
        just the lines).
        """
