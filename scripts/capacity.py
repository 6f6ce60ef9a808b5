#!/usr/bin/env python3
"""
The capacity table of docs/scaling.md, computed from the recorded benchmark
figures (docs/bench-results.json) and the workload it states there, so that
the page stays true when the figures change:

    python3 scripts/capacity.py [docs/bench-results.json]

prints the table (Markdown) that docs/scaling.md holds between its
``<!-- capacity -->`` markers; ``--check docs/scaling.md`` exits 1 (and
says so) if the page's table differs. Every row names the figures it is
computed from (their keys in the results file, each with its source there).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "bench-results.json"
BEGIN, END = "<!-- capacity -->", "<!-- /capacity -->"


class Row(NamedTuple):
    what: str
    value: str
    how: str


def _fmt(x: float, digits: int = 0) -> str:
    if digits:
        return "{:,.{d}f}".format(x, d=digits)
    return "{:,}".format(int(round(x)))


def nodesHearing(workers: int, members: int) -> float:
    """
    Expected number of workers with at least one of a room's C{members}
    when connections land on C{workers} at random (the kernel's or a load
    balancer's spread).
    """
    return workers * (1 - (1 - 1 / workers) ** members)


def table(results: dict[str, Any]) -> list[Row]:
    f = {key: entry["value"] for key, entry in results["figures"].items()}
    w = results["workload"]
    conns = w["connections"]
    rows: list[Row] = []

    # Connections: the measured point (76,000 WebSockets on four workers of
    # a 2-core machine, every broadcast delivered) anchors the count.
    perWorker = f["ws_connections_per_worker"]
    perMachine = f["ws_connections_per_machine"]
    workers = math.ceil(conns / perWorker)
    machines = math.ceil(conns / perMachine)
    rows.append(Row("workers (by the measured %s connections a worker)" % (_fmt(perWorker),), _fmt(workers),
                    "connections / ws_connections_per_worker"))
    rows.append(Row("machines like the measured one (2 cores, %s connections)" % (_fmt(perMachine),), _fmt(machines),
                    "connections / ws_connections_per_machine"))
    fds = math.ceil(perWorker * 1.25)
    rows.append(Row("file descriptors per worker (`ulimit -n`, 25 % headroom)", _fmt(fds),
                    "ws_connections_per_worker × 1.25"))

    # Memory (user space; the kernel's socket buffers come on top).
    rss = conns * f["ws_rss_kb_per_connection_cluster"] / 1024 / 1024
    rows.append(Row("RSS of all workers for the idle connections", _fmt(rss, 1) + " GB",
                    "connections × ws_rss_kb_per_connection_cluster"))

    # Traffic
    messages = conns * w["messages_per_member_per_hour"] / 3600
    deliveries = messages * w["room_size"]
    rows.append(Row("room messages per second (said)", _fmt(messages),
                    "connections × messages_per_member_per_hour / 3600"))
    rows.append(Row("deliveries per second", _fmt(deliveries), "messages × room_size"))
    deliveryCores = deliveries * f["cpu_us_per_delivery_cluster"] / 1e6
    rows.append(Row("cores for deliveries", _fmt(deliveryCores, 1), "deliveries × cpu_us_per_delivery_cluster"))

    # The bus: each message is decoded by every worker that hears its room.
    foreign = f["cpu_us_per_foreign_message_common_bus"]
    common = messages * workers * foreign / 1e6
    hearing = nodesHearing(workers, w["room_size"])
    rows.append(Row("workers with a member in a room of %d (random spread)" % (w["room_size"],), _fmt(hearing, 1),
                    "workers × (1 − (1 − 1/workers)^room_size)"))
    rows.append(Row("cores for bus messages, common bus (every worker decodes every message)", _fmt(common, 1),
                    "messages × workers × cpu_us_per_foreign_message_common_bus"))
    sharded = messages * hearing * foreign / 1e6
    rows.append(Row("cores for bus messages, sharded bus (only workers with members; at best)", _fmt(sharded, 1),
                    "messages × workers hearing × cpu_us_per_foreign_message_common_bus"))

    # Redis: one thread.
    perMessage = f["redis_us_per_message_base"] + f["redis_us_per_subscriber"] * hearing
    redisShare = messages * perMessage / 1e6
    rows.append(Row("Redis CPU per message (sharded: base + per subscriber × workers hearing)", _fmt(perMessage, 1) + " µs",
                    "redis_us_per_message_base + redis_us_per_subscriber × workers hearing"))
    rows.append(Row("Redis: cores of its single thread needed", _fmt(redisShare, 2),
                    "messages × Redis CPU per message (more than 1: Redis breaks first)"))
    rows.append(Row("Redis primaries needed (at %d %% of a core each)" % (int(w["redis_core_budget"] * 100),),
                    _fmt(math.ceil(redisShare / w["redis_core_budget"])), "Redis cores / redis_core_budget"))

    # A reconnect storm: each client's handshake, and every other worker
    # applying its presence (connect, join; presence is not sharded).
    handshake = f["cpu_us_per_handshake_cluster"]
    perClient = handshake + workers * f["cpu_us_per_remote_connection"]
    rows.append(Row("CPU per reconnecting client: its handshake + every worker applying its presence",
                    _fmt(perClient) + " µs", "cpu_us_per_handshake_cluster + workers × cpu_us_per_remote_connection"))
    cores = machines * f["cores_per_machine"]
    rows.append(Row("cores in the fleet", _fmt(cores), "machines × cores_per_machine"))
    budget = w["storm_core_budget"]
    spread = w["drain_spread_s"]
    oneMachine = perMachine * perClient / 1e6
    rows.append(Row("one machine restarted: its clients reconnecting elsewhere", _fmt(oneMachine) + " core-s",
                    "ws_connections_per_machine × CPU per reconnecting client"))
    over = oneMachine / spread > cores - f["cores_per_machine"]
    rows.append(Row("… cores that takes with `--drain-spread %g`" % (spread,), _fmt(oneMachine / spread, 1),
                    "that / drain_spread_s" + (" (more than the other machines have: the storm outlasts the spread)" if over else "")))
    rows.append(Row("… `--drain-spread` to keep it within %d %% of the other machines' CPU" % (int(budget * 100),),
                    _fmt(math.ceil(oneMachine / ((cores - f["cores_per_machine"]) * budget))) + " s",
                    "that / ((cores − cores_per_machine) × storm_core_budget)"))
    everyone = conns * perClient / 1e6
    rows.append(Row("every client reconnecting (a full restart)", _fmt(everyone) + " core-s",
                    "connections × CPU per reconnecting client"))
    redisStorm = conns * f["redis_us_per_connection"] / 1e6
    rows.append(Row("… Redis CPU for it (one thread)", _fmt(redisStorm) + " s",
                    "connections × redis_us_per_connection"))
    spreadNeeded = max(everyone / (cores * budget), redisStorm / w["redis_core_budget"])
    rows.append(Row("… `--drain-spread` to keep it within %d %% of the fleet's CPU and %d %% of Redis'"
                    % (int(budget * 100), int(w["redis_core_budget"] * 100)),
                    _fmt(math.ceil(spreadNeeded)) + " s",
                    "max(that / (cores × storm_core_budget), Redis CPU / redis_core_budget)"))
    return rows


def render(rows: list[Row], results: dict[str, Any]) -> str:
    w = results["workload"]
    lines = [
        "Workload: %s connections (WebSocket), rooms of %d, each member says %g messages an hour."
        % (_fmt(w["connections"]), w["room_size"], w["messages_per_member_per_hour"]),
        "",
        "| quantity | value | computed as |",
        "|---|---|---|",
    ]
    lines += ["| %s | %s | %s |" % row for row in rows]
    return "\n".join(lines) + "\n"


def pageTable(page: str) -> str:
    start = page.index(BEGIN) + len(BEGIN)
    return page[start:page.index(END)].strip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", default=str(RESULTS))
    parser.add_argument("--check", metavar="PAGE", help="exit 1 if PAGE's table is not this one")
    options = parser.parse_args(argv)
    results = json.loads(Path(options.results).read_text())
    out = render(table(results), results)
    if options.check:
        if pageTable(Path(options.check).read_text()) != out:
            print("%s: the capacity table is not what %s gives; paste this:\n" % (options.check, options.results))
            print(out)
            return 1
        return 0
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
