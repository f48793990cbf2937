"""GL301's fix: divide the loss given to backward by the accumulation count, in the file's own names.

`loss.backward()` becomes `(loss / accum_steps).backward()`, `scaler.scale(loss).backward()` becomes
`scaler.scale(loss / accum_steps).backward()`, `accelerator.backward(loss)` becomes
`accelerator.backward(loss / accum_steps)`. The count is the one the finding names: the modulo
divisor, the inner loop's bound, or `len(loader)` for one step per pass over the loader. The loss
variable itself is left alone, so what the program logs does not change.

Unsafe: dividing the loss divides every update by the count, which is the fix, but a program whose
learning rate was tuned with the summed gradients then trains with a learning rate n times smaller.
"""

from __future__ import annotations

import ast

import libcst as cst
import libcst.matchers as m

from gradlint.analysis.facts import Facts, UnscaledAccumulation
from gradlint.fix.edits import Fix, Replace
from gradlint.fix.steps import same_function
from gradlint.fix.tree import Tree

CODE = "GL301"
ATOMS = (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Constant)


def fixes(facts: Facts, tree: Tree) -> list[Fix]:
    ordered = sorted(facts.unscaled, key=lambda u: (u.backward.location, u.step.location))
    found = (fix_for(unscaled, tree) for unscaled in ordered)
    return [fix for fix in found if fix is not None]


def fix_for(unscaled: UnscaledAccumulation, tree: Tree) -> Fix | None:
    backward = unscaled.backward
    statement = tree.statement_at(backward.location)
    call = tree.call_at(backward.location)
    count = divisor(unscaled.count, tree.bound_names(backward.location.line))
    if statement is None or call is None or count is None:
        return None
    loop = tree.loop_at(unscaled.loop.location)
    if loop is None or not tree.inside(statement, loop) or not same_function(tree, backward, unscaled.step):
        return None  # the loop that repeats, the backward and the step must be the function's own
    scaled = divided_call(tree, call, count)
    if scaled is None:
        return None
    return Fix(CODE, backward.location, False, (Replace(call, scaled, statement),))


def divisor(count: str, bound: set[str]) -> str | None:
    """`count` as a divisor, or None when it names something not in scope where the loss is."""
    try:
        expression = ast.parse(count, mode="eval").body
    except SyntaxError:
        return None
    used = {node.id for node in ast.walk(expression) if isinstance(node, ast.Name)}
    if not used <= bound:
        return None
    return count if isinstance(expression, ATOMS) else f"({count})"


def divided_call(tree: Tree, call: cst.Call, count: str) -> cst.Call | None:
    if not m.matches(call.func, m.Attribute(attr=m.Name("backward") | m.Name("manual_backward"))):
        return None
    positional = [arg for arg in call.args if arg.keyword is None and not arg.star]
    if positional:
        # accelerator.backward(loss), torch.autograd.backward(loss); for a tensor's
        # loss.backward(gradient), dividing the gradient is the same as dividing the loss.
        first = positional[0]
        new = first.with_changes(value=divide(tree, first.value, count))
        return call.with_changes(args=[new if arg is first else arg for arg in call.args])
    receiver = call.func.value  # type: ignore[attr-defined]
    if m.matches(receiver, m.Call(func=m.Attribute(attr=m.Name("scale")), args=[m.Arg(keyword=None)])):
        (loss,) = receiver.args
        scaled = receiver.with_changes(args=[loss.with_changes(value=divide(tree, loss.value, count))])
        return call.with_changes(func=call.func.with_changes(value=scaled))
    return call.with_changes(func=call.func.with_changes(value=divide(tree, receiver, count, parens=True)))


def divide(tree: Tree, loss: cst.BaseExpression, count: str, parens: bool = False) -> cst.BaseExpression:
    text = tree.code(loss)
    if not isinstance(ast.parse(text.strip(), mode="eval").body, ATOMS):
        text = f"({text})"  # `a + b` over n is `(a + b) / n`
    text = f"{text} / {count}"
    return cst.parse_expression(f"({text})" if parens else text)
