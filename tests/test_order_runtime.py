"""What the tracer records for the ordering and mixed-precision rules, and the violations it yields.

Each loop runs in this file, so the violations' lines are lines of this file. GradScaler("cpu")
scales for real on CPU, which is what makes scaled steps and scaled clips observable here.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from gradlint.runtime.tracer import Tracer  # noqa: E402
from gradlint.runtime.verdicts import violations  # noqa: E402


def model_and_optimizer() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


def loss_of(model: torch.nn.Module) -> torch.Tensor:
    return model(torch.randn(4, 3)).pow(2).mean()


def codes(tracer: Tracer) -> list[str]:
    return [violation.code for violation in violations(tracer.trace, __file__)]


def test_a_plain_step_on_scaled_gradients_is_marked_and_scaler_steps_are_not() -> None:
    model, optimizer = model_and_optimizer()
    scaler = torch.amp.GradScaler("cpu")
    with Tracer() as tracer:
        scaler.scale(loss_of(model)).backward()
        optimizer.step()
        optimizer.zero_grad()
        scaler.scale(loss_of(model)).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        loss_of(model).backward()  # not scaled: a plain step is right
        optimizer.step()
    assert [step.amp_scaled for step in tracer.trace.steps] == [True, False, False]
    assert [b.amp for b in tracer.trace.backwards.values()] == [True, True, False]
    assert codes(tracer) == ["GL401"]


def test_scaler_calls_are_ordered_per_scaler_and_a_missing_update_is_seen_when_disabled() -> None:
    model, optimizer = model_and_optimizer()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    with Tracer() as tracer:
        for _ in range(3):
            optimizer.zero_grad()
            scaler.scale(loss_of(model)).backward()
            scaler.step(optimizer)
    calls = [(call.action, call.scaler, call.optimizer) for call in tracer.trace.amp_calls]
    assert calls == [("step", 1, 1)] * 3
    [violation] = violations(tracer.trace, __file__)
    assert violation.code == "GL402" and "2 times" in violation.evidence


def test_update_between_steps_is_no_violation() -> None:
    model, optimizer = model_and_optimizer()
    scaler = torch.amp.GradScaler("cpu")
    with Tracer() as tracer:
        for _ in range(3):
            optimizer.zero_grad()
            scaler.scale(loss_of(model)).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
    assert [call.action for call in tracer.trace.amp_calls] == ["step", "update"] * 3
    assert [clip.scaled_by_amp for clip in tracer.trace.clips] == [False] * 3
    assert codes(tracer) == []


def test_a_clip_before_unscale_and_a_clip_after_the_step_are_told_apart() -> None:
    model, optimizer = model_and_optimizer()
    scaler = torch.amp.GradScaler("cpu")
    with Tracer() as tracer:
        scaler.scale(loss_of(model)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # still scaled
        scaler.step(optimizer)
        scaler.update()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # after the step
        torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))  # only measures
    assert [(clip.scaled_by_amp, clip.applied) for clip in tracer.trace.clips] == [
        (True, False),
        (False, True),
        (False, None),
    ]
    assert sorted(codes(tracer)) == ["GL403", "GL503"]


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_a_scheduler_before_the_first_step_is_seen_but_not_after_a_skipped_step() -> None:
    model, optimizer = model_and_optimizer()
    with Tracer() as early:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
        for _ in range(2):
            optimizer.zero_grad()
            loss_of(model).backward()
            scheduler.step()
            optimizer.step()
    [violation] = violations(early.trace, __file__)
    assert violation.code == "GL202" and "StepLR" in violation.evidence

    # PyTorch warns here too, wrongly: the optimizer did try to step, and GradScaler skipped it
    model, optimizer = model_and_optimizer()
    scaler = torch.amp.GradScaler("cpu")
    with Tracer() as skipped:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
        for index in range(2):
            optimizer.zero_grad()
            scaler.scale(loss_of(model)).backward()
            if index == 0:
                model.weight.grad[0, 0] = float("inf")
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
    assert [event.action for event in skipped.trace.scaler_events][:1] == ["skipped step"]
    assert codes(skipped) == []


def test_a_step_that_applies_nothing_before_a_backward_is_an_early_step() -> None:
    model, optimizer = model_and_optimizer()
    with Tracer() as tracer:
        for _ in range(3):
            optimizer.zero_grad()
            optimizer.step()
            loss_of(model).backward()
    assert [len(step.summed) for step in tracer.trace.steps] == [0, 0, 0]
    assert "GL203" in codes(tracer)

    model, optimizer = model_and_optimizer()
    with Tracer() as correct:
        for _ in range(3):
            optimizer.zero_grad()
            loss_of(model).backward()
            optimizer.step()
    assert codes(correct) == []
