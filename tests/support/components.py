"""
What the tests need from the machine: where the repository's parts are,
and L{missingComponent} for a test whose component (redis-server, node,
Chromium …) is not installed.

Nothing here imports the reactor, Twisted or the project.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: the top of the repository
REPO = Path(__file__).resolve().parents[2]
#: the tests
TESTS = REPO / "tests"
#: socket.io-client from npm and the node scripts that drive it
SIO = TESTS / "sio"
#: where tests save what helps explain a failure (screenshots, the fault
#: harness's logs)
ARTIFACTS = REPO / "test-artifacts"


def missingComponent(why: str) -> None:
    """
    Something a test needs is not installed: fail on CI (C{CI=true}), where
    every component must be there, and skip elsewhere.
    """
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)
