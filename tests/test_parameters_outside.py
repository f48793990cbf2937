"""GL204 on short snippets: each marks the lines that must be reported (`# GL204`).

The silent cases are the close-looking correct forms: an optimizer built (or a parameter group
added) after the change, a frozen replacement, wrappers and moves that keep the parameters,
`load_state_dict`, and changes that nothing trains afterwards.
"""

from __future__ import annotations

import re

import pytest

from gradlint.checker import check_source

LOOP = """
for x, y in loader:
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()
    optimizer.step()
"""

REPORTED = {
    "a new head assigned to an attribute": """
model = torchvision.models.resnet18()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model.fc = nn.Linear(512, 3)  # GL204
"""
    + LOOP,
    "a layer of a Sequential inside the model replaced": """
model = models.vgg16()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model.classifier[6] = nn.Linear(4096, 10)  # GL204
"""
    + LOOP,
    "a module class of this file, added with add_module, put in with setattr": """
class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 3)

optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
model.add_module("head", Head())  # GL204
setattr(model, "aux", nn.Sequential(nn.Linear(8, 8), nn.ReLU()))  # GL204
"""
    + LOOP,
    "a Sequential grown with append": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model.layers.append(nn.Linear(8, 8))  # GL204
"""
    + LOOP,
    "the model name bound to a new module, and to a fresh deepcopy": """
import copy

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 1)

model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model = copy.deepcopy(model)  # GL204
"""
    + LOOP,
    "a new head held by a name first": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
head = nn.Linear(512, 3).to(device)
model.fc = head  # GL204
"""
    + LOOP,
    "the optimizer was built over the replaced submodule itself": """
optimizer = torch.optim.SGD(model.fc.parameters(), lr=0.1)
model.fc = nn.Linear(512, 3)  # GL204
"""
    + LOOP,
    "the parameters given to the optimizer by a name, in parameter groups": """
groups = [{"params": model.backbone.parameters(), "lr": 1e-4}, {"params": model.head.parameters()}]
optimizer = torch.optim.SGD(groups, lr=0.1)
model.head = nn.Linear(512, 3)  # GL204
"""
    + LOOP,
    "trained by a helper of this module, in a function": """
def train_one_epoch(net, data, opt):
    for x, y in data:
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()

def main():
    model = build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.fc = nn.Linear(512, 3)  # GL204
    for epoch in range(3):
        train_one_epoch(model, loader, optimizer)
""",
    "stepped through a GradScaler": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scaler = torch.amp.GradScaler()
model.fc = nn.Linear(512, 3)  # GL204
for x, y in loader:
    optimizer.zero_grad()
    scaler.scale(loss_fn(model(x), y)).backward()
    scaler.step(optimizer)
    scaler.update()
""",
    "a head swapped between phases of the epoch loop, the optimizer kept": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(6):
    for x, y in loader:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    if epoch == 2:
        model.fc = nn.Linear(512, 3)  # GL204
""",
    "the optimizer built in the loop, before the change of the same iteration": """
for run in range(3):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.fc = nn.Linear(512, 3)  # GL204
    for x, y in loader:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
""",
}

SILENT = {
    "the change before the optimizer is built": """
model.fc = nn.Linear(512, 3)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
"""
    + LOOP,
    "the optimizer rebuilt after the change": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model.fc = nn.Linear(512, 3)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
"""
    + LOOP,
    "the optimizer rebuilt in the loop, after the change of the same iteration": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for run in range(3):
    model.fc = nn.Linear(512, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in loader:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
""",
    "a parameter group added for the new head": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model.fc = nn.Linear(512, 3)
optimizer.add_param_group({"params": model.fc.parameters(), "lr": 0.01})
"""
    + LOOP,
    "a frozen replacement": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model.fc = nn.Linear(512, 3).requires_grad_(False)
model.proj = nn.Linear(512, 512)
model.proj.requires_grad_(False)
model.extra = nn.Linear(512, 512)
for p in model.extra.parameters():
    p.requires_grad = False
"""
    + LOOP,
    "moves, compiling and wrappers keep the parameters the optimizer holds": """
model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model.to(device)
model = model.to(device)
model = torch.compile(model)
model = DistributedDataParallel(model, device_ids=[rank])
"""
    + LOOP,
    "DDP wrapping before the optimizer": """
model = DistributedDataParallel(Net().to(device))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
"""
    + LOOP,
    "load_state_dict copies into the same parameters": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model.load_state_dict(torch.load("pretrained.pt"))
"""
    + LOOP,
    "a head the optimizer of its own holds": """
head = nn.Linear(512, 3)
head_optimizer = torch.optim.SGD(head.parameters(), lr=0.1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model.fc = head
for x, y in loader:
    optimizer.zero_grad()
    head_optimizer.zero_grad()
    loss_fn(model(x), y).backward()
    optimizer.step()
    head_optimizer.step()
""",
    "modules without parameters, and values that are no modules": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model.fc = nn.Identity()
model.act = nn.ReLU()
model.config = Config()
model.head = make_head(512, 3)
"""
    + LOOP,
    "nothing trains the model after the change": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
"""
    + LOOP
    + """
model.fc = nn.Linear(512, 3)
with torch.no_grad():
    print(model(x))
""",
    "the change and the training on two arms of an if": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
if export_only:
    model.fc = nn.Linear(512, 3)
    export(model)
else:
    for x, y in loader:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
""",
    "code this module cannot see receives the optimizer": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model.fc = nn.Linear(512, 3)
refresh_parameter_groups(optimizer, model)
"""
    + LOOP,
    "another name bound to a new module": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
teacher = Net()
"""
    + LOOP,
    "a sibling of the submodule the optimizer was built over": """
optimizer = torch.optim.SGD(model.backbone.parameters(), lr=0.1)
model.head = nn.Linear(512, 3)
head_optimizer = torch.optim.SGD(model.head.parameters(), lr=0.1)
"""
    + LOOP,
}


def expected_lines(source: str) -> set[int]:
    return {number for number, line in enumerate(source.splitlines(), 1) if re.search(r"#\s*GL204\b", line)}


@pytest.mark.parametrize("source", list(REPORTED.values()), ids=list(REPORTED))
def test_reported(source: str) -> None:
    expected = expected_lines(source)
    assert expected
    assert {f.location.line for f in check_source(source, codes=["GL204"])} == expected


@pytest.mark.parametrize("source", list(SILENT.values()), ids=list(SILENT))
def test_silent(source: str) -> None:
    assert check_source(source, codes=["GL204"]) == []


def test_on_by_default() -> None:
    assert [f.code for f in check_source(REPORTED["a new head assigned to an attribute"])] == ["GL204"]


def test_message_names_the_module_the_optimizer_and_the_lines() -> None:
    [finding] = check_source(REPORTED["a layer of a Sequential inside the model replaced"], codes=["GL204"])
    assert finding.message.startswith(
        "`model.classifier[6] = nn.Linear(4096, 10)` gives `model.classifier[6]` new parameters after "
        "`optimizer` was built over the parameters of `model` (line 3): no optimizer holds them, so "
        "`loss_fn(model(x), y).backward()` (line 8) fills their gradients but `optimizer.step()` (line 9) "
        "never changes them"
    ), finding.message
    assert 'optimizer.add_param_group({"params": model.classifier[6].parameters()})' in finding.message
    assert [related.location.line for related in finding.related] == [3, 8, 9]


def test_message_for_a_rebound_model_says_the_old_one_is_stepped() -> None:
    [finding] = check_source(
        REPORTED["the model name bound to a new module, and to a fresh deepcopy"], codes=["GL204"]
    )
    assert "`model = copy.deepcopy(model)` binds `model` to a new module after `optimizer` was built" in (
        finding.message
    )
    assert "(it steps the old module's); build the optimizer again after line 11" in finding.message


def test_a_helper_s_lines_are_named() -> None:
    [finding] = check_source(REPORTED["trained by a helper of this module, in a function"], codes=["GL204"])
    assert [related.location.line for related in finding.related] == [10, 5, 6]
