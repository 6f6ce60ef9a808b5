"""
The fault harness' own logic (tests/chaos): what its checker reports for
journals built by hand, and how its text clients read what they are shown.
A false report of the checker sends people hunting for a daemon bug that is
not there; these pin the cases where it made one.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from tests.chaos.checker import Result, check
from tests.chaos.clients import TextView
from tests.chaos.faults import Injected
from tests.chaos.journal import Connection, Entry, Episode, Journal, Request


def _body(epoch: str, id: int, text: str) -> dict[str, Any]:
    return {"e": epoch, "i": id, "x": text}


def _kinds(result: Result) -> list[str]:
    return sorted(v.invariant for v in result.violations)


def _journalOf(requests: list[Request], connections: list[Connection]) -> Journal:
    """
    A journal of C{requests} (the positions of those acknowledged with
    one known, as json clients saw them) on C{connections}.
    """
    journal = Journal()
    journal.requests = requests
    for r in requests:
        if r.epoch is not None and r.id is not None:
            journal.mapped(r.token, r.epoch, r.id)
    journal.connections = {c.conn: c for c in connections}
    return journal


def test_resendStoredAgainInALaterEpoch() -> None:
    """
    json2's message was stored in epoch E1 as id 5; Redis came back empty
    (forgetting its ref), and json2's resend of that ref much later stored
    it again in epoch E2, as id 3. line1 joins #r in epoch E2 and is shown
    ids 3 and 4 of E2 (text lines: mapped to ids by their tokens): the
    first is the later copy, as nothing of E1 existed any more. Nothing is
    missed, and no epoch changed under line1.
    """
    first = Request("json2", "json2#1", "#r", "q.json2.5", 10.0, "json2-r5", answered=10.1, answer="ack",
                    epoch="E1", id=5, answerConn="json2#1")  # fmt: skip
    resend = Request("json2", "json2#3", "#r", "q.json2.5", 100.0, "json2-r5", resendOf=first, answered=100.1,
                     answer="ack", epoch="E2", id=3, answerConn="json2#3")  # fmt: skip
    first.resent = True
    other = Request("json1", "json1#2", "#r", "q.json1.9", 101.0, "json1-r9", answered=101.1, answer="ack",
                    epoch="E2", id=4, answerConn="json1#2")  # fmt: skip
    journal = _journalOf([first, resend, other], [
        Connection("json2", "json2#1", "ws-json", "a", 0.0, 20.0),
        Connection("json2", "json2#3", "ws-json", "a", 99.0, 150.0),
        Connection("json1", "json1#2", "ws-json", "a", 90.0, 150.0),
        Connection("line1", "line1#4", "line", "b", 100.5, 150.0),
    ])  # fmt: skip
    journal.episodes = [
        Episode("line1", "line1#4", "#r", 100.5, "join", end=150.0, endedBy="closed", entries=[
            Entry(100.5, "q.json2.5", None, None, False),
            Entry(101.1, "q.json1.9", None, None, True),
        ]),
    ]  # fmt: skip
    e1 = [_body("E1", i, "q.old.%d hello" % (i,)) for i in range(1, 5)] + [_body("E1", 5, "q.json2.5 hi")]
    e2 = [_body("E2", 1, "q.x.1 a"), _body("E2", 2, "q.x.2 b"), _body("E2", 3, "q.json2.5 hi"),
          _body("E2", 4, "q.json1.9 ok")]  # fmt: skip
    faults = [
        Injected("redis-empty", 20.0, 21.0, "Redis restarted empty", {"#r": e1}),
        Injected("redis-empty", 200.0, 201.0, "Redis restarted empty", {"#r": e2}),
    ]
    stored = {"#r": [("E3", 1, "q.json1.20 later")]}
    result = check(journal, stored, "E3", faults, {}, 210.0)
    assert _kinds(result) == [], [str(v) for v in result.violations]


def test_ownLineInALaterHistoryIsNoEcho() -> None:
    """
    text1's line met a stalled Redis and was answered with an error (it
    may have been stored, and it was); after a rejoin the room's history
    shows it. The answer of that line is the error, when it came, not
    the history line seen long after.
    """
    journal = Journal()
    client = SimpleNamespace(journal=journal, name="text1")
    view = TextView(client, "text1#1")  # type: ignore[arg-type]
    journal.connect("text1", "ws-text", "a")
    r = journal.sent("text1", "text1#1", "#ops", "q.text1.7")
    view.pending.append(r)
    view.feed("!!! the message store did not confirm this message (Redis: no answer within 10 s); it may have "
              "been stored: resend it with the same ref to be sure")  # fmt: skip
    errorAt = view.errors[0][0]
    journal.join("text1", "text1#1", "#ops", "join")
    view.feed("#ops [12:00] <text1> q.text1.7 hello")
    view.resolve()
    assert (r.answer, r.answered) == ("error", errorAt)


def test_resendStoredAgainJustAfterAnEmptyRestart() -> None:
    """
    As above, but the resend came right after Redis came back empty, when
    a member may still be shown messages of the wiped epoch: its copy in
    the new epoch (id 1) is what line1 is shown after the epoch notice, and
    what the history of line1's next connection starts with.
    """
    first = Request("json1", "json1#1", "#r", "q.json1.178", 186.5, "json1-r178", answered=186.6, answer="ack",
                    epoch="E1", id=74, answerConn="json1#1")  # fmt: skip
    resend = Request("json1", "json1#2", "#r", "q.json1.178", 247.1, "json1-r178", resendOf=first, answered=247.2,
                     answer="ack", epoch="E2", id=1, answerConn="json1#2")  # fmt: skip
    first.resent = True
    before = Request("json2", "json2#1", "#r", "q.json2.9", 245.0, "json2-r9", answered=245.1, answer="ack",
                     epoch="E1", id=75, answerConn="json2#1")  # fmt: skip
    after = Request("json2", "json2#2", "#r", "q.json2.10", 247.4, "json2-r10", answered=247.5, answer="ack",
                    epoch="E2", id=2, answerConn="json2#2")  # fmt: skip
    journal = _journalOf([first, resend, before, after], [
        Connection("json1", "json1#1", "ws-json", "a", 180.0, 246.0),
        Connection("json1", "json1#2", "ws-json", "a", 247.0, 260.0),
        Connection("json2", "json2#1", "ws-json", "a", 180.0, 246.0),
        Connection("json2", "json2#2", "ws-json", "a", 247.0, 260.0),
        Connection("line1", "line1#19", "line", "a", 236.5, 249.1),
        Connection("line1", "line1#20", "line", "a", 249.4, 253.5),
    ])  # fmt: skip
    journal.episodes = [
        Episode("line1", "line1#19", "#r", 236.5, "join", notices=[247.34], end=249.1, endedBy="closed", entries=[
            Entry(245.1, "q.json2.9", None, None, True),
            Entry(247.342, "q.json1.178", None, None, True),
            Entry(247.5, "q.json2.10", None, None, True),
        ]),
        Episode("line1", "line1#20", "#r", 249.4, "join", end=253.5, endedBy="closed", entries=[
            Entry(249.4, "q.json1.178", None, None, False),
            Entry(249.4, "q.json2.10", None, None, False),
        ]),
    ]  # fmt: skip
    e1 = [_body("E1", i, "q.old.%d hello" % (i,)) for i in range(1, 74)]
    e1 += [_body("E1", 74, "q.json1.178 hi"), _body("E1", 75, "q.json2.9 ok")]
    e2 = [_body("E2", 1, "q.json1.178 hi"), _body("E2", 2, "q.json2.10 ok")]
    faults = [
        Injected("redis-empty", 245.8, 246.4, "Redis restarted empty", {"#r": e1}),
        Injected("redis-empty", 300.0, 300.5, "Redis restarted empty", {"#r": e2}),
    ]
    stored = {"#r": [("E3", 1, "q.json1.300 later")]}
    result = check(journal, stored, "E3", faults, {}, 310.0)
    assert _kinds(result) == [], [str(v) for v in result.violations]


def _resentAcrossAnEmptyRestart(notices: list[float], entries: list[Entry]) -> Result:
    """
    #r: json1's ids 3 and 4 of E1 (their acknowledgements lost with its
    connection), json2's id 5; Redis back empty at 40.2 s; json1 resends
    both refs, stored again as ids 1 and 2 of E2; json2's id 3 of E2.
    line1 (joined at 39 s) was told of E2 and shown C{entries}.
    """
    requests = [
        Request("json1", "json1#1", "#r", "q.json1.3", 39.0, "json1-r3", answered=None, epoch=None, id=None),
        Request("json1", "json1#1", "#r", "q.json1.4", 39.1, "json1-r4", answered=None, epoch=None, id=None),
        Request("json2", "json2#1", "#r", "q.json2.5", 39.2, "json2-r5", answered=39.3, answer="ack", epoch="E1",
                id=5, answerConn="json2#1"),
    ]  # fmt: skip
    resends = [
        Request("json1", "json1#2", "#r", "q.json1.3", 41.0, "json1-r3", resendOf=requests[0], answered=41.1,
                answer="ack", epoch="E2", id=1, answerConn="json1#2"),
        Request("json1", "json1#2", "#r", "q.json1.4", 41.2, "json1-r4", resendOf=requests[1], answered=41.3,
                answer="ack", epoch="E2", id=2, answerConn="json1#2"),
        Request("json2", "json2#2", "#r", "q.json2.6", 41.4, "json2-r6", answered=41.5, answer="ack", epoch="E2",
                id=3, answerConn="json2#2"),
    ]  # fmt: skip
    for r in requests[:2]:
        r.resent = True
    journal = _journalOf(requests + resends, [
        Connection("json1", "json1#1", "ws-json", "b", 0.0, 39.5),
        Connection("json1", "json1#2", "ws-json", "a", 40.9, 60.0),
        Connection("json2", "json2#1", "ws-json", "a", 0.0, 40.1),
        Connection("json2", "json2#2", "ws-json", "a", 40.8, 60.0),
        Connection("line1", "line1#4", "line", "a", 39.0, 60.0),
    ])  # fmt: skip
    journal.episodes = [Episode("line1", "line1#4", "#r", 39.0, "join", notices=notices, end=60.0, endedBy="closed",
                                entries=entries)]  # fmt: skip
    e1 = [_body("E1", i, "q.old.%d hello" % (i,)) for i in (1, 2)]
    e1 += [_body("E1", 3, "q.json1.3 a"), _body("E1", 4, "q.json1.4 b"), _body("E1", 5, "q.json2.5 c")]
    faults = [Injected("redis-empty", 40.2, 40.5, "Redis restarted empty", {"#r": e1})]
    stored = {"#r": [("E2", 1, "q.json1.3 a"), ("E2", 2, "q.json1.4 b"), ("E2", 3, "q.json2.6 d")]}
    return check(journal, stored, "E2", faults, {}, 55.0)


def test_firstLinesResentIntoTheNewEpoch() -> None:
    """
    line1 joins #r just before Redis comes back empty and is shown (live)
    json1's ids 3 and 4 of E1, then json2's id 5 of E1, then, after the
    epoch notice, ids 1-3 of E2. json1's acknowledgements were lost with
    its connection; it resent both refs after the restart and they were
    stored again as ids 1 and 2 of E2 (line1 is shown them again). line1's
    first two lines are the E1 copies, as what it is shown next (id 5 of
    E1) tells: taken for E2's (the first candidate, the final store's),
    they made line1 jump to E1 missing 1-4 there and its next lines seem
    out of order (found looking into redis2 seed 460086620).
    """
    result = _resentAcrossAnEmptyRestart([40.6], [
        Entry(40.3, "q.json1.3", None, None, True),
        Entry(40.3, "q.json1.4", None, None, True),
        Entry(40.35, "q.json2.5", None, None, True),
        Entry(41.1, "q.json1.3", None, None, True),
        Entry(41.3, "q.json1.4", None, None, True),
        Entry(41.5, "q.json2.6", None, None, True),
    ])  # fmt: skip
    assert _kinds(result) == [], [str(v) for v in result.violations]


def test_heldOldEpochLineBeforeTheNewEpochsHistory() -> None:
    """
    line1's join history was read while Redis came back empty: held
    meanwhile, id 5 of E1 is shown first, then the epoch notice, then the
    history of E2 (json1's resent ids 1 and 2), then id 3 live. Nothing
    is missed (the daemon showed id 5 after that history before: redis2
    seed 460086620).
    """
    result = _resentAcrossAnEmptyRestart([41.41], [
        Entry(41.4, "q.json2.5", None, None, True),
        Entry(41.42, "q.json1.3", None, None, False),
        Entry(41.42, "q.json1.4", None, None, False),
        Entry(41.5, "q.json2.6", None, None, True),
    ])  # fmt: skip
    assert _kinds(result) == [], [str(v) for v in result.violations]
    result = _resentAcrossAnEmptyRestart([41.41], [
        Entry(41.42, "q.json1.3", None, None, False),
        Entry(41.42, "q.json1.4", None, None, False),
        Entry(41.43, "q.json2.5", None, None, True),
        Entry(41.5, "q.json2.6", None, None, True),
    ])  # fmt: skip
    assert "missed" in _kinds(result)


def _updatesJournal(json1: list[Entry], line1: list[Entry], since: tuple[str, int] | None = None) -> Journal:
    """
    #u holds messages 1, 2 (q.a.1, q.a.2), an edit (3), a reaction (4)
    and message 5 (q.a.5); json1 and line1 are members to the end.
    """
    journal = Journal()
    for i in (1, 2, 5):
        r = Request("a", "a#1", "#u", "q.a.%d" % (i,), float(i), "a-r%d" % (i,), answered=i + 0.1, answer="ack",
                    epoch="E", id=i, answerConn="a#1")  # fmt: skip
        journal.requests.append(r)
        journal.mapped(r.token, "E", i)
    journal.connections = {
        "a#1": Connection("a", "a#1", "ws-json", "a", 0.0, None),
        "json1#1": Connection("json1", "json1#1", "ws-json", "a", 0.0, None),
        "line1#1": Connection("line1", "line1#1", "line", "a", 0.0, None),
    }
    journal.episodes = [
        Episode("json1", "json1#1", "#u", 3.0 if since else 0.5, "resume" if since else "join", since=since,
                recovered=True if since else None, entries=json1),
        Episode("line1", "line1#1", "#u", 0.5, "join", entries=line1),
    ]  # fmt: skip
    return journal


_STORED = {"#u": [("E", 1, "q.a.1 x"), ("E", 2, "q.a.2 y"), ("E", 3, "\x00update"), ("E", 4, "\x00update"),
                  ("E", 5, "q.a.5 z")]}  # fmt: skip
_LINE = [Entry(1.1, "q.a.1", None, None, True), Entry(2.1, "q.a.2", None, None, True),
         Entry(5.1, "q.a.5", None, None, True)]  # fmt: skip


def test_updatesSeenOnceInOrderByJsonClients() -> None:
    """
    A json client sees each update (an edit, a reaction: ids 3 and 4 of
    the room) once, in order with the messages; the line chat is not
    shown them, and misses nothing.
    """
    json1 = [Entry(1.1, "q.a.1", "E", 1, True), Entry(2.1, "q.a.2", "E", 2, True), Entry(3.1, None, "E", 3, True),
             Entry(4.1, None, "E", 4, True), Entry(5.1, "q.a.5", "E", 5, True)]  # fmt: skip
    result = check(_updatesJournal(json1, _LINE), _STORED, "E", [], {}, 10.0)
    assert _kinds(result) == [], [str(v) for v in result.violations]


def test_updateSeenTwiceOrMissedByAJsonClient() -> None:
    """
    An update a json client is shown twice (after a resume), or never, is
    a violation.
    """
    twice = [Entry(1.1, "q.a.1", "E", 1, True), Entry(2.1, "q.a.2", "E", 2, True), Entry(3.1, None, "E", 3, True),
             Entry(4.1, None, "E", 4, False), Entry(4.2, None, "E", 4, True), Entry(5.1, "q.a.5", "E", 5, True)]  # fmt: skip
    assert _kinds(check(_updatesJournal(twice, _LINE), _STORED, "E", [], {}, 10.0)) == ["duplicate-delivery"]
    missed = [Entry(1.1, "q.a.1", "E", 1, True), Entry(2.1, "q.a.2", "E", 2, True), Entry(3.1, None, "E", 3, True),
              Entry(5.1, "q.a.5", "E", 5, True)]  # fmt: skip
    assert _kinds(check(_updatesJournal(missed, _LINE), _STORED, "E", [], {}, 10.0)) == ["missed"]
    # after a resume from 2, the updates come in the history: 4 missing is a miss
    resumed = [Entry(4.0, None, "E", 3, False), Entry(5.1, "q.a.5", "E", 5, True)]
    assert _kinds(check(_updatesJournal(resumed, _LINE, since=("E", 2)), _STORED, "E", [], {}, 10.0)) == ["missed"]


def test_updatesFoldedIntoAJoinHistory() -> None:
    """
    A json client that joins (no resume) gets the messages as they are
    now: the updates right after the last message of that history were
    folded into it, not missed.
    """
    json1 = [Entry(4.5, "q.a.1", "E", 1, False), Entry(4.5, "q.a.2", "E", 2, False), Entry(5.1, "q.a.5", "E", 5, True)]
    result = check(_updatesJournal(json1, _LINE), _STORED, "E", [], {}, 10.0)
    assert _kinds(result) == [], [str(v) for v in result.violations]


def test_deletedMessageIsNotLost() -> None:
    """
    A message its sender deleted has no text in the store: not lost.
    """
    journal = _updatesJournal([], [])
    journal.episodes = []
    stored = {"#u": [("E", 1, "q.a.1 x"), ("E", 2, ""), ("E", 3, "\x00update"), ("E", 4, "\x00update"),
                     ("E", 5, "q.a.5 z")]}  # fmt: skip
    assert _kinds(check(journal, stored, "E", [], {}, 10.0)) == ["lost"]
    journal.deleted.add("q.a.2")
    assert _kinds(check(journal, stored, "E", [], {}, 10.0)) == []


def test_textClientsHistoryLeavesDeletedMessagesOut() -> None:
    """
    The line chat's history does not show a deleted message: a text
    client shown 1 then 5 after a join misses nothing when 2 was deleted
    (3 and 4 are updates); a json client must see it (as deleted).
    """
    line = [Entry(4.5, "q.a.1", None, None, False), Entry(5.1, "q.a.5", None, None, True)]
    json1 = [Entry(1.1, "q.a.1", "E", 1, True), Entry(5.1, "q.a.5", "E", 5, True)]
    journal = _updatesJournal(json1, line)
    journal.episodes[1].start = 4.4  # (line1 joined after the deletion)
    journal.deleted.add("q.a.2")
    stored = {"#u": [("E", 1, "q.a.1 x"), ("E", 2, "\x00deleted"), ("E", 3, "\x00update"), ("E", 4, "\x00update"),
                     ("E", 5, "q.a.5 z")]}  # fmt: skip
    result = check(journal, stored, "E", [], {}, 10.0)
    assert [(v.invariant, v.client) for v in result.violations] == [("missed", "json1")]


def test_messageWipedBeforeItsNodeCouldHaveIt() -> None:
    """
    json2's message (id 5 of E1) was acknowledged on node b 0.8 s before
    Redis was restarted empty, while node a's connection to Redis was down
    (reconnecting): no node could deliver it to line1 on node a any more,
    it is gone with Redis' data (counted as such), and line1 was told the
    history was reset. Not a delivery violation; a message that lived in
    Redis for longer than the grace and was not delivered still is.
    """

    def run(wipedAt: float) -> Result:
        journal = Journal()
        said = [
            Request("json2", "json2#1", "#r", "q.json2.%d" % (i,), 90.0 + i, "json2-r%d" % (i,), answered=90.1 + i,
                    answer="ack", epoch="E1", id=i, answerConn="json2#1")  # fmt: skip
            for i in range(1, 6)
        ]
        journal.requests = said
        for r in said:
            journal.mapped(r.token, "E1", r.id or 0)
        journal.connections = {
            "json2#1": Connection("json2", "json2#1", "ws-json", "b", 80.0, 150.0),
            "line1#1": Connection("line1", "line1#1", "line", "a", 85.0, 150.0),
        }
        journal.episodes = [
            Episode("line1", "line1#1", "#r", 85.0, "join", notices=[wipedAt + 1.0], end=150.0, endedBy="closed",
                    entries=[Entry(90.2 + i, "q.json2.%d" % (i,), None, None, True) for i in range(1, 5)]),
        ]  # fmt: skip
        e1 = [_body("E1", i, "q.json2.%d hi" % (i,)) for i in range(1, 6)]
        faults = [Injected("redis-empty", wipedAt, wipedAt + 0.5, "Redis restarted empty", {"#r": e1})]
        return check(journal, {"#r": []}, "E2", faults, {}, 150.0)

    assert _kinds(run(95.9)) == []
    assert _kinds(run(120.0)) == ["not-delivered"]


def test_publishedWhileTheMembersNodeWasOffTheBus() -> None:
    """
    Worker w0 of daemon w lost Redis at 14 s and was back only at 36 s
    (its reconnect attempts met a Redis restart, a cut and a stall); json2,
    on another node, had messages acknowledged at 16-20 s; line1, on daemon
    w, left at 38 s: it could not have had them live (w0 delivers them
    when it has caught up; a resume gets them). Not a delivery violation.
    Had line1 stayed until 45 s, or had w0 been back at 21 s, it is one;
    and so it is when the logs show no node of w off the bus.
    """
    from tests.chaos.checker import busDown

    def run(lines: list[tuple[float, str]], left: float) -> Result:
        journal = Journal()
        said = [
            Request("json2", "json2#1", "#r", "q.json2.%d" % (i,), 15.0 + i, "json2-r%d" % (i,), answered=15.1 + i,
                    answer="ack", epoch="E", id=i, answerConn="json2#1")  # fmt: skip
            for i in range(1, 6)
        ]
        journal.requests = said
        for r in said:
            journal.mapped(r.token, "E", r.id or 0)
        journal.connections = {
            "json2#1": Connection("json2", "json2#1", "ws-json", "b", 5.0, 60.0),
            "line1#1": Connection("line1", "line1#1", "line", "w", 12.0, left),
        }
        journal.episodes = [
            Episode("line1", "line1#1", "#r", 12.0, "join", end=left, endedBy="closed", entries=[]),
        ]  # fmt: skip
        stored = {"#r": [("E", i, "q.json2.%d hi" % (i,)) for i in range(1, 6)]}
        down = {"w": busDown([text for _, text in lines], [t for t, _ in lines])}
        return check(journal, stored, "E", [], {}, 60.0, down)

    offBus = [
        (10.0, "[w0:x#info] node w-w0: joined the cluster at redis://127.0.0.1:1/0"),
        (14.0, "[w0:x#warn] node w-w0: lost Redis at redis://127.0.0.1:1/0 (the subscription: closed)"),
        (20.0, "[w1:x#warn] node w-w1: lost Redis at redis://127.0.0.1:1/0 (the subscription: closed)"),
        (20.5, "[w1:x#info] node w-w1: Redis is back after 0.5 s; state re-announced"),
    ]
    assert _kinds(run(offBus + [(36.0, "[w0:x#info] node w-w0: Redis is back after 22 s")], 38.0)) == []
    assert _kinds(run(offBus, 38.0)) == []  # (still off the bus when the run ended)
    assert _kinds(run(offBus + [(36.0, "[w0:x#info] node w-w0: Redis is back after 22 s")], 45.0)) == ["not-delivered"]
    assert _kinds(run(offBus + [(21.0, "[w0:x#info] node w-w0: Redis is back after 7 s")], 38.0)) == ["not-delivered"]
    assert _kinds(run(offBus[:1], 38.0)) == ["not-delivered"]


def test_ownLineInTheHistoryOfTheJoinUnderWay() -> None:
    """
    line1 joins #ops and says a line at once, while its history is read
    (read again after a failure): the line is stored before the read, so
    the history shows it and no echo comes after. That is its answer; its
    next line's error is that line's, not this one's. A line of an earlier
    connection shown in this join's history is still no answer.
    """
    journal = Journal()
    client = SimpleNamespace(journal=journal, name="line1")
    view = TextView(client, "line1#5")  # type: ignore[arg-type]
    journal.connect("line1", "line", "a")
    earlier = journal.sent("line1", "line1#4", "#ops", "q.line1.20")
    journal.join("line1", "line1#5", "#ops", "join")
    refused = journal.sent("line1", "line1#5", "#ops", "q.line1.25")
    view.pending.append(refused)
    view.feed("!!! the message store is unreachable: not sent, try again")  # (refused's answer)
    journal.t0 -= 1.0  # (a second later)
    said = journal.sent("line1", "line1#5", "#ops", "q.line1.26")
    view.pending.append(said)
    view.feed("#ops [12:00] <line1> q.line1.20 hello")
    view.feed("#ops [12:00] <line1> q.line1.26 brb")
    following = journal.sent("line1", "line1#5", "#ops", "q.line1.27")
    view.pending.append(following)
    view.feed("!!! the message store is unreachable: not sent, try again")
    view.resolve()
    assert said.answer == "ack" and earlier.answered is None and refused.answer == "error"
    assert (following.answer, following.detail) == ("error", "!!! the message store is unreachable: not sent, try again")


def test_ownLinesInTheHistoryOfTheJoinUnderWayAfterATimeout() -> None:
    """
    text1 joins #dev during a Redis stall and says two lines; the first
    times out ("did not confirm", it may have been stored), the second is
    stored when Redis wakes, before the join's history is read again:
    the history shows both, and that is the second's answer (the error
    was the first's). Its next line's error answers that line (redis2
    seed 98845461 took it for the second's, leaving the third silent).
    """
    journal = Journal()
    client = SimpleNamespace(journal=journal, name="text1")
    view = TextView(client, "text1#6")  # type: ignore[arg-type]
    journal.connect("text1", "ws-text", "b")
    journal.join("text1", "text1#6", "#dev", "join")
    first = journal.sent("text1", "text1#6", "#dev", "q.text1.16")
    second = journal.sent("text1", "text1#6", "#dev", "q.text1.17")
    view.pending += [first, second]
    view.feed("!!! the message store did not confirm this message (Redis: no answer within 10 s); it may have "
              "been stored: resend it with the same ref to be sure")  # fmt: skip
    view.feed("#dev [12:00] <text1> q.text1.16 hello")
    view.feed("#dev [12:00] <text1> q.text1.17 again")
    third = journal.sent("text1", "text1#6", "#dev", "q.text1.18")
    view.pending.append(third)
    view.feed("!!! the message store is unreachable: not sent, try again")
    view.resolve()
    assert (first.answer, second.answer, third.answer) == ("error", "ack", "error")
    assert third.detail == "!!! the message store is unreachable: not sent, try again"


def test_terminalFillOfAnUnavailableHistory() -> None:
    """
    The terminal client joined #dev while the server could not read its
    history: the episode starts unrecovered; the messages it fetches later
    (older than the live ones shown meanwhile) are not taken for live
    ones out of order, and what follows is read as usual.
    """
    journal = Journal()
    client = SimpleNamespace(journal=journal, name="term1")
    view = TextView(client, "term1#1", continuous=True)  # type: ignore[arg-type]
    journal.connect("term1", "ws-json", "a")
    view.feed("*** Welcome to twisted-chat, term1! You are in #dev. Type /help for commands.")
    view.feed("*** #dev: term1 joined")
    view.feed("*** #dev: the history cannot be read now (the message store is not answering); "
              "it comes when the server can read it")  # fmt: skip
    view.feed("#dev <json1> q.json1.9 live")
    view.feed("*** #dev: 2 messages from while the history could not be read:")
    view.feed("#dev [12:00] <json1> q.json1.7 older")
    view.feed("#dev [12:00] <json1> q.json1.8 older")
    view.feed("#dev <json1> q.json1.10 live again")
    ep = journal.episode("term1#1", "#dev")
    assert ep is not None and (ep.how, ep.recovered) == ("resume", False)
    assert [e.token for e in ep.entries] == ["q.json1.9", "q.json1.10"]


def test_memberWhoseEventsWereHeldLeftSoonAfter() -> None:
    """
    json2's message was acknowledged at 33.2 s; json1's node held json1's
    events behind a join history it was reading again during a Redis
    stall, delivered them when the stall ended (38.4 s), and json1 parted
    the room then, before reading them: not owed live (a member's events
    may wait 12 s behind such a read). Had json1 stayed 15 s, it was owed.
    """

    def run(left: float) -> Result:
        journal = Journal()
        said = Request("json2", "json2#4", "#lobby", "q.json2.30", 33.18, "json2-r30", answered=33.19, answer="ack",
                       epoch="E", id=6, answerConn="json2#4")  # fmt: skip
        journal.requests = [said]
        journal.mapped(said.token, "E", 6)
        journal.connections = {
            "json2#4": Connection("json2", "json2#4", "ws-json", "a", 30.0, 60.0),
            "json1#4": Connection("json1", "json1#4", "ws-json", "b", 27.0, 60.0),
        }
        journal.episodes = [
            Episode("json1", "json1#4", "#lobby", 27.0, "join", end=left, endedBy="part", entries=[]),
        ]  # fmt: skip
        stored = {"#lobby": [("E", i, "q.x.%d hi" % (i,)) for i in range(1, 6)] + [("E", 6, "q.json2.30 hi")]}
        return check(journal, stored, "E", [], {}, 60.0)

    assert "not-delivered" not in _kinds(run(38.4))
    assert "not-delivered" in _kinds(run(50.0))
