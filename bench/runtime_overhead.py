"""What the tracer costs: step time of a 3-layer MLP on CPU, traced against untraced.

Runs are interleaved (untraced, traced, untraced, ...) so drift in the machine's speed hits both
alike; the result is the median of the per-pair ratios. Usage:

    OMP_NUM_THREADS=1 python bench/runtime_overhead.py [--steps 200] [--pairs 7] [--width 512]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gradlint.runtime.tracer import Tracer


def train(steps: int, width: int, batch: int) -> float:
    """Seconds per optimizer step of a plain loop: forward, backward, step, clear."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, 1),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    inputs, targets = torch.randn(batch, width), torch.randn(batch, 1)
    start = time.perf_counter()
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return (time.perf_counter() - start) / steps


def traced(steps: int, width: int, batch: int) -> float:
    with Tracer():
        return train(steps, width, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    with Tracer():  # pay the one-time costs (torch.compiler import, gc scan) outside the timing
        pass
    train(20, args.width, args.batch)
    ratios = []
    for _ in range(args.pairs):
        plain = train(args.steps, args.width, args.batch)
        watched = traced(args.steps, args.width, args.batch)
        ratio = watched / plain
        ratios.append(ratio)
        print(f"untraced {plain * 1e3:.3f} ms/step  traced {watched * 1e3:.3f} ms/step  ratio {ratio:.3f}")
    print(f"median ratio over {args.pairs} interleaved pairs: {statistics.median(ratios):.3f}x")


if __name__ == "__main__":
    main()
