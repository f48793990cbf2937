"""Static and runtime must agree: run every fixture under `gradlint run` and compare.

Every finding on a buggy fixture must be `confirmed` by what the program did, and a clean fixture
must show no violation the static side missed (`dynamic-only`). The fixtures run in parallel
subprocesses, each exactly as a user would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("torch")

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURES = sorted(FIXTURES_DIR.glob("*.py"))
FIXTURE_IDS = [path.stem for path in FIXTURES]

# Findings the runtime cannot see, with the reason. Strict: if one starts passing, say so.
RUNTIME_BLIND_SPOTS: dict[str, str] = {}


def run_fixture(path: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "gradlint", "run", str(path), "--format", "json"],
        cwd=FIXTURES_DIR.parent,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1), f"{path.name}: exit {result.returncode}\n{result.stderr[-3000:]}"
    document = json.loads(result.stdout)
    assert document["run"]["status"] == "finished", f"{path.name}: {document['run']}"
    return document


@pytest.fixture(scope="session")
def runtime_reports(request: pytest.FixtureRequest) -> dict[str, Future[dict]]:
    """Start every fixture this session will ask for at once; each test waits for its own."""
    wanted = {
        item.callspec.params["path"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_static_findings_agree_with_the_run"
    }
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2)
    request.addfinalizer(pool.shutdown)
    return {path.stem: pool.submit(run_fixture, path) for path in sorted(wanted)}


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(path, marks=pytest.mark.xfail(strict=True, reason=RUNTIME_BLIND_SPOTS[path.stem]))
        if path.stem in RUNTIME_BLIND_SPOTS
        else path
        for path in FIXTURES
    ],
    ids=FIXTURE_IDS,
)
def test_static_findings_agree_with_the_run(path: Path, runtime_reports: dict[str, Future[dict]]) -> None:
    document = runtime_reports[path.stem].result()
    findings = document["findings"]
    if path.stem.startswith("bug_"):
        assert findings, f"{path.name}: no static finding to confirm"
        unconfirmed = [f"{f['line']}: {f['code']} {f['verdict']}: {f['evidence']}" for f in findings]
        unconfirmed = [line for line, f in zip(unconfirmed, findings) if f["verdict"] != "confirmed"]
        assert not unconfirmed, f"{path.name}:\n" + "\n".join(unconfirmed)
    else:
        missed = [f"{v['line']}: {v['code']}: {v['evidence']}" for v in document["dynamic_only"]]
        assert not missed, f"{path.name} is clean, but the run saw:\n" + "\n".join(missed)
