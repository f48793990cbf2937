"""Which files a command line names, and reading one of them into text."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterable, Iterator

from gradlint.checker import SourceError, decode_source
from gradlint.globs import PatternSet, enclosing_gitignores, ignored, pattern_set, read_gitignore

STDIN = "-"
STDIN_NAME = "<stdin>"
# Hidden directories and those that hold other people's code or generated files: checking them is
# slow and noisy. A config's `exclude` replaces this list, `extend-exclude` adds to it.
DEFAULT_EXCLUDE = (".*", "__pycache__", "node_modules", "site-packages")
SOURCE_SUFFIXES = (".py", ".ipynb")  # `.ipynb_checkpoints` copies are skipped as a hidden directory


def expand_paths(
    paths: Iterable[str],
    exclude: PatternSet | None = None,
    force_exclude: bool = False,
    stdin_name: str | None = None,
) -> list[str]:
    """Files as named, directories searched for `*.py` and `*.ipynb`; each path once, in a stable order.

    `exclude` and `.gitignore` apply to what walking a directory finds. A path named directly is
    checked whatever `exclude` says, unless `force_exclude`: pre-commit and editors name every file
    themselves, and an excluded file must stay excluded then (standard input by its `stdin_name`)."""
    exclude = exclude if exclude is not None else pattern_set(os.curdir, DEFAULT_EXCLUDE)
    expanded: dict[str, None] = {}
    for path in paths:
        if force_exclude and is_excluded(stdin_name if path == STDIN else path, exclude):
            continue
        if path != STDIN and os.path.isdir(path):
            expanded.update(dict.fromkeys(sorted(python_files_under(path, exclude))))
        else:
            # A missing path is kept: reading it gives the user a one-line error naming it.
            expanded[path] = None
    return list(expanded)


def is_excluded(path: str | None, exclude: PatternSet) -> bool:
    """`path`, or a directory it lies in, matches `exclude`; standard input with no name never does."""
    return path is not None and exclude.covers(path)


def python_files_under(directory: str, exclude: PatternSet) -> Iterator[str]:
    gitignores = {directory: with_gitignore_of(directory, enclosing_gitignores(directory))}
    # followlinks=False: a symlinked directory is not entered, so a link back up cannot loop forever.
    for root, directories, files in os.walk(directory, followlinks=False):
        rules = gitignores.pop(root)
        directories[:] = [
            d for d in directories if not is_skipped(os.path.join(root, d), True, exclude, rules)
        ]
        for name in directories:
            gitignores[os.path.join(root, name)] = with_gitignore_of(os.path.join(root, name), rules)
        for name in files:
            path = os.path.normpath(os.path.join(root, name))  # `check .` shows `a.py`, not `./a.py`
            # A FIFO or socket named *.py would block or fail on read; only plain files are sources.
            if name.endswith(SOURCE_SUFFIXES) and os.path.isfile(path):
                if not is_skipped(path, False, exclude, rules):
                    yield path


def with_gitignore_of(directory: str, outer: list[PatternSet]) -> list[PatternSet]:
    own = read_gitignore(directory)
    return outer if own is None else [*outer, own]


def is_skipped(path: str, is_dir: bool, exclude: PatternSet, gitignores: list[PatternSet]) -> bool:
    if exclude.decides(path, is_dir) or ignored(path, is_dir, gitignores):
        return True
    return is_dir and os.path.isfile(os.path.join(path, "pyvenv.cfg"))  # a virtualenv, whatever its name


def display_name(path: str, stdin_name: str = STDIN_NAME) -> str:
    return stdin_name if path == STDIN else path


def read_source(path: str) -> str:
    """The text of `path` (or of stdin for `-`); any reason it cannot be had becomes a SourceError."""
    return decode_source(read_data(path))


def read_data(path: str) -> bytes:
    """The bytes of `path` (or of stdin for `-`), for a SourceError as `read_source`."""
    return read_stdin() if path == STDIN else read_file(path)


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
