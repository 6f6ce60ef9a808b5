# -*- test-case-name: tests.client.test_jsonchat,tests.client.test_links -*-
"""
Where a json-mode conversation stands, as the terminal client keeps it to
resume after a reconnect: L{Resume}.
"""

from __future__ import annotations

from typing import Any

#: a json-mode request or event (JSON values have no static type)
JsonObject = dict[str, Any]


class Resume:
    """
    What a reconnecting client tells the server in its C{hello} (L{hello}),
    and the state the lines it shows depend on.

    It keeps the nick, the rooms joined (in order, with the current one),
    and per room the last message position C{(epoch, id)} seen, which
    L{hello} sends as C{since} so that a reconnecting client gets exactly
    what it missed; the nick's owner C{token} and the highest private id
    seen, which L{hello} sends too. It tells the history that follows a join
    (or a resume) from the answer to a C{/history}, and says which
    messages were seen already, so that none is shown twice.
    """

    def __init__(self, nick: str | None = None) -> None:
        #: the nick we asked for, then the nick the server gave us
        self.nick = nick
        #: rooms we are in, in joining order
        self.rooms: list[str] = []
        #: the room plain text goes to, as the server sees it
        self.current: str | None = None
        #: room -> (epoch, highest message id seen)
        self.positions: dict[str, tuple[str, int]] = {}
        #: whether the server has welcomed us on this connection
        self.welcomed = False
        #: the owner token the server gave us, and the nick it is for
        self.token: str | None = None
        self._tokenNick: str | None = None
        #: the highest private message id seen
        self.privateSince: int | None = None
        # rooms (or None for "the current one") of /history requests not yet
        # answered, oldest first
        self._historyRequests: list[str | None] = []
        # rooms of the welcome whose join events have not arrived yet
        self._helloRooms: list[str] = []
        # rooms we joined whose (join) history has not arrived yet
        self._joinHistories: set[str] = set()
        # (room, epoch, id) of acknowledged messages whose echo has not been
        # seen while a history for their room is on its way (after a resume)
        self._echoes: list[tuple[str, str, int]] = []

    def hello(self) -> JsonObject:
        """
        The first request of a connection: our nick if any (with its owner
        token, if a welcome gave us one for it), and after a reconnect the
        rooms we were in, where we were in each, and the highest private id
        seen.
        """
        request: JsonObject = {"type": "hello"}
        if self.nick:
            request["nick"] = self.nick
            if self.token is not None and self._tokenNick is not None and self.nick.lower() == self._tokenNick.lower():
                request["token"] = self.token
        if self.rooms:
            rooms = list(self.rooms)
            if self.current in rooms:
                # the first room listed becomes the current one
                rooms.remove(self.current)
                rooms.insert(0, self.current)
            request["rooms"] = rooms
            since = {r: {"epoch": e, "id": i} for r, (e, i) in self.positions.items() if r in rooms}
            if since:
                request["since"] = since
        if self.privateSince is not None:
            request["private_since"] = self.privateSince
        # what the welcome and joins tell us is the truth from here on
        self._historyRequests = []
        self._joinHistories = set()
        self.welcomed = False
        return request

    def isMe(self, nick: str) -> bool:
        return self.nick is not None and nick.lower() == self.nick.lower()

    # -- what the server said --

    def tokenGiven(self, token: object) -> None:
        """
        The welcome gave C{token}, if a string, as the owner token of our nick.
        """
        if isinstance(token, str) and token:
            self.token, self._tokenNick = token, self.nick

    def welcomedTo(self, rooms: list[str]) -> None:
        """
        The welcome names C{rooms}: the joins that follow re-add them one by
        one; the first of them is the current one.
        """
        self.rooms = []
        self._helloRooms = list(rooms)
        self.current = rooms[0] if rooms else None

    def joined(self, room: str) -> None:
        """
        We joined C{room} (its history comes next).
        """
        if room not in self.rooms:
            self.rooms.append(room)
        self._joinHistories.add(room)
        if room in self._helloRooms:
            # one of the hello's rooms: the welcome already named the current one
            self._helloRooms.remove(room)
        else:
            self.current = room

    def parted(self, room: str) -> None:
        """
        We left C{room}: its position is forgotten, and the current room is
        the one joined last.
        """
        if room in self.rooms:
            self.rooms.remove(room)
        self.positions.pop(room, None)
        self._joinHistories.discard(room)
        if self.current == room:
            self.current = self.rooms[-1] if self.rooms else None

    def seen(self, room: str, epoch: str, id: int) -> None:
        """
        Message C{id} of C{room} (in C{epoch}) was shown.
        """
        old = self.positions.get(room)
        if old is None or old[0] != epoch or old[1] < id:
            self.positions[room] = (epoch, id)

    def known(self, room: str, epoch: str, id: int) -> bool:
        """
        Whether message C{id} of C{room} was seen already (at or below the
        position kept for the room, in the same epoch).
        """
        old = self.positions.get(room)
        return old is not None and old[0] == epoch and id <= old[1]

    def seenPrivate(self, id: object) -> None:
        """
        The private message C{id} (if an id) was shown.
        """
        if isinstance(id, int) and not isinstance(id, bool):
            if self.privateSince is None or id > self.privateSince:
                self.privateSince = id

    def notRecovered(self, room: str, epoch: str) -> None:
        """
        A resume of C{room} could not find where we were: a position of
        another epoch than C{epoch} is useless now.
        """
        old = self.positions.get(room)
        if old is not None and old[0] != epoch:
            # that position belongs to another id sequence
            del self.positions[room]

    def epochChanged(self, room: str, epoch: str) -> None:
        """
        The server's store lost its messages: positions in the old epoch
        are void; ids start again at 1 in the new one.
        """
        self.positions[room] = (epoch, 0)

    # -- histories --

    def historyRequested(self) -> None:
        """
        We asked for the history of the current room.
        """
        self._historyRequests.append(self.current)

    def answersRequest(self, room: str) -> bool:
        """
        Whether a C{history} event for C{room} answers one of our C{/history}
        requests (consuming that request), rather than coming with a join.
        """
        if room in self._joinHistories:
            # the history that follows our own join of the room
            self._joinHistories.remove(room)
            return False
        for i, wanted in enumerate(self._historyRequests):
            if wanted is None or wanted == room:
                del self._historyRequests[i]
                return True
        return False

    # -- our own messages --

    def acknowledged(self, room: str, epoch: str, id: int) -> None:
        """
        The server stored our message C{id} of C{room}.
        """
        # The echo comes before the ack, except for a message sent again
        # after a resume: the server acknowledges the first one at once,
        # and its echo may still be on its way in the room's history.
        self._echoes.append((room, epoch, id))
        self.echoesPending()

    def echoesPending(self) -> bool:
        """
        Whether an acknowledged message of ours has not been shown yet while
        the history that will show it is still on its way (it was sent again
        after a resume, and acknowledged before the rejoin's history came).
        """
        waiting = self._helloRooms + list(self._joinHistories)
        self._echoes = [
            (room, epoch, id) for room, epoch, id in self._echoes if room in waiting and not self.known(room, epoch, id)
        ]
        return bool(self._echoes)
