"""`tmesh-cli report` and `tmesh-cli compare`: arguments, rendering choice, one-line errors.

The top-level CLI adds these arguments to its sub-parsers and calls `run_report`/`run_compare`;
everything that can go wrong (a folder that is not a run, mismatched workloads, an unwritable
output) becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from tmesh.report import formats
from tmesh.report.compare import CompareError, Comparison, compare_runs
from tmesh.report.compare_html import render_compare
from tmesh.report.html import render_report
from tmesh.report.load import Run, RunLoadError, load_run
from tmesh.report.sweep_html import SweepCompareError, render_sweeps
from tmesh.results.sweeps import SweepLoadError, is_sweep, read_sweep

FORMATS = ("html", "md", "csv", "json")
SUFFIXES = {".html": "html", ".htm": "html", ".md": "md", ".csv": "csv", ".json": "json"}
EXIT_OK, EXIT_USAGE = 0, 2
REPORT_RENDERERS: dict[str, Callable[[Run], str]] = {
    "html": render_report,
    "md": formats.report_markdown,
    "csv": formats.report_csv,
    "json": formats.report_json,
}
COMPARE_RENDERERS: dict[str, Callable[[Comparison], str]] = {
    "html": render_compare,
    "md": formats.compare_markdown,
    "csv": formats.compare_csv,
    "json": formats.compare_json,
}


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
        fmt = _format(args)
        text = REPORT_RENDERERS[fmt](run)
        _emit(text, _target(args.output, fmt, Path(args.run_dir) / "report.html"))
    except (RunLoadError, OutputError) as exc:
        return _fail("report", exc)
    return EXIT_OK


def run_compare(args: argparse.Namespace) -> int:
    try:
        if len(args.runs) < 2:
            raise CompareError("compare needs at least two run folders")
        labels = args.labels.split(",") if args.labels else None
        if all(is_sweep(Path(path)) for path in args.runs):
            return _compare_sweeps(args, labels)
        fmt = _format(args)
        runs = [load_run(path) for path in args.runs]
        comparison = compare_runs(runs, labels, force=args.force)
        text = COMPARE_RENDERERS[fmt](comparison)
        _emit(text, _target(args.output, fmt, Path("compare.html")))
    except (RunLoadError, CompareError, OutputError) as exc:
        return _fail("compare", exc)
    return EXIT_OK


def _compare_sweeps(args: argparse.Namespace, labels: list[str] | None) -> int:
    """Sweep folders: their curves overlaid on one page (HTML only)."""
    if _format(args) != "html":
        raise OutputError("sweeps are compared as an HTML page (their sweep.json are the data)")
    if labels is not None and len(labels) != len(args.runs):
        raise CompareError(f"--labels names {len(labels)} sweeps, {len(args.runs)} were given")
    try:
        text = render_sweeps([read_sweep(Path(path)) for path in args.runs], labels)
    except (SweepLoadError, SweepCompareError) as exc:
        raise CompareError(str(exc)) from None
    _emit(text, _target(args.output, "html", Path("compare.html")))
    return EXIT_OK


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    if args.output and args.output != "-":
        return SUFFIXES.get(Path(args.output).suffix.lower(), "html")
    return "html"


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
