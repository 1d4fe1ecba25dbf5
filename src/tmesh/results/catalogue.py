"""The metrics a report shows: where each comes from, its unit, which direction is better.

One catalogue drives every table (HTML, Markdown, CSV, JSON) and the comparison, so a number means
the same thing wherever it appears and is always read from the same field of `summary.json`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from tmesh.results.records import IntervalSnapshot, RunSummary, WindowStats

SECONDS, TOKENS_PER_S, REQUESTS_PER_S, COUNT, PERCENT = "s", "tok/s", "req/s", "count", "%"
STATS = ("mean", "p50", "p90", "p99")
DISTRIBUTIONS = (
    ("ttft", "TTFT", SECONDS, False),
    ("itl", "ITL", SECONDS, False),
    ("e2e", "E2E latency", SECONDS, False),
    ("prefill_throughput", "Prefill throughput", TOKENS_PER_S, True),
    ("decode_throughput", "Decode throughput", TOKENS_PER_S, True),
)


@dataclass(frozen=True)
class Metric:
    """One number of a run: `value` reads it from the summary; `per_interval` from one 5-second
    interval (None when the number has no per-interval counterpart), to estimate its noise."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    value: Callable[[RunSummary], float | None]
    per_interval: Callable[[IntervalSnapshot], float | None] | None = None


def _stat(window: Callable[[RunSummary], WindowStats], name: str, stat: str):
    return lambda summary: getattr(getattr(window(summary), name), stat)


def _interval_stat(name: str, stat: str):
    return lambda snap: getattr(getattr(snap.interval_stats, name), stat)


def _interval_rate(amount: Callable[[WindowStats], float]):
    def rate(snap: IntervalSnapshot) -> float | None:
        if snap.interval_seconds <= 0:
            return None
        return amount(snap.interval_stats) / snap.interval_seconds

    return rate


def error_rate(summary: RunSummary) -> float | None:
    """Failed share of all requests sent, in percent (`total_requests` counts successes only)."""
    sent = summary.total_requests + summary.failed_requests
    return 100.0 * summary.failed_requests / sent if sent else None


def distribution_metrics(
    window: Callable[[RunSummary], WindowStats], prefix: str, per_interval: bool
) -> list[Metric]:
    """Mean and percentiles of TTFT, ITL, E2E and both throughputs over one window."""
    return [
        Metric(
            f"{prefix}{name}.{stat}",
            f"{label} {stat}",
            unit,
            better,
            _stat(window, name, stat),
            _interval_stat(name, stat) if per_interval else None,
        )
        for name, label, unit, better in DISTRIBUTIONS
        for stat in STATS
    ]


QPS = Metric(
    "qps", "QPS", REQUESTS_PER_S, True, lambda s: s.qps, _interval_rate(lambda w: w.requests)
)
RATES = [
    QPS,
    Metric(
        "input_token_throughput",
        "Input tokens",
        TOKENS_PER_S,
        True,
        lambda s: s.input_token_throughput,
        _interval_rate(lambda w: w.prompt_tokens),
    ),
    Metric(
        "output_token_throughput",
        "Output tokens",
        TOKENS_PER_S,
        True,
        lambda s: s.output_token_throughput,
        _interval_rate(lambda w: w.completion_tokens),
    ),
]
STEADY_RATES = [
    Metric("steady_qps", "QPS", REQUESTS_PER_S, True, lambda s: s.steady_qps),
    Metric(
        "steady_input_token_throughput",
        "Input tokens",
        TOKENS_PER_S,
        True,
        lambda s: s.steady_input_token_throughput,
    ),
    Metric(
        "steady_output_token_throughput",
        "Output tokens",
        TOKENS_PER_S,
        True,
        lambda s: s.steady_output_token_throughput,
    ),
]
COUNTS = [
    Metric("total_requests", "Successful requests", COUNT, True, lambda s: s.total_requests),
    Metric("failed_requests", "Failed requests", COUNT, False, lambda s: s.failed_requests),
    Metric("error_rate", "Error rate", PERCENT, False, error_rate),
    Metric("rotations", "Context rotations", COUNT, True, lambda s: s.rotations),
]
OVERALL = distribution_metrics(lambda s: s.overall, "", per_interval=True)
STEADY = [*STEADY_RATES, *distribution_metrics(lambda s: s.steady, "steady.", per_interval=False)]
COLD_WARM = [
    Metric(
        f"{phase}_ttft.{stat}",
        f"TTFT {label} {stat}",
        SECONDS,
        False,
        lambda s, phase=phase, stat=stat: getattr(getattr(s, f"{phase}_ttft"), stat),
        lambda snap, phase=phase, stat=stat: getattr(getattr(snap, f"interval_{phase}_ttft"), stat),
    )
    for phase, label in (("cold", "first visit"), ("warm", "revisit"))
    for stat in STATS
]
HEADLINE = [*RATES, *OVERALL, *COLD_WARM, *COUNTS]
"""The metrics a comparison lines up, in display order."""
ALL = [*HEADLINE, *STEADY]
"""Every metric of one run; `key` is unique and stable (CSV/JSON and the HTML use it)."""
BY_KEY = {metric.key: metric for metric in ALL}


def format_value(value: float | None, unit: str) -> str:
    """A number as a reader wants it: three significant figures, a unit, sub-second times in ms."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if unit == COUNT:
        return f"{round(value):,}"
    if unit == PERCENT:
        return f"{value:.1f}%" if value >= 0.1 or value == 0 else f"{value:.2g}%"
    if unit == SECONDS and abs(value) < 1:
        return f"{_three_figures(value * 1000)} ms"
    return f"{_three_figures(value)} {unit}"


def _three_figures(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1 or magnitude == 0:
        return f"{value:.2f}"
    return f"{value:.3g}"


def format_ratio(ratio: float | None) -> str:
    """`2.70x`, `0.31x`: the form the verdict and the comparison table share."""
    if ratio is None or not math.isfinite(ratio):
        return "—"
    return f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"
