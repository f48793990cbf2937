"""Lines per second of the static check next to `ast.parse` alone, over the same files.

    python bench/throughput.py fixtures/ /path/to/site-packages

Each tree is read into memory first; both timings are the median of --repeat runs over it.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
import time
from pathlib import Path

from gradlint.checker import SourceError, check_source, decode_source


def load(root: Path) -> list[tuple[str, str]]:
    paths = [root] if root.is_file() else sorted(root.rglob("*.py"))
    sources = []
    for path in paths:
        try:
            text = decode_source(path.read_bytes())
            ast.parse(text)
        except (OSError, SourceError, SyntaxError, ValueError, RecursionError):
            continue
        sources.append((str(path), text))
    return sources


def timed(work, sources: list[tuple[str, str]], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for path, text in sources:
            work(path, text)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("trees", nargs="+", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'tree':<50} {'files':>6} {'lines':>9} {'ast.parse l/s':>14} {'gradlint l/s':>13} {'ratio':>6}")
    for tree in args.trees:
        sources = load(tree)
        lines = sum(text.count("\n") + 1 for _, text in sources)
        parse = timed(lambda path, text: ast.parse(text), sources, args.repeat)
        check = timed(lambda path, text: check_source(text, path), sources, args.repeat)
        name = str(tree)[-50:]
        speeds = f"{lines / parse:>14,.0f} {lines / check:>13,.0f} {check / parse:>5.1f}x"
        print(f"{name:<50} {len(sources):>6} {lines:>9} {speeds}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
