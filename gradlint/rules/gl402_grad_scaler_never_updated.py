"""GL402: scaler.step() runs again with no scaler.update() since the last one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.core import Finding, Rule
from gradlint.rules.base import code, finding, line, loop_phrase, one_per_place

if TYPE_CHECKING:  # only named here; see rules/__init__.py for why
    from gradlint.analysis.facts import Facts, ScalerNotUpdated

RULE = Rule(
    code="GL402",
    name="grad-scaler-never-updated",
    summary="scaler.step(optimizer) runs in a loop without scaler.update()",
    what_it_does=(
        "Finds a `scaler.step(optimizer)` that runs again, on some path through the loop, with no "
        "`scaler.update()` of that scaler since its previous call. `GradScaler(enabled=...)` does not "
        "silence it: a disabled scaler hides the bug until mixed precision is turned on."
    ),
    why_bad=(
        "`update()` is what adapts the scale: it lowers it after an inf/NaN step and raises it after a run "
        "of good ones. Without it the scale never changes, and an enabled `torch.amp.GradScaler` refuses "
        "the next step outright (`RuntimeError: step() has already been called since the last update()`), "
        "so the run that worked on CPU with `enabled=False` fails on its second step on the GPU."
    ),
    example=(
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    scaler.scale(loss_fn(model(x), y)).backward()\n"
        "    scaler.step(optimizer)"
    ),
    use_instead=(
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    scaler.scale(loss_fn(model(x), y)).backward()\n"
        "    scaler.step(optimizer)\n"
        "    scaler.update()"
    ),
    runtime=(
        "Confirmed when one GradScaler's `step()` is called twice for the same optimizer with no "
        "`update()` of that scaler in between (seen with `enabled=False` too)."
    ),
    references=(
        "https://pytorch.org/docs/stable/amp.html#torch.amp.GradScaler.update",
        "https://pytorch.org/docs/stable/notes/amp_examples.html",
    ),
    fixable=False,
    fix="Not auto-fixable yet: call `scaler.update()` once after each `scaler.step(optimizer)`.",
    words=(".step(",),  # scaler.step(optimizer), whatever the scaler is called
    valid=(
        "scaler = torch.amp.GradScaler()\n"
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    scaler.scale(loss_fn(model(x), y)).backward()\n"
        "    scaler.step(optimizer)\n"
        "    scaler.update()\n",
    ),
    invalid=(
        "scaler = torch.amp.GradScaler(enabled=False)\n"
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    scaler.scale(loss_fn(model(x), y)).backward()\n"
        "    scaler.step(optimizer)  # error\n",
    ),
)


def check(facts: Facts) -> list[Finding]:
    return one_per_place(report(fact) for fact in facts.scaler_not_updated)


def report(fact: ScalerNotUpdated) -> Finding:
    step, previous = fact.step, fact.previous
    where = f" in {loop_phrase(fact.loop)}" if fact.loop is not None else ""
    since = "its previous call" if previous == step else f"{code(previous)} ({line(previous)})"
    message = (
        f"{code(step)} runs again{where} with no `update()` of the scaler since {since}: the scale never "
        f"adapts, and an enabled GradScaler raises RuntimeError on the second step; call `update()` after "
        f"each `step()`"
    )
    related = [] if previous == step else [(previous, "the previous step of this scaler")]
    return finding(RULE, step, message, related)
