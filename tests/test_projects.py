"""Fixture projects of several modules: the training path crosses files, and so do the findings.

Each folder in fixtures/projects/ is a runnable program (`python main.py` from its folder) whose
files carry `# expect:` marks as the single-file fixtures do, in whichever file is reported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import gradlint, write

from gradlint import batch
from test_fixtures import read_expectation

PROJECTS_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "projects"
PROJECTS = sorted(path for path in PROJECTS_DIR.iterdir() if (path / "main.py").is_file())
PROJECT_IDS = [path.name for path in PROJECTS]


def expected(project: Path) -> set[tuple[str, int, str]]:
    found = set()
    for file in sorted(project.rglob("*.py")):
        expectation = read_expectation(file)
        found |= {(str(file), line, code) for line, code in expectation.findings}
    return found


def reported(capsys, *paths: str) -> tuple[set[tuple[str, int, str]], dict]:
    code, out, _ = gradlint(capsys, "check", "--format", "json", "--no-cache", *paths)
    document = json.loads(out)
    assert code == (1 if document["findings"] else 0) and not document["errors"]
    return {(f["path"], f["line"], f["code"]) for f in document["findings"]}, document


@pytest.mark.parametrize("project", PROJECTS, ids=PROJECT_IDS)
def test_the_whole_project_reports_what_its_files_expect(project, capsys):
    assert any(read_expectation(f).stated for f in project.rglob("*.py")), "state what the project must report"
    findings, _ = reported(capsys, str(project))
    assert findings == expected(project)


@pytest.mark.parametrize("project", PROJECTS, ids=PROJECT_IDS)
def test_each_file_checked_alone_reports_its_own_findings(project, capsys):
    """As pre-commit passes only the changed file: the modules it imports, and those importing it,
    are read for the training path, and only its own findings are reported."""
    wanted = expected(project)
    for file in sorted(project.rglob("*.py")):
        findings, _ = reported(capsys, str(file))
        assert findings == {item for item in wanted if item[0] == str(file)}, file.name


@pytest.mark.parametrize("project", PROJECTS, ids=PROJECT_IDS)
def test_the_project_runs(project):
    """Each project is a real training program: its findings are about code that runs."""
    result = subprocess.run(
        [sys.executable, "main.py"], cwd=project, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_a_finding_names_the_line_in_the_other_file(capsys):
    project = PROJECTS_DIR / "engine_clear_per_epoch"
    _, document = reported(capsys, str(project))
    (finding,) = document["findings"]
    assert finding["path"] == str(project / "main.py")
    assert [(r["path"], r["line"]) for r in finding["related"]] == [(str(project / "engine.py"), 10)]
    engine = str(project / "engine.py")
    # lines of the finding's own file are plain; those of another file name it
    assert "(line 20)" in finding["message"] and f"at line 10 of {engine}" in finding["message"]


def test_no_message_keeps_the_marks_that_name_files(capsys):
    _, document = reported(capsys, str(PROJECTS_DIR))
    assert document["findings"] and not any("\x00" in f["message"] for f in document["findings"])


# --- how imports resolve ------------------------------------------------------------------------
TRAIN_LOOP = """\
def train(model, loader, optimizer):
    for x, y in loader:
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        optimizer.step()
"""

CALLER = """\
import torch
{import_line}


def main(model, loader):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(3):
        optimizer.zero_grad()
        {call}(model, loader, optimizer)
"""


@pytest.mark.parametrize(
    ("files", "import_line", "call"),
    [
        ({"engine.py": TRAIN_LOOP}, "from engine import train", "train"),
        ({"engine.py": TRAIN_LOOP}, "import engine", "engine.train"),
        ({"engine.py": TRAIN_LOOP}, "from engine import train as run_epoch", "run_epoch"),
        ({"util/misc.py": TRAIN_LOOP, "util/__init__.py": ""}, "import util.misc as misc", "misc.train"),
        ({"util/misc.py": TRAIN_LOOP, "util/__init__.py": ""}, "import util.misc", "util.misc.train"),
        ({"util/misc.py": TRAIN_LOOP, "util/__init__.py": ""}, "from util import misc", "misc.train"),
        (  # a re-export in the package's __init__.py
            {"utils/train_utils.py": TRAIN_LOOP, "utils/__init__.py": "from .train_utils import train\n"},
            "from utils import train",
            "train",
        ),
        ({"src/pkg/loop.py": TRAIN_LOOP, "src/pkg/__init__.py": ""}, "from pkg.loop import train", "train"),
    ],
    ids=["from-import", "import-module", "as-alias", "import-as", "dotted", "submodule", "reexport", "src"],
)
def test_an_imported_training_loop_is_followed(tmp_path, capsys, files, import_line, call):
    (tmp_path / "pyproject.toml").write_text("")
    for name, text in files.items():
        write(tmp_path, name, text)
    main = write(tmp_path, "main.py", CALLER.format(import_line=import_line, call=call))
    findings, _ = reported(capsys, main)
    assert findings == {(main, 8, "GL101")}


def test_a_relative_import_inside_a_package_is_followed(tmp_path, capsys):
    (tmp_path / "setup.py").write_text("")
    write(tmp_path, "pkg/__init__.py", "")
    write(tmp_path, "pkg/loop.py", TRAIN_LOOP)
    main = write(tmp_path, "pkg/main.py", CALLER.format(import_line="from .loop import train", call="train"))
    findings, _ = reported(capsys, main)
    assert findings == {(main, 8, "GL101")}


def test_a_local_module_shadows_an_installed_one_of_the_same_name(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text("")
    write(tmp_path, "json.py", TRAIN_LOOP)  # Python would import this file, not the standard library's
    main = write(tmp_path, "main.py", CALLER.format(import_line="from json import train", call="train"))
    findings, _ = reported(capsys, main)
    assert findings == {(main, 8, "GL101")}


def test_what_resolves_to_no_project_file_is_assumed_correct(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text("")
    main = write(tmp_path, "main.py", CALLER.format(import_line="from somewhere_else import train", call="train"))
    findings, _ = reported(capsys, main)
    assert findings == set()


def test_two_modules_of_one_name_in_different_directories_are_not_confused(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text("")
    write(tmp_path, "a/engine.py", TRAIN_LOOP)
    write(tmp_path, "b/engine.py", TRAIN_LOOP.replace("        optimizer.step()\n", "        optimizer.step()\n        optimizer.zero_grad()\n"))
    buggy = write(tmp_path, "a/main.py", CALLER.format(import_line="from engine import train", call="train"))
    clean = write(tmp_path, "b/main.py", CALLER.format(import_line="from engine import train", call="train"))
    findings, _ = reported(capsys, buggy, clean)
    assert findings == {(buggy, 8, "GL101")}


def test_an_import_cycle_neither_hangs_nor_hides_the_finding(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text("")
    write(tmp_path, "engine.py", "import main\n\n" + TRAIN_LOOP)
    main = write(tmp_path, "main.py", CALLER.format(import_line="from engine import train", call="train"))
    findings, _ = reported(capsys, str(tmp_path))
    assert findings == {(main, 8, "GL101")}


def test_a_callee_that_does_not_parse_is_unknown_and_its_error_is_reported_only_if_checked(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text("")
    broken = write(tmp_path, "engine.py", "def train(model, loader, optimizer:\n    loss.backward()\n")
    main = write(tmp_path, "main.py", CALLER.format(import_line="from engine import train", call="train"))
    code, out, _ = gradlint(capsys, "check", "--format", "json", "--no-cache", main)
    assert (code, json.loads(out)) == (0, {"version": 1, "findings": [], "errors": []})
    code, out, _ = gradlint(capsys, "check", "--format", "json", "--no-cache", main, broken)
    document = json.loads(out)
    assert code == 2 and [e["path"] for e in document["errors"]] == [broken] and not document["findings"]


def test_a_symlinked_package_is_the_module_it_points_to(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text("")
    write(tmp_path, "real/loop.py", TRAIN_LOOP)
    write(tmp_path, "real/__init__.py", "")
    os.symlink(tmp_path / "real", tmp_path / "pkg")
    main = write(tmp_path, "main.py", CALLER.format(import_line="from pkg.loop import train", call="train"))
    findings, _ = reported(capsys, main, str(tmp_path / "real" / "loop.py"))
    assert findings == {(main, 8, "GL101")}


def test_flake8_reads_the_project_of_the_one_file_it_is_given():
    """flake8 hands the plugin one file's tree: its importers and imports are read from the project."""
    project = PROJECTS_DIR / "loss_scaler_clear_every_micro_batch"
    result = subprocess.run(
        [sys.executable, "-m", "flake8", "--select", "GL", "engine.py"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert [line.split(" ")[:2] for line in result.stdout.splitlines()] == [["engine.py:8:9:", "GL103"]]


def test_fix_leaves_a_finding_whose_fix_would_edit_another_file_and_says_so(tmp_path, capsys):
    project = tmp_path / "project"
    shutil.copytree(PROJECTS_DIR / "engine_clear_per_epoch", project)
    (project / "pyproject.toml").write_text("")
    main, engine = project / "main.py", project / "engine.py"
    before = main.read_text(), engine.read_text()
    code, out, err = gradlint(capsys, "fix", "--no-cache", str(main))
    assert code == 1 and (main.read_text(), engine.read_text()) == before
    assert f"{main}:21:9: GL101 not fixed: its fix would edit {engine}" in err
    assert f"{main}:21:9: GL101" in out and "fixed 0 findings, 1 remaining" in err


@pytest.mark.parametrize("project", PROJECTS, ids=PROJECT_IDS)
def test_the_run_confirms_every_finding_and_sees_nothing_else(project):
    """`gradlint run main.py` traces events in whichever module they happen: each finding, in any
    file, is confirmed, and a clean project shows no violation at all."""
    result = subprocess.run(
        [sys.executable, "-m", "gradlint", "run", "--format", "json", "main.py"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    document = json.loads(result.stdout)
    verdicts = {(os.path.join(project, f["path"]), f["line"], f["code"]): f["verdict"] for f in document["findings"]}
    assert {key: "confirmed" for key in expected(project)} == verdicts
    assert document["dynamic_only"] == []
    assert result.returncode == (1 if verdicts else 0)


def test_the_evidence_of_a_cross_module_finding_names_both_files():
    project = PROJECTS_DIR / "loss_scaler_clear_every_micro_batch"
    result = subprocess.run(
        [sys.executable, "-m", "gradlint", "run", "main.py"], cwd=project, capture_output=True, text=True, timeout=300
    )
    (evidence,) = [line for line in result.stdout.splitlines() if "runtime: confirmed" in line]
    assert "in engine.py:8" in evidence and "in util/misc.py:16" in evidence


def test_the_cache_answers_an_unchanged_project_and_an_edit_to_a_callee_is_seen(tmp_path, capsys, monkeypatch):
    project = tmp_path / "project"
    shutil.copytree(PROJECTS_DIR / "engine_clear_per_epoch", project)
    (project / "pyproject.toml").write_text("")
    monkeypatch.setenv("GRADLINT_CACHE_DIR", str(tmp_path / "cache"))
    main, engine = str(project / "main.py"), project / "engine.py"

    def check() -> set:
        code, out, _ = gradlint(capsys, "check", "--format", "json", str(project))
        return {(f["path"], f["line"], f["code"]) for f in json.loads(out)["findings"]}

    assert check() == {(main, 21, "GL101")}

    def analysed(*args, **kwargs):
        raise AssertionError("an unchanged project must be answered from the cache")

    with monkeypatch.context() as patched:
        patched.setattr(batch, "check_program", analysed)
        assert check() == {(main, 21, "GL101")}
    # the callee clears on every batch now: main.py is unchanged, and its finding is gone
    engine.write_text(engine.read_text().replace("        optimizer.step()\n", "        optimizer.step()\n        optimizer.zero_grad()\n"))
    assert check() == set()
