"""What every rule module shares: building a finding from sites, one finding per place."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from gradlint.core import Finding, Related, Rule

if TYPE_CHECKING:  # only named here; see rules/__init__.py for why
    from gradlint.analysis.facts import LoopSite, Site


def finding(rule: Rule, site: Site, message: str, related: Iterable[tuple[Site, str]] = ()) -> Finding:
    return Finding(
        rule.code,
        rule.name,
        in_files(message, site.path),
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


def line(site: Site | LoopSite) -> str:
    """`line 10`, or `line 10 of engine.py` once the finding is known to be in another file."""
    return f"line {site.location.line}{FILE_MARK}{site.path or ''}{FILE_MARK}"


def loop_phrase(loop: LoopSite) -> str:
    return f"`{loop.header}` ({line(loop)})"


# Messages are written before the file they will be reported in is known: a line of a site names
# its file between these marks, and `in_files` keeps the name only where it is another file's.
FILE_MARK = "\x00"
FILE_NAMED = re.compile(f"{FILE_MARK}([^{FILE_MARK}]*){FILE_MARK}")


def in_files(message: str, path: str | None) -> str:
    return FILE_NAMED.sub(lambda m: "" if m.group(1) in ("", path) else f" of {m.group(1)}", message)
