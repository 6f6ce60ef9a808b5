"""
Tests for L{twisted_chat.core.service.ChatService}: the client interface,
nicknames, rooms, messages, members whose delivery fails, and shutdown,
driven through a recording L{IChatClient}.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import History, Message
from twisted_chat.core.interfaces import IChatClient, IMessageStore
from twisted_chat.stores.memory import MemoryStore
from twisted_chat.core.service import ChatService

from tests.support.fakes import BrokenClient, ClosingClient, connect, describe, enter, fired, RecordingClient, say


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

