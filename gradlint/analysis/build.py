"""From `ast` to flow: find the gradient events in each function and keep the control flow around them."""

from __future__ import annotations

import ast
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import cast

from gradlint.analysis import names
from gradlint.analysis.facts import LoopSite, Site
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
    parts,
    prune,
    walk_events,
)
from gradlint.analysis.nodes import children, dump, walk
from gradlint.analysis.scope import MANUAL, ModuleIndex, location_of, scan_instances, scan_kinds
from gradlint.analysis.shapes import (
    FunctionNode,
    accumulation_bound,
    assigned_names,
    assigned_paths,
    assumptions,
    call_children,
    draws_data,
    grad_owners,
    grad_owners_of_args,
    has_correlated_if,
    is_accumulation_guard,
    is_collection,
    is_grad_access,
    is_none_check,
    is_scaled,
    keyword,
    module_statements,
    own_statements,
    parameters,
    parameters_owner,
    root_name,
    root_path,
    specialise,
    unwrap_iterable,
    uses_the_other_parts,
)
from gradlint.core import EventKind


@dataclass
class Context:
    """Where the builder is inside one function: loops, the `if` around, the parameter loop."""

    loops: tuple[Loop, ...] = ()
    guard: ast.expr | None = None
    parameter_loops: dict[str, str] = field(
        default_factory=dict
    )  # `p` -> `model` in `for p in model.parameters()`
    accumulating: bool = False  # inside `accelerator.accumulate(...)`


class FunctionBuilder:
    """Builds the flow of one function (or of the module body)."""

    def __init__(
        self, index: ModuleIndex, lines: list[str], function: ast.FunctionDef | ast.AsyncFunctionDef | None
    ) -> None:
        self.index = index
        self.lines = lines
        self.function = function
        self.class_info = index.class_of(function) if function is not None else None
        self.kinds: dict[str, str] = {}
        self.instances: dict[str, str] = dict(index.instances)
        self.params: list[str] = (
            parameters(function) if isinstance(function, (*FunctionNode, ast.Lambda)) else []
        )
        self.callees: set[ast.AST] = set()
        self.closures: set[ast.AST] = set()  # functions this one passes to `optimizer.step(closure)`
        self.backwards: list[Event] = []
        # whether a flow holds a STEP, asked of every arm of every `if`: remembered, so that a chain
        # of n `elif`s (each nested in the last one's else) is read once, not n times
        self.steps_inside: dict[Flow, bool] = {}
        self.assignments: dict[str, list[tuple[ast.AST, tuple[Loop, ...]]]] = {}
        self.fresh_registers: dict[Loop, list[Register]] = {}  # replayed at the top of each iteration
        self.loss_facts: dict[str, tuple[bool, frozenset[Loop], bool]] = {}  # loss_assignments()
        body = self.body()
        # defs anywhere in this body, `def closure():` inside the training loop included
        self.nested = {s.name: s for s in own_statements(body) if isinstance(s, FunctionNode)}
        if function is not None and not isinstance(function, ast.Lambda):
            scan_kinds(body, self.kinds)
            scan_instances(body, self.instances, index.classes)
        for param in self.params:
            if names.is_optimizer_name(param) and not names.is_scheduler_name(param):
                self.kinds.setdefault(param, "optimizer")
            elif names.is_scaler_name(param):
                self.kinds.setdefault(param, "scaler")
            elif names.is_accelerator_name(param):
                self.kinds.setdefault(param, "accelerator")
        self.locals = set(self.params) | assigned_names(body)

    def body(self) -> list[ast.stmt]:
        if self.function is None:
            return module_statements(self.index.tree)
        return self.function.body

    def build(self) -> Flow:
        flow = self.block(self.body(), Context(), top=True)
        for event in self.backwards:
            self.finish_backward(event)
        return prune(flow) or Seq()

    # --- who is who -------------------------------------------------------------------------
    def kind(self, path: str | None) -> str | None:
        if path is None:
            return None
        if path in self.kinds:
            return self.kinds[path]
        if path.startswith("self.") and self.class_info is not None:
            found = self.class_info.kinds.get(path)
            if found:
                return found
        root = path.split(".", 1)[0].split("[", 1)[0]
        if root not in self.locals or self.function is None:  # the module's own names are the index's
            return self.index.kinds.get(path)
        return None

    def is_optimizer(self, path: str | None) -> bool:
        kind = self.kind(path)
        if kind in ("optimizer", "lbfgs"):
            return True
        return (
            kind is None
            and path is not None
            and names.is_optimizer_name(path)
            and not names.is_scheduler_name(path)
        )

    def role(self, path: str | None, role: str, by_name) -> bool:
        kind = self.kind(path)
        return kind == role or (kind is None and path is not None and by_name(path))

    # --- statements ---------------------------------------------------------------------------
    def block(self, body: list[ast.stmt], context: Context, top: bool = False) -> Seq:
        flows: list[Flow] = []
        tests = [dump(s.test) if isinstance(s, ast.If) else None for s in body]
        later = Counter(tests)  # how many of the statements not yet read test each shape
        for index, statement in enumerate(body):
            later[tests[index]] -= 1
            if (
                isinstance(statement, ast.If)
                and later[tests[index]] > 0
                and has_correlated_if(body, index)
            ):
                # `if g_step: opt_g.zero_grad() ... if g_step: opt_g.step()`: both ifs take the same
                # arm, so split the rest of the block once per arm instead of mixing the arms' paths.
                rest = body[index + 1 :]
                then = self.block(statement.body, replace(context, guard=statement.test))
                otherwise = self.block(statement.orelse, context)
                then.items += self.block(specialise(rest, statement.test, True), context).items
                otherwise.items += self.block(specialise(rest, statement.test, False), context).items
                arms = Branch([then, otherwise], self.tracked_assumptions(statement.test))
                return Seq([*flows, *self.expression(statement.test, context), arms])
            flows.extend(self.statement(statement, context))
        flows = merge_manual_updates(flows)
        if not top:  # a function's own last `return` does not skip anything
            mark_skipping_clears(flows)
        return Seq(flows)

    def statement(self, node: ast.stmt, context: Context) -> list[Flow]:
        if isinstance(node, (*FunctionNode, ast.ClassDef)):
            return []
        if isinstance(node, ast.If):
            test = self.expression(node.test, context)
            then = self.block(node.body, replace(context, guard=node.test))
            otherwise = self.block(node.orelse, replace(context, guard=None))
            if selects_parameters(node, context.parameter_loops):
                # `for p in model.parameters(): if p.grad is not None: p.grad.mul_(c)`: the arms are
                # for different parameters, and together they run for all of them
                return [*test, then, otherwise]
            self.mark_clears_instead_of_steps(then, otherwise)
            return [*test, Branch([then, otherwise], self.tracked_assumptions(node.test))]
        if isinstance(node, (ast.For, ast.AsyncFor)):
            return self.for_loop(node, context)
        if isinstance(node, ast.While):
            return self.while_loop(node, context)
        if isinstance(node, (ast.With, ast.AsyncWith)):
            return self.with_block(node, context)
        if isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            # ast.TryStar (3.11+) has the fields of ast.Try, and is no type on older Pythons
            return [self.try_block(cast(ast.Try, node), context)]
        if sys.version_info >= (3, 10) and isinstance(node, ast.Match):
            subject = self.expression(node.subject, context)
            arms: list[Flow] = [self.block(case.body, context) for case in node.cases]
            return [*subject, Branch([*arms, Seq()])]
        if isinstance(node, ast.Return):
            return [*self.expression(node.value, context), Exit("return")]
        if isinstance(node, ast.Raise):
            return [*self.expression(node.exc, context), Exit("raise")]
        if isinstance(node, ast.Break):
            return [Exit("break")]
        if isinstance(node, ast.Continue):
            return [Exit("continue")]
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            return self.assignment(node, context)
        return [
            flow
            for child in children(node)
            if isinstance(child, ast.expr)
            for flow in self.expression(child, context)
        ]

    def tracked_assumptions(self, test: ast.expr) -> tuple[tuple[tuple[str, bool], ...], ...]:
        """What each arm knows; `if a and b:` knows both in its first arm, nothing in the other."""
        if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
            facts = tuple(
                known[0] for part in test.values for known in [self.tracked_assumptions(part)] if known
            )
            return (tuple(fact for arm in facts for fact in arm), ()) if facts else ()
        known = assumptions(test)
        if not known or known[0][0] not in self.index.tracked_tests:
            return ()
        return ((known[0],), (known[1],))

    def for_loop(self, node: ast.For | ast.AsyncFor, context: Context) -> list[Flow]:
        iterable = self.expression(node.iter, context)
        if is_collection(node.iter):
            # Over parameters or optimizers: one update, not a repetition of the training step.
            inner = replace(context, parameter_loops=dict(context.parameter_loops))
            model = parameters_owner(node.iter)
            if model:
                inner.parameter_loops.update(
                    {n.id: model for n in walk(node.target) if isinstance(n, ast.Name)}
                )
            return [*iterable, self.block(node.body, inner), self.block(node.orelse, context)]
        header = f"for {names.segment(self.lines, node.target)} in {names.segment(self.lines, node.iter)}"
        loop = Loop(
            Seq(),
            LoopSite(location_of(node, self.lines), header, names.segment(self.lines, node.target)),
            "repeat",
        )
        loop.iterable = names.segment(self.lines, unwrap_iterable(node.iter))
        loop.count = accumulation_bound(node.iter)
        loop.draws_data = draws_data(node)
        loop.whole_window = uses_the_other_parts(node)
        self.record_targets(node.target, node, (*context.loops, loop))
        body = self.block(node.body, replace(context, loops=(*context.loops, loop), guard=None))
        loop.accumulates = loop.accumulates or any(
            e.kind is EventKind.STEP and is_accumulation_guard(e.guard) for e in walk_events(body)
        )
        forgotten = tuple(sorted(assigned_paths(node) & self.index.tested_paths))
        fresh: list[Flow] = list(self.fresh_registers.pop(loop, []))
        loop.body = Seq([*fresh, Forget(forgotten), *body.items]) if forgotten else Seq([*fresh, *body.items])
        return [*iterable, loop, self.block(node.orelse, context)]

    def while_loop(self, node: ast.While, context: Context) -> list[Flow]:
        forever = isinstance(node.test, ast.Constant) and bool(node.test.value)
        header = f"while {names.segment(self.lines, node.test)}"
        loop = Loop(
            Seq(), LoopSite(location_of(node, self.lines), header, ""), "forever" if forever else "repeat"
        )
        loop.draws_data = draws_data(node)
        inner = replace(context, loops=(*context.loops, loop), guard=None)
        loop.body = Seq([*self.expression(node.test, inner), *self.block(node.body, inner).items])
        loop.body.items[:0] = self.fresh_registers.pop(loop, [])
        loop.accumulates = loop.accumulates or any(
            e.kind is EventKind.STEP and is_accumulation_guard(e.guard) for e in walk_events(loop.body)
        )
        return [*self.expression(node.test, context), loop, self.block(node.orelse, context)]

    def with_block(self, node: ast.With | ast.AsyncWith, context: Context) -> list[Flow]:
        flows: list[Flow] = []
        gated = False
        for item in node.items:
            flows.extend(self.expression(item.context_expr, context))
            call = item.context_expr
            if isinstance(call, ast.Call) and names.callee_name(call) in names.ACCUMULATE_CONTEXTS:
                gated = gated or (
                    isinstance(call.func, ast.Attribute)
                    and self.role(names.path_of(call.func.value), "accelerator", names.is_accelerator_name)
                )
            if item.optional_vars is not None:
                self.record_targets(item.optional_vars, call, context.loops)
        if gated:
            if context.loops:
                context.loops[-1].accumulates = True
            inner = replace(context, accumulating=True)
            return [*flows, Branch([self.block(node.body, inner), Gate(self.block(node.body, inner))])]
        body = self.block(node.body, context)
        return [*flows, body]

    def try_block(self, node: ast.Try, context: Context) -> Try:
        return Try(
            [flow for statement in node.body for flow in [Seq(self.statement(statement, context))]],
            [self.block(handler.body, context) for handler in node.handlers],
            self.block(node.orelse, context),
            self.block(node.finalbody, context),
        )

    def assignment(self, node: ast.Assign | ast.AugAssign | ast.AnnAssign, context: Context) -> list[Flow]:
        value = node.value
        flows: list[Flow] = []
        targets: list[ast.expr] = node.targets if isinstance(node, ast.Assign) else [node.target]
        grad_targets = [t for t in targets if is_grad_access(t)]
        if grad_targets:
            return self.grad_assignment(node, grad_targets[0], context)
        manual = self.manual_update(node, targets, context)
        if manual is not None:
            return manual
        if value is not None:
            flows.extend(self.expression(value, context))
        forgotten = tuple(sorted(p for p in assigned_paths(node) if p in self.index.tested_paths))
        if forgotten:
            flows.append(Forget(forgotten))
        for target in targets:
            self.record_targets(target, node, context.loops)
            if (
                isinstance(node, ast.Assign)
                and isinstance(value, ast.Call)
                and names.is_optimizer_constructor(value)
            ):
                path = names.path_of(target)
                if path:
                    register = Register(
                        path, self.parameter_sources(value), names.callee_name(value) == "LBFGS"
                    )
                    flows.append(register)
                    if self.new_in_this_iteration(value, register.sources, context):
                        # its tensors are new each time round: the iteration starts with no gradients
                        fresh = replace(register, fresh_parameters=True)
                        self.fresh_registers.setdefault(context.loops[-1], []).append(fresh)
            elif (
                isinstance(node, ast.Assign)
                and isinstance(value, ast.Call)
                and names.is_scheduler_constructor(value)
            ):
                path = names.path_of(target)
                optimizer = self.scheduled_optimizer(value)
                if path and optimizer:
                    flows.append(Register(path, (), drives=optimizer))
        return flows

    def grad_assignment(self, node, target: ast.expr, context: Context) -> list[Flow]:
        site = self.site(node)
        owner = self.grad_owner(target, context)
        value = node.value
        if isinstance(node, ast.AugAssign):
            kind = EventKind.SCALE if isinstance(node.op, (ast.Div, ast.Mult)) else EventKind.GRAD_READ
            return [Event(kind, site, owner[0], owner[1])]
        if isinstance(value, ast.Constant) and value.value is None:
            return [Event(EventKind.CLEAR, site, owner[0], owner[1])]
        reads_grad = any(is_grad_access(n) for n in walk(value))
        if reads_grad and isinstance(value, ast.BinOp) and isinstance(value.op, (ast.Div, ast.Mult)):
            return [Event(EventKind.SCALE, site, owner[0], owner[1])]
        return [*self.expression(value, context), Event(EventKind.GRAD_WRITE, site, owner[0], owner[1])]

    def manual_update(self, node, targets: list[ast.expr], context: Context) -> list[Flow] | None:
        """`p -= lr * p.grad`, `p.data = p.data - lr * p.grad`: a step without an optimizer."""
        if node.value is None or not isinstance(node, (ast.AugAssign, ast.Assign)):
            return None
        if isinstance(node, ast.Assign) and not all(
            isinstance(t, ast.Attribute) and t.attr == "data" for t in targets
        ):
            return None
        updated = {root_path(t) for t in targets}
        if updated & grad_owners(node.value):
            return [Event(EventKind.STEP, self.site(node), MANUAL, "manual")]
        return None

    def record_targets(self, target: ast.AST, node: ast.AST, loops: tuple[Loop, ...]) -> None:
        for sub in walk(target):
            if isinstance(sub, ast.Name):
                self.assignments.setdefault(sub.id, []).append((node, loops))

    # --- expressions ------------------------------------------------------------------------
    def expression(self, node: ast.expr | None, context: Context) -> list[Flow]:
        """Events of an expression in evaluation order: arguments before the call that gets them."""
        if node is None or isinstance(node, ast.Lambda):
            return []
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            return self.comprehension(node, context)
        if isinstance(node, ast.Call):
            flows = [flow for child in call_children(node) for flow in self.expression(child, context)]
            return flows + self.call(node, context)
        if isinstance(node, ast.Attribute) and node.attr == "grad" and isinstance(node.ctx, ast.Load):
            path, target = self.grad_owner(node, context)
            return [
                *self.expression(node.value, context),
                Event(EventKind.GRAD_READ, self.site(node), path, target),
            ]
        if isinstance(node, ast.Compare) and is_none_check(node):
            return []
        return [
            flow
            for child in children(node)
            if isinstance(child, ast.expr)
            for flow in self.expression(child, context)
        ]

    def comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp, context: Context
    ) -> list[Flow]:
        context = replace(context, parameter_loops=dict(context.parameter_loops))
        for generator in node.generators:
            model = parameters_owner(generator.iter)
            if model:
                context.parameter_loops.update(
                    {n.id: model for n in walk(generator.target) if isinstance(n, ast.Name)}
                )
        parts = [*(g.iter for g in node.generators), *(c for g in node.generators for c in g.ifs)]
        parts += [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        flows = [flow for part in parts for flow in self.expression(part, context)]
        if not any(
            isinstance(f, (Event, Call)) and getattr(f, "kind", None) != EventKind.GRAD_READ for f in flows
        ):
            return flows
        header = f"comprehension at line {node.lineno}"
        return [Loop(Seq(flows), LoopSite(location_of(node, self.lines), header, ""), "repeat")]

    def call(self, node: ast.Call, context: Context) -> list[Flow]:
        callee = names.callee_name(node)
        receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
        receiver_path = names.path_of(receiver) if receiver is not None else None
        if callee in ("backward", "manual_backward"):
            return [self.backward(node, receiver, receiver_path, context)]
        if receiver is not None and is_grad_access(receiver):
            return self.grad_method(node, callee, receiver, context)
        if (
            callee in names.INPLACE_UPDATES
            and receiver is not None
            and root_path(receiver) in grad_owners_of_args(node)
        ):
            return [Event(EventKind.STEP, self.site(node), MANUAL, "manual")]
        # A torch GradScaler on some path is one on every path for its own API: a stand-in class of
        # this module (`DummyGradScaler` when AMP is off) is what the other path calls instead.
        scaler_api = callee in names.SCALER_METHODS and self.kind(receiver_path) == "scaler"
        followed = None if scaler_api else self.follow(node, context)
        if followed is not None:
            return followed
        if callee == "step" and receiver is not None:
            return self.step(node, receiver_path, context)
        if callee == "zero_grad":
            return [self.clear(node, receiver_path)]
        ordered = self.order_event(node, callee, receiver_path)
        if ordered is not None:
            return ordered
        return self.unknown_call(node, callee, receiver_path)

    def order_event(self, node: ast.Call, callee: str, receiver_path: str | None) -> list[Flow] | None:
        """Clipping and the GradScaler calls besides step(): they change no count, only the order
        facts read them. None: not one of them."""
        is_scaler = receiver_path is not None and self.role(receiver_path, "scaler", names.is_scaler_name)
        if is_scaler and callee == "unscale_":
            optimizer = names.path_of(node.args[0]) if node.args else None
            if optimizer is None:
                return []
            return [Event(EventKind.UNSCALE, self.site(node), optimizer, "optimizer", scaler=receiver_path)]
        if is_scaler and callee == "update":
            return [
                Event(EventKind.SCALER_UPDATE, self.site(node), receiver_path, "scaler", scaler=receiver_path)
            ]
        if callee not in names.CLIPS:
            return None
        clipped = node.args[0] if node.args else keyword(node, "parameters")
        limit = (
            node.args[1] if len(node.args) > 1 else keyword(node, "max_norm") or keyword(node, "clip_value")
        )
        if clipped is None or (limit is not None and "inf" in names.segment(self.lines, limit)):
            return []  # `clip_grad_norm_(params, float("inf"))` only measures the norm
        model = parameters_owner(clipped)
        accelerator = receiver_path is not None and self.role(
            receiver_path, "accelerator", names.is_accelerator_name
        )
        return [
            Event(EventKind.CLIP, self.site(node), model, "module" if model else "all", unscales=accelerator)
        ]

    def backward(self, node: ast.Call, receiver, receiver_path: str | None, context: Context) -> Event:
        loss: ast.expr | None = receiver
        target, path, scaled = "all", None, False
        amp_scaler: str | None = None
        takes_loss = (
            receiver is None
            or names.callee_name(node) == "manual_backward"
            or (
                receiver_path is not None
                and (
                    receiver_path.endswith("autograd")
                    or self.kind(receiver_path) in ("accelerator", "engine", "optimizer", "lbfgs")
                    or names.is_accelerator_name(receiver_path)
                    or names.is_engine_name(receiver_path)
                    or names.is_optimizer_name(receiver_path)
                )
            )
        )
        if takes_loss:
            loss = node.args[0] if node.args else keyword(node, "loss") or keyword(node, "tensors")
            if receiver_path and (
                self.kind(receiver_path) == "engine" or names.is_engine_name(receiver_path)
            ):
                target, path, scaled = "engine", receiver_path, True
            elif receiver_path and self.role(receiver_path, "accelerator", names.is_accelerator_name):
                # divides by gradient_accumulation_steps, which is 1 unless the Accelerator was given it
                scaled = self.index.accelerator_scales or context.accumulating
        elif isinstance(loss, ast.Call) and names.callee_name(loss) == "scale" and loss.args:
            scaler = names.path_of(loss.func.value) if isinstance(loss.func, ast.Attribute) else None
            if scaler is not None and self.role(scaler, "scaler", names.is_scaler_name):
                amp_scaler = scaler
            loss = loss.args[0]  # scaler.scale(loss).backward(): AMP's scale, not the accumulation one
        retain = keyword(node, "retain_graph")
        event = Event(
            EventKind.BACKWARD,
            self.site(node),
            path,
            target,
            scaled=scaled,
            loops=context.loops,
            scaler=amp_scaler,
        )
        event.retain_graph = retain is not None and not (
            isinstance(retain, ast.Constant) and not retain.value
        )
        if loss is not None:
            event.forward_inline = any(isinstance(n, ast.Call) for n in walk(loss))
            event.scaled = event.scaled or is_scaled(loss)
            event.loss_name = root_name(loss)
        else:
            event.scaled = True
        self.backwards.append(event)
        return event

    def finish_backward(self, event: Event) -> None:
        """Once the whole function is read: was the loss scaled, and where is it computed?"""
        name = event.loss_name
        if name is None:
            return
        if name in self.params:
            event.loss_is_param = True
            event.scaled = True  # computed by a caller we do not follow here: say nothing
        assigned, loops, scaled = self.loss_assignments(name)
        event.loss_assigned = assigned
        event.loss_loops = loops
        if scaled:
            event.scaled = True

    def loss_assignments(self, name: str) -> tuple[bool, frozenset[Loop], bool]:
        """What the assignments of `name` say about a loss: whether there are any, the loops around
        them, whether one divides or multiplies it. The same for every backward of that name, and a
        block split at a correlated `if` records one assignment many times: asked once per name."""
        if name not in self.loss_facts:
            assignments = self.assignments.get(name, [])
            nodes = list({id(node): node for node, _ in assignments}.values())
            self.loss_facts[name] = (
                bool(assignments),
                frozenset(loop for _, loops in assignments for loop in loops),
                any(self.assignment_scales(node) for node in nodes),
            )
        return self.loss_facts[name]

    def assignment_scales(self, node: ast.AST) -> bool:
        if isinstance(node, ast.AugAssign) and isinstance(node.op, (ast.Div, ast.Mult)):
            return True
        value = getattr(node, "value", None)
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and value is not None:
            return is_scaled(value) or self.returns_scaled(value)
        return False

    def returns_scaled(self, value: ast.expr) -> bool:
        """`loss = compute_loss(...)` where compute_loss (same module) returns `loss / n`."""
        if not isinstance(value, ast.Call):
            return False
        function = self.resolve_function(value)
        if function is None:
            return False
        return any(
            isinstance(s, ast.Return) and s.value is not None and is_scaled(s.value)
            for s in own_statements(function.body)
        )

    def grad_method(self, node: ast.Call, callee: str, receiver: ast.expr, context: Context) -> list[Flow]:
        site = self.site(node)
        path, target = self.grad_owner(receiver, context)
        if callee == "fill_" and not fills_zero(node):
            # `p.grad.fill_(0.01)` sets the gradients the step is to apply, as `p.grad = g` does
            return [Event(EventKind.GRAD_WRITE, site, path, target)]
        if callee in names.GRAD_CLEARS:
            return [Event(EventKind.CLEAR, site, path, target)]
        if callee in names.GRAD_SCALINGS:
            return [Event(EventKind.SCALE, site, path, target)]
        return [Event(EventKind.GRAD_READ, site, path, target)]

    def grad_owner(self, access: ast.expr, context: Context) -> tuple[str | None, str]:
        """`p.grad` inside `for p in model.parameters()` belongs to `model`; otherwise to everything."""
        owner = root_path(access)
        model = context.parameter_loops.get(owner or "")
        return (model, "module") if model else (None, "all")

    def step(self, node: ast.Call, receiver_path: str | None, context: Context) -> list[Flow]:
        site = self.site(node)
        if self.role(receiver_path, "scaler", names.is_scaler_name):
            optimizer = names.path_of(node.args[0]) if node.args else None
            if optimizer is None:
                return []
            self.kinds.setdefault(optimizer, "optimizer")
            return [
                Event(
                    EventKind.STEP,
                    site,
                    optimizer,
                    "optimizer",
                    guard=context.guard,
                    loops=context.loops,
                    scaler=receiver_path,
                )
            ]
        if self.role(receiver_path, "scheduler", names.is_scheduler_name):
            if keyword(node, "epoch") is not None:
                return []  # `step(epoch=n)` sets the rate of step n: it does not run a step ahead
            return [
                Event(
                    EventKind.SCHEDULER_STEP,
                    site,
                    receiver_path,
                    "scheduler",
                    guard=context.guard,
                    loops=context.loops,
                )
            ]
        if self.role(receiver_path, "engine", names.is_engine_name):
            return [
                Event(EventKind.STEP, site, receiver_path, "engine", loops=context.loops),
                Event(EventKind.CLEAR, site, receiver_path, "engine"),
            ]
        target = "optimizer" if self.is_optimizer(receiver_path) else "maybe_optimizer"
        event = Event(EventKind.STEP, site, receiver_path, target, guard=context.guard, loops=context.loops)
        event.has_arguments = bool(node.args or node.keywords)
        closure = node.args[0] if node.args else keyword(node, "closure")
        if closure is not None:
            event.closure = self.closure(closure, receiver_path, context)
        return [event]

    def closure(self, closure: ast.expr, optimizer: str | None, context: Context) -> Flow:
        if isinstance(closure, ast.Lambda):
            return Seq(self.expression(closure.body, context))
        if isinstance(closure, ast.Name):
            function = self.nested.get(closure.id) or self.index.functions.get(closure.id)
            if function is not None:
                self.callees.add(function)
                self.closures.add(function)
                return Call(function, {}, self.site(closure))
        return Event(EventKind.UNKNOWN, self.site(closure), arguments=(optimizer,) if optimizer else ())

    def clear(self, node: ast.Call, receiver_path: str | None) -> Event:
        site = self.site(node)
        if receiver_path is None:
            return Event(EventKind.CLEAR, site)
        if self.role(receiver_path, "engine", names.is_engine_name):
            return Event(EventKind.CLEAR, site, receiver_path, "engine")
        if self.is_optimizer(receiver_path):
            # accelerate gates the prepared optimizer's zero_grad() by the last sync state, wherever it is
            return Event(
                EventKind.CLEAR, site, receiver_path, "optimizer", on_purpose=self.index.uses_accumulate
            )
        return Event(EventKind.CLEAR, site, receiver_path, "module")

    def unknown_call(self, node: ast.Call, callee: str, receiver_path: str | None) -> list[Flow]:
        paths = [names.path_of(a) for a in (*node.args, *(k.value for k in node.keywords))]
        arguments = [a for a in paths if a is not None]
        if receiver_path and callee not in names.OPTIMIZER_READS and self.is_optimizer(receiver_path):
            # SAM's first_step(zero_grad=True), Horovod's synchronize(): the optimizer's own business
            return [Event(EventKind.UNKNOWN, self.site(node), arguments=(receiver_path,))]
        if not arguments:
            return []
        harmless = names.HARMLESS_CALLEE_WORDS
        if any(self.is_optimizer(argument) for argument in arguments):
            # `loss_scaler(loss, optimizer)` steps; `get_scheduler(optimizer)` does not
            harmless = names.OPTIMIZER_SAFE_WORDS
            if names.is_scheduler_constructor(node):
                return []
        if names.words(callee) & harmless:
            return []
        function_path = names.path_of(node.func) or ""
        if function_path.split(".", 1)[0] in names.PURE_MODULES and not names.is_optimizer_constructor(node):
            return []
        if receiver_path and names.words(names.last_name(receiver_path)) & harmless:
            return []
        if receiver_path and self.kind(receiver_path) in ("scheduler", "scaler", "accelerator"):
            return []
        return [Event(EventKind.UNKNOWN, self.site(node), arguments=tuple(arguments))]

    # --- following calls ----------------------------------------------------------------------
    def resolve_function(self, node: ast.Call):
        func = node.func
        if isinstance(func, ast.Name):
            return (
                self.nested.get(func.id)
                or self.enclosing_function(func.id)
                or self.index.functions.get(func.id)
            )
        if isinstance(func, ast.Attribute):
            receiver = names.path_of(func.value)
            if receiver == "self" and self.class_info is not None:
                return self.index.method(self.class_info, func.attr)
            class_name = self.instances.get(receiver or "")
            if class_name in self.index.classes:
                return self.index.method(self.index.classes[class_name], func.attr)
        return None

    def enclosing_function(self, name: str):
        owner = self.index.owner.get(self.function) if self.function is not None else None
        while owner is not None and isinstance(owner, FunctionNode):
            for statement in owner.body:
                if isinstance(statement, FunctionNode) and statement.name == name:
                    return statement
            owner = self.index.owner.get(owner)
        return None

    def follow(self, node: ast.Call, context: Context) -> list[Flow] | None:
        function = self.resolve_function(node)
        if function is None or function is self.function:
            return None
        registers: list[Flow] = []

        def bind(argument: ast.expr) -> str:
            path = names.path_of(argument)
            if path is not None:
                return path
            # `train(model, SGD(model.parameters()))`: the object exists only in this call
            path = f"<argument {argument.lineno}:{argument.col_offset}>"
            if isinstance(argument, ast.Call) and names.is_optimizer_constructor(argument):
                registers.append(
                    Register(path, self.parameter_sources(argument), names.callee_name(argument) == "LBFGS")
                )
            return path

        self.callees.add(function)
        params = parameters(function)
        is_method = isinstance(node.func, ast.Attribute) and self.index.class_of(function) is not None
        bindings: dict[str, str | None] = {}
        if is_method and params:
            assert isinstance(node.func, ast.Attribute)  # is_method says so
            bindings[params[0]] = names.path_of(node.func.value)
            params = params[1:]
        positional = [p for p in params if p not in {k.arg for k in node.keywords}]
        for param, argument in zip(positional, node.args):
            if isinstance(argument, ast.Starred):
                break
            bindings[param] = bind(argument)
        for keyword_argument in node.keywords:
            if keyword_argument.arg in params:
                bindings[keyword_argument.arg] = bind(keyword_argument.value)
        return [*registers, Call(function, bindings, self.site(node), guarded=context.guard is not None)]

    # --- helpers ------------------------------------------------------------------------------
    def parameter_sources(self, constructor: ast.Call) -> tuple[str, ...]:
        """The models whose parameters an optimizer gets: `Adam(model.parameters())` -> model."""
        sources: set[str] = set()
        pending = [*constructor.args, *(k.value for k in constructor.keywords)]
        seen_names: set[str] = set()
        while pending:
            node = pending.pop()
            for sub in walk(node):
                if isinstance(sub, ast.Call) and names.callee_name(sub) in ("parameters", "named_parameters"):
                    owner = names.path_of(sub.func.value) if isinstance(sub.func, ast.Attribute) else None
                    if owner:
                        sources.add(owner)
                elif isinstance(sub, ast.Name) and sub.id not in seen_names:
                    seen_names.add(sub.id)
                    pending.extend(
                        value
                        for a, _ in self.assignments.get(sub.id, [])
                        if (value := getattr(a, "value", None)) is not None
                    )
        return tuple(sorted(sources))

    def scheduled_optimizer(self, constructor: ast.Call) -> str | None:
        """`StepLR(optimizer, 10)`, `get_scheduler("linear", optimizer=optimizer)` -> optimizer."""
        given = keyword(constructor, "optimizer")
        if given is not None:
            return names.path_of(given)
        paths = [names.path_of(argument) for argument in constructor.args]
        return next((path for path in paths if path is not None and self.is_optimizer(path)), None)

    def new_in_this_iteration(
        self, constructor: ast.Call, sources: tuple[str, ...], context: Context
    ) -> bool:
        """`SGD([x_in])` after `x_in = latents.detach().clone()`, or `SGD(net.parameters())` after
        `net = Net()`, both in this iteration: the tensors are new each time round, and what earlier
        iterations' backwards left in .grad is on tensors this optimizer does not hold."""
        if not context.loops:
            return False
        params = constructor.args[0] if constructor.args else keyword(constructor, "params")
        if isinstance(params, (ast.List, ast.Tuple)) and params.elts:
            made = [self.made_in_this_iteration(e, context) for e in params.elts]
            return all(
                isinstance(v, ast.Call) and names.callee_name(v) in names.NEW_TENSOR_CALLS for v in made
            )
        made = [self.made_in_this_iteration(ast.Name(source), context) for source in sources]
        return (
            bool(made)
            and all(  # a class built here (`Net()`), not a factory that may cache
                isinstance(v, ast.Call) and names.callee_name(v)[:1].isupper() for v in made
            )
        )

    def made_in_this_iteration(self, element: ast.expr, context: Context) -> ast.expr | None:
        """The value `name = value` gave it last, when that was in the innermost loop around here."""
        name = element.id if isinstance(element, ast.Name) else None
        made = [  # `x_in = ...`, not `x_in.requires_grad = True`
            (node, loops)
            for node, loops in self.assignments.get(name or "", [])
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
        ]
        if not made or context.loops[-1] not in made[-1][1]:
            return None
        return made[-1][0].value

    def fetched_locals(self) -> set[str]:
        """Locals only ever bound to an object that exists already: `opt = self.opt`, `opts[i]`,
        `getattr(self, f"optim{i}")` (a call, `make_optimizer()`, may build a new one)."""
        return {
            name
            for name, assigned in self.assignments.items()
            if all(
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and (
                    isinstance(node.value, (ast.Attribute, ast.Subscript))
                    or (isinstance(node.value, ast.Call) and names.callee_name(node.value) == "getattr")
                )
                for node, _ in assigned
            )
        }

    def site(self, node: ast.expr | ast.stmt) -> Site:
        return Site(location_of(node, self.lines), names.segment(self.lines, node))

    def mark_clears_instead_of_steps(self, *arms: Seq) -> None:
        """`if not finite: optimizer.zero_grad() else: optimizer.step()`: the clear drops the batch on
        purpose."""
        steps = [self.has_step(arm) for arm in arms]
        if not any(steps):
            return
        for arm, steps_here in zip(arms, steps):
            if not steps_here:
                for event in walk_events(arm):
                    if event.kind is EventKind.CLEAR:
                        event.on_purpose = True

    def has_step(self, flow: Flow) -> bool:
        if flow not in self.steps_inside:
            self.steps_inside[flow] = (isinstance(flow, Event) and flow.kind is EventKind.STEP) or any(
                self.has_step(part) for part in parts(flow)
            )
        return self.steps_inside[flow]


def selects_parameters(node: ast.If, parameter_loops: dict[str, str]) -> bool:
    """An `if` inside a loop over parameters whose test reads only the parameter (`p.requires_grad`,
    `p.grad is not None`, `"bias" in name`) and whose arms do not leave the loop early."""
    test_names = {n.id for n in walk(node.test) if isinstance(n, ast.Name)}
    exits = (ast.Break, ast.Continue, ast.Return, ast.Raise)
    return (
        bool(test_names)
        and test_names <= set(parameter_loops)
        and not any(isinstance(s, exits) for s in own_statements([*node.body, *node.orelse]))
    )


def merge_manual_updates(flows: list[Flow]) -> list[Flow]:
    """`w -= lr * w.grad; b -= lr * b.grad`: hand-written updates of several tensors, one after the
    other, are one step of all of them, not a second step re-applying what the first applied."""
    merged: list[Flow] = []
    previous: Flow | None = None  # the last flow that is more than a read of .grad (the update's own)
    for flow in flows:
        if is_manual_step(flow) and previous is not None and is_manual_step(previous):
            continue
        merged.append(flow)
        if not (isinstance(flow, Event) and flow.kind is EventKind.GRAD_READ):
            previous = flow
    return merged


def is_manual_step(flow: Flow) -> bool:
    return isinstance(flow, Event) and flow.kind is EventKind.STEP and flow.target == "manual"


def fills_zero(call: ast.Call) -> bool:
    """`fill_(0)`, `fill_(0.0)`, `fill_(value=0)`: a clear; any other value is a gradient of its own."""
    value = call.args[0] if call.args else keyword(call, "value")
    return isinstance(value, ast.Constant) and type(value.value) in (int, float) and value.value == 0


def mark_skipping_clears(flows: list[Flow]) -> None:
    """`optimizer.zero_grad(); continue`: the clear drops a bad batch and skips its step on purpose."""
    exits = [i for i, f in enumerate(flows) if isinstance(f, Exit)]
    if not exits:
        return
    for index, flow in enumerate(flows[: exits[0]]):
        later = flows[index + 1 : exits[0]]
        if (
            isinstance(flow, Event)
            and flow.kind is EventKind.CLEAR
            and not any(isinstance(f, Event) and f.kind is EventKind.STEP for f in later)
        ):
            flow.on_purpose = True
