"""JUnit XML, the test report every CI service shows: one test suite per file, a failing test case per
finding, an erroring one per file that could not be checked.

As ruff writes it: a run without findings is one suite with one passing case, so the report is
never empty (some CI services treat an empty report as a failed upload).
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence

from gradlint.checker import FileResult
from gradlint.report import ERROR_CODE, location_text, ordered, ordered_findings, position

SUITES_NAME = "gradlint"
NO_FINDINGS = "No findings"


def format_junit(results: Sequence[FileResult]) -> str:
    suites = ElementTree.Element("testsuites", name=SUITES_NAME)
    for result in ordered(results):
        if result.error is not None or result.findings:
            suites.append(_suite(result))
    if not len(suites):
        suite = ElementTree.SubElement(suites, "testsuite", name=SUITES_NAME)
        ElementTree.SubElement(suite, "testcase", name=NO_FINDINGS, classname=SUITES_NAME)
    _count(suites)
    ElementTree.indent(suites)
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _suite(result: FileResult) -> ElementTree.Element:
    suite = ElementTree.Element("testsuite", name=result.path)
    if result.error is not None:
        error = result.error
        attributes = {"name": ERROR_CODE, "classname": result.path, "line": str(error.line)}
        case = ElementTree.SubElement(suite, "testcase", attributes)
        failed = ElementTree.SubElement(case, "error", message=error.message)
        failed.text = f"{result.path}:{position(error.line, error.col, error.cell)}: {error.message}"
    for finding in ordered_findings(result):
        where = finding.location
        attributes = {"name": f"{finding.code} {finding.name}", "classname": result.path}
        if where.cell is None:  # a cell's lines are not lines of the .ipynb file
            attributes |= {"line": str(where.line), "column": str(where.col)}
        case = ElementTree.SubElement(suite, "testcase", attributes)
        notes = "".join(
            f"\n{related.path_or(result.path)}:{location_text(related.location)}: note: {related.message}"
            for related in finding.related
        )
        failure = ElementTree.SubElement(case, "failure", message=finding.message)
        failure.text = f"{result.path}:{location_text(where)}: {finding.code} {finding.message}{notes}"
    return suite


def _count(suites: ElementTree.Element) -> None:
    """`tests`, `failures` and `errors` on each suite and on the whole report, as JUnit readers expect."""
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for suite in suites:
        counts = {
            "tests": len(suite),
            "failures": sum(1 for case in suite if case.find("failure") is not None),
            "errors": sum(1 for case in suite if case.find("error") is not None),
        }
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        suites.set(key, str(value))
