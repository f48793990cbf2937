"""Every test gets its own gradlint cache: a result cached by one test must not answer for another
(a test that makes the analysis fail would read the earlier, good result), nor land in the checkout."""

from __future__ import annotations

import pytest

from gradlint.cache import CACHE_DIRECTORY_VARIABLE


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_DIRECTORY_VARIABLE, str(tmp_path_factory.mktemp("cache")))
