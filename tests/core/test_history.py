"""
Tests for the history a member gets when it joins or resumes
(L{twisted_chat.core.history}, through the service): no gap and no
duplicate against the live messages, with a slow store and with a broker
whose deliveries lag behind it.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock

from twisted_chat.core.errors import StoreUnavailable
from twisted_chat.core.events import EpochChanged, History, Message
from twisted_chat.core.history import HOLD_FOR, RETRY_FIRST_DELAY
from twisted_chat.stores.memory import MemoryStore
from twisted_chat.core.service import ChatService

from tests.support.fakes import connect, describe, enter, fired, FlakyStore, LaggingBroker, say


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
    When the store cannot give history for as long as a member's events
    may be held, the joiner is told it is unavailable (and gets what was
    held) and stays in the room; no more reads are made for it.
    """
    store = FlakyStore()
    service = ChatService(store=store, clock=clock)
    alice, ca = connect(service, "alice")
    alice.join("#lobby")
    assert ca.describe() == [("join", "#lobby", "alice"), ("presence", "#lobby", ["alice"])]
    clock.pump([0.5] * 14)  # (read again after 0.5, 1, 2, 4 s: 7 s)
    assert ca.describe() == [] and store.historyReads == 4
    clock.pump([0.5] * int(HOLD_FOR * 2 - 14))
    # (no read fits in what is left of the 12 s)
    assert ca.describe() == [("history", "#lobby", [], None, "unavailable")]
    reads = store.historyReads
    clock.pump([1.0] * 30)
    assert store.historyReads == reads and clock.getDelayedCalls() == []
    alice.history()
    assert ca.describe() == [("history", "#lobby", [], None, "unavailable")]
    assert alice.current == "#lobby"


def _resumesWhileDown(store: MemoryStore, clock: Clock, down: Callable[[], object]) -> tuple[Any, Any, Any]:
    """
    alice says m1-m3 in #lobby; the store goes C{down}; bob joins it,
    resuming after m1: returns alice, bob and bob's client.
    """
    service = ChatService(store=store, clock=clock)
    alice, _ = enter(service, "alice", "#lobby")
    for i in range(3):
        say(alice, "m%d" % (i + 1,))
    down()
    bob, cb = connect(service, "bob")
    bob.join("#lobby", since=(store.epoch, 1))
    return alice, bob, cb


def test_resumeRetriedUntilTheStoreIsBack(clock: Clock) -> None:
    """
    A resume whose history read fails is read again until the store
    answers: the member then gets every message after its position exactly
    once, in order (those said meanwhile included), and the live ones
    after them.
    """
    store = FlakyStore()
    store.down = False
    alice, bob, cb = _resumesWhileDown(store, clock, lambda: setattr(store, "down", True))
    assert cb.describe() == [("join", "#lobby", "bob"), ("presence", "#lobby", ["alice", "bob"])]
    clock.pump([RETRY_FIRST_DELAY, RETRY_FIRST_DELAY * 2])
    say(alice, "m4")
    assert cb.take() == []
    store.down = False
    clock.pump([RETRY_FIRST_DELAY * 4])
    assert cb.describe() == [("history", "#lobby", [2, 3, 4], True, "")]
    say(alice, "m5")
    assert cb.describe() == [("message", "#lobby", 5, "alice", "m5", False)]
    assert clock.getDelayedCalls() == []


def test_leavingWhileHistoryIsRetriedEndsTheRetries(clock: Clock) -> None:
    """
    A member that leaves the room while its failed history read waits to be
    read again gets no history, and the store is not asked again.
    """
    store = FlakyStore()
    service = ChatService(store=store, clock=clock)
    alice, ca = connect(service, "alice")
    alice.join("#lobby")
    assert store.historyReads == 1
    alice.part()
    ca.take()
    store.down = False
    clock.pump([1.0] * int(HOLD_FOR * 2))
    assert store.historyReads == 1
    assert ca.take() == []


class StalledStore(MemoryStore):
    """
    A memory store whose history reads, while C{stalled} (Redis stopped),
    wait: they fail after 10 s (the cluster's command timeout) unless the
    stall ends first, when every waiting read is answered.
    """

    def __init__(self, clock: Clock) -> None:
        MemoryStore.__init__(self)
        self.clock = clock
        self.stalled = False
        self.waiting: list[tuple[Deferred[Any], Callable[[], Deferred[Any]]]] = []

    def recent(self, room: str, limit: int, before: int | None = None) -> Deferred[list[Message]]:
        return self._read(lambda: MemoryStore.recent(self, room, limit, before))

    def since(self, room: str, epoch: str, afterId: int, limit: int) -> Deferred[list[Message] | None]:
        return self._read(lambda: MemoryStore.since(self, room, epoch, afterId, limit))

    def _read(self, read: Callable[[], Deferred[Any]]) -> Deferred[Any]:
        if not self.stalled:
            return read()
        d: Deferred[Any] = Deferred()
        entry = (d, read)
        self.waiting.append(entry)

        def timedOut() -> None:
            if entry in self.waiting:
                self.waiting.remove(entry)
                d.errback(StoreUnavailable("Redis did not answer within 10 s"))

        self.clock.callLater(10.0, timedOut)
        return d

    def resume(self) -> None:
        self.stalled = False
        waiting, self.waiting = self.waiting, []
        for d, read in waiting:
            read().chainDeferred(d)


@pytest.mark.parametrize("stall, history", [(11.0, [2, 3, 4]), (30.0, None)])
def test_resumeDuringAStall(clock: Clock, stall: float, history: list[int] | None) -> None:
    """
    A member resumes while the store is stalled (Redis stopped): its first
    read times out after 10 s and is read again. A stall of 11 s ends while
    that read waits: the member gets what it missed, then what was held. A
    longer one: at 12 s after the join the member is told the history is
    unavailable, and what was held for it (the answer to its /nick) comes
    at once, within the 15 s a client waits for an answer.
    """
    store = StalledStore(clock)
    alice, bob, cb = _resumesWhileDown(store, clock, lambda: setattr(store, "stalled", True))
    cb.take()
    say(alice, "m4")
    clock.advance(5.0)
    bob.setNick("robert")
    clock.pump([0.5] * 12)  # (6 s more: 11 s after the join)
    if history is not None:
        assert cb.describe() == []
        store.resume()
        assert cb.describe() == [
            ("history", "#lobby", history, True, ""),
            ("nick", "bob", "robert", ("#lobby",)),
        ]
    else:
        clock.pump([0.5] * 2)
        assert cb.describe() == [
            ("history", "#lobby", [], False, "unavailable"),
            ("message", "#lobby", 4, "alice", "m4", False),
            ("nick", "bob", "robert", ("#lobby",)),
        ]
        clock.advance(stall)
        store.resume()
        assert cb.describe() == []
    say(alice, "m5")
    assert cb.describe()[-1] == ("message", "#lobby", 5, "alice", "m5", False)


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


def _bobJoinsDuringARead(service: ChatService, store: SlowStore) -> tuple[Any, Any, Any, Any]:
    """
    alice said "one" in #lobby; bob joins it while the store is slow:
    his history read waits. (alice, her client, bob, his client.)
    """
    alice, ca = enter(service, "alice", "#lobby")
    say(alice, "one")
    store.slow = True
    bob, cb = connect(service, "bob")
    bob.join("#lobby")
    cb.take()
    return alice, ca, bob, cb


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
    alice, _, bob, cb = _bobJoinsDuringARead(service, store)
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
    alice, _, bob, cb = _bobJoinsDuringARead(service, store)
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


def test_heldMessagesOfAnEpochTheHistoryReplaced(slowService: tuple[ChatService, SlowStore]) -> None:
    """
    While bob's history is read, a message of the room comes (held for
    him), then the shared store turns out to have lost its data (Redis
    back empty: a new epoch) and the read returns the new epoch's
    messages. bob gets what the others got, in their order: the old
    epoch's message, the notice, then the new epoch's history, not the
    old message after the new history (a line member then saw a wiped
    message between the new epoch's ids 2 and 3: redis2 seed 460086620).
    """
    service, store = slowService
    alice, ca, bob, cb = _bobJoinsDuringARead(service, store)
    say(alice, "two")
    old, new = store.epoch, "0e0e0e0e"
    store.epoch = new
    store._rooms.clear()
    store._last.clear()
    service.broker.events.epochChanged(old, new)
    say(alice, "after one")
    store.answer(asOfNow=True)
    got = cb.take()
    assert [type(e).__name__ for e in got] == ["Message", "EpochChanged", "History"]
    assert (got[0].epoch, got[0].id, got[0].text) == (old, 2, "two")
    assert [(m.epoch, m.id, m.text) for m in got[2].messages] == [(new, 1, "after one")]
    seen = [type(e).__name__ for e in ca.take() if isinstance(e, (Message, EpochChanged))]
    assert seen == ["Message", "Message", "EpochChanged", "Message"]
    say(alice, "after two")
    assert [(e.epoch, e.id) for e in cb.take()] == [(new, 2)]


def test_messagesInOtherRoomsWaitInOrder(slowService: tuple[ChatService, SlowStore]) -> None:
    """
    While one room's history is being read, messages of the joiner's other
    rooms wait too, and come in the order they were said, right after that
    history: a connection's events never overtake each other.
    """
    service, store = slowService
    alice, _ = enter(service, "alice", "#lobby", "#dev")
    bob, cb = enter(service, "bob", "#dev")
    store.slow = True
    bob.join("#lobby")
    cb.take()
    say(alice, "in dev", "#dev")
    say(alice, "in lobby", "#lobby")
    say(alice, "in dev again", "#dev")
    assert cb.take() == []
    store.answer(asOfNow=False)
    assert cb.describe() == [
        ("history", "#lobby", [], None, ""),
        ("message", "#dev", 1, "alice", "in dev", False),
        ("message", "#lobby", 1, "alice", "in lobby", False),
        ("message", "#dev", 2, "alice", "in dev again", False),
    ]
    say(alice, "live", "#dev")
    assert cb.describe() == [("message", "#dev", 3, "alice", "live", False)]


def test_twoHistoriesReadAtOnce(slowService: tuple[ChatService, SlowStore]) -> None:
    """
    Two rooms' histories read at once, the second answered first: it waits
    for the first one (and what came before it), then everything follows
    in order, each room's events after its own history.
    """
    service, store = slowService
    alice, _ = enter(service, "alice", "#a", "#b")
    store.slow = True
    bob, cb = connect(service, "bob")
    bob.join("#a")
    say(alice, "a1", "#a")
    bob.join("#b")
    say(alice, "b1", "#b")
    cb.take()
    d, asked, _ = store.pending.pop(1)
    d.callback(asked)  # (#b's history: it waits behind #a's)
    assert cb.take() == []
    store.answer(asOfNow=False)
    assert cb.describe() == [
        ("history", "#a", [], None, ""),
        ("message", "#a", 1, "alice", "a1", False),
        ("join", "#b", "bob"),
        ("presence", "#b", ["alice", "bob"]),
        ("history", "#b", [], None, ""),
        ("message", "#b", 1, "alice", "b1", False),
    ]


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



def test_resumeAtTheEndRunsAheadOfTheNode(clock: Clock) -> None:
    """
    A member resumes at the room's last id while this node has not
    delivered the messages up to it yet (its bus was down, say): the
    history is empty (nothing came after its position), and when the node
    catches up, the messages up to its position are not delivered to it
    again; the next one is.
    """
    broker = LaggingBroker()
    service = ChatService(store=MemoryStore(), clock=clock, broker=broker)
    alice, ca = enter(service, "alice", "#lobby")
    for i in range(1, 4):
        say(alice, "m%d" % (i,))  # stored, still on their way to this node
    bob, cb = connect(service, "bob")
    bob.join("#lobby", since=(service.store.epoch, 3))
    history = [e for e in cb.take() if isinstance(e, History)][-1]
    assert (history.messages, history.recovered) == ([], True)
    broker.catchUp()
    say(alice, "m4")
    broker.catchUp()
    assert [e.id for e in cb.take() if isinstance(e, Message)] == [4]
    assert [e.id for e in ca.take() if isinstance(e, Message)] == [1, 2, 3, 4]
    assert bob.floors is None


# -- one connection's order ------------------------------------------------------


def test_ownPrivateEchoWaitsBehindHeldRoomMessages(slowService: tuple[ChatService, SlowStore]) -> None:
    """
    A member says something in a room whose history it is still being sent
    (a client that joins and pipes lines at once), then sends a private
    message: it sees its room message, then its private one, in the order it
    sent them, after the room's history.
    """
    service, store = slowService
    bob, _ = enter(service, "bob", "#dev")
    store.slow = True
    alice, ca = connect(service, "alice")
    alice.join("#lobby")
    ca.take()
    say(alice, "one")
    fired(alice.private("bob", "psst"))
    assert ca.describe() == []
    store.answer(asOfNow=False)
    assert ca.describe() == [
        ("history", "#lobby", [], None, ""),
        ("message", "#lobby", 1, "alice", "one", False),
        ("private", 1, "alice", "bob", "psst"),
    ]


def test_ownMessagesInTwoRoomsKeepTheirOrder(slowService: tuple[ChatService, SlowStore]) -> None:
    """
    A member says something in a room whose history it is still being sent,
    then in another of its rooms: it sees its messages in that order.
    """
    service, store = slowService
    alice, ca = enter(service, "alice", "#dev")
    store.slow = True
    alice.join("#lobby")
    ca.take()
    say(alice, "first", "#lobby")
    say(alice, "second", "#dev")
    store.answer(asOfNow=False)
    assert ca.describe() == [
        ("history", "#lobby", [], None, ""),
        ("message", "#lobby", 1, "alice", "first", False),
        ("message", "#dev", 1, "alice", "second", False),
    ]
