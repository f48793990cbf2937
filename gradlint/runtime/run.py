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
import sysconfig
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from types import FrameType
from typing import Any

from gradlint.checker import FileResult, SourceError
from gradlint.files import STDIN
from gradlint.notebooks import is_notebook
from gradlint.report import format_json, format_text
from gradlint.runtime import ranks
from gradlint.runtime.arguments import CONFIRM_MAX_STEPS, CONFIRM_TIMEOUT, add_run_options

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2
NEEDS_TORCH = "gradlint run and check --confirm need torch: pip install 'gradlint[runtime]'"
NO_CUDA = "gradlint: error: --device cuda, but torch.cuda.is_available() is False"


_KEPT_UNTIL_EXIT: list[dict[str, Any]] = []


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
    if not _torch_ready(device):
        return EXIT_ERROR
    try:
        confirmation = confirm_script(script, script_args, max_steps, timeout, output_format, device)
    except (OSError, SourceError) as error:
        print(f"gradlint: error: {script}: {getattr(error, 'message', error)}", file=sys.stderr)
        return EXIT_ERROR
    missing: list[int] = []
    distributed = ranks.world()
    if distributed is not None:  # under torchrun: rank 0 reports for all
        rank, size = distributed
        if rank != 0:
            ranks.hand_over(json.loads(format_run_json(*confirmation.report_parts())), rank)
            print(f"gradlint: rank {rank}: report handed to rank 0", file=sys.stderr)
            return EXIT_CLEAN
        reports, missing = ranks.collect(size)
        confirmation = ranks.merge(confirmation, reports, missing)
    format_run = format_run_json if output_format == "json" else format_run_text
    sys.stdout.write(format_run(*confirmation.report_parts()))
    sys.stdout.flush()
    if missing:
        print(f"gradlint: error: no report from rank {', '.join(map(str, missing))}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_FINDINGS if confirmation.failed else EXIT_CLEAN


@dataclass(frozen=True)
class Confirmation:
    """One script's static findings, their verdicts, and what else its run showed."""

    script: str
    findings: Sequence[Any]
    verdicts: Sequence[Any]
    dynamic_only: Sequence[Any]
    outcome: RunOutcome

    @property
    def failed(self) -> bool:
        # verdicts.CONFIRMED, spelled out: importing verdicts imports torch
        return bool(self.dynamic_only) or any(v.verdict == "confirmed" for v in self.verdicts)

    def report_parts(self) -> tuple[str, Sequence[Any], Sequence[Any], Sequence[Any], RunOutcome]:
        return self.script, self.findings, self.verdicts, self.dynamic_only, self.outcome


def _torch_ready(device: str | None) -> bool:
    """Whether torch, and the device asked for, are there; if not, says so on one line."""
    try:
        import torch
    except ImportError:
        print(NEEDS_TORCH, file=sys.stderr)
        return False
    if device == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return False
    return True


def confirm_script(
    script: str,
    script_args: Sequence[str],
    max_steps: int | None,
    timeout: float | None,
    output_format: str = "text",
    device: str | None = None,
    codes: Iterable[str] | None = None,
) -> Confirmation:
    """Check `script` statically, run it under the tracer, judge each finding. Raises OSError, SourceError."""
    from gradlint.runtime.verdicts import judge

    findings = static_findings(script, codes)
    # JSON goes to stdout alone: the program's own prints go to stderr then.
    program_stdout = sys.stderr if output_format == "json" else sys.stdout
    with contextlib.redirect_stdout(program_stdout):
        trace, outcome = trace_script(script, script_args, max_steps, timeout, device)
    verdicts, dynamic_only = judge(findings, trace, script)
    return Confirmation(script, findings, verdicts, dynamic_only, outcome)


def static_findings(script: str, codes: Iterable[str] | None) -> Sequence[Any]:
    """The script's findings with its project read: the loop it calls may be in another module."""
    from gradlint.batch import check_paths
    from gradlint.rules import resolve_codes

    from gradlint.project import Project

    selected = frozenset(resolve_codes(select=codes))
    project = Project()
    modules, pending = [], [os.path.realpath(script)]
    while pending:  # the project modules the script imports, directly or not: it runs their code too
        file = pending.pop()
        if file not in modules:
            modules.append(file)
            pending += sorted(project.imported_files(file))
    paths = [script, *(os.path.relpath(m) for m in modules[1:])]
    results = check_paths([(path, selected) for path in paths], 1)
    if results[0][0].error is not None:
        raise results[0][0].error
    return [
        finding if result.path == script else replace(finding, path=result.path)
        for result, _ in results
        for finding in result.findings
    ]


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
    stops = _Stops(script)
    with _as_main(script, script_args), stops.installed(timeout), _default_device(device):
        try:
            with tracer:
                namespace = runpy.run_path(script, run_name="__main__")
            if ranks.world() is not None:
                # Freeing a DDP model or process group can wait on the other ranks: let the
                # program's objects live until the interpreter exits, as when Python runs it.
                _KEPT_UNTIL_EXIT.append(namespace)
        except _StopRun as stop:
            status = str(stop)
        except KeyboardInterrupt:  # Ctrl-C: stop there, and report what ran, as for a timeout
            status = "interrupted"
        except SystemExit as exit_:
            code = exit_.code
            status = "finished" if code in (None, 0) else f"exited {code}"
        except Exception as error:  # the program's own bug: report what ran before it
            traceback.print_exc()
            status = f"error: {type(error).__name__}: {error}"
    if stops.interrupted and status == "finished":
        status = "interrupted"  # Ctrl-C came as the program ended, while torch was being restored
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


class _Stops:
    """Ctrl-C and --timeout stop the traced program, and only the program.

    A stop is raised only while the program's own code is on the stack: not once it has ended,
    when the tracer is putting torch back (a stop there would leave torch half patched), nor in
    the runner. A timeout fires again every RETRY seconds until one gets through: one that came
    before the program started, or that the program swallowed (a bare `except:` in its loop)."""

    RETRY = 0.1

    def __init__(self, script: str) -> None:
        # runpy compiles the file under the name it is given; some Pythons make it absolute first
        self.names = {script, os.path.abspath(script)}
        self.interrupted = False
        self.stopping = False  # a timeout was raised into the program
        self.traced: list[FrameType] = []  # frames given a line tracer to stop a swallowing program
        self.previous_trace: Any = None

    @contextlib.contextmanager
    def installed(self, timeout: float | None) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach the main thread only: a run from another has no stops to catch
            return
        previous_int = signal.signal(signal.SIGINT, self.on_interrupt)
        timer = bool(timeout) and hasattr(signal, "setitimer")
        previous_alarm = signal.signal(signal.SIGALRM, self.on_alarm) if timer else None
        if timer:
            signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            yield
        finally:
            if self.traced:  # a debugger's or coverage's tracer, if any, is given back
                sys.settrace(self.previous_trace)
                for frame in self.traced:
                    frame.f_trace = None
                self.traced.clear()
            if timer:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous_alarm)
            signal.signal(signal.SIGINT, previous_int)

    def on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        self.interrupted = True
        if self.program_is_running(frame):
            raise KeyboardInterrupt

    def on_alarm(self, signum: int, frame: FrameType | None) -> None:
        # Again soon, whatever happens now: the program may not have started yet (the tracer is
        # still installing), or may swallow this stop.
        signal.setitimer(signal.ITIMER_REAL, self.RETRY)
        if not self.program_is_running(frame) or in_standard_library(frame):
            return
        if self.stopping:
            self.stop_on_every_line(frame)  # the last stop was swallowed
        self.stopping = True
        raise _StopRun("timeout")

    def stop_on_every_line(self, frame: FrameType | None) -> None:
        """A stop raised at a signal lands inside the `try:` that swallows it; one raised by a line
        event also lands on the `try:` line itself, outside it, and ends the loop around it."""

        def stop(frame: FrameType, event: str, arg: object) -> Any:
            # the script's own lines only: a line of a finalizer or a weakref callback that runs
            # meanwhile cannot pass an exception on, and Python prints it as "Exception ignored"
            if event == "line" and frame.f_code.co_filename in self.names and self.program_is_running(frame):
                raise _StopRun("timeout")
            return stop

        if not self.traced:
            self.previous_trace = sys.gettrace()
        sys.settrace(stop)
        while frame is not None:  # settrace reaches new frames only
            frame.f_trace = stop
            self.traced.append(frame)
            frame = frame.f_back

    def program_is_running(self, frame: FrameType | None) -> bool:
        while frame is not None:
            code = frame.f_code
            if code.co_name == "<module>" and code.co_filename in self.names:
                return True
            frame = frame.f_back
        return False


_LIBRARY_PATHS = {sysconfig.get_paths()[name] for name in ("purelib", "platlib")}
_STANDARD_LIBRARY = sysconfig.get_paths()["stdlib"]


def in_standard_library(frame: FrameType | None) -> bool:
    """Whether `frame` runs the standard library's code: a stop raised there can leave its locks
    held (logging's, taken around a fork), so a timeout waits for the program to leave it."""
    if frame is None:
        return False
    filename = frame.f_code.co_filename
    if filename.startswith("<frozen "):
        return True
    return filename.startswith(_STANDARD_LIBRARY) and not filename.startswith(tuple(_LIBRARY_PATHS))


def format_run_text(
    script: str,
    findings: Sequence[Any],
    verdicts: Sequence[Any],
    dynamic_only: Sequence[Any],
    outcome: RunOutcome,
    name_the_script: bool = False,
) -> str:
    lines: list[str] = []
    for verdict in verdicts:
        shown = format_text([FileResult(verdict.finding.path or script, (verdict.finding,))]).splitlines()
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
        (f"{script}: " if name_the_script else "")
        + f"run {outcome.status}: {outcome.steps} optimizer steps, {outcome.backwards} backward passes; "
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
    by_file: dict[str, list[Any]] = {}
    for finding in findings:
        by_file.setdefault(finding.path or script, []).append(replace(finding, path=None))
    document = json.loads(format_json([FileResult(path, tuple(found)) for path, found in by_file.items()]))
    by_key = {
        (v.finding.path or script, v.finding.location.line, v.finding.location.col, v.finding.code, v.finding.message): v
        for v in verdicts
    }
    for entry in document["findings"]:
        verdict = by_key[(entry["path"], entry["line"], entry["col"], entry["code"], entry["message"])]
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
        add_run_options(late)
        late.set_defaults(
            max_steps=args.max_steps, timeout=args.timeout, format=args.format, device=args.device
        )
        late.parse_args(options, namespace=args)
    if args.max_steps is not None and args.max_steps < 1:
        args.run_parser.error("--max-steps must be at least 1")
    if args.timeout is not None and args.timeout <= 0:
        args.run_parser.error("--timeout must be positive")
    return run_command(args.script, script_args, args.max_steps, args.timeout, args.format, args.device)


def confirm_command(args: argparse.Namespace, codes_for: Callable[[str], Iterable[str]]) -> int:
    """`gradlint check --confirm FILE...`: what `gradlint run` does, for each file, in one report."""
    why = _confirm_usage_error(args)
    if why:
        print(f"gradlint: error: {why}", file=sys.stderr)
        return EXIT_ERROR
    if not _torch_ready(args.device):
        return EXIT_ERROR
    max_steps = args.max_steps or CONFIRM_MAX_STEPS
    timeout = args.timeout or CONFIRM_TIMEOUT
    confirmations: list[Confirmation] = []
    errors: list[FileResult] = []
    for path in dict.fromkeys(args.paths):
        try:
            if is_notebook(path):
                raise SourceError("a notebook cannot be run: export it to a script first")
            confirmations.append(
                confirm_script(path, (), max_steps, timeout, args.format, args.device, codes_for(path))
            )
        except SourceError as error:
            errors.append(FileResult(path, error=error))
        except OSError as error:
            errors.append(FileResult(path, error=SourceError(str(error.strerror or error))))
    if args.format == "json":
        report = _confirmations_json(confirmations, errors)
    else:
        runs = [format_run_text(*c.report_parts(), name_the_script=True) for c in confirmations]
        report = "".join(runs) + format_text(errors)
    sys.stdout.write(report)
    sys.stdout.flush()
    if errors:
        return EXIT_ERROR
    return EXIT_FINDINGS if any(c.failed for c in confirmations) else EXIT_CLEAN


def _confirm_usage_error(args: argparse.Namespace) -> str | None:
    refused = [path for path in args.paths if path == STDIN or os.path.isdir(path)]
    if refused:
        return f"--confirm runs programs: name files, not {refused[0]}"
    if args.format not in ("text", "json"):
        return f"--confirm reports as text or json, not {args.format}"
    unsupported = [name for name in ("quiet", "statistics", "output_file") if getattr(args, name, None)]
    if unsupported:
        return f"--{unsupported[0].replace('_', '-')} does not apply to --confirm"
    if args.max_steps is not None and args.max_steps < 1:
        return "--max-steps must be at least 1"
    if args.timeout is not None and args.timeout <= 0:
        return "--timeout must be positive"
    return None


def _confirmations_json(confirmations: Sequence[Confirmation], errors: Sequence[FileResult]) -> str:
    document = json.loads(format_json(list(errors)))
    document["dynamic_only"] = []
    document["runs"] = []
    for confirmation in confirmations:
        one = json.loads(format_run_json(*confirmation.report_parts()))
        document["findings"].extend(one["findings"])
        document["dynamic_only"].extend(one["dynamic_only"])
        document["runs"].append({"path": confirmation.script, **one["run"]})
    return json.dumps(document, indent=2) + "\n"
