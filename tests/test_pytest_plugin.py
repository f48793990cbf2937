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


def child_pytest(tmp_path: Path, tests: str, *options: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_training.py").write_text(textwrap.dedent(tests), encoding="utf-8")
    # By module name, whether or not this environment has the entry point installed.
    load = ["-p", "no:gradlint", "-p", "gradlint.runtime.pytest_plugin"]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rA",
            "-p",
            "no:cacheprovider",
            *load,
            *options,
            "test_training.py",
        ],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_marker_fails_only_marked_tests_with_gradient_bugs(tmp_path: Path) -> None:
    out = child_pytest(tmp_path, TESTS).stdout
    assert "1 failed, 3 passed" in out, out[-3000:]
    assert "FAILED test_training.py::test_stale_loop_fails" in out
    assert "GL101" in out and "already applied by earlier steps" in out
    assert "PluggyTeardownRaisedWarning" not in out


SELECTION_TESTS = """
import pytest
import torch


def stale_loop():
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    for _ in range(3):
        model(torch.randn(4, 3)).pow(2).mean().backward()
        optimizer.step()


def unscaled_accumulation():
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        for _ in range(4):
            model(torch.randn(4, 3)).pow(2).mean().backward()
        optimizer.step()


@pytest.mark.gradlint
def test_stale():
    stale_loop()


@pytest.mark.gradlint
def test_unscaled():
    unscaled_accumulation()


@pytest.mark.gradlint(ignore=["GL301"])
def test_unscaled_ignored_by_its_marker():
    unscaled_accumulation()


@pytest.mark.gradlint(select="GL3")
def test_stale_outside_its_markers_selection():
    stale_loop()
"""


@pytest.mark.parametrize(
    ("options", "failed"),
    [
        ((), ["test_stale", "test_unscaled"]),
        (("--gradlint-ignore", "GL1"), ["test_unscaled"]),
        (("--gradlint-select", "GL101,GL102"), ["test_stale"]),
        (("--gradlint-select", "GL301", "--gradlint-ignore", "GL301"), []),
    ],
)
def test_codes_are_chosen_by_options_and_marker_arguments(
    tmp_path: Path, options: tuple[str, ...], failed: list[str]
) -> None:
    out = child_pytest(tmp_path, SELECTION_TESTS, *options).stdout
    assert (
        sorted(line.split("::")[1].split()[0] for line in out.splitlines() if line.startswith("FAILED"))
        == failed
    )
    assert f"{len(failed)} failed" in out if failed else "4 passed" in out, out[-3000:]


def test_an_unknown_code_is_a_usage_error(tmp_path: Path) -> None:
    result = child_pytest(tmp_path, SELECTION_TESTS, "--gradlint-select", "GL999")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "unknown rule code 'GL999'" in result.stderr
