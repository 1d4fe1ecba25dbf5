"""Every run folder under some directories, flattened into rows: one per run, one per interval.

A run's row holds what identifies it (endpoint, model, simulated profile, workload, when it
started) and every metric of the catalogue under its column name (`ttft_p50`), each beside its
noise (`ttft_p50_noise`): the standard error of its post-warm-up interval values, the yardstick
`compare` sets differences against. The figures are read by the catalogue, as every report
reads them, so a column means exactly what the report's cell of the same key means.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tmesh.report.compare import standard_error
from tmesh.report.load import Run, RunLoadError, load_run
from tmesh.results.catalogue.metrics import ALL, Metric
from tmesh.results.catalogue.names import column
from tmesh.results.records import IntervalSnapshot
from tmesh.results.rundir import CONFIG

IDENTITY = (
    "endpoint", "model", "profile", "api", "input_length", "output_length", "num_contexts",
    "max_inflight", "seed",
)  # fmt: skip
"""The columns that say what a run measured, before its figures."""
NOISE = "_noise"
"""Suffix of a metric's noise column."""
PER_INTERVAL = [metric for metric in ALL if metric.per_interval is not None]
"""The metrics with a value in each interval: the columns of the intervals table."""


class RunsError(Exception):
    """Directories that hold no usable run; `str()` is one line."""


@dataclass
class Rows:
    """The runs found, as rows, and the folders that could not be read (one line each)."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    intervals: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def find_runs(directories: Iterable[str | Path]) -> list[Path]:
    """Every run folder (one holding `config.json`) at or under the directories, sorted."""
    found: set[Path] = set()
    for directory in map(Path, directories):
        if not directory.is_dir():
            raise RunsError(f"{directory}: no such directory")
        for root, _, files in os.walk(directory):
            if CONFIG in files:
                found.add(Path(root))
    return sorted(found)


def read_rows(folders: Iterable[Path]) -> Rows:
    rows = Rows()
    for folder in folders:
        try:
            run = load_run(folder, requests=False)
        except RunLoadError as exc:
            rows.skipped.append(str(exc))
            continue
        rows.runs.append(run_row(run))
        rows.intervals.extend(interval_rows(run))
    return rows


def run_row(run: Run) -> dict[str, Any]:
    """The run's identity, its start, how it ended, and every metric with its noise."""
    workload = run.spec
    row: dict[str, Any] = {
        "run": str(run.path),
        "name": run.name,
        "started_at": started(run.summary.started_at),
        "endpoint": run.config.get("endpoint"),
        "model": workload.model,
        "profile": run.options.get("profile"),
        "api": workload.api,
        "input_length": workload.input_length,
        "output_length": workload.output_length,
        "num_contexts": workload.num_contexts,
        "max_inflight": workload.max_inflight,
        "seed": workload.seed,
        "elapsed": run.summary.elapsed,
        "stop_reason": run.summary.stop_reason,
        "tmesh_version": run.config.get("tmesh_version"),
    }
    for metric in ALL:
        row[column(metric.key)] = metric.value(run.summary)
        row[column(metric.key) + NOISE] = standard_error(run, metric)
    return row


def interval_rows(run: Run) -> list[dict[str, Any]]:
    """One row per interval: when it ended, how long it lasted, each per-interval metric."""
    return [
        {
            "run": str(run.path),
            "interval": snap.index,
            "elapsed": snap.elapsed,
            "interval_seconds": snap.interval_seconds,
            **{column(metric.key): _interval_value(metric, snap) for metric in PER_INTERVAL},
        }
        for snap in run.intervals
    ]


def _interval_value(metric: Metric, snap: IntervalSnapshot) -> float | None:
    value = metric.per_interval(snap) if metric.per_interval is not None else None
    return None if value is None else float(value)


def started(text: str) -> datetime | None:
    """The run's start (`summary.json`'s ISO time), None where it is unknown."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
