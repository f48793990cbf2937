"""The options editors, pre-commit and CI services expect of a linter, as ruff spells them:
`--stdin-filename`, `--force-exclude`, `--exit-zero` and `--output-format`."""

from __future__ import annotations

import io
import json
import sys

import pytest
from helpers import gradlint, write
from samples import BROKEN_SOURCE, BUG_COL, BUG_LINE, BUGGY_LOOP, CLEAN_LOOP

BUG = f":{BUG_LINE}:{BUG_COL}: GL101 "


def feed_stdin(monkeypatch, content: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(content.encode())))


def project(tmp_path, body: str) -> None:
    write(tmp_path, "pyproject.toml", "[tool.gradlint]\n" + body)


def one_cell_notebook(source: str) -> str:
    cell = {"cell_type": "code", "metadata": {}, "source": source, "outputs": [], "execution_count": None}
    markdown = {"cell_type": "markdown", "metadata": {}, "source": "# Train"}
    return json.dumps({"cells": [markdown, cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


# --- --stdin-filename ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dash", [["-"], []], ids=["with -", "without -"])
def test_stdin_filename_names_the_findings(capsys, monkeypatch, tmp_path, dash):
    monkeypatch.chdir(tmp_path)
    feed_stdin(monkeypatch, BUGGY_LOOP)
    code, out, _ = gradlint(capsys, "check", "--stdin-filename", "src/train.py", *dash)
    assert code == 1
    assert out.startswith("src/train.py" + BUG), out


def test_stdin_filename_gets_its_per_file_ignores(capsys, monkeypatch, tmp_path):
    project(tmp_path, '[tool.gradlint.per-file-ignores]\n"scripts/*" = ["GL101"]\n')
    monkeypatch.chdir(tmp_path)
    feed_stdin(monkeypatch, BUGGY_LOOP)
    assert gradlint(capsys, "check", "--stdin-filename", "scripts/train.py", "-") == (0, "", "")
    feed_stdin(monkeypatch, BUGGY_LOOP)
    assert gradlint(capsys, "check", "--stdin-filename", "src/train.py", "-")[0] == 1


def test_stdin_filename_finds_the_config_of_the_project_it_names(capsys, monkeypatch, tmp_path):
    project(tmp_path / "other", 'ignore = ["GL101"]\n')
    monkeypatch.chdir(tmp_path)
    feed_stdin(monkeypatch, BUGGY_LOOP)
    assert gradlint(capsys, "check", "--stdin-filename", "other/train.py") == (0, "", "")


def test_stdin_filename_ending_in_ipynb_is_read_as_a_notebook(capsys, monkeypatch):
    feed_stdin(monkeypatch, one_cell_notebook(BUGGY_LOOP))
    code, out, _ = gradlint(capsys, "check", "--stdin-filename", "nb.ipynb", "-")
    assert code == 1
    assert out.startswith(f"nb.ipynb:cell 2:{BUG_LINE}:{BUG_COL}: GL101 "), out


def test_stdin_filename_names_a_parse_error_too(capsys, monkeypatch):
    feed_stdin(monkeypatch, BROKEN_SOURCE)
    code, out, _ = gradlint(capsys, "check", "--stdin-filename", "broken.py")
    assert (code, out) == (2, "broken.py:1:11: GL000 cannot parse: invalid syntax\n")


def test_fix_of_stdin_uses_the_name_for_notebook_detection(capsys, monkeypatch):
    text = one_cell_notebook(BUGGY_LOOP)
    feed_stdin(monkeypatch, text)
    code, out, err = gradlint(capsys, "fix", "--stdin-filename", "nb.ipynb", "-")
    assert code == 0, err
    cells = json.loads(out)["cells"]
    assert cells[0]["source"] == "# Train" and cells[1]["source"] != BUGGY_LOOP


def test_no_path_and_no_stdin_filename_is_a_usage_error(capsys):
    code, out, err = gradlint(capsys, "check")
    assert (code, out) == (2, "")
    assert err.startswith("gradlint: error: no PATH given") and len(err.splitlines()) == 1


# --- --force-exclude -----------------------------------------------------------------------------------


def test_exclude_applies_to_a_named_file_only_with_force_exclude(capsys, monkeypatch, tmp_path):
    project(tmp_path, 'extend-exclude = ["generated"]\n')
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "generated/train.py", BUGGY_LOOP)
    assert gradlint(capsys, "check", "generated/train.py")[0] == 1
    assert gradlint(capsys, "check", "--force-exclude", "generated/train.py") == (0, "", "")
    # A file not excluded is still checked beside it.
    write(tmp_path, "train.py", BUGGY_LOOP)
    code, out, _ = gradlint(capsys, "check", "--force-exclude", "generated/train.py", "train.py")
    assert code == 1 and out.startswith("train.py" + BUG) and "generated" not in out


def test_force_exclude_applies_to_a_named_directory(capsys, monkeypatch, tmp_path):
    project(tmp_path, 'extend-exclude = ["generated"]\n')
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "generated/train.py", BUGGY_LOOP)
    assert gradlint(capsys, "check", "generated")[0] == 1
    assert gradlint(capsys, "check", "--force-exclude", "generated") == (0, "", "")


def test_force_exclude_applies_to_stdin_by_its_name(capsys, monkeypatch, tmp_path):
    project(tmp_path, 'extend-exclude = ["generated"]\n')
    monkeypatch.chdir(tmp_path)
    feed_stdin(monkeypatch, BUGGY_LOOP)
    assert gradlint(capsys, "check", "--force-exclude", "--stdin-filename", "generated/a.py") == (0, "", "")


def test_fix_of_excluded_stdin_gives_the_text_back_unchanged(capsys, monkeypatch, tmp_path):
    project(tmp_path, 'extend-exclude = ["generated"]\n')
    monkeypatch.chdir(tmp_path)
    feed_stdin(monkeypatch, BUGGY_LOOP)
    code, out, _ = gradlint(capsys, "fix", "--force-exclude", "--stdin-filename", "generated/a.py", "-")
    assert (code, out) == (0, BUGGY_LOOP)


# --- --exit-zero and --output-format ---------------------------------------------------------------------


def test_exit_zero_reports_the_findings_and_exits_0(capsys, tmp_path):
    path = write(tmp_path, "train.py", BUGGY_LOOP)
    code, out, _ = gradlint(capsys, "check", "--exit-zero", path)
    assert code == 0 and out.startswith(path + BUG)


def test_exit_zero_still_exits_2_for_a_file_that_could_not_be_checked(capsys, tmp_path):
    path = write(tmp_path, "broken.py", BROKEN_SOURCE)
    assert gradlint(capsys, "check", "--exit-zero", path)[0] == 2


def test_exit_zero_with_fix_exits_0_when_findings_remain(capsys, tmp_path):
    path = write(tmp_path, "train.py", CLEAN_LOOP.replace("        optimizer.step()\n", ""))
    code, out, _ = gradlint(capsys, "check", "--no-cache", path)
    assert code == 1, out
    assert gradlint(capsys, "fix", path)[0] == 1  # GL201 has no fix: it remains
    assert gradlint(capsys, "fix", "--exit-zero", path)[0] == 0


@pytest.mark.parametrize("name", ["json", "sarif", "github", "gitlab", "junit"])
def test_output_format_is_the_format_option(capsys, tmp_path, name):
    path = write(tmp_path, "train.py", BUGGY_LOOP)
    assert gradlint(capsys, "check", "--output-format", name, path) == gradlint(
        capsys, "check", "--format", name, path
    )
