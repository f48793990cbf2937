"""Predicates on the shape of `ast` nodes: what a loop iterates, whether a loss is divided, ..."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from gradlint.analysis import names
from gradlint.analysis.nodes import children, dump, walk

FunctionNode = (ast.FunctionDef, ast.AsyncFunctionDef)


def module_statements(tree: ast.Module) -> list[ast.stmt]:
    return [s for s in tree.body if not isinstance(s, (*FunctionNode, ast.ClassDef))]


def parameters(function: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> list[str]:
    args = function.args
    return [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)] + [
        a.arg for a in (args.vararg, args.kwarg) if a is not None
    ]


def own_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement of a body, nested blocks included, nested functions and classes excluded.

    In source order, each statement before the blocks inside it. A stack, not recursion: a chain
    of 3,000 `elif`s is 3,000 nested blocks, and nested generators cost their depth per item."""
    pending: list[Iterator[ast.stmt]] = [iter(body)]
    while pending:
        statement = next(pending[-1], None)
        if statement is None:
            pending.pop()
            continue
        yield statement
        if not isinstance(statement, (*FunctionNode, ast.ClassDef)):
            pending.append(iter(inner_statements(statement)))


def inner_statements(statement: ast.stmt) -> list[ast.stmt]:
    inner = [s for name in ("body", "orelse", "finalbody") for s in getattr(statement, name, []) or []]
    inner += [s for handler in getattr(statement, "handlers", []) or [] for s in handler.body]
    inner += [s for case in getattr(statement, "cases", []) or [] for s in case.body]
    return inner


def assigned_names(body: list[ast.stmt]) -> set[str]:
    found: set[str] = set()
    for statement in own_statements(body):
        targets: list[ast.expr] = []
        if isinstance(statement, ast.Assign):
            targets = statement.targets
        elif isinstance(statement, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor)):
            targets = [statement.target]
        elif isinstance(statement, (ast.With, ast.AsyncWith)):
            targets = [i.optional_vars for i in statement.items if i.optional_vars is not None]
        elif isinstance(statement, (*FunctionNode, ast.ClassDef)):
            found.add(statement.name)
        for target in targets:
            found |= {n.id for n in walk(target) if isinstance(n, ast.Name)}
    return found


def assigned_paths(statement: ast.stmt) -> set[str]:
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    elif isinstance(statement, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor)):
        targets = [statement.target]
    else:
        return set()
    return {
        p
        for t in targets
        for n in walk(t)
        if (p := names.path_of(n)) and isinstance(n, (ast.Name, ast.Attribute))
    }


def assumptions(test: ast.expr) -> tuple[tuple[str, bool], ...]:
    """What each arm of `if test:` knows, as (key, truth): `if x:` -> x is true, then false;
    `if x is None:` -> x is false, then true; `if cfg.steps > 1:` keyed by the expression itself.
    A key starting with TEST_KEY is an expression; any other key is a path (`self.x`)."""
    value = True
    while isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        test, value = test.operand, not value
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and is_none_check(test):
        value = value if isinstance(test.ops[0], ast.IsNot) else not value
        test = test.left
    path = names.path_of(test)
    if path is None:
        if any(isinstance(n, (ast.Call, ast.NamedExpr, ast.Await, ast.Yield)) for n in walk(test)):
            return ()  # a call may answer differently the next time
        path = TEST_KEY + dump(test)
    return ((path, value), (path, not value))


TEST_KEY = "<test>"


def conjuncts(test: ast.expr) -> list[ast.expr]:
    """`a and b and c` -> [a, b, c]; anything else -> [test]."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return [part for value in test.values for part in conjuncts(value)]
    return [test]


def has_modulo(node: ast.AST) -> bool:
    """`(i + 1) % n == 0` changes from one iteration to the next, whatever it reads."""
    return any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mod) for n in walk(node))


def test_names(test: ast.expr) -> set[str]:
    return {p for n in walk(test) if isinstance(n, (ast.Name, ast.Attribute)) and (p := names.path_of(n))}


def has_correlated_if(body: list[ast.stmt], index: int) -> bool:
    statement = body[index]
    assert isinstance(statement, ast.If)  # callers pass the index of an `if`
    return specialise(body[index + 1 :], statement.test, True) != body[index + 1 :]


def specialise(body: list[ast.stmt], test: ast.expr, value: bool) -> list[ast.stmt]:
    """Replace later `if <test>:` statements by the arm `value` picks, while `test` cannot change."""
    if any(isinstance(n, (ast.Call, ast.NamedExpr)) for n in walk(test)):
        return body  # a call may answer differently the second time
    tested = {n.id for n in walk(test) if isinstance(n, ast.Name)}
    shape = dump(test)
    result: list[ast.stmt] = []
    for position, statement in enumerate(body):
        if isinstance(statement, ast.If) and dump(statement.test) == shape:
            result.extend(statement.body if value else statement.orelse)
            continue
        result.append(statement)
        if assigned_names([statement]) & tested:
            return result + body[position + 1 :]
    return result


def call_children(node: ast.Call) -> list[ast.expr]:
    func = node.func
    children = [func.value] if isinstance(func, ast.Attribute) else [func]
    return children + list(node.args) + [k.value for k in node.keywords]


def keyword(node: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in node.keywords if k.arg == name), None)


def is_grad_access(node: ast.AST) -> bool:
    """`p.grad`, `p.grad.data`."""
    while isinstance(node, ast.Attribute) and node.attr == "data":
        node = node.value
    return isinstance(node, ast.Attribute) and node.attr == "grad"


def root_path(node: ast.AST) -> str | None:
    """The parameter an access is about: `p.grad.data` -> p, `p.data` -> p, `w` -> w."""
    while isinstance(node, ast.Attribute) and node.attr in ("grad", "data"):
        node = node.value
    return names.path_of(node)


def grad_owners(node: ast.AST) -> set[str]:
    return {
        owner
        for n in walk(node)
        if isinstance(n, ast.Attribute) and n.attr == "grad" and (owner := root_path(n)) is not None
    }


def grad_owners_of_args(node: ast.Call) -> set[str]:
    return {
        owner
        for argument in (*node.args, *(k.value for k in node.keywords))
        for owner in grad_owners(argument)
    }


def is_none_check(node: ast.Compare) -> bool:
    return all(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops) and any(
        isinstance(c, ast.Constant) and c.value is None for c in node.comparators
    )


def root_name(node: ast.AST) -> str | None:
    """The variable a loss expression starts from: `outputs.loss` -> outputs, `loss.mean()` -> loss."""
    while True:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            node = node.func.value
        else:
            return None


def is_scaled(node: ast.AST) -> bool:
    """Division or multiplication of the loss itself (not inside a call's arguments)."""
    if isinstance(node, ast.BinOp):
        return isinstance(node.op, (ast.Div, ast.Mult)) or is_scaled(node.left) or is_scaled(node.right)
    if isinstance(node, ast.Call):
        if names.callee_name(node) in ("div", "div_", "mul", "mul_", "true_divide", "divide", "multiply"):
            return True
        return isinstance(node.func, ast.Attribute) and is_scaled(node.func.value)
    if isinstance(node, (ast.Attribute, ast.Subscript)):
        return is_scaled(node.value)
    if isinstance(node, ast.UnaryOp):
        return is_scaled(node.operand)
    return False


def unwrap_iterable(node: ast.expr) -> ast.expr:
    """`enumerate(tqdm(loader))` -> loader."""
    while isinstance(node, ast.Call) and names.callee_name(node) in names.LOOP_WRAPPERS and node.args:
        node = node.args[0]
    return node


def is_collection(node: ast.expr) -> bool:
    """A loop over parameters, optimizers or models (not over data)."""
    node = unwrap_iterable(node)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("items", "values", "keys")
    ):
        node = node.func.value  # self.optimizers.items()
    vocabulary = names.words(names.callee_name(node)) if isinstance(node, ast.Call) else set()
    path = names.path_of(node)
    if path:
        vocabulary |= names.words(names.last_name(path))
    return bool(vocabulary & names.COLLECTION_WORDS) and not vocabulary & names.DATA_WORDS


def parameters_owner(node: ast.expr) -> str | None:
    node = unwrap_iterable(node)
    if isinstance(node, ast.Call) and names.callee_name(node) in ("parameters", "named_parameters"):
        if isinstance(node.func, ast.Attribute):
            return names.path_of(node.func.value)
    return None


def accumulation_bound(node: ast.expr) -> str | None:
    """`range(accum_steps)` -> 'accum_steps' when the bound names an accumulation count."""
    node = unwrap_iterable(node)
    if isinstance(node, ast.Call) and names.callee_name(node) == "range" and node.args:
        bound = node.args[-1] if len(node.args) <= 2 else node.args[1]
        if names.has_word(bound, names.ACCUMULATION_WORDS):
            return names.segment([], bound)
    return None


def draws_data(node: ast.For | ast.AsyncFor | ast.While) -> bool:
    """Each repetition takes a new batch: it iterates data, calls next() or get_batch(), counts steps."""
    if isinstance(node, (ast.For, ast.AsyncFor)):
        iterable = unwrap_iterable(node.iter)
        if names.has_word(iterable, names.DATA_WORDS) or accumulation_bound(node.iter):
            return True
        if isinstance(iterable, ast.Call) and names.callee_name(iterable) in (
            "chunk",
            "split",
            "tensor_split",
        ):
            return True
    for statement in node.body:  # walk() sees nested blocks too: walking each again is quadratic
        for sub in walk(statement):
            if isinstance(sub, ast.Call) and names.words(names.callee_name(sub)) & {
                "next",
                "batch",
                "batches",
            }:
                return True
    return False


def uses_the_other_parts(node: ast.For | ast.AsyncFor) -> bool:
    """`torch.cat(cached[:j] + [fresh] + cached[j + 1 :])` in `for j in ...`: micro-step j's loss is
    over the whole window (gradient caching: the other micro-batches' outputs cached, its own part
    recomputed with its graph), so the micro-steps' gradients add up to the window loss's, not to
    a multiple of it."""
    if not isinstance(node.target, ast.Name):
        return False
    variable = node.target.id

    def mentions_variable(bound: ast.expr | None) -> bool:
        return bound is not None and any(isinstance(n, ast.Name) and n.id == variable for n in walk(bound))

    before: set[str] = set()  # `xs[:j]`
    after: set[str] = set()  # `xs[j + 1:]`
    # every node of the body once: walk() sees nested blocks too, so walking each statement that
    # own_statements() yields would visit a node once per block around it
    for statement in node.body:
        for sub in walk(statement):
            if not (isinstance(sub, ast.Subscript) and isinstance(sub.slice, ast.Slice)):
                continue
            container, part = names.path_of(sub.value), sub.slice
            if container is None or part.step is not None:
                continue
            if part.lower is None and mentions_variable(part.upper):
                before.add(container)
            elif part.upper is None and mentions_variable(part.lower):
                after.add(container)
    return bool(before & after)


def is_accumulation_guard(guard: ast.expr | None) -> bool:
    if guard is None:
        return False
    has_modulo = any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mod) for n in walk(guard))
    return has_modulo or names.has_word(guard, names.ACCUMULATION_WORDS)


def own_nodes(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """Every node of a body once, nested functions and classes excluded (lambdas included)."""
    pending: list[ast.AST] = list(reversed(body))
    while pending:
        node = pending.pop()
        yield node
        if isinstance(node, (*FunctionNode, ast.ClassDef)):
            continue
        pending.extend(reversed(children(node)))
