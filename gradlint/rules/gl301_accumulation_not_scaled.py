"""GL301 (being written)."""

from gradlint.core import Finding, Rule

RULE = Rule(code="GL301", name="accumulation-not-scaled", summary="", what_it_does="", why_bad="", example="", use_instead="")


def check(facts) -> list[Finding]:
    return []
