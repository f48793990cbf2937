"""Every test gets its own gradlint cache: a result cached by one test must not answer for another
(a test that makes the analysis fail would read the earlier, good result), nor land in the checkout."""

from __future__ import annotations

import concurrent.futures

import pytest

from gradlint.cache import CACHE_DIRECTORY_VARIABLE


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_DIRECTORY_VARIABLE, str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def pools(monkeypatch) -> list[int]:
    """The number of workers of each pool started."""
    started: list[int] = []
    real = concurrent.futures.ProcessPoolExecutor

    def recording(max_workers: int) -> concurrent.futures.ProcessPoolExecutor:
        started.append(max_workers)
        return real(max_workers=max_workers)

    # batch imports the pool when it starts one, so it is replaced where that import finds it.
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", recording)
    return started
