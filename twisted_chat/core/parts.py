# -*- test-case-name: tests.core.test_service -*-
"""
The service as its parts see it (L{Host}): the state they share and how
they deliver. The parts are the service's collaborators, each with one
job: the history a joiner gets (L{twisted_chat.core.history}), nicknames
and who owns them (L{twisted_chat.core.nicks}), messages and private
messages (L{twisted_chat.core.messages}), moderation
(L{twisted_chat.core.moderation}), join and leave notices
(L{twisted_chat.core.notices}) and what other nodes tell this one
(L{twisted_chat.core.remote}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from twisted_chat.core.member import Requests, _Conversation

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IReactorTime

    from twisted_chat.core.connlog import ConnectionLog
    from twisted_chat.core.events import Event
    from twisted_chat.core.interfaces import IBroker, IMessageStore
    from twisted_chat.core.member import Member
    from twisted_chat.core.room import Room
    from twisted_chat.core.settings import Settings


class ConversationPart(_Conversation, Protocol):
    """
    What the other parts use of the conversation's part
    (L{twisted_chat.core.conversation.Conversation}).
    """

    def stopTyping(self, member: Member, name: str) -> None:
        """
        C{member} said something in C{name}, or left it: it is no longer typing there.
        """

    def remoteTyping(self, name: str, nick: str, state: str) -> None:
        """
        C{nick}, on another node, is typing in C{name}.
        """

    def readMarker(self, nick: str, name: str, id: int) -> None:
        """
        Tell this node's connections of C{nick} its read position in C{name}.
        """

    def readState(self, member: Member, name: str) -> Deferred[tuple[int, int, int] | None]:
        """
        (read position, unread, mentions) of C{member}'s nick in C{name}.
        """


class NoticesPart(Protocol):
    """
    What the other parts use of the join and leave notices' part
    (L{twisted_chat.core.notices.Notices}).
    """

    def announce(self, room: Room[Member], event: Event, subject: Member | None = None) -> None:
        """
        Tell C{room} of a join or a leave: C{subject} at once, the others
        together with the room's other notices of the moment.
        """

    def noticesFirst(self, member: Member) -> None:
        """
        Send the pending join and leave notices of C{member}'s rooms now.
        """


class Host(Requests, Protocol):
    """
    What the parts of the service use of it (L{twisted_chat.core.service.ChatService}),
    besides what its members ask of it (L{Requests}).
    """

    #: room name -> room, of the rooms with members on this node
    rooms: dict[str, Room[Member]]
    #: the members connected to this node
    members: set[Member]
    settings: Settings
    store: IMessageStore
    broker: IBroker
    #: rooms bigger than this tell joins and leaves only to whom they concern
    announceLimit: int
    #: at most this many messages are recovered on a resume
    resumeLimit: int
    @property
    def conversation(self) -> ConversationPart:
        """
        Edits, deletions, reactions, typing, read markers, search.
        """
    @property
    def notices(self) -> NoticesPart:
        """
        Join and leave notices, told to a room together.
        """
    #: counts (and with --log-connections logs) connections
    connectionLog: ConnectionLog

    @property
    def clock(self) -> IReactorTime:
        """
        The service's time (retries are scheduled on it).
        """

    def isRunning(self) -> bool:
        """
        Whether the service is up (not stopping).
        """

    def send(self, member: Member, event: Event) -> None:
        """
        Hand one event to one member (a failing member is dropped, alone).
        """

    def deliverNow(self, member: Member, event: Event) -> None:
        """
        Hand one event to one member now, even while events wait for it.
        """

    def broadcast(self, room: Room[Member], event: Event) -> None:
        """
        Hand one event to every member of C{room} on this node.
        """

    def dropFailed(self, member: Member) -> None:
        """
        A delivery to C{member} failed (and was logged): close and drop it, alone.
        """

    def roomSize(self, room: Room[Member]) -> int:
        """
        Members of C{room} on every node.
        """

