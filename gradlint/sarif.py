"""SARIF 2.1.0, the format code-scanning services read (GitHub code scanning, Azure DevOps, IDEs).

One run: the tool with every rule and its documentation, one result per finding, and the files that
could not be checked as tool execution notifications, since no rule found anything there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from gradlint import __version__
from gradlint.checker import FileResult
from gradlint.core import Finding, Location, Rule
from gradlint.report import ERROR_CODE, location_text, ordered, ordered_findings
from gradlint.ruledocs import DOCS_URL, rule_markdown, rule_url, severity_of
from gradlint.rules import ALL_RULES

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SOURCE_ROOT = "%SRCROOT%"  # relative artifact URIs are relative to this: the directory gradlint ran in


def format_sarif(results: Sequence[FileResult], cwd: str | None = None) -> str:
    cwd = os.path.abspath(cwd or os.getcwd())
    rules = [module.RULE for module in ALL_RULES]
    index = {rule.code: position for position, rule in enumerate(rules)}
    findings = [
        _result(finding, result.path, cwd, index)
        for result in ordered(results)
        for finding in ordered_findings(result)
    ]
    notifications = [_notification(result, cwd) for result in ordered(results) if result.error is not None]
    run = {
        "tool": {
            "driver": {
                "name": "gradlint",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": DOCS_URL,
                "rules": [_rule(rule) for rule in rules],
            }
        },
        "invocations": [
            {"executionSuccessful": not notifications, "toolExecutionNotifications": notifications}
        ],
        "originalUriBaseIds": {SOURCE_ROOT: {"uri": Path(cwd).as_uri() + "/"}},
        "columnKind": "unicodeCodePoints",  # gradlint's columns count characters
        "results": findings,
    }
    document = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
    return json.dumps(document, indent=2) + "\n"


def _rule(rule: Rule) -> dict:
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.what_it_does},
        # The page `gradlint explain` prints; its Markdown reads well as plain text too.
        "help": {"text": rule_markdown(rule), "markdown": rule_markdown(rule)},
        "helpUri": rule_url(rule.code),
        "defaultConfiguration": {"level": rule.severity, "enabled": rule.enabled_by_default},
    }


def _result(finding: Finding, path: str, cwd: str, index: dict[str, int]) -> dict:
    result: dict = {
        "ruleId": finding.code,
        "level": severity_of(finding.code),
        "message": {"text": _in_cell(finding.location, finding.message)},
        "locations": [{"physicalLocation": _physical(path, finding.location, cwd)}],
    }
    if finding.code in index:
        result["ruleIndex"] = index[finding.code]
    if finding.related:
        result["relatedLocations"] = [
            {
                "id": number,
                "message": {"text": _in_cell(related.location, related.message)},
                "physicalLocation": _physical(related.path_or(path), related.location, cwd),
            }
            for number, related in enumerate(finding.related, start=1)
        ]
    return result


def _notification(result: FileResult, cwd: str) -> dict:
    assert result.error is not None
    error = result.error
    where = Location(error.line, error.col, error.line, error.col, error.cell)
    return {
        "level": "error",
        "descriptor": {"id": ERROR_CODE},
        "message": {"text": _in_cell(where, error.message)},
        "locations": [{"physicalLocation": _physical(result.path, where, cwd, span=False)}],
    }


def _physical(path: str, where: Location, cwd: str, span: bool = True) -> dict:
    physical: dict = {"artifactLocation": artifact_location(path, cwd)}
    if where.cell is None:  # a notebook's lines count within a cell, not within the .ipynb file
        region = {"startLine": where.line, "startColumn": where.col}
        if span:
            # SARIF's endColumn is the column after the region, as gradlint's end_col is.
            region |= {"endLine": where.end_line, "endColumn": where.end_col}
        physical["region"] = region
    return physical


def artifact_location(path: str, cwd: str) -> dict:
    """Relative to where gradlint ran when the file lies below it (what code scanning expects)."""
    absolute = os.path.abspath(os.path.join(cwd, path))
    relative = os.path.relpath(absolute, cwd)
    if relative.startswith(os.pardir):
        return {"uri": Path(absolute).as_uri()}
    return {"uri": quote(relative.replace(os.sep, "/")), "uriBaseId": SOURCE_ROOT}


def _in_cell(where: Location, message: str) -> str:
    return message if where.cell is None else f"{location_text(where)}: {message}"
