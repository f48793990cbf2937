"""Static analysis: source -> gradient events -> per-function flow -> facts the rules read."""

from __future__ import annotations

import ast
from collections.abc import Sequence

from gradlint.analysis import interpret
from gradlint.analysis.facts import Facts
from gradlint.analysis.graph_leaks import find_graph_leaks

__all__ = ["analyse"]


def analyse(tree: ast.Module, lines: Sequence[str]) -> Facts:
    """The gradient-state facts, then those of the analyses that stand on their own (GL501)."""
    facts = interpret.analyse(tree, lines)
    facts.graph_leaks |= find_graph_leaks(tree, list(lines))
    return facts
