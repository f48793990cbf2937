"""`gradlint run` under torchrun: every rank traces its own process, rank 0 merges the verdicts.

Each rank other than 0 writes its JSON report into a directory all ranks can name
(`$GRADLINT_RANK_DIR`, or one in the temporary directory named after the launcher's process and
port, which every local rank shares); rank 0 waits for them, gives each finding the strongest
verdict any rank saw (confirmed, then refuted, then unreached), with every rank's evidence, and
reports once. A bug that shows on one rank only (a rank-dependent branch) is still confirmed.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

RANK_DIR_VARIABLE = "GRADLINT_RANK_DIR"
WAIT_SECONDS = 120.0  # how long rank 0 waits for the other ranks' reports after its own run
STRENGTH = {"confirmed": 2, "refuted": 1, "unreached": 0}


def world() -> tuple[int, int] | None:
    """(rank, world size) when launched by torchrun with more than one process, else None."""
    try:
        rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    except (KeyError, ValueError):
        return None
    return (rank, size) if size > 1 else None


def rank_dir() -> str:
    explicit = os.environ.get(RANK_DIR_VARIABLE)
    if explicit:
        return explicit
    # The ranks on one machine are children of one launcher process: its pid names their run.
    run = f"{os.getppid()}-{os.environ.get('MASTER_PORT', '')}"
    return os.path.join(tempfile.gettempdir(), f"gradlint-ranks-{run}")


def hand_over(document: dict[str, Any], rank: int) -> None:
    """A rank other than 0: leave the report where rank 0 will look, whole or not at all."""
    directory = rank_dir()
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"rank{rank}.json")
    with open(path + ".tmp", "w", encoding="utf-8") as file:
        json.dump(document, file)
    os.replace(path + ".tmp", path)


def collect(size: int, wait: float = WAIT_SECONDS) -> tuple[dict[int, dict[str, Any]], list[int]]:
    """Rank 0: the other ranks' reports, and the ranks that sent none in time."""
    directory = rank_dir()
    pending = set(range(1, size))
    reports: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + wait
    while pending and time.monotonic() < deadline:
        for rank in sorted(pending):
            path = os.path.join(directory, f"rank{rank}.json")
            if os.path.exists(path):
                with open(path, encoding="utf-8") as file:
                    reports[rank] = json.load(file)
                os.remove(path)
                pending.discard(rank)
        if pending:
            time.sleep(0.05)
    if not pending and not os.environ.get(RANK_DIR_VARIABLE):
        try:
            os.rmdir(directory)
        except OSError:
            pass
    return reports, sorted(pending)


def merge(confirmation: Any, reports: dict[int, dict[str, Any]], missing: Sequence[int]) -> Any:
    """Rank 0's confirmation with every rank's verdicts, evidence and dynamic-only bugs folded in."""
    from gradlint.runtime.run import RunOutcome
    from gradlint.runtime.verdicts import Verdict, Violation

    def key(entry: dict[str, Any]) -> tuple[Any, ...]:
        return entry["line"], entry["col"], entry["code"], entry["message"]

    by_rank = {rank: {key(entry): entry for entry in report["findings"]} for rank, report in reports.items()}
    verdicts = []
    for verdict in confirmation.verdicts:
        finding = verdict.finding
        where = (finding.location.line, finding.location.col, finding.code, finding.message)
        seen = [(0, verdict.verdict, verdict.evidence)]
        seen += [
            (rank, entries[where]["verdict"], entries[where]["evidence"]) for rank, entries in by_rank.items()
        ]
        strongest = max((name for _, name, _ in seen), key=STRENGTH.__getitem__)
        evidence = "; ".join(f"rank {rank}: {text}" for rank, name, text in seen if name == strongest)
        verdicts.append(Verdict(finding, strongest, evidence))
    dynamic_only = [replace(v, evidence=f"rank 0: {v.evidence}") for v in confirmation.dynamic_only]
    for rank, report in sorted(reports.items()):
        dynamic_only += [
            Violation(v["code"], "", v["line"], frozenset(), f"rank {rank}: {v['evidence']}")
            for v in report["dynamic_only"]
        ]
    outcome = confirmation.outcome
    ranks = [
        (0, outcome.status),
        *((rank, report["run"]["status"]) for rank, report in sorted(reports.items())),
    ]
    ranks += [(rank, "sent no report") for rank in missing]
    statuses = {status for _, status in ranks}
    status = statuses.pop() if len(statuses) == 1 else ", ".join(f"rank {r}: {s}" for r, s in sorted(ranks))
    merged_outcome: RunOutcome = replace(
        outcome,
        status=f"{status} on {len(ranks)} ranks",
        cuda_used=outcome.cuda_used or any(report["run"]["cuda_used"] for report in reports.values()),
    )
    return replace(confirmation, verdicts=verdicts, dynamic_only=dynamic_only, outcome=merged_outcome)
