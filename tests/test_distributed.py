"""`gradlint run` under torchrun: two gloo ranks on CPU, each traced, verdicts merged by rank 0."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
    pytest.skip("torch.distributed with the gloo backend is not available", allow_module_level=True)

# DDP with gradient accumulation: no_sync() on all but the last micro-batch of each window, every
# loss divided by the window. {clear} is where the step's gradients are (or are not) cleared.
DDP_ACCUMULATION = """
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo")
    torch.manual_seed(dist.get_rank())
    model = DistributedDataParallel(torch.nn.Linear(3, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    accumulation = 4
    for i, x in enumerate([torch.randn(4, 3) for _ in range(12)]):
        if (i + 1) % accumulation == 0:
            loss = model(x).pow(2).mean() / accumulation
            loss.backward()
            optimizer.step()
            {clear}
        else:
            with model.no_sync():
                loss = model(x).pow(2).mean() / accumulation
                loss.backward()
    dist.destroy_process_group()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_on_two_ranks(tmp_path: Path, clear: str) -> tuple[int, dict]:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(DDP_ACCUMULATION).replace("{clear}", clear), encoding="utf-8")
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    launch += ["--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    result = subprocess.run(
        [*launch, "-m", "gradlint", "run", str(script), "--format", "json"],
        cwd=tmp_path,
        env={
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "OMP_NUM_THREADS": "1",
            "GRADLINT_RANK_DIR": str(tmp_path / "ranks"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip(), result.stderr[-3000:]
    assert "gradlint: rank 1: report handed to rank 0" in result.stderr
    return result.returncode, json.loads(result.stdout)


def test_ddp_no_sync_accumulation_with_the_loss_scaled_is_clean(tmp_path: Path) -> None:
    returncode, document = run_on_two_ranks(tmp_path, clear="optimizer.zero_grad()")
    assert document["findings"] == [] and document["dynamic_only"] == []
    assert (document["run"]["status"], document["run"]["steps"]) == ("finished on 2 ranks", 3)
    assert returncode == 0
    assert not (tmp_path / "ranks" / "rank1.json").exists()


def test_ddp_without_zero_grad_is_confirmed_on_both_ranks(tmp_path: Path) -> None:
    returncode, document = run_on_two_ranks(tmp_path, clear="pass")
    findings = document["findings"]  # one per backward statement: each adds into .grad unchecked
    assert findings and {(f["code"], f["verdict"]) for f in findings} == {("GL102", "confirmed")}
    for rank in (0, 1):
        evidence = f"rank {rank}: SGD step at line 15 applied 12 backward passes, 8 of them already applied"
        assert all(evidence in finding["evidence"] for finding in findings)
    assert document["run"]["status"] == "finished on 2 ranks"
    assert returncode == 1


def test_rank_0_names_the_ranks_that_sent_no_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradlint.runtime import ranks

    monkeypatch.setenv(ranks.RANK_DIR_VARIABLE, str(tmp_path))
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert ranks.world() == (2, 3)
    ranks.hand_over({"findings": [], "dynamic_only": [], "run": {"status": "finished"}}, 2)
    reports, missing = ranks.collect(3, wait=0.2)
    assert list(reports) == [2] and missing == [1]
