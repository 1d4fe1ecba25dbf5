"""`history`: each metric of many runs over time, one series per endpoint (or model, profile…),
and the changes between consecutive runs of a series that are beyond the runs' own noise.

"Did this upgrade make revisits slower?" is answered by a change from one run to the next that
is larger than both runs' interval-to-interval noise: the significance test `compare` uses, on
the noise each run's row carries. Runs too short to estimate their noise never flag a change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tmesh.dataset.optional import require
from tmesh.dataset.runs import IDENTITY, NOISE
from tmesh.report.compare import beyond_noise
from tmesh.results.catalogue.metrics import Metric
from tmesh.results.catalogue.names import column, metric_named
from tmesh.results.catalogue.units import format_value

DEFAULT_METRICS = ("qps", "ttft.mean", "warm_ttft.mean", "itl.mean")
DEFAULT_BY = ("endpoint", "model", "profile")


class HistoryError(Exception):
    """A query or an option `history` cannot use; `str()` is one line."""


@dataclass
class Point:
    """One run's value of one metric; `ratio` to the previous run of its series, `flagged` when
    the change is beyond both runs' noise."""

    run: str
    name: str
    started_at: datetime | None
    value: float | None
    noise: float | None
    ratio: float | None = None
    flagged: bool = False


@dataclass
class Series:
    """One metric of the runs that share the values of the `by` columns, oldest first."""

    label: str
    metric: Metric
    points: list[Point] = field(default_factory=list)


@dataclass
class History:
    by: tuple[str, ...]
    metrics: list[Metric]
    series: list[Series]
    runs: int

    def changes(self) -> list[tuple[Series, Point]]:
        return [(s, p) for s in self.series for p in s.points if p.flagged]


def parse_by(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in IDENTITY]
    if unknown or not names:
        raise HistoryError(f"--by {text!r}: choose from {', '.join(IDENTITY)} (comma-separated)")
    return names


def history(
    connection: Any, metric_names: list[str], by: tuple[str, ...], where: str | None = None
) -> History:
    """The series of the `runs` view's rows that `where` (SQL) keeps, grouped by `by`."""
    metrics = [metric_named(name) for name in metric_names]
    columns = [*by, "run", "name", "started_at"]
    for metric in metrics:
        columns += [column(metric.key), column(metric.key) + NOISE]
    query = f"SELECT {', '.join(columns)} FROM runs"
    if where:
        query += f" WHERE {where}"
    rows = [dict(zip(columns, row, strict=True)) for row in run_sql(connection, query + _ORDER)[1]]
    series: dict[tuple[str, str], Series] = {}
    for row in rows:
        label = " · ".join(str(row[name]) for name in by if row[name] is not None) or "-"
        for metric in metrics:
            entry = series.setdefault((label, metric.key), Series(label, metric))
            entry.points.append(_point(row, metric, entry.points[-1] if entry.points else None))
    return History(by, metrics, list(series.values()), len(rows))


_ORDER = " ORDER BY started_at NULLS LAST, run"


def _point(row: dict[str, Any], metric: Metric, previous: Point | None) -> Point:
    key = column(metric.key)
    point = Point(row["run"], row["name"], row["started_at"], row[key], row[key + NOISE])
    if previous is None or previous.value is None or point.value is None:
        return point
    if previous.value:
        point.ratio = point.value / previous.value
    point.flagged = bool(beyond_noise(previous.value, point.value, previous.noise, point.noise))
    return point


def run_sql(connection: Any, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The columns and rows of a query; a DuckDB error as one line."""
    duck = require("duckdb", "run history")
    try:
        relation = connection.sql(query)
        if relation is None:
            return [], []
        return list(relation.columns), relation.fetchall()
    except duck.Error as exc:
        raise HistoryError(str(exc).strip().splitlines()[0]) from None


def change_text(point: Point, metric: Metric) -> str:
    """`+35% (worse), beyond noise` for a flagged point: what the table and the chart say."""
    if point.ratio is None or point.ratio == 1.0:
        return "changed beyond noise"
    worse = (point.ratio > 1.0) != metric.higher_is_better
    return f"{100.0 * (point.ratio - 1.0):+.0f}% ({'worse' if worse else 'better'}), beyond noise"


def text_table(found: History) -> str:
    """Per series: each run's start, name and value, a flagged change marked after its value."""
    lines = []
    for series in found.series:
        lines.append(f"{series.label} · {series.metric.key}")
        for point in series.points:
            started = point.started_at.strftime("%Y-%m-%d %H:%M:%S") if point.started_at else "?"
            value = format_value(point.value, series.metric.unit)
            mark = f"  << {change_text(point, series.metric)}" if point.flagged else ""
            lines.append(f"  {started}  {point.name:<24} {value:>14}{mark}")
    changes = found.changes()
    lines.append(
        f"{found.runs} runs, {len(found.series)} series; "
        f"{len(changes)} change(s) beyond the runs' own noise"
    )
    return "\n".join(lines)


def table_text(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """A query's result as aligned text (what `history --sql` prints)."""
    shown = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(name)] + [len(row[i]) for row in shown]) for i, name in enumerate(columns)]
    lines = ["  ".join(name.ljust(width) for name, width in zip(columns, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in shown]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
