"""What the clear-moving fixes share: reading a step statement, and where "after the step" is."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from gradlint.analysis.facts import Site
from gradlint.fix.tree import Tree


def step_call(line: cst.SimpleStatementLine) -> cst.Call | None:
    statement = line.body[0]
    if isinstance(statement, cst.Expr) and m.matches(
        statement.value, m.Call(func=m.Attribute(attr=m.Name("step")))
    ):
        return statement.value  # type: ignore[return-value]
    return None


def stepped_optimizer(tree: Tree, line: cst.SimpleStatementLine, optimizer: str) -> str | None:
    """The optimizer, as this statement spells it: `opt` in `opt.step()` or `scaler.step(opt)`.

    None for a step with a closure (`opt.step(closure)`: the clear belongs inside the closure) and for
    any call whose optimizer is not the one the analysis named."""
    call = step_call(line)
    if call is None:
        return None
    receiver = tree.code(call.func.value)  # type: ignore[attr-defined]
    if not call.args:
        return receiver
    if len(call.args) == 1 and call.args[0].keyword is None and tree.code(call.args[0].value) == optimizer:
        return optimizer  # scaler.step(optimizer)
    return None


def after_step(tree: Tree, line: cst.SimpleStatementLine) -> cst.BaseStatement:
    """The statement a clear goes after: the step, or the `scaler.update()` that completes it."""
    call = step_call(line)
    following = tree.next_statement(line)
    if call is None or not call.args or not isinstance(following, cst.SimpleStatementLine):
        return line
    scaler = tree.code(call.func.value)  # type: ignore[attr-defined]
    update = m.Expr(m.Call(func=m.Attribute(attr=m.Name("update")), args=[]))
    if len(following.body) == 1 and m.matches(following.body[0], update):
        if tree.code(following.body[0].value.func.value) == scaler:  # type: ignore[attr-defined]
            return following
    return line


def same_function(tree: Tree, *sites: Site) -> bool:
    """All of `sites` are in one function (or all at module level): a fix edits one function."""
    functions = [tree.function_at(site.location) for site in sites]
    return all(f is not False for f in functions) and all(f is functions[0] for f in functions)
