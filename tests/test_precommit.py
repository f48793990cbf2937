"""The pre-commit hooks, for real: `pre-commit try-repo` installs this repository's committed HEAD
into a fresh virtualenv and runs the hook on a throwaway repository, as a user's commit would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from samples import BUG_LINE, BUGGY_LOOP, CLEAN_LOOP

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.skipif(shutil.which("git") is None, reason="pre-commit needs git"),
    pytest.mark.skipif(not (ROOT / ".git").exists(), reason="try-repo needs this repository's git history"),
]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True, timeout=60
    ).stdout


@pytest.fixture(scope="module")
def pre_commit_home(tmp_path_factory) -> Path:
    # One cache for the module: the hook's virtualenv is built once, then reused.
    return tmp_path_factory.mktemp("pre-commit-home")


def try_repo(repo: Path, home: Path, hook: str) -> subprocess.CompletedProcess:
    head = git(ROOT, "rev-parse", "HEAD").strip()
    environment = {**os.environ, "PRE_COMMIT_HOME": str(home), "NO_COLOR": "1"}
    # --ref: the committed state, as users get it, whatever is uncommitted in this working tree.
    command = [sys.executable, "-m", "pre_commit", "try-repo", str(ROOT), hook, "--ref", head, "--all-files"]
    return subprocess.run(command, cwd=repo, env=environment, capture_output=True, text=True, timeout=600)


def new_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir()
    git(path, "init", "-q")
    for name, content in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    if files:
        git(path, "add", *files)
    return path


def test_hook_fails_on_the_bug_and_passes_once_it_is_fixed(tmp_path, pre_commit_home):
    repo = new_repo(tmp_path / "project", {"train.py": BUGGY_LOOP, "README.md": "# demo\n"})
    failed = try_repo(repo, pre_commit_home, "gradlint")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"train.py:{BUG_LINE}:" in failed.stdout and "GL101" in failed.stdout

    (repo / "train.py").write_text(CLEAN_LOOP)
    git(repo, "add", "train.py")
    passed = try_repo(repo, pre_commit_home, "gradlint")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "GL101" not in passed.stdout


def test_hook_leaves_alone_what_the_projects_exclude_names(tmp_path, pre_commit_home):
    files = {
        "generated/train.py": BUGGY_LOOP,
        "pyproject.toml": '[tool.gradlint]\nextend-exclude = ["generated"]\n',
    }
    repo = new_repo(tmp_path / "excluding", files)
    process = try_repo(repo, pre_commit_home, "gradlint")
    assert process.returncode == 0, process.stdout + process.stderr
    assert "GL101" not in process.stdout


def test_hook_passes_a_repository_without_python_files(tmp_path, pre_commit_home):
    repo = new_repo(tmp_path / "docs-only", {"README.md": "# nothing to lint\n"})
    process = try_repo(repo, pre_commit_home, "gradlint")
    assert process.returncode == 0, process.stdout + process.stderr


def test_notebook_hook_checks_ipynb_files(tmp_path, pre_commit_home):
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "metadata": {},
                "source": BUGGY_LOOP,
                "outputs": [],
                "execution_count": None,
            }
        ],
        "metadata": {"language_info": {"name": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    repo = new_repo(tmp_path / "notebooks", {"train.ipynb": json.dumps(notebook), "clean.py": CLEAN_LOOP})
    process = try_repo(repo, pre_commit_home, "gradlint-notebooks")
    assert process.returncode == 1, process.stdout + process.stderr
    assert "train.ipynb:cell 1:" in process.stdout and "GL101" in process.stdout
