"""GL501's analysis: tensors that carry an autograd graph, accumulated into a variable that outlives
the loop iteration (`total += loss`), keeping every iteration's graph alive.

Each function (and the module body) is read on its own, statement by statement in order. A name
*carries a graph* when it must hold one on every path: a loss that reaches `backward()`, the output
of calling a model (an object whose `.parameters()` an optimizer gets, or that is put in `train()`
/ `eval()` mode), or arithmetic on either. `.item()`, `.detach()`, `float()`, `.data`, comparisons,
`argmax()` and anything computed under `torch.no_grad()` do not carry one; an unknown function's
result is assumed not to (precision first). An accumulation is `t += x`, `t = t + x`,
`t.append(x)`, `t.extend(x)`, `t.add_(x)` inside a loop, with `x` carrying a graph and `t` not
re-bound on every iteration of that loop (nor, for a loss already backpropagated, anywhere in it:
once `backward()` has freed its buffers, a window's `running_loss = 0` after the step bounds what
it holds to a few graph nodes). An accumulator that later reaches a backward pass
(`torch.stack(losses).mean().backward()`) or is returned holds its graphs on purpose.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

from gradlint.analysis import names
from gradlint.analysis.facts import GraphLeak, Site
from gradlint.analysis.nodes import children, walk
from gradlint.analysis.scope import location_of, loop_site
from gradlint.analysis.shapes import (
    FunctionNode,
    draws_data,
    keyword,
    module_statements,
    own_nodes,
    own_statements,
    root_name,
)

# Methods whose result has no graph: a Python number, a detached tensor, integers or booleans.
DETACHING_METHODS = {
    "item", "detach", "detach_", "tolist", "numpy", "argmax", "argmin", "argsort", "eq", "ne", "gt",
    "lt", "ge", "le", "long", "int", "bool", "size", "dim", "numel", "nelement", "isnan", "isinf",
    "isfinite", "nonzero", "count_nonzero", "backward", "element_size", "stride", "data_ptr",
}  # fmt: skip
DETACHING_FUNCTIONS = {"float", "int", "bool", "len", "str", "round", "repr", "format", "isinstance"}
NON_GRAPH_ATTRIBUTES = {"data", "grad", "shape", "dtype", "device", "requires_grad", "ndim", "is_cuda"}
# Functions whose result is a tensor computed from their tensor arguments.
TENSOR_MODULES = {"torch", "F", "functional", "nn"}
TENSOR_BUILTINS = {"sum", "max", "min", "abs"}
NO_GRAD_CONTEXTS = {"no_grad", "inference_mode"}
ACCUMULATING_METHODS = {"append", "extend", "add_", "insert"}
MODE_METHODS = {"train", "eval"}
BACKWARDS = {"backward", "manual_backward"}
LOSS_WORDS = {"loss", "criterion", "crit"}


@dataclass
class Carried:
    """Why a value holds a graph: the line that builds or backpropagates it."""

    origin: Site
    what: str  # `loss.backward()` / `model(x)`
    backpropagated: bool = False  # backward() freed its saved tensors: only the nodes are kept


State = dict  # name -> Carried, or None for a name known to hold no graph (computed under no_grad)


def find_graph_leaks(tree: ast.Module, lines: list[str]) -> set[GraphLeak]:
    module = ModuleShape.of(tree)
    if not module.backpropagating and not module.models:
        return set()
    leaks: set[GraphLeak] = set()
    with_grad: set[str] | None = None
    for function in module.looping:
        if not module.models and function not in module.backpropagating:
            # no model's output to carry a graph, and no backward pass among its own nodes (what
            # backward_losses() reads is a part of what ModuleShape found): nothing can leak here
            continue
        if function is None:
            body, forwards = module_statements(tree), module.models
        elif runs_without_grad(function):
            continue
        elif function in module.backpropagating:
            body, forwards = function.body, module.models
        else:
            # a forward pass records a graph only if grad mode is on, which the callers decide
            if with_grad is None:
                with_grad = called_with_grad(tree, module.backpropagating)
            body, forwards = function.body, module.models if function.name in with_grad else set()
        leaks |= FunctionLeaks(body, lines, forwards).run()
    return leaks


@dataclass
class ModuleShape:
    """One walk over the module: what each function holds that this analysis needs."""

    models: set[str]
    backpropagating: set[ast.AST | None]  # functions with a backward pass of their own (None: the module)
    looping: list[ast.FunctionDef | ast.AsyncFunctionDef | None]  # bodies with a loop of their own

    @classmethod
    def of(cls, tree: ast.Module) -> ModuleShape:
        shape = cls(set(), set(), [])
        looping: dict[ast.AST | None, None] = {}
        pending: list[tuple[ast.AST, ast.FunctionDef | ast.AsyncFunctionDef | None]] = [(tree, None)]
        while pending:
            node, owner = pending.pop()
            for child in children(node):
                child_owner = child if isinstance(child, FunctionNode) else owner
                if isinstance(child, (ast.For, ast.AsyncFor, ast.While)):
                    looping[owner] = None
                elif isinstance(child, ast.Call):
                    shape.read_call(child, owner)
                pending.append((child, child_owner))
        shape.looping = list(looping)  # type: ignore[arg-type]
        return shape

    def read_call(self, call: ast.Call, owner: ast.AST | None) -> None:
        if names.callee_name(call) in BACKWARDS:
            self.backpropagating.add(owner)
        if not isinstance(call.func, ast.Attribute):
            return
        path = names.path_of(call.func.value)
        if path is None or path == "self":
            return
        # a path whose call is a forward pass: an optimizer gets its parameters, or its mode is set
        if (call.func.attr in MODE_METHODS and not call.args) or call.func.attr == "parameters":
            self.models.add(path)


def called_with_grad(tree: ast.Module, backpropagating: set[ast.AST | None]) -> set[str]:
    """Functions of the module called only where grad mode is surely on: outside `no_grad()`, from
    the module body or from a function that itself runs a backward pass."""
    on: set[str] = set()
    unsure: set[str] = set()
    pending: list[tuple[ast.AST, bool]] = [(tree, True)]
    while pending:
        node, enabled = pending.pop()
        for child in children(node):
            child_enabled = enabled
            if isinstance(child, FunctionNode):
                child_enabled = child in backpropagating and not runs_without_grad(child)
            elif isinstance(child, (ast.With, ast.AsyncWith)) and any(disables_grad(i) for i in child.items):
                child_enabled = False
            elif isinstance(child, ast.Call):
                (on if enabled else unsure).add(names.callee_name(child))
            pending.append((child, child_enabled))
    return on - unsure


def runs_without_grad(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """`@torch.no_grad()` / `@torch.inference_mode()` on the function."""
    for decorator in function.decorator_list:
        call = decorator.func if isinstance(decorator, ast.Call) else decorator
        path = names.path_of(call) or ""
        if names.last_name(path) in NO_GRAD_CONTEXTS:
            return True
    return False


def disables_grad(item: ast.withitem) -> bool:
    call = item.context_expr
    if not isinstance(call, ast.Call):
        return False
    name = names.callee_name(call)
    if name in NO_GRAD_CONTEXTS:
        return True
    if name == "set_grad_enabled" and call.args:
        return isinstance(call.args[0], ast.Constant) and call.args[0].value is False
    return False


class FunctionLeaks:
    """One function body, read in order with the names that must hold a graph at each statement."""

    def __init__(self, body: list[ast.stmt], lines: list[str], models: set[str]) -> None:
        self.body = body
        self.lines = lines
        self.models = models
        self.leaks: set[GraphLeak] = set()
        self._reaching: dict[bool, set[str]] = {}

    def run(self) -> set[GraphLeak]:
        if not any(isinstance(node, (ast.For, ast.AsyncFor, ast.While)) for node in own_nodes(self.body)):
            return self.leaks  # nothing outlives an iteration without a loop
        self.backwards = dict(backward_losses(self.body, self.lines))  # loss name -> its backward
        if self.backwards or self.models:
            self.block(self.body, {}, loops=(), no_grad=False)
        return self.leaks

    def reaching(self, returned: bool) -> set[str]:
        if returned not in self._reaching:
            self._reaching[returned] = names_reaching(self.body, returned)
        return self._reaching[returned]

    def site(self, node: ast.expr | ast.stmt) -> Site:
        return Site(location_of(node, self.lines), names.segment(self.lines, node))

    # --- statements -------------------------------------------------------------------------------
    def block(self, body: list[ast.stmt], state: State, loops: tuple[ast.stmt, ...], no_grad: bool) -> State:
        for statement in body:
            state = self.statement(statement, state, loops, no_grad)
        return state

    def statement(self, node: ast.stmt, state: State, loops: tuple[ast.stmt, ...], no_grad: bool) -> State:
        if isinstance(node, (*FunctionNode, ast.ClassDef)):
            return state
        if isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            return self.loop(node, state, loops, no_grad)
        if isinstance(node, ast.If):
            then = self.block(node.body, dict(state), loops, no_grad)
            otherwise = self.block(node.orelse, dict(state), loops, no_grad)
            return meet(then, otherwise)
        if isinstance(node, (ast.With, ast.AsyncWith)):
            inner = no_grad or any(disables_grad(item) for item in node.items)
            return self.block(node.body, state, loops, inner)
        if isinstance(node, ast.Try):
            after = self.block(node.body, dict(state), loops, no_grad)
            arms = [self.block(h.body, dict(state), loops, no_grad) for h in node.handlers]
            after = self.block(node.orelse, after, loops, no_grad)
            for arm in arms:
                after = meet(after, arm)
            return self.block(node.finalbody, after, loops, no_grad)
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            return self.assignment(node, state, loops, no_grad)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and loops and not no_grad:
            self.method_accumulation(node.value, state, loops)
        return state

    def loop(self, node: ast.For | ast.AsyncFor | ast.While, state: State, loops, no_grad: bool) -> State:
        if isinstance(node, (ast.For, ast.AsyncFor)):
            state = forget(state, node.target)
        inner = (*loops, node)
        first = self.block(node.body, dict(state), inner, no_grad)
        # the second iteration starts from what held on entry and after the first
        second = self.block(node.body, meet(state, first), inner, no_grad)
        return self.block(node.orelse, meet(state, second), loops, no_grad)

    def assignment(self, node, state: State, loops: tuple[ast.stmt, ...], no_grad: bool) -> State:
        value = node.value
        if value is None:
            return state
        carried = None if no_grad else self.carries(value, state)
        if isinstance(node, ast.AugAssign):
            if carried is not None and loops and isinstance(node.op, (ast.Add, ast.Sub)):
                self.accumulation(node, node.target, carried, loops)
            if carried is not None and isinstance(node.target, ast.Name):
                state[node.target.id] = carried
            return state
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if carried is not None and loops and len(targets) == 1 and adds_to(value, targets[0]):
            self.accumulation(node, targets[0], carried, loops)
        for target in targets:
            state = forget(state, target)
            if isinstance(target, ast.Name):
                origin = carried
                source = root_name(value)
                from_clean = source in state and state[source] is None
                if not no_grad and not from_clean and target.id in self.backwards and computes(value):
                    origin = self.backwards[target.id]  # name the backward: its graph is the one kept
                if origin is not None:
                    state[target.id] = origin
                elif no_grad or from_clean:
                    state[target.id] = None
        return state

    def method_accumulation(self, call: ast.Call, state: State, loops: tuple[ast.stmt, ...]) -> None:
        """`losses.append(loss)`, `total.add_(loss)`."""
        if not isinstance(call.func, ast.Attribute) or call.func.attr not in ACCUMULATING_METHODS:
            return
        for argument in call.args[-1:]:
            carried = self.carries(argument, state)
            if carried is not None:
                self.accumulation(call, call.func.value, carried, loops)

    def accumulation(self, node: ast.expr | ast.stmt, target: ast.expr, carried: Carried, loops) -> None:
        path = names.path_of(target)
        if path is None:
            return
        root = path.split(".", 1)[0].split("[", 1)[0]
        loop = loops[-1]
        if root in self.reaching(returned=False) or rebound_every_iteration(loop, path, root):
            return  # summed to be backpropagated together, or started over on every iteration
        if carried.backpropagated and rebound_in(loop, path, root):
            return  # bare graph nodes, and a bounded number of them
        if root in self.reaching(returned=True) and not draws_data(loop):
            return  # `for head in heads: total += ...; return total`: one loss for the caller
        self.leaks.add(
            GraphLeak(
                self.site(node),
                path.replace("[]", ""),
                carried.origin,
                carried.what,
                loop_site(loop, self.lines),
            )
        )

    # --- expressions ------------------------------------------------------------------------------
    def carries(self, node: ast.expr, state: State) -> Carried | None:
        """Why `node` must hold a graph, or None when it may not."""
        if isinstance(node, ast.Name):
            return state.get(node.id)
        if isinstance(node, ast.Attribute):
            return None if node.attr in NON_GRAPH_ATTRIBUTES else self.carries(node.value, state)
        if isinstance(node, ast.Subscript):
            return self.carries(node.value, state)
        if isinstance(node, ast.BinOp):
            return self.carries(node.left, state) or self.carries(node.right, state)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return self.carries(node.operand, state)
        if isinstance(node, ast.IfExp):
            one, other = self.carries(node.body, state), self.carries(node.orelse, state)
            return one if one is not None and other is not None else None
        if isinstance(node, (ast.List, ast.Tuple)):
            return next((c for e in node.elts if (c := self.carries(e, state)) is not None), None)
        if isinstance(node, ast.Call):
            return self.call_carries(node, state)
        return None

    def call_carries(self, node: ast.Call, state: State) -> Carried | None:
        func = node.func
        path = names.path_of(func) or ""
        if names.is_optimizer_constructor(node) or names.is_scheduler_constructor(node):
            return None  # holds the tensors it is given, and their .grad, but no graph
        if path in self.models:
            site = self.site(node)
            return Carried(site, f"`{site.text}` (line {site.location.line})")
        if isinstance(func, ast.Attribute):
            if func.attr in DETACHING_METHODS:
                return None
            receiver = self.carries(func.value, state)
            if receiver is not None:
                return receiver
            module = path.split(".", 1)[0]
            if module not in TENSOR_MODULES:
                return None
        elif not isinstance(func, ast.Name) or func.id not in TENSOR_BUILTINS:
            if isinstance(func, ast.Name) and func.id in DETACHING_FUNCTIONS:
                return None
            if not (isinstance(func, ast.Name) and names.words(func.id) & LOSS_WORDS):
                return None
        arguments = [*node.args, *(k.value for k in node.keywords)]
        return next((c for a in arguments if (c := self.carries(a, state)) is not None), None)


def backward_losses(body: list[ast.stmt], lines: list[str]) -> Iterator[tuple[str, Carried]]:
    """The names whose value reaches `backward()` in this body: they hold the loss's graph."""
    for node in own_nodes(body):
        if not isinstance(node, ast.Call) or names.callee_name(node) not in BACKWARDS:
            continue
        loss = backward_argument(node)
        name = root_name(loss) if loss is not None else None
        if name is not None:
            site = Site(location_of(node, lines), names.segment(lines, node))
            yield name, Carried(site, f"`{name}` (backpropagated at line {site.location.line})", True)


def backward_argument(call: ast.Call) -> ast.expr | None:
    """`loss` in `loss.backward()`, `scaler.scale(loss).backward()`, `accelerator.backward(loss)`."""
    func = call.func
    takes_loss = names.callee_name(call) == "manual_backward" or not isinstance(func, ast.Attribute)
    if call.args and (takes_loss or (isinstance(func, ast.Attribute) and not is_tensor_receiver(func.value))):
        return call.args[0]
    if keyword(call, "loss") is not None:
        return keyword(call, "loss")
    if not isinstance(call.func, ast.Attribute):
        return None
    receiver = call.func.value
    if isinstance(receiver, ast.Call) and names.callee_name(receiver) == "scale" and receiver.args:
        return receiver.args[0]
    return receiver


def is_tensor_receiver(node: ast.expr) -> bool:
    """`loss.backward(gradient)`: the receiver is the tensor, the argument is not a loss."""
    path = names.path_of(node)
    if path is None:
        return True
    return not (path.endswith("autograd") or names.words(names.last_name(path)) & {"accelerator", "fabric"})


def names_reaching(body: list[ast.stmt], returned: bool) -> set[str]:
    """Names a backward pass (or a `return`) uses, directly or through assignments."""
    used: set[str] = set()
    for node in own_nodes(body):
        if returned and isinstance(node, ast.Return) and node.value is not None:
            used |= {n.id for n in walk(node.value) if isinstance(n, ast.Name)}
        if not returned and isinstance(node, ast.Call) and names.callee_name(node) in BACKWARDS:
            used |= {n.id for n in walk(node) if isinstance(n, ast.Name)}
    assignments = [
        s for s in own_statements(body) if isinstance(s, (ast.Assign, ast.AugAssign, ast.AnnAssign))
    ]
    for _ in range(4):  # `loss = sum(losses); loss.backward()`: losses feeds the backward too
        grown = set(used)
        for statement in assignments:
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            if any(isinstance(t, ast.Name) and t.id in used for t in targets) and statement.value is not None:
                grown |= {n.id for n in walk(statement.value) if isinstance(n, ast.Name)}
        if grown == used:
            break
        used = grown
    return used


def rebound_every_iteration(loop: ast.For | ast.AsyncFor | ast.While, path: str, root: str) -> bool:
    """A plain assignment of the accumulator directly in the loop's body: it starts over each time."""
    return any(is_restart(statement, path, root) for statement in direct_statements(loop.body))


def is_restart(statement: ast.stmt, path: str, root: str) -> bool:
    if not isinstance(statement, (ast.Assign, ast.AnnAssign)):
        return False
    targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
    return any(
        names.path_of(target) in (path, root) and not adds_to(statement.value, target) for target in targets
    )


def rebound_in(loop: ast.For | ast.AsyncFor | ast.While, path: str, root: str) -> bool:
    """A plain assignment of the accumulator anywhere in the loop's body (`running_loss = 0` after
    each step): it holds the iterations since, not every iteration."""
    return any(is_restart(statement, path, root) for statement in own_statements(loop.body))


def direct_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements that run on every pass through a body: not under an if, a loop or a handler."""
    for statement in body:
        yield statement
        if isinstance(statement, (ast.With, ast.AsyncWith)):
            yield from direct_statements(statement.body)


def adds_to(value: ast.expr | None, target: ast.expr) -> bool:
    """`t + x`, `x + t`, `0.9 * t + 0.1 * x`: the new value is the old one plus something."""
    path = names.path_of(target)
    if path is None or not isinstance(value, ast.BinOp) or not isinstance(value.op, (ast.Add, ast.Sub)):
        return False
    return any(names.path_of(n) == path for side in (value.left, value.right) for n in walk(side))


def computes(value: ast.expr) -> bool:
    """A computation (not a constant, not a Python number from `.item()`)."""
    if isinstance(value, ast.Constant):
        return False
    if isinstance(value, ast.Call):
        if isinstance(value.func, ast.Attribute) and value.func.attr in DETACHING_METHODS:
            return False
        if isinstance(value.func, ast.Name) and value.func.id in DETACHING_FUNCTIONS:
            return False
    return True


def forget(state: State, target: ast.expr) -> State:
    assigned = {n.id for n in walk(target) if isinstance(n, ast.Name)}
    if not assigned & state.keys():
        return state
    return {name: carried for name, carried in state.items() if name not in assigned}


def meet(one: State, other: State) -> State:
    """Names that hold a graph on both paths, and names known to hold none on both."""
    return {
        name: carried
        for name, carried in one.items()
        if name in other and (carried is None) == (other[name] is None)
    }
