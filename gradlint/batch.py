"""Checking many files: each on its own, in worker processes when there are enough to share out.

Results come back in the order the paths were given, whichever worker finished first, so the
report of `-j 8` is the report of `-j 1`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from gradlint.checker import FileResult, SourceError, check_source
from gradlint.files import STDIN, display_name, read_source
from gradlint.notebooks import check_notebook, is_notebook

# Starting a worker costs about as much as checking a few ordinary files; below this many files
# per worker, a pool is slower than checking in this process.
FILES_PER_WORKER = 4

Checked = tuple[FileResult, str]  # a file's result, and its text when it has findings


def default_jobs() -> int:
    return os.cpu_count() or 1


def check_paths(work: Sequence[tuple[str, frozenset[str]]], jobs: int) -> list[Checked]:
    """`check_path` over each (path, codes), with up to `jobs` processes; results in `work`'s order."""
    workers = min(jobs, len(work) // FILES_PER_WORKER)
    # Standard input can only be read here, in the process that has it.
    shared = [index for index, (path, _) in enumerate(work) if path != STDIN]
    if workers < 2 or len(shared) < 2:
        return [check_path(path, codes) for path, codes in work]
    results: list[Checked | None] = [None] * len(work)
    try:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            paths = [work[index][0] for index in shared]
            codes = [work[index][1] for index in shared]
            chunk = max(1, len(shared) // (workers * 8))  # small enough that no worker idles long
            for index, result in zip(shared, pool.map(check_path, paths, codes, chunksize=chunk)):
                results[index] = result
    except (OSError, BrokenProcessPool):
        # No processes to be had here (a sandbox without semaphores), or a worker died: the files
        # are still checked, in this process.
        return [check_path(path, codes) for path, codes in work]
    return [
        result if result is not None else check_path(*work[index]) for index, result in enumerate(results)
    ]


def check_path(path: str, codes: Iterable[str]) -> Checked:
    """One file's result, and its text if it has findings (for the snippets under them).

    Never raises: one file that cannot be checked must not hide the findings in the others.
    """
    name = display_name(path)
    try:
        text = read_source(path)
        if is_notebook(path):  # its text is JSON: no source lines to show under a finding
            return FileResult(name, tuple(check_notebook(text, name, codes))), ""
        findings = tuple(check_source(text, name, codes))
        return FileResult(name, findings), text if findings else ""
    except SourceError as error:
        return FileResult(name, error=error), ""
    except Exception as error:  # a bug in gradlint: say so for this file, keep checking the others
        return FileResult(name, error=SourceError(f"internal error: {type(error).__name__}: {error}")), ""
