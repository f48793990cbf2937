"""What an editor asks of an open buffer, in gradlint's own terms: no protocol, no pygls.

The language server (`server.py`) is a thin shell over this module, as the CLI is over `batch`: the
same `check_text` gives the findings, the same fixers give the edits. What is here is what only an
editor needs: the settings of each buffer's own project, kept until its pyproject.toml changes; a
notebook's cells, as the editor holds them, made into the JSON `check_notebook` reads; and the
edits that turn one text into another, as lines.
"""

from __future__ import annotations

import difflib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from gradlint.batch import check_text
from gradlint.checker import LINE_END, NOQA, FileResult, SourceError
from gradlint.config import Config, ConfigError, find_config, load_config
from gradlint.files import is_excluded
from gradlint.notebooks import cell_text

ConfigStamp = tuple[int, int]  # st_mtime_ns and st_size of a pyproject.toml


class ProjectSettings:
    """`[tool.gradlint]` of each file's project, read again when that pyproject.toml changes.

    A workspace may hold several projects: each file gets the config nearest above it, as
    `gradlint check` would give it. Analyses run in threads, so the cache is shared under a lock."""

    def __init__(self) -> None:
        self._configs: dict[str, tuple[ConfigStamp, Config]] = {}
        self._lock = threading.Lock()

    def config_for(self, path: str | None) -> Config:
        """Raises ConfigError for a config gradlint cannot use."""
        if path is None:  # a buffer never saved: no project, the defaults
            return Config()
        found = find_config(os.path.dirname(os.path.abspath(path)))
        if found is None:
            return Config()
        stamp = file_stamp(found)
        with self._lock:
            cached = self._configs.get(found)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        config = load_config(found)
        with self._lock:
            self._configs[found] = (stamp, config)
        return config

    def codes_for(self, path: str | None) -> frozenset[str] | None:
        """The codes that apply to `path`; None when its project's `exclude` covers it (as
        `--force-exclude` would: the editor names the file itself). Raises ConfigError."""
        config = self.config_for(path)
        if path is not None and config.exclude is not None and is_excluded(path, config.exclude):
            return None
        return frozenset(config.codes_for(path, config.selection.apply(None)))


def file_stamp(path: str) -> ConfigStamp:
    try:
        status = os.stat(path)
    except OSError:
        return (0, -1)  # gone: load_config will say so
    return (status.st_mtime_ns, status.st_size)


def check_buffer(
    text: str, path: str | None, name: str, notebook: bool, settings: ProjectSettings
) -> FileResult:
    """The buffer's findings as `gradlint check` would report the file; never raises."""
    try:
        codes = settings.codes_for(path)
    except ConfigError as unusable:
        return FileResult(name, error=SourceError(f"cannot use the config: {unusable}"))
    if codes is None:
        return FileResult(name)
    (findings, error), _ = check_text(text, name, codes, notebook)
    return FileResult(name, findings, error)


@dataclass(frozen=True)
class Cell:
    kind: str  # as nbformat names it: "code", "markdown" or "raw"
    text: str


def notebook_json(cells: Sequence[Cell], metadata: object = None) -> str:
    """nbformat 4 JSON of the cells as the editor holds them: what `check_notebook` and
    `fix_notebook` read from a file, so a notebook in an editor is checked as on disk."""
    document = {
        "cells": [
            {"cell_type": cell.kind, "metadata": {}, "source": cell.text}
            | ({"outputs": [], "execution_count": None} if cell.kind == "code" else {})
            for cell in cells
        ],
        "metadata": metadata if isinstance(metadata, dict) else {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(document)


def notebook_cell_texts(text: str) -> list[str]:
    """Each cell's source from nbformat JSON (what `fix_notebook` returns), in order."""
    return [cell_text(cell) for cell in json.loads(text)["cells"]]


@dataclass(frozen=True)
class LineEdit:
    """Lines `start` to `end` (0-based, end excluded) of the old text become `text`."""

    start: int
    end: int
    text: str


def lines_with_ends(text: str) -> list[str]:
    """The lines of `text` with their line ends, split where Python (and LSP) split them: not at
    the form feeds and U+2028 that str.splitlines also splits at."""
    lines = []
    start = 0
    for match in LINE_END.finditer(text):
        lines.append(text[start : match.end()])
        start = match.end()
    if start < len(text):
        lines.append(text[start:])
    return lines


def line_edits(old: str, new: str) -> list[LineEdit]:
    """The smallest runs of whole lines to replace to turn `old` into `new`: an edit that leaves the
    unchanged lines alone keeps the user's cursor, marks and folds where they were."""
    old_lines, new_lines = lines_with_ends(old), lines_with_ends(new)
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    return [
        LineEdit(i1, i2, "".join(new_lines[j1:j2]))
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    ]


@dataclass(frozen=True)
class Insertion:
    """On one line, the characters `start` to `end` (0-based code points) become `text`."""

    start: int
    end: int
    text: str


def noqa_insertion(line: str, code: str) -> Insertion | None:
    """What makes `line` silence `code`: a `# noqa: CODE` comment, or the code added to the one there.

    None when no comment can go there (the line continues with a backslash) or a bare `# noqa`
    silences every code already."""
    body = line.rstrip()
    match = NOQA.search(line)
    if match is None:
        if body.endswith("\\"):
            return None
        return Insertion(len(body), len(line), f"  # noqa: {code}")
    if match.group("codes") is None:
        return None
    end = match.end("codes")
    return Insertion(end, end, f", {code}")
