"""GL401: optimizer.step() applies gradients that GradScaler scaled."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.core import Finding, Rule
from gradlint.rules.base import code, finding, line, one_per_place

if TYPE_CHECKING:  # only named here; see rules/__init__.py for why
    from gradlint.analysis.facts import Facts, ScaledStep

RULE = Rule(
    code="GL401",
    name="step-bypasses-grad-scaler",
    summary="scaler.scale(loss).backward() is followed by optimizer.step() instead of scaler.step(optimizer)",
    what_it_does=(
        "Finds a plain `optimizer.step()` whose gradients all come from `scaler.scale(loss).backward()` "
        "(`torch.amp.GradScaler`, `torch.cuda.amp.GradScaler`) with no `scaler.unscale_(optimizer)` "
        "between. `GradScaler(enabled=...)` does not silence it: the bug appears as soon as the scaler "
        "is enabled. Accelerate's `accelerator.backward` scales internally and is not reported."
    ),
    why_bad=(
        "`scaler.scale(loss)` multiplies the loss, and so every gradient, by the scale (65536 at first). "
        "`optimizer.step()` applies those gradients as they are: each update is 65536 times too large "
        "(Adam's normalisation hides part of it, SGD's does not), and steps with inf/NaN gradients are "
        "applied instead of skipped, so one overflow writes NaN into the weights."
    ),
    example=(
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    with torch.autocast('cuda'):\n"
        "        loss = loss_fn(model(x), y)\n"
        "    scaler.scale(loss).backward()\n"
        "    optimizer.step()"
    ),
    use_instead=(
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    with torch.autocast('cuda'):\n"
        "        loss = loss_fn(model(x), y)\n"
        "    scaler.scale(loss).backward()\n"
        "    scaler.step(optimizer)\n"
        "    scaler.update()"
    ),
    runtime=(
        "Confirmed when an optimizer steps, outside `scaler.step()`, on gradients that an enabled "
        "GradScaler scaled and did not unscale. With a disabled scaler (`enabled=False`, as on a CPU "
        "test run) there is no scale to observe: the finding is then unreached or refuted."
    ),
    references=(
        "https://pytorch.org/docs/stable/amp.html#gradient-scaling",
        "https://pytorch.org/docs/stable/notes/amp_examples.html",
    ),
    fixable=False,
    fix=(
        "Not auto-fixable yet: replace `optimizer.step()` with `scaler.step(optimizer)` followed by "
        "`scaler.update()`."
    ),
    valid=(
        "scaler = torch.amp.GradScaler()\n"
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    scaler.scale(loss_fn(model(x), y)).backward()\n"
        "    scaler.step(optimizer)\n"
        "    scaler.update()\n",
    ),
    invalid=(
        "scaler = torch.amp.GradScaler(enabled=use_amp)\n"
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    scaler.scale(loss_fn(model(x), y)).backward()\n"
        "    optimizer.step()  # error\n",
    ),
)


def check(facts: Facts) -> list[Finding]:
    return one_per_place(report(fact) for fact in facts.scaled_steps)


def report(fact: ScaledStep) -> Finding:
    step, backward = fact.step, fact.backward
    message = (
        f"{code(step)} applies the gradients of {code(backward)} ({line(backward)}) with "
        f"GradScaler's scale still in them (65536 at first): the update is that many times too large and "
        f"inf/NaN steps are not skipped; use `scaler.step({fact.optimizer})` then `scaler.update()`"
    )
    return finding(RULE, step, message, [(backward, "the gradients are scaled here")])
