"""`tmesh-cli`: flags in, exit code out.

Every user mistake ends here as one line on stderr and exit code 2; nothing below this module
prints a traceback to a user.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from tmesh import __version__
from tmesh.cli import benchmark
from tmesh.cli.flags import EXIT_OK, Parser, UsageError

COMMANDS = {
    "benchmark": "discover the model at an endpoint and run the workload until stopped",
    "simulate": "run the simulated inference engine",
    "report": "self-contained HTML report of one run",
    "compare": "compare two or more runs (or sweeps) side by side (--fail-on: a regression gate)",
    "export": "a run's requests as Parquet",
    "history": "many runs over time: per-endpoint series, changes beyond noise, SQL",
    "sweep": "run the benchmark once per value of one knob and draw the curve",
}
ArgsFn = Callable[[argparse.ArgumentParser], None]
RunFn = Callable[[argparse.Namespace], int]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; `command` limits flag set-up to that subcommand, keeping start-up fast."""
    parser = Parser(
        prog="tmesh-cli",
        description="Benchmark LLM inference stacks on a KV-cache-reuse workload.",
    )
    parser.add_argument("--version", action="version", version=f"tmesh {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, text in COMMANDS.items():
        command_parser = sub.add_parser(name, help=text)
        if name == command or (command is None and name == "benchmark"):
            _command(name)[0](command_parser)
    return parser


def _command(name: str) -> tuple[ArgsFn, RunFn]:
    """A command's flags and runner. Imported on use: the report, history and simulator commands
    load matplotlib, DuckDB and the engine (about two seconds), which a benchmark run should not
    pay for."""
    if name == "benchmark":
        return benchmark.add_arguments, benchmark.run_command
    if name == "simulate":
        from tmesh.cli import simulate

        return simulate.add_arguments, simulate.run_command
    if name == "export":
        from tmesh.cli import export

        return export.add_arguments, export.run_command
    if name == "history":
        from tmesh.cli import history

        return history.add_arguments, history.run_command
    if name == "sweep":
        from tmesh.cli import sweep

        return sweep.add_arguments, sweep.run_command
    from tmesh.cli import report

    if name == "report":
        return report.add_report_arguments, report.run_report
    return report.add_compare_arguments, report.run_compare


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    try:
        return _command(args.command)[1](args)
    except UsageError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    sys.exit(main())
