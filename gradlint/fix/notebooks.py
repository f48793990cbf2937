"""Fixing a notebook: fix its code cells as the one program they make, then write each cell back.

The cells are joined as `gradlint.notebooks` joins them for checking, fixed as one source, and the
fixed program is split back into cells by comparing its lines with the old ones: an unchanged line
keeps its cell (and its text as written, IPython magics included), an inserted line goes to the
cell of the line before it. Only the `source` of a changed cell is rewritten; outputs, metadata and
every other cell are left as they were. A fix that would edit a magic's line, or join two cells, is
not applied.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import replace

from gradlint.checker import SourceError, source_lines
from gradlint.core import Finding
from gradlint.fix.engine import FindingFix, Fixed, fix_finding, fix_source
from gradlint.notebooks import CodeCell, cell_text, check_notebook, code_cells, is_code_cell, notebook_source

INDENT = re.compile(r"\n( +)\"")


def fix_notebook(
    text: str, filename: str = "<notebook>", codes: Iterable[str] | None = None, unsafe: bool = False
) -> Fixed:
    codes = None if codes is None else tuple(codes)
    cells = code_cells(text)  # raises SourceError for what is not a notebook
    source = notebook_source(cells)
    try:
        fixed = fix_source(source.text, filename, codes, unsafe)
    except SourceError:
        return Fixed(text, 0, tuple(check_notebook(text, filename, codes)))
    new_text = with_program(text, cells, fixed.text) if fixed.changed else None
    if new_text is None:
        return Fixed(text, 0, tuple(check_notebook(text, filename, codes)), fixed.unsafe_left)
    return Fixed(new_text, fixed.fixed, tuple(check_notebook(new_text, filename, codes)), fixed.unsafe_left)


def fix_notebook_finding(
    text: str, finding: Finding, filename: str = "<notebook>", codes: Iterable[str] | None = None
) -> FindingFix | None:
    """The notebook with only `finding` (located in its cell) fixed, as `fix_finding` fixes a source."""
    cells = code_cells(text)
    source = notebook_source(cells)
    location = source.program_location(finding.location)
    if location is None:
        return None
    fixed = fix_finding(source.text, replace(finding, location=location), filename, codes)
    new_text = with_program(text, cells, fixed.text) if fixed is not None else None
    return FindingFix(new_text, fixed.safe) if fixed is not None and new_text is not None else None


def with_program(text: str, cells: list[CodeCell], program: str) -> str | None:
    """The notebook `text` with its code cells rewritten to make `program`; None when a change
    cannot be placed in a cell."""
    document = json.loads(text)
    raw = [cell for cell in document["cells"] if is_code_cell(cell)]
    written = [source_lines(cell_text(cell)) for cell in raw]
    python = [list(cell.lines) for cell in cells]
    new_cells = split_into_cells(notebook_source(cells).text, program, python, written)
    if new_cells is None:
        return None
    for cell, old, new in zip(raw, written, new_cells):
        if new != old:
            cell["source"] = cell_source(new, cell.get("source"))
    return dump_like(document, text)


def split_into_cells(
    old_program: str, new_program: str, python: list[list[str]], written: list[list[str]]
) -> list[list[str]] | None:
    """Each cell's new lines (as written: magics kept), or None when a change cannot be placed."""
    origins = [(cell, line) for cell, lines in enumerate(python) for line in range(len(lines))]
    old_lines, new_lines = old_program.splitlines(), new_program.splitlines()
    cells: list[list[str]] = [[] for _ in python]
    opcodes = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal":
            for i in range(i1, i2):
                cell, line = origins[i]
                cells[cell].append(written[cell][line])
            continue
        touched = [origins[i] for i in range(i1, i2)]
        if any(python[cell][line] != written[cell][line] for cell, line in touched):
            return None  # the line of a magic: not Python we may rewrite
        if tag == "delete":
            continue
        if len({cell for cell, _ in touched}) > 1 or not origins:
            return None
        cell = touched[0][0] if touched else origins[max(i1 - 1, 0)][0]
        cells[cell].extend(new_lines[j1:j2])
    return cells


def cell_source(lines: list[str], original: object) -> list[str] | str:
    """The cell's text in the form it had: nbformat's list of lines, or one string."""
    ends_with_newline = (cell_text({"source": original}) if original is not None else "").endswith("\n")
    text = "\n".join(lines) + ("\n" if ends_with_newline else "")
    if isinstance(original, str):
        return text
    return text.splitlines(keepends=True)


def dump_like(document: dict, original: str) -> str:
    """JSON laid out as the file was (nbformat writes an indent of 1 and keeps non-ASCII as is)."""
    match = INDENT.search(original)
    indent = len(match.group(1)) if match else 1
    text = json.dumps(document, indent=indent, ensure_ascii=False)
    return text + "\n" if original.endswith("\n") else text
