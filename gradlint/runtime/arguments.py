"""The arguments of `gradlint run` and of `gradlint check --confirm`, apart from the code that runs
them: the CLI builds its parser on every call, and `run` (the tracer, torch) is loaded only for
those commands."""

from __future__ import annotations

import argparse
from typing import Any

DEVICES = ("cpu", "cuda")

# `gradlint check --confirm`: a bounded run per file, since a linted file may train for days.
CONFIRM_MAX_STEPS = 50
CONFIRM_TIMEOUT = 60.0


def add_confirm_options(check: argparse.ArgumentParser) -> None:
    """`gradlint check --confirm` and the run options that go with it."""
    check.add_argument(
        "--confirm",
        action="store_true",
        help="also run each file under the tracer and give each finding a verdict (needs torch)",
    )
    check.add_argument(
        "--max-steps",
        type=int,
        metavar="N",
        help=f"with --confirm: steps per run (default {CONFIRM_MAX_STEPS})",
    )
    check.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help=f"with --confirm: seconds per run (default {CONFIRM_TIMEOUT:g})",
    )
    check.add_argument("--device", choices=DEVICES, help="with --confirm: the default device for each run")


def add_parser(commands: Any) -> None:
    """The `run` subcommand's arguments, on the CLI's subparsers."""
    run = commands.add_parser(
        "run",
        help="run a training script under the tracer and confirm findings",
        usage=(
            "gradlint run SCRIPT [--max-steps N] [--timeout S] [--device cpu|cuda] [--format text|json]"
            " [-- ARGS]"
        ),
    )
    run.add_argument("script", metavar="SCRIPT", help="the Python program to run as __main__")
    add_run_options(run)
    # Everything after SCRIPT: our options, then `--`, then the script's own arguments.
    run.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    run.set_defaults(run_parser=run)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """What `gradlint run` takes after SCRIPT; `run.main` parses those after the script's name again."""
    parser.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps")
    parser.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--device", choices=DEVICES, help="the default device for tensors the script creates")
