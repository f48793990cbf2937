"""The cache: a re-run over an unchanged tree reads its results; any change, or --no-cache, checks
again; an entry that cannot be read is checked again, never a crash. Its stat index lets a re-run
answer an unchanged file without reading it."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from helpers import gradlint
from samples import BROKEN_SOURCE, BUGGY_LOOP, CLEAN_LOOP

from gradlint import batch, cache
from gradlint.cache import CACHE_DIRECTORY, CACHE_DIRECTORY_VARIABLE, FORMAT, result_from_json, result_to_json
from gradlint.checker import check_source

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    """A project with a config, a buggy file, a clean one and one that is not Python."""
    monkeypatch.delenv(CACHE_DIRECTORY_VARIABLE)
    (tmp_path / "pyproject.toml").write_text("[tool.gradlint]\nignore = []\n")
    (tmp_path / "buggy.py").write_text(BUGGY_LOOP)
    (tmp_path / "clean.py").write_text(CLEAN_LOOP)
    (tmp_path / "broken.py").write_text(BROKEN_SOURCE)
    return tmp_path


@pytest.fixture
def analyses(monkeypatch) -> list[str]:
    """The files really analysed, not read from the cache."""
    seen: list[str] = []

    def counting(text, filename, codes):
        seen.append(os.path.basename(filename))
        return check_source(text, filename, codes)

    monkeypatch.setattr(batch, "check_source", counting)
    return seen


def test_a_rerun_reads_the_cache_and_reports_the_same(project, capsys, analyses, monkeypatch):
    first = gradlint(capsys, "check", "--format", "json", str(project))
    assert sorted(analyses) == ["broken.py", "buggy.py", "clean.py"]

    def refuse(*args):
        raise AssertionError("analysed a file whose result is cached")

    monkeypatch.setattr(batch, "check_source", refuse)
    assert gradlint(capsys, "check", "--format", "json", str(project)) == first
    assert first[0] == 2 and "GL101" in first[1] and "cannot parse" in first[1]


def test_the_cache_is_beside_the_config_and_git_ignores_it(project, capsys, monkeypatch):
    monkeypatch.chdir(project.parent)
    gradlint(capsys, "check", str(project))
    cache = project / CACHE_DIRECTORY
    assert (cache / ".gitignore").read_text().endswith("*\n") and (cache / "CACHEDIR.TAG").exists()
    assert len(list((cache / f"v{FORMAT}").iterdir())) == 3


def test_without_a_config_the_cache_is_in_the_current_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(CACHE_DIRECTORY_VARIABLE)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "buggy.py").write_text(BUGGY_LOOP)
    gradlint(capsys, "check", "src")
    assert len(list((tmp_path / CACHE_DIRECTORY / f"v{FORMAT}").iterdir())) == 1


def test_a_changed_file_is_checked_again(project, capsys, analyses):
    gradlint(capsys, "check", str(project))
    (project / "clean.py").write_text(BUGGY_LOOP + "# edited\n")  # not buggy.py's bytes: that is cached
    _, out, _ = gradlint(capsys, "check", str(project))
    assert analyses[3:] == ["clean.py"]
    assert f"{project / 'clean.py'}:7:5: GL101 " in out


def test_a_changed_selection_checks_every_file_again(project, capsys, analyses):
    gradlint(capsys, "check", str(project))
    (project / "pyproject.toml").write_text('[tool.gradlint]\nignore = ["GL101"]\n')
    _, out, _ = gradlint(capsys, "check", str(project))
    assert sorted(analyses[3:]) == ["broken.py", "buggy.py", "clean.py"]
    assert "GL101" not in out
    gradlint(capsys, "check", "--select", "GL101", str(project))
    assert len(analyses) == 9


def test_no_cache_neither_reads_nor_writes(project, capsys, analyses):
    gradlint(capsys, "check", str(project))
    gradlint(capsys, "check", "--no-cache", str(project))
    assert len(analyses) == 6
    (project / "new.py").write_text(CLEAN_LOOP)
    gradlint(capsys, "check", "--no-cache", str(project / "new.py"))
    assert len(list((project / CACHE_DIRECTORY / f"v{FORMAT}").iterdir())) == 3


@pytest.mark.parametrize("content", ["", "{not json", '{"findings": [{"code": 1}], "error": null}', "[]"])
def test_a_corrupt_entry_is_checked_again(project, capsys, analyses, content):
    first = gradlint(capsys, "check", str(project))
    for entry in (project / CACHE_DIRECTORY / f"v{FORMAT}").iterdir():
        entry.write_text(content)
    assert gradlint(capsys, "check", str(project)) == first
    assert len(analyses) == 6


def test_an_internal_error_is_not_cached(project, capsys, monkeypatch):
    monkeypatch.setattr(batch, "check_source", lambda *args: 1 / 0)
    _, out, _ = gradlint(capsys, "check", str(project / "clean.py"))
    assert "internal error: ZeroDivisionError" in out
    monkeypatch.setattr(batch, "check_source", check_source)
    assert gradlint(capsys, "check", str(project / "clean.py")) == (0, "", "")


def test_an_unwritable_cache_only_costs_time(project, capsys, monkeypatch):
    (project / CACHE_DIRECTORY).write_text("a file where the directory should be")
    assert gradlint(capsys, "check", str(project / "clean.py")) == (0, "", "")


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.py")), ids=lambda path: path.name)
def test_a_result_survives_the_round_trip(path):
    findings = tuple(check_source(path.read_text(), str(path)))
    assert result_from_json(json.loads(json.dumps(result_to_json((findings, None))))) == (findings, None)


def age(root: Path, seconds: float = 3600) -> None:
    """Date `root`, or every file under it, back: the index records no file modified just before a run."""
    then = time.time_ns() - int(seconds * 1e9)
    for path in root.rglob("*.py") if root.is_dir() else [root]:
        os.utime(path, ns=(then, then))


def index_of(project: Path) -> dict:
    (index,) = (project / CACHE_DIRECTORY).glob("index-*.json")
    return json.loads(index.read_text())["entries"]


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The files whose bytes or text were read."""
    seen: list[str] = []
    read_data, read_source = batch.read_data, batch.read_source

    def counting(read):
        def reading(path):
            seen.append(os.path.basename(path))
            return read(path)

        return reading

    monkeypatch.setattr(batch, "read_data", counting(read_data))
    monkeypatch.setattr(batch, "read_source", counting(read_source))
    return seen


def test_a_warm_run_reads_only_the_files_with_findings(project, capsys, reads):
    age(project)
    first = gradlint(capsys, "check", str(project))
    assert sorted(reads) == ["broken.py", "buggy.py", "clean.py"]
    # buggy.py is read again for the snippets under its findings; the error in broken.py is not.
    assert gradlint(capsys, "check", str(project)) == first
    assert reads[3:] == ["buggy.py"]


def test_a_file_edited_to_the_same_size_is_checked_again(project, capsys, reads):
    age(project)
    gradlint(capsys, "check", str(project))
    buggy = project / "buggy.py"
    edited = BUGGY_LOOP.replace("loss.backward()", "loss.bockward()")  # no backward: nothing to report
    assert len(edited) == len(BUGGY_LOOP)
    buggy.write_text(edited)
    age(buggy, seconds=1800)
    code, out, _ = gradlint(capsys, "check", str(project))
    assert reads[3:] == ["buggy.py"] and "GL101" not in out and code == 2  # broken.py still broken


def test_a_file_modified_just_before_the_run_is_not_indexed(project, capsys, reads):
    age(project)
    os.utime(project / "clean.py")  # now
    gradlint(capsys, "check", str(project))
    assert sorted(os.path.basename(path) for path in index_of(project)) == ["broken.py", "buggy.py"]
    gradlint(capsys, "check", str(project))
    assert sorted(reads[3:]) == ["buggy.py", "clean.py"]


@pytest.mark.parametrize("content", ["", "{not json", "[]", '{"entries": []}', '{"entries": {"x": [1]}}'])
def test_a_corrupt_index_is_ignored(project, capsys, reads, content):
    age(project)
    first = gradlint(capsys, "check", str(project))
    (index,) = (project / CACHE_DIRECTORY).glob("index-*.json")
    index.write_text(content)
    assert gradlint(capsys, "check", str(project)) == first
    assert sorted(reads[3:]) == ["broken.py", "buggy.py", "clean.py"]
    assert gradlint(capsys, "check", str(project)) == first
    assert reads[6:] == ["buggy.py"]  # the index was written again


def test_a_changed_selection_does_not_trust_the_index(project, capsys, reads):
    age(project)
    gradlint(capsys, "check", str(project))
    _, out, _ = gradlint(capsys, "check", "--select", "GL2", str(project))
    assert sorted(reads[3:]) == ["broken.py", "buggy.py", "clean.py"] and "GL101" not in out


def test_workers_fill_the_index_as_one_process_does(tmp_path, capsys, monkeypatch, pools):
    tree = tmp_path / "tree"
    # the single-file fixtures: files of a project are analysed together, and never indexed alone
    shutil.copytree(FIXTURES, tree, ignore=shutil.ignore_patterns("projects"))
    age(tree)
    indexes = []
    for jobs in ("1", "2"):
        monkeypatch.setenv(CACHE_DIRECTORY_VARIABLE, str(tmp_path / f"cache-j{jobs}"))
        gradlint(capsys, "check", "-j", jobs, str(tree))
        (index,) = (tmp_path / f"cache-j{jobs}").glob("index-*.json")
        indexes.append(json.loads(index.read_text())["entries"])
    assert pools == [2]
    assert indexes[0] == indexes[1] and len(indexes[0]) == len(list(FIXTURES.glob("*.py")))


@pytest.mark.parametrize("format", ["text", "json"])
def test_a_warm_run_reports_what_a_cold_one_does(tmp_path, capsys, monkeypatch, format):
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES, tree)
    age(tree)
    cold = gradlint(capsys, "check", "--format", format, str(tree))

    def refuse(*args):
        raise AssertionError("analysed a file whose result is indexed")

    monkeypatch.setattr(batch, "check_source", refuse)
    assert gradlint(capsys, "check", "--format", format, str(tree)) == cold
    assert cold[0] == 1 and "GL101" in cold[1]


def test_no_cache_neither_reads_nor_writes_the_index(project, capsys, monkeypatch):
    age(project)
    gradlint(capsys, "check", str(project))
    (index,) = (project / CACHE_DIRECTORY).glob("index-*.json")
    before = index.read_bytes()

    def refuse(*args):
        raise AssertionError("read the index under --no-cache")

    monkeypatch.setattr(cache.StatIndex, "load", refuse)
    (project / "new.py").write_text(CLEAN_LOOP)
    age(project)
    gradlint(capsys, "check", "--no-cache", str(project))
    assert index.read_bytes() == before
