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
        # history requests not yet answered, oldest first: the room (or
        # None for "the current one") of a /history, or a Hole being fetched
        self._historyRequests: list[str | Hole | None] = []
        #: room -> the messages a history the server could not read left out
        self.holes: dict[str, Hole] = {}
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
        for hole in self.holes.values():
            # (asked on the lost connection: ask again on this one)
            hole.asked = None
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
        self.holes.pop(room, None)
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
        self.holes.pop(room, None)

    # -- histories --

    def historyRequested(self) -> None:
        """
        We asked for the history of the current room.
        """
        self._historyRequests.append(self.current)

    def answersRequest(self, room: str) -> bool | Hole:
        """
        Whether a C{history} event for C{room} answers one of our C{/history}
        requests (consuming that request), rather than coming with a join;
        the L{Hole} it fills when it answers the request for one.
        """
        if room in self._joinHistories:
            # the history that follows our own join of the room
            self._joinHistories.remove(room)
            return False
        for i, wanted in enumerate(self._historyRequests):
            if wanted is None or wanted == room or (isinstance(wanted, Hole) and wanted.room == room):
                del self._historyRequests[i]
                return wanted if isinstance(wanted, Hole) else True
        return False

    # -- holes: what a history the server could not read left out --

    def historyUnavailable(self, room: str, epoch: str) -> None:
        """
        The history of our join (or resume) of C{room} could not be read:
        what came after the position we had (in C{epoch}; from the start
        without one) is fetched once the first live message tells where
        it ends (see L{holeToFetch}).
        """
        old = self.positions.get(room)
        self.holes[room] = Hole(room, epoch, old[1] if old is not None and old[0] == epoch else 0)

    def holeToFetch(self, room: str, epoch: str, id: int, now: float) -> Hole | None:
        """
        Live message C{id} of C{room} (in C{epoch}) is about to be shown:
        the hole before it to ask for now, if any (the first live message
        ends the hole; it is asked for again, at most every L{Hole.AGAIN}
        seconds, until an answer is not C{unavailable}).
        """
        hole = self.holes.get(room)
        if hole is None or hole.epoch != epoch:
            return None
        if hole.before is None:
            if id <= hole.after + 1:
                # nothing was left out
                del self.holes[room]
                return None
            hole.before = id
        elif hole.asked is not None and now - hole.asked < Hole.AGAIN:
            return None
        hole.asked = now
        if not any(wanted is hole for wanted in self._historyRequests):
            # (one entry a hole: a request answered with an error instead
            # of a history leaves its entry, which the next answer takes)
            self._historyRequests.append(hole)
        return hole

    def holeFilled(self, hole: Hole) -> None:
        """
        The answer to the request for C{hole} came with its messages.
        """
        if self.holes.get(hole.room) is hole:
            del self.holes[hole.room]

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


class Hole:
    """
    The messages of C{room} a history the server could not read left out:
    those of C{epoch} after id C{after} (0: every one), up to C{before},
    the first live message after it (C{None} until it comes). C{asked}:
    when we last asked for them.
    """

    #: seconds between two requests for a hole, while the answers are
    #: C{unavailable}
    AGAIN = 5.0
    #: the most messages one request asks for (the server's cap)
    MOST = 200
    #: how many are asked for after a join that showed nothing (as a
    #: join's history)
    FRESH = 50

    def __init__(self, room: str, epoch: str, after: int) -> None:
        self.room = room
        self.epoch = epoch
        self.after = after
        self.before: int | None = None
        self.asked: float | None = None

    def request(self) -> JsonObject:
        """
        The C{history} request for the hole (once C{before} is known).
        """
        assert self.before is not None
        limit = min(self.before - 1 - self.after, self.MOST) if self.after else self.FRESH
        return {"type": "history", "room": self.room, "before": self.before, "limit": limit}

    def wider(self) -> bool:
        """
        Whether more messages may be missing than one request gets.
        """
        return self.before is not None and self.after > 0 and self.before - 1 - self.after > self.MOST
