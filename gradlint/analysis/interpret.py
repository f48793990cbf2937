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
from typing import NamedTuple, Union

from gradlint.analysis import names
from gradlint.analysis.build import (
    CONSTANT_KEY,
    FIRST_KEY,
    GRAD_MODE_KEY,
    FunctionBuilder,
    argument_expressions,
    bind_arguments,
    constant_key,
)
from gradlint.analysis.facts import (
    Accumulation,
    DiscardedGradients,
    Facts,
    LoopSite,
    ScaledTwice,
    StaleStep,
    UnappliedBackward,
    UnscaledAccumulation,
)
from gradlint.analysis.flow import (
    Branch,
    Call,
    Dispatch,
    Event,
    Exit,
    Flow,
    Forget,
    Gate,
    Instance,
    Loop,
    NoGrad,
    Register,
    Seq,
    Try,
    walk_effects,
    walk_events,
)
from gradlint.analysis.nodes import walk
from gradlint.analysis.order import EMPTY, ORDER_KINDS, Order, OrderInterpreter, end_iteration
from gradlint.analysis.program import Program, lone_module
from gradlint.analysis.scope import MANUAL
from gradlint.analysis.shapes import TEST_KEY, is_accumulation_guard, own_nodes, parameters
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
    # models of an optimizer built over several whose `.zero_grad()` ran since the last backward
    cleared_parts: frozenset[str] = frozenset()
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
    no_grad: bool = False  # under `torch.no_grad()`: a backward pass cannot run
    call: Call | None = None  # the call that made this activation (None: a root)


def join(a: State | None, b: State | None) -> State | None:
    if a is None:
        return b
    if b is None or a is b:
        return a
    return {key: normalize(a.get(key, frozenset()) | b.get(key, frozenset())) for key in a.keys() | b.keys()}


def normalize(values: frozenset[Grad]) -> frozenset[Grad]:
    """Merge values that agree on everything a rule decides on, uniting the sets they carry, and
    forget the outcome of a test the paths went both ways on.

    Each merged fact (this clear discarded that backward, these backwards were summed) still comes
    from one real path to this point, and the paths continue alike from here; without the merge,
    every combination of history would be a value of its own and long scripts would not finish."""
    if len(values) < 2:
        return values
    merged = merge_alike(values)
    while True:
        settled = settle_tests(merged)
        if settled is merged:
            break
        merged = merge_alike(settled)
    if len(merged) > MAX_VALUES:  # too many paths to tell apart: say nothing about them
        return frozenset({UNKNOWN})
    return merged


def merge_alike(values: frozenset[Grad]) -> frozenset[Grad]:
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
            value.cleared_parts,
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


def settle_tests(values: frozenset[Grad]) -> frozenset[Grad]:
    """Two values equal but for the outcome of one test are one path that went both ways on it:
    one value that does not know the outcome goes on exactly as the two would (a later `if` on the
    test splits it again), so the state is keyed only by the tests whose outcome made a difference.
    Likewise a value that knows an outcome adds nothing to an equal one that does not (the test's
    name was assigned again on the other path). The same `values` when there is nothing to settle."""
    current = set(values)
    changed = False
    for value in values:
        if value not in current:
            continue
        for key, truth in value.assumed:
            unknowing = value._replace(assumed=value.assumed - {(key, truth)})
            partner = unknowing._replace(assumed=unknowing.assumed | {(key, not truth)})
            if partner in current or unknowing in current:
                current -= {value, partner}
                current.add(unknowing)
                changed = True
                break
    return frozenset(current) if changed else values


def analyse(tree: ast.Module, lines: Sequence[str]) -> Facts:
    return ProgramAnalysis(Program([lone_module(tree, list(lines))])).run()


# What a flow is built for: a function, or a module's own body (keyed by its tree).
Body = Union[ast.FunctionDef, ast.AsyncFunctionDef, ast.Module]


class ProgramAnalysis:
    """Every entry point of a program interpreted, each function's flow built once and shared."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.flows: dict[Body, Flow] = {}
        self.builders: dict[Body, FunctionBuilder] = {}
        self.facts = Facts()
        self.effects: dict[Body, bool] = {}
        self.flow_effects: dict[Flow, bool] = {}
        self.closures: set[ast.AST] = set()  # functions some step evaluates as its closure
        self.late_calls: dict[tuple[Dispatch, ast.AST], Call] = {}

    def late_call(self, dispatch: Dispatch, function: ast.FunctionDef | ast.AsyncFunctionDef) -> Call:
        """The call a dispatch makes to `function`: one object per pair, so the interpreter's memo
        of calls answers its repetitions."""
        pair = (dispatch, function)
        if pair not in self.late_calls:
            receiver = dispatch.receiver if self.program.class_of(function) is not None else False
            bindings = bind_arguments(dispatch.node, function, receiver)
            call = Call(function, bindings, dispatch.site, dispatch.guarded)
            call.arguments = argument_expressions(dispatch.node, function, receiver is not False)
            self.late_calls[pair] = call
        return self.late_calls[pair]

    def flow_of(self, body: Body) -> Flow:
        if body not in self.flows:
            if isinstance(body, ast.Module):
                module = next(m for m in self.program.roots if m.tree is body)
                function = None
            else:
                module, function = self.program.module_of[body], body
                index = self.program.index(module)
                if index.is_inert(body, self.program.imported_names(module)):
                    self.flows[body] = Seq()  # a model's forward(), a data helper: nothing to follow
                    return self.flows[body]
            builder = FunctionBuilder(self.program, module, function)
            self.builders[body] = builder
            self.flows[body] = builder.build()
        return self.flows[body]

    def has_effect(self, function: Body, visiting: frozenset = frozenset()) -> bool:
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
        """Entry points: each root module's body, and its functions that nothing in the program calls."""
        entries: list[Body] = []
        for module in self.program.roots:
            index = self.program.index(module)
            if index.has_gradient_code or self.program.imported_names(module):
                entries += [module.tree, *index.all_functions()]
        for body in entries:
            self.flow_of(body)
        called = {
            callee
            for body, builder in list(self.builders.items())
            for callee in builder.callees
            if callee is not body
        }
        self.closures = {closure for builder in self.builders.values() for closure in builder.closures}
        for body in entries:
            if (isinstance(body, ast.Module) or body not in called) and self.has_effect(body):
                RootInterpreter(self, body).run()
        return self.facts


class RootInterpreter(OrderInterpreter):
    """Interprets one entry point (a module body, or a function nobody in the program calls)."""

    def __init__(self, analysis: ProgramAnalysis, entry: Body) -> None:
        self.analysis = analysis
        self.entry = entry
        self.function = None if isinstance(entry, ast.Module) else entry
        self.optimizers: set[str] = set()
        self.lbfgs: set[str] = set()
        self.engines: set[str] = set()
        self.sources: dict[str, set[str]] = {}
        # every clear of each optimizer, first one first, with the `if` outcomes of the paths it ran on
        self.clears: dict[str, dict[Event, set[frozenset[tuple[str, bool]]]]] = {}
        self.closure_steps: dict[Event, Loop] = {}
        self.schedules: dict[str, str | None] = {}
        self.instances: dict[str, object] = {}  # object -> the project class it was built from
        self.generators: dict[ast.AST, bool] = {}
        self.handed: dict[tuple[Event, Call], Event] = {}
        self.record = False
        self.reset()

    def reset(self) -> None:
        self.call_memo: dict[tuple, Outcome] = {}
        self.loop_memo: dict[tuple, Outcome] = {}
        self.consumed: set[Event] = set()
        self.seen: dict[Event, tuple[Loop, ...]] = {}
        self.discarded_by: dict[Event, Event] = {}
        # backwards an accelerate-gated clear dropped: with a step somewhere, that is how accumulation
        # works; with none at all (the step deleted), they were never applied
        self.gate_dropped: set[Event] = set()
        self.stepped = False
        self.facts = Facts()

    def run(self) -> None:
        # Which objects are optimizers is learnt while interpreting (a callee's `o.step()` makes the
        # caller's `o` one), so interpret until that set stops growing, then keep the last facts.
        for _ in range(4):
            known = (set(self.optimizers), set(self.engines), dict(self.instances))
            self.reset()
            self.interpret_root()
            if known == (self.optimizers, self.engines, self.instances):
                break
        if not self.optimizers and not self.engines:
            return
        self.report_unapplied()
        target = self.analysis.facts
        target.stale_steps |= self.facts.stale_steps
        target.discarded |= self.facts.discarded
        target.unapplied |= self.facts.unapplied
        target.unscaled |= self.facts.unscaled
        target.scaled_twice |= self.facts.scaled_twice
        target.scheduler_before_step |= self.facts.scheduler_before_step
        target.step_before_backward |= self.facts.step_before_backward
        target.scaled_steps |= self.facts.scaled_steps
        target.scaler_not_updated |= self.facts.scaler_not_updated
        target.clip_scaled |= self.facts.clip_scaled
        target.clip_after_step |= self.facts.clip_after_step
        target.accumulations |= self.facts.accumulations

    def interpret_root(self) -> None:
        function = self.function
        builder = self.analysis.builders[self.entry]
        frame = Frame(function, {}, frozenset(builder.locals), "", stack=(function,))
        state = {key: frozenset({Grad()}) for key in self.optimizers | self.engines}
        self.interpret(self.analysis.flow_of(self.entry), state, frame)

    # --- names to objects -----------------------------------------------------------------------
    def resolve(self, path: str | None, frame: Frame) -> str | None:
        if path is None or path == MANUAL or path.startswith(CONSTANT_KEY):
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
            entries = [self.assume_all(state, facts, frame) for facts in flow.assumes]
            outcomes = [self.interpret(arm, entry, frame) for arm, entry in zip(flow.arms, entries)]
            if all(
                outcome._replace(raises=None) in (Outcome(), Outcome(normal=entry))
                for outcome, entry in zip(outcomes, entries)
            ):
                # No arm changed a gradient (`if args.hflip: x = flip(x)`, `if name not in columns:
                # raise ValueError(...)`): remembering which arm ran would only fork the state, and a
                # script's dozens of flags would multiply the paths past what normalize() keeps apart.
                # The paths go on as they came, less those no arm lets through; a later `if` on the
                # same test that does hold an event keys them then, with the same result.
                through = [
                    self.assume_all(state, facts, frame, remember=False)
                    for facts, outcome in zip(flow.assumes, outcomes)
                    if outcome.normal is not None
                ]
                return merge([Outcome(normal=entry) for entry in through])._replace(
                    raises=merge(outcomes).raises
                )
            return merge(outcomes)
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
        if isinstance(flow, NoGrad):
            return self.interpret(flow.body, state, replace(frame, no_grad=True))
        if isinstance(flow, Register):
            return Outcome(normal=self.register(flow, state, frame))
        if isinstance(flow, Instance):
            key = self.resolve(flow.path, frame)
            if key is not None:
                self.instances[key] = flow.cls
            return Outcome(normal=state)
        if isinstance(flow, Dispatch):
            return self.dispatch(flow, state, frame)
        raise TypeError(f"unknown flow node {flow!r}")

    def assume_all(
        self, state: State | None, facts: tuple[tuple[str, bool], ...], frame: Frame, remember: bool = True
    ) -> State | None:
        for fact in facts:
            if state is None:
                break
            state = self.assume(state, fact, frame, remember)
        return state

    def assume(
        self, state: State, assumption: tuple[str, bool], frame: Frame, remember: bool = True
    ) -> State | None:
        """Keep the paths that agree with this arm's test, and (unless told not to) let them remember it."""
        path, truth = assumption
        if path == GRAD_MODE_KEY:
            key: str | None = path
        elif path.startswith((TEST_KEY, FIRST_KEY)):  # this activation's own test, or its loop's count
            key = frame.prefix + path
        else:
            key = self.resolve(path, frame)
        if key is None:
            return state
        if key.startswith(CONSTANT_KEY):  # the caller passed True or False: one arm runs
            return state if key == constant_key(truth) else None
        if key == GRAD_MODE_KEY:  # a computed tensor requires grad unless under no_grad()
            return state if truth is not frame.no_grad else None
        fact, contrary = (key, truth), (key, not truth)

        def remembered(value: Grad) -> Grad:
            if value.unknown or not remember:
                return value
            if len(value.assumed) >= MAX_ASSUMED:
                return UNKNOWN  # forgetting what the path chose would bring back paths that cannot run
            return value._replace(assumed=value.assumed | {fact})

        narrowed = {
            k: normalize(frozenset(remembered(v) for v in values if contrary not in v.assumed))
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
        first = frame.prefix + loop.first if loop.first is not None else None
        head = first_pass(state, first, True) if first is not None else state
        after: State | None = None
        breaks = returns = raises = None
        for _ in range(MAX_PASSES):
            outcome = self.interpret(loop.body, head, inner)
            breaks, returns = join(breaks, outcome.breaks), join(returns, outcome.returns)
            raises = join(raises, outcome.raises)
            back = end_iteration(cross(join(outcome.normal, outcome.continues), loop), loop)
            if first is not None:
                back = first_pass(back, first, False)
            after = join(after, back)
            new_head = join(head, back if loop.accumulates else settle_discards(back)) or head
            if new_head == head:
                break
            head = new_head
        else:
            head = {key: frozenset({UNKNOWN}) for key in head}
        # A loop that never runs is assumed away: a finding only on that path would be a guess.
        normal = breaks if loop.kind == "forever" else join(after, breaks)
        if first is not None:
            normal, returns, raises = (first_pass(s, first, None) for s in (normal, returns, raises))
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

    def dispatch(self, dispatch: Dispatch, state: State, frame: Frame) -> Outcome:
        """The method of the class the receiver was built from; else what the builder could see."""
        key = self.resolve(dispatch.receiver, frame)
        cls = self.instances.get(key) if key is not None else None
        if cls is not None:
            function = self.analysis.program.method(cls, dispatch.method)
            if function is not None and (dispatch.static is None or function is not dispatch.static.function):
                return self.call(self.analysis.late_call(dispatch, function), state, frame)
        if dispatch.static is not None:
            return self.call(dispatch.static, state, frame)
        return self.sequence(dispatch.fallback, state, frame)

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
            frame.no_grad,
            call,
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
        after = join(outcome.normal, outcome.returns)
        if self.is_generator(function):
            # Calling a generator function runs none of its body: the body runs as the caller draws
            # from it, and may stop at any `yield`, so the caller goes on whether or not it ran (a
            # `while True:` of batches never ends, and the training loop after the call still runs).
            after = join(state, after)
        return Outcome(normal=after, raises=outcome.raises)

    def is_generator(self, function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
        if function not in self.generators:
            self.generators[function] = any(
                isinstance(node, (ast.Yield, ast.YieldFrom)) for node in own_nodes(function.body)
            )
        return self.generators[function]

    def register(self, register: Register, state: State, frame: Frame) -> State:
        key = self.resolve(register.path, frame)
        if key is None:
            return state
        if register.drives is not None:
            driven = self.resolve(register.drives, frame)
            self.schedules[key] = driven
            if driven is not None:
                self.optimizers.add(driven)  # a scheduler is built on an optimizer, wherever that came from
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
            return state if frame.no_grad else self.backward(event, state, frame)
        if kind is EventKind.STEP:
            return self.step(event, state, frame)
        if kind is EventKind.CLEAR:
            return self.clear(event, state, frame)
        if kind is EventKind.GRAD_READ:
            return self.read_gradients(event, state, frame)
        if kind is EventKind.SCALE:
            return self.update(
                state,
                self.grad_keys(event, state, frame),
                lambda v: v if v.unknown else v._replace(grads_scaled=True),
            )
        if kind is EventKind.GRAD_WRITE:
            keys = self.grad_keys(event, state, frame)
            for key in keys & set(state):
                for value in state[key]:
                    self.consumed |= value.backwards  # replaced on purpose (`p.grad = g`), not forgotten
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

    def handed_backward(self, event: Event, frame: Frame) -> Event:
        """A backward of a loss the function was handed (`def backward_step(loss): loss.backward()`):
        whether it was scaled, and where it was computed, is the caller's argument's business. One
        event per call site, so that the same call reached again is the same backward."""
        while event.loss_is_param and frame.call is not None and frame.parent is not None:
            argument = frame.call.arguments.get(event.loss_name or "")
            parent = frame.parent.function
            caller = self.analysis.builders.get(parent if parent is not None else self.entry)
            if argument is None or caller is None:
                break
            memo_key = (event, frame.call)
            if memo_key not in self.handed:
                self.handed[memo_key] = caller.handed_loss(event, argument)
            event, frame = self.handed[memo_key], frame.parent
        return event

    def backward(self, event: Event, state: State, frame: Frame) -> State:
        event = self.handed_backward(event, frame)
        if event.target == "engine":
            key = self.resolve(event.path, frame)
            if key is not None:
                self.engines.add(key)
            keys = {key} if key is not None and key in state else set()  # None is never a state key
        else:
            keys = set(state) - self.engines
        self.seen.setdefault(event, frame.loops)
        if event.scaled_twice is not None:
            division, framework, count = event.scaled_twice
            self.facts.scaled_twice.add(ScaledTwice(event.site, division, framework, count))
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
            cleared_parts=frozenset(),  # the backward filled the cleared models' gradients again
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
            site = LoopSite(event.site.location, header, "", event.site.path)
            self.closure_steps[event] = Loop(body, site, "repeat")
        loop = self.closure_steps[event]
        if key not in self.lbfgs:
            return self.interpret(loop.body, state, frame).normal or state
        return self.loop(loop, state, frame).normal or state

    def apply_step(self, event: Event, key: str, state: State, frame: Frame) -> State:
        self.stepped = True
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
        result = {
            k: frozenset(v._replace(fresh=v.fresh - consumed) if not v.unknown else v for v in values)
            for k, values in state.items()
        }
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
        else:
            clear, on_path = self.clear_elsewhere(key, value), False
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

    def clear_elsewhere(self, key: str, value: Grad) -> Event | None:
        """A clear of `key` that ran on a path this one could have been: not one only an arm this
        path did not choose runs (`if args.amp:` clears, the plain arm never does)."""
        for clear, paths in self.clears.get(key, {}).items():
            if any(not any((k, not truth) in value.assumed for k, truth in path) for path in paths):
                return clear
        return None

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
        if event.target == "optimizer":
            # cleared as an optimizer: one, even with no step left (a factory's, a parameter, `self.opt`)
            cleared = self.resolve(event.path, frame)
            if cleared is not None:
                self.optimizers.add(cleared)
        if event.target in ("optimizer", "maybe_optimizer") and frame.gated:
            return state
        keys = self.grad_keys(event, state, frame)
        if event.target == "module":
            owner = self.resolve(event.path, frame)
            if owner in self.optimizers:
                keys = {owner}  # a parameter named `model` that holds an optimizer
        else:
            owner = None
        if MANUAL in state:
            keys.add(MANUAL)  # hand-written updates use the same parameters any clear zeroes
        result = dict(state)
        for key in keys & set(state):
            values = set()
            for value in state[key]:
                parts = value.cleared_parts | {owner} if self.holds_more_than(key, owner) else frozenset()
                if value.unknown or not parts or self.covers(key, parts):
                    values.add(self.cleared(value, event, frame))
                    self.clears.setdefault(key, {}).setdefault(event, set()).add(value.assumed)
                else:
                    values.add(self.partly_cleared(value, parts, event, frame))
            result[key] = normalize(frozenset(values))
        return result

    def holds_more_than(self, key: str, model: str | None) -> bool:
        """Whether optimizer `key` was built over `model` and other models too (`encoder` and `head`):
        then `model.zero_grad()` clears only part of what it steps."""
        sources = self.sources.get(key, ())
        return model is not None and any(related(model, s) for s in sources) and not self.covers(key, {model})

    def covers(self, key: str, models: frozenset[str] | set[str]) -> bool:
        return all(any(related(model, s) for model in models) for s in self.sources.get(key, ()))

    def partly_cleared(self, value: Grad, parts: frozenset[str], event: Event, frame: Frame) -> Grad:
        """Some of the optimizer's models cleared: the others' gradients stay, stale or not."""
        if event.on_purpose or frame.function in self.analysis.closures:
            return value._replace(cleared_parts=parts)
        return value._replace(cleared_parts=parts, discarded=self.discards(value, event, frame))

    def cleared(self, value: Grad, event: Event, frame: Frame) -> Grad:
        # A step's closure clears, then computes the gradients that step applies, whoever calls it
        # (`val_loss = closure()` for a plateau scheduler): what it clears was not meant for a step.
        if value.unknown or event.on_purpose or frame.function in self.analysis.closures:
            if event.sync_gated:
                self.gate_dropped |= value.backwards  # a use of them only if some step runs
            else:
                self.consumed |= value.backwards  # dropped on purpose is not forgotten (GL201)
            return Grad(
                clear=(event, frame.loops),
                discarded=value.discarded,
                assumed=value.assumed,
                order=value.order.cleared(),
            )
        return Grad(
            clear=(event, frame.loops),
            discarded=self.discards(value, event, frame),
            assumed=value.assumed,
            order=value.order.cleared(),
        )

    def discards(self, value: Grad, event: Event, frame: Frame) -> frozenset[tuple[Event, Event, Loop | None]]:
        """What the clear `event` throws away that no step has used, added to what was thrown before."""
        # Gradients left over by a loop that has finished (a partial accumulation window at the end of
        # an epoch) are GL302's business, not a clear in the wrong place.
        lost = {b for b in value.fresh if not self.seen.get(b) or self.seen[b][-1] in frame.loops}
        went_round = next((loop for loop in reversed(frame.loops) if loop in value.crossed), None)
        for backward in lost:
            self.discarded_by.setdefault(backward, event)
        return value.discarded | {(event, backward, went_round) for backward in lost}

    def read_gradients(self, event: Event, state: State, frame: Frame) -> State:
        """Reading an input's `.grad` (FGSM, saliency) is what that backward was for. Reading the
        parameters' gradients (logging a norm or a histogram) uses nothing: it neither applies them
        (a backward no step follows is still GL201) nor is a reason to throw them away before the step."""
        if self.reads_parameters(event, frame):
            return state
        for values in state.values():
            for value in values:
                self.consumed |= value.backwards
        return {k: frozenset(v._replace(fresh=frozenset()) for v in values) for k, values in state.items()}

    def reads_parameters(self, event: Event, frame: Frame) -> bool:
        """`p.grad` over `model.parameters()`, or `.grad` of a tensor inside a model some optimizer holds."""
        if event.target == "module":
            return True
        tensor = self.resolve(event.arguments[0], frame) if event.arguments else None
        if tensor is None:
            return False
        return any(
            tensor.startswith(source + ".") or tensor.startswith(source + "[")
            for sources in self.sources.values()
            for source in sources
        )

    def unknown(self, event: Event, state: State, frame: Frame, every: bool = False) -> State:
        """Code we cannot see receives an optimizer or a model: assume it does the right thing.

        What it can do is scoped by what it is handed and by what exists when it runs: handed an
        optimizer (or an object holding one), it may step or clear it at any time; handed only the
        model, it cannot step an optimizer, and it can only clear or use gradients that are there.
        Where no backward has put any in `.grad` since the last clear (before training, before the
        optimizer is even built: `model = wrap(model)`), there is nothing for it to have done."""
        handed: set[str] = set(state) if every else set()
        through_model: set[str] = set()
        for argument in event.arguments:
            key = self.resolve(argument, frame)
            if key is None:
                continue
            state = self.forget_scaler_steps(state, key)  # it may call the scaler's update()
            if key in state:
                handed.add(key)
            handed |= {k for k in state if k.startswith(key + ".") or k.startswith(key + "[")}
            # the model itself, or an object holding it (`self`), not one of its attributes
            if any(s == key or s.startswith(key + ".") for sources in self.sources.values() for s in sources):
                through_model |= self.fed_by(key, state)

        def forgotten(key: str, value: Grad) -> bool:
            return key in handed or value.pending > 0

        for key in handed | through_model:
            for value in state[key]:
                if forgotten(key, value):
                    self.consumed |= value.backwards
        result = dict(state)
        for key in (handed | through_model) & set(state):
            result[key] = normalize(frozenset(UNKNOWN if forgotten(key, v) else v for v in state[key]))
        return result

    # --- after the root has run -------------------------------------------------------------
    def report_unapplied(self) -> None:
        owns_optimizer = any(split_root(key)[0] not in self.root_param_names() for key in self.optimizers)
        starved = {fact.backward for fact in self.facts.discarded}  # GL103 names the cause of those
        for backward, loops in self.seen.items():
            if (
                not loops
                or backward in self.consumed
                or (self.stepped and backward in self.gate_dropped)
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
        if self.analysis.program.class_of(function) is not None:
            params.discard("self")
        return params


EXIT_SLOTS = {"break": "breaks", "continue": "continues", "return": "returns", "raise": "raises"}
SLOTS = ("normal", "breaks", "continues", "returns", "raises")


def merge(outcomes: list[Outcome]) -> Outcome:
    result = Outcome()
    for outcome in outcomes:
        result = Outcome(*(join(getattr(result, slot), getattr(outcome, slot)) for slot in SLOTS))
    return result


def first_pass(state: State | None, key: str, truth: bool | None) -> State | None:
    """Every path's knowledge of whether this is the loop's first iteration: true on entry, false
    once it has gone round, forgotten (None) when it is left."""
    if state is None:
        return None

    def known(value: Grad) -> Grad:
        if value.unknown:
            return value
        kept = frozenset(a for a in value.assumed if a[0] != key)
        return value._replace(assumed=kept if truth is None else kept | {(key, truth)})

    return {k: normalize(frozenset(known(v) for v in values)) for k, values in state.items()}


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
