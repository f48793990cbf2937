"""The pieces of the language server that need no client: edits as lines, `# noqa` insertion,
positions in UTF-16, related lines in other files, one finding's fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types
from pygls.workspace import PositionCodec
from samples import BUG_LINE, BUGGY_LOOP

from gradlint.checker import check_source
from gradlint.core import Finding, Location, Related
from gradlint.editor import Insertion, LineEdit, line_edits, lines_with_ends, noqa_insertion
from gradlint.fix.engine import fix_finding, fix_source
from gradlint.server import Snapshot, finding_diagnostic, to_position

GOLDEN = Path(__file__).resolve().parent / "fix_golden"


def test_line_edits_replace_only_the_lines_that_changed():
    old = "a\nb\nc\nd\n"
    assert line_edits(old, "a\nB\nc\nd\ne\n") == [LineEdit(1, 2, "B\n"), LineEdit(4, 4, "e\n")]
    assert line_edits(old, old) == []


def test_lines_split_where_python_splits_them_not_at_form_feeds():
    assert lines_with_ends("a\fb\r\nc\rd") == ["a\fb\r\n", "c\r", "d"]


@pytest.mark.parametrize(
    ("line", "insertion"),
    [
        ("    optimizer.zero_grad()", Insertion(25, 25, "  # noqa: GL101")),
        ("    optimizer.zero_grad()   ", Insertion(25, 28, "  # noqa: GL101")),
        ("    optimizer.zero_grad()  # noqa: GL301", Insertion(40, 40, ", GL101")),
        ("    optimizer.zero_grad()  # noqa", None),  # silences every code already
        ("    x = 1 + \\", None),  # a comment after a line continuation is a syntax error
    ],
)
def test_noqa_insertion(line, insertion):
    assert noqa_insertion(line, "GL101") == insertion


def test_positions_count_utf16_code_units_as_lsp_does():
    codec = PositionCodec(types.PositionEncodingKind.Utf16)
    # gradlint's column 3 is the third character; 😋 is two UTF-16 code units
    assert to_position(["a😋b"], 1, 3, codec) == types.Position(0, 3)
    utf32 = PositionCodec(types.PositionEncodingKind.Utf32)
    assert to_position(["a😋b"], 1, 3, utf32) == types.Position(0, 2)


def test_a_related_line_in_another_file_links_to_that_file(tmp_path):
    engine = tmp_path / "engine.py"
    engine.write_text("def step(optimizer):\n    optimizer.step()\n")
    finding = Finding(
        "GL101",
        "clear-less-often-than-step",
        "the clear runs once",
        Location(3, 5, 3, 26),
        (Related(Location(2, 5, 2, 21), "this step re-applies stale gradients", str(engine)),),
    )
    snapshot = Snapshot("file:///main.py", 1, "/main.py", "/main.py", "x\n" * 3)
    diagnostic = finding_diagnostic(finding, snapshot, ["", "", "    optimizer.zero_grad()"], PositionCodec())
    (related,) = diagnostic.related_information
    assert related.location.uri == engine.as_uri()
    assert related.location.range.start == types.Position(1, 4)
    assert related.message == "this step re-applies stale gradients"


def test_fixing_one_finding_leaves_the_others():
    unsafe = (GOLDEN / "GL301_modulo.in.py").read_text()
    source = BUGGY_LOOP + "\n" + unsafe
    clear, accumulation = check_source(source)
    assert (clear.code, clear.location.line, accumulation.code) == ("GL101", BUG_LINE, "GL301")
    fixed = fix_finding(source, clear)
    assert fixed is not None and fixed.safe
    assert [finding.code for finding in check_source(fixed.text)] == ["GL301"]
    assert fixed.text == fix_source(source).text  # the same fix `gradlint fix` makes
    only_unsafe = fix_finding(source, accumulation)
    assert only_unsafe is not None and not only_unsafe.safe
    assert [finding.code for finding in check_source(only_unsafe.text)] == ["GL101"]


def test_a_finding_the_text_no_longer_has_has_no_fix():
    (clear,) = check_source(BUGGY_LOOP)
    moved = Finding(clear.code, clear.name, clear.message, Location(1, 1, 1, 5))
    assert fix_finding(BUGGY_LOOP, moved) is None
