"""pytest plugin: trace a test's training loop and fail it on the gradient bugs it shows.

- `@pytest.mark.gradlint` on a test runs it under the tracer and fails it with every violation seen
  (stale steps, discarded or unapplied gradients, unscaled accumulation).
- the `gradtrace` fixture gives a test the running `Tracer`, to assert on `gradtrace.trace` itself.
- `--gradlint-select` / `--gradlint-ignore` (codes or prefixes, comma-separated) choose the codes that
  fail a test; the marker's own `select=[...]` replaces the session's selection for that test and its
  `ignore=[...]` adds to what the session ignores.

Registered through the `pytest11` entry point; torch is imported only when a test asks for tracing,
so the plugin costs nothing in sessions that do not use it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from gradlint.config import Selection
from gradlint.rules import UnknownCodeError

MARKER = "gradlint"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradlint", "gradient bugs in tests marked gradlint")
    group.addoption("--gradlint-select", type=_codes, help="only these codes or prefixes fail a test")
    group.addoption("--gradlint-ignore", type=_codes, default=(), help="these codes or prefixes never do")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(select=None, ignore=()): run the test under gradlint's tracer and fail it on "
        "gradient bugs it shows",
    )
    try:
        _selected_codes(config, None)
    except UnknownCodeError as error:
        raise pytest.UsageError(f"--gradlint-select/--gradlint-ignore: {error}") from None


def _codes(value: str) -> tuple[str, ...]:
    return tuple(code.strip() for code in value.split(",") if code.strip())


def _as_codes(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """A marker's `ignore="GL301"` means the code, not its letters."""
    if value is None:
        return None
    return _codes(value) if isinstance(value, str) else tuple(value)


def _selected_codes(config: pytest.Config, marker: pytest.Mark | None) -> set[str]:
    """The codes that fail this test: the session's options, then the marker's own arguments."""
    select = config.getoption("gradlint_select", None)
    ignore = tuple(config.getoption("gradlint_ignore", None) or ())
    if marker is not None:
        select = _as_codes(marker.kwargs.get("select", select))
        ignore += _as_codes(marker.kwargs.get("ignore", ())) or ()
    return Selection(select, ignore).apply(None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    if item.get_closest_marker(MARKER) is None or "gradtrace" in getattr(item, "fixturenames", ()):
        return (yield)  # with the fixture, the test's own tracer reports at teardown
    from gradlint.runtime.tracer import Tracer

    with Tracer() as tracer:
        result = yield  # a failing test raises here: its own failure is the one to show
    _fail_on_violations(tracer.trace, item)
    return result


@pytest.fixture
def gradtrace(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The tracer, running for the whole test; with the gradlint marker, violations fail the test."""
    from gradlint.runtime.tracer import Tracer

    with Tracer() as tracer:
        yield tracer
    if request.node.get_closest_marker(MARKER) is not None:
        _fail_on_violations(tracer.trace, request.node)


def _fail_on_violations(trace: Any, item: pytest.Item) -> None:
    from gradlint.runtime.verdicts import violations

    try:
        codes = _selected_codes(item.config, item.get_closest_marker(MARKER))
    except UnknownCodeError as error:
        pytest.fail(f"@pytest.mark.{MARKER}: {error}", pytrace=False)
    paths = sorted({site.path for record in _records(trace) for site in record.sites[:1]})
    found = [(path, v) for path in paths for v in violations(trace, path) if v.line and v.code in codes]
    if found:
        lines = [f"{path}:{v.line}: {v.code} {v.evidence}" for path, v in found]
        pytest.fail("gradlint saw gradient bugs while the test ran:\n" + "\n".join(lines), pytrace=False)


def _records(trace: Any) -> list[Any]:
    return [*trace.backwards.values(), *trace.steps, *trace.clears]
