"""Rule documentation from one source: `gradlint rules`, `gradlint explain`, docs/rules/, the site."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import gradlint

from gradlint.rules import ALL_RULES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CODES = [module.RULE.code for module in ALL_RULES]
SECTIONS = [
    "## What it does",
    "## Why is this bad?",
    "## Example",
    "## Use instead",
    "## How the runtime confirms it",
    "## References",
]


def load_generator():
    spec = importlib.util.spec_from_file_location(
        "generate_rule_docs", ROOT / "scripts" / "generate_rule_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- gradlint rules ----------------------------------------------------------------------------------


def test_rules_lists_every_rule_with_fixable_and_default(capsys):
    exit_code, out, err = gradlint(capsys, "rules")
    assert (exit_code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == ["code", "name", "summary", "fixable", "default"]
    assert [row.split()[0] for row in rows] == CODES
    for module, row in zip(ALL_RULES, rows):
        rule = module.RULE
        assert f"{rule.code}  " in row and rule.name in row and rule.summary in row
        assert row.split()[-2:] == [
            "yes" if rule.fixable else "no",
            "on" if rule.enabled_by_default else "off",
        ]


# --- gradlint explain --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", CODES)
def test_explain_prints_every_section_from_the_rule_module(capsys, code):
    exit_code, out, err = gradlint(capsys, "explain", code)
    assert (exit_code, err) == (0, "")
    rule = next(module.RULE for module in ALL_RULES if module.RULE.code == code)
    assert out.startswith(f"# {code}: {rule.name}\n")
    positions = [out.index(section + "\n") for section in SECTIONS]
    assert positions == sorted(positions), "sections out of order"
    for text in (
        rule.what_it_does,
        rule.why_bad,
        rule.example,
        rule.use_instead,
        rule.runtime,
        *rule.references,
    ):
        assert text.strip() in out


def test_explain_accepts_lower_case_and_the_rule_name(capsys):
    _, by_code, _ = gradlint(capsys, "explain", "GL101")
    assert gradlint(capsys, "explain", "gl101") == (0, by_code, "")
    assert gradlint(capsys, "explain", "clear-less-often-than-step") == (0, by_code, "")


@pytest.mark.parametrize("code", ["GL999", "GL1", "nonsense"])
def test_explain_unknown_code_is_a_one_line_error_exit_2(capsys, code):
    exit_code, out, err = gradlint(capsys, "explain", code)
    assert (exit_code, out) == (2, "")
    assert len(err.splitlines()) == 1 and "unknown rule code" in err and code in err


def test_explain_runs_as_a_command():
    result = subprocess.run(
        [sys.executable, "-m", "gradlint", "explain", "GL101"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "## Why is this bad?" in result.stdout


# --- docs/rules is generated and current -------------------------------------------------------------


def test_committed_rule_docs_match_the_rule_modules(tmp_path):
    load_generator().write_pages(tmp_path)
    generated = {path.name: path.read_text(encoding="utf-8") for path in tmp_path.iterdir()}
    committed = {path.name: path.read_text(encoding="utf-8") for path in (DOCS / "rules").iterdir()}
    stale = sorted(
        name for name in generated.keys() | committed.keys() if generated.get(name) != committed.get(name)
    )
    assert not stale, f"docs/rules/ is stale ({stale}): run `python scripts/generate_rule_docs.py`"


def test_rule_docs_are_deterministic(tmp_path):
    generator = load_generator()
    generator.write_pages(tmp_path / "a")
    generator.write_pages(tmp_path / "b")
    for page in (tmp_path / "a").iterdir():
        assert page.read_bytes() == (tmp_path / "b" / page.name).read_bytes()


def test_generator_removes_the_page_of_a_rule_that_is_gone(tmp_path):
    (tmp_path / "GL999.md").write_text("# gone\n")
    load_generator().write_pages(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [f"{code}.md" for code in CODES] + ["index.md"]
    )


def test_explain_prints_the_committed_page(capsys):
    """One source: the terminal shows exactly what the website shows."""
    for code in CODES:
        _, out, _ = gradlint(capsys, "explain", code)
        assert out == (DOCS / "rules" / f"{code}.md").read_text(encoding="utf-8")


# --- the site ------------------------------------------------------------------------------------


def test_every_page_is_in_the_mkdocs_nav():
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with mkdocs; without it the nav cannot be read")
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]

    def pages(entries):
        for entry in entries:
            for value in entry.values():
                yield from pages(value) if isinstance(value, list) else [value]

    listed = set(pages(nav))
    on_disk = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    assert listed == on_disk


def test_docs_build_as_a_site_with_mkdocs_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (it is in the `test` extra: pip install -e '.[test]')")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for page in ("index.html", "notebooks/index.html", "rules/GL101/index.html"):
        assert (tmp_path / "site" / page).is_file()
