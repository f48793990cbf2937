"""GL103's fix: move the clear that discards unstepped gradients to right after the step it starved.

Offered when the clear and the step are in one function and the clear comes first; the clear keeps
its spelling (`set_to_none=True` stays) and its trailing comment.

Safe when the clear sits between the backward and the step (`backward(); zero_grad(); step()`): that
step could only apply empty gradients, which no correct program means to do. Unsafe when a backward
runs between the clear and the step (a clear on every micro-batch of an accumulation window): there a
program might mean to drop the earlier backwards, and moving the clear makes the step use them all.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from gradlint.analysis.facts import DiscardedGradients, Facts
from gradlint.fix.edits import Fix, Insert, Remove, moved
from gradlint.fix.steps import after_step, same_function
from gradlint.fix.tree import Tree

CODE = "GL103"


def fixes(facts: Facts, tree: Tree) -> list[Fix]:
    ordered = sorted(facts.discarded, key=lambda d: (d.clear.location, d.step.location, d.backward.location))
    found = (fix_for(discard, tree) for discard in ordered)
    return [fix for fix in found if fix is not None]


def fix_for(discard: DiscardedGradients, tree: Tree) -> Fix | None:
    clear = tree.clear_unit(discard.clear.location)
    step = tree.statement_at(discard.step.location)
    if clear is None or step is None or not same_function(tree, discard.clear, discard.step):
        return None
    if not tree.removable(clear):
        return None  # the clear is all its block holds: what guards it would be left guarding nothing
    if not discard.clear.location < discard.step.location or tree.inside(step, clear):
        return None  # the clear already follows the step in the text: moving it is not the fix
    safe = (
        same_function(tree, discard.backward, discard.clear)
        and discard.backward.location < discard.clear.location
        and not backward_between(tree, clear, step)
    )
    return Fix(
        CODE, discard.clear.location, safe, (Remove(clear), Insert(after_step(tree, step), moved(clear)))
    )


def backward_between(tree: Tree, clear: cst.BaseStatement, step: cst.BaseStatement) -> bool:
    """Some backward call sits in the text between the clear and the step."""
    start, end = tree.positions[clear].end, tree.positions[step].start
    backward = m.Call(
        func=m.Attribute(attr=m.Name("backward") | m.Name("manual_backward")) | m.Name("backward")
    )
    for node, where in tree.positions.items():
        if (start.line, start.column) <= (where.start.line, where.start.column) < (end.line, end.column):
            if isinstance(node, cst.Call) and m.matches(node, backward):
                return True
    return False
