"""Whole-project analysis against the per-file check of the same files: findings side by side, and
what each costs. Run by hand on a checkout of real training code (never committed here):

    python bench/bench_project.py DIR [DIR ...] [--repeat 3]

For each DIR, with every `.py` file under it:
  per-file  each file analysed alone (`check_source`), as flake8 would without a project;
  project   the same files through `batch.check_paths` in one process, no cache: files that import
            each other are analysed together, and findings are filed under the file they are in;
  warm      the project check with a cache, run twice, then again after appending a comment to the
            file with the most project imports (the edit a pre-commit run sees).
It prints the findings only one of the two checks reports, then the times (median of --repeat)
and the targets: project <= 1.3x per-file, warm re-run after an edit <= 0.1x a cold run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gradlint.batch import check_paths
from gradlint.cache import Cache
from gradlint.checker import SourceError, check_source
from gradlint.files import expand_paths, read_source
from gradlint.project import Project
from gradlint.rules import resolve_codes

CODES = frozenset(resolve_codes())


def per_file(paths: list[str]) -> set[tuple[str, int, str]]:
    found = set()
    for path in paths:
        try:
            findings = check_source(read_source(path), path, CODES)
        except SourceError:
            continue
        found |= {(path, f.location.line, f.code) for f in findings}
    return found


def whole_project(paths: list[str], cache: Cache | None = None) -> set[tuple[str, int, str]]:
    checked = check_paths([(path, CODES) for path in paths], 1, cache)
    return {(result.path, f.location.line, f.code) for result, _ in checked for f in result.findings}


def timed(work, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def most_imported(paths: list[str]) -> str:
    project = Project()
    return max(paths, key=lambda path: (len(project.imported_files(os.path.realpath(path))), path))


def warm_after_edit(directory: str, repeat: int) -> tuple[float, float, float]:
    """Cold, warm and warm-after-editing-one-file times of the cached project check, on a copy."""
    colds, warms, edited = [], [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as scratch:
            copy = os.path.join(scratch, "tree")
            shutil.copytree(directory, copy, symlinks=True)
            paths = [p for p in expand_paths([copy]) if p.endswith(".py")]
            cache = Cache(os.path.join(scratch, "cache"), os.path.join(scratch, "index.json"))
            for bucket in (colds, warms):
                start = time.perf_counter()
                whole_project(paths, cache)
                bucket.append(time.perf_counter() - start)
            target = most_imported(paths)
            with open(target, "a", encoding="utf-8") as file:
                file.write("\n# edited\n")
            start = time.perf_counter()
            whole_project(paths, cache)
            edited.append(time.perf_counter() - start)
    return statistics.median(colds), statistics.median(warms), statistics.median(edited)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("directories", nargs="+")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for directory in args.directories:
        paths = [p for p in expand_paths([directory]) if p.endswith(".py")]
        lines = sum(Path(p).read_text(errors="replace").count("\n") for p in paths)
        alone_s, alone = timed(lambda: per_file(paths), args.repeat)
        project_s, together = timed(lambda: whole_project(paths), args.repeat)
        cold_s, warm_s, edit_s = warm_after_edit(directory, args.repeat)
        print(f"== {directory}: {len(paths)} files, {lines} lines")
        for item in sorted(alone - together):
            print(f"   per-file only: {item[0]}:{item[1]} {item[2]}")
        for item in sorted(together - alone):
            print(f"   project only:  {item[0]}:{item[1]} {item[2]}")
        print(f"   both: {len(alone & together)}")
        rows.append((directory, len(paths), lines, alone_s, project_s, cold_s, warm_s, edit_s))
    print()
    print(f"{'tree':40} {'files':>6} {'lines':>7} {'per-file s':>10} {'project s':>10} {'ratio':>6} "
          f"{'cold s':>7} {'warm s':>7} {'edit s':>7} {'edit/cold':>9}")
    for directory, files, lines, alone_s, project_s, cold_s, warm_s, edit_s in rows:
        print(f"{directory[-40:]:40} {files:6} {lines:7} {alone_s:10.3f} {project_s:10.3f} "
              f"{project_s / alone_s:6.2f} {cold_s:7.3f} {warm_s:7.3f} {edit_s:7.3f} {edit_s / cold_s:9.2f}")
    print("targets: project <= 1.3x per-file; a warm re-run after one edit <= 0.1x a cold run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
