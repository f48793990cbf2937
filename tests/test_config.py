"""`[tool.gradlint]` in pyproject.toml, `--config`, and which files walking a directory finds."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import gradlint, write
from samples import BROKEN_SOURCE, BUG_COL, BUG_LINE, BUGGY_LOOP, CLEAN_LOOP

from gradlint.files import expand_paths
from gradlint.globs import compile_pattern

BUG = f":{BUG_LINE}:{BUG_COL}: GL101 "


def config(directory: Path, body: str, name: str = "pyproject.toml") -> str:
    return write(directory, name, "[tool.gradlint]\n" + body)


def walked(root: Path) -> list[str]:
    """What `gradlint check ROOT` would check, relative to ROOT, `/`-separated."""
    return [Path(os.path.relpath(path, root)).as_posix() for path in expand_paths([str(root)])]


# --- finding the config ---------------------------------------------------------------------------


def test_config_in_a_parent_directory_applies(tmp_path, capsys):
    config(tmp_path, 'ignore = ["GL101"]\n')
    buggy = write(tmp_path, "src/deep/train.py", BUGGY_LOOP)
    assert gradlint(capsys, "check", buggy) == (0, "", "")
    assert gradlint(capsys, "check", str(tmp_path / "src")) == (0, "", "")


def test_a_nearer_pyproject_without_the_table_is_passed_over(tmp_path, capsys):
    config(tmp_path, 'ignore = ["GL101"]\n')
    write(tmp_path, "sub/pyproject.toml", '[project]\nname = "sub"\n')
    buggy = write(tmp_path, "sub/train.py", BUGGY_LOOP)
    assert gradlint(capsys, "check", buggy)[0] == 0


def test_the_nearest_table_wins(tmp_path, capsys):
    config(tmp_path, 'ignore = ["GL101"]\n')
    config(tmp_path / "sub", 'select = ["GL1"]\n')
    buggy = write(tmp_path, "sub/train.py", BUGGY_LOOP)
    code, out, _ = gradlint(capsys, "check", buggy)
    assert code == 1 and out.startswith(buggy + BUG)


def test_no_config_anywhere_means_the_defaults(tmp_path, capsys):
    buggy = write(tmp_path, "train.py", BUGGY_LOOP)
    assert gradlint(capsys, "check", buggy)[0] == 1


def test_config_flag_overrides_the_discovered_file(tmp_path, capsys):
    config(tmp_path, 'ignore = ["GL101"]\n')
    other = config(tmp_path / "elsewhere", 'select = ["GL101"]\n')
    buggy = write(tmp_path, "train.py", BUGGY_LOOP)
    assert gradlint(capsys, "check", buggy)[0] == 0
    code, out, _ = gradlint(capsys, "check", "--config", other, buggy)
    assert code == 1 and out.startswith(buggy + BUG)


def test_config_flag_applies_to_stdin(tmp_path, capsys, monkeypatch):
    settings = config(tmp_path, 'ignore = ["GL1"]\n')
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(BUGGY_LOOP.encode())))
    assert gradlint(capsys, "check", "--config", settings, "-") == (0, "", "")


# --- selection: config, then the command line -------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "args", "reported"),
    [
        ('select = ["GL2", "GL3"]\n', (), False),
        ('select = ["GL2"]\nextend-select = ["GL101"]\n', (), True),
        ('ignore = ["GL1"]\n', (), False),
        # The command line's --select replaces the config's whole selection, its ignore included.
        ('ignore = ["GL101"]\n', ("--select", "GL101"), True),
        ('select = ["GL2"]\n', ("--extend-select", "GL1"), True),
        ('select = ["GL1"]\n', ("--ignore", "GL101"), False),
        ("", ("--ignore", "GL101"), False),
    ],
)
def test_command_line_flags_apply_on_top_of_the_config(tmp_path, capsys, settings, args, reported):
    config(tmp_path, settings)
    buggy = write(tmp_path, "train.py", BUGGY_LOOP)
    code, out, _ = gradlint(capsys, "check", *args, buggy)
    assert (buggy + BUG in out) == reported
    assert code == (1 if reported else 0)


# --- per-file-ignores -------------------------------------------------------------------------------


@pytest.mark.parametrize("glob", ["tests/*", "tests/", "tests", "tests/**/*.py", "**/test_*.py", "test_*.py"])
def test_per_file_ignores_suppress_only_in_the_matching_files(tmp_path, capsys, glob):
    config(tmp_path, f'[tool.gradlint.per-file-ignores]\n"{glob}" = ["GL101"]\n')
    ignored = write(tmp_path, "tests/test_train.py", BUGGY_LOOP)
    kept = write(tmp_path, "src/train.py", BUGGY_LOOP)
    code, out, _ = gradlint(capsys, "check", str(tmp_path))
    assert code == 1
    assert kept + BUG in out
    assert ignored not in out


def test_per_file_ignores_take_prefixes_and_leave_other_codes(tmp_path, capsys):
    config(tmp_path, '[tool.gradlint.per-file-ignores]\n"a.py" = ["GL1"]\n"b.py" = ["GL2"]\n')
    a = write(tmp_path, "a.py", BUGGY_LOOP)
    b = write(tmp_path, "b.py", BUGGY_LOOP)
    out = gradlint(capsys, "check", a, b)[1]
    assert a not in out and b + BUG in out


def test_per_file_ignore_globs_are_relative_to_the_config_file_not_the_cwd(tmp_path, capsys, monkeypatch):
    config(tmp_path / "project", '[tool.gradlint.per-file-ignores]\n"/scripts/*.py" = ["GL101"]\n')
    ignored = write(tmp_path, "project/scripts/train.py", BUGGY_LOOP)
    kept = write(tmp_path, "project/src/scripts/train.py", BUGGY_LOOP)
    monkeypatch.chdir(tmp_path / "project" / "src")
    out = gradlint(capsys, "check", ignored, kept)[1]
    assert ignored not in out and kept + BUG in out


# --- bad config: one line naming the file and the key or code, exit 2 ---------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('selct = ["GL1"]\n', "'selct'"),
        ('select = ["GL999"]\n', "'GL999'"),
        ('ignore = ["GL1", "XY"]\n', "'XY'"),
        ('extend-select = ["NOPE"]\n', "'NOPE'"),
        ('[tool.gradlint.per-file-ignores]\n"a.py" = ["GL77"]\n', "'GL77'"),
        ('select = "GL101"\n', "'select'"),
        ('per-file-ignores = ["a.py"]\n', "'per-file-ignores'"),
        ('[tool.gradlint.per-file-ignores]\n"a.py" = "GL101"\n', "per-file-ignores.a.py"),
        ("select = [\n", "invalid TOML"),
    ],
)
def test_bad_config_is_a_one_line_error_naming_the_file_and_the_key_or_code(tmp_path, capsys, body, words):
    settings = config(tmp_path, body)
    buggy = write(tmp_path, "train.py", BUGGY_LOOP)
    code, out, err = gradlint(capsys, "check", buggy)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1, err
    assert settings in err and words in err


def test_config_flag_naming_a_file_without_the_table_or_no_file(tmp_path, capsys):
    plain = write(tmp_path, "other.toml", "[tool.ruff]\nline-length = 100\n")
    clean = write(tmp_path, "clean.py", CLEAN_LOOP)
    code, out, err = gradlint(capsys, "check", "--config", plain, clean)
    assert (code, out) == (2, "") and plain in err and "[tool.gradlint]" in err
    missing = str(tmp_path / "missing.toml")
    code, out, err = gradlint(capsys, "check", "--config", missing, clean)
    assert (code, out) == (2, "") and missing in err and "cannot read" in err


# --- exclude and extend-exclude ---------------------------------------------------------------------


def test_extend_exclude_skips_walked_files_but_not_files_named_directly(tmp_path, capsys):
    config(tmp_path, 'extend-exclude = ["generated", "legacy_*.py"]\n')
    write(tmp_path, "src/generated/model.py", BROKEN_SOURCE)
    write(tmp_path, "src/legacy_train.py", BROKEN_SOURCE)
    write(tmp_path, "src/train.py", CLEAN_LOOP)
    write(tmp_path, ".hidden/x.py", BROKEN_SOURCE)  # the defaults still apply
    assert gradlint(capsys, "check", str(tmp_path)) == (0, "", "")
    named = str(tmp_path / "src" / "legacy_train.py")
    assert gradlint(capsys, "check", named)[0] == 2


def test_exclude_replaces_the_default_list(tmp_path, capsys):
    config(tmp_path, 'exclude = ["build"]\n')
    write(tmp_path, "build/x.py", BROKEN_SOURCE)
    vendored = write(tmp_path, "node_modules/x.py", BUGGY_LOOP)
    code, out, _ = gradlint(capsys, "check", str(tmp_path))
    assert code == 1 and out.startswith(vendored + BUG)


def test_anchored_exclude_is_relative_to_the_config_file(tmp_path, capsys):
    config(tmp_path, 'extend-exclude = ["/data"]\n')
    write(tmp_path, "data/x.py", BROKEN_SOURCE)
    kept = write(tmp_path, "src/data/x.py", BROKEN_SOURCE)
    code, out, _ = gradlint(capsys, "check", str(tmp_path))
    assert code == 2 and out.startswith(kept + ":") and out.count("GL000") == 1


# --- .gitignore ----------------------------------------------------------------------------------


def test_gitignore_patterns_are_honoured_when_walking(tmp_path):
    write(tmp_path, ".gitignore", "# generated\nbuild/\n*_pb2.py\n/scratch.py\nout/**\n!keep_pb2.py\n")
    for name in [
        "build/x.py",
        "pkg/build/x.py",
        "pkg/api_pb2.py",
        "scratch.py",
        "out/a/b.py",
        "pkg/keep_pb2.py",
        "pkg/scratch.py",
        "pkg/train.py",
        "build.py",  # `build/` is for directories only
    ]:
        write(tmp_path, name, CLEAN_LOOP)
    assert walked(tmp_path) == ["build.py", "pkg/keep_pb2.py", "pkg/scratch.py", "pkg/train.py"]


def test_nested_gitignore_applies_below_its_directory_and_can_re_include(tmp_path):
    write(tmp_path, ".gitignore", "*.gen.py\n")
    write(tmp_path, "pkg/.gitignore", "!keep.gen.py\nlocal.py\n")
    for name in ["a.gen.py", "pkg/keep.gen.py", "pkg/other.gen.py", "pkg/local.py", "local.py"]:
        write(tmp_path, name, CLEAN_LOOP)
    assert walked(tmp_path) == ["local.py", "pkg/keep.gen.py"]


def test_gitignore_above_the_walked_directory_applies_inside_a_repository(tmp_path):
    (tmp_path / ".git").mkdir()
    write(tmp_path, ".gitignore", "/src/vendor/\n")
    write(tmp_path, "src/vendor/x.py", CLEAN_LOOP)
    write(tmp_path, "src/train.py", CLEAN_LOOP)
    assert walked(tmp_path / "src") == ["train.py"]


def test_gitignore_above_the_walked_directory_is_not_read_outside_a_repository(tmp_path):
    write(tmp_path, ".gitignore", "vendor/\n")
    write(tmp_path, "src/vendor/x.py", CLEAN_LOOP)
    assert walked(tmp_path / "src") == ["vendor/x.py"]


def test_gitignored_file_named_directly_is_still_checked(tmp_path, capsys):
    write(tmp_path, ".gitignore", "*.py\n")
    buggy = write(tmp_path, "train.py", BUGGY_LOOP)
    assert gradlint(capsys, "check", str(tmp_path)) == (0, "", "")
    assert gradlint(capsys, "check", buggy)[0] == 1


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "matches"),
    [
        ("*.py", "a/b.py", False, True),
        ("/build", "build", True, True),
        ("/build", "x/build", True, False),
        ("build/", "x/build", True, True),
        ("build/", "build", False, False),
        ("**/gen", "a/b/gen", True, True),
        ("a/**/b", "a/b", False, True),
        ("a/**/b", "a/x/y/b", False, True),
        ("a/**", "a/x/y.py", False, True),
        ("a/**", "a", True, False),
        ("src/*.py", "src/a.py", False, True),
        ("src/*.py", "src/x/a.py", False, False),
        ("x?.py", "x1.py", False, True),
        ("[ab].py", "b.py", False, True),
        ("[!ab].py", "b.py", False, False),
        ("\\#notes.py", "#notes.py", False, True),
        ("\\!bang.py", "!bang.py", False, True),
    ],
)
def test_gitignore_pattern_meaning(pattern, path, is_dir, matches):
    assert compile_pattern(pattern).matches(path, is_dir) == matches


# --- flake8 keeps its own configuration ----------------------------------------------------------------


def test_flake8_config_file_extend_ignore_drops_gradlint_codes(tmp_path):
    write(tmp_path, "setup.cfg", "[flake8]\nselect = GL\nextend-ignore = GL101\n")
    write(tmp_path, "train.py", BUGGY_LOOP)

    def flake8(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "flake8", *args, "train.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    configured = flake8()
    assert (configured.returncode, configured.stdout) == (0, "")
    reported = flake8("--isolated", "--select", "GL")
    assert reported.returncode == 1 and "GL101" in reported.stdout
