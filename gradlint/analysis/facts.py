"""What the analysis establishes about a module; rules read these and decide what to report."""

from __future__ import annotations

from dataclasses import dataclass, field

from gradlint.core import Location


@dataclass(frozen=True)
class Site:
    """A gradient event in the source: where it is and how it reads (`optimizer.zero_grad()`)."""

    location: Location
    text: str


@dataclass(frozen=True)
class LoopSite:
    location: Location
    header: str  # `for x, y in loader`
    variable: str  # `x, y` ("" for while loops)

    def describe(self) -> str:
        return f"`{self.header}` (line {self.location.line})"


@dataclass(frozen=True)
class StaleStep:
    """A step applied gradients that an earlier step of the same optimizer had already applied."""

    optimizer: str
    step: Site
    step_loops: tuple[LoopSite, ...]
    backwards: tuple[Site, ...]
    clear: Site | None  # the clear of this optimizer that runs too rarely, if there is one
    clear_loops: tuple[LoopSite, ...] = ()
    clear_on_path: bool = True  # False: the clear exists but not on the path to this step
    # the step's own loop clears this optimizer too: only gradients left before that loop are stale
    step_loop_clears: bool = False


@dataclass(frozen=True)
class DiscardedGradients:
    """A clear wiped gradients of a backward that no step had used, and a step followed."""

    optimizer: str
    clear: Site
    backward: Site
    step: Site


@dataclass(frozen=True)
class UnappliedBackward:
    """A backward inside a loop whose gradients no step (nor anything else) ever used."""

    backward: Site
    loop: LoopSite
    cleared_by: Site | None  # the clear that throws them away, when one does


@dataclass(frozen=True)
class UnscaledAccumulation:
    """A step summed several backwards drawn by a loop over data, and the loss was not scaled."""

    optimizer: str
    backward: Site
    step: Site
    loop: LoopSite
    count: str


@dataclass
class Facts:
    stale_steps: set[StaleStep] = field(default_factory=set)
    discarded: set[DiscardedGradients] = field(default_factory=set)
    unapplied: set[UnappliedBackward] = field(default_factory=set)
    unscaled: set[UnscaledAccumulation] = field(default_factory=set)
