"""GL101: gradients are cleared less often than the optimizer steps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.core import Finding, Rule
from gradlint.rules.base import code, finding, line, loop_phrase, one_per_place

if TYPE_CHECKING:  # only named here; see rules/__init__.py for why
    from gradlint.analysis.facts import Facts, StaleStep

RULE = Rule(
    code="GL101",
    name="clear-less-often-than-step",
    summary="zero_grad() runs less often than step(): each step re-applies gradients already applied",
    what_it_does=(
        "Finds a clear of an optimizer's gradients (`optimizer.zero_grad()`, `model.zero_grad()`, "
        "`p.grad = None`) that does not run before every `step()` of that optimizer: typically "
        "`zero_grad()` once per epoch, or once before training, while `step()` runs every batch."
    ),
    why_bad=(
        "`backward()` adds into `.grad`; nothing else clears it. PyTorch does not reset gradients per "
        "batch. With the clear outside the batch loop, step k of the epoch applies the sum of k batches' "
        "gradients, so early batches are applied again and again and the effective step size grows "
        "through the epoch. Training does not crash: it just converges worse, or diverges."
    ),
    example=(
        "for epoch in range(epochs):\n"
        "    optimizer.zero_grad()  # once per epoch\n"
        "    for x, y in loader:\n"
        "        loss = loss_fn(model(x), y)\n"
        "        loss.backward()\n"
        "        optimizer.step()"
    ),
    use_instead=(
        "for epoch in range(epochs):\n"
        "    for x, y in loader:\n"
        "        optimizer.zero_grad()\n"
        "        loss = loss_fn(model(x), y)\n"
        "        loss.backward()\n"
        "        optimizer.step()"
    ),
    runtime=(
        "Confirmed when a step applies gradients from a backward pass that an earlier step of the same "
        "optimizer already applied; the evidence names the step, how many backward passes it summed and "
        "how many of them were stale."
    ),
    references=(
        "https://pytorch.org/docs/stable/generated/torch.optim.Optimizer.zero_grad.html",
        "https://pytorch.org/tutorials/recipes/recipes/zeroing_out_gradients.html",
    ),
    fixable=True,
    fix=(
        "Safe. `gradlint fix` moves the clear into the loop that steps: right after the step when the "
        "file already clears after a step elsewhere, else at the top of that loop, before the forward "
        "pass; the clear keeps its form (`set_to_none=True`, a `p.grad = None` loop) and the outer one is "
        "removed. When an iteration can skip the step (the step under an `if`, a `continue` in the "
        "loop), a copy of the clear goes right after the step and the outer clear stays, still dropping "
        "what a skipped step leaves behind. It is offered only for a loop in the function of the clear; "
        "the clear then runs once per step, on gradients a step has already applied, so a program that "
        "was right after all is unchanged."
    ),
    valid=(
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n"
        "    optimizer.step()\n",
        "for x, y in loader:\n"
        "    loss_fn(model(x), y).backward()\n"
        "    optimizer.step()\n"
        "    model.zero_grad(set_to_none=True)\n",
    ),
    invalid=(
        "optimizer.zero_grad()  # error\n"
        "for x, y in loader:\n"
        "    loss_fn(model(x), y).backward()\n"
        "    optimizer.step()\n",
        "for epoch in range(3):\n"
        "    optimizer.zero_grad()  # error\n"
        "    for x, y in loader:\n"
        "        loss_fn(model(x), y).backward()\n"
        "        optimizer.step()\n",
    ),
)


def check(facts: Facts) -> list[Finding]:
    return one_per_place(report(stale) for stale in facts.stale_steps if stale.clear is not None)


def report(stale: StaleStep) -> Finding:
    clear, step = stale.clear, stale.step
    assert clear is not None
    outer = [loop for loop in stale.step_loops if loop not in stale.clear_loops]
    if not stale.clear_on_path:
        frequency = "does not run between two steps"
    elif stale.clear_loops:
        frequency = f"runs once per iteration of {loop_phrase(stale.clear_loops[-1])}"
    else:
        frequency = "runs once, before the loop"
    if outer:
        stepping = (
            f"{code(step)} at {line(step)} runs on every iteration of {loop_phrase(outer[-1])}"
        )
        where = f"move it into {loop_phrase(outer[-1])}"
    else:
        frequency = "is skipped on some iterations"
        stepping = f"{code(step)} at {line(step)} is not"
        where = "clear on every iteration that steps"
    if outer and stale.step_loop_clears and stale.clear_on_path:
        # that loop clears after its steps: only its first step finds the gradients left before it
        message = (
            f"{code(step)} at {line(step)} re-applies, the first time {loop_phrase(outer[-1])} "
            f"steps, gradients an earlier step already used: {code(clear)} {frequency} and nothing clears "
            f"them before {loop_phrase(outer[0])}; clear before {loop_phrase(outer[0])}, as that loop "
            f"does after its own steps"
        )
        return finding(RULE, clear, message, [(step, "this step re-applies stale gradients")])
    message = (
        f"{code(clear)} {frequency} but {stepping}: step k applies the sum of k backward passes' "
        f"gradients, re-applying gradients earlier steps already used; {where}, before the forward pass "
        f"or after the step"
    )
    return finding(RULE, clear, message, [(step, "this step re-applies stale gradients")])
