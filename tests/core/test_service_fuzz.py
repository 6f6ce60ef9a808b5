"""
Property-based tests (hypothesis) of the chat service
(L{twisted_chat.core.service}) under random sequences of requests from
several members, with flood control on and time on a L{Clock}: its
invariants hold after every step.
"""

from __future__ import annotations

from typing import Callable

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import Message
from twisted_chat.core.names import nickKey
from twisted_chat.core.service import ChatService, Member
from twisted_chat.stores.memory import MemoryStore

from tests.support.fakes import RecordingClient
from tests.support.fuzz import FUZZ


# -- the service under random requests -------------------------------------------


NICKS = st.sampled_from(["alice", "bob", "carol", "Alice", "BOB", "dave", "bad nick", "", "guest-1"])
ROOMS = st.sampled_from(["#lobby", "#dev", "dev", "#ops", "#x", "#Ops", "bad room", "#"])
OPT_ROOM = st.one_of(st.none(), ROOMS)
TEXT = st.sampled_from(["hi", "", " ", "x" * 30, "hello there"])
WHO = st.integers(0, 1000)


class ServiceMachine(RuleBasedStateMachine):
    """
    Several members doing random things to one service, with flood
    control on and time passing at random.
    """

    def __init__(self) -> None:
        RuleBasedStateMachine.__init__(self)
        self.clock = Clock()
        self.clock.advance(1764201600)
        self.service = ChatService(store=MemoryStore(), 
            clock=self.clock, floodRate=5, floodBurst=10, floodKick=20, maxRoomsPerMember=3, maxTextLength=20
        )
        self.service.startService()
        self.members: list[tuple[Member, RecordingClient]] = []
        self.checked: dict[int, int] = {}

    def live(self) -> list[Member]:
        return [m for m, _ in self.members if not m.gone]

    def pick(self, who: int) -> Member:
        """
        One of the connected members: front-ends make no requests for a
        member the service has let go.
        """
        live = self.live()
        return live[who % len(live)]

    def attempt(self, request: Callable[[], object]) -> None:
        """
        Make a request: it is refused with L{ChatError} or it works (its
        Deferred, if any, fires with a result or a L{ChatError}); nothing
        else may escape.
        """
        try:
            result = request()
        except ChatError:
            return
        if isinstance(result, Deferred):
            outcome: list[object] = []
            result.addBoth(outcome.append)
            assert outcome, "an in-memory request did not finish"
            if isinstance(outcome[0], Failure):
                outcome[0].trap(ChatError)

    @rule(nick=st.one_of(st.none(), NICKS), host=st.integers(1, 3))
    def connect(self, nick: str | None, host: int) -> None:
        client = RecordingClient()
        address = "10.0.0.%d" % (host,)
        try:
            member = self.service.connect(client, nick=nick, peer=address + ":1", host=address)
        except ChatError:
            return
        self.members.append((member, client))

    @precondition(lambda self: self.live())
    @rule(who=WHO, room=ROOMS)
    def join(self, who: int, room: str) -> None:
        self.attempt(lambda: self.pick(who).join(room))

    @precondition(lambda self: self.live())
    @rule(who=WHO, room=OPT_ROOM)
    def part(self, who: int, room: str | None) -> None:
        self.attempt(lambda: self.pick(who).part(room))

    @precondition(lambda self: self.live())
    @rule(who=WHO, text=TEXT, room=OPT_ROOM, action=st.booleans(), ref=st.sampled_from([None, "a", "b"]))
    def say(self, who: int, text: str, room: str | None, action: bool, ref: str | None) -> None:
        self.attempt(lambda: self.pick(who).say(text, room, action, ref))

    @precondition(lambda self: self.live())
    @rule(who=WHO, nick=NICKS)
    def nick(self, who: int, nick: str) -> None:
        self.attempt(lambda: self.pick(who).setNick(nick))

    @precondition(lambda self: self.live())
    @rule(who=WHO, nick=NICKS, text=TEXT)
    def private(self, who: int, nick: str, text: str) -> None:
        self.attempt(lambda: self.pick(who).private(nick, text))

    @precondition(lambda self: self.live())
    @rule(who=WHO, nick=NICKS, room=OPT_ROOM)
    def kick(self, who: int, nick: str, room: str | None) -> None:
        self.attempt(lambda: self.pick(who).kick(nick, "go", room))

    @precondition(lambda self: self.live())
    @rule(who=WHO, whom=st.one_of(NICKS, st.sampled_from(["10.0.0.1", "10.0.0.2"])), unban=st.booleans())
    def ban(self, who: int, whom: str, unban: bool) -> None:
        member = self.pick(who)
        self.attempt(lambda: member.unban(whom) if unban else member.ban(whom))

    @precondition(lambda self: self.live())
    @rule(who=WHO, text=TEXT)
    def topic(self, who: int, text: str) -> None:
        self.attempt(lambda: self.pick(who).setTopic(text))

    @precondition(lambda self: self.live())
    @rule(who=WHO, nick=NICKS)
    def op(self, who: int, nick: str) -> None:
        self.attempt(lambda: self.pick(who).giveOp(nick))

    @precondition(lambda self: self.live())
    @rule(who=WHO)
    def quit(self, who: int) -> None:
        self.pick(who).quit("quit")

    @rule(seconds=st.sampled_from([0.0, 0.05, 0.3, 2.0]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def membershipConsistent(self) -> None:
        service = self.service
        for member in service.members:
            assert not member.gone
            assert service.lookup(member.nick) is member
            for name, room in member.rooms.items():
                assert service.rooms.get(name) is room
                assert member in room.members
            assert (member.current is None) == (not member.rooms)
            assert member.current is None or member.current in member.rooms
        for name, room in service.rooms.items():
            assert room.name == name
            assert room.members, "an empty room is kept"
            for member in room.members:
                assert member in service.members
                assert member.rooms.get(name) is room
            assert room.ops <= set(room.members)
        for member, _ in self.members:
            if member.gone:
                assert member not in service.members
                assert member.rooms == {}

    @invariant()
    def nickRegistryConsistent(self) -> None:
        nicks = self.service.nicks.byKey
        assert len(nicks) == len(self.service.members)
        for key, member in nicks.items():
            assert member in self.service.members
            assert nickKey(member.nick) == key

    @invariant()
    def roomIdsIncrease(self) -> None:
        """
        Every member sees the live messages of a room in strictly
        increasing id order.
        """
        for member, client in self.members:
            last: dict[str, int] = {}
            for event in client.events:
                if isinstance(event, Message):
                    assert event.id > last.get(event.room, 0), (event, last)
                    last[event.room] = event.id


ServiceMachine.TestCase.settings = settings(FUZZ, max_examples=60, stateful_step_count=40)
test_serviceInvariants = ServiceMachine.TestCase
