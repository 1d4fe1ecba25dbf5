"""`compare --fail-on`: limits on how far a candidate may move from its baseline, for pipelines.

`ttft_p50>+10%,qps<-5%` fails when the candidate's median TTFT is more than 10 % above the
baseline's, or its QPS more than 5 % below. A move counts only beyond the runs' own
interval-to-interval noise (the comparison's significance test): a pipeline must not fail on a
wobble. Where the noise cannot be estimated (runs of fewer than two intervals after the warm-up,
or a metric with no per-interval value), the limit alone decides, and the reason says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tmesh.report.compare import Cell, Comparison, cells
from tmesh.results.catalogue.metrics import Metric
from tmesh.results.catalogue.names import metric_named
from tmesh.results.catalogue.units import format_value

_LIMIT = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*([<>])\s*([+-]?\d+(?:\.\d*)?)\s*%\s*$")


class GateError(ValueError):
    """A `--fail-on` text that does not parse; `str()` is one line showing the expected form."""


@dataclass(frozen=True)
class Limit:
    """`metric` may not move beyond `percent` (signed) in the direction of `above`."""

    metric: Metric
    above: bool
    percent: float

    def __str__(self) -> str:
        return f"{self.metric.key}{'>' if self.above else '<'}{self.percent:+g}%"


def parse_limits(text: str) -> list[Limit]:
    """`ttft_p50>+10%,qps<-5%` into limits; metric names as the catalogue's keys or columns."""
    limits = []
    for part in text.split(","):
        match = _LIMIT.match(part)
        if match is None:
            raise GateError(
                f"--fail-on {part.strip()!r} is not METRIC>+N% or METRIC<-N% "
                "(e.g. ttft_p50>+10%,qps<-5%)"
            )
        name, sign, percent = match.groups()
        limits.append(Limit(metric_named(name), sign == ">", float(percent)))
    return limits


def crossings(comparison: Comparison, limits: list[Limit]) -> list[str]:
    """One phrase per limit a run crossed against the first run, beyond noise; none: it passes."""
    found = []
    for limit in limits:
        values = cells(comparison.runs, limit.metric)
        for label, cell in zip(comparison.labels[1:], values[1:], strict=True):
            if _crossed(limit, cell):
                found.append(_reason(limit, label, values[0], cell))
    return found


def _crossed(limit: Limit, cell: Cell) -> bool:
    if cell.ratio is None or cell.significant is False:
        return False
    change = 100.0 * (cell.ratio - 1.0)
    return change > limit.percent if limit.above else change < limit.percent


def _reason(limit: Limit, label: str, base: Cell, cell: Cell) -> str:
    assert cell.ratio is not None
    unit = limit.metric.unit
    noise = (
        "beyond the runs' noise"
        if cell.significant
        else "noise unknown (too few intervals), judged on the limit alone"
    )
    return (
        f"{label}: {limit.metric.key} {100.0 * (cell.ratio - 1.0):+.1f}% "
        f"({format_value(base.value, unit)} → {format_value(cell.value, unit)}), "
        f"past {limit}, {noise}"
    )
