# -*- test-case-name: tests.core.test_moderation -*-
"""
Room moderation: operators (the first member of a room, and whom they
make one; server admins everywhere), kicks, bans of nicks and addresses,
topics; and the same coming from operators on other nodes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import Notice, TopicChanged
from twisted_chat.core.names import checkNick, nickKey

if TYPE_CHECKING:
    from twisted_chat.core.member import Member
    from twisted_chat.core.nicks import Nicks
    from twisted_chat.core.parts import Host
    from twisted_chat.core.room import Room


def _nicklike(text: str) -> bool:
    """
    Whether C{text} could be a nick (else a ban names an address).
    """
    try:
        checkNick(text)
    except ChatError:
        return False
    return True


class Moderation:
    """
    What room operators (and server admins) do, here and from other nodes.
    """

    _log = Logger()

    def __init__(self, host: Host, nicks: Nicks) -> None:
        self.host = host
        self.nicks = nicks

    # Flood control: the server's own moderation

    def spend(self, member: Member) -> None:
        """
        Charge one request to C{member}'s flood budget. Nothing is refused
        here: front-ends ask C{member.floodWait()} before they hand a request
        over, and hold it as long as it says (see L{twisted_chat.core.limits}).
        """
        settings = self.host.settings
        rate = settings.floodRate
        if rate > 0:
            member.flood.spend(self.host.now(), rate, settings.floodBurst)

    def disconnectFlooder(self, member: Member, waiting: int) -> None:
        """
        A front-end holds more than C{--flood-kick} requests of C{member}
        (C{waiting}) that wait for flood control: close its connection and
        take it out of the chat (the others see it leave as C{flooding}).
        """
        if member.gone:
            return
        self._log.warn(
            "disconnecting {nick} from {peer}: flooding ({waiting} requests waiting)",
            nick=member.nick,
            peer=member.peer,
            waiting=waiting,
        )
        self.host.stats.refused("flood")
        # (out of the chat first: the others see why it left, whatever the
        # connection's close reports)
        self.host.quit(member, "flooding")
        try:
            member.client.close("disconnected for flooding: more than %d requests waiting" % (self.host.settings.floodKick,))
        except Exception:
            self._log.failure("closing {nick} failed", nick=member.nick)

    def isBanned(self, room: Room[Member], member: Member) -> bool:
        return nickKey(member.nick) in room.bans or (member.host != "" and member.host in room.bans)

    def _checkOp(self, member: Member, room: Room[Member]) -> None:
        if member not in room.ops and not self.nicks.isAdmin(member):
            raise ChatError("not-allowed", "only operators of %s can do that" % (room.name,))

    def _roomFor(self, member: Member, name: str) -> Room[Member]:
        room = self.host.rooms.get(name)
        if room is None or member not in room.members:
            raise ChatError("not-in-room", "you are not in %s" % (name,))
        return room

    def kick(self, member: Member, name: str, nick: str, reason: str) -> str:
        room = self._roomFor(member, name)
        self._checkOp(member, room)
        target = self.nicks.lookup(checkNick(nick))
        why = "kicked by %s" % (member.nick,) + (": " + reason if reason else "")
        # (its connections on other nodes too: its owner's other devices)
        remote = self.host.broker.kickRemote(member, name, nick, why)
        connections = [c for c in self.nicks.connectionsOf(nickKey(nick)) if c in room.members]
        if target is None or not connections:
            if remote:
                self._log.info("{op} kicked {nick} from {room} (on another node)", op=member.nick, nick=nick, room=name)
                return self.host.broker.remoteNick(nickKey(nick)) or nick
            raise ChatError("no-such-nick", "%s is not in %s" % (nick, name))
        self._log.info("{op} kicked {nick} from {room}", op=member.nick, nick=target.nick, room=name)
        # (every connection of the nick: the room sees it leave once)
        for c in connections:
            self.host.leave(c, name, why)
        return target.nick

    def ban(self, member: Member, name: str, target: str, reason: str) -> str:
        room = self._roomFor(member, name)
        self._checkOp(member, room)
        if not isinstance(target, str) or not target.strip():
            raise ChatError("bad-request", "ban whom? a nick or an address")
        target = target.strip()
        other = self.nicks.lookup(target) if _nicklike(target) else None
        host = other.host if other is not None else ""
        self.addBan(room, target.lower(), host)
        self._log.info("{op} banned {target} from {room}", op=member.nick, target=target, room=name)
        why = "banned by %s" % (member.nick,) + (": " + reason if reason else "")
        self._partBanned(room, why, spare=member)
        self.host.broker.banned(name, target.lower(), host, why)
        return target

    def addBan(self, room: Room[Member], key: str, host: str) -> None:
        """
        Ban C{key} (a nick key or an address) from C{room}, and with a nick
        the address it came from, unless that address was banned already.
        """
        if host and host not in room.bans:
            room.banHosts[key] = host
        room.bans.add(key)
        if host:
            room.bans.add(host)

    def _partBanned(self, room: Room[Member], why: str, spare: Member | None = None) -> None:
        for m in room.snapshot():
            if m is not spare and self.isBanned(room, m):
                self.host.leave(m, room.name, why)

    def unban(self, member: Member, name: str, target: str) -> str:
        room = self._roomFor(member, name)
        self._checkOp(member, room)
        key = target.strip().lower() if isinstance(target, str) else ""
        if key not in room.bans:
            raise ChatError("bad-request", "%s is not banned from %s" % (target, name))
        self._removeBan(room, key)
        self.host.broker.unbanned(name, key)
        return key

    def _removeBan(self, room: Room[Member], key: str) -> None:
        room.bans.discard(key)
        host = room.banHosts.pop(key, None)
        if host is not None:
            room.bans.discard(host)

    def setTopic(self, member: Member, name: str, topic: str) -> None:
        room = self._roomFor(member, name)
        self._checkOp(member, room)
        topic = topic.strip() if isinstance(topic, str) else ""
        if len(topic) > 300:
            raise ChatError("too-long", "topics are at most 300 characters")
        room.topic = topic
        room.topicBy = member.nick
        room.topicAt = now = self.host.now()
        event = TopicChanged(name, topic, member.nick, now)
        self.host.broadcast(room, event)
        self.host.broker.topicChanged(event)

    def bansOf(self, member: Member, name: str) -> list[str]:
        """
        The bans of room C{name} (nick keys and addresses), for its members.
        """
        return sorted(self._roomFor(member, name).bans)

    def giveOp(self, member: Member, name: str, nick: str) -> str:
        room = self._roomFor(member, name)
        self._checkOp(member, room)
        target = self.nicks.lookup(checkNick(nick))
        remote = self.host.broker.opRemote(name, nick)
        if target is None or not any(c in room.members for c in self.nicks.connectionsOf(nickKey(nick))):
            if remote:
                return self.host.broker.remoteNick(nickKey(nick)) or nick
            raise ChatError("no-such-nick", "%s is not in %s" % (nick, name))
        self.remoteOp(name, target.nick)
        return target.nick

    def remoteTopic(self, event: TopicChanged) -> None:
        room = self.host.rooms.get(event.room)
        if room is not None:
            room.topic, room.topicBy, room.topicAt = event.topic, event.by, event.time
            self.host.broadcast(room, event)

    def remoteBan(self, name: str, key: str, host: str, why: str) -> None:
        room = self.host.rooms.get(name)
        if room is None:
            return
        if not host:
            # (a nick banned on another node: its address, if it is here)
            other = self.nicks.lookup(key) if _nicklike(key) else None
            host = other.host if other is not None else ""
        self.addBan(room, key, host)
        self._partBanned(room, why)

    def remoteUnban(self, name: str, key: str) -> None:
        room = self.host.rooms.get(name)
        if room is not None:
            self._removeBan(room, key)

    def remoteOp(self, name: str, nick: str) -> None:
        room = self.host.rooms.get(name)
        if room is None:
            return
        for target in self.nicks.connectionsOf(nickKey(nick)):
            if target in room.members:
                room.ops.add(target)
                self.host.send(target, Notice("you are now an operator of %s" % (name,)))

    def remoteKick(self, name: str, nick: str, why: str) -> None:
        targets = [c for c in self.nicks.connectionsOf(nickKey(nick)) if name in c.rooms]
        if targets:
            self._log.info("{nick} kicked from {room} by another node", nick=targets[0].nick, room=name)
        for target in targets:
            self.host.leave(target, name, why)
