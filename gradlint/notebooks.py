"""Jupyter notebooks: the code cells, in order, checked as one program; findings point into cells.

A notebook's cells run in one namespace, so a `zero_grad()` in one cell and the batch loop in the
next are one training loop. The code cells are joined into one source with every line kept where
it was (IPython magics and shell escapes become placeholders of the same line count), checked by
`check_source`, and each location is mapped back to its cell and its line in that cell. Cells are
numbered from 1 by their position among *all* cells, markdown and raw included, as ruff and the
notebook front ends number them: `cell 4` is the fourth cell a user sees.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from gradlint.checker import SourceError, check_source, source_lines
from gradlint.core import Finding, Location, Related

NOTEBOOK_SUFFIX = ".ipynb"
# Cell magics whose body is still Python that runs; any other `%%` cell (bash, html, writefile...)
# is not Python and is left out.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug"})
# `!cmd`, `%magic`, `%%magic`, `?obj`, `obj?`, `obj??`, and assignments from them (`files = !ls`).
MAGIC_LINE = re.compile(r"^\s*(?:[!%?]|[\w.]+\s*\?\??\s*$|[\w.,\s\[\]()*]+=\s*[!%])")
# Messages name other lines ("at line 13", "(lines 10, 12)"): lines of the joined program, to be mapped.
LINES_IN_MESSAGE = re.compile(r"\blines? (\d+(?:, \d+)*)\b")


def is_notebook(path: str) -> bool:
    return path.endswith(NOTEBOOK_SUFFIX)


@dataclass(frozen=True)
class CodeCell:
    number: int  # 1-based among all cells, markdown and raw included
    lines: tuple[str, ...]  # as Python should read them: magics already replaced


@dataclass(frozen=True)
class NotebookSource:
    """The code cells joined into one program, and where each of its lines came from."""

    text: str
    origins: tuple[tuple[int, int], ...]  # program line i+1 -> (cell, line in cell)

    def cell_location(self, location: Location) -> Location:
        cell, line = self.origin(location.line)
        end_cell, end_line = self.origin(location.end_line)
        if end_cell != cell:  # a span cannot cross cells; keep its start only
            end_line, end_col = line, location.col
        else:
            end_col = location.end_col
        return Location(line, location.col, end_line, end_col, cell=cell)

    def cell_message(self, message: str) -> str:
        def in_cells(match: re.Match[str]) -> str:
            origins = [self.origin(int(number)) for number in match.group(1).split(", ")]
            cells = {cell for cell, _ in origins}
            if len(cells) == 1:
                lines = ", ".join(str(line) for _, line in origins)
                return f"line{'s' if len(origins) > 1 else ''} {lines} of cell {cells.pop()}"
            return ", ".join(f"line {line} of cell {cell}" for cell, line in origins)

        return LINES_IN_MESSAGE.sub(in_cells, message)

    def program_location(self, location: Location) -> Location | None:
        """The inverse of `cell_location`: where a location in a cell is in the joined program."""
        lines = {origin: number for number, origin in enumerate(self.origins, start=1)}
        start = lines.get((location.cell or 0, location.line))
        end = lines.get((location.cell or 0, location.end_line))
        if start is None or end is None:
            return None
        return Location(start, location.col, end, location.end_col)

    def origin(self, program_line: int) -> tuple[int, int]:
        if not self.origins:
            return 1, 1
        index = min(max(program_line, 1), len(self.origins)) - 1
        return self.origins[index]


def check_notebook(
    text: str, filename: str = "<notebook>", codes: Iterable[str] | None = None
) -> list[Finding]:
    """Findings for a notebook's JSON text, located by cell; `# noqa` works in cells."""
    source = notebook_source(code_cells(text))
    try:
        findings = check_source(source.text, filename, codes)
    except SourceError as error:
        cell, line = source.origin(error.line)
        raise SourceError(error.message, line, error.col, cell=cell) from None
    return sorted((in_cells(finding, source) for finding in findings), key=Finding.sort_key)


def in_cells(finding: Finding, source: NotebookSource) -> Finding:
    return replace(
        finding,
        message=source.cell_message(finding.message),
        location=source.cell_location(finding.location),
        related=tuple(
            Related(
                source.cell_location(related.location), source.cell_message(related.message), related.path
            )
            for related in finding.related
        ),
    )


def code_cells(text: str) -> list[CodeCell]:
    """The code cells of nbformat 4 JSON, magics replaced; a file that is not one is a SourceError."""
    try:
        document = json.loads(text)
    except ValueError as error:
        line, col = getattr(error, "lineno", 1), getattr(error, "colno", 1)
        raise SourceError(f"cannot parse notebook: invalid JSON: {error.args[0]}", line, col) from None
    cells = document.get("cells") if isinstance(document, dict) else None
    if not isinstance(cells, list):
        raise SourceError("cannot parse notebook: no `cells` list (not an nbformat 4 notebook)")
    if not is_python(document):
        return []
    return [
        CodeCell(number, python_lines(cell_text(cell)))
        for number, cell in enumerate(cells, start=1)
        if is_code_cell(cell)
    ]


def is_code_cell(cell: object) -> bool:
    return isinstance(cell, dict) and cell.get("cell_type") == "code"


def is_python(document: dict) -> bool:
    """An R or Julia notebook is not ours to read; one that does not say is taken as Python."""
    metadata = document.get("metadata")
    info = metadata.get("language_info") if isinstance(metadata, dict) else None
    name = info.get("name") if isinstance(info, dict) else None
    return not isinstance(name, str) or name.lower() in ("python", "python3", "ipython")


def cell_text(cell: dict) -> str:
    source = cell.get("source", "")
    if isinstance(source, list):  # nbformat stores a cell as a list of lines, or as one string
        return "".join(part for part in source if isinstance(part, str))
    return source if isinstance(source, str) else ""


def python_lines(text: str) -> tuple[str, ...]:
    """The cell's lines as Python: plain Python is untouched, IPython syntax becomes placeholders."""
    lines = source_lines(text)
    if lines and lines[0].startswith("%%"):
        magic = lines[0][2:].split(maxsplit=1)[0] if lines[0][2:].strip() else ""
        if magic not in PYTHON_CELL_MAGICS:
            return tuple("" for _ in lines)  # %%bash, %%writefile...: not Python, but keep the line count
        return ("pass", *python_lines("\n".join(lines[1:])))
    if parses("\n".join(lines)):
        return tuple(lines)  # `x = (a\n % b)` is Python: only rewrite a cell Python cannot read
    return tuple(without_magics(lines))


def without_magics(lines: Sequence[str]) -> list[str]:
    result: list[str] = []
    continued = False  # `!pip install \` goes on to the next line
    for line in lines:
        if continued or MAGIC_LINE.match(line):
            indent = line[: len(line) - len(line.lstrip())]
            result.append("" if continued else f"{indent}pass")
            continued = line.rstrip().endswith("\\")
        else:
            result.append(line)
    return result


def parses(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    return True


def notebook_source(cells: Sequence[CodeCell]) -> NotebookSource:
    lines: list[str] = []
    origins: list[tuple[int, int]] = []
    for cell in cells:
        for number, line in enumerate(cell.lines, start=1):
            lines.append(line)
            origins.append((cell.number, number))
    return NotebookSource("".join(line + "\n" for line in lines), tuple(origins))
