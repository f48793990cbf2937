"""Every rule's own VALID and INVALID snippets: INVALID lines marked `# error` must be reported."""

from __future__ import annotations

import pytest

from gradlint.checker import check_source
from gradlint.rules import ALL_RULES


def examples(kind: str):
    for rule in ALL_RULES:
        for number, snippet in enumerate(getattr(rule.RULE, kind)):
            yield pytest.param(rule.RULE.code, snippet, id=f"{rule.RULE.code}-{kind}-{number}")


@pytest.mark.parametrize(("code", "snippet"), list(examples("valid")))
def test_valid_example_has_no_finding(code: str, snippet: str) -> None:
    assert check_source(snippet, codes=[code]) == []


@pytest.mark.parametrize(("code", "snippet"), list(examples("invalid")))
def test_invalid_example_is_reported_on_marked_lines(code: str, snippet: str) -> None:
    expected = {number for number, line in enumerate(snippet.splitlines(), 1) if line.endswith("# error")}
    reported = {finding.location.line for finding in check_source(snippet, codes=[code])}
    assert expected and reported == expected


def test_every_rule_has_examples_and_docs() -> None:
    for rule in ALL_RULES:
        meta = rule.RULE
        assert meta.valid and meta.invalid, meta.code
        assert all([meta.summary, meta.what_it_does, meta.why_bad, meta.example, meta.use_instead]), meta.code
