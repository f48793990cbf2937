"""GL502's analysis: the train/eval mode of each model along every path, through loops and helpers.

Each entry point (the module body, or a function nothing in the module calls) is read in order
with, per model, the modes it can be in: `train` (a module starts in it), `eval` (with the
`.eval()` / `.train(False)` that set it, and the loops that went round since), or `unknown`.
Calls to the module's own functions and methods are followed with their parameters bound to the
caller's objects, so `evaluate(model)` ending in `model.train()` restores the mode; a function
we cannot see that receives the model makes its mode unknown (silence). A backward pass reached
while a trained model (its parameters go to an optimizer, or it is put in `train()` mode
somewhere) is still in the eval mode set on an earlier iteration of a loop around that backward
is the bug: `model.train()` runs only before the loop, `model.eval()` inside it.
"""

from __future__ import annotations

import ast
from typing import NamedTuple, Union

from gradlint.analysis import names
from gradlint.analysis.facts import EvalDuringTraining, Site
from gradlint.analysis.nodes import children, walk
from gradlint.analysis.scope import location_of, loop_site
from gradlint.analysis.shapes import (
    FunctionNode,
    assigned_names,
    module_statements,
    own_nodes,
    parameters,
)

MAX_PASSES = 6
MAX_DEPTH = 6
# Calls that read or log a model, or compute a loss with it, but do not switch its mode: the
# harmless words less those of code that may well call eval() (evaluate, sample, generate, ...).
MODE_SAFE_WORDS = names.HARMLESS_CALLEE_WORDS - {
    "eval", "evaluate", "evaluation", "validate", "validation", "test", "predict", "inference", "infer",
    "sample", "generate", "visualize", "freeze", "unfreeze", "init", "initialize", "compile", "prepare",
    "wrap", "parallel", "load", "state", "register", "hook", "image", "images", "display", "ema",
}  # fmt: skip
LoopNode = (ast.For, ast.AsyncFor, ast.While)
AnyLoop = Union[ast.For, ast.AsyncFor, ast.While]
SELF_RETURNING_METHODS = {
    "to", "cuda", "cpu", "float", "half", "double", "bfloat16", "train", "eval", "requires_grad_", "to_empty",
}  # fmt: skip


class Mode(NamedTuple):
    mode: str  # train | eval | unknown
    set_by: Site | None = None  # the eval() that set it
    went_round: frozenset[ast.AST] = frozenset()  # loops around the eval() that went round since
    set_in: tuple[ast.AST, ...] = ()  # the loops around the eval() when it ran


State = dict  # model key -> frozenset[Mode]; a model absent from it is in train mode


class Outcome(NamedTuple):
    normal: State | None = None
    breaks: State | None = None
    continues: State | None = None
    returns: State | None = None


class Frame(NamedTuple):
    function: ast.AST | None
    bindings: dict  # parameter -> the caller's key (None: not an object we follow)
    local_names: frozenset[str]
    loops: tuple[AnyLoop, ...]  # every loop around this point, the callers' included
    depth: int


def find_eval_during_training(tree: ast.Module, lines: list[str]) -> set[EvalDuringTraining]:
    if not sets_eval_mode(tree):
        return set()
    return ModeAnalysis(tree, lines).run()


def sets_eval_mode(tree: ast.Module) -> bool:
    calls = [n for n in walk(tree) if isinstance(n, ast.Call)]
    backward = any(names.callee_name(c) in ("backward", "manual_backward") for c in calls)
    return backward and any(mode_call(c) == "eval" for c in calls)


def mode_call(call: ast.Call) -> str | None:
    """What `m.eval()`, `m.train()`, `m.train(False)`, `m.train(flag)` set: train, eval or unknown."""
    if not isinstance(call.func, ast.Attribute) or call.func.attr not in ("train", "eval"):
        return None
    if call.func.attr == "eval":
        return "eval" if not call.args and not call.keywords else None
    argument = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "mode"), None)
    if argument is None:
        return "train"
    if isinstance(argument, ast.Constant) and isinstance(argument.value, bool):
        return "train" if argument.value else "eval"
    return "unknown"


class ModeAnalysis:
    def __init__(self, tree: ast.Module, lines: list[str]) -> None:
        self.tree = tree
        self.lines = lines
        self.functions: dict[str, list[ast.FunctionDef | ast.AsyncFunctionDef]] = {}
        for node in walk(tree):
            if isinstance(node, FunctionNode):
                self.functions.setdefault(node.name, []).append(node)
        self.relevant = self.relevant_functions()
        self.trained: set[str] = set()  # models whose parameters an optimizer gets, or put in train()
        # the same, by name, for what runs where this analysis does not go (`__init__`)
        self.trained_names = {names.last_name(path) for path in trained_paths(tree)}
        # a frozen module in eval mode is not training in eval mode (`text_encoder.train(False)` next to
        # `text_encoder.requires_grad_(False)`): whatever backward runs, it gets no gradient to learn from
        self.frozen_names = {names.last_name(path) for path in frozen_paths(tree)}
        self.train_sites: dict[str, Site] = {}
        self.found: set[EvalDuringTraining] = set()
        self.memo: dict[tuple, State] = {}

    def relevant_functions(self) -> set[ast.AST]:
        """Functions that set a mode, run a backward pass, or call one that does: the ones to follow."""
        relevant: set[ast.AST] = set()
        calls: dict[ast.FunctionDef | ast.AsyncFunctionDef, set[str]] = {}
        for group in self.functions.values():
            for function in group:
                found = [n for n in own_nodes(function.body) if isinstance(n, ast.Call)]
                calls[function] = {names.callee_name(c) for c in found}
                if any(
                    mode_call(c) or names.callee_name(c) in ("backward", "manual_backward") for c in found
                ):
                    relevant.add(function)
        grown = True
        while grown:
            grown = False
            for caller, callees in calls.items():
                if caller not in relevant and any(
                    f in relevant for name in callees for f in self.functions.get(name, [])
                ):
                    relevant.add(caller)
                    grown = True
        return relevant

    def run(self) -> set[EvalDuringTraining]:
        called = {names.callee_name(n) for n in walk(self.tree) if isinstance(n, ast.Call)}
        roots: list[tuple[ast.FunctionDef | ast.AsyncFunctionDef | None, list[ast.stmt]]] = [
            (None, module_statements(self.tree))
        ]
        roots += [
            (f, f.body)
            for group in self.functions.values()
            for f in group
            if f.name not in called and f in self.relevant
        ]
        for function, body in roots:
            local_names = frozenset(parameters(function)) if function is not None else frozenset()
            frame = Frame(
                function,
                {},
                local_names | frozenset(assigned_names(body)) if function else frozenset(),
                (),
                0,
            )
            self.block(body, {}, frame)
        return self.found

    # --- names to models --------------------------------------------------------------------------
    def key(self, path: str | None, frame: Frame) -> str | None:
        if path is None:
            return None
        root, _, rest = path.partition(".")
        root, bracket, index = root.partition("[")
        suffix = (bracket + index) + ("." + rest if rest else "")
        if root in frame.bindings:
            bound = frame.bindings[root]
            return None if bound is None else bound + suffix
        if frame.function is not None and root in frame.local_names:
            return f"{getattr(frame.function, 'name', '?')}@{id(frame.function)}:{path}"
        return path

    # --- statements -------------------------------------------------------------------------------
    def block(self, body: list[ast.stmt], state: State, frame: Frame) -> Outcome:
        exits: list[Outcome] = []
        current: State = state
        for statement in body:
            outcome = self.statement(statement, current, frame)
            exits.append(outcome._replace(normal=None))
            if outcome.normal is None:
                return merge(exits)
            current = outcome.normal
        return merge(exits)._replace(normal=current)

    def statement(self, node: ast.stmt, state: State, frame: Frame) -> Outcome:
        if isinstance(node, (*FunctionNode, ast.ClassDef)):
            return Outcome(normal=state)
        if isinstance(node, ast.If):
            state = self.expression(node.test, state, frame)
            return merge([self.block(node.body, state, frame), self.block(node.orelse, state, frame)])
        if isinstance(node, LoopNode):
            return self.loop(node, state, frame)
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                state = self.expression(item.context_expr, state, frame)
            return self.block(node.body, state, frame)
        if isinstance(node, ast.Try):
            body = self.block(node.body, state, frame)
            entry = join(state, body.normal) or state
            handlers = [self.block(h.body, entry, frame) for h in node.handlers]
            orelse = self.block(node.orelse, body.normal, frame) if body.normal is not None else Outcome()
            joined = merge([orelse, *handlers, body._replace(normal=None)])
            if not node.finalbody:
                return joined
            final = self.block(node.finalbody, joined.normal or entry, frame)
            return joined._replace(normal=final.normal if joined.normal is not None else None)
        if isinstance(node, ast.Return):
            state = self.expression(node.value, state, frame)
            return Outcome(returns=state)
        if isinstance(node, ast.Break):
            return Outcome(breaks=state)
        if isinstance(node, ast.Continue):
            return Outcome(continues=state)
        if isinstance(node, ast.Raise):
            return Outcome()
        for child in children(node):
            if isinstance(child, ast.expr):
                state = self.expression(child, state, frame)
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                state = self.rebind(state, self.key(names.path_of(target), frame))
        return Outcome(normal=state)

    def loop(self, node: ast.For | ast.AsyncFor | ast.While, state: State, frame: Frame) -> Outcome:
        if isinstance(node, (ast.For, ast.AsyncFor)):
            state = self.expression(node.iter, state, frame)
        inner = frame._replace(loops=(*frame.loops, node))
        state = entered(state, node)
        head, after, returns = state, state, None  # the body may run zero times
        for _ in range(MAX_PASSES):
            outcome = self.block(node.body, head, inner)
            returns = join(returns, outcome.returns)
            after = join(after, outcome.breaks) or after
            back = go_round(join(outcome.normal, outcome.continues), node)
            after = join(after, back) or after
            new_head = join(head, back) or head
            if new_head == head:
                break
            head = new_head
        else:
            return Outcome(normal=all_unknown(head), returns=returns)
        orelse = self.block(node.orelse, after, frame)
        return orelse._replace(returns=join(orelse.returns, returns))

    # --- expressions ------------------------------------------------------------------------------
    def expression(self, node: ast.expr | None, state: State, frame: Frame) -> State:
        if node is None or isinstance(node, ast.Lambda):
            return state
        for child in children(node):
            if isinstance(child, ast.expr):
                state = self.expression(child, state, frame)
        if isinstance(node, ast.Call):
            state = self.call(node, state, frame)
        return state

    def call(self, node: ast.Call, state: State, frame: Frame) -> State:
        callee = names.callee_name(node)
        receiver = names.path_of(node.func.value) if isinstance(node.func, ast.Attribute) else None
        mode = mode_call(node)
        if mode is not None and isinstance(node.func, ast.Attribute):
            receiver = names.path_of(module_itself(node.func.value))  # `model.to(device).train()`
        if mode is not None:
            return self.set_mode(self.key(receiver, frame), mode, node, state, frame)
        if callee in ("backward", "manual_backward"):
            self.check_backward(node, state, frame)
            return state
        self.learn_trained(node, frame)
        function = self.resolve(node, frame)
        if function is not None:
            if function in self.relevant and frame.depth < MAX_DEPTH and function is not frame.function:
                return self.follow(function, node, state, frame)
            return state
        if callee == "apply" and receiver is not None:
            return self.forget(state, self.key(receiver, frame))  # `model.apply(set_bn_eval)`
        if names.words(callee) & MODE_SAFE_WORDS or (
            isinstance(node.func, ast.Attribute)
            and receiver
            and receiver.split(".", 1)[0] in names.PURE_MODULES
        ):
            return state
        if may_restore_train_mode(node):
            # `fabric.call("on_validation_model_train")`, `self.on_train_epoch_start()`: a framework hook
            # that may put any model back in train mode
            return {k: frozenset({Mode("unknown")}) for k in state}
        for argument in (*node.args, *(k.value for k in node.keywords)):
            state = self.forget(state, self.key(names.path_of(argument), frame))
        return state

    def set_mode(self, key: str | None, mode: str, node: ast.Call, state: State, frame: Frame) -> State:
        if key is None:
            return state
        site = Site(location_of(node, self.lines), names.segment(self.lines, node))
        if mode == "train":
            self.trained.add(key)
            self.train_sites.setdefault(key, site)
        value = Mode(mode, site, set_in=frame.loops) if mode == "eval" else Mode(mode)
        state = {k: v for k, v in state.items() if not is_part(k, key)}
        state[key] = frozenset({value})
        return state

    def check_backward(self, node: ast.Call, state: State, frame: Frame) -> None:
        site = Site(location_of(node, self.lines), names.segment(self.lines, node))
        for key, values in state.items():
            if names.last_name(display(key)) in self.frozen_names:
                continue
            trained = names.last_name(display(key)) in self.trained_names
            if not trained and not any(is_part(key, t) or is_part(t, key) for t in self.trained):
                continue
            for value in values:
                loops = [loop for loop in frame.loops if loop in value.went_round]
                if value.mode != "eval" or value.set_by is None or not loops:
                    continue
                train = next(
                    (s for t, s in self.train_sites.items() if is_part(key, t) or is_part(t, key)), None
                )
                loop = loops[0]  # the outermost: from its second iteration on, training runs in eval mode
                self.found.add(
                    EvalDuringTraining(
                        display(key),
                        value.set_by,
                        site,
                        loop_site(loop, self.lines),
                        train,
                        train is not None and inside(loop, train),
                    )
                )

    def learn_trained(self, node: ast.Call, frame: Frame) -> None:
        """`Adam(model.parameters())`, `create_optimizer(model.named_parameters())`: model is trained."""
        for argument in (*node.args, *(k.value for k in node.keywords)):
            for sub in walk(argument):
                if (
                    isinstance(sub, ast.Call)
                    and isinstance(sub.func, ast.Attribute)
                    and sub.func.attr in ("parameters", "named_parameters")
                ):
                    key = self.key(names.path_of(sub.func.value), frame)
                    if key is not None:
                        self.trained.add(key)

    # --- calls ------------------------------------------------------------------------------------
    def resolve(self, node: ast.Call, frame: Frame) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        func = node.func
        if isinstance(func, ast.Name):
            group = self.functions.get(func.id, [])
        elif isinstance(func, ast.Attribute) and names.path_of(func.value) == "self":
            group = [f for f in self.functions.get(func.attr, []) if is_method(f, self.tree)]
        else:
            return None
        return group[0] if len(group) == 1 else None

    def follow(self, function, node: ast.Call, state: State, frame: Frame) -> State:
        params = parameters(function)
        bindings: dict[str, str | None] = {}
        if isinstance(node.func, ast.Attribute) and params:
            bindings[params[0]] = self.key(names.path_of(node.func.value), frame)
            params = params[1:]
        for param, argument in zip(params, node.args):
            if isinstance(argument, ast.Starred):
                break
            bindings[param] = self.key(names.path_of(argument), frame)
        for keyword_argument in node.keywords:
            if keyword_argument.arg in params:
                bindings[keyword_argument.arg] = self.key(names.path_of(keyword_argument.value), frame)
        memo_key = (function, tuple(sorted(bindings.items())), frame.loops, frozenset(state.items()))
        if memo_key not in self.memo:
            local_names = (
                frozenset(parameters(function)) | frozenset(assigned_names(function.body))
            ) - bindings.keys()
            inner = Frame(function, bindings, frozenset(local_names), frame.loops, frame.depth + 1)
            outcome = self.block(function.body, state, inner)
            self.memo[memo_key] = join(outcome.normal, outcome.returns) or state
        return self.memo[memo_key]

    # --- state ------------------------------------------------------------------------------------
    def forget(self, state: State, key: str | None) -> State:
        """Code we cannot see got the model (or an object holding it): its mode is unknown."""
        if key is None:
            return state
        unknown = frozenset({Mode("unknown")})
        result = {k: (unknown if is_part(k, key) else v) for k, v in state.items()}
        result[key] = unknown
        return result

    def rebind(self, state: State, key: str | None) -> State:
        """`model = Net()`: a new object, in train mode."""
        if key is None or not any(is_part(k, key) for k in state):
            return state
        return {k: v for k, v in state.items() if not is_part(k, key)}


def module_itself(node: ast.expr) -> ast.expr:
    """`model.to(device)`, `model.cuda()`, `model.eval()` return the module they are called on."""
    while (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in SELF_RETURNING_METHODS
    ):
        node = node.func.value
    return node


def trained_paths(tree: ast.Module) -> set[str]:
    """`m` in `Adam(m.parameters())` or `m.train()` anywhere in the module."""
    found: set[str] = set()
    for node in walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        path = names.path_of(module_itself(node.func.value))
        if path is None:
            continue
        if mode_call(node) == "train" or (
            node.func.attr in ("parameters", "named_parameters") and path != "self"
        ):
            found.add(path)
    return found


def may_restore_train_mode(call: ast.Call) -> bool:
    """A hook named for training (`self.on_train_epoch_start()`), or a call naming one
    (`fabric.call("on_validation_model_train")`)."""
    callee_words = names.words(names.callee_name(call))
    if "train" in callee_words and callee_words & {"on", "hook", "hooks"}:
        return True
    return any(
        isinstance(argument, ast.Constant)
        and isinstance(argument.value, str)
        and "train" in names.words(argument.value)
        for argument in (*call.args, *(k.value for k in call.keywords))
    )


def frozen_paths(tree: ast.Module) -> set[str]:
    """`m` in `m.requires_grad_(False)` anywhere in the module."""
    found: set[str] = set()
    for node in walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "requires_grad_"
        ):
            continue
        argument = node.args[0] if node.args else next(
            (k.value for k in node.keywords if k.arg == "requires_grad"), None
        )
        path = names.path_of(module_itself(node.func.value))
        if path is not None and isinstance(argument, ast.Constant) and argument.value is False:
            found.add(path)
    return found


def is_part(key: str, model: str) -> bool:
    return key == model or key.startswith(model + ".") or key.startswith(model + "[")


def display(key: str) -> str:
    return key.rsplit(":", 1)[-1]


def inside(loop: ast.AST, site: Site) -> bool:
    end = getattr(loop, "end_lineno", None) or loop.lineno  # type: ignore[attr-defined]
    return loop.lineno <= site.location.line <= end  # type: ignore[attr-defined]


def is_method(function: ast.AST, tree: ast.Module) -> bool:
    return any(isinstance(node, ast.ClassDef) and function in node.body for node in walk(tree))


def join(a: State | None, b: State | None) -> State | None:
    if a is None:
        return b
    if b is None or a is b:
        return a
    default = frozenset({Mode("train")})
    return {k: a.get(k, default) | b.get(k, default) for k in a.keys() | b.keys()}


def merge(outcomes: list[Outcome]) -> Outcome:
    result = Outcome()
    for outcome in outcomes:
        result = Outcome(*(join(mine, theirs) for mine, theirs in zip(result, outcome)))
    return result


def go_round(state: State | None, loop: ast.AST) -> State | None:
    """Taking the loop's back edge: an eval mode set in this iteration is still on in the next.

    Only a loop around the eval() counts: one that merely follows it (the batch loop after an
    eval() at the top of the epoch) trains in eval mode from its first iteration, on purpose."""
    if state is None:
        return None
    return {
        k: frozenset(
            v._replace(went_round=v.went_round | {loop}) if v.mode == "eval" and loop in v.set_in else v
            for v in values
        )
        for k, values in state.items()
    }


def entered(state: State, loop: ast.AST) -> State:
    """Starting a loop anew (a function called again): an eval() an earlier run of it set was set
    before this run, like one at the top of the epoch, and has gone round none of its iterations."""
    return {
        k: frozenset(
            v._replace(went_round=v.went_round - {loop}, set_in=tuple(x for x in v.set_in if x is not loop))
            if loop in v.set_in
            else v
            for v in values
        )
        for k, values in state.items()
    }


def all_unknown(state: State) -> State:
    return {k: frozenset({Mode("unknown")}) for k in state}
