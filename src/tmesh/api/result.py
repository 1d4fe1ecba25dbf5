"""A run as the Python API hands it over: its typed summary, its interval snapshots and its
requests as a table, over the run folder it was read from.

The run folder is the truth: a `Result` from `tmesh.benchmark` and one from `tmesh.load_run` on
the same folder are the same. The requests are read only when asked for (a long run holds
millions), and from `requests.parquet` when the run was exported.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tmesh.api.summary import Summary, summary_of
from tmesh.dataset.optional import require
from tmesh.dataset.requests import read_requests, write_parquet
from tmesh.report.load import Run, load_run
from tmesh.results.records import IntervalSnapshot, WorkloadSpec

if TYPE_CHECKING:
    import pyarrow as pa


class Result:
    """One benchmark run.

    `summary` holds the figures (`summary.qps.value`, `summary.ttft.p50`); `intervals` one
    `IntervalSnapshot` per interval (what the 5-second block printed); `requests` every request
    as a `pyarrow.Table`. `errors` says why the run failed (no request succeeded, the run folder
    stopped taking writes; empty when it did not); `notes` what had to be repaired to read it.
    """

    def __init__(self, run: Run, errors: list[str] | None = None) -> None:
        self._full: Run | None = None
        self.path: Path = run.path
        self.config: dict[str, Any] = run.config
        self.workload: WorkloadSpec = run.spec
        self.summary: Summary = summary_of(run.summary)
        self.intervals: list[IntervalSnapshot] = run.intervals
        self.notes: list[str] = run.notes
        self.errors: list[str] = errors or []

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def model(self) -> str:
        return self.workload.model

    @property
    def endpoint(self) -> str | None:
        endpoint = self.config.get("endpoint")
        return endpoint if isinstance(endpoint, str) else None

    @functools.cached_property
    def requests(self) -> pa.Table:
        """Every request, one row each: `RequestRecord`'s fields and the derived metrics (ttft,
        itl, e2e, prefill and decode throughput), in the order they finished."""
        return read_requests(self.path)

    def to_pandas(self) -> Any:
        """The requests as a pandas DataFrame (pandas must be installed)."""
        require("pandas", "Result.to_pandas()")
        return self.requests.to_pandas()

    def to_polars(self) -> Any:
        """The requests as a polars DataFrame (polars must be installed)."""
        return require("polars", "Result.to_polars()").from_arrow(self.requests)

    def to_parquet(self, path: str | Path | None = None) -> Path:
        """Write the requests as Parquet (default: `requests.parquet` in the run folder, where
        `tmesh-cli history` reads them) and return the file's path."""
        return write_parquet(self.path, Path(path) if path is not None else None)

    def run(self) -> Run:
        """The run folder as the report reads it, its per-request columns loaded."""
        if self._full is None:
            self._full = load_run(self.path)
        return self._full

    def __repr__(self) -> str:
        return (
            f"Result({str(self.path)!r}, model={self.model!r}, "
            f"requests={self.summary.total_requests.value or 0:.0f}, "
            f"qps={self.summary.qps.value or 0:.4g}, stop_reason={self.summary.stop_reason!r})"
        )
