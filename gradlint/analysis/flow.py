"""Flow nodes: a function body reduced to its gradient events and the control flow around them.

A 300-line training script becomes a handful of nodes; the interpreter never looks at the
source again. Nodes compare by identity: the same `Event` reached twice is the same event.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Union

from gradlint.analysis.facts import LoopSite, Site
from gradlint.core import EventKind


@dataclass(eq=False)
class Event:
    kind: EventKind
    site: Site
    path: str | None = None  # the optimizer, model or engine the event is about; None: all
    target: str = "all"  # optimizer | maybe_optimizer | module | engine | manual | all
    # BACKWARD
    scaled: bool = False
    retain_graph: bool = False
    loss_name: str | None = None
    forward_inline: bool = False  # `model(x).loss.backward()`: the forward pass is in the same expression
    loss_is_param: bool = False
    loss_loops: frozenset[Loop] = frozenset()  # static loops around the loss's assignments
    loss_assigned: bool = False
    scaled_here: bool = False  # a loss the function was handed (loss_is_param): scaled in the function itself
    loops: tuple[Loop, ...] = ()  # static loops around the event in its function
    # the framework divides by the accumulation count and so does the loss: (its division, the
    # framework's setting, the divisor as written)
    scaled_twice: tuple[Site, Site, str] | None = None
    # STEP
    guard: ast.expr | None = None  # the innermost `if` test around the event
    closure: Flow | None = None  # `optimizer.step(closure)`: the closure's flow runs inside the step
    # UNKNOWN
    arguments: tuple[str, ...] = ()
    has_arguments: bool = False
    # CLEAR that throws gradients away on purpose: it skips the step (`zero_grad(); continue` on a
    # NaN loss), or accelerate gates it (the prepared optimizer's zero_grad between sync steps)
    on_purpose: bool = False
    # ... because accelerate gates it: between sync steps it does nothing, and after one it clears what
    # the step applied; either way it is no use of the gradients (with no step, GL201 still holds)
    sync_gated: bool = False
    # The GradScaler involved: `scaler.scale(loss).backward()`, `scaler.step(o)`, `scaler.unscale_(o)`,
    # `scaler.update()`; None for everything else
    scaler: str | None = None
    # CLIP through an API that unscales first (`accelerator.clip_grad_norm_`)
    unscales: bool = False


@dataclass(eq=False)
class Seq:
    items: list[Flow] = field(default_factory=list)


@dataclass(eq=False)
class Branch:
    arms: list[Flow]
    # `if need_update:` -> (("need_update", True), ("need_update", False)): what each arm knows, so
    # a later `if not need_update: continue` only lets through the paths that agree
    assumes: tuple[tuple[tuple[str, bool], ...], ...] = ()


@dataclass(eq=False)
class Forget:
    """A name tested by some `if` is assigned again: what paths assumed about it no longer holds."""

    paths: tuple[str, ...]


@dataclass(eq=False)
class Loop:
    body: Flow
    site: LoopSite
    kind: str = "for"  # for: 0..n times | forever: `while True`, exits by break | repeat: 1..n times
    draws_data: bool = False
    count: str | None = None  # the bound when it names an accumulation count: `range(accum_steps)`
    iterable: str = ""
    # micro-batches are meant to add up across its iterations: it holds accelerate's accumulate(),
    # or a step under a counter (`if (i + 1) % n == 0:`)
    accumulates: bool = False
    # each iteration's loss takes in the other iterations' cached outputs (`xs[:j] + [x] + xs[j + 1:]`)
    whole_window: bool = False
    # the loop's counter (`i` of `enumerate(...)`, `range(n)`): an `if i == 0:` in its body is true
    # on the first iteration only, which paths remember under this key
    first: str | None = None


@dataclass(eq=False)
class Exit:
    kind: str  # break | continue | return | raise


@dataclass(eq=False)
class Try:
    body: list[Flow]
    handlers: list[Flow]
    orelse: Flow
    final: Flow


@dataclass(eq=False)
class Call:
    """A call to a function of the same module: its flow runs here with arguments bound."""

    function: ast.FunctionDef | ast.AsyncFunctionDef
    bindings: dict[str, str | None]
    site: Site
    guarded: bool = False  # under an `if` inside the caller's innermost loop
    # parameter -> the caller's expression for it: a loss handed to a helper that calls backward
    # was scaled (or not) and computed where the caller wrote it
    arguments: dict[str, ast.expr] = field(default_factory=dict)


@dataclass(eq=False)
class NoGrad:
    """`with torch.no_grad():`: no graph is recorded, so no backward pass can run in it (a validation
    pass through the training helper, `if loss.requires_grad: loss.backward()`)."""

    body: Flow


@dataclass(eq=False)
class Instance:
    """An object of a project class is built here (`loss_scaler = NativeScaler()`): a method called on
    it later, in this function or in one it is handed to, is that class's."""

    path: str
    cls: object  # program.ClassRef


@dataclass(eq=False)
class Dispatch:
    """A method called on an object whose class the caller decides (`self.run_step()` in a base class,
    `loss_scaler(loss, optimizer)` on a parameter): resolved when interpreted, from the class the
    object was built from; `static` is the method the builder could see (the class's own), `fallback`
    what the call is when the class is not known."""

    receiver: str
    method: str  # `__call__` for a call of the object itself
    node: ast.Call
    site: Site
    static: Call | None
    fallback: list[Flow]
    guarded: bool = False


@dataclass(eq=False)
class Gate:
    """The micro-batches of `accelerator.accumulate(...)` that do not sync: the prepared optimizer's
    step() and zero_grad() do nothing there, while everything else (model.zero_grad()) still runs."""

    body: Flow


@dataclass(eq=False)
class Register:
    """An optimizer is built here, from the parameters of `sources` (empty: cannot be told);
    or, with `drives`, a learning-rate scheduler of that optimizer."""

    path: str
    sources: tuple[str, ...]
    lbfgs: bool = False
    drives: str | None = None  # a learning-rate scheduler built here, for this optimizer (not one itself)
    fresh_parameters: bool = False  # replayed at the top of an iteration that makes its tensors anew


Flow = Union[Event, Seq, Branch, Loop, Exit, Try, Call, Gate, Register, Forget, Instance, Dispatch, NoGrad]


def parts(flow: Flow) -> list[Flow]:
    """The flows directly inside a node (a step's closure included)."""
    if isinstance(flow, Seq):
        return flow.items
    if isinstance(flow, Branch):
        return flow.arms
    if isinstance(flow, (Loop, Gate, NoGrad)):
        return [flow.body]
    if isinstance(flow, Try):
        return [*flow.body, *flow.handlers, flow.orelse, flow.final]
    if isinstance(flow, Event) and flow.closure is not None:
        return [flow.closure]
    if isinstance(flow, Dispatch):
        return [*([flow.static] if flow.static is not None else []), *flow.fallback]
    return []


def walk(flow: Flow) -> Iterator[Flow]:
    """Every node of a flow, not entering calls; each node before the nodes inside it.

    A stack, not recursion: nested generators cost their depth on every node they pass on."""
    pending = [flow]
    while pending:
        node = pending.pop()
        yield node
        pending.extend(reversed(parts(node)))


def walk_events(flow: Flow) -> Iterator[Event]:
    return (node for node in walk(flow) if isinstance(node, Event))


def walk_effects(flow: Flow) -> Iterator[Flow]:
    """Events, calls and registrations in a flow (what a loop must be iterated for)."""
    return (node for node in walk(flow) if isinstance(node, (Event, Call, Register, Dispatch)))


def prune(flow: Flow) -> Flow | None:
    """Drop what cannot change a gradient state: loops and branches with no event, call or exit.

    Most of a training script is data loading and logging; without this, every one of those loops
    would be iterated to a fixed point for nothing."""
    if isinstance(flow, Seq):
        items = [kept for item in flow.items if (kept := prune(item)) is not None]
        return Seq(items) if items else None
    if isinstance(flow, Branch):
        arms = [prune(arm) or Seq() for arm in flow.arms]
        if not any(not isinstance(arm, Seq) or arm.items for arm in arms):
            return None
        return Branch(arms, flow.assumes)
    if isinstance(flow, Loop):
        body = prune(flow.body)
        if body is None:
            return None
        if not any(True for _ in walk_effects(body)):
            forgets: list[Flow] = [node for node in walk(body) if isinstance(node, Forget)]
            return Seq(forgets) if forgets else None
        flow.body = body
        return flow
    if isinstance(flow, Try):
        parts = [prune(part) or Seq() for part in (*flow.body, *flow.handlers, flow.orelse, flow.final)]
        if not any(isinstance(p, Seq) and p.items for p in parts):
            return None
        count = len(flow.body)
        return Try(parts[:count], parts[count:-2], parts[-2], parts[-1])
    if isinstance(flow, (Gate, NoGrad)):
        body = prune(flow.body)
        return type(flow)(body) if body is not None else None
    return flow
