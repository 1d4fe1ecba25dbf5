"""`tmesh-cli`: flags in, exit code out.

Every user mistake ends here as one line on stderr and exit code 2; nothing below this module
prints a traceback to a user.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from tmesh import __version__
from tmesh.bench.options import BenchmarkOptions

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _number(kind: Callable[[str], float], minimum: float, strict: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        if value < minimum or (strict and value == minimum):
            bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
            raise argparse.ArgumentTypeError(f"{text!r} must be {bound}")
        return value

    parse.__name__ = kind.__name__
    return parse


positive_int = _number(int, 0, strict=True)
nonneg_int = _number(int, 0, strict=False)
positive_float = _number(float, 0, strict=True)
nonneg_float = _number(float, 0, strict=False)


def _add_benchmark_flags(p: argparse.ArgumentParser) -> None:
    target = p.add_argument_group("target")
    target.add_argument(
        "--endpoint", help="OpenAI-compatible URL (host:port, …/v1, …/v1/completions)"
    )
    target.add_argument(
        "--api-key",
        help="bearer key (default: $TMESH_API_KEY or $OPENAI_API_KEY); never printed in full",
    )
    target.add_argument(
        "--model", help="model to use when /v1/models lists several (default: first)"
    )
    target.add_argument(
        "--api",
        choices=("completions", "chat"),
        default="completions",
        help="which API to call (default: completions)",
    )
    target.add_argument(
        "--insecure", action="store_true", help="skip TLS certificate checks (default: verify)"
    )
    target.add_argument(
        "--demo",
        action="store_true",
        help="run against the built-in simulated engine (stops after 90 s unless --duration)",
    )
    target.add_argument(
        "--profile",
        default="cpu-offload",
        help="simulated engine for --demo (default: cpu-offload; see simulate --list-profiles)",
    )

    sizing = p.add_argument_group("workload sizing")
    sizing.add_argument(
        "--offload-size",
        type=positive_float,
        default=100.0,
        metavar="GB",
        help="KV offload buffer size in GB (default: 100)",
    )
    sizing.add_argument(
        "--kv-bytes-per-token",
        type=positive_int,
        metavar="BYTES",
        help="KV cache bytes per token (default: from --model-config or built-in table)",
    )
    sizing.add_argument(
        "--model-config",
        type=Path,
        metavar="PATH",
        help="Hugging Face config.json to compute KV bytes per token from",
    )
    sizing.add_argument(
        "--tokenizer",
        metavar="PATH",
        help="local tokenizer.json or folder for exact token counts "
        "(default: server /tokenize, else calibration, else estimate)",
    )
    sizing.add_argument(
        "--num-contexts",
        type=positive_int,
        metavar="N",
        help="number of long contexts (default: sized from --offload-size)",
    )
    sizing.add_argument(
        "--questions-per-context",
        type=positive_int,
        metavar="N",
        help="distinct questions per context (default: = number of contexts)",
    )
    sizing.add_argument(
        "--max-inflight",
        type=positive_int,
        metavar="N",
        help="requests outstanding at once (default: contexts // 3)",
    )
    sizing.add_argument(
        "--input-length",
        type=positive_int,
        default=32000,
        metavar="TOKENS",
        help="tokens per context (default: 32000)",
    )
    sizing.add_argument(
        "--output-length",
        type=positive_int,
        default=100,
        metavar="TOKENS",
        help="tokens generated per request (default: 100)",
    )
    sizing.add_argument(
        "--seed",
        type=nonneg_int,
        default=0,
        help="seed for prompts and question order (default: 0)",
    )

    run = p.add_argument_group("run control")
    run.add_argument(
        "--duration",
        type=positive_float,
        metavar="SECONDS",
        help="stop after this many seconds (default: run until Ctrl-C; 90 with --demo)",
    )
    run.add_argument(
        "--max-requests",
        type=positive_int,
        metavar="N",
        help="stop after N finished requests (default: no limit)",
    )
    run.add_argument(
        "--warmup",
        type=nonneg_float,
        default=0.0,
        metavar="SECONDS",
        help="exclude the first SECONDS from steady-state figures (default: 0)",
    )
    run.add_argument(
        "--request-timeout",
        type=positive_float,
        default=300.0,
        metavar="SECONDS",
        help="fail a request after this long without a byte (default: 300)",
    )
    run.add_argument(
        "--max-consecutive-errors",
        type=positive_int,
        metavar="N",
        help="stop with exit 1 after N failures in a row (default: no limit)",
    )
    run.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="load-generating processes sharing the in-flight limit (default: 1)",
    )
    run.add_argument(
        "--interval",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between progress blocks (default: 5)",
    )

    out = p.add_argument_group("output")
    out.add_argument(
        "--output-dir",
        type=Path,
        metavar="DIR",
        help="where to write the run's files (default: ./tmesh-runs/<timestamp>/)",
    )
    out.add_argument(
        "--max-records",
        type=positive_int,
        metavar="N",
        help="rotate requests.jsonl every N lines (default: never)",
    )
    out.add_argument(
        "--report",
        action="store_true",
        help="write report.html into the run folder when the run stops",
    )
    out.add_argument("--quiet", action="store_true", help="print only the final summary")
    out.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per interval on stdout (blocks go to stderr)",
    )
    out.add_argument("--live", action="store_true", help="live-updating terminal view")

    server = p.add_argument_group("server telemetry")
    server.add_argument(
        "--metrics-url",
        metavar="URL",
        help="server Prometheus /metrics URL (default: same host as --endpoint)",
    )
    server.add_argument(
        "--no-server-metrics", action="store_true", help="do not scrape the server's /metrics"
    )
    server.add_argument(
        "--prometheus-port",
        type=positive_int,
        metavar="PORT",
        help="serve tmesh's own live metrics on this port (default: off)",
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; `command` limits flag set-up to that subcommand, keeping start-up fast.

    The report and simulator flags import matplotlib and the engine, which costs about two
    seconds; a benchmark run (and `--help`) should not pay for them.
    """
    parser = _Parser(
        prog="tmesh-cli",
        description="Benchmark LLM inference stacks on a KV-cache-reuse workload.",
    )
    parser.add_argument("--version", action="version", version=f"tmesh {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    bench = sub.add_parser(
        "benchmark", help="discover the model at an endpoint and run the workload until stopped"
    )
    _add_benchmark_flags(bench)
    _add_other_commands(sub, command)
    return parser


def _add_other_commands(sub: argparse._SubParsersAction, command: str | None) -> None:
    helps = {
        "simulate": "run the simulated inference engine",
        "report": "self-contained HTML report of one run",
        "compare": "compare two or more runs side by side",
    }
    for name, text in helps.items():
        parser = sub.add_parser(name, help=text)
        if name == command:
            _flag_adder(name)(parser)


def _flag_adder(name: str) -> Callable[[argparse.ArgumentParser], None]:
    if name == "simulate":
        from tmesh.cli.simulate import add_simulate_arguments

        return add_simulate_arguments
    from tmesh.cli.report import add_compare_arguments, add_report_arguments

    return add_report_arguments if name == "report" else add_compare_arguments


def options_from_args(args: argparse.Namespace) -> BenchmarkOptions:
    """Flags map one to one onto option fields (argparse's dest names are the field names); only
    the key, with its environment fallbacks, and the negated `--no-server-metrics` differ."""
    given = vars(args)
    names = [f.name for f in dataclasses.fields(BenchmarkOptions)]
    fields = {name: given[name] for name in names if name in given}
    key = args.api_key or os.environ.get("TMESH_API_KEY") or os.environ.get("OPENAI_API_KEY")
    fields["api_key"] = key or None
    fields["server_metrics"] = not args.no_server_metrics
    return BenchmarkOptions(**fields)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "benchmark":
        return run_benchmark_command(args, parser)
    from tmesh.cli.report import run_compare, run_report
    from tmesh.cli.simulate import run_simulate

    runners = {"simulate": run_simulate, "report": run_report, "compare": run_compare}
    return runners[args.command](args)


def run_benchmark_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    opts = options_from_args(args)
    if not opts.demo and not opts.endpoint:
        parser.error("--endpoint is required (or use --demo for the built-in simulated engine)")
    if sum((opts.quiet, opts.json, opts.live)) > 1:
        parser.error("choose at most one of --quiet, --json, --live")
    from tmesh.cli.benchmark import run

    return run(opts)


if __name__ == "__main__":
    sys.exit(main())
