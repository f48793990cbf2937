"""`python -m gradlint`, the same as the `gradlint` command."""

from gradlint.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
