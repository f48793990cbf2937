"""Property-based fuzzing of the analysis (issue #8).

- On any valid Python program (hypothesmith), the analysis never raises.
- On generated training loops (a small grammar of loops, branches and gradient events):
  a statement that touches no gradient event never changes the findings, and renaming the
  optimizer variable renames it in the messages and keeps every code and place.

CI runs a bounded number of examples; for a longer local run:
`GRADLINT_FUZZ_EXAMPLES=5000 python -m pytest -q -p no:cacheprovider tests/test_fuzz.py`
"""

from __future__ import annotations

import ast
import keyword
import os
import re
from dataclasses import replace

import hypothesmith
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradlint.checker import check_source
from gradlint.core import Finding, Location, Related

EXAMPLES = int(os.environ.get("GRADLINT_FUZZ_EXAMPLES", "40"))
# No deadline: a loaded 2-core machine makes any per-example time limit flaky. No database: a run
# leaves nothing in the checkout.
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

PRELUDE = """\
import torch
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loader = [torch.randn(2, 4) for _ in range(3)]
accum_steps = 2
flag = True
running = False
x = torch.randn(2, 4)
""".splitlines()

# --- any valid program ---------------------------------------------------------------------------

TRAINING_LOOP = """
for epoch in range(3):
    optimizer.zero_grad()
    for x in loader:
        model(x).pow(2).mean().backward()
        optimizer.step()
"""


@FUZZ
@given(st.one_of(hypothesmith.from_grammar(), hypothesmith.from_node()))
def test_the_analysis_never_raises_on_a_valid_program(program: str) -> None:
    # The random program runs before a training loop, so the analysis reads it instead of being
    # skipped for want of gradient words; it may shadow `optimizer` or `model`, any result will do.
    for text in (program, "\n".join(PRELUDE) + "\n" + program + "\n" + TRAINING_LOOP):
        try:
            ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue  # `from __future__` after the prelude, or a program only valid alone
        findings = check_source(text)
        line_count = text.count("\n") + 1
        assert all(1 <= finding.location.line <= line_count for finding in findings)


# --- generated training loops ----------------------------------------------------------------------

EVENTS = [
    "optimizer.zero_grad()",
    "model.zero_grad()",
    "optimizer.zero_grad(set_to_none=True)",
    "loss = model(x).pow(2).mean()",
    "loss.backward()",
    "model(x).pow(2).mean().backward()",
    "(model(x).pow(2).mean() / accum_steps).backward()",
    "optimizer.step()",
]
HEADERS = [
    "for x in loader:",
    "for epoch in range(3):",
    "for i in range(accum_steps):",
    "if (i + 1) % accum_steps == 0:",
    "if flag:",
    "while running:",
    "with torch.no_grad():",
]


def compound(pair: tuple[str, list[list[str]]]) -> list[str]:
    header, statements = pair
    body = [line for statement in statements for line in statement] or ["pass"]
    return [header, *("    " + line for line in body)]


def if_else(arms: tuple[list[list[str]], list[list[str]]]) -> list[str]:
    then, otherwise = (compound(("", arm))[1:] for arm in arms)
    return ["if flag:", *then, "else:", *otherwise]


statement = st.recursive(
    st.sampled_from(EVENTS).map(lambda line: [line]),
    lambda inner: st.one_of(
        st.tuples(st.sampled_from(HEADERS), st.lists(inner, min_size=1, max_size=4)).map(compound),
        st.tuples(st.lists(inner, min_size=1, max_size=3), st.lists(inner, min_size=1, max_size=3)).map(
            if_else
        ),
    ),
    max_leaves=14,
)


@st.composite
def training_programs(draw: st.DrawFn) -> list[str]:
    """The lines of a program: the prelude, then generated statements, at module level or in a function."""
    body = [line for part in draw(st.lists(statement, min_size=1, max_size=4)) for line in part]
    if draw(st.booleans()):
        body = ["def train():", *("    " + line for line in body), "train()"]
    return [*PRELUDE, *body]


IRRELEVANT = [
    "pass",
    'print("progress")',
    "unrelated_count = 0",
    "unrelated_log = []",
    "unrelated_total = 1 + 2",
    "import math",
    "assert True",
]


def indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def with_statement_after(lines: list[str], index: int, extra: str) -> list[str]:
    """`extra` as the statement after line `index`: first in its block after a header, else a sibling."""
    line = lines[index]
    indent = indent_of(line) + ("    " if line.rstrip().endswith(":") else "")
    return [*lines[: index + 1], indent + extra, *lines[index + 1 :]]


LINES_IN_MESSAGE = re.compile(r"\blines? \d+(?:, \d+)*")  # "at line 9", "(lines 11, 12)"


def without_line(findings: list[Finding], removed: int) -> list[Finding]:
    """The findings as they read once line `removed` (1-based) is taken out of the file."""

    def line(number: int) -> int:
        assert number != removed, "a finding points at the inserted statement"
        return number - 1 if number > removed else number

    def location(where: Location) -> Location:
        return replace(where, line=line(where.line), end_line=line(where.end_line))

    def message(text: str) -> str:
        return LINES_IN_MESSAGE.sub(
            lambda match: re.sub(r"\d+", lambda number: str(line(int(number.group(0)))), match.group(0)), text
        )

    return [
        replace(
            finding,
            message=message(finding.message),
            location=location(finding.location),
            related=tuple(Related(location(r.location), message(r.message)) for r in finding.related),
        )
        for finding in findings
    ]


@FUZZ
@given(training_programs(), st.data())
def test_a_statement_that_touches_no_gradient_never_changes_the_findings(lines: list[str], data) -> None:
    index = data.draw(st.integers(len(PRELUDE) - 1, len(lines) - 1), label="after line")
    extra = data.draw(st.sampled_from(IRRELEVANT), label="statement")
    changed = with_statement_after(lines, index, extra)
    ast.parse("\n".join(changed))  # the generator's promise: both programs are valid
    before = check_source("\n".join(lines) + "\n")
    after = check_source("\n".join(changed) + "\n")
    assert without_line(after, index + 2) == before


TAKEN = {"torch", "model", "loader", "accum_steps", "flag", "running", "x", "i", "epoch", "loss", "train"}
identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True).filter(
    lambda name: not keyword.iskeyword(name) and name not in TAKEN and name not in dir(__builtins__)
)
IN_BACKTICKS = re.compile(r"`[^`]*`")


def renamed(findings: list[Finding], old: str, new: str) -> list[Finding]:
    """The findings with `old` renamed `new` in the code they quote (between backticks)."""
    name = re.compile(rf"\b{re.escape(old)}\b")

    def message(text: str) -> str:
        return IN_BACKTICKS.sub(lambda quoted: name.sub(new, quoted.group(0)), text)

    return [
        replace(
            finding,
            message=message(finding.message),
            related=tuple(Related(r.location, message(r.message)) for r in finding.related),
        )
        for finding in findings
    ]


def with_name(lines: list[str], old: str, new: str) -> list[Finding]:
    name = re.compile(rf"\b{re.escape(old)}\b")
    return check_source("\n".join(name.sub(new, line) for line in lines) + "\n")


@FUZZ
@given(training_programs(), identifiers)
def test_renaming_the_optimizer_renames_the_message_and_keeps_code_and_place(
    lines: list[str], new: str
) -> None:
    before = check_source("\n".join(lines) + "\n")
    after = with_name(lines, "optimizer", new)
    # Each event starts its line, so the start column stays put whatever the name's width.
    assert [(f.code, f.location.line, f.location.col) for f in after] == [
        (f.code, f.location.line, f.location.col) for f in before
    ]
    assert [f.message for f in after] == [f.message for f in renamed(before, "optimizer", new)]
