"""The whole analysis of one module: the gradient-state interpreter, then the analyses that stand
on their own, each only for the rules that read it."""

from __future__ import annotations

import ast
import re
from collections.abc import Collection, Sequence

from gradlint.analysis import interpret
from gradlint.analysis.data_parallel import find_data_parallel
from gradlint.analysis.facts import Facts
from gradlint.analysis.flush import find_unflushed_windows
from gradlint.analysis.graph_leaks import find_graph_leaks
from gradlint.analysis.modes import find_eval_during_training
from gradlint.analysis.names import GRADIENT_ATTRIBUTES

__all__ = ["analyse"]

# `.name` as the source can spell an attribute: a dot, then any blanks, line continuations, line
# ends and comments (inside brackets), then the name, whole. A superset of what the parser reads
# as an attribute of that name (ASCII identifiers only: Python reads others NFKC-normalised).
GRADIENT_ATTRIBUTE = re.compile(
    r"\.(?:\s|\\|#[^\r\n]*)*(?:" + "|".join(sorted(GRADIENT_ATTRIBUTES)) + r")\b"
)


def analyse(tree: ast.Module, lines: Sequence[str], codes: Collection[str] | None = None) -> Facts:
    """The gradient-state facts, then those of the analyses that stand on their own (GL5xx, GL302/3),
    each only when its rule is among `codes` (None: every rule): each walks the whole tree again."""
    lines = list(lines)
    text = "\n".join(lines)
    # The interpreter starts from an attribute named like a gradient event (`.backward`, `.step`,
    # `.grad`, ...): where the text has none, its index would find none, and it would say nothing.
    facts = interpret.analyse(tree, lines) if may_have_gradient_attribute(text) else Facts()

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
    return facts


def may_have_gradient_attribute(text: str) -> bool:
    """False only when no attribute of the module can be named like a gradient event."""
    return not text.isascii() or GRADIENT_ATTRIBUTE.search(text) is not None
