"""From a trace to verdicts: did each static finding happen when the program ran?

A trace is turned into violations (what went wrong, in numbers, and on which lines of the script);
a finding is `confirmed` when a violation of its kind touches one of its lines, `refuted` when its
lines ran and none did, `unreached` when its lines never ran. Violations no finding predicted are
reported as `dynamic-only`. Matching is by line: a finding's own line and its related lines against
every line of the script on the stack when the events happened.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gradlint.core import Finding
from gradlint.project import project_root
from gradlint.runtime.tracer import (
    MANUAL,
    AmpRecord,
    BackwardRecord,
    ClearRecord,
    ClipRecord,
    EvalModeRecord,
    SchedulerRecord,
    Site,
    StepRecord,
    Trace,
    UnsteppedParameter,
)

CONFIRMED = "confirmed"
REFUTED = "refuted"
UNREACHED = "unreached"

# What each static code predicts at run time.
STALE = "stale step"  # a step re-applies gradients an earlier step of its optimizer applied
DISCARD = "discarded"  # a clear wipes gradients no step used, and a step follows
UNAPPLIED = "unapplied"  # backward passes no step ever used
UNSCALED = "unscaled"  # a step sums k > 1 unscaled backward passes
SCHEDULED_FIRST = "scheduler first"  # a scheduler stepped before its optimizer ever tried to
EARLY_STEP = "early step"  # a step applied no backward pass, and one followed before the next step
SCALED_STEP = "scaled step"  # an optimizer stepped outside scaler.step() on still-scaled gradients
NOT_UPDATED = "not updated"  # a scaler stepped an optimizer twice with no update() between
SCALED_CLIP = "scaled clip"  # a clip ran on gradients that still held GradScaler's scale
LATE_CLIP = "late clip"  # a clip ran on gradients a step had already applied
SCALED_TWICE = "scaled twice"  # a step sums k backward passes whose losses were each scaled by ~1/k²
KIND_OF_CODE = {
    "GL101": STALE,
    "GL102": STALE,
    "GL103": DISCARD,
    "GL201": UNAPPLIED,
    "GL301": UNSCALED,
    "GL304": SCALED_TWICE,
    "GL202": SCHEDULED_FIRST,
    "GL203": EARLY_STEP,
    "GL401": SCALED_STEP,
    "GL402": NOT_UPDATED,
    "GL403": SCALED_CLIP,
    "GL503": LATE_CLIP,
}
KEPT = "graphs kept"  # graphs of earlier backward passes of a line outlive the next ones
EVAL_MODE = "eval mode"  # a backward trains a module whose forward ran in eval mode, after train mode
SYNCED = "synced micro-batches"  # DDP all-reduced micro-batches a later one's step summed
OVERSIZED = "oversized window"  # a step sums more backward passes than its line's window
OUTSIDE = "outside every optimizer"  # parameters got gradients and no optimizer that stepped holds them
KIND_OF_CODE.update(
    {"GL501": KEPT, "GL502": EVAL_MODE, "GL303": SYNCED, "GL302": OVERSIZED, "GL204": OUTSIDE}
)
# Earlier graphs of one backward line alive at once. A few are held on purpose (a `prev_loss` kept
# for a comparison; LBFGS keeps its closure's first and last loss); a leak keeps one per iteration.
KEPT_GRAPHS = 4

# A step summing k backward passes is "scaled" when their scale factors add up to about one mean.
UNSCALED_SUM = 1.5


@dataclass(frozen=True)
class Violation:
    code: str
    kind: str
    line: int  # where to report it: the step, the clear, or the backward
    lines: frozenset[int]  # every line of the script involved
    evidence: str


@dataclass(frozen=True)
class Verdict:
    finding: Finding
    verdict: str
    evidence: str


class _Script:
    """Which of a record's stack lines belong to the script under test, and which to the other
    modules of its project (`engine.py`, whose loop the script calls)."""

    def __init__(self, path: str) -> None:
        self.path = os.path.realpath(path)
        self.root = project_root(self.path) + os.sep
        self._same: dict[str, bool] = {}
        self._project: dict[str, str | None] = {}

    def lines(self, sites: Sequence[Site]) -> list[int]:
        return [site.line for site in sites if self._is_script(site.path)]

    def elsewhere(self, sites: Sequence[Site]) -> list[tuple[str, int]]:
        """(module, line) of the sites in the project's other modules, innermost first."""
        return [(module, site.line) for site in sites if (module := self.module_of(site.path)) is not None]

    def module_of(self, path: str) -> str | None:
        if path not in self._project:
            real = os.path.realpath(path)
            inside = real.startswith(self.root) and real != self.path and "-packages" not in real
            self._project[path] = real if inside else None
        return self._project[path]

    def origin(self, sites: Sequence[Site]) -> str:
        """` in engine.py:10` when the innermost line of the event is in another module."""
        for site in sites:
            if self._is_script(site.path):
                return ""
            module = self.module_of(site.path)
            if module is not None:
                return f" in {os.path.relpath(module, os.path.dirname(self.path))}:{site.line}"
        return ""

    def _is_script(self, path: str) -> bool:
        same = self._same.get(path)
        if same is None:
            same = self._same[path] = os.path.realpath(path) == self.path
        return same


def violations(trace: Trace, path: str) -> list[Violation]:
    """What went wrong in the run, one violation per code and line, with numbers as evidence."""
    script = _Script(path)
    found = [
        *_stale_steps(trace, script),
        *_discarding_clears(trace, script),
        *_unapplied_backwards(trace, script, _discarded_before_a_step(trace)),
        *_unscaled_steps(trace, script),
        *_steps_scaled_twice(trace, script),
        *_schedulers_before_steps(trace, script),
        *_steps_before_backwards(trace, script),
        *_scaled_steps(trace, script),
        *_scalers_not_updated(trace, script),
        *_clips(trace, script),
        *_kept_graphs(trace, script),
        *_eval_mode_backwards(trace, script),
        *_synced_micro_batches(trace, script),
        *_oversized_windows(trace, script),
        *_parameters_outside(trace, script),
        *_optimizers_training_nothing(trace, script),
    ]
    return sorted(found, key=lambda v: (v.line, v.code))


def _where(script: _Script, *groups: Sequence[Site]) -> tuple[int, set[int]]:
    """The first script line of the first group that has one, and all of them."""
    main = 0
    lines: set[int] = set()
    for sites in groups:
        found = script.lines(sites)
        if found and not main:
            main = found[0]
        lines.update(found)
        lines.update(script.elsewhere(sites))  # type: ignore[arg-type]  # (module, line) of other files
    return main, lines


def _backward_sites(trace: Trace, ids: frozenset[int] | set[int]) -> list[Site]:
    return [site for backward in sorted(ids) for site in trace.backwards[backward].sites]


def _gather(by_line: dict[int, tuple[list[Any], set[int]]], where: tuple[int, set[int]], record: Any) -> None:
    """File `record` under the script line it is reported at, with every line it involves."""
    main, lines = where
    records, all_lines = by_line.setdefault(main, ([], set()))
    records.append(record)
    all_lines.update(lines)


def _describe_lines(lines: Sequence[int]) -> str:
    unique = sorted(set(lines))
    if not unique:
        return "code outside the script"
    return ("line " if len(unique) == 1 else "lines ") + ", ".join(map(str, unique))


def _stale_steps(trace: Trace, script: _Script) -> list[Violation]:
    by_line: dict[tuple[str, int], list[StepRecord]] = {}
    lines_by_key: dict[tuple[str, int], set[int]] = {}
    for step in trace.steps:
        if not step.stale:
            continue
        cleared_before = any(
            step.optimizer in clear.optimizers and clear.index < step.index for clear in trace.clears
        )
        code = "GL101" if cleared_before else "GL102"
        main, lines = _where(script, step.sites, _backward_sites(trace, step.stale))
        by_line.setdefault((code, main), []).append(step)
        lines_by_key.setdefault((code, main), set()).update(lines)
    found = []
    for (code, line), steps in by_line.items():
        worst = max(steps, key=lambda step: len(step.stale))
        name = trace.optimizers.get(worst.optimizer, "optimizer")
        all_steps = len(trace.steps_of(worst.optimizer))
        what = (
            f"a manual update after the backward at line {line}"
            if worst.optimizer == MANUAL and not script.lines(worst.sites)
            else f"{name} step at line {line}{script.origin(worst.sites)}"
        )
        evidence = (
            f"{what} applied {len(worst.summed)} backward passes, "
            f"{len(worst.stale)} of them already applied by earlier steps "
            f"({len(steps)} of {all_steps} steps re-applied stale gradients)"
        )
        found.append(Violation(code, STALE, line, frozenset(lines_by_key[(code, line)]), evidence))
    return found


def _discarding_clears(trace: Trace, script: _Script) -> list[Violation]:
    by_line: dict[int, tuple[list[ClearRecord], set[int], int, StepRecord]] = {}
    for clear in trace.clears:
        wiped = {backward for backward in clear.cleared if backward not in trace.applied_by}
        if not wiped or clear.nonfinite:
            continue  # throwing away inf/NaN gradients is deliberate, as GradScaler does
        following = next(
            (s for s in trace.steps if s.optimizer in clear.optimizers and s.index > clear.index), None
        )
        if following is None:
            continue  # nothing stepped afterwards: that is GL201's story, not a discard
        main, lines = _where(script, clear.sites, _backward_sites(trace, wiped), following.sites)
        clears, all_lines, count, step = by_line.get(main, ([], set(), 0, following))
        clears.append(clear)
        all_lines.update(lines)
        by_line[main] = (clears, all_lines, count + len(wiped), step)
    found = []
    for line, (clears, lines, wiped_count, step) in by_line.items():
        backward_lines = script.lines(_backward_sites(trace, set().union(*(c.cleared for c in clears))))
        step_lines = script.lines(step.sites)
        how = clears[0].how if clears[0].sites else "gradients set to None or zeroed"
        evidence = (
            f"{how} at line {line}{script.origin(clears[0].sites)} discarded {wiped_count} backward passes "
            f"(from {_describe_lines(backward_lines)}) that no step used, in {len(clears)} clears; "
            f"the step at {_describe_lines(step_lines[:1])}{script.origin(step.sites)} followed without them"
        )
        found.append(Violation("GL103", DISCARD, line, frozenset(lines), evidence))
    return found


def _discarded_before_a_step(trace: Trace) -> set[int]:
    """Backward passes a clear wiped unused with a step of that optimizer after it (GL103's)."""
    discarded: set[int] = set()
    for clear in trace.clears:
        if not clear.nonfinite and any(
            s.optimizer in clear.optimizers and s.index > clear.index for s in trace.steps
        ):
            discarded |= {b for b in clear.cleared if b not in trace.applied_by}
    return discarded


def _unapplied_backwards(trace: Trace, script: _Script, discarded: set[int]) -> list[Violation]:
    """Backward passes no step ever used, where no later step missed them (that is GL103)."""
    by_line: dict[int, list[BackwardRecord]] = {}
    judged = set(trace.touched)
    if trace.steps_of(MANUAL):  # leaves updated by hand at least once: their steps are seen
        judged |= trace.touched_manual
    for backward in trace.backwards.values():
        if backward.id not in judged or backward.id in discarded:
            continue  # reached no parameter whose updates we see: nothing to judge it by
        main, _ = _where(script, backward.sites)
        by_line.setdefault(main, []).append(backward)
    found = []
    for line, backwards in by_line.items():
        if any(backward.id in trace.applied_by for backward in backwards):
            continue
        lines = set(script.lines([site for backward in backwards for site in backward.sites]))
        evidence = (
            f"{len(backwards)} backward passes at line {line} ran and no optimizer step used their gradients "
            f"({len(trace.steps)} steps in the run)"
        )
        found.append(Violation("GL201", UNAPPLIED, line, frozenset(lines), evidence))
    return found


def _accumulated_windows(trace: Trace):
    """Each step that sums k > 1 backward passes of one line: (step, their ids, k, their total scale)."""
    for step in trace.steps:
        if step.closure or step.grads_modified:
            continue  # a closure re-evaluates one objective; p.grad.div_(n) is a scale we cannot read
        fresh = sorted(step.summed - step.stale)
        # Accumulation is one backward statement repeated over batches into one step; different
        # statements (a GAN's real and fake losses) or one forward pass (retain_graph) are not.
        forwards_by_site: dict[Site | None, dict[int, BackwardRecord]] = {}
        for backward in fresh:
            record = trace.backwards[backward]
            site = record.sites[0] if record.sites else None
            forwards_by_site.setdefault(site, {}).setdefault(record.forward, record)
        first_of_forward = max(forwards_by_site.values(), key=len, default={})
        if len(first_of_forward) < 2:
            continue
        total_scale = sum(abs(record.scale) for record in first_of_forward.values())
        yield step, [record.id for record in first_of_forward.values()], len(first_of_forward), total_scale


def _unscaled_steps(trace: Trace, script: _Script) -> list[Violation]:
    by_line: dict[int, tuple[list[tuple[StepRecord, int, float]], set[int]]] = {}
    for step, fresh, count, total_scale in _accumulated_windows(trace):
        if total_scale <= UNSCALED_SUM:
            continue
        where = _where(script, step.sites, _backward_sites(trace, set(fresh)))
        _gather(by_line, where, (step, count, total_scale))
    found = []
    for line, (seen, lines) in by_line.items():
        step, count, total = max(seen, key=lambda item: item[1])
        backward_lines = script.lines(_backward_sites(trace, step.summed - step.stale))
        evidence = (
            f"step at line {line} summed {count} backward passes (from {_describe_lines(backward_lines)}) "
            f"with losses scaled by {total / count:.3g} each, not ~1/{count}: the update is "
            f"{total:.3g}x the mean gradient's ({len(seen)} steps like it)"
        )
        found.append(Violation("GL301", UNSCALED, line, frozenset(lines), evidence))
    return found


def _steps_scaled_twice(trace: Trace, script: _Script) -> list[Violation]:
    """A step summing k backward passes whose losses were each scaled by about 1/k²: the window's
    gradients add up to 1/k of their mean (GL304)."""
    by_line: dict[int, tuple[list[tuple[StepRecord, int, float]], set[int]]] = {}
    for step, fresh, count, total_scale in _accumulated_windows(trace):
        where = _where(script, _backward_sites(trace, set(fresh)), step.sites)
        _gather(by_line, where, (step, count, total_scale))
    found = []
    for line, (seen, lines) in by_line.items():
        # judged by the line's full window: a last, partial one (2 of 4 micro-batches, each divided by 4)
        # is short of its count, not divided twice
        step, count, total = max(seen, key=lambda item: item[1])
        if not 1 / UNSCALED_SUM <= total * count <= UNSCALED_SUM:
            continue
        seen = [item for item in seen if item[1] == count]
        evidence = (
            f"a step summed {count} backward passes of line {line} with losses scaled by {total / count:.3g} "
            f"each, about 1/{count}²: the update is {total:.3g}x the mean gradient's "
            f"({len(seen)} steps like it)"
        )
        found.append(Violation("GL304", SCALED_TWICE, line, frozenset(lines), evidence))
    return found


def _schedulers_before_steps(trace: Trace, script: _Script) -> list[Violation]:
    """A scheduler stepping before its optimizer tried to step once: the first rate is skipped.
    A step GradScaler skipped on inf/NaN was tried (PyTorch's own warning gets this wrong)."""
    attempts = [(step.index, step.optimizer) for step in trace.steps] + [
        (event.index, event.optimizer) for event in trace.scaler_events if event.action == "skipped step"
    ]
    by_line: dict[int, tuple[SchedulerRecord, StepRecord, set[int]]] = {}
    for record in trace.scheduler_steps:
        if record.initial:
            continue

        def drives(optimizer: int | None, record: SchedulerRecord = record) -> bool:
            return optimizer != MANUAL and (record.optimizer is None or optimizer == record.optimizer)

        if any(index < record.index and drives(optimizer) for index, optimizer in attempts):
            continue
        following = next((s for s in trace.steps if s.index > record.index and drives(s.optimizer)), None)
        if following is None:
            continue
        main, lines = _where(script, record.sites, following.sites)
        by_line.setdefault(main, (record, following, lines))
    found = []
    for line, (record, step, lines) in by_line.items():
        evidence = (
            f"{record.scheduler}.step() at line {line} ran before any step of its optimizer, which first "
            f"stepped at {_describe_lines(script.lines(step.sites)[:1])}: "
            f"the first learning rate was never used"
        )
        found.append(Violation("GL202", SCHEDULED_FIRST, line, frozenset(lines), evidence))
    return found


def _steps_before_backwards(trace: Trace, script: _Script) -> list[Violation]:
    """A step that applied nothing, with a backward pass reaching the parameters before its next step."""
    by_line: dict[int, tuple[list[StepRecord], set[int]]] = {}
    for step in trace.steps:
        if step.closure or step.summed or step.optimizer == MANUAL:
            continue
        after = next((s.index for s in trace.steps_of(step.optimizer) if s.index > step.index), None)
        backward = next(
            (
                b
                for b in trace.backwards.values()
                if b.id in trace.touched and b.index > step.index and (after is None or b.index < after)
            ),
            None,
        )
        if backward is None:
            continue
        _gather(by_line, _where(script, step.sites, backward.sites), step)
    found = []
    for line, (steps, lines) in by_line.items():
        evidence = (
            f"{len(steps)} of {len(trace.steps_of(steps[0].optimizer))} steps at line {line} applied no "
            f"gradients, and a backward pass ran after each before the next step"
        )
        found.append(Violation("GL203", EARLY_STEP, line, frozenset(lines), evidence))
    return found


def _scaled_steps(trace: Trace, script: _Script) -> list[Violation]:
    by_line: dict[int, tuple[list[StepRecord], set[int]]] = {}
    for step in trace.steps:
        if not step.amp_scaled:
            continue
        _gather(by_line, _where(script, step.sites, _backward_sites(trace, step.summed)), step)
    found = []
    for line, (steps, lines) in by_line.items():
        evidence = (
            f"{len(steps)} steps at line {line} applied gradients that GradScaler had scaled and not "
            f"unscaled (outside scaler.step())"
        )
        found.append(Violation("GL401", SCALED_STEP, line, frozenset(lines), evidence))
    return found


def _scalers_not_updated(trace: Trace, script: _Script) -> list[Violation]:
    """A scaler's step(o) after an earlier step(o) of that scaler with no update() between."""
    pending: dict[tuple[int, int | None], AmpRecord] = {}
    by_line: dict[int, tuple[int, set[int]]] = {}
    for call in trace.amp_calls:
        if call.action == "update":
            pending = {key: step for key, step in pending.items() if key[0] != call.scaler}
            continue
        key = (call.scaler, call.optimizer)
        previous = pending.get(key)
        pending[key] = call
        if previous is None:
            continue
        main, lines = _where(script, call.sites, previous.sites)
        count, all_lines = by_line.get(main, (0, set()))
        by_line[main] = (count + 1, all_lines | lines)
    return [
        Violation(
            "GL402",
            NOT_UPDATED,
            line,
            frozenset(lines),
            f"scaler.step() at line {line} ran {count} times with no scaler.update() since the previous step",
        )
        for line, (count, lines) in by_line.items()
    ]


CLIP_KINDS = {
    "GL403": (SCALED_CLIP, "gradients that still held GradScaler's scale"),
    "GL503": (LATE_CLIP, "gradients a step had already applied"),
}


def _clips(trace: Trace, script: _Script) -> list[Violation]:
    """Clips on still-scaled gradients (GL403) and on gradients a step already used (GL503)."""
    groups: dict[tuple[str, int], list[ClipRecord]] = {}
    for clip in trace.clips:
        main, _ = _where(script, clip.sites)
        if clip.scaled_by_amp:
            groups.setdefault(("GL403", main), []).append(clip)
        if clip.applied:
            groups.setdefault(("GL503", main), []).append(clip)
    found = []
    for (code, line), clips in groups.items():
        kind, what = CLIP_KINDS[code]
        lines = frozenset(script.lines([site for clip in clips for site in clip.sites]))
        found.append(Violation(code, kind, line, lines, f"{len(clips)} clips at line {line} ran on {what}"))
    return found


def _kept_graphs(trace: Trace, script: _Script) -> list[Violation]:
    found = []
    for record in trace.kept_graphs.values():
        line, lines = _where(script, record.sites)
        if record.alive < KEPT_GRAPHS or not line:
            continue
        evidence = (
            f"{record.alive} graphs of earlier backward passes at line {line} were still alive when it "
            f"ran again (of {record.backwards} passes): something outside the iteration holds them"
        )
        found.append(Violation("GL501", KEPT, line, frozenset(lines), evidence))
    return found


def _eval_mode_backwards(trace: Trace, script: _Script) -> list[Violation]:
    by_line: dict[int, tuple[list[EvalModeRecord], set[int]]] = {}
    for record in trace.eval_mode_backwards.values():
        _gather(by_line, _where(script, record.mode_sites, trace.backwards[record.backward].sites), record)
    found = []
    for line, (records, lines) in by_line.items():
        backward_lines = script.lines(_backward_sites(trace, {r.backward for r in records}))
        evidence = (
            f"{len(records)} backward passes (from {_describe_lines(backward_lines[:1])}) trained "
            f"`{records[0].module}` in eval mode, set at {_describe_lines([line] if line else [])}, after "
            f"{trace.train_mode_backwards} passes in train mode"
        )
        found.append(Violation("GL502", EVAL_MODE, line, frozenset(lines), evidence))
    return found


def _synced_micro_batches(trace: Trace, script: _Script) -> list[Violation]:
    """Steps summing several DDP backward passes, where those before the last all-reduced too."""
    by_line: dict[int, tuple[int, int, set[int]]] = {}
    for step in trace.steps:
        fresh = sorted(b for b in step.summed - step.stale if b in trace.ddp_synced)
        wasted = [b for b in fresh[:-1] if trace.ddp_synced[b]]
        if not wasted:
            continue
        line, lines = _where(script, step.sites, _backward_sites(trace, set(fresh)))
        count, steps, all_lines = by_line.get(line, (0, 0, set()))
        by_line[line] = (count + len(wasted), steps + 1, all_lines | lines)
    found = []
    for line, (synced, steps, lines) in by_line.items():
        evidence = (
            f"{synced} micro-batch backward passes all-reduced their gradients (DDP forward with gradient "
            f"sync on) before {steps} steps at line {line} that summed them: only the last of each needed it"
        )
        found.append(Violation("GL303", SYNCED, line, frozenset(lines), evidence))
    return found


def _oversized_windows(trace: Trace, script: _Script) -> list[Violation]:
    """Steps of one line that sum more fresh backward passes than most of its steps (the window):
    the leftovers of an unfinished window joined the next one."""
    by_line: dict[int, list[tuple[StepRecord, int]]] = {}
    for step in trace.steps:
        if step.closure:
            continue
        line, _ = _where(script, step.sites)
        by_line.setdefault(line, []).append((step, len(step.summed - step.stale)))
    found = []
    for line, steps in by_line.items():
        sizes = [size for _, size in steps if size > 1]
        if not sizes:
            continue
        window = max(set(sizes), key=lambda size: (sizes.count(size), -size))
        oversized = [(step, size) for step, size in steps if size > window]
        if not oversized:
            continue
        lines: set[int] = set()
        for step, _ in oversized:
            lines |= _where(script, step.sites, _backward_sites(trace, step.summed - step.stale))[1]
        evidence = (
            f"{len(oversized)} steps at line {line} summed more backward passes (up to "
            f"{max(size for _, size in oversized)}) than the {window} that most of its {len(steps)} steps "
            f"sum: the leftovers of an unfinished window joined the next one"
        )
        found.append(Violation("GL302", OVERSIZED, line, frozenset(lines), evidence))
    return found


NAMES_SHOWN = 4


def _parameters_outside(trace: Trace, script: _Script) -> list[Violation]:
    """Parameters that backward passes gave gradients while some optimizer kept stepping, and that
    no optimizer which stepped holds: they never change. Grouped by the line of their first backward."""
    by_line: dict[int, tuple[list[UnsteppedParameter], set[int], list[StepRecord]]] = {}
    step_indices = [step.index for step in trace.steps]  # in the order they happened
    for param in trace.unstepped:
        first = trace.backwards.get(param.first_backward)
        if not param.is_parameter or first is None:
            continue  # a leaf tensor (an input's gradient, a saliency map) is no parameter to train
        steps = trace.steps[bisect.bisect_right(step_indices, first.index) :]
        if not steps:
            continue  # nothing stepped after: no training loop is leaving them behind (GL201's case)
        last = trace.backwards.get(param.last_backward, first)
        main, lines = _where(script, first.sites, last.sites)
        params, all_lines, _ = by_line.setdefault(main, ([], set(), steps))
        params.append(param)
        all_lines.update(lines)
    found = []
    for line, (params, lines, steps) in by_line.items():
        step_lines: set[int] = set()
        for step in steps:
            step_lines.update(script.lines(step.sites)[:1])
        lines |= step_lines
        shown = [param.name for param in params[:NAMES_SHOWN]]
        more = f" and {len(params) - NAMES_SHOWN} more" if len(params) > NAMES_SHOWN else ""
        backwards = max(param.backwards for param in params)
        held = sorted({serial for param in params for serial in param.held_by})
        holding = ", ".join(trace.optimizers.get(serial, "optimizer") for serial in held)
        holders = f" ({holding} holds them and never stepped)" if held else ""
        evidence = (
            f"{', '.join(shown)}{more} received gradients in {backwards} backward passes (from "
            f"{_describe_lines([line] if line else [])}) and no optimizer that stepped holds them{holders}: "
            f"{len(steps)} steps (at {_describe_lines(sorted(step_lines))}) left them unchanged"
        )
        found.append(Violation("GL204", OUTSIDE, line, frozenset(lines), evidence))
    return found


def _optimizers_training_nothing(trace: Trace, script: _Script) -> list[Violation]:
    """An optimizer that stepped over parameters that require gradients, none of which ever got one
    (nor had one set by hand at any of its steps): it trains nothing."""
    found = []
    for serial, (trainable, reached) in trace.optimizer_parameters.items():
        steps = trace.steps_of(serial)
        if not steps or not trainable or reached:
            continue
        if any(step.applied or step.params_without_grad < step.params for step in steps):
            continue  # gradients it stepped came from somewhere (p.grad = g, a closure)
        built = trace.optimizer_sites.get(serial, ())
        line, lines = _where(script, built, *(step.sites for step in steps))
        step_lines = sorted({n for step in steps for n in script.lines(step.sites)[:1]})
        name = trace.optimizers.get(serial, "optimizer")
        evidence = (
            f"{name} (built at {_describe_lines(script.lines(built)[:1])}) stepped {len(steps)} times "
            f"(at {_describe_lines(step_lines)}) over {trainable} parameters that require gradients, and "
            f"none of them ever received one: it trains nothing"
        )
        found.append(Violation("GL204", OUTSIDE, line, frozenset(lines), evidence))
    return found


def judge(findings: Sequence[Finding], trace: Trace, path: str) -> tuple[list[Verdict], list[Violation]]:
    """A verdict for every finding, and the violations no finding predicted (dynamic-only)."""
    seen = violations(trace, path)
    ran = _lines_that_ran(trace, _Script(path))
    verdicts = []
    predicted: set[Violation] = set()
    for finding in findings:
        own = finding.location.line  # a finding in another module (`engine.py`) by its (module, line)
        lines: set = {(os.path.realpath(finding.path), own) if finding.path else own}
        for related in finding.related:  # a line of another module is matched by (module, line)
            lines.add((os.path.realpath(related.path), related.location.line) if related.path else related.location.line)
        kind = KIND_OF_CODE.get(finding.code)
        matching = [v for v in seen if v.kind == kind and v.lines & lines]
        predicted.update(matching)
        if matching:
            verdicts.append(Verdict(finding, CONFIRMED, "; ".join(v.evidence for v in matching)))
        else:
            verdicts.append(_not_seen(finding, lines, ran))
    return verdicts, [v for v in seen if v not in predicted]


def _not_seen(finding: Finding, lines: set[int], ran: set[int]) -> Verdict:
    """Refuted only if the events the finding names all ran: a step that never ran cannot go stale.

    Its related lines are those events (the step, the backward); its own line may be one no patch
    sees (`p.grad = None`)."""
    if finding.path is not None:  # which lines of another module ran is not recorded
        return Verdict(finding, UNREACHED, f"no event of {finding.path} was seen")
    needed = {related.location.line for related in finding.related if not related.path} or {finding.location.line}
    if needed <= ran:
        return Verdict(finding, REFUTED, f"{_describe_lines(sorted(lines & ran))} ran, and it never happened")
    return Verdict(finding, UNREACHED, f"{_describe_lines(sorted(needed - ran))} never ran")


def _lines_that_ran(trace: Trace, script: _Script) -> set[int]:
    records: list[BackwardRecord | StepRecord | ClearRecord | SchedulerRecord | ClipRecord | AmpRecord] = [
        *trace.backwards.values(),
        *trace.steps,
        *trace.clears,
        *trace.scheduler_steps,
        *trace.clips,
        *trace.amp_calls,
    ]
    ran = {line for record in records for line in script.lines(record.sites)}
    return ran | {line for sites in trace.optimizer_sites.values() for line in script.lines(sites)}
