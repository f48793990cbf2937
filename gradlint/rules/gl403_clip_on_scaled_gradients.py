"""GL403: gradients are clipped while they still carry GradScaler's scale."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.core import Finding, Rule
from gradlint.rules.base import code, finding, line, one_per_place

if TYPE_CHECKING:  # only named here; see rules/__init__.py for why
    from gradlint.analysis.facts import ClipOnScaledGradients, Facts

RULE = Rule(
    code="GL403",
    name="clip-on-scaled-gradients",
    summary="gradients are clipped while still scaled by GradScaler (no scaler.unscale_ before)",
    what_it_does=(
        "Finds `clip_grad_norm_` / `clip_grad_value_` on gradients that come from "
        "`scaler.scale(loss).backward()` with no `scaler.unscale_(optimizer)` between. "
        "`GradScaler(enabled=...)` does not silence it; `accelerator.clip_grad_norm_` unscales for you "
        "and is not reported."
    ),
    why_bad=(
        "The gradients are still multiplied by the scale (65536 at first), so the threshold is compared "
        "with a norm 65536 times too large: `clip_grad_norm_(params, 1.0)` shrinks the gradients on nearly "
        "every step, to about 1/65536 of the intended bound once the scaler unscales them, and the "
        "effective learning rate changes whenever the scale does."
    ),
    example=(
        "scaler.scale(loss).backward()\n"
        "torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n"
        "scaler.step(optimizer)\n"
        "scaler.update()"
    ),
    use_instead=(
        "scaler.scale(loss).backward()\n"
        "scaler.unscale_(optimizer)\n"
        "torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n"
        "scaler.step(optimizer)\n"
        "scaler.update()"
    ),
    runtime=(
        "Confirmed when a clip runs on gradients that an enabled GradScaler scaled and had not yet "
        "unscaled for their optimizer. With a disabled scaler there is no scale to observe."
    ),
    references=(
        "https://pytorch.org/docs/stable/notes/amp_examples.html#gradient-clipping",
        "https://pytorch.org/docs/stable/amp.html#torch.amp.GradScaler.unscale_",
    ),
    fixable=False,
    fix="Not auto-fixable yet: call `scaler.unscale_(optimizer)` before clipping that optimizer's gradients.",
    words=("clip_grad",),
    valid=(
        "scaler = torch.amp.GradScaler()\n"
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    scaler.scale(loss_fn(model(x), y)).backward()\n"
        "    scaler.unscale_(optimizer)\n"
        "    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n"
        "    scaler.step(optimizer)\n"
        "    scaler.update()\n",
    ),
    invalid=(
        "scaler = torch.amp.GradScaler(enabled=use_amp)\n"
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    scaler.scale(loss_fn(model(x), y)).backward()\n"
        "    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # error\n"
        "    scaler.step(optimizer)\n"
        "    scaler.update()\n",
    ),
)


def check(facts: Facts) -> list[Finding]:
    return one_per_place(report(fact) for fact in facts.clip_scaled)


def report(fact: ClipOnScaledGradients) -> Finding:
    clip, backward = fact.clip, fact.backward
    message = (
        f"{code(clip)} clips the gradients of {code(backward)} ({line(backward)}) while they "
        f"still carry GradScaler's scale (65536 at first): the threshold meets a norm that many times too "
        f"large and clips nearly every step; call `scaler.unscale_(optimizer)` before clipping"
    )
    return finding(RULE, clip, message, [(backward, "the gradients are scaled here")])
