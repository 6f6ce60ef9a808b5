"""
Tests for L{twisted_chat.core.service.ChatService}: rooms, nicknames, delivery,
history and resume, driven through a recording L{IChatClient}.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import pytest
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import History, Message, Private, PrivateHistory
from twisted_chat.core.interfaces import IChatClient, IMessageStore
from twisted_chat.stores.memory import MemoryStore
from twisted_chat.core.service import ChatService, Member

from tests.support.fakes import BrokenClient, ClosingClient, connect, describe, enter, fired, LaggingBroker, RecordingClient, say

T = TypeVar("T")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(clock: Clock) -> ChatService:
    return ChatService(store=MemoryStore(), clock=clock)


# -- the client interface ---------------------------------------------------


def test_recordingClientProvidesIChatClient() -> None:
    """
    The test client really is an L{IChatClient}, so the service is driven as
    front-ends drive it.
    """
    assert verifyObject(IChatClient, RecordingClient())
    assert verifyObject(IChatClient, ClosingClient())
    assert verifyObject(IChatClient, BrokenClient())


# -- nicknames --------------------------------------------------------------


def test_guestNicks(service: ChatService) -> None:
    """
    A connection without a nick gets the next free C{guest-N}; a guest nick
    someone has taken is skipped.
    """
    a, _ = connect(service)
    service.connect(RecordingClient(), nick="GUEST-2")
    b, _ = connect(service)
    assert (a.nick, b.nick) == ("guest-1", "guest-3")


def test_nicksAreUniqueWithoutRegardToCase(service: ChatService) -> None:
    """
    A nick that is taken, in any case, is refused with C{nick-taken}, for a
    new connection and for a nick change; the nick stays with its owner.
    """
    alice, _ = connect(service, "Alice")
    with pytest.raises(ChatError) as e:
        connect(service, "aLiCe")
    assert e.value.code == "nick-taken"
    bob, _ = connect(service, "bob")
    with pytest.raises(ChatError) as e:
        bob.setNick("ALICE")
    assert e.value.code == "nick-taken"
    assert bob.nick == "bob"
    assert service.lookup("alice") is alice
    assert service.lookup("BOB") is bob


def test_badNickIsRefused(service: ChatService) -> None:
    """
    An invalid nick is refused with C{bad-nick} and changes nothing.
    """
    with pytest.raises(ChatError) as e:
        connect(service, "no spaces")
    assert e.value.code == "bad-nick"
    assert service.members == set()
    alice, client = enter(service, "alice", "#lobby")
    with pytest.raises(ChatError) as e:
        alice.setNick("x" * 25)
    assert e.value.code == "bad-nick"
    assert alice.nick == "alice"
    assert client.take() == []


def test_nickChangeFreesTheOldNick(service: ChatService) -> None:
    """
    After a nick change the new nick finds the member and the old one is
    free for someone else; changing only the case of one's own nick works.
    """
    alice, _ = connect(service, "alice")
    assert alice.setNick("ally") == "ally"
    assert service.lookup("ALLY") is alice
    assert service.lookup("alice") is None
    other, _ = connect(service, "alice")
    assert other.nick == "alice"
    assert alice.setNick("Ally") == "Ally"
    assert service.lookup("ally") is alice


def test_nickChangeNotices(service: ChatService) -> None:
    """
    The member is told of its new nick with all its rooms; every member that
    shares a room is told once, with the rooms they share; others hear
    nothing.
    """
    alice, ca = enter(service, "alice", "#lobby", "#dev", "#ops")
    bob, cb = enter(service, "bob", "#lobby", "#dev")
    carol, cc = enter(service, "carol", "#ops")
    dave, cd = enter(service, "dave", "#elsewhere")
    for c in (ca, cb, cc):
        c.take()
    alice.setNick("ally")
    assert ca.describe() == [("nick", "alice", "ally", ("#lobby", "#dev", "#ops"))]
    assert cb.describe() == [("nick", "alice", "ally", ("#lobby", "#dev"))]
    assert cc.describe() == [("nick", "alice", "ally", ("#ops",))]
    assert cd.describe() == []


# -- rooms --------------------------------------------------------------------


def test_joinCreatesTheRoom(service: ChatService) -> None:
    """
    Joining a room that does not exist creates it: the joiner sees its own
    join, the member list and the (empty) history.
    """
    alice, client = connect(service, "alice")
    assert alice.join("Dev") == ("#dev", True)
    assert "#dev" in service.rooms
    assert client.describe() == [
        ("join", "#dev", "alice"),
        ("presence", "#dev", ["alice"]),
        ("history", "#dev", [], None, ""),
    ]
    assert alice.current == "#dev"


def test_joinIsSeenByTheMembers(service: ChatService) -> None:
    """
    The members of a room see someone join it; members of other rooms do not.
    """
    alice, ca = enter(service, "alice", "#dev")
    carol, cc = enter(service, "carol", "#ops")
    bob, cb = connect(service, "bob")
    bob.join("#dev")
    assert ca.describe() == [("join", "#dev", "bob")]
    assert cc.describe() == []
    assert cb.describe()[:2] == [("join", "#dev", "bob"), ("presence", "#dev", ["alice", "bob"])]


def test_roomNamesAreCaseInsensitive(service: ChatService) -> None:
    """
    C{dev}, C{#Dev} and C{#DEV} are one room; joining it again only makes it
    the current room.
    """
    alice, _ = connect(service, "alice")
    bob, _ = connect(service, "bob")
    alice.join("dev")
    alice.join("#lobby")
    assert bob.join("#DEV") == ("#dev", True)
    assert alice.join("#Dev") == ("#dev", False)
    assert alice.current == "#dev"
    assert sorted(service.rooms) == ["#dev", "#lobby"]
    assert len(service.rooms["#dev"].members) == 2


def test_badRoomIsRefused(service: ChatService) -> None:
    """
    An invalid room name is refused with C{bad-room} and changes nothing.
    """
    alice, client = enter(service, "alice", "#lobby")
    with pytest.raises(ChatError) as e:
        alice.join("no way")
    assert e.value.code == "bad-room"
    assert list(service.rooms) == ["#lobby"]
    assert alice.current == "#lobby"
    assert client.take() == []


def test_emptyRoomIsForgottenButItsHistoryKept(service: ChatService) -> None:
    """
    When the last member leaves, the room disappears from the room list; its
    history is still there for whoever joins it next.
    """
    alice, _ = enter(service, "alice", "#lobby", "#dev")
    say(alice, "anyone?", "#dev")
    alice.part("#dev")
    assert "#dev" not in service.rooms
    assert service.roomList() == [("#lobby", 1)]
    bob, cb = connect(service, "bob")
    bob.join("#dev")
    history = [e for e in cb.take() if isinstance(e, History)]
    assert [(m.sender, m.text) for m in history[0].messages] == [("alice", "anyone?")]


def test_severalRoomsAndTheCurrentRoom(service: ChatService) -> None:
    """
    A member can be in several rooms; text goes to the current room, which is
    the one last joined or switched to, and after leaving it the most
    recently joined of the others.
    """
    alice, ca = enter(service, "alice")
    bob, cb = enter(service, "bob", "#a", "#b")
    alice.join("#a")
    alice.join("#b")
    alice.join("#c")
    assert alice.current == "#c"
    alice.join("#a")
    assert alice.current == "#a"
    cb.take()
    say(alice, "to a")
    assert cb.describe() == [("message", "#a", 1, "alice", "to a", False)]
    alice.part()
    assert alice.current == "#c"
    alice.part("#c")
    assert alice.current == "#b"
    alice.part()
    assert alice.current is None
    with pytest.raises(ChatError) as e:
        alice.say("hello?")
    assert e.value.code == "not-in-room"


def test_roomLimitPerMember(clock: Clock) -> None:
    """
    A member in as many rooms as allowed must leave one before joining another.
    """
    service = ChatService(store=MemoryStore(), clock=clock, maxRoomsPerMember=2)
    alice, _ = enter(service, "alice", "#a", "#b")
    with pytest.raises(ChatError) as e:
        alice.join("#c")
    assert e.value.code == "too-many-rooms"
    assert "#c" not in service.rooms
    alice.join("#b")
    alice.part("#a")
    alice.join("#c")
    assert list(alice.rooms) == ["#b", "#c"]


def test_part(service: ChatService) -> None:
    """
    Leaving a room is seen by its members, the leaver included, with the
    reason C{left}; leaving a room one is not in is refused.
    """
    alice, ca = enter(service, "alice", "#lobby")
    bob, cb = enter(service, "bob", "#lobby")
    ca.take()
    assert bob.part() == "#lobby"
    assert ca.describe() == [("part", "#lobby", "bob", "left")]
    assert cb.describe() == [("part", "#lobby", "bob", "left")]
    with pytest.raises(ChatError) as e:
        bob.part("#lobby")
    assert e.value.code == "not-in-room"
    assert service.roomList() == [("#lobby", 1)]


def test_quitLeavesEveryRoomAndFreesTheNick(service: ChatService) -> None:
    """
    A member that quits leaves each of its rooms (each seen by their
    members with the reason) and its nick is free; quitting twice is harmless.
    """
    alice, ca = enter(service, "alice", "#lobby", "#dev")
    bob, cb = enter(service, "bob", "#lobby", "#dev")
    carol, cc = enter(service, "carol", "#dev")
    for c in (ca, cb, cc):
        c.take()
    alice.quit("disconnected")
    assert cb.describe() == [("part", "#lobby", "alice", "disconnected"), ("part", "#dev", "alice", "disconnected")]
    assert cc.describe() == [("part", "#dev", "alice", "disconnected")]
    assert service.lookup("alice") is None
    assert alice not in service.members
    alice.quit("again")
    assert cb.take() == [] and cc.take() == []
    assert service.roomList() == [("#dev", 2), ("#lobby", 1)]


def test_whoAndRooms(service: ChatService) -> None:
    """
    C{who} lists a room's members sorted without regard to case (also for a
    room one is not in, and nobody for an unknown room); C{listRooms} gives
    every room with its member count, sorted.
    """
    alice, ca = enter(service, "alice", "#lobby")
    enter(service, "Bob", "#lobby", "#dev")
    enter(service, "carol", "#lobby")
    ca.take()
    alice.who()
    alice.who("DEV")
    alice.who("#void")
    alice.listRooms()
    assert ca.describe() == [
        ("presence", "#lobby", ["alice", "Bob", "carol"]),
        ("presence", "#dev", ["Bob"]),
        ("presence", "#void", []),
        ("rooms", [("#dev", 1), ("#lobby", 3)]),
    ]


# -- messages -----------------------------------------------------------------


def test_broadcastIncludesTheSender(service: ChatService) -> None:
    """
    A message reaches every member of the room, the sender included, and
    nobody outside it.
    """
    alice, ca = enter(service, "alice", "#lobby")
    bob, cb = enter(service, "bob", "#lobby")
    carol, cc = enter(service, "carol", "#dev")
    ca.take()
    msg = say(alice, "hello")
    assert (msg.room, msg.sender, msg.text, msg.epoch) == ("#lobby", "alice", "hello", service.store.epoch)
    assert ca.take() == [msg]
    assert cb.take() == [msg]
    assert cc.take() == []


def test_action(service: ChatService) -> None:
    """
    An action is a room message marked as such.
    """
    alice, ca = enter(service, "alice", "#lobby")
    say(alice, "waves", action=True)
    assert ca.describe() == [("message", "#lobby", 1, "alice", "waves", True)]


def test_messageTimeComesFromTheClock(service: ChatService, clock: Clock) -> None:
    """
    A message carries the service clock's time.
    """
    alice, _ = enter(service, "alice", "#lobby")
    clock.advance(1234.5)
    assert say(alice, "now").time == 1234.5


def test_idsIncreaseByOnePerRoom(service: ChatService) -> None:
    """
    Message ids count up by one in each room, independently of other rooms
    and of private messages.
    """
    alice, _ = enter(service, "alice", "#a", "#b")
    enter(service, "bob")
    got = [
        ("#a", say(alice, "1", "#a").id),
        ("#a", say(alice, "2", "#a").id),
        ("#b", say(alice, "3", "#b").id),
    ]
    fired(alice.private("bob", "psst"))
    got.append(("#a", say(alice, "4", "#a").id))
    got.append(("#b", say(alice, "5", "#b").id))
    assert got == [("#a", 1), ("#a", 2), ("#b", 1), ("#a", 3), ("#b", 2)]


def test_idsContinueFromTheStore(clock: Clock) -> None:
    """
    A service over a store that already holds messages continues its ids.
    """
    store = MemoryStore()
    for i in range(41):
        store.append(Message("#lobby", 0, store.epoch, "bob", "old %d" % (i,), 0.0))
    service = ChatService(store=store, clock=clock)
    alice, _ = enter(service, "alice", "#lobby")
    assert say(alice, "new").id == 42


@pytest.mark.parametrize(
    "text, code",
    [("", "empty-message"), ("   \t", "empty-message"), ("x" * 101, "too-long"), (None, "bad-request")],
)
def test_badMessagesAreRefused(clock: Clock, text: object, code: str) -> None:
    """
    Empty, too long and non-text messages are refused, nothing is sent and
    no id is used up.
    """
    service = ChatService(store=MemoryStore(), clock=clock, maxTextLength=100)
    alice, ca = enter(service, "alice", "#lobby")
    with pytest.raises(ChatError) as e:
        alice.say(text)  # type: ignore[arg-type]
    assert e.value.code == code
    assert ca.take() == []
    assert say(alice, "x" * 100).id == 1


def test_sayInARoomOneIsNotIn(service: ChatService) -> None:
    """
    Saying something in a room one has not joined is refused.
    """
    alice, _ = enter(service, "alice", "#lobby")
    enter(service, "bob", "#dev")
    with pytest.raises(ChatError) as e:
        alice.say("hi", "#dev")
    assert e.value.code == "not-in-room"


def test_privateMessage(service: ChatService) -> None:
    """
    A private message reaches the target (found without regard to case) and
    is echoed to the sender, and nobody else sees it.
    """
    alice, ca = enter(service, "alice", "#lobby")
    bob, cb = enter(service, "Bob", "#lobby")
    carol, cc = enter(service, "carol", "#lobby")
    for c in (ca, cb, cc):
        c.take()
    p = fired(alice.private("BOB", "psst"))
    assert (p.sender, p.recipient, p.text) == ("alice", "Bob", "psst")
    assert cb.take() == [p]
    assert ca.take() == [p]
    assert cc.take() == []


def test_privateMessageToSelfArrivesOnce(service: ChatService) -> None:
    """
    A private message to oneself arrives once.
    """
    alice, ca = enter(service, "alice")
    fired(alice.private("alice", "note to self"))
    assert [d[0] for d in ca.describe()] == ["private"]


def test_privateMessageToNobody(service: ChatService) -> None:
    """
    A private message to a nick nobody has (or an invalid one) is refused
    with C{no-such-nick} or C{bad-nick}.
    """
    alice, ca = enter(service, "alice")
    with pytest.raises(ChatError) as e:
        alice.private("bob", "hello?")
    assert e.value.code == "no-such-nick"
    with pytest.raises(ChatError) as e:
        alice.private("bad nick", "hello?")
    assert e.value.code == "bad-nick"
    assert ca.take() == []


def test_notice(service: ChatService) -> None:
    """
    A server notice reaches every connected member, in a room or not.
    """
    _, ca = enter(service, "alice", "#lobby")
    _, cb = enter(service, "bob")
    service.notice("maintenance at noon")
    assert ca.describe() == [("notice", "maintenance at noon")]
    assert cb.describe() == [("notice", "maintenance at noon")]


# -- failing members ----------------------------------------------------------


def test_failingMemberDoesNotBreakABroadcast(service: ChatService) -> None:
    """
    A member whose delivery raises is closed and removed, the others in the
    room (before and after it) still get the message and see it leave with
    the reason C{disconnected}.
    """
    alice, ca = enter(service, "alice", "#lobby")
    broken = BrokenClient()
    bad, _ = connect(service, "bad", client=broken)
    bad.join("#lobby")
    bob, cb = enter(service, "bob", "#lobby")
    ca.take()
    broken.broken = True
    msg = say(alice, "hello")
    assert ca.take()[0] is msg
    events = cb.take()
    assert events[0] is msg
    assert [describe(e) for e in events[1:]] == [("part", "#lobby", "bad", "disconnected")]
    assert broken.closed == ["internal error"]
    assert bad.gone
    assert service.lookup("bad") is None
    assert bad not in service.rooms["#lobby"].members
    say(bob, "still here")
    assert ca.describe() == [("message", "#lobby", 2, "bob", "still here", False)]
    assert cb.describe() == [("message", "#lobby", 2, "bob", "still here", False)]


def test_failingMemberOnDirectDelivery(service: ChatService) -> None:
    """
    A member whose delivery of a private message fails is removed too; the
    sender sees it leave its rooms and still gets the echo.
    """
    alice, ca = enter(service, "alice", "#lobby")
    broken = BrokenClient()
    bad, _ = connect(service, "bad", client=broken)
    bad.join("#lobby")
    ca.take()
    broken.broken = True
    p = fired(alice.private("bad", "hi"))
    assert ca.describe() == [("part", "#lobby", "bad", "disconnected"), ("private", p.id, "alice", "bad", "hi")]
    assert broken.closed == ["internal error"]
    assert service.lookup("bad") is None


# -- history --------------------------------------------------------------------


def test_historyOnJoin(clock: Clock) -> None:
    """
    A joiner gets the room's last C{historySize} messages, oldest first,
    after the member list.
    """
    service = ChatService(store=MemoryStore(), clock=clock, historySize=3)
    alice, _ = enter(service, "alice", "#lobby")
    for i in range(5):
        say(alice, "m%d" % (i,))
    bob, cb = connect(service, "bob")
    bob.join("#lobby")
    assert cb.describe() == [
        ("join", "#lobby", "bob"),
        ("presence", "#lobby", ["alice", "bob"]),
        ("history", "#lobby", [3, 4, 5], None, ""),
    ]


def test_historyIsBoundedByRetain(clock: Clock) -> None:
    """
    The in-memory history keeps only C{retain} messages per room, so that is
    all a joiner can get.
    """
    service = ChatService(store=MemoryStore(retain=3), clock=clock, historySize=10)
    alice, _ = enter(service, "alice", "#lobby")
    for i in range(6):
        say(alice, "m%d" % (i,))
    bob, cb = connect(service, "bob")
    bob.join("#lobby")
    assert [describe(e) for e in cb.take() if isinstance(e, History)] == [("history", "#lobby", [4, 5, 6], None, "")]


def test_historyRequest(clock: Clock) -> None:
    """
    Asking for history gives at most the requested number of the room's
    latest messages, or those before a given id.
    """
    service = ChatService(store=MemoryStore(), clock=clock)
    alice, ca = enter(service, "alice", "#lobby")
    for i in range(5):
        say(alice, "m%d" % (i,))
    ca.take()
    alice.history(limit=2)
    alice.history(limit=2, before=3)
    alice.history("#empty", limit=5)
    assert ca.describe() == [
        ("history", "#lobby", [4, 5], None, ""),
        ("history", "#lobby", [1, 2], None, ""),
        ("history", "#empty", [], None, ""),
    ]


def test_historyUnavailable(clock: Clock) -> None:
    """
    When the store cannot give history, the joiner is told it is unavailable
    and stays in the room.
    """

    class FailingStore(MemoryStore):
        def recent(self, room: str, limit: int, before: int | None = None) -> Deferred[list[Message]]:
            return fail(OSError("disk on fire"))

    service = ChatService(store=FailingStore(), clock=clock)
    alice, ca = connect(service, "alice")
    alice.join("#lobby")
    assert ca.describe()[-1] == ("history", "#lobby", [], None, "unavailable")
    alice.history()
    assert ca.describe() == [("history", "#lobby", [], None, "unavailable")]
    assert alice.current == "#lobby"


class SlowStore(MemoryStore):
    """
    A memory store whose history reads, once C{slow} is set, are answered
    only when the test says so: with what the store held when it was asked,
    or with what it holds when it answers.
    """

    def __init__(self, **kw: Any) -> None:
        MemoryStore.__init__(self, **kw)
        self.slow = False
        self.pending: list[tuple[Deferred[Any], Any, Callable[[], Any]]] = []

    def recent(self, room: str, limit: int, before: int | None = None) -> Deferred[list[Message]]:
        return self._read(MemoryStore.recent, room, limit, before)

    def since(self, room: str, epoch: str, afterId: int, limit: int) -> Deferred[list[Message] | None]:
        return self._read(MemoryStore.since, room, epoch, afterId, limit)

    def _read(self, method: Callable[..., Deferred[Any]], *args: Any) -> Deferred[Any]:
        if not self.slow:
            return method(self, *args)
        d: Deferred[Any] = Deferred()
        self.pending.append((d, fired(method(self, *args)), lambda: fired(method(self, *args))))
        return d

    def answer(self, asOfNow: bool) -> None:
        """
        Answer the oldest pending read, with the data as of the request or
        as of now.
        """
        d, asked, now = self.pending.pop(0)
        d.callback(now() if asOfNow else asked)


@pytest.fixture
def slowService(clock: Clock) -> tuple[ChatService, SlowStore]:
    store = SlowStore()
    return ChatService(store=store, clock=clock), store


def test_liveEventsWaitForTheHistory(slowService: tuple[ChatService, SlowStore]) -> None:
    """
    Messages and other events of a room that happen while a joiner's
    history is being read reach the joiner after that history, in order.
    """
    service, store = slowService
    alice, ca = enter(service, "alice", "#lobby")
    say(alice, "one")
    say(alice, "two")
    ca.take()
    store.slow = True
    bob, cb = connect(service, "bob")
    bob.join("#lobby")
    assert cb.describe() == [("join", "#lobby", "bob"), ("presence", "#lobby", ["alice", "bob"])]
    say(alice, "three")
    enter(service, "carol", "#lobby")
    say(alice, "four")
    assert cb.take() == []
    assert [describe(e)[0] for e in ca.take()] == ["join", "message", "join", "message"]
    store.answer(asOfNow=False)
    assert cb.describe() == [
        ("history", "#lobby", [1, 2], None, ""),
        ("message", "#lobby", 3, "alice", "three", False),
        ("join", "#lobby", "carol"),
        ("message", "#lobby", 4, "alice", "four", False),
    ]
    say(alice, "five")
    assert cb.describe() == [("message", "#lobby", 5, "alice", "five", False)]


def test_joinerSeesEverythingSaidSinceItJoined(clock: Clock) -> None:
    """
    More messages are said while a joiner's history is read than the
    history holds (it ends with the last C{historySize}): the joiner still
    gets every message said since it joined, the first ones put in front
    of that history, once each and in order.
    """
    store = SlowStore()
    service = ChatService(store=store, clock=clock, historySize=2)
    alice, _ = enter(service, "alice", "#lobby")
    say(alice, "one")
    say(alice, "two")
    store.slow = True
    bob, cb = connect(service, "bob")
    bob.join("#lobby")
    cb.take()
    for text in ("three", "four", "five"):
        say(alice, text)
    store.answer(asOfNow=True)  # (the read saw them: its last two are 4 and 5)
    assert cb.describe() == [("history", "#lobby", [3, 4, 5], None, "")]
    say(alice, "six")
    assert cb.describe() == [("message", "#lobby", 6, "alice", "six", False)]


def test_heldMessagesTheHistoryHasAreNotRepeated(slowService: tuple[ChatService, SlowStore]) -> None:
    """
    When the history read already saw the messages said meanwhile, the
    joiner gets them once, in the history; the other held events follow.
    """
    service, store = slowService
    alice, _ = enter(service, "alice", "#lobby")
    say(alice, "one")
    store.slow = True
    bob, cb = connect(service, "bob")
    bob.join("#lobby")
    cb.take()
    say(alice, "two")
    enter(service, "carol", "#lobby")
    say(alice, "three")
    store.answer(asOfNow=True)
    assert cb.describe() == [("history", "#lobby", [1, 2, 3], None, ""), ("join", "#lobby", "carol")]
    say(alice, "four")
    assert cb.describe() == [("message", "#lobby", 4, "alice", "four", False)]


def test_historyReadThatSawSomeOfTheHeldMessages(slowService: tuple[ChatService, SlowStore]) -> None:
    """
    When the history read saw only the first of the messages said meanwhile,
    the joiner gets that one in the history and the others live, with no
    duplicate and no gap.
    """
    service, store = slowService
    alice, _ = enter(service, "alice", "#lobby")
    say(alice, "one")
    store.slow = True
    bob, cb = connect(service, "bob")
    bob.join("#lobby")
    cb.take()
    say(alice, "two")
    d, _, now = store.pending.pop(0)
    seenSoFar = now()
    say(alice, "three")
    say(alice, "four")
    d.callback(seenSoFar)
    assert cb.describe() == [
        ("history", "#lobby", [1, 2], None, ""),
        ("message", "#lobby", 3, "alice", "three", False),
        ("message", "#lobby", 4, "alice", "four", False),
    ]


def test_messagesInOtherRoomsAreNotHeld(slowService: tuple[ChatService, SlowStore]) -> None:
    """
    While one room's history is being read, messages of the joiner's other
    rooms arrive at once.
    """
    service, store = slowService
    alice, _ = enter(service, "alice", "#lobby", "#dev")
    bob, cb = enter(service, "bob", "#dev")
    store.slow = True
    bob.join("#lobby")
    cb.take()
    say(alice, "in dev", "#dev")
    assert cb.describe() == [("message", "#dev", 1, "alice", "in dev", False)]
    store.answer(asOfNow=False)
    assert cb.describe() == [("history", "#lobby", [], None, "")]


def test_leavingWhileHistoryIsReadSendsNothing(slowService: tuple[ChatService, SlowStore]) -> None:
    """
    A member that leaves the room, or quits, before its history arrives sees
    itself leave and then gets neither the history nor the held messages.
    """
    service, store = slowService
    alice, ca = enter(service, "alice", "#lobby")
    store.slow = True
    bob, cb = connect(service, "bob")
    bob.join("#lobby")
    carol, cc = connect(service, "carol")
    carol.join("#lobby")
    say(alice, "hello")
    cb.take()
    cc.take()
    bob.part()
    carol.quit()
    assert cb.describe() == [("part", "#lobby", "bob", "left")]
    assert cc.describe() == [("part", "#lobby", "carol", "quit")]
    store.answer(asOfNow=True)
    store.answer(asOfNow=True)
    assert cb.take() == []
    assert cc.take() == []
    ca.take()
    say(alice, "still fine")
    assert ca.describe() == [("message", "#lobby", 2, "alice", "still fine", False)]


def test_rejoiningWhileHistoryIsReadGivesOneHistory(slowService: tuple[ChatService, SlowStore]) -> None:
    """
    Leaving and joining again before the first history arrives gives only
    the second join's history, and each message said meanwhile once.
    """
    service, store = slowService
    alice, _ = enter(service, "alice", "#lobby")
    say(alice, "one")
    store.slow = True
    bob, cb = connect(service, "bob")
    bob.join("#lobby")
    bob.part()
    bob.join("#lobby")
    cb.take()
    say(alice, "two")
    store.answer(asOfNow=True)
    assert cb.take() == []
    store.answer(asOfNow=False)
    assert cb.describe() == [
        ("history", "#lobby", [1], None, ""),
        ("message", "#lobby", 2, "alice", "two", False),
    ]


# -- resume -----------------------------------------------------------------------


def test_resumeRecoversExactlyTheMissedMessages(service: ChatService) -> None:
    """
    Joining with the epoch and id of the last message seen gives exactly the
    messages after it, marked recovered; at the latest id, none.
    """
    alice, _ = enter(service, "alice", "#lobby")
    for i in range(5):
        say(alice, "m%d" % (i,))
    bob, cb = connect(service, "bob")
    bob.join("#lobby", since=(service.store.epoch, 3))
    assert cb.describe()[-1] == ("history", "#lobby", [4, 5], True, "")
    carol, cc = connect(service, "carol")
    carol.join("#lobby", since=(service.store.epoch, 5))
    assert cc.describe()[-1] == ("history", "#lobby", [], True, "")


def test_resumeFromAnotherEpoch(clock: Clock) -> None:
    """
    A position from another epoch is not recovered: the joiner gets the
    recent history instead, marked not recovered because of the epoch.
    """
    service = ChatService(store=MemoryStore(), clock=clock, historySize=2)
    alice, _ = enter(service, "alice", "#lobby")
    for i in range(5):
        say(alice, "m%d" % (i,))
    bob, cb = connect(service, "bob")
    bob.join("#lobby", since=("old-" + service.store.epoch, 3))
    assert cb.describe()[-1] == ("history", "#lobby", [4, 5], False, "epoch")


def test_resumeAcrossAGapOlderThanTheHistory(clock: Clock) -> None:
    """
    A position older than the kept history is not recovered: the joiner
    gets the recent history, marked not recovered because of the gap.
    """
    service = ChatService(store=MemoryStore(retain=3), clock=clock, historySize=2)
    alice, _ = enter(service, "alice", "#lobby")
    for i in range(10):
        say(alice, "m%d" % (i,))
    bob, cb = connect(service, "bob")
    bob.join("#lobby", since=(service.store.epoch, 2))
    assert cb.describe()[-1] == ("history", "#lobby", [9, 10], False, "gap")


@pytest.mark.parametrize("asOfNow", [False, True])
def test_resumeWhileMessagesArrive(slowService: tuple[ChatService, SlowStore], asOfNow: bool) -> None:
    """
    A message said while a resume is being read reaches the joiner exactly
    once, right after the recovered messages, whether the read saw it or not.
    """
    service, store = slowService
    alice, _ = enter(service, "alice", "#lobby")
    for i in range(4):
        say(alice, "m%d" % (i,))
    store.slow = True
    bob, cb = connect(service, "bob")
    bob.join("#lobby", since=(store.epoch, 2))
    cb.take()
    say(alice, "m4")
    store.answer(asOfNow)
    ids = []
    for e in cb.take():
        if isinstance(e, History):
            assert e.recovered is True
            ids.extend(m.id for m in e.messages)
        else:
            assert isinstance(e, Message)
            ids.append(e.id)
    assert ids == [3, 4, 5]
    say(alice, "m5")
    assert [e[2] for e in cb.describe()] == [6]


@pytest.mark.parametrize("resume", [False, True])
def test_historyAheadOfThisNodesDeliveries(clock: Clock, resume: bool) -> None:
    """
    A joiner (or a resume) whose history already holds messages this node
    has not delivered yet gets each of them once: the live copies that
    arrive afterwards are skipped, and what follows them is delivered.
    """
    broker = LaggingBroker()
    service = ChatService(store=MemoryStore(), clock=clock, broker=broker)
    alice, ca = enter(service, "alice", "#lobby")
    for i in range(1, 4):
        say(alice, "m%d" % (i,))
    broker.catchUp()
    say(alice, "m4")
    say(alice, "m5")  # stored, still on their way to this node
    bob, cb = connect(service, "bob")
    bob.join("#lobby", since=(service.store.epoch, 1) if resume else None)
    history = [e for e in cb.take() if isinstance(e, History)][-1]
    assert [m.id for m in history.messages] == ([2, 3, 4, 5] if resume else [1, 2, 3, 4, 5])
    broker.catchUp()
    say(alice, "m6")
    broker.catchUp()
    assert [e.id for e in cb.take() if isinstance(e, Message)] == [6]
    assert [e.id for e in ca.take() if isinstance(e, Message)] == [1, 2, 3, 4, 5, 6]
    # and bob is back on the fast path with everyone else
    assert bob.floors is None


# -- shutdown -----------------------------------------------------------------------


def test_stopServiceClosesEveryConnection(clock: Clock) -> None:
    """
    Stopping the service tells every connection the server is shutting
    down, and is done once they are all gone.
    """
    service = ChatService(store=MemoryStore(), clock=clock)
    service.startService()
    clients = [ClosingClient() for _ in range(3)]
    for c in clients:
        connect(service, client=c)[0].join("#lobby")
    d = service.stopService()
    assert [c.closed for c in clients] == [["server shutting down"]] * 3
    assert fired(d) is None
    assert service.members == set()


def test_stopServiceWaitsAtMostTheShutdownTimeout(clock: Clock) -> None:
    """
    Connections that do not go away hold up the shutdown for at most the
    shutdown timeout.
    """
    service = ChatService(store=MemoryStore(), clock=clock, shutdownTimeout=5.0)
    service.startService()
    stuck, cs = connect(service, "stuck")
    d = service.stopService()
    assert cs.closed == ["server shutting down"]
    clock.advance(4.9)
    assert not d.called
    clock.advance(0.2)
    assert fired(d) is None


def test_stopServiceWithoutConnections(service: ChatService) -> None:
    """
    With nobody connected, stopping is done at once.
    """
    service.startService()
    assert fired(service.stopService()) is None


def test_storeIsAMessageStore(service: ChatService) -> None:
    """
    By default the service keeps its history in a L{MemoryStore}.
    """
    assert isinstance(service.store, MemoryStore)
    assert verifyObject(IMessageStore, service.store)


# -- idempotent refs ----------------------------------------------------------


class PendingStore(MemoryStore):
    """
    A memory store whose appends are confirmed (or failed) only when the
    test says so, like a database that has not committed yet.
    """

    def __init__(self, **kw: Any) -> None:
        MemoryStore.__init__(self, **kw)
        self.pending: list[tuple[Deferred[Any], Message | Private]] = []

    def append(self, message: Message | Private, ref: str | None = None) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.pending.append((d, message))
        return d

    def commit(self) -> None:
        """
        Store and confirm the oldest pending append.
        """
        d, message = self.pending.pop(0)
        d.callback(fired(MemoryStore.append(self, message)))

    def fail(self) -> None:
        """
        Fail the oldest pending append: nothing is stored.
        """
        d, _ = self.pending.pop(0)
        d.errback(OSError("disk full"))


def results(d: Deferred[T]) -> list[object]:
    """
    A list that gets C{d}'s result (or Failure) once it fires.
    """
    out: list[object] = []
    d.addBoth(out.append)
    return out


def roomMessages(client: RecordingClient) -> list[tuple[Any, ...]]:
    return [e for e in client.describe() if e[0] == "message"]


def test_sayWithTheSameRefTwiceStoresOneMessage(service: ChatService) -> None:
    """
    Saying again with a ref already used by the same nick (a resend after a
    lost ack) stores and delivers no second message: both calls answer with
    the same message, so both acks carry the same id.
    """
    alice, ca = enter(service, "alice", "#lobby")
    bob, cb = enter(service, "bob", "#lobby")
    first = fired(alice.say("hello", ref="r1"))
    again = fired(alice.say("hello", ref="r1"))
    assert (again.id, again.text) == (first.id, "hello") == (1, "hello")
    assert roomMessages(cb) == [("message", "#lobby", 1, "alice", "hello", False)]
    assert roomMessages(ca) == [("message", "#lobby", 1, "alice", "hello", False)]
    assert [m.id for m in fired(service.store.recent("#lobby", 10))] == [1]
    assert say(alice, "next").id == 2


def test_resendWhileTheFirstIsStillBeingStored() -> None:
    """
    A resend that arrives while the first send is still being stored waits
    for it: nothing is delivered or stored twice, and both answer with the
    one message once it is durable.
    """
    store = PendingStore()
    service = ChatService(store=store, clock=Clock())
    alice, _ = enter(service, "alice", "#lobby")
    bob, cb = enter(service, "bob", "#lobby")
    first = results(alice.say("hello", ref="r1"))
    again = results(alice.say("hello", ref="r1"))
    assert (first, again, len(store.pending)) == ([], [], 1)
    assert roomMessages(cb) == []
    store.commit()
    assert len(first) == len(again) == 1
    assert first[0] is again[0]
    assert isinstance(first[0], Message) and first[0].id == 1
    assert roomMessages(cb) == [("message", "#lobby", 1, "alice", "hello", False)]
    assert store.pending == []


def test_sameRefFromAnotherNickIsAnotherMessage(service: ChatService) -> None:
    """
    Refs belong to a nick: another nick using the same ref sends its own
    message.
    """
    alice, _ = enter(service, "alice", "#lobby")
    bob, cb = enter(service, "bob", "#lobby")
    a = fired(alice.say("from alice", ref="c1"))
    b = fired(bob.say("from bob", ref="c1"))
    assert (a.id, b.id) == (1, 2)
    assert roomMessages(cb) == [
        ("message", "#lobby", 1, "alice", "from alice", False),
        ("message", "#lobby", 2, "bob", "from bob", False),
    ]


def test_refIsForgottenAfterTheWindow(clock: Clock) -> None:
    """
    A ref is remembered for C{refWindow} seconds after its first use; a
    resend within that time is the same message, reusing the ref later
    sends a new one.
    """
    service = ChatService(store=MemoryStore(), clock=clock, refWindow=60.0)
    alice, _ = enter(service, "alice", "#lobby")
    bob, cb = enter(service, "bob", "#lobby")
    assert fired(alice.say("hello", ref="r1")).id == 1
    clock.advance(59)
    assert fired(alice.say("hello", ref="r1")).id == 1
    clock.advance(2)
    assert fired(alice.say("hello", ref="r1")).id == 2
    assert [e[2] for e in roomMessages(cb)] == [1, 2]


def test_failedSendCanBeRetriedWithTheSameRef() -> None:
    """
    When storing fails, the send and a resend waiting for it both fail,
    nothing is delivered, and trying again with the same ref sends the
    message once.
    """
    store = PendingStore()
    service = ChatService(store=store, clock=Clock())
    alice, _ = enter(service, "alice", "#lobby")
    bob, cb = enter(service, "bob", "#lobby")
    first = results(alice.say("hello", ref="r1"))
    waiting = results(alice.say("hello", ref="r1"))
    store.fail()
    for outcome in (first, waiting):
        assert len(outcome) == 1 and isinstance(outcome[0], Failure)
        assert outcome[0].check(OSError)
    assert roomMessages(cb) == []
    retry = results(alice.say("hello", ref="r1"))
    assert len(store.pending) == 1
    store.commit()
    assert len(retry) == 1 and isinstance(retry[0], Message)
    assert [(e[3], e[4]) for e in roomMessages(cb)] == [("alice", "hello")]
    assert [m.text for m in fired(store.recent("#lobby", 10))] == ["hello"]


def test_privateWithTheSameRefIsSentOnce(service: ChatService) -> None:
    """
    A private message resent with the same ref reaches the recipient once;
    both sends answer with the same message.
    """
    alice, ca = connect(service, "alice")
    bob, cb = connect(service, "bob")
    first = fired(alice.private("bob", "psst", ref="p1"))
    again = fired(alice.private("bob", "psst", ref="p1"))
    # the same message (kept compactly once stored: an equal copy, not the object)
    assert (again.id, again.sender, again.recipient, again.text, again.time) == (
        first.id, first.sender, first.recipient, first.text, first.time,
    )
    assert cb.describe() == [("private", first.id, "alice", "bob", "psst")]
    assert ca.describe() == [("private", first.id, "alice", "bob", "psst")]


# -- nick tokens and private history ---------------------------------------------


def test_firstNamedConnectGetsAToken(service: ChatService) -> None:
    """
    The first connection that asks for a nick gets a secret token and owns
    the nick; the store keeps only a hash of the token. A guest gets none.
    """
    alice, _ = connect(service, "alice")
    assert isinstance(alice.token, str) and len(alice.token) >= 16
    assert alice.owner is True
    stored = service.store.tokens()
    assert list(stored) == ["alice"]
    assert alice.token not in stored["alice"]
    guest, _ = connect(service)
    assert (guest.token, guest.owner) == (None, False)
    assert list(service.store.tokens()) == ["alice"]


@pytest.mark.parametrize(
    "token, owner",
    [("right", True), ("wrong", False), (None, False), ("", False), (12345, False)],
    ids=["right-token", "wrong-token", "no-token", "empty-token", "not-a-string"],
)
def test_laterConnectOwnsTheNickOnlyWithTheToken(service: ChatService, token: object, owner: bool) -> None:
    """
    A later connection with the nick (in any case) owns it only when it
    presents the token issued first; without it the nick may still be used
    while free, but it is not the owner. No new token is issued either way.
    """
    first, _ = connect(service, "alice")
    issued = first.token
    assert issued is not None
    stored = service.store.tokens()
    first.quit()
    presented = issued if token == "right" else token
    again = service.connect(RecordingClient(), nick="ALICE", peer="test", token=presented)  # type: ignore[arg-type]
    assert (again.nick, again.owner, again.token) == ("ALICE", owner, None)
    assert service.store.tokens() == stored


def test_tokensOutliveTheService(clock: Clock) -> None:
    """
    A service started over a store that holds a nick's token (a restarted
    daemon) knows it: the token owns the nick, another one does not, and
    no new token is issued.
    """
    store = MemoryStore()
    before = ChatService(store=store, clock=clock)
    before.startService()
    first, _ = connect(before, "alice")
    issued = first.token
    first.quit()
    fired(before.stopService())
    after = ChatService(store=store, clock=clock)
    after.startService()
    again = after.connect(RecordingClient(), nick="alice", peer="test", token=issued)
    assert (again.owner, again.token) == (True, None)
    again.quit()
    guesser = after.connect(RecordingClient(), nick="alice", peer="test", token="guess")
    assert (guesser.owner, guesser.token) == (False, None)
    guesser.quit()
    assert list(store.tokens()) == ["alice"]
    fired(after.stopService())


def privates(service: ChatService) -> tuple[Member, RecordingClient, str]:
    """
    alice, bob and carol exchange private messages 1-4; bob then leaves.
    Returns alice, her client, and bob's token.
    """
    alice, ca = connect(service, "alice")
    bob, _ = connect(service, "bob")
    carol, _ = connect(service, "carol")
    fired(alice.private("bob", "1 alice to bob"))
    fired(carol.private("Bob", "2 carol to bob"))
    fired(carol.private("alice", "3 carol to alice"))
    fired(bob.private("carol", "4 bob to carol"))
    token = bob.token
    assert token is not None
    bob.quit()
    ca.take()
    return alice, ca, token


def test_privateHistoryForTheOwner(service: ChatService) -> None:
    """
    The owner of a nick gets the private messages to and from that nick,
    and only those, oldest first; with C{afterId} only the later ones.
    """
    alice, ca, token = privates(service)
    bob = service.connect(RecordingClient(), nick="bob", peer="test", token=token)
    client = bob.client
    assert isinstance(client, RecordingClient)
    assert bob.owner is True
    bob.privateHistory()
    [history] = client.take()
    assert isinstance(history, PrivateHistory)
    assert [(p.id, p.sender, p.recipient, p.text) for p in history.messages] == [
        (1, "alice", "bob", "1 alice to bob"),
        (2, "carol", "bob", "2 carol to bob"),
        (4, "bob", "carol", "4 bob to carol"),
    ]
    bob.privateHistory(afterId=2)
    assert client.describe() == [("private-history", [4])]
    alice.privateHistory()
    assert ca.describe() == [("private-history", [1, 3])]


def test_privateHistoryOnlyForOwners(service: ChatService) -> None:
    """
    Private history is shown only to a connection that owns its nick: the
    same nick without the token, or with a wrong one, gets an empty list.
    """
    privates(service)
    for token in (None, "not-the-token"):
        bob = service.connect(RecordingClient(), nick="bob", peer="test", token=token)
        assert bob.owner is False
        client = bob.client
        assert isinstance(client, RecordingClient)
        bob.privateHistory()
        assert client.describe() == [("private-history", [])]
        bob.quit()


def test_nickChangeEndsOwnership(service: ChatService) -> None:
    """
    A connection that owns its nick keeps owning it through a change of
    case, but changing to another nick does not make it the owner of that
    one: it is not shown that nick's private history.
    """
    alice, ca, _ = privates(service)
    assert alice.owner is True
    alice.setNick("Alice")
    alice.privateHistory()
    assert ca.describe()[-1] == ("private-history", [1, 3])
    alice.setNick("bob")
    ca.take()
    alice.privateHistory()
    assert ca.describe() == [("private-history", [])]



def test_privateToAnOwnedNickWhileAway(service: ChatService) -> None:
    """
    A private message to a nick that has an owner but is offline is stored
    (the sender sees it echoed, and is told the recipient is away); the
    owner gets it in its private history when it comes back with its
    token. A nick nobody ever owned is still refused.
    """
    alice, ca, token = privates(service)
    sent = fired(alice.private("bob", "5 while you were away"))
    assert (sent.sender, sent.recipient, sent.id) == ("alice", "bob", 5)
    events = ca.take()
    assert [e.kind for e in events] == ["private", "notice"]
    assert "bob is offline" in events[1].text  # type: ignore[attr-defined]
    bob = service.connect(RecordingClient(), nick="bob", peer="test", token=token)
    client = bob.client
    assert isinstance(client, RecordingClient)
    bob.privateHistory(afterId=4)
    assert client.describe() == [("private-history", [5])]
    with pytest.raises(ChatError) as e:
        alice.private("nobody-ever", "hello?")
    assert e.value.code == "no-such-nick"


def test_ownerReplacesItsStaleConnection(service: ChatService) -> None:
    """
    When the owner of a nick comes back with its token while the server
    still holds its previous connection (dropped without the server
    noticing yet), that stale connection is closed and the nick goes to the
    new one; the room sees the old one leave ("reconnected"). Without the
    token, the nick is still taken.
    """
    alice, ca = connect(service, "alice")
    bob, cb = connect(service, "bob")
    for m in (alice, bob):
        m.join("#lobby")
    token = alice.token
    assert token is not None
    ca.take()
    cb.take()
    with pytest.raises(ChatError) as e:
        service.connect(RecordingClient(), nick="alice", peer="test", token="wrong")
    assert e.value.code == "nick-taken"
    again = service.connect(RecordingClient(), nick="alice", peer="test", token=token)
    assert again.owner is True
    assert alice.gone
    assert ca.closed == ["replaced by a new connection of alice"]
    assert service.lookup("alice") is again
    assert ("part", "#lobby", "alice", "reconnected") in [
        (ev.kind, ev.room, ev.nick, ev.reason) for ev in cb.take() if ev.kind == "part"  # type: ignore[attr-defined]
    ]


def test_serviceIsWhatABrokerSees(service: ChatService) -> None:
    """
    A broker is given the service as L{IClusterEvents}, and nothing else of it.
    """
    from zope.interface.verify import verifyObject

    from twisted_chat.core.interfaces import IClusterEvents

    events = service.broker.events  # type: ignore[attr-defined]
    assert verifyObject(IClusterEvents, events)
    assert events.localRooms() == [] and events.now() == service.now()
