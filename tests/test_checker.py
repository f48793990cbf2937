"""The text pre-filter: a file is analysed only when it could hold a gradient event, and a file that
is not Python is reported whatever its words."""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

import pytest
from samples import BROKEN_SOURCE, BUGGY_LOOP

from gradlint import checker
from gradlint.analysis.scope import ModuleIndex
from gradlint.checker import SourceError, check_source, may_have_gradient_events
from gradlint.rules import ALL_RULES

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.mark.parametrize(
    "source",
    [
        "loss.backward()\n",
        "self.manual_backward(loss)\n",
        "model.zero_grad()\n",
        "optimizer.step()\n",
        "p.grad = None\n",
        "opt.\uff53\uff54\uff45\uff50()\n",  # fullwidth letters: Python reads this as `opt.step()`
    ],
)
def test_any_gradient_attribute_keeps_the_file(source):
    assert may_have_gradient_events(source)


def test_file_without_gradient_words_is_not_analysed(monkeypatch):
    def refuse(*args):
        raise AssertionError("analysed a file without gradient words")

    monkeypatch.setattr(checker, "check_tree", refuse)
    assert check_source("import os\nprint(os.getcwd())\n") == []


def test_file_without_gradient_words_is_still_parsed():
    assert not may_have_gradient_events(BROKEN_SOURCE)
    with pytest.raises(SourceError, match="cannot parse"):
        check_source(BROKEN_SOURCE)


def test_file_with_gradient_words_is_analysed():
    assert [finding.code for finding in check_source(BUGGY_LOOP)] == ["GL101"]


def samples() -> list[str]:
    """The fixtures, every rule's examples, and ordinary Python: part of the standard library."""
    files = [*sorted(FIXTURES.glob("*.py")), *sorted(STDLIB.glob("*.py"))[:150]]
    texts = [path.read_text(encoding="utf-8", errors="replace") for path in files]
    return texts + [snippet for rule in ALL_RULES for snippet in (*rule.RULE.valid, *rule.RULE.invalid)]


def test_the_filter_never_skips_a_module_the_analysis_would_read():
    """Exactly as safe as the analysis's own check: where the text has no gradient word, the tree
    has no gradient attribute."""
    skipped = 0
    for text in samples():
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        if not may_have_gradient_events(text):
            skipped += 1
            assert not ModuleIndex.of(tree).has_gradient_code
    assert skipped > 50  # the check above really ran on many files
