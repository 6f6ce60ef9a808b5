"""
WebSocket protocol compliance: the Autobahn|Testsuite fuzzing client
(C{wstest}, from the shared tools next to this repository) against the
daemon's C{/echo} endpoint, which runs with the same WebSocket options as
the chat endpoint.

The report is kept in C{test-artifacts/wstest-report} for CI to publish.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import TYPE_CHECKING, Callable

import pytest

from tests.support.components import REPO

if TYPE_CHECKING:
    from tests.support.daemon import Daemon

pytestmark = pytest.mark.e2e

WSTEST = REPO.parent / "shared" / "tools" / "wstest"
REPORT = REPO / "test-artifacts" / "wstest-report"

#: the "ci" selection takes about 35 s; this bounds a hung suite
SUITE_TIMEOUT = 420.0


@pytest.mark.timeout(SUITE_TIMEOUT + 60)
def test_autobahnTestsuite(startDaemon: Callable[..., Daemon]) -> None:
    """
    Every case of the Autobahn|Testsuite "ci" selection (all but the
    permessage-deflate cases 12.* and 13.*) passes against C{/echo}: framing,
    pings, fragmentation, UTF-8 validation, close handling and messages up
    to 16 MiB.
    """
    if not os.access(WSTEST, os.X_OK):
        message = "the compliance suite runner %s is missing" % (WSTEST,)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    daemon = startDaemon(
        "--ws-echo",
        "--ws-max-message",
        str(16 * 1024 * 1024),
        line="none",
        web="tcp:0:interface=127.0.0.1",
    )
    url = "ws://127.0.0.1:%d/echo" % (daemon.ports["web"],)
    shutil.rmtree(REPORT, ignore_errors=True)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    try:
        run = subprocess.run(
            [str(WSTEST), url, "ci", str(REPORT)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SUITE_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("wstest did not finish within %s s; partial report in %s" % (SUITE_TIMEOUT, REPORT))
    output = (run.stdout + run.stderr).strip()
    lines = output.splitlines()
    last = lines[-1] if lines else ""
    assert run.returncode == 0, "wstest exited with %s:\n%s" % (run.returncode, output)
    m = re.match(r"(\d+) passed, 0 failed\b", last)
    assert m is not None and int(m.group(1)) > 0, "unexpected summary %r:\n%s" % (last, output)
