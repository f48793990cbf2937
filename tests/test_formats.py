"""Output formats: SARIF, GitHub, GitLab Code Quality, JUnit, --statistics, --quiet and --output-file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from helpers import gradlint, write
from samples import BROKEN_SOURCE, BUG_COL, BUG_LINE, BUGGY_LOOP, CLEAN_LOOP

from gradlint import __version__
from gradlint.checker import FileResult, SourceError
from gradlint.core import Finding, Location, Related
from gradlint.report import format_github, format_statistics
from gradlint.rules import ALL_RULES
from gradlint.sarif import format_sarif

# The repository lives beside shared/ (here and in CI's clone).
SARIF_SCHEMA = Path(__file__).parents[2] / "shared" / "schemas" / "sarif-schema-2.1.0.json"


def finding(line: int = 2, cell: int | None = None, message: str = "the clear runs less often") -> Finding:
    return Finding(
        "GL101",
        "clear-less-often-than-step",
        message,
        Location(line, 2, line, 16, cell),
        (Related(Location(1, 1, 1, 4, cell), "the step is here"),),
    )


# --- SARIF ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sarif_schema() -> dict:
    if not SARIF_SCHEMA.is_file():
        pytest.skip(f"SARIF schema not found at {SARIF_SCHEMA}: shared/ must sit beside the repository")
    return json.loads(SARIF_SCHEMA.read_text())


def sarif_run(capsys, *args: str) -> tuple[int, dict]:
    code, out, err = gradlint(capsys, "check", "--format", "sarif", *args)
    assert err == ""
    document = json.loads(out)
    assert len(document["runs"]) == 1
    return code, document


def test_sarif_validates_and_its_regions_are_the_findings_positions(
    tmp_path, capsys, monkeypatch, sarif_schema
):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "src/train.py", BUGGY_LOOP)
    write(tmp_path, "src/clean.py", CLEAN_LOOP)
    write(tmp_path, "other.py", BUGGY_LOOP)
    code, document = sarif_run(capsys, ".")
    jsonschema.validate(document, sarif_schema)
    assert code == 1
    expected = json.loads(gradlint(capsys, "check", "--format", "json", ".")[1])["findings"]
    results = document["runs"][0]["results"]
    assert len(results) == len(expected) >= 2
    for result, wanted in zip(results, expected):
        physical = result["locations"][0]["physicalLocation"]
        assert physical["artifactLocation"] == {
            "uri": Path(wanted["path"]).as_posix(),
            "uriBaseId": "%SRCROOT%",
        }
        assert physical["region"] == {
            "startLine": wanted["line"],
            "startColumn": wanted["col"],
            "endLine": wanted["end_line"],
            "endColumn": wanted["end_col"],
        }
        assert (result["ruleId"], result["level"], result["message"]["text"]) == (
            wanted["code"],
            "error",
            wanted["message"],
        )
        related = [
            (r["physicalLocation"]["region"], r["message"]["text"]) for r in result["relatedLocations"]
        ]
        assert [(region["startLine"], region["startColumn"], text) for region, text in related] == [
            (r["line"], r["col"], r["message"]) for r in wanted["related"]
        ]
    bug = next(
        r
        for r in results
        if r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "src/train.py"
    )
    assert bug["locations"][0]["physicalLocation"]["region"]["startLine"] == BUG_LINE
    assert bug["locations"][0]["physicalLocation"]["region"]["startColumn"] == BUG_COL
    assert document["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"] == tmp_path.as_uri() + "/"


def test_sarif_describes_every_rule_with_its_docs_page(capsys, tmp_path, sarif_schema):
    _, document = sarif_run(capsys, write(tmp_path, "train.py", BUGGY_LOOP))
    jsonschema.validate(document, sarif_schema)
    driver = document["runs"][0]["tool"]["driver"]
    assert (driver["name"], driver["version"]) == ("gradlint", __version__)
    assert driver["informationUri"].startswith("https://gradlint.readthedocs.io/")
    assert [rule["id"] for rule in driver["rules"]] == [module.RULE.code for module in ALL_RULES]
    for rule, module in zip(driver["rules"], ALL_RULES):
        assert rule["name"] == module.RULE.name
        assert rule["helpUri"] == f"https://gradlint.readthedocs.io/en/latest/rules/{module.RULE.code}/"
        assert rule["shortDescription"]["text"] == module.RULE.summary
        assert rule["fullDescription"]["text"] == module.RULE.what_it_does
        assert "## Why is this bad?" in rule["help"]["markdown"] and rule["help"]["text"]
    [result] = document["runs"][0]["results"]
    assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"] == "GL101"


def test_sarif_reports_unparsable_files_as_tool_execution_notifications(tmp_path, capsys, sarif_schema):
    broken = write(tmp_path, "broken.py", BROKEN_SOURCE)
    buggy = write(tmp_path, "buggy.py", BUGGY_LOOP)
    code, document = sarif_run(capsys, broken, buggy)
    jsonschema.validate(document, sarif_schema)
    assert code == 2
    run = document["runs"][0]
    [invocation] = run["invocations"]
    assert invocation["executionSuccessful"] is False
    [notification] = invocation["toolExecutionNotifications"]
    assert notification["message"]["text"] == "cannot parse: invalid syntax"
    physical = notification["locations"][0]["physicalLocation"]
    # Outside the working directory: an absolute file URI, not a relative path that climbs out.
    assert physical["artifactLocation"] == {"uri": Path(broken).as_uri()}
    assert physical["region"] == {"startLine": 1, "startColumn": 11}
    assert [r["ruleId"] for r in run["results"]] == ["GL101"]


def test_sarif_clean_run_is_successful_with_no_results(tmp_path, capsys, sarif_schema):
    code, document = sarif_run(capsys, write(tmp_path, "clean.py", CLEAN_LOOP))
    jsonschema.validate(document, sarif_schema)
    assert code == 0
    assert document["runs"][0]["results"] == []
    assert document["runs"][0]["invocations"][0]["executionSuccessful"] is True


def test_sarif_notebook_cell_has_no_file_region_but_names_the_cell(sarif_schema):
    document = json.loads(format_sarif([FileResult("nb.ipynb", (finding(cell=3),))]))
    jsonschema.validate(document, sarif_schema)
    [result] = document["runs"][0]["results"]
    assert "region" not in result["locations"][0]["physicalLocation"]
    assert result["message"]["text"] == "cell 3:2:2: the clear runs less often"


def test_sarif_uris_are_percent_encoded(tmp_path, sarif_schema):
    document = json.loads(format_sarif([FileResult("my dir/a#1.py", (finding(),))], cwd=str(tmp_path)))
    jsonschema.validate(document, sarif_schema)
    uri = document["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "my%20dir/a%231.py"


# --- GitHub annotations ------------------------------------------------------------------------------


def test_github_annotation_of_a_constructed_finding_is_exact():
    assert format_github([FileResult("t.py", (finding(),))]) == (
        "::error file=t.py,line=2,col=2,endLine=2,endColumn=16,title=GL101 clear-less-often-than-step"
        "::the clear runs less often%0At.py:1:1: note: the step is here\n"
    )


def test_github_escapes_data_and_properties():
    odd = FileResult("dir,x/a:b%.py", (finding(message="100% sure\r\nnext: a, b"),))
    [line] = format_github([odd]).splitlines()
    properties, message = line[len("::error ") :].split("::", 1)
    assert properties.startswith("file=dir%2Cx/a%3Ab%25.py,line=2,")
    # In the message only %, CR and LF are special: `:` and `,` stay readable.
    assert message.startswith("100%25 sure%0D%0Anext: a, b%0A")
    assert "title=GL101 clear-less-often-than-step" in properties


def test_github_format_from_the_command_line(tmp_path, capsys):
    buggy = write(tmp_path, "buggy.py", BUGGY_LOOP)
    broken = write(tmp_path, "broken.py", BROKEN_SOURCE)
    code, out, _ = gradlint(capsys, "check", "--format", "github", buggy, broken)
    assert code == 2
    lines = out.splitlines()
    assert lines[0] == (
        f"::error file={broken},line=1,col=11,endLine=1,endColumn=11,title=GL000 not checked"
        "::cannot parse: invalid syntax"
    )
    assert lines[1].startswith(f"::error file={buggy},line={BUG_LINE},col={BUG_COL},endLine={BUG_LINE},")


def test_github_notebook_cell_names_the_cell_instead_of_file_lines():
    [line] = format_github([FileResult("nb.ipynb", (finding(cell=2),))]).splitlines()
    assert line.startswith("::error file=nb.ipynb,title=GL101 clear-less-often-than-step::cell 2:2:2: ")


# --- --statistics and --quiet -------------------------------------------------------------------------


def test_statistics_count_each_code_most_frequent_first_aligned():
    results = [
        FileResult("a.py", tuple(finding(line) for line in range(2, 12))),
        FileResult("b.py", (Finding("GL301", "accumulation-not-scaled", "m", Location(1, 1, 1, 2)),)),
        FileResult("c.py", error=SourceError("cannot parse: x")),
    ]
    assert format_statistics(results) == (
        "10  GL101  clear-less-often-than-step\n 1  GL000  not-checked\n 1  GL301  accumulation-not-scaled\n"
    )
    assert format_statistics([FileResult("clean.py")]) == ""


def test_statistics_follow_the_findings(tmp_path, capsys):
    a = write(tmp_path, "a.py", BUGGY_LOOP)
    b = write(tmp_path, "b.py", BUGGY_LOOP)
    code, out, _ = gradlint(capsys, "check", "--statistics", a, b)
    assert code == 1
    lines = out.splitlines()
    assert lines[-1] == "2  GL101  clear-less-often-than-step"
    assert lines[0].startswith(a + f":{BUG_LINE}:{BUG_COL}: GL101")
    assert gradlint(capsys, "check", "--statistics", write(tmp_path, "c.py", CLEAN_LOOP)) == (0, "", "")


def test_quiet_prints_no_finding_only_unchecked_files_and_a_count(tmp_path, capsys):
    a = write(tmp_path, "a.py", BUGGY_LOOP)
    b = write(tmp_path, "b.py", BUGGY_LOOP)
    assert gradlint(capsys, "check", "--quiet", a, b) == (1, "2 findings in 2 files\n", "")
    broken = write(tmp_path, "broken.py", BROKEN_SOURCE)
    code, out, _ = gradlint(capsys, "check", "--quiet", a, broken)
    assert (code, out) == (2, f"{broken}:1:11: GL000 cannot parse: invalid syntax\n1 finding in 1 file\n")
    assert gradlint(capsys, "check", "--quiet", write(tmp_path, "c.py", CLEAN_LOOP)) == (0, "", "")


def test_quiet_with_statistics_and_github(tmp_path, capsys):
    a = write(tmp_path, "a.py", BUGGY_LOOP)
    code, out, _ = gradlint(capsys, "check", "--quiet", "--statistics", "--format", "github", a)
    assert (code, out) == (1, "1 finding in 1 file\n1  GL101  clear-less-often-than-step\n")


@pytest.mark.parametrize("document_format", ["json", "sarif", "gitlab", "junit"])
@pytest.mark.parametrize("option", ["--quiet", "--statistics"])
def test_quiet_and_statistics_would_break_a_document_format(tmp_path, capsys, document_format, option):
    a = write(tmp_path, "a.py", BUGGY_LOOP)
    code, out, err = gradlint(capsys, "check", "--format", document_format, option, a)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and document_format in err


# --- --output-file ---------------------------------------------------------------------------------


@pytest.mark.parametrize("output_format", ["text", "json", "sarif", "github", "gitlab", "junit"])
def test_output_file_holds_the_report_and_stdout_stays_empty(tmp_path, capsys, output_format):
    buggy = write(tmp_path, "buggy.py", BUGGY_LOOP)
    report = tmp_path / "report.out"
    code, out, err = gradlint(capsys, "check", "--format", output_format, "--output-file", str(report), buggy)
    assert (code, out, err) == (1, "", "")
    expected = gradlint(capsys, "check", "--format", output_format, buggy)[1]
    assert report.read_text() == expected and "GL101" in expected


def test_output_file_that_cannot_be_written_is_an_error(tmp_path, capsys):
    buggy = write(tmp_path, "buggy.py", BUGGY_LOOP)
    target = str(tmp_path / "no_such_dir" / "report.txt")
    code, out, err = gradlint(capsys, "check", "--output-file", target, buggy)
    assert (code, out) == (2, "")
    assert target in err and len(err.splitlines()) == 1


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_output_file_gets_no_colour_even_from_a_terminal(tmp_path):
    buggy = write(tmp_path, "buggy.py", BUGGY_LOOP)
    report = tmp_path / "report.txt"
    parent, child = os.openpty()
    environment = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    try:
        process = subprocess.run(
            [sys.executable, "-m", "gradlint", "check", "--output-file", str(report), buggy],
            stdout=child,
            env=environment,
            timeout=60,
        )
    finally:
        os.close(child)
        os.close(parent)
    assert process.returncode == 1
    text = report.read_text()
    assert "GL101" in text and "\x1b[" not in text
    assert "^" not in text  # the source snippet is for a terminal only


# --- GitLab Code Quality ----------------------------------------------------------------------------

# GitLab's published shape for a Code Quality report (docs.gitlab.com, "Code Quality report format"):
# an array of issues, each with these fields; `severity` is one of Code Climate's five.
GITLAB_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["description", "check_name", "fingerprint", "severity", "location"],
        "properties": {
            "description": {"type": "string", "minLength": 1},
            "check_name": {"type": "string", "minLength": 1},
            "fingerprint": {"type": "string", "minLength": 1},
            "severity": {"enum": ["info", "minor", "major", "critical", "blocker"]},
            "location": {
                "type": "object",
                "required": ["path", "lines"],
                "properties": {
                    "path": {"type": "string", "minLength": 1, "not": {"pattern": "^/"}},
                    "lines": {
                        "type": "object",
                        "required": ["begin"],
                        "properties": {
                            "begin": {"type": "integer", "minimum": 1},
                            "end": {"type": "integer", "minimum": 1},
                        },
                    },
                },
            },
        },
    },
}


def gitlab_run(capsys, *args: str) -> tuple[int, list]:
    code, out, err = gradlint(capsys, "check", "--format", "gitlab", *args)
    assert err == ""
    report = json.loads(out)
    jsonschema.validate(report, GITLAB_SCHEMA)
    return code, report


def test_gitlab_report_validates_and_points_at_the_findings(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "src/buggy.py", BUGGY_LOOP)
    write(tmp_path, "broken.py", BROKEN_SOURCE)
    code, report = gitlab_run(capsys, "broken.py", "src/buggy.py")
    assert code == 2
    error, issue = report
    assert (error["check_name"], error["severity"], error["location"]) == (
        "GL000",
        "critical",
        {"path": "broken.py", "lines": {"begin": 1, "end": 1}},
    )
    assert (issue["check_name"], issue["severity"]) == ("GL101", "major")
    assert issue["location"] == {"path": "src/buggy.py", "lines": {"begin": BUG_LINE, "end": BUG_LINE}}
    assert issue["description"].startswith("GL101 `optimizer.zero_grad()`")


def test_gitlab_clean_run_is_an_empty_array(tmp_path, capsys):
    assert gitlab_run(capsys, write(tmp_path, "clean.py", CLEAN_LOOP)) == (0, [])


def test_gitlab_fingerprints_survive_moved_lines_and_tell_identical_findings_apart():
    from gradlint.gitlab import format_gitlab

    def fingerprints(*lines: int) -> list[str]:
        results = [FileResult("train.py", tuple(finding(line) for line in lines))]
        return [issue["fingerprint"] for issue in json.loads(format_gitlab(results))]

    assert fingerprints(2) == fingerprints(40)  # code above it was added: the same issue
    twice = fingerprints(2, 9)
    assert len(set(twice)) == 2 and twice[0] == fingerprints(2)[0]


def test_gitlab_notebook_cell_is_named_in_the_description():
    from gradlint.gitlab import format_gitlab

    (issue,) = json.loads(format_gitlab([FileResult("nb.ipynb", (finding(cell=3),))]))
    jsonschema.validate([issue], GITLAB_SCHEMA)
    assert issue["description"].startswith("GL101 cell 3:2:2: the clear runs less often")
    assert issue["location"]["lines"] == {"begin": 1, "end": 1}


# --- JUnit XML -----------------------------------------------------------------------------------------


def junit_run(capsys, *args: str):
    import xml.etree.ElementTree as ElementTree

    code, out, err = gradlint(capsys, "check", "--format", "junit", *args)
    assert err == ""
    return code, ElementTree.fromstring(out)


def test_junit_has_a_suite_per_file_and_a_failing_case_per_finding(tmp_path, capsys):
    buggy = write(tmp_path, "buggy.py", BUGGY_LOOP)
    broken = write(tmp_path, "broken.py", BROKEN_SOURCE)
    write(tmp_path, "clean.py", CLEAN_LOOP)
    code, suites = junit_run(capsys, buggy, broken, str(tmp_path / "clean.py"))
    assert code == 2
    assert suites.tag == "testsuites"
    assert (suites.get("tests"), suites.get("failures"), suites.get("errors")) == ("2", "1", "1")
    assert [suite.get("name") for suite in suites.findall("testsuite")] == [broken, buggy]
    (error_case,) = suites.find(f"testsuite[@name='{broken}']").findall("testcase")
    assert error_case.get("name") == "GL000"
    assert error_case.find("error").get("message") == "cannot parse: invalid syntax"
    (case,) = suites.find(f"testsuite[@name='{buggy}']").findall("testcase")
    assert (case.get("name"), case.get("classname")) == ("GL101 clear-less-often-than-step", buggy)
    assert (case.get("line"), case.get("column")) == (str(BUG_LINE), str(BUG_COL))
    failure = case.find("failure")
    assert failure.get("message").startswith("`optimizer.zero_grad()`")
    assert failure.text.startswith(f"{buggy}:{BUG_LINE}:{BUG_COL}: GL101 ")
    assert "note: " in failure.text  # the step it starves


def test_junit_clean_run_is_one_passing_case(tmp_path, capsys):
    code, suites = junit_run(capsys, write(tmp_path, "clean.py", CLEAN_LOOP))
    assert code == 0
    (suite,) = suites.findall("testsuite")
    (case,) = suite.findall("testcase")
    assert (suites.get("tests"), suites.get("failures"), suites.get("errors")) == ("1", "0", "0")
    assert case.find("failure") is None and case.find("error") is None


# --- severity ----------------------------------------------------------------------------------------


def test_severity_comes_from_the_rule_in_sarif_and_gitlab():
    from gradlint.core import SEVERITIES
    from gradlint.gitlab import format_gitlab

    assert all(module.RULE.severity in SEVERITIES for module in ALL_RULES)
    slow = Finding("GL303", "accumulation-syncs-every-micro-batch", "all-reduces", Location(5, 1, 5, 9))
    results = [FileResult("train.py", (finding(), slow))]
    run = json.loads(format_sarif(results))["runs"][0]
    assert {result["ruleId"]: result["level"] for result in run["results"]} == {
        "GL101": "error",
        "GL303": "warning",
    }
    defaults = {rule["id"]: rule["defaultConfiguration"]["level"] for rule in run["tool"]["driver"]["rules"]}
    assert (defaults["GL101"], defaults["GL303"]) == ("error", "warning")
    issues = json.loads(format_gitlab(results))
    assert {issue["check_name"]: issue["severity"] for issue in issues} == {
        "GL101": "major",
        "GL303": "minor",
    }
