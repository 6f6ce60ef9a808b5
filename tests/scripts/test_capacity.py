"""
scripts/capacity.py computes the capacity table of docs/scaling.md from the
recorded results (docs/bench-results.json): it runs on the recorded file,
the page holds exactly its output, and the table follows the figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "scripts" / "capacity.py"
RESULTS = ROOT / "docs" / "bench-results.json"
PAGE = ROOT / "docs" / "scaling.md"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_runsOnTheRecordedResults() -> None:
    done = _run(str(RESULTS))
    assert done.returncode == 0, done.stderr
    assert "| workers (by the measured" in done.stdout
    assert "| Redis: cores of its single thread needed |" in done.stdout


def test_pageHoldsTheScriptsTable() -> None:
    done = _run(str(RESULTS), "--check", str(PAGE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_aPageThatDisagreesIsReported(tmp_path: Path) -> None:
    page = PAGE.read_text()
    stale = tmp_path / "scaling.md"
    stale.write_text(page.replace("| workers (by the measured", "| workers (by a guessed", 1))
    done = _run(str(RESULTS), "--check", str(stale))
    assert done.returncode == 1
    assert "the capacity table is not what" in done.stdout


def test_tableFollowsTheFigures(tmp_path: Path) -> None:
    results = json.loads(RESULTS.read_text())
    results["figures"]["ws_connections_per_worker"]["value"] /= 2
    changed = tmp_path / "results.json"
    changed.write_text(json.dumps(results))
    before, after = _run(str(RESULTS)).stdout, _run(str(changed)).stdout
    workers = [line for line in before.splitlines() if line.startswith("| workers (by")]
    halved = [line for line in after.splitlines() if line.startswith("| workers (by")]
    assert workers and halved and workers != halved
    assert _run(str(changed), "--check", str(PAGE)).returncode == 1
