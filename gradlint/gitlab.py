"""GitLab Code Quality: the JSON report a merge request shows as a widget and in its diff.

GitLab reads a subset of Code Climate's issue format: an array of issues, each with `description`,
`check_name`, `fingerprint`, `severity` and `location` (`path`, `lines.begin`). The fingerprint is
how GitLab tells a new issue from one the target branch already has, so it is built from what stays
when unrelated lines move: the file, the code and the message, not the line number.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence

from gradlint.checker import FileResult
from gradlint.core import Location
from gradlint.report import ERROR_CODE, location_text, ordered, ordered_findings
from gradlint.ruledocs import severity_of

# A rule's severity as Code Climate's scale names it: a bug that silently changes what the model
# learns is major, a run that only pays for its code (GL303) minor; a file that could not be checked
# hides whatever bugs it has.
GITLAB_SEVERITY = {"error": "major", "warning": "minor"}
ERROR_SEVERITY = "critical"


def format_gitlab(results: Sequence[FileResult], cwd: str | None = None) -> str:
    cwd = os.path.abspath(cwd or os.getcwd())
    issues = []
    seen: Counter[tuple[str, str, str]] = Counter()
    for result in ordered(results):
        path = repository_path(result.path, cwd)
        if result.error is not None:
            error = result.error
            where = Location(error.line, error.col, error.line, error.col, error.cell)
            issues.append(_issue(path, ERROR_CODE, error.message, where, ERROR_SEVERITY, seen))
        for finding in ordered_findings(result):
            notes = "".join(
                f"; {related.path_or(result.path)}:{location_text(related.location)}: {related.message}"
                for related in finding.related
            )
            message = f"{finding.message}{notes}"
            severity = GITLAB_SEVERITY[severity_of(finding.code)]
            issues.append(_issue(path, finding.code, message, finding.location, severity, seen))
    return json.dumps(issues, indent=2) + "\n"


def _issue(
    path: str, code: str, message: str, where: Location, severity: str, seen: Counter[tuple[str, str, str]]
) -> dict:
    key = (path, code, message)
    seen[key] += 1  # two identical findings in one file still need two fingerprints
    if where.cell is None:
        lines = {"begin": where.line, "end": where.end_line}
    else:  # a cell's lines are not lines of the .ipynb file GitLab shows: name the cell, point at the file
        message = f"{location_text(where)}: {message}"
        lines = {"begin": 1, "end": 1}
    return {
        "description": f"{code} {message}",
        "check_name": code,
        "fingerprint": fingerprint(*key, seen[key]),
        "severity": severity,
        "location": {"path": path, "lines": lines},
    }


def fingerprint(path: str, code: str, message: str, occurrence: int) -> str:
    return hashlib.sha256(f"{path}\0{code}\0{message}\0{occurrence}".encode()).hexdigest()


def repository_path(path: str, cwd: str) -> str:
    """Relative to where gradlint ran (the repository's root in a CI job), `/`-separated."""
    relative = os.path.relpath(os.path.abspath(os.path.join(cwd, path)), cwd)
    if relative.startswith(os.pardir):
        return path.replace(os.sep, "/")
    return relative.replace(os.sep, "/")
