"""Results of files already checked, so a re-run over an unchanged tree reads instead of analysing.

An entry's name is a hash of everything its result depends on: the file's bytes, whether it is a
notebook, the codes that apply to it, and the checker itself (gradlint's version, the text of its
modules, the Python that parses). A change to any of them names another entry, so nothing is ever
invalidated in place. Entries are written to a temporary file and renamed, so a reader sees a whole
entry or none; one that cannot be read or makes no sense is treated as missing.

Beside the entries, one index per checker (as ruff keeps one per package) maps each file checked to
its stat when it was checked and the entry of its result, or CLEAN: a re-run answers a file whose
stat has not changed without reading it. The index only saves reading; where a stat differs, the
file's bytes name its entry as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache

from gradlint import __version__
from gradlint.checker import SourceError
from gradlint.core import Finding, Location, Related

CACHE_DIRECTORY = ".gradlint_cache"
CACHE_DIRECTORY_VARIABLE = "GRADLINT_CACHE_DIR"  # like RUFF_CACHE_DIR: put it elsewhere
FORMAT = 2  # bump when an entry's layout changes
PACKAGE = os.path.dirname(os.path.realpath(__file__))

# A file modified within this long before the run started may be modified again within the same
# tick of its file system's clock (two seconds on FAT) and keep its stat: git calls such entries
# racy. Its stat is not recorded; the next run reads it again.
RACY_SECONDS = 2
CLEAN = "clean"  # in the index, for a file with neither finding nor error: no entry to read
ENTRY_KEY = re.compile(r"[0-9a-f]{64}")

Result = tuple[tuple[Finding, ...], "SourceError | None"]
Stamp = tuple[int, int, str]  # st_mtime_ns, st_size, and a digest of the codes that applied


@dataclass(frozen=True)
class Cache:
    directory: str
    index_file: str

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
            write_json_atomically(os.path.join(self.directory, key), result_to_json(result))
        except OSError:
            pass

    def load_index(self) -> StatIndex:
        return StatIndex.load(self.index_file)


class StatIndex:
    """What each file's stat was when it was last checked, and what its result is, for one run to
    read once and write once (the parent process's, whatever the number of workers)."""

    def __init__(self, path: str, entries: dict[str, list]) -> None:
        self.path = path
        self.entries = entries
        self.changed = False
        self.recordable_before_ns = time.time_ns() - RACY_SECONDS * 1_000_000_000

    @classmethod
    def load(cls, path: str) -> StatIndex:
        """The index at `path`; empty if there is none or it cannot be read."""
        try:
            with open(path, encoding="utf-8") as file:
                document = json.load(file)
            entries = document["entries"]
        except (OSError, ValueError, KeyError, TypeError):
            entries = {}
        return cls(path, entries if isinstance(entries, dict) else {})

    def lookup(self, path: str, stamp: Stamp) -> str | None:
        """The key of the entry holding `path`'s result, or CLEAN; None unless the stamps match."""
        entry = self.entries.get(os.path.abspath(path))
        if not isinstance(entry, list) or len(entry) != 4 or tuple(entry[:3]) != stamp:
            return None
        key = entry[3]
        return key if key == CLEAN or (isinstance(key, str) and ENTRY_KEY.fullmatch(key)) else None

    def record(self, path: str, stamp: Stamp, key: str) -> None:
        if stamp[0] >= self.recordable_before_ns:
            return
        name = os.path.abspath(path)
        entry = [*stamp, key]
        if self.entries.get(name) != entry:
            self.entries[name] = entry
            self.changed = True

    def forget(self, path: str) -> None:
        if self.entries.pop(os.path.abspath(path), None) is not None:
            self.changed = True

    def save(self) -> None:
        """Best effort, as `Cache.store`; entries of files this run did not check are kept."""
        if not self.changed:
            return
        try:
            write_json_atomically(self.path, {"entries": self.entries})
        except OSError:
            pass


def stamp_of(path: str, codes: frozenset[str]) -> Stamp | None:
    """None when `path` is no regular file: reading it will say why, in its own result."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(status.st_mode):
        return None
    return status.st_mtime_ns, status.st_size, codes_digest(codes)


@lru_cache(maxsize=64)
def codes_digest(codes: frozenset[str]) -> str:
    return hashlib.sha256(",".join(sorted(codes)).encode()).hexdigest()[:16]


def write_json_atomically(path: str, document: object) -> None:
    """Through a temporary file renamed over `path`, so a reader sees the whole document or none."""
    import tempfile  # with shutil and random, 5 ms: only for a run that writes (a warm one writes nothing)

    descriptor, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(document, file, separators=(",", ":"))
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def cache_for(config_path: str | None) -> Cache:
    """The cache of the project: beside its config file, else in the current directory."""
    root = os.path.dirname(os.path.abspath(config_path)) if config_path else os.getcwd()
    base = os.environ.get(CACHE_DIRECTORY_VARIABLE) or os.path.join(root, CACHE_DIRECTORY)
    mark_directory(base)
    # Named by the checker, so a gradlint that could answer otherwise never trusts this one's index.
    index_file = os.path.join(base, f"index-v{FORMAT}-{checker_fingerprint()[:32]}.json")
    return Cache(os.path.join(base, f"v{FORMAT}"), index_file)


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
    for module in package_modules():
        digest.update(module.encode() + b"\0")
        with open(os.path.join(PACKAGE, module), "rb") as file:
            digest.update(file.read())
    return digest.hexdigest()


def package_modules() -> list[str]:
    """gradlint's `.py` files, relative to the package, in a stable order."""
    return sorted(
        os.path.relpath(os.path.join(root, name), PACKAGE)
        for root, _, files in os.walk(PACKAGE)
        for name in files
        if name.endswith(".py")
    )


def result_to_json(result: Result) -> dict:
    findings, error = result
    return {
        "findings": [
            {
                "code": finding.code,
                "name": finding.name,
                "message": finding.message,
                "location": location_to_json(finding.location),
                "related": [[location_to_json(r.location), r.message, r.path] for r in finding.related],
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
            tuple(
                Related(location_from_json(where), str(message), None if path is None else str(path))
                for where, message, path in item["related"]
            ),
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
