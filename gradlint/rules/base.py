"""What every rule module shares: building a finding from sites, one finding per place."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from gradlint.core import Finding, Related, Rule

if TYPE_CHECKING:  # only named here; see rules/__init__.py for why
    from gradlint.analysis.facts import LoopSite, Site


def finding(rule: Rule, site: Site, message: str, related: Iterable[tuple[Site, str]] = ()) -> Finding:
    return Finding(
        rule.code,
        rule.name,
        message,
        site.location,
        tuple(Related(other.location, note, other.path if other.path != site.path else None) for other, note in related),
        site.path,
    )


def one_per_place(findings: Iterable[Finding]) -> list[Finding]:
    """Paths through loops and helpers can report one line several times: keep the first by position,
    then by the positions of the lines it names (never by its text, which holds the user's names)."""
    chosen: dict[tuple[str, str | None, object], Finding] = {}
    for item in sorted(findings, key=lambda f: (f.location, [r.location for r in f.related], f.message)):
        chosen.setdefault((item.code, item.path, item.location), item)
    return list(chosen.values())


def code(site: Site) -> str:
    return f"`{site.text}`"


def loop_phrase(loop: LoopSite) -> str:
    return f"`{loop.header}` (line {loop.location.line})"
