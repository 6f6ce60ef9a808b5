# -*- test-case-name: tests.core.test_service -*-
"""
A connection's identity in the service: its nick, rooms and current room,
and the requests it makes (L{Member}), which the service carries out
(L{Requests}: what a member asks of it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from twisted.internet.defer import Deferred

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import (
    DELETE,
    EDIT,
    REACT,
    Event,
    Message,
    Notice,
    Private,
    PrivateUpdate,
    RoomList,
    SearchResults,
    Update,
)
from twisted_chat.core.interfaces import IChatClient
from twisted_chat.core.limits import FloodGuard
from twisted_chat.core.names import normalizeRoom

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime
    from twisted.python.failure import Failure

    from twisted_chat.core.room import Room
    from twisted_chat.core.settings import Settings
    from twisted_chat.core.stats import Stats


class _Messages(Protocol):
    def checkText(self, text: object) -> str: ...
    def say(
        self, member: Member, name: str, text: str, action: bool, ref: object = None, replyTo: object = None
    ) -> Deferred[Message]: ...
    def private(
        self, member: Member, nick: str, text: str, ref: object = None, replyTo: object = None
    ) -> Deferred[Private]: ...
    def privateHistory(self, member: Member, afterId: int | None) -> None: ...
    def history(
        self, member: Member, name: str, limit: int, before: int | None, after: int | None = None
    ) -> None: ...


class _Nicks(Protocol):
    def setNick(self, member: Member, nick: str) -> str: ...
    def login(self, member: Member, nick: str, password: str) -> Deferred[str]: ...
    def isAdmin(self, member: Member) -> bool: ...
    def info(self, nick: str) -> MemberInfo | None: ...


class _Conversation(Protocol):
    def update(
        self, member: Member, name: str, id: object, op: str, text: object = "", emoji: object = "",
        on: bool = True, ref: object = None, epoch: object = None,
    ) -> Deferred[Update]: ...
    def updatePrivate(
        self, member: Member, id: object, op: str, text: object = "", emoji: object = "", on: bool = True,
        ref: object = None,
    ) -> Deferred[PrivateUpdate]: ...
    def typing(self, member: Member, name: str, state: object) -> None: ...
    def markRead(self, member: Member, name: str, id: object) -> Deferred[None]: ...
    def search(
        self, member: Member, text: object, name: str | None, before: object, limit: object
    ) -> Deferred[SearchResults]: ...


class _Moderation(Protocol):
    def kick(self, member: Member, name: str, nick: str, reason: str) -> str: ...
    def ban(self, member: Member, name: str, target: str, reason: str) -> str: ...
    def unban(self, member: Member, name: str, target: str) -> str: ...
    def setTopic(self, member: Member, name: str, topic: str) -> None: ...
    def giveOp(self, member: Member, name: str, nick: str) -> str: ...
    def bansOf(self, member: Member, name: str) -> list[str]: ...


class Requests(Protocol):
    """
    What a member asks of its service (L{twisted_chat.core.service.ChatService})
    and of the service's parts, in the member's name; each refusal raises
    L{ChatError}.
    """

    settings: Settings

    @property
    def messages(self) -> _Messages:
        """
        What is said (L{twisted_chat.core.messages.Messages}).
        """

    @property
    def nicks(self) -> _Nicks:
        """
        Nicknames (L{twisted_chat.core.nicks.Nicks}).
        """

    @property
    def conversation(self) -> _Conversation:
        """
        Edits, deletions, reactions, typing, read markers, search
        (L{twisted_chat.core.conversation.Conversation}).
        """

    @property
    def moderation(self) -> _Moderation:
        """
        Moderation (L{twisted_chat.core.moderation.Moderation}).
        """

    @property
    def clock(self) -> IReactorTime: ...
    @property
    def stats(self) -> Stats: ...
    def now(self) -> float: ...
    def spend(self, member: Member) -> None: ...
    def disconnectFlooder(self, member: Member, waiting: int) -> None: ...
    def logStoreFailure(self, format: str, failure: Failure, **fields: Any) -> None: ...
    def join(self, member: Member, room: str, since: tuple[str, int] | None) -> tuple[str, bool]: ...
    def leave(self, member: Member, name: str, reason: str) -> str: ...
    def who(self, member: Member, name: str) -> None: ...
    def roomList(self) -> list[tuple[str, int]]: ...
    def topicOf(self, name: str) -> tuple[str, str, float]: ...
    def operatorsOf(self, name: str) -> list[str]: ...
    def setAway(self, member: Member, message: str) -> None: ...
    def notice(self, text: str) -> None: ...
    def statusLines(self) -> list[str]: ...
    def quit(self, member: Member, reason: str) -> None: ...


class MemberInfo(NamedTuple):
    """
    What the service can tell about a member (see L{Member.whois}).
    """

    nick: str
    #: the nick key it logged in as (with --auth), or None
    account: str | None
    #: its away message, C{""} when it is not away
    away: str
    #: the rooms it is in, in joining order
    rooms: tuple[str, ...]
    #: whether it is a server admin
    admin: bool
    #: its front-end (C{IChatClient.kind}); C{""} for a member of another node
    frontend: str
    #: whether it is connected to this node (of a member elsewhere in the
    #: cluster only the nick is known)
    local: bool


#: the longest away message (L{Member.setAway})
AWAY_MAX = 200


class Member:
    """
    One connection's identity in the service: nick, rooms, current room.

    Front-ends hold a member and call its methods; the member is the
    "avatar" of twisted.words.
    """

    __slots__ = (
        "service", "client", "nick", "rooms", "current", "peer", "host", "held", "backlog", "floors", "gone", "owner",
        "token", "authenticated", "flood", "away",
    )

    def __init__(self, service: Requests, client: IChatClient, nick: str, peer: str, host: str = "") -> None:
        self.service = service
        self.client = client
        self.nick = nick
        self.peer = peer
        self.host = host
        #: the nick key this connection logged in as (with --auth), or None
        self.authenticated: str | None = None
        self.flood = FloodGuard(service.settings.floodBurst, service.clock.seconds())
        # room name -> Room, in joining order
        self.rooms: dict[str, Room[Member]] = {}
        self.current: str | None = None
        #: room name -> its gate in L{backlog}, while that room's history
        #: is read (see L{twisted_chat.core.history})
        self.held: dict[str, Any] | None = None
        #: while a room's history is read (C{held} is not None), everything
        #: for this connection waits here, in order: C{(room, event)} for a
        #: room's broadcast, C{(None, event)} for one sent to this member
        #: alone, and a gate where each history being read will go; the
        #: events before the first gate are delivered as soon as it goes
        self.backlog: list[Any] | None = None
        #: room name -> the last message id of the history this member got,
        #: while this node has not delivered that far yet (a store shared by
        #: several nodes can answer a history read with messages that reach
        #: this node live a moment later): live messages up to it are skipped
        self.floors: dict[str, int] | None = None
        self.gone = False
        #: whether this connection proved it owns its nick (see ChatService.connect)
        self.owner = False
        #: the owner token issued to this connection, when it got a new one
        self.token: str | None = None
        #: its away message (L{setAway}); C{""} while it is not away
        self.away = ""

    def __repr__(self) -> str:
        return "<Member %s from %s>" % (self.nick, self.peer)

    # Requests; each raises ChatError when refused.

    def join(self, room: str, since: tuple[str, int] | None = None, charged: bool = True) -> tuple[str, bool]:
        """
        Join C{room} (or switch to it if already a member) and make it the
        current room. Returns the canonical name and whether it was newly
        joined. C{charged=False}: one of the joins of a request already
        charged to flood control (a json hello's rooms).
        """
        if charged:
            self.service.spend(self)
        return self.service.join(self, room, since)

    def part(self, room: str | None = None, reason: str = "left") -> str:
        """
        Leave C{room} (default: the current one). Returns its name.
        """
        self.service.spend(self)
        return self.service.leave(self, self.roomOrCurrent(room), reason)

    def say(
        self, text: str, room: str | None = None, action: bool = False, ref: str | None = None, replyTo: object = None
    ) -> Deferred[Message]:
        """
        Say C{text} in C{room} (default: current). The Deferred fires with the
        stored L{Message} once it is durable and has been handed to every member.

        A C{ref} makes the request idempotent: the same nick sending the same
        ref again (after a reconnect, say) gets the first message back instead
        of creating a second one.
        """
        self.service.spend(self)
        return self.service.messages.say(self, self.roomOrCurrent(room), text, action, ref, replyTo)

    def private(self, nick: str, text: str, ref: str | None = None, replyTo: object = None) -> Deferred[Private]:
        """
        Send C{text} to C{nick} only (idempotent with a C{ref}, like L{say}).
        """
        self.service.spend(self)
        return self.service.messages.private(self, nick, text, ref, replyTo)

    def edit(
        self, id: object, text: object, room: str | None = None, ref: object = None, epoch: object = None
    ) -> Deferred[Update]:
        """
        Replace the text of message C{id} of C{room} (default: current), of
        which this nick is the author. The Deferred fires with the stored
        L{Update} once the room has it; idempotent with a C{ref}. With an
        C{epoch}: refused unless the room's ids are still of that epoch.
        """
        self.service.spend(self)
        return self.service.conversation.update(
            self, self.roomOrCurrent(room), id, EDIT, text=text, ref=ref, epoch=epoch
        )

    def delete(
        self, id: object, room: str | None = None, ref: object = None, epoch: object = None
    ) -> Deferred[Update]:
        """
        Delete message C{id} of C{room} (its author, an operator of the room
        or a server admin): its text is removed from storage.
        """
        self.service.spend(self)
        return self.service.conversation.update(self, self.roomOrCurrent(room), id, DELETE, ref=ref, epoch=epoch)

    def react(
        self, id: object, emoji: object, on: bool = True, room: str | None = None, ref: object = None,
        epoch: object = None,
    ) -> Deferred[Update]:
        """
        Add (C{on}) or take back this nick's reaction C{emoji} to message C{id}.
        """
        self.service.spend(self)
        return self.service.conversation.update(
            self, self.roomOrCurrent(room), id, REACT, emoji=emoji, on=on, ref=ref, epoch=epoch
        )

    def updatePrivate(
        self, id: object, op: str, text: object = "", emoji: object = "", on: bool = True, ref: object = None
    ) -> Deferred[PrivateUpdate]:
        """
        Edit, delete (C{op}) or react to private message C{id}, between its
        sender and its recipient.
        """
        self.service.spend(self)
        return self.service.conversation.updatePrivate(self, id, op, text, emoji, on, ref)

    def typing(self, state: object, room: str | None = None) -> None:
        """
        Say that this member is typing in C{room} (C{state}: active,
        paused, done); see L{twisted_chat.core.conversation.Conversation.typing}.
        Not charged to flood control: it is rate limited on its own.
        """
        self.service.conversation.typing(self, self.roomOrCurrent(room), state)

    def markRead(self, id: object, room: str | None = None) -> Deferred[None]:
        """
        This (owned) nick has read C{room} up to message C{id}.
        """
        self.service.spend(self)
        return self.service.conversation.markRead(self, self.roomOrCurrent(room, mustBeMember=False), id)

    def search(
        self, text: object, room: str | None = None, before: object = None, limit: object = None
    ) -> Deferred[SearchResults]:
        """
        Search the rooms this member is in (or C{room}) and its private
        messages: answered with a L{SearchResults} event.
        """
        self.service.spend(self)
        name = self.roomOrCurrent(room) if room is not None else None
        return self.service.conversation.search(self, text, name, before, limit)

    def floodWait(self) -> float:
        """
        Seconds to wait before the next request: 0 while the flood budget
        (C{--flood-rate}, C{--flood-burst}) allows one now.
        """
        service = self.service
        settings = service.settings
        rate = settings.floodRate
        if rate <= 0:
            return 0.0
        return self.flood.wait(service.clock.seconds(), rate, settings.floodBurst)

    def privateHistory(self, afterId: int | None = None) -> None:
        """
        Ask for the private messages to or from this nick with ids above
        C{afterId} (default: the recent ones): answered with a
        L{PrivateHistory} event. Only for a member that proved it owns its
        nick; others get an empty list.
        """
        self.service.messages.privateHistory(self, afterId)

    def setNick(self, nick: str) -> str:
        """
        Change nickname; returns the new one.
        """
        self.service.spend(self)
        return self.service.nicks.setNick(self, nick)

    def who(self, room: str | None = None) -> None:
        """
        Ask for the members of C{room}: answered with a L{Presence} event.
        """
        self.service.spend(self)
        name = self.roomOrCurrent(room, mustBeMember=False)
        self.service.who(self, name)

    def listRooms(self) -> None:
        """
        Ask for all rooms: answered with a L{RoomList} event.
        """
        self.service.spend(self)
        self.client.deliver(RoomList(self.service.roomList()))

    def history(
        self, room: str | None = None, limit: int = 20, before: int | None = None, after: int | None = None
    ) -> None:
        """
        Ask for past messages: answered with a L{History} event. With
        C{before}, the last C{limit} messages with ids below it; with
        C{after}, the first C{limit} messages with ids above it (and below
        C{before} when both are given).
        """
        self.service.spend(self)
        name = self.roomOrCurrent(room, mustBeMember=False)
        self.service.messages.history(self, name, limit, before, after)

    def whois(self, nick: str) -> MemberInfo:
        """
        What the service can tell about the member called C{nick}; refused
        with C{no-such-nick} when nobody online has that nick.
        """
        self.service.spend(self)
        info = self.service.nicks.info(nick)
        if info is None:
            raise ChatError("no-such-nick", "nobody called %s is online" % (nick,))
        return info

    def setAway(self, message: str) -> None:
        """
        Say that this member is away, with C{message} (at most L{AWAY_MAX}
        characters), or back with C{""}: the members that share a room
        with it get an L{AwayChanged} event.
        """
        self.service.spend(self)
        if not isinstance(message, str):
            raise ChatError("bad-request", "an away message is text")
        message = message.strip()
        if len(message) > AWAY_MAX:
            raise ChatError("too-long", "away messages are at most %d characters" % (AWAY_MAX,))
        self.service.setAway(self, message)

    def roomTopic(self, room: str | None = None) -> tuple[str, str, str, float]:
        """
        The topic of any C{room} (default: current), as the cluster knows
        it: C{(room, topic, set by, set at)}; the topic is C{""} when there
        is none, the time 0 when it is not known (a topic set on another
        node before this node had the room).
        """
        name = self.roomOrCurrent(room, mustBeMember=False)
        topic, by, at = self.service.topicOf(name)
        return name, topic, by, at

    def roomOperators(self, room: str | None = None) -> list[str]:
        """
        The nicks of C{room}'s operators connected to this node (server
        admins among its members included), sorted.
        """
        return self.service.operatorsOf(self.roomOrCurrent(room, mustBeMember=False))

    def roomBans(self, room: str | None = None) -> list[str]:
        """
        The bans (nick keys and addresses) of C{room} (default: current),
        sorted; for its members.
        """
        self.service.spend(self)
        return self.service.moderation.bansOf(self, self.roomOrCurrent(room))

    def login(self, nick: str, password: str) -> Deferred[str]:
        """
        Prove with C{password} that this connection is the registered C{nick}
        and take that nick. Fires with the nick, or fails with L{ChatError}.
        """
        self.service.spend(self)
        return self.service.nicks.login(self, nick, password)

    def kick(self, nick: str, reason: str = "", room: str | None = None) -> str:
        """
        Put C{nick} out of C{room} (default: current); for the room's
        operators and server admins. Returns the nick kicked.
        """
        self.service.spend(self)
        return self.service.moderation.kick(self, self.roomOrCurrent(room), nick, reason)

    def ban(self, target: str, reason: str = "", room: str | None = None) -> str:
        """
        Ban a nick or an address from C{room} (and kick whoever matches).
        """
        self.service.spend(self)
        return self.service.moderation.ban(self, self.roomOrCurrent(room), target, reason)

    def unban(self, target: str, room: str | None = None) -> str:
        self.service.spend(self)
        return self.service.moderation.unban(self, self.roomOrCurrent(room), target)

    def setTopic(self, topic: str, room: str | None = None) -> None:
        """
        Set (or with C{""} clear) the topic of C{room}; operators only.
        """
        self.service.spend(self)
        self.service.moderation.setTopic(self, self.roomOrCurrent(room), topic)

    def giveOp(self, nick: str, room: str | None = None) -> str:
        """
        Make C{nick} an operator of C{room}; operators only.
        """
        self.service.spend(self)
        return self.service.moderation.giveOp(self, self.roomOrCurrent(room), nick)

    def serverNotice(self, text: str) -> None:
        """
        Send a notice to everyone on the server; admins only.
        """
        self.service.spend(self)
        if not self.service.nicks.isAdmin(self):
            raise ChatError("not-allowed", "only server admins can send notices")
        self.service.notice(self.service.messages.checkText(text))

    def status(self) -> None:
        """
        Ask for the node's status (connections, rooms, recent errors): server
        admins only; answered with L{Notice} events.
        """
        self.service.spend(self)
        if not self.service.nicks.isAdmin(self):
            raise ChatError("not-allowed", "only server admins can see the status")
        for line in self.service.statusLines():
            self.client.deliver(Notice("status: " + line))

    def quit(self, reason: str = "quit") -> None:
        """
        Leave every room and give up the nick. Safe to call more than once.
        """
        self.service.quit(self, reason)

    def topic(self, room: str | None = None) -> tuple[str, str, str]:
        """
        The topic of C{room} (default: current) as this node knows it:
        C{(room, topic, set by)}, the topic C{""} when there is none.
        """
        name = self.roomOrCurrent(room)
        known = self.rooms.get(name)
        return (name, known.topic, known.topicBy) if known is not None else (name, "", "")

    def roomOrCurrent(self, room: str | None, mustBeMember: bool = True) -> str:
        """
        The canonical name of C{room}, or the current room's when none is
        given; refused when it names no room, or one this member is not in
        (unless C{mustBeMember} is false).
        """
        if room is None or room == "":
            if self.current is None:
                raise ChatError("not-in-room", "you are in no room: /join one first")
            return self.current
        name = normalizeRoom(room)
        if mustBeMember and name not in self.rooms:
            raise ChatError("not-in-room", "you are not in %s" % (name,))
        return name
