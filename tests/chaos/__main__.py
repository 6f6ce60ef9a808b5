"""
C{python -m tests.chaos} (from the top of the repository): run the fault
harness and print its table.

    python -m tests.chaos --topology single|redis2|workers2|all [--profile ci|soak]
                          [--duration SECONDS] [--seed N] [--artifacts DIR]

Exit status 0 when no invariant was violated, 1 otherwise, 2 for a bad
command line. SIGTERM or SIGINT stop the run (everything started is
stopped) and report what was seen so far.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import time
from pathlib import Path

from tests.chaos import report, scenario

TOPOLOGIES = ["single", "redis2", "workers2"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description="The invariant-checking fault harness.")
    parser.add_argument("--topology", default="all", choices=TOPOLOGIES + ["all"])
    parser.add_argument("--profile", default="soak", choices=["ci", "soak"],
                        help="ci: every fault once, bounded; soak: random faults for --duration seconds")
    parser.add_argument("--duration", type=float, default=600.0, help="soak: seconds of faults and chat per topology")
    parser.add_argument("--seed", type=int, default=None, help="replay a run (default: a random seed, printed)")
    parser.add_argument("--artifacts", default=str(Path(__file__).resolve().parents[2] / "test-artifacts" / "chaos"))
    parser.add_argument("--json", default=None, help="also write the outcome as JSON to this file")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1, 10**9)
    topologies = TOPOLOGIES if args.topology == "all" else [args.topology]
    print("chaos: seed %d, topologies %s, profile %s" % (seed, " ".join(topologies), args.profile), flush=True)
    outcomes = asyncio.run(_runAll(topologies, seed, args.profile, args.duration, Path(args.artifacts)))
    if len(outcomes) > 1:
        print("\nall topologies:\n" + report.table(outcomes), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{
                "topology": o.topology, "seed": o.seed, "seconds": o.seconds, "ok": o.ok, "error": o.error,
                "violations": [str(v) for v in o.result.violations],
            } for o in outcomes], f)  # fmt: skip
    return 0 if all(o.ok for o in outcomes) else 1


async def _runAll(topologies: list[str], seed: int, profile: str, duration: float, artifacts: Path) -> list[scenario.Outcome]:
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    assert me is not None
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, me.cancel)
    outcomes = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in topologies:
        folder = artifacts / ("%s-%s-%d" % (stamp, name, seed))
        bound = (duration if profile == "soak" else 200.0) + 240.0
        try:
            outcome = await asyncio.wait_for(scenario.run(name, seed, profile, duration, folder), bound)
        except (asyncio.TimeoutError, asyncio.CancelledError) as e:
            print("chaos: %s did not finish (%s)" % (name, type(e).__name__), file=sys.stderr, flush=True)
            raise SystemExit(1)
        outcomes.append(outcome)
        print(report.table([outcome]), flush=True)
    return outcomes


if __name__ == "__main__":
    sys.exit(main())
