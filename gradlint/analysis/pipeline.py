"""The whole analysis of one module: the gradient-state interpreter, then the analyses that stand
on their own, each only for the rules that read it."""

from __future__ import annotations

import ast
from collections.abc import Collection, Sequence
from dataclasses import fields, is_dataclass, replace

from gradlint.analysis import interpret
from gradlint.analysis.data_parallel import find_data_parallel
from gradlint.analysis.facts import Facts, LoopSite, Site
from gradlint.analysis.flush import find_unflushed_windows
from gradlint.analysis.graph_leaks import find_graph_leaks
from gradlint.analysis.modes import find_eval_during_training
from gradlint.analysis.parameters_outside import find_parameters_outside
from gradlint.analysis.program import Program
from gradlint.core import Location

__all__ = ["analyse", "analyse_program"]


def analyse(tree: ast.Module, lines: Sequence[str], codes: Collection[str] | None = None) -> Facts:
    """The gradient-state facts, then those of the analyses that stand on their own (GL5xx, GL302/3,
    GL204), each only when its rule is among `codes` (None: every rule): each walks the whole tree again."""
    facts = interpret.analyse(tree, lines)
    add_module_facts(facts, tree, list(lines), codes)
    return facts


def analyse_program(program: Program, codes: Collection[str] | None = None) -> Facts:
    """The facts of a program of several modules: the gradient state followed through every call
    into the project, then each root module's own analyses, their sites labelled with its path."""
    facts = interpret.ProgramAnalysis(program).run()
    for module in program.roots:
        own = Facts()
        add_module_facts(own, module.tree, module.lines, codes)
        for name in FACT_SETS:
            getattr(facts, name).update(labelled(fact, module.path) for fact in getattr(own, name))
        facts.skips_gradient_sync = facts.skips_gradient_sync or own.skips_gradient_sync
    return facts


# The facts of the analyses that stand on their own, which read one module's tree.
FACT_SETS = ("graph_leaks", "eval_during_training", "data_parallel", "unflushed", "parameters_outside")


def labelled(value, path: str):
    """`value` with every site in it labelled with the module it is in."""
    if isinstance(value, (Site, LoopSite)):
        return value if value.path is not None else replace(value, path=path)
    if isinstance(value, tuple):
        return tuple(labelled(item, path) for item in value)
    if is_dataclass(value) and not isinstance(value, (type, Location)):
        return replace(value, **{f.name: labelled(getattr(value, f.name), path) for f in fields(value)})
    return value


def add_module_facts(facts: Facts, tree: ast.Module, lines: list[str], codes: Collection[str] | None) -> None:
    text = "\n".join(lines)

    def mentions(*words: str) -> bool:
        """A cheap necessary condition: identifiers can be spelt otherwise only outside ASCII."""
        return not text.isascii() or any(word in text for word in words)

    def wanted(code: str) -> bool:
        return codes is None or code in codes

    if wanted("GL501") and mentions("backward("):
        facts.graph_leaks |= find_graph_leaks(tree, lines)
    if wanted("GL502") and mentions("backward") and mentions("eval", "train"):
        facts.eval_during_training |= find_eval_during_training(tree, lines)
    if wanted("GL303") and mentions("DistributedDataParallel", "DDP"):
        wraps, skips_sync = find_data_parallel(tree, lines)
        facts.data_parallel |= wraps
        facts.skips_gradient_sync = facts.skips_gradient_sync or skips_sync
    if wanted("GL302") and mentions("%") and mentions("step"):
        facts.unflushed |= find_unflushed_windows(tree, lines)
    if wanted("GL204") and mentions("backward(") and mentions("parameters(") and mentions("step("):
        facts.parameters_outside |= find_parameters_outside(tree, lines)
