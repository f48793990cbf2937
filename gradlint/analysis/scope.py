"""Who is who across a module: its functions and classes, and what module-level names hold."""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from gradlint.analysis import names
from gradlint.analysis.facts import LoopSite
from gradlint.analysis.nodes import children, walk
from gradlint.analysis.shapes import (
    TEST_KEY,
    FunctionNode,
    assigned_paths,
    assumptions,
    conjuncts,
    has_modulo,
    module_statements,
    own_statements,
    test_names,
)
from gradlint.core import Location

MANUAL = "<manual>"


@dataclass
class ClassInfo:
    node: ast.ClassDef
    methods: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # `self.opt` -> optimizer


@dataclass
class ModuleIndex:
    """Where every function and class of the module is, and what the module-level names hold."""

    tree: ast.Module
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = field(default_factory=dict)
    classes: dict[str, ClassInfo] = field(default_factory=dict)
    owner: dict[ast.AST, ast.AST] = field(default_factory=dict)  # function -> enclosing function/class
    kinds: dict[str, str] = field(default_factory=dict)
    instances: dict[str, str] = field(default_factory=dict)  # module-level `trainer = Trainer()`
    uses_accumulate: bool = False  # accelerate's accumulate(): prepared optimizers are gated
    accelerator_scales: bool = True  # False when every Accelerator(...) here leaves accumulation at 1
    # where accumulation is set for a framework that divides by it: for accelerator.backward,
    # `Accelerator(gradient_accumulation_steps=4)`; for engine.backward, a DeepSpeed config's
    # `"gradient_accumulation_steps": 4`
    accelerator_accumulation: ast.keyword | None = None
    engine_accumulation: ast.AST | None = None
    has_gradient_code: bool = False
    tested_paths: set[str] = field(default_factory=set)  # names some `if` tests directly
    function_names: set[str] = field(default_factory=set)
    tracked_tests: set[str] = field(default_factory=set)  # assumption keys worth following along paths
    function_list: list[ast.FunctionDef | ast.AsyncFunctionDef] = field(default_factory=list)
    self_aliases: set[str] = field(default_factory=set)  # `d2l = sys.modules[__name__]`: this module

    @classmethod
    def of(cls, tree: ast.Module, whole: bool = False) -> ModuleIndex:
        """With `whole`, classes and kinds are indexed even in a module with no gradient attribute:
        another module's training path may call into it (a Trainer that hands its optimizer on)."""
        index = cls(tree)
        for node in tree.body:
            if isinstance(node, FunctionNode):
                index.functions[node.name] = node
            elif isinstance(node, ast.ClassDef):
                index.classes[node.name] = ClassInfo(node)
        accelerator_constructors = index._read_tree()
        if not index.has_gradient_code and not whole:
            return index
        for info in index.classes.values():
            for item in info.node.body:
                if isinstance(item, FunctionNode):
                    info.methods[item.name] = item
            for method in info.methods.values():
                scan_kinds(method.body, info.kinds, only_self=True)
        scan_kinds(module_statements(tree), index.kinds)
        index.self_aliases = {
            target.id
            for statement in module_statements(tree)
            if isinstance(statement, ast.Assign) and is_this_module(statement.value)
            for target in statement.targets
            if isinstance(target, ast.Name)
        }
        scan_instances(module_statements(tree), index.instances, index.classes)
        if accelerator_constructors:
            index.accelerator_scales = any(
                divides_by_accumulation(k) for c in accelerator_constructors for k in c.keywords
            )
            index.accelerator_accumulation = next(
                (
                    k
                    for c in accelerator_constructors
                    for k in c.keywords
                    if k.arg == "gradient_accumulation_steps" and divides_by_accumulation(k)
                ),
                None,
            )
        return index

    def _read_tree(self) -> list[ast.Call]:
        """One walk over the whole module: who owns each function, which functions exist, and
        whether anything here can be a gradient event at all (most Python files have none)."""
        accelerator_constructors: list[ast.Call] = []
        tested: Counter[str] = Counter()
        expression_tests: list[ast.expr] = []
        assigned_in_loops: set[str] = set()
        stack: list[tuple[ast.AST, ast.AST | None, bool]] = [(self.tree, None, False)]
        while stack:
            node, owner, in_loop = stack.pop()
            for child in children(node):
                child_owner = owner
                child_in_loop = in_loop or isinstance(child, (ast.For, ast.AsyncFor, ast.While))
                if isinstance(child, (*FunctionNode, ast.ClassDef)):
                    if owner is not None:
                        self.owner[child] = owner
                    if isinstance(child, FunctionNode):
                        self.function_list.append(child)
                    child_owner = child
                elif isinstance(child, ast.Attribute) and child.attr in names.GRADIENT_ATTRIBUTES:
                    self.has_gradient_code = True
                elif isinstance(child, ast.If):
                    for part in conjuncts(child.test):
                        if assumptions(part):
                            key = assumptions(part)[0][0]
                            # an outcome matters again when the test repeats: in a loop, in a
                            # function (called once per batch), or elsewhere
                            tested[key] += 2 if in_loop or isinstance(owner, FunctionNode) else 1
                            expression_tests.append(part)
                elif isinstance(child, ast.Dict) and self.engine_accumulation is None:
                    for key, value in zip(child.keys, child.values):
                        if (
                            isinstance(key, ast.Constant)
                            and key.value == "gradient_accumulation_steps"
                            and not (isinstance(value, ast.Constant) and value.value == 1)
                        ):
                            self.engine_accumulation = key
                elif isinstance(child, ast.Call):
                    callee = names.callee_name(child)
                    if callee in names.ACCUMULATE_CONTEXTS:
                        self.uses_accumulate = True
                    elif callee == "Accelerator":
                        accelerator_constructors.append(child)
                if child_in_loop and isinstance(child, ast.stmt):
                    assigned_in_loops |= assigned_paths(child)
                stack.append((child, child_owner, child_in_loop))
        self.function_list.sort(key=lambda f: (f.lineno, f.col_offset))
        # Paths tested by an `if` are forgotten when assigned; an expression test is only tracked
        # when nothing it reads changes inside a loop (`if cfg.accum_steps > 1:`), as it is never forgotten.
        self.tested_paths = {key for key in tested if not key.startswith(TEST_KEY)}
        invariant = {
            assumptions(test)[0][0]
            for test in expression_tests
            if not test_names(test) & assigned_in_loops and not has_modulo(test)
        }
        self.tracked_tests = {
            key
            for key, count in tested.items()
            if count > 1 and (key in self.tested_paths or key in invariant)
        }
        return accelerator_constructors

    def is_inert(
        self, function: ast.FunctionDef | ast.AsyncFunctionDef, imported: frozenset[str] = frozenset()
    ) -> bool:
        """No gradient attribute and no call to a function of this module anywhere inside, nor to
        one of the `imported` names (a function or class of another project module)."""
        if not self.function_names:
            self.function_names = {f.name for f in self.function_list}
        for node in walk(function):
            if isinstance(node, ast.Attribute) and node.attr in names.GRADIENT_ATTRIBUTES:
                return False
            if names.is_order_call(node):
                return False
            if isinstance(node, ast.Call) and (
                names.callee_name(node) in self.function_names
                or (imported and calls_imported(node, imported))
            ):
                return False
        return True

    def class_of(self, function: ast.AST) -> ClassInfo | None:
        owner = self.owner.get(function)
        if isinstance(owner, ast.ClassDef):
            return self.classes.get(owner.name)
        return None

    def method(
        self, info: ClassInfo, name: str, depth: int = 0
    ) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        if name in info.methods:
            return info.methods[name]
        for base in info.node.bases:
            base_name = names.path_of(base)
            if depth < 5 and base_name in self.classes:
                found = self.method(self.classes[base_name], name, depth + 1)
                if found is not None:
                    return found
        return None

    def all_functions(self) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
        return self.function_list


def calls_imported(call: ast.Call, imported: frozenset[str]) -> bool:
    """`engine.train(...)`, `train(...)`, `scaler(...)` where the head name is bound by an import or is
    an instance of a class: the call may reach another module's gradient events."""
    func = call.func
    while isinstance(func, ast.Attribute):
        func = func.value
    return isinstance(func, ast.Name) and func.id in imported


def value_kind(value: ast.expr, kinds: dict[str, str]) -> str | None:
    if isinstance(value, ast.Call):
        callee = names.callee_name(value)
        if names.is_optimizer_constructor(value):
            return "lbfgs" if callee == "LBFGS" else "optimizer"
        if names.is_scheduler_constructor(value):
            return "scheduler"
        if names.is_scaler_constructor(value):
            return "scaler"
        if callee == "Accelerator":
            return "accelerator"
        if callee == "Fabric":
            return "fabric"
        if callee == "optimizers":  # Lightning: self.optimizers()
            return "optimizer"
        if callee in names.PROFILER_CONSTRUCTORS:  # torch.profiler.profile(...): its step() is a phase
            return "profiler"
        if callee in ("prepare", "setup", "setup_optimizers") and len(value.args) == 1:
            return value_kind(value.args[0], kinds)
        if kinds.get(names.path_of(value.func) or "") == "optimizer_class":
            return "optimizer"  # `optimizer = optimizer_class(params)`
        return None
    if is_optimizer_class(value):
        return "optimizer_class"
    path = names.path_of(value)
    if path is None:
        return None
    if path in kinds:
        return kinds[path]
    return "optimizer" if names.is_optimizer_name(path) and not names.is_scheduler_name(path) else None


def is_this_module(value: ast.expr) -> bool:
    """`sys.modules[__name__]`: the module itself, as d2l's books bind it to call their own functions."""
    return (
        isinstance(value, ast.Subscript)
        and names.path_of(value.value) == "sys.modules"
        and isinstance(value.slice, ast.Name)
        and value.slice.id == "__name__"
    )


def divides_by_accumulation(argument: ast.keyword) -> bool:
    """`Accelerator(gradient_accumulation_steps=4)` (or `**kwargs`): accelerator.backward divides by
    it; `gradient_accumulation_steps=1` divides by 1, which is no division."""
    if argument.arg is None:
        return True
    if "accumulation" not in argument.arg:
        return False
    value = argument.value
    return not (isinstance(value, ast.Constant) and value.value == 1)


def is_optimizer_class(value: ast.expr) -> bool:
    """`torch.optim.AdamW`, `bnb.optim.AdamW8bit`, or one of them chosen at run time
    (`torch.optim.AdamW if args.fused else bnb.optim.AdamW8bit`): a class, not yet an optimizer."""
    if isinstance(value, ast.IfExp):
        return is_optimizer_class(value.body) and is_optimizer_class(value.orelse)
    path = names.path_of(value)
    return path is not None and names.last_name(path) in names.OPTIMIZER_CONSTRUCTORS and path[:1] != "_"


def scan_kinds(body: list[ast.stmt], kinds: dict[str, str], only_self: bool = False) -> None:
    """Record which names hold optimizers, schedulers, scalers, accelerators and engines."""
    for statement in own_statements(body):
        if isinstance(statement, ast.Assign):
            targets, value = statement.targets, statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            targets, value = [statement.target], statement.value
        else:
            continue
        for target in targets:
            for path, kind in assigned_kinds(target, value, kinds):
                if only_self and not path.startswith("self."):
                    continue
                kinds.setdefault(path, kind)


def assigned_kinds(target: ast.expr, value: ast.expr, kinds: dict[str, str]) -> Iterator[tuple[str, str]]:
    if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, ast.Call):
        callee = names.callee_name(value)
        elements = [names.path_of(t) for t in target.elts]
        module = names.path_of(value.func.value) if isinstance(value.func, ast.Attribute) else ""
        if callee == "initialize" and elements and "deepspeed" in (module or ""):
            # deepspeed.initialize -> engine, optimizer, ...; apex's amp.initialize returns its arguments
            if elements[0]:
                yield elements[0], "engine"
            if len(elements) > 1 and elements[1]:
                yield elements[1], "optimizer"
        elif callee == "optimizers":
            yield from ((path, "optimizer") for path in elements if path)
        elif callee in ("prepare", "setup", "initialize") or len(value.args) == len(elements):
            for path, argument in zip(elements, value.args):
                kind = value_kind(argument, kinds)
                if path and kind:
                    yield path, kind
        return
    path = names.path_of(target)
    kind = value_kind(value, kinds) if path else None
    if path and kind:
        yield path, kind


def scan_instances(body: list[ast.stmt], instances: dict[str, str], classes: dict[str, ClassInfo]) -> None:
    for statement in own_statements(body):
        if isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Call):
            callee = names.path_of(statement.value.func)
            if callee in classes:
                for target in statement.targets:
                    path = names.path_of(target)
                    if path:
                        instances[path] = callee


def location_of(node: ast.AST, lines: list[str]) -> Location:
    line = getattr(node, "lineno", 1)
    end_line = getattr(node, "end_lineno", None) or line
    return Location(
        line,
        char_column(lines, line, getattr(node, "col_offset", 0)) + 1,
        end_line,
        char_column(lines, end_line, getattr(node, "end_col_offset", None) or 0) + 1,
    )


def char_column(lines: list[str], line: int, byte_offset: int) -> int:
    """ast columns count UTF-8 bytes; users and editors count characters."""
    if not 0 < line <= len(lines):
        return byte_offset
    text = lines[line - 1]
    if text.isascii():
        return byte_offset
    return len(text.encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore"))


def loop_site(loop: ast.For | ast.AsyncFor | ast.While, lines: list[str]) -> LoopSite:
    """How a loop is named in messages: `for x, y in loader` (line 3)."""
    if isinstance(loop, ast.While):
        return LoopSite(location_of(loop, lines), f"while {names.segment(lines, loop.test)}", "")
    target = names.segment(lines, loop.target)
    return LoopSite(location_of(loop, lines), f"for {target} in {names.segment(lines, loop.iter)}", target)
