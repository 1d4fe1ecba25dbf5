"""A sweep point's figures, from its run folder's requests and its summary.

The warm-up is left out of latencies and QPS: the point's first pass over its contexts (it fills
the cache a reset emptied), or its first `--warmup` seconds when it ran for a duration. Hit rates
are the whole point's, the server's and the ideal caches' over the same requests, so they stay
comparable with each other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

from tmesh.results.catalogue import server as figures
from tmesh.results.decode import build_record
from tmesh.results.records import RequestRecord, RunSummary
from tmesh.results.rundir import request_files
from tmesh.results.sweeps import SweepPoint


def read_records(run_dir: Path) -> list[RequestRecord]:
    """Every request of a run folder (a truncated last line, from a killed run, is skipped)."""
    records = []
    for path in request_files(run_dir):
        for line in path.read_bytes().splitlines():
            try:
                records.append(build_record(RequestRecord, orjson.loads(line)))
            except (orjson.JSONDecodeError, ValueError):
                continue
    return records


def point_figures(
    value: float,
    name: str,
    contexts: int,
    records: list[RequestRecord],
    summary: RunSummary,
    warmup_s: float | None,
    reset: bool,
) -> SweepPoint:
    """The point of knob value `value` run in folder `name`; `warmup_s` None means the warm-up
    is the first pass over the contexts."""
    steady, start = _steady(records, warmup_s)
    ok = [r for r in steady if r.ok]
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    revisits = [r.ttft for r in ok if r.ttft is not None and r.visit > 0]
    ends = [r.t_end for r in ok if r.t_end is not None]
    span = max(ends) - start if ends else 0.0
    server = summary.server or {}
    return SweepPoint(
        value=value,
        run_dir=name,
        contexts=contexts,
        requests=summary.total_requests,
        failed=summary.failed_requests,
        qps=len(ok) / span if span > 0 else None,
        ttft_p50=_percentile(ttfts, 50),
        ttft_p90=_percentile(ttfts, 90),
        revisit_ttft_p50=_percentile(revisits, 50),
        revisit_ttft_p90=_percentile(revisits, 90),
        gpu_hit_rate=server.get(figures.GPU_HIT_RATE.key),
        external_hit_rate=server.get(figures.EXTERNAL_HIT_RATE.key),
        measured_hit_rate=server.get(figures.MEASURED_HIT_RATE.key),
        revisit_hit_rate=server.get(figures.REVISIT_GPU_HIT_RATE.key),
        lru_hit_rate=server.get(figures.IDEAL_LRU_HIT_RATE.key),
        infinite_hit_rate=server.get(figures.IDEAL_INFINITE_HIT_RATE.key),
        reuse_efficiency=server.get(figures.REUSE_EFFICIENCY.key),
        cache_reset=reset,
    )


def _steady(
    records: list[RequestRecord], warmup_s: float | None
) -> tuple[list[RequestRecord], float]:
    """The requests after the warm-up, and when the window they are counted over starts: the end
    of the warm-up seconds (as the benchmark's steady state), or the first request sent after
    the first pass."""
    if warmup_s is not None:
        return [r for r in records if (r.t_end or r.t0) >= warmup_s], warmup_s
    later = [r for r in records if r.rotation > 0] or records
    return later, min((r.t0 for r in later), default=0.0)


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None
