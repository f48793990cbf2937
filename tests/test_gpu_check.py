"""bench/gpu_check.sh where no GPU is: one line that says so, and a failing exit status; and how
it judges one fixture's run (the same rules as tests/test_runtime_fixtures.py, plus CUDA use)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.sh"


def load_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["gpu_check"]
    return module


def test_without_cuda_it_says_so_in_one_line_and_exits_1() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the check would run")
    result = subprocess.run(
        [str(SCRIPT)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stdout.splitlines() == [
        "gpu_check: no CUDA device here (torch.cuda.is_available() is False): nothing was checked"
    ]


def report(findings=(), dynamic_only=(), status="finished", cuda_used=True) -> dict:
    return {
        "findings": [{"code": code, "verdict": verdict} for code, verdict in findings],
        "dynamic_only": [{"code": code} for code in dynamic_only],
        "run": {"status": status, "cuda_used": cuda_used},
    }


def test_a_fixture_run_is_judged_as_on_the_cpu_and_must_use_cuda() -> None:
    judge = load_check().judge
    assert judge("bug_GL204_x.py", report([("GL204", "confirmed")]), "cuda") is None
    assert judge("bug_GL204_x.py", report([("GL204", "refuted")]), "cuda") == "GL204 refuted (finished)"
    assert judge("bug_GL204_x.py", report(), "cuda") == "no static finding (finished)"
    # a buggy program may end in an error (an enabled GradScaler raises without update()) once confirmed
    assert (
        judge("bug_GL402_x.py", report([("GL402", "confirmed")], status="error: RuntimeError"), "cuda")
        is None
    )
    assert judge("clean_x.py", report(dynamic_only=["GL204"]), "cuda") == "dynamic-only GL204"
    assert (
        judge("clean_x.py", report(status="error: RuntimeError: boom"), "cuda") == "error: RuntimeError: boom"
    )
    assert judge("clean_x.py", report(cuda_used=False), "cuda") == "ran without CUDA"
    assert judge("clean_x.py", report(cuda_used=False), "cpu") is None
    assert judge("clean_x.py", {"error": "exit 2: usage"}, "cuda") == "exit 2: usage"
