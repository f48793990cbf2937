"""`gradlint run SCRIPT`: check the script statically, run it under the tracer, give each finding a verdict.

This module imports torch only once the command runs, so `gradlint --help` works without it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import runpy
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from gradlint.checker import FileResult, SourceError, check_source
from gradlint.files import read_source
from gradlint.report import format_json, format_text

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2
NEEDS_TORCH = "gradlint run needs torch: pip install 'gradlint[runtime]'"
NO_CUDA = "gradlint: error: --device cuda, but torch.cuda.is_available() is False"
DEVICES = ("cpu", "cuda")


class _StopRun(BaseException):
    """Ends the traced program early. A BaseException, so `except Exception` in it cannot swallow it."""


@dataclass(frozen=True)
class RunOutcome:
    status: str  # "finished", "exited N", "max steps", "timeout", "error: ..."
    steps: int
    backwards: int
    device: str | None = None  # the default device asked for; None: the program's own choice
    cuda_used: bool = False  # CUDA was initialised or an optimizer held a CUDA parameter


def run_command(
    script: str,
    script_args: Sequence[str] = (),
    max_steps: int | None = None,
    timeout: float | None = None,
    output_format: str = "text",
    device: str | None = None,
) -> int:
    try:
        import torch
    except ImportError:
        print(NEEDS_TORCH, file=sys.stderr)
        return EXIT_ERROR
    if device == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return EXIT_ERROR
    from gradlint.runtime.verdicts import CONFIRMED, judge

    try:
        text = read_source(script)
        findings = check_source(text, script)
    except (OSError, SourceError) as error:
        print(f"gradlint: error: {script}: {getattr(error, 'message', error)}", file=sys.stderr)
        return EXIT_ERROR
    # JSON goes to stdout alone: the program's own prints go to stderr then.
    program_stdout = sys.stderr if output_format == "json" else sys.stdout
    with contextlib.redirect_stdout(program_stdout):
        trace, outcome = trace_script(script, script_args, max_steps, timeout, device)
    verdicts, dynamic_only = judge(findings, trace, script)
    if output_format == "json":
        report = format_run_json(script, findings, verdicts, dynamic_only, outcome)
    else:
        report = format_run_text(script, findings, verdicts, dynamic_only, outcome)
    sys.stdout.write(report)
    sys.stdout.flush()
    failed = dynamic_only or any(v.verdict == CONFIRMED for v in verdicts)
    return EXIT_FINDINGS if failed else EXIT_CLEAN


def trace_script(
    script: str,
    script_args: Sequence[str],
    max_steps: int | None,
    timeout: float | None,
    device: str | None = None,
) -> tuple[Any, RunOutcome]:
    """Run `script` as __main__ under the tracer until it ends, steps `max_steps` times, or times out.

    With `device`, tensors the program creates without naming a device land there."""
    import torch

    from gradlint.runtime.tracer import StepRecord, Tracer

    def on_step(record: StepRecord) -> None:
        if max_steps is not None and len(tracer.trace.steps) >= max_steps:
            raise _StopRun("max steps")

    tracer = Tracer(on_step=on_step)
    status = "finished"
    with _as_main(script, script_args), _alarm(timeout), _default_device(device):
        try:
            with tracer:
                runpy.run_path(script, run_name="__main__")
        except _StopRun as stop:
            status = str(stop)
        except SystemExit as exit_:
            code = exit_.code
            status = "finished" if code in (None, 0) else f"exited {code}"
        except Exception as error:  # the program's own bug: report what ran before it
            traceback.print_exc()
            status = f"error: {type(error).__name__}: {error}"
    trace = tracer.trace
    cuda_used = "cuda" in trace.devices or torch.cuda.is_initialized()
    return trace, RunOutcome(status, len(trace.steps), len(trace.backwards), device, cuda_used)


@contextlib.contextmanager
def _default_device(device: str | None) -> Iterator[None]:
    if device is None:
        yield
        return
    import torch

    previous = torch.get_default_device()
    torch.set_default_device(device)
    try:
        yield
    finally:
        # None drops the device context altogether, as it was before anything set one.
        torch.set_default_device(None if previous == torch.device("cpu") else previous)


@contextlib.contextmanager
def _as_main(script: str, script_args: Sequence[str]) -> Iterator[None]:
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [script, *script_args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        yield
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


@contextlib.contextmanager
def _alarm(seconds: float | None) -> Iterator[None]:
    if not seconds or not hasattr(signal, "setitimer"):
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _StopRun("timeout")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def format_run_text(
    script: str,
    findings: Sequence[Any],
    verdicts: Sequence[Any],
    dynamic_only: Sequence[Any],
    outcome: RunOutcome,
) -> str:
    lines: list[str] = []
    for verdict in verdicts:
        shown = format_text([FileResult(script, (verdict.finding,))]).splitlines()
        lines.append(shown[0])
        lines.append(f"    runtime: {verdict.verdict}: {verdict.evidence}")
        lines.extend(shown[1:])
    for violation in dynamic_only:
        lines.append(f"{script}:{violation.line}:1: {violation.code} [dynamic-only] {violation.evidence}")
    counts = {
        name: sum(v.verdict == name for v in verdicts) for name in ("confirmed", "refuted", "unreached")
    }
    summary = ", ".join(f"{count} {name}" for name, count in counts.items())
    lines.append(
        f"run {outcome.status}: {outcome.steps} optimizer steps, {outcome.backwards} backward passes; "
        f"{len(verdicts)} findings: {summary}; {len(dynamic_only)} dynamic-only; "
        f"cuda used: {'yes' if outcome.cuda_used else 'no'}"
    )
    return "".join(line + "\n" for line in lines)


def format_run_json(
    script: str,
    findings: Sequence[Any],
    verdicts: Sequence[Any],
    dynamic_only: Sequence[Any],
    outcome: RunOutcome,
) -> str:
    document = json.loads(format_json([FileResult(script, tuple(findings))]))
    by_key = {
        (v.finding.location.line, v.finding.location.col, v.finding.code, v.finding.message): v
        for v in verdicts
    }
    for entry in document["findings"]:
        verdict = by_key[(entry["line"], entry["col"], entry["code"], entry["message"])]
        entry["verdict"] = verdict.verdict
        entry["evidence"] = verdict.evidence
    document["dynamic_only"] = [
        {"path": script, "line": v.line, "code": v.code, "verdict": "dynamic-only", "evidence": v.evidence}
        for v in dynamic_only
    ]
    document["run"] = {
        "status": outcome.status,
        "steps": outcome.steps,
        "backwards": outcome.backwards,
        "device": outcome.device,
        "cuda_used": outcome.cuda_used,
    }
    return json.dumps(document, indent=2) + "\n"


def add_parser(commands: Any) -> None:
    """The `run` subcommand's arguments, on the CLI's subparsers."""
    run = commands.add_parser(
        "run",
        help="run a training script under the tracer and confirm findings",
        usage=(
            "gradlint run SCRIPT [--max-steps N] [--timeout S] [--device cpu|cuda] [--format text|json]"
            " [-- ARGS]"
        ),
    )
    run.add_argument("script", metavar="SCRIPT", help="the Python program to run as __main__")
    _add_options(run)
    # Everything after SCRIPT: our options, then `--`, then the script's own arguments.
    run.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    run.set_defaults(run_parser=run)


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps")
    parser.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--device", choices=DEVICES, help="the default device for tensors the script creates")


def main(args: argparse.Namespace) -> int:
    """Run the `run` subcommand; usage errors exit 2 through argparse."""
    rest = list(args.rest)
    if "--" in rest:
        split = rest.index("--")
        options, script_args = rest[:split], rest[split + 1 :]
    elif rest and not rest[0].startswith("-"):  # argparse drops a `--` right after SCRIPT
        options, script_args = [], rest
    else:
        options, script_args = rest, []
    if options:
        late = argparse.ArgumentParser(prog="gradlint run")
        _add_options(late)
        late.set_defaults(
            max_steps=args.max_steps, timeout=args.timeout, format=args.format, device=args.device
        )
        late.parse_args(options, namespace=args)
    if args.max_steps is not None and args.max_steps < 1:
        args.run_parser.error("--max-steps must be at least 1")
    if args.timeout is not None and args.timeout <= 0:
        args.run_parser.error("--timeout must be positive")
    return run_command(args.script, script_args, args.max_steps, args.timeout, args.format, args.device)
