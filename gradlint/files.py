"""Which files a command line names, and reading one of them into text."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterable, Iterator

from gradlint.checker import SourceError, decode_source

STDIN = "-"
STDIN_NAME = "<stdin>"
# Directories that hold other people's code or generated files; checking them is slow and noisy.
SKIPPED_DIRECTORIES = frozenset({"__pycache__", "node_modules", "site-packages"})
SOURCE_SUFFIXES = (".py", ".ipynb")  # `.ipynb_checkpoints` copies are skipped as a hidden directory


def expand_paths(paths: Iterable[str]) -> list[str]:
    """Files as named, directories searched for `*.py` and `*.ipynb`; each path once, in a stable order."""
    expanded: dict[str, None] = {}
    for path in paths:
        if path != STDIN and os.path.isdir(path):
            expanded.update(dict.fromkeys(sorted(python_files_under(path))))
        else:
            # A missing path is kept: reading it gives the user a one-line error naming it.
            expanded[path] = None
    return list(expanded)


def python_files_under(directory: str) -> Iterator[str]:
    # followlinks=False: a symlinked directory is not entered, so a link back up cannot loop forever.
    for root, directories, files in os.walk(directory, followlinks=False):
        directories[:] = [d for d in directories if not is_skipped_directory(os.path.join(root, d))]
        for name in files:
            path = os.path.normpath(os.path.join(root, name))  # `check .` shows `a.py`, not `./a.py`
            # A FIFO or socket named *.py would block or fail on read; only plain files are sources.
            if name.endswith(SOURCE_SUFFIXES) and os.path.isfile(path):
                yield path


def is_skipped_directory(path: str) -> bool:
    name = os.path.basename(path)
    if name.startswith(".") or name in SKIPPED_DIRECTORIES:
        return True
    return os.path.isfile(os.path.join(path, "pyvenv.cfg"))  # a virtualenv, whatever it is called


def display_name(path: str) -> str:
    return STDIN_NAME if path == STDIN else path


def read_source(path: str) -> str:
    """The text of `path` (or of stdin for `-`); any reason it cannot be had becomes a SourceError."""
    return decode_source(read_stdin() if path == STDIN else read_file(path))


def read_file(path: str) -> bytes:
    try:
        # Opening a FIFO blocks until someone writes to it, so look before opening.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise SourceError("cannot read: not a regular file")
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise SourceError(f"cannot read: {error.strerror or error}") from None


def read_stdin() -> bytes:
    if sys.stdin is None:
        raise SourceError("cannot read: standard input is closed")
    try:
        return sys.stdin.buffer.read()
    except (OSError, ValueError) as error:
        raise SourceError(f"cannot read: {error}") from None
