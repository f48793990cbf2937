"""How the analysis grows with a training file, one axis at a time. Run by hand; not part of the tests.

    python bench/scaling.py [--repeat 3] [--axis NAME ...] [--sizes 25,50,100,200,400] [--limit 1.2]

Each axis generates training files that differ only in how much of one thing they hold (statements
in the loop body, sequential `if`s around events, nested loops, helpers called in a chain,
optimizers, branches of an `if/elif` chain, functions in the module; and flags each tested by two `if`s, which the builder follows arm by arm) and times `check_source` on
each (the CPU time of this process, the median of --repeat runs: the machine may be shared, and
CPU time is what other processes disturb least). It prints the time per size and the growth
exponent: the least-squares slope of log(time) against log(size); 1 is linear. An axis whose
exponent is above --limit is marked, and the exit status is 1 when one is.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable

from gradlint.checker import check_source

HEADER = "import torch\n\n"


def indent(lines: list[str], depth: int) -> list[str]:
    return ["    " * depth + line for line in lines]


def training_function(body: list[str], name: str = "train", optimizers: int = 1, depth: int = 3) -> str:
    """A training function whose loop (at `depth`) holds `body`."""
    lines = [f"def {name}(model, loader, args):"]
    for number in range(optimizers):
        lines.append(f"    optimizer_{number} = torch.optim.SGD(model.parameters(), lr=0.01)")
    lines += ["    for epoch in range(args.epochs):", "        for inputs, targets in loader:"]
    lines += indent(body, depth)
    return "\n".join(lines) + "\n"


STEP = ["loss = model(inputs, targets) / args.accumulation", "loss.backward()", "optimizer_0.step()",
        "optimizer_0.zero_grad()"]  # fmt: skip


def loop_statements(size: int) -> str:
    plain = [f"value_{n} = inputs.sum() * {n} + targets.mean()" for n in range(size)]
    return HEADER + training_function([*plain[: size // 2], *STEP, *plain[size // 2 :]])


def sequential_ifs(size: int) -> str:
    body = ["loss = model(inputs, targets)", "loss.backward()"]
    for n in range(size):
        body += [f"if args.flag_{n}:", "    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)"]
    body += ["if args.update:", "    optimizer_0.step()", "    optimizer_0.zero_grad()"]
    return HEADER + training_function(body)


def correlated_ifs(size: int) -> str:
    """`size` flags, each tested twice around events (`if args.amp:` ... `if args.amp:`): the builder
    splits the rest of the block at each one, so that both ifs take the same arm."""
    body = ["loss = model(inputs, targets)"]
    for n in range(size):
        body += [f"if args.flag_{n}:", f"    loss = loss * {n + 2}"]
    body.append("loss.backward()")
    for n in range(size):
        body += [f"if args.flag_{n}:", "    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)"]
    body += ["optimizer_0.step()", "optimizer_0.zero_grad()"]
    return HEADER + training_function(body)


def nested_loops(size: int) -> str:
    lines = ["def train(model, loader, args):"]
    lines.append("    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)")
    for depth in range(size):
        lines.append("    " * (depth + 1) + f"for item_{depth} in loader:")
    inner = ["loss = model(item_0)", "loss.backward()", "optimizer.step()", "optimizer.zero_grad()"]
    lines += indent(inner, size + 1)
    return HEADER + "\n".join(lines) + "\n"


def helper_chain(size: int) -> str:
    helpers = []
    for n in range(size):
        callee = f"helper_{n + 1}(model, optimizer, inputs)" if n + 1 < size else "loss.backward()"
        helpers.append(
            f"def helper_{n}(model, optimizer, inputs):\n"
            f"    loss = model(inputs) * {n + 1}\n"
            f"    {callee}\n"
            f"    return loss\n"
        )
    body = ["helper_0(model, optimizer_0, inputs)", "optimizer_0.step()", "optimizer_0.zero_grad()"]
    return HEADER + "\n\n".join(helpers) + "\n\n" + training_function(body)


def optimizers(size: int) -> str:
    body = ["loss = model(inputs, targets)", "loss.backward()"]
    body += [f"optimizer_{n}.step()" for n in range(size)]
    body += [f"optimizer_{n}.zero_grad()" for n in range(size)]
    return HEADER + training_function(body, optimizers=size)


def elif_chain(size: int) -> str:
    body = ["loss = model(inputs, targets)"]
    for n in range(size):
        body += [f"{'if' if n == 0 else 'elif'} args.mode == {n}:", f"    (loss * {n + 1}).backward()"]
    body += ["else:", "    loss.backward()", "optimizer_0.step()", "optimizer_0.zero_grad()"]
    return HEADER + training_function(body)


def module_functions(size: int) -> str:
    return HEADER + "\n\n".join(training_function(STEP, name=f"train_{n}") for n in range(size))


AXES: dict[str, tuple[Callable[[int], str], list[int]]] = {
    "loop statements": (loop_statements, [100, 200, 400, 800, 1600]),
    "sequential ifs": (sequential_ifs, [25, 50, 100, 200, 400]),
    "correlated ifs": (correlated_ifs, [2, 3, 4, 5, 6, 7, 8]),
    "nested loops": (nested_loops, [2, 4, 6, 8, 10]),
    "helper chain": (helper_chain, [10, 20, 40, 80, 160]),
    "optimizers": (optimizers, [4, 8, 16, 32, 64]),
    "elif chain": (elif_chain, [25, 50, 100, 200, 400]),
    "module functions": (module_functions, [25, 50, 100, 200, 400]),
}


def cpu_time(text: str, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.process_time()
        check_source(text, "scaling.py")
        runs.append(time.process_time() - start)
    return statistics.median(runs)


def exponent(sizes: list[int], times: list[float]) -> float:
    """The least-squares slope of log(time) against log(size)."""
    xs = [math.log(size) for size in sizes]
    ys = [math.log(max(seconds, 1e-6)) for seconds in times]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--axis", action="append", choices=sorted(AXES), help="only these axes")
    parser.add_argument("--sizes", help="comma-separated sizes for every chosen axis")
    parser.add_argument("--limit", type=float, default=1.2, help="the largest exponent that passes")
    args = parser.parse_args(argv)
    failed = []
    for name in args.axis or list(AXES):
        generate, sizes = AXES[name]
        if args.sizes:
            sizes = [int(size) for size in args.sizes.split(",")]
        check_source(generate(sizes[0]), "warm-up.py")
        times = []
        print(f"{name}:")
        for size in sizes:
            text = generate(size)
            times.append(cpu_time(text, args.repeat))
            print(f"  size {size:6d}  lines {text.count(chr(10)):6d}  {times[-1] * 1e3:9.2f} ms", flush=True)
        slope = exponent(sizes, times)
        mark = "" if slope <= args.limit else f"   ABOVE {args.limit}"
        print(f"  exponent {slope:.2f}{mark}")
        if mark:
            failed.append(name)
    if failed:
        print(f"superlinear: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
