"""`tmesh-cli history`: every run under some directories as one dataset: each metric over time
per endpoint, model and profile, changes beyond noise flagged, an HTML chart, or any SQL."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tmesh.cli.flags import EXIT_OK, EXIT_USAGE
from tmesh.dataset.history import (
    DEFAULT_BY,
    DEFAULT_METRICS,
    HistoryError,
    history,
    parse_by,
    run_sql,
    table_text,
    text_table,
)
from tmesh.dataset.history_html import render_history
from tmesh.dataset.optional import MissingDependency
from tmesh.dataset.runs import RunsError
from tmesh.dataset.views import open_history
from tmesh.results.catalogue.names import UnknownMetricError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "directories", metavar="DIR", type=Path, nargs="+",
        help="folders holding run folders (searched recursively)",
    )  # fmt: skip
    parser.add_argument(
        "--where", metavar="SQL",
        help="keep the runs this SQL condition holds for, on the runs view "
        "(e.g. \"model = 'x'\" or \"started_at > '2025-01-01'\")",
    )  # fmt: skip
    parser.add_argument(
        "--metric", metavar="NAME", action="append",
        help=f"a metric to follow, by key or column name; repeat or comma-separate "
        f"(default: {','.join(DEFAULT_METRICS)})",
    )  # fmt: skip
    parser.add_argument(
        "--by", metavar="COLUMNS", default=",".join(DEFAULT_BY),
        help=f"what makes a series, comma-separated (default: {','.join(DEFAULT_BY)})",
    )  # fmt: skip
    parser.add_argument(
        "--sql", metavar="QUERY",
        help="run this query over the views runs, intervals and requests, print its result",
    )  # fmt: skip
    parser.add_argument(
        "-o", "--output", metavar="FILE", type=Path, default=Path("history.html"),
        help="where to write the chart page (default: ./history.html)",
    )  # fmt: skip


def run_command(args: argparse.Namespace) -> int:
    try:
        connection, rows = open_history(*args.directories)
        for skipped in rows.skipped:
            print(f"tmesh-cli history: skipped {skipped}", file=sys.stderr)
        if args.sql is not None:
            print(table_text(*run_sql(connection, args.sql)))
            return EXIT_OK
        if not rows.runs:
            raise HistoryError(f"no run folder under {', '.join(map(str, args.directories))}")
        names = [n for given in args.metric or DEFAULT_METRICS for n in given.split(",") if n]
        found = history(connection, names, parse_by(args.by), args.where)
        print(text_table(found))
        args.output.write_text(render_history(found), encoding="utf-8")
    except (HistoryError, RunsError, MissingDependency, UnknownMetricError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{args.output}: cannot write ({exc.strerror or exc})")
    print(args.output)
    return EXIT_OK


def _fail(message: str) -> int:
    print(f"tmesh-cli history: error: {message}", file=sys.stderr)
    return EXIT_USAGE
