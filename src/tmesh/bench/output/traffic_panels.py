"""The dashboard's panels for scheduled traffic, goodput and sessions: shown only for runs that
have them, as every panel is (its lines are None otherwise).

The trends follow how well the client kept its schedule (send rate, worst lateness) and the share
of requests within the SLO; the survival panel draws the cache-survival curve so far as one bar
per idle-gap bucket.
"""

from __future__ import annotations

from rich.text import Text

from tmesh.bench.output.panels import LABEL_WIDTH, History, Panel, Trend, trend_lines
from tmesh.bench.output.trend import sparkline
from tmesh.results.catalogue.metrics import GOODPUT_SHARE, LATENESS, REQUEST_RATE, good_share
from tmesh.results.catalogue.sessions import CACHED_BY_GAP, TTFT_BY_GAP, gap_label
from tmesh.results.catalogue.units import FRACTION, NOT_AVAILABLE, SECONDS, console_value
from tmesh.results.records import IntervalSnapshot


def _sent_rate(snap: IntervalSnapshot) -> float | None:
    health = snap.health
    if not health.scheduled or snap.interval_seconds <= 0:
        return None
    return health.sent / snap.interval_seconds


def _worst_lateness(snap: IntervalSnapshot) -> float | None:
    return snap.health.lateness_max_ms / 1000 if snap.health.scheduled else None


def _goodput(snap: IntervalSnapshot) -> float | None:
    return good_share(snap.interval_stats) if snap.slo else None


SCHEDULE_TRENDS = (
    Trend(REQUEST_RATE.key, "send rate", REQUEST_RATE.unit, _sent_rate),
    Trend(LATENESS.key, "lateness (max)", SECONDS, _worst_lateness),
    Trend(GOODPUT_SHARE.key, "goodput", FRACTION, _goodput, lambda _: 1.0),
)
"""Charts of scheduled runs and of runs with an SLO."""


def survival_lines(history: History, width: int, height: int) -> list[Text] | None:
    """Each idle-gap bucket: a bar of its cached share, the share, its mean TTFT, its turns."""
    sessions = history.latest.sessions if history.latest else None
    if sessions is None or not any(gap.requests for gap in sessions.by_gap):
        return None
    bar = max(4, width - LABEL_WIDTH - 30)
    lines = []
    for gap in sessions.by_gap:
        share = CACHED_BY_GAP.value(gap)
        line = Text(f"{'idle ' + gap_label(gap):<{LABEL_WIDTH}}", style="bold")
        line.append(
            f"{sparkline([share], 1, 1.0) * bar if share is not None else '':<{bar}}", "cyan"
        )
        ttft = console_value(TTFT_BY_GAP.value(gap), SECONDS)
        shown = console_value(share, FRACTION) if share is not None else NOT_AVAILABLE
        line.append(f" {shown:>6} cached, TTFT {ttft}, n={gap.requests}")
        line.truncate(width, overflow="ellipsis")
        lines.append(line)
    return lines


TRAFFIC_PANELS = (
    Panel(
        "Schedule and goodput",
        "trends",
        lambda h, w, rows: trend_lines(SCHEDULE_TRENDS, h, w, rows),
        SCHEDULE_TRENDS,
    ),
    Panel("Cache survival by idle gap", "trends", survival_lines),
)
"""Panels a run shows when it has a schedule, an SLO or sessions."""
