"""GL304: the framework divides the loss by the accumulation count, and the code divides it again."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.core import Finding, Rule
from gradlint.rules.base import code, finding, one_per_place

if TYPE_CHECKING:  # only named here; see rules/__init__.py for why
    from gradlint.analysis.facts import Facts, ScaledTwice

RULE = Rule(
    code="GL304",
    name="accumulation-scaled-twice",
    summary="the framework divides the loss by the accumulation count and the code divides it again",
    what_it_does=(
        "Finds a loss divided by the gradient accumulation count (`loss / gradient_accumulation_steps`, "
        "`loss /= accum_steps`) and then given to a backward that divides by that count itself: "
        "`accelerator.backward(loss)` when the module builds `Accelerator(gradient_accumulation_steps=N)`, "
        "or a DeepSpeed engine's `engine.backward(loss)` when the module's DeepSpeed config sets "
        '`"gradient_accumulation_steps"`. Not reported for Lightning Fabric\'s `fabric.backward`, which '
        "does not divide, nor for an Accelerator left at one accumulation step."
    ),
    why_bad=(
        "accelerate and DeepSpeed already divide every loss by the accumulation count, so that the n "
        "micro-batches of a window add up to their mean. Dividing once more makes each update 1/n of the "
        "intended one: the learning rate is silently divided by n, and changes whenever n does."
    ),
    example=(
        "accelerator = Accelerator(gradient_accumulation_steps=args.accum_steps)\n"
        "for batch in loader:\n"
        "    with accelerator.accumulate(model):\n"
        "        loss = model(**batch).loss / args.accum_steps\n"
        "        accelerator.backward(loss)\n"
        "        optimizer.step()\n"
        "        optimizer.zero_grad()"
    ),
    use_instead=(
        "accelerator = Accelerator(gradient_accumulation_steps=args.accum_steps)\n"
        "for batch in loader:\n"
        "    with accelerator.accumulate(model):\n"
        "        loss = model(**batch).loss\n"
        "        accelerator.backward(loss)  # divides by gradient_accumulation_steps\n"
        "        optimizer.step()\n"
        "        optimizer.zero_grad()"
    ),
    runtime=(
        "Confirmed when a step sums k > 1 backward passes of the line and their losses, read from the "
        "autograd graph, were scaled by about 1/k² each: the step applies about 1/k of the mean gradient."
    ),
    references=(
        "https://huggingface.co/docs/accelerate/usage_guides/gradient_accumulation",
        "https://www.deepspeed.ai/docs/config-json/#batch-size-related-parameters",
    ),
    fix=(
        "Not auto-fixable: remove the division by the accumulation count from the loss (keep it in what "
        "the program logs, if it logs the divided value)."
    ),
    valid=(
        "accelerator = Accelerator(gradient_accumulation_steps=4)\n"
        "for x, y in loader:\n"
        "    with accelerator.accumulate(model):\n"
        "        accelerator.backward(loss_fn(model(x), y))\n"
        "        optimizer.step()\n"
        "        optimizer.zero_grad()\n",
        "fabric = Fabric()\n"
        "for i, (x, y) in enumerate(loader):\n"
        "    fabric.backward(loss_fn(model(x), y) / accum_steps)\n"
        "    if (i + 1) % accum_steps == 0:\n"
        "        optimizer.step()\n"
        "        optimizer.zero_grad()\n",
    ),
    invalid=(
        "accelerator = Accelerator(gradient_accumulation_steps=accum_steps)\n"
        "for x, y in loader:\n"
        "    with accelerator.accumulate(model):\n"
        "        loss = loss_fn(model(x), y) / accum_steps\n"
        "        accelerator.backward(loss)  # error\n"
        "        optimizer.step()\n"
        "        optimizer.zero_grad()\n",
    ),
)


def check(facts: Facts) -> list[Finding]:
    return one_per_place(report(fact) for fact in facts.scaled_twice)


def report(fact: ScaledTwice) -> Finding:
    count = fact.count
    message = (
        f"{code(fact.backward)} divides the loss by the accumulation count ({code(fact.framework)}, line "
        f"{fact.framework.location.line}), and {code(fact.division)} (line {fact.division.location.line}) "
        f"divides it by {count} again: each update is 1/{count} of the intended one (the learning rate is "
        f"divided by {count}); remove the division by {count}"
    )
    return finding(
        RULE,
        fact.backward,
        message,
        [(fact.division, "the second division"), (fact.framework, "the framework divides by this count")],
    )
