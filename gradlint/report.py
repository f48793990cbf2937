"""Turning results into what the user reads. Each format is a pure function: results in, text out."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from gradlint.checker import FileResult, source_lines
from gradlint.core import Finding, Location

ERROR_CODE = "GL000"
JSON_VERSION = 1

BOLD = "\x1b[1m"
RED = "\x1b[31m"
CYAN = "\x1b[36m"
RESET = "\x1b[0m"

Painter = Callable[[str, str], str]  # (text, style) -> text as the terminal should show it


def ordered(results: Sequence[FileResult]) -> list[FileResult]:
    """By path, so output does not depend on the order the paths were named or walked."""
    return sorted(results, key=lambda result: result.path)


def ordered_findings(result: FileResult) -> list[Finding]:
    return sorted(
        result.findings, key=lambda f: (f.location.cell or 0, f.location.line, f.location.col, f.code)
    )


def position(line: int, col: int, cell: int | None = None) -> str:
    """`line:col`, or `cell N:line:col` in a notebook, where lines count within the cell."""
    return f"{line}:{col}" if cell is None else f"cell {cell}:{line}:{col}"


def location_text(location: Location) -> str:
    return position(location.line, location.col, location.cell)


def format_text(
    results: Sequence[FileResult],
    color: bool = False,
    sources: Mapping[str, str] | None = None,
) -> str:
    """`path:line:col: CODE message` lines; with `sources`, each finding's line and a caret under it."""
    paint = _painter(color)
    lines: list[str] = []
    for result in ordered(results):
        if result.error is not None:
            error = result.error
            lines.append(
                f"{paint(result.path, BOLD)}:{position(error.line, error.col, error.cell)}: "
                f"{paint(ERROR_CODE, RED)} {error.message}"
            )
        source = (sources or {}).get(result.path)
        shown_lines = source_lines(source) if source is not None else None
        for finding in ordered_findings(result):
            lines.extend(_finding_lines(result.path, finding, paint, shown_lines))
    return "".join(line + "\n" for line in lines)


def _finding_lines(path: str, finding: Finding, paint: Painter, source: Sequence[str] | None) -> list[str]:
    where = finding.location
    lines = [f"{paint(path, BOLD)}:{location_text(where)}: {paint(finding.code, RED)} {finding.message}"]
    if source is not None and where.cell is None and 0 < where.line <= len(source):
        lines.extend(_snippet(source[where.line - 1], finding, paint))
    for related in finding.related:
        lines.append(
            f"    {related.path_or(path)}:{location_text(related.location)}: "
            f"{paint('note', CYAN)}: {related.message}"
        )
    return lines


def _snippet(source_line: str, finding: Finding, paint: Painter) -> list[str]:
    where = finding.location
    # Keep tabs so the caret lines up however the terminal expands them.
    indent = "".join(c if c == "\t" else " " for c in source_line[: where.col - 1])
    width = where.end_col - where.col if where.end_line == where.line else 1
    return [f"    {source_line}", f"    {indent}{paint('^' * max(width, 1), RED)}"]


def _painter(color: bool) -> Painter:
    if not color:
        return lambda text, style: text
    return lambda text, style: f"{style}{text}{RESET}"


def format_json(results: Sequence[FileResult]) -> str:
    findings = [
        _finding_json(result.path, finding)
        for result in ordered(results)
        for finding in ordered_findings(result)
    ]
    errors = [
        _with_cell(
            {
                "path": result.path,
                "line": result.error.line,
                "col": result.error.col,
                "message": result.error.message,
            },
            result.error.cell,
        )
        for result in ordered(results)
        if result.error is not None
    ]
    document = {"version": JSON_VERSION, "findings": findings, "errors": errors}
    return json.dumps(document, indent=2) + "\n"


def _finding_json(path: str, finding: Finding) -> dict:
    where = finding.location
    document = {
        "path": path,
        "line": where.line,
        "col": where.col,
        "end_line": where.end_line,
        "end_col": where.end_col,
        "code": finding.code,
        "name": finding.name,
        "message": finding.message,
        "related": [
            _with_cell(
                {"path": r.path_or(path), "line": r.location.line, "col": r.location.col, "message": r.message},
                r.location.cell,
            )
            for r in finding.related
        ],
    }
    return _with_cell(document, where.cell)


def _with_cell(document: dict, cell: int | None) -> dict:
    """Notebook locations add `"cell"` (1-based, among all cells); `line` stays the line in that cell."""
    return document if cell is None else {**document, "cell": cell}


def format_github(results: Sequence[FileResult]) -> str:
    """GitHub Actions workflow commands: each finding becomes an annotation on the pull request's diff."""
    lines = []
    for result in ordered(results):
        if result.error is not None:
            error = result.error
            where = Location(error.line, error.col, error.line, error.col, error.cell)
            lines.append(_github_command(result.path, where, f"{ERROR_CODE} not checked", error.message))
        for finding in ordered_findings(result):
            notes = "".join(
                f"\n{r.path_or(result.path)}:{location_text(r.location)}: note: {r.message}"
                for r in finding.related
            )
            title = f"{finding.code} {finding.name}"
            lines.append(_github_command(result.path, finding.location, title, finding.message + notes))
    return "".join(line + "\n" for line in lines)


def _github_command(path: str, where: Location, title: str, message: str) -> str:
    properties = {"file": path}
    if where.cell is None:  # a notebook cell's lines are not lines of the .ipynb file GitHub shows
        properties |= {
            "line": str(where.line),
            "col": str(where.col),
            "endLine": str(where.end_line),
            "endColumn": str(where.end_col),
        }
    else:
        message = f"{location_text(where)}: {message}"
    properties["title"] = title
    fields = ",".join(f"{key}={_github_escape(value, property=True)}" for key, value in properties.items())
    return f"::error {fields}::{_github_escape(message)}"


def _github_escape(text: str, property: bool = False) -> str:
    """Workflow commands end at a newline and split properties on `,` and `:`; `%` escapes them all."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if property else text


def format_statistics(results: Sequence[FileResult]) -> str:
    """How many of each code, most frequent first: `3  GL101  clear-less-often-than-step`."""
    counts = Counter((finding.code, finding.name) for result in results for finding in result.findings)
    counts[(ERROR_CODE, "not-checked")] += sum(1 for result in results if result.error is not None)
    counts = +counts  # drops the zero count when every file could be checked
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    width = max((len(str(count)) for count in counts.values()), default=0)
    return "".join(f"{count:>{width}}  {code}  {name}\n" for (code, name), count in rows)


def format_summary(results: Sequence[FileResult]) -> str:
    """One line for `--quiet`: how many findings in how many files; nothing when there are none."""
    findings = sum(len(result.findings) for result in results)
    if not findings:
        return ""
    files = sum(1 for result in results if result.findings)
    return f"{_plural(findings, 'finding')} in {_plural(files, 'file')}\n"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
