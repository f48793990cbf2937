"""The vocabulary every stage shares: where something is, what was found, which rule found it.

The static analysis, the runtime tracer, the reporters and the fixers all speak in these types,
so a finding looks the same whether it came from reading the code or from watching it run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


@dataclass(frozen=True, order=True)
class Location:
    """A span of source code. Lines and columns are 1-based; columns count characters.

    In a notebook, `cell` is the cell's position among all the notebook's cells (1-based, markdown
    and raw cells counted, as notebook front ends number them) and the lines are lines of that
    cell; it is None in a plain source file.
    """

    line: int
    col: int
    end_line: int
    end_col: int
    cell: int | None = None


@dataclass(frozen=True)
class Related:
    """The other line a finding involves (the step a clear starves, the clear that is too far out).

    `path` is the file it is in when that is not the finding's own file (a step in `engine.py` that
    the clear in `main.py` starves); None means the finding's file."""

    location: Location
    message: str
    path: str | None = None

    def path_or(self, finding_path: str) -> str:
        return self.path if self.path is not None else finding_path


@dataclass(frozen=True)
class Finding:
    code: str
    name: str
    message: str
    location: Location
    related: tuple[Related, ...] = ()
    # The module the finding is in, when the analysis read several (None: the one file checked).
    # It is not part of a report: the report names the file the finding is filed under.
    path: str | None = field(default=None, compare=True)

    def sort_key(self) -> tuple[int, Location, str]:
        return (self.location.cell or 0, self.location, self.code)


class EventKind(Enum):
    """What a statement does to an optimizer's gradients."""

    BACKWARD = "backward"  # adds the loss's gradients into .grad
    STEP = "step"  # an optimizer (or a manual update) applies .grad to the parameters
    CLEAR = "clear"  # .grad is zeroed or set to None
    SCALE = "scale"  # accumulated gradients are divided by the accumulation count
    GRAD_READ = "grad_read"  # something reads .grad: the backward had a use besides a step
    GRAD_WRITE = "grad_write"  # .grad is overwritten with computed values (p.grad = g)
    UNKNOWN = "unknown"  # code we cannot see receives the optimizer or the model
    # Events that change no gradient count, only the order facts (analysis/order.py) read them
    SCHEDULER_STEP = "scheduler_step"  # a learning-rate scheduler steps
    CLIP = "clip"  # clip_grad_norm_ / clip_grad_value_ rescales .grad in place
    UNSCALE = "unscale"  # scaler.unscale_(o): o's gradients no longer carry the AMP scale
    SCALER_UPDATE = "scaler_update"  # scaler.update(): the scale adapts, the next step() is allowed


SEVERITIES = ("error", "warning")


@dataclass(frozen=True)
class Rule:
    """A rule's identity and its user documentation, in the sections every rule page has."""

    code: str
    name: str
    summary: str
    what_it_does: str
    why_bad: str
    example: str
    use_instead: str
    runtime: str = ""
    references: tuple[str, ...] = ()
    fixable: bool = False
    # What `gradlint fix` does for this rule, and whether the fix is safe (applied by default:
    # unchanged behaviour for a correct program) or unsafe (only with --unsafe-fixes).
    fix: str = ""
    enabled_by_default: bool = True
    # "error": the model learns something other than what the code says (every rule but a few);
    # "warning": the result is right but the run pays for it (time, memory). Editors, SARIF and
    # GitLab show it as their own levels.
    severity: str = "error"
    # A file that contains none of these words cannot hold what the rule looks for, so it is not
    # analysed for it: every rule of the core needs a call to `backward(`, which most Python files
    # lack (the bare word is no test: "backwards compatible" is in a third of the standard library).
    words: tuple[str, ...] = ("backward(",)
    valid: tuple[str, ...] = field(default=(), repr=False)
    invalid: tuple[str, ...] = field(default=(), repr=False)
