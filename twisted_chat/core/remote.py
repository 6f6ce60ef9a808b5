# -*- test-case-name: tests.cluster.test_redis -*-
"""
What other nodes tell this one: the service of a node as its broker sees
it (L{IClusterEvents}). Moderation from other nodes is the moderation's
(L{twisted_chat.core.moderation}), nick take-overs the nicks'
(L{twisted_chat.core.nicks}); the rest is here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from twisted.logger import Logger
from zope.interface import implementer

from twisted_chat.core.events import EpochChanged, Joined, Message, NickChanged, Parted, Private, TopicChanged
from twisted_chat.core.interfaces import IClusterEvents
from twisted_chat.core.names import nickKey

if TYPE_CHECKING:
    from twisted_chat.core.member import Member
    from twisted_chat.core.moderation import Moderation
    from twisted_chat.core.nicks import Nicks
    from twisted_chat.core.parts import Host
    from twisted_chat.core.room import Room


@implementer(IClusterEvents)
class ClusterEvents:
    """
    The service of one node, as the broker sees it.
    """

    _log = Logger()

    def __init__(self, host: Host, nicks: Nicks, moderation: Moderation, deliver: Callable[[Message], None]) -> None:
        self.host = host
        self.nicks = nicks
        self.moderation = moderation
        #: hands a stored room message to this node's members of its room
        self.deliverMessage = deliver

    def now(self) -> float:
        return self.host.now()

    def isRunning(self) -> bool:
        return self.host.isRunning()

    def localMembers(self) -> list[Member]:
        # (a nick connected several times, once: the cluster knows nicks)
        devices = self.nicks.devices
        if not devices:
            return list(self.host.members)
        return [m for m in self.host.members if nickKey(m.nick) not in devices or self.nicks.byKey.get(nickKey(m.nick)) is m]

    def localRooms(self) -> list[str]:
        return list(self.host.rooms)

    def remoteTyping(self, room: str, nick: str, state: str) -> None:
        self.host.conversation.remoteTyping(room, nick, state)

    def remoteRead(self, nick: str, room: str, id: int) -> None:
        self.host.conversation.readMarker(nick, room, id)

    def hasRoom(self, name: str) -> bool:
        return name in self.host.rooms

    def knownTokens(self, tokens: dict[str, str]) -> None:
        # (the cluster's: a token issued here that Redis did not take,
        # because another node saved one for the nick first, gives way)
        self.nicks.tokens.update(tokens)

    def remoteJoined(self, name: str, nick: str, time: float) -> None:
        room = self.host.rooms.get(name)
        if room is not None and self.host.roomSize(room) <= self.host.announceLimit and not self._here(nick, room):
            self.host.notices.announce(room, Joined(name, nick, time))

    def remoteParted(self, name: str, nick: str, reason: str, time: float) -> None:
        room = self.host.rooms.get(name)
        if room is not None and self.host.roomSize(room) < self.host.announceLimit and not self._here(nick, room):
            self.host.notices.announce(room, Parted(name, nick, reason, time))

    def _here(self, nick: str, room: Room[Member]) -> bool:
        """
        Whether a connection of C{nick} on this node is in C{room} (its
        owner, connected here and on another node).
        """
        return any(m in room.members for m in self.nicks.connectionsOf(nickKey(nick)))

    def epochChanged(self, previous: str, epoch: str) -> None:
        """
        The shared store lost its messages and started epoch C{epoch}
        (ids start again at 1): every member is told, in every room.
        """
        self._log.warn(
            "the message store was reset: epoch {previous} is gone, new epoch {epoch}", previous=previous, epoch=epoch
        )
        now = self.host.now()
        for name, room in list(self.host.rooms.items()):
            self.host.broadcast(room, EpochChanged(name, epoch, previous, now))

    def remoteNickChanged(self, old: str, new: str, rooms: list[str], time: float) -> None:
        shared: dict[Member, list[str]] = {}
        for name in rooms:
            room = self.host.rooms.get(name)
            if room is not None:
                for m in room.members:
                    shared.setdefault(m, []).append(name)
        for m, names in shared.items():
            self.host.send(m, NickChanged(old, new, tuple(names), time))

    def remotePrivate(self, msg: Private) -> None:
        # (to the recipient, and to the sender's devices here: each once)
        targets = dict.fromkeys(self.nicks.connectionsOf(nickKey(msg.recipient)))
        targets.update(dict.fromkeys(self.nicks.connectionsOf(nickKey(msg.sender))))
        for target in targets:
            self.host.send(target, msg)

    def remoteTopic(self, event: TopicChanged) -> None:
        self.moderation.remoteTopic(event)

    def remoteBan(self, room: str, key: str, host: str, why: str) -> None:
        self.moderation.remoteBan(room, key, host, why)

    def remoteUnban(self, room: str, key: str) -> None:
        self.moderation.remoteUnban(room, key)

    def remoteOp(self, room: str, nick: str) -> None:
        self.moderation.remoteOp(room, nick)

    def remoteKick(self, room: str, nick: str, why: str) -> None:
        self.moderation.remoteKick(room, nick, why)

    def tokenHash(self, key: str) -> str | None:
        return self.nicks.tokens.get(key)

    def sharedElsewhere(self, key: str) -> None:
        self.nicks.sharedElsewhere(key)

    def replaced(self, key: str) -> None:
        self.nicks.replaced(key)

    def nickTaken(self, key: str) -> None:
        self.nicks.nickTaken(key)
