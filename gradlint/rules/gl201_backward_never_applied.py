"""GL201: gradients are computed but never applied."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.core import Finding, Rule
from gradlint.rules.base import code, finding, line, loop_phrase, one_per_place

if TYPE_CHECKING:  # only named here; see rules/__init__.py for why
    from gradlint.analysis.facts import Facts, UnappliedBackward

RULE = Rule(
    code="GL201",
    name="backward-never-applied",
    summary="backward() runs in a loop but no optimizer step ever uses its gradients",
    what_it_does=(
        "Finds a `backward()` in a training loop whose gradients no optimizer step, manual update or "
        "other reader of `.grad` ever uses on any path: the `optimizer.step()` is missing, or only a "
        "learning-rate scheduler steps."
    ),
    why_bad=(
        "The loop spends the full cost of the backward pass and the parameters never change: the loss "
        "curve stays flat (or moves only through the scheduler's warm-up), and the run is wasted."
    ),
    example=(
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n"
        "    scheduler.step()"
    ),
    use_instead=(
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n"
        "    optimizer.step()\n"
        "    scheduler.step()"
    ),
    runtime=(
        "Confirmed when backward passes ran, no step touched those parameters within the budget, and "
        "the parameters did not change."
    ),
    references=(
        "https://pytorch.org/docs/stable/optim.html#taking-an-optimization-step",
        "https://pytorch.org/docs/stable/generated/torch.Tensor.backward.html",
    ),
    fixable=False,
    fix=(
        "Not auto-fixable: which optimizer should step, and where, is the program's to decide; add "
        "its `step()` after the backward."
    ),
    valid=(
        "def accumulate(model, loader, optimizer):\n"
        "    for x, y in loader:\n"
        "        loss_fn(model(x), y).backward()  # the caller steps\n",
    ),
    invalid=(
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()  # error\n"
        "    scheduler.step()\n",
    ),
)


def check(facts: Facts) -> list[Finding]:
    # A step placed before the backward (GL203) is why those gradients are never applied: report it alone
    after_the_step = {fact.backward for fact in facts.step_before_backward}
    return one_per_place(
        report(unapplied) for unapplied in facts.unapplied if unapplied.backward not in after_the_step
    )


def report(unapplied: UnappliedBackward) -> Finding:
    backward = unapplied.backward
    fate = ""
    related = []
    if unapplied.cleared_by is not None:
        fate = f"; {code(unapplied.cleared_by)} at {line(unapplied.cleared_by)} throws them away"
        related.append((unapplied.cleared_by, "the unused gradients are cleared here"))
    message = (
        f"the gradients of {code(backward)} are never applied: no optimizer step or parameter update uses "
        f"them in {loop_phrase(unapplied.loop)}, so the parameters never change{fate}; add the optimizer's "
        f"step() after the backward (not auto-fixable: which optimizer, and where, is yours to choose)"
    )
    return finding(RULE, backward, message, related)
