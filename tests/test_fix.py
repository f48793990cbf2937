"""`gradlint fix`: the proof over the buggy fixtures, the golden pairs, the shapes and the command line.

For every buggy fixture with a fixable finding: (a) the fixed file has no finding of that code and no
new finding, (b) fixing it again changes nothing, (c) the fixed program still runs and the tracer
sees no violation in it, (d) comments and blank lines outside the edited statements are unchanged.
"""

from __future__ import annotations

import difflib
import io
import json
import os
import subprocess
import sys
import tokenize
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import gradlint, write

from gradlint.checker import check_source
from gradlint.fix.engine import FIXERS, fix_source
from gradlint.fix.notebooks import fix_notebook, fix_notebook_finding
from gradlint.notebooks import check_notebook
from gradlint.rules import RULES_BY_CODE

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted((ROOT / "fixtures").glob("bug_*.py"))
GOLDEN = sorted((Path(__file__).resolve().parent / "fix_golden").glob("*.in.py"))

# Buggy fixtures whose fixable finding is left alone, and why. Strict: a fix appearing fails the test.
NOT_FIXED = {
    "bug_GL103_clear_after_the_first_micro_batch": "the clear is the whole body of an `if i > 0:`: the "
    "fix is to delete the `if` with it, which the GL103 fixer does not do",
    "bug_GL103_accelerate_model_zero_grad": "the clear already follows the step: the fix is another clear",
    "bug_GL103_helper_clears_after_logging": "the clear is in a helper, the step in its caller",
    "bug_GL301_loss_handed_to_backward_helper": "the backward is in a helper, the loop and the step in its caller",
    "bug_GL101_module_calls_itself_through_alias": "the clear is in the caller, the step in the helper",
    "bug_GL103_transformers_training_step_clears_after_backward": "the step is the Trainer's, after the "
    "override returns: the fix is to delete the clear",
}


def fixable(path: Path) -> bool:
    return any(finding.code in FIXERS for finding in check_source(path.read_text(), str(path)))


FIXABLE = [path for path in FIXTURES if fixable(path) and path.stem not in NOT_FIXED]


def comment_lines(text: str) -> list[str]:
    """Blank lines and lines that are only a comment, in order, byte for byte."""
    return [
        line for line in text.splitlines(keepends=True) if not line.strip() or line.lstrip().startswith("#")
    ]


def comments(text: str) -> Counter[str]:
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    return Counter(token.string for token in tokens if token.type == tokenize.COMMENT)


@pytest.mark.parametrize("path", FIXABLE, ids=[path.stem for path in FIXABLE])
def test_fixed_fixture_has_no_finding_it_fixed_and_no_new_one(path: Path) -> None:
    text = path.read_text()
    before = check_source(text, str(path))
    fixed = fix_source(text, str(path), unsafe=True)
    after = check_source(fixed.text, str(path))
    assert fixed.fixed == sum(f.code in FIXERS for f in before), [f.code for f in after]
    assert not [f for f in after if f.code in FIXERS], after
    assert not Counter(f.code for f in after) - Counter(f.code for f in before), "a new finding appeared"
    assert list(after) == list(fixed.remaining)


@pytest.mark.parametrize("path", FIXABLE, ids=[path.stem for path in FIXABLE])
def test_fixing_twice_changes_nothing_the_second_time(path: Path) -> None:
    once = fix_source(path.read_text(), str(path), unsafe=True)
    twice = fix_source(once.text, str(path), unsafe=True)
    assert twice.fixed == 0
    assert twice.text == once.text


@pytest.mark.parametrize("path", FIXABLE, ids=[path.stem for path in FIXABLE])
def test_fix_keeps_comments_and_blank_lines_outside_the_edited_statements(path: Path) -> None:
    text = path.read_text()
    fixed = fix_source(text, str(path), unsafe=True).text
    assert comment_lines(fixed) == comment_lines(text)
    assert comments(fixed) == comments(text)  # a moved statement takes its own trailing comment along
    # The lines the diff adds carry no comment but one the diff took away: the edited statement's own.
    old_lines, new_lines = text.splitlines(), fixed.splitlines()
    opcodes = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False).get_opcodes()
    changed = [op for op in opcodes if op[0] != "equal"]
    taken = {
        line[line.index("#") :] for _, i1, i2, _, _ in changed for line in old_lines[i1:i2] if "#" in line
    }
    added = [line for _, _, _, j1, j2 in changed for line in new_lines[j1:j2]]
    assert all(line[line.index("#") :] in taken for line in added if "#" in line), added


@pytest.mark.parametrize(
    "path", [ROOT / "fixtures" / f"{stem}.py" for stem in NOT_FIXED], ids=list(NOT_FIXED)
)
def test_fixtures_the_fix_leaves_alone(path: Path) -> None:
    text = path.read_text()
    fixed = fix_source(text, str(path), unsafe=True)
    assert fixed.fixed == 0 and fixed.text == text, NOT_FIXED[path.stem]


# One process traces many scripts (torch is imported once, not once per script), each as
# `gradlint run` would: run as __main__ under the tracer, then judged. No code is selected, so no
# static finding predicts anything and every violation the run shows is reported.
TRACE_SCRIPTS = """
import contextlib, json, os, sys
from gradlint.runtime.run import confirm_script
for script in sys.argv[1:]:
    os.chdir(os.path.dirname(script))
    with contextlib.redirect_stdout(sys.stderr):
        confirmation = confirm_script(script, [], None, 60, codes=[])
    violations = [f"{v.line}: {v.code}: {v.evidence}" for v in confirmation.dynamic_only]
    report = {"status": confirmation.outcome.status, "violations": violations}
    print(json.dumps({"script": script, **report}), flush=True)
"""


def trace_scripts(paths: list[Path]) -> dict[str, dict]:
    result = subprocess.run(
        [sys.executable, "-c", TRACE_SCRIPTS, *map(str, paths)],
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    return {Path(report["script"]).stem: report for report in reports}


@pytest.fixture(scope="module")
def traced_fixed_fixtures(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Future[dict[str, dict]]]:
    """Every fixed fixture this session asks for, run under the tracer, in two processes."""
    pytest.importorskip("torch")
    wanted = sorted(
        {
            item.callspec.params["path"]
            for item in request.session.items
            if getattr(item, "originalname", None)
            == "test_fixed_program_runs_and_the_tracer_sees_no_violation"
        }
    )
    pool = ThreadPoolExecutor(max_workers=2)
    futures: dict[str, Future[dict[str, dict]]] = {}
    for share in (wanted[::2], wanted[1::2]):
        scripts = []
        for path in share:
            # a directory each: a program that writes files would show up beside no other
            directory = tmp_path_factory.mktemp(path.stem)
            fixed = directory / path.name
            fixed.write_text(fix_source(path.read_text(), str(path), unsafe=True).text)
            scripts.append(fixed)
        future = pool.submit(trace_scripts, scripts)
        futures.update({path.stem: future for path in share})
    yield futures
    pool.shutdown()


@pytest.mark.parametrize("path", FIXABLE, ids=[path.stem for path in FIXABLE])
def test_fixed_program_runs_and_the_tracer_sees_no_violation(
    path: Path, traced_fixed_fixtures: dict[str, Future[dict[str, dict]]]
) -> None:
    report = traced_fixed_fixtures[path.stem].result()[path.stem]
    assert report["status"] == "finished", report
    assert not report["violations"], "\n".join(report["violations"])


@pytest.mark.parametrize("path", GOLDEN, ids=[path.name[: -len(".in.py")] for path in GOLDEN])
def test_golden_pair(path: Path) -> None:
    expected = path.with_name(path.name.replace(".in.py", ".out.py")).read_bytes().decode()
    source = path.read_bytes().decode()
    fixed = fix_source(source, path.name, unsafe=True)
    assert fixed.text == expected
    assert fixed.fixed >= 1 and not fixed.remaining
    assert fix_source(expected, path.name, unsafe=True).fixed == 0


def test_every_fixable_rule_has_a_golden_pair_and_says_so() -> None:
    codes = {path.name[:5] for path in GOLDEN}
    assert codes == set(FIXERS)
    for code, rule in RULES_BY_CODE.items():
        assert rule.RULE.fixable == (code in FIXERS), code
        assert rule.RULE.fix, f"{code}: the docs must say what fix does (or that it cannot)"
    assert "not auto-fixable" in RULES_BY_CODE["GL201"].RULE.fix.lower()


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
@pytest.mark.parametrize("indent", ["\t", "  ", "    "])
def test_line_endings_and_indentation_are_the_file_s_own(newline: str, indent: str) -> None:
    golden = GOLDEN[0].parent / "GL101_per_epoch.in.py"
    expected = golden.with_name("GL101_per_epoch.out.py").read_text()

    def restyle(text: str) -> str:
        return text.replace("    ", indent).replace("\n", newline)

    assert fix_source(restyle(golden.read_text()), unsafe=False).text == restyle(expected)


def test_unsafe_fixes_wait_for_the_flag() -> None:
    golden = GOLDEN[0].parent / "GL301_modulo.in.py"
    text = golden.read_text()
    safe_only = fix_source(text)
    assert safe_only.fixed == 0 and safe_only.text == text
    assert [f.code for f in safe_only.remaining] == ["GL301"]
    assert fix_source(text, unsafe=True).fixed == 1


def test_a_silenced_or_unselected_finding_is_not_fixed() -> None:
    text = (GOLDEN[0].parent / "GL101_per_epoch.in.py").read_text()
    silenced = text.replace("  # reset", "  # noqa: GL101")
    assert fix_source(silenced).text == silenced
    assert fix_source(text, codes=["GL102"]).text == text
    assert fix_source(text, codes=["GL1"]).fixed == 1


def test_a_fix_in_a_helper_lands_in_that_helper() -> None:
    text = (ROOT / "fixtures" / "bug_GL101_helper_train_one_epoch.py").read_text()
    fixed = fix_source(text).text
    helper = fixed[fixed.index("def train_one_epoch") : fixed.index("def main")]
    assert "    for x, y in loader:\n        optimizer.zero_grad()  # expect: GL101\n" in helper
    assert fixed[fixed.index("def main") :] == text[text.index("def main") :]


def notebook(cells: list[tuple[str, list[str]]]) -> str:
    return (
        json.dumps(
            {
                "cells": [
                    {
                        "cell_type": kind,
                        "execution_count": 1 if kind == "code" else None,
                        "metadata": {},
                        "outputs": [{"name": "stdout", "output_type": "stream", "text": ["epoch 0\n"]}]
                        if kind == "code"
                        else [],
                        "source": source,
                    }
                    if kind == "code"
                    else {"cell_type": kind, "metadata": {}, "source": source}
                    for kind, source in cells
                ],
                "metadata": {"language_info": {"name": "python"}},
                "nbformat": 4,
                "nbformat_minor": 5,
            },
            indent=1,
            ensure_ascii=False,
        )
        + "\n"
    )


NOTEBOOK_CELLS = [
    ("code", ["%matplotlib inline\n", "import torch\n", "optimizer = torch.optim.SGD(model.parameters())\n"]),
    ("markdown", ["Train — one clear per epoch\n"]),
    (
        "code",
        [
            "%%time\n",
            "for epoch in range(3):\n",
            "    optimizer.zero_grad()\n",
            "    for x, y in loader:\n",
            "        loss_fn(model(x), y).backward()\n",
            "        optimizer.step()",
        ],
    ),
]


def test_notebook_cells_are_rewritten_in_place_and_outputs_untouched() -> None:
    text = notebook(NOTEBOOK_CELLS)
    fixed = fix_notebook(text)
    assert fixed.fixed == 1 and not fixed.remaining
    loop = [
        "%%time\n",
        "for epoch in range(3):\n",
        "    for x, y in loader:\n",
        "        optimizer.zero_grad()\n",
        "        loss_fn(model(x), y).backward()\n",
        "        optimizer.step()",
    ]
    # the magics, the markdown cell and the outputs byte for byte
    assert fixed.text == notebook([*NOTEBOOK_CELLS[:2], ("code", loop)])
    assert fix_notebook(fixed.text).fixed == 0


def test_notebook_findings_left_after_fixing_name_the_cell_among_all_cells() -> None:
    unsafe_only = (GOLDEN[0].parent / "GL301_modulo.in.py").read_text()
    text = notebook([("markdown", ["# Accumulation\n"]), ("raw", ["notes\n"]), ("code", [unsafe_only])])
    fixed = fix_notebook(text)
    assert (fixed.fixed, fixed.unsafe_left) == (0, 1)
    (finding,) = fixed.remaining
    assert (finding.code, finding.location.cell, finding.location.line) == ("GL301", 3, 4)
    fixed = fix_notebook(text, unsafe=True)
    assert fixed.fixed == 1 and not fixed.remaining
    cells = json.loads(fixed.text)["cells"]
    assert [cell["source"] for cell in cells[:2]] == [["# Accumulation\n"], ["notes\n"]]
    assert cells[2]["source"] != [unsafe_only]


def test_one_notebook_finding_is_fixed_alone_by_its_cell_location() -> None:
    unsafe = (GOLDEN[0].parent / "GL301_modulo.in.py").read_text()
    text = notebook([*NOTEBOOK_CELLS, ("markdown", ["accumulation\n"]), ("code", [unsafe])])
    clear, accumulation = check_notebook(text)
    assert (clear.code, clear.location.cell, accumulation.code, accumulation.location.cell) == (
        "GL101",
        3,
        "GL301",
        5,
    )
    fixed = fix_notebook_finding(text, accumulation)
    assert fixed is not None and not fixed.safe
    assert [finding.code for finding in check_notebook(fixed.text)] == ["GL101"]
    fixed = fix_notebook_finding(text, clear)
    assert fixed is not None and fixed.safe
    assert [finding.code for finding in check_notebook(fixed.text)] == ["GL301"]


def test_libcst_is_loaded_only_to_fix(tmp_path: Path) -> None:
    program = str(ROOT / "fixtures" / "bug_GL101_zero_grad_per_epoch.py")
    probe = "import sys; from gradlint import cli; cli.main(sys.argv[1:]); print('libcst' in sys.modules)"
    loaded = {}
    for flag in ("--no-cache", "--diff"):
        result = subprocess.run(
            [sys.executable, "-c", probe, "check", flag, program],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        loaded[flag] = result.stdout.strip().splitlines()[-1]
    assert loaded == {"--no-cache": "False", "--diff": "True"}


SOURCE = (GOLDEN[0].parent / "GL101_per_epoch.in.py").read_text()
FIXED = (GOLDEN[0].parent / "GL101_per_epoch.out.py").read_text()


def test_fix_writes_the_file_and_exits_0_when_all_is_fixed(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "train.py", SOURCE.replace("\n", "\r\n").encode())
    code, _, err = gradlint(capsys, "fix", path)
    assert code == 0
    assert Path(path).read_bytes() == FIXED.replace("\n", "\r\n").encode()
    assert "fixed 1 finding, 0 remaining" in err


def test_check_fix_reports_what_remains_and_exits_1(tmp_path: Path, capsys) -> None:
    unsafe = (GOLDEN[0].parent / "GL301_modulo.in.py").read_text()
    path = write(tmp_path, "train.py", SOURCE + unsafe)
    code, out, err = gradlint(capsys, "check", "--fix", "--no-cache", path)
    assert code == 1
    assert "GL301" in out and "GL101" not in out
    assert "fixed 1 finding, 1 remaining (1 more with --unsafe-fixes)" in err
    code, out, _ = gradlint(capsys, "fix", "--unsafe-fixes", path)
    assert code == 0 and out == ""


def test_diff_writes_nothing_and_exits_1_when_there_is_something_to_fix(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "train.py", SOURCE)
    code, out, _ = gradlint(capsys, "check", "--diff", path)
    assert code == 1
    assert Path(path).read_text() == SOURCE
    expected = difflib.unified_diff(SOURCE.splitlines(True), FIXED.splitlines(True), path, path)
    assert out == "".join(expected)
    clean = write(tmp_path, "clean.py", FIXED)
    assert gradlint(capsys, "check", "--diff", clean)[:2] == (0, "")


def test_fix_of_a_file_that_does_not_parse_is_an_error(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "broken.py", "def (:\n    loss.backward()\n")
    code, out, _ = gradlint(capsys, "fix", path)
    assert code == 2 and "GL000" in out
    assert Path(path).read_text() == "def (:\n    loss.backward()\n"


def test_fix_notebook_file_from_the_command_line(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "train.ipynb", notebook(NOTEBOOK_CELLS))
    assert gradlint(capsys, "fix", path)[0] == 0
    assert fix_notebook(Path(path).read_text()).fixed == 0
    assert (
        json.loads(Path(path).read_text())["cells"][2]["outputs"]
        == json.loads(notebook(NOTEBOOK_CELLS))["cells"][2]["outputs"]
    )


def test_fix_of_standard_input_writes_the_source_to_standard_output(capsys, monkeypatch) -> None:
    for source, expected in ((SOURCE, FIXED), (FIXED, FIXED)):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(source.encode())))
        code, out, _ = gradlint(capsys, "fix", "-")
        assert (code, out) == (0, expected)


def test_fix_keeps_the_encoding_and_byte_order_mark(tmp_path: Path, capsys) -> None:
    bom = b"\xef\xbb\xbf"
    path = write(tmp_path, "bom.py", bom + ("# café\n" + SOURCE).encode())
    assert gradlint(capsys, "fix", path)[0] == 0
    assert Path(path).read_bytes() == bom + ("# café\n" + FIXED).encode()
    latin = write(tmp_path, "latin.py", ("# -*- coding: latin-1 -*-\n# café\n" + SOURCE).encode("latin-1"))
    assert gradlint(capsys, "fix", latin)[0] == 0
    assert Path(latin).read_bytes() == ("# -*- coding: latin-1 -*-\n# café\n" + FIXED).encode("latin-1")


NOT_OFFERED = {
    "a clear alone under an if": (
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for epoch in range(3):\n"
        "    if epoch % 2 == 0:\n"
        "        optimizer.zero_grad()\n"
        "    for x, y in loader:\n"
        "        loss_fn(model(x), y).backward()\n"
        "        optimizer.step()\n"
    ),
    "a backward sharing its line": (
        "accum = 4\n"
        "for i, (x, y) in enumerate(loader):\n"
        "    loss = loss_fn(model(x), y); loss.backward()\n"
        "    if (i + 1) % accum == 0:\n"
        "        optimizer.step()\n"
        "        optimizer.zero_grad()\n"
    ),
    "a count not in scope at the backward": (
        "def train(model, loader, optimizer):\n"
        "    for i, (x, y) in enumerate(loader):\n"
        "        loss = loss_fn(model(x), y)\n"
        "        loss.backward()\n"
        "        if (i + 1) % config.accum_steps == 0:\n"
        "            optimizer.step()\n"
        "            optimizer.zero_grad()\n"
    ),
    "a clear in a helper, the step in its caller": (
        "def log_and_clear(model):\n"
        "    print(sum(p.grad.norm() for p in model.parameters()))\n"
        "    model.zero_grad()\n"
        "\n"
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n"
        "    log_and_clear(model)\n"
        "    optimizer.step()\n"
    ),
}


@pytest.mark.parametrize("source", list(NOT_OFFERED.values()), ids=list(NOT_OFFERED))
def test_no_fix_is_offered_where_the_place_is_ambiguous(source: str) -> None:
    findings = check_source(source)
    assert [f for f in findings if f.code in FIXERS], "the sample must have a fixable-code finding"
    fixed = fix_source(source, unsafe=True)
    assert (fixed.fixed, fixed.text) == (0, source)


def test_no_gl101_fix_when_the_stepping_loop_already_clears_after_its_steps() -> None:
    """Only the first step of the second loop re-applies what the first loop left: moving or copying the
    first loop's clear after that step would add a second clear there and leave the leftover."""
    source = (
        "for update in range(updates):\n"
        "    for x, y in loader:\n"
        "        optimizer.zero_grad()\n"
        "        loss_fn(model(x), y).backward()\n"
        "        optimizer.step()\n"
        "    for i, (x, y) in enumerate(aux_loader):\n"
        "        (aux_loss(model(x), y) / accum_steps).backward()\n"
        "        if (i + 1) % accum_steps == 0:\n"
        "            optimizer.step()\n"
        "            optimizer.zero_grad()\n"
    )
    assert [finding.code for finding in check_source(source)] == ["GL101"]
    assert fix_source(source, unsafe=True).text == source
