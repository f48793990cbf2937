"""The runnable programs in fixtures/ state what gradlint must report; hold gradlint (and them) to it.

A buggy fixture marks each reported line with a trailing `# expect: GL101` (several codes:
`# expect: GL101, GL301`); a correct one carries a `# expect: clean` line under its docstring.
The static test compares those marks with `check_source`; the runtime test proves each fixture
is a real training program by running it.
"""

from __future__ import annotations

import ast
import io
import os
import re
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURES = sorted(FIXTURES_DIR.glob("*.py"))
FIXTURE_IDS = [path.stem for path in FIXTURES]

EXPECT_COMMENT = re.compile(r"#\s*expect:\s*(?P<what>.*?)\s*$")
CODE = re.compile(r"GL[0-9]{3}")
BUGGY_NAME = re.compile(r"bug_(?P<code>GL[0-9]{3})_[a-z0-9_]+\.py")
CLEAN_NAME = re.compile(r"clean_[a-z0-9_]+\.py")
# The clean marker belongs to the file's header, not to some line deep in the program.
CLEAN_MARKER_MAX_LINE = 10


class MalformedExpectation(ValueError):
    pass


@dataclass(frozen=True)
class Expectation:
    clean: bool
    findings: frozenset[tuple[int, str]]  # (line, code)

    @property
    def stated(self) -> bool:
        return self.clean or bool(self.findings)


def read_expectation(path: Path) -> Expectation:
    """Collect `# expect:` comments; tokenize so that text inside strings never counts."""
    text = path.read_text(encoding="utf-8")
    clean = False
    findings: set[tuple[int, str]] = set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type != tokenize.COMMENT:
            continue
        match = EXPECT_COMMENT.match(token.string)
        if match is None:
            continue
        line = token.start[0]
        what = match.group("what")
        is_trailing = bool(token.line[: token.start[1]].strip())
        if what == "clean":
            if is_trailing or line > CLEAN_MARKER_MAX_LINE:
                raise MalformedExpectation(
                    f"{path.name}:{line}: `# expect: clean` must be a line of its own in the first "
                    f"{CLEAN_MARKER_MAX_LINE} lines"
                )
            clean = True
            continue
        codes = [code.strip() for code in what.split(",")]
        if not all(CODE.fullmatch(code) for code in codes):
            raise MalformedExpectation(f"{path.name}:{line}: cannot read {token.string!r}")
        if not is_trailing:
            raise MalformedExpectation(f"{path.name}:{line}: put `# expect: CODE` on the reported line")
        findings.update((line, code) for code in codes)
    if clean and findings:
        raise MalformedExpectation(f"{path.name}: says both clean and {sorted(findings)}")
    return Expectation(clean=clean, findings=frozenset(findings))


def describe(findings: set[tuple[int, str]], lines: list[str]) -> str:
    shown = [f"  {line}: {code}  | {lines[line - 1].strip()}" for line, code in sorted(findings)]
    return "\n".join(shown) or "  (none)"


@pytest.mark.parametrize("path", FIXTURES, ids=FIXTURE_IDS)
def test_gradlint_reports_exactly_the_expected_findings(path: Path) -> None:
    from gradlint.checker import check_source

    expectation = read_expectation(path)
    assert expectation.stated, f"{path.name} states no expectation"
    text = path.read_text(encoding="utf-8")
    reported = {(finding.location.line, finding.code) for finding in check_source(text, str(path))}
    lines = text.splitlines()
    missing = set(expectation.findings - reported)
    unexpected = reported - expectation.findings
    assert not missing and not unexpected, (
        f"{path.name}\nmissing:\n{describe(missing, lines)}\nunexpected:\n{describe(unexpected, lines)}"
    )


@pytest.mark.parametrize("path", FIXTURES, ids=FIXTURE_IDS)
def test_fixture_runs(path: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    result = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        # Tiny models gain nothing from intra-op threads, and on a busy CI machine OpenMP's
        # spinning threads can make a 20 ms fixture take seconds.
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"{path.name} exited {result.returncode}:\n{result.stderr[-3000:]}"
    written = sorted(p.name for p in tmp_path.iterdir())
    assert not written, f"{path.name} wrote files: {written}"


def test_fixture_set_is_large_balanced_and_stated() -> None:
    expectations = {path.name: read_expectation(path) for path in FIXTURES}
    unstated = [name for name, expectation in expectations.items() if not expectation.stated]
    clean = [name for name, expectation in expectations.items() if expectation.clean]
    buggy = [name for name, expectation in expectations.items() if expectation.findings]
    assert not unstated, f"fixtures without an expectation: {unstated}"
    assert len(expectations) >= 40, f"only {len(expectations)} fixtures"
    assert len(clean) >= 18, f"only {len(clean)} clean fixtures"
    assert len(buggy) >= 18, f"only {len(buggy)} buggy fixtures"
    reported_codes = {code for name in buggy for _, code in expectations[name].findings}
    assert reported_codes >= {"GL101", "GL102", "GL103", "GL201", "GL301"}, f"uncovered: {reported_codes}"


@pytest.mark.parametrize("path", FIXTURES, ids=FIXTURE_IDS)
def test_fixture_name_and_docstring_match_its_expectation(path: Path) -> None:
    expectation = read_expectation(path)
    if expectation.clean:
        assert CLEAN_NAME.fullmatch(path.name), f"{path.name} is clean: name it clean_<what>.py"
    else:
        match = BUGGY_NAME.fullmatch(path.name)
        assert match, f"{path.name} expects findings: name it bug_<code>_<what>.py"
        codes = {code for _, code in expectation.findings}
        assert match.group("code") in codes, f"{path.name} is named for a code it does not expect ({codes})"
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert docstring, f"{path.name} needs a module docstring saying what it exercises"
    text_lines = [line for line in docstring.splitlines() if line.strip()]
    assert 2 <= len(text_lines) <= 4, f"{path.name}: docstring has {len(text_lines)} lines of text, want 2-4"
