"""Engine behaviour on short snippets: each marks the lines that must be reported (`# GLxxx`).

These pin down the decisions the rules depend on: who is an optimizer, which calls are
followed, what an unknown call silences, and the shapes real training code taught us.
"""

from __future__ import annotations

import re

import pytest

from gradlint.checker import check_source

CASES = {
    "a project's own copy of get_linear_schedule_with_warmup builds a scheduler": """
def get_linear_schedule_with_warmup(optimizer, num_warmup_steps, num_training_steps):
    return LambdaLR(optimizer, lambda step: min(1.0, step / num_warmup_steps))


optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
warm = get_linear_schedule_with_warmup(optimizer, 10, 100)
for x, y in loader:
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()
    warm.step()  # GL202
    optimizer.step()
""",
    "a transformers Trainer override that only backpropagates leaves the step to the Trainer": """
class WeightedTrainer(Seq2SeqTrainer):
    def training_step(self, model, inputs, num_items_in_batch=None):
        model.train()
        loss = self.compute_loss(model, inputs) * self.weight
        self.accelerator.backward(loss)
        return loss.detach()
""",
    "a transformers Trainer override that clears the model after its backward discards it": """
class CleanTrainer(Trainer):
    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = self.compute_loss(model, inputs)
        self.accelerator.backward(loss)
        self.optimizer.zero_grad()  # GL103
        return loss.detach()
""",
    "an optimizer built from a class chosen at run time is an optimizer (item 1 of issue 15)": """
optimizer_class = bnb.optim.AdamW8bit if args.use_8bit_adam else torch.optim.AdamW
g = optimizer_class(model.parameters(), lr=1e-4)
for x in loader:
    model(x).mean().backward()  # GL102
    g.step()
""",
    "an optimizer class chosen in an if statement, used in a function": """
if args.use_8bit_adam:
    optimizer_cls = bnb.optim.AdamW8bit
else:
    optimizer_cls = torch.optim.AdamW


def train(model, loader):
    g = optimizer_cls(model.parameters(), lr=1e-4)
    for x in loader:
        model(x).mean().backward()  # GL102
        g.step()
""",
    "learning-rate scheduler factories are known by their names": """
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
policy = build_lr_scheduler(cfg, optimizer)
restarts = CosineAnnealingWarmRestarts(optimizer, T_0=10)
for x, y in loader:
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()
    policy.step()  # GL202
    optimizer.step()
    restarts.step()
""",
    "a class from a module named for schedulers is a scheduler": """
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
decay = lr_scheduler.WarmupCosine(optimizer, warmup=100)
for x, y in loader:
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()
    decay.step()  # GL202
    optimizer.step()
""",
    "Lightning manual optimization: training_step is the body of the trainer's batch loop": """
class LitGan(LightningModule):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        opt_g, opt_d = self.optimizers()
        opt_d.zero_grad()
        self.manual_backward(self.d_loss(batch))  # GL201
        opt_g.zero_grad()
        self.manual_backward(self.g_loss(batch))
        opt_g.step()
""",
    "Lightning automatic optimization: training_step only returns the loss": """
class LitModel(LightningModule):
    def training_step(self, batch, batch_idx):
        loss = self.loss(batch)
        self.log("loss", loss)
        return loss

    def on_after_backward(self):
        self.zero_grad()
""",
    "Accelerator(gradient_accumulation_steps=1) divides by 1 (item 5 of issue 15)": """
accelerator = Accelerator(gradient_accumulation_steps=1, mixed_precision="bf16")
model, optimizer = accelerator.prepare(model, torch.optim.AdamW(model.parameters()))
for i, (x, y) in enumerate(loader):
    loss = loss_fn(model(x), y)
    accelerator.backward(loss)  # GL301
    if (i + 1) % accum_steps == 0:
        optimizer.step()
        optimizer.zero_grad()
""",
    "Accelerator(gradient_accumulation_steps=n) divides by n": """
accelerator = Accelerator(gradient_accumulation_steps=accum_steps)
model, optimizer = accelerator.prepare(model, torch.optim.AdamW(model.parameters()))
for i, (x, y) in enumerate(loader):
    loss = loss_fn(model(x), y)
    accelerator.backward(loss)
    if (i + 1) % accum_steps == 0:
        optimizer.step()
        optimizer.zero_grad()
""",
    "Fabric's no_backward_sync does not gate the clear: one per micro-batch discards": """
fabric = Fabric(devices=2)
model, optimizer = fabric.setup(model, torch.optim.AdamW(model.parameters()))
for i, (x, y) in enumerate(loader):
    with fabric.no_backward_sync(model, enabled=(i + 1) % accum_steps != 0):
        optimizer.zero_grad()  # GL103
        fabric.backward(loss_fn(model(x), y) / accum_steps)
    if (i + 1) % accum_steps == 0:
        optimizer.step()
""",
    "a weight on one term of the loss does not scale it (item 9 of issue 15)": """
for i, (x, y) in enumerate(loader):
    loss = mse(model(x), y) + 0.01 * reg(model)
    loss.backward()  # GL301
    if (i + 1) % accum_steps == 0:
        optimizer.step()
        optimizer.zero_grad()
""",
    "a division on the other arm of an if does not scale this backward's loss": """
for i, (x, y) in enumerate(loader):
    if args.distill:
        loss = mse(model(x), y) / accum_steps
        loss.backward()
    else:
        loss = mse(model(x), y)
        loss.backward()  # GL301
    if (i + 1) % accum_steps == 0:
        optimizer.step()
        optimizer.zero_grad()
""",
    "a division in an earlier if still reaches the backward after it": """
for i, (x, y) in enumerate(loader):
    loss = mse(model(x), y)
    if accum_steps > 1:
        loss = loss / accum_steps
    loss.backward()
    if (i + 1) % accum_steps == 0:
        optimizer.step()
        optimizer.zero_grad()
""",
    "a profiler's step() is no optimizer step (item 7 of issue 15)": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
with torch.profiler.profile(schedule=torch.profiler.schedule(wait=1, active=2)) as p:
    for x, y in loader:
        loss_fn(model(x), y).backward()  # GL102
        optimizer.step()
        p.step()
""",
    "a curriculum's step() does not stand in for the deleted optimizer step": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
curriculum = make_curriculum(dataset)
for x, y in loader:
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()  # GL201
    curriculum.step()
""",
    "a step() of an object of unknown role may still be the optimizer's": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
updater = make_updater(optimizer)
for x, y in loader:
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()
    updater.step()
""",
    "unknown optimizer method (SAM) is the optimizer's business": """
optimizer = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
for x, y in loader:
    loss_fn(model(x), y).backward()
    optimizer.first_step(zero_grad=True)
    loss_fn(model(x), y).backward()
    optimizer.second_step(zero_grad=True)
""",
    "an unknown function that receives the optimizer silences it": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
optimizer.zero_grad()
for x, y in loader:
    loss_fn(model(x), y).backward()
    apply_update(optimizer)
""",
    "an attribute of the model passed on is not the model": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
optimizer.zero_grad()  # GL101
for x, y in loader:
    scale = make_scale(model.config)
    loss_fn(model(x) * scale, y).backward()
    optimizer.step()
""",
    "a callback given the trainer may step its optimizer": """
class Trainer:
    def __init__(self, model):
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def fit(self, loader):
        for x, y in loader:
            self.loss = loss_fn(self.model(x), y)
            self.loss.backward()
            self.callback(self)
""",
    "logging with an EMA update keeps the analysis going": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    loss_fn(model(x), y).backward()  # GL102
    optimizer.step()
    model_ema.update(model)
""",
    "helper called per epoch with the clear outside its batch loop": """
def train_one_epoch(model, loader, optimizer):
    optimizer.zero_grad()  # GL101
    for x, y in loader:
        loss_fn(model(x), y).backward()
        optimizer.step()

def main():
    optimizer = torch.optim.Adam(model.parameters())
    for epoch in range(10):
        train_one_epoch(model, loader, optimizer)
""",
    "a correct helper called per batch": """
def train_step(model, batch, opt):
    opt.zero_grad()
    loss_fn(model(batch[0]), batch[1]).backward()
    opt.step()

optimizer = torch.optim.Adam(model.parameters())
for epoch in range(10):
    for batch in loader:
        train_step(model, batch, optimizer)
""",
    "an optimizer built in the call itself": """
def train(model, loader, optimizer):
    for x, y in loader:
        loss_fn(model(x), y).backward()  # GL102
        optimizer.step()

train(model, loader, torch.optim.SGD(model.parameters(), lr=0.1))
""",
    "correlated ifs take the same arm": """
for i, batch in enumerate(loader):
    g_step = i % 2 == 0
    if g_step:
        opt_g.zero_grad()
    else:
        opt_d.zero_grad()
    if g_step:
        g_loss(batch).backward()
        opt_g.step()
    else:
        d_loss(batch).backward()
        opt_d.step()
""",
    "clear then continue drops a bad batch on purpose": """
for x, y in loader:
    loss = loss_fn(model(x), y)
    loss.backward()
    if not torch.isfinite(loss):
        optimizer.zero_grad()
        continue
    optimizer.step()
    optimizer.zero_grad()
""",
    "scheduler and environment steps are not optimizer steps": """
optimizer = torch.optim.SGD(policy.parameters(), lr=0.1)
for episode in range(10):
    state = env.reset()
    optimizer.zero_grad()
    for t in range(100):
        state, reward, done, info = env.step(policy(state))
    loss.backward()
    optimizer.step()
    lr_scheduler.step()
""",
    "only a scheduler steps": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()  # GL201
    scheduler.step()
""",
    "autograd.grad is not a backward": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    grads = torch.autograd.grad(loss_fn(model(x), y), model.parameters(), create_graph=True)
    penalty = sum(g.pow(2).sum() for g in grads)
    optimizer.zero_grad()
    (loss_fn(model(x), y) + penalty).backward()
    optimizer.step()
""",
    "FGSM: the first backward is for the input's gradient": """
for x, y in loader:
    x.requires_grad_(True)
    loss_fn(model(x), y).backward()
    x_adv = x + 0.1 * x.grad.sign()
    optimizer.zero_grad()
    loss_fn(model(x_adv.detach()), y).backward()
    optimizer.step()
""",
    "a saliency map reads the input's gradient: that is what the backward was for": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    x.requires_grad_(True)
    loss_fn(model(x), y).backward()
    saliency.append(x.grad.abs())
    model.zero_grad()
""",
    "logging a parameter's gradient uses nothing: the step is still missing": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()  # GL201
    writer.add_histogram("fc", model.fc.weight.grad)
    norms.append([p.grad.norm() for p in model.parameters()])
""",
    "clearing one of an optimizer's two models between backward and step discards its gradients": """
optimizer = torch.optim.SGD([*encoder.parameters(), *head.parameters()], lr=0.1)
for x, y in loader:
    optimizer.zero_grad()
    loss_fn(head(encoder(x)), y).backward()
    encoder.zero_grad()  # GL103
    optimizer.step()
""",
    "the clear of a model's wrapped module clears the optimizer built over the model": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    model.module.zero_grad()
    loss_fn(model(x), y).backward()
    optimizer.step()
""",
    "a helper handed the loss may divide it itself": """
def backward_step(loss):
    loss = loss / accum_steps
    loss.backward()
for i, (x, y) in enumerate(loader):
    backward_step(loss_fn(model(x), y))
    if (i + 1) % accum_steps == 0:
        optimizer.step()
        optimizer.zero_grad()
""",
    "a loss handed through two helpers is scaled, or not, where the loop computes it": """
def backward_step(loss):
    loss.backward()  # GL301
def train_step(loss, model):
    backward_step(loss)
for i, (x, y) in enumerate(loader):
    loss = loss_fn(model(x), y)
    train_step(loss, model)
    if (i + 1) % accum_steps == 0:
        optimizer.step()
        optimizer.zero_grad()
""",
    "a closure's accelerator is the enclosing function's, though the closure sets its attributes": """
def main():
    accelerator = Accelerator()
    def inner_training_loop(batch_size):
        nonlocal accelerator
        accelerator.gradient_accumulation_steps = 2
        optimizer = torch.optim.AdamW(model.parameters())
        for batch in loader:
            with accelerator.accumulate(model):
                accelerator.backward(model(batch).loss)  # GL102
                optimizer.step()  # GL102
    inner_training_loop(16)
main()
""",
    "a model wrapped by code we cannot see before the optimizer exists keeps its findings": """
model = get_peft_model(model, lora_config)
mark_only_lora_as_trainable(model)
optimizer = torch.optim.AdamW(model.parameters())
for batch in loader:
    model(batch).loss.backward()  # GL102
    optimizer.step()
""",
    "code we cannot see handed the model while gradients are in .grad may use them": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    loss_fn(model(x), y).backward()
    average_gradients(model)
    optimizer.step()
""",
    "thirty flags that only transform the batch do not hide the stale step": "optimizer = SGD(model.parameters())\n"
    + "optimizer.zero_grad()  # GL101\nfor x, y in loader:\n"
    + "".join(f"    if args.flag{i}:\n        x = augment{i}(x)\n" for i in range(30))
    + "    loss_fn(model(x), y).backward()\n    optimizer.step()\n",
    "a dozen argument checks that raise do not pile up into unknown": "def main(args):\n"
    + "".join(f"    if args.option{i} is None:\n        raise ValueError('option{i}')\n" for i in range(12))
    + "    optimizer = SGD(model.parameters())\n    for x, y in loader:\n"
    + "        loss_fn(model(x), y).backward()  # GL102\n        optimizer.step()\n",
    "flags each tested twice around data code do not split the training step": "def train(args):\n"
    + "    optimizer = SGD(model.parameters())\n    for x, y in loader:\n"
    + "".join(f"        if args.flag{i}:\n            x = augment{i}(x)\n" for i in range(6))
    + "".join(f"        if args.flag{i}:\n            y = relabel{i}(y)\n" for i in range(6))
    + "        loss_fn(model(x), y).backward()  # GL102\n        optimizer.step()\n",
    "LBFGS evaluates its closure repeatedly: the closure must clear": """
optimizer = torch.optim.LBFGS(model.parameters())
for epoch in range(5):
    def closure():
        loss = loss_fn(model(x), y)
        loss.backward()  # GL102
        return loss
    optimizer.step(closure)
""",
    "accumulation with a counter guard and no scaling": """
for i, (x, y) in enumerate(loader):
    loss = loss_fn(model(x), y)
    loss.backward()  # GL301
    if (i + 1) % accum_steps == 0:
        optimizer.step()
        optimizer.zero_grad()
""",
    "accumulation scaled through a helper that returns loss / n": """
def compute_loss(model, x, y):
    return loss_fn(model(x), y) / accum_steps

for i, (x, y) in enumerate(loader):
    loss = compute_loss(model, x, y)
    loss.backward()
    if (i + 1) % accum_steps == 0:
        optimizer.step()
        optimizer.zero_grad()
""",
    "two losses of one forward pass are not accumulation": """
for x, y in loader:
    optimizer.zero_grad()
    features = model(x)
    for head in heads:
        head(features).sum().backward(retain_graph=True)
    optimizer.step()
""",
    "model.zero_grad() inside accelerate's accumulate discards micro-batches": """
accelerator = Accelerator(gradient_accumulation_steps=4)
model, optimizer = accelerator.prepare(model, optimizer)
for batch in loader:
    with accelerator.accumulate(model):
        model.zero_grad()  # GL103
        accelerator.backward(model(batch).loss)
        optimizer.step()
""",
    "the prepared optimizer's zero_grad inside accumulate is gated": """
accelerator = Accelerator(gradient_accumulation_steps=4)
model, optimizer = accelerator.prepare(model, optimizer)
for batch in loader:
    with accelerator.accumulate(model):
        accelerator.backward(model(batch).loss)
        optimizer.step()
        optimizer.zero_grad()
""",
    "a flag set each iteration correlates the step in a helper with a later skip": """
def train_one_epoch(model, loader, optimizer):
    optimizer.zero_grad()
    for i, (x, y) in enumerate(loader):
        need_update = (i + 1) % accum_steps == 0

        def _backward(loss):
            loss.backward()
            if need_update:
                optimizer.step()

        _backward(loss_fn(model(x), y) / accum_steps)
        if not need_update:
            continue
        optimizer.zero_grad()
""",
    "a call that receives the optimizer is not harmless because its name says loss": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    loss_scaler(loss_fn(model(x), y), optimizer)
    optimizer.zero_grad()
""",
    "a clear at the top of the epoch does not own the last partial window": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(10):
    optimizer.zero_grad()
    for i, (x, y) in enumerate(loader):
        (loss_fn(model(x), y) / accum_steps).backward()
        if (i + 1) % accum_steps == 0:
            optimizer.step()
            optimizer.zero_grad()
""",
    "a loop over a bare items() call is not a crash": """
for key, value in items(table):
    optimizer.zero_grad()
    loss_fn(model(value), key).backward()
    optimizer.step()
""",
    "a step skipped on overflow drops its batch on purpose": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()
    if not has_overflow(model):
        optimizer.step()
""",
    "a clear instead of the step on a non-finite window": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for i, (x, y) in enumerate(loader):
    (loss_fn(model(x), y) / accum_steps).backward()
    if (i + 1) % accum_steps == 0:
        if not finite(model):
            optimizer.zero_grad()
        else:
            optimizer.step()
            optimizer.zero_grad()
""",
    "a configuration test takes the same arm on every iteration": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for i, (x, y) in enumerate(loader):
    if cfg.accum_steps > 1:
        (loss_fn(model(x), y) / cfg.accum_steps).backward()
        if (i + 1) % cfg.accum_steps == 0:
            optimizer.step()
            optimizer.zero_grad()
    else:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
""",
    "apex amp.initialize returns the model and the optimizer, not an engine": """
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model, optimizer = amp.initialize(model, optimizer)
for x, y in loader:
    model.zero_grad()
    loss_fn(model(x), y).backward()
    optimizer.step()
""",
    "an optimizer that may be None is tested the same way twice": """
def train_step(model, optimizer, batch):
    if optimizer is not None:
        optimizer.zero_grad()
    loss = loss_fn(model(batch))
    if optimizer is not None:
        loss.backward()

for batch in loader:
    train_step(model, optimizer, batch)
    optimizer.step()
""",
    "a closure's clear throws away only what its own backward then replaces": """
def closure():
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    return loss

initial = closure()
for epoch in range(epochs):
    optimizer.step(closure)
    for scheduler in schedulers:
        scheduler.step(closure())
""",
    "steps with no backward pass since the last one re-apply nothing this code computed": """
model = torch.nn.Linear(2, 4)
optimizer = torch.optim.AdamW(model.parameters(), lr=10.0)
for i in range(10):
    optimizer.step()
    scheduler.step()
model(x).sum().backward()
""",
    "two functions' optimizers of one name are two optimizers": """
def train_baseline():
    model, optimizer, loader = get_training_utilities()
    for batch in loader:
        model(batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

def train_integration():
    model, optimizer, loader = get_training_utilities()
    for batch in loader:
        model(batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

train_baseline()
train_integration()
""",
    "each call of a function builds its optimizer anew, and its own bug is still seen": """
def train(model, loader):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()  # GL101
    for x, y in loader:
        loss_fn(model(x), y).backward()
        optimizer.step()

train(small, loader)
train(large, loader)
""",
    "a called method that fetches the optimizer (not builds it) steps the gradients already there": """
class Trainer:
    def train_step(self, batch):
        loss = self.forward(batch)
        self.update()
        return loss

    def forward(self, batch):
        for chunk in split(batch, self.max_batch_size):
            self.accelerator.backward(self.model(chunk) * len(chunk) / len(batch))

    def update(self):
        optimizer = getattr(self, f"optim{self.index}")
        optimizer.step()
        optimizer.zero_grad()
""",
    "a loop that clears after its own steps re-applies only what was left before it": """
for update in range(updates):
    for x, y in loader:
        optimizer.zero_grad()  # GL101
        loss_fn(model(x), y).backward()
        optimizer.step()
    for i, (x, y) in enumerate(aux_loader):
        (aux_loss(model(x), y) / accum_steps).backward()
        if (i + 1) % accum_steps == 0:
            optimizer.step()
            optimizer.zero_grad()
""",
    "an if on the parameter inside a parameter loop picks parameters, not paths (learn2learn)": """
opt = torch.optim.AdamW(maml.parameters(), 0.001)
for epoch in range(epochs):
    opt.zero_grad()
    for _ in range(meta_bsz):
        meta_loss = training_step(split_batch(tasks.sample()), maml.clone())
        meta_loss.backward()
    with torch.no_grad():
        for p in maml.parameters():
            if p.grad is not None and p.requires_grad:
                p.grad.data.mul_(1.0 / meta_bsz)
    opt.step()
""",
    "an if on something else inside a parameter loop still leaves an unscaled path": """
opt = torch.optim.AdamW(maml.parameters(), 0.001)
for epoch in range(epochs):
    opt.zero_grad()
    for _ in range(meta_bsz):
        meta_loss = training_step(split_batch(tasks.sample()), maml.clone())
        meta_loss.backward()  # GL301
    for p in maml.parameters():
        if average_gradients:
            p.grad.data.mul_(1.0 / meta_bsz)
    opt.step()
""",
    "hand-written updates of two tensors, one after the other, are one step (PyTorch's tutorial)": """
for t in range(2000):
    loss = (a + b * x - y).pow(2).sum()
    loss.backward()
    with torch.no_grad():
        a -= learning_rate * a.grad
        b -= learning_rate * b.grad
        a.grad = None
        b.grad = None
""",
    "hand-written updates of two tensors with .data, cleared with fill_(0) (ProtoMAML)": """
output_weight = init_weight.detach().requires_grad_()
output_bias = init_bias.detach().requires_grad_()
for _ in range(steps):
    run_model(output_weight, output_bias, support).backward()
    output_weight.data -= lr * output_weight.grad
    output_bias.data -= lr * output_bias.grad
    output_weight.grad.fill_(0)
    output_bias.grad.fill_(0)
""",
    "hand-written updates of two tensors that are never cleared": """
for t in range(2000):
    loss = (a + b * x - y).pow(2).sum()
    loss.backward()  # GL102
    with torch.no_grad():
        a -= learning_rate * a.grad
        b -= learning_rate * b.grad
""",
    "fill_ with a value sets the gradients the step applies (accelerate's tests fake them)": """
for x, y in loader:
    loss_fn(model(x), y).backward()
    for p in model.parameters():
        p.grad.fill_(0.01)
    optimizer.step()
    optimizer.zero_grad()
""",
    "an optimizer built each iteration over a tensor made in it starts from no gradients": """
for t in timesteps:
    x_in = latents.detach().clone()
    x_in.requires_grad = True
    opt = torch.optim.SGD([x_in], lr=0.1)
    guidance_loss(unet(x_in, t)).backward()
    opt.step()
    latents = x_in.detach()
""",
    "an optimizer built each iteration over a module built in it starts from no gradients": """
for init in cases:
    generator = CopyGenerator(**init)
    trainable = {n: p for n, p in generator.named_parameters() if p.requires_grad}
    generator(inputs).sum().backward()
    optimizer = torch.optim.SGD(trainable.values(), 1)
    optimizer.step()
""",
    "an optimizer built each iteration over the model's parameters still sums their gradients": """
for x, y in loader:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn(model(x), y).backward()  # GL102
    optimizer.step()
""",
    "an optimizer built each iteration over a tensor made before the loop sums its gradients": """
x_in = latents.detach().clone().requires_grad_()
for t in timesteps:
    opt = torch.optim.SGD([x_in], lr=0.1)
    guidance_loss(unet(x_in, t)).backward()  # GL102
    opt.step()
""",
    "gradient cache: each micro-step's loss is over the whole window, its own part recomputed": """
accum_images, accum_features = [], []
for i, images in enumerate(loader):
    with torch.no_grad():
        accum_features.append(model(images))
    accum_images.append(images)
    if (i + 1) % accum_freq > 0:
        continue
    optimizer.zero_grad()
    for j in range(accum_freq):
        features = model(accum_images[j])
        everything = torch.cat(accum_features[:j] + [features] + accum_features[j + 1 :])
        loss = contrastive_loss(everything)
        loss.backward()
    optimizer.step()
    accum_images, accum_features = [], []
""",
    "micro-batches sliced out of the batch by the loop variable are each a part: unscaled": """
for x, y in loader:
    optimizer.zero_grad()
    for j in range(accum_steps):
        xs, ys = x[j * mb : (j + 1) * mb], y[j * mb : (j + 1) * mb]
        loss = loss_fn(model(xs), ys)
        loss.backward()  # GL301
    optimizer.step()
""",
    "the others' part dropped from a window is not the gradient cache": """
for x, y in loader:
    optimizer.zero_grad()
    for j in range(accum_steps):
        loss = loss_fn(model(x[:j]), y[:j])
        loss.backward()  # GL301
    optimizer.step()
""",
    "fill_(0) is a clear like zero_()": """
for x, y in loader:
    loss_fn(model(x), y).backward()
    for p in model.parameters():
        p.grad.fill_(0)  # GL103
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


def test_finding_names_both_lines_and_the_fix() -> None:
    source = CASES["helper called per epoch with the clear outside its batch loop"]
    [finding] = check_source(source)
    assert "line 6" in finding.message and "for x, y in loader" in finding.message
    assert "move it into" in finding.message
    assert [related.location.line for related in finding.related] == [6]


def test_leftover_gradients_are_blamed_on_the_gap_before_the_loop() -> None:
    """The second loop clears after each of its steps: only its first step re-applies the first loop's
    last gradients, and the fix is a clear before it, not moving the first loop's clear into it."""
    source = CASES["a loop that clears after its own steps re-applies only what was left before it"]
    [finding] = check_source(source)
    assert "first" in finding.message and "line 7" in finding.message and "line 10" in finding.message
    assert "before `for i, (x, y) in enumerate(aux_loader)` (line 7)" in finding.message
    assert "move it into" not in finding.message and "sum of k backward" not in finding.message


def test_a_range_loop_is_counted_by_its_bound() -> None:
    source = CASES["an if on something else inside a parameter loop still leaves an unscaled path"]
    [finding] = check_source(source)
    assert "divide the loss by meta_bsz" in finding.message and "len(range(" not in finding.message


@pytest.mark.parametrize("optimizer", ["optimizer", "a", "zz"])
def test_of_two_clears_that_drop_the_gradients_the_first_is_named_whatever_the_names(optimizer: str) -> None:
    """Each path reports its own clear; which one the finding names must not depend on how the
    names sort (found by tests/test_fuzz.py: `model.zero_grad()` sorts before `optimizer.`)."""
    source = f"""\
for x in loader:
    if flag:
        {optimizer}.zero_grad()
    loss.backward()
    if flag:
        {optimizer}.zero_grad()
    else:
        model.zero_grad()
"""
    [finding] = check_source(f"{optimizer} = torch.optim.SGD(model.parameters())\n" + source)
    assert finding.code == "GL201"
    assert f"`{optimizer}.zero_grad()` at line 7 throws them away" in finding.message
    assert [related.location.line for related in finding.related] == [7]
