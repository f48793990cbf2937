"""GL501/GL502/GL302/GL303 on short snippets: each marks the lines that must be reported (`# GLxxx`).

They pin down what these rules must stay silent on (the close-looking correct forms) as much as
what they report.
"""

from __future__ import annotations

import re

import pytest

from gradlint.checker import check_source

HYGIENE_CODES = ["GL501", "GL502", "GL302", "GL303"]

GRAPH_LEAKS = {
    "an optimizer built over a backpropagated tensor holds no graph, nor do its learning rates": """
p = torch.nn.Parameter(torch.zeros(0))
opt = torch.optim.SGD([p], lr=5)
sched = LRMultiplier(opt, multiplier, 30)
p.sum().backward()
opt.step()
lrs = [0.005]
for _ in range(30):
    sched.step()
    lrs.append(opt.param_groups[0]["lr"])
""",
    "a window's running loss started over after each step holds a bounded number of graphs": """
running_loss = 0
for idx, batch in enumerate(loader):
    current_loss = loss_fn(model(batch)) * tokens(batch)
    running_loss += current_loss
    current_loss.backward()
    if (idx + 1) % accumulation_steps == 0:
        optimizer.step()
        optimizer.zero_grad()
        log(running_loss.detach().item())
        running_loss = 0
""",
    "a reset before the loop only: every iteration's graph is kept": """
running_loss = 0
for idx, batch in enumerate(loader):
    current_loss = loss_fn(model(batch))
    running_loss += current_loss  # GL501
    current_loss.backward()
    optimizer.step()
    optimizer.zero_grad()
""",
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
    "a reset under an if bounds a backpropagated loss to a few bare graphs": """
running = 0.0
for i, (x, y) in enumerate(loader):
    loss = criterion(model(x), y)
    loss.backward()
    running += loss
    if i % 100 == 99:
        print(running / 100)
        running = 0.0
""",
    "a reset under an if still keeps a hundred whole graphs of forward passes never backpropagated": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
running = 0.0
for i, (x, y) in enumerate(loader):
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
    running += model(probe).mean()  # GL501
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
    "transformers *_no_trainer: detach().float() logging, train() at the top of each epoch": """
for epoch in range(starting_epoch, num_train_epochs):
    model.train()
    total_loss = 0
    for step, batch in enumerate(train_dataloader):
        with accelerator.accumulate(model):
            outputs = model(**batch)
            loss = outputs.loss
            total_loss += loss.detach().float()
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
    model.eval()
    for step, batch in enumerate(eval_dataloader):
        with torch.no_grad():
            outputs = model(**batch)
        predictions = outputs.logits.argmax(dim=-1)
        metric.add_batch(predictions=predictions, references=batch["labels"])
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
    "the loss of an evaluation forward under no_grad (accelerate's megatron example)": """
for epoch in range(3):
    for x, y in loader:
        outputs = model(x)
        loss = outputs.loss
        loss.backward()
        optimizer.step()
    losses = []
    for x, y in eval_loader:
        with torch.no_grad():
            outputs = model(x)
        loss = outputs.loss
        losses.append(loss)
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
    model.eval()  # GL502
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

MODES = {
    "a second model trained by the same function starts its loops anew": """
def epoch_iteration(net, optimizer, loader):
    net.train()
    for x, y in loader:
        optimizer.zero_grad()
        loss_fn(net(x), y).backward()
        optimizer.step()
    return test_model(net, val_loader)

def test_model(net, loader):
    net.eval()
    with torch.no_grad():
        return sum(net(x).sum().item() for x, y in loader)

def train_model(net, optim_func, epochs):
    if exists(net):
        results = read_results()
    else:
        optimizer = optim_func(net.parameters())
        results = None
        for epoch in range(epochs):
            epoch_iteration(net, optimizer, train_loader)
    if results is None:
        results = test_model(net, test_loader)
    return results

first = make_model()
train_model(first, make_sgd, 40)
second = make_model()
train_model(second, make_adam, 40)
""",
    "eval in the epoch loop, train only before it": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model.train()
for epoch in range(3):
    for x, y in loader:
        loss_fn(model(x), y).backward()
        optimizer.step()
    model.eval()  # GL502
    validate(model.state_dict())
""",
    "train(False) is eval; train(True) at the top restores": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(3):
    model.train(True)
    for x, y in loader:
        loss_fn(model(x), y).backward()
        optimizer.step()
    model.train(False)
""",
    "a validation every k epochs without restoring": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(30):
    for x, y in loader:
        loss_fn(model(x), y).backward()
        optimizer.step()
    if epoch % 5 == 0:
        model.eval()  # GL502
""",
    "an eval inside the batch loop for a periodic check": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model.train()
for step, (x, y) in enumerate(loader):
    loss_fn(model(x), y).backward()
    optimizer.step()
    if step % 100 == 0:
        model.eval()  # GL502
""",
    "a trainer class: evaluate() leaves eval, train_epoch() never calls train()": """
class Trainer:
    def __init__(self, model):
        self.model = model
        self.opt = torch.optim.Adam(model.parameters())

    def train_epoch(self, loader):
        for x, y in loader:
            self.opt.zero_grad()
            loss_fn(self.model(x), y).backward()
            self.opt.step()

    def evaluate(self):
        self.model.eval()  # GL502

    def fit(self, loader, epochs):
        for epoch in range(epochs):
            self.train_epoch(loader)
            self.evaluate()
""",
    "a trainer class whose train_epoch() starts with train()": """
class Trainer:
    def __init__(self, model):
        self.model = model
        self.opt = torch.optim.Adam(model.parameters())

    def train_epoch(self, loader):
        self.model.train()
        for x, y in loader:
            self.opt.zero_grad()
            loss_fn(self.model(x), y).backward()
            self.opt.step()

    def evaluate(self):
        self.model.eval()

    def fit(self, loader, epochs):
        for epoch in range(epochs):
            self.train_epoch(loader)
            self.evaluate()
""",
    "eval() two helpers deep, through one that only calls the other": """
def evaluate(net):
    net.eval()  # GL502
    return score(net.state_dict())

def validate_and_report(net):
    print(evaluate(net))

optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(3):
    for x, y in loader:
        loss_fn(model(x), y).backward()
        optimizer.step()
    validate_and_report(model)
""",
    "a helper from another module receives the model: unknown": """
from engine import train_one_epoch
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(3):
    train_one_epoch(model, loader, optimizer)
    model.eval()
    for x, y in loader:
        loss_fn(model(x), y).backward()
        optimizer.step()
""",
    "an eval before the backward of the same iteration is deliberate": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    model.eval()
    loss_fn(model(x), y).backward()
    optimizer.step()
""",
    "a frozen teacher in eval mode is not trained": """
optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
for epoch in range(3):
    teacher.eval()
    for x, y in loader:
        loss_fn(student(x), teacher(x)).backward()
        optimizer.step()
""",
    "each model has its own mode: the GAN's D is restored, G is not": """
opt_g = torch.optim.Adam(netG.parameters())
opt_d = torch.optim.Adam(netD.parameters())
for epoch in range(3):
    netD.train()
    for x in loader:
        fake = netG(noise(x))
        bce(netD(x), netD(fake.detach())).backward()
        opt_d.step()
        bce(netD(fake), ones).backward()
        opt_g.step()
    netD.eval()
    netG.eval()  # GL502
    sample(netG.state_dict())
""",
    "eval() and train() on a chained .to(device) / .cpu() (fast_neural_style)": """
optimizer = torch.optim.Adam(transformer.parameters())
for e in range(epochs):
    transformer.train()
    for batch_id, (x, _) in enumerate(train_loader):
        loss_fn(transformer(x)).backward()
        optimizer.step()
        if (batch_id + 1) % checkpoint_interval == 0:
            transformer.eval().cpu()
            torch.save(transformer.state_dict(), path)
            transformer.to(device).train()
""",
    "a submodule frozen in eval mode after train() each epoch": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(3):
    model.train()
    model.backbone.eval()
    for x, y in loader:
        loss_fn(model(x), y).backward()
        optimizer.step()
""",
}

DATA_PARALLEL = {
    "DDP accumulation over a counter without no_sync": """
model = DDP(net, device_ids=[rank])
optimizer = torch.optim.AdamW(model.parameters())
for step, batch in enumerate(loader):
    loss = loss_fn(model(batch)) / grad_accum
    loss.backward()  # GL303
    if (step + 1) % grad_accum == 0:
        optimizer.step()
        optimizer.zero_grad()
""",
    "DDP accumulation over an inner micro-batch loop without no_sync": """
model = DistributedDataParallel(net)
optimizer = torch.optim.AdamW(model.parameters())
for batch in loader:
    for micro in batch.chunk(accum_steps):
        (loss_fn(model(micro)) / accum_steps).backward()  # GL303
    optimizer.step()
    optimizer.zero_grad()
""",
    "nanoGPT: require_backward_grad_sync set on the last micro-step": """
model = DDP(model, device_ids=[ddp_local_rank])
optimizer = torch.optim.AdamW(model.parameters())
while True:
    for micro_step in range(gradient_accumulation_steps):
        model.require_backward_grad_sync = micro_step == gradient_accumulation_steps - 1
        loss = model(*get_batch()) / gradient_accumulation_steps
        loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
""",
    "one step after a whole pass over the loader is not micro-batching": """
model = DDP(net)
optimizer = torch.optim.AdamW(model.parameters())
for epoch in range(3):
    for batch in loader:
        loss_fn(model(batch)).backward()
    optimizer.step()
    optimizer.zero_grad()
""",
    "accumulation without DDP": """
optimizer = torch.optim.AdamW(model.parameters())
for step, batch in enumerate(loader):
    (loss_fn(model(batch)) / accum).backward()
    if (step + 1) % accum == 0:
        optimizer.step()
        optimizer.zero_grad()
""",
    "accelerate's accumulate() skips the syncs itself": """
model = DDP(net)
optimizer = torch.optim.AdamW(model.parameters())
for batch in loader:
    with accelerator.accumulate(model):
        accelerator.backward(loss_fn(model(batch)))
        optimizer.step()
        optimizer.zero_grad()
""",
}

FLUSH = {
    "a modulo window in an epoch loop, nothing after the batch loop": """
for epoch in range(3):
    for i, (x, y) in enumerate(loader):
        (loss_fn(model(x), y) / accum).backward()
        if (i + 1) % accum == 0:
            optimizer.step()  # GL302
            optimizer.zero_grad()
    evaluate(model)
""",
    "a helper's window, called per epoch": """
def train_one_epoch(loader):
    for step, batch in enumerate(loader):
        (loss_fn(model(batch)) / grad_accum).backward()
        if step % grad_accum == 0:
            optimizer.step()  # GL302
            optimizer.zero_grad()

for epoch in range(3):
    train_one_epoch(loader)
""",
    "the guard also fires on the last batch": """
for epoch in range(3):
    for i, (x, y) in enumerate(loader):
        (loss_fn(model(x), y) / accum).backward()
        if (i + 1) % accum == 0 or i == len(loader) - 1:
            optimizer.step()
            optimizer.zero_grad()
""",
    "an is_last flag in the guard": """
for epoch in range(3):
    for i, (x, y) in enumerate(loader):
        (loss_fn(model(x), y) / accum).backward()
        if (i + 1) % accum == 0 or is_last_batch:
            optimizer.step()
            optimizer.zero_grad()
""",
    "a clear at the top of each epoch drops the leftovers": """
for epoch in range(3):
    optimizer.zero_grad()
    for i, (x, y) in enumerate(loader):
        (loss_fn(model(x), y) / accum).backward()
        if (i + 1) % accum == 0:
            optimizer.step()
            optimizer.zero_grad()
""",
    "a loop over range(steps * accum) is a multiple of the window": """
for epoch in range(3):
    for i in range(steps_per_epoch * accum):
        (loss_fn(model(next(batches))) / accum).backward()
        if (i + 1) % accum == 0:
            optimizer.step()
            optimizer.zero_grad()
""",
    "a single pass that never runs again": """
for i, (x, y) in enumerate(loader):
    (loss_fn(model(x), y) / accum).backward()
    if (i + 1) % accum == 0:
        optimizer.step()
        optimizer.zero_grad()
""",
    "a helper whose caller flushes after it": """
def train_one_epoch(loader):
    for step, batch in enumerate(loader):
        (loss_fn(model(batch)) / grad_accum).backward()
        if step % grad_accum == 0:
            optimizer.step()
            optimizer.zero_grad()

for epoch in range(3):
    train_one_epoch(loader)
    optimizer.step()
    optimizer.zero_grad()
""",
}

CASES = {**GRAPH_LEAKS, **MODES, **DATA_PARALLEL, **FLUSH}


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


def test_eval_mode_names_the_eval_the_backward_and_the_train_that_runs_once() -> None:
    [finding] = check_source(MODES["eval in the epoch loop, train only before it"], codes=["GL502"])
    assert finding.location.line == 8
    assert "`for epoch in range(3)` (line 4)" in finding.message
    assert "`model.train()` (line 3) runs only once, before the loop" in finding.message
    assert [related.location.line for related in finding.related] == [6, 3]


def test_unflushed_window_is_off_by_default() -> None:
    source = FLUSH["a modulo window in an epoch loop, nothing after the batch loop"]
    assert [f.code for f in check_source(source)] == []
    [finding] = check_source(source, codes=["GL302"])
    assert "every accum micro-batches of `for i, (x, y) in enumerate(loader)` (line 3)" in finding.message
    assert "next iteration of `for epoch in range(3)` (line 2)" in finding.message
