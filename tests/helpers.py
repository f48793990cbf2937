"""What many test modules need: run the CLI in-process, and write a file into a temporary tree."""

from __future__ import annotations

from pathlib import Path

from gradlint import cli


def gradlint(capsys, *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `gradlint ARGS...`."""
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def write(directory: Path, name: str, content: str | bytes) -> str:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)
