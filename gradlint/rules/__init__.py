"""The rule registry. Each rule is a module with `RULE` (identity and docs) and `check(facts)`.

Every run loads every rule, to resolve codes, even a run that analyses no file. So a rule module
imports the facts it reads only for type checking: building their classes costs more (about 15 ms)
than the rest of the rules together."""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType

from gradlint.rules import (
    gl101_clear_less_often_than_step,
    gl102_gradients_never_cleared,
    gl103_clear_discards_unstepped_gradients,
    gl201_backward_never_applied,
    gl202_scheduler_before_optimizer_step,
    gl203_step_before_backward,
    gl204_parameters_outside_optimizer,
    gl301_accumulation_not_scaled,
    gl302_accumulation_window_not_flushed,
    gl303_accumulation_syncs_every_micro_batch,
    gl304_accumulation_scaled_twice,
    gl401_step_bypasses_grad_scaler,
    gl402_grad_scaler_never_updated,
    gl403_clip_on_scaled_gradients,
    gl501_graph_kept_across_iterations,
    gl502_training_in_eval_mode,
    gl503_clip_after_step,
)

ALL_RULES: tuple[ModuleType, ...] = (
    gl101_clear_less_often_than_step,
    gl102_gradients_never_cleared,
    gl103_clear_discards_unstepped_gradients,
    gl201_backward_never_applied,
    gl202_scheduler_before_optimizer_step,
    gl203_step_before_backward,
    gl204_parameters_outside_optimizer,
    gl301_accumulation_not_scaled,
    gl302_accumulation_window_not_flushed,
    gl303_accumulation_syncs_every_micro_batch,
    gl304_accumulation_scaled_twice,
    gl401_step_bypasses_grad_scaler,
    gl402_grad_scaler_never_updated,
    gl403_clip_on_scaled_gradients,
    gl501_graph_kept_across_iterations,
    gl502_training_in_eval_mode,
    gl503_clip_after_step,
)
RULES_BY_CODE = {rule.RULE.code: rule for rule in ALL_RULES}


class UnknownCodeError(ValueError):
    pass


def resolve_codes(
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    extend_select: Iterable[str] | None = None,
) -> set[str]:
    """The codes to report. `select` replaces the default set; prefixes such as `GL1` are allowed."""
    if select is None:
        chosen = {code for code, rule in RULES_BY_CODE.items() if rule.RULE.enabled_by_default}
    else:
        chosen = _expand(select)
    chosen |= _expand(extend_select or ())
    return chosen - _expand(ignore or ())


def selected_rules(codes: Iterable[str]) -> list[ModuleType]:
    return [RULES_BY_CODE[code] for code in sorted(set(codes)) if code in RULES_BY_CODE]


def _expand(prefixes: Iterable[str]) -> set[str]:
    codes: set[str] = set()
    for prefix in prefixes:
        prefix = prefix.strip().upper()
        if not prefix:
            continue
        matched = {code for code in RULES_BY_CODE if code.startswith(prefix)}
        if not matched:
            raise UnknownCodeError(f"unknown rule code {prefix!r}")
        codes |= matched
    return codes
