"""What the analysis establishes about a module; rules read these and decide what to report."""

from __future__ import annotations

from dataclasses import dataclass, field

from gradlint.core import Location


@dataclass(frozen=True)
class Site:
    """A gradient event in the source: where it is and how it reads (`optimizer.zero_grad()`).

    `path` is the module it is in when the analysis spans several (None: the one module analysed)."""

    location: Location
    text: str
    path: str | None = None


@dataclass(frozen=True)
class LoopSite:
    location: Location
    header: str  # `for x, y in loader`
    variable: str  # `x, y` ("" for while loops)
    path: str | None = None

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


@dataclass(frozen=True)
class ScaledTwice:
    """The framework divides the loss by the accumulation count, and the code divides it again."""

    backward: Site  # `accelerator.backward(loss)`, `engine.backward(loss)`
    division: Site  # `loss / args.gradient_accumulation_steps`
    framework: Site  # `Accelerator(gradient_accumulation_steps=...)`, the DeepSpeed config's entry
    count: str  # the divisor as written


@dataclass(frozen=True)
class SchedulerBeforeStep:
    """A scheduler stepped before its optimizer's step in the same iteration of `loop`."""

    optimizer: str
    scheduler: Site
    step: Site
    loop: LoopSite
    per_epoch: bool  # the optimizer steps in a loop inside `loop` (the scheduler at the top of an epoch)


@dataclass(frozen=True)
class StepBeforeBackward:
    """A step ran before any backward of its iteration, and a backward followed in that iteration."""

    optimizer: str
    step: Site
    backward: Site
    loop: LoopSite


@dataclass(frozen=True)
class ScaledStep:
    """A plain `optimizer.step()` applied gradients that still carried GradScaler's scale."""

    optimizer: str
    backward: Site
    step: Site


@dataclass(frozen=True)
class ScalerNotUpdated:
    """`scaler.step(o)` ran again with no `scaler.update()` since its previous step."""

    optimizer: str
    step: Site
    previous: Site
    loop: LoopSite | None


@dataclass(frozen=True)
class ClipOnScaledGradients:
    """Clipping ran on gradients that still carried GradScaler's scale (no `unscale_` before it)."""

    clip: Site
    backward: Site


@dataclass(frozen=True)
class ClipAfterStep:
    """Clipping ran after a step had applied the gradients it clips, before any new backward."""

    optimizer: str
    clip: Site
    step: Site


@dataclass
class Facts:
    stale_steps: set[StaleStep] = field(default_factory=set)
    discarded: set[DiscardedGradients] = field(default_factory=set)
    unapplied: set[UnappliedBackward] = field(default_factory=set)
    unscaled: set[UnscaledAccumulation] = field(default_factory=set)
    scaled_twice: set[ScaledTwice] = field(default_factory=set)
    scheduler_before_step: set[SchedulerBeforeStep] = field(default_factory=set)
    step_before_backward: set[StepBeforeBackward] = field(default_factory=set)
    scaled_steps: set[ScaledStep] = field(default_factory=set)
    scaler_not_updated: set[ScalerNotUpdated] = field(default_factory=set)
    clip_scaled: set[ClipOnScaledGradients] = field(default_factory=set)
    clip_after_step: set[ClipAfterStep] = field(default_factory=set)
    graph_leaks: set[GraphLeak] = field(default_factory=set)
    eval_during_training: set[EvalDuringTraining] = field(default_factory=set)
    accumulations: set[Accumulation] = field(default_factory=set)
    data_parallel: set[DataParallelWrap] = field(default_factory=set)
    skips_gradient_sync: bool = False  # no_sync(), accelerate's accumulate(): syncs only when stepping
    unflushed: set[UnflushedWindow] = field(default_factory=set)
    parameters_outside: set[ParametersOutsideOptimizer] = field(default_factory=set)


@dataclass(frozen=True)
class GraphLeak:
    """A tensor that holds an autograd graph is added into a variable that outlives the iteration."""

    accumulation: Site  # `total += loss`
    accumulator: str  # `total`
    origin: Site  # the backward (or forward pass) whose graph is kept
    what: str
    loop: LoopSite


@dataclass(frozen=True)
class EvalDuringTraining:
    """A backward pass trains a model still in the eval mode an earlier iteration of a loop set."""

    model: str
    eval_site: Site  # `model.eval()`
    backward: Site
    loop: LoopSite  # the loop whose next iteration trains in eval mode
    train: Site | None  # a `model.train()` that exists, but does not run between the two
    train_in_loop: bool


@dataclass(frozen=True)
class Accumulation:
    """A step applied gradients summed over several backward passes of a loop over data (scaled or not)."""

    optimizer: str
    backward: Site
    step: Site
    loop: LoopSite
    count: str


@dataclass(frozen=True)
class DataParallelWrap:
    """`DistributedDataParallel(model)`: every backward pass all-reduces, unless under `no_sync()`."""

    site: Site
    model: str  # what the wrapper is assigned to ("" when it is not)


@dataclass(frozen=True)
class UnflushedWindow:
    """A step every n micro-batches, and nothing steps or clears the leftovers when the loop ends."""

    step: Site
    backward: Site
    loop: LoopSite
    repeat: LoopSite | None  # the loop that runs it again (None: around the call of its function)
    count: str


@dataclass(frozen=True)
class ParametersOutsideOptimizer:
    """New parameters went into a model after its optimizer was built, and that optimizer trains it."""

    module: str  # what holds them, as the code names it: `model[2]`, `model.fc`, `model`
    optimizer: str
    owner: str  # the model whose parameters the optimizer was built over: `model`
    change: Site  # `model[2] = nn.Linear(8, 3)`, `model = Net()`
    built: Site  # the optimizer's construction, over the old parameters
    backward: Site  # a backward pass that fills the new parameters' gradients
    step: Site  # a step of that optimizer, which leaves them as they are
    rebinds: bool  # the model's name itself was bound to a new module
