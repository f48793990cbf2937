"""Fixing a source: find the fixes the findings allow, apply them, and keep only what checks out.

Every pass parses the source with libcst, asks each rule's fixer for the fixes of the findings that
are reported (selected, not silenced by `# noqa`), applies those that touch different statements,
and checks the result again. A fix is kept only if the source still parses, its finding is gone and
no finding of any code appeared: a fix that does not do what it says is not applied. The fixes of
a pass are tried together first, then one at a time. Passes repeat while they fix something, since
two fixes of one statement cannot share a pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

import libcst as cst

from gradlint.analysis.pipeline import analyse
from gradlint.checker import SourceError, check_source
from gradlint.core import Finding
from gradlint.fix import gl101, gl102, gl103, gl301
from gradlint.fix.edits import Fix, apply, disjoint
from gradlint.fix.tree import Tree

FIXERS: dict[str, ModuleType] = {fixer.CODE: fixer for fixer in (gl101, gl102, gl103, gl301)}
MAX_PASSES = 4


@dataclass(frozen=True)
class Fixed:
    """The source after fixing, how many findings the fixes removed, and the findings that remain."""

    text: str
    fixed: int
    remaining: tuple[Finding, ...]
    unsafe_left: int = 0  # remaining findings that an unsafe fix, not asked for, would fix

    @property
    def changed(self) -> bool:
        return self.fixed > 0


def fix_source(
    text: str, filename: str = "<unknown>", codes: Iterable[str] | None = None, unsafe: bool = False
) -> Fixed:
    """Apply the fixes for `text`'s findings; raises SourceError when `text` cannot be checked."""
    codes = None if codes is None else tuple(codes)
    findings = check_source(text, filename, codes)
    fixed = unsafe_left = 0
    for _ in range(MAX_PASSES):
        offer = offered_fixes(text, findings, unsafe)
        if offer is None:
            break
        unsafe_left = offer.unsafe_left
        result = apply_checked(text, findings, offer, filename, codes) if offer.fixes else None
        if result is None:
            break
        text, findings, count = result
        fixed += count
        if len(disjoint(offer.fixes)) == len(offer.fixes):
            break  # nothing was put off for a later pass: another would find nothing new
    return Fixed(text, fixed, tuple(findings), unsafe_left)


@dataclass(frozen=True)
class FindingFix:
    """The source with one finding fixed, and whether the fix that did it is safe."""

    text: str
    safe: bool


def fix_finding(
    text: str, finding: Finding, filename: str = "<unknown>", codes: Iterable[str] | None = None
) -> FindingFix | None:
    """`text` with only `finding` fixed (an editor's quick fix), safe or not; None when no fix of it
    holds up as `fix_source` requires, or `text` no longer has it. Raises SourceError as `fix_source`."""
    if finding.code not in FIXERS:
        return None
    codes = None if codes is None else tuple(codes)
    findings = check_source(text, filename, codes)
    wanted = [found for found in findings if (found.code, found.location) == (finding.code, finding.location)]
    offer = offered_fixes(text, wanted, unsafe=True)
    if offer is None:
        return None
    for fix in offer.fixes:
        result = attempt(offer.tree, [fix], findings, filename, codes)
        if result is not None:
            return FindingFix(result[0], fix.safe)
    return None


@dataclass(frozen=True)
class Offer:
    tree: Tree
    fixes: list[Fix]
    unsafe_left: int  # findings whose only fixes are unsafe ones, not asked for


def offered_fixes(text: str, findings: Sequence[Finding], unsafe: bool) -> Offer | None:
    wanted = {(finding.code, finding.location) for finding in findings if finding.code in FIXERS}
    if not wanted:
        return None
    try:
        tree = Tree(text)
    except (cst.ParserSyntaxError, SyntaxError, RecursionError):
        return None  # what libcst cannot read, it cannot rewrite
    facts = analyse(tree.syntax, text.splitlines(), set(FIXERS))
    fixes: list[Fix] = []
    seen: set[tuple[str, object]] = set()
    held_back: set[tuple[str, object]] = set()
    for code in sorted({code for code, _ in wanted}):
        for fix in FIXERS[code].fixes(facts, tree):
            key = (fix.code, fix.location)
            if key not in wanted or key in seen:
                continue
            if fix.safe or unsafe:
                seen.add(key)
                fixes.append(fix)
            else:
                held_back.add(key)
    return Offer(tree, fixes, len(held_back - seen))


def apply_checked(
    text: str,
    findings: Sequence[Finding],
    offer: Offer,
    filename: str,
    codes: tuple[str, ...] | None,
) -> tuple[str, list[Finding], int] | None:
    """The source with the fixes that hold up, its findings and how many were fixed; None if none did."""
    tree, fixes = offer.tree, offer.fixes
    candidates = disjoint(fixes)
    together = attempt(tree, candidates, findings, filename, codes)
    if together is not None:
        return (*together, len(candidates))
    kept: list[Fix] = []
    best: tuple[str, list[Finding]] | None = None
    for fix in candidates:
        result = attempt(tree, [*kept, fix], findings, filename, codes)
        if result is not None:
            kept.append(fix)
            best = result
    return None if best is None else (*best, len(kept))


def attempt(
    tree: Tree, fixes: Sequence[Fix], before: Sequence[Finding], filename: str, codes: tuple[str, ...] | None
) -> tuple[str, list[Finding]] | None:
    text = apply(tree.module, fixes)
    try:
        after = check_source(text, filename, codes)
    except SourceError:
        return None
    expected = Counter(finding.code for finding in before)
    expected.subtract(fix.code for fix in fixes)
    found = Counter(finding.code for finding in after)
    if any(found[code] > expected[code] for code in found):
        return None  # a finding survived its fix, or a new one appeared
    return text, after
