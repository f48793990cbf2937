"""Who is who: telling optimizers, schedulers, scalers and models apart from how code names them.

Names are read as words (`optimizer_G` -> optimizer, g; `lrScheduler` -> lr, scheduler), so a
name only counts when one of its words is the role, not when the role is a substring of a word.
"""

from __future__ import annotations

import ast
import re

from gradlint.analysis.nodes import walk

OPTIMIZER_WORDS = {"opt", "optim", "optimizer", "optimiser", "optimizers", "optims", "opts"}
SCHEDULER_WORDS = {"sched", "scheduler", "schedulers", "warmup", "swa", "plateau", "schedule"}
SCALER_WORDS = {"scaler", "grad_scaler", "gradscaler"}
ACCELERATOR_WORDS = {"accelerator", "fabric"}
ENGINE_WORDS = {"engine", "deepspeed", "ds"}
# Objects with a `step()` of their own that applies no gradients: a profiler's next phase, an EMA
# helper's average, a curriculum's next stage, a progress bar, an environment.
NOT_OPTIMIZER_STEP_WORDS = {
    "prof", "profiler", "ema", "curriculum", "timer", "pbar", "progress", "sampler", "meter", "tracker",
    "env", "envs", "environment", "simulator", "annealer", "averager",
}  # fmt: skip
PROFILER_CONSTRUCTORS = {"profile", "profiler"}

# Constructors whose result is an optimizer (torch.optim and well-known third-party ones).
OPTIMIZER_CONSTRUCTORS = {
    "SGD",
    "Adam",
    "AdamW",
    "Adagrad",
    "Adadelta",
    "Adamax",
    "ASGD",
    "LBFGS",
    "NAdam",
    "RAdam",
    "RMSprop",
    "Rprop",
    "SparseAdam",
    "Adafactor",
    "Lion",
    "LAMB",
    "Lamb",
    "FusedAdam",
    "FusedLAMB",
    "FusedSGD",
    "Adam8bit",
    "AdamW8bit",
    "PagedAdamW",
    "PagedAdamW8bit",
    "SGDW",
    "AdaBelief",
    "Lookahead",
    "Novograd",
    "NovoGrad",
    "DeepSpeedCPUAdam",
    "ZeroRedundancyOptimizer",
    "Muon",
    "create_optimizer",
    "create_optimizer_v2",
    "build_optimizer",
    "get_optimizer",
    "make_optimizer",
    "configure_optimizers",
}
SCHEDULER_CONSTRUCTOR = re.compile(
    r"(LR|Scheduler|Schedule|schedule_with_warmup|get_scheduler|LROnPlateau)$|^get_.*schedule"
)
SCHEDULER_CLASSES = {"CosineAnnealingWarmRestarts"}
SCHEDULER_FACTORY_VERBS = {"get", "create", "build", "make", "init", "setup", "configure", "construct"}
SCHEDULER_NOUNS = {"scheduler", "schedulers", "schedule", "sched"}
SCALER_CONSTRUCTORS = {"GradScaler", "ShardedGradScaler", "NativeScaler", "NativeScalerWithGradNormCount"}
SCALER_METHODS = {"scale", "unscale_", "step", "update"}
DATA_WORDS = {
    "loader",
    "dataloader",
    "loaders",
    "data",
    "dataset",
    "batches",
    "batch",
    "train",
    "samples",
    "examples",
    "iterator",
    "iter",
    "chunks",
    "chunk",
    "micro",
    "microbatches",
    "microbatch",
    "shards",
    "split",
    "minibatches",
    "minibatch",
    "mb",
    "trainloader",
    "train_loader",
    "records",
}
ACCUMULATION_WORDS = {
    "accum",
    "accumulation",
    "accumulate",
    "accumulated",
    "micro",
    "acc",
    "update_freq",
    "freq",
}
COLLECTION_WORDS = {
    "parameters",
    "named_parameters",
    "params",
    "param",
    "param_groups",
    "groups",
    "grads",
    "optimizers",
    "optims",
    "opts",
    "schedulers",
    "models",
    "modules",
    "children",
    "named_modules",
    "weights",
    "layers",
}

# fmt: off
# In-place tensor methods that, called on a parameter with its own .grad, are a manual SGD update.
INPLACE_UPDATES = {"add_", "sub_", "copy_", "addcdiv_", "addcmul_", "mul_", "lerp_"}
GRAD_SCALINGS = {"div_", "mul_", "true_divide_"}
GRAD_CLEARS = {"zero_", "fill_"}
# Calls that make a new tensor (a new leaf once it requires grad): it has no .grad yet.
NEW_TENSOR_CALLS = {
    "clone", "detach", "requires_grad_", "zeros", "ones", "randn", "rand", "empty", "full", "tensor",
    "zeros_like", "ones_like", "randn_like", "rand_like", "empty_like", "full_like", "Parameter",
}
# A call to something we cannot see is assumed to touch the optimizer it receives, unless its
# name says it only reads (precision first: silence beats a guess, but logging must not silence).
HARMLESS_CALLEE_WORDS = {
    "print", "len", "isinstance", "log", "logger", "logging", "info", "debug", "warning", "warn",
    "save", "load", "checkpoint", "state", "dict", "copy", "deepcopy", "summary", "watch", "plot",
    "show", "eval", "evaluate", "evaluation", "validate", "validation", "test", "predict", "inference",
    "infer", "metric", "metrics", "accuracy", "score", "loss", "criterion", "forward", "compute",
    "count", "format", "str", "repr", "getattr", "hasattr", "setattr", "to", "cuda", "cpu", "device",
    "prepare", "wrap", "compile", "parallel", "initialize", "register", "hook", "ema", "unwrap",
    "gather", "reduce", "broadcast", "barrier", "wait", "clip", "norm", "unscale", "type", "id",
    "sample", "generate", "visualize", "image", "images", "display", "describe", "init",
    "weights", "freeze", "unfreeze", "requires", "seed", "profile", "trace",
    "writer", "wandb", "tensorboard", "mlflow", "meter", "tracker", "progress", "pbar", "tqdm", "timer",
    "scheduler", "sched", "lr", "warmup", "schedule", "lambda", "zip", "enumerate", "range", "list",
    "tuple", "sorted", "sum", "min", "max", "any", "all", "map", "filter", "next", "iter",
}
# Libraries whose functions compute or log but never step an optimizer.
PURE_MODULES = {
    "torch", "F", "nn", "np", "numpy", "math", "os", "sys", "json", "random", "time", "shutil", "re",
    "datetime", "pickle", "copy", "itertools", "functools", "collections", "pathlib", "plt", "wandb",
    "logging", "logger", "warnings", "tqdm", "einops", "torchvision", "transforms", "utils", "dist",
}
# Of those, the words that stay harmless when the call receives an optimizer.
OPTIMIZER_SAFE_WORDS = {
    "print", "log", "logger", "logging", "info", "save", "load", "checkpoint", "state", "dict", "copy",
    "deepcopy", "prepare", "wrap", "initialize", "register", "hook", "scheduler", "sched", "lr", "warmup",
    "schedule", "lambda", "watch", "summary", "len", "isinstance", "getattr", "hasattr", "type", "id",
}
LOOP_WRAPPERS = {
    "enumerate", "tqdm", "zip", "iter", "islice", "track", "progress_bar", "cycle", "tqdm_notebook",
}
OPTIMIZER_READS = {
    "state_dict", "load_state_dict", "add_param_group", "register_step_pre_hook", "register_step_post_hook",
}
GRADIENT_ATTRIBUTES = {"backward", "manual_backward", "zero_grad", "step", "grad"}
# accelerate's accumulate(): the prepared optimizer is gated and accelerator.backward divides. Not
# Fabric's no_backward_sync(), which only skips the all-reduce, as DDP's no_sync() does.
ACCUMULATE_CONTEXTS = {"accumulate", "accumulate_grad"}
CLIPS = {"clip_grad_norm_", "clip_grad_value_", "clip_grad_norm"}
# fmt: on

_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")


def words(name: str) -> set[str]:
    """`optimizer_G` -> {optimizer, g}; `netD` -> {net, d}; `lrScheduler` -> {lr, scheduler}."""
    return {w.lower() for part in name.split("_") for w in _WORD.findall(part)}


def path_of(node: ast.AST) -> str | None:
    """`self.opt` -> 'self.opt'; `opts[0]` -> 'opts[]'; anything that is not a plain access -> None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = path_of(node.value)
        return None if base is None else f"{base}.{node.attr}"
    if isinstance(node, ast.Subscript):
        base = path_of(node.value)
        return None if base is None else f"{base}[]"
    return None


def last_name(path: str) -> str:
    return path.rsplit(".", 1)[-1].replace("[]", "")


def callee_name(call: ast.Call) -> str:
    """The last name of what is called: `torch.optim.Adam(...)` -> 'Adam'."""
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def is_optimizer_name(path: str) -> bool:
    return bool(words(last_name(path)) & OPTIMIZER_WORDS)


def is_scheduler_name(path: str) -> bool:
    """`lr_scheduler`, `opt_param_scheduler`, `lr_sched`; `lr` counts unless an optimizer word is there."""
    name_words = words(last_name(path))
    return bool(name_words & SCHEDULER_WORDS) or ("lr" in name_words and not name_words & OPTIMIZER_WORDS)


def is_scaler_name(path: str) -> bool:
    name = last_name(path).lower()
    return "scaler" in words(name) or name in SCALER_WORDS


def is_not_optimizer_stepper(path: str) -> bool:
    """`prof.step()`, `ema.step()`, `curriculum.step()`: a step that is no optimizer's."""
    return bool(words(last_name(path)) & NOT_OPTIMIZER_STEP_WORDS)


def is_accelerator_name(path: str) -> bool:
    return bool(words(last_name(path)) & ACCELERATOR_WORDS)


def is_fabric_name(path: str) -> bool:
    """Lightning Fabric: its backward() neither divides the loss nor gates the optimizer."""
    return "fabric" in words(last_name(path))


def is_engine_name(path: str) -> bool:
    return bool(words(last_name(path)) & ENGINE_WORDS)


def is_optimizer_constructor(call: ast.Call) -> bool:
    return callee_name(call) in OPTIMIZER_CONSTRUCTORS


def is_order_call(node: ast.AST) -> bool:
    """A clip, or a scaler's `update()` / `unscale_()`: no gradient count changes, the order facts do."""
    if not isinstance(node, ast.Call):
        return False
    callee = callee_name(node)
    if callee in CLIPS:
        return True
    receiver = path_of(node.func.value) if isinstance(node.func, ast.Attribute) else None
    return callee in ("update", "unscale_") and receiver is not None and is_scaler_name(receiver)


def is_scheduler_constructor(call: ast.Call) -> bool:
    """`StepLR(...)`, `get_linear_schedule_with_warmup(...)` (transformers, or a project's own copy),
    `create_scheduler(...)` / `build_lr_scheduler(...)` (factories), `CosineAnnealingWarmRestarts`,
    and a class from a module named for schedulers (`lr_scheduler.WarmupCosine`, `schedulers.Noam`)."""
    callee = callee_name(call)
    if SCHEDULER_CONSTRUCTOR.search(callee) or callee in SCHEDULER_CLASSES:
        return True
    callee_words = words(callee)
    if callee_words & SCHEDULER_FACTORY_VERBS and callee_words & SCHEDULER_NOUNS:
        return True
    module = path_of(call.func.value) if isinstance(call.func, ast.Attribute) else None
    return callee[:1].isupper() and module is not None and bool(words(last_name(module)) & SCHEDULER_NOUNS)


def is_scaler_constructor(call: ast.Call) -> bool:
    return callee_name(call) in SCALER_CONSTRUCTORS


def has_word(node: ast.AST, vocabulary: set[str]) -> bool:
    """Whether any name or attribute inside `node` has a word from `vocabulary`."""
    for sub in walk(node):
        if isinstance(sub, ast.Name) and words(sub.id) & vocabulary:
            return True
        if isinstance(sub, ast.Attribute) and words(sub.attr) & vocabulary:
            return True
    return False


def segment(lines: list[str], node: ast.expr | ast.stmt, limit: int = 60) -> str:
    """Source text of a node on one line, as the user wrote it, shortened for messages."""
    line, end = getattr(node, "lineno", 0), getattr(node, "end_lineno", 0)
    if line and line == end and line <= len(lines) and lines[line - 1].isascii():
        text = lines[line - 1][node.col_offset : node.end_col_offset]
    else:
        try:
            text = ast.unparse(node)
        except Exception:
            text = "..."
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
