"""The tracer on tiny hand-written loops: what it counts, and that it leaves torch as it found it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from gradlint.runtime.run import NEEDS_TORCH, NO_CUDA, run_command, trace_script  # noqa: E402
from gradlint.runtime.tracer import Tracer, loss_scale  # noqa: E402


def patched_functions() -> dict[str, object]:
    from torch.optim import optimizer as optimizer_module

    scaler = torch.amp.GradScaler
    schedulers = torch.optim.lr_scheduler
    return {
        "autograd.backward": torch.autograd.backward,
        "Optimizer.__init__": torch.optim.Optimizer.__dict__["__init__"],
        "Optimizer.zero_grad": torch.optim.Optimizer.__dict__["zero_grad"],
        "Module.zero_grad": torch.nn.Module.__dict__["zero_grad"],
        "GradScaler.scale": scaler.__dict__["scale"],
        "GradScaler.unscale_": scaler.__dict__["unscale_"],
        "GradScaler.step": scaler.__dict__["step"],
        "GradScaler.update": scaler.__dict__["update"],
        "clip_grad_value_": torch.nn.utils.clip_grad_value_,
        "_clip_grads_with_norm_": torch.nn.utils.clip_grad._clip_grads_with_norm_,
        **{
            f"{cls.__name__}.step": cls.__dict__["step"]
            for cls in (
                schedulers.LRScheduler,
                schedulers.ReduceLROnPlateau,
                schedulers.SequentialLR,
                schedulers.ChainedScheduler,
                schedulers.CosineAnnealingWarmRestarts,
            )
        },
        "pre hooks": dict(optimizer_module._global_optimizer_pre_hooks),
        "post hooks": dict(optimizer_module._global_optimizer_post_hooks),
        "Module.train": torch.nn.Module.__dict__["train"],
        "forward pre hooks": dict(torch.nn.modules.module._global_forward_pre_hooks),
    }


def model_and_optimizer(lr: float = 0.1) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    return model, torch.optim.SGD(model.parameters(), lr=lr)


def backward(model: torch.nn.Module, divide_by: float = 1.0) -> None:
    (model(torch.randn(4, 3)).pow(2).mean() / divide_by).backward()


@pytest.mark.parametrize("error", [RuntimeError("boom"), SystemExit(3), KeyboardInterrupt()])
def test_everything_is_restored_however_the_block_ends(error: BaseException) -> None:
    before = patched_functions()
    model, optimizer = model_and_optimizer()
    with pytest.raises(type(error)), Tracer():
        backward(model)
        optimizer.step()
        raise error
    assert patched_functions() == before
    assert all(not p._post_accumulate_grad_hooks for p in model.parameters())


def test_restored_after_a_clean_exit_and_tracing_stops() -> None:
    before = patched_functions()
    model, optimizer = model_and_optimizer()
    with Tracer() as tracer:
        backward(model)
        optimizer.step()
    backward(model)
    optimizer.step()
    assert patched_functions() == before
    assert len(tracer.trace.steps) == 1 and len(tracer.trace.backwards) == 1


def test_clear_once_per_epoch_makes_steps_reapply_old_backward_passes() -> None:
    model, optimizer = model_and_optimizer()
    with Tracer() as tracer:
        for _ in range(2):
            optimizer.zero_grad()
            for _ in range(3):
                backward(model)
                optimizer.step()
    steps = tracer.trace.steps
    assert [len(step.summed) for step in steps] == [1, 2, 3, 1, 2, 3]
    assert [len(step.stale) for step in steps] == [0, 1, 2, 0, 1, 2]
    assert all(not clear.cleared for clear in tracer.trace.clears)  # each had been applied


def test_accumulation_window_sums_fresh_passes_and_reads_the_loss_scale() -> None:
    model, optimizer = model_and_optimizer()
    with Tracer() as tracer:
        for i in range(8):
            backward(model, divide_by=4)
            if (i + 1) % 4 == 0:
                optimizer.step()
                optimizer.zero_grad()
    steps = tracer.trace.steps
    assert [(len(step.summed), len(step.stale)) for step in steps] == [(4, 0), (4, 0)]
    assert {record.scale for record in tracer.trace.backwards.values()} == {0.25}


def test_clear_between_backward_and_step_discards_and_the_step_gets_nothing() -> None:
    model, optimizer = model_and_optimizer()
    with Tracer() as tracer:
        for _ in range(3):
            backward(model)
            optimizer.zero_grad()
            optimizer.step()
    assert [len(clear.cleared) for clear in tracer.trace.clears] == [1, 1, 1]
    assert all(step.params_without_grad == 2 and not step.summed for step in tracer.trace.steps)
    assert not tracer.trace.applied_by


@pytest.mark.parametrize("clear", ["none", "zero_"])
def test_clears_no_patch_sees_are_noticed_from_the_ledger(clear: str) -> None:
    model, optimizer = model_and_optimizer()
    with Tracer() as tracer:
        for _ in range(3):
            backward(model)
            optimizer.step()
            for p in model.parameters():
                if clear == "none":
                    p.grad = None
                else:
                    p.grad.zero_()
    assert [len(step.stale) for step in tracer.trace.steps] == [0, 0, 0]
    # the last clear too: the tracer looks once more on exit
    assert len(tracer.trace.clears) == 3 and all(not c.sites for c in tracer.trace.clears)


def test_in_place_rescaling_of_gradients_is_not_mistaken_for_a_clear() -> None:
    model, optimizer = model_and_optimizer()
    with Tracer() as tracer:
        backward(model)
        backward(model)
        for p in model.parameters():
            p.grad.div_(2)
        optimizer.step()
    (step,) = tracer.trace.steps
    assert len(step.summed) == 2 and step.grads_modified and not tracer.trace.clears


def test_a_gradscaler_skip_is_not_a_step() -> None:
    model, optimizer = model_and_optimizer()
    scaler = torch.amp.GradScaler("cpu")
    with Tracer() as tracer:
        scaler.scale(model(torch.randn(4, 3)).mean()).backward()
        model.weight.grad[0, 0] = float("inf")
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        scaler.scale(model(torch.randn(4, 3)).mean() / 2).backward()
        scaler.step(optimizer)
        scaler.update()
    assert len(tracer.trace.steps) == 1
    assert [e.action for e in tracer.trace.scaler_events] == ["skipped step", "update", "update"]
    assert [record.scale for record in tracer.trace.backwards.values()] == [1.0, 0.5]


def test_closure_steps_own_the_backward_passes_inside_them() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=4)
    inputs, targets = torch.randn(16, 3), torch.randn(16, 1)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        return loss

    with Tracer() as tracer:
        for _ in range(3):
            optimizer.step(closure)
    assert all(step.closure and not step.stale for step in tracer.trace.steps)
    assert all(not clear.cleared for clear in tracer.trace.clears)
    assert set(tracer.trace.applied_by) == set(tracer.trace.backwards)


def test_loss_scale_reads_divisions_and_multiplications() -> None:
    x = torch.randn(3, requires_grad=True)
    assert loss_scale(x.sum() / 4, set()) == 0.25
    assert loss_scale(x.sum() * 0.5 / 2, set()) == 0.25
    assert loss_scale(x.sum() * x.sum(), set()) == 1.0
    assert loss_scale(torch.tensor(1.0), set()) == 1.0


def write_script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "train.py"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return str(path)


SWALLOWING_LOOP = """
    import torch
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for i in range(100):
        try:
            optimizer.zero_grad()
            model(torch.randn(4, 3)).sum().backward()
            optimizer.step()
        except Exception:
            pass
"""


def test_max_steps_stops_the_program_even_through_except_exception(tmp_path: Path) -> None:
    trace, outcome = trace_script(write_script(tmp_path, SWALLOWING_LOOP), [], max_steps=3, timeout=None)
    assert outcome.status == "max steps" and len(trace.steps) == 3


def test_timeout_stops_the_program(tmp_path: Path) -> None:
    script = write_script(tmp_path, "import time\nwhile True:\n    time.sleep(0.01)\n")
    _, outcome = trace_script(script, [], max_steps=None, timeout=0.3)
    assert outcome.status == "timeout"


def test_script_sees_its_arguments_and_exit_code(tmp_path: Path) -> None:
    script = write_script(tmp_path, "import sys\nassert sys.argv[1:] == ['--lr', '1']\nsys.exit(4)\n")
    _, outcome = trace_script(script, ["--lr", "1"], max_steps=None, timeout=None)
    assert outcome.status == "exited 4"


def test_run_without_torch_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    assert run_command(write_script(tmp_path, "pass\n")) == 2
    assert capsys.readouterr().err.strip() == NEEDS_TORCH


def test_the_static_cli_does_not_import_torch() -> None:
    code = "import sys, gradlint.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


STALE_LOOP = """
    import sys
    import torch
    assert sys.argv[1:] == ["--epochs", "2"]
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(int(sys.argv[2])):
        optimizer.zero_grad()
        for batch in range(4):
            model(torch.randn(4, 3)).pow(2).mean().backward()
            optimizer.step()
"""


def test_cli_run_confirms_a_finding_in_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from gradlint.cli import main

    script = write_script(tmp_path, STALE_LOOP)
    assert main(["run", script, "--format", "json", "--max-steps", "6", "--", "--epochs", "2"]) == 1
    document = json.loads(capsys.readouterr().out)
    (finding,) = document["findings"]
    assert (finding["code"], finding["line"], finding["verdict"]) == ("GL101", 8, "confirmed")
    assert "step at line 11 applied 4 backward passes, 3 of them already applied" in finding["evidence"]
    assert document["run"] == {
        "status": "max steps",
        "steps": 6,
        "backwards": 6,
        "device": None,
        "cuda_used": False,
    }
    assert document["dynamic_only"] == []


def test_manual_updates_without_an_optimizer_are_steps() -> None:
    torch.manual_seed(0)
    weight = torch.zeros(3, 1, requires_grad=True)
    with Tracer() as tracer:
        for _ in range(3):
            (torch.randn(4, 3) @ weight).pow(2).mean().backward()
            with torch.no_grad():
                weight -= 0.1 * weight.grad  # never cleared: each update re-applies the old ones
    assert [len(step.stale) for step in tracer.trace.steps] == [0, 1, 2]
    assert {step.optimizer for step in tracer.trace.steps} == {0}


CLEAR_PER_EPOCH = """
    import sys
    import torch
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [torch.randn(4, 3) for _ in range(int(sys.argv[1]))]
    for epoch in range(3):
        optimizer.zero_grad()
        for x in batches:
            model(x).pow(2).mean().backward()
            optimizer.step()
"""


@pytest.mark.parametrize(
    ("batches", "verdict", "evidence", "exit_code"),
    [
        ("0", "unreached", "line 11 never ran", 0),  # the step it names never ran
        ("1", "refuted", "lines 8, 11 ran, and it never happened", 0),  # one step per clear
        ("3", "confirmed", "3 backward passes, 2 of them already applied", 1),
    ],
)
def test_each_verdict_on_one_finding(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    batches: str,
    verdict: str,
    evidence: str,
    exit_code: int,
) -> None:
    import json

    script = write_script(tmp_path, CLEAR_PER_EPOCH)
    assert run_command(script, [batches], output_format="json") == exit_code
    (finding,) = json.loads(capsys.readouterr().out)["findings"]
    assert (finding["code"], finding["verdict"]) == ("GL101", verdict)
    assert evidence in finding["evidence"]


def test_device_cuda_without_cuda_is_a_one_line_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gradlint.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    script = write_script(tmp_path, "raise SystemExit('must not run')\n")
    assert main(["run", script, "--device", "cuda"]) == 2
    captured = capsys.readouterr()
    assert captured.err == NO_CUDA + "\n" and captured.out == ""


def test_device_cpu_runs_there_and_says_cuda_was_not_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from gradlint.cli import main

    script = write_script(tmp_path, STALE_LOOP)
    args = ["run", script, "--max-steps", "2", "--device", "cpu", "--", "--epochs", "2"]
    assert main(args) == 1
    assert capsys.readouterr().out.splitlines()[-1].endswith("; cuda used: no")
    assert main([*args[:-3], "--format", "json", *args[-3:]]) == 1
    run = json.loads(capsys.readouterr().out)["run"]
    assert (run["device"], run["cuda_used"]) == ("cpu", False)


def test_the_default_device_is_set_for_the_run_and_restored_after(tmp_path: Path) -> None:
    script = write_script(tmp_path, "import torch\nassert torch.empty(1).device.type == 'meta'\n")
    _, outcome = trace_script(script, [], max_steps=None, timeout=None, device="meta")
    assert outcome.status == "finished"
    assert torch.empty(1).device.type == "cpu"


def test_a_compiled_model_is_traced_and_torch_is_restored() -> None:
    """torch.compile runs the forward through Dynamo; the hooks must neither break it nor be compiled."""
    before = patched_functions()
    model, optimizer = model_and_optimizer()
    compiled = torch.compile(model, backend="eager")
    with Tracer() as tracer:
        optimizer.zero_grad()
        for _ in range(3):
            compiled(torch.randn(4, 3)).pow(2).mean().backward()
            optimizer.step()
    assert [len(step.stale) for step in tracer.trace.steps] == [0, 1, 2]
    assert patched_functions() == before


def test_scheduler_steps_are_recorded_after_the_optimizer_steps_they_follow() -> None:
    before = patched_functions()
    model, optimizer = model_and_optimizer()
    with Tracer() as tracer:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
        for _ in range(3):
            optimizer.zero_grad()
            backward(model)
            optimizer.step()
            scheduler.step()
    assert patched_functions() == before
    records = tracer.trace.scheduler_steps
    # the constructor's own step is recorded, marked initial: rules leave it out
    assert [record.initial for record in records] == [True, False, False, False]
    assert {(record.scheduler, record.optimizer) for record in records} == {("StepLR", 1)}
    steps = tracer.trace.steps
    assert records[0].index < steps[0].index
    assert [record.index > step.index for record, step in zip(records[1:], steps, strict=True)] == [True] * 3
    assert [record.index < step.index for record, step in zip(records[1:-1], steps[1:], strict=True)] == [
        True
    ] * 2
    assert all(record.sites and record.sites[0].path == __file__ for record in records)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_a_step_inside_a_custom_constructor_is_initial() -> None:
    class Halving(torch.optim.lr_scheduler.LRScheduler):
        def __init__(self, optimizer: torch.optim.Optimizer) -> None:
            super().__init__(optimizer)
            self.step()  # old-style warm start, outside _initial_step

        def get_lr(self) -> list[float]:
            return [group["lr"] / 2 for group in self.optimizer.param_groups]

        def step(self, epoch: int | None = None) -> None:
            super().step(epoch)  # the base step: part of this one, not a second event

    _, optimizer = model_and_optimizer()
    with Tracer() as tracer:
        scheduler = Halving(optimizer)
        scheduler.step()
    assert [(r.scheduler, r.initial) for r in tracer.trace.scheduler_steps] == [
        ("Halving", True),
        ("Halving", True),
        ("Halving", False),
    ]


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_reduce_lr_on_plateau_and_chained_schedulers_step_once_each() -> None:
    model, optimizer = model_and_optimizer()
    schedulers = torch.optim.lr_scheduler
    with Tracer() as tracer:
        plateau = schedulers.ReduceLROnPlateau(optimizer)
        backward(model)
        optimizer.step()
        plateau.step(0.5)
    (record,) = tracer.trace.scheduler_steps
    assert (record.scheduler, record.optimizer, record.initial) == ("ReduceLROnPlateau", 1, False)
    assert record.index > tracer.trace.steps[0].index

    with Tracer() as tracer:
        chained = schedulers.ChainedScheduler(
            [schedulers.StepLR(optimizer, 1), schedulers.ExponentialLR(optimizer, 0.9)]
        )
        chained.step()
        warm = schedulers.CosineAnnealingWarmRestarts(optimizer, T_0=2)
        warm.step()
    names = [(r.scheduler, r.initial) for r in tracer.trace.scheduler_steps]
    assert names == [
        ("StepLR", True),
        ("ExponentialLR", True),
        ("ChainedScheduler", False),  # its members' steps are part of it
        ("CosineAnnealingWarmRestarts", True),
        ("CosineAnnealingWarmRestarts", False),
    ]


def test_clipping_is_recorded_with_its_kind_between_backward_and_step() -> None:
    model, optimizer = model_and_optimizer()
    with Tracer() as tracer:
        backward(model)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        torch.nn.utils.clip_grad_value_((p for p in model.parameters()), 0.1)
        optimizer.step()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # too late: after the step
    clips = tracer.trace.clips
    assert [clip.kind for clip in clips] == ["norm", "value", "norm"]
    (backward_record,) = tracer.trace.backwards.values()
    (step,) = tracer.trace.steps
    assert backward_record.index < clips[0].index < clips[1].index < step.index < clips[2].index
    assert all(clip.scaled_by_amp is False for clip in clips)  # no GradScaler scaled anything
    assert all(p.grad.abs().max() <= 0.1 for p in model.parameters())  # the generator was not used up
    assert not tracer.trace.clears and not step.stale


def test_clipping_before_unscale_is_on_scaled_gradients() -> None:
    scaler = torch.amp.GradScaler("cpu")
    if not scaler.is_enabled():
        pytest.skip("GradScaler('cpu') is disabled on this torch")
    model, optimizer = model_and_optimizer()
    with Tracer() as tracer:
        for unscale_first in (False, True):
            optimizer.zero_grad()
            scaler.scale(model(torch.randn(4, 3)).pow(2).mean()).backward()
            if unscale_first:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
    assert [clip.scaled_by_amp for clip in tracer.trace.clips] == [True, False]
    assert len(tracer.trace.steps) == 2


def test_graphs_held_across_iterations_are_counted_and_released_ones_are_not() -> None:
    model, _ = model_and_optimizer()
    with Tracer() as tracer:
        total = 0.0
        for _ in range(6):
            loss = model(torch.randn(4, 3)).pow(2).mean()
            loss.backward()
            total = total + loss  # holds every iteration's graph
    [kept] = tracer.trace.kept_graphs.values()
    assert (kept.alive, kept.backwards) == (5, 6)
    with Tracer() as tracer:
        logged = 0.0
        for _ in range(6):
            loss = model(torch.randn(4, 3)).pow(2).mean()
            loss.backward()
            logged += loss.item()
    [kept] = tracer.trace.kept_graphs.values()
    assert (kept.alive, kept.backwards) == (0, 6)


def test_backward_passes_in_eval_mode_after_train_mode_are_recorded_with_the_eval_line() -> None:
    model, optimizer = model_and_optimizer()
    with Tracer() as tracer:
        backward(model)
        optimizer.step()
        eval_line = sys._getframe().f_lineno + 1
        model.eval()
        backward(model)
        backward(model)
        model.train()
        backward(model)
    records = list(tracer.trace.eval_mode_backwards.values())
    assert [r.backward for r in records] == [2, 3] and tracer.trace.train_mode_backwards == 2
    assert records[0].module == "Linear" and records[0].mode_sites[0].line == eval_line


def test_a_module_frozen_in_eval_mode_from_the_start_is_not_training_in_eval_mode() -> None:
    model, optimizer = model_and_optimizer()
    model.eval()
    with Tracer() as tracer:
        for _ in range(3):
            backward(model)
            optimizer.step()
    assert tracer.trace.eval_mode_backwards == {} and tracer.trace.train_mode_backwards == 0


# --- the traced program ends badly: torch is restored and the report is still written (issue #8) ----

# zero_grad once, a step every iteration: GL101 at line 5, confirmed from the second step on.
ENDLESS_STEPS = """
    import os, signal, sys, torch
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    steps = 0
    while True:
        {guard}model(torch.randn(4, 3)).pow(2).mean().backward()
        {guard}optimizer.step()
        {guard}steps += 1
        {ending}
"""
# swallows every stop it sees, the timeout's included
GUARDED = "try:\n            {}\n        except:  # noqa: E722\n            pass"


def endless(ending: str = "pass", swallow: bool = False) -> str:
    script = ENDLESS_STEPS.format(guard="", ending=ending)
    if swallow:
        body = "model(torch.randn(4, 3)).pow(2).mean().backward(); optimizer.step(); steps += 1"
        script = ENDLESS_STEPS.replace(
            "        {guard}model(torch.randn(4, 3)).pow(2).mean().backward()\n"
            "        {guard}optimizer.step()\n"
            "        {guard}steps += 1\n",
            "        " + GUARDED.format(body) + "\n",
        ).format(ending=ending)
    return script


# A DataLoader over worker processes: forked while torch is patched, shut down however the run ends.
WORKER_LOADER = """
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(torch.randn(16, 3)), batch_size=4, num_workers=2)
    for epoch in range({epochs}):
        optimizer.zero_grad()
        for (x,) in loader:
            model(x).pow(2).mean().backward()
            optimizer.step()
"""

COMPILED = """
    import torch
    model = torch.nn.Linear(3, 1)
    compiled = torch.compile(model, backend="eager")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    for batch in range(3):
        compiled(torch.randn(4, 3)).pow(2).mean().backward()
        optimizer.step()
"""

ENDINGS = {
    "raises": (
        endless("if steps == 3:\n            raise RuntimeError('boom')"),
        {},
        "error: RuntimeError: boom",
    ),
    "sys_exit": (endless("if steps == 3:\n            sys.exit(3)"), {}, "exited 3"),
    "never_ends_timeout": (endless(), {"timeout": 1.0}, "timeout"),
    "never_ends_max_steps": (endless(), {"max_steps": 5}, "max steps"),
    "never_ends_swallowing_every_stop": (endless(swallow=True), {"timeout": 1.0}, "timeout"),
    "ctrl_c": (endless("if steps == 3:\n            os.kill(os.getpid(), signal.SIGINT)"), {}, "interrupted"),
    "dataloader_workers": (WORKER_LOADER.format(epochs=2), {}, "finished"),
    "dataloader_workers_never_end": (WORKER_LOADER.format(epochs=10**9), {"timeout": 3.0}, "timeout"),
    "torch_compile": (COMPILED, {}, "finished"),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_however_the_program_ends_torch_is_restored_and_the_report_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ending: str
) -> None:
    import json
    import signal

    body, limits, status = ENDINGS[ending]
    script = write_script(tmp_path, body)
    before = patched_functions()
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGALRM)
    code = run_command(script, output_format="json", **limits)
    assert patched_functions() == before
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGALRM)) == handlers
    out, err = capsys.readouterr()
    document = json.loads(out)  # the whole report, as one document
    assert document["run"]["status"] == status, err
    (finding,) = document["findings"]
    assert (code, finding["code"], finding["verdict"]) == (1, "GL101", "confirmed")
    assert "Traceback" not in err or status.startswith("error")  # the program's own error is shown


def test_ctrl_c_from_outside_stops_the_run_and_the_report_is_written(tmp_path: Path) -> None:
    import signal
    import time

    ready = tmp_path / "ready"
    script = write_script(
        tmp_path,
        endless(f"if steps == 3:\n            open({str(ready)!r}, 'w').close()\n        time.sleep(0.01)"),
    )
    Path(script).write_text("import time\n" + Path(script).read_text())
    process = subprocess.Popen(
        [sys.executable, "-m", "gradlint", "run", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), process.communicate(timeout=10)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 1 and "Traceback" not in err, err
    assert f"{script}:6:1: GL101 " in out and "    runtime: confirmed: " in out
    assert out.splitlines()[-1].startswith("run interrupted: ")
