"""GL202: the learning-rate scheduler steps before its optimizer in the same iteration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.core import Finding, Rule
from gradlint.rules.base import code, finding, line, loop_phrase, one_per_place

if TYPE_CHECKING:  # only named here; see rules/__init__.py for why
    from gradlint.analysis.facts import Facts, SchedulerBeforeStep

RULE = Rule(
    code="GL202",
    name="scheduler-steps-before-optimizer",
    summary="scheduler.step() runs before optimizer.step() in the same iteration",
    what_it_does=(
        "Finds a learning-rate scheduler's `step()` (`StepLR`, `LambdaLR`, `ReduceLROnPlateau.step(metric)`, "
        "a warm-up schedule, ...) that runs in an iteration before the `step()` of the optimizer it drives: "
        "per batch (`scheduler.step(); optimizer.step()`), or at the top of the epoch loop, before the "
        "batch loop that steps. A scheduler stepped after the optimizer, once per batch or once per epoch "
        "after the batch loop, is fine; so is one guarded to skip the first iteration (`if epoch > 0:`)."
    ),
    why_bad=(
        "Since PyTorch 1.1 a scheduler's `step()` moves to the *next* learning rate. Called before the "
        "optimizer's step, the first value of the schedule is never used and every step runs one value "
        "ahead: at the top of the epoch, epoch 0 trains with epoch 1's rate (a warm-up loses its first "
        "stage, a step decay comes one epoch early). PyTorch warns about it at run time, but only on the "
        "first call, and wrongly when GradScaler skipped the first step; the order in the code is the bug."
    ),
    example=(
        "for epoch in range(epochs):\n"
        "    scheduler.step()\n"
        "    for x, y in loader:\n"
        "        optimizer.zero_grad()\n"
        "        loss_fn(model(x), y).backward()\n"
        "        optimizer.step()"
    ),
    use_instead=(
        "for epoch in range(epochs):\n"
        "    for x, y in loader:\n"
        "        optimizer.zero_grad()\n"
        "        loss_fn(model(x), y).backward()\n"
        "        optimizer.step()\n"
        "    scheduler.step()"
    ),
    runtime=(
        "Confirmed when a scheduler steps (its constructor's own step aside) before any step of its "
        "optimizer was attempted, and the optimizer steps after it: the first learning-rate value was "
        "skipped. A step GradScaler skipped on inf/NaN counts as attempted, so PyTorch's false alarm "
        "is not repeated."
    ),
    references=(
        "https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate",
        "https://github.com/pytorch/pytorch/issues/55585",
    ),
    fixable=False,
    fix=(
        "Not auto-fixable yet: the fix moves `scheduler.step()` after `optimizer.step()`, but whether the"
        " schedule is per batch or per epoch decides where, and that is the program's."
    ),
    words=(".step(",),
    valid=(
        "scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 10)\n"
        "for epoch in range(epochs):\n"
        "    for x, y in loader:\n"
        "        optimizer.zero_grad()\n"
        "        loss_fn(model(x), y).backward()\n"
        "        optimizer.step()\n"
        "    scheduler.step()\n",
        "for epoch in range(epochs):\n"
        "    if epoch > 0:\n"
        "        scheduler.step()\n"
        "    for x, y in loader:\n"
        "        optimizer.zero_grad()\n"
        "        loss_fn(model(x), y).backward()\n"
        "        optimizer.step()\n",
    ),
    invalid=(
        "scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, total_steps=100)\n"
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n"
        "    scheduler.step()  # error\n"
        "    optimizer.step()\n",
        "for epoch in range(epochs):\n"
        "    scheduler.step()  # error\n"
        "    for x, y in loader:\n"
        "        optimizer.zero_grad()\n"
        "        loss_fn(model(x), y).backward()\n"
        "        optimizer.step()\n",
    ),
)


def check(facts: Facts) -> list[Finding]:
    return one_per_place(report(fact) for fact in facts.scheduler_before_step)


def report(fact: SchedulerBeforeStep) -> Finding:
    scheduler, step = fact.scheduler, fact.step
    if fact.per_epoch:
        effect = (
            f"runs at the top of {loop_phrase(fact.loop)}, before {code(step)} ({line(step)}) "
            f"steps: the first epoch trains with the schedule's second learning rate and every epoch runs "
            f"one value ahead; step the scheduler after the epoch's batch loop"
        )
    else:
        effect = (
            f"runs before {code(step)} ({line(step)}) in the same iteration of "
            f"{loop_phrase(fact.loop)}: the schedule's first learning rate is never used and every step "
            f"runs one value ahead; call it after the optimizer's step"
        )
    return finding(
        RULE,
        scheduler,
        f"{code(scheduler)} {effect}",
        [(step, "the optimizer steps here, after the scheduler")],
    )
