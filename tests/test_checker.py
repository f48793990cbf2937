"""The text pre-filter: a file is parsed and analysed only when it has a word one of the selected
rules needs (`Rule.words`), and skipping one never drops a finding."""

from __future__ import annotations

import ast
import sysconfig
from dataclasses import replace
from pathlib import Path

import pytest
from samples import BROKEN_SOURCE, BUGGY_LOOP

from gradlint import checker
from gradlint.checker import SourceError, check_source, check_tree, may_have_findings
from gradlint.rules import ALL_RULES, RULES_BY_CODE

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.mark.parametrize(
    "source",
    [
        "loss.backward()\n",
        "self.manual_backward(loss)\n",
        "torch.autograd.backward([loss])\n",
        # fullwidth letters: Python reads this as `loss.backward()`
        "loss.\uff42\uff41\uff43\uff4b\uff57\uff41\uff52\uff44()\n",
    ],
)
def test_a_word_of_a_selected_rule_keeps_the_file(source):
    assert may_have_findings(source)
    assert may_have_findings(source.encode())


@pytest.mark.parametrize(
    "source",
    [
        "model.zero_grad()\n",
        "p.grad = None\n",
        "# kept for backwards compatibility\n",
        "name = 'caf\u00e9'  # not ASCII, and still no backward pass\n",
    ],
)
def test_text_without_a_rule_word_does_not_keep_the_file(source):
    assert not may_have_findings(source)
    if source.isascii():  # other bytes are decoded first, then asked about as text
        assert not may_have_findings(source.encode())


def test_the_words_follow_the_selected_rules(monkeypatch):
    monkeypatch.setattr(ALL_RULES[0], "RULE", replace(ALL_RULES[0].RULE, words=("clip_grad",)))
    checker.rule_words.cache_clear()
    try:
        code = ALL_RULES[0].RULE.code
        assert may_have_findings("clip_grad_norm_(params, 1.0)\n", [code])
        assert not may_have_findings("clip_grad_norm_(params, 1.0)\n", [ALL_RULES[1].RULE.code])
    finally:
        checker.rule_words.cache_clear()


def test_file_without_the_words_is_neither_parsed_nor_analysed(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("parsed or analysed a file without the rules' words")

    monkeypatch.setattr(checker, "findings_of", refuse)
    monkeypatch.setattr(checker, "parse_source", refuse)
    assert check_source("import os\nprint(os.getcwd())\n") == []
    assert check_source("def broken(:\n    model.zero_grad()\n") == []  # not Python, but no finding possible


def test_file_with_the_words_is_parsed_and_analysed():
    assert [finding.code for finding in check_source(BUGGY_LOOP)] == ["GL101"]
    with pytest.raises(SourceError, match="cannot parse"):
        check_source(BROKEN_SOURCE)


def samples() -> list[str]:
    """The fixtures, every rule's examples, and ordinary Python: part of the standard library."""
    files = [*sorted(FIXTURES.glob("*.py")), *sorted(STDLIB.glob("*.py"))[:150]]
    texts = [path.read_text(encoding="utf-8", errors="replace") for path in files]
    return texts + [snippet for rule in ALL_RULES for snippet in (*rule.RULE.valid, *rule.RULE.invalid)]


def test_the_filter_never_drops_a_finding():
    """Over every sample, the analysis finds the same with the filter and without it."""
    codes = set(RULES_BY_CODE)
    skipped = 0
    for text in samples():
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        lines = text.splitlines()
        assert check_tree(tree, lines, codes) == checker.findings_of(tree, lines, codes)
        skipped += not may_have_findings(text, codes)
    assert skipped > 50  # the comparison really covered many files the filter skips
