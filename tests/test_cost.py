"""What the analysis remembers or skips to bound its cost gives the facts it would have computed.

Each shortcut (a gate that skips an analysis, a memo that answers once for many asks) is held here
to the long way round, on every fixture and on shapes chosen to stress it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gradlint.analysis import graph_leaks
from gradlint.analysis.build import FunctionBuilder
from gradlint.analysis.flow import Event
from gradlint.analysis.interpret import Grad, ModuleAnalysis, without_fresh
from gradlint.analysis.nodes import dump
from gradlint.analysis.pipeline import may_have_gradient_attribute
from gradlint.analysis.scope import ModuleIndex
from gradlint.analysis.shapes import is_scaled
from gradlint.checker import check_source, source_lines
from gradlint.core import EventKind

FIXTURES = sorted((Path(__file__).resolve().parent.parent / "fixtures").glob("*.py"))

ODD_SPELLINGS = {
    "a comment between the dot and the name": "(optimizer.  # step now\n    step())\n",
    "a line continuation": "optimizer.\\\n    zero_grad()\n",
    "blanks around the dot": "loss . backward()\n",
    "an f-string": 'print(f"{p.grad}")\n',
    "a decorator": "@trainer.step\ndef f():\n    pass\n",
}
NO_ATTRIBUTE = {
    "a bare call": "backward(100)\nstep()\n",
    "a longer name": "x.grad_norm()\nx.stepper()\nx.gradient\n",
    "words in strings and comments": 'print("call backward() then step")  # zero_grad\n',
}


def index_sees_gradient_code(text: str) -> bool:
    return ModuleIndex.of(ast.parse(text)).has_gradient_code


@pytest.mark.parametrize("path", FIXTURES, ids=[path.stem for path in FIXTURES])
def test_the_text_gate_never_says_no_where_the_index_says_yes(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    if index_sees_gradient_code(text):
        assert may_have_gradient_attribute("\n".join(source_lines(text)))


@pytest.mark.parametrize("text", ODD_SPELLINGS.values(), ids=list(ODD_SPELLINGS))
def test_the_text_gate_reads_attributes_however_they_are_spelt(text: str) -> None:
    assert index_sees_gradient_code(text)
    assert may_have_gradient_attribute(text)


@pytest.mark.parametrize("text", NO_ATTRIBUTE.values(), ids=list(NO_ATTRIBUTE))
def test_the_text_gate_lets_through_files_without_such_an_attribute(text: str) -> None:
    assert not index_sees_gradient_code(text)
    assert not may_have_gradient_attribute(text)


def test_a_fullwidth_name_goes_to_the_index() -> None:
    text = "loss.\uff42ackward()\n"  # Python reads `ｂackward` as `backward`
    assert index_sees_gradient_code(text)
    assert may_have_gradient_attribute(text)


def loss_facts_the_long_way(builder: FunctionBuilder, event: Event) -> tuple[bool, frozenset, bool]:
    """What finish_backward() found before it remembered its answer per name."""
    assert event.loss_name is not None
    assignments = builder.assignments.get(event.loss_name, [])
    scaled = False
    for node, _ in assignments:
        if isinstance(node, ast.AugAssign) and isinstance(node.op, (ast.Div, ast.Mult)):
            scaled = True
        value = getattr(node, "value", None)
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and value is not None:
            if is_scaled(value) or builder.returns_scaled(value):
                scaled = True
    loops = frozenset(loop for _, loops in assignments for loop in loops)
    return bool(assignments), loops, scaled


CORRELATED = """
import torch

def train(model, loader, args):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in loader:
        if args.prior:
            loss = model(x, y) / 2
        else:
            loss = model(x, y)
        if args.cache:
            x = x.cuda()
        loss.backward()
        if args.prior:
            loss = loss * args.weight
        if args.cache:
            loss.backward()
        optimizer.step()
        optimizer.zero_grad()
"""


@pytest.mark.parametrize("text", [CORRELATED, *(p.read_text(encoding="utf-8") for p in FIXTURES)])
def test_the_loss_facts_of_a_name_are_those_of_each_of_its_assignments(text: str) -> None:
    tree = ast.parse(text)
    analysis = ModuleAnalysis(tree, source_lines(text))
    if not analysis.index.has_gradient_code:
        return
    for function in [None, *analysis.index.all_functions()]:
        analysis.flow_of(function)
    for builder in analysis.builders.values():
        for event in builder.backwards:
            if event.loss_name is None:
                continue
            assigned, loops, scaled = loss_facts_the_long_way(builder, event)
            assert (event.loss_assigned, event.loss_loops) == (assigned, loops)
            if scaled:
                assert event.scaled


def test_a_step_leaves_alone_the_values_holding_none_of_what_it_used() -> None:
    site = object()
    used, other = (Event(EventKind.BACKWARD, site) for _ in range(2))  # type: ignore[arg-type]
    untouched = frozenset({Grad(pending=1, fresh=frozenset({other})), Grad(unknown=True)})
    assert without_fresh(untouched, frozenset({used})) is untouched
    touched = frozenset(
        {Grad(pending=1, fresh=frozenset({used, other})), Grad(pending=1, fresh=frozenset({used}))}
    )
    assert without_fresh(touched, frozenset({used})) == frozenset(
        v._replace(fresh=v.fresh - {used}) for v in touched
    )


def test_a_remembered_dump_is_the_dump_and_stays_out_of_the_parents() -> None:
    tree = ast.parse("if args.flag and x > 1:\n    y = 2\n")
    test = tree.body[0].test  # type: ignore[attr-defined]
    assert dump(test.values[0]) == ast.dump(test.values[0])
    assert dump(test) == ast.dump(test)
    assert dump(tree) == ast.dump(tree)


BARE_BACKWARD = """
from torch.autograd import backward

def train(data):
    total = 0
    for x in data:
        loss = compute(x)
        backward(loss)
        total += loss
    return float(total)
"""


def test_a_module_without_models_still_reads_its_backward_passes_for_leaks() -> None:
    shape = graph_leaks.ModuleShape.of(ast.parse(BARE_BACKWARD))
    assert not shape.models
    assert [f.code for f in check_source(BARE_BACKWARD)] == ["GL501"]
