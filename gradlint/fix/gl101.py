"""GL101's fix: move the clear into the loop that steps, and remove it from where it ran too rarely.

The clear goes where the file already clears: right after the step when the file clears after a step
elsewhere, else at the top of the stepping loop (before the forward pass). It keeps its own spelling
(`model.zero_grad(set_to_none=True)`, a `p.grad = None` loop) and trailing comment. When an
iteration can skip the step (the step is under an `if`, or a `continue` is in the loop), a copy goes
right after the step, whatever the style (at the top it would wipe the skipped iterations'
gradients), and the outer clear stays: it still drops what a skipped last step left behind.

Safe: the clear then runs once per step, either right after it or at the top of a loop whose every
iteration steps, so it only clears gradients a step has already applied; where the program was
right after all, that changes nothing.
"""

from __future__ import annotations

import libcst as cst

from gradlint.analysis.facts import Facts, StaleStep
from gradlint.fix.edits import Fix, Insert, Remove, moved
from gradlint.fix.steps import after_step, step_call
from gradlint.fix.tree import Tree, skips_iterations

CODE = "GL101"


def fixes(facts: Facts, tree: Tree) -> list[Fix]:
    cleared = sorted(
        (stale for stale in facts.stale_steps if stale.clear is not None),
        key=lambda stale: (stale.clear.location, stale.step.location),  # type: ignore[union-attr]
    )
    found = (fix_for(stale, tree) for stale in cleared)
    return [fix for fix in found if fix is not None]


def fix_for(stale: StaleStep, tree: Tree) -> Fix | None:
    outer = [loop for loop in stale.step_loops if loop not in stale.clear_loops]
    if stale.clear is None or not stale.clear_on_path or not outer:
        return None  # the step is skipped on some iterations: where the clear belongs is not known
    clear = tree.clear_unit(stale.clear.location)
    loop = tree.loop_at(outer[-1].location)
    if clear is None or loop is None or tree.function_of(clear) is not tree.function_of(loop):
        return None
    if tree.inside(clear, loop) or not isinstance(loop.body, cst.IndentedBlock) or not tree.removable(clear):
        return None
    step = tree.statement_at(stale.step.location)
    if step is not None and tree.inside(step, loop):
        after = Insert(after_step(tree, step), moved(clear), after=True)
        if not tree.always_reached(step, loop):
            # What a skipped step leaves in .grad when the loop ends, the outer clear still drops.
            return Fix(CODE, stale.clear.location, True, (Insert(after.anchor, copied(clear)),))
        if clears_after_steps(tree):
            return Fix(CODE, stale.clear.location, True, (Remove(clear), after))
    elif skips_iterations(loop):
        return None  # the step is in a helper this loop may skip: where the clear goes is not clear
    top = Insert(loop.body.body[0], moved(clear), after=False)
    return Fix(CODE, stale.clear.location, True, (Remove(clear), top))


def copied(clear: cst.BaseStatement) -> cst.BaseStatement:
    """A second clear like `clear`, without its trailing comment (that stays with the original)."""
    copy = moved(clear)
    if isinstance(copy, cst.SimpleStatementLine):
        return copy.with_changes(trailing_whitespace=cst.TrailingWhitespace())
    return copy


def clears_after_steps(tree: Tree) -> bool:
    """The file's style: somewhere a clear directly follows a step in the same block."""
    for node in tree.positions:
        if isinstance(node, (cst.Module, cst.IndentedBlock)):
            body = list(node.body)
            for first, second in zip(body, body[1:]):
                if is_step(first) and "zero_grad(" in tree.code(second):
                    return True
    return False


def is_step(statement: cst.BaseStatement) -> bool:
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and len(statement.body) == 1
        and bool(step_call(statement))
    )
