"""Results of files already checked, so a re-run over an unchanged tree reads instead of analysing.

An entry's name is a hash of everything its result depends on: the file's bytes, whether it is a
notebook, the codes that apply to it, and the checker itself (gradlint's version, the text of its
modules, the Python that parses). A change to any of them names another entry, so nothing is ever
invalidated in place. Entries are written to a temporary file and renamed, so a reader sees a whole
entry or none; one that cannot be read or makes no sense is treated as missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from gradlint import __version__
from gradlint.checker import SourceError
from gradlint.core import Finding, Location, Related

CACHE_DIRECTORY = ".gradlint_cache"
CACHE_DIRECTORY_VARIABLE = "GRADLINT_CACHE_DIR"  # like RUFF_CACHE_DIR: put it elsewhere
FORMAT = 1  # bump when an entry's layout changes

Result = tuple[tuple[Finding, ...], "SourceError | None"]


@dataclass(frozen=True)
class Cache:
    directory: str

    def key(self, data: bytes, codes: Iterable[str], notebook: bool) -> str:
        digest = hashlib.sha256(checker_fingerprint().encode())
        digest.update(f"\0{','.join(sorted(codes))}\0{notebook}\0".encode())
        digest.update(data)
        return digest.hexdigest()

    def load(self, key: str) -> Result | None:
        try:
            with open(os.path.join(self.directory, key), encoding="utf-8") as file:
                return result_from_json(json.load(file))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def store(self, key: str, result: Result) -> None:
        """Best effort: a cache that cannot be written only makes the next run slower."""
        try:
            os.makedirs(self.directory, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            try:
                with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                    json.dump(result_to_json(result), file)
                os.replace(temporary, os.path.join(self.directory, key))
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError:
            pass


def cache_for(config_path: str | None) -> Cache:
    """The cache of the project: beside its config file, else in the current directory."""
    root = os.path.dirname(os.path.abspath(config_path)) if config_path else os.getcwd()
    base = os.environ.get(CACHE_DIRECTORY_VARIABLE) or os.path.join(root, CACHE_DIRECTORY)
    mark_directory(base)
    return Cache(os.path.join(base, f"v{FORMAT}"))


def mark_directory(base: str) -> None:
    """Tell git and backup tools the directory holds nothing worth keeping, as ruff's cache does."""
    try:
        if os.path.isdir(base):
            return
        os.makedirs(base, exist_ok=True)
        with open(os.path.join(base, ".gitignore"), "w", encoding="utf-8") as file:
            file.write("# Created by gradlint\n*\n")
        with open(os.path.join(base, "CACHEDIR.TAG"), "w", encoding="utf-8") as file:
            file.write("Signature: 8a477f597d28d172789f06886806bc55\n# gradlint's cache\n")
    except OSError:
        pass


@cache
def checker_fingerprint() -> str:
    """gradlint's version, the text of its own modules and the Python version: an edit to a rule
    in a development checkout changes results as surely as a new release does."""
    digest = hashlib.sha256(f"{__version__}\0{sys.version}\0".encode())
    package = Path(__file__).resolve().parent
    for module in sorted(package.rglob("*.py")):
        digest.update(str(module.relative_to(package)).encode() + b"\0")
        digest.update(module.read_bytes())
    return digest.hexdigest()


def result_to_json(result: Result) -> dict:
    findings, error = result
    return {
        "findings": [
            {
                "code": finding.code,
                "name": finding.name,
                "message": finding.message,
                "location": location_to_json(finding.location),
                "related": [[location_to_json(r.location), r.message] for r in finding.related],
            }
            for finding in findings
        ],
        "error": None if error is None else [error.message, error.line, error.col, error.cell],
    }


def result_from_json(document: dict) -> Result:
    findings = tuple(
        Finding(
            str(item["code"]),
            str(item["name"]),
            str(item["message"]),
            location_from_json(item["location"]),
            tuple(Related(location_from_json(where), str(message)) for where, message in item["related"]),
        )
        for item in document["findings"]
    )
    error = document["error"]
    if error is None:
        return findings, None
    message, line, col, cell = error
    return findings, SourceError(str(message), int(line), int(col), None if cell is None else int(cell))


def location_to_json(location: Location) -> list:
    return [location.line, location.col, location.end_line, location.end_col, location.cell]


def location_from_json(fields: list) -> Location:
    line, col, end_line, end_col, cell = fields
    return Location(int(line), int(col), int(end_line), int(end_col), None if cell is None else int(cell))
