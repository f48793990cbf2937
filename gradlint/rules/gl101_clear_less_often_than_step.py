"""GL101 (being written)."""

from gradlint.core import Finding, Rule

RULE = Rule(code="GL101", name="clear-less-often-than-step", summary="", what_it_does="", why_bad="", example="", use_instead="")


def check(facts) -> list[Finding]:
    return []
