"""GL103: gradients are discarded before any step uses them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.core import Finding, Rule
from gradlint.rules.base import code, finding, line, one_per_place

if TYPE_CHECKING:  # only named here; see rules/__init__.py for why
    from gradlint.analysis.facts import DiscardedGradients, Facts

RULE = Rule(
    code="GL103",
    name="clear-discards-unstepped-gradients",
    summary="a clear throws away gradients that no step has used yet, and a step follows",
    what_it_does=(
        "Finds a clear (`zero_grad()`, `p.grad = None`) that wipes the gradients of a `backward()` "
        "before any optimizer step used them, while a step of that optimizer follows: `zero_grad()` "
        "between `backward()` and `step()`, or a clear on every micro-batch of an accumulation window."
    ),
    why_bad=(
        "The step that follows applies zero gradients (with `set_to_none=True` it skips every parameter), "
        "so the model never learns; inside an accumulation window only the last micro-batch reaches the "
        "step. A common form is `model.zero_grad()` inside `accelerator.accumulate(...)`: unlike the "
        "prepared optimizer's `zero_grad()`, the module's is not skipped between sync steps."
    ),
    example=(
        "for x, y in loader:\n"
        "    loss = loss_fn(model(x), y)\n"
        "    loss.backward()\n"
        "    optimizer.zero_grad()\n"
        "    optimizer.step()"
    ),
    use_instead=(
        "for x, y in loader:\n"
        "    loss = loss_fn(model(x), y)\n"
        "    loss.backward()\n"
        "    optimizer.step()\n"
        "    optimizer.zero_grad()"
    ),
    runtime=(
        "Confirmed when a clear wipes gradients of a backward pass that no step used, and a step of that "
        "optimizer follows; the evidence lists the discarded backward passes and the step that missed them."
    ),
    references=(
        "https://pytorch.org/docs/stable/generated/torch.optim.Optimizer.zero_grad.html",
        "https://pytorch.org/docs/stable/notes/amp_examples.html#gradient-accumulation",
    ),
    fixable=True,
    fix=(
        "`gradlint fix` moves the clear to right after the step it starved (keeping `set_to_none`), when "
        "both are in one function and the clear comes first. Safe when the clear sits between the "
        "backward and the step: that step could only apply empty gradients, which no correct program "
        "means. Unsafe (with `--unsafe-fixes`) when a backward runs between the clear and the step, as "
        "with a clear on every micro-batch: a program could mean to drop the earlier backwards, and the "
        "moved clear makes the step apply them all. A clear that already follows the step in the text "
        "(`model.zero_grad()` inside `accelerator.accumulate`) is not moved: replace it with the "
        "prepared optimizer's `zero_grad()`."
    ),
    valid=(
        "for i, (x, y) in enumerate(loader):\n"
        "    (loss_fn(model(x), y) / 4).backward()\n"
        "    if (i + 1) % 4 == 0:\n"
        "        optimizer.step()\n"
        "        optimizer.zero_grad()\n",
    ),
    invalid=(
        "for x, y in loader:\n"
        "    loss_fn(model(x), y).backward()\n"
        "    optimizer.zero_grad()  # error\n"
        "    optimizer.step()\n",
        "for i, (x, y) in enumerate(loader):\n"
        "    optimizer.zero_grad()  # error\n"
        "    (loss_fn(model(x), y) / 4).backward()\n"
        "    if (i + 1) % 4 == 0:\n"
        "        optimizer.step()\n",
    ),
)


def check(facts: Facts) -> list[Finding]:
    # A step placed before the backward (GL203) is the cause of those discards: report it alone
    caused_by_order = {(fact.step, fact.backward) for fact in facts.step_before_backward}
    return one_per_place(
        report(discard)
        for discard in facts.discarded
        if (discard.step, discard.backward) not in caused_by_order
    )


def report(discard: DiscardedGradients) -> Finding:
    clear, backward, step = discard.clear, discard.backward, discard.step
    message = (
        f"{code(clear)} discards the gradients of {code(backward)} ({line(backward)}) "
        f"before any step uses them, and {code(step)} at {line(step)} then steps without them; "
        f"clear after the step instead"
    )
    return finding(
        RULE,
        clear,
        message,
        [
            (backward, "gradients computed here are thrown away"),
            (step, "this step misses them"),
        ],
    )
