"""Input that must never crash the linter (issue #8): each case is one clear line or a correct result.

Every case runs through the CLI in process, next to a good file with the canonical bug, which must
still be reported: a linter in pre-commit that dies on one file blocks every commit. Each hostile
file holds the word `backward`, so the cases hold whatever the pre-filter skips.
"""

from __future__ import annotations

import ast
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from helpers import gradlint, write
from samples import BROKEN_SOURCE, BUG_COL, BUG_LINE, BUGGY_LOOP, CLEAN_LOOP

from gradlint.checker import SourceError, check_source, check_tree

BACKWARD_COMMENT = "# loss.backward() is mentioned, so no pre-filter skips this file\n"
BUG_CODE = "GL101"


@dataclass(frozen=True)
class Hostile:
    """A file to write (name, content) and what gradlint must say about it."""

    name: str
    content: Callable[[], bytes | str]
    error: tuple[int, int, str] | None = None  # line, col, message of the one GL000 line
    finding: tuple[int, int] | None = None  # where the canonical GL101 must be found instead


def buggy_loop_with(transform: Callable[[str], str]) -> Callable[[], str]:
    return lambda: transform(BUGGY_LOOP)


def with_line_ends(text: str, *ends: str) -> bytes:
    """Each line of `text` ended by the next of `ends`, in turn."""
    return "".join(line + ends[n % len(ends)] for n, line in enumerate(text.split("\n")[:-1])).encode()


def nested_indentation(depth: int) -> str:
    return BACKWARD_COMMENT + "".join("    " * level + "if x:\n" for level in range(depth))


def elif_chain(branches: int) -> str:
    """A training loop whose body is a generated dispatch: `branches` nested blocks, no indentation."""
    arms = "".join(f"        elif kind == {n}:\n            x = x + {n}\n" for n in range(1, branches))
    return (
        BUGGY_LOOP.split("for epoch")[0]
        + "for epoch in range(3):\n    optimizer.zero_grad()\n    for x, y in data:\n"
        + "        if kind == 0:\n            pass\n"
        + arms
        + "        loss = torch.nn.functional.mse_loss(model(x), y)\n"
        + "        loss.backward()\n        optimizer.step()\n"
    )


TABLE_ROW = '    "key_{:07d}": "' + "v" * 80 + '",\n'
TABLE_ROWS = 10 * 1024 * 1024 // len(TABLE_ROW.format(0))  # 10 MB


def generated_table() -> str:
    """A module of generated data (as protobuf or a vocabulary dump), then the canonical bug."""
    return "TABLE = {\n" + "".join(TABLE_ROW.format(n) for n in range(TABLE_ROWS)) + "}\n" + BUGGY_LOOP


def long_function(lines: int) -> str:
    body = "".join(f"    v{n} = x + {n}\n" for n in range(lines))
    return BUGGY_LOOP + "\n\ndef preprocess(x):\n" + body + "    return x\n"


def notebook(*cells: dict) -> str:
    return json.dumps({"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


# Line and column of BUGGY_LOOP's GL101 once the module is shifted by `lines` lines.
def bug_after(lines: int) -> tuple[int, int]:
    return BUG_LINE + lines, BUG_COL


CASES = [
    Hostile(
        "syntax_error",
        lambda: BACKWARD_COMMENT + BROKEN_SOURCE,
        error=(2, 11, "cannot parse: invalid syntax"),
    ),
    Hostile(
        "python2_print",
        lambda: BACKWARD_COMMENT + 'print "loss", loss\n',
        error=(2, 1, "cannot parse: Missing parentheses in call to 'print'. Did you mean print(...)?"),
    ),
    Hostile(
        "python2_except",
        lambda: BACKWARD_COMMENT + "try:\n    loss.backward()\nexcept Exception, error:\n    pass\n",
        error=(4, 8, "cannot parse: multiple exception types must be parenthesized"),
    ),
    Hostile(
        "null_bytes",
        lambda: (BACKWARD_COMMENT + "x = 1\nab\x00c = 2\n").encode(),
        error=(3, 3, "cannot parse: source contains null bytes"),
    ),
    Hostile(
        "non_utf8_without_cookie",
        lambda: BACKWARD_COMMENT.encode() + b"name = 'caf\xe9'\n",
        error=(
            2,
            12,
            "cannot decode: byte 0xe9 is not utf-8: save the file as UTF-8 or declare its encoding (PEP 263)",
        ),
    ),
    Hostile(
        "non_utf8_with_cookie",
        # latin-1, as declared: decoded as Python would, and the loop's bug found on its line
        lambda: ("# -*- coding: latin-1 -*-\n# café\n" + BUGGY_LOOP).encode("latin-1"),
        finding=bug_after(2),
    ),
    Hostile(
        "unknown_coding_cookie",
        lambda: b"# -*- coding: no-such-codec -*-\n" + BUGGY_LOOP.encode(),
        error=(1, 1, "cannot decode: unknown encoding: no-such-codec"),
    ),
    Hostile("bom", lambda: b"\xef\xbb\xbf" + BUGGY_LOOP.encode(), finding=bug_after(0)),
    Hostile("crlf", lambda: BUGGY_LOOP.replace("\n", "\r\n").encode(), finding=bug_after(0)),
    Hostile(
        "mixed_line_endings",
        # \r\n, \n and a lone \r (old Mac) in one file, and a form feed page break on its own line:
        # Python counts lines at \r\n, \r and \n only, and so must every message and snippet.
        lambda: with_line_ends(BUGGY_LOOP.replace("\nfor epoch", "\n\x0c\nfor epoch"), "\r\n", "\n", "\r"),
        finding=bug_after(1),
    ),
    Hostile("tabs", buggy_loop_with(lambda text: text.replace("    ", "\t")), finding=(BUG_LINE, 2)),
    Hostile(
        "tabs_and_spaces_inconsistent",
        lambda: BACKWARD_COMMENT + "if x:\n\tloss.backward()\n        pass\n",
        error=(4, 1, "cannot parse: inconsistent use of tabs and spaces in indentation"),
    ),
    Hostile("empty_file", lambda: b""),
    Hostile("only_a_bom", lambda: b"\xef\xbb\xbf"),
    Hostile(
        "10_000_nested_blocks_by_indentation",
        lambda: nested_indentation(10_000),
        error=(102, 1, "cannot parse: too many levels of indentation"),
    ),
    Hostile(
        "3_000_nested_blocks_as_an_elif_chain",
        # deeper than Python's default recursion limit lets the analysis go: a correct result anyway
        lambda: elif_chain(3_000),
        finding=bug_after(0),
    ),
    Hostile(
        "10_mb_generated_file",
        generated_table,
        finding=bug_after(TABLE_ROWS + 2),
    ),
    Hostile("100_000_line_function", lambda: long_function(100_000), finding=bug_after(0)),
    Hostile(
        "notebook_not_valid_json",
        lambda: '{"cells": [{"cell_type": "code", "source": "loss.backward()"\n',
        error=(
            2,
            1,
            "cannot parse notebook: invalid JSON: Expecting ',' delimiter: line 2 column 1 (char 61)",
        ),
    ),
    Hostile(
        "notebook_without_code_cells",
        lambda: notebook({"cell_type": "markdown", "metadata": {}, "source": ["call loss.backward()"]}),
    ),
]


def file_name(case: Hostile) -> str:
    return case.name + (".ipynb" if case.name.startswith("notebook") else ".py")


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_file_gives_one_line_or_a_correct_result_and_the_others_are_checked(tmp_path, capsys, case):
    hostile = write(tmp_path, "a_" + file_name(case), case.content())
    good = write(tmp_path, "b_buggy.py", BUGGY_LOOP)
    started = time.perf_counter()
    code, out, err = gradlint(capsys, "check", "--no-cache", "-j", "1", hostile, good)
    elapsed = time.perf_counter() - started
    print(f"{case.name}: {elapsed:.2f}s")  # the times in the report: pytest -s -k hostile
    assert "Traceback" not in out + err and err == ""
    assert f"{good}:{BUG_LINE}:{BUG_COL}: {BUG_CODE} " in out
    reported = [line for line in out.splitlines() if line.startswith(hostile + ":")]
    if case.error is not None:
        line, col, message = case.error
        assert (code, reported) == (2, [f"{hostile}:{line}:{col}: GL000 {message}"])
    elif case.finding is not None:
        line, col = case.finding
        assert code == 1
        assert [r.split(" ")[0:2] for r in reported] == [[f"{hostile}:{line}:{col}:", BUG_CODE]]
    else:
        assert (code, reported) == (1, [])


def test_a_form_feed_line_keeps_the_quoted_code_on_its_line():
    """Split at \\x0c (as str.splitlines does), messages would quote the line above the event."""
    text = BUGGY_LOOP.replace("\nfor epoch", "\n\x0c\nfor epoch")
    (finding,) = check_source(text)
    expected = "`optimizer.zero_grad()` runs once per iteration of `for epoch in range(3)` (line 7)"
    assert finding.message.startswith(expected)


def test_10_000_nested_elifs_overflow_the_parser_in_one_line(tmp_path, capsys):
    """Past about 6,000 nested blocks CPython's parser gives up (a MemoryError, in 3.11)."""
    hostile = write(tmp_path, "dispatch.py", elif_chain(10_000))
    code, out, err = gradlint(capsys, "check", "--no-cache", hostile)
    assert (code, err) == (2, "")
    assert out in {
        f"{hostile}:1:1: GL000 cannot parse: nested too deeply for Python's parser ({kind})\n"
        for kind in ("MemoryError", "RecursionError")
    }


def nested_ifs_tree(depth: int) -> tuple[ast.Module, list[str]]:
    """A module whose training loop sits under `depth` nested `if`s: no parser would build it, a tool may."""
    loop = "for x, y in data:\n    loss.backward()\n    optimizer.step()\n"
    source = BUGGY_LOOP.split("for epoch")[0] + loop
    tree = ast.parse(source)
    block: ast.stmt = tree.body[-1]
    for _ in range(depth):
        test = ast.copy_location(ast.Name("flag", ast.Load()), block)
        block = ast.copy_location(ast.If(test, [block], []), block)
    tree.body[-1] = block
    return tree, source.splitlines()


def test_10_000_nested_blocks_do_not_raise_recursion_error_out_of_check_tree():
    tree, lines = nested_ifs_tree(10_000)
    assert [(f.code, f.location.line) for f in check_tree(tree, lines)] == [("GL102", len(lines) - 1)]


def test_a_tree_too_deep_even_for_the_raised_limit_is_a_source_error():
    tree, lines = nested_ifs_tree(30_000)
    with pytest.raises(SourceError) as raised:
        check_tree(tree, lines)
    assert raised.value.message == "cannot analyse: nested too deeply (RecursionError)"


def test_a_sum_deeper_than_the_recursion_limit_is_analysed():
    # `x + x + ... + x` is a left-nested tree 2,000 deep with no parenthesis for the parser to refuse
    total = "        total = " + " + ".join(["x"] * 2_000) + "\n"
    text = BUGGY_LOOP.replace("        loss = ", total + "        loss = ")
    assert [(f.code, f.location.line) for f in check_source(text)] == [(BUG_CODE, BUG_LINE)]


# --- what walking a directory meets ----------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_directory_symlink_loop(tmp_path, capsys):
    buggy = write(tmp_path, "pkg/train.py", BUGGY_LOOP)
    os.symlink(tmp_path, tmp_path / "pkg" / "loop")  # pkg/loop/pkg/loop/... if followed
    code, out, err = gradlint(capsys, "check", "--no-cache", str(tmp_path))
    assert (code, err) == (1, "")
    assert out.startswith(f"{buggy}:{BUG_LINE}:{BUG_COL}: {BUG_CODE} ") and out.count(BUG_CODE) == 1


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_among_the_files_is_skipped_when_walking_and_refused_when_named(tmp_path, capsys):
    buggy = write(tmp_path, "train.py", BUGGY_LOOP)
    fifo = str(tmp_path / "pipe.py")
    os.mkfifo(fifo)  # opening it would block until a writer came
    code, out, err = gradlint(capsys, "check", "--no-cache", str(tmp_path))
    assert (code, err) == (1, "") and out.startswith(f"{buggy}:{BUG_LINE}:")
    code, out, err = gradlint(capsys, "check", "--no-cache", fifo, buggy)
    assert (code, err) == (2, "")
    assert out.startswith(f"{fifo}:1:1: GL000 cannot read: not a regular file\n{buggy}:{BUG_LINE}:")


def test_unreadable_file_among_the_walked_files(tmp_path, capsys, monkeypatch):
    unreadable = write(tmp_path, "a_secret.py", BACKWARD_COMMENT + CLEAN_LOOP)
    buggy = write(tmp_path, "b_train.py", BUGGY_LOOP)
    if os.name == "posix" and os.geteuid() != 0:
        os.chmod(unreadable, 0)
    else:  # root reads a chmod 000 file: refuse it the way the kernel would

        def refuse(path, *args, **kwargs):
            if path == unreadable:
                raise PermissionError(13, "Permission denied", path)
            return open(path, *args, **kwargs)

        monkeypatch.setattr("gradlint.files.open", refuse, raising=False)
    code, out, err = gradlint(capsys, "check", "--no-cache", "-j", "1", str(tmp_path))
    assert (code, err) == (2, "")
    assert out.startswith(f"{unreadable}:1:1: GL000 cannot read: Permission denied\n{buggy}:{BUG_LINE}:")


def test_ctrl_c_while_checking_is_one_line_and_exit_130(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("gradlint.cli.check_paths", interrupted)
    path = write(tmp_path, "train.py", BUGGY_LOOP)
    assert gradlint(capsys, "check", path) == (130, "", "gradlint: interrupted\n")
