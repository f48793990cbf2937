"""GL204: new parameters go into a model after its optimizer was built, and the optimizer never holds them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.core import Finding, Rule
from gradlint.rules.base import code, finding, one_per_place

if TYPE_CHECKING:  # only named here; see rules/__init__.py for why
    from gradlint.analysis.facts import Facts, ParametersOutsideOptimizer

RULE = Rule(
    code="GL204",
    name="parameters-outside-optimizer",
    summary="a submodule replaced (or the model rebuilt) after the optimizer was built over its parameters",
    what_it_does=(
        "Finds new parameters put into a model after an optimizer was built over its parameters, "
        "and then trained by a loop that steps that optimizer: a submodule assigned or added "
        "(`model.fc = nn.Linear(...)`, `model.classifier[6] = ...`, `model[2] = ...`, `add_module`, "
        "`setattr`), or the model's name bound to a new module (`model = Net()` again, a fresh "
        "`copy.deepcopy`). Not reported: a new optimizer built (or `add_param_group` called) after the "
        "change, a frozen replacement (`requires_grad_(False)`), `model.to(device)`, "
        "`torch.compile(model)`, wrappers such as `DistributedDataParallel` (they keep the same "
        "parameters), `load_state_dict` (it copies into the parameters the optimizer holds), and code "
        "this analysis cannot see that receives the optimizer."
    ),
    why_bad=(
        "An optimizer holds the parameter tensors it was given when it was built, not the model. "
        "Parameters created afterwards are in no optimizer: every backward pass fills their `.grad`, "
        "every step leaves them as they were, and nothing warns. A new classification head stays at "
        "its random initialisation while the body trains around it; a rebuilt model does not train "
        "at all, while the optimizer steps the old one's parameters, which get no gradients."
    ),
    example=(
        'model = torchvision.models.resnet18(weights="DEFAULT")\n'
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.01)\n"
        "model.fc = nn.Linear(model.fc.in_features, 3)  # a new head for 3 classes\n"
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n"
        "    optimizer.step()"
    ),
    use_instead=(
        'model = torchvision.models.resnet18(weights="DEFAULT")\n'
        "model.fc = nn.Linear(model.fc.in_features, 3)\n"
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.01)  # built after the change\n"
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n"
        "    optimizer.step()"
    ),
    runtime=(
        "Confirmed when parameters received gradients from backward passes and no optimizer that "
        "stepped holds them (nor did a manual update change them), or when an optimizer stepped and "
        "none of its parameters ever had a gradient (it trains nothing). The evidence names the "
        "parameters as the modules that ran them call them (`model.2.weight`), how many backward "
        "passes reached them, and how many steps left them unchanged. Frozen parameters, and "
        "parameters no backward pass reaches, are never reported."
    ),
    references=(
        "https://pytorch.org/docs/stable/optim.html#constructing-it",
        "https://pytorch.org/docs/stable/generated/torch.optim.Optimizer.add_param_group.html",
        "https://pytorch.org/tutorials/beginner/finetuning_torchvision_models_tutorial.html",
    ),
    fixable=False,
    fix=(
        "Not auto-fixable: build the optimizer after the change, or give it the new parameters with "
        '`optimizer.add_param_group({"params": model.fc.parameters()})`.'
    ),
    valid=(
        "model.fc = nn.Linear(512, 3)\n"
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n"
        "    optimizer.step()\n",
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "model.fc = nn.Linear(512, 3)\n"
        'optimizer.add_param_group({"params": model.fc.parameters()})\n'
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n"
        "    optimizer.step()\n",
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "model.fc = nn.Linear(512, 3).requires_grad_(False)\n"
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n"
        "    optimizer.step()\n",
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "model = torch.compile(model.to(device))\n"
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n"
        "    optimizer.step()\n",
    ),
    invalid=(
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "model[2] = nn.Linear(8, 3)  # error\n"
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n"
        "    optimizer.step()\n",
        "model = Net()\n"
        "optimizer = torch.optim.Adam(model.parameters())\n"
        "model = Net()  # error\n"
        "for x, y in loader:\n"
        "    optimizer.zero_grad()\n"
        "    loss_fn(model(x), y).backward()\n"
        "    optimizer.step()\n"
        "\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(4, 1)\n",
    ),
)


def check(facts: Facts) -> list[Finding]:
    return one_per_place(report(fact) for fact in facts.parameters_outside)


def report(fact: ParametersOutsideOptimizer) -> Finding:
    built, backward, step = fact.built, fact.backward, fact.step
    optimizer = f"`{fact.optimizer}`"
    if fact.rebinds:
        what = (
            f"{code(fact.change)} binds `{fact.module}` to a new module after {optimizer} was built over the "
            f"old one's parameters (line {built.location.line}): no optimizer holds the new parameters"
        )
        steps_what = "never changes them (it steps the old module's)"
        fix = f"build the optimizer again after line {fact.change.location.line}"
    else:
        what = (
            f"{code(fact.change)} gives `{fact.module}` new parameters after {optimizer} was built over the "
            f"parameters of `{fact.owner}` (line {built.location.line}): no optimizer holds them"
        )
        steps_what = "never changes them"
        group = f'{{"params": {fact.module}.parameters()}}' if "[...]" not in fact.module else "..."
        fix = (
            f"build the optimizer after line {fact.change.location.line}, or "
            f"`{fact.optimizer}.add_param_group({group})`"
        )
    message = (
        f"{what}, so {code(backward)} (line {backward.location.line}) fills their gradients but "
        f"{code(step)} (line {step.location.line}) {steps_what}; {fix}"
    )
    related = [
        (built, "the optimizer, built over the old parameters"),
        (backward, "gradients reach the new parameters here"),
        (step, "this step leaves them unchanged"),
    ]
    return finding(RULE, fact.change, message, related)
