"""The pytest plugin, run on a throwaway test file in a child pytest."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

TESTS = """
import pytest
import torch


def train(clear_every_batch):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    for _ in range(4):
        model(torch.randn(4, 3)).pow(2).mean().backward()
        optimizer.step()
        if clear_every_batch:
            optimizer.zero_grad()


@pytest.mark.gradlint
def test_stale_loop_fails():
    train(clear_every_batch=False)


@pytest.mark.gradlint
def test_correct_loop_passes():
    train(clear_every_batch=True)


def test_unmarked_stale_loop_passes():
    train(clear_every_batch=False)


def test_fixture_records_steps(gradtrace):
    train(clear_every_batch=True)
    assert len(gradtrace.trace.steps) == 4
    assert not any(step.stale for step in gradtrace.trace.steps)
"""


def test_marker_fails_only_marked_tests_with_gradient_bugs(tmp_path: Path) -> None:
    (tmp_path / "test_training.py").write_text(textwrap.dedent(TESTS), encoding="utf-8")
    # By module name, whether or not this environment has the entry point installed.
    load = ["-p", "no:gradlint", "-p", "gradlint.runtime.pytest_plugin"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *load, "test_training.py"],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout
    assert "1 failed, 3 passed" in out, out[-3000:]
    assert "FAILED test_training.py::test_stale_loop_fails" in out
    assert "GL101" in out and "already applied by earlier steps" in out
    assert "PluggyTeardownRaisedWarning" not in out
