"""`tmesh-cli report` and `tmesh-cli compare`: arguments, rendering choice, one-line errors.

The top-level CLI adds these arguments to its sub-parsers and calls `run_report`/`run_compare`;
everything that can go wrong (a folder that is not a run, mismatched workloads, an unwritable
output, a `--fail-on` that does not parse) becomes one line on stderr and exit code 2. A limit of
`--fail-on` crossed is a failed comparison: one line naming it, exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tmesh.report.compare import CompareError, compare_runs
from tmesh.report.gate import GateError, crossings, parse_limits
from tmesh.report.load import RunLoadError, load_run
from tmesh.report.render import COMPARE_RENDERERS, FORMATS, REPORT_RENDERERS, format_of
from tmesh.report.sweep_html import SweepCompareError, render_sweeps
from tmesh.results.catalogue.names import UnknownMetricError
from tmesh.results.sweeps import SweepLoadError, is_sweep, read_sweep

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE = 0, 1, 2


class OutputError(Exception):
    """The result could not be written where asked."""


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        type=Path,
        help="a run folder written by `tmesh-cli benchmark` (interrupted runs work too)",
    )
    _add_output_arguments(parser, "RUN_DIR/report.html")


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        metavar="RUN_DIR",
        type=Path,
        nargs="+",
        help="two or more run folders (every ratio is to the first), or sweep folders "
        "(their curves overlaid)",
    )
    _add_output_arguments(parser, "./compare.html")
    parser.add_argument(
        "--labels",
        metavar="NAMES",
        help="comma-separated names for the runs, in order (default: A, B, C, ...)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="compare runs whose workloads differ (model, input/output length, contexts)",
    )
    parser.add_argument(
        "--fail-on",
        metavar="LIMITS",
        help="exit 1 when a run moved past a limit from the first, beyond the runs' noise: "
        "comma-separated METRIC>+N%% or METRIC<-N%% (e.g. ttft_p50>+10%%,qps<-5%%)",
    )


def _add_output_arguments(parser: argparse.ArgumentParser, default_html: str) -> None:
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help=f"where to write; '-' for stdout (default: {default_html} for html, "
        "stdout for md/csv/json)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="html (self-contained page), md, csv or json (default: from the -o suffix, else html)",
    )


def run_report(args: argparse.Namespace) -> int:
    try:
        run = load_run(args.run_dir)
        fmt = format_of(args.format, args.output)
        text = REPORT_RENDERERS[fmt](run)
        _emit(text, _target(args.output, fmt, Path(args.run_dir) / "report.html"))
    except (RunLoadError, OutputError) as exc:
        return _fail("report", exc)
    return EXIT_OK


def run_compare(args: argparse.Namespace) -> int:
    try:
        if len(args.runs) < 2:
            raise CompareError("compare needs at least two run folders")
        limits = parse_limits(args.fail_on) if args.fail_on is not None else []
        labels = args.labels.split(",") if args.labels else None
        if all(is_sweep(Path(path)) for path in args.runs):
            return _compare_sweeps(args, labels)
        fmt = format_of(args.format, args.output)
        runs = [load_run(path) for path in args.runs]
        comparison = compare_runs(runs, labels, force=args.force)
        text = COMPARE_RENDERERS[fmt](comparison)
        _emit(text, _target(args.output, fmt, Path("compare.html")))
    except (RunLoadError, CompareError, OutputError, GateError, UnknownMetricError) as exc:
        return _fail("compare", exc)
    crossed = crossings(comparison, limits)
    if crossed:
        print(f"tmesh-cli compare: regression: {'; '.join(crossed)}", file=sys.stderr)
        return EXIT_REGRESSION
    return EXIT_OK


def _compare_sweeps(args: argparse.Namespace, labels: list[str] | None) -> int:
    """Sweep folders: their curves overlaid on one page (HTML only)."""
    if args.fail_on is not None:
        raise CompareError("--fail-on compares runs, not sweeps")
    if format_of(args.format, args.output) != "html":
        raise OutputError("sweeps are compared as an HTML page (their sweep.json are the data)")
    if labels is not None and len(labels) != len(args.runs):
        raise CompareError(f"--labels names {len(labels)} sweeps, {len(args.runs)} were given")
    try:
        text = render_sweeps([read_sweep(Path(path)) for path in args.runs], labels)
    except (SweepLoadError, SweepCompareError) as exc:
        raise CompareError(str(exc)) from None
    _emit(text, _target(args.output, "html", Path("compare.html")))
    return EXIT_OK


def _target(output: str | None, fmt: str, default_html: Path) -> Path | None:
    """Where the result goes: a file, or None for stdout."""
    if output == "-":
        return None
    if output:
        return Path(output)
    return default_html if fmt == "html" else None


def _emit(text: str, target: Path | None) -> None:
    if target is None:
        sys.stdout.write(text)
        return
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from None
    print(target)


def _fail(command: str, exc: Exception) -> int:
    print(f"tmesh-cli {command}: error: {exc}", file=sys.stderr)
    return EXIT_USAGE
