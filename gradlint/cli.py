"""The `gradlint` command: arguments in, `check_source` over each file, a report out, an exit code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gradlint import __version__
from gradlint.batch import check_paths, default_jobs
from gradlint.cache import cache_for
from gradlint.checker import FileResult, SourceError
from gradlint.config import ConfigError, Selection, discover
from gradlint.files import STDIN, STDIN_NAME, expand_paths, read_data
from gradlint.report import format_github, format_json, format_statistics, format_summary, format_text
from gradlint.ruledocs import all_rules, find_rule, rule_markdown, rules_table_text
from gradlint.rules import UnknownCodeError
from gradlint.runtime import arguments as runtime_arguments

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2  # bad usage, or a file that could not be checked: its bugs went unseen
FORMATS = ("text", "json", "sarif", "github", "gitlab", "junit")
DOCUMENT_FORMATS = ("json", "sarif", "gitlab", "junit")  # one document: nothing may be printed around it


EXIT_INTERRUPTED = 130  # what a shell reports for a command stopped by Ctrl-C (128 + SIGINT)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return dispatch(argv)
    except KeyboardInterrupt:  # Ctrl-C in a pre-commit hook: one line, not a traceback
        print("gradlint: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def dispatch(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fix"]:  # `gradlint fix ...` is `gradlint check --fix ...`
        argv = ["check", "--fix", *argv[1:]]
    args = build_parser().parse_args(argv)
    if args.command == "rules":
        write_report(rules_table_text(all_rules()))
        return EXIT_CLEAN
    if args.command == "explain":
        return explain(args.code)
    if args.command == "server":
        return serve()
    if args.command == "run":
        from gradlint.runtime import run as runtime_run  # the tracer's machinery: only to run a program

        return runtime_run.main(args)
    return run_check(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradlint", description="Find gradient bugs in PyTorch training loops."
    )
    parser.add_argument("--version", action="version", version=f"gradlint {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    check = commands.add_parser("check", help="check Python files and directories")
    check.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="files, directories, or - for stdin (the default with --stdin-filename)",
    )
    check.add_argument("--select", type=code_list, help="only these codes or prefixes, comma-separated")
    check.add_argument("--ignore", type=code_list, help="leave out these codes or prefixes")
    check.add_argument("--extend-select", type=code_list, help="add these codes or prefixes")
    check.add_argument("--config", metavar="FILE", help="use [tool.gradlint] from FILE, not the nearest one")
    # --output-format is ruff's name for the same option: one option, two spellings.
    check.add_argument("--format", "--output-format", dest="format", choices=FORMATS, default="text")
    check.add_argument(
        "--stdin-filename",
        metavar="NAME",
        help="standard input is the file NAME: its per-file-ignores, notebook or not, and the name shown",
    )
    check.add_argument(
        "--force-exclude",
        action="store_true",
        help="apply exclude to the paths named on the command line too (as pre-commit passes them)",
    )
    check.add_argument(
        "--exit-zero",
        action="store_true",
        help="exit 0 even with findings (2 still means a file went unchecked)",
    )
    check.add_argument("--output-file", metavar="FILE", help="write the report to FILE, not standard output")
    check.add_argument("--statistics", action="store_true", help="after the findings, a count of each code")
    check.add_argument(
        "--quiet", action="store_true", help="no line per finding: files not checked and a count only"
    )
    check.add_argument("--no-color", action="store_true", help="plain text even on a terminal")
    check.add_argument(
        "-j",
        "--jobs",
        type=job_count,
        default=default_jobs(),
        help="processes to check with (default: all cores)",
    )
    check.add_argument("--no-cache", action="store_true", help="neither read nor write .gradlint_cache/")
    check.add_argument("--fix", action="store_true", help="apply the safe fixes, then report what remains")
    check.add_argument("--diff", action="store_true", help="show the fixes as a unified diff; write nothing")
    check.add_argument(
        "--unsafe-fixes", action="store_true", help="with --fix or --diff, apply unsafe fixes too"
    )
    runtime_arguments.add_confirm_options(check)
    # Listed for --help; main() reads `fix ARGS` as `check --fix ARGS`, so it takes check's options.
    commands.add_parser("fix", help="apply the fixes (check's options; --fix implied)", add_help=False)
    commands.add_parser("rules", help="list every rule: code, name, summary, fixable, default")
    commands.add_parser("server", help="the language server for editors, over stdio ('gradlint[server]')")
    explain = commands.add_parser("explain", help="a rule's full documentation")
    explain.add_argument("code", metavar="CODE", help="a rule code such as GL101, or its name")
    runtime_arguments.add_parser(commands)
    return parser


SERVER_PACKAGES = ("pygls", "lsprotocol")


def serve() -> int:
    try:
        from gradlint.server import serve as serve_stdio  # pygls: only the server needs it
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in SERVER_PACKAGES:
            raise  # a bug of ours, not a missing extra
        print("gradlint: error: the server needs pygls: pip install 'gradlint[server]'", file=sys.stderr)
        return EXIT_ERROR
    return serve_stdio()


def explain(code: str) -> int:
    try:
        rule = find_rule(code)
    except UnknownCodeError as error:
        print(f"gradlint: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    write_report(rule_markdown(rule))
    return EXIT_CLEAN


def job_count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes, 1 or more: {value!r}")
    return int(value)


def code_list(value: str) -> list[str]:
    return [code.strip() for code in value.split(",") if code.strip()]


def run_check(args: argparse.Namespace) -> int:
    problem = usage_problem(args)
    if problem is not None:
        print(f"gradlint: error: {problem}", file=sys.stderr)
        return EXIT_ERROR
    if not args.paths:
        args.paths = [STDIN]  # `--stdin-filename NAME` alone: the buffer an editor pipes in
    try:
        # Standard input stands for the file it names: its config is that file's project's.
        config = discover([named(path, args.stdin_filename) for path in args.paths], args.config)
        # The command line is the last layer: its --select replaces the config's selection.
        command_line = Selection(
            tuple(args.select) if args.select is not None else None,
            tuple(args.ignore or ()),
            tuple(args.extend_select or ()),
        )
        codes = command_line.apply(config.selection.apply(None))
    except (ConfigError, UnknownCodeError) as error:
        print(f"gradlint: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    if args.confirm:
        from gradlint.runtime import run as runtime_run  # the tracer's machinery: only to run a program

        return runtime_run.confirm_command(args, lambda path: config.codes_for(path, codes))
    stdin_name = args.stdin_filename
    paths = expand_paths(args.paths, config.exclude, force_exclude=args.force_exclude, stdin_name=stdin_name)
    work = [(path, frozenset(config.codes_for(named(path, stdin_name), codes))) for path in paths]
    if args.fix and STDIN in args.paths and STDIN not in paths:
        echo_stdin()  # an editor that fixes an excluded buffer through a pipe must get it back whole
    if args.fix or args.diff:
        from gradlint.fix.command import fix_command  # libcst is loaded only to fix

        return fix_command(args, work)
    cache = None if args.no_cache else cache_for(config.path)
    checked = check_paths(work, args.jobs, cache, stdin_name or STDIN_NAME)
    results = [result for result, _ in checked]
    report = render(args, results, {result.path: text for result, text in checked if text})
    if not write_report(report, args.output_file):
        return EXIT_ERROR
    return exit_code(results, args.exit_zero)


def echo_stdin() -> None:
    try:
        data = read_data(STDIN)
    except SourceError:
        return  # no input to give back
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def usage_problem(args: argparse.Namespace) -> str | None:
    if args.format in DOCUMENT_FORMATS and (args.quiet or args.statistics):
        return f"--quiet and --statistics do not apply to --format {args.format}"
    if not args.paths and args.stdin_filename is None:
        return "no PATH given (name files or directories, or - for standard input)"
    return None


def named(path: str, stdin_name: str | None) -> str:
    """The path a run treats `path` as: standard input is the file `--stdin-filename` names."""
    return stdin_name if path == STDIN and stdin_name is not None else path


def render(args: argparse.Namespace, results: list[FileResult], sources: dict[str, str]) -> str:
    if args.format == "json":
        return format_json(results)
    if args.format == "sarif":
        from gradlint.sarif import format_sarif  # pathlib and urllib, for this one format

        return format_sarif(results)
    if args.format == "gitlab":
        from gradlint.gitlab import format_gitlab

        return format_gitlab(results)
    if args.format == "junit":
        from gradlint.junit import format_junit  # xml.etree, for this one format

        return format_junit(results)
    # --quiet: the files that could not be checked are still named (their bugs went unseen), then a count.
    shown = [FileResult(result.path, error=result.error) for result in results] if args.quiet else results
    if args.format == "github":
        report = format_github(shown)
    else:
        on_terminal = args.output_file is None and sys.stdout.isatty()
        color = on_terminal and not args.no_color and not os.environ.get("NO_COLOR")  # see no-color.org
        report = format_text(shown, color=color, sources=sources if on_terminal else None)
    summary = format_summary(results) if args.quiet else ""
    return report + summary + (format_statistics(results) if args.statistics else "")


def write_report(report: str, output_file: str | None = None) -> bool:
    """False, after saying why, when `output_file` cannot be written."""
    if output_file is not None:
        try:
            with open(output_file, "w", encoding="utf-8") as file:
                file.write(report)
        except OSError as error:
            print(f"gradlint: error: cannot write {output_file}: {error.strerror or error}", file=sys.stderr)
            return False
        return True
    try:
        sys.stdout.write(report)
        sys.stdout.flush()
    except BrokenPipeError:
        # `gradlint check . | head` stopped reading; the exit code still tells the outcome.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return True


def exit_code(results: Sequence[FileResult], exit_zero: bool = False) -> int:
    """2 when a file could not be checked, even with `exit_zero`: its bugs went unseen, not found."""
    if any(result.error is not None for result in results):
        return EXIT_ERROR
    found = any(result.findings for result in results)
    return EXIT_FINDINGS if found and not exit_zero else EXIT_CLEAN
