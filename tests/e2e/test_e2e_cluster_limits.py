"""
End-to-end tests of the cluster-wide connection limits
(C{--limits-scope cluster}): daemons sharing one real C{redis-server}
count their connections there, so C{--max-per-ip} holds for the whole
cluster, and a node killed with SIGKILL gives its share back once its
share's time in Redis is up.

The limited clients connect from 127.0.0.2 (see
tests/e2e/test_e2e_machine_limits.py).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

from tests.e2e.test_e2e_machine_limits import SOURCE, TIMEOUT, TOO_MANY, connectAll
from tests.support.daemon import LOOPBACK

if TYPE_CHECKING:
    from tests.support.daemon import Daemon, LineClient

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

#: seconds a killed node's share may take to be released: its alive key
#: lasts the cluster's node TTL (10 s), then the next refresh of a live
#: node reaps it
RELEASED_WITHIN = 30.0


def test_maxPerIpHoldsForTheCluster(
    startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient], redisServer: Any, tmp_path: Path
) -> None:
    """
    Two nodes, C{--limits-scope cluster --max-per-ip 3}: of 8 connections
    from one address, alternately to each node, exactly 3 are accepted in
    the cluster, the others refused with the usual reason. The node holding
    one of them is killed with SIGKILL: once its share has expired the
    other node accepts exactly one more.
    """
    from tests.support.daemon import Daemon

    limits = ("--broker", redisServer.url, "--limits-scope", "cluster", "--max-per-ip", "3")
    a = startDaemon(*limits, "--node-id", "a")
    a.waitForLog("node a: joined the cluster", TIMEOUT)
    # (started by hand: the fixture's teardown wants a clean SIGTERM exit)
    doomed = Daemon(["--line", LOOPBACK, "--web", "none", "--metrics", "none", *limits, "--node-id", "doomed"], tmp_path)
    try:
        doomed.waitListening(("line",), TIMEOUT)
        doomed.waitForLog("node doomed: joined the cluster", TIMEOUT)
        admitted: dict[str, list[LineClient]] = {"a": [], "doomed": []}
        refused: list[list[str]] = []
        for i in range(8):
            name, daemon = ("a", a) if i % 2 == 0 else ("doomed", doomed)
            these, others = connectAll(daemon, lineClients, 1, source=SOURCE)
            admitted[name] += these
            refused += others
        assert (len(admitted["a"]), len(admitted["doomed"])) == (2, 1)
        assert refused == [[TOO_MANY % (3,)]] * 5
        doomed.proc.send_signal(signal.SIGKILL)
        a.waitForLog(r"node doomed is gone: its 1 connections are released", RELEASED_WITHIN)
        again, refused = connectAll(a, lineClients, 2, source=SOURCE)
        assert len(again) == 1
        assert refused == [[TOO_MANY % (3,)]]
    finally:
        doomed.proc.kill()
        doomed.proc.wait(TIMEOUT)
        doomed._finish()


def test_clusterScopeWithWorkers(
    startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient], redisServer: Any
) -> None:
    """
    A node of 2 workers and a node of one process, C{--limits-scope cluster
    --max-per-ip 4}: 4 connections from one address in the cluster, from
    wherever they come.
    """
    limits = ("--broker", redisServer.url, "--limits-scope", "cluster", "--max-per-ip", "4")
    a = startDaemon(*limits, "--node-id", "a", "--workers", "2")
    a.waitForLog(r"\] twisted-chat \S+ ready: 2 workers", TIMEOUT)
    b = startDaemon(*limits, "--node-id", "b")
    b.waitForLog("node b: joined the cluster", TIMEOUT)
    first, refused = connectAll(a, lineClients, 3)
    assert (len(first), refused) == (3, [])
    second, refused = connectAll(b, lineClients, 3)
    assert len(second) == 1
    assert refused == [[TOO_MANY % (4,)]] * 2
    third, refused = connectAll(a, lineClients, 2)
    assert (third, refused) == ([], [[TOO_MANY % (4,)]] * 2)
