"""GL501: a tensor that carries an autograd graph is accumulated across iterations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.core import Finding, Rule
from gradlint.rules.base import code, finding, loop_phrase, one_per_place

if TYPE_CHECKING:  # only named here; see rules/__init__.py for why
    from gradlint.analysis.facts import Facts, GraphLeak

RULE = Rule(
    code="GL501",
    name="graph-kept-across-iterations",
    summary="a loss (or model output) accumulated without .item()/.detach(): every graph stays alive",
    what_it_does=(
        "Finds a tensor that still carries its autograd graph (the loss given to `backward()`, a model's "
        "output, or arithmetic on them) added into a variable that outlives the loop iteration: "
        "`total += loss`, `t = t + loss`, `losses.append(loss)`. Not reported: `loss.item()`, "
        "`loss.detach()`, `float(loss)`, accumulation under `torch.no_grad()` / `inference_mode()`, a "
        "variable re-bound on every iteration, a backpropagated loss summed into a variable the loop "
        "starts over (`running_loss = 0` after each step: `backward()` freed those graphs' buffers, and "
        "only a window's worth of bare nodes is held), and losses collected on purpose to be "
        "backpropagated together later (`torch.stack(losses).mean().backward()`) or returned to a caller."
    ),
    why_bad=(
        "`total + loss` is itself a node of the graph: `total` keeps a reference to every earlier "
        "iteration's graph, so none of them can be freed. Memory grows with every iteration until the "
        "run is out of memory; when no backward pass runs (an evaluation loop without `no_grad()`) every "
        "batch's activations are kept too."
    ),
    example=(
        "total_loss = 0.0\n"
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss = loss_fn(model(x), y)\n"
        "    loss.backward()\n"
        "    optimizer.step()\n"
        "    total_loss += loss"
    ),
    use_instead=(
        "total_loss = 0.0\n"
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss = loss_fn(model(x), y)\n"
        "    loss.backward()\n"
        "    optimizer.step()\n"
        "    total_loss += loss.item()"
    ),
    runtime=(
        "Confirmed when the graphs of earlier backward passes are still alive iterations later: the tracer "
        "tags each backward's root graph node and counts, at every backward, how many tags of earlier "
        "passes have not been freed. The evidence says how many graphs were alive out of how many passes. "
        "A graph kept by an evaluation loop that never calls `backward()` is not observed."
    ),
    references=(
        "https://pytorch.org/docs/stable/notes/faq.html#my-model-reports-cuda-runtime-error-2-out-of-memory",
    ),
    fixable=False,
    fix=(
        "Not auto-fixable: whether the value or the tensor is wanted is the program's; accumulate "
        "`loss.item()` (or `loss.detach()`) for logging."
    ),
    valid=(
        "total = 0.0\n"
        "for x, y in loader:\n"
        "    loss = loss_fn(model(x), y)\n"
        "    loss.backward()\n"
        "    total += loss.item()\n",
        "losses = []\n"
        "for x, y in loader:\n"
        "    loss = loss_fn(model(x), y)\n"
        "    loss.backward()\n"
        "    losses.append(loss.detach())\n",
        "losses = []\n"
        "for x, y in batches:\n"
        "    losses.append(loss_fn(model(x), y))\n"
        "torch.stack(losses).mean().backward()\n",
        "total = 0.0\n"
        "with torch.no_grad():\n"
        "    for x, y in loader:\n"
        "        total += loss_fn(model(x), y)\n"
        "model.eval()\n",
    ),
    invalid=(
        "total = 0.0\n"
        "for x, y in loader:\n"
        "    loss = loss_fn(model(x), y)\n"
        "    loss.backward()\n"
        "    total += loss  # error\n",
        "history = []\n"
        "for x, y in loader:\n"
        "    loss = loss_fn(model(x), y)\n"
        "    loss.backward()\n"
        "    history.append(loss)  # error\n",
    ),
)


def check(facts: Facts) -> list[Finding]:
    return one_per_place(report(leak) for leak in facts.graph_leaks)


def report(leak: GraphLeak) -> Finding:
    origin = leak.origin
    message = (
        f"{code(leak.accumulation)} adds {leak.what} to `{leak.accumulator}` with its autograd graph, and "
        f"`{leak.accumulator}` outlives each iteration of {loop_phrase(leak.loop)}: every iteration's graph "
        f"stays alive and memory grows until the run is out of memory; accumulate `.item()` (or "
        f"`.detach()`) instead"
    )
    return finding(RULE, leak.accumulation, message, [(origin, "the graph built here is kept alive")])
