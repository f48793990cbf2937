"""GL301: accumulated gradients are not scaled."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.core import Finding, Rule
from gradlint.rules.base import code, finding, line, loop_phrase, one_per_place

if TYPE_CHECKING:  # only named here; see rules/__init__.py for why
    from gradlint.analysis.facts import Facts, UnscaledAccumulation

RULE = Rule(
    code="GL301",
    name="accumulation-not-scaled",
    summary="gradient accumulation sums n backward passes per step without dividing the loss by n",
    what_it_does=(
        "Finds a step that applies gradients summed over several backward passes of a loop over data "
        "(a step guarded by `if (i + 1) % n == 0`, an inner loop over micro-batches, or one step after a "
        "whole pass over the loader) while the loss given to `backward()` is not divided by the number "
        "of accumulated passes. Several losses backpropagated in one step by design (multi-task heads, "
        "`retain_graph=True`) are not accumulation and are not reported, nor is gradient caching, where "
        "each micro-step's loss is over the whole window (the other micro-batches' cached outputs, "
        "`cached[:j] + [fresh] + cached[j + 1:]`): those gradients add up to the window loss's."
    ),
    why_bad=(
        "The update is n times the mean gradient's: in effect the learning rate is multiplied by the "
        "accumulation count, and changes whenever the count does, so a recipe tuned with one count "
        "silently diverges with another."
    ),
    example=(
        "for i, (x, y) in enumerate(loader):\n"
        "    loss = loss_fn(model(x), y)\n"
        "    loss.backward()\n"
        "    if (i + 1) % accum_steps == 0:\n"
        "        optimizer.step()\n"
        "        optimizer.zero_grad()"
    ),
    use_instead=(
        "for i, (x, y) in enumerate(loader):\n"
        "    loss = loss_fn(model(x), y) / accum_steps\n"
        "    loss.backward()\n"
        "    if (i + 1) % accum_steps == 0:\n"
        "        optimizer.step()\n"
        "        optimizer.zero_grad()"
    ),
    runtime=(
        "Confirmed when a step sums k > 1 backward passes and the losses were not scaled by about 1/k, "
        "read from the loss's autograd graph."
    ),
    references=(
        "https://pytorch.org/docs/stable/notes/amp_examples.html#gradient-accumulation",
        "https://huggingface.co/docs/accelerate/usage_guides/gradient_accumulation",
    ),
    fixable=True,
    fix=(
        "Unsafe (applied with `--unsafe-fixes`). `gradlint fix` divides the loss given to backward by the "
        "count the finding names, in the file's own names: `(loss / accum_steps).backward()`, "
        "`scaler.scale(loss / accum_steps).backward()`, `accelerator.backward(loss / accum_steps)`, "
        "`/ len(loader)` for one step per pass over the loader. The loss variable is left as it is, so "
        "what the program logs does not change. It is unsafe because it divides every update by the "
        "count: that is the fix, but a learning rate tuned with the summed gradients is then in effect "
        "n times smaller. Not offered when the count names something not in scope at the backward."
    ),
    valid=(
        "for i, (x, y) in enumerate(loader):\n"
        "    (loss_fn(model(x), y) / accum).backward()\n"
        "    if (i + 1) % accum == 0:\n"
        "        optimizer.step()\n"
        "        optimizer.zero_grad()\n",
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    feats = model(x)\n"
        "    head_a(feats).sum().backward(retain_graph=True)\n"
        "    head_b(feats).sum().backward()\n"
        "    optimizer.step()\n",
    ),
    invalid=(
        "for i, (x, y) in enumerate(loader):\n"
        "    loss = loss_fn(model(x), y)\n"
        "    loss.backward()  # error\n"
        "    if (i + 1) % accum == 0:\n"
        "        optimizer.step()\n"
        "        optimizer.zero_grad()\n",
    ),
)


def check(facts: Facts) -> list[Finding]:
    return one_per_place(report(unscaled) for unscaled in facts.unscaled)


def report(unscaled: UnscaledAccumulation) -> Finding:
    backward, step = unscaled.backward, unscaled.step
    count = unscaled.count or "the number of accumulated passes"
    message = (
        f"{code(backward)} accumulates {count} backward passes of {loop_phrase(unscaled.loop)} into each "
        f"{code(step)} ({line(step)}) but the loss is not divided by {count}: the update is "
        f"{count} times the mean gradient's (the learning rate is multiplied by it); "
        f"divide the loss by {count}"
    )
    return finding(RULE, backward, message, [(step, "this step applies the unscaled sum")])
