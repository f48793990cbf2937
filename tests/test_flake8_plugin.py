"""gradlint inside flake8: registered, filtered by flake8, and at the same line:col as the CLI."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from samples import BUG_COL, BUG_LINE, BUGGY_LOOP, CLEAN_LOOP, with_comment_on_bug_line

from gradlint import __version__, flake8_plugin
from gradlint.core import Finding, Location
from gradlint.flake8_plugin import GradlintChecker


def flake8(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flake8", *args], capture_output=True, text=True, timeout=120
    )


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gradlint", *args], capture_output=True, text=True, timeout=60
    )


def positions(output: str) -> list[tuple[str, str, str]]:
    """(line, col, code) of each `path:line:col: CODE message` line, leaving out indented notes."""
    rows = []
    for line in output.splitlines():
        if line.startswith(" "):
            continue
        _, row, col, rest = line.split(":", 3)
        rows.append((row, col, rest.split()[0]))
    return rows


def test_plugin_is_registered_with_flake8():
    process = flake8("--version")
    assert f"gradlint: {__version__}" in process.stdout


def test_column_given_to_flake8_is_zero_based(monkeypatch):
    # flake8 adds one to the column a plugin yields; yielding our 1-based column would be off by one.
    finding = Finding("GL101", "clear-less-often-than-step", "msg", Location(7, 5, 7, 26))
    monkeypatch.setattr(flake8_plugin, "check_tree", lambda *args: [finding])
    checker = GradlintChecker(ast.parse("x = 1\n"), ["x = 1\n"])
    assert list(checker.run()) == [(7, 4, "GL101 msg", GradlintChecker)]


def test_internal_error_becomes_one_finding_not_a_flake8_crash(monkeypatch):
    def crash(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(flake8_plugin, "check_tree", crash)
    [(line, col, message, _)] = GradlintChecker(ast.parse("x = 1\n"), ["x = 1\n"]).run()
    assert (line, col) == (1, 0) and message.startswith("GL000 internal error: RuntimeError: boom")


def test_clean_file_passes_flake8(tmp_path):
    path = tmp_path / "clean.py"
    path.write_text(CLEAN_LOOP)
    process = flake8("--select", "GL", str(path))
    assert (process.returncode, process.stdout) == (0, "")


def test_flake8_reports_the_same_line_and_column_as_the_cli(tmp_path):
    path = tmp_path / "buggy.py"
    path.write_text(BUGGY_LOOP)
    from_flake8 = flake8("--select", "GL", str(path))
    from_cli = cli("check", "--no-color", str(path))
    assert from_flake8.returncode == 1 and from_cli.returncode == 1
    assert (str(BUG_LINE), str(BUG_COL), "GL101") in positions(from_flake8.stdout)
    assert positions(from_flake8.stdout) == positions(from_cli.stdout)


@pytest.mark.parametrize(("comment", "silenced"), [("# noqa: GL101", True), ("# noqa: GL102", False)])
def test_flake8_applies_its_own_noqa(tmp_path, comment, silenced):
    path = tmp_path / "noqa.py"
    path.write_text(with_comment_on_bug_line(comment))
    process = flake8("--select", "GL", str(path))
    assert (f":{BUG_LINE}:{BUG_COL}: GL101 " in process.stdout) != silenced
    assert process.returncode == (0 if silenced else 1)


def test_flake8_extend_ignore_drops_gradlint_codes(tmp_path):
    path = tmp_path / "buggy.py"
    path.write_text(BUGGY_LOOP)
    assert "GL101" not in flake8("--select", "GL", "--extend-ignore", "GL101", str(path)).stdout


def test_a_module_too_deep_to_analyse_is_one_gl000_line_not_an_internal_error(monkeypatch):
    from gradlint.checker import SourceError

    def too_deep(*args, **kwargs):
        raise SourceError("cannot analyse: nested too deeply (RecursionError)")

    monkeypatch.setattr(flake8_plugin, "check_tree", too_deep)
    checker = GradlintChecker(ast.parse(BUGGY_LOOP), BUGGY_LOOP.splitlines(keepends=True))
    assert [row[:3] for row in checker.run()] == [
        (1, 0, "GL000 cannot analyse: nested too deeply (RecursionError)")
    ]
