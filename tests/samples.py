"""Training loops the front-end tests share: one with the canonical GL101 bug, one without it."""

# zero_grad once per epoch, step once per batch: every step after the first applies stale gradients.
BUGGY_LOOP = """\
import torch
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(4)]

for epoch in range(3):
    optimizer.zero_grad()
    for x, y in data:
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
"""
BUG_LINE, BUG_COL = 7, 5  # the `optimizer.zero_grad()` that runs less often than the step

CLEAN_LOOP = """\
import torch
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(4)]

for epoch in range(3):
    for x, y in data:
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
"""

# A training file that is not Python. (One without any gradient word is not even parsed.)
BROKEN_SOURCE = "def train(:\n    loss.backward()\n"


def with_comment_on_bug_line(comment: str) -> str:
    lines = BUGGY_LOOP.splitlines()
    lines[BUG_LINE - 1] += f"  {comment}"
    return "\n".join(lines) + "\n"
