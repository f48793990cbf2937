"""Checking many files: each on its own, from the cache when it can, in worker processes when there
are enough to share out.

Results come back in the order the paths were given, whichever worker finished first, so the
report of `-j 8` is the report of `-j 1`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence

from gradlint.cache import CLEAN, Cache, Result, Stamp, StatIndex, stamp_of
from gradlint.checker import FileResult, SourceError, check_source, decode_source, may_have_findings
from gradlint.files import STDIN, STDIN_NAME, display_name, read_data, read_source
from gradlint.notebooks import check_notebook, is_notebook

# Starting a worker costs about as much as checking a few ordinary files; below this many files
# per worker, a pool is slower than checking in this process.
FILES_PER_WORKER = 4

Checked = tuple[FileResult, str]  # a file's result, and its text when it has findings


def default_jobs() -> int:
    return os.cpu_count() or 1


def check_paths(
    work: Sequence[tuple[str, frozenset[str]]],
    jobs: int,
    cache: Cache | None = None,
    stdin_name: str = STDIN_NAME,
) -> list[Checked]:
    """`check_path` over each (path, codes), with up to `jobs` processes; results in `work`'s order.
    Standard input is reported, and read as a notebook or not, by `stdin_name`.

    With a cache, a file whose stat is the one its index entry holds is answered without reading
    it (but for the snippets under its findings)."""
    if cache is None:
        return [checked for checked, _ in check_in_processes(work, jobs, None, stdin_name)]
    index = cache.load_index()
    stamps = [None if path == STDIN else stamp_of(path, codes) for path, codes in work]
    answers = [answer_from_index(path, stamp, index, cache) for (path, _), stamp in zip(work, stamps)]
    unanswered = [item for item, answer in zip(work, answers) if answer is None]
    checked = iter(check_in_processes(unanswered, jobs, cache, stdin_name))
    results = []
    for (path, _), stamp, answer in zip(work, stamps, answers):
        if answer is None:
            answer, key = next(checked)
            if stamp is not None and key is not None:
                index.record(path, stamp, key)
        results.append(answer)
    index.save()
    return results


def answer_from_index(path: str, stamp: Stamp | None, index: StatIndex, cache: Cache) -> Checked | None:
    """`path`'s result as its index entry says, if the entry is for this stamp and still there."""
    key = index.lookup(path, stamp) if stamp is not None else None
    if key is None:
        return None
    if key == CLEAN:
        return FileResult(path), ""
    result = cache.load(key)
    if result is None:
        return None
    findings, problem = result
    if not findings or is_notebook(path):
        return FileResult(path, findings, problem), ""
    try:
        return FileResult(path, findings, problem), read_source(path)
    except SourceError:
        return None  # gone since its stat was taken: checking it will say so


def check_in_processes(
    work: Sequence[tuple[str, frozenset[str]]], jobs: int, cache: Cache | None, stdin_name: str = STDIN_NAME
) -> list[tuple[Checked, str | None]]:
    """`check_path` over each (path, codes), in this process or in up to `jobs` workers."""
    workers = min(jobs, len(work) // FILES_PER_WORKER)
    # Standard input can only be read here, in the process that has it.
    shared = [index for index, (path, _) in enumerate(work) if path != STDIN]
    if workers < 2 or len(shared) < 2:
        return [check_path(path, codes, cache, stdin_name) for path, codes in work]
    # Here, not at the top: loading the pool's machinery costs more than checking a small tree.
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    results: list[tuple[Checked, str | None] | None] = [None] * len(work)
    try:
        # Largest first, in small chunks: a few long files then cannot all land on one worker
        # while the others finish the short ones and wait.
        shared.sort(key=lambda index: -file_size(work[index][0]))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            paths = [work[index][0] for index in shared]
            codes = [work[index][1] for index in shared]
            chunk = max(1, len(shared) // (workers * 32))
            checked = pool.map(check_path, paths, codes, itertools.repeat(cache), chunksize=chunk)
            for index, result in zip(shared, checked):
                results[index] = result
    except (OSError, BrokenProcessPool):
        # No processes to be had here (a sandbox without semaphores), or a worker died: the files
        # are still checked, in this process.
        return [check_path(path, codes, cache, stdin_name) for path, codes in work]
    return [result or check_path(*work[index], cache, stdin_name) for index, result in enumerate(results)]


def file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0  # reading it will say why, in its own result


def check_path(
    path: str, codes: Iterable[str], cache: Cache | None = None, stdin_name: str = STDIN_NAME
) -> tuple[Checked, str | None]:
    """One file's result and its text if it has findings (for the snippets under them), and what
    the stat index may say of it: the key of its cache entry, CLEAN, or None for nothing.

    Never raises: one file that cannot be checked must not hide the findings in the others.
    """
    name = display_name(path, stdin_name)
    try:
        data = read_data(path)
    except SourceError as error:
        return (FileResult(name, error=error), ""), None
    notebook = is_notebook(name)
    if not notebook and not may_have_findings(data, codes):
        return (FileResult(name), ""), CLEAN  # before the cache: hashing the file would cost more than this
    key = cache.key(data, codes, notebook) if cache is not None else ""
    result = cache.load(key) if cache is not None else None
    known = True
    if result is None:
        result, known = check_data(data, name, codes, notebook)
        if cache is not None and known:
            cache.store(key, result)
    findings, problem = result
    # A notebook's text is JSON: no source lines to show under a finding.
    text = decode_source(data) if findings and not notebook else ""
    checked = FileResult(name, findings, problem), text
    if cache is None or not known:
        return checked, None
    return checked, key if findings or problem is not None else CLEAN


def check_data(data: bytes, name: str, codes: Iterable[str], notebook: bool) -> tuple[Result, bool]:
    """The findings or the error, and whether they are the file's own (not a bug in gradlint)."""
    try:
        text = decode_source(data)
    except SourceError as error:
        return ((), error), True
    return check_text(text, name, codes, notebook)


def check_text(text: str, name: str, codes: Iterable[str], notebook: bool) -> tuple[Result, bool]:
    """As `check_data`, for text already decoded (an editor's buffer). Never raises."""
    try:
        findings = check_notebook(text, name, codes) if notebook else check_source(text, name, codes)
        return (tuple(findings), None), True
    except SourceError as error:
        return ((), error), True
    except Exception as error:  # a bug in gradlint: say so for this file, keep checking the others
        return ((), SourceError(f"internal error: {type(error).__name__}: {error}")), False
