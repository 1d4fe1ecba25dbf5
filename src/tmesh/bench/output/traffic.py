"""The lines and tables of scheduled traffic, goodput and sessions, for the block and the summary.

They follow the seed's lines in the 5-second block (whose first twelve lines never change) and
appear only for runs that have them: an open loop or sessions (how well the client kept its
schedule), an SLO (goodput), a sessions workload (sessions, TTFT by turn, the survival curve by
idle gap). Names, units and definitions come from `results.catalogue`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tmesh.results.catalogue.metrics import (
    CAP_HITS,
    GOODPUT,
    GOODPUT_SHARE,
    LATENESS,
    MEAN_TURNS,
    REQUEST_RATE,
    STATS,
    TTFT,
    TTFT_FROM_INTENDED,
    good_share,
    stat_of,
    title_case,
)
from tmesh.results.catalogue.sessions import (
    BY_GAP,
    BY_TURN,
    CACHED_BY_GAP,
    TTFT_BY_GAP,
    TTFT_BY_TURN,
    Breakdown,
    gap_label,
    turn_label,
)
from tmesh.results.catalogue.units import (
    FRACTION,
    PERCENT,
    REQUESTS_PER_S,
    SECONDS,
    console_value,
    console_values,
)
from tmesh.results.records import (
    ClientHealth,
    GapStats,
    IntervalSnapshot,
    MetricStats,
    RunSummary,
    SessionStats,
    TurnStats,
    WindowStats,
)

Pairs = list[tuple[str, str]]
S = TypeVar("S", TurnStats, GapStats)


def traffic_pairs(snap: IntervalSnapshot) -> Pairs:
    """The block's lines for what this run has: a schedule, an SLO, sessions."""
    pairs: Pairs = []
    if snap.health.scheduled:
        pairs.extend(_schedule_pairs(snap))
    if snap.slo:
        pairs.append((f"{GOODPUT.label} (interval / since start)", _goodput(snap)))
    if snap.sessions is not None:
        pairs.extend(session_pairs(snap.sessions))
    return pairs


def _schedule_pairs(snap: IntervalSnapshot) -> Pairs:
    h, seconds = snap.health, snap.interval_seconds
    sent = console_value(h.sent / seconds if seconds > 0 else None, REQUESTS_PER_S)
    asked = f" (asked {h.target_rate:g})" if h.target_rate else ""
    late = snap.interval_stats.ttft_from_intended
    return [
        (f"{title_case(REQUEST_RATE.label)} (interval)", f"{sent} req/s{asked}"),
        (
            f"{title_case(LATENESS.label)} (mean / max, interval)",
            f"{h.lateness_ms:.1f} / {h.lateness_max_ms:.1f} ms",
        ),
        (f"{title_case(CAP_HITS.label)} (interval)", _cap_hits(h)),
        (
            f"{title_case(TTFT_FROM_INTENDED.label)} (mean / p99, interval)",
            console_values((late.mean, late.p99), SECONDS),
        ),
    ]


def _cap_hits(health: ClientHealth) -> str:
    if not health.cap_hits:
        return "0"
    return (
        f"{health.cap_hits} requests waited for one of the {health.inflight_target} in-flight "
        "slots and went out late (raise --max-inflight, or the server is saturated)"
    )


def _goodput(snap: IntervalSnapshot) -> str:
    interval = _share_and_rate(snap.interval_stats, snap.interval_seconds)
    return f"{interval} / {_share_and_rate(snap.global_stats, snap.elapsed)}"


def _share_and_rate(window: WindowStats, seconds: float) -> str:
    share = good_share(window)
    rate = window.good_requests / seconds if seconds > 0 else None
    return f"{console_value(share, FRACTION)} at {console_value(rate, REQUESTS_PER_S)} req/s"


def session_pairs(sessions: SessionStats) -> Pairs:
    """Sessions so far, TTFT by turn and the survival curve, one line each."""
    turns = f"{console_value(sessions.mean_turns, MEAN_TURNS.unit)} turns on average"
    finish = console_value(sessions.duration.mean, SECONDS)
    pairs = [
        (
            "Sessions (started / completed / abandoned)",
            f"{sessions.started} / {sessions.completed} / {sessions.abandoned}; {turns}; "
            f"{finish} to finish",
        ),
        _breakdown_pair(TTFT_BY_TURN, sessions.by_turn, turn_label),
    ]
    pairs.extend(
        _breakdown_pair(breakdown, sessions.by_gap, gap_label)
        for breakdown in (CACHED_BY_GAP, TTFT_BY_GAP)
    )
    return pairs


def _breakdown_pair(
    breakdown: Breakdown[S], parts: Sequence[S], name: Callable[[S], str]
) -> tuple[str, str]:
    names = " / ".join(name(part) for part in parts)
    values = console_values((breakdown.value(part) for part in parts), breakdown.unit)
    return f"{title_case(breakdown.label)} ({names})", values


@dataclass
class Grid:
    """A summary table's content: `columns` (None for label / value pairs) and rows of text."""

    title: str
    rows: Sequence[tuple[str, ...]]
    columns: list[str] | None = None


def summary_grids(summary: RunSummary) -> list[Grid]:
    """The summary's tables for a schedule, goodput and sessions (none for a plain run)."""
    grids = []
    rows = _schedule_rows(summary) + _goodput_rows(summary)
    if rows:
        grids.append(Grid("Schedule and goodput", rows))
    if summary.sessions is not None:
        grids.extend(_session_grids(summary.sessions))
    return grids


def _schedule_rows(summary: RunSummary) -> list[tuple[str, str]]:
    lateness = summary.overall.lateness
    if not lateness.count:
        return []
    intended = summary.overall.ttft_from_intended
    return [
        (REQUEST_RATE.label, console_value(summary.request_rate, REQUESTS_PER_S) + " req/s"),
        (CAP_HITS.label, console_value(summary.cap_hits, CAP_HITS.unit)),
        (f"{LATENESS.label} mean / p99 / max", _stats(lateness)),
        (f"{TTFT_FROM_INTENDED.label} mean / p99", console_values(
            (intended.mean, intended.p99), SECONDS)),
        (f"{TTFT.label} mean / p99", console_values(
            (summary.overall.ttft.mean, summary.overall.ttft.p99), SECONDS)),
    ]  # fmt: skip


def _stats(stats: MetricStats) -> str:
    return console_values((stats.mean, stats.p99, stats.max), SECONDS)


def _goodput_rows(summary: RunSummary) -> list[tuple[str, str]]:
    if not summary.slo:
        return []
    limits = ", ".join(f"{key} <= {value:g} s" for key, value in summary.slo.items())
    return [
        ("SLO", limits),
        (GOODPUT_SHARE.label, console_value(GOODPUT_SHARE.value(summary), PERCENT)),
        (GOODPUT.label, console_value(GOODPUT.value(summary), REQUESTS_PER_S) + " req/s"),
    ]


def _session_grids(sessions: SessionStats) -> list[Grid]:
    by_turn = [
        (
            turn_label(turn),
            str(turn.requests),
            *(console_value(stat_of(turn.ttft, stat), SECONDS) for stat in STATS),
            *(console_value(b.value(turn), b.unit) for b in BY_TURN[1:]),
        )
        for turn in sessions.by_turn
    ]
    by_gap = [
        (gap_label(gap), str(gap.requests), *(console_value(b.value(gap), b.unit) for b in BY_GAP))
        for gap in sessions.by_gap
    ]
    return [
        Grid("Sessions", session_pairs(sessions)[:1]),
        Grid(
            "By turn (turn 1 is cold by construction)",
            by_turn,
            ["turn", "n", *(f"TTFT {stat}" for stat in STATS), *(b.label for b in BY_TURN[1:])],
        ),
        Grid(
            "By idle gap since the session's previous turn: the cache-survival curve",
            by_gap,
            ["idle gap", "n", *(b.label for b in BY_GAP)],
        ),
    ]
