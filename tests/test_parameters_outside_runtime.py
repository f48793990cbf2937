"""GL204 at run time: parameters that got gradients and that no optimizer which stepped holds, and
optimizers that step and train nothing. Each loop runs in this file, so the violations' lines are
lines of this file; the runnable programs are the GL204 fixtures."""

from __future__ import annotations

import inspect
import sys

import pytest

torch = pytest.importorskip("torch")

from gradlint.runtime.tracer import Tracer  # noqa: E402
from gradlint.runtime.verdicts import violations  # noqa: E402

nn = torch.nn


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(8, 4), torch.randint(0, 3, (8,))


def train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    for _ in range(steps):
        x, y = batch()
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def line_of(function: object, text: str) -> int:
    lines, start = inspect.getsourcelines(function)  # type: ignore[arg-type]
    return start + next(number for number, line in enumerate(lines) if text in line)


BACKWARD_LINE = line_of(train, ".backward()")
STEP_LINE = line_of(train, "optimizer.step()")


def outside(tracer: Tracer) -> list:
    return [v for v in violations(tracer.trace, __file__) if v.code == "GL204"]


def test_a_head_put_in_after_the_optimizer_is_named_with_its_counts() -> None:
    torch.manual_seed(0)
    with Tracer() as tracer:
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        model[2] = nn.Linear(8, 3)
        head = model[2].weight.detach().clone()
        train(model, optimizer, 5)
    assert torch.equal(model[2].weight, head)  # what the violation says: it never changed
    names = sorted(p.name for p in tracer.trace.unstepped)
    assert names == ["model.2.bias", "model.2.weight"]
    assert {p.backwards for p in tracer.trace.unstepped} == {5}
    [violation] = outside(tracer)
    assert violation.evidence.startswith(
        "model.2.weight, model.2.bias received gradients in 5 backward passes"
    )
    assert violation.evidence.endswith(f"5 steps (at line {STEP_LINE}) left them unchanged")
    assert violation.line == BACKWARD_LINE and {BACKWARD_LINE, STEP_LINE} <= violation.lines


def test_a_head_swapped_in_mid_run_is_followed_from_its_first_forward_pass() -> None:
    """The backward line's graph was walked on its first pass, before the swap: the new head is
    found by the forward pass that runs it."""
    torch.manual_seed(0)
    with Tracer() as tracer:
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        train(model, optimizer, 3)
        model[2] = nn.Linear(8, 3)
        train(model, optimizer, 4)
    assert sorted((p.name, p.backwards) for p in tracer.trace.unstepped) == [
        ("model.2.bias", 4),
        ("model.2.weight", 4),
    ]
    assert len(outside(tracer)) == 1


def test_frozen_parameters_and_parameters_without_gradients_are_not_reported() -> None:
    torch.manual_seed(0)
    with Tracer() as tracer:
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        spare = nn.Linear(8, 8)  # never runs: no gradient reaches it
        optimizer = torch.optim.SGD([*model.parameters(), *spare.parameters()], lr=0.1)
        model[0] = nn.Linear(4, 8).requires_grad_(False)
        model.extra = nn.Linear(3, 3)  # runs, frozen afterwards
        model.extra.requires_grad_(False)
        train(model, optimizer, 3)
    assert tracer.trace.unstepped == []
    assert outside(tracer) == []


def test_a_leaf_that_is_no_parameter_and_updates_by_hand_are_not_reported() -> None:
    torch.manual_seed(0)
    weight = torch.zeros(4, 3, requires_grad=True)  # trained by hand: p -= lr * p.grad
    with Tracer() as tracer:
        model = nn.Linear(4, 3)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(3):
            x, y = batch()
            x.requires_grad_(True)  # an input's gradient (a saliency map, an adversarial step)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x) + x @ weight, y).backward()
            optimizer.step()
            with torch.no_grad():
                weight -= 0.1 * weight.grad
            weight.grad = None
    assert outside(tracer) == []


def test_gradients_with_no_step_after_them_are_not_a_training_loop() -> None:
    """A Fisher-information pass over a model no optimizer trains, after training another one."""
    torch.manual_seed(0)
    with Tracer() as tracer:
        student = nn.Linear(4, 3)
        optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
        train(student, optimizer, 3)
        frozen_copy = nn.Linear(4, 3)
        x, y = batch()
        nn.functional.cross_entropy(frozen_copy(x), y).backward()
    assert [p.name for p in tracer.trace.unstepped] == ["frozen_copy.weight", "frozen_copy.bias"]
    assert outside(tracer) == []


def test_an_optimizer_that_holds_them_but_never_steps_is_named() -> None:
    torch.manual_seed(0)
    with Tracer() as tracer:
        body = nn.Linear(4, 8)
        head = nn.Linear(8, 3)
        body_optimizer = torch.optim.SGD(body.parameters(), lr=0.1)
        head_optimizer = torch.optim.Adam(head.parameters())  # the loop forgets to step it
        for _ in range(3):
            x, y = batch()
            body_optimizer.zero_grad()
            head_optimizer.zero_grad()
            nn.functional.cross_entropy(head(body(x)), y).backward()
            body_optimizer.step()
    [violation] = outside(tracer)
    assert "head.weight, head.bias received gradients in 3 backward passes" in violation.evidence
    assert "(Adam holds them and never stepped)" in violation.evidence


def test_an_optimizer_over_a_model_the_loop_no_longer_runs_trains_nothing() -> None:
    torch.manual_seed(0)
    with Tracer() as tracer:
        model = nn.Linear(4, 3)
        built_at = sys._getframe().f_lineno + 1
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        model = nn.Linear(4, 3)
        train(model, optimizer, 4)
    found = outside(tracer)
    assert len(found) == 2
    [nothing] = [v for v in found if "trains nothing" in v.evidence]
    assert nothing.evidence == (
        f"SGD (built at line {built_at}) stepped 4 times (at line {STEP_LINE}) over 2 parameters that "
        "require gradients, and none of them ever received one: it trains nothing"
    )
    assert tracer.trace.optimizer_parameters == {1: (2, 0)}


def test_gradients_set_by_hand_are_gradients_the_optimizer_steps() -> None:
    """`p.grad = g` from torch.autograd.grad (gradient surgery): no backward reaches the parameters,
    but every step has gradients to apply, so the optimizer does train them."""
    torch.manual_seed(0)
    with Tracer() as tracer:
        model = nn.Linear(4, 3)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(3):
            x, y = batch()
            grads = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), list(model.parameters()))
            for param, grad in zip(model.parameters(), grads):
                param.grad = grad
            optimizer.step()
    assert outside(tracer) == []


def test_a_model_called_through_self_is_named_by_its_attribute() -> None:
    class Trainer:
        def __init__(self) -> None:
            self.model = nn.Sequential(nn.Linear(4, 3))
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)

        def fit(self) -> None:
            self.model.append(nn.Linear(3, 3))
            for _ in range(2):
                x, y = batch()
                self.optimizer.zero_grad()
                nn.functional.cross_entropy(self.model(x), y).backward()
                self.optimizer.step()

    with Tracer() as tracer:
        Trainer().fit()
    assert sorted(p.name for p in tracer.trace.unstepped) == ["self.model.1.bias", "self.model.1.weight"]
