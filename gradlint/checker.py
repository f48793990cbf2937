"""The one `check` every front end calls: the CLI, the flake8 plugin and the runtime share it."""

from __future__ import annotations

import ast
import io
import os
import re
import sys
import threading
import tokenize
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, TypeVar, cast

from gradlint.core import Finding
from gradlint.rules import resolve_codes, selected_rules

if TYPE_CHECKING:
    from gradlint.project import Project

# Valid code can be deeper than Python's default recursion limit (1000) lets a recursive walk go: a
# generated chain of 300 `elif`s, a sum of 1,000 terms. Only when that happens is the work done again
# under this limit, in a thread whose stack is reserved large enough for it (address space only:
# the pages a shallow file never touches cost nothing).
DEEP_RECURSION_LIMIT = 50_000
DEEP_STACK_BYTES = 512 * 1024 * 1024
TOO_DEEP = "nested too deeply"

# The line ends Python knows; str.splitlines also splits at form feeds and U+2028, which Python
# allows inside a line (a `^L` page break on its own line is common in older code): splitting there
# would put every later line under the wrong number, in messages, snippets and `# noqa`.
LINE_END = re.compile(r"\r\n|\r|\n")

T = TypeVar("T")

NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[,\s]+[A-Z]+[0-9]+)*))?", re.IGNORECASE)


class SourceError(Exception):
    """The file cannot be read or parsed; `line`/`col` are 1-based (1, 1 when unknown).

    In a notebook, `cell` is the cell (1-based among all cells) and `line` a line of that cell."""

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
    except SyntaxError as error:
        if not str(error).startswith("invalid or missing encoding declaration"):
            raise SourceError(f"cannot decode: {error}") from None  # an unknown or contradicted cookie
        encoding = "utf-8"  # the first lines are not UTF-8 and declare nothing: find the byte below
    try:
        text = data.decode(encoding)
    except LookupError as error:
        raise SourceError(f"cannot decode: {error}") from None
    except UnicodeDecodeError as error:
        raise undecodable(data, error) from None
    return text[1:] if text.startswith("\ufeff") else text


def undecodable(data: bytes, error: UnicodeDecodeError) -> SourceError:
    """Where the first byte that is not in the file's encoding is, and what to do about it."""
    line_start = data.rfind(b"\n", 0, error.start) + 1
    col = len(data[line_start : error.start].decode(error.encoding, errors="replace")) + 1
    message = (
        f"cannot decode: byte 0x{data[error.start]:02x} is not {error.encoding}: "
        "save the file as UTF-8 or declare its encoding (PEP 263)"
    )
    return SourceError(message, data.count(b"\n", 0, error.start) + 1, col)


def parse_source(text: str, filename: str = "<unknown>") -> ast.Module:
    if "\0" in text:  # said here, with its place: Python's own message and error type vary by version
        before = text[: text.index("\0")]
        line = before.count("\n") + 1
        raise SourceError("cannot parse: source contains null bytes", line, len(before) - before.rfind("\n"))
    try:
        return allowing_deep_recursion(lambda: ast.parse(text, filename=filename))
    except SyntaxError as error:
        line = error.lineno or 1
        col = error.offset or 1
        raise SourceError(f"cannot parse: {error.msg}", line, col) from None
    except RecursionError:
        raise SourceError(f"cannot parse: {TOO_DEEP} for Python's parser (RecursionError)") from None
    except MemoryError:
        # CPython's parser reports its own stack overflowing (10,000 `elif`s) as a MemoryError
        raise SourceError(f"cannot parse: {TOO_DEEP} for Python's parser (MemoryError)") from None
    except ValueError as error:
        raise SourceError(f"cannot parse: {error}") from None


def check_tree(
    tree: ast.Module,
    lines: Sequence[str],
    codes: Iterable[str] | None = None,
    filename: str | None = None,
    project: Project | None = None,
) -> list[Finding]:
    """Findings for an already parsed module, `# noqa` not applied (flake8 applies its own).

    `codes` are codes or prefixes (`GL1`); None means the rules enabled by default. With the
    `filename` of a project file, the modules it imports and those importing it are read too, through
    `project` (one per run, so each file is read once). A tree too deep to analyse even with a raised
    recursion limit is a SourceError, never a RecursionError."""
    if filename is not None and os.path.isfile(filename):
        in_project = findings_in_project(tree, lines, codes, filename, project)
        if in_project is not None:
            return in_project
    if not may_have_findings("\n".join(lines), codes):
        return []
    return findings_of(tree, lines, codes)


def findings_in_project(
    tree: ast.Module, lines: Sequence[str], codes: Iterable[str] | None, filename: str, project: Project | None
) -> list[Finding] | None:
    """The findings of `filename` analysed with its project; None when it has no project module to
    read (it imports none, and none imports it)."""
    from gradlint.project import Module, Project, imports_of, star_imports_of

    project = project or Project()
    file = os.path.realpath(filename)
    words = rule_words(None if codes is None else frozenset(codes))
    if not project.on_training_path(file, words):
        return None
    importers = project.importers({file})
    if not project.imported_files(file) and not importers:
        return None
    module = Module(file, filename, list(lines), tree, imports_of(tree), star_imports_of(tree), project.resolver_for(file))
    project.add(module)
    findings, error = check_program([filename], codes, project, sorted(importers), apply_noqa=False)[filename]
    if error is not None:
        raise error
    return findings


def findings_of(tree: ast.Module, lines: Sequence[str], codes: Iterable[str] | None) -> list[Finding]:
    from gradlint.analysis.pipeline import analyse  # here: a run that analyses no file never loads it

    rules = selected_rules(resolve_codes(select=codes))
    wanted = {rule.RULE.code for rule in rules}
    try:
        facts = allowing_deep_recursion(lambda: analyse(tree, lines, wanted))
    except RecursionError:
        raise SourceError(f"cannot analyse: {TOO_DEEP} (RecursionError)") from None
    findings = {finding for rule in rules for finding in rule.check(facts)}
    return sorted(findings, key=Finding.sort_key)


def check_program(
    paths: Sequence[str],
    codes: Iterable[str] | None,
    project: Project,
    context: Sequence[str] = (),
    apply_noqa: bool = True,
) -> dict[str, tuple[list[Finding], SourceError | None]]:
    """Findings of the files `paths`, analysed together with the project modules they import and
    those in `context` (files that import them, whose training path may decide their findings).

    Each finding is filed under the file it is in, `# noqa` of that file applied; findings in files
    that were not asked for are dropped (they are another run's, or nobody's to report). A file
    that cannot be read or parsed has its error, and the others are analysed with it unknown."""
    from gradlint.analysis.pipeline import analyse_program  # here: a run that analyses no file never loads it
    from gradlint.analysis.program import Program

    results: dict[str, tuple[list[Finding], SourceError | None]] = {}
    roots = []
    for path in paths:
        module = project.module(path)
        if module is None:
            results[path] = ([], project.error_of(path))
        else:
            roots.append(module)
            results[path] = ([], None)
    roots += [m for file in context if (m := project.module(file)) is not None and m not in roots]
    if not any(error is None for _, error in results.values()):
        return results
    rules = selected_rules(resolve_codes(select=codes))
    wanted = {rule.RULE.code for rule in rules}
    try:
        facts = allowing_deep_recursion(lambda: analyse_program(Program(roots, project), wanted))
    except RecursionError:
        error = SourceError(f"cannot analyse: {TOO_DEEP} (RecursionError)")
        return {path: ([], result[1] or error) for path, result in results.items()}
    by_path = {module.path: module for module in roots}
    for finding in sorted({f for rule in rules for f in rule.check(facts)}, key=Finding.sort_key):
        module = by_path.get(finding.path or "")
        if module is None or module.path not in results:
            continue
        if apply_noqa and is_suppressed(finding, module.lines):
            continue
        results[module.path][0].append(replace(finding, path=None))
    return results


def allowing_deep_recursion(work: Callable[[], T]) -> T:
    """`work()`; if it runs out of recursion depth, once more with DEEP_RECURSION_LIMIT.

    `work` must have no effect but its result, since it may run twice."""
    try:
        return work()
    except RecursionError:
        pass  # retried outside the handler, so the exhausted stack's frames are freed first
    return in_deep_stack(work)


def in_deep_stack(work: Callable[[], T]) -> T:
    outcome: dict[str, object] = {}

    def target() -> None:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, DEEP_RECURSION_LIMIT))
        try:
            outcome["result"] = work()
        except BaseException as error:  # re-raised in the calling thread
            outcome["error"] = error
        finally:
            sys.setrecursionlimit(limit)

    try:
        previous = threading.stack_size(DEEP_STACK_BYTES)
    except (ValueError, RuntimeError):  # a platform that cannot size thread stacks: stay shallow
        raise RecursionError("no thread stack for a deeper recursion limit") from None
    try:
        thread = threading.Thread(target=target, name="gradlint-deep")
        thread.start()
    except RuntimeError:  # no thread to be had (address space, limits): as deep as we can go
        raise RecursionError("no thread for a deeper recursion limit") from None
    finally:
        threading.stack_size(previous)
    thread.join()
    if "error" in outcome:
        raise cast(BaseException, outcome["error"])
    return cast(T, outcome["result"])


def check_source(text: str, filename: str = "<unknown>", codes: Iterable[str] | None = None) -> list[Finding]:
    """Parse, analyse and drop findings silenced by `# noqa` on their line.

    A file that has none of the words the selected rules need is neither parsed nor analysed: it
    cannot have a finding, and most Python files are such files (a syntax error in one is left to
    the other linters)."""
    if not may_have_findings(text, codes):
        return []
    tree = parse_source(text, filename)
    lines = source_lines(text)
    return [f for f in findings_of(tree, lines, codes) if not is_suppressed(f, lines)]


def source_lines(text: str) -> list[str]:
    """The lines of `text` as Python numbers them, without their line ends."""
    lines = LINE_END.split(text)
    return lines[:-1] if lines and lines[-1] == "" else lines


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
