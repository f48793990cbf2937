"""GL103 (being written)."""

from gradlint.core import Finding, Rule

RULE = Rule(code="GL103", name="clear-discards-unstepped-gradients", summary="", what_it_does="", why_bad="", example="", use_instead="")


def check(facts) -> list[Finding]:
    return []
