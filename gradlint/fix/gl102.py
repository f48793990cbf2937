"""GL102's fix: clear the optimizer right after its step (after `scaler.update()` when one follows).

`opt.step()` and `scaler.step(opt)` get `opt.zero_grad()`; a hand-written update of a parameter from
its own gradient (`p -= lr * p.grad`) gets `p.grad.zero_()` right after it, in the same loop. A step
with a closure (`opt.step(closure)`, LBFGS) gets `opt.zero_grad()` at the top of the closure, before
its backward: the step evaluates the closure several times, and each evaluation must start clean.

Safe: the clear runs right after the step, on gradients that step has just applied; where the
program was right after all, those gradients were about to be cleared anyway.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from gradlint.analysis.facts import Facts, Site, StaleStep
from gradlint.fix.edits import Fix, Insert, new_statement
from gradlint.fix.steps import after_step, same_function, stepped_optimizer
from gradlint.fix.tree import Tree

CODE = "GL102"


def fixes(facts: Facts, tree: Tree) -> list[Fix]:
    never_cleared = sorted(
        (stale for stale in facts.stale_steps if stale.clear is None), key=lambda s: s.step.location
    )
    found = (fix_for(stale, tree) for stale in never_cleared)
    return [fix for fix in found if fix is not None]


def fix_for(stale: StaleStep, tree: Tree) -> Fix | None:
    # Where the rule reports it: the one backward, or the step that several backwards feed.
    reported = stale.backwards[0] if len(stale.backwards) == 1 else stale.step
    in_closure = closure_fix(stale, reported, tree)
    if in_closure is not None:
        return in_closure
    step = tree.statement_at(stale.step.location)
    if step is None or not same_function(tree, reported, stale.step):
        return None
    clear = clear_after(tree, step, stale.optimizer)
    if clear is None:
        return None
    return Fix(CODE, reported.location, True, (Insert(after_step(tree, step), new_statement(clear)),))


def clear_after(tree: Tree, step: cst.SimpleStatementLine, optimizer: str) -> str | None:
    if optimizer == "parameters":
        update = step.body[0]
        if m.matches(update, m.AugAssign(target=m.Name())):
            return f"{update.target.value}.grad.zero_()\n"  # type: ignore[attr-defined]
        return None
    stepped = stepped_optimizer(tree, step, optimizer)
    return f"{stepped}.zero_grad()\n" if stepped else None


def closure_fix(stale: StaleStep, reported: Site, tree: Tree) -> Fix | None:
    """`opt.step(closure)` whose closure holds the reported backward: clear first thing in it."""
    call = tree.call_at(stale.step.location)
    closure = tree.function_at(reported.location)
    if call is None or not isinstance(closure, cst.FunctionDef) or len(call.args) != 1:
        return None
    step = m.Call(
        func=m.Attribute(attr=m.Name("step")), args=[m.Arg(m.Name(closure.name.value), keyword=None)]
    )
    if not m.matches(call, step) or not isinstance(closure.body, cst.IndentedBlock):
        return None
    optimizer = tree.code(call.func.value)  # type: ignore[attr-defined]
    body = list(closure.body.body)
    docstring = m.SimpleStatementLine([m.Expr(m.SimpleString() | m.ConcatenatedString())])
    first = 1 if m.matches(body[0], docstring) and len(body) > 1 else 0
    clear = new_statement(f"{optimizer}.zero_grad()\n")
    return Fix(CODE, reported.location, True, (Insert(body[first], clear, after=False),))
