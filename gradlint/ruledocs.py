"""Rule documentation, rendered from each rule's `RULE`: `gradlint rules`, `gradlint explain`, docs/rules/.

The rule module is the one source: the terminal, the generated pages and the website all read it,
so a rule's documentation cannot drift from the rule.
"""

from __future__ import annotations

from collections.abc import Sequence

from gradlint.core import Rule
from gradlint.rules import ALL_RULES, RULES_BY_CODE, UnknownCodeError

DOCS_URL = "https://gradlint.readthedocs.io/en/latest/"
TABLE_HEADER = ("code", "name", "summary", "fixable", "default")
NO_RUNTIME_CHECK = "The runtime tracer does not check this rule yet."


def all_rules() -> list[Rule]:
    return [module.RULE for module in ALL_RULES]


def find_rule(code_or_name: str) -> Rule:
    """A rule by its code (`GL101`, any case) or its name (`clear-less-often-than-step`)."""
    wanted = code_or_name.strip()
    module = RULES_BY_CODE.get(wanted.upper())
    if module is not None:
        return module.RULE
    for rule in all_rules():
        if rule.name == wanted.lower():
            return rule
    raise UnknownCodeError(f"unknown rule code {code_or_name!r}")


def rule_url(code: str) -> str:
    """The rule's page on the docs site, which SARIF's helpUri and the editor's diagnostic link to."""
    return f"{DOCS_URL}rules/{code}/"


def severity_of(code: str) -> str:
    """The severity of a finding's code: its rule's, or "error" for GL000 (a file not checked)."""
    module = RULES_BY_CODE.get(code)
    return module.RULE.severity if module is not None else "error"


def table_row(rule: Rule) -> tuple[str, str, str, str, str]:
    return (
        rule.code,
        rule.name,
        rule.summary,
        "yes" if rule.fixable else "no",
        "on" if rule.enabled_by_default else "off",
    )


def rules_table_text(rules: Sequence[Rule]) -> str:
    """Aligned columns for a terminal: code, name, summary, fixable, default."""
    rows = [TABLE_HEADER, *(table_row(rule) for rule in rules)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(TABLE_HEADER))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n" for row in rows
    )


def rules_index_markdown(rules: Sequence[Rule]) -> str:
    """docs/rules/index.md: the same table, each code a link to its page."""
    lines = [
        "# Rules",
        "",
        "Every rule gradlint has. Each page is generated from the rule's own module "
        "(`gradlint/rules/glNNN_*.py`), as is `gradlint explain CODE`.",
        "",
        "| " + " | ".join(TABLE_HEADER) + " |",
        "| " + " | ".join("---" for _ in TABLE_HEADER) + " |",
    ]
    for rule in rules:
        code, *cells = (cell.replace("|", "\\|") for cell in table_row(rule))  # a `|` would end the cell
        lines.append(f"| [{code}]({code}.md) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rule_markdown(rule: Rule) -> str:
    """The full page, in the sections every rule has; `gradlint explain` prints it as it is."""
    sections = [
        f"# {rule.code}: {rule.name}",
        f"{rule.summary[0].upper()}{rule.summary[1:]}.",
        f"Fixable: {'yes' if rule.fixable else 'no'}. "
        f"Enabled by default: {'yes' if rule.enabled_by_default else 'no'}.",
        f"## What it does\n\n{rule.what_it_does}",
        f"## Why is this bad?\n\n{rule.why_bad}",
        f"## Example\n\n{python_block(rule.example)}",
        f"## Use instead\n\n{python_block(rule.use_instead)}",
        f"## How the runtime confirms it\n\n{rule.runtime or NO_RUNTIME_CHECK}",
        *([f"## Fix\n\n{rule.fix}"] if rule.fix else []),
        "## References\n\n" + ("\n".join(f"- <{url}>" for url in rule.references) or "None yet."),
    ]
    return "\n\n".join(sections) + "\n"


def python_block(code: str) -> str:
    return f"```python\n{code.rstrip()}\n```"
