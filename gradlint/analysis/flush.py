"""GL302's analysis: accumulation windows counted with a modulo that nothing flushes at the end.

A step under `if (i + 1) % n == 0:` inside a loop over data leaves the last `len(loader) % n`
backward passes in `.grad` when the loop ends. That matters when the loop runs again (an epoch
loop around it, in the same function or around the call of its function) and nothing in between
steps or clears: the next epoch's first step then sums more than n passes. Flushes that silence it:
the guard also names the end (`or i + 1 == len(loader)`, `or is_last`), a step or a clear after the
loop, a clear before it in the epoch, or a loop over `range(k * n)`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from typing import Union

from gradlint.analysis import names
from gradlint.analysis.facts import Site, UnflushedWindow
from gradlint.analysis.nodes import walk
from gradlint.analysis.scope import location_of, loop_site
from gradlint.analysis.shapes import (
    FunctionNode,
    draws_data,
    has_modulo,
    module_statements,
    own_nodes,
)

END_WORDS = {"last", "end", "final", "remaining", "remainder", "flush"}
GRADIENT_RESETS = {"step", "zero_grad"}
LoopNode = (ast.For, ast.AsyncFor)


def find_unflushed_windows(tree: ast.Module, lines: list[str]) -> set[UnflushedWindow]:
    found: set[UnflushedWindow] = set()
    repeated_calls: dict[str, bool] | None = None  # computed only if a window needs its callers
    bodies: list[tuple[str | None, list[ast.stmt]]] = [(None, module_statements(tree))]
    bodies += [(node.name, node.body) for node in walk(tree) if isinstance(node, FunctionNode)]
    for name, body in bodies:
        for loop, outer, after, before in loops_with_context(body):
            step = guarded_step(loop)
            if step is None or flushed(step, loop) or resets(after) or resets(before):
                continue
            if outer is None:
                if repeated_calls is None:
                    repeated_calls = calls_inside_loops(tree)
                if name is None or name not in repeated_calls or repeated_calls[name]:
                    continue  # nothing runs the loop again, or the caller's epoch loop resets
                repeat = None
            else:
                repeat = loop_site(outer, lines)
            backward = first_backward(loop)
            if backward is None:
                continue
            found.add(
                UnflushedWindow(
                    site_of(step, lines),
                    site_of(backward, lines),
                    loop_site(loop, lines),
                    repeat,
                    names.segment(lines, modulo_of(step.test)),
                )
            )
    return found


AnyLoop = Union[ast.For, ast.AsyncFor, ast.While]


def loops_with_context(
    body: list[ast.stmt], outer: AnyLoop | None = None
) -> Iterator[tuple[ast.For | ast.AsyncFor, AnyLoop | None, list[ast.stmt], list[ast.stmt]]]:
    """Each for-loop over data with the loop around it, and what runs after and before it there."""
    for index, statement in enumerate(body):
        if isinstance(statement, (*FunctionNode, ast.ClassDef)):
            continue
        if isinstance(statement, LoopNode) and draws_data(statement):
            yield statement, outer, body[index + 1 :], body[:index]
        inner_outer = statement if isinstance(statement, (*LoopNode, ast.While)) else outer
        for field in ("body", "orelse", "finalbody"):
            yield from loops_with_context(getattr(statement, field, []) or [], inner_outer)
        for handler in getattr(statement, "handlers", []) or []:
            yield from loops_with_context(handler.body, inner_outer)


def guarded_step(loop: ast.For | ast.AsyncFor) -> ast.If | None:
    """The `if (i + 1) % n == 0:` around a step, directly in the loop's body."""
    for statement in loop.body:
        if isinstance(statement, ast.If) and has_modulo(statement.test) and steps(statement.body):
            return statement
    return None


def flushed(guard: ast.If, loop: ast.For | ast.AsyncFor) -> bool:
    """The guard also fires at the end, or the loop's length is a multiple of the count."""
    test = guard.test
    if any(isinstance(n, ast.Call) and names.callee_name(n) == "len" for n in walk(test)):
        return True
    if names.has_word(test, END_WORDS):
        return True
    divisor = modulo_of(test)
    iterable = loop.iter
    while (
        isinstance(iterable, ast.Call)
        and names.callee_name(iterable) in names.LOOP_WRAPPERS
        and iterable.args
    ):
        iterable = iterable.args[0]
    if isinstance(iterable, ast.Call) and names.callee_name(iterable) == "range" and divisor is not None:
        bound = ast.dump(divisor)
        return any(
            isinstance(n, ast.BinOp)
            and isinstance(n.op, ast.Mult)
            and bound in (ast.dump(n.left), ast.dump(n.right))
            for argument in iterable.args
            for n in walk(argument)
        )
    return False


def modulo_of(test: ast.expr) -> ast.expr:
    for node in walk(test):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            return node.right
    return test


def steps(body: list[ast.stmt]) -> bool:
    return any(
        isinstance(n, ast.Call) and names.callee_name(n) == "step" and not is_scheduler_step(n)
        for n in own_nodes(body)
    )


def resets(body: list[ast.stmt]) -> bool:
    """A step or a clear (`optimizer.step()`, `zero_grad()`, `p.grad = None`) somewhere in `body`."""
    for node in own_nodes(body):
        if isinstance(node, ast.Call) and names.callee_name(node) in GRADIENT_RESETS:
            if not is_scheduler_step(node):
                return True
        if isinstance(node, ast.Attribute) and node.attr == "grad" and isinstance(node.ctx, ast.Store):
            return True
    return False


def is_scheduler_step(call: ast.Call) -> bool:
    receiver = names.path_of(call.func.value) if isinstance(call.func, ast.Attribute) else None
    return receiver is not None and names.is_scheduler_name(receiver)


def first_backward(loop: ast.For | ast.AsyncFor) -> ast.Call | None:
    for node in own_nodes(loop.body):
        if isinstance(node, ast.Call) and names.callee_name(node) in ("backward", "manual_backward"):
            return node
    return None


def calls_inside_loops(tree: ast.Module) -> dict[str, bool]:
    """Functions called inside a loop -> whether that loop's body also steps or clears around the call."""
    found: dict[str, bool] = {}
    for loop in walk(tree):
        if not isinstance(loop, (*LoopNode, ast.While)):
            continue
        resetting = [resets([statement]) for statement in loop.body]
        for index, statement in enumerate(loop.body):
            others_reset = any(r for i, r in enumerate(resetting) if i != index)
            for node in own_nodes([statement]):
                if isinstance(node, ast.Call):
                    callee = names.callee_name(node)
                    found[callee] = found.get(callee, False) or others_reset
    return found


def site_of(node: ast.AST, lines: list[str]) -> Site:
    if isinstance(node, ast.If):
        step = next(
            n
            for n in own_nodes(node.body)
            if isinstance(n, ast.Call) and names.callee_name(n) == "step" and not is_scheduler_step(n)
        )
        return Site(location_of(step, lines), names.segment(lines, step))
    return Site(location_of(node, lines), names.segment(lines, node))  # type: ignore[arg-type]
