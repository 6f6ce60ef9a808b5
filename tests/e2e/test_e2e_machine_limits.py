"""
End-to-end tests of the machine-wide connection limits under
C{--workers}: the parent counts every worker's connections, so
C{--max-per-ip} and C{--max-connections} hold for the whole machine, and a
worker killed with SIGKILL frees its share at once.

The clients of the limited address connect from 127.0.0.2 (loopback all
the same), so the connection the start-up check makes from 127.0.0.1 is
not counted with theirs.
"""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING, Any, Callable

import pytest

from tests.support.daemon import LOOPBACK, workerOf, workerPids

if TYPE_CHECKING:
    from tests.support.daemon import Daemon, LineClient

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TIMEOUT = 20.0
SOURCE = "127.0.0.2"
TOO_MANY = "!!! too many connections from your address (at most %d): close one first"
FULL = "!!! the server is full (%d connections): please try again later"


def connectAll(
    daemon: Daemon, lineClients: Callable[..., LineClient], count: int, source: str = SOURCE
) -> tuple[list[LineClient], list[list[str]]]:
    """
    Open C{count} line connections one after the other; return those
    greeted, and what each refused one read before it was closed.
    """
    admitted, refused = [], []
    for _ in range(count):
        client = lineClients(daemon.ports["line"], source=source, timeout=TIMEOUT)
        first = client.readLine(time.monotonic() + TIMEOUT)
        if first is not None and first.startswith("*** Welcome to twisted-chat"):
            admitted.append(client)
        else:
            refused.append([first] + client.readUntilClosed())
            client.close()
    return admitted, refused


def test_maxPerIpHoldsForTheMachine(
    startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient], redisServer: Any
) -> None:
    """
    C{--workers 3 --max-per-ip 4}: of 12 connections from one address,
    exactly 4 are accepted (the kernel spreads them over the workers), the
    8 others refused with the usual reason. A worker holding some of them
    is killed with SIGKILL: exactly that many new ones are accepted then.
    """
    limit = 4
    daemon = startDaemon("--broker", redisServer.url, "--workers", "3", "--max-per-ip", str(limit), web=LOOPBACK)
    daemon.waitForLog(r"\] twisted-chat \S+ ready: 3 workers", TIMEOUT)
    admitted, refused = connectAll(daemon, lineClients, 3 * limit)
    assert len(admitted) == limit
    assert refused == [[TOO_MANY % (limit,)]] * (2 * limit)
    # the connections are spread over the workers (else this proves little)
    workers = [workerOf(daemon, client) for client in admitted]
    victim = max(set(workers), key=workers.count)
    held = workers.count(victim)
    os.kill(workerPids(daemon)[victim], signal.SIGKILL)
    daemon.waitForLog(r"released its %d connections" % (held,), TIMEOUT)
    again, refused = connectAll(daemon, lineClients, held + 2)
    assert len(again) == held
    assert refused == [[TOO_MANY % (limit,)]] * 2


def test_maxConnectionsHoldsForTheMachine(
    startDaemon: Callable[..., Daemon], lineClients: Callable[..., LineClient], redisServer: Any
) -> None:
    """
    C{--workers 3 --max-connections 5}: 5 connections in all on the
    machine, from any addresses; the next ones are told the server is full.
    """
    daemon = startDaemon("--broker", redisServer.url, "--workers", "3", "--max-connections", "5", "--max-per-ip", "0")
    daemon.waitForLog(r"\] twisted-chat \S+ ready: 3 workers", TIMEOUT)
    first, refused = connectAll(daemon, lineClients, 3, source="127.0.0.3")
    assert (len(first), refused) == (3, [])
    second, refused = connectAll(daemon, lineClients, 6)
    assert len(second) == 2
    assert refused == [[FULL % (5,)]] * 4


def test_socketIoHandshakesCountForTheMachine(startDaemon: Callable[..., Daemon], redisServer: Any) -> None:
    """
    C{--workers 3 --max-per-ip 3}: Engine.IO polling handshakes from one
    address (sessions that stay open) are counted for the machine too:
    exactly 3 open, the others get 503 with the usual reason.
    """
    import http.client
    import json

    daemon = startDaemon("--broker", redisServer.url, "--workers", "3", "--max-per-ip", "3", web=LOOPBACK)
    daemon.waitForLog(r"\] twisted-chat \S+ ready: 3 workers", TIMEOUT)
    answers = []
    for _ in range(7):
        connection = http.client.HTTPConnection("127.0.0.1", daemon.ports["web"], timeout=TIMEOUT, source_address=(SOURCE, 0))
        try:
            connection.request("GET", "/socket.io/?EIO=4&transport=polling")
            response = connection.getresponse()
            answers.append((response.status, response.read()))
        finally:
            connection.close()
    assert [status for status, _ in answers] == [200] * 3 + [503] * 4
    assert json.loads(answers[-1][1])["message"] == "too many connections from your address (at most 3): close one first"
