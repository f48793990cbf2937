"""GL303: a DDP model accumulates gradients without `no_sync()`: every micro-batch all-reduces."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.analysis import names
from gradlint.core import Finding, Rule
from gradlint.rules.base import code, finding, line, loop_phrase, one_per_place

if TYPE_CHECKING:  # only named here; see rules/__init__.py for why
    from gradlint.analysis.facts import Accumulation, DataParallelWrap, Facts

RULE = Rule(
    code="GL303",
    name="accumulation-syncs-every-micro-batch",
    summary="a DDP model accumulates gradients without no_sync(): every micro-batch all-reduces",
    what_it_does=(
        "Finds gradient accumulation over micro-batches (a step every n backward passes, `% n`, or an "
        "inner loop over the accumulation count) in a module that wraps its model in "
        "`DistributedDataParallel(...)` and never skips the gradient sync: no `model.no_sync()`, no "
        "accelerate `accumulate()`. Not reported when anything "
        "in the module uses `no_sync()` (which model it covers is not told apart), nor for DeepSpeed "
        "engines, which sync on their own schedule."
    ),
    why_bad=(
        "DDP all-reduces the gradients across ranks in every backward pass it sees with sync on. With "
        "accumulation only the last micro-batch's all-reduce is needed: the others move the whole "
        "gradient over the network for nothing, n - 1 times per step. The result is the same, the "
        "training is slower (often much slower across machines)."
    ),
    example=(
        "model = DistributedDataParallel(net)\n"
        "for i, (x, y) in enumerate(loader):\n"
        "    (loss_fn(model(x), y) / accum).backward()\n"
        "    if (i + 1) % accum == 0:\n"
        "        optimizer.step()\n"
        "        optimizer.zero_grad()"
    ),
    use_instead=(
        "model = DistributedDataParallel(net)\n"
        "for i, (x, y) in enumerate(loader):\n"
        "    stepping = (i + 1) % accum == 0\n"
        "    with contextlib.nullcontext() if stepping else model.no_sync():\n"
        "        (loss_fn(model(x), y) / accum).backward()\n"
        "    if stepping:\n"
        "        optimizer.step()\n"
        "        optimizer.zero_grad()"
    ),
    runtime=(
        "Confirmed when a step sums several backward passes and DDP's forward ran with gradient sync on "
        "(`require_backward_grad_sync`) for the micro-batches before the last: each of those all-reduced "
        "for nothing. Observable in any run that builds a process group, a single process included."
    ),
    references=(
        "https://pytorch.org/docs/stable/generated/torch.nn.parallel.DistributedDataParallel.html"
        "#torch.nn.parallel.DistributedDataParallel.no_sync",
    ),
    fixable=False,
    severity="warning",  # the same gradients, only slower
    fix=(
        "Not auto-fixable: run the forward and backward of every micro-batch but the last of each window "
        "under `with model.no_sync():`."
    ),
    words=("DistributedDataParallel", "DDP"),
    valid=(
        "model = DistributedDataParallel(net)\n"
        "for i, (x, y) in enumerate(loader):\n"
        "    stepping = (i + 1) % accum == 0\n"
        "    with contextlib.nullcontext() if stepping else model.no_sync():\n"
        "        (loss_fn(model(x), y) / accum).backward()\n"
        "    if stepping:\n"
        "        optimizer.step()\n"
        "        optimizer.zero_grad()\n",
        "model = DistributedDataParallel(net)\n"
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n"
        "    optimizer.step()\n",
    ),
    invalid=(
        "model = DistributedDataParallel(net)\n"
        "for i, (x, y) in enumerate(loader):\n"
        "    (loss_fn(model(x), y) / accum).backward()  # error\n"
        "    if (i + 1) % accum == 0:\n"
        "        optimizer.step()\n"
        "        optimizer.zero_grad()\n",
    ),
)


def check(facts: Facts) -> list[Finding]:
    if facts.skips_gradient_sync or not facts.data_parallel:
        return []
    wrap = min(facts.data_parallel, key=lambda w: w.site.location)
    return one_per_place(report(a, wrap) for a in facts.accumulations if counts_micro_batches(a))


def counts_micro_batches(accumulation: Accumulation) -> bool:
    """Accumulation on purpose: a counter (`% n`), or a loop whose bound or iterable names the count.
    One step after a whole pass over the loader is left to GL301: with DDP it is rarely meant."""
    return bool(accumulation.count) or bool(names.words(accumulation.loop.header) & names.ACCUMULATION_WORDS)


def report(accumulation: Accumulation, wrap: DataParallelWrap) -> Finding:
    backward, step = accumulation.backward, accumulation.step
    count = accumulation.count or "several"
    model = f"`{wrap.model}`" if wrap.model else "the model"
    message = (
        f"{code(backward)} accumulates {count} micro-batches of {loop_phrase(accumulation.loop)} into each "
        f"{code(step)} ({line(step)}), but {model} is wrapped in DistributedDataParallel "
        f"({line(wrap.site)}) and never under `no_sync()`: every micro-batch all-reduces its "
        f"gradients across ranks although only the last sum is stepped; run the backward passes that do "
        f"not step under `with {wrap.model or 'model'}.no_sync():`"
    )
    return finding(
        RULE,
        backward,
        message,
        [(step, "only this step needs the all-reduced sum"), (wrap.site, "wrapped here")],
    )
