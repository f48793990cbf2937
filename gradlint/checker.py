"""The one `check` every front end calls: the CLI, the flake8 plugin and the runtime share it."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gradlint.analysis import analyse
from gradlint.analysis.names import GRADIENT_ATTRIBUTES
from gradlint.core import Finding
from gradlint.rules import resolve_codes, selected_rules

NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[,\s]+[A-Z]+[0-9]+)*))?", re.IGNORECASE)


class SourceError(Exception):
    """The file cannot be read or parsed; `line`/`col` are 1-based (1, 1 when unknown).

    In a notebook, `cell` is the code cell (1-based) and `line` a line of that cell."""

    def __init__(self, message: str, line: int = 1, col: int = 1, cell: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col
        self.cell = cell


@dataclass(frozen=True)
class FileResult:
    path: str
    findings: tuple[Finding, ...] = ()
    error: SourceError | None = None


def decode_source(data: bytes) -> str:
    """Decode as Python does: BOM, then a PEP 263 cookie, then UTF-8."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        text = data.decode(encoding)
    except (SyntaxError, LookupError, UnicodeDecodeError) as error:
        raise SourceError(f"cannot decode: {error}") from None
    return text[1:] if text.startswith("\ufeff") else text


def parse_source(text: str, filename: str = "<unknown>") -> ast.Module:
    try:
        return ast.parse(text, filename=filename)
    except SyntaxError as error:
        line = error.lineno or 1
        col = error.offset or 1
        raise SourceError(f"cannot parse: {error.msg}", line, col) from None
    except (ValueError, RecursionError, MemoryError) as error:
        raise SourceError(f"cannot parse: {type(error).__name__}: {error}") from None


def check_tree(tree: ast.Module, lines: Sequence[str], codes: Iterable[str] | None = None) -> list[Finding]:
    """Findings for an already parsed module, `# noqa` not applied (flake8 applies its own).

    `codes` are codes or prefixes (`GL1`); None means the rules enabled by default."""
    rules = selected_rules(resolve_codes(select=codes))
    facts = analyse(tree, lines)
    findings = {finding for rule in rules for finding in rule.check(facts)}
    return sorted(findings, key=Finding.sort_key)


def check_source(text: str, filename: str = "<unknown>", codes: Iterable[str] | None = None) -> list[Finding]:
    """Parse, analyse and drop findings silenced by `# noqa` on their line.

    Every file is parsed, so one that is not Python is always reported; only a file that has
    gradient vocabulary is analysed."""
    tree = parse_source(text, filename)
    if not may_have_gradient_events(text):
        return []
    lines = text.splitlines()
    return [f for f in check_tree(tree, lines, codes) if not is_suppressed(f, lines)]


def may_have_gradient_events(text: str) -> bool:
    """False only when no gradient attribute (`.backward`, `.step`, `.grad`...) can be in `text`.

    The analysis finds nothing in a module without one, and most Python files have none: a substring
    search is far cheaper than walking the tree to learn that."""
    if not text.isascii():
        return True  # identifiers are NFKC-normalised: `step` in fullwidth letters is `step`
    return any(name in text for name in GRADIENT_ATTRIBUTES)


def is_suppressed(finding: Finding, lines: Sequence[str]) -> bool:
    index = finding.location.line - 1
    if not 0 <= index < len(lines):
        return False
    match = NOQA.search(lines[index])
    if match is None:
        return False
    codes = match.group("codes")
    if codes is None:
        return True
    return any(finding.code.startswith(code.upper()) for code in re.split(r"[,\s]+", codes) if code)
