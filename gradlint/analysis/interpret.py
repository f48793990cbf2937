"""Run each entry point's flow over an abstract state of every optimizer's gradients.

Per optimizer, a set of small values (a may-analysis: what any path can bring) says how many
backward passes sit in `.grad` since the last clear, whether a step has already applied them, and
where those facts came from. Loops iterate to a fixed point; calls into the module's own functions
run the callee's flow with its parameters bound to the caller's objects.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field, replace
from typing import Optional

from gradlint.analysis import names
from gradlint.analysis.build import MANUAL, FunctionBuilder, ModuleIndex, parameters
from gradlint.analysis.facts import (
    DiscardedGradients,
    Facts,
    LoopSite,
    Site,
    StaleStep,
    UnappliedBackward,
    UnscaledAccumulation,
)
from gradlint.analysis.flow import Branch, Call, Event, Exit, Flow, Gate, Loop, Register, Seq, Try
from gradlint.core import EventKind

MANY = 2
MAX_VALUES = 48  # per optimizer; past this the state is widened to "unknown" (silence, not a guess)
MAX_PASSES = 12
MAX_CALL_DEPTH = 8


@dataclass(frozen=True)
class Grad:
    """What one path knows about one optimizer's gradients."""

    unknown: bool = False
    pending: int = 0  # backward passes in .grad since the last clear: 0, 1, MANY
    applied: bool = False  # a step already used what is in .grad
    backwards: frozenset[Event] = frozenset()
    fresh: frozenset[Event] = frozenset()  # backwards no step (of any optimizer) has used yet
    clear: Optional[tuple[Event, tuple[Loop, ...]]] = None
    step: Optional[tuple[Event, tuple[Loop, ...]]] = None
    repeat_loop: Optional[Loop] = None  # the loop whose repetition summed backwards of one line
    crossed: frozenset[Loop] = frozenset()  # loops that went round since the last backward
    discarded: frozenset[tuple[Event, Event]] = frozenset()  # (clear, backward) waiting for a step
    grads_scaled: bool = False


UNKNOWN = Grad(unknown=True)
State = dict  # optimizer key -> frozenset[Grad]


@dataclass(frozen=True)
class Outcome:
    normal: Optional[State] = None
    breaks: Optional[State] = None
    continues: Optional[State] = None
    returns: Optional[State] = None


@dataclass(frozen=True)
class Frame:
    """One activation of a function: how its names map to the caller's objects."""

    function: ast.AST | None
    bindings: dict
    locals: frozenset[str]
    prefix: str
    loops: tuple[Loop, ...] = ()
    stack: tuple[ast.AST, ...] = ()
    parent: Optional[Frame] = None
    gated: bool = False
    root_params: frozenset[str] = frozenset()


def join(a: Optional[State], b: Optional[State]) -> Optional[State]:
    if a is None:
        return b
    if b is None:
        return a
    return {key: a.get(key, frozenset()) | b.get(key, frozenset()) for key in a.keys() | b.keys()}


def widen(state: State) -> State:
    return {key: values if len(values) <= MAX_VALUES else frozenset({UNKNOWN}) for key, values in state.items()}


def analyse(tree: ast.Module, lines: list[str]) -> Facts:
    return ModuleAnalysis(tree, list(lines)).run()


class ModuleAnalysis:
    def __init__(self, tree: ast.Module, lines: list[str]) -> None:
        self.index = ModuleIndex.of(tree)
        self.lines = lines
        self.flows: dict[ast.AST | None, Flow] = {}
        self.builders: dict[ast.AST | None, FunctionBuilder] = {}
        self.facts = Facts()

    def flow_of(self, function: ast.AST | None) -> Flow:
        if function not in self.flows:
            builder = FunctionBuilder(self.index, self.lines, function)
            self.builders[function] = builder
            self.flows[function] = builder.build()
        return self.flows[function]

    def run(self) -> Facts:
        functions = list(self.index.all_functions())
        for function in [None, *functions]:
            self.flow_of(function)
        called = {callee for function, builder in self.builders.items() for callee in builder.callees
                  if callee is not function}
        for function in [None, *functions]:
            if function is None or function not in called:
                RootInterpreter(self, function).run()
        return self.facts


class RootInterpreter:
    """Interprets one entry point (the module body, or a function nobody in the module calls)."""

    def __init__(self, analysis: ModuleAnalysis, function: ast.AST | None) -> None:
        self.analysis = analysis
        self.function = function
        self.optimizers: set[str] = set()
        self.lbfgs: set[str] = set()
        self.engines: set[str] = set()
        self.sources: dict[str, set[str]] = {}
        self.clears: dict[str, Event] = {}
        self.closure_steps: dict[Event, Loop] = {}
        self.record = False
        self.reset()

    def reset(self) -> None:
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

    def interpret_root(self) -> None:
        function = self.function
        params = frozenset(parameters(function)) if function is not None else frozenset()
        builder = self.analysis.builders[function]
        frame = Frame(function, {}, frozenset(builder.locals), "", stack=(function,), root_params=params)
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
    def interpret(self, flow: Flow, state: Optional[State], frame: Frame) -> Outcome:
        if state is None:
            return Outcome()
        if isinstance(flow, Seq):
            return self.sequence(flow.items, state, frame)
        if isinstance(flow, Event):
            return Outcome(normal=self.event(flow, state, frame))
        if isinstance(flow, Branch):
            outcomes = [self.interpret(arm, state, frame) for arm in flow.arms]
            return merge(outcomes)
        if isinstance(flow, Loop):
            return self.loop(flow, state, frame)
        if isinstance(flow, Exit):
            slot = EXIT_SLOTS.get(flow.kind)  # a raise leaves the analysed code: no state flows on
            return Outcome(**{slot: state}) if slot else Outcome()
        if isinstance(flow, Try):
            return self.try_block(flow, state, frame)
        if isinstance(flow, Call):
            return Outcome(normal=self.call(flow, state, frame))
        if isinstance(flow, Gate):
            return self.interpret(flow.body, state, replace(frame, gated=True))
        if isinstance(flow, Register):
            return Outcome(normal=self.register(flow, state, frame))
        raise TypeError(f"unknown flow node {flow!r}")

    def sequence(self, items: list[Flow], state: State, frame: Frame) -> Outcome:
        exits: list[Outcome] = []
        current: Optional[State] = state
        for item in items:
            outcome = self.interpret(item, current, frame)
            exits.append(replace(outcome, normal=None))
            current = outcome.normal
            if current is None:
                break
        return replace(merge(exits), normal=current)

    def loop(self, loop: Loop, state: State, frame: Frame) -> Outcome:
        inner = replace(frame, loops=frame.loops + (loop,))
        head = state
        after: Optional[State] = None
        breaks = returns = None
        for _ in range(MAX_PASSES):
            outcome = self.interpret(loop.body, head, inner)
            breaks, returns = join(breaks, outcome.breaks), join(returns, outcome.returns)
            back = cross(join(outcome.normal, outcome.continues), loop)
            after = join(after, back)
            new_head = widen(join(head, back) or head)
            if new_head == head:
                break
            head = new_head
        else:
            head = {key: frozenset({UNKNOWN}) for key in head}
        if loop.kind == "for":
            normal = join(head, breaks)
        elif loop.kind == "forever":
            normal = breaks
        else:
            normal = join(after, breaks)
        return Outcome(normal=normal, returns=returns)

    def try_block(self, block: Try, state: State, frame: Frame) -> Outcome:
        prefixes: Optional[State] = state
        exits: list[Outcome] = []
        current: Optional[State] = state
        for item in block.body:
            outcome = self.interpret(item, current, frame)
            exits.append(replace(outcome, normal=None))
            current = outcome.normal
            prefixes = join(prefixes, current)
            if current is None:
                break
        results = [self.interpret(block.orelse, current, frame)] if current is not None else []
        results += [self.interpret(handler, prefixes, frame) for handler in block.handlers]
        combined = merge(exits + results)
        if not block.final.items:
            return combined
        final_normal = self.interpret(block.final, combined.normal, frame)
        others = {
            name: self.interpret(block.final, getattr(combined, name), frame).normal
            for name in ("breaks", "continues", "returns")
        }
        return Outcome(normal=final_normal.normal, **others)

    def call(self, call: Call, state: State, frame: Frame) -> State:
        function = call.function
        if function in frame.stack or len(frame.stack) > MAX_CALL_DEPTH:
            return state
        flow = self.analysis.flow_of(function)
        builder = self.analysis.builders[function]
        bindings = {param: self.resolve(path, frame) for param, path in call.bindings.items()}
        callee = Frame(
            function,
            bindings,
            frozenset(builder.locals) - set(bindings),
            f"{getattr(function, 'name', '?')}@{function.lineno}:",
            frame.loops,
            frame.stack + (function,),
            frame,
            frame.gated,
            frame.root_params,
        )
        outcome = self.interpret(flow, state, callee)
        return join(outcome.normal, outcome.returns)

    def register(self, register: Register, state: State, frame: Frame) -> State:
        key = self.resolve(register.path, frame)
        if key is None:
            return state
        self.optimizers.add(key)
        if register.lbfgs:
            self.lbfgs.add(key)
        sources = {self.resolve(source, frame) for source in register.sources} - {None}
        self.sources[key] = sources
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
            return self.consume_all(state)
        if kind is EventKind.SCALE:
            return self.update(state, self.grad_keys(event, state, frame),
                               lambda v: v if v.unknown else replace(v, grads_scaled=True))
        if kind is EventKind.GRAD_WRITE:
            keys = self.grad_keys(event, state, frame)
            return self.update(state, keys, lambda v: Grad(pending=1))
        if kind is EventKind.UNKNOWN:
            return self.unknown(event, state, frame)
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
            result[key] = frozenset(change(v) for v in state[key])
        return result

    def backward(self, event: Event, state: State, frame: Frame) -> State:
        if event.target == "engine":
            key = self.resolve(event.path, frame)
            if key is not None:
                self.engines.add(key)
            keys = {key} if key in state else set()
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
        return replace(
            value,
            pending=min(value.pending + 1, MANY),
            backwards=value.backwards | {event},
            fresh=value.fresh | {event},
            repeat_loop=repeat_loop,
            crossed=frozenset(),
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
            body = Seq([event.closure, replace(event, closure=None)])
            header = f"{event.site.text} (LBFGS evaluates the closure repeatedly)"
            self.closure_steps[event] = Loop(body, LoopSite(event.site.location, header, ""), "repeat")
        loop = self.closure_steps[event]
        if key not in self.lbfgs:
            return self.interpret(loop.body, state, frame).normal or state
        return self.loop(loop, state, frame).normal or state

    def apply_step(self, event: Event, key: str, state: State, frame: Frame) -> State:
        display = event.path or "parameters"
        for value in state[key]:
            if value.unknown:
                continue
            if value.applied:
                self.stale(event, display, key, value, frame)
            elif value.pending == MANY and value.repeat_loop is not None and not value.grads_scaled:
                self.unscaled(event, display, value, frame)
            for clear, backward in value.discarded:
                self.facts.discarded.add(DiscardedGradients(display, clear.site, backward.site, event.site))
        consumed = frozenset().union(*(v.backwards for v in state[key]))
        self.consumed |= consumed
        result = {k: frozenset(replace(v, fresh=v.fresh - consumed) if not v.unknown else v for v in values)
                  for k, values in state.items()}
        result[key] = frozenset(
            v if v.unknown else replace(v, applied=True, step=(event, frame.loops), discarded=frozenset(), fresh=frozenset())
            for v in state[key]
        )
        return result

    def stale(self, event: Event, display: str, key: str, value: Grad, frame: Frame) -> None:
        clear, clear_loops, on_path = None, (), True
        if value.clear is not None:
            clear, clear_loops = value.clear
        elif key in self.clears:
            clear, on_path = self.clears[key], False
        self.facts.stale_steps.add(StaleStep(
            display,
            event.site,
            tuple(loop.site for loop in frame.loops),
            tuple(sorted((b.site for b in value.backwards), key=lambda s: s.location)),
            clear.site if clear else None,
            tuple(loop.site for loop in clear_loops),
            on_path,
        ))

    def unscaled(self, event: Event, display: str, value: Grad, frame: Frame) -> None:
        loop = value.repeat_loop
        guard = event.guard
        if not (loop.draws_data or loop.count or is_accumulation_guard(guard)):
            return
        count = modulo_divisor(guard) or loop.count or (f"len({loop.iterable})" if loop.iterable else "")
        for backward in value.backwards:
            if backward.scaled or backward.retain_graph or not computes_loss_in(backward, loop):
                continue
            self.facts.unscaled.add(UnscaledAccumulation(display, backward.site, event.site, loop.site, count))

    def clear(self, event: Event, state: State, frame: Frame) -> State:
        if event.target in ("optimizer", "maybe_optimizer") and frame.gated:
            return state
        keys = self.grad_keys(event, state, frame)
        if event.target == "module" and self.resolve(event.path, frame) in self.optimizers:
            keys = {self.resolve(event.path, frame)}  # a parameter named `model` that holds an optimizer
        for key in keys:
            self.clears.setdefault(key, event)
        return self.update(state, keys, lambda v: self.cleared(v, event, frame))

    def cleared(self, value: Grad, event: Event, frame: Frame) -> Grad:
        if value.unknown:
            return Grad(clear=(event, frame.loops))
        discarded = value.discarded | {(event, backward) for backward in value.fresh}
        for backward in value.fresh:
            self.discarded_by.setdefault(backward, event)
        return Grad(clear=(event, frame.loops), discarded=discarded)

    def consume_all(self, state: State) -> State:
        for values in state.values():
            for value in values:
                self.consumed |= value.backwards
        return {k: frozenset(replace(v, fresh=frozenset()) for v in values) for k, values in state.items()}

    def unknown(self, event: Event, state: State, frame: Frame, every: bool = False) -> State:
        """Code we cannot see receives an optimizer or a model: assume it does the right thing."""
        keys: set[str] = set(state) if every else set()
        for argument in event.arguments:
            key = self.resolve(argument, frame)
            if key is None:
                continue
            if key in state:
                keys.add(key)
            keys |= {k for k in state if k.startswith(key + ".") or k.startswith(key + "[")}
            if any(key in sources or any(related(key, s) for s in sources) for sources in self.sources.values()):
                keys |= self.fed_by(key, state)
        for key in keys:
            for value in state[key]:
                self.consumed |= value.backwards
        return self.update(state, keys, lambda v: UNKNOWN)

    # --- after the root has run -------------------------------------------------------------
    def report_unapplied(self) -> None:
        owns_optimizer = any(split_root(key)[0] not in self.root_param_names() for key in self.optimizers)
        for backward, loops in self.seen.items():
            if not loops or backward in self.consumed or backward.target == "engine":
                continue
            cleared_by = self.discarded_by.get(backward)
            if cleared_by is None and not owns_optimizer:
                continue  # a caller we cannot see may step these gradients
            self.facts.unapplied.add(UnappliedBackward(
                backward.site, loops[-1].site, cleared_by.site if cleared_by else None
            ))

    def root_param_names(self) -> set[str]:
        function = self.function
        if function is None:
            return set()
        params = set(parameters(function))
        if self.analysis.index.class_of(function) is not None:
            params.discard("self")
        return params


EXIT_SLOTS = {"break": "breaks", "continue": "continues", "return": "returns"}


def merge(outcomes: list[Outcome]) -> Outcome:
    result = Outcome()
    for outcome in outcomes:
        result = Outcome(
            join(result.normal, outcome.normal),
            join(result.breaks, outcome.breaks),
            join(result.continues, outcome.continues),
            join(result.returns, outcome.returns),
        )
    return result


def cross(state: Optional[State], loop: Loop) -> Optional[State]:
    if state is None:
        return None
    return {k: frozenset(v if v.unknown else replace(v, crossed=v.crossed | {loop}) for v in values)
            for k, values in state.items()}


def split_root(path: str) -> tuple[str, str]:
    for index, char in enumerate(path):
        if char in ".[":
            return path[:index], path[index:]
    return path, ""


def related(model: str, source: str) -> bool:
    return model == source or source.startswith(model + ".") or model.startswith(source + ".")


def is_accumulation_guard(guard: ast.expr | None) -> bool:
    if guard is None:
        return False
    has_modulo = any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mod) for n in ast.walk(guard))
    return has_modulo or names.has_word(guard, names.ACCUMULATION_WORDS)


def modulo_divisor(guard: ast.expr | None) -> str | None:
    if guard is None:
        return None
    for node in ast.walk(guard):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            return names.segment([], node.right)
    return None


def computes_loss_in(backward: Event, loop: Loop) -> bool:
    """The loss comes from a forward pass inside the repetition, not from one graph reused."""
    if backward.forward_inline:
        return True
    if backward.loss_is_param or not backward.loss_assigned:
        return False
    if loop in backward.loops:
        return loop in backward.loss_loops
    return True  # the loop is in a caller: the function computing the loss runs on every repetition
