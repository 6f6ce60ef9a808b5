"""
Tests for what makes a conversation (L{twisted_chat.core.conversation}):
edits, deletions and reactions as entries of the room's sequence, replies
and mentions, typing (rate limited, expiring on the service's clock), read
markers and search; on a memory store, with recording clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from twisted.internet.defer import Deferred

from twisted_chat.core.errors import ChatError
from twisted_chat.core.events import (
    History,
    Message,
    Private,
    PrivateHistory,
    PrivateUpdate,
    ReadMarker,
    SearchResults,
    Typing,
    Update,
)

from twisted_chat.core.service import ChatService
from twisted_chat.stores.memory import MemoryStore

from tests.support.fakes import RecordingClient, enter, fired, say

if TYPE_CHECKING:
    from twisted.internet.task import Clock


def refused(code: str, call: object) -> None:
    """
    C{call()} is refused with C{code} (synchronously, or its Deferred fails).
    """
    assert callable(call)
    with pytest.raises(ChatError) as e:
        result = call()
        if hasattr(result, "addCallback"):
            fired(result)
    assert e.value.code == code


def test_mentionsAndReplies(service: ChatService) -> None:
    """
    A message carries the nicks it mentions (C{@nick} anywhere, C{nick:}
    at its start), computed when it is said, and the id it answers.
    """
    alice, a = enter(service, "alice", "#r")
    bob, b = enter(service, "bob", "#r")
    first = say(alice, "bob: lunch? cc @Carol and @carol")
    assert first.mentions == ("bob", "Carol")
    reply = fired(bob.say("yes!", replyTo=first.id))
    assert (reply.replyTo, reply.mentions) == (first.id, ())
    assert b.of(Message)[-1].replyTo == first.id
    refused("no-such-message", lambda: bob.say("to nothing", replyTo=99))
    refused("bad-request", lambda: bob.say("to nothing", replyTo="one"))


def test_replyToNothingInAnEmptyRoom(service: ChatService) -> None:
    """
    A reply in a room with no message yet (its last id 0) names no
    message: refused with C{no-such-message}, and nothing is said.
    """
    alice, a = enter(service, "alice", "#r")
    refused("no-such-message", lambda: alice.say("to nothing", replyTo=5))
    assert a.of(Message) == []


def test_replyToAnUpdateIsRefused(service: ChatService) -> None:
    """
    A reply names a message, not an entry of the room's sequence that is
    an edit, a deletion or a reaction; the same for private messages.
    """
    alice, a = enter(service, "alice", "#r")
    bob, _ = enter(service, "bob", "#r")
    first = say(alice, "hello")
    edit = fired(alice.edit(first.id, "hello!"))
    refused("no-such-message", lambda: bob.say("to an edit", replyTo=edit.id))
    assert fired(bob.say("to the message", replyTo=first.id)).replyTo == first.id
    alice.owner = bob.owner = True
    p = fired(alice.private("bob", "psst"))
    u = fired(alice.updatePrivate(p.id, "react", emoji="👍"))
    refused("no-such-message", lambda: bob.private("alice", "to a reaction", replyTo=u.id))
    assert fired(bob.private("alice", "to it", replyTo=p.id)).replyTo == p.id


def test_replyKeepsTheOrderOfWhatWasSent(clock: Clock) -> None:
    """
    A reply's message is looked up before the reply is stored; a message
    sent right after it, by the same member, is stored after it all the
    same (with a store whose reads are slow).
    """
    store = _SlowReads()
    service = ChatService(store=store, clock=clock)
    alice, a = enter(service, "alice", "#r")
    first = say(alice, "hello")
    store.slow = True
    reply = alice.say("a reply", replyTo=first.id)
    after = alice.say("said after it")
    assert a.said("alice") == ["hello"]
    store.answer()
    assert (fired(reply).id, fired(after).id) == (2, 3)
    assert a.said("alice") == ["hello", "a reply", "said after it"]


class _SlowReads(MemoryStore):
    """
    A memory store whose C{get}, once C{slow} is set, answers only when
    the test says so.
    """

    slow = False

    def __init__(self) -> None:
        MemoryStore.__init__(self)
        self.pending: list[tuple[Deferred[Any], Any]] = []

    def get(self, room: str, id: int) -> Deferred[Message | None]:
        if not self.slow:
            return MemoryStore.get(self, room, id)
        d: Deferred[Any] = Deferred()
        self.pending.append((d, fired(MemoryStore.get(self, room, id))))
        return d

    def answer(self) -> None:
        d, result = self.pending.pop(0)
        d.callback(result)


def test_editDeleteReactAreEntriesOfTheRoom(service: ChatService, clock: Clock) -> None:
    """
    An edit, a deletion and a reaction each take the next id of the room
    and reach every member in order, after the messages before them;
    history shows the message as it is now.
    """
    alice, a = enter(service, "alice", "#r")
    bob, b = enter(service, "bob", "#r")
    one = say(alice, "hello wrold")
    two = say(bob, "hi")
    clock.advance(5)
    edit = fired(alice.edit(one.id, "hello world"))
    react = fired(bob.react(one.id, "👍"))
    unreact = fired(bob.react(one.id, "👍", on=False))
    react2 = fired(alice.react(one.id, "🎉"))
    delete = fired(bob.delete(two.id))
    assert [u.id for u in (edit, react, unreact, react2, delete)] == [3, 4, 5, 6, 7]
    assert b.describe()[-5:] == [
        ("edit", "#r", 1, 3, "alice", "hello world"),
        ("react", "#r", 1, 4, "bob", "👍"),
        ("react", "#r", 1, 5, "bob", "👍"),
        ("react", "#r", 1, 6, "alice", "🎉"),
        ("delete", "#r", 2, 7, "bob", ""),
    ]
    assert [u.on for u in (react, unreact)] == [True, False]
    assert (edit.original, edit.author, delete.original) == ("hello wrold", "alice", "hi")
    bob.history("#r")
    [history] = b.of(History)
    assert [(m.id, m.text, m.edited > 0, m.deleted, m.reactions) for m in history.messages] == [
        (1, "hello world", True, False, {"🎉": ["alice"]}),
        (2, "", False, True, None),
    ]


def test_onlyTheAuthorEditsAndOperatorsDelete(service: ChatService) -> None:
    """
    Only its author edits a message; its author or an operator of the
    room deletes it; a deleted message cannot be edited or reacted to;
    an id that is no message (an update's) is refused.
    """
    op, _ = enter(service, "op", "#r")  # (the first in the room: its operator)
    alice, _ = enter(service, "alice", "#r")
    bob, b = enter(service, "bob", "#r")
    mine = say(alice, "mine")
    refused("not-author", lambda: bob.edit(mine.id, "yours"))
    refused("not-author", lambda: bob.delete(mine.id))
    edit = fired(alice.edit(mine.id, "still mine"))
    refused("no-such-message", lambda: alice.edit(edit.id, "an update is no message"))
    refused("no-such-message", lambda: alice.edit(99, "nothing"))
    refused("bad-request", lambda: alice.edit("one", "nothing"))
    refused("too-long", lambda: alice.edit(mine.id, "x" * (service.settings.maxTextLength + 1)))
    refused("empty-message", lambda: alice.edit(mine.id, "  "))
    refused("bad-request", lambda: bob.react(mine.id, "no spaces"))
    fired(op.delete(mine.id))
    refused("no-such-message", lambda: alice.edit(mine.id, "back"))
    refused("no-such-message", lambda: bob.react(mine.id, "👍"))
    assert [u.op for u in b.of(Update)] == ["edit", "delete"]


def test_updatesCountAgainstFloodControl(service: ChatService, clock: Clock) -> None:
    """
    Edits and reactions are charged to flood control like messages.
    """
    service.floodRate, service.floodBurst = 1.0, 3.0
    alice, _ = enter(service, "alice", "#r")
    first = say(alice, "one")
    assert alice.floodWait() == 0
    fired(alice.edit(first.id, "two"))
    fired(alice.react(first.id, "👍"))
    assert alice.floodWait() > 0


def test_updatesAreIdempotentWithARef(service: ChatService) -> None:
    """
    An edit resent with the same ref is answered with the first one, and
    stored once.
    """
    alice, a = enter(service, "alice", "#r")
    m = say(alice, "one")
    first = fired(alice.edit(m.id, "two", ref="e1"))
    again = fired(alice.edit(m.id, "two", ref="e1"))
    assert again.id == first.id
    assert len(a.of(Update)) == 1


def test_resumeGetsTheMissedUpdatesOnce(service: ChatService) -> None:
    """
    A member that resumes after a position gets the updates after it,
    exactly once, in order, with the messages as they are now; a plain
    join gets messages only.
    """
    alice, _ = enter(service, "alice", "#r")
    one = say(alice, "one")
    fired(alice.edit(one.id, "uno"))
    two = say(alice, "two")
    fired(alice.react(one.id, "👍"))
    fired(alice.delete(two.id))
    bob, b = enter(service, "bob")
    bob.join("#r", since=(service.store.epoch, one.id))
    [history] = b.of(History)
    assert history.recovered is True
    assert [(m.kind, m.id) for m in history.messages] == [("update", 2), ("message", 3), ("update", 4), ("update", 5)]
    assert history.messages[1].deleted and history.messages[1].text == ""
    carol, c = enter(service, "carol")
    carol.join("#r")
    [plain] = c.of(History)
    assert [(m.id, m.text, m.deleted, m.reactions) for m in plain.messages] == [
        (1, "uno", False, {"👍": ["alice"]}),
        (3, "", True, None),
    ]


def test_privateUpdates(service: ChatService) -> None:
    """
    Edits, deletions and reactions of a private message go to its two
    parties only, take ids of the private sequence, and come back in the
    private history after a position.
    """
    alice, a = enter(service, "alice")
    bob, b = enter(service, "bob")
    carol, c = enter(service, "carol")
    psst = fired(alice.private("bob", "psst"))
    refused("not-author", lambda: bob.updatePrivate(psst.id, "edit", text="mine now"))
    refused("no-such-message", lambda: carol.updatePrivate(psst.id, "react", emoji="👀"))
    fired(bob.updatePrivate(psst.id, "react", emoji="👍"))
    fired(alice.updatePrivate(psst.id, "edit", text="psst!"))
    assert [e[0] for e in b.describe() if e[0].startswith("private-")] == ["private-react", "private-edit"]
    assert [e[0] for e in a.describe() if e[0].startswith("private-")] == ["private-react", "private-edit"]
    assert c.of(PrivateUpdate) == []
    alice.privateHistory(psst.id)
    [history] = a.of(PrivateHistory)
    assert [(p.kind, p.target) for p in history.messages if isinstance(p, PrivateUpdate)] == [
        ("private-update", psst.id), ("private-update", psst.id)
    ]
    alice.privateHistory(None)
    recent = a.of(PrivateHistory)[-1].messages
    assert [(p.text, p.reactions) for p in recent] == [("psst!", {"👍": ["bob"]})]


def test_typingIsRateLimitedAndExpires(service: ChatService, clock: Clock) -> None:
    """
    An active is forwarded to the room's others at most once every 3 s;
    a paused or done ends a forwarded active; an active not repeated
    expires after 6 s (the room gets a done); a message ends it silently.
    """
    alice, a = enter(service, "alice", "#r")
    bob, b = enter(service, "bob", "#r")
    alice.typing("active")
    clock.advance(1)
    alice.typing("active")  # (within 3 s: not forwarded)
    assert b.describe() == [("typing", "#r", "alice", "active")]
    assert a.of(Typing) == []  # (not to itself)
    clock.advance(2)
    alice.typing("active")
    assert b.describe() == [("typing", "#r", "alice", "active")]
    alice.typing("paused")
    alice.typing("done")  # (nothing forwarded to end)
    assert b.describe() == [("typing", "#r", "alice", "paused")]
    clock.advance(3)
    alice.typing("active")
    clock.advance(5.9)
    assert b.describe() == [("typing", "#r", "alice", "active")]
    clock.advance(0.2)
    assert b.describe() == [("typing", "#r", "alice", "done")]
    clock.advance(10)
    alice.typing("active")
    say(alice, "done typing")
    clock.advance(10)
    assert b.describe() == [("typing", "#r", "alice", "active"), ("message", "#r", 1, "alice", "done typing", False)]
    assert clock.getDelayedCalls() == []
    with pytest.raises(ChatError) as e:
        alice.typing("sleeping")
    assert e.value.code == "bad-request"


def test_typingStopsWhenTheMemberLeaves(service: ChatService, clock: Clock) -> None:
    """
    A member that leaves while typing leaves no timer behind.
    """
    alice, _ = enter(service, "alice", "#r")
    alice.typing("active")
    alice.quit()
    assert clock.getDelayedCalls() == []


def test_readMarkers(service: ChatService) -> None:
    """
    An owned nick's read position is stored, told to it, and comes back
    with the history of its next join with the unread and mention counts;
    a guest has none.
    """
    alice, a = enter(service, "alice", "#r")
    bob, _ = enter(service, "bob", "#r")
    assert alice.owner
    say(bob, "one")
    two = say(bob, "two")
    say(bob, "alice: three")
    say(bob, "hey @alice")
    say(alice, "mine")
    fired(alice.markRead(two.id))
    assert a.describe()[-1] == ("read", "#r", two.id)
    alice.part("#r")
    alice.join("#r")
    [history] = a.of(History)
    assert history.read == (two.id, 2, 2)
    guest, g = enter(service, "guest", "#r")
    guest.owner = False
    with pytest.raises(ChatError) as e:
        guest.markRead(1)
    assert e.value.code == "not-owner"


def test_search(service: ChatService, clock: Clock) -> None:
    """
    Search finds the messages whose words start with every word asked,
    newest first, in the rooms the asker is in and its own private
    messages; never a deleted one.
    """
    alice, a = enter(service, "alice", "#a", "#b")
    bob, _ = enter(service, "bob", "#a", "#secret")
    for text, room in [("Hello world", "#a"), ("hello there", "#a"), ("hello gone", "#a"), ("worldly hello", "#b"),
                       ("hello world", "#secret")]:
        clock.advance(1)
        said = say(alice if room != "#secret" and text != "hello there" else bob, text, room)
        if text == "hello gone":
            gone = said
    clock.advance(1)
    fired(alice.private("bob", "hello in private"))
    fired(alice.delete(gone.id, "#a"))
    fired(alice.search("hel wor"))
    [found] = a.of(SearchResults)
    assert [(getattr(m, "room", "@"), m.text) for m in found.results] == [("#b", "worldly hello"), ("#a", "Hello world")]
    fired(alice.search("hello", room="#a", limit=1))
    assert [m.text for m in a.of(SearchResults)[-1].results] == ["hello there"]
    fired(alice.search("private"))
    assert [type(m) for m in a.of(SearchResults)[-1].results] == [Private]
    for bad in ("", "  ", "!!", 7):
        with pytest.raises(ChatError):
            alice.search(bad)
    with pytest.raises(ChatError):
        alice.search("hello", before=3)
    with pytest.raises(ChatError) as e:
        alice.search("hello", room="#secret")
    assert e.value.code == "not-in-room"


def test_readMarkersReachEveryConnectionOfTheNick(service: ChatService) -> None:
    """
    A read position set from one device is told to every connection of
    the nick (the one that set it included), and to nobody else.
    """
    alice, a = enter(service, "alice", "#r")
    bob, b = enter(service, "bob", "#r")
    phone = RecordingClient()
    again = service.connect(phone, nick="alice", peer="test", token=alice.token)
    again.join("#r")
    phone.take()
    m = say(bob, "one")
    fired(again.markRead(m.id))
    assert [e for e in a.describe() if e[0] == "read"] == [("read", "#r", m.id)]
    assert [e for e in phone.describe() if e[0] == "read"] == [("read", "#r", m.id)]
    assert b.of(ReadMarker) == []


def test_updateOfAnotherEpochIsRefused(service: ChatService) -> None:
    """
    An update that names the epoch of its message is refused once the
    room's ids are of another epoch (the store lost its messages: the id
    would name another message), and goes through in the same epoch.
    """
    alice, _ = enter(service, "alice", "#r")
    m = say(alice, "one")
    refused("no-such-message", lambda: alice.edit(m.id, "uno", epoch="gone1234"))
    refused("bad-request", lambda: alice.react(m.id, "👍", epoch=7))
    assert fired(alice.edit(m.id, "uno", epoch=m.epoch)).text == "uno"


def test_historyAfterPagesByMessages(service: ChatService) -> None:
    """
    The first N messages after an id (IRC's CHATHISTORY AFTER) are N
    messages, however many edits, deletions and reactions sit between
    them in the room's sequence.
    """
    alice, a = enter(service, "alice", "#r")
    ids = []
    for i in range(6):
        m = say(alice, "m%d" % (i,))
        ids.append(m.id)
        fired(alice.react(m.id, "👍"))
        fired(alice.edit(m.id, "m%d!" % (i,)))
    a.take()
    alice.history(limit=3, after=ids[0])
    (h,) = a.of(History)
    assert [m.id for m in h.messages] == ids[1:4]
    a.take()
    alice.history(limit=3, after=ids[0], before=ids[3])
    (h,) = a.of(History)
    assert [m.id for m in h.messages] == ids[1:3]
    a.take()
    alice.history(limit=10, after=ids[3])
    (h,) = a.of(History)
    assert [m.id for m in h.messages] == ids[4:]
