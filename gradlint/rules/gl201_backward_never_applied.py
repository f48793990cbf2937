"""GL201 (being written)."""

from gradlint.core import Finding, Rule

RULE = Rule(code="GL201", name="backward-never-applied", summary="", what_it_does="", why_bad="", example="", use_instead="")


def check(facts) -> list[Finding]:
    return []
