"""GL303's analysis: where a model is wrapped in `DistributedDataParallel`, and whether anything
in the module keeps micro-batches from all-reducing (`no_sync()`, accelerate's `accumulate()`)."""

from __future__ import annotations

import ast

from gradlint.analysis import names
from gradlint.analysis.facts import DataParallelWrap, Site
from gradlint.analysis.nodes import walk
from gradlint.analysis.scope import location_of

DATA_PARALLEL_CONSTRUCTORS = {"DistributedDataParallel", "DDP"}
# Ways to accumulate without an all-reduce per micro-batch (any one of them: precision first).
SYNC_SKIPPING = {"no_sync", "require_backward_grad_sync", "accumulate", "no_backward_sync"}


def find_data_parallel(tree: ast.Module, lines: list[str]) -> tuple[set[DataParallelWrap], bool]:
    """The DDP wraps of the module, and whether it skips gradient syncs anywhere."""
    wraps: set[DataParallelWrap] = set()
    skips = False
    for node in walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in SYNC_SKIPPING:
            skips = True
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            if names.callee_name(node.value) in DATA_PARALLEL_CONSTRUCTORS:
                model = names.path_of(node.targets[0]) or ""
                site = Site(location_of(node.value, lines), names.segment(lines, node.value))
                wraps.add(DataParallelWrap(site, model))
    return wraps, skips
