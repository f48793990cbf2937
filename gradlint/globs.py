"""Path patterns with gitignore's meaning, for `.gitignore`, `exclude` and `per-file-ignores` alike.

A pattern without a slash matches a name at any depth (`*.pyc`, `build`); one with a slash is
anchored to the directory its file lives in (`/docs`, `src/gen/*.py`); `**` spans directories;
a trailing `/` matches directories only; `!` re-includes what an earlier pattern matched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

GITIGNORE = ".gitignore"


@dataclass(frozen=True)
class Pattern:
    text: str  # as written, for messages
    regex: re.Pattern[str]
    negated: bool = False
    directories_only: bool = False
    anchored: bool = False  # applies only below its base; otherwise it matches a name anywhere

    def matches(self, relative: str, is_dir: bool, inside: bool = True) -> bool:
        """`relative` is a `/`-separated path below the base (`inside`), or an absolute one outside it."""
        if (self.directories_only and not is_dir) or (self.anchored and not inside):
            return False
        return self.regex.match(relative) is not None


def compile_pattern(text: str) -> Pattern:
    negated = text.startswith("!")
    body = text[1:] if negated else text
    directories_only = body.endswith("/")
    body = body.rstrip("/")
    # A slash anywhere but at the end anchors the pattern to its base; otherwise it matches any depth.
    anchored = "/" in body
    body = body.lstrip("/")
    prefix = "" if anchored or body.startswith("**/") else "(?:.*/)?"
    regex = re.compile(prefix + _translate(body) + r"\Z")
    return Pattern(text, regex, negated, directories_only, anchored)


def _translate(glob: str) -> str:
    parts: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            parts.append("(?:.*/)?")
            i += 3
        elif glob.startswith("/**", i) and i + 3 == len(glob):
            parts.append("/.*")  # `dir/**`: everything inside dir
            i += 3
        elif glob.startswith("**", i):
            parts.append(".*")
            i += 2
        elif glob[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            parts.append("[^/]")
            i += 1
        elif glob[i] == "[" and "]" in glob[i + 2 :]:
            end = glob.index("]", i + 2)
            members = glob[i + 1 : end]
            if members.startswith("!"):
                members = "^" + members[1:]
            parts.append("[" + members.replace("\\", "\\\\") + "]")
            i = end + 1
        elif glob[i] == "\\" and i + 1 < len(glob):
            parts.append(re.escape(glob[i + 1]))
            i += 2
        else:
            parts.append(re.escape(glob[i]))
            i += 1
    return "".join(parts)


@dataclass(frozen=True)
class PatternSet:
    """Patterns relative to `base`, as in one `.gitignore` or one config file: the last match decides."""

    base: str  # an absolute directory
    patterns: tuple[Pattern, ...]

    def decides(self, path: str, is_dir: bool) -> bool | None:
        """True if the last pattern to match ignores `path`, False if it re-includes it; None: no match."""
        relative, inside = self._relative(path)
        return self._verdict(relative, is_dir, inside)

    def covers(self, path: str) -> bool:
        """Does the file `path` match, or a directory it lies in? (`tests/` covers `tests/a/b.py`)"""
        relative, inside = self._relative(path)
        parts = relative.split("/")
        return any(
            self._verdict("/".join(parts[:depth]), depth < len(parts), inside)
            for depth in range(1, len(parts) + 1)
        )

    def _relative(self, path: str) -> tuple[str, bool]:
        absolute = os.path.abspath(path)
        relative = os.path.relpath(absolute, self.base)
        if relative == os.pardir or relative.startswith(os.pardir + os.sep):
            return absolute.replace(os.sep, "/").lstrip("/"), False
        return relative.replace(os.sep, "/"), True

    def _verdict(self, relative: str, is_dir: bool, inside: bool) -> bool | None:
        verdict = None
        for pattern in self.patterns:
            if pattern.matches(relative, is_dir, inside):
                verdict = not pattern.negated
        return verdict


def pattern_set(base: str, lines: Iterable[str]) -> PatternSet:
    """Patterns from gitignore-style lines: blank lines and `#` comments skipped (`\\#` is a literal)."""
    stripped = (line.rstrip() for line in lines)
    patterns = tuple(compile_pattern(line) for line in stripped if line and not line.startswith("#"))
    return PatternSet(os.path.abspath(base), patterns)


def ignored(path: str, is_dir: bool, sets: Sequence[PatternSet]) -> bool:
    """Like git: the deepest (last) set with a matching pattern decides."""
    for patterns in reversed(sets):
        verdict = patterns.decides(path, is_dir)
        if verdict is not None:
            return verdict
    return False


def read_gitignore(directory: str) -> PatternSet | None:
    try:
        with open(os.path.join(directory, GITIGNORE), encoding="utf-8", errors="replace") as file:
            return pattern_set(directory, file)
    except OSError:
        return None


def enclosing_gitignores(directory: str) -> list[PatternSet]:
    """The `.gitignore` files above `directory`, outermost first, up to its repository's root.

    Outside a repository there are none: git would not apply them either."""
    ancestors: list[str] = []
    current = os.path.abspath(directory)
    while not os.path.exists(os.path.join(current, ".git")):
        parent = os.path.dirname(current)
        if parent == current:
            return []
        ancestors.append(parent)
        current = parent
    found = [read_gitignore(ancestor) for ancestor in reversed(ancestors)]
    return [patterns for patterns in found if patterns is not None]
