"""Watch gradient events as a program runs: which backward passes sit in each parameter's `.grad`.

`Tracer` patches the few torch entry points that have no hook (`torch.autograd.backward`, the
`zero_grad`s, GradScaler) and registers the global optimizer step hooks; for every parameter of
every optimizer it keeps a ledger of the backward passes summed in its `.grad`. A step then knows
exactly which backward passes it applies and which an earlier step of the same optimizer already
applied; a clear knows which it throws away unused. Everything is undone on exit, whatever ends
the block. Facts this relies on: /shared/spec/RUNTIME.md.
"""

from __future__ import annotations

import gc
import itertools
import os
import sys
import warnings
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import torch

import gradlint

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_GRADLINT_DIR = os.path.dirname(gradlint.__file__) + os.sep
_STDLIB_DIR = os.path.dirname(os.__file__) + os.sep
MAX_STACK = 32
MANUAL = 0  # the optimizer serial of manual updates (`p -= lr * p.grad`, no optimizer object)
MAX_GRAPH_NODES = 10_000
MAX_GRAPH_TAGS = 64  # per backward line: enough to see graphs pile up, bounded when they do


@dataclass(frozen=True)
class Site:
    """A line of the user's code on the stack when an event happened."""

    path: str
    line: int


@dataclass
class BackwardRecord:
    id: int
    index: int  # position among all events, for ordering
    sites: tuple[Site, ...]  # innermost user frame first
    scale: float  # product of the constant divisions/multiplications on the loss (AMP's scale left out)
    forward: int  # backward passes through one forward pass (retain_graph) share this number
    retain_graph: bool
    in_step_of: int | None = None  # the optimizer whose closure step ran it
    amp: bool = False  # the loss went through `scaler.scale(...)` of an enabled GradScaler


@dataclass
class StepRecord:
    index: int
    optimizer: int
    sites: tuple[Site, ...]
    applied: frozenset[int]  # backward passes whose gradients it used (a closure's included)
    summed: frozenset[int]  # backward passes summed in .grad when it applied it
    stale: frozenset[int]  # of those, the ones an earlier step of this optimizer already applied
    params: int
    params_without_grad: int
    grads_modified: bool  # gradients changed in place since backward (p.grad.div_(n), hooks)
    closure: bool
    # outside scaler.step(), on gradients that all came from AMP-scaled losses a scaler has not unscaled
    amp_scaled: bool = False


@dataclass
class ClearRecord:
    index: int
    sites: tuple[Site, ...]  # empty when noticed afterwards (p.grad = None, p.grad.zero_())
    how: str
    optimizers: frozenset[int]  # whose parameters it cleared
    cleared: frozenset[int]  # backward passes in the cleared gradients that no step had applied yet
    nonfinite: bool = False  # some of those gradients held inf/NaN: discarding them is deliberate


@dataclass
class ScalerRecord:
    index: int
    sites: tuple[Site, ...]
    action: str  # "skipped step" (inf/NaN), "update"
    optimizer: int | None


@dataclass
class SchedulerRecord:
    index: int
    sites: tuple[Site, ...]
    scheduler: str  # class name
    optimizer: int | None  # the serial of the optimizer it drives, when the tracer knows it
    initial: bool  # the constructor's own step (`_is_initial`, or called inside `__init__`)


@dataclass
class ClipRecord:
    index: int
    sites: tuple[Site, ...]
    kind: str  # "norm" or "value"
    scaled_by_amp: bool | None  # the gradients still held GradScaler's scale; None: cannot tell
    applied: bool | None = None  # a step had already used every backward pass in them; None: cannot tell


@dataclass
class AmpRecord:
    """A GradScaler call that orders the others: `step(o)` must be followed by `update()`."""

    index: int
    sites: tuple[Site, ...]
    scaler: int  # serial of the scaler object
    action: str  # "step" or "update"
    optimizer: int | None


@dataclass
class KeptGraphsRecord:
    """Graphs of earlier backward passes of one line still alive when that line ran again."""

    sites: tuple[Site, ...]
    alive: int  # the most earlier graphs of this line alive at one of its backward passes
    backwards: int  # backward passes of this line so far


@dataclass
class EvalModeRecord:
    """A backward pass reached parameters whose module ran its forward in eval mode, after earlier
    passes had trained it in train mode."""

    backward: int
    module: str  # class name
    mode_sites: tuple[Site, ...]  # where `.eval()` / `.train(False)` put it in eval mode


@dataclass(frozen=True)
class UnsteppedParameter:
    """A parameter that backward passes gave gradients, and that no optimizer which stepped holds
    (nor did a manual update change it)."""

    name: str  # as the modules that ran it call it: `model.2.weight`
    backwards: int  # backward passes that reached it
    first_backward: int  # ids of the first and last of them
    last_backward: int
    held_by: tuple[int, ...]  # optimizers that hold it but never stepped
    is_parameter: bool  # an nn.Parameter, not a bare leaf tensor


class _GraphTag:
    """Stored in a graph's root node metadata: it dies when the graph is freed (nodes have no weakref)."""


@dataclass
class Trace:
    backwards: dict[int, BackwardRecord] = field(default_factory=dict)
    steps: list[StepRecord] = field(default_factory=list)
    clears: list[ClearRecord] = field(default_factory=list)
    scaler_events: list[ScalerRecord] = field(default_factory=list)
    scheduler_steps: list[SchedulerRecord] = field(default_factory=list)
    clips: list[ClipRecord] = field(default_factory=list)
    amp_calls: list[AmpRecord] = field(default_factory=list)
    optimizers: dict[int, str] = field(default_factory=dict)  # serial -> class name
    applied_by: dict[int, set[int]] = field(default_factory=dict)  # backward id -> optimizers
    touched: set[int] = field(default_factory=set)  # backward passes that reached an optimizer's params
    touched_manual: set[int] = field(default_factory=set)  # ... or only manually updated leaves
    devices: set[str] = field(default_factory=set)  # device types of the parameters followed
    kept_graphs: dict[tuple[Site, ...], KeptGraphsRecord] = field(default_factory=dict)  # by backward line
    eval_mode_backwards: dict[int, EvalModeRecord] = field(default_factory=dict)  # by backward id
    train_mode_backwards: int = 0  # backward passes that trained a module in train mode
    # backward id -> whether the DistributedDataParallel forward before it had gradient sync on
    ddp_synced: dict[int, bool] = field(default_factory=dict)
    optimizer_sites: dict[int, tuple[Site, ...]] = field(default_factory=dict)  # serial -> where it was built
    # read when the run ends: parameters that got gradients and that no stepping optimizer holds,
    # and per optimizer, how many of its parameters require gradients and how many ever got one
    unstepped: list[UnsteppedParameter] = field(default_factory=list)
    optimizer_parameters: dict[int, tuple[int, int]] = field(default_factory=dict)

    def steps_of(self, optimizer: int) -> list[StepRecord]:
        return [step for step in self.steps if step.optimizer == optimizer]


@dataclass(eq=False)
class _ParamState:
    param: torch.Tensor
    owners: set[int]
    ids: set[int] = field(default_factory=set)  # backward passes summed in .grad
    grad_id: int | None = None  # which .grad tensor, and its version, when we last looked
    version: int = -1
    modified: bool = False
    param_version: int = 0  # for manual updates: `p -= lr * p.grad` bumps it
    forward_module: Any = None  # the module that owns it, and its mode, at its last forward pass
    forward_training: bool | None = None
    trained_in_train_mode: bool = False
    received: int = 0  # backward passes that reached it, and the first and last of them
    first_backward: int = 0
    last_backward: int = 0
    manually_updated: bool = False

    def remember_grad(self) -> None:
        grad = self.param.grad
        self.grad_id = None if grad is None else id(grad)
        self.version = -1 if grad is None else grad._version


_disable: Callable[[Callable[..., Any]], Callable[..., Any]] = getattr(
    getattr(torch, "compiler", None), "disable", lambda fn: fn
)


def user_sites(frame: FrameType | None) -> tuple[Site, ...]:
    """The user's frames, innermost first: not torch, not gradlint, not the standard library."""
    sites: list[Site] = []
    while frame is not None and len(sites) < MAX_STACK:
        path = frame.f_code.co_filename
        if not (
            path.startswith((_TORCH_DIR, _GRADLINT_DIR, "<frozen"))
            or (path.startswith(_STDLIB_DIR) and "-packages" not in path)
        ):
            sites.append(Site(path, frame.f_lineno))
        frame = frame.f_back
    return tuple(sites)


def carries_amp_scale(tensor: Any, amp_scales: set[int]) -> bool:
    """Whether the loss's root chain multiplies by a GradScaler's own scale tensor."""
    node: Any = getattr(tensor, "grad_fn", None)
    for _ in range(16):
        if node is None or type(node).__name__ not in ("DivBackward0", "MulBackward0"):
            return False
        other = getattr(node, "_saved_other", None)
        if isinstance(other, torch.Tensor) and other.numel() == 1 and other.data_ptr() in amp_scales:
            return True
        node = node.next_functions[0][0] if node.next_functions else None
    return False


def loss_scale(tensor: Any, amp_scales: set[int]) -> float:
    """The constant the loss was divided or multiplied by, read from its graph's root chain.

    `loss / 4` is a DivBackward0 saving 4; `loss * 0.25` a MulBackward0 saving 0.25; AMP's
    `scaler.scale(loss)` a MulBackward0 whose saved tensor is the scaler's own (left out)."""
    factor = 1.0
    node: Any = getattr(tensor, "grad_fn", None)
    for _ in range(16):
        name = type(node).__name__
        if node is None or name not in ("DivBackward0", "MulBackward0"):
            break
        other = getattr(node, "_saved_other", None)
        inputs = node.next_functions
        if len(inputs) > 1 and inputs[1][0] is not None:
            break  # the divisor is computed by the graph too: not a constant scale
        if isinstance(other, torch.Tensor):
            if other.numel() != 1:
                break
            if other.data_ptr() not in amp_scales:
                value = float(other)
                factor = factor / value if name == "DivBackward0" else factor * value
        elif isinstance(other, (int, float)):
            factor = factor / other if name == "DivBackward0" else factor * other
        else:
            break
        node = inputs[0][0]
    return factor


class Tracer:
    """`with Tracer() as tracer: train()`; then `tracer.trace` holds what happened.

    `on_step(record)` runs after each optimizer step; an exception it raises stops the program
    there (the runner uses this for --max-steps)."""

    def __init__(self, on_step: Callable[[StepRecord], None] | None = None) -> None:
        self.trace = Trace()
        self.on_step = on_step
        self._undo: list[Callable[[], None]] = []
        self._clock = itertools.count()
        self._backward_ids = itertools.count(1)
        self._forward_ids = itertools.count(1)
        self._optimizers: dict[int, tuple[int, Any]] = {}  # id(opt) -> (serial, opt)
        self._params: dict[int, _ParamState] = {}  # id(param) -> state
        self._states_by_opt: dict[int, list[_ParamState]] = {}
        self._param_count: dict[int, int] = {}
        self._applied_by_opt: dict[int, set[int]] = {}
        self._current_backward: int | None = None
        self._implicit_backward: int | None = None
        self._last_retained_forward: int | None = None
        self._open_steps: list[tuple[int, bool, tuple[Site, ...], int]] = []
        self._amp_scales: set[int] = set()
        self._scalers: dict[int, Any] = {}  # id(scaler) -> scaler, those that scaled a loss
        self._scaler_serials: dict[int, tuple[int, Any]] = {}  # id(scaler) -> (serial, scaler)
        self._in_scaler_step = 0
        self._scheduler_depth = 0  # inside a scheduler step: nested steps are part of it
        self._clearing = 0
        self._walked_sites: set[Site | None] = set()
        self._graph_tags: dict[tuple[Site, ...], list[weakref.ref[_GraphTag]]] = {}
        # id(module) -> where eval mode was set, and the class of the module it was set on
        self._mode_sites: dict[int, tuple[tuple[Site, ...], str]] = {}
        self._mode_depth = 0
        self._last_train_mode_backward: int | None = None
        self._ddp_sync: bool | None = None  # the last DDP forward's require_backward_grad_sync
        self._ddp_class = getattr(torch.nn.parallel, "DistributedDataParallel", None)
        # modules seen running a forward pass, and what the user's code called those it called
        self._seen_modules: dict[int, weakref.ref[Any]] = {}
        # held, not weakly: a model local to main() is gone by the time the run is reported
        self._module_names: list[tuple[Any, str]] = []
        self._pending: dict[int, torch.Tensor] = {}  # parameters followed from their first gradient
        self.active = False

    # -- entering and leaving ------------------------------------------------------------------

    def __enter__(self) -> Tracer:
        try:
            self._install()
        except BaseException:
            self._uninstall()
            raise
        self.active = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.active:  # the last manual update has no later event to reveal it
                self._notice_unseen_changes(self._params.values())
                self._read_parameters_outside()
        finally:
            self._uninstall()

    def _install(self) -> None:
        from torch.optim import optimizer as optimizer_module

        pre = optimizer_module.register_optimizer_step_pre_hook(_disable(self._step_pre_hook))
        self._undo.append(pre.remove)
        post = optimizer_module.register_optimizer_step_post_hook(_disable(self._step_post_hook))
        self._undo.append(post.remove)
        self._patch(torch.autograd, "backward", self._wrap_backward)
        self._patch(torch.optim.Optimizer, "__init__", self._wrap_optimizer_init)
        self._patch(torch.optim.Optimizer, "zero_grad", self._wrap_optimizer_zero_grad)
        self._patch(torch.nn.Module, "zero_grad", self._wrap_module_zero_grad)
        self._patch(torch.nn.Module, "train", self._wrap_module_train)
        forward = torch.nn.modules.module.register_module_forward_pre_hook(_disable(self._forward_pre_hook))
        self._undo.append(forward.remove)
        scaler = getattr(getattr(torch, "amp", None), "GradScaler", None)
        if scaler is not None:
            self._patch(scaler, "scale", self._wrap_scaler_scale)
            self._patch(scaler, "unscale_", self._wrap_scaler_unscale)
            self._patch(scaler, "step", self._wrap_scaler_step)
            self._patch(scaler, "update", self._wrap_scaler_update)
        clip_module = torch.nn.utils.clip_grad
        if hasattr(clip_module, "_clip_grads_with_norm_"):
            self._patch(clip_module, "_clip_grads_with_norm_", self._wrap_grad_rewrite("norm"))
        self._patch(torch.nn.utils, "clip_grad_value_", self._wrap_grad_rewrite("value"))
        for scheduler_class in _scheduler_classes():
            self._patch(scheduler_class, "step", self._wrap_scheduler_step)
        with warnings.catch_warnings():  # isinstance on some lazy torch modules warns
            warnings.simplefilter("ignore")
            existing = [obj for obj in gc.get_objects() if _is_optimizer(obj)]
        for optimizer in existing:  # optimizers built before tracing began
            self._discover(optimizer)

    def _patch(self, owner: Any, name: str, wrap: Callable[[Any], Callable[..., Any]]) -> None:
        original = owner.__dict__[name]
        setattr(owner, name, _disable(wrap(original)))
        self._undo.append(lambda: setattr(owner, name, original))

    def _uninstall(self) -> None:
        self.active = False
        while self._undo:
            undo = self._undo.pop()
            try:
                undo()
            except Exception:  # keep undoing the rest; a half-restored torch is worse
                pass

    # -- optimizers and their parameters -------------------------------------------------------

    def _discover(self, optimizer: Any) -> int:
        known = self._optimizers.get(id(optimizer))
        if known is None:
            serial = len(self._optimizers) + 1
            self._optimizers[id(optimizer)] = (serial, optimizer)
            self.trace.optimizers[serial] = type(optimizer).__name__
            self._states_by_opt[serial] = []
            self._applied_by_opt[serial] = set()
            self._param_count[serial] = 0
        else:
            serial = known[0]
        groups = getattr(optimizer, "param_groups", [])
        count = sum(len(group["params"]) for group in groups)
        if count != self._param_count[serial]:
            self._param_count[serial] = count
            for group in groups:
                for param in group["params"]:
                    self._track(param, serial)
        return serial

    def _follow_manual(self) -> None:
        if MANUAL not in self.trace.optimizers:
            self.trace.optimizers[MANUAL] = "manual update"
            self._states_by_opt[MANUAL] = []
            self._applied_by_opt[MANUAL] = set()

    def _track_manual_leaves(self, loss: Any) -> None:
        """Leaves no optimizer owns: follow them too, in case the code updates them by hand."""
        self._follow_manual()
        visited: list[Any] = []  # holds the nodes, so their ids stay theirs during the walk
        seen: set[int] = set()
        pending = [getattr(loss, "grad_fn", None)]
        while pending and len(visited) < MAX_GRAPH_NODES:
            node = pending.pop()
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            visited.append(node)
            leaf = getattr(node, "variable", None)
            if isinstance(leaf, torch.Tensor) and id(leaf) not in self._params:
                self._track(leaf, MANUAL)
                self._params[id(leaf)].param_version = leaf._version
            pending.extend(next_node for next_node, _ in node.next_functions)

    def _track(self, param: torch.Tensor, serial: int, hook: bool = True) -> None:
        state = self._params.get(id(param))
        if state is None:
            state = _ParamState(param, {serial})
            state.remember_grad()
            self.trace.devices.add(param.device.type)
            self._params[id(param)] = state
            if param.requires_grad and hook:
                handle = param.register_post_accumulate_grad_hook(_disable(self._accumulated(state)))
                self._undo.append(handle.remove)
        if serial not in state.owners or state not in self._states_by_opt[serial]:
            state.owners.add(serial)
            self._states_by_opt[serial].append(state)

    def _follow_from_first_gradient(self, param: torch.Tensor) -> None:
        """A parameter no optimizer holds ran a forward pass: from its first gradient on, it is
        followed like the leaves a backward line's graph walk finds (that walk runs once per line,
        so a head swapped in mid-run would go unseen). Until then it costs nothing to follow."""
        own: list[Callable[[torch.Tensor], None]] = []

        def hook(grad_param: torch.Tensor) -> None:
            if not own:
                if id(param) in self._params:
                    return  # an optimizer (or a graph walk) follows it, with a hook of its own
                # a hook added now would not run until the next backward pass: this one counts
                self._follow_manual()
                self._track(param, MANUAL, hook=False)
                self._params[id(param)].param_version = param._version
                own.append(self._accumulated(self._params[id(param)]))
            own[0](grad_param)

        self._pending[id(param)] = param
        handle = param.register_post_accumulate_grad_hook(_disable(hook))
        self._undo.append(handle.remove)

    def _accumulated(self, state: _ParamState) -> Callable[[torch.Tensor], None]:
        def hook(param: torch.Tensor) -> None:
            backward = self._current_backward or self._start_implicit_backward()
            state.ids.add(backward)
            if state.last_backward != backward:
                state.received += 1
                state.first_backward = state.first_backward or backward
                state.last_backward = backward
            self._note_mode(state, backward)
            (self.trace.touched_manual if state.owners == {MANUAL} else self.trace.touched).add(backward)
            state.remember_grad()

        return hook

    def _start_implicit_backward(self) -> int:
        """A backward we did not see start (`from torch.autograd import backward`)."""
        if self._implicit_backward is None:
            self._implicit_backward = self._new_backward(user_sites(sys._getframe(1)), 1.0, False)
            torch.autograd.Variable._execution_engine.queue_callback(self._end_implicit_backward)
        return self._implicit_backward

    def _end_implicit_backward(self) -> None:
        self._implicit_backward = None

    def _notice_unseen_changes(self, states: Iterable[_ParamState]) -> None:
        """Catch clears no patch saw (`p.grad = None`, `p.grad.zero_()`) and in-place rescaling.

        Manual updates come first: `p -= lr * p.grad; p.grad.zero_()` steps, then clears."""
        states = list(states)
        updated = [s for s in states if s.owners == {MANUAL} and s.param._version != s.param_version]
        if updated:
            for state in updated:
                state.param_version = state.param._version
                state.manually_updated = True
            self._record_step(MANUAL, (), closure=False, since=0, states=updated)
        cleared = []
        for state in states:
            grad = state.param.grad
            if grad is None:
                if state.ids:
                    cleared.append(state)
                state.grad_id, state.version = None, -1
                continue
            if id(grad) == state.grad_id and grad._version == state.version:
                continue
            if state.ids:
                if not bool(grad.any()):
                    cleared.append(state)
                else:
                    state.modified = True
            state.remember_grad()
        if cleared:
            self._record_clear(cleared, (), "gradients set to None or zeroed")

    # -- events --------------------------------------------------------------------------------

    def _new_backward(self, sites: tuple[Site, ...], scale: float, retain_graph: bool) -> int:
        backward_id = next(self._backward_ids)
        # Backward passes after a retain_graph=True one go through the same forward pass
        # (multi-task losses): several losses by design, not accumulation.
        forward = self._last_retained_forward or next(self._forward_ids)
        self._last_retained_forward = forward if retain_graph else None
        in_step = self._open_steps[-1][0] if self._open_steps else None
        self.trace.backwards[backward_id] = BackwardRecord(
            backward_id, next(self._clock), sites, scale, forward, retain_graph, in_step
        )
        return backward_id

    def _record_step(
        self,
        serial: int,
        sites: tuple[Site, ...],
        closure: bool,
        since: int,
        states: list[_ParamState] | None = None,
    ) -> StepRecord:
        if states is None:
            states = self._states_by_opt[serial]
            self._notice_unseen_changes(states)
        with_grad = [state for state in states if state.param.grad is not None]
        summed = set().union(*(state.ids for state in with_grad))
        applied = set(summed)
        if closure:  # the closure's backward passes were this step's own, even if it cleared them
            applied |= {b for b in self.trace.backwards if b > since}
        earlier = self._applied_by_opt[serial]
        stale = summed & earlier
        earlier |= applied
        for backward in applied:
            self.trace.applied_by.setdefault(backward, set()).add(serial)
        record = StepRecord(
            index=next(self._clock),
            optimizer=serial,
            sites=sites,
            applied=frozenset(applied),
            summed=frozenset(summed),
            stale=frozenset(stale),
            params=len(states),
            params_without_grad=len(states) - len(with_grad),
            grads_modified=any(state.modified for state in with_grad),
            closure=closure,
            amp_scaled=self._steps_scaled_gradients(serial, summed, with_grad),
        )
        self.trace.steps.append(record)
        return record

    def _steps_scaled_gradients(self, serial: int, summed: set[int], with_grad: list[_ParamState]) -> bool:
        """A step outside scaler.step() whose gradients all come from AMP-scaled losses, still scaled."""
        if self._in_scaler_step or serial == MANUAL or not summed:
            return False
        if not all(self.trace.backwards[b].amp for b in summed if b in self.trace.backwards):
            return False
        return bool(self._scaled_by_amp([state.param for state in with_grad]))

    def _holds_unapplied_nonfinite(self, states: list[_ParamState]) -> bool:
        """Only asked when a clear is about to drop unapplied gradients: rare in correct code."""
        unapplied = [s for s in states if s.ids and not s.ids <= self.trace.applied_by.keys()]
        grads = [s.param.grad for s in unapplied if s.param.grad is not None]
        return any(not bool(torch.isfinite(grad).all()) for grad in grads)

    def _record_clear(
        self, states: list[_ParamState], sites: tuple[Site, ...], how: str, nonfinite: bool = False
    ) -> None:
        held = set().union(*(state.ids for state in states))
        if self._open_steps:  # a closure clearing inside its step: the step used what it clears
            serial = self._open_steps[-1][0]
            for backward in held:
                self.trace.applied_by.setdefault(backward, set()).add(serial)
        unapplied = {backward for backward in held if backward not in self.trace.applied_by}
        owners = frozenset(itertools.chain.from_iterable(state.owners for state in states))
        self.trace.clears.append(
            ClearRecord(next(self._clock), sites, how, owners, frozenset(unapplied), nonfinite)
        )
        for state in states:
            state.ids.clear()
            state.modified = False
            state.remember_grad()

    def _step_pre_hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        serial = self._discover(optimizer)
        # args[0] is the optimizer itself: the hook sees the wrapped step's full arguments
        closure = (len(args) > 1 and args[1] is not None) or kwargs.get("closure") is not None
        sites = user_sites(sys._getframe(1))
        since = len(self.trace.backwards)
        self._open_steps.append((serial, closure, sites, since))
        if not closure:
            self._record_step(serial, sites, closure=False, since=since)

    def _step_post_hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if not self._open_steps:
            return
        serial, closure, sites, since = self._open_steps.pop()
        if closure:
            record = self._record_step(serial, sites, closure=True, since=since)
        else:
            record = self.trace.steps[-1]
        for state in self._states_by_opt[serial]:
            state.remember_grad()  # some optimizers rewrite .grad in place; that is not the user's
        if self.on_step is not None and self.active:
            self.on_step(record)

    # -- patches -------------------------------------------------------------------------------

    def _wrap_backward(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def backward(*args: Any, **kwargs: Any) -> Any:
            tensors = args[0] if args else kwargs.get("tensors")
            loss = tensors if isinstance(tensors, torch.Tensor) else next(iter(tensors or ()), None)
            retain = args[2] if len(args) > 2 else kwargs.get("retain_graph")
            sites = user_sites(sys._getframe(1))
            site = sites[0] if sites else None
            if site not in self._walked_sites:  # once per backward line: graphs can be large
                self._walked_sites.add(site)
                self._track_manual_leaves(loss)
            self._notice_unseen_changes(self._params.values())
            outer = self._current_backward
            self._current_backward = self._new_backward(
                sites, loss_scale(loss, self._amp_scales), bool(retain)
            )
            if self._amp_scales and carries_amp_scale(loss, self._amp_scales):
                self.trace.backwards[self._current_backward].amp = True
            self._count_kept_graphs(loss, sites)
            if self._ddp_sync is not None:
                self.trace.ddp_synced[self._current_backward] = self._ddp_sync
                self._ddp_sync = None
            try:
                return original(*args, **kwargs)
            finally:
                self._current_backward = outer

        return backward

    def _count_kept_graphs(self, loss: Any, sites: tuple[Site, ...]) -> None:
        """Tag this loss's graph, and count the earlier graphs of this line that are still alive.

        A loop re-binds `loss` before its next backward, freeing the last graph; graphs that
        survive that are held by something outside the iteration (`total += loss`)."""
        root = getattr(loss, "grad_fn", None)
        if root is None:
            return
        tags = self._graph_tags.setdefault(sites, [])
        alive = [tag for tag in tags if tag() is not None]
        try:
            tag = _GraphTag()
            root.metadata["gradlint"] = tag
        except (AttributeError, RuntimeError, TypeError):
            return
        record = self.trace.kept_graphs.get(sites)
        if record is None:
            record = self.trace.kept_graphs[sites] = KeptGraphsRecord(sites, 0, 0)
        record.alive = max(record.alive, len(alive))
        record.backwards += 1
        alive.append(weakref.ref(tag))
        self._graph_tags[sites] = alive[-MAX_GRAPH_TAGS:]

    def _forward_pre_hook(self, module: Any, args: Any) -> None:
        """Remember each followed parameter's module mode when the module runs its forward pass,
        and whether a DistributedDataParallel forward will all-reduce in the next backward.

        A parameter no optimizer holds is followed once a gradient reaches it (a head put in after
        the optimizer was built, mid-run too), and a module the user's code calls by a name is
        remembered under it, to name parameters in reports."""
        if self._ddp_class is not None and isinstance(module, self._ddp_class):
            self._ddp_sync = bool(getattr(module, "require_backward_grad_sync", True))
        seen = self._seen_modules.get(id(module))
        if seen is None or seen() is not module:
            self._first_forward(module)
        for param in module._parameters.values():
            if param is None:
                continue
            state = self._params.get(id(param))
            if state is None:
                if param.requires_grad and id(param) not in self._pending and torch.is_grad_enabled():
                    self._follow_from_first_gradient(param)
                continue
            if state.param is param:
                state.forward_module = module
                state.forward_training = module.training

    def _first_forward(self, module: Any) -> None:
        """Remember the name the calling user code has for `module` (`model`, `self.model`); a
        submodule called from its parent's forward gets its name from the parent's."""
        self._seen_modules[id(module)] = weakref.ref(module)
        frame: FrameType | None = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename.startswith((_TORCH_DIR, _GRADLINT_DIR)):
            frame = frame.f_back
        if frame is None:
            return
        scope = frame.f_locals
        owner = scope.get("self")
        found: str | None = None
        if isinstance(owner, torch.nn.Module):  # a module's own method: `self(x)`, `self.model(x)`
            if owner is module:
                found = "self"
            elif frame.f_code.co_name != "forward":  # in a forward: a submodule, named by its parent
                found = next((f"self.{name}" for name, sub in owner._modules.items() if sub is module), None)
        else:
            found = next((name for name, value in scope.items() if value is module), None)
            if found is None and owner is not None:
                attributes = getattr(owner, "__dict__", {})
                found = next((f"self.{name}" for name, value in attributes.items() if value is module), None)
            if found is None and scope is not frame.f_globals:
                found = next((name for name, value in frame.f_globals.items() if value is module), None)
        if found is not None:
            self._module_names.append((module, found))

    def _read_parameters_outside(self) -> None:
        """At the end of the run: the parameters that got gradients and that no optimizer which
        stepped holds, named; and how many of each optimizer's parameters ever got a gradient."""
        stepped = {step.optimizer for step in self.trace.steps}
        outside = [
            state
            for state in self._params.values()
            if state.received and not state.manually_updated and not (state.owners - {MANUAL}) & stepped
        ]
        names = self._parameter_names([state.param for state in outside]) if outside else {}
        for state in outside:
            self.trace.unstepped.append(
                UnsteppedParameter(
                    names.get(id(state.param)) or _describe_parameter(state),
                    state.received,
                    state.first_backward,
                    state.last_backward,
                    tuple(sorted(state.owners - {MANUAL})),
                    isinstance(state.param, torch.nn.Parameter),
                )
            )
        for serial, states in self._states_by_opt.items():
            if serial != MANUAL:
                trainable = [state for state in states if state.param.requires_grad]
                reached = sum(1 for state in trainable if state.received)
                self.trace.optimizer_parameters[serial] = (len(trainable), reached)

    def _parameter_names(self, params: list[Any]) -> dict[int, str]:
        """`model.2.weight`: the longest qualified name any named module has for each parameter."""
        wanted = {id(param) for param in params}
        found: dict[int, str] = {}
        for module, name in self._module_names:
            try:
                named = list(module.named_parameters(remove_duplicate=False))
            except Exception:  # a module whose traversal fails is no reason to lose the report
                continue
            for qualified, param in named:
                if id(param) in wanted:
                    full = f"{name}.{qualified}"
                    if len(full) > len(found.get(id(param), "")):
                        found[id(param)] = full
        return found

    def _note_mode(self, state: _ParamState, backward: int) -> None:
        if state.forward_training is None:
            return
        if state.forward_training:
            state.trained_in_train_mode = True
            if self._last_train_mode_backward != backward:
                self._last_train_mode_backward = backward
                self.trace.train_mode_backwards += 1
        elif state.trained_in_train_mode and backward not in self.trace.eval_mode_backwards:
            module = state.forward_module
            sites, owner = self._mode_sites.get(id(module), ((), type(module).__name__))
            self.trace.eval_mode_backwards[backward] = EvalModeRecord(backward, owner, sites)

    def _wrap_module_train(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def train(module: Any, mode: bool = True) -> Any:
            if self._mode_depth or not self.active:  # the recursion into children
                return original(module, mode)
            self._mode_depth += 1
            try:
                if not mode:
                    where = (user_sites(sys._getframe(1)), type(module).__name__)
                    for sub in module.modules():
                        self._mode_sites[id(sub)] = where
                return original(module, mode)
            finally:
                self._mode_depth -= 1

        return train

    def _wrap_optimizer_init(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def __init__(optimizer: Any, *args: Any, **kwargs: Any) -> None:
            original(optimizer, *args, **kwargs)
            if self.active:
                serial = self._discover(optimizer)
                self.trace.optimizer_sites.setdefault(serial, user_sites(sys._getframe(1)))

        return __init__

    def _clearing_wrapper(
        self, original: Callable[..., Any], how: str, states_of: Callable[[Any], list[_ParamState]]
    ) -> Callable[..., Any]:
        def zero_grad(owner: Any, *args: Any, **kwargs: Any) -> Any:
            if self._clearing or not self.active:
                return original(owner, *args, **kwargs)
            self._clearing += 1
            try:
                states = states_of(owner)
                self._notice_unseen_changes(states)
                nonfinite = self._holds_unapplied_nonfinite(states)
                result = original(owner, *args, **kwargs)
                self._record_clear(states, user_sites(sys._getframe(1)), how, nonfinite)
                return result
            finally:
                self._clearing -= 1

        return zero_grad

    def _wrap_optimizer_zero_grad(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def states_of(optimizer: Any) -> list[_ParamState]:
            return list(self._states_by_opt[self._discover(optimizer)])

        return self._clearing_wrapper(original, "optimizer.zero_grad()", states_of)

    def _wrap_module_zero_grad(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def states_of(module: Any) -> list[_ParamState]:
            return [self._params[id(p)] for p in module.parameters() if id(p) in self._params]

        return self._clearing_wrapper(original, "module.zero_grad()", states_of)

    def _wrap_scaler_scale(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def scale(scaler: Any, outputs: Any) -> Any:
            result = original(scaler, outputs)
            if getattr(scaler, "_scale", None) is not None:
                self._amp_scales.add(scaler._scale.data_ptr())
                self._scalers[id(scaler)] = scaler
            return result

        return scale

    def _wrap_scaler_unscale(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def unscale_(scaler: Any, optimizer: Any) -> Any:
            result = original(scaler, optimizer)
            for state in self._states_by_opt[self._discover(optimizer)]:
                state.remember_grad()  # unscaling rewrites .grad in place; it is not a rescale
            return result

        return unscale_

    def _wrap_scaler_step(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def step(scaler: Any, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
            before = len(self.trace.steps)
            self._record_amp_call(scaler, "step", optimizer)
            self._in_scaler_step += 1
            try:
                result = original(scaler, optimizer, *args, **kwargs)
            finally:
                self._in_scaler_step -= 1
            if len(self.trace.steps) == before and isinstance(optimizer, torch.optim.Optimizer):
                self.trace.scaler_events.append(
                    ScalerRecord(
                        next(self._clock),
                        user_sites(sys._getframe(1)),
                        "skipped step",
                        self._discover(optimizer),
                    )
                )
            return result

        return step

    def _wrap_scaler_update(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def update(scaler: Any, *args: Any, **kwargs: Any) -> Any:
            self.trace.scaler_events.append(
                ScalerRecord(next(self._clock), user_sites(sys._getframe(1)), "update", None)
            )
            self._record_amp_call(scaler, "update", None)
            return original(scaler, *args, **kwargs)

        return update

    def _record_amp_call(self, scaler: Any, action: str, optimizer: Any) -> None:
        known = self._scaler_serials.get(id(scaler))
        if known is None:
            known = self._scaler_serials[id(scaler)] = (len(self._scaler_serials) + 1, scaler)
        serial = self._discover(optimizer) if isinstance(optimizer, torch.optim.Optimizer) else None
        sites = user_sites(sys._getframe(2))
        self.trace.amp_calls.append(AmpRecord(next(self._clock), sites, known[0], action, serial))

    def _wrap_grad_rewrite(self, kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Clipping rewrites .grad in place: neither a clear nor an accumulation rescale."""

        def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
            def rewrite(*args: Any, **kwargs: Any) -> Any:
                args, kwargs, params = _materialize_parameters(args, kwargs)
                self._notice_unseen_changes(self._params.values())
                scaled = self._scaled_by_amp(params)
                if scaled and not self._holds_unstepped_amp(params):
                    scaled = False  # scaler.step() unscaled them (update() then forgets it did)
                # clip_grad_norm_(params, inf) only measures the norm: it clips nothing, late or not
                limit = args[1] if len(args) > 1 else kwargs.get("max_norm", kwargs.get("clip_value"))
                measures_only = isinstance(limit, (int, float)) and limit == float("inf")
                applied = None if measures_only else self._already_applied(params)
                result = original(*args, **kwargs)
                sites = user_sites(sys._getframe(1))
                self.trace.clips.append(ClipRecord(next(self._clock), sites, kind, scaled, applied))
                for state in self._params.values():
                    state.remember_grad()
                return result

            return rewrite

        return wrap

    def _holds_unstepped_amp(self, params: list[Any] | None) -> bool:
        """Whether these gradients hold an AMP-scaled backward pass that no step has used yet."""
        held = set().union(*(s.ids for s in self._states_of(params) if s.param.grad is not None))
        backwards = self.trace.backwards
        return any(b in backwards and backwards[b].amp and b not in self.trace.applied_by for b in held)

    def _states_of(self, params: list[Any] | None) -> list[_ParamState]:
        states = [self._params.get(id(param)) for param in params or ()]
        return [state for state in states if state is not None]

    def _already_applied(self, params: list[Any] | None) -> bool | None:
        """Whether a step has used every backward pass summed in these parameters' gradients."""
        if params is None:
            return None
        held = set().union(*(s.ids for s in self._states_of(params) if s.param.grad is not None))
        return bool(held) and held <= self.trace.applied_by.keys()

    def _scaled_by_amp(self, params: list[Any] | None) -> bool | None:
        """Whether the clipped gradients still hold a GradScaler's scale: some enabled scaler that
        scaled a loss has not unscaled the optimizer owning them (its stage is READY)."""
        scalers = [s for s in self._scalers.values() if getattr(s, "_enabled", False)]
        if not scalers:
            return False  # no loss was scaled while tracing
        if params is None:
            return None
        owners: set[int] = set()
        for param in params:
            state = self._params.get(id(param))
            if state is not None and state.param is param and param.grad is not None:
                owners |= state.owners - {MANUAL}
        optimizers = [opt for serial, opt in self._optimizers.values() if serial in owners]
        if not optimizers:
            return None
        stages = [
            getattr(scaler, "_per_optimizer_states", {}).get(id(optimizer))
            for scaler in scalers
            for optimizer in optimizers
        ]
        # no entry yet is READY: the scaler makes one at unscale_ or step, and drops all at update
        names = [None if stage is None else getattr(stage.get("stage"), "name", None) for stage in stages]
        return any(name in (None, "READY") for name in names)

    def _wrap_scheduler_step(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def step(scheduler: Any, *args: Any, **kwargs: Any) -> Any:
            if self._scheduler_depth or not self.active:  # a subclass calling the base step,
                return original(scheduler, *args, **kwargs)  # or a chained scheduler's members
            frame = sys._getframe(1)
            known = self._optimizers.get(id(getattr(scheduler, "optimizer", None)))
            serial = known[0] if known is not None and known[1] is scheduler.optimizer else None
            initial = bool(getattr(scheduler, "_is_initial", False)) or _inside_init_of(scheduler, frame)
            self.trace.scheduler_steps.append(
                SchedulerRecord(
                    next(self._clock), user_sites(frame), type(scheduler).__name__, serial, initial
                )
            )
            self._scheduler_depth += 1
            try:
                return original(scheduler, *args, **kwargs)
            finally:
                self._scheduler_depth -= 1

        return step


def _describe_parameter(state: _ParamState) -> str:
    """A parameter no named module holds: its module's class and attribute, else its shape."""
    module = state.forward_module
    if module is not None:
        attribute = next((k for k, v in module._parameters.items() if v is state.param), None)
        if attribute is not None:
            return f"{type(module).__name__}.{attribute}"
    return f"a tensor of shape {list(state.param.shape)}"


def _is_optimizer(obj: object) -> bool:
    try:
        return isinstance(obj, torch.optim.Optimizer)
    except ReferenceError:  # a weakref.proxy whose object is gone (torch.compile leaves some)
        return False


def _scheduler_classes() -> list[type]:
    """LRScheduler and the torch subclasses that define their own `step`."""
    module = torch.optim.lr_scheduler
    base = getattr(module, "LRScheduler", None)
    if base is None:
        return []
    names = ["ReduceLROnPlateau", "SequentialLR", "ChainedScheduler", "CosineAnnealingWarmRestarts"]
    found = [getattr(module, name, None) for name in names]
    return [base] + [
        cls for cls in found if isinstance(cls, type) and cls is not base and "step" in cls.__dict__
    ]


def _inside_init_of(obj: Any, frame: FrameType | None) -> bool:
    """Whether `obj.__init__` is on the stack near `frame` (a step the constructor makes)."""
    for _ in range(MAX_STACK):
        if frame is None:
            return False
        code = frame.f_code
        if code.co_name == "__init__" and code.co_argcount and frame.f_locals.get(code.co_varnames[0]) is obj:
            return True
        frame = frame.f_back
    return False


def _materialize_parameters(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any], list[Any] | None]:
    """The clipped parameters as a list, and the call's arguments with a generator replaced by it."""
    if args:
        parameters = args[0]
    elif "parameters" in kwargs:
        parameters = kwargs["parameters"]
    else:
        return args, kwargs, None
    if isinstance(parameters, torch.Tensor):
        return args, kwargs, [parameters]
    if not isinstance(parameters, (list, tuple)):
        try:
            parameters = list(parameters)
        except TypeError:
            return args, kwargs, None
        if args:
            args = (parameters, *args[1:])
        else:
            kwargs = {**kwargs, "parameters": parameters}
    return args, kwargs, list(parameters)
