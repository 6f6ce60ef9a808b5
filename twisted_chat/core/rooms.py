# -*- test-case-name: tests.core.test_service -*-
"""
The rooms of a node: joining (with the room's topic, bans and operators as
the cluster knows them, then its history), leaving, who is in a room, the
list of rooms, and handing a stored message to a room's members here.
"""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import AwayChanged, Joined, Message, Parted, Presence, TopicChanged
from twisted_chat.core.names import nickKey, normalizeRoom
from twisted_chat.core.room import Room, sortedNicks

if TYPE_CHECKING:
    from twisted_chat.core.history import JoinHistory
    from twisted_chat.core.member import Member
    from twisted_chat.core.moderation import Moderation
    from twisted_chat.core.nicks import Nicks
    from twisted_chat.core.parts import Host


class Rooms:
    """
    Joins and leaves of this node's rooms, and who is in them.
    """

    def __init__(self, host: Host, nicks: Nicks, moderation: Moderation, joinHistory: JoinHistory) -> None:
        self.host = host
        self.nicks = nicks
        self.moderation = moderation
        self.joinHistory = joinHistory

    def join(self, member: Member, name: str, since: tuple[str, int] | None) -> tuple[str, bool]:
        """
        C{member} joins room C{name} (see L{Member.join}).
        """
        self.nicks.requireLogin(member)
        name = normalizeRoom(name)
        if name in member.rooms:
            member.current = name
            return name, False
        if len(member.rooms) >= self.host.settings.maxRoomsPerMember:
            raise ChatError(
                "too-many-rooms",
                "you are in %d rooms already (the limit): /part one first" % (len(member.rooms),),
            )
        room = self.host.rooms.get(name)
        fresh = room is None
        if room is None:
            # (with the topic and bans given on other nodes)
            room = Room(name)
            topic = self.host.broker.topicOf(name)
            if topic is not None:
                room.topic, room.topicBy = topic
            for key, host in self.host.broker.bansOf(name).items():
                self.moderation.addBan(room, key, host)
        if self.moderation.isBanned(room, member):
            raise ChatError("banned", "you are banned from %s" % (name,))
        if fresh:
            self.host.rooms[name] = room
            if not self.host.broker.remoteRoomCount(name):
                # (joining a room that has members on other nodes makes
                # nobody an operator)
                room.ops.add(member)
        again = bool(self.nicks.devices) and self.nicks.otherConnectionIn(member, room)
        elsewhere = not fresh and self.host.broker.remoteInRoom(nickKey(member.nick), name)
        room.add(member, again)
        member.rooms[name] = room
        member.current = name
        joined = Joined(name, member.nick, self.host.now())
        if not again:
            self.host.broker.joined(member, name, joined)
        if again or elsewhere or self.roomSize(room) > self.host.announceLimit:
            # Another connection of the nick is in the room, here or on
            # another node (the room sees the nick once), or a big room:
            # only the joiner hears of it.
            self.host.send(member, joined)
        else:
            self.host.notices.announce(room, joined, member)
        self.host.send(member, self._presence(name, room))
        if room.topic:
            self.host.send(member, TopicChanged(name, room.topic, room.topicBy, self.host.now()))
        self.joinHistory.fetch(member, name, since, fresh)
        return name, True

    def leave(self, member: Member, name: str, reason: str) -> str:
        """
        Take C{member} out of room C{name}, telling the room C{reason}.
        """
        room = member.rooms.pop(name)
        self.joinHistory.forget(member, name)
        self.host.conversation.stopTyping(member, name)
        if member.current == name:
            member.current = next(reversed(member.rooms), None) if member.rooms else None
        parted = Parted(name, member.nick, reason, self.host.now())
        again = self.nicks.devices and self.nicks.otherConnectionIn(member, room)
        elsewhere = self.host.broker.remoteInRoom(nickKey(member.nick), name)
        if again or elsewhere or self.roomSize(room) > self.host.announceLimit:
            # (the nick stays in the room through its other connection)
            self.host.send(member, parted)
            room.remove(member, bool(again))
        else:
            # (takes it out of the room once it has been told)
            self.host.notices.announce(room, parted, member)
        if not room.members:
            del self.host.rooms[name]
        if not again:
            self.host.broker.parted(member, name, parted)
        return name

    def roomSize(self, room: Room[Member]) -> int:
        return len(room.members) + self.host.broker.remoteRoomCount(room.name)

    def who(self, member: Member, name: str) -> None:
        room = self.host.rooms.get(name)
        if room is not None:
            self.host.send(member, self._presence(name, room))
        else:
            limit = self.host.announceLimit
            remote = self.host.broker.remoteRoomNicks(name, limit)
            count = self.host.broker.remoteRoomCount(name)
            self.host.send(member, Presence(name, sortedNicks(remote), total=count if count > limit else None))

    def _presence(self, name: str, room: Room[Member]) -> Presence:
        """
        Who is in C{room}: everyone, sorted; in a room bigger than
        C{announceLimit}, the first C{announceLimit} to have joined (sorted)
        and the total, so that a member list never costs O(members) per join.
        """
        members = room.members
        limit = self.host.announceLimit
        cached = room.presence
        if cached is None or cached[0] != limit:
            # (kept until the first `limit` members change: see Room.add)
            # (a nick connected several times is named once)
            cached = room.presence = (limit, sortedNicks(dict.fromkeys(m.nick for m in islice(members, limit))))
        nicks = list(cached[1])
        count = self.host.broker.remoteRoomCount(name)
        shown = len(nicks)
        if count and shown < limit:
            # (a nick connected here and on another node is named once)
            nicks = sortedNicks(dict.fromkeys(nicks + self.host.broker.remoteRoomNicks(name, limit - shown)))
        total = len(members) + count
        if total <= limit:
            return Presence(name, nicks)
        return Presence(name, nicks, total=total)

    def deliverMessage(self, msg: Message) -> None:
        """
        Hand a stored room message to this node's members of its room.
        """
        room = self.host.rooms.get(msg.room)
        if room is not None:
            recipients = len(room.members)
            self.host.broadcast(room, msg)
            self.host.stats.delivered(recipients)

    def roomList(self) -> list[tuple[str, int]]:
        broker = self.host.broker
        counts = dict(broker.remoteRooms())
        several = bool(self.nicks.devices)
        for r in self.host.rooms.values():
            if r.name in counts:
                # (a nick connected here and on another node counts once)
                here = len({k for k in map(nickKey, (m.nick for m in r.members)) if not broker.remoteInRoom(k, r.name)})
            else:
                here = len({m.nick for m in r.members}) if several else len(r.members)
            counts[r.name] = counts.get(r.name, 0) + here
        return sorted(counts.items())

    def topicOf(self, name: str) -> tuple[str, str, float]:
        """
        C{(topic, set by, set at)} of room C{name} as the cluster knows it
        (C{("", "", 0.0)} without a topic; the time 0 when unknown).
        """
        room = self.host.rooms.get(name)
        if room is not None:
            return room.topic, room.topicBy, room.topicAt
        known = self.host.broker.topicOf(name)
        if known is not None and known[0]:
            return known[0], known[1], 0.0
        return "", "", 0.0

    def operatorsOf(self, name: str) -> list[str]:
        """
        The nicks of room C{name}'s operators on this node (its operators,
        and the server admins among its members), sorted.
        """
        room = self.host.rooms.get(name)
        if room is None:
            return []
        return sortedNicks(m.nick for m in room.members if m in room.ops or self.nicks.isAdmin(m))

    def setAway(self, member: Member, message: str) -> None:
        """
        C{member} is away with C{message} (or back, with C{""}): tell each
        member that shares a room with it, once.
        """
        if member.away == message:
            return
        member.away = message
        self.host.notices.noticesFirst(member)
        event = AwayChanged(member.nick, message, self.host.now())
        told: set[Member] = {member}
        for room in member.rooms.values():
            for m in room.snapshot():
                if m not in told:
                    told.add(m)
                    self.host.send(m, event)
