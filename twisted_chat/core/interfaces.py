# -*- test-case-name: tests.core.test_service -*-
"""
The boundaries between the chat service and the rest: front-ends on one
side (L{IChatClient}), storage on the other (L{IMessageStore}).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Collection, Protocol, Sequence, Union

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from twisted_chat.core.events import Event, Joined, Message, Parted, Private, TopicChanged


def resumePosition(afterId: int, last: int, limit: int) -> str:
    """
    What L{IMessageStore.since} makes of a client's position C{afterId} in a
    room whose last id is C{last}: C{"gone"} (ahead of the room, or more
    than C{limit} messages behind), C{"current"} (nothing missed), or
    C{"fetch"} (read the messages after it; gone too if the first of them
    was pruned).
    """
    if afterId < 0 or afterId > last or last - afterId > limit:
        return "gone"
    if afterId == last:
        return "current"
    return "fetch"


_WORD = re.compile(r"\w+")


def searchWords(text: str) -> list[str]:
    """
    The words of a search (case-folded): a message matches when each of
    them starts one of its words.
    """
    return [w.casefold() for w in _WORD.findall(text)][:16]


def textMatches(words: list[str], text: str) -> bool:
    """
    Whether every one of C{words} (from L{searchWords}) starts a word of
    C{text}: how the stores without an index search.
    """
    have = [w.casefold() for w in _WORD.findall(text)]
    return all(any(h.startswith(w) for h in have) for w in words)


class MemberView(Protocol):
    """
    A member of this node as a broker sees it (a
    L{twisted_chat.core.member.Member}): its nick, the names of the rooms
    it is in, whether it has left, and whether it is its nick's owner
    (C{owner}: by its token; C{authenticated}: the key of the nick it
    logged in as, or None).
    """

    @property
    def nick(self) -> str: ...

    @property
    def owner(self) -> bool: ...

    @property
    def authenticated(self) -> str | None: ...

    @property
    def rooms(self) -> Collection[str]: ...

    @property
    def gone(self) -> bool: ...


class IChatClient(Interface):
    """
    One connection as the service sees it: the service calls it back.

    Front-ends implement this (as C{IChatClient} in twisted.words); they turn
    events into bytes. The service never touches a socket.

    A client may also have a C{fastSink} attribute (optional, so not an
    attribute of this interface): an object through which room messages
    reach it together with other members', without a C{deliver()} call each.
    It has a C{key} (sinks with the same key take the same bytes) and a
    C{batcher} whose C{broadcast(groups, event)} the service calls with
    C{(key, sinks)} groups (see L{twisted_chat.frontends.write}).
    """

    kind = Attribute("A short name of the front-end, e.g. 'line' or 'ws-text'.")

    def deliver(event: Event) -> None:
        """
        Show C{event} (one of the classes in L{twisted_chat.core.events}) to the
        user. Must not block; may drop the connection if the peer is too slow.
        An exception raised here removes this client, never anyone else.
        """

    def close(reason: str, reconnectAfter: float | None = None) -> None:
        """
        The service ends this connection (shutdown, flooding): tell the user
        C{reason} (and, on a shutdown, after how many seconds to reconnect)
        and close.
        """


class IMessageStore(Interface):
    """
    Where messages live: ids, epochs and history.

    The store numbers messages: L{append} gives a message the next id of
    its room (or of the private messages) as it stores it, in the order of
    the appends, and fires with it once it is durable; the service
    delivers it only then, so delivery follows commit order. An append that
    fails takes no id: a room's ids within an epoch are 1, 2, 3, … with no
    hole. Failures an operator fixes outside the daemon (a full disk, an
    unreachable database) are L{twisted_chat.core.errors.StoreUnavailable}.
    """

    epoch = Attribute("A short string naming this store's unbroken id sequence.")

    def open() -> Deferred[None]:
        """
        Prepare the store; returns a Deferred that fires when it is ready.
        """

    def lastId(room: str) -> int:
        """
        The highest id stored in C{room} (0 if none; pruning does not lower
        it); 0 when the store does not know it locally. Synchronous.
        """

    def append(message: Union[Message, Private], ref: str | None = None) -> Deferred[Union[Message, Private]]:
        """
        Store one L{Message} or L{Private} (with the client's C{ref}, if
        any), giving it its id (whatever C{message.id} was); returns a
        Deferred that fires once it is durable, with the stored message.
        Deferreds fire in the order of the appends.

        An L{Update} (L{PrivateUpdate}) takes the next id the same way and
        changes its message in the same step (a deletion also removes the
        text of the message's earlier edits, an edit of a deleted message
        keeps no text); the store fills in its C{original} and C{author}.
        L{recent} then returns the message as it is now; L{since} returns
        both, in id order.
        """

    def recent(room: str, limit: int, before: int | None = None) -> Deferred[list[Message]]:
        """
        A Deferred list of at most C{limit} messages of C{room}, oldest first,
        with ids below C{before} when given; messages only, as they are now
        (updates take ids but are not counted).
        """

    def since(room: str, epoch: str, afterId: int, limit: int) -> Deferred[list[Message] | None]:
        """
        A Deferred list of exactly the entries (messages as they are now,
        and updates) after C{afterId}, or C{None}
        when that position cannot be recovered (other epoch, pruned, or more
        than C{limit} messages missed).
        """

    def privateFor(nick: str, afterId: int | None, limit: int) -> Deferred[list[Private]]:
        """
        A Deferred list of the last C{limit} private messages to or from
        C{nick} with ids above C{afterId}, oldest first (with C{afterId},
        the updates of private messages among them: L{PrivateUpdate}).
        """

    def get(room: str, id: int) -> Deferred[Message | None]:
        """
        The entry C{id} of C{room} as it is now (a L{Message}, or an
        L{Update}), or None when there is none (never was, or pruned).
        """

    def getPrivate(nick: str, id: int) -> Deferred[Private | None]:
        """
        The private entry C{id} to or from C{nick} as it is now, or None
        (a store may return an entry of other nicks: the caller checks).
        """

    def unread(room: str, nick: str, afterId: int) -> Deferred[tuple[int, int]]:
        """
        (messages of C{room} after C{afterId} not from C{nick} and not
        deleted, how many of them mention C{nick}), of those kept.
        """

    def saveRead(nickKey: str, room: str, id: int) -> Deferred[None]:
        """
        Keep the read position of a nick in a room.
        """

    def reads(nickKey: str) -> Deferred[dict[str, int]]:
        """
        The read positions of a nick: room -> id.
        """

    def search(
        rooms: list[str], nick: str | None, text: str, before: int | None, limit: int
    ) -> Deferred[list[Message | Private]]:
        """
        At most C{limit} messages of C{rooms} (with ids below C{before}),
        and with C{nick} its private messages, in which each word of
        C{text} starts a word (L{searchWords}), newest first; never a
        deleted one.
        """

    def refs(sinceTime: float) -> list[tuple[str, str, Union[Message, Private]]]:
        """
        (sender nick key, client ref, message) of the messages stored with a
        ref since C{sinceTime}, for idempotent resends across restarts.
        Synchronous; called once at start-up.
        """

    def tokens() -> dict[str, str]:
        """
        Nick key -> hash of its owner token. Synchronous; start-up only.
        """

    def saveToken(nickKey: str, tokenHash: str) -> Deferred[None]:
        """
        Remember the owner token (hash) of a nick; returns a Deferred.
        """

    def prune(now: float) -> Deferred[int]:
        """
        Forget what retention no longer keeps; a Deferred number of messages.
        """

    def close() -> Deferred[None]:
        """
        Flush and close; returns a Deferred.
        """

    def ping() -> Deferred[None]:
        """
        A Deferred that fires when the store answers (readiness probes).
        """


class IClusterEvents(Interface):
    """
    The service of a node as its broker sees it: what the broker may ask
    of it, and what it tells it happened elsewhere in the cluster (the
    other half of L{IBroker}, handed over by L{IBroker.attach}). A broker
    uses nothing else of the service.
    """

    def now() -> float:
        """
        The time, from the service's clock.
        """

    def isRunning() -> bool:
        """
        Whether the service is up; C{False} once it is stopping (a node
        that leaves announces its members once, not one by one).
        """

    def localMembers() -> Sequence[MemberView]:
        """
        The members connected to this node (each with its C{nick}, the
        C{rooms} it is in, and C{gone}).
        """

    def localRooms() -> list[str]:
        """
        The rooms that have members on this node.
        """

    def hasRoom(name: str) -> bool:
        """
        Whether room C{name} has members on this node (in constant time:
        asked for every message on the bus).
        """

    def knownTokens(tokens: dict[str, str]) -> None:
        """
        Owner tokens (nick key -> hash) as the cluster keeps them: the
        first saved for a nick is its token everywhere (one this node
        issued while it could not save it, for a nick another node gave
        meanwhile, is replaced).
        """

    def deliverMessage(message: Message) -> None:
        """
        Hand a stored room L{Message} to this node's members of its room, in
        id order with the others.
        """

    def epochChanged(previous: str, epoch: str) -> None:
        """
        The shared store lost its messages: ids start again at 1 in
        C{epoch}. Every member is told.
        """

    def remoteJoined(room: str, nick: str, time: float) -> None:
        """
        C{nick} joined C{room} on another node (the first of its nodes to
        be in it: the broker does not tell the others); announced unless
        a connection of the nick here is in the room already.
        """

    def remoteParted(room: str, nick: str, reason: str, time: float) -> None:
        """
        C{nick} left C{room} on another node (or with it, when it died),
        and no other node has it in the room; announced unless a
        connection of the nick here is still in it.
        """

    def remoteNickChanged(old: str, new: str, rooms: list[str], time: float) -> None:
        """
        A member of another node, in C{rooms}, is now called C{new}.
        """

    def remoteTopic(event: TopicChanged) -> None:
        """
        A topic was set on another node (L{TopicChanged}).
        """

    def remotePrivate(message: Private) -> None:
        """
        A private message (L{Private}) to a member of this node, or from
        a nick connected here too (its other devices see what it sent).
        """

    def remoteTyping(room: str, nick: str, state: str) -> None:
        """
        C{nick}, a member of another node, is typing in C{room}.
        """

    def remoteRead(nick: str, room: str, id: int) -> None:
        """
        The owned C{nick} read C{room} up to C{id} on another node: its
        connections here are told.
        """

    def remoteBan(room: str, key: str, host: str, why: str) -> None:
        """
        C{key} (a nick key or an address, and C{host} with a nick) was banned
        from C{room} on another node.
        """

    def remoteUnban(room: str, key: str) -> None:
        """
        C{key} was unbanned from C{room} on another node.
        """

    def remoteOp(room: str, nick: str) -> None:
        """
        An operator on another node made C{nick}, a member here, an operator
        of C{room}.
        """

    def remoteKick(room: str, nick: str, why: str) -> None:
        """
        An operator on another node put C{nick}, a member here, out of C{room}.
        """

    def tokenHash(key: str) -> str | None:
        """
        The hash of the owner token of the nick with key C{key}, as this
        node knows it, if any.
        """

    def sharedElsewhere(key: str) -> None:
        """
        The owner of the nick with key C{key} is connected on another node
        too: a connection here that has the nick without being its owner
        gives way; the owner's own connections stay.
        """

    def replaced(key: str) -> None:
        """
        The owner of the nick with key C{key} connected to another node: the
        stale connection here gives way.
        """

    def nickTaken(key: str) -> None:
        """
        Another node gave the nick with key C{key} to someone else at the
        same moment: the member here that has it becomes a guest.
        """


class IBroker(Interface):
    """
    How the service shares a conversation with other nodes.

    The service calls the broker after each change it made locally (and
    delivered to its own members); a broker tells the other nodes, and calls
    the service's C{remote*} methods for what happened elsewhere. The
    in-process broker (L{twisted_chat.core.broker.LocalBroker}) has no other
    nodes: it delivers room messages at once and knows no remote members.
    """

    def attach(events: IClusterEvents) -> None:
        """
        Called once by the service it serves, with what the broker may ask
        of it and tell it (L{IClusterEvents}).
        """

    def remoteNick(key: str) -> str | None:
        """
        The nick with key C{key} if a member on another node holds it.
        """

    def remoteRoomNicks(room: str, limit: int | None = None) -> list[str]:
        """
        The nicks of C{room}'s members on other nodes (at most C{limit}).
        """

    def remoteRoomCount(room: str) -> int:
        """
        How many members C{room} has on other nodes (in constant time).
        """

    def remoteRooms() -> dict[str, int]:
        """
        Room name -> members on other nodes, for every room that has some.
        """

    def remoteInRoom(key: str, room: str) -> bool:
        """
        Whether the nick with key C{key} is in C{room} on another node (its
        owner connected there too, say).
        """

    def nextGuest() -> int | None:
        """
        A guest number no other node hands out, or None to count locally.
        """

    def topicOf(room: str) -> tuple[str, str] | None:
        """
        (topic, set by) of C{room} as set on any node, or None.
        """

    def memberAdded(member: MemberView, share: bool) -> None:
        """
        A connection registered under C{member.nick}; C{share} when it
        proved to be the nick's owner (its token, or logged in): if another
        node has the nick too, both keep it (one person, several devices).
        """

    def memberGone(member: MemberView) -> None:
        """
        A member left for good (its parts were announced before).
        """

    def joined(member: MemberView, room: str, event: Joined) -> None:
        """
        C{member} joined C{room} (L{Joined} C{event}).
        """

    def parted(member: MemberView, room: str, event: Parted) -> None:
        """
        C{member} left C{room} (L{Parted} C{event}).
        """

    def nickChanged(member: MemberView, old: str, time: float) -> None:
        """
        C{member} is now called C{member.nick}, was C{old}.
        """

    def topicChanged(event: TopicChanged) -> None:
        """
        A topic was set (L{TopicChanged} C{event}).
        """

    def deliverMessage(message: Message) -> Union[Message, Deferred[Message]]:
        """
        Hand a stored room message to the members of its room on every
        node (this one included); returns the message, or a Deferred that
        fires with it once this node's members have it.
        """

    def deliveredUpTo(room: str) -> int | None:
        """
        The last message id of C{room} this node has delivered to its
        members, or C{None} when it never lags behind the store (a history
        read then never holds messages still on their way here).
        """

    def receiving(room: str) -> Union[Deferred[None], None]:
        """
        C{room} has members on this node now (its first one is joining):
        None if this node hears the room's messages already, else a
        Deferred that fires once it does. The joiner's history is read
        after that, so that no message falls between the history and
        what the node hears (see L{twisted_chat.cluster.shards}).
        """

    def readUpTo(room: str, id: int) -> None:
        """
        The first member of C{room} on this node read its history up to
        message C{id} (0: the room has none): where this node's delivery of
        the room starts, if it has no position yet.
        """

    def appendPrivate(message: Private, ref: str | None) -> Deferred[Private]:
        """
        Store a private message (like L{IMessageStore.append}) and route it
        to the other nodes where its recipient, or its sender (another
        device), is connected.
        """

    def typing(room: str, nick: str, state: str) -> None:
        """
        C{nick}, a member here, is typing in C{room} (forwarded already to
        this node's members): tell the other nodes.
        """

    def readMarker(nick: str, room: str, id: int) -> None:
        """
        The owned C{nick} read C{room} up to C{id} (stored, and told to its
        connections here): tell its connections on other nodes.
        """

    def bansOf(room: str) -> dict[str, str]:
        """
        Bans of C{room} given on other nodes: banned nick key or address ->
        the address banned along with that nick (or C{""}).
        """

    def banned(room: str, key: str, host: str, why: str) -> None:
        """
        C{key} (a nick key or an address, and with a nick its C{host}) was
        banned from C{room} here: ban it on every node.
        """

    def unbanned(room: str, key: str) -> None:
        """
        C{key} was unbanned from C{room} here.
        """

    def opRemote(room: str, nick: str) -> bool:
        """
        Make C{nick}, a member of C{room} on other nodes, an operator of
        it there (every node that has it in the room); False when no other
        node has such a member.
        """

    def kickRemote(op: MemberView, room: str, nick: str, why: str) -> bool:
        """
        Put C{nick}, a member of C{room} on other nodes, out of it there
        (every node that has it in the room); False when no other node
        has such a member.
        """
