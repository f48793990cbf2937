"""GL102: gradients are never cleared."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.core import Finding, Rule
from gradlint.rules.base import code, finding, line, loop_phrase, one_per_place

if TYPE_CHECKING:  # only named here; see rules/__init__.py for why
    from gradlint.analysis.facts import Facts, StaleStep

RULE = Rule(
    code="GL102",
    name="gradients-never-cleared",
    summary="an optimizer steps in a loop but nothing ever clears its gradients",
    what_it_does=(
        "Finds an optimizer that steps repeatedly while nothing in the analysed code clears its "
        "gradients: no `optimizer.zero_grad()`, no `model.zero_grad()`, no `p.grad = None`."
    ),
    why_bad=(
        "`backward()` adds into `.grad`. Without a clear, the gradients of every batch since the start "
        "stay summed in `.grad`, and every step applies that running sum: the update grows without bound "
        "and the model diverges or trains far worse."
    ),
    example=(
        "for x, y in loader:\n    loss = loss_fn(model(x), y)\n    loss.backward()\n    optimizer.step()"
    ),
    use_instead=(
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss = loss_fn(model(x), y)\n"
        "    loss.backward()\n"
        "    optimizer.step()"
    ),
    runtime=(
        "Confirmed when a step applies gradients from a backward pass that an earlier step of the same "
        "optimizer already applied."
    ),
    references=(
        "https://pytorch.org/docs/stable/generated/torch.optim.Optimizer.zero_grad.html",
        "https://pytorch.org/tutorials/recipes/recipes/zeroing_out_gradients.html",
        "https://pytorch.org/docs/stable/generated/torch.Tensor.backward.html",
    ),
    fixable=True,
    fix=(
        "Safe. `gradlint fix` inserts `optimizer.zero_grad()` right after the step of that optimizer "
        "(`opt.step()` or `scaler.step(opt)`, after the `scaler.update()` that follows it), and "
        "`p.grad.zero_()` after a hand-written update `p -= lr * p.grad`. The gradients it clears were "
        "just applied, so a correct program is unchanged. For a step with a closure (`opt.step(closure)`, "
        "LBFGS) it inserts `opt.zero_grad()` at the top of the closure, before its backward: the step "
        "evaluates the closure several times and each evaluation must start from clean gradients."
    ),
    valid=(
        "for x, y in loader:\n"
        "    for p in model.parameters():\n"
        "        p.grad = None\n"
        "    loss_fn(model(x), y).backward()\n"
        "    optimizer.step()\n",
    ),
    invalid=("for x, y in loader:\n    loss_fn(model(x), y).backward()  # error\n    optimizer.step()\n",),
)


def check(facts: Facts) -> list[Finding]:
    return one_per_place(report(stale) for stale in facts.stale_steps if stale.clear is None)


def report(stale: StaleStep) -> Finding:
    step = stale.step
    loop = f" on every iteration of {loop_phrase(stale.step_loops[-1])}" if stale.step_loops else ""
    clear = (
        "set `p.grad = None` for each parameter"
        if stale.optimizer == "parameters"
        else (f"call `{stale.optimizer}.zero_grad()`")
    )
    fix = f"{clear} before the forward pass or after the step"
    if len(stale.backwards) == 1:
        backward = stale.backwards[0]
        message = (
            f"gradients of `{stale.optimizer}` are never cleared: {code(backward)} adds into .grad{loop} and "
            f"{code(step)} at {line(step)} applies the running sum of all earlier batches; {fix}"
        )
        return finding(RULE, backward, message, [(step, "this step applies the accumulated sum")])
    sources = ", ".join(str(b.location.line) for b in stale.backwards) or "earlier steps"
    message = (
        f"gradients of `{stale.optimizer}` are never cleared: {code(step)}{loop} applies the running sum of "
        f"every backward pass so far (lines {sources}); {fix}"
    )
    return finding(
        RULE, step, message, [(b, "gradients added here are never cleared") for b in stale.backwards]
    )
