"""What the tracer costs: step time of small real models on CPU, traced against untraced.

Runs are interleaved (untraced, traced, untraced, ...) so drift in the machine's speed hits both
alike, and each run is short, so many pairs fit in a minute; the result per model is the median of
the per-pair ratios, with the spread of the middle half. Time is the CPU time of this thread by
default: torch runs these small models in the calling thread when it has one, and on a shared
machine wall-clock time mostly measures the neighbours (`--clock wall` measures it anyway).
With `--device cuda` the models and batches are on the GPU and the clock is the wall clock, read
after `torch.cuda.synchronize()`: the GPU's work is asynchronous, and CPU time would miss it.
Usage:

    OMP_NUM_THREADS=1 python bench/runtime_overhead.py [--steps 50] [--pairs 31] [--clock thread|wall]
    python bench/runtime_overhead.py --device cuda      # what bench/gpu_check.sh runs
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from gradlint.runtime.tracer import Tracer

TARGET = 1.10  # issue #3: traced step time at most 1.10x untraced, on CPU

CLOCKS: dict[str, Callable[[], float]] = {"thread": time.thread_time, "wall": time.perf_counter}


def mlp() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The 3x512 MLP of RUNTIME.md's measurements, batch 64."""
    model = torch.nn.Sequential(
        torch.nn.Linear(512, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 1),
    )
    return model, torch.randn(64, 512), torch.randn(64, 1)


def cnn() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """Two conv layers and a head on 28x28 images, batch 32: MNIST-sized."""
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 7 * 7, 1),
    )
    return model, torch.randn(32, 1, 28, 28), torch.randn(32, 1)


MODELS = {"3x512 MLP, batch 64": mlp, "small CNN, batch 32": cnn}


def train(build: Callable, steps: int, clock: Callable[[], float], device: str = "cpu") -> float:
    """Seconds per optimizer step of a plain loop: forward, backward, step, clear."""
    torch.manual_seed(0)
    model, inputs, targets = build()
    model, inputs, targets = model.to(device), inputs.to(device), targets.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    synchronize(device)
    start = clock()
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    synchronize(device)
    return (clock() - start) / steps


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def traced(build: Callable, steps: int, clock: Callable[[], float], device: str = "cpu") -> float:
    with Tracer():
        return train(build, steps, clock, device)


def measure(
    build: Callable, steps: int, pairs: int, clock: Callable[[], float], device: str = "cpu"
) -> tuple[float, float, list]:
    train(build, steps, clock, device)  # warm the allocator and the kernels before the first pair
    traced(build, steps, clock, device)
    plain_times, ratios = [], []
    for _ in range(pairs):
        plain = train(build, steps, clock, device)
        ratios.append(traced(build, steps, clock, device) / plain)
        plain_times.append(plain)
    return statistics.median(plain_times), statistics.median(ratios), statistics.quantiles(ratios, n=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps per run")
    parser.add_argument("--pairs", type=int, default=31, help="interleaved untraced/traced runs")
    parser.add_argument("--clock", choices=CLOCKS, default="thread")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch.cuda.is_available() is False")
    torch.set_num_threads(1)  # one thread: the thread clock then sees all of torch's work
    with Tracer():  # pay the one-time costs (torch.compiler import, gc scan) outside the timing
        pass
    clock_name = "wall" if args.device == "cuda" else args.clock
    clock = CLOCKS[clock_name]
    where = "CPU" if args.device == "cpu" else f"CUDA ({torch.cuda.get_device_name(0)}, synchronised)"
    print(f"torch {torch.__version__}, {where}, {clock_name} time, {args.pairs} pairs of {args.steps} steps")
    print(f"{'model':<22} {'untraced ms/step':>17} {'traced/untraced':>16} {'middle half':>14}  target")
    for name, build in MODELS.items():
        plain, ratio, (low, _, high) = measure(build, args.steps, args.pairs, clock, args.device)
        verdict = f"<= {TARGET}x " + ("met" if ratio <= TARGET else "NOT met")
        print(f"{name:<22} {plain * 1e3:>17.3f} {ratio:>15.3f}x {low:>6.3f}-{high:.3f}  {verdict}")


if __name__ == "__main__":
    main()
