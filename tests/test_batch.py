"""Checking many files: `-j` worker processes give the report of one process, in the same order."""

from __future__ import annotations

import concurrent.futures
import io
import shutil
import sys
from pathlib import Path

import pytest
from helpers import gradlint
from samples import BROKEN_SOURCE, BUGGY_LOOP

from gradlint import cli

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The fixtures, a file that is not Python, and the fixtures give findings and clean files."""
    root = tmp_path / "tree"
    shutil.copytree(FIXTURES, root / "fixtures")
    (root / "broken.py").write_text(BROKEN_SOURCE)
    return root


@pytest.mark.parametrize("format", ["text", "json"])
def test_two_processes_report_what_one_does(tree, capsys, pools, format):
    one = gradlint(capsys, "check", "--no-cache", "-j", "1", "--format", format, str(tree))
    assert pools == []
    two = gradlint(capsys, "check", "--no-cache", "-j", "2", "--format", format, str(tree))
    assert pools == [2]
    assert two == one
    # The workers write the cache, and read it back: the same report again.
    assert gradlint(capsys, "check", "-j", "2", "--format", format, str(tree)) == one
    assert gradlint(capsys, "check", "-j", "2", "--format", format, str(tree)) == one
    assert one[0] == 2 and "cannot parse" in one[1] and "GL101" in one[1]  # errors and findings both crossed


def test_a_few_files_are_checked_in_this_process(tree, capsys, pools):
    code, out, _ = gradlint(capsys, "check", "-j", "8", str(tree / "broken.py"))
    assert pools == [] and code == 2 and out.endswith(":1:11: GL000 cannot parse: invalid syntax\n")


def test_standard_input_is_read_here_and_keeps_its_place(tree, capsys, pools, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(BUGGY_LOOP.encode())))
    code, out, _ = gradlint(capsys, "check", "-j", "2", str(tree), "-")
    assert pools == [2] and code == 2
    assert "<stdin>:7:5: GL101 " in out


def test_without_processes_the_files_are_checked_here(tree, capsys, monkeypatch):
    def no_processes(max_workers: int):
        raise OSError("no semaphores here")

    one = gradlint(capsys, "check", "-j", "1", str(tree))
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", no_processes)
    assert gradlint(capsys, "check", "-j", "2", str(tree)) == one


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_jobs_must_be_a_positive_number(capsys, value):
    with pytest.raises(SystemExit) as exit:
        cli.main(["check", "-j", value, "x.py"])
    assert exit.value.code == 2
    assert "expected a number of processes" in capsys.readouterr().err
