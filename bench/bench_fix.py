"""How long `gradlint fix` takes on a generated 1,000-line training file. Run by hand; not a test.

    python bench/bench_fix.py [--lines 1000] [--repeat 5]

The file is made of small training functions, each with one fixable bug (GL101, GL102, GL103,
GL301 in turn) among ordinary statements. Printed: the median of --repeat runs of the whole fix
(all passes, every fix checked again), and beside it `check_source` alone and libcst's parse alone
over the same text, so the cost of rewriting can be told from the cost of analysing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import libcst

from gradlint.checker import check_source
from gradlint.fix.engine import fix_source

BUGGY_FUNCTIONS = (
    # GL101: one clear per epoch
    """def train_{n}(model, loader, optimizer, epochs):
    history = []
    for epoch in range(epochs):
        optimizer.zero_grad()
        total = 0.0
        for x, y in loader:
            # forward and backward
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item()
        history.append(total / len(loader))
    return history
""",
    # GL102: no clear at all
    """def train_{n}(model, loader, optimizer, epochs):
    history = []
    for epoch in range(epochs):
        total = 0.0
        for x, y in loader:
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item()
        history.append(total / len(loader))
    return history
""",
    # GL103: the clear between backward and step
    """def train_{n}(model, loader, optimizer, epochs):
    history = []
    for epoch in range(epochs):
        total = 0.0
        for x, y in loader:
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.zero_grad()
            optimizer.step()
            total += loss.item()
        history.append(total / len(loader))
    return history
""",
    # GL301: accumulation without dividing the loss
    """def train_{n}(model, loader, optimizer, epochs, accum_steps=4):
    history = []
    for epoch in range(epochs):
        total = 0.0
        for i, (x, y) in enumerate(loader):
            loss = loss_fn(model(x), y)
            loss.backward()
            if (i + 1) % accum_steps == 0:
                optimizer.step()
                optimizer.zero_grad()
            total += loss.item()
        history.append(total / len(loader))
    return history
""",
)


def generated_file(lines: int) -> str:
    parts = ['"""A generated training module for bench_fix."""\n', "import torch\n"]
    n = 0
    while sum(part.count("\n") for part in parts) < lines:
        parts.append("\n\n" + BUGGY_FUNCTIONS[n % len(BUGGY_FUNCTIONS)].format(n=n))
        n += 1
    return "".join(parts)


def median_seconds(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    text = generated_file(args.lines)
    findings = check_source(text)
    fixed = fix_source(text, unsafe=True)
    lines = text.count("\n")
    print(f"file: {lines} lines, {len(findings)} findings, {fixed.fixed} fixed (unsafe included)")
    print(f"  remaining after fix: {len(fixed.remaining)}")
    timed = {
        f"fix, unsafe included (median of {args.repeat})": lambda: fix_source(text, unsafe=True),
        "fix, safe fixes only": lambda: fix_source(text),
        "check_source alone": lambda: check_source(text),
        "libcst.parse_module alone": lambda: libcst.parse_module(text),
    }
    for name, run in timed.items():
        print(f"  {name + ':':<42} {median_seconds(run, args.repeat):.3f} s")


if __name__ == "__main__":
    main()
