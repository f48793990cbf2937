"""Checking many files: each on its own, from the cache when it can, in worker processes when there
are enough to share out.

Results come back in the order the paths were given, whichever worker finished first, so the
report of `-j 8` is the report of `-j 1`.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gradlint.cache import CLEAN, Cache, Result, Stamp, StatIndex, stamp_of
from gradlint.checker import (
    FileResult,
    SourceError,
    check_program,
    check_source,
    decode_source,
    may_have_findings,
    rule_words,
)
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
    index = cache.load_index() if cache is not None else None
    stamps = [None if path == STDIN or index is None else stamp_of(path, codes) for path, codes in work]
    answers = [
        answer_from_index(path, stamp, index, cache) if index is not None and cache is not None else None
        for (path, _), stamp in zip(work, stamps)
    ]
    programs, alone = plan_programs(work, answers)
    checked = iter(check_in_processes([work[i] for i in alone], jobs, cache, stdin_name))
    for number in alone:
        answer, key = next(checked)
        stamp = stamps[number]
        if index is not None and stamp is not None and key is not None:
            index.record(work[number][0], stamp, key)
        answers[number] = answer
    for program in programs:
        for number, answer in zip(program.members, check_program_work(work, program, cache)):
            answers[number] = answer
            if index is not None:
                index.forget(work[number][0])  # its result depends on other files: read it again next time
    if index is not None:
        index.save()
    return [answer for answer in answers if answer is not None]


@dataclass(frozen=True)
class ProgramWork:
    """Files whose training path runs through each other: analysed together, once."""

    members: tuple[int, ...]  # numbers of the files in `work` reported on
    context: tuple[str, ...]  # files that import them, read for what they call, not reported on
    files: tuple[str, ...] = ()  # every project file the analysis may read: what the results depend on


def plan_programs(
    work: Sequence[tuple[str, frozenset[str]]], answers: list[Checked | None]
) -> tuple[list[ProgramWork], list[int]]:
    """Which unanswered files must be analysed together with the project files they import or that
    import them, and which stand alone (as every file did before projects: cached, in a pool).

    A file answered from the stat index is drawn back in when a file of its program changed."""
    from gradlint.project import Project

    numbered = {
        os.path.realpath(path): number
        for number, (path, _) in enumerate(work)
        if path != STDIN and not is_notebook(path)
    }
    if not numbered:
        return [], [n for n, answer in enumerate(answers) if answer is None]
    project = Project({file: work[n][0] for file, n in numbered.items()})
    words = frozenset().union(*(rule_words(codes) for _, codes in work))
    changed = {file for file, n in numbered.items() if answers[n] is None}
    reaching = {file for file in changed if project.on_training_path(file, words)}
    if not reaching:
        return [], [n for n, answer in enumerate(answers) if answer is None]
    # Every project file on their training paths: what they import, directly or not, and what
    # imports them; a file answered from the index that is among those is checked again.
    importers = project.importers(reaching)
    edges: dict[str, set[str]] = {}
    pending = [*reaching, *importers]
    while pending:
        file = pending.pop()
        if file not in edges:
            edges[file] = project.imported_files(file)
            pending += [target for target in edges[file] if target not in edges]
    groups = connected(edges)
    programs, alone = [], []
    for group in groups:
        members = sorted(numbered[file] for file in group if file in numbered)
        context = tuple(sorted(file for file in group if file not in numbered and file in importers))
        related = any(edges.get(file, set()) for file in group)
        if len(group) == 1 and not related:
            alone += [n for n in members if answers[n] is None]
        elif members:
            programs.append(ProgramWork(tuple(members), context, tuple(sorted(group))))
    planned = {n for program in programs for n in program.members}
    alone += [n for n, answer in enumerate(answers) if answer is None and n not in planned and n not in alone]
    return programs, sorted(set(alone))


def connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """The groups of files linked by an import either way (only files in `edges` and what they import)."""
    parent: dict[str, str] = {}

    def find(file: str) -> str:
        parent.setdefault(file, file)
        while parent[file] != file:
            parent[file] = parent[parent[file]]
            file = parent[file]
        return file

    for file, targets in edges.items():
        find(file)
        for target in targets:
            if target in edges:
                parent[find(target)] = find(file)
    groups: dict[str, set[str]] = {}
    for file in edges:
        groups.setdefault(find(file), set()).add(file)
    return list(groups.values())


def check_program_work(
    work: Sequence[tuple[str, frozenset[str]]], program: ProgramWork, cache: Cache | None = None
) -> list[Checked]:
    """The members' results, each filtered by the codes that apply to it; from the cache when no
    file the analysis reads has changed."""
    from gradlint.project import Project

    paths = [work[n][0] for n in program.members]
    project = Project({os.path.realpath(path): path for path in paths})
    keys = program_keys(work, program, project, cache) if cache is not None else None
    stored = [cache.load(key) for key in keys] if cache is not None and keys is not None else []
    if stored and all(result is not None for result in stored):
        results = {path: result for path, result in zip(paths, stored)}
    else:
        codes = frozenset().union(*(work[n][1] for n in program.members))
        try:
            analysed = check_program(paths, codes, project, program.context)
        except Exception as error:  # a bug in gradlint: say so for these files, keep checking the others
            problem = SourceError(f"internal error: {type(error).__name__}: {error}")
            return [(FileResult(path, error=problem), "") for path in paths]
        results = {}
        for number, path in zip(program.members, paths):
            findings, problem = analysed[path]
            results[path] = (tuple(f for f in findings if f.code in work[number][1]), problem)
        if cache is not None and keys is not None:
            for key, path in zip(keys, paths):
                cache.store(key, results[path])
    checked = []
    for path in paths:
        findings, problem = results[path]  # type: ignore[misc]
        text = project.text_of(os.path.realpath(path)) if findings else ""
        checked.append((FileResult(path, findings, problem), text or ""))
    return checked


def program_keys(
    work: Sequence[tuple[str, frozenset[str]]], program: ProgramWork, project, cache: Cache
) -> list[str] | None:
    """One cache key per member, naming the bytes of every file the program's analysis may read
    and the codes of every member: an edit to any of them names other entries."""
    parts = []
    for file in program.files:
        text = project.text_of(file)
        if text is None:
            return None  # unreadable now: its error is the answer, not a stored result
        parts.append(f"{file}\0{text}")
    parts += [f"{work[n][0]}\0{','.join(sorted(work[n][1]))}" for n in program.members]
    shared = cache.key("\0\0".join(parts).encode(), (), False)
    return [hashlib.sha256(f"{shared}\0{work[n][0]}".encode()).hexdigest() for n in program.members]


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
