"""Ordering and mixed-precision rules on short snippets: each marks the lines that must be reported.

GL202 (scheduler before step), GL203 (step before backward), GL401-GL403 (GradScaler) and GL503
(clip after step) read the order facts; these pin down who drives whom, what an iteration is,
and the close-looking correct forms that must stay silent.
"""

from __future__ import annotations

import re

import pytest

from gradlint.checker import check_source

CASES = {
    # --- GL202 -----------------------------------------------------------------------------------
    "ReduceLROnPlateau.step(metric) before the step of its optimizer": """
plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
for x, y in loader:
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    plateau.step(loss.item())  # GL202
    optimizer.step()
""",
    "ReduceLROnPlateau is a scheduler whatever its name": """
reducer = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
for epoch in range(epochs):
    reducer.step(best_loss)  # GL202
    for x, y in loader:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
""",
    "a scheduler stepped in a helper the batch loop calls, before the step": """
def advance(scheduler):
    scheduler.step()  # GL202

for x, y in loader:
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()
    advance(scheduler)
    optimizer.step()
""",
    "a scheduler stepped once before training skips nothing the loop uses": """
scheduler.step()
for x, y in loader:
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()
    optimizer.step()
""",
    "the scheduler of one optimizer stepped before another optimizer's step": """
opt_d = torch.optim.Adam(disc.parameters())
opt_g = torch.optim.Adam(gen.parameters())
sched_d = torch.optim.lr_scheduler.StepLR(opt_d, 10)
for x in loader:
    opt_d.zero_grad()
    d_loss(disc, gen, x).backward()
    opt_d.step()
    sched_d.step()
    opt_g.zero_grad()
    g_loss(disc, gen, x).backward()
    opt_g.step()
""",
    "a scheduler built elsewhere is matched to the optimizer named alike": """
def train(model, optimizer, optimizer_center, scheduler, loader, epochs):
    for epoch in range(epochs):
        scheduler.step()  # GL202
        for x, y in loader:
            optimizer.zero_grad()
            optimizer_center.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
            optimizer_center.step()
""",
    "a scheduler built elsewhere, two optimizers and no name to tell: silence": """
def train(model, opt_a, opt_b, scheduler, loader):
    for x, y in loader:
        opt_a.zero_grad()
        opt_b.zero_grad()
        loss_fn(model(x), y).backward()
        opt_a.step()
        scheduler.step()
        opt_b.step()
""",
    "a scheduler told which step it is on sets that rate, whenever it runs": """
for index, (x, y) in enumerate(loader):
    scheduler.step(epoch=index)
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()
    optimizer.step()
""",
    # --- GL203 -----------------------------------------------------------------------------------
    "step before backward without any clear": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    optimizer.step()  # GL203
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()
""",
    "two optimizers in the usual order: each steps after a backward": """
opt_d = torch.optim.Adam(disc.parameters())
opt_g = torch.optim.Adam(gen.parameters())
for x in loader:
    opt_d.zero_grad()
    d_loss(disc, gen, x).backward()
    opt_d.step()
    opt_g.zero_grad()
    g_loss(disc, gen, x).backward()
    opt_g.step()
""",
    "a helper that steps, called under a window counter before the backward: silence": """
def apply(optimizer):
    optimizer.step()
    optimizer.zero_grad()

optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for i, (x, y) in enumerate(loader):
    if i > 0 and i % 4 == 0:
        apply(optimizer)
    (loss_fn(model(x), y) / 4).backward()
""",
    "a helper that steps, called before the backward on every batch": """
def apply(optimizer):
    optimizer.step()  # GL203
    optimizer.zero_grad()

optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    apply(optimizer)
    loss_fn(model(x), y).backward()
""",
    "a backward on only some paths before the step: no GL203 (the last backward is GL201's)": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    optimizer.zero_grad()
    if warm:
        aux_loss(model, x).backward()
    optimizer.step()
    loss_fn(model(x), y).backward()  # GL201
""",
    "a stand-in scaler class for runs without AMP is not the GradScaler's API": """
class DummyGradScaler:
    def scale(self, loss):
        return loss

    def unscale_(self, optimizer):
        pass

    def step(self, optimizer):
        optimizer.step()

    def update(self):
        pass

if use_amp:
    grad_scaler = torch.amp.GradScaler()
else:
    grad_scaler = DummyGradScaler()
for x, y in loader:
    optimizer.zero_grad()
    grad_scaler.scale(loss_fn(model(x), y)).backward()
    grad_scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    grad_scaler.step(optimizer)
    grad_scaler.update()
""",
    # --- GL401 -----------------------------------------------------------------------------------
    "unscale_ before a plain step: the gradients are true ones": """
scaler = torch.amp.GradScaler()
for x, y in loader:
    optimizer.zero_grad()
    scaler.scale(loss_fn(model(x), y)).backward()
    scaler.unscale_(optimizer)
    optimizer.step()
""",
    "AMP and plain paths chosen by one flag, tested twice: silence": """
scaler = torch.cuda.amp.GradScaler(enabled=use_amp)
for x, y in loader:
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    if use_amp:
        scaler.scale(loss).backward()
    else:
        loss.backward()
    if use_amp:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
""",
    "a scaler in a helper's parameter, stepped plainly": """
def train_step(model, optimizer, scaler, x, y):
    optimizer.zero_grad()
    scaler.scale(loss_fn(model(x), y)).backward()
    optimizer.step()  # GL401
""",
    # --- GL402 -----------------------------------------------------------------------------------
    "update after the loop is too late": """
scaler = torch.amp.GradScaler()
for x, y in loader:
    optimizer.zero_grad()
    scaler.scale(loss_fn(model(x), y)).backward()
    scaler.step(optimizer)  # GL402
scaler.update()
""",
    "one update for two optimizers stepped by one scaler": """
scaler = torch.amp.GradScaler()
opt_d = torch.optim.Adam(disc.parameters())
opt_g = torch.optim.Adam(gen.parameters())
for x in loader:
    opt_d.zero_grad()
    scaler.scale(d_loss(disc, gen, x)).backward()
    scaler.step(opt_d)
    opt_g.zero_grad()
    scaler.scale(g_loss(disc, gen, x)).backward()
    scaler.step(opt_g)
    scaler.update()
""",
    "update in a helper the loop calls": """
def finish(scaler):
    scaler.update()

scaler = torch.amp.GradScaler()
for x, y in loader:
    optimizer.zero_grad()
    scaler.scale(loss_fn(model(x), y)).backward()
    scaler.step(optimizer)
    finish(scaler)
""",
    "code we cannot see receives the scaler: it may update it": """
scaler = torch.amp.GradScaler()
for x, y in loader:
    optimizer.zero_grad()
    scaler.scale(loss_fn(model(x), y)).backward()
    scaler.step(optimizer)
    hooks.after_step(scaler)
""",
    # --- GL403 -----------------------------------------------------------------------------------
    "accelerator.clip_grad_norm_ unscales first": """
for x, y in loader:
    optimizer.zero_grad()
    accelerator.backward(loss_fn(model(x), y))
    accelerator.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
""",
    "clip_grad_value_ on scaled gradients": """
scaler = torch.amp.GradScaler()
for x, y in loader:
    optimizer.zero_grad()
    scaler.scale(loss_fn(model(x), y)).backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), 0.5)  # GL403
    scaler.step(optimizer)
    scaler.update()
""",
    "clipping guarded like its unscale_": """
scaler = torch.amp.GradScaler()
for x, y in loader:
    optimizer.zero_grad()
    scaler.scale(loss_fn(model(x), y)).backward()
    if max_norm:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    scaler.step(optimizer)
    scaler.update()
""",
    # --- GL503 -----------------------------------------------------------------------------------
    "clip after step and after the clear clips nothing that a step used": """
for x, y in loader:
    loss_fn(model(x), y).backward()
    optimizer.step()
    optimizer.zero_grad()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
""",
    "clip after a scaler's step": """
scaler = torch.amp.GradScaler()
for x, y in loader:
    optimizer.zero_grad()
    scaler.scale(loss_fn(model(x), y)).backward()
    scaler.step(optimizer)
    scaler.update()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # GL503
""",
    "a GAN clips G after D's step, optimizers built where we cannot see": """
def train(disc, gen, opt_d, opt_g, loader):
    for x in loader:
        opt_d.zero_grad()
        opt_g.zero_grad()
        d_loss(disc, gen, x).backward()
        opt_d.step()
        g_loss(disc, gen, x).backward()
        torch.nn.utils.clip_grad_norm_(gen.parameters(), 1.0)
        opt_g.step()
""",
    "clip in the next iteration, before that iteration's backward": """
for x, y in loader:
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # GL503
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()
    optimizer.step()
""",
}


@pytest.mark.parametrize("source", list(CASES.values()), ids=list(CASES))
def test_snippet_findings(source: str) -> None:
    expected = {
        (number, code)
        for number, line in enumerate(source.splitlines(), 1)
        for code in re.findall(r"#.*?\b(GL\d{3})", line)
    }
    reported = {(f.location.line, f.code) for f in check_source(source)}
    assert reported == expected


def test_step_before_backward_is_reported_as_the_cause_only() -> None:
    source = """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    optimizer.step()
    loss_fn(model(x), y).backward()
    optimizer.zero_grad()
"""
    assert [f.code for f in check_source(source, codes=["GL203"])] == ["GL203"]
    # without GL203's fact, the clear at the end would be GL103's: the order is what explains it
    assert check_source(source, codes=["GL103", "GL201"]) == []


def test_epoch_level_scheduler_names_the_loop_and_the_fix() -> None:
    source = """
for epoch in range(10):
    scheduler.step()
    for x, y in loader:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
"""
    [finding] = check_source(source)
    assert finding.code == "GL202" and finding.location.line == 3
    assert "for epoch in range(10)" in finding.message and "after the epoch's batch loop" in finding.message
    assert [related.location.line for related in finding.related] == [7]


def test_scaled_step_message_names_the_backward_and_the_fix() -> None:
    source = """
scaler = torch.amp.GradScaler(enabled=False)
for x, y in loader:
    optimizer.zero_grad()
    scaler.scale(loss_fn(model(x), y)).backward()
    optimizer.step()
"""
    [finding] = check_source(source)
    assert finding.code == "GL401" and finding.location.line == 6
    assert "line 5" in finding.message and "scaler.step(optimizer)" in finding.message
    assert [related.location.line for related in finding.related] == [5]
