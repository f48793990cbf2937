"""`[tool.gradlint]` in pyproject.toml: finding it, reading it, and which codes apply to a file.

Selection is layered as in ruff: the defaults, then the config file, then the command line. In each
layer `select` replaces what came before, `extend-select` adds, `ignore` removes; `per-file-ignores`
then removes codes for the files its globs match.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gradlint.files import DEFAULT_EXCLUDE
from gradlint.globs import PatternSet, pattern_set
from gradlint.rules import UnknownCodeError, resolve_codes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9 and 3.10 only
    import tomli as tomllib

CONFIG_FILE = "pyproject.toml"
LIST_KEYS = ("select", "ignore", "extend-select", "exclude", "extend-exclude")
KEYS = (*LIST_KEYS, "per-file-ignores")


class ConfigError(Exception):
    """A config file gradlint cannot use; the message names the file and the key or code."""


@dataclass(frozen=True)
class Selection:
    """One layer of rule selection: None for `select` means "keep what the layer below chose"."""

    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    extend_select: tuple[str, ...] = ()

    def apply(self, codes: set[str] | None) -> set[str]:
        """The codes after this layer, on top of `codes` (None: the rules enabled by default)."""
        select = self.select if self.select is not None else (None if codes is None else sorted(codes))
        return resolve_codes(select=select, ignore=self.ignore, extend_select=self.extend_select)


@dataclass(frozen=True)
class Config:
    path: str | None = None  # the file it was read from; None when there is none
    selection: Selection = Selection()
    per_file_ignores: tuple[tuple[PatternSet, frozenset[str]], ...] = ()
    exclude: PatternSet | None = None  # None: the default list (files.DEFAULT_EXCLUDE)

    def codes_for(self, path: str | None, codes: set[str]) -> set[str]:
        """`codes` less those `per-file-ignores` drops for `path` (None: standard input, no path)."""
        if path is None:
            return codes
        dropped = {code for glob, ignored in self.per_file_ignores if glob.covers(path) for code in ignored}
        return codes - dropped


def discover(paths: Sequence[str], explicit: str | None = None) -> Config:
    """The config for a run: `explicit` if given, else the one found above the checked paths."""
    if explicit is not None:
        return load_config(explicit, required=True)
    found = find_config(common_directory(paths))
    return load_config(found) if found is not None else Config()


def common_directory(paths: Sequence[str]) -> str:
    """Where to start looking: the directory holding every checked path (stdin counts as the cwd)."""
    directories = [
        os.path.abspath(path if os.path.isdir(path) else os.path.dirname(path) or os.curdir)
        if path != "-"
        else os.getcwd()
        for path in paths
    ]
    return os.path.commonpath(directories) if directories else os.getcwd()


def find_config(start: str) -> str | None:
    """The first pyproject.toml with a `[tool.gradlint]` table in `start` or above it."""
    current = os.path.abspath(start)
    while True:
        candidate = os.path.join(current, CONFIG_FILE)
        if os.path.isfile(candidate) and _gradlint_table(candidate) is not None:
            return candidate
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def load_config(path: str, required: bool = False) -> Config:
    table = _gradlint_table(path)
    if table is None:
        if required:
            raise ConfigError(f"{path}: no [tool.gradlint] table")
        return Config()
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} in [tool.gradlint] (known: {', '.join(KEYS)})")
    base = os.path.dirname(os.path.abspath(path))
    lists = {key: _string_list(path, key, table[key]) for key in LIST_KEYS if key in table}
    for key in ("select", "ignore", "extend-select"):
        _check_codes(path, key, lists.get(key, ()))
    select = lists.get("select")
    return Config(
        path=path,
        selection=Selection(
            select=tuple(select) if select is not None else None,
            ignore=tuple(lists.get("ignore", ())),
            extend_select=tuple(lists.get("extend-select", ())),
        ),
        per_file_ignores=_per_file_ignores(path, base, table.get("per-file-ignores", {})),
        exclude=pattern_set(base, [*lists.get("exclude", DEFAULT_EXCLUDE), *lists.get("extend-exclude", ())]),
    )


def _gradlint_table(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    table = document.get("tool", {}).get("gradlint")
    if table is not None and not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.gradlint] must be a table")
    return table


def _string_list(path: str, key: str, value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{path}: {key!r} in [tool.gradlint] must be a list of strings")
    return value


def _check_codes(path: str, key: str, codes: Iterable[str]) -> None:
    try:
        resolve_codes(select=codes)
    except UnknownCodeError as error:
        raise ConfigError(f"{path}: {error} in {key!r}") from None


def _per_file_ignores(path: str, base: str, table: object) -> tuple[tuple[PatternSet, frozenset[str]], ...]:
    key = "per-file-ignores"
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {key!r} in [tool.gradlint] must be a table of glob = [codes]")
    entries = []
    for glob, codes in table.items():
        codes = _string_list(path, f"{key}.{glob}", codes)
        _check_codes(path, f"{key}.{glob}", codes)
        entries.append((pattern_set(base, [glob]), frozenset(resolve_codes(select=codes))))
    return tuple(entries)
