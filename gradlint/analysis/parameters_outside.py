"""GL204's analysis: parameters put into a model after its optimizer was built, then trained.

An optimizer holds the parameter tensors it was given when it was built, not the model. A new
submodule put into the model afterwards (`model.fc = nn.Linear(...)`, `model[2] = ...`,
`add_module`, `setattr`), or the model's name rebound to a new module (`model = Net()`,
`copy.deepcopy(model)`), brings parameters no optimizer holds: backward passes fill their
gradients, the optimizer steps, and they never change.

Each scope (the module body, each function) is read as one list of events in source order: where
optimizers are built and over which models' parameters, where new modules go into those models,
and what trains them (a forward pass through the model, a backward pass, a step of the optimizer
built before the change, inside a loop). Calls to the module's own functions are followed with
their parameters bound to the caller's names. The events "after" a change are those later in the
scope that an `if`/`else` does not put on another path, and every event of a loop around the
change (its next iteration runs them after it).

Precision first: nothing is reported when, after the change, any optimizer is built, a parameter
group is added, the new parameters are frozen, or code this analysis cannot see receives the
optimizer; nor when what is assigned is not recognisably a module with parameters.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from typing import NamedTuple

from gradlint.analysis import names
from gradlint.analysis.facts import ParametersOutsideOptimizer, Site
from gradlint.analysis.nodes import children, walk
from gradlint.analysis.scope import location_of
from gradlint.analysis.shapes import FunctionNode, assigned_names, module_statements, parameters

MAX_DEPTH = 4
# torch.nn classes that hold parameters of their own (containers count when what they hold does).
PARAMETERISED = re.compile(
    r"(Lazy)?(Linear|Bilinear|Conv(Transpose)?[123]d|Embedding(Bag)?|(Sync)?BatchNorm([123]d)?|LayerNorm|"
    r"GroupNorm|RMSNorm|LSTM|GRU|RNN|LSTMCell|GRUCell|RNNCell|MultiheadAttention|Transformer\w*|PReLU|"
    r"Parameter)"
)
CONTAINERS = {"Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"}
# `x.to(device)` and the like return the module they are called on.
SELF_RETURNING = {"to", "cuda", "cpu", "float", "half", "double", "bfloat16", "train", "eval", "to_empty"}
ADDING_METHODS = {"add_module", "register_module", "register_parameter"}
APPENDING_METHODS = {"append", "insert", "extend"}
DEFAULT_IMPORTS = {"nn": "torch.nn", "torch": "torch", "copy": "copy", "optim": "torch.optim"}
# Calls that receive an optimizer and leave its parameters alone.
READS_OPTIMIZER = {"step", "zero_grad", "state_dict", "load_state_dict", "unscale_", "update", "scale"}


class Event(NamedTuple):
    kind: str  # built | change | rebuild | freeze | escape | step | backward | forward
    path: str | None  # the optimizer (built, step, escape), the module (change, freeze, forward)
    node: ast.AST  # where in the source (a Site is made only for what is reported)
    position: tuple[int, int]  # where in the scope it happens (a helper's events: at its call)
    arms: tuple[tuple[int, str], ...]  # the if/else (or match) arms around it, outermost first
    loops: tuple[int, ...]  # ids of the loops of the scope around it
    in_loop: bool  # inside some loop, the scope's or a followed helper's
    owners: frozenset[str] = frozenset()  # built: the models whose parameters it got
    rebinds: bool = False  # change: the name itself now holds a new module
    target: str = ""  # change: how the code names what changed (`model[2]`)
    source: str = ""  # change, assigned: the name the value comes from (`head` in `model.fc = head`)


def find_parameters_outside(tree: ast.Module, lines: list[str]) -> set[ParametersOutsideOptimizer]:
    return OutsideAnalysis(tree, lines).run()


class OutsideAnalysis:
    def __init__(self, tree: ast.Module, lines: list[str]) -> None:
        self.tree = tree
        self.lines = lines
        self.imports = read_imports(tree)
        self.functions: dict[str, list[ast.FunctionDef | ast.AsyncFunctionDef]] = {}
        self.classes: dict[str, ast.ClassDef] = {}
        for node in walk(tree):
            if isinstance(node, FunctionNode):
                self.functions.setdefault(node.name, []).append(node)
            elif isinstance(node, ast.ClassDef):
                self.classes.setdefault(node.name, node)
        self.module_classes: dict[str, bool] = {}
        self.values: dict[str, ast.expr] = {}  # what each name of the scope read so far was last assigned
        self.following = True  # whether calls to the module's functions are followed
        self.found: set[ParametersOutsideOptimizer] = set()

    def run(self) -> set[ParametersOutsideOptimizer]:
        scopes: list[tuple[list[ast.stmt], bool]] = [(module_statements(self.tree), True)]
        scopes += [(f.body, False) for group in self.functions.values() for f in group]
        for body, at_module_level in scopes:
            # the scope's own statements first: following its calls costs more, and most scopes
            # build no optimizer or change no model
            events = self.scope_events(body, at_module_level, follow=False)
            if any(e.kind == "change" for e in events) and any(e.kind == "built" for e in events):
                self.judge(self.scope_events(body, at_module_level, follow=True))
        return self.found

    # --- the events of a scope ---------------------------------------------------------------------
    def scope_events(self, body: list[ast.stmt], at_module_level: bool, follow: bool) -> list[Event]:
        events: list[Event] = []
        self.following = follow
        bindings: dict[str, str | None] = {}
        local = frozenset() if at_module_level else frozenset(assigned_names(body))
        self.values = {}
        for statement, arms, loops in statements_of(body):
            for node in header_nodes(statement):
                for event in self.node_events(node, statement, bindings, local, 0, (), at_module_level):
                    events.append(
                        event._replace(
                            position=(node.lineno, node.col_offset),  # type: ignore[attr-defined]
                            arms=arms,
                            loops=tuple(id(loop) for loop in loops),
                            in_loop=event.in_loop or bool(loops),
                        )
                    )
            if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                if isinstance(statement.targets[0], ast.Name):
                    self.values[statement.targets[0].id] = statement.value
        return events

    def node_events(
        self,
        node: ast.AST,
        statement: ast.stmt,
        bindings: dict[str, str | None],
        local: frozenset[str],
        depth: int,
        calling: tuple[ast.AST, ...],
        at_module_level: bool,
    ) -> Iterator[Event]:
        """What one node does, as events on the judged scope's names. `node` is a call in a
        statement's own expressions, or the statement itself when it assigns."""

        def path(expr: ast.AST) -> str | None:
            return self.translate(names.path_of(expr), bindings, local, depth, at_module_level)

        def event(kind: str, where: ast.AST, what: str | None, **more: object) -> Event:
            return Event(kind, what, where, (0, 0), (), (), False, **more)  # type: ignore[arg-type]

        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            if node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                yield from self.assignment_events(node, targets, node.value, depth, path, event)
            return
        if not isinstance(node, ast.Call):
            return
        callee = names.callee_name(node)
        receiver = path(node.func.value) if isinstance(node.func, ast.Attribute) else None
        arguments = [*node.args, *(k.value for k in node.keywords)]
        if callee in ("backward", "manual_backward"):
            yield event("backward", node, None)
            return
        assigned = isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is node
        if callee == "add_param_group" or (self.builds_optimizer(node) and not assigned):
            yield event("rebuild", node, None)
            return
        if callee == "step" and receiver is not None:
            stepped = path(node.args[0]) if node.args and names.is_scaler_name(receiver) else receiver
            yield event("step", node, stepped)
            return
        if callee == "requires_grad_" and receiver is not None and node.args and is_false(node.args[0]):
            yield event("freeze", node, receiver)
            return
        if depth == 0:
            change = self.adding_call(node, callee, receiver, path)
            if change is not None:
                yield event("change", node, change[0], target=change[1], source=change[2])
                return
        forwarded = receiver if callee == "forward" else path(node.func)
        if forwarded is not None and callee not in READS_OPTIMIZER:
            yield event("forward", node, forwarded)
        function = self.resolve(node)
        if function is not None:
            if self.following and function not in calling and depth < MAX_DEPTH:
                yield from self.follow(function, node, local, depth, calling, at_module_level, path)
            return
        if not names.is_scheduler_constructor(node) and not names.words(callee) & names.OPTIMIZER_SAFE_WORDS:
            for argument in arguments:
                given = path(argument)
                if given is not None and callee not in READS_OPTIMIZER:
                    yield event("escape", node, given)
        frozen = self.freezing_loop(node, statement, path)
        if frozen:
            yield event("freeze", node, frozen)

    def assignment_events(self, node, targets, value, depth, path, event) -> Iterator[Event]:
        if isinstance(value, ast.Call) and self.builds_optimizer(value):
            owners = frozenset(o for o in self.parameter_owners(value, path) if o)
            for target in targets:
                yield event("built" if depth == 0 else "rebuild", node, path(target), owners=owners)
            return
        for target in targets:
            where = path(target)
            if isinstance(target, ast.Name):
                if depth == 0 and self.new_module(value) == "trainable":
                    yield event("change", node, target.id, rebinds=True, target=target.id)
                elif depth == 0:
                    yield event("assigned", node, target.id, source=names.path_of(value) or "")
            elif isinstance(target, (ast.Attribute, ast.Subscript)) and where:
                if "param_groups" in re.split(r"[.\[]", where):
                    yield event("rebuild", node, None)
                elif target_attr(target) == "requires_grad" and is_false(value):
                    yield event("freeze", node, where)
                elif depth == 0 and self.new_module(value) == "trainable":
                    yield event("change", node, where, target=names.segment(self.lines, target))
                elif depth == 0 and isinstance(value, ast.Name):
                    # `model.fc = head`: judged once we know what `head` holds here
                    yield event(
                        "change", node, where, target=names.segment(self.lines, target), source=value.id
                    )

    def adding_call(
        self, node: ast.Call, callee: str, receiver: str | None, path
    ) -> tuple[str, str, str] | None:
        """`m.add_module("head", ...)`, `setattr(m, "fc", ...)`, `m.layers.append(...)`: what gets
        the new module, how the code names it, and the name the module comes from ("" if built there)."""
        if callee in APPENDING_METHODS and isinstance(node.func, ast.Attribute) and receiver is not None:
            if node.args and self.new_module(node.args[-1]) == "trainable":
                return receiver + "[]", names.segment(self.lines, node.func.value) + "[...]", ""
            return None
        if callee in ADDING_METHODS and receiver is not None and isinstance(node.func, ast.Attribute):
            owner, shown, rest = receiver, names.segment(self.lines, node.func.value), node.args
        elif callee == "setattr" and isinstance(node.func, ast.Name) and node.args:
            owner, shown, rest = path(node.args[0]), names.segment(self.lines, node.args[0]), node.args[1:]
        else:
            return None
        if owner is None or len(rest) < 2:
            return None
        label = rest[0].value if isinstance(rest[0], ast.Constant) and isinstance(rest[0].value, str) else "?"
        if self.new_module(rest[1]) == "trainable":
            return f"{owner}.{label}", f"{shown}.{label}", ""
        if isinstance(rest[1], ast.Name):
            return f"{owner}.{label}", f"{shown}.{label}", rest[1].id
        return None

    def follow(self, function, node, local, depth, calling, at_module_level, path) -> Iterator[Event]:
        """The events of a call to a function of this module, its parameters bound to the arguments."""
        params = parameters(function)
        inner: dict[str, str | None] = {}
        if isinstance(node.func, ast.Attribute) and params:
            inner[params[0]] = path(node.func.value)
            params = params[1:]
        for param, argument in zip(params, node.args):
            if isinstance(argument, ast.Starred):
                break
            inner[param] = path(argument)
        for keyword in node.keywords:
            if keyword.arg in params:
                inner[keyword.arg] = path(keyword.value)
        inner_local = (
            frozenset(parameters(function)) | frozenset(assigned_names(function.body))
        ) - inner.keys()
        for statement, _, loops in statements_of(function.body):
            for sub in header_nodes(statement):
                for found in self.node_events(
                    sub, statement, inner, inner_local, depth + 1, (*calling, function), at_module_level
                ):
                    yield found._replace(in_loop=found.in_loop or bool(loops))

    def translate(
        self,
        path: str | None,
        bindings: dict[str, str | None],
        local: frozenset[str],
        depth: int,
        at_module_level: bool,
    ) -> str | None:
        """A path inside a followed function, as the scope being judged names it (None: its own object)."""
        if path is None or depth == 0:
            return path
        root = re.match(r"[^.\[]*", path).group(0)  # type: ignore[union-attr]
        rest = path[len(root) :]
        if root in bindings:
            bound = bindings[root]
            return None if bound is None else bound + rest
        if root in local or not at_module_level:
            return None
        return path  # a module-level name the function reads: the same object as the caller's

    # --- what things are ---------------------------------------------------------------------------
    def builds_optimizer(self, call: ast.Call) -> bool:
        return names.is_optimizer_constructor(call) and not names.is_scheduler_constructor(call)

    def parameter_owners(self, call: ast.Call, path) -> set[str | None]:
        """`m` in `SGD(m.parameters())`, also through a name assigned the parameters before."""
        owners: set[str | None] = set()
        read = [call] + [
            self.values[n.id] for n in walk(call) if isinstance(n, ast.Name) and n.id in self.values
        ]
        for sub in (node for part in read for node in walk(part)):
            if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute):
                if sub.func.attr in ("parameters", "named_parameters"):
                    owners.add(path(module_itself(sub.func.value)))
        return owners

    def full_name(self, expr: ast.expr) -> str:
        """`nn.Linear` -> `torch.nn.Linear`, through the module's imports."""
        dotted = names.path_of(expr) or ""
        root, _, rest = dotted.partition(".")
        base = self.imports.get(root, DEFAULT_IMPORTS.get(root, root))
        return base + ("." + rest if rest else "")

    def new_module(self, value: ast.expr) -> str | None:
        """`trainable` for a new module (or parameter) with parameters of its own, `frozen` for one
        built with `requires_grad_(False)`, None when it is not recognisably new."""
        frozen = False
        while isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute):
            method = value.func.attr
            if method == "requires_grad_":
                frozen = frozen or bool(value.args and is_false(value.args[0]))
            elif method not in SELF_RETURNING:
                break
            value = value.func.value
        if not isinstance(value, ast.Call):
            return None
        name = self.full_name(value.func)
        last = name.rsplit(".", 1)[-1]
        new = False
        if name.startswith("torch.nn.") and name.count(".") == 2:
            if last in CONTAINERS:
                new = any(
                    self.new_module(a) == "trainable" for a in value.args if isinstance(a, ast.expr)
                ) or any(
                    isinstance(a, (ast.List, ast.Tuple)) and any(self.new_module(e) for e in a.elts)
                    for a in value.args
                )
            else:
                new = bool(PARAMETERISED.fullmatch(last))
        elif name in ("copy.deepcopy",) or (name == "deepcopy" and "deepcopy" in self.imports):
            new = True
        elif name.startswith("torchvision.models.") and last[:1].islower():
            new = True
        elif name in ("timm.create_model",) or last == "from_pretrained":
            new = True
        elif isinstance(value.func, ast.Name) and value.func.id in self.classes:
            new = self.is_module_class(value.func.id)
        if not new:
            return None
        return "frozen" if frozen else "trainable"

    def is_module_class(self, name: str, depth: int = 0) -> bool:
        """A class of this module that subclasses a torch.nn module and builds parameters."""
        if name in self.module_classes:
            return self.module_classes[name]
        self.module_classes[name] = False  # a cycle of bases is no module
        node = self.classes[name]
        derives = False
        for base in node.bases:
            full = self.full_name(base)
            if full.startswith("torch.nn."):
                derives = True
            elif isinstance(base, ast.Name) and base.id in self.classes and depth < 5:
                derives = derives or self.is_module_class(base.id, depth + 1)
        builds = any(
            isinstance(sub, ast.Call) and self.new_module(sub) == "trainable" for sub in walk(node)
        ) or any(
            isinstance(b, ast.Name) and b.id in self.classes and self.module_classes.get(b.id)
            for b in node.bases
        )
        self.module_classes[name] = derives and builds
        return self.module_classes[name]

    def freezing_loop(self, node: ast.Call, statement: ast.stmt, path) -> str | None:
        """`for p in m.parameters(): p.requires_grad = False` (or `p.requires_grad_(False)`): m."""
        if not isinstance(statement, (ast.For, ast.AsyncFor)) or node is not statement.iter:
            return None
        iterated = node
        if not (
            isinstance(iterated.func, ast.Attribute)
            and iterated.func.attr in ("parameters", "named_parameters")
        ):
            return None
        for sub in walk(statement):
            if isinstance(sub, ast.Assign) and any(target_attr(t) == "requires_grad" for t in sub.targets):
                if is_false(sub.value):
                    return path(iterated.func.value)
            if isinstance(sub, ast.Call) and names.callee_name(sub) == "requires_grad_":
                if sub.args and is_false(sub.args[0]):
                    return path(iterated.func.value)
        return None

    def resolve(self, node: ast.Call) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        if isinstance(node.func, ast.Name):
            group = self.functions.get(node.func.id, [])
            if len(group) == 1 and node.func.id not in self.classes:
                return group[0]
        return None

    # --- judging -----------------------------------------------------------------------------------
    def judge(self, events: list[Event]) -> None:
        for change in (e for e in events if e.kind == "change" and e.path):
            if change.source and not self.holds_new_trainable_module(events, change):
                continue
            after = [(key, e) for e in events if e is not change and (key := order_after(change, e))]
            frozen = {change.path, change.source} - {""}
            if any(
                e.kind == "freeze" and e.path and any(related(e.path, f) for f in frozen) for _, e in after
            ):
                continue
            for built in self.optimizers_before(events, change):
                self.judge_one(change, built, after)

    def holds_new_trainable_module(self, events: list[Event], change: Event) -> bool:
        """`model.fc = head`: whether `head` was last bound to a new module with parameters that no
        optimizer here gets and nothing here freezes."""
        bound = [
            e
            for e in events
            if e.path == change.source and e.kind in ("change", "assigned") and e.position < change.position
        ]
        if not bound or bound[-1].kind != "change":
            return False
        return not any(
            (e.kind == "built" and any(related(o, change.source) for o in e.owners))
            or (e.kind == "freeze" and e.path is not None and related(e.path, change.source))
            for e in events
        )

    def optimizers_before(self, events: list[Event], change: Event) -> list[Event]:
        """The optimizer each name holds when the change runs (its last construction before it),
        for those built over the parameters of what changed or of a model holding it."""
        latest: dict[str, Event] = {}
        for event in events:
            if event.position >= change.position or event.path is None:
                continue
            if event.kind == "built":
                latest[event.path] = event
            elif event.kind in ("assigned", "change") and event.path in latest:
                del latest[event.path]
        return [b for b in latest.values() if any(related(owner, change.path) for owner in b.owners)]

    def judge_one(
        self, change: Event, built: Event, after: list[tuple[tuple[int, tuple[int, int]], Event]]
    ) -> None:
        optimizer = built.path
        if any(e.kind in ("assigned", "change", "escape") and e.path == optimizer for _, e in after):
            return  # another object under that name, or code we cannot see got the optimizer
        rebuilt = min((key for key, e in after if e.kind in ("built", "rebuild")), default=None)
        before_rebuild = [
            e for key, e in sorted(after, key=lambda item: item[0]) if rebuilt is None or key < rebuilt
        ]
        steps = [e for e in before_rebuild if e.kind == "step" and e.path == optimizer and e.in_loop]
        backwards = [e for e in before_rebuild if e.kind == "backward"]
        forwards = [
            e
            for e in before_rebuild
            if e.kind == "forward" and e.path and is_prefix(e.path, change.path or "")
        ]
        if not (steps and backwards and forwards):
            return
        self.found.add(
            ParametersOutsideOptimizer(
                module=change.target,
                optimizer=optimizer or "",
                owner=min(o for o in built.owners if related(o, change.path)),
                change=self.site(change.node),
                built=self.site(built.node),
                backward=self.site(backwards[0].node),
                step=self.site(steps[0].node),
                rebinds=change.rebinds,
            )
        )

    def site(self, node: ast.AST) -> Site:
        return Site(location_of(node, self.lines), names.segment(self.lines, node))  # type: ignore[arg-type]


# --- the shape of a scope ----------------------------------------------------------------------------
def statements_of(
    body: list[ast.stmt],
) -> Iterator[tuple[ast.stmt, tuple[tuple[int, str], ...], tuple[ast.AST, ...]]]:
    """Every statement of a body in source order (nested functions and classes left out), with
    the if/else arms and the loops around it."""

    def visit(statements: list[ast.stmt], arms: tuple, loops: tuple) -> Iterator:
        for statement in statements:
            if isinstance(statement, (*FunctionNode, ast.ClassDef)):
                continue
            yield statement, arms, loops
            if isinstance(statement, ast.If):
                yield from visit(statement.body, (*arms, (id(statement), "body")), loops)
                yield from visit(statement.orelse, (*arms, (id(statement), "orelse")), loops)
            elif isinstance(statement, (ast.For, ast.AsyncFor, ast.While)):
                yield from visit(statement.body, arms, (*loops, statement))
                yield from visit(statement.orelse, arms, loops)
            elif isinstance(statement, ast.Try) or type(statement).__name__ == "TryStar":
                yield from visit(statement.body, arms, loops)  # type: ignore[attr-defined]
                for handler in statement.handlers:  # type: ignore[attr-defined]
                    yield from visit(handler.body, arms, loops)
                yield from visit(statement.orelse, arms, loops)  # type: ignore[attr-defined]
                yield from visit(statement.finalbody, arms, loops)  # type: ignore[attr-defined]
            elif isinstance(statement, (ast.With, ast.AsyncWith)):
                yield from visit(statement.body, arms, loops)
            elif type(statement).__name__ == "Match":
                for number, case in enumerate(statement.cases):  # type: ignore[attr-defined]
                    yield from visit(case.body, (*arms, (id(statement), f"case {number}")), loops)

    yield from visit(body, (), ())


def header_nodes(statement: ast.stmt) -> Iterator[ast.AST]:
    """The statement itself when it assigns, then the calls in its own expressions (not in the
    statements nested in it), innermost first: `criterion(model(x), y)` forwards before it calls."""
    if isinstance(statement, (ast.Assign, ast.AnnAssign)):
        yield statement
    for child in children(statement):
        if isinstance(child, (ast.stmt, ast.excepthandler)) or type(child).__name__ == "match_case":
            continue
        for sub in reversed(walk(child)):
            if isinstance(sub, ast.Call):
                yield sub


def order_after(change: Event, other: Event) -> tuple[int, tuple[int, int]] | None:
    """When `other` can run after `change`, a key that orders it among the others: later in the
    scope, not on another arm of an `if` around both, comes first (0, in source order); then the
    rest of a loop around the change, which its next iteration runs (1). None: it cannot."""
    if other.position > change.position and not on_other_arms(change.arms, other.arms):
        return (0, other.position)
    if set(change.loops) & set(other.loops):
        return (1, other.position)
    return None


def on_other_arms(mine: tuple[tuple[int, str], ...], theirs: tuple[tuple[int, str], ...]) -> bool:
    for own, other in zip(mine, theirs):
        if own != other:
            return own[0] == other[0]
    return False


def related(a: str, b: str | None) -> bool:
    return b is not None and (is_prefix(a, b) or is_prefix(b, a))


def is_prefix(prefix: str, path: str) -> bool:
    """`model` of `model.fc`, of `model[]` and of `model` itself."""
    return path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "[")


def module_itself(node: ast.expr) -> ast.expr:
    while (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in SELF_RETURNING
    ):
        node = node.func.value
    return node


def target_attr(target: ast.expr) -> str | None:
    return target.attr if isinstance(target, ast.Attribute) else None


def is_false(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def read_imports(tree: ast.Module) -> dict[str, str]:
    """Local name -> what it imports: `nn` -> `torch.nn`, `Linear` -> `torch.nn.Linear`."""
    imported: dict[str, str] = {}
    for node in walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    imported[alias.asname] = alias.name
                else:
                    root = alias.name.split(".", 1)[0]
                    imported.setdefault(root, root)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return imported
