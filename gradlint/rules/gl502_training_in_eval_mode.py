"""GL502: the model is left in eval mode for the next iterations' training."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.core import Finding, Rule
from gradlint.rules.base import code, finding, line, loop_phrase, one_per_place

if TYPE_CHECKING:  # only named here; see rules/__init__.py for why
    from gradlint.analysis.facts import EvalDuringTraining, Facts

RULE = Rule(
    code="GL502",
    name="training-in-eval-mode",
    summary="model.eval() inside the epoch loop while model.train() runs only before it",
    what_it_does=(
        "Follows each model's train/eval mode through loops and the module's own helpers "
        "(`evaluate(model)`), and finds a backward pass that, on a later iteration of a loop, trains a "
        "model still in the eval mode that `model.eval()` (or `model.train(False)`) set on an earlier "
        "one: typically `model.train()` once before the epoch loop and a validation pass inside it. "
        "Not reported: `model.train()` at the top of each epoch, a helper that ends with "
        "`model.train()`, a helper from another module that receives the model (its effect is "
        "unknown), and models no optimizer trains (a frozen teacher in eval mode)."
    ),
    why_bad=(
        "Modules start in train mode, and `eval()` stays on until something calls `train()`. From the "
        "second epoch on, training runs with dropout off and batch-norm layers using (and no longer "
        "updating) their running statistics: nothing crashes, the model just overfits or trains worse, "
        "and the first epoch's curve looks fine."
    ),
    example=(
        "model.train()\n"
        "for epoch in range(epochs):\n"
        "    for x, y in loader:\n"
        "        optimizer.zero_grad()\n"
        "        loss_fn(model(x), y).backward()\n"
        "        optimizer.step()\n"
        "    model.eval()\n"
        "    validate(model)"
    ),
    use_instead=(
        "for epoch in range(epochs):\n"
        "    model.train()\n"
        "    for x, y in loader:\n"
        "        optimizer.zero_grad()\n"
        "        loss_fn(model(x), y).backward()\n"
        "        optimizer.step()\n"
        "    model.eval()\n"
        "    validate(model)"
    ),
    runtime=(
        "Confirmed when a backward pass reaches parameters whose module ran its forward pass in eval "
        "mode, after earlier backward passes had trained it in train mode; the tracer records each "
        "module's mode at forward time and where `eval()` set it. The evidence says how many backward "
        "passes trained in eval mode, and after how many in train mode."
    ),
    references=(
        "https://pytorch.org/docs/stable/generated/torch.nn.Module.html#torch.nn.Module.eval",
        "https://pytorch.org/docs/stable/notes/autograd.html#evaluation-mode-nn-module-eval",
    ),
    fixable=False,
    fix=(
        "Not auto-fixable: call `model.train()` at the top of each epoch, or at the end of the helper "
        "that calls `model.eval()`."
    ),
    valid=(
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for epoch in range(3):\n"
        "    model.train()\n"
        "    for x, y in loader:\n"
        "        loss_fn(model(x), y).backward()\n"
        "        optimizer.step()\n"
        "    model.eval()\n",
        "def evaluate(model):\n"
        "    model.eval()\n"
        "    score = run_validation(model.state_dict())\n"
        "    model.train()\n"
        "    return score\n"
        "\n"
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for epoch in range(3):\n"
        "    for x, y in loader:\n"
        "        loss_fn(model(x), y).backward()\n"
        "        optimizer.step()\n"
        "    evaluate(model)\n",
        "from helpers import evaluate\n"
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for epoch in range(3):\n"
        "    for x, y in loader:\n"
        "        loss_fn(model(x), y).backward()\n"
        "        optimizer.step()\n"
        "    model.eval()\n"
        "    evaluate(model)\n",
    ),
    invalid=(
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "model.train()\n"
        "for epoch in range(3):\n"
        "    for x, y in loader:\n"
        "        loss_fn(model(x), y).backward()\n"
        "        optimizer.step()\n"
        "    model.eval()  # error\n",
        "def evaluate(net):\n"
        "    net.eval()  # error\n"
        "    return run_validation(net.state_dict())\n"
        "\n"
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for epoch in range(3):\n"
        "    for x, y in loader:\n"
        "        loss_fn(model(x), y).backward()\n"
        "        optimizer.step()\n"
        "    evaluate(model)\n",
    ),
)


def check(facts: Facts) -> list[Finding]:
    return one_per_place(report(fact) for fact in facts.eval_during_training)


def report(fact: EvalDuringTraining) -> Finding:
    eval_site, backward, train = fact.eval_site, fact.backward, fact.train
    if train is None:
        restore = "nothing sets it back to train mode"
    elif fact.train_in_loop:
        restore = f"{code(train)} ({line(train)}) does not run between them"
    else:
        restore = f"{code(train)} ({line(train)}) runs only once, before the loop"
    message = (
        f"{code(eval_site)} leaves `{fact.model}` in eval mode for the next iteration of "
        f"{loop_phrase(fact.loop)}, where {code(backward)} ({line(backward)}) trains it: "
        f"{restore}, so from the second iteration on training runs with dropout off and batch-norm "
        f"statistics frozen; call `{fact.model}.train()` at the top of each iteration (or after the "
        f"evaluation)"
    )
    related = [(backward, "this backward trains the model in eval mode")]
    if train is not None:
        related.append((train, "the only train() call, which does not run again"))
    return finding(RULE, eval_site, message, related)
