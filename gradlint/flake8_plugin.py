"""gradlint as a flake8 plugin: the same findings, filtered by flake8's own --select and `# noqa`."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence

from gradlint import __version__
from gradlint.checker import SourceError, check_tree
from gradlint.project import Project
from gradlint.report import ERROR_CODE
from gradlint.rules import RULES_BY_CODE


# flake8 makes one checker per file, in a few processes: the project modules their training paths
# read (and which files import which) are read once per process, not once per file.
_project: Project | None = None


def shared_project() -> Project:
    global _project
    if _project is None:
        _project = Project()
    return _project


class GradlintChecker:
    name = "gradlint"
    version = __version__

    def __init__(self, tree: ast.Module, lines: Sequence[str], filename: str = "-") -> None:
        self.tree = tree
        self.lines = [line.rstrip("\r\n") for line in lines]  # as check_source sees them: no line ends
        # a file of a project: the modules it imports and those importing it are read as well
        self.filename = None if filename in ("-", "stdin") else filename

    def run(self) -> Iterator[tuple[int, int, str, type]]:
        try:
            # Every code: flake8's --select, --ignore and noqa decide what the user sees.
            project = shared_project() if self.filename is not None else None
            findings = check_tree(self.tree, self.lines, set(RULES_BY_CODE), self.filename, project)
        except SourceError as error:  # too deep to analyse: say so, in one line, as the CLI does
            yield error.line, error.col - 1, f"{ERROR_CODE} {error.message}", type(self)
            return
        except Exception as error:  # a gradlint bug must not abort the user's whole flake8 run
            yield 1, 0, f"{ERROR_CODE} internal error: {type(error).__name__}: {error}", type(self)
            return
        for finding in findings:
            # flake8 adds one to the column it is given; ours are 1-based already.
            yield (
                finding.location.line,
                finding.location.col - 1,
                f"{finding.code} {finding.message}",
                type(self),
            )
