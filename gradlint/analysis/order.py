"""Order facts: what happened earlier in the same iteration, next to the gradient counts.

interpret.py counts the backward passes in each optimizer's `.grad`; the rules of ordering and
mixed precision ask in which order the events around them came. Each optimizer's value carries one
`Order`: scheduler steps its optimizer has not followed yet (GL202), steps no backward of their
iteration preceded (GL203), backward passes whose gradients still hold GradScaler's scale (GL401,
GL403), `scaler.step(o)` calls no `scaler.update()` followed (GL402), and steps that used `.grad`
as it still is (GL503). Paths join by union, so what needs every path ("no backward before this
step") reads the union as "some path had one" and says nothing.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from gradlint.analysis import names
from gradlint.analysis.facts import (
    ClipAfterStep,
    ClipOnScaledGradients,
    Facts,
    ScaledStep,
    ScalerNotUpdated,
    SchedulerBeforeStep,
    StepBeforeBackward,
)
from gradlint.analysis.flow import Event, Loop
from gradlint.analysis.nodes import walk
from gradlint.analysis.scope import MANUAL
from gradlint.core import EventKind

ORDER_KINDS = (EventKind.SCHEDULER_STEP, EventKind.CLIP, EventKind.UNSCALE, EventKind.SCALER_UPDATE)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Order(NamedTuple):
    scheduled: frozenset[tuple[Event, Loop]] = frozenset()  # scheduler steps no step has followed yet
    backward_loops: frozenset[Loop] = frozenset()  # loops whose current iteration had a backward
    early_steps: frozenset[tuple[Event, Loop]] = frozenset()  # steps before any backward of their iteration
    amp: frozenset[Event] = frozenset()  # backwards of `scaler.scale(loss)` in .grad, not unscaled since
    unscaled_too: bool = False  # .grad also holds a backward whose loss no scaler scaled
    scaler_steps: frozenset[tuple[Event, str]] = frozenset()  # (scaler.step(o), scaler) with no update since
    stepped: frozenset[Event] = frozenset()  # steps that used .grad as it is now

    def join(self, other: Order) -> Order:
        if self is other or other == EMPTY:
            return self
        return Order(
            self.scheduled | other.scheduled,
            self.backward_loops | other.backward_loops,
            self.early_steps | other.early_steps,
            self.amp | other.amp,
            self.unscaled_too or other.unscaled_too,
            self.scaler_steps | other.scaler_steps,
            self.stepped | other.stepped,
        )

    def cleared(self) -> Order:
        """What a clear leaves: the gradients are gone, what happened in the iteration is not."""
        return self._replace(amp=frozenset(), unscaled_too=False, stepped=frozenset())

    def leave(self, loop: Loop) -> Order:
        """The iteration of `loop` is over: what happened in it no longer comes before anything."""
        if not (self.scheduled or self.early_steps or loop in self.backward_loops):
            return self
        return self._replace(
            scheduled=frozenset(s for s in self.scheduled if s[1] is not loop),
            backward_loops=self.backward_loops - {loop},
            early_steps=frozenset(s for s in self.early_steps if s[1] is not loop),
        )


EMPTY = Order()


def end_iteration(state: dict | None, loop: Loop) -> dict | None:
    """Going round `loop`, or leaving it."""
    if state is None:
        return None
    return {
        key: frozenset(v if v.unknown else v._replace(order=v.order.leave(loop)) for v in values)
        for key, values in state.items()
    }


def reads_loop_variable(guard: ast.expr | None, loop: Loop) -> bool:
    """`if epoch > 0: scheduler.step()`: the guard skips the first iteration on purpose."""
    if guard is None:
        return False
    variables = set(_IDENTIFIER.findall(loop.site.variable))
    return any(isinstance(n, ast.Name) and n.id in variables for n in walk(guard))


def name_tag(key: str) -> frozenset[str]:
    """What a name says besides its role: `scheduler_D` and `optD` -> {d}; `scheduler`, `optimizer` -> {}."""
    name = names.last_name(key.rsplit(":", 1)[-1])
    return frozenset(names.words(name) - names.SCHEDULER_WORDS - names.OPTIMIZER_WORDS - {"lr"})


class OrderInterpreter:
    """The interpreter's handling of order facts; RootInterpreter supplies the rest (names to
    objects, `update`, which optimizers a module feeds)."""

    facts: Facts
    optimizers: set[str]
    engines: set[str]
    schedules: dict[str, str | None]  # scheduler -> the optimizer it was built for
    resolve: Callable[..., str | None]
    update: Callable[..., dict]
    grad_keys: Callable[..., set[str]]

    def order_event(self, event: Event, state: dict, frame: Any) -> dict:
        kind = event.kind
        if kind is EventKind.SCHEDULER_STEP:
            return self.scheduler_step(event, state, frame)
        if kind is EventKind.CLIP:
            return self.clip(event, state, frame)
        if kind is EventKind.UNSCALE:
            key = self.resolve(event.path, frame)
            keys = {key} if key is not None else set()
            return self.change_order(state, keys, lambda o: o._replace(amp=frozenset(), unscaled_too=False))
        scaler = self.resolve(event.scaler, frame)
        return self.forget_scaler_steps(state, scaler)

    def change_order(self, state: dict, keys: set[str], change: Callable[[Order], Order]) -> dict:
        return self.update(state, keys, lambda v: v if v.unknown else v._replace(order=change(v.order)))

    def forget_scaler_steps(self, state: dict, scaler: str | None) -> dict:
        """`scaler.update()`, or code we cannot see that receives the scaler."""
        if scaler is None:
            return state
        keys = {
            k
            for k, values in state.items()
            if any(s[1] == scaler for v in values for s in v.order.scaler_steps)
        }
        return self.change_order(
            state,
            keys,
            lambda o: o._replace(scaler_steps=frozenset(s for s in o.scaler_steps if s[1] != scaler)),
        )

    def scheduler_step(self, event: Event, state: dict, frame: Any) -> dict:
        if not frame.loops or reads_loop_variable(event.guard, frame.loops[-1]):
            return state  # once before training, or not on the first iteration: nothing is skipped
        loop = frame.loops[-1]
        scheduler = self.resolve(event.path, frame)
        if scheduler in self.schedules:
            optimizer = self.schedules[scheduler]
            keys = {optimizer} & set(state) if optimizer is not None else set()
        else:  # built where we cannot see: the one optimizer it can be for, or the one named alike
            candidates = {k for k in state if k != MANUAL and k not in self.engines}
            if len(candidates) > 1 and scheduler is not None:
                candidates = {k for k in candidates if name_tag(k) == name_tag(scheduler)}
            keys = candidates if len(candidates) == 1 else set()
        return self.change_order(state, keys, lambda o: o._replace(scheduled=o.scheduled | {(event, loop)}))

    def order_at_step(self, event: Event, key: str, state: dict, frame: Any) -> dict:
        """Report what the order says about this step, then record the step."""
        values = state.get(key, frozenset())
        known = [v for v in values if not v.unknown]
        if len(known) < len(values):
            return state
        loop = frame.loops[-1] if frame.loops else None
        display = event.path if event.target != "manual" and event.path else "parameters"
        scaler = self.resolve(event.scaler, frame)
        for value in known:
            order = value.order
            for scheduler, scheduler_loop in order.scheduled:
                self.facts.scheduler_before_step.add(
                    SchedulerBeforeStep(
                        display, scheduler.site, event.site, scheduler_loop.site, scheduler_loop is not loop
                    )
                )
            if event.scaler is None and event.target != "manual" and order.amp and not order.unscaled_too:
                for backward in order.amp:
                    self.facts.scaled_steps.add(ScaledStep(display, backward.site, event.site))
            for previous, previous_scaler in order.scaler_steps:
                if scaler is not None and previous_scaler == scaler:
                    self.facts.scaler_not_updated.add(
                        ScalerNotUpdated(display, event.site, previous.site, loop.site if loop else None)
                    )
        # A step with no backward before it in its iteration, on every path; one under an `if`
        # (accumulation that steps at the start of the next window) is left alone.
        early = (
            loop is not None
            and event.guard is None
            and frame.guarded_in is not loop  # nor a call to it under an `if` in the same loop
            and event.closure is None
            and event.target != "manual"
            and not any(loop in v.order.backward_loops for v in known)
        )

        def stepped(order: Order) -> Order:
            scaler_steps = order.scaler_steps
            if scaler is not None:
                scaler_steps = frozenset(s for s in scaler_steps if s[1] != scaler) | {(event, scaler)}
            return order._replace(
                scheduled=frozenset(),
                early_steps=order.early_steps | {(event, loop)} if early and loop else order.early_steps,
                amp=frozenset(),
                unscaled_too=False,
                scaler_steps=scaler_steps,
                stepped=frozenset({event}),
            )

        return self.change_order(state, {key}, stepped)

    def order_after_backward(self, order: Order, event: Event, frame: Any) -> Order:
        for step, loop in order.early_steps:
            if loop in frame.loops:
                self.facts.step_before_backward.add(
                    StepBeforeBackward(step.path or "optimizer", step.site, event.site, loop.site)
                )
        return order._replace(
            backward_loops=order.backward_loops | set(frame.loops),
            early_steps=frozenset(),
            amp=order.amp | {event} if event.scaler is not None else order.amp,
            unscaled_too=order.unscaled_too or event.scaler is None,
            stepped=frozenset(),
        )

    def clip(self, event: Event, state: dict, frame: Any) -> dict:
        keys = self.grad_keys(event, state, frame) & set(state)
        # Clipping after a step only when every optimizer it may touch has just stepped: with the
        # parameters' owner unknown, a GAN's clip of G after D's step is G's clip before G's step.
        late = all(any(v.order.stepped for v in state[key] if not v.unknown) for key in keys)
        for key in keys:
            for value in state[key]:
                if value.unknown:
                    continue
                order = value.order
                if order.amp and not order.unscaled_too and not event.unscales:
                    for backward in order.amp:
                        self.facts.clip_scaled.add(ClipOnScaledGradients(event.site, backward.site))
                for step in order.stepped if late else ():
                    display = step.path if step.target != "manual" and step.path else "parameters"
                    self.facts.clip_after_step.add(ClipAfterStep(display, event.site, step.site))
        return state
