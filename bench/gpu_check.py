"""The GPU check: gradlint's runtime side on CUDA, in one command and one table (bench/gpu_check.sh).

1. every fixture under `gradlint run --device cuda`: a buggy fixture's findings must all be
   confirmed, a clean one must show nothing dynamic-only (what tests/test_runtime_fixtures.py
   asks on the CPU);
2. the mixed-precision fixtures (those with a GradScaler) rewritten for CUDA with AMP on:
   `GradScaler("cuda")`, `torch.autocast("cuda", dtype=torch.float16)`, `enabled=True`;
3. the pytest plugin on a CUDA test: a marked correct loop passes, a marked buggy one fails;
4. bench/runtime_overhead.py on CUDA, timed on the wall clock with synchronisation.

On a machine without CUDA it says so in one line and exits 1. It stops starting work at
DEADLINE seconds so that the whole check ends within five minutes. Exit status: 0 when every
row passed, 1 otherwise. `--device cpu` runs the same check on the CPU, and `--only TEXT` keeps
the fixtures whose names contain TEXT: both test this script where no GPU is lent, and prove
nothing about CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted((ROOT / "fixtures").glob("*.py"))
DEADLINE = 270.0  # seconds after the start: no new run starts later (the last may take RUN_TIMEOUT)
RUN_TIMEOUT = 25.0
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}

PLUGIN_TESTS = """
import pytest
import torch

DEVICE = "{device}"


def train(clear_every_batch):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1).to(DEVICE)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    for _ in range(4):
        model(torch.randn(4, 3, device=DEVICE)).pow(2).mean().backward()
        optimizer.step()
        if clear_every_batch:
            optimizer.zero_grad()
    assert next(model.parameters()).device.type == DEVICE


@pytest.mark.gradlint
def test_stale_loop_fails():
    train(clear_every_batch=False)


@pytest.mark.gradlint
def test_correct_loop_passes():
    train(clear_every_batch=True)
"""


@dataclass
class Row:
    check: str
    result: str
    passed: bool
    detail: str = ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--only", default="", help="only the fixtures whose names contain this")
    args = parser.parse_args()
    fixtures = [path for path in FIXTURES if args.only in path.name]
    start = time.monotonic()
    found = cuda_device(args.device)
    if found is None:
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False): nothing was checked")
        return 1
    print(f"gpu_check on {found}, {args.jobs} runs at a time")
    rows = [
        fixtures_row(fixtures, args.device, args.jobs, start),
        amp_row(fixtures, args.device, args.jobs, start),
        plugin_row(args.device, start),
        *overhead_rows(args.device, start),
    ]
    print_table(rows)
    print(f"gpu_check: {time.monotonic() - start:.0f} s")
    return 0 if all(row.passed for row in rows) else 1


def cuda_device(device: str) -> str | None:
    """The device's name, or None where CUDA is wanted and missing (or torch cannot say)."""
    if device == "cpu":
        return "the CPU (--device cpu: a test of this script, not of CUDA)"
    probe = (
        "import torch\n"
        "if torch.cuda.is_available():\n"
        "    print(f'{torch.cuda.get_device_name(0)}, torch {torch.__version__}')\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV)
    return result.stdout.strip() or None


def gradlint_run(script: Path, device: str, cwd: Path) -> dict:
    """`gradlint run SCRIPT --device D --format json`, as a user runs it; {"error": ...} if it fails."""
    command = [sys.executable, "-m", "gradlint", "run", str(script), "--device", device, "--format", "json"]
    try:
        result = subprocess.run(
            command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=RUN_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return {"error": f"no report within {RUN_TIMEOUT:.0f} s"}
    if result.returncode not in (0, 1):
        return {"error": f"exit {result.returncode}: {last_line(result.stderr)}"}
    try:
        return json.loads(result.stdout)
    except ValueError:
        return {"error": f"no JSON report: {last_line(result.stderr)}"}


def judge(name: str, report: dict, device: str) -> str | None:
    """What is wrong with one fixture's run (None: static and runtime agree, on the device asked)."""
    if "error" in report:
        return report["error"]
    status = report["run"]["status"]
    if name.startswith("bug_"):
        if not report["findings"]:
            return f"no static finding ({status})"
        unconfirmed = [
            f"{f['code']} {f['verdict']}" for f in report["findings"] if f["verdict"] != "confirmed"
        ]
        if unconfirmed:
            return f"{', '.join(unconfirmed)} ({status})"
    else:
        if status != "finished":
            return status
        if report["dynamic_only"]:
            return "dynamic-only " + ", ".join(v["code"] for v in report["dynamic_only"])
    if device == "cuda" and not report["run"]["cuda_used"]:
        return "ran without CUDA"
    return None


def run_all(scripts: list[Path], device: str, jobs: int, start: float, cwd: Path) -> dict[str, str | None]:
    def one(script: Path) -> str | None:
        if time.monotonic() - start > DEADLINE:
            return "not run: out of time"
        return judge(script.name, gradlint_run(script, device, cwd), device)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return dict(zip((s.name for s in scripts), pool.map(one, scripts)))


def summarise(check: str, outcomes: dict[str, str | None]) -> Row:
    failed = {name: why for name, why in outcomes.items() if why is not None}
    detail = "; ".join(f"{name}: {why}" for name, why in sorted(failed.items()))
    if not outcomes:
        detail = "no fixture selected"
    return Row(check, f"{len(outcomes) - len(failed)}/{len(outcomes)} agree", not failed, detail)


def fixtures_row(fixtures: list[Path], device: str, jobs: int, start: float) -> Row:
    return summarise(f"runtime fixtures, --device {device}", run_all(fixtures, device, jobs, start, ROOT))


AMP_REWRITES = [
    (re.compile(r'GradScaler\("cpu"'), 'GradScaler("{device}"'),
    (
        re.compile(r'torch\.autocast\("cpu", dtype=torch\.bfloat16'),
        'torch.autocast("{device}", dtype={dtype}',
    ),
    (re.compile(r"enabled=(USE_AMP|use_amp|self\.use_amp)\b"), "enabled=True"),
]


def amp_row(fixtures: list[Path], device: str, jobs: int, start: float) -> Row:
    """The fixtures with a GradScaler, AMP on: float16 autocast and an enabled scaler on the device."""
    dtype = "torch.float16" if device == "cuda" else "torch.bfloat16"
    sources = [path for path in fixtures if "GradScaler(" in path.read_text(encoding="utf-8")]
    with tempfile.TemporaryDirectory(prefix="gradlint-amp-") as folder:
        copies = []
        for path in sources:
            text = path.read_text(encoding="utf-8")
            for pattern, replacement in AMP_REWRITES:
                text = pattern.sub(replacement.format(device=device, dtype=dtype), text)
            copy = Path(folder) / path.name
            copy.write_text(text, encoding="utf-8")
            copies.append(copy)
        outcomes = run_all(copies, device, jobs, start, Path(folder))
    return summarise(f"mixed precision, enabled GradScaler({device!r})", outcomes)


def plugin_row(device: str, start: float) -> Row:
    """The pytest plugin on a CUDA test: exactly the marked buggy loop fails, naming GL101."""
    check = f"pytest plugin, a {device} test"
    if time.monotonic() - start > DEADLINE:
        return Row(check, "not run", False, "out of time")
    with tempfile.TemporaryDirectory(prefix="gradlint-plugin-") as folder:
        test_file = Path(folder) / "test_on_device.py"
        test_file.write_text(textwrap.dedent(PLUGIN_TESTS.format(device=device)), encoding="utf-8")
        plugin = ["-p", "no:gradlint", "-p", "gradlint.runtime.pytest_plugin"]  # installed or not
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin, str(test_file)]
        try:
            result = subprocess.run(command, cwd=folder, env=ENV, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            return Row(check, "timed out", False)
    output = result.stdout + result.stderr
    failed = set(re.findall(r"FAILED \S*::(\w+)", output))
    passed = re.search(r"\b1 failed, 1 passed\b", output) is not None
    if failed == {"test_stale_loop_fails"} and passed and "GL101" in output:
        return Row(check, "as expected", True, "the stale loop failed with GL101, the correct one passed")
    return Row(check, "unexpected", False, last_line(output))


def overhead_rows(device: str, start: float) -> list[Row]:
    """bench/runtime_overhead.py on the device: the wall clock, synchronised, against 1.10x."""
    if time.monotonic() - start > DEADLINE - 60:
        return [Row(f"tracer overhead, {device}", "not run", False, "out of time")]
    command = [
        sys.executable,
        str(ROOT / "bench" / "runtime_overhead.py"),
        "--device",
        device,
        "--pairs",
        "15",
    ]
    try:
        result = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=150)
    except subprocess.TimeoutExpired:
        return [Row(f"tracer overhead, {device}", "timed out", False)]
    rows = []
    for line in result.stdout.splitlines():
        match = re.match(
            r"(?P<model>.+?)\s{2,}(?P<ms>[\d.]+)\s+(?P<ratio>[\d.]+)x\s+(?P<spread>\S+)\s+(?P<rest>.*)$", line
        )
        if match:
            rows.append(
                Row(
                    f"tracer overhead, {device}: {match['model']}",
                    f"{match['ratio']}x",
                    "NOT met" not in match["rest"],
                    f"untraced {match['ms']} ms/step, middle half {match['spread']}, {match['rest']}",
                )
            )
    return rows or [Row(f"tracer overhead, {device}", "no result", False, last_line(result.stderr))]


def print_table(rows: list[Row]) -> None:
    width = max(len(row.check) for row in rows)
    print(f"{'check':<{width}}  {'result':<16}  {'':4}  detail")
    for row in rows:
        mark = "ok" if row.passed else "FAIL"
        print(f"{row.check:<{width}}  {row.result:<16}  {mark:4}  {row.detail}")


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


if __name__ == "__main__":
    sys.exit(main())
