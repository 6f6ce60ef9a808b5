# -*- test-case-name: tests.cluster.test_replica,tests.cluster.test_redis -*-
"""
What a node knows of the members of the other nodes (L{Replica}): built
from the shared state it loads and kept current by the bus, so that nick
checks, /who, presence and room lists need no round trip to Redis.

A nick's owner may be connected on several nodes at once (a phone and a
laptop behind a load balancer): the replica keeps, per nick, one entry
per node, and a room names the nick once while any of them is in it.
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
    The members of the other nodes, by nick key (and node) and by room.
    """

    def __init__(self) -> None:
        #: nick key -> node -> that node's connections of the nick
        self.remote: dict[str, dict[str, Remote]] = {}
        #: node -> nick keys it has
        self.byNode: dict[str, set[str]] = {}
        #: room -> nick key -> nick, of members on other nodes
        self.rooms: dict[str, dict[str, str]] = {}

    def load(self, members: Mapping[str, Mapping[str, MemberState]]) -> None:
        """
        Start again from C{members}: node -> nick key -> state.
        """
        self.remote.clear()
        self.byNode.clear()
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
        for key in list(self.byNode.get(node, ())):
            self.remove(key, node)

    def add(self, node: str, key: str, nick: str, rooms: Iterable[str]) -> None:
        """
        C{nick} (key C{key}) is a member of C{node}, in C{rooms} (its other
        nodes, if any, keep theirs).
        """
        self.remove(key, node)
        r = self.remote.setdefault(key, {})[node] = Remote(node, nick, rooms)
        self.byNode.setdefault(node, set()).add(key)
        for name in r.rooms:
            self.rooms.setdefault(name, {})[key] = nick

    def remove(self, key: str, node: str | None = None) -> Remote | None:
        """
        Forget the member with nick key C{key} on C{node} (None: on every
        node); returns it, if known (one of them, for every node).
        """
        nodes = self.remote.get(key)
        if not nodes:
            return None
        if node is None:
            gone = list(nodes.values())
            del self.remote[key]
        else:
            one = nodes.pop(node, None)
            if one is None:
                return None
            gone = [one]
            if not nodes:
                del self.remote[key]
        for r in gone:
            held = self.byNode.get(r.node)
            if held is not None:
                held.discard(key)
                if not held:
                    del self.byNode[r.node]
            for name in r.rooms:
                self._leave(name, key)
        return gone[0]

    def joined(self, node: str, key: str, nick: str, room: str) -> None:
        """
        The member with key C{key} on C{node} joined C{room}.
        """
        r = self.remote.get(key, {}).get(node)
        if r is None:
            self.add(node, key, nick, [room])
        else:
            r.rooms.add(room)
            self.rooms.setdefault(room, {})[key] = r.nick

    def parted(self, node: str, key: str, room: str) -> None:
        """
        The member with key C{key} on C{node} left C{room}.
        """
        r = self.remote.get(key, {}).get(node)
        if r is not None and room in r.rooms:
            r.rooms.discard(room)
            self._leave(room, key)

    def _leave(self, room: str, key: str) -> None:
        # (the nick stays in the room while another node has it there)
        for r in self.remote.get(key, {}).values():
            if room in r.rooms:
                return
        inRoom = self.rooms.get(room)
        if inRoom is not None:
            inRoom.pop(key, None)
            if not inRoom:
                del self.rooms[room]

    # Queries

    def get(self, key: str) -> Remote | None:
        """
        A member with nick key C{key} on another node (the one that has it
        the longest), if any.
        """
        nodes = self.remote.get(key)
        return next(iter(nodes.values())) if nodes else None

    def nodesOf(self, key: str, room: str | None = None) -> list[str]:
        """
        The other nodes where the nick with key C{key} is connected (and in
        C{room}, if given).
        """
        nodes = self.remote.get(key)
        if not nodes:
            return []
        return [n for n, r in nodes.items() if room is None or room in r.rooms]

    def inRoom(self, key: str, room: str) -> bool:
        """
        Whether the nick with key C{key} is in C{room} on another node.
        """
        inRoom = self.rooms.get(room)
        return inRoom is not None and key in inRoom

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
