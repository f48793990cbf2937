"""The one `check` every front end calls: the CLI, the flake8 plugin and the runtime share it."""

from __future__ import annotations

import ast
import io
import re
import tokenize
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from gradlint.analysis import analyse
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
    if not may_have_findings("\n".join(lines), codes):
        return []
    return findings_of(tree, lines, codes)


def findings_of(tree: ast.Module, lines: Sequence[str], codes: Iterable[str] | None) -> list[Finding]:
    rules = selected_rules(resolve_codes(select=codes))
    facts = analyse(tree, lines)
    findings = {finding for rule in rules for finding in rule.check(facts)}
    return sorted(findings, key=Finding.sort_key)


def check_source(text: str, filename: str = "<unknown>", codes: Iterable[str] | None = None) -> list[Finding]:
    """Parse, analyse and drop findings silenced by `# noqa` on their line.

    A file that has none of the words the selected rules need is neither parsed nor analysed: it
    cannot have a finding, and most Python files are such files (a syntax error in one is left to
    the other linters)."""
    if not may_have_findings(text, codes):
        return []
    tree = parse_source(text, filename)
    lines = text.splitlines()
    return [f for f in findings_of(tree, lines, codes) if not is_suppressed(f, lines)]


def may_have_findings(source: str | bytes, codes: Iterable[str] | None = None) -> bool:
    """False only when `source` has none of the words (`Rule.words`) of the rules `codes` select.

    That is part of what the rules mean: a module where no `backward(` can be seen gets its
    gradients from code gradlint cannot see, and gradlint then says nothing. A substring search
    costs a hundredth of a parse, and it answers for the bytes of a file as for its text: the
    words are ASCII, and Python source is in an ASCII-compatible encoding."""
    words = rule_words(None if codes is None else frozenset(codes))
    if isinstance(source, bytes):
        if not source.isascii():
            return True  # to be decoded and asked again as text
        return any(word.encode() in source for word in words)
    if not source.isascii():
        # Python reads identifiers NFKC-normalised: `backward` in fullwidth letters is `backward`
        source = unicodedata.normalize("NFKC", source)
    return any(word in source for word in words)


@lru_cache(maxsize=64)
def rule_words(codes: frozenset[str] | None) -> frozenset[str]:
    return frozenset(word for rule in selected_rules(resolve_codes(select=codes)) for word in rule.RULE.words)


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
