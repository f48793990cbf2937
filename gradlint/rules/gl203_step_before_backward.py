"""GL203: the optimizer steps before the backward pass of its iteration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.core import Finding, Rule
from gradlint.rules.base import code, finding, line, loop_phrase, one_per_place

if TYPE_CHECKING:  # only named here; see rules/__init__.py for why
    from gradlint.analysis.facts import Facts, StepBeforeBackward

RULE = Rule(
    code="GL203",
    name="step-before-backward",
    summary="optimizer.step() runs before backward() in the same iteration",
    what_it_does=(
        "Finds an optimizer `step()` that runs in an iteration before any `backward()` of that iteration, "
        "while a `backward()` follows it in the same iteration: the calls of one training step are in the "
        "wrong order. A step under an `if` (accumulation that steps at the start of the next window) and "
        "`optimizer.step(closure)` (the closure runs the backward first) are not reported."
    ),
    why_bad=(
        "Each step applies the gradients of the previous batch, and the first step applies none. When the "
        "iteration also clears first (`zero_grad(); step(); backward()`), every step applies zero "
        "gradients and the model never learns: the clear throws away each backward before a step sees it. "
        "That discard is reported here, as its cause, and not again as GL103."
    ),
    example=(
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    optimizer.step()\n"
        "    loss_fn(model(x), y).backward()"
    ),
    use_instead=(
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n"
        "    optimizer.step()"
    ),
    runtime=(
        "Confirmed when a step of the optimizer applied no backward pass at all, and a backward pass "
        "reaching its parameters followed before its next step."
    ),
    references=("https://pytorch.org/docs/stable/optim.html#taking-an-optimization-step",),
    fixable=False,
    fix=(
        "Not auto-fixable: the iteration's order is rewritten by hand, so that `optimizer.step()` follows"
        " the `backward()` whose gradients it should apply."
    ),
    valid=(
        "for i, (x, y) in enumerate(loader):\n"
        "    if i > 0 and i % 4 == 0:\n"
        "        optimizer.step()\n"
        "        optimizer.zero_grad()\n"
        "    (loss_fn(model(x), y) / 4).backward()\n",
        "for x, y in loader:\n"
        "    def closure():\n"
        "        optimizer.zero_grad()\n"
        "        loss = loss_fn(model(x), y)\n"
        "        loss.backward()\n"
        "        return loss\n"
        "    optimizer.step(closure)\n",
    ),
    invalid=(
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    optimizer.step()  # error\n"
        "    loss_fn(model(x), y).backward()\n",
        "for x, y in loader:\n"
        "    optimizer.step()  # error\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n",
    ),
)


def check(facts: Facts) -> list[Finding]:
    return one_per_place(report(fact) for fact in facts.step_before_backward)


def report(fact: StepBeforeBackward) -> Finding:
    step, backward = fact.step, fact.backward
    message = (
        f"{code(step)} runs before {code(backward)} ({line(backward)}) in the same iteration "
        f"of {loop_phrase(fact.loop)}: each step applies the previous batch's gradients, the first step none "
        f"(and none at all when the iteration clears first); move the step after the backward"
    )
    return finding(RULE, step, message, [(backward, "the backward whose gradients this step misses")])
