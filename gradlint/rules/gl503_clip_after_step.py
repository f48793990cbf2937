"""GL503: gradients are clipped after the step that used them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.core import Finding, Rule
from gradlint.rules.base import code, finding, line, one_per_place

if TYPE_CHECKING:  # only named here; see rules/__init__.py for why
    from gradlint.analysis.facts import ClipAfterStep, Facts

RULE = Rule(
    code="GL503",
    name="clip-after-step",
    summary="clip_grad_norm_ runs after optimizer.step() has applied the gradients it clips",
    what_it_does=(
        "Finds `clip_grad_norm_` / `clip_grad_value_` that runs after an optimizer step has applied the "
        "gradients it clips, with no `backward()` or clear in between. A call that only measures the "
        "norm (`max_norm=float('inf')`) is not reported."
    ),
    why_bad=(
        "The step already used the unclipped gradients: clipping afterwards changes nothing that matters "
        "(the next clear throws the clipped values away), so a gradient spike goes into the weights in full "
        "and the run has no protection against exploding gradients."
    ),
    example=(
        "loss.backward()\n"
        "optimizer.step()\n"
        "torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n"
        "optimizer.zero_grad()"
    ),
    use_instead=(
        "loss.backward()\n"
        "torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n"
        "optimizer.step()\n"
        "optimizer.zero_grad()"
    ),
    runtime=(
        "Confirmed when a clip runs on gradients that a step has already applied (every backward pass "
        "summed in them was used by a step), before any new backward pass."
    ),
    references=("https://pytorch.org/docs/stable/generated/torch.nn.utils.clip_grad_norm_.html",),
    fixable=False,
    fix="Not auto-fixable: move the clip between the `backward()` and the `step()` it is meant for.",
    words=("clip_grad",),
    valid=(
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n"
        "    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n"
        "    optimizer.step()\n",
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n"
        "    optimizer.step()\n"
        "    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float('inf'))\n",
    ),
    invalid=(
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n"
        "    optimizer.step()\n"
        "    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # error\n",
    ),
)


def check(facts: Facts) -> list[Finding]:
    return one_per_place(report(fact) for fact in facts.clip_after_step)


def report(fact: ClipAfterStep) -> Finding:
    clip, step = fact.clip, fact.step
    message = (
        f"{code(clip)} runs after {code(step)} ({line(step)}) has applied the gradients it "
        f"clips: the step used them unclipped, so clipping protects nothing; clip between `backward()` "
        f"and the step"
    )
    return finding(RULE, clip, message, [(step, "this step already used the unclipped gradients")])
