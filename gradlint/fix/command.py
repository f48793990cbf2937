"""`gradlint fix PATH...`, `gradlint check --fix` and `--diff`: fix files, or show the fixes as a diff.

Exit status as ruff's: with `--fix`, 1 when findings remain and 0 when every one was fixed; with
`--diff`, nothing is written and the status is 1 when there is something to fix. A file that cannot
be read or parsed is 2, as for `check`.
"""

from __future__ import annotations

import argparse
import difflib
import io
import sys
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass, replace

from gradlint.checker import FileResult, SourceError, decode_source
from gradlint.files import STDIN, STDIN_NAME, display_name, read_data
from gradlint.fix.engine import FIXERS, Fixed, fix_source
from gradlint.fix.notebooks import fix_notebook
from gradlint.notebooks import is_notebook

UTF8_BOM = b"\xef\xbb\xbf"
FIXABLE = frozenset(FIXERS)


@dataclass(frozen=True)
class FileFix:
    path: str  # as reported
    before: str
    fixed: Fixed | None  # None when the file could not be checked
    error: SourceError | None = None

    @property
    def result(self) -> FileResult:
        return FileResult(self.path, self.fixed.remaining if self.fixed else (), self.error)

    @property
    def changed(self) -> bool:
        return self.fixed is not None and self.fixed.changed


def fix_command(args: argparse.Namespace, work: Sequence[tuple[str, frozenset[str]]]) -> int:
    from gradlint import cli

    outcomes = []
    for path, codes in work:
        outcome = fix_path(path, codes, args.unsafe_fixes, args.stdin_filename or STDIN_NAME)
        outcomes.append(outcome)
        if args.diff or outcome.fixed is None:
            continue
        if path == STDIN:
            sys.stdout.write(outcome.fixed.text)  # the source, fixed or not, is the output, as ruff's
        elif outcome.changed:
            write_source(path, outcome.fixed.text)
    outcomes = with_project_findings(work, outcomes, written=not args.diff)
    fixed = sum(outcome.fixed.fixed for outcome in outcomes if outcome.fixed)
    unsafe_left = sum(outcome.fixed.unsafe_left for outcome in outcomes if outcome.fixed)
    hint = f" ({unsafe_left} more with --unsafe-fixes)" if unsafe_left else ""
    results = [outcome.result for outcome in outcomes]
    if args.diff:
        sys.stdout.write("".join(diff(outcome) for outcome in outcomes if outcome.changed))
        errors = [FileResult(result.path, error=result.error) for result in results if result.error]
        sys.stdout.write(cli.format_text(errors))
        print(f"{fixed} fixable {plural(fixed, 'finding')}{hint}", file=sys.stderr)
        if errors:
            return cli.EXIT_ERROR
        return cli.EXIT_FINDINGS if fixed and not args.exit_zero else cli.EXIT_CLEAN
    if STDIN not in [path for path, _ in work]:
        sources = {
            o.path: o.fixed.text
            for o in outcomes
            if o.fixed and o.fixed.remaining and not is_notebook(o.path)
        }
        if not cli.write_report(cli.render(args, results, sources), args.output_file):
            return cli.EXIT_ERROR
    remaining = sum(len(result.findings) for result in results)
    print(f"fixed {fixed} {plural(fixed, 'finding')}, {remaining} remaining{hint}", file=sys.stderr)
    return cli.exit_code(results, args.exit_zero)


def with_project_findings(
    work: Sequence[tuple[str, frozenset[str]]], outcomes: list[FileFix], written: bool
) -> list[FileFix]:
    """What remains in each file once the project is read: a finding whose lines span modules is
    found only with the modules it calls. Fixes edit one file at a time, so such a finding is left,
    and each one whose fix would have to edit another file is named."""
    from gradlint.batch import check_paths

    if not written or STDIN in [path for path, _ in work]:
        return outcomes
    remaining = {result.path: result for result, _ in check_paths(work, 1)}
    updated = []
    for outcome in outcomes:
        result = remaining.get(outcome.path)
        if outcome.fixed is None or result is None or result.error is not None:
            updated.append(outcome)
            continue
        for finding in result.findings:
            elsewhere = sorted({r.path for r in finding.related if r.path and r.path != outcome.path})
            if elsewhere and finding.code in FIXABLE:
                where = f"{outcome.path}:{finding.location.line}:{finding.location.col}"
                print(f"{where}: {finding.code} not fixed: its fix would edit {', '.join(elsewhere)}", file=sys.stderr)
        updated.append(replace(outcome, fixed=replace(outcome.fixed, remaining=result.findings)))
    return updated


def fix_path(path: str, codes: frozenset[str], unsafe: bool, stdin_name: str = STDIN_NAME) -> FileFix:
    name = display_name(path, stdin_name)
    try:
        data = read_data(path)
        text = decode_source(data)
        if is_notebook(name):
            return FileFix(name, text, fix_notebook(text, name, codes, unsafe))
        return FileFix(name, text, fix_source(text, name, codes, unsafe))
    except SourceError as error:
        return FileFix(name, "", None, error)
    except Exception as error:  # a bug in gradlint: say so for this file, fix the others
        return FileFix(name, "", None, SourceError(f"internal error: {type(error).__name__}: {error}"))


def write_source(path: str, text: str) -> None:
    """Write back in the file's own encoding, its byte-order mark kept."""
    with open(path, "rb") as file:
        data = file.read()
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    bom = UTF8_BOM if data.startswith(UTF8_BOM) else b""
    encoded = text.encode("utf-8" if encoding == "utf-8-sig" else encoding)
    with open(path, "wb") as file:
        file.write(bom + encoded)


def diff(outcome: FileFix) -> str:
    assert outcome.fixed is not None
    lines = difflib.unified_diff(
        outcome.before.splitlines(keepends=True),
        outcome.fixed.text.splitlines(keepends=True),
        fromfile=outcome.path,
        tofile=outcome.path,
    )
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


def plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"
