"""`tmesh-cli export`: a run's requests as Parquet, for the tools that read datasets (and for
`history`, which reads a run's Parquet in place of its JSON Lines)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tmesh.cli.flags import EXIT_OK, EXIT_USAGE
from tmesh.dataset.optional import MissingDependency
from tmesh.dataset.requests import PARQUET, write_parquet
from tmesh.report.load import RunLoadError

EXPORT_FORMATS = ("parquet",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run folder")
    parser.add_argument(
        "--format", choices=EXPORT_FORMATS, default="parquet", help="file format (default: parquet)"
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", type=Path,
        help=f"where to write (default: RUN_DIR/{PARQUET})",
    )  # fmt: skip


def run_command(args: argparse.Namespace) -> int:
    try:
        print(write_parquet(args.run_dir, args.output))
    except (RunLoadError, MissingDependency) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.filename or args.run_dir}: cannot export ({exc.strerror or exc})")
    return EXIT_OK


def _fail(message: str) -> int:
    print(f"tmesh-cli export: error: {message}", file=sys.stderr)
    return EXIT_USAGE
