"""
The invariant-checking fault harness (tests/chaos, docs/reliability.md) in
its bounded CI profile, one test per topology: real clients of every kind
chat (with a write-load phase) while every fault that applies to the
topology is injected once, in an order and at moments drawn from a seed,
then the invariants are checked against what the clients saw and what the
store holds.

The seed comes from C{CHAOS_SEED} or is drawn at random; it is printed in
the table and in the failure message, and C{bash scripts/soak.sh --topology
T --seed N --profile ci} replays the run. The harness runs as a subprocess
(C{python -m tests.chaos}, from the top of the repository) with a deadline;
it stops everything it started, and dies with everything it started if it
is killed. Logs, the journal and the store of each run are kept under
test-artifacts/chaos/ (removed after a run without violations).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.components import ARTIFACTS, missingComponent, REPO, TESTS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(330)]

#: seconds: bound on one topology's CI run (it takes about a minute)
RUN_TIMEOUT = 240.0


def _seed() -> int:
    value = os.environ.get("CHAOS_SEED")
    return int(value) if value else random.randrange(1, 10**9)


@pytest.mark.parametrize("topology", ["single", "redis2", "workers2"])
def test_chaos(topology: str, tmp_path: Path) -> None:
    """
    Under every fault of the topology, nothing acknowledged is lost or
    duplicated, members see every message once and in order, resends get
    the first id, every request is answered in time, epoch changes are
    told, flood control drops nothing typed, and the daemons log no
    traceback.
    """
    for tool in ("redis-server", "node"):
        if shutil.which(tool) is None:
            missingComponent("%s is not installed" % (tool,))
    if not (TESTS / "sio" / "node_modules" / "socket.io-client").exists():
        missingComponent("tests/sio/node_modules is missing (npm ci --prefix tests/sio)")
    if topology == "single":
        from tests.chaos.topology import canMountTmpfs

        why = canMountTmpfs(tmp_path / "probe")
        if why:
            missingComponent("the disk-full fault needs a tmpfs mount (run as root): %s" % (why,))
    seed = _seed()
    artifacts = ARTIFACTS / "chaos"
    command = [sys.executable, "-m", "tests.chaos", "--topology", topology, "--profile", "ci", "--seed", str(seed),
               "--artifacts", str(artifacts)]  # fmt: skip
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        # SIGTERM: the harness stops what it started and reports
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        pytest.fail("the harness did not finish within %s s (seed %d):\n%s" % (RUN_TIMEOUT, seed, output))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(output)
    folder = _folder(output)
    if proc.returncode == 0 and folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
    assert proc.returncode == 0, "invariants violated on %s (seed %d; replay with CHAOS_SEED=%d):\n%s" % (
        topology, seed, seed, output)


def _folder(output: str) -> Path | None:
    for line in output.splitlines():
        if "; logs: " in line:
            return Path(line.rsplit("; logs: ", 1)[1].strip())
    return None
