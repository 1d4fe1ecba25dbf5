"""The dashboard's panels: what `--live` shows, each drawn from the interval snapshots alone.

A panel is a title, a place on the screen and a function from the run's `History` to lines of
text; it returns None when the snapshots hold nothing for it (no server hit rates from a server
without cache metrics, no verdict yet), and the dashboard leaves it out. A workload that records
more in its snapshots adds its own panels (and the trends they need kept) to `PANELS`' list
passed to the dashboard: nothing here knows which workload ran.
"""

from __future__ import annotations

import textwrap
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from rich.text import Text

from tmesh.bench.output.console import client_limit_warning, interval_lines
from tmesh.bench.output.trend import Series, chart
from tmesh.results.catalogue.metrics import ITL, QPS, VISITS
from tmesh.results.catalogue.server import LINES, ServerMetric
from tmesh.results.catalogue.units import NOT_AVAILABLE, console_value
from tmesh.results.records import IntervalSnapshot

Place = Literal["alert", "trends", "numbers", "foot"]
"""Where a panel goes: across the top (`alert`), the left column of charts (`trends`), the right
column of figures (`numbers`), or across the bottom (`foot`)."""
NOTES_KEPT = 3
LABEL_WIDTH = 18
VALUE_WIDTH = 16


@dataclass(frozen=True)
class Trend:
    """One figure followed over the run: read from each snapshot (None: nothing to show for
    that interval), drawn from zero to `ceiling` (None: the largest value shown)."""

    key: str
    label: str
    unit: str
    read: Callable[[IntervalSnapshot], float | None]
    ceiling: Callable[[IntervalSnapshot], float | None] | None = None


class History:
    """What the dashboard remembers of the run: the latest snapshot, each trend's series, the
    first message of each error kind (a snapshot carries only those new in its interval), how
    often the client limited the run, and the last notes the benchmark wrote."""

    def __init__(self, trends: Iterable[Trend]) -> None:
        self.latest: IntervalSnapshot | None = None
        self.intervals = 0
        self.first_errors: dict[str, str] = {}
        self.client_limited = 0
        self.notes: deque[str] = deque(maxlen=NOTES_KEPT)
        self.trends = {trend.key: trend for trend in trends}
        self._series = {key: Series() for key in self.trends}

    def add(self, snap: IntervalSnapshot) -> None:
        self.latest = snap
        self.intervals += 1
        for kind, message in snap.error_messages.items():
            self.first_errors.setdefault(kind, message)
        if client_limit_warning(snap.health):
            self.client_limited += 1
        for key, trend in self.trends.items():
            self._series[key].add(trend.read(snap))

    def values(self, trend: Trend) -> list[float | None]:
        return self._series[trend.key].values()


Render = Callable[[History, int, int], list[Text] | None]


@dataclass(frozen=True)
class Panel:
    """A box of the dashboard: `render(history, width, height)` gives its lines for an inner
    width; `height` is the rows it may take (more lines are cut), for panels that can grow."""

    title: str
    place: Place
    render: Render
    trends: tuple[Trend, ...] = ()


def _server(metric: ServerMetric) -> Callable[[IntervalSnapshot], float | None]:
    return lambda snap: (snap.server or {}).get(metric.key)


def _interval_ttft(visit_index: int) -> Callable[[IntervalSnapshot], float | None]:
    return lambda snap: VISITS[visit_index].interval_ttft(snap).mean


_HIT_RATES = LINES[0]
"""The server's hit rate per cache tier, with the console's short name of each tier."""
TRENDS = (
    Trend(QPS.key, QPS.label, QPS.unit, QPS.per_interval or (lambda snap: None)),
    *(
        Trend(f"{visit.key}_ttft", f"TTFT {visit.label}", "s", _interval_ttft(index))
        for index, visit in enumerate(VISITS)
    ),
    Trend(ITL.key, ITL.short, ITL.unit, lambda snap: ITL.of(snap.interval_stats).mean),
    *(
        Trend(metric.key, f"hit rate {short}", metric.unit, _server(metric), lambda _: 1.0)
        for metric, short in _HIT_RATES.members
    ),
    Trend(
        "inflight",
        "in-flight",
        "count",
        lambda snap: snap.health.inflight_mean,
        lambda snap: float(snap.health.inflight_target),
    ),
)
"""The charts of every run: QPS, TTFT by visit, ITL, each tier's hit rate, in-flight."""


MAX_CHART_ROWS = 3


def trend_lines(
    trends: Sequence[Trend], history: History, width: int, height: int
) -> list[Text] | None:
    """For each trend that has had a value: its label, its chart over the run (taller when the
    rows allow), its latest value and its peak; None before any has a value."""
    snap = history.latest
    if snap is None:
        return None
    shown = [(trend, history.values(trend)) for trend in trends]
    shown = [(trend, values) for trend, values in shown if any(v is not None for v in values)]
    if not shown:
        return None
    rows = max(1, min(MAX_CHART_ROWS, height // len(shown)))
    chart_width = max(1, width - LABEL_WIDTH - VALUE_WIDTH - 2)
    lines = []
    for trend, values in shown:
        ceiling = trend.ceiling(snap) if trend.ceiling else None
        peak = max(v for v in values if v is not None)
        side = [_now(trend, snap), f"peak {console_value(peak, trend.unit)}"]
        for row, bars in enumerate(chart(values, chart_width, rows, ceiling)):
            label = trend.label if row == 0 else ""
            line = Text(f"{label[: LABEL_WIDTH - 1]:<{LABEL_WIDTH}}", style="bold")
            line.append(f"{bars:<{chart_width}}", style="cyan")
            beside = side[row] if row < len(side) else ""
            line.append(f" {beside:>{VALUE_WIDTH}}"[: VALUE_WIDTH + 1])
            lines.append(line)
    return lines


def _now(trend: Trend, snap: IntervalSnapshot) -> str:
    value = trend.read(snap)
    if trend.key == "inflight":
        return f"{value or 0:.1f} / {snap.health.inflight_target}"
    return console_value(value, trend.unit) if value is not None else NOT_AVAILABLE


_ELSEWHERE = ("Errors", "First Error", "WARNING")
"""Lines of the 5-second block the dashboard shows in panels of their own."""


def number_lines(history: History, width: int, height: int) -> list[Text] | None:
    """The 5-second block's figures, label then value, each cut to the width."""
    if history.latest is None:
        return [Text("waiting for the first interval…", style="dim")]
    lines = []
    for label, value in interval_lines(history.latest):
        if label.startswith(_ELSEWHERE):
            continue
        line = Text(f"{label}: " if label else "", style="dim")
        line.append(value, style="bold")
        line.truncate(width, overflow="ellipsis")
        lines.append(line)
    return lines


def error_lines(history: History, width: int, height: int) -> list[Text] | None:
    """Each error kind: how many so far and in the last interval, and its first message."""
    snap = history.latest
    if snap is None:
        return None
    total, recent = snap.global_stats.errors, snap.interval_stats.errors
    if not total:
        return [Text("none", style="green")]
    lines = []
    for kind, count in sorted(total.items()):
        line = Text(f"{kind} {count}", style="bold red")
        line.append(f" ({recent.get(kind, 0)} in the last {snap.interval_seconds:.0f} s)")
        first = history.first_errors.get(kind)
        if first:
            line.append(f"  first: {first}", style="dim")
        line.truncate(width, overflow="ellipsis")
        lines.append(line)
    return lines


def verdict_lines(history: History, width: int, height: int) -> list[Text] | None:
    """The cache verdict on the run so far, as the interval snapshots state it."""
    verdict = history.latest.verdict if history.latest else None
    if not verdict:
        return None
    return [Text(line) for line in textwrap.wrap(verdict, max(width, 20))]


def warning_lines(history: History, width: int, height: int) -> list[Text] | None:
    """The client-health warning while it holds; a quiet reminder once it has held before."""
    warning = client_limit_warning(history.latest.health) if history.latest else None
    if warning:
        text = f"WARNING: {warning}"
        return [Text(line, style="bold white on red") for line in textwrap.wrap(text, width)]
    if history.client_limited:
        count = history.client_limited
        return [Text(f"the client limited {count} of {history.intervals} intervals", "yellow")]
    return None


def note_lines(history: History, width: int, height: int) -> list[Text] | None:
    """What the benchmark said on stderr during the run (also printed there once it ends)."""
    if not history.notes:
        return None
    lines = []
    for note in history.notes:
        line = Text(note, style="dim")
        line.truncate(width, overflow="ellipsis")
        lines.append(line)
    return lines


PANELS = (
    Panel("Client limit", "alert", warning_lines),
    Panel("Over the run", "trends", lambda h, w, rows: trend_lines(TRENDS, h, w, rows), TRENDS),
    Panel("Last interval", "numbers", number_lines),
    Panel("Errors by kind", "foot", error_lines),
    Panel("Cache verdict so far", "foot", verdict_lines),
    Panel("Messages", "foot", note_lines),
)
"""The panels of every run, in the order each place stacks them."""
