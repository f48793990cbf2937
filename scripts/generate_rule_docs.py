"""Write docs/rules/ from the rule modules: one GLxxx.md per rule and index.md, the table of all.

    python scripts/generate_rule_docs.py            # into docs/rules/
    python scripts/generate_rule_docs.py --out DIR  # elsewhere (the test compares the two)

The output depends only on the rule modules, so running it twice changes nothing, and a test fails
when the committed pages are older than the rules they describe.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gradlint.ruledocs import all_rules, rule_markdown, rules_index_markdown

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "rules"


def generated_pages() -> dict[str, str]:
    """File name -> content, for every page docs/rules/ should hold."""
    rules = all_rules()
    pages = {f"{rule.code}.md": rule_markdown(rule) for rule in rules}
    pages["index.md"] = rules_index_markdown(rules)
    return pages


def write_pages(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    pages = generated_pages()
    # A page for a rule that no longer exists would stay on the site: remove it.
    for stale in out.glob("GL*.md"):
        if stale.name not in pages:
            stale.unlink()
    written = []
    for name, content in sorted(pages.items()):
        path = out / name
        path.write_text(content, encoding="utf-8", newline="\n")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="directory to write (default docs/rules)"
    )
    args = parser.parse_args()
    for path in write_pages(args.out):
        print(path)


if __name__ == "__main__":
    main()
