"""pytest plugin: trace a test's training loop and fail it on the gradient bugs it shows.

- `@pytest.mark.gradlint` on a test runs it under the tracer and fails it with every violation seen
  (stale steps, discarded or unapplied gradients, unscaled accumulation).
- the `gradtrace` fixture gives a test the running `Tracer`, to assert on `gradtrace.trace` itself.

Registered through the `pytest11` entry point; torch is imported only when a test asks for tracing,
so the plugin costs nothing in sessions that do not use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

MARKER = "gradlint"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: run the test under gradlint's tracer and fail it on gradient bugs it shows"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    if item.get_closest_marker(MARKER) is None or "gradtrace" in getattr(item, "fixturenames", ()):
        return (yield)  # with the fixture, the test's own tracer reports at teardown
    from gradlint.runtime.tracer import Tracer

    with Tracer() as tracer:
        result = yield  # a failing test raises here: its own failure is the one to show
    _fail_on_violations(tracer.trace)
    return result


@pytest.fixture
def gradtrace(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The tracer, running for the whole test; with the gradlint marker, violations fail the test."""
    from gradlint.runtime.tracer import Tracer

    with Tracer() as tracer:
        yield tracer
    if request.node.get_closest_marker(MARKER) is not None:
        _fail_on_violations(tracer.trace)


def _fail_on_violations(trace: Any) -> None:
    from gradlint.runtime.verdicts import violations

    paths = sorted({site.path for record in _records(trace) for site in record.sites[:1]})
    found = [(path, v) for path in paths for v in violations(trace, path) if v.line]
    if found:
        lines = [f"{path}:{v.line}: {v.code} {v.evidence}" for path, v in found]
        pytest.fail("gradlint saw gradient bugs while the test ran:\n" + "\n".join(lines), pytrace=False)


def _records(trace: Any) -> list[Any]:
    return [*trace.backwards.values(), *trace.steps, *trace.clears]
