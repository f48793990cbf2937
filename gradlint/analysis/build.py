"""From `ast` to flow: find the gradient events in each function and keep the control flow around them."""

from __future__ import annotations

import ast
import copy
import sys
from dataclasses import dataclass, field, replace
from typing import cast

from gradlint.analysis import names
from gradlint.analysis.facts import LoopSite, Site
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
    parts,
    prune,
    walk_events,
)
from gradlint.analysis.flow import walk as walk_flow
from gradlint.analysis.nodes import children, walk
from gradlint.analysis.program import ClassRef, Program
from gradlint.analysis.scope import MANUAL, location_of, scan_instances, scan_kinds, value_kind
from gradlint.analysis.shapes import (
    FunctionNode,
    ArmPath,
    accumulation_bound,
    arm_paths,
    assigned_names,
    assigned_paths,
    assumptions,
    call_children,
    draws_data,
    grad_owners,
    grad_owners_of_args,
    has_correlated_if,
    has_modulo,
    is_accumulation_guard,
    is_collection,
    is_grad_access,
    is_none_check,
    is_scaled,
    keyword,
    local_names,
    module_statements,
    on_other_arms,
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
from gradlint.project import Module


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
        self, program: Program, module: Module, function: ast.FunctionDef | ast.AsyncFunctionDef | None
    ) -> None:
        self.program = program
        self.module = module
        self.index = index = program.index(module)
        self.lines = module.lines
        self.path = program.path(module)  # what this function's sites are labelled with
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
        self.backward_calls: dict[Event, ast.Call] = {}
        # backwards through a framework set to divide by the accumulation count -> where it is set
        self.framework_divisions: dict[Event, ast.AST] = {}
        self.arms: dict[ast.stmt, ArmPath] | None = None  # built when a backward's loss is looked up
        # whether a flow holds a STEP, asked of every arm of every `if`: remembered, so that a chain
        # of n `elif`s (each nested in the last one's else) is read once, not n times
        self.steps_inside: dict[Flow, bool] = {}
        self.assignments: dict[str, list[tuple[ast.AST, tuple[Loop, ...]]]] = {}
        self.fresh_registers: dict[Loop, list[Register]] = {}  # replayed at the top of each iteration
        self.counters: dict[str, str] = {}  # a loop's counter -> its first-iteration key
        self.outer_kinds: dict[ast.AST, dict[str, str]] = {}  # enclosing function -> its kinds
        body = self.body()
        # defs anywhere in this body, `def closure():` inside the training loop included
        self.nested = {s.name: s for s in own_statements(body) if isinstance(s, FunctionNode)}
        if function is not None and not isinstance(function, ast.Lambda):
            scan_kinds(body, self.kinds)
            scan_instances(body, self.instances, index.classes)
        if program.project is not None:
            self.scan_project_instances(body)
        for param in self.params:
            if names.is_optimizer_name(param) and not names.is_scheduler_name(param):
                self.kinds.setdefault(param, "optimizer")
            elif names.is_scaler_name(param):
                self.kinds.setdefault(param, "scaler")
            elif names.is_fabric_name(param):
                self.kinds.setdefault(param, "fabric")
            elif names.is_accelerator_name(param):
                self.kinds.setdefault(param, "accelerator")
        self.locals = local_names(function) if function is not None else assigned_names(body)

    def body(self) -> list[ast.stmt]:
        if self.function is None:
            return module_statements(self.index.tree)
        return self.function.body

    def build(self) -> Flow:
        framework = self.framework_loop()
        if framework is None:
            flow: Flow = self.block(self.body(), Context(), top=True)
        else:
            # the framework calls this once per batch: its body is the body of that loop, and
            # leaving it (`return loss`) ends one iteration
            body = self.block(self.body(), Context(loops=(framework,)), top=True)
            for node in walk_flow(body):
                if isinstance(node, Exit) and node.kind == "return":
                    node.kind = "continue"
            items: list[Flow] = list(body.items)
            if self.steps_after_training_step():
                # transformers' Trainer steps and clears after each training_step (one accumulation
                # step assumed: a larger count is not visible here), however the override leaves it
                site = Site(location_of(self.function, self.lines), "self.optimizer.step()")  # the Trainer's
                after = Seq(
                    [
                        Event(EventKind.STEP, site, "self.optimizer", "optimizer", loops=(framework,)),
                        Event(EventKind.CLEAR, site, "self.optimizer", "optimizer"),
                    ]
                )
                items = [Try([Seq(items)], [], Seq(), after)]
            framework.body = Seq([*self.fresh_registers.pop(framework, []), *items])
            framework.accumulates = framework.accumulates or any(
                e.kind is EventKind.STEP and is_accumulation_guard(e.guard) for e in walk_events(body)
            )
            flow = Seq([framework])
        for event in self.backwards:
            self.finish_backward(event)
        for event, setting in self.framework_divisions.items():
            self.find_second_division(event, setting)
        return prune(flow) or Seq()

    def framework_loop(self) -> Loop | None:
        """Lightning's `training_step` under manual optimization (`self.automatic_optimization =
        False`, `self.manual_backward(loss)`): the trainer calls it once per batch with a growing
        `batch_idx`, so a clear there runs every batch and a step under `batch_idx % n` every n.
        Likewise a transformers `Trainer` subclass's `training_step(self, model, inputs)`, after
        which the Trainer steps."""
        function = self.function
        if (
            not isinstance(function, FunctionNode)
            or function.name != "training_step"
            or self.class_info is None
            or not (self.manual_optimization(self.class_info) or self.steps_after_training_step())
        ):
            return None
        loops = (ast.For, ast.AsyncFor, ast.While)
        if any(
            isinstance(inner, ast.Return)
            for statement in own_statements(function.body)
            if isinstance(statement, loops)
            for inner in own_statements(statement.body)
        ):
            return None  # a return that leaves an inner loop too: no `continue` says that
        params = parameters(function)[1:3]
        header = "the trainer's loop"
        if params:
            header = f"for {', '.join(reversed(params))} in the trainer's batches"
        loop = Loop(Seq(), LoopSite(location_of(function, self.lines), header, ""), "repeat")
        loop.draws_data = True
        return loop

    def steps_after_training_step(self) -> bool:
        """An override of transformers' `Trainer.training_step(self, model, inputs, ...)`: its class
        derives from a `...Trainer`, and the Trainer's loop steps after each call."""
        function = self.function
        if not isinstance(function, FunctionNode) or self.class_info is None:
            return False
        return parameters(function)[1:3] == ["model", "inputs"] and any(
            names.last_name(names.path_of(base) or "").endswith("Trainer")
            for base in self.class_info.node.bases
        )

    def manual_optimization(self, info) -> bool:
        """The module optimizes by hand: it turns automatic optimization off, or calls manual_backward."""
        for method in info.methods.values():
            for statement in own_statements(method.body):
                if (
                    isinstance(statement, ast.Assign)
                    and isinstance(statement.value, ast.Constant)
                    and statement.value.value is False
                    and any(names.path_of(t) == "self.automatic_optimization" for t in statement.targets)
                ):
                    return True
        training_step = info.methods.get("training_step")
        return training_step is not None and any(
            isinstance(node, ast.Call) and names.callee_name(node) == "manual_backward"
            for node in walk(training_step)
        )

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
        if root in self.locals and self.function is not None:
            return None
        enclosing = self.enclosing_kinds(root)
        if enclosing is not None:  # a closure's variable: `accelerator` of the function around it
            return enclosing.get(path)
        return self.index.kinds.get(path)  # the module's own names are the index's

    def enclosing_kinds(self, root: str) -> dict[str, str] | None:
        """The kinds of the innermost enclosing function that binds `root` (None: no function does)."""
        owner = self.index.owner.get(self.function) if self.function is not None else None
        while isinstance(owner, FunctionNode):
            if root in local_names(owner):
                if owner not in self.outer_kinds:
                    kinds: dict[str, str] = {}
                    scan_kinds(owner.body, kinds)
                    self.outer_kinds[owner] = kinds
                return self.outer_kinds[owner]
            owner = self.index.owner.get(owner)
        return None

    def builds_optimizer(self, call: ast.Call) -> bool:
        """`torch.optim.AdamW(...)`, or `optimizer_class(...)` of a class chosen at run time."""
        chosen_class = self.kind(names.path_of(call.func)) == "optimizer_class"
        return names.is_optimizer_constructor(call) or chosen_class

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
        tests = [ast.dump(s.test) if isinstance(s, ast.If) else None for s in body]
        for index, statement in enumerate(body):
            if (
                isinstance(statement, ast.If)
                and tests[index] in tests[index + 1 :]
                and has_correlated_if(body, index)
                and not self.tracks_both_arms(statement.test)
                and self.holds_gradient_code(
                    [s for s, test in zip(body[index:], tests[index:]) if test == tests[index]]
                )
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
            decided = self.argument_test(statement, body[index + 1 :])
            if decided is not None:
                return Seq([*flows, self.split_on_argument(statement, decided, body[index + 1 :], context)])
            flows.extend(self.statement(statement, context))
        flows = merge_manual_updates(flows)
        if not top:  # a function's own last `return` does not skip anything
            mark_skipping_clears(flows)
        return Seq(flows)

    def tracks_both_arms(self, test: ast.expr) -> bool:
        """Whether each arm of `if test:` remembers its outcome, so a later `if` on the same test
        takes the same arm without the rest of the block being built once per arm."""
        known = self.tracked_assumptions(test)
        return len(known) == 2 and all(known)

    def holds_gradient_code(self, statements: list[ast.stmt]) -> bool:
        """Whether any of these statements can be a gradient event or call one (`if args.amp:` around
        a backward): `if args.perturb:` twice around data code is no reason to split the paths."""
        for statement in statements:
            for node in walk(statement):
                if isinstance(node, ast.Attribute) and node.attr in names.GRADIENT_ATTRIBUTES:
                    return True
                if names.is_order_call(node):
                    return True
                if isinstance(node, ast.Call) and self.resolve_function(node) is not None:
                    return True
        return False

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

    def argument_test(self, statement: ast.stmt, rest: list[ast.stmt]) -> ast.expr | None:
        """`loss_scaler(loss, optimizer, update_grad=(i + 1) % n == 0)`: a test handed to a function
        of the program, which decides by it (`if update_grad: step`), while this block may test it
        again (`if (i + 1) % n == 0: zero_grad()`). Both are one choice per iteration."""
        call = getattr(statement, "value", None)
        if not isinstance(statement, (ast.Expr, ast.Assign)) or not isinstance(call, ast.Call):
            return None
        for argument in (*call.args, *(k.value for k in call.keywords)):
            if not isinstance(argument, (ast.Compare, ast.BoolOp, ast.UnaryOp)):
                continue
            if any(isinstance(n, (ast.Call, ast.NamedExpr, ast.Await)) for n in walk(argument)):
                continue
            shape = ast.dump(argument)
            tested_again = any(isinstance(s, ast.If) and ast.dump(s.test) == shape for s in rest)
            followed = self.resolve_function(call) is not None or self.late_bound(call) is not None
            if (has_modulo(argument) or tested_again) and followed:
                return argument
        return None

    def split_on_argument(
        self, statement: ast.stmt, argument: ast.expr, rest: list[ast.stmt], context: Context
    ) -> Branch:
        """The rest of the block once with the test true and once false, the call given the constant."""
        if has_modulo(argument) and context.loops:
            context.loops[-1].accumulates = True  # micro-batches add up until the test holds
        arms: list[Flow] = []
        for value in (True, False):
            decided = DecideArgument(argument, value).visit(copy.deepcopy(statement))
            arms.append(self.block([decided, *specialise(rest, argument, value)], context))
        return Branch(arms)

    def forgotten(self, assigned: set[str]) -> tuple[str, ...]:
        """The tested paths an assignment changes: the names assigned, and what is reached through
        them (`for param in params:` makes `param.grad` another tensor's on each iteration)."""
        return tuple(
            sorted(
                path
                for path in self.index.tested_paths
                if path in assigned or split_root_name(path) in assigned
            )
        )

    def tracked_assumptions(self, test: ast.expr) -> tuple[tuple[tuple[str, bool], ...], ...]:
        """What each arm knows; `if a and b:` knows both in its first arm, nothing in the other."""
        if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
            facts = tuple(
                known[0] for part in test.values for known in [self.tracked_assumptions(part)] if known
            )
            return (tuple(fact for arm in facts for fact in arm), ()) if facts else ()
        first = first_iteration_test(test, self.counters)
        if first is not None:
            key, truth = first
            return (((key, truth),), ((key, not truth),))
        if isinstance(test, ast.Attribute) and test.attr == "requires_grad" and isinstance(test.value, ast.Name):
            # `if loss.requires_grad:` is true wherever autograd records, false under no_grad()
            return (((GRAD_MODE_KEY, True),), ((GRAD_MODE_KEY, False),))
        known = assumptions(test)
        # a test of a parameter is decided by the caller's argument (`if update_grad:`)
        if not known or (known[0][0] not in self.index.tracked_tests and known[0][0] not in self.params):
            return ()
        return ((known[0],), (known[1],))

    def for_loop(self, node: ast.For | ast.AsyncFor, context: Context) -> list[Flow]:
        iterable = self.expression(node.iter, context)
        if is_collection(node.iter):
            # Over parameters or optimizers: one update, not a repetition of the training step.
            inner = replace(context, parameter_loops=dict(context.parameter_loops))
            # whose parameters they are, "" when that cannot be told: an `if` on the element then
            # still picks elements, not paths (`if p.grad is not None: p.grad.zero_()`)
            model = parameters_owner(node.iter) or ""
            inner.parameter_loops.update({n.id: model for n in walk(node.target) if isinstance(n, ast.Name)})
            body = self.block(node.body, inner)
            forgotten = self.forgotten(assigned_paths(node))
            if forgotten:  # what an `if` learnt of one element is not known of the next
                body.items.insert(0, Forget(forgotten))
            return [*iterable, body, self.block(node.orelse, context)]
        header = f"for {names.segment(self.lines, node.target)} in {names.segment(self.lines, node.iter)}"
        loop = Loop(
            Seq(),
            LoopSite(location_of(node, self.lines), header, names.segment(self.lines, node.target), self.path),
            "repeat",
        )
        loop.iterable = names.segment(self.lines, unwrap_iterable(node.iter))
        counter = counter_of(node)
        if counter is not None:
            loop.first = f"{FIRST_KEY}{node.lineno}:{node.col_offset}>"
            self.counters[counter] = loop.first
        loop.count = accumulation_bound(node.iter)
        loop.draws_data = draws_data(node)
        loop.whole_window = uses_the_other_parts(node)
        self.record_targets(node.target, node, (*context.loops, loop))
        body = self.block(node.body, replace(context, loops=(*context.loops, loop), guard=None))
        loop.accumulates = loop.accumulates or any(
            e.kind is EventKind.STEP and is_accumulation_guard(e.guard) for e in walk_events(body)
        )
        forgotten = self.forgotten(assigned_paths(node))
        fresh: list[Flow] = list(self.fresh_registers.pop(loop, []))
        loop.body = Seq([*fresh, Forget(forgotten), *body.items]) if forgotten else Seq([*fresh, *body.items])
        return [*iterable, loop, self.block(node.orelse, context)]

    def while_loop(self, node: ast.While, context: Context) -> list[Flow]:
        forever = isinstance(node.test, ast.Constant) and bool(node.test.value)
        header = f"while {names.segment(self.lines, node.test)}"
        loop = Loop(
            Seq(), LoopSite(location_of(node, self.lines), header, "", self.path), "forever" if forever else "repeat"
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
                held = names.path_of(item.optional_vars)
                kind = value_kind(call, self.kinds) if held else None
                if held and kind:  # `with torch.profiler.profile(...) as prof:`
                    self.kinds.setdefault(held, kind)
        if gated:
            if context.loops:
                context.loops[-1].accumulates = True
            inner = replace(context, accumulating=True)
            return [*flows, Branch([self.block(node.body, inner), Gate(self.block(node.body, inner))])]
        body = self.block(node.body, context)
        if any(is_no_grad(item.context_expr) for item in node.items):
            return [*flows, NoGrad(body)]
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
        forgotten = self.forgotten(assigned_paths(node))
        if forgotten:
            flows.append(Forget(forgotten))
        built = self.built_class(value)
        for target in targets:
            self.record_targets(target, node, context.loops)
            if built is not None and isinstance(node, ast.Assign) and (path := names.path_of(target)):
                flows.append(Instance(path, built))
            if isinstance(node, ast.Assign) and isinstance(value, ast.Call) and self.builds_optimizer(value):
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

    def built_class(self, value: ast.expr | None) -> ClassRef | None:
        """The project class `value` constructs (`Trainer(...)`, `misc.NativeScaler()`), if any."""
        if not isinstance(value, ast.Call) or not self.program.class_methods():
            return None
        class_path = names.path_of(value.func)
        return self.program.class_named(self.module, class_path) if class_path else None

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
            return [*self.expression(node.value, context), self.grad_read(node, context)]
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
        return [Loop(Seq(flows), LoopSite(location_of(node, self.lines), header, "", self.path), "repeat")]

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
            for flow in followed:
                if isinstance(flow, Call):
                    flow.arguments = self.arguments_of(node, flow.function)
            return followed
        return self.unfollowed(node, callee, receiver, receiver_path, context)

    def unfollowed(
        self, node: ast.Call, callee: str, receiver: ast.expr | None, receiver_path: str | None, context: Context
    ) -> list[Flow]:
        """A call of nothing the program defines: an event of a known API, or code we cannot see."""
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
                    or self.kind(receiver_path) in ("accelerator", "fabric", "engine", "optimizer", "lbfgs")
                    or names.is_accelerator_name(receiver_path)
                    or names.is_engine_name(receiver_path)
                    or names.is_optimizer_name(receiver_path)
                )
            )
        )
        if takes_loss:
            loss = node.args[0] if node.args else keyword(node, "loss") or keyword(node, "tensors")
            setting: ast.AST | None = None
            if receiver_path and (
                self.kind(receiver_path) == "engine" or names.is_engine_name(receiver_path)
            ):
                target, path, scaled = "engine", receiver_path, True
                setting = self.index.engine_accumulation
            elif receiver_path and self.role(receiver_path, "accelerator", divides_like_accelerate):
                # divides by gradient_accumulation_steps, which is 1 unless the Accelerator was given it
                # (Fabric's backward does not divide at all)
                scaled = self.index.accelerator_scales or context.accumulating
                setting = self.index.accelerator_accumulation
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
        self.backward_calls[event] = node
        if takes_loss and setting is not None:
            self.framework_divisions[event] = setting
        return event

    def finish_backward(self, event: Event) -> None:
        """Once the whole function is read: was the loss scaled, and where is it computed?"""
        name = event.loss_name
        if name is None:
            return
        assignments = self.assignments.get(name, [])
        event.loss_assigned = bool(assignments)
        event.loss_loops = frozenset(loop for _, loops in assignments for loop in loops)
        for node, _ in assignments:
            if self.on_other_arm(node, event):
                continue  # `if a: loss = x / n ... else: loss = y; loss.backward()`: not this loss
            if isinstance(node, ast.AugAssign) and isinstance(node.op, (ast.Div, ast.Mult)):
                event.scaled = True
            value = getattr(node, "value", None)
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and value is not None:
                if is_scaled(value) or self.returns_scaled(value):
                    event.scaled = True
        if name in self.params:
            event.loss_is_param = True
            event.scaled_here = event.scaled
            # computed by a caller: the interpreter asks the caller (handed_loss); with none, say nothing
            event.scaled = True

    def handed_loss(self, backward: Event, argument: ast.expr) -> Event:
        """`backward` of a loss its function was handed, as this function (the caller) wrote the
        argument: scaled here or in the helper, computed in this function's loops."""
        event = replace(
            backward,
            scaled=backward.scaled_here or is_scaled(argument),
            forward_inline=backward.forward_inline or any(isinstance(n, ast.Call) for n in walk(argument)),
            loss_name=root_name(argument),
            loss_is_param=False,
            loss_assigned=False,
            loss_loops=frozenset(),
            scaled_here=False,
        )
        self.finish_backward(event)
        return event

    def arguments_of(
        self, node: ast.Call, function: ast.FunctionDef | ast.AsyncFunctionDef
    ) -> dict[str, ast.expr]:
        """Which of the callee's parameters each argument of the call is for."""
        bound = isinstance(node.func, ast.Attribute) and self.program.class_of(function) is not None
        return argument_expressions(node, function, bound)

    def find_second_division(self, event: Event, setting: ast.AST) -> None:
        """`accelerator.backward(loss / args.gradient_accumulation_steps)` with the Accelerator given
        gradient_accumulation_steps: the framework divides, and so does the code (GL304)."""
        call = self.backward_calls[event]
        loss = call.args[0] if call.args else keyword(call, "loss")
        division = accumulation_division(loss) if loss is not None else None
        name = event.loss_name
        if division is None and name is not None and name not in self.params:
            for node, _ in self.assignments.get(name, []):
                if self.on_other_arm(node, event):
                    continue
                if (
                    isinstance(node, ast.AugAssign)
                    and isinstance(node.op, ast.Div)
                    and names_accumulation_count(node.value)
                ):
                    division = node
                elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                    division = accumulation_division(node.value)
                if division is not None:
                    break
        if division is None:
            return
        divisor = division.value if isinstance(division, ast.AugAssign) else division.right
        assert isinstance(divisor, ast.expr)
        if isinstance(setting, ast.keyword):
            framework = Site(
                location_of(setting, self.lines), f"{setting.arg}={names.segment(self.lines, setting.value)}"
            )
        else:  # the DeepSpeed config's "gradient_accumulation_steps" key
            assert isinstance(setting, ast.expr)
            framework = self.site(setting)
        event.scaled_twice = (self.site(division), framework, names.segment(self.lines, divisor))

    def on_other_arm(self, assignment: ast.AST, event: Event) -> bool:
        """Whether an assignment and a backward are in different arms of one `if`."""
        call = self.backward_calls.get(event)
        if call is None or not isinstance(assignment, ast.stmt):
            return False
        if self.arms is None:
            self.arms = arm_paths(self.body())
        if assignment not in self.arms:
            return False
        position = (call.lineno, call.col_offset)
        around = [
            statement
            for statement in self.arms
            if (statement.lineno, statement.col_offset)
            <= position
            <= (statement.end_lineno or statement.lineno, statement.end_col_offset or 0)
        ]
        if not around:
            return False
        innermost = max(around, key=lambda statement: (statement.lineno, statement.col_offset))
        return on_other_arms(self.arms[assignment], self.arms[innermost])

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
        return [self.grad_read(receiver, context, node)]

    def grad_read(self, access: ast.expr, context: Context, node: ast.expr | None = None) -> Event:
        """A read of `x.grad`; `arguments` names the tensor read, so the interpreter can tell a
        parameter's gradient (`model.fc.weight.grad`, logged) from an input's (FGSM's `x.grad`)."""
        path, target = self.grad_owner(access, context)
        event = Event(EventKind.GRAD_READ, self.site(node if node is not None else access), path, target)
        tensor = root_path(access)
        if tensor is not None:
            event.arguments = (tensor,)
        return event

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
        if not self.is_optimizer(receiver_path) and (
            self.kind(receiver_path) == "profiler"
            or (receiver_path is not None and names.is_not_optimizer_stepper(receiver_path))
        ):
            return []  # a profiler's, an EMA helper's, a curriculum's step: no optimizer's
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
            gated = self.index.uses_accumulate
            return Event(
                EventKind.CLEAR, site, receiver_path, "optimizer", on_purpose=gated, sync_gated=gated
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
        if receiver_path and self.kind(receiver_path) in ("scheduler", "scaler", "accelerator", "fabric"):
            return []
        return [Event(EventKind.UNKNOWN, self.site(node), arguments=tuple(arguments))]

    # --- following calls ----------------------------------------------------------------------
    def resolve_function(self, node: ast.Call):
        """The function a call runs, in this module or another module of the project; None when
        it is outside the program (a library, a name bound at run time)."""
        func = node.func
        if isinstance(func, ast.Name):
            local = (
                self.nested.get(func.id)
                or self.enclosing_function(func.id)
                or self.index.functions.get(func.id)
            )
            if local is not None:
                return local
            instance = self.instance_class(func.id)  # `loss_scaler(loss, optimizer)`: its __call__
            if instance is not None:
                return self.program.method(instance, "__call__")
            return self.program.function(self.module, func.id) or self.constructor(func.id)
        if isinstance(func, ast.Attribute):
            receiver = names.path_of(func.value)
            own_class = ClassRef(self.class_info, self.module) if self.class_info is not None else None
            if receiver == "self" and own_class is not None:
                return self.program.method(own_class, func.attr)
            if receiver in self.index.self_aliases:  # `d2l.f(...)` with `d2l = sys.modules[__name__]`
                return self.index.functions.get(func.attr)
            if is_super(func.value) and own_class is not None:
                return self.program.base_method(own_class, func.attr)
            instance = self.instance_class(receiver)
            if instance is not None:
                return self.program.method(instance, func.attr)
            if receiver is not None:
                dotted = f"{receiver}.{func.attr}"
                return self.program.function(self.module, dotted) or self.constructor(dotted)
        return None

    def constructor(self, class_path: str):
        """`Trainer(model, optimizer)`: the `__init__` a project class runs when it is built, which
        keeps what it is handed instead of doing something unknown with it."""
        if self.program.project is None:
            return None  # one module alone: its classes' constructors were never followed
        built = self.program.class_named(self.module, class_path)
        return self.program.method(built, "__init__") if built is not None else None

    def instance_class(self, path: str | None) -> ClassRef | None:
        """The project class whose instance `path` holds, when this function (or the module, or
        the class's own methods for `self.x`) assigned it from that class's constructor."""
        if path is None:
            return None
        class_path = self.instances.get(path)
        return self.program.class_named(self.module, class_path) if class_path else None

    def scan_project_instances(self, body: list[ast.stmt]) -> None:
        """`scaler = NativeScaler()` with the class imported from another project module, and
        `self.scaler = ...` in any method of this function's class."""
        statements = [(statement, True) for statement in own_statements(body)]
        if self.function is not None:  # the module's own globals: `scaler = NativeScaler()` at the top
            statements += [(statement, True) for statement in module_statements(self.index.tree)]
        if self.class_info is not None:
            for method in self.class_info.methods.values():
                if method is not self.function:
                    statements += [(statement, False) for statement in own_statements(method.body)]
        for statement, own in statements:
            if not (isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Call)):
                continue
            class_path = names.path_of(statement.value.func)
            if class_path is None or self.program.class_named(self.module, class_path) is None:
                continue
            for target in statement.targets:
                path = names.path_of(target)
                if path and (own or path.startswith("self.")):
                    self.instances.setdefault(path, class_path)

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
        late = self.late_bound(node)
        guarded = context.guard is not None
        if function is None or function is self.function:
            if late is None:
                return None
            callee = names.callee_name(node)
            receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
            fallback = self.unfollowed(node, callee, receiver, names.path_of(receiver) if receiver else None, context)
            return [Dispatch(late[0], late[1], node, self.site(node), None, fallback, guarded)]
        registers: list[Flow] = []

        def bind(argument: ast.expr) -> str:
            path = argument_key(argument)
            if path is not None:
                return path
            # `train(model, SGD(model.parameters()))`: the object exists only in this call
            path = f"<argument {argument.lineno}:{argument.col_offset}>"
            if isinstance(argument, ast.Call) and self.builds_optimizer(argument):
                registers.append(
                    Register(path, self.parameter_sources(argument), names.callee_name(argument) == "LBFGS")
                )
            return path

        self.callees.add(function)
        receiver = self.receiver_of(node, function)
        bindings = bind_arguments(node, function, receiver, bind)
        call = Call(function, bindings, self.site(node), guarded=guarded)
        if late is None:
            return [*registers, call]
        return [*registers, Dispatch(late[0], late[1], node, call.site, call, [], guarded)]

    def late_bound(self, node: ast.Call) -> tuple[str, str] | None:
        """(object, method) when which method this call runs depends on the class of an object this
        function is handed: `self.run_step()` (a subclass may override it), `scaler(loss, opt)` or
        `engine.step_fn(...)` on a parameter. Only for methods some project class defines."""
        methods = self.program.class_methods()
        func = node.func
        if isinstance(func, ast.Name):
            handed = func.id in self.params or (
                func.id not in self.locals and func.id in self.program.globals(self.module)
            )
            return (func.id, "__call__") if handed and "__call__" in methods else None
        if not isinstance(func, ast.Attribute):
            return None
        if func.attr not in methods:
            held = names.path_of(func)  # `self.loss_scaler(...)`: an object kept on self, called
            if held and held.startswith("self.") and "__call__" in methods and self.class_info is not None:
                if func.attr not in self.class_info.methods:
                    return held, "__call__"
            return None
        if func.attr in ("step", "zero_grad", "backward", "manual_backward"):
            return None
        receiver = names.path_of(func.value)
        if receiver is None:
            return None
        root = receiver.split(".", 1)[0].split("[", 1)[0]
        if receiver == "self" or root in self.params or (root == "self" and self.class_info is not None):
            return receiver, func.attr
        return None

    def receiver_of(self, node: ast.Call, function) -> str | None | bool:
        """What a method's `self` is bound to at this call: the object before the dot, the instance
        called (`scaler(...)` runs `__call__`), `self` for `super().m()`; False: not a method call."""
        if self.program.class_of(function) is None or isinstance(function, ast.Lambda):
            return False
        if function.name == "__init__" and not (isinstance(node.func, ast.Attribute) and is_super(node.func.value)):
            return None  # a constructor: the object being built has no name yet
        if isinstance(node.func, ast.Attribute):
            return "self" if is_super(node.func.value) else names.path_of(node.func.value)
        if isinstance(node.func, ast.Name) and function.name == "__call__":
            return node.func.id
        return False

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
        return Site(location_of(node, self.lines), names.segment(self.lines, node), self.path)

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


CONSTANT_KEY = "<constant "


def constant_key(value: bool) -> str:
    """What a parameter given `True` or `False` stands for: a test of it has one answer."""
    return f"{CONSTANT_KEY}{value}>"


class DecideArgument(ast.NodeTransformer):
    """A copy of a statement in which one argument, a test, is replaced by the constant it is taken to be."""

    def __init__(self, argument: ast.expr, value: bool) -> None:
        self.place = place_of(argument)
        self.value = value

    def visit(self, node: ast.AST):
        if isinstance(node, ast.expr) and place_of(node) == self.place:
            return ast.copy_location(ast.Constant(self.value), node)
        return self.generic_visit(node)


def place_of(node: ast.expr) -> tuple:
    return (type(node), node.lineno, node.col_offset, node.end_lineno, node.end_col_offset)


def argument_expressions(node: ast.Call, function, receiver_bound: bool) -> dict[str, ast.expr]:
    """Which of the callee's parameters each argument expression of the call is for; with
    `receiver_bound`, the first parameter is a method's `self`, bound to the receiver."""
    params = parameters(function)[1:] if receiver_bound else parameters(function)
    given = {k.arg for k in node.keywords}
    arguments: dict[str, ast.expr] = {}
    for param, argument in zip([p for p in params if p not in given], node.args):
        if isinstance(argument, ast.Starred):
            break
        arguments[param] = argument
    arguments.update({k.arg: k.value for k in node.keywords if k.arg in params})
    return arguments


def argument_key(argument: ast.expr) -> str | None:
    """The caller's object an argument is (`model`, `self.opt`), or the constant a test was taken to be."""
    if isinstance(argument, ast.Constant) and isinstance(argument.value, bool):
        return constant_key(argument.value)
    return names.path_of(argument)


def bind_arguments(node: ast.Call, function, receiver, bind=argument_key) -> dict[str, str | None]:
    """The caller's objects that `function`'s parameters stand for at this call; `receiver` is what
    a method's first parameter is bound to (False: not a method call)."""
    params = parameters(function)
    bindings: dict[str, str | None] = {}
    if receiver is not False and params:
        bindings[params[0]] = receiver
        params = params[1:]
    positional = [p for p in params if p not in {k.arg for k in node.keywords}]
    for param, argument in zip(positional, node.args):
        if isinstance(argument, ast.Starred):
            break
        bindings[param] = bind(argument)
    for keyword_argument in node.keywords:
        if keyword_argument.arg in params:
            bindings[keyword_argument.arg] = bind(keyword_argument.value)
    return bindings


FIRST_KEY = "<first iteration "
GRAD_MODE_KEY = "<grad mode>"


def counter_of(node: ast.For | ast.AsyncFor) -> str | None:
    """The name counting a loop's iterations from 0: `i` in `for i in range(n)` and
    `for i, x in enumerate(xs)` (no other start)."""
    iterable, target = node.iter, node.target
    if not isinstance(iterable, ast.Call) or not isinstance(iterable.func, ast.Name) or iterable.keywords:
        return None
    if iterable.func.id == "range" and len(iterable.args) == 1 and isinstance(target, ast.Name):
        return target.id
    if (
        iterable.func.id == "enumerate"
        and len(iterable.args) == 1
        and isinstance(target, ast.Tuple)
        and target.elts
        and isinstance(target.elts[0], ast.Name)
    ):
        return target.elts[0].id
    return None


def first_iteration_test(test: ast.expr, counters: dict[str, str]) -> tuple[str, bool] | None:
    """(key, truth on the first iteration) for `i == 0`, `i != 0`, `i > 0`, `not i` on a counter."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = first_iteration_test(test.operand, counters)
        return None if inner is None else (inner[0], not inner[1])
    if isinstance(test, ast.Name) and test.id in counters:
        return counters[test.id], False
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.left, ast.Name)):
        return None
    right = test.comparators[0]
    if test.left.id not in counters or not (isinstance(right, ast.Constant) and right.value == 0):
        return None
    truths = {ast.Eq: True, ast.NotEq: False, ast.Gt: False, ast.LtE: True}
    truth = truths.get(type(test.ops[0]))
    return None if truth is None else (counters[test.left.id], truth)


def is_no_grad(context: ast.expr) -> bool:
    """`torch.no_grad()`, `th.inference_mode()`, `no_grad()`: autograd records nothing inside."""
    if not (isinstance(context, ast.Call) and names.callee_name(context) in ("no_grad", "inference_mode")):
        return False
    return isinstance(context.func, ast.Name) or names.path_of(context.func) in (
        "torch.no_grad",
        "th.no_grad",
        "torch.inference_mode",
        "th.inference_mode",
    )


def split_root_name(path: str) -> str:
    """`param.grad` -> `param`; `opts[0].x` -> `opts`."""
    return path.split(".", 1)[0].split("[", 1)[0]


def is_super(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def accumulation_division(loss: ast.expr) -> ast.BinOp | None:
    """`loss / gradient_accumulation_steps`, `(loss / accum).mean()`: the loss itself divided by a
    name that says accumulation count."""
    node: ast.AST = loss
    while True:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            return node if names_accumulation_count(node.right) else None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            node = node.func.value
        elif isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        else:
            return None


def names_accumulation_count(divisor: ast.expr) -> bool:
    """`args.gradient_accumulation_steps`, `accum_steps`, `config["gradient_accumulation_steps"]`."""
    return names.has_word(divisor, names.ACCUMULATION_WORDS) or any(
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and bool(names.words(node.value) & names.ACCUMULATION_WORDS)
        for node in walk(divisor)
    )


def divides_like_accelerate(path: str) -> bool:
    """An accelerator by its name, and not Lightning Fabric's (`fabric.backward` does not divide)."""
    return names.is_accelerator_name(path) and not names.is_fabric_name(path)


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
