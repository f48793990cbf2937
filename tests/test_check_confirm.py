"""`gradlint check --confirm`: the static check, then a bounded traced run of each file named."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gradlint.cli import main
from gradlint.runtime.run import NEEDS_TORCH

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
BUGGY = str(FIXTURES / "bug_GL102_missing_zero_grad.py")
CLEAN = str(FIXTURES / "clean_grad_none_loop.py")


def test_a_buggy_file_is_confirmed_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    assert main(["check", "--confirm", BUGGY, CLEAN]) == 1
    out = capsys.readouterr().out
    assert "GL102" in out and "runtime: confirmed: SGD step at line 24 applied 24 backward passes" in out
    assert f"{BUGGY}: run finished: 24 optimizer steps" in out
    assert f"{CLEAN}: run finished: 24 optimizer steps" in out and "0 findings" in out


def test_a_clean_file_exits_0_and_json_has_one_run_per_file(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    assert main(["check", "--confirm", "--format", "json", CLEAN]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["findings"] == [] and document["dynamic_only"] == [] and document["errors"] == []
    assert [(run["path"], run["status"], run["steps"]) for run in document["runs"]] == [
        (CLEAN, "finished", 24)
    ]


def test_the_step_budget_applies_and_verdicts_are_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    assert main(["check", "--confirm", "--format", "json", "--max-steps", "3", BUGGY, CLEAN]) == 1
    document = json.loads(capsys.readouterr().out)
    assert [f["verdict"] for f in document["findings"]] == ["confirmed"]
    assert [(run["status"], run["steps"]) for run in document["runs"]] == [("max steps", 3)] * 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ([str(FIXTURES)], "--confirm runs programs: name files, not "),
        (["-"], "--confirm runs programs: name files, not -"),
        ([CLEAN, "--format", "sarif"], "--confirm reports as text or json, not sarif"),
        ([CLEAN, "--quiet"], "--quiet does not apply to --confirm"),
        ([CLEAN, "--output-file", "report.txt"], "--output-file does not apply to --confirm"),
        ([CLEAN, "--max-steps", "0"], "--max-steps must be at least 1"),
        ([CLEAN, "--timeout", "-1"], "--timeout must be positive"),
    ],
)
def test_what_confirm_cannot_do_is_a_one_line_usage_error(
    options: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--confirm", *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gradlint: error: {message}") and err.count("\n") == 1


def test_without_torch_it_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    assert main(["check", "--confirm", CLEAN]) == 2
    assert capsys.readouterr().err.strip() == NEEDS_TORCH
