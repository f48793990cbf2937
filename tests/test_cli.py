"""The `gradlint` command as a user meets it: exit codes, output formats, bad input, file walking."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from helpers import gradlint, write
from samples import BROKEN_SOURCE, BUG_COL, BUG_LINE, BUGGY_LOOP, CLEAN_LOOP, with_comment_on_bug_line

from gradlint import __version__, batch, cli
from gradlint.checker import FileResult, SourceError
from gradlint.core import Finding, Location, Related
from gradlint.files import expand_paths
from gradlint.report import format_github, format_json, format_text

BUG_PREFIX = f":{BUG_LINE}:{BUG_COL}: GL101 "

JSON_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "findings", "errors"],
    "properties": {
        "version": {"const": 1},
        "findings": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": [
                    "path",
                    "line",
                    "col",
                    "end_line",
                    "end_col",
                    "code",
                    "name",
                    "message",
                    "related",
                ],
                "properties": {
                    "path": {"type": "string"},
                    "line": {"type": "integer", "minimum": 1},
                    "col": {"type": "integer", "minimum": 1},
                    "end_line": {"type": "integer", "minimum": 1},
                    "end_col": {"type": "integer", "minimum": 1},
                    "code": {"type": "string", "pattern": "^GL[0-9]{3}$"},
                    "name": {"type": "string"},
                    "message": {"type": "string"},
                    "related": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["path", "line", "col", "message"],
                            "properties": {
                                "path": {"type": "string"},
                                "line": {"type": "integer"},
                                "col": {"type": "integer"},
                                "message": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["path", "line", "col", "message"],
                "properties": {
                    "path": {"type": "string"},
                    "line": {"type": "integer"},
                    "col": {"type": "integer"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}


def reported_codes(out: str) -> list[str]:
    """The CODE of each `path:line:col: CODE message` line; indented lines are notes and snippets."""
    return [line.split(": ", 2)[1].split()[0] for line in out.splitlines() if not line.startswith(" ")]


def assert_one_line_error(out: str, err: str, path: str, words: str) -> None:
    matching = [line for line in out.splitlines() if line.startswith(f"{path}:")]
    assert len(matching) == 1, out
    assert " GL000 " in matching[0] and words in matching[0]
    assert "Traceback" not in out + err


# --- exit codes and findings -------------------------------------------------------------------------


def test_clean_file_exits_0_and_prints_nothing(tmp_path, capsys):
    path = write(tmp_path, "clean.py", CLEAN_LOOP)
    assert gradlint(capsys, "check", path) == (0, "", "")


def test_canonical_bug_exits_1_with_gl101_at_the_clear(tmp_path, capsys):
    path = write(tmp_path, "buggy.py", BUGGY_LOOP)
    code, out, _ = gradlint(capsys, "check", path)
    assert code == 1
    assert out.startswith(path + BUG_PREFIX), out


def test_unparsable_file_exits_2_and_the_good_files_are_still_checked(tmp_path, capsys):
    broken = write(tmp_path, "a_broken.py", BROKEN_SOURCE)
    buggy = write(tmp_path, "b_buggy.py", BUGGY_LOOP)
    code, out, _ = gradlint(capsys, "check", broken, buggy)
    assert code == 2
    assert f"{broken}:1:11: GL000 cannot parse: " in out
    assert buggy + BUG_PREFIX in out


def test_unparsable_file_among_clean_ones_exits_2(tmp_path, capsys):
    clean = write(tmp_path, "clean.py", CLEAN_LOOP)
    broken = write(tmp_path, "broken.py", BROKEN_SOURCE)
    code, out, err = gradlint(capsys, "check", clean, broken)
    assert code == 2
    assert out == f"{broken}:1:11: GL000 cannot parse: invalid syntax\n"
    assert err == ""


@pytest.mark.parametrize("option", ["--select", "--ignore"])
@pytest.mark.parametrize("code", ["GL999", "XY1", "GL101,NOPE"])
def test_unknown_code_is_a_one_line_usage_error(tmp_path, capsys, option, code):
    path = write(tmp_path, "clean.py", CLEAN_LOOP)
    exit_code, out, err = gradlint(capsys, "check", option, code, path)
    assert exit_code == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and "unknown rule code" in err


def test_bad_usage_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["check", "--format", "xml", "x.py"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"gradlint {__version__}"


# --- noqa, --select, --ignore ------------------------------------------------------------------------


@pytest.mark.parametrize("comment", ["# noqa", "# noqa: GL101", "# NOQA:GL101,GL102", "# noqa: GL1"])
def test_noqa_that_names_the_code_silences_it(tmp_path, capsys, comment):
    path = write(tmp_path, "silenced.py", with_comment_on_bug_line(comment))
    _, out, _ = gradlint(capsys, "check", path)
    assert "GL101" not in out
    # The same file without the comment does report: the comment is what silenced it.
    plain = write(tmp_path, "plain.py", BUGGY_LOOP)
    assert gradlint(capsys, "check", plain)[0] == 1


def test_noqa_for_another_code_does_not_silence(tmp_path, capsys):
    path = write(tmp_path, "other.py", with_comment_on_bug_line("# noqa: GL102"))
    code, out, _ = gradlint(capsys, "check", path)
    assert code == 1
    assert path + BUG_PREFIX in out


def test_select_only_reports_the_selected_codes(tmp_path, capsys):
    path = write(tmp_path, "buggy.py", BUGGY_LOOP)
    code, out, _ = gradlint(capsys, "check", "--select", "GL101", path)
    assert code == 1
    assert reported_codes(out) == ["GL101"]
    assert "GL101" not in reported_codes(gradlint(capsys, "check", "--select", "GL2,GL3", path)[1])


def test_ignore_drops_a_code_and_prefixes_work(tmp_path, capsys):
    path = write(tmp_path, "buggy.py", BUGGY_LOOP)
    assert path + BUG_PREFIX in gradlint(capsys, "check", "--ignore", "GL2", path)[1]
    assert "GL101" not in gradlint(capsys, "check", "--ignore", "GL101", path)[1]
    assert "GL101" not in gradlint(capsys, "check", "--ignore", "gl1", path)[1]


# --- JSON ----------------------------------------------------------------------------------------


def test_json_with_errors_only_has_the_documented_shape_and_order(tmp_path, capsys):
    write(tmp_path, "b.py", BROKEN_SOURCE)
    write(tmp_path, "a.py", b"x = '\xff'\n")
    write(tmp_path, "c.py", CLEAN_LOOP)
    code, out, _ = gradlint(capsys, "check", "--format", "json", str(tmp_path))
    document = json.loads(out)
    jsonschema.validate(document, JSON_SCHEMA)
    assert code == 2
    assert document["findings"] == []
    assert [error["path"] for error in document["errors"]] == [str(tmp_path / "a.py"), str(tmp_path / "b.py")]
    assert document["errors"][1]["message"] == "cannot parse: invalid syntax"
    assert (document["errors"][1]["line"], document["errors"][1]["col"]) == (1, 11)


def test_json_findings_are_ordered_by_path_line_col_code(tmp_path, capsys):
    second = write(tmp_path, "z.py", BUGGY_LOOP)
    first = write(tmp_path, "a.py", BUGGY_LOOP)
    code, out, _ = gradlint(capsys, "check", "--format", "json", second, first)
    document = json.loads(out)
    jsonschema.validate(document, JSON_SCHEMA)
    assert code == 1
    keys = [(f["path"], f["line"], f["col"], f["code"]) for f in document["findings"]]
    assert keys == sorted(keys)
    assert (first, BUG_LINE, BUG_COL, "GL101") in keys and (second, BUG_LINE, BUG_COL, "GL101") in keys
    bug = next(f for f in document["findings"] if f["path"] == first and f["code"] == "GL101")
    assert bug["name"] and bug["message"] and bug["end_line"] >= bug["line"]


def test_json_of_a_constructed_result_is_exact():
    where = Location(7, 5, 7, 26)
    finding = Finding(
        "GL101", "clear-less-often-than-step", "msg", where, (Related(Location(11, 9, 11, 25), "step"),)
    )
    results = [FileResult("b.py", error=SourceError("cannot parse: x", 3, 4)), FileResult("a.py", (finding,))]
    assert json.loads(format_json(results)) == {
        "version": 1,
        "findings": [
            {
                "path": "a.py",
                "line": 7,
                "col": 5,
                "end_line": 7,
                "end_col": 26,
                "code": "GL101",
                "name": "clear-less-often-than-step",
                "message": "msg",
                "related": [{"path": "a.py", "line": 11, "col": 9, "message": "step"}],
            }
        ],
        "errors": [{"path": "b.py", "line": 3, "col": 4, "message": "cannot parse: x"}],
    }


def test_a_related_location_in_another_file_names_that_file_in_every_format():
    where = Location(7, 5, 7, 26)
    elsewhere = Related(Location(84, 13, 84, 29), "step", "engine.py")
    results = [FileResult("main.py", (Finding("GL101", "clear-less-often-than-step", "msg", where, (elsewhere,)),))]
    assert json.loads(format_json(results))["findings"][0]["related"] == [
        {"path": "engine.py", "line": 84, "col": 13, "message": "step"}
    ]
    assert "    engine.py:84:13: note: step" in format_text(results)
    assert "\nengine.py:84:13: note: step" in format_github(results).replace("%0A", "\n")


# --- text: related lines, snippets, colour -----------------------------------------------------------


def constructed_result() -> tuple[FileResult, str]:
    source = "for x in y:\n\topt.zero_grad()\n"
    finding = Finding(
        "GL101",
        "clear-less-often-than-step",
        "the clear runs less often than the step",
        Location(2, 2, 2, 16),
        (Related(Location(1, 1, 1, 4), "the step is here"),),
    )
    return FileResult("t.py", (finding,)), source


def test_text_shows_related_locations_as_notes():
    result, _ = constructed_result()
    assert format_text([result]) == (
        "t.py:2:2: GL101 the clear runs less often than the step\n    t.py:1:1: note: the step is here\n"
    )


def test_text_snippet_puts_the_caret_under_the_column_keeping_tabs():
    result, source = constructed_result()
    lines = format_text([result], sources={"t.py": source}).splitlines()
    assert lines[1:3] == ["    \topt.zero_grad()", "    \t" + "^" * 14]


def test_colour_only_when_asked():
    result, _ = constructed_result()
    assert "\x1b[" not in format_text([result])
    assert "\x1b[" in format_text([result], color=True)


def test_no_colour_or_snippet_when_stdout_is_not_a_terminal(tmp_path, capsys):
    path = write(tmp_path, "broken.py", BROKEN_SOURCE)
    code, out, _ = gradlint(capsys, "check", path)
    assert code == 2 and "\x1b[" not in out and out.count("\n") == 1


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
@pytest.mark.parametrize(
    ("extra_args", "env", "coloured"),
    [((), {}, True), (("--no-color",), {}, False), ((), {"NO_COLOR": "1"}, False)],
)
def test_colour_on_a_terminal_unless_turned_off(tmp_path, extra_args, env, coloured):
    path = write(tmp_path, "broken.py", BROKEN_SOURCE)
    parent, child = os.openpty()
    environment = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | env
    with os.fdopen(parent, "rb") as terminal:
        process = subprocess.run(
            [sys.executable, "-m", "gradlint", "check", *extra_args, path],
            stdout=child,
            env=environment,
        )
        os.close(child)
        output = read_terminal(terminal)
    assert process.returncode == 2
    assert ("\x1b[" in output) == coloured
    assert "GL000" in output


def read_terminal(terminal) -> str:
    chunks = []
    while True:
        try:
            chunk = terminal.read1(4096)
        except OSError:  # Linux reports the closed far end as EIO
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


# --- bad input: one line naming the file, never a traceback ------------------------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"loss.backward()\x00\n", "null bytes"),
        (b"x = '\xff\xfe'\n", "cannot decode"),  # not ASCII: read whatever its words
        (b"# -*- coding: no-such-codec -*-\nloss.backward()\n", "cannot decode"),
        (BROKEN_SOURCE.encode(), "cannot parse"),
    ],
)
def test_undecodable_or_unparsable_file(tmp_path, capsys, content, words):
    path = write(tmp_path, "bad.py", content)
    code, out, err = gradlint(capsys, "check", path)
    assert code == 2
    assert_one_line_error(out, err, path, words)


def test_missing_path(tmp_path, capsys):
    missing = str(tmp_path / "no_such_dir")
    code, out, err = gradlint(capsys, "check", missing)
    assert code == 2
    assert_one_line_error(out, err, missing, "No such file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_named_explicitly_is_refused_without_blocking(tmp_path, capsys):
    fifo = str(tmp_path / "pipe.py")
    os.mkfifo(fifo)
    code, out, err = gradlint(capsys, "check", fifo)
    assert code == 2
    assert_one_line_error(out, err, fifo, "not a regular file")


def test_unreadable_file(tmp_path, capsys, monkeypatch):
    # Simulated: tests may run as root, who can read a chmod 000 file.
    unreadable = write(tmp_path, "secret.py", CLEAN_LOOP)
    clean = write(tmp_path, "clean.py", CLEAN_LOOP)

    def refuse(path, *args, **kwargs):
        if path == unreadable:
            raise PermissionError(13, "Permission denied", path)
        return open(path, *args, **kwargs)

    monkeypatch.setattr("gradlint.files.open", refuse, raising=False)
    code, out, err = gradlint(capsys, "check", unreadable, clean)
    assert (code, err) == (2, "")
    assert out == f"{unreadable}:1:1: GL000 cannot read: Permission denied\n"


def test_internal_error_is_reported_for_that_file_and_the_others_are_checked(tmp_path, capsys, monkeypatch):
    crashing = write(tmp_path, "crash.py", CLEAN_LOOP)
    buggy = write(tmp_path, "buggy.py", BUGGY_LOOP)
    real_check = batch.check_source

    def crash_on_one_file(text, filename, codes):
        if filename == crashing:
            raise RuntimeError("boom")
        return real_check(text, filename, codes)

    monkeypatch.setattr(batch, "check_source", crash_on_one_file)
    code, out, err = gradlint(capsys, "check", crashing, buggy)
    assert code == 2
    assert_one_line_error(out, err, crashing, "internal error: RuntimeError: boom")
    assert buggy + BUG_PREFIX in out


# --- stdin --------------------------------------------------------------------------------------


def feed_stdin(monkeypatch, content: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(content.encode())))


def test_stdin_clean(capsys, monkeypatch):
    feed_stdin(monkeypatch, CLEAN_LOOP)
    assert gradlint(capsys, "check", "-") == (0, "", "")


def test_stdin_unparsable_is_named_stdin(capsys, monkeypatch):
    feed_stdin(monkeypatch, BROKEN_SOURCE)
    code, out, _ = gradlint(capsys, "check", "-")
    assert (code, out) == (2, "<stdin>:1:11: GL000 cannot parse: invalid syntax\n")


def test_stdin_finding(capsys, monkeypatch):
    feed_stdin(monkeypatch, BUGGY_LOOP)
    code, out, _ = gradlint(capsys, "check", "-")
    assert code == 1
    assert out.startswith("<stdin>" + BUG_PREFIX)


# --- walking directories ---------------------------------------------------------------------------


def make_tree(root: Path) -> None:
    write(root, "pkg/b.py", CLEAN_LOOP)
    write(root, "pkg/a.py", CLEAN_LOOP)
    write(root, "pkg/sub/c.py", CLEAN_LOOP)
    write(root, "pkg/notes.txt", BROKEN_SOURCE)
    write(root, "top.py", CLEAN_LOOP)
    # Everything below is skipped; broken sources make a wrongly visited file show as exit 2.
    for skipped in [
        ".hidden/x.py",
        "pkg/.git/x.py",
        "__pycache__/x.py",
        "node_modules/x.py",
        "lib/site-packages/x.py",
        "myenv/lib/x.py",
        ".venv/x.py",
    ]:
        write(root, skipped, BROKEN_SOURCE)
    write(root, "myenv/pyvenv.cfg", "home = /usr/bin\n")


def test_directories_are_walked_in_sorted_order_skipping_hidden_caches_and_venvs(tmp_path):
    make_tree(tmp_path)
    relative = [os.path.relpath(path, tmp_path) for path in expand_paths([str(tmp_path)])]
    assert relative == [
        os.path.join("pkg", "a.py"),
        os.path.join("pkg", "b.py"),
        os.path.join("pkg", "sub", "c.py"),
        "top.py",
    ]


def test_walked_directory_checks_clean(tmp_path, capsys):
    make_tree(tmp_path)
    assert gradlint(capsys, "check", str(tmp_path)) == (0, "", "")


def test_explicit_file_of_any_extension_is_checked(tmp_path, capsys):
    make_tree(tmp_path)
    notes = str(tmp_path / "pkg" / "notes.txt")
    code, out, err = gradlint(capsys, "check", notes)
    assert code == 2
    assert_one_line_error(out, err, notes, "cannot parse")


def test_paths_named_twice_are_checked_once(tmp_path):
    path = write(tmp_path, "a.py", CLEAN_LOOP)
    assert expand_paths([path, str(tmp_path), path]) == [path]


def test_walking_the_current_directory_shows_plain_relative_paths(tmp_path, monkeypatch):
    write(tmp_path, "a.py", CLEAN_LOOP)
    monkeypatch.chdir(tmp_path)
    assert expand_paths(["."]) == ["a.py"]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_loop_does_not_hang(tmp_path):
    write(tmp_path, "pkg/a.py", CLEAN_LOOP)
    os.symlink(tmp_path, tmp_path / "pkg" / "loop")
    assert expand_paths([str(tmp_path)]) == [str(tmp_path / "pkg" / "a.py")]


# --- the installed entry points ----------------------------------------------------------------------


def run_installed(command: list[str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)


def test_python_dash_m_gradlint(tmp_path):
    clean = write(tmp_path, "clean.py", CLEAN_LOOP)
    assert (
        run_installed([sys.executable, "-m", "gradlint"], "--version").stdout.strip()
        == f"gradlint {__version__}"
    )
    process = run_installed([sys.executable, "-m", "gradlint"], "check", clean)
    assert (process.returncode, process.stdout, process.stderr) == (0, "", "")


# What a run loads only to analyse, run, fix or report SARIF: one that merely skips files (a warm
# re-run, a tree without training code) must not pay for them at every start.
LOADED_ON_DEMAND = {
    "gradlint.analysis.interpret",
    "gradlint.analysis.facts",
    "gradlint.runtime.run",
    "gradlint.fix",
    "gradlint.sarif",
    "concurrent.futures.process",
    "libcst",
}
LIST_MODULES = "import sys; from gradlint.cli import main; main(sys.argv[1:]); print(*sorted(sys.modules))"


@pytest.mark.parametrize(("source", "analysed"), [("print('no training')\n", False), (BUGGY_LOOP, True)])
def test_a_run_that_analyses_nothing_loads_no_analysis(tmp_path, source, analysed):
    path = write(tmp_path, "a.py", source)
    process = run_installed([sys.executable, "-c", LIST_MODULES], "check", "-j", "2", path)
    loaded = set(process.stdout.split())
    assert "gradlint.batch" in loaded
    assert bool(loaded & LOADED_ON_DEMAND) == analysed


def test_console_script(tmp_path):
    script = Path(sys.executable).with_name("gradlint")
    assert script.exists(), "install the package (pip install -e .) so the `gradlint` script exists"
    broken = write(tmp_path, "broken.py", BROKEN_SOURCE)
    process = run_installed([str(script)], "check", broken)
    assert process.returncode == 2
    assert process.stdout == f"{broken}:1:11: GL000 cannot parse: invalid syntax\n"


def test_console_script_reports_the_canonical_bug(tmp_path):
    buggy = write(tmp_path, "buggy.py", BUGGY_LOOP)
    process = run_installed([str(Path(sys.executable).with_name("gradlint"))], "check", buggy)
    assert process.returncode == 1
    assert process.stdout.startswith(buggy + BUG_PREFIX)
