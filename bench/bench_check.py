"""How fast `gradlint check` is, next to `ast.parse` alone over the same files, and whether the
speed targets are met. Run by hand (a few minutes); not part of the tests.

    python bench/bench_check.py [--repeat 3] [--quick] [--tree DIR ...] [--only NAME ...]

Trees, each copied into a temporary directory so every tool sees exactly the same files:
  training  fixtures/ twenty times (each copy ends in its own comment, so the cache cannot answer
            one copy from another) and generated long training files;
  stdlib    the standard library's sources, without its test suites, idlelib and the files that
            do not parse (ordinary Python, mostly without training code);
  torch     torch's own optim, nn, amp and utils/data sources, when torch is installed;
  DIR       each --tree: the Python files under a directory of your own (real training scripts),
            named by the directory's name. --only keeps only the trees named (and skips flake8
            unless stdlib is one of them).

For each tree, the median of --repeat runs of: reading the files; decoding and `ast.parse` alone
over the texts in memory; gradlint's API (`batch.check_paths`, one process, no cache: reads,
decodes, parses, analyses); the CLI with `-j 1 --no-cache` and with every core, as a fresh
process (so its start-up is counted); the CLI with a cold cache and again with it warm; and the
peak memory (maxrss) of the `-j 1` CLI process; "words" is the share of lines in files that have
a word of the default rules (`Rule.words`): only those are parsed and analysed. The ratios the
targets name are of gradlint's API against `ast.parse`.

Then, per file of each tree, `check_source` (parse included) against `ast.parse` of the same text,
each the median of --repeat runs: the distribution of that ratio (median, p90, p99, worst, the worst
file named) and how many files are above 10x their parse plus 20 ms.

flake8, with and without the plugin, runs over the first files of the stdlib tree (pycodestyle is
slow: the whole tree would take minutes a run). flake8 runs every tree plugin that is installed,
whatever `--select` says, so "without" is the same flake8 in the same environment with the GL
checker switched off the way flake8 switches off its own optional extensions (`off_by_default`):
both runs import everything alike, and the difference is the time spent in the plugin.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gradlint.batch import check_paths
from gradlint.checker import SourceError, check_source, decode_source, may_have_findings
from gradlint.files import expand_paths
from gradlint.rules import resolve_codes

REPO = Path(__file__).resolve().parent.parent
SKIPPED_STDLIB = {"test", "tests", "idlelib", "site-packages", "lib2to3", "__pycache__"}
FLAKE8_LINES = 60_000
FLAKE8_WRAPPER = """\
import sys
from gradlint.flake8_plugin import GradlintChecker
GradlintChecker.off_by_default = sys.argv.pop(1) == "without"
from flake8.main.cli import main
raise SystemExit(main())
"""

TRAINING_FUNCTION = """

def train_{n}(model, loader, epochs, accumulation={acc}):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10)
    for epoch in range(epochs):
        total = 0.0
        for index, (inputs, targets) in enumerate(loader):
            outputs = model(inputs)
            loss = torch.nn.functional.cross_entropy(outputs, targets) / accumulation
            loss.backward()
            total += loss.item()
            if (index + 1) % accumulation == 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad()
        scheduler.step()
        if epoch % 5 == 0:
            print(f"epoch {{epoch}}: {{total / max(len(loader), 1):.4f}}")
    return model
"""


def python_files(root: Path) -> list[Path]:
    return [Path(path) for path in expand_paths([str(root)])]


def parses(path: Path) -> bool:
    try:
        ast.parse(decode_source(path.read_bytes()))
    except (OSError, SourceError, SyntaxError, ValueError, RecursionError):
        return False
    return True


def copy_tree(files: list[tuple[Path, Path]], destination: Path) -> Path:
    for source, relative in files:
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return destination


def training_tree(destination: Path, functions_per_file: int) -> Path:
    for copy in range(20):
        for fixture in sorted((REPO / "fixtures").glob("*.py")):
            target = destination / f"copy{copy:02d}" / fixture.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(fixture.read_bytes() + f"# copy {copy}\n".encode())
    for number in range(10):
        body = "".join(
            TRAINING_FUNCTION.format(n=n, acc=1 + n % 4)
            for n in range(number * 1000, number * 1000 + functions_per_file)
        )
        (destination / f"long_training_{number}.py").write_text(f"import torch\n{body}")
    return destination


def stdlib_tree(destination: Path) -> Path:
    root = Path(sysconfig.get_paths()["stdlib"])
    chosen = [
        (path, path.relative_to(root))
        for path in sorted(root.rglob("*.py"))
        if not SKIPPED_STDLIB & set(path.relative_to(root).parts[:-1]) and parses(path)
    ]
    return copy_tree(chosen, destination)


def torch_tree(destination: Path) -> Path | None:
    try:
        import torch
    except Exception:
        return None
    root = Path(torch.__file__).parent
    parts = ("optim", "nn", "amp", "utils/data")
    chosen = [
        (path, path.relative_to(root))
        for part in parts
        for path in sorted((root / part).rglob("*.py"))
        if "__pycache__" not in path.parts and parses(path)
    ]
    return copy_tree(chosen, destination)


def parse_each(texts: list[str]) -> None:
    for text in texts:
        ast.parse(text)  # not kept: holding every tree would make the collector's work the measure


def median_time(work: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def run_process(command: list[str], environment: dict[str, str] | None = None) -> float:
    """Wall seconds of one run of `command`."""
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    return time.perf_counter() - start


def peak_memory(command: list[str]) -> int:
    """Peak memory (KiB) of `command`, started from a small process: on Linux a child's maxrss
    starts at the size of the process that forked it, and this one holds every tree's text."""
    starter = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True); "
    starter += "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    output = subprocess.run([sys.executable, "-c", starter, *command], capture_output=True, text=True)
    return int(output.stdout)


def median_process(command: list[str], repeat: int, environment: dict[str, str] | None = None) -> float:
    return statistics.median(run_process(command, environment) for _ in range(repeat))


def gradlint_command(root: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "gradlint", "check", "--quiet", *options, str(root)]


def measure(name: str, root: Path, repeat: int) -> dict[str, float]:
    files = python_files(root)
    texts = [decode_source(path.read_bytes()) for path in files]
    lines = sum(text.count("\n") + 1 for text in texts)
    codes = frozenset(resolve_codes())
    work = [(str(path), codes) for path in files]
    result = {"files": len(files), "lines": lines}
    # The share of lines in files the text pre-filter hands to the analysis.
    result["words"] = sum(t.count("\n") + 1 for t in texts if may_have_findings(t)) / lines
    result["read"] = median_time(lambda: [path.read_bytes() for path in files], repeat)
    result["parse"] = median_time(lambda: parse_each(texts), repeat)
    result["api"] = median_time(lambda: check_paths(work, jobs=1, cache=None), repeat)
    result["cli"] = median_process(gradlint_command(root, "-j", "1", "--no-cache"), repeat)
    result["cli_all_cores"] = median_process(gradlint_command(root, "--no-cache"), repeat)
    result["memory_mib"] = peak_memory(gradlint_command(root, "-j", "1", "--no-cache")) / 1024
    colds, warms = [], []
    for _ in range(repeat):
        cache = tempfile.mkdtemp(prefix="gradlint-bench-cache-")
        environment = {**os.environ, "GRADLINT_CACHE_DIR": cache}
        colds.append(run_process(gradlint_command(root, "-j", "1"), environment))
        warms.append(run_process(gradlint_command(root, "-j", "1"), environment))
        shutil.rmtree(cache)
    result["cold"], result["warm"] = statistics.median(colds), statistics.median(warms)
    return result


def per_file(root: Path, repeat: int) -> list[tuple[float, float, str]]:
    """(check seconds, parse seconds, path) of each file that parses, each the median of `repeat`."""
    timed = []
    for path in python_files(root):
        try:
            text = decode_source(path.read_bytes())
            ast.parse(text)
        except (SourceError, SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        name = str(path.relative_to(root))
        parse = median_time(lambda: ast.parse(text), repeat)
        check = median_time(lambda: check_source(text, name), repeat)
        timed.append((check, parse, name))
    return timed


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile of sorted `values`."""
    return values[min(len(values) - 1, max(0, round(share * len(values) + 0.5) - 1))]


def distribution(name: str, timed: list[tuple[float, float, str]]) -> int:
    """Print the distribution of check/parse per file; the number of files over 10x parse + 20 ms."""
    if not timed:
        return 0
    ratios = sorted(check / parse for check, parse, _ in timed)
    worst = max(timed, key=lambda row: row[0] / row[1])
    slowest = max(timed)
    over = [row for row in timed if row[0] > 10 * row[1] + 0.020]
    print(
        f"{name:<9} {len(timed):>6} {statistics.median(ratios):>8.1f}x {percentile(ratios, 0.9):>7.1f}x"
        f" {percentile(ratios, 0.99):>7.1f}x {worst[0] / worst[1]:>7.1f}x  {worst[2]}"
        f"  (slowest {slowest[2]}: {slowest[0] * 1e3:.0f} ms; over 10x parse + 20 ms: {len(over)})"
    )
    return len(over)


def flake8_overhead(root: Path, repeat: int, destination: Path) -> tuple[int, float, float]:
    chosen, lines = [], 0
    for path in python_files(root):
        if lines >= FLAKE8_LINES:
            break
        chosen.append((path, path.relative_to(root)))
        lines += path.read_bytes().count(b"\n") + 1
    subset = copy_tree(chosen, destination)
    command = [sys.executable, "-c", FLAKE8_WRAPPER]
    options = ["-j", "1", "--exit-zero", str(subset)]
    without = median_process([*command, "without", *options], repeat)
    with_plugin = median_process([*command, "with", *options], repeat)
    return lines, without, with_plugin


def rate(lines: int, seconds: float) -> str:
    return f"{lines / seconds:>12,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller generated files, one run each")
    parser.add_argument("--tree", action="append", default=[], type=Path, help="a directory of your own")
    parser.add_argument(
        "--only", action="append", help="only these trees (training, stdlib, torch, a DIR's name)"
    )
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    wanted = set(args.only) if args.only else None

    def chosen(name: str) -> bool:
        return wanted is None or name in wanted

    with tempfile.TemporaryDirectory(prefix="gradlint-bench-") as scratch:
        base = Path(scratch)
        trees: dict[str, Path] = {}
        if chosen("training"):
            trees["training"] = training_tree(base / "training", 20 if args.quick else 50)
        if chosen("stdlib"):
            trees["stdlib"] = stdlib_tree(base / "stdlib")
        torch_root = torch_tree(base / "torch") if chosen("torch") else None
        if torch_root is not None:
            trees["torch"] = torch_root
        own = []
        for directory in args.tree:
            name = directory.resolve().name
            if chosen(name):
                files = [(path, path.relative_to(directory)) for path in python_files(directory)]
                trees[name] = copy_tree(files, base / "trees" / name)
                own.append(name)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, median of {repeat} runs\n")
        header = (
            f"{'tree':<9} {'files':>6} {'lines':>8} {'read s':>7} {'parse l/s':>12} {'API l/s':>12} "
            f"{'CLI -j1 l/s':>12} {'CLI -jN l/s':>12} {'API/parse':>9} {'cold s':>7} {'warm s':>7}"
            f" {'MiB':>6} {'words':>6}"
        )
        print(header)
        results = {}
        for name, root in trees.items():
            measured = results[name] = measure(name, root, repeat)
            lines = int(measured["lines"])
            print(
                f"{name:<9} {int(measured['files']):>6} {lines:>8} {measured['read']:>7.3f}"
                f" {rate(lines, measured['parse'])} {rate(lines, measured['api'])}"
                f" {rate(lines, measured['cli'])} {rate(lines, measured['cli_all_cores'])}"
                f" {measured['parse'] / measured['api']:>8.2f}x {measured['cold']:>7.2f}"
                f" {measured['warm']:>7.2f} {measured['memory_mib']:>6.0f} {measured['words']:>6.0%}",
                flush=True,
            )
        print(
            f"\nper file, check_source / ast.parse:\n{'tree':<9} {'files':>6} {'median':>9} {'p90':>8}"
            f" {'p99':>8} {'worst':>8}  worst file"
        )
        over = {name: distribution(name, per_file(root, repeat)) for name, root in trees.items()}
        targets: list[tuple[str, float, float, str]] = []
        if "stdlib" in results:
            flake8_lines, without, with_plugin = flake8_overhead(trees["stdlib"], repeat, base / "flake8")
            print(
                f"\nflake8 -j 1 over {flake8_lines:,} stdlib lines: {without:.2f} s without the plugin, "
                f"{with_plugin:.2f} s with it"
            )
            stdlib = results["stdlib"]
            targets += [
                ("ordinary code: gradlint >= 20x ast.parse l/s", stdlib["parse"] / stdlib["api"], 20, ">="),
                ("flake8 plugin adds <= 10% on ordinary code", with_plugin / without - 1, 0.10, "<="),
            ]
        if "training" in results:
            training = results["training"]
            ratio = training["api"] / training["parse"]
            targets.append(("training files: gradlint time <= 2x ast.parse", ratio, 2, "<="))
        for name in own:
            ratio = results[name]["api"] / results[name]["parse"]
            targets.append((f"{name}: gradlint time <= 3x ast.parse", ratio, 3, "<="))
        targets += [
            (f"files over 10x parse + 20 ms ({name})", float(count), 0, "<=") for name, count in over.items()
        ]
        targets += [
            (f"warm cache <= 0.1x cold ({name})", measured["warm"] / measured["cold"], 0.1, "<=")
            for name, measured in results.items()
        ]
        print()
        for label, value, target, sense in targets:
            met = value >= target if sense == ">=" else value <= target
            print(f"{label:<55} {value:>7.2f} (target {sense} {target}): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
