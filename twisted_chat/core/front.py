# -*- test-case-name: tests.core.test_service,tests.core.test_nicks -*-
"""
What members and front-ends ask of the service that its parts carry out
(L{ServiceFront}, a base of L{twisted_chat.core.service.ChatService}):
connections and nicks (L{twisted_chat.core.nicks}), flood accounting
(L{twisted_chat.core.moderation}) and rooms (L{twisted_chat.core.rooms}),
each handed to its part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from twisted_chat.core.events import Message
    from twisted_chat.core.interfaces import IChatClient
    from twisted_chat.core.member import Member, MemberInfo
    from twisted_chat.core.moderation import Moderation
    from twisted_chat.core.nicks import Nicks
    from twisted_chat.core.room import Room
    from twisted_chat.core.rooms import Rooms


class ServiceFront:
    """
    The service's requests that its parts carry out, each handed to its
    part.
    """

    nicks: Nicks
    moderation: Moderation
    roomsPart: Rooms

    # Connections

    def connect(
        self,
        client: IChatClient,
        nick: str | None = None,
        peer: str = "",
        token: str | None = None,
        host: str = "",
        authenticated: bool = False,
    ) -> Member:
        """
        Register a new connection under C{nick}, or a fresh guest nick (see
        L{Nicks.connect}).
        """
        return self.nicks.connect(client, nick, peer, token, host, authenticated)

    def connectWithPassword(
        self, client: IChatClient, nick: str, password: str, peer: str = "", token: str | None = None, host: str = ""
    ) -> Deferred[Member]:
        """
        Like L{connect} for a registered nick, once C{password} is checked.
        """
        return self.nicks.connectWithPassword(client, nick, password, peer, token, host)

    def lookup(self, nick: str) -> Member | None:
        return self.nicks.lookup(nick)

    def memberInfo(self, nick: str) -> MemberInfo | None:
        """
        What is known of the member called C{nick} (its account, away
        message, rooms…; see L{MemberInfo}), or None when nobody online has
        that nick. Front-ends read it to show who someone is (IRC's WHOIS,
        its C{account} tags); a member's own request is L{Member.whois}.
        """
        return self.nicks.info(nick)

    def checkLogin(self, nick: str, password: str) -> Deferred[None]:
        """
        Check a registered nick's password without taking the nick (an IRC
        client's SASL exchange, before it registers): fires with None or
        fails with L{ChatError} C{bad-login}; raises C{no-auth} at once on a
        server without registered nicks. Checked in a thread, as every
        password.
        """
        return self.nicks.checkLogin(nick, password)

    def isAdmin(self, member: Member) -> bool:
        return self.nicks.isAdmin(member)

    def spend(self, member: Member) -> None:
        self.moderation.spend(member)

    def disconnectFlooder(self, member: Member, waiting: int) -> None:
        self.moderation.disconnectFlooder(member, waiting)

    # Rooms (see core.rooms)

    def join(self, member: Member, name: str, since: tuple[str, int] | None) -> tuple[str, bool]:
        return self.roomsPart.join(member, name, since)

    def leave(self, member: Member, name: str, reason: str) -> str:
        return self.roomsPart.leave(member, name, reason)

    def roomSize(self, room: Room[Member]) -> int:
        return self.roomsPart.roomSize(room)

    def who(self, member: Member, name: str) -> None:
        self.roomsPart.who(member, name)

    def roomList(self) -> list[tuple[str, int]]:
        return self.roomsPart.roomList()

    def topicOf(self, name: str) -> tuple[str, str, float]:
        """
        C{(topic, set by, set at)} of room C{name} (see L{Rooms.topicOf}).
        """
        return self.roomsPart.topicOf(name)

    def operatorsOf(self, name: str) -> list[str]:
        """
        The nicks of room C{name}'s operators on this node, sorted.
        """
        return self.roomsPart.operatorsOf(name)

    def setAway(self, member: Member, message: str) -> None:
        self.roomsPart.setAway(member, message)

    def deliverMessage(self, msg: Message) -> None:
        self.roomsPart.deliverMessage(msg)
