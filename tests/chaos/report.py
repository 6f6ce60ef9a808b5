"""
The table a person reads in seconds: one row per scenario, the faults
with their times, and the first violations in detail.
"""

from __future__ import annotations

from tests.chaos.scenario import Outcome

#: violations shown in detail per scenario
SHOWN = 8

_COLUMNS = [
    ("topology", 9), ("time", 6), ("sent", 6), ("acked", 6), ("lost", 5), ("lost:empty-redis", 17),
    ("dup", 5), ("reord", 6), ("missed", 7), ("slowest", 8), ("violations", 11), ("seed", 12),
]  # fmt: skip


def table(outcomes: list[Outcome]) -> str:
    lines = []
    lines.append("".join(name.ljust(width) for name, width in _COLUMNS).rstrip())
    for o in outcomes:
        r = o.result
        cells = [
            o.topology, "%ds" % (o.seconds,), str(r.sent), str(r.acked), str(r.lost), str(r.lostToEmptyRedis),
            str(r.duplicated), str(r.reordered), str(r.missed), ("%.1fs" % (r.slowest,) if r.slowest >= 1 else "%dms" % (r.slowest * 1000,)),
            ("ERROR" if o.error else str(len(r.violations))), str(o.seed),
        ]  # fmt: skip
        lines.append("".join(c.ljust(width) for c, (_, width) in zip(cells, _COLUMNS)).rstrip())
    out = ["\n".join(lines)]
    for o in outcomes:
        r = o.result
        head = "%s (seed %d, %s profile): " % (o.topology, o.seed, o.profile)
        out.append(head + ("; ".join("%.1fs %s" % (f.start, f.detail) for f in o.faults) or "no faults"))
        if o.error:
            out.append("  ERROR: %s" % (o.error,))
        if r.violations:
            kinds = ", ".join("%s %d" % kv for kv in sorted(r.counts.items()))
            out.append("  violations: %s" % (kinds,))
            # the first few of each kind, then the rest up to SHOWN
            shown = []
            seen: set[str] = set()
            for v in r.violations:
                if v.invariant not in seen:
                    seen.add(v.invariant)
                    shown.append(v)
            for v in r.violations:
                if len(shown) >= SHOWN + len(seen):
                    break
                if v not in shown:
                    shown.append(v)
            for v in shown[: SHOWN + len(seen)]:
                out.append("  - %s" % (v,))
        if r.slowestWhat:
            out.append("  slowest answer: %.1f s (%s); bound %g s" % (r.slowest, r.slowestWhat, _bound()))
        out.append("  replay: bash scripts/soak.sh --topology %s --seed %d%s; logs: %s" % (
            o.topology, o.seed, " --profile ci" if o.profile == "ci" else " --duration %g" % (o.duration,), o.folder))
    return "\n".join(out)


def _bound() -> float:
    from tests.chaos.checker import ANSWER_BOUND

    return ANSWER_BOUND
