"""
The invariants, checked after every run against the journal (what the
clients saw) and the store (read afterwards: SQLite's file, or XRANGE on
Redis). See docs/reliability.md for what each one means.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.faults import Injected
from tests.chaos.journal import DELETED, SEES_UPDATES, UPDATE, Episode, Journal, Request, tokenOf

#: seconds: the documented bound on an answer (Redis command timeout, 10 s,
#: docs/design.md "Redis slow, or this node behind") plus 5 s of slack for
#: a loaded 2-core machine
ANSWER_BOUND = 15.0

_LOG_PROBLEM = re.compile(r"Traceback|Unhandled")
_EXCEPTION = re.compile(r"^[\w.]+(Error|Exception|Failure|Exit|Interrupt)\b|^builtins\.|^twisted\.")


@dataclass
class Violation:
    invariant: str
    client: str
    room: str
    detail: str

    def __str__(self) -> str:
        where = " ".join(x for x in (self.client, self.room) if x)
        return "[%s] %s: %s" % (self.invariant, where, self.detail)


@dataclass
class Result:
    sent: int = 0
    acked: int = 0
    lost: int = 0
    lostToEmptyRedis: int = 0
    duplicated: int = 0
    reordered: int = 0
    missed: int = 0
    slowest: float = 0.0
    slowestWhat: str = ""
    unmapped: int = 0
    violations: list[Violation] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, invariant: str, client: str, room: str, detail: str) -> None:
        self.counts[invariant] += 1
        self.violations.append(Violation(invariant, client, room, detail))


def _ranges(ids: list[int]) -> str:
    """
    C{[1, 2, 3, 7]} -> C{"1-3, 7"} (at most a few ranges).
    """
    out: list[str] = []
    ids = sorted(set(ids))
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if i == j else "%d-%d" % (ids[i], ids[j]))
        i = j + 1
    if len(out) > 6:
        out = out[:6] + ["… (%d ids)" % (len(ids),)]
    return ", ".join(out)


def check(
    journal: Journal,
    stored: dict[str, list[tuple[str, int, str]]],
    finalEpoch: str | None,
    faults: list[Injected],
    logs: dict[str, list[str]],
    endOfQuiet: float,
    busDown: dict[str, list[tuple[float, float]]] | None = None,
) -> Result:
    res = Result()
    wipes = [f for f in faults if f.wiped is not None]
    wipedEpochs: set[str] = set()
    # token -> [(room, epoch, id)] in the final store, and in what was wiped
    where: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for room, rows in stored.items():
        for epoch, id, text in rows:
            t = tokenOf(text)
            if t is not None:
                where[t].append((room, epoch, id))
    wipedWhere: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for f in wipes:
        assert f.wiped is not None
        for room, bodies in f.wiped.items():
            for b in bodies:
                wipedEpochs.add(b["e"])
                t = tokenOf(b["x"])
                if t is not None:
                    wipedWhere[t].append((room, b["e"], int(b["i"])))
    for e in list(wipedEpochs):
        if e == finalEpoch:
            wipedEpochs.discard(e)

    def idOf(token: str | None) -> list[tuple[str, int]]:
        """
        Every position a token has: in the final store, in what an empty
        Redis wiped, as json clients saw it. (A resend after Redis lost its
        data may store a message again, in the new epoch.)
        """
        if token is None:
            return []
        found: list[tuple[str, int]] = []
        for _, e, i in where.get(token, ()):
            found.append((e, i))
        for _, e, i in wipedWhere.get(token, ()):
            found.append((e, i))
        for e, i in sorted(journal.ids.get(token, ())):
            found.append((e, i))
        return list(dict.fromkeys(found))

    # 1. stored exactly once; ids contiguous within an epoch
    for room, rows in stored.items():
        byEpoch: dict[str, list[int]] = defaultdict(list)
        for epoch, id, _ in rows:
            byEpoch[epoch].append(id)
        for epoch, ids in byEpoch.items():
            present = set(ids)
            if len(present) != len(ids):
                dups = [i for i, n in Counter(ids).items() if n > 1]
                res.add("store-ids", "", room, "epoch %s: ids stored more than once: %s" % (epoch, _ranges(dups)))
            holes = [i for i in range(1, max(present) + 1) if i not in present]
            if holes:
                res.add("store-ids", "", room, "epoch %s: ids missing from the store (not contiguous): %s" % (epoch, _ranges(holes)))
    firsts = [r for r in journal.requests if r.resendOf is None]
    # the first request's token -> its resends (tokens are unique per say)
    resends: dict[str, list[Request]] = defaultdict(list)
    for x in journal.requests:
        if x.resendOf is not None:
            resends[x.resendOf.token].append(x)
    res.sent = len(firsts)
    for token, places in where.items():
        if len(places) > 1:
            res.duplicated += len(places) - 1
            res.add("stored-twice", token.split(".")[1], places[0][0], "%s stored %d times: %s" % (token, len(places), places))
    for r in firsts:
        answers = [r] + resends[r.token]
        acked = [x for x in answers if x.answer == "ack"]
        if not acked:
            continue
        res.acked += 1
        if r.token in where or r.token in journal.deleted:
            # (a message its sender deleted has no text in the store any more)
            continue
        firstAck = min(x.answered or 0.0 for x in acked)
        ackEpochs = {x.epoch for x in acked if x.epoch is not None}
        if r.token in wipedWhere or (ackEpochs and ackEpochs <= wipedEpochs) or (
            not ackEpochs and any(firstAck <= f.start + 1.0 for f in wipes)
        ):
            res.lostToEmptyRedis += 1
            continue
        res.lost += 1
        res.add("lost", r.client, r.room, "%s acknowledged (%s at %.1f s) but not in the store" % (r.token, _ackText(acked), firstAck))

    # 3. a resend with the same ref is answered with the first message's id
    for r in firsts:
        if r.ref is None:
            continue
        group = [r] + resends[r.token]
        ids = {(x.epoch, x.id) for x in group if x.answer == "ack" and x.id is not None}
        live = {p for p in ids if p[0] not in wipedEpochs}
        if len(live) > 1:
            res.add("resend-id", r.client, r.room, "ref %s (%s) answered with different ids: %s" % (r.ref, r.token, sorted(live)))
        stored_ = where.get(r.token, [])
        for e, i in live:
            if stored_ and (stored_[0][1], stored_[0][2]) != (e, i):
                res.add("resend-id", r.client, r.room, "ref %s acknowledged as %s:%d, stored as %s:%d" % (r.ref, e, i, stored_[0][1], stored_[0][2]))

    # 4. every request answered within the bound; never silence
    conns = journal.connections
    for r in journal.requests:
        if r.answered is not None:
            latency = r.answered - r.sent
            if r.answerConn == r.conn:
                if latency > res.slowest:
                    res.slowest = latency
                    res.slowestWhat = "%s %s %s" % (r.client, r.token, r.answer)
                if latency > ANSWER_BOUND:
                    res.add("slow-answer", r.client, r.room, "%s answered (%s) after %.1f s (bound %g s)" % (r.token, r.answer or r.detail, latency, ANSWER_BOUND))
            continue
        c = conns.get(r.conn)
        closedEarly = c is not None and c.closed is not None and c.closed < endOfQuiet
        if closedEarly:
            continue  # the connection died first (json clients resend)
        if r.resendOf is not None and r.resendOf.answer == "ack":
            # a resend of an acknowledged request, unanswered: silence too
            pass
        if r.sent > endOfQuiet:
            continue
        res.add("silence", r.client, r.room, "%s (%s) sent at %.1f s on %s: never answered" % (r.token, r.ref or "no ref", r.sent, r.conn))

    # json clients must resend what a dead connection left unanswered
    for r in firsts:
        if r.ref is None or r.answered is not None:
            continue
        c = conns.get(r.conn)
        if c is not None and c.closed is not None and c.closed < endOfQuiet and not r.resent:
            res.add("no-resend", r.client, r.room, "%s (ref %s) unanswered when %s closed, never resent" % (r.token, r.ref, r.conn))

    # 2 and 5: what each member saw, per connection and room
    last: dict[str, tuple[str, int]] = {}
    for room, rows in stored.items():
        final = [(e, i) for e, i, _ in rows if e == finalEpoch] or [(e, i) for e, i, _ in rows]
        if final:
            last[room] = max(final, key=lambda p: p[1])
    exists: dict[tuple[str, str], set[int]] = defaultdict(set)
    #: the ids of updates (edits, deletions, reactions): entries of the
    #: room's sequence only json clients are shown
    updates: dict[tuple[str, str], set[int]] = defaultdict(set)
    #: and of deleted messages: not in the text modes' histories
    deletedIds: dict[tuple[str, str], set[int]] = defaultdict(set)
    for room, rows in stored.items():
        for epoch, id, text in rows:
            exists[(room, epoch)].add(id)
            if text == UPDATE:
                updates[(room, epoch)].add(id)
            elif text == DELETED:
                deletedIds[(room, epoch)].add(id)
    # epoch -> when an empty Redis took it away
    wipedAt: dict[str, float] = {}
    for f in wipes:
        assert f.wiped is not None
        for room, bodies in f.wiped.items():
            for b in bodies:
                wipedAt.setdefault(b["e"], f.start)
                exists[(room, b["e"])].add(int(b["i"]))
                if b.get("x") == UPDATE:
                    updates[(room, b["e"])].add(int(b["i"]))
                elif b.get("x") == DELETED:
                    deletedIds[(room, b["e"])].add(int(b["i"]))
    # every acknowledged message, with when it was first sent (it may have
    # been stored from then on: a resend after a lost connection is
    # answered with the first attempt's id) and when its sender had the answer
    ackedAt: dict[str, list[tuple[float, float, tuple[str, int]]]] = defaultdict(list)
    for r in firsts:
        group = [r] + resends[r.token]
        acks = [x for x in group if x.answer == "ack" and x.answered is not None]
        if not acks:
            continue
        sentAt = min(x.sent for x in group)
        withId = [(x.answered, (x.epoch, x.id)) for x in acks if x.epoch is not None and x.id is not None]
        if withId:
            # each position an acknowledgement gave (a resend after Redis
            # lost its data may be stored again, elsewhere), with its first
            # acknowledgement: a resend of an acknowledged ref is answered
            # with the same position, but its message was delivered then
            first: dict[tuple[str, int], float] = {}
            for t, pos in withId:
                if pos[1] in exists.get((r.room, pos[0]), ()):
                    first[pos] = min(t, first.get(pos, t))  # type: ignore[index,arg-type]
            ackedAt[r.room].extend((sentAt, t, pos) for pos, t in first.items())
            continue
        places = [(e, i) for room, e, i in where.get(r.token, ()) if room == r.room] or [
            (e, i) for room, e, i in wipedWhere.get(r.token, ()) if room == r.room
        ]
        if places:
            ackedAt[r.room].append((sentAt, min(x.answered for x in acks if x.answered is not None), places[0]))
    plausible = _lifetimes(wipes, finalEpoch)
    for ep in journal.episodes:
        missed = _episode(res, ep, idOf, wipes, last, endOfQuiet, conns, exists, plausible, updates, deletedIds)
        c = conns.get(ep.conn)
        down = (busDown or {}).get(c.node, []) if c is not None else []
        _delivered(res, ep, ackedAt.get(ep.room, []), missed, idOf, endOfQuiet, conns, wipedAt, down)

    # 6. flood control (recorded as the answers came) and harness notes
    for t, kind, client, detail in journal.immediate:
        res.add(kind, client, "", "at %s s: %s" % (t, detail))

    # 7. the daemons' logs: each distinct problem once, with its count
    for name, lines in logs.items():
        found: dict[str, list[int]] = {}
        for n, line in enumerate(lines):
            if _LOG_PROBLEM.search(line):
                what = line.strip()
                for after in lines[n + 1 : n + 40]:
                    text = after.split("] ", 1)[-1].strip() if after.startswith("20") else after.strip()
                    if _EXCEPTION.match(text):
                        what = text
                        break
                found.setdefault(what[:200], []).append(n + 1)
        for what, where_ in found.items():
            res.add("log", name, "", "%d× (first at line %d): %s" % (len(where_), where_[0], what))
    return res


def _ackText(acked: list[Request]) -> str:
    a = acked[0]
    if a.id is not None:
        return "ack %s:%s" % (a.epoch, a.id)
    return "echo"


#: seconds after Redis came back empty during which a member may still be
#: shown messages of the epoch that was wiped (delivered, or on their way to
#: the client, just before)
WIPE_LAG = 5.0


def _lifetimes(wipes: list[Injected], finalEpoch: str | None) -> Any:
    """
    C{plausible(epoch, t)}: whether a member can have been shown a message
    of C{epoch} at time C{t}. An epoch wiped by an empty restart existed
    from the restart before it (or the start) until that one, the final
    epoch from the last restart on; an epoch the wipes never held (nothing
    stored in it) may be anywhere.
    """
    spans: dict[str, tuple[float, float]] = {}
    since = 0.0
    for f in sorted(wipes, key=lambda f: f.start):
        assert f.wiped is not None
        for bodies in f.wiped.values():
            for b in bodies:
                spans.setdefault(b["e"], (since, f.end + WIPE_LAG))
        since = f.start
    if finalEpoch is not None:
        spans[finalEpoch] = (since, float("inf"))

    def plausible(epoch: str, t: float) -> bool:
        span = spans.get(epoch)
        return span is None or span[0] <= t <= span[1]

    return plausible


def _episode(
    res: Result,
    ep: Episode,
    idOf: Any,
    wipes: list[Injected],
    last: dict[str, tuple[str, int]],
    endOfQuiet: float,
    conns: dict[str, Any],
    exists: dict[tuple[str, str], set[int]],
    plausible: Any = lambda epoch, t: True,
    updates: dict[tuple[str, str], set[int]] | None = None,
    deletedIds: dict[tuple[str, str], set[int]] | None = None,
) -> list[int]:
    c = conns.get(ep.conn)
    seesUpdates = c is not None and c.kind in SEES_UPDATES
    #: whether the last entry was of a history (not live)
    fromHistory = [False]

    def real(epoch: str, ids: list[int]) -> list[int]:
        # ids the store never had (a failed write) cannot be missed; what
        # an empty Redis wiped before we knew it is not checked here
        known = exists.get((ep.room, epoch))
        found = [i for i in ids if known is None or i in known]
        upd = (updates or {}).get((ep.room, epoch))
        if not seesUpdates:
            # (nor deleted messages, in the text modes' histories)
            gone = (deletedIds or {}).get((ep.room, epoch))
            if gone:
                upd = (upd or set()) | gone
        if upd and (not seesUpdates or (fromHistory[0] and not (ep.recovered is True and ep.since is not None))):
            # Updates are not shown in text modes; and a join's history
            # (not a resume) has the messages as they are now, the
            # updates before it folded in: the ones after its last message
            # may have been among them.
            if not seesUpdates:
                found = [i for i in found if i not in upd]
            elif all(i in upd for i in found):
                found = []
        return found

    seen: set[tuple[str, int]] = set()
    prev: tuple[str, int] | None = None
    if ep.recovered is True and ep.since is not None:
        prev = ep.since
    prevAt = ep.start
    missedHere: list[int] = []

    def positions(entry: Any) -> list[tuple[str, int]]:
        # A json client's resend of a ref Redis forgot (it came back empty
        # in between) stores the message again, in the new epoch: its
        # token then has a position in each. Only those whose epoch existed
        # when the member was shown it are candidates (without this, a line
        # or text member shown the new epoch's copy was reported as seeing
        # an old epoch's message, then an untold epoch change with ids
        # missed).
        if entry.epoch is not None and entry.id is not None:
            return [(entry.epoch, entry.id)]
        found = idOf(entry.token)
        return [c for c in found if plausible(c[0], entry.t)] or found

    for k, entry in enumerate(ep.entries):
        if entry.epoch is not None and entry.id is not None:
            pos = (entry.epoch, entry.id)
        else:
            candidates = positions(entry)
            if not candidates:
                res.unmapped += 1
                continue
            # one not seen yet (a resend after Redis came back empty is
            # stored again, in the new epoch), the one that follows what
            # was seen if any
            candidates = [c for c in candidates if c not in seen] or candidates
            pos = candidates[0]
            if len(candidates) > 1:
                # Still two (shown just around an empty restart): after an
                # epoch notice the member is in the new epoch; without one,
                # in the epoch of what it saw before; for the first entry,
                # in the epoch of what it is shown next.
                told = any(prevAt < t <= entry.t for t in ep.notices)
                if prev is not None and told:
                    pos = next((c for c in candidates if c[0] != prev[0]), pos)
                elif prev is not None:
                    same = [c for c in candidates if c[0] == prev[0]]
                    if same:
                        pos = min(same, key=lambda c: (c[1] <= prev[1], abs(c[1] - prev[1] - 1)))
                else:
                    pos = _firstOf(candidates, map(positions, ep.entries[k + 1 : k + 200]), pos)
        prevAt = entry.t
        if pos in seen:
            res.duplicated += 1
            res.add("duplicate-delivery", ep.client, ep.room, "%s: %s:%d seen again (%s) after %s" % (ep.conn, pos[0], pos[1], "live" if entry.live else "history", _where(prev)))
            continue
        seen.add(pos)
        if prev is not None:
            if pos[0] == prev[0]:
                if pos[1] < prev[1]:
                    res.reordered += 1
                    res.add("reordered", ep.client, ep.room, "%s: %s:%d after %d" % (ep.conn, pos[0], pos[1], prev[1]))
                elif pos[1] > prev[1] + 1 and real(pos[0], list(range(prev[1] + 1, pos[1]))):
                    gap = real(pos[0], list(range(prev[1] + 1, pos[1])))
                    missedHere += gap
                    res.add("missed", ep.client, ep.room, "%s: ids %s of epoch %s never delivered (%s %d came after %d, at %.1f s)" % (ep.conn, _ranges(gap), pos[0], "live" if entry.live else "history", pos[1], prev[1], entry.t))
            else:
                # an epoch change: everything of the new epoch is delivered
                # live, and the member was told
                if not any(n <= entry.t for n in ep.notices):
                    res.add("epoch-untold", ep.client, ep.room, "%s: messages of a new epoch %s (id %d) with no epoch notice before" % (ep.conn, pos[0], pos[1]))
                if real(pos[0], list(range(1, pos[1]))):
                    gap = real(pos[0], list(range(1, pos[1])))
                    missedHere += gap
                    res.add("missed", ep.client, ep.room, "%s: new epoch %s: ids %s never delivered (first was %d, %s at %.1f s, after %s)" % (ep.conn, pos[0], _ranges(gap), pos[1], "live" if entry.live else "history", entry.t, _where(prev)))
        prev = pos if prev is None or pos[0] != prev[0] or pos[1] > prev[1] else prev
        fromHistory[0] = not entry.live
    # still a member at the end of the quiet phase: caught up with the room
    stillThere = ep.end is None or ep.end >= endOfQuiet
    c = conns.get(ep.conn)
    if c is not None and c.closed is not None and c.closed < endOfQuiet:
        stillThere = False
    if stillThere and ep.start < endOfQuiet - 1:
        for f in wipes:
            if ep.start < f.start and not any(n >= f.start for n in ep.notices):
                res.add("epoch-untold", ep.client, ep.room, "%s: in the room when Redis restarted empty (%.1f s), never told" % (ep.conn, f.start))
        final = last.get(ep.room)
        if final is not None:
            if prev is None:
                if ep.entries or ep.recovered:
                    res.add("behind", ep.client, ep.room, "%s: at the end saw nothing mapped; room is at %s:%d" % (ep.conn, final[0], final[1]))
            elif prev[0] != final[0]:
                gap = real(final[0], list(range(1, final[1] + 1)))
                missedHere += gap
                res.add("behind", ep.client, ep.room, "%s: at the end still in epoch %s (id %d); room is at %s:%d: ids %s never delivered" % (ep.conn, prev[0], prev[1], final[0], final[1], _ranges(gap)))
            elif prev[1] < final[1] and real(final[0], list(range(prev[1] + 1, final[1] + 1))):
                gap = real(final[0], list(range(prev[1] + 1, final[1] + 1)))
                missedHere += gap
                res.add("behind", ep.client, ep.room, "%s: at the end saw up to %d; room is at %d: ids %s never delivered" % (ep.conn, prev[1], final[1], _ranges(gap)))
    res.missed += len(missedHere)
    return missedHere


def _firstOf(candidates: list[tuple[str, int]], later: Any, default: tuple[str, int]) -> tuple[str, int]:
    """
    The position of an episode's first line among C{candidates} (its
    token stored in two epochs): the one that what the member is shown
    next follows, i.e. the same epoch and a higher id. Where the next
    lines are as ambiguous (both copies of two resent messages follow
    both copies of the first), the first line that tells decides: taken
    for the final store's copies, a line member's first lines, old-epoch
    messages resent into the new epoch, made it jump to the old epoch and
    back, missing both (redis2 seed 460086620).
    """
    fallback: tuple[str, int] | None = None
    for after in later:
        if not after:
            continue
        fits = [c for c in candidates if any(a[0] == c[0] and a[1] > c[1] for a in after)]
        if len(fits) == 1:
            return fits[0]
        if fits and fallback is None:
            fallback = fits[0]
    return fallback or default


def busDown(lines: list[str], times: list[float]) -> list[tuple[float, float]]:
    """
    When the nodes of one daemon (its workers) could not hear the bus: from
    each "node N: lost Redis" line to that node's next "Redis is back" or
    "joined the cluster" (a restart), in the journal's time (C{times}: when
    each of C{lines} came); one still down at the end, until the end.
    """
    opened: dict[str, float] = {}
    spans: list[tuple[float, float]] = []
    for line, t in zip(lines, times):
        m = _NODE_LINE.search(line)
        if m is None:
            continue
        node, what = m.group(1), m.group(2)
        if what == "lost Redis":
            opened.setdefault(node, t)
        elif node in opened:
            spans.append((opened.pop(node), t))
    spans += [(t, float("inf")) for t in opened.values()]
    return spans


_NODE_LINE = re.compile(r"node (\S+): (lost Redis|Redis is back|joined the cluster)")


#: seconds after its sender had the answer within which every member of the
#: room (on any node) has a message
DELIVERY_GRACE = 5.0

#: seconds after its sender had the answer for which a member must still be
#: in the room to be owed the message live: the grace, or longer when the
#: member's events wait behind a join history the node reads again (a
#: member's events are held for up to 12 s after its join while the store
#: fails: twisted_chat.core.history.HOLD_FOR), whatever room they are in
OWED_AFTER = 15.0


def _delivered(
    res: Result,
    ep: Episode,
    acked: list[tuple[float, float, tuple[str, int]]],
    reported: list[int],
    idOf: Any,
    endOfQuiet: float,
    conns: dict[str, Any],
    wipedAt: dict[str, float],
    down: list[tuple[float, float]] = [],
) -> None:
    """
    A member who was in the room from before a message was first sent
    until well after it was acknowledged saw it (whether or not it saw
    anything after it). A message an empty Redis took away within the
    grace is excused: a node whose bus was down (reconnecting) when it was
    published can no longer have it, and its members are told the history
    was reset (C{epoch-untold} checks that). So is a message published
    while the bus of the member's daemon (one of its nodes: with workers,
    the member's one is not known) was down, to a member who left before
    that node was back (plus the grace): the node delivers it when it has
    caught up, and a member who resumes gets it then (C{missed} checks
    that).
    """
    end = ep.end if ep.end is not None else endOfQuiet
    c = conns.get(ep.conn)
    if c is not None and c.closed is not None:
        end = min(end, c.closed)
    seen: set[tuple[str, int]] = set()
    for entry in ep.entries:
        if entry.epoch is not None and entry.id is not None:
            seen.add((entry.epoch, entry.id))
        else:
            seen.update(idOf(entry.token))
    start = ep.start + 1.0
    if ep.recovered is True and ep.since is not None:
        start = ep.start
    missing = sorted(
        pos
        for sent, t, pos in acked
        if start < sent
        and t + OWED_AFTER < end
        and pos not in seen
        and pos[1] not in reported
        and not wipedAt.get(pos[0], float("inf")) < t + DELIVERY_GRACE
        and not any(d0 < t + DELIVERY_GRACE and d1 > t and end < d1 + DELIVERY_GRACE for d0, d1 in down)
    )
    if missing:
        res.missed += len(missing)
        byEpoch: dict[str, list[int]] = defaultdict(list)
        for e, i in missing:
            byEpoch[e].append(i)
        for e, ids in byEpoch.items():
            res.add("not-delivered", ep.client, ep.room, "%s (in the room %.1f-%.1f s): acknowledged ids %s of epoch %s never delivered" % (ep.conn, ep.start, end, _ranges(ids), e))


def _where(p: tuple[str, int] | None) -> str:
    return "nothing" if p is None else "%s:%d" % p
