"""GL302 at run time. It is off by default, so its buggy program cannot be a fixture (fixtures are
checked with the default codes): the program is the flushed fixture without its flush."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from gradlint.runtime.run import confirm_script

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"
FLUSHED = FIXTURES_DIR / "clean_accum_flush_after_loop.py"
FLUSH_LINES = ("    optimizer.step()  # the last, partial window\n", "    optimizer.zero_grad()\n")


def without_flush(tmp_path: Path) -> Path:
    text = FLUSHED.read_text(encoding="utf-8")
    for line in FLUSH_LINES:
        assert line in text
        text = text.replace(line, "", 1)
    path = tmp_path / "unflushed.py"
    path.write_text(text, encoding="utf-8")
    return path


def test_leftover_micro_batches_joining_the_next_window_confirm_gl302(tmp_path: Path) -> None:
    script = without_flush(tmp_path)
    result = confirm_script(str(script), (), None, 60, codes=["GL302"])
    [verdict] = result.verdicts
    assert verdict.finding.code == "GL302" and verdict.verdict == "confirmed", verdict.evidence
    # 10 batches, a window of 4: each later epoch's first step sums 2 leftovers and its own 4
    assert "2 steps at line 27 summed more backward passes (up to 6) than the 4 that" in verdict.evidence


def test_a_flush_after_the_loop_leaves_no_oversized_window(tmp_path: Path) -> None:
    result = confirm_script(str(FLUSHED), (), None, 60, codes=["GL302"])
    assert result.findings == [] and result.dynamic_only == []
