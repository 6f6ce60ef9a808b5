"""
Fixtures of the end-to-end tests: socket.io-client in node.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.support.components import SIO, missingComponent
from tests.support.sio import BUNDLE, NodeClient

#: seconds: bound on C{npm ci}
NPM_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def nodeModules() -> Path:
    """
    node and socket.io-client from npm (installed with C{npm ci} from the
    committed package-lock.json if C{node_modules} is missing).
    """
    node = shutil.which("node")
    if node is None:
        missingComponent("node is not installed (apt-get install nodejs npm)")
    if not BUNDLE.exists():
        npm = shutil.which("npm")
        if npm is None:
            missingComponent("npm is not installed (apt-get install npm)")
        try:
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],  # type: ignore[list-item]
                cwd=SIO,
                check=True,
                timeout=NPM_TIMEOUT,
                stdin=subprocess.DEVNULL,
                capture_output=True,
            )
        except (subprocess.SubprocessError, OSError) as e:
            missingComponent("npm ci in tests/sio failed: %s" % (e,))
    return SIO / "node_modules"


@pytest.fixture
def nodeClients(nodeModules: Path) -> Iterator[Callable[..., NodeClient]]:
    """
    Start socket.io-client in node: C{nodeClients(url, transports, auth)};
    each is closed (or killed) in teardown.
    """
    started: list[NodeClient] = []

    def start(url: str, transports: str, auth: dict[str, Any] | None = None) -> NodeClient:
        client = NodeClient(url, transports, auth)
        started.append(client)
        return client

    yield start
    for client in started:
        client.close()
