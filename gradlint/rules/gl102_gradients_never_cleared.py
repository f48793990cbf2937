"""GL102 (being written)."""

from gradlint.core import Finding, Rule

RULE = Rule(code="GL102", name="gradients-never-cleared", summary="", what_it_does="", why_bad="", example="", use_instead="")


def check(facts) -> list[Finding]:
    return []
