"""GL501/GL502/GL302/GL303 on short snippets: each marks the lines that must be reported (`# GLxxx`).

They pin down what these rules must stay silent on (the close-looking correct forms) as much as
what they report.
"""

from __future__ import annotations

import re

import pytest

from gradlint.checker import check_source

HYGIENE_CODES = ["GL501"]

GRAPH_LEAKS = {
    "a loss summed as a tensor across batches": """
total = 0.0
for x, y in loader:
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    total += loss  # GL501
""",
    "t = t + loss and an exponential average keep graphs too": """
running = 0.0
smooth = 0.0
for x, y in loader:
    loss = criterion(model(x), y)
    loss.backward()
    running = running + loss  # GL501
    smooth = 0.9 * smooth + 0.1 * loss  # GL501
""",
    "a reset under an if does not run every iteration": """
running = 0.0
for i, (x, y) in enumerate(loader):
    loss = criterion(model(x), y)
    loss.backward()
    running += loss  # GL501
    if i % 100 == 99:
        print(running / 100)
        running = 0.0
""",
    "item, detach, float and .data carry no graph": """
a, b, c, d = 0.0, [], 0.0, 0.0
for x, y in loader:
    loss = criterion(model(x), y)
    loss.backward()
    a += loss.item()
    b.append(loss.detach())
    c += float(loss)
    d += loss.data
""",
    "a name re-bound to a number carries no graph any more": """
total = 0.0
for x, y in loader:
    loss = criterion(model(x), y)
    loss.backward()
    loss = loss.item()
    total += loss
""",
    "accumulation under no_grad records no graph": """
total = 0.0
for x, y in loader:
    loss = criterion(model(x), y)
    loss.backward()
    with torch.no_grad():
        total += loss
""",
    "a variable started over at the top of each iteration": """
for x, y in loader:
    step_losses = []
    loss = criterion(model(x), y)
    loss.backward()
    step_losses.append(loss)
""",
    "per-head losses summed into the loss that is backpropagated": """
for x, y in loader:
    outputs = model(x)
    loss = 0
    for head in outputs:
        loss += criterion(head, y)
    loss.backward()
    optimizer.step()
""",
    "losses collected to be backpropagated together": """
losses = []
for x, y in micro_batches:
    losses.append(criterion(model(x), y))
torch.stack(losses).mean().backward()
""",
    "a helper summing head losses for its caller": """
def compute_loss(outputs, y):
    total = 0
    for head in outputs:
        total += criterion(head, y)
    return total

for x, y in loader:
    compute_loss(model(x), y).backward()
""",
    "metrics that are comparisons or argmax": """
correct = 0
for x, y in loader:
    out = model(x)
    loss = criterion(out, y)
    loss.backward()
    correct += (out.argmax(1) == y).sum()
""",
    "an evaluation loop without no_grad called from the training script": """
def evaluate(model, loader):
    model.eval()
    outputs = []
    for x, y in loader:
        outputs.append(model(x))  # GL501
    print(len(outputs))

optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(3):
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
    evaluate(model, val_loader)
""",
    "an evaluation helper only called under no_grad": """
def evaluate(model, loader):
    model.eval()
    outputs = []
    for x, y in loader:
        outputs.append(model(x))
    return outputs

with torch.no_grad():
    evaluate(model, val_loader)
""",
    "an evaluation helper nobody in the module calls: grad mode unknown": """
def evaluate(model, loader):
    model.eval()
    total = 0
    for x, y in loader:
        total += criterion(model(x), y)
    print(total)
""",
    "a @torch.no_grad() evaluation helper": """
@torch.no_grad()
def evaluate(model, loader):
    model.eval()
    total = 0
    for x, y in loader:
        total += criterion(model(x), y)
    print(total)

evaluate(model, loader)
""",
}

CASES = {**GRAPH_LEAKS}


@pytest.mark.parametrize("source", list(CASES.values()), ids=list(CASES))
def test_snippet_findings(source: str) -> None:
    expected = {
        (number, code)
        for number, line in enumerate(source.splitlines(), 1)
        for code in re.findall(r"#.*?\b(GL\d{3})", line)
    }
    reported = {(f.location.line, f.code) for f in check_source(source, codes=HYGIENE_CODES)}
    assert reported == expected


def test_graph_leak_names_the_backward_and_the_loop() -> None:
    [finding] = check_source(GRAPH_LEAKS["a loss summed as a tensor across batches"], codes=["GL501"])
    assert "`total += loss`" in finding.message and "backpropagated at line 5" in finding.message
    assert "for x, y in loader` (line 3)" in finding.message and "`.item()`" in finding.message
    assert [related.location.line for related in finding.related] == [5]
