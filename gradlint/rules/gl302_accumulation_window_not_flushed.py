"""GL302: the last, partial accumulation window of an epoch leaks into the next epoch's first step."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.core import Finding, Rule
from gradlint.rules.base import code, finding, loop_phrase, one_per_place

if TYPE_CHECKING:  # only named here; see rules/__init__.py for why
    from gradlint.analysis.facts import Facts, UnflushedWindow

RULE = Rule(
    code="GL302",
    name="accumulation-window-not-flushed",
    summary="the last len(loader) % n micro-batches of an epoch are summed into the next epoch's first step",
    what_it_does=(
        "Finds a step taken every n micro-batches (`if (i + 1) % n == 0:`) in a loop over data that runs "
        "again (an epoch loop around it, or around the call of its function) when nothing flushes the "
        "last window: the condition does not also fire at the end (`or i + 1 == len(loader)`), and no "
        "step or clear runs after the loop or before it in the epoch. Off by default: whether the "
        "loader's length is a multiple of n is rarely visible in the code; opt in with `--select GL302`."
    ),
    why_bad=(
        "When `len(loader) % n` is not zero, the last micro-batches' gradients stay in `.grad` at the end "
        "of the epoch, and the first step of the next epoch adds its own n: that step applies more than "
        "n backward passes (with the loss divided by n, a larger update than every other step), and the "
        "last batches of each epoch are applied late, after the epoch's evaluation and checkpoint."
    ),
    example=(
        "for epoch in range(epochs):\n"
        "    for i, (x, y) in enumerate(loader):\n"
        "        (loss_fn(model(x), y) / accum).backward()\n"
        "        if (i + 1) % accum == 0:\n"
        "            optimizer.step()\n"
        "            optimizer.zero_grad()"
    ),
    use_instead=(
        "for epoch in range(epochs):\n"
        "    for i, (x, y) in enumerate(loader):\n"
        "        (loss_fn(model(x), y) / accum).backward()\n"
        "        if (i + 1) % accum == 0 or i + 1 == len(loader):\n"
        "            optimizer.step()\n"
        "            optimizer.zero_grad()"
    ),
    runtime=(
        "Confirmed when a step sums more backward passes than most steps of its line do (the window "
        "size): the leftovers of the previous epoch joined the next window. Refuted when the run's "
        "loader length was a multiple of the window."
    ),
    references=("https://huggingface.co/docs/accelerate/usage_guides/gradient_accumulation",),
    fixable=False,
    fix=(
        "Not auto-fixable: step the last window too (`or step == len(loader) - 1` in the guard, or a step"
        " and a clear after the loop), or drop it with a clear."
    ),
    enabled_by_default=False,
    valid=(
        "for epoch in range(3):\n"
        "    for i, (x, y) in enumerate(loader):\n"
        "        (loss_fn(model(x), y) / accum).backward()\n"
        "        if (i + 1) % accum == 0 or (i + 1) == len(loader):\n"
        "            optimizer.step()\n"
        "            optimizer.zero_grad()\n",
        "for epoch in range(3):\n"
        "    for i, (x, y) in enumerate(loader):\n"
        "        (loss_fn(model(x), y) / accum).backward()\n"
        "        if (i + 1) % accum == 0:\n"
        "            optimizer.step()\n"
        "            optimizer.zero_grad()\n"
        "    optimizer.step()\n"
        "    optimizer.zero_grad()\n",
    ),
    invalid=(
        "for epoch in range(3):\n"
        "    for i, (x, y) in enumerate(loader):\n"
        "        (loss_fn(model(x), y) / accum).backward()\n"
        "        if (i + 1) % accum == 0:\n"
        "            optimizer.step()  # error\n"
        "            optimizer.zero_grad()\n",
    ),
)


def check(facts: Facts) -> list[Finding]:
    return one_per_place(report(window) for window in facts.unflushed)


def report(window: UnflushedWindow) -> Finding:
    step, count = window.step, window.count
    again = (
        f"the first step of the next iteration of {loop_phrase(window.repeat)}"
        if window.repeat is not None
        else "the first step when it runs again"
    )
    message = (
        f"{code(step)} runs every {count} micro-batches of {loop_phrase(window.loop)} and nothing flushes "
        f"the last window when the loop ends: unless its length is a multiple of {count}, the last "
        f"`len % {count}` backward passes stay in .grad and {again} sums them with its own {count}; "
        f"also step on the last micro-batch (`or i + 1 == len(loader)`) or once after the loop"
    )
    return finding(RULE, step, message, [(window.backward, "the leftover passes of this backward leak")])
