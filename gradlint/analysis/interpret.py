"""Run each entry point's flow over an abstract state of every optimizer's gradients.

Per optimizer, a set of small values (a may-analysis: what any path can bring) says how many
backward passes sit in `.grad` since the last clear, whether a step has already applied them, and
where those facts came from. Loops iterate to a fixed point; calls into the module's own functions
run the callee's flow with its parameters bound to the caller's objects.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from gradlint.analysis import names
from gradlint.analysis.build import FunctionBuilder
from gradlint.analysis.facts import (
    Accumulation,
    DiscardedGradients,
    Facts,
    LoopSite,
    StaleStep,
    UnappliedBackward,
    UnscaledAccumulation,
)
from gradlint.analysis.flow import (
    Branch,
    Call,
    Event,
    Exit,
    Flow,
    Forget,
    Gate,
    Loop,
    Register,
    Seq,
    Try,
    walk_effects,
    walk_events,
)
from gradlint.analysis.nodes import walk
from gradlint.analysis.order import EMPTY, ORDER_KINDS, Order, OrderInterpreter, end_iteration
from gradlint.analysis.scope import MANUAL, ModuleIndex
from gradlint.analysis.shapes import TEST_KEY, is_accumulation_guard, parameters
from gradlint.core import EventKind

MANY = 2
MAX_VALUES = 48  # per optimizer; past this normalize() widens to "unknown" (silence, not a guess)
MAX_PASSES = 12
MAX_CALL_DEPTH = 8
MAX_ASSUMED = 8  # if-outcomes a path remembers; past this it is widened to unknown (silence)


class Grad(NamedTuple):
    """What one path knows about one optimizer's gradients."""

    unknown: bool = False
    pending: int = 0  # backward passes in .grad since the last clear: 0, 1, MANY
    applied: bool = False  # a step already used what is in .grad
    backwards: frozenset[Event] = frozenset()
    fresh: frozenset[Event] = frozenset()  # backwards no step (of any optimizer) has used yet
    clear: tuple[Event, tuple[Loop, ...]] | None = None
    repeat_loop: Loop | None = None  # the loop whose repetition summed backwards of one line
    crossed: frozenset[Loop] = frozenset()  # loops that went round since the last backward
    # (clear, backward, loop): a clear wiped a backward no step used, waiting for a step to report it;
    # `loop` is the loop that went round between the two (None: in the same iteration)
    discarded: frozenset[tuple[Event, Event, Loop | None]] = frozenset()
    grads_scaled: bool = False
    assumed: frozenset[tuple[str, bool]] = frozenset()  # (object, truth) that `if` tests chose on this path
    order: Order = EMPTY  # what came before what in the iteration (order.py)


UNKNOWN = Grad(unknown=True)
State = dict  # optimizer key -> frozenset[Grad]


class Outcome(NamedTuple):
    normal: State | None = None
    breaks: State | None = None
    continues: State | None = None
    returns: State | None = None
    raises: State | None = None


@dataclass(frozen=True, eq=False)
class Frame:
    """One activation of a function: how its names map to the caller's objects."""

    function: ast.FunctionDef | ast.AsyncFunctionDef | None
    bindings: dict
    locals: frozenset[str]
    prefix: str
    loops: tuple[Loop, ...] = ()
    stack: tuple[ast.FunctionDef | ast.AsyncFunctionDef | None, ...] = ()  # None: the module body
    parent: Frame | None = None
    gated: bool = False
    guarded_in: Loop | None = None  # the loop in which a call on the stack sits under an `if`


def join(a: State | None, b: State | None) -> State | None:
    if a is None:
        return b
    if b is None or a is b:
        return a
    return {key: normalize(a.get(key, frozenset()) | b.get(key, frozenset())) for key in a.keys() | b.keys()}


def normalize(values: frozenset[Grad]) -> frozenset[Grad]:
    """Merge values that agree on everything a rule decides on, uniting the sets they carry.

    Each merged fact (this clear discarded that backward, these backwards were summed) still comes
    from one real path to this point, and the paths continue alike from here; without the merge,
    every combination of history would be a value of its own and long scripts would not finish."""
    if len(values) < 2:
        return values
    if len(values) > MAX_VALUES:  # too many paths to tell apart: say nothing about them
        return frozenset({UNKNOWN})
    merged: dict[tuple, Grad] = {}
    for value in values:
        key = (
            value.unknown,
            value.pending,
            value.applied,
            value.repeat_loop,
            value.grads_scaled,
            value.clear,
            value.assumed,
        )
        other = merged.get(key)
        merged[key] = (
            value
            if other is None
            else other._replace(
                backwards=other.backwards | value.backwards,
                fresh=other.fresh | value.fresh,
                crossed=other.crossed | value.crossed,
                discarded=other.discarded | value.discarded,
                order=other.order.join(value.order),
            )
        )
    return frozenset(merged.values())


def analyse(tree: ast.Module, lines: Sequence[str]) -> Facts:
    return ModuleAnalysis(tree, list(lines)).run()


class ModuleAnalysis:
    def __init__(self, tree: ast.Module, lines: list[str]) -> None:
        self.index = ModuleIndex.of(tree)
        self.lines = lines
        self.flows: dict[ast.FunctionDef | ast.AsyncFunctionDef | None, Flow] = {}
        self.builders: dict[ast.FunctionDef | ast.AsyncFunctionDef | None, FunctionBuilder] = {}
        self.facts = Facts()
        self.effects: dict[ast.FunctionDef | ast.AsyncFunctionDef | None, bool] = {}
        self.flow_effects: dict[Flow, bool] = {}
        self.closures: set[ast.AST] = set()  # functions some step evaluates as its closure

    def flow_of(self, function: ast.FunctionDef | ast.AsyncFunctionDef | None) -> Flow:
        if function not in self.flows and function is not None and self.index.is_inert(function):
            self.flows[function] = Seq()  # a model's forward(), a data helper: nothing to follow
        if function not in self.flows:
            builder = FunctionBuilder(self.index, self.lines, function)
            self.builders[function] = builder
            self.flows[function] = builder.build()
        return self.flows[function]

    def has_effect(
        self, function: ast.FunctionDef | ast.AsyncFunctionDef | None, visiting: frozenset = frozenset()
    ) -> bool:
        """Whether calling `function` can touch a gradient: pure helpers are not interpreted at all."""
        if function not in self.effects:
            if function in visiting:
                return False
            self.effects[function] = self.flow_has_effect(self.flow_of(function), visiting | {function})
        return self.effects[function]

    def flow_has_effect(self, flow: Flow, visiting: frozenset = frozenset()) -> bool:
        if flow not in self.flow_effects:
            self.flow_effects[flow] = any(
                not isinstance(e, Call) or self.has_effect(e.function, visiting) for e in walk_effects(flow)
            )
        return self.flow_effects[flow]

    def run(self) -> Facts:
        if not self.index.has_gradient_code:
            return self.facts
        functions = self.index.all_functions()
        for function in [None, *functions]:
            self.flow_of(function)
        called = {
            callee
            for function, builder in self.builders.items()
            for callee in builder.callees
            if callee is not function
        }
        self.closures = {closure for builder in self.builders.values() for closure in builder.closures}
        for function in [None, *functions]:
            if (function is None or function not in called) and self.has_effect(function):
                RootInterpreter(self, function).run()
        return self.facts


class RootInterpreter(OrderInterpreter):
    """Interprets one entry point (the module body, or a function nobody in the module calls)."""

    def __init__(
        self, analysis: ModuleAnalysis, function: ast.FunctionDef | ast.AsyncFunctionDef | None
    ) -> None:
        self.analysis = analysis
        self.function = function
        self.optimizers: set[str] = set()
        self.lbfgs: set[str] = set()
        self.engines: set[str] = set()
        self.sources: dict[str, set[str]] = {}
        self.clears: dict[str, Event] = {}
        self.closure_steps: dict[Event, Loop] = {}
        self.schedules: dict[str, str | None] = {}
        self.record = False
        self.reset()

    def reset(self) -> None:
        self.call_memo: dict[tuple, Outcome] = {}
        self.loop_memo: dict[tuple, Outcome] = {}
        self.consumed: set[Event] = set()
        self.seen: dict[Event, tuple[Loop, ...]] = {}
        self.discarded_by: dict[Event, Event] = {}
        self.facts = Facts()

    def run(self) -> None:
        # Which objects are optimizers is learnt while interpreting (a callee's `o.step()` makes the
        # caller's `o` one), so interpret until that set stops growing, then keep the last facts.
        for _ in range(4):
            known = (set(self.optimizers), set(self.engines))
            self.reset()
            self.interpret_root()
            if known == (self.optimizers, self.engines):
                break
        if not self.optimizers and not self.engines:
            return
        self.report_unapplied()
        target = self.analysis.facts
        target.stale_steps |= self.facts.stale_steps
        target.discarded |= self.facts.discarded
        target.unapplied |= self.facts.unapplied
        target.unscaled |= self.facts.unscaled
        target.scheduler_before_step |= self.facts.scheduler_before_step
        target.step_before_backward |= self.facts.step_before_backward
        target.scaled_steps |= self.facts.scaled_steps
        target.scaler_not_updated |= self.facts.scaler_not_updated
        target.clip_scaled |= self.facts.clip_scaled
        target.clip_after_step |= self.facts.clip_after_step
        target.accumulations |= self.facts.accumulations

    def interpret_root(self) -> None:
        function = self.function
        builder = self.analysis.builders[function]
        frame = Frame(function, {}, frozenset(builder.locals), "", stack=(function,))
        state = {key: frozenset({Grad()}) for key in self.optimizers | self.engines}
        self.interpret(self.analysis.flow_of(function), state, frame)

    # --- names to objects -----------------------------------------------------------------------
    def resolve(self, path: str | None, frame: Frame) -> str | None:
        if path is None or path == MANUAL:
            return path
        root, rest = split_root(path)
        while frame is not None:
            if root in frame.bindings:
                bound = frame.bindings[root]
                return None if bound is None else bound + rest
            if frame.parent is None or root in frame.locals:
                return frame.prefix + path
            frame = frame.parent
        return path

    # --- the interpreter --------------------------------------------------------------------
    def interpret(self, flow: Flow, state: State | None, frame: Frame) -> Outcome:
        if state is None:
            return Outcome()
        if isinstance(flow, Seq):
            return self.sequence(flow.items, state, frame)
        if isinstance(flow, Event):
            return Outcome(normal=self.event(flow, state, frame))
        if isinstance(flow, Branch):
            if not flow.assumes:
                return merge([self.interpret(arm, state, frame) for arm in flow.arms])
            return merge(
                [
                    self.interpret(arm, self.assume_all(state, facts, frame), frame)
                    for arm, facts in zip(flow.arms, flow.assumes)
                ]
            )
        if isinstance(flow, Forget):
            keys = {self.resolve(path, frame) for path in flow.paths}
            return Outcome(
                normal={
                    k: normalize(
                        frozenset(
                            v._replace(assumed=frozenset(a for a in v.assumed if a[0] not in keys))
                            for v in values
                        )
                    )
                    for k, values in state.items()
                }
            )
        if isinstance(flow, Loop):
            return self.loop(flow, state, frame)
        if isinstance(flow, Exit):
            return Outcome(**{EXIT_SLOTS[flow.kind]: state})
        if isinstance(flow, Try):
            return self.try_block(flow, state, frame)
        if isinstance(flow, Call):
            return self.call(flow, state, frame)
        if isinstance(flow, Gate):
            return self.interpret(flow.body, state, replace(frame, gated=True))
        if isinstance(flow, Register):
            return Outcome(normal=self.register(flow, state, frame))
        raise TypeError(f"unknown flow node {flow!r}")

    def assume_all(
        self, state: State | None, facts: tuple[tuple[str, bool], ...], frame: Frame
    ) -> State | None:
        for fact in facts:
            if state is None:
                break
            state = self.assume(state, fact, frame)
        return state

    def assume(self, state: State, assumption: tuple[str, bool], frame: Frame) -> State | None:
        """Keep the paths that agree with this arm's test, and let them remember it."""
        path, truth = assumption
        key = frame.prefix + path if path.startswith(TEST_KEY) else self.resolve(path, frame)
        if key is None:
            return state
        fact, contrary = (key, truth), (key, not truth)

        def remember(value: Grad) -> Grad:
            if value.unknown:
                return value
            if len(value.assumed) >= MAX_ASSUMED:
                return UNKNOWN  # forgetting what the path chose would bring back paths that cannot run
            return value._replace(assumed=value.assumed | {fact})

        narrowed = {
            k: normalize(frozenset(remember(v) for v in values if contrary not in v.assumed))
            for k, values in state.items()
        }
        if any(values and not narrowed[k] for k, values in state.items()):
            return None  # no path here agrees with this arm: it cannot run
        return narrowed

    def sequence(self, items: list[Flow], state: State, frame: Frame) -> Outcome:
        exits: list[Outcome] = []
        current: State | None = state
        for item in items:
            outcome = self.interpret(item, current, frame)
            exits.append(outcome._replace(normal=None))
            current = outcome.normal
            if current is None:
                break
        return merge(exits)._replace(normal=current)

    def loop(self, loop: Loop, state: State, frame: Frame) -> Outcome:
        if not self.analysis.flow_has_effect(loop):
            return Outcome(normal=state)
        memo_key = (loop, frozenset(state.items()), frame)
        if memo_key not in self.loop_memo:
            self.loop_memo[memo_key] = self.iterate(loop, state, frame)
        return self.loop_memo[memo_key]

    def iterate(self, loop: Loop, state: State, frame: Frame) -> Outcome:
        inner = replace(frame, loops=(*frame.loops, loop))
        head = state
        after: State | None = None
        breaks = returns = raises = None
        for _ in range(MAX_PASSES):
            outcome = self.interpret(loop.body, head, inner)
            breaks, returns = join(breaks, outcome.breaks), join(returns, outcome.returns)
            raises = join(raises, outcome.raises)
            back = end_iteration(cross(join(outcome.normal, outcome.continues), loop), loop)
            after = join(after, back)
            new_head = join(head, back if loop.accumulates else settle_discards(back)) or head
            if new_head == head:
                break
            head = new_head
        else:
            head = {key: frozenset({UNKNOWN}) for key in head}
        # A loop that never runs is assumed away: a finding only on that path would be a guess.
        normal = breaks if loop.kind == "forever" else join(after, breaks)
        return Outcome(normal=end_iteration(normal, loop), returns=returns, raises=raises)

    def try_block(self, block: Try, state: State, frame: Frame) -> Outcome:
        # Handlers run from the start of the body or from an explicit raise in it: that any call may
        # raise anywhere is true, but a finding only on such a path would be a guess.
        body = self.sequence(block.body, state, frame)
        results = [self.interpret(block.orelse, body.normal, frame)] if body.normal is not None else []
        if block.handlers:
            entry = join(state, body.raises)
            results += [self.interpret(handler, entry, frame) for handler in block.handlers]
            body = body._replace(raises=None)
        combined = merge([body._replace(normal=None), *results])
        final = block.final
        assert isinstance(final, Seq)  # a `finally:` block: built as a Seq, and prune keeps it one
        if not final.items:
            return combined
        final_normal = self.interpret(block.final, combined.normal, frame)
        others = {
            name: self.interpret(block.final, getattr(combined, name), frame).normal
            for name in ("breaks", "continues", "returns", "raises")
        }
        return Outcome(normal=final_normal.normal, **others)

    def call(self, call: Call, state: State, frame: Frame) -> Outcome:
        function = call.function
        if function in frame.stack or len(frame.stack) > MAX_CALL_DEPTH:
            return Outcome(normal=state)
        if not self.analysis.has_effect(function):
            return Outcome(normal=state)
        # Loops reach the same call with the same state on every pass: answer from memory.
        memo_key = (call, frozenset(state.items()), frame)
        if memo_key not in self.call_memo:
            self.call_memo[memo_key] = self.enter(call, state, frame)
        return self.call_memo[memo_key]

    def enter(self, call: Call, state: State, frame: Frame) -> Outcome:
        function = call.function
        flow = self.analysis.flow_of(function)
        builder = self.analysis.builders[function]
        bindings = {param: self.resolve(path, frame) for param, path in call.bindings.items()}
        callee = Frame(
            function,
            bindings,
            frozenset(builder.locals) - set(bindings),
            f"{getattr(function, 'name', '?')}@{function.lineno}:",
            frame.loops,
            (*frame.stack, function),
            frame,
            frame.gated,
            frame.loops[-1] if call.guarded and frame.loops else frame.guarded_in,
        )
        # Each call makes its locals anew: the optimizer an earlier call built (or a sibling's, of
        # the same name) holds none of the gradients this call's optimizer will step. A local the
        # call only fetches (`optimizer = getattr(self, "optim0")`) is an old one, gradients and all.
        fetched = builder.fetched_locals()
        fresh = {
            key: frozenset({Grad()})
            for key in state
            if key.startswith(callee.prefix) and split_root(key[len(callee.prefix) :])[0] not in fetched
        }
        outcome = self.interpret(flow, {**state, **fresh} if fresh else state, callee)
        return Outcome(normal=join(outcome.normal, outcome.returns), raises=outcome.raises)

    def register(self, register: Register, state: State, frame: Frame) -> State:
        key = self.resolve(register.path, frame)
        if key is None:
            return state
        if register.drives is not None:
            self.schedules[key] = self.resolve(register.drives, frame)
            return state
        self.optimizers.add(key)
        if register.lbfgs:
            self.lbfgs.add(key)
        sources = {
            resolved for source in register.sources if (resolved := self.resolve(source, frame)) is not None
        }
        self.sources[key] = sources
        if register.fresh_parameters and key in state:
            return {**state, key: frozenset({Grad(assumed=v.assumed) for v in state[key]})}
        return state

    # --- events -----------------------------------------------------------------------------
    def event(self, event: Event, state: State, frame: Frame) -> State:
        kind = event.kind
        if kind is EventKind.BACKWARD:
            return self.backward(event, state, frame)
        if kind is EventKind.STEP:
            return self.step(event, state, frame)
        if kind is EventKind.CLEAR:
            return self.clear(event, state, frame)
        if kind is EventKind.GRAD_READ:
            return self.read_gradients(event, state)
        if kind is EventKind.SCALE:
            return self.update(
                state,
                self.grad_keys(event, state, frame),
                lambda v: v if v.unknown else v._replace(grads_scaled=True),
            )
        if kind is EventKind.GRAD_WRITE:
            keys = self.grad_keys(event, state, frame)
            return self.update(state, keys, lambda v: Grad(pending=1, assumed=v.assumed))
        if kind is EventKind.UNKNOWN:
            return self.unknown(event, state, frame)
        if kind in ORDER_KINDS:
            return self.order_event(event, state, frame)
        return state

    def grad_keys(self, event: Event, state: State, frame: Frame) -> set[str]:
        """The optimizers whose gradients a `.grad` access or a clear touches."""
        if event.target == "module":
            return self.fed_by(self.resolve(event.path, frame), state)
        if event.target in ("optimizer", "maybe_optimizer", "engine"):
            key = self.resolve(event.path, frame)
            return {key} if key is not None else set()
        return set(state)

    def fed_by(self, model: str | None, state: State) -> set[str]:
        """Optimizers built from `model`'s parameters, or every optimizer when that cannot be told."""
        if model is None:
            return set(state)
        owners = {key for key, sources in self.sources.items() if model in sources}
        keys = set()
        for key in state:
            sources = self.sources.get(key)
            if key == MANUAL or not sources or any(related(model, s) for s in sources):
                keys.add(key)
            elif not owners:
                keys.add(key)  # `model` is no optimizer's source: maybe an alias (ddp_model), assume it is
        return keys

    def update(self, state: State, keys: set[str], change) -> State:
        result = dict(state)
        for key in keys & set(state):
            result[key] = normalize(frozenset(change(v) for v in state[key]))
        return result

    def backward(self, event: Event, state: State, frame: Frame) -> State:
        if event.target == "engine":
            key = self.resolve(event.path, frame)
            if key is not None:
                self.engines.add(key)
            keys = {key} if key is not None and key in state else set()  # None is never a state key
        else:
            keys = set(state) - self.engines
        self.seen.setdefault(event, frame.loops)
        if any(v.unknown for key in keys for v in state[key]) or not keys:
            self.consumed.add(event)
        return self.update(state, keys, lambda v: self.add_backward(v, event, frame))

    def add_backward(self, value: Grad, event: Event, frame: Frame) -> Grad:
        if value.unknown:
            return value
        repeat_loop = value.repeat_loop
        if event in value.backwards and repeat_loop is None:
            repeat_loop = next((loop for loop in reversed(frame.loops) if loop in value.crossed), None)
        return value._replace(
            pending=min(value.pending + 1, MANY),
            backwards=value.backwards | {event},
            fresh=value.fresh | {event},
            repeat_loop=repeat_loop,
            crossed=frozenset(),
            # a different backward after the clear: the first one was for its side effects (input
            # gradients for FGSM, K-FAC statistics), and the clear made room for the real one
            discarded=frozenset(d for d in value.discarded if d[1].site == event.site),
            order=self.order_after_backward(value.order, event, frame),
        )

    def step(self, event: Event, state: State, frame: Frame) -> State:
        if event.target in ("optimizer", "maybe_optimizer") and frame.gated:
            return state
        key = MANUAL if event.target == "manual" else self.resolve(event.path, frame)
        if key is None:
            return state
        is_optimizer = event.target in ("optimizer", "manual", "engine") or key in self.optimizers
        if not is_optimizer:
            if event.has_arguments:
                return state  # env.step(action): not ours
            return self.unknown(event, state, frame, every=True)
        (self.engines if event.target == "engine" else self.optimizers).add(key)
        if key not in state:
            return state  # first pass: the optimizer is learnt now, interpreted on the next pass
        if event.closure is not None:
            return self.closure_step(event, key, state, frame)
        return self.apply_step(event, key, state, frame)

    def closure_step(self, event: Event, key: str, state: State, frame: Frame) -> State:
        # The closure's events happen inside the step; LBFGS evaluates it several times.
        if event not in self.closure_steps:
            assert event.closure is not None  # step() comes here only for a step with a closure
            body = Seq([event.closure, replace(event, closure=None)])
            header = f"{event.site.text} (LBFGS evaluates the closure repeatedly)"
            self.closure_steps[event] = Loop(body, LoopSite(event.site.location, header, ""), "repeat")
        loop = self.closure_steps[event]
        if key not in self.lbfgs:
            return self.interpret(loop.body, state, frame).normal or state
        return self.loop(loop, state, frame).normal or state

    def apply_step(self, event: Event, key: str, state: State, frame: Frame) -> State:
        state = self.order_at_step(event, key, state, frame)
        display = event.path if event.target != "manual" else "parameters"
        assert display is not None  # step() resolved the path to `key`, and None resolves to None
        # `optimizer.step()` runs only where `optimizer` is not None: drop paths that assumed it was
        possible = frozenset(v for v in state[key] if (key, False) not in v.assumed)
        state = {**state, key: possible or state[key]}
        for value in state[key]:
            if value.unknown:
                continue
            if value.applied and value.pending:  # no backward since: .grad holds nothing of ours
                self.stale(event, display, key, value, frame)
            elif value.pending == MANY and value.repeat_loop is not None and not value.grads_scaled:
                self.unscaled(event, display, value, frame)
            if not value.applied and value.pending == MANY and value.repeat_loop is not None:
                self.accumulated(event, display, value)
            for clear, backward, went_round in value.discarded:
                if starves_accumulation(went_round, event, frame):
                    self.facts.discarded.add(
                        DiscardedGradients(display, clear.site, backward.site, event.site)
                    )
        consumed = frozenset().union(*(v.backwards for v in state[key]))
        self.consumed |= consumed
        result = {k: without_fresh(values, consumed) for k, values in state.items()}
        result[key] = frozenset(
            v if v.unknown else v._replace(applied=True, discarded=frozenset(), fresh=frozenset())
            for v in state[key]
        )
        return result

    def stale(self, event: Event, display: str, key: str, value: Grad, frame: Frame) -> None:
        clear_loops: tuple[Loop, ...]
        clear, clear_loops, on_path = None, (), True
        if value.clear is not None:
            clear, clear_loops = value.clear
        elif key in self.clears:
            clear, on_path = self.clears[key], False
        self.facts.stale_steps.add(
            StaleStep(
                display,
                event.site,
                tuple(loop.site for loop in frame.loops),
                # the backwards of this iteration (not those another optimizer's step used) name the culprit
                tuple(sorted((b.site for b in (value.fresh or value.backwards)), key=lambda s: s.location)),
                clear.site if clear else None,
                tuple(loop.site for loop in clear_loops),
                on_path,
                self.loop_clears(frame.loops[-1], key, frame) if frame.loops[-1:] else False,
            )
        )

    def loop_clears(self, loop: Loop, key: str, frame: Frame) -> bool:
        """Whether `loop`'s own body (not a helper it calls) clears the optimizer `key`."""
        return any(
            event.kind is EventKind.CLEAR and key in self.grad_keys(event, {key: frozenset()}, frame)
            for event in walk_events(loop.body)
        )

    def unscaled(self, event: Event, display: str, value: Grad, frame: Frame) -> None:
        loop = value.repeat_loop
        assert loop is not None  # apply_step() reports only a value some loop repeated
        guard = event.guard
        if not (loop.draws_data or loop.count or is_accumulation_guard(guard)) or loop.whole_window:
            return
        count = modulo_divisor(guard) or loop.count or (length_of(loop.iterable) if loop.iterable else "")
        for backward in value.backwards:
            if backward.scaled or backward.retain_graph or not computes_loss_in(backward, loop):
                continue
            self.facts.unscaled.add(
                UnscaledAccumulation(display, backward.site, event.site, loop.site, count)
            )

    def accumulated(self, event: Event, display: str, value: Grad) -> None:
        """Every accumulation window over data, scaled or not (GL303 asks how each micro-batch syncs)."""
        loop = value.repeat_loop
        assert loop is not None  # apply_step() asks only for a value some loop repeated
        if not (loop.draws_data or loop.count or is_accumulation_guard(event.guard)):
            return
        count = modulo_divisor(event.guard) or loop.count or ""
        for backward in value.backwards:
            if backward.retain_graph or backward.target == "engine" or not computes_loss_in(backward, loop):
                continue
            self.facts.accumulations.add(Accumulation(display, backward.site, event.site, loop.site, count))

    def clear(self, event: Event, state: State, frame: Frame) -> State:
        if event.target in ("optimizer", "maybe_optimizer") and frame.gated:
            return state
        keys = self.grad_keys(event, state, frame)
        if event.target == "module":
            owner = self.resolve(event.path, frame)
            if owner in self.optimizers:
                keys = {owner}  # a parameter named `model` that holds an optimizer
        if MANUAL in state:
            keys.add(MANUAL)  # hand-written updates use the same parameters any clear zeroes
        for key in keys:
            self.clears.setdefault(key, event)
        return self.update(state, keys, lambda v: self.cleared(v, event, frame))

    def cleared(self, value: Grad, event: Event, frame: Frame) -> Grad:
        # A step's closure clears, then computes the gradients that step applies, whoever calls it
        # (`val_loss = closure()` for a plateau scheduler): what it clears was not meant for a step.
        if value.unknown or event.on_purpose or frame.function in self.analysis.closures:
            self.consumed |= value.backwards  # dropped on purpose is not forgotten (GL201)
            return Grad(
                clear=(event, frame.loops),
                discarded=value.discarded,
                assumed=value.assumed,
                order=value.order.cleared(),
            )
        # Gradients left over by a loop that has finished (a partial accumulation window at the end of
        # an epoch) are GL302's business, not a clear in the wrong place.
        lost = {b for b in value.fresh if not self.seen.get(b) or self.seen[b][-1] in frame.loops}
        went_round = next((loop for loop in reversed(frame.loops) if loop in value.crossed), None)
        discarded = value.discarded | {(event, backward, went_round) for backward in lost}
        for backward in lost:
            self.discarded_by.setdefault(backward, event)
        return Grad(
            clear=(event, frame.loops),
            discarded=discarded,
            assumed=value.assumed,
            order=value.order.cleared(),
        )

    def read_gradients(self, event: Event, state: State) -> State:
        """Reading an input's `.grad` (FGSM, saliency) is what that backward was for; reading the
        parameters' gradients (logging a norm) is not a reason to throw them away before the step."""
        for values in state.values():
            for value in values:
                self.consumed |= value.backwards
        if event.target == "module":
            return state
        return {k: frozenset(v._replace(fresh=frozenset()) for v in values) for k, values in state.items()}

    def unknown(self, event: Event, state: State, frame: Frame, every: bool = False) -> State:
        """Code we cannot see receives an optimizer or a model: assume it does the right thing."""
        keys: set[str] = set(state) if every else set()
        for argument in event.arguments:
            key = self.resolve(argument, frame)
            if key is None:
                continue
            state = self.forget_scaler_steps(state, key)  # it may call the scaler's update()
            if key in state:
                keys.add(key)
            keys |= {k for k in state if k.startswith(key + ".") or k.startswith(key + "[")}
            # the model itself, or an object holding it (`self`), not one of its attributes
            if any(s == key or s.startswith(key + ".") for sources in self.sources.values() for s in sources):
                keys |= self.fed_by(key, state)
        for key in keys:
            for value in state[key]:
                self.consumed |= value.backwards
        return self.update(state, keys, lambda v: UNKNOWN)

    # --- after the root has run -------------------------------------------------------------
    def report_unapplied(self) -> None:
        owns_optimizer = any(split_root(key)[0] not in self.root_param_names() for key in self.optimizers)
        starved = {fact.backward for fact in self.facts.discarded}  # GL103 names the cause of those
        for backward, loops in self.seen.items():
            if (
                not loops
                or backward in self.consumed
                or backward.target == "engine"
                or backward.site in starved
            ):
                continue
            cleared_by = self.discarded_by.get(backward)
            if cleared_by is None and not owns_optimizer:
                continue  # a caller we cannot see may step these gradients
            self.facts.unapplied.add(
                UnappliedBackward(backward.site, loops[-1].site, cleared_by.site if cleared_by else None)
            )

    def root_param_names(self) -> set[str]:
        function = self.function
        if function is None:
            return set()
        params = set(parameters(function))
        if self.analysis.index.class_of(function) is not None:
            params.discard("self")
        return params


EXIT_SLOTS = {"break": "breaks", "continue": "continues", "return": "returns", "raise": "raises"}
SLOTS = ("normal", "breaks", "continues", "returns", "raises")


def merge(outcomes: list[Outcome]) -> Outcome:
    result = Outcome()
    for outcome in outcomes:
        result = Outcome(*(join(getattr(result, slot), getattr(outcome, slot)) for slot in SLOTS))
    return result


def without_fresh(values: frozenset[Grad], consumed: frozenset[Event]) -> frozenset[Grad]:
    """`values` with the backwards a step has used no longer fresh. A step touches every optimizer's
    values, and most hold none of what it used: those keep their set as it is, so that a script with
    many optimizers does not rebuild every one of them at every step."""
    if all(v.unknown or v.fresh.isdisjoint(consumed) for v in values):
        return values
    return frozenset(v._replace(fresh=v.fresh - consumed) if not v.unknown else v for v in values)


def cross(state: State | None, loop: Loop) -> State | None:
    if state is None:
        return None
    # Only a loop that goes round with a backward already in .grad can sum two of them.
    return {
        k: frozenset(
            v if v.unknown or not v.pending or loop in v.crossed else v._replace(crossed=v.crossed | {loop})
            for v in values
        )
        for k, values in state.items()
    }


def settle_discards(state: State | None) -> State | None:
    """Going round a loop, a discard that no step of that iteration followed was a skipped batch
    (a non-finite loss, a frozen phase), not a clear in the wrong place: forget it."""
    if state is None:
        return None
    return {
        k: frozenset(v if v.unknown or not v.discarded else v._replace(discarded=frozenset()) for v in values)
        for k, values in state.items()
    }


def split_root(path: str) -> tuple[str, str]:
    for index, char in enumerate(path):
        if char in ".[":
            return path[:index], path[index:]
    return path, ""


def related(model: str, source: str) -> bool:
    return model == source or source.startswith(model + ".") or model.startswith(source + ".")


def length_of(iterable: str) -> str:
    """`range(meta_bsz)` -> 'meta_bsz' (not `len(range(meta_bsz))`); `loader` -> 'len(loader)'."""
    found = re.fullmatch(r"range\(([^,()]+)\)", iterable)
    return found.group(1).strip() if found else f"len({iterable})"


def modulo_divisor(guard: ast.expr | None) -> str | None:
    if guard is None:
        return None
    for node in walk(guard):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            return names.segment([], node.right)
    return None


def starves_accumulation(went_round: Loop | None, step: Event, frame: Frame) -> bool:
    """A clear that wiped the previous iteration's backward matters when that iteration was meant to
    accumulate into this step: a micro-batch loop the step follows, a counter-guarded step, or
    accelerate's accumulate(); a step skipped for another reason (overflow) drops its batch on purpose."""
    if went_round is None:
        return True
    return went_round not in frame.loops or went_round.accumulates or is_accumulation_guard(step.guard)


def computes_loss_in(backward: Event, loop: Loop) -> bool:
    """The loss comes from a forward pass inside the repetition, not from one graph reused."""
    if backward.forward_inline:
        return True
    if backward.loss_is_param or not backward.loss_assigned:
        return False
    if loop in backward.loops:
        return loop in backward.loss_loops
    return True  # the loop is in a caller: the function computing the loss runs on every repetition
