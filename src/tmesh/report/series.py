"""The chart series of a run: its intervals and requests turned into lines and samples.

Shared by the one-run report and the comparison, so a run's QPS line is drawn from the same
numbers in both.
"""

from __future__ import annotations

import numpy as np

from tmesh.report.charts import COLD, WARM, Distribution, Line
from tmesh.report.load import Run
from tmesh.results.catalogue.metrics import good_share
from tmesh.results.catalogue.server import (
    EXTERNAL_HIT_RATE,
    GPU_HIT_RATE,
    KV_USAGE,
    LMCACHE_HIT_RATE,
    RUNNING,
    SGLANG_CACHE_HIT_RATE,
    WAITING,
    ServerMetric,
)
from tmesh.results.catalogue.sessions import (
    CACHED_BY_GAP,
    SERVER_EXTERNAL_BY_GAP,
    SERVER_HIT_BY_GAP,
    TTFT_BY_GAP,
    TTFT_BY_TURN,
)
from tmesh.results.records import SessionStats

SERVER_HIT_RATES = (GPU_HIT_RATE, EXTERNAL_HIT_RATE, LMCACHE_HIT_RATE, SGLANG_CACHE_HIT_RATE)
SERVER_CACHE = (*SERVER_HIT_RATES, KV_USAGE)
"""The fractions (0 to 1) the server scrape records per interval, charted as percentages."""
SERVER_QUEUE = (RUNNING, WAITING)


def elapsed(run: Run) -> list[float]:
    return [snap.elapsed for snap in run.intervals]


def stepped(run: Run, values: list[float | None]) -> tuple[list[float], list[float | None]]:
    """Points for a step line whose first step starts where the first interval began."""
    if not run.intervals:
        return [], []
    first = run.intervals[0]
    return [first.elapsed - first.interval_seconds, *elapsed(run)], [values[0], *values]


def interval_qps(run: Run) -> list[float | None]:
    return [
        snap.interval_stats.requests / snap.interval_seconds if snap.interval_seconds > 0 else None
        for snap in run.intervals
    ]


def qps_lines(run: Run, color: str, prefix: str = "", faint: str | None = None) -> list[Line]:
    """QPS of each interval (steps) and since the start (the console's QPS line)."""
    x, y = stepped(run, interval_qps(run))
    return [
        Line(f"{prefix}per interval", x, y, faint or color, 1.2, 0.55, steps=True),
        Line(f"{prefix}since start", elapsed(run), [s.qps for s in run.intervals], color, 2.2),
    ]


def ttft_lines(run: Run, color: str, prefix: str = "", faint: str | None = None) -> list[Line]:
    """Mean TTFT of each interval (steps) and since the start (the console's Global Average)."""
    x, y = stepped(run, [snap.interval_stats.ttft.mean for snap in run.intervals])
    since_start = [snap.global_stats.ttft.mean for snap in run.intervals]
    return [
        Line(f"{prefix}interval mean", x, y, faint or color, 1.2, 0.55, steps=True),
        Line(f"{prefix}mean since start", elapsed(run), since_start, color, 2.2),
    ]


def ttft_p99_line(run: Run, color: str) -> Line:
    x, y = stepped(run, [snap.interval_stats.ttft.p99 for snap in run.intervals])
    return Line("interval p99", x, y, color, 1.2, dashed=True, steps=True)


def server_metrics(run: Run, metrics: tuple[ServerMetric, ...]) -> list[ServerMetric]:
    """Which of `metrics` the run's server scrapes recorded at least once, in their order."""
    seen = {key for snap in run.intervals if snap.server for key in snap.server}
    return [metric for metric in metrics if metric.key in seen]


def server_line(
    run: Run, metric: ServerMetric, color: str, dashed: bool = False, label: str = ""
) -> Line:
    """A server figure per interval, named by its catalogue label unless `label` says more."""
    values = [(snap.server or {}).get(metric.key) for snap in run.intervals]
    return Line(
        label or metric.label, elapsed(run), values, color, 1.8, dashed=dashed, markers=True
    )


def ttft_by_visit(run: Run) -> list[Distribution]:
    """Successful requests' TTFT split into first visits of a context and revisits."""
    columns = run.requests
    defined = ~np.isnan(columns.ttft)
    first = defined & (columns.visit == 0)
    again = defined & (columns.visit > 0)
    groups = [
        Distribution("first visit", columns.ttft[first], COLD),
        Distribution("revisit", columns.ttft[again], WARM),
    ]
    return [group for group in groups if len(group.values)]


def ttft_values(run: Run) -> np.ndarray:
    ttft: np.ndarray = run.requests.ttft
    defined: np.ndarray = ttft[~np.isnan(ttft)]
    return defined


def turn_lines(sessions: SessionStats, color: str, faint: str) -> list[Line]:
    """TTFT by turn: mean, and p50 and p90 from the turns' histograms."""
    x = list(range(len(sessions.by_turn)))
    return [
        Line("mean", x, [TTFT_BY_TURN.value(t) for t in sessions.by_turn], color, 2.2,
             markers=True),
        Line("p50", x, [t.ttft.p50 for t in sessions.by_turn], faint, 1.4, dashed=True),
        Line("p90", x, [t.ttft.p90 for t in sessions.by_turn], faint, 1.4, markers=True),
    ]  # fmt: skip


def survival_lines(sessions: SessionStats, color: str, prefix: str = "") -> list[Line]:
    """The cache-survival curve: cached share by idle gap (usage), and the server's hit rates
    attributed to the same turns where it reported them."""
    x = list(range(len(sessions.by_gap)))
    lines = [
        Line(f"{prefix}cached share (usage)", x,
             [CACHED_BY_GAP.value(g) for g in sessions.by_gap], color, 2.2, markers=True),
    ]  # fmt: skip
    for breakdown, dashed in ((SERVER_HIT_BY_GAP, True), (SERVER_EXTERNAL_BY_GAP, True)):
        values = [breakdown.value(g) for g in sessions.by_gap]
        if any(value is not None for value in values):
            label = f"{prefix}{breakdown.label.replace(' by idle gap', '')}"
            width = 1.4 if breakdown is SERVER_HIT_BY_GAP else 1.0
            lines.append(Line(label, x, values, color, width, 0.7, dashed=dashed, markers=True))
    return lines


def gap_ttft_line(sessions: SessionStats, color: str, label: str = "mean TTFT") -> Line:
    x = list(range(len(sessions.by_gap)))
    return Line(label, x, [TTFT_BY_GAP.value(g) for g in sessions.by_gap], color, 2.2,
                markers=True)  # fmt: skip


def goodput_lines(run: Run, color: str, faint: str) -> list[Line]:
    """Goodput share (0 to 1) of each interval (steps) and since the start: requests that met
    the SLO / requests sent, as `GOODPUT_SHARE` defines it."""
    x, y = stepped(run, [good_share(snap.interval_stats) for snap in run.intervals])
    since = [good_share(snap.global_stats) for snap in run.intervals]
    return [
        Line("per interval", x, y, faint, 1.2, 0.55, steps=True),
        Line("since start", elapsed(run), since, color, 2.2),
    ]
