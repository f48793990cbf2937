"""Static analysis: source -> gradient events -> per-function flow -> facts the rules read."""

from __future__ import annotations

import ast
from collections.abc import Sequence

from gradlint.analysis import interpret
from gradlint.analysis.data_parallel import find_data_parallel
from gradlint.analysis.facts import Facts
from gradlint.analysis.flush import find_unflushed_windows
from gradlint.analysis.graph_leaks import find_graph_leaks
from gradlint.analysis.modes import find_eval_during_training

__all__ = ["analyse"]


def analyse(tree: ast.Module, lines: Sequence[str]) -> Facts:
    """The gradient-state facts, then those of the analyses that stand on their own (GL5xx, GL302/3)."""
    facts = interpret.analyse(tree, lines)
    facts.graph_leaks |= find_graph_leaks(tree, list(lines))
    facts.eval_during_training |= find_eval_during_training(tree, list(lines))
    wraps, skips_sync = find_data_parallel(tree, list(lines))
    facts.data_parallel |= wraps
    facts.skips_gradient_sync = facts.skips_gradient_sync or skips_sync
    facts.unflushed |= find_unflushed_windows(tree, list(lines))
    return facts
