"""The parts of `report.html` a plain closed-loop run has none of: how well the client kept its
schedule (open loop, sessions), goodput against the SLO, and the sessions' figures (TTFT by
turn, the cache-survival curve by idle gap).

Every number carries its exact value and key, as in the rest of the page: a metric's own key, or
for the breakdowns `<breakdown key>.<turn or bucket>` (`ttft_by_turn.3`, `cached_share_by_gap.1`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape
from typing import TypeVar

from tmesh.report import charts, series
from tmesh.report.charts import PALETTE
from tmesh.report.load import Run
from tmesh.report.page import chart_panel, figure, section
from tmesh.results.catalogue.metrics import (
    BY_KEY,
    CAP_HITS,
    GOODPUT_METRICS,
    REQUEST_RATE,
    SCHEDULED,
    SESSION_METRICS,
    Metric,
    stat_key,
)
from tmesh.results.catalogue.sessions import (
    BY_GAP,
    BY_TURN,
    Breakdown,
    gap_label,
    turn_label,
)
from tmesh.results.catalogue.units import FRACTION, SECONDS, format_value
from tmesh.results.records import GapStats, SessionStats, TurnStats

S = TypeVar("S", TurnStats, GapStats)
BLUE, FAINT, ORANGE = PALETTE[0], "#93c5fd", PALETTE[1]


def traffic_sections(run: Run) -> list[str]:
    """The sections this run has: schedule and goodput, then sessions (none for a plain run)."""
    parts = []
    table = _schedule_table(run)
    if table:
        parts.append(section("Schedule and goodput", table))
    if run.summary.slo and run.intervals:
        parts.append(
            chart_panel(
                "Goodput over time",
                "Share of the requests sent in each interval (steps) and since the start that "
                "succeeded within every limit of the SLO; TTFT and E2E counted from when each "
                "request was due.",
                charts.line_chart(
                    "goodput",
                    series.goodput_lines(run, BLUE, FAINT),
                    "goodput share",
                    FRACTION,
                    run.summary.warmup_seconds,
                ),
            )
        )
    if run.summary.sessions is not None:
        parts.extend(_session_parts(run, run.summary.sessions))
    return parts


def _schedule_table(run: Run) -> str:
    summary = run.summary
    metrics: list[Metric] = []
    if summary.overall.lateness.count:
        metrics += [REQUEST_RATE, CAP_HITS]
        metrics += [BY_KEY[stat_key(q, stat)] for q in SCHEDULED for stat in ("mean", "p99")]
    if summary.slo:
        metrics += GOODPUT_METRICS
    if not metrics:
        return ""
    rows = "".join(
        f"<tr><td>{escape(metric.label)}</td>{figure(metric, summary)}"
        f'<td class="meaning">{escape(metric.definition)}</td></tr>'
        for metric in metrics
    )
    limits = ""
    if summary.slo:
        text = ", ".join(f"{key} ≤ {format_value(v, SECONDS)}" for key, v in summary.slo.items())
        limits = f'<p class="meta">SLO: {escape(text)}.</p>'
    return f"{limits}<table><tbody>{rows}</tbody></table>"


def _session_parts(run: Run, sessions: SessionStats) -> list[str]:
    counts = "".join(
        f"<tr><td>{escape(metric.label)}</td>{figure(metric, run.summary)}</tr>"
        for metric in SESSION_METRICS
    )
    gaps = [gap_label(gap) for gap in sessions.by_gap]
    return [
        section("Sessions", f'<table class="kv"><tbody>{counts}</tbody></table>'),
        chart_panel(
            "TTFT by turn",
            "Mean, median and 90th percentile TTFT of each turn of the sessions. Turn 1 is "
            "cold by construction (only the shared system prompt can be cached); later turns "
            "resend the conversation, whose prefix a cache that kept it serves.",
            charts.category_chart(
                "ttft-by-turn",
                [turn_label(t) for t in sessions.by_turn],
                series.turn_lines(sessions, BLUE, FAINT),
                "TTFT",
                SECONDS,
                "turn",
            ),
        ),
        chart_panel(
            "Cache survival by idle gap",
            "Share of the prompt the server reported cached, for turns grouped by how long "
            "their session sat idle since its previous turn: where the curve falls, idle "
            "contexts were evicted. Dashed: the server's own hit rates over the intervals those "
            "turns finished in.",
            charts.category_chart(
                "survival",
                gaps,
                series.survival_lines(sessions, BLUE),
                "share",
                FRACTION,
                "idle gap since the session's previous turn",
            ),
        ),
        chart_panel(
            "TTFT by idle gap",
            "Mean TTFT of the turns of each idle-gap bucket: what losing the cache costs.",
            charts.category_chart(
                "ttft-by-gap",
                gaps,
                [series.gap_ttft_line(sessions, ORANGE)],
                "TTFT",
                SECONDS,
                "idle gap since the session's previous turn",
            ),
        ),
        section(
            "By turn",
            _breakdown_table("turn", sessions.by_turn, BY_TURN, turn_label, lambda t: t.turn),
        ),
        section(
            "By idle gap (the cache-survival curve)",
            _breakdown_table("idle gap", sessions.by_gap, BY_GAP, gap_label, None),
        ),
    ]


def _breakdown_table(
    name: str,
    parts: Sequence[S],
    breakdowns: Sequence[Breakdown[S]],
    label: Callable[[S], str],
    number: Callable[[S], int] | None,
) -> str:
    head = "".join(f"<th>{escape(b.label)}</th>" for b in breakdowns)
    rows = []
    for index, part in enumerate(parts):
        key = number(part) if number else index
        cells = "".join(
            f'<td data-key="{b.key}.{key}" data-value="{_exact(b.value(part))}">'
            f"{escape(format_value(b.value(part), b.unit))}</td>"
            for b in breakdowns
        )
        rows.append(f"<tr><td>{escape(label(part))}</td><td>{part.requests:,}</td>{cells}</tr>")
    return (
        f"<table><thead><tr><th>{escape(name)}</th><th>requests</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _exact(value: float | None) -> str:
    return "" if value is None else repr(value)
