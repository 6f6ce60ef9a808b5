# -*- test-case-name: tests.cluster.test_redis -*-
"""
What a node knows of the members of the other nodes (L{Replica}): built
from the shared state it loads and kept current by the bus, so that nick
checks, /who, presence and room lists need no round trip to Redis.
"""

from __future__ import annotations

from itertools import islice
from typing import Iterable, Mapping

from twisted_chat.cluster.protocol import MemberState


class Remote:
    """
    A member of another node: the node, its nick and its rooms.
    """

    __slots__ = ("node", "nick", "rooms")

    def __init__(self, node: str, nick: str, rooms: Iterable[str]) -> None:
        self.node = node
        self.nick = nick
        self.rooms = set(rooms)


class Replica:
    """
    The members of the other nodes, by nick key and by room.
    """

    def __init__(self) -> None:
        #: nick key -> member of another node
        self.remote: dict[str, Remote] = {}
        #: room -> nick key -> nick, of members on other nodes
        self.rooms: dict[str, dict[str, str]] = {}

    def load(self, members: Mapping[str, Mapping[str, MemberState]]) -> None:
        """
        Start again from C{members}: node -> nick key -> state.
        """
        self.remote.clear()
        self.rooms.clear()
        for node, states in members.items():
            for key, state in states.items():
                self.add(node, key, state.nick, state.rooms)

    def setNode(self, node: str, states: Mapping[str, MemberState]) -> None:
        """
        The members of C{node} are C{states} (nick key -> state) now.
        """
        self.dropNode(node)
        for key, state in states.items():
            self.add(node, key, state.nick, state.rooms)

    def dropNode(self, node: str) -> None:
        """
        Forget every member of C{node}.
        """
        for key in [k for k, r in self.remote.items() if r.node == node]:
            self.remove(key)

    def add(self, node: str, key: str, nick: str, rooms: Iterable[str]) -> None:
        """
        C{nick} (key C{key}) is a member of C{node}, in C{rooms}.
        """
        self.remove(key)
        r = self.remote[key] = Remote(node, nick, rooms)
        for name in r.rooms:
            self.rooms.setdefault(name, {})[key] = nick

    def remove(self, key: str) -> Remote | None:
        """
        Forget the member with nick key C{key}; returns it, if known.
        """
        r = self.remote.pop(key, None)
        if r is not None:
            for name in r.rooms:
                self._leave(name, key)
        return r

    def joined(self, node: str, key: str, nick: str, room: str) -> None:
        """
        The member with key C{key} on C{node} joined C{room}.
        """
        r = self.remote.get(key)
        if r is None or r.node != node:
            self.add(node, key, nick, [room])
        else:
            r.rooms.add(room)
            self.rooms.setdefault(room, {})[key] = r.nick

    def parted(self, key: str, room: str) -> None:
        """
        The member with key C{key} left C{room}.
        """
        r = self.remote.get(key)
        if r is not None:
            r.rooms.discard(room)
            self._leave(room, key)

    def _leave(self, room: str, key: str) -> None:
        inRoom = self.rooms.get(room)
        if inRoom is not None:
            inRoom.pop(key, None)
            if not inRoom:
                del self.rooms[room]

    # Queries

    def get(self, key: str) -> Remote | None:
        return self.remote.get(key)

    def roomNicks(self, room: str, limit: int | None = None) -> list[str]:
        inRoom = self.rooms.get(room)
        if not inRoom:
            return []
        return list(inRoom.values() if limit is None else islice(inRoom.values(), limit))

    def roomCount(self, room: str) -> int:
        inRoom = self.rooms.get(room)
        return len(inRoom) if inRoom else 0

    def roomCounts(self) -> dict[str, int]:
        return {name: len(keys) for name, keys in self.rooms.items()}
