"""Runs already on disk, from Python: read one, compare several, report on one, gate a pipeline.

Each takes `Result`s or run folder paths alike, and does what the `report` and `compare` commands
do, with the same code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tmesh.api.result import Result
from tmesh.dataset.views import open_history
from tmesh.report.compare import Comparison, compare_runs
from tmesh.report.gate import crossings, parse_limits
from tmesh.report.load import load_run as load_folder
from tmesh.report.render import COMPARE_RENDERERS, FORMATS, REPORT_RENDERERS, format_of

RunLike = Result | str | Path


def load_run(path: str | Path) -> Result:
    """A run folder written by `tmesh-cli benchmark` or `tmesh.benchmark` (an interrupted one
    too: what is missing is recomputed and said in `notes`). Raises `RunLoadError`."""
    return Result(load_folder(path, requests=False))


def _result(run: RunLike) -> Result:
    return run if isinstance(run, Result) else load_run(run)


def compare(*runs: RunLike, labels: list[str] | None = None, force: bool = False) -> Comparison:
    """Runs side by side, every ratio to the first, each difference set against the runs' own
    interval noise, and a verdict (`comparison.verdict`). Runs of different workloads raise
    `CompareError` unless `force`."""
    return compare_runs([_result(run).run() for run in runs], labels, force)


def report(
    run: RunLike | Comparison, path: str | Path | None = None, format: str | None = None
) -> Path:
    """Write the report of a run, or of a comparison, and return where.

    The format is html, md, csv or json (from `path`'s suffix when `format` is not given). By
    default a run's report goes to `report.html` in its folder, a comparison to `compare.html`
    in the current folder.
    """
    fmt = format_of(format, path)
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if isinstance(run, Comparison):
        target = Path(path) if path is not None else Path(f"compare.{fmt}")
        text = COMPARE_RENDERERS[fmt](run)
    else:
        result = _result(run)
        target = Path(path) if path is not None else result.path / f"report.{fmt}"
        text = REPORT_RENDERERS[fmt](result.run())
    target.write_text(text, encoding="utf-8")
    return target


def regressions(baseline: RunLike, candidate: RunLike, fail_on: str) -> list[str]:
    """The limits of `fail_on` (`"ttft_p50>+10%,qps<-5%"`) the candidate crossed against the
    baseline beyond noise, one phrase each: empty when it passes (what `compare --fail-on`
    exits 1 on)."""
    comparison = compare(baseline, candidate, labels=["baseline", "candidate"])
    return crossings(comparison, parse_limits(fail_on))


def history(*directories: str | Path) -> Any:
    """Every run folder under `directories` as an in-memory DuckDB database with the views
    `runs` (one row per run: identity, start, each metric and its noise), `intervals` and
    `requests`, for SQL: `tmesh.history("tmesh-runs").sql("SELECT model, qps FROM runs")`."""
    connection, _ = open_history(*directories)
    return connection
