"""`compare.html`: runs side by side in one self-contained page (no script, no network)."""

from __future__ import annotations

from html import escape

from tmesh.report import charts, series
from tmesh.report.charts import PALETTE, Distribution, Line
from tmesh.report.compare import Cell, Comparison, Row
from tmesh.report.html import footer, notes, workload_rows
from tmesh.report.page import chart_panel, figure, page, section
from tmesh.results.catalogue.metrics import (
    COLD_WARM,
    ERROR_RATE,
    QPS,
    QUANTITIES,
    TTFT,
    Quantity,
)
from tmesh.results.catalogue.server import GPU_HIT_RATE
from tmesh.results.catalogue.sessions import gap_label
from tmesh.results.catalogue.units import (
    FRACTION,
    SECONDS,
    TOKENS_PER_S,
    format_ratio,
    format_value,
)

GROUPS: dict[str, Quantity] = {q.key: q for q in QUANTITIES}
_BY_VISIT = {metric.key for metric in COLD_WARM}


def render_compare(comparison: Comparison) -> str:
    labels = comparison.labels
    model = comparison.runs[0].spec.model
    body = [
        '<header><div class="brand">tmesh comparison</div>'
        f"<h1>{escape(' vs '.join(labels))}</h1>"
        f'<p class="meta">{escape(model)} · {len(labels)} runs · ratios are to '
        f"{escape(labels[0])}</p></header>",
        *(notes(run) for run in comparison.runs),
        section("Verdict", f"<p>{escape(comparison.verdict)}</p>", "verdict"),
        section("Runs", _runs_table(comparison)),
        section("Side by side", _comparison_table(comparison) + _legend(labels[0])),
        *_charts(comparison),
        section("Workload", _workload_table(comparison)),
        footer(),
    ]
    return page(f"tmesh comparison: {' vs '.join(labels)}", "".join(body))


def _runs_table(comparison: Comparison) -> str:
    head = '<th></th><th class="left">run folder</th><th class="left">endpoint</th>' + "".join(
        f"<th>{h}</th>" for h in ("started", "ran", "stopped", "requests", "failed")
    )
    rows = []
    for label, run in zip(comparison.labels, comparison.runs, strict=True):
        s = run.summary
        rows.append(
            f"<tr><td><strong>{escape(label)}</strong></td>"
            f'<td class="left"><code>{escape(run.name)}</code></td>'
            f'<td class="left"><code>{escape(str(run.config.get("endpoint", "")))}'
            f"</code></td><td>{escape(s.started_at)}</td>"
            f"<td>{format_value(s.elapsed, SECONDS)}</td>"
            f"<td>{escape(s.stop_reason)}</td><td>{s.total_requests:,}</td>"
            f"<td>{s.failed_requests:,}</td></tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _comparison_table(comparison: Comparison) -> str:
    labels = comparison.labels
    head = ["<th>metric</th>", "<th>better</th>"]
    for index, label in enumerate(labels):
        head.append(f"<th>{escape(label)}</th>")
        if index:
            head.append(f"<th>{escape(label)} / {escape(labels[0])}</th>")
    rows, group = [], None
    for row in comparison.rows:
        if _group(row) != group:
            group = _group(row)
            rows.append(f'<tr class="group"><td colspan="{len(head)}">{escape(group)}</td></tr>')
        rows.append(_row(comparison, row))
    return (
        f'<table class="compare"><thead><tr>{"".join(head)}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _group(row: Row) -> str:
    key = row.metric.key
    if key in _BY_VISIT:
        return f"{TTFT.label} by visit"
    quantity = GROUPS.get(key.split(".")[0])
    if quantity is not None:
        return quantity.label + (" (per request)" if quantity.unit == TOKENS_PER_S else "")
    return "Reliability" if key == ERROR_RATE.key else "Throughput"


def _row(comparison: Comparison, row: Row) -> str:
    metric = row.metric
    direction = "↑ higher" if metric.higher_is_better else "↓ lower"
    cells = [f"<td>{escape(metric.label)}</td>", f'<td class="ns">{direction}</td>']
    for index, (run, cell) in enumerate(zip(comparison.runs, row.cells, strict=True)):
        cells.append(figure(metric, run.summary))
        if index:
            cells.append(_ratio_cell(metric.key, comparison.labels[index], cell))
    return f"<tr>{''.join(cells)}</tr>"


def _ratio_cell(key: str, label: str, cell: Cell) -> str:
    """The ratio, green when better, red when worse, grey and marked when within noise."""
    if cell.ratio is None:
        return "<td>—</td>"
    significant = {True: "yes", False: "no", None: "unknown"}[cell.significant]
    text = format_ratio(cell.ratio)
    css = "ns"
    if cell.significant is False:
        text += " (not significant)"
    elif cell.better is not None:
        css = "good" if cell.better else "bad"
        text += " ▲" if cell.better else " ▼"
    return (
        f'<td class="{css}" data-key="{escape(key)}" data-run="{escape(label)}" '
        f'data-ratio="{cell.ratio!r}" data-significant="{significant}">{text}</td>'
    )


def _legend(first: str) -> str:
    return (
        '<p class="meta" style="margin-top:10px">Ratios are each run\'s value divided by '
        f"{escape(first)}'s. "
        '<span class="good">▲ better</span>, <span class="bad">▼ worse</span>; '
        "<em>not significant</em> means the difference is smaller than twice the combined "
        "standard error of the two runs' post-warm-up interval values (their own "
        "interval-to-interval noise). Unmarked grey ratios have no per-interval estimate.</p>"
    )


def _workload_table(comparison: Comparison) -> str:
    per_run = [dict(workload_rows(run)) for run in comparison.runs]
    keys = [key for key, _ in workload_rows(comparison.runs[0])]
    head = "".join(f"<th>{escape(label)}</th>" for label in comparison.labels)
    rows = []
    for key in keys:
        values = [row.get(key, "—") for row in per_run]
        css = ' class="differs"' if len(set(values)) > 1 and key not in _PER_RUN else ""
        cells = "".join(f"<td{css}>{value}</td>" for value in values)
        rows.append(f"<tr><td>{escape(key)}</td>{cells}</tr>")
    return (
        f'<table class="kv"><thead><tr><th></th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


_PER_RUN = {"Run folder", "Command", "Endpoint", "tmesh version", "Token counts"}
"""Rows that differ between any two runs without making their workloads differ."""


def _charts(comparison: Comparison) -> list[str]:
    runs, labels = comparison.runs, comparison.labels
    warmup = max(run.summary.warmup_seconds for run in runs)
    qps, ttft = [], []
    for index, (run, label) in enumerate(zip(runs, labels, strict=True)):
        color = PALETTE[index % len(PALETTE)]
        qps.extend(_overlay(series.qps_lines(run, color, f"{label} "), label))
        ttft.extend(_overlay(series.ttft_lines(run, color, f"{label} "), label))
    samples = [
        Distribution(label, series.ttft_values(run), PALETTE[index % len(PALETTE)])
        for index, (run, label) in enumerate(zip(runs, labels, strict=True))
    ]
    panels = [
        chart_panel(
            "QPS over time",
            "Thick: QPS since the start (the console's QPS); thin steps: each interval. "
            "The shaded region is the warm-up.",
            charts.line_chart("compare-qps", qps, QPS.label, QPS.unit, warmup),
        ),
        chart_panel(
            "TTFT over time",
            "Thick: mean TTFT since the start (the console's Global Average TTFT); thin steps: "
            "each interval's mean.",
            charts.line_chart("compare-ttft", ttft, TTFT.label, TTFT.unit, warmup),
        ),
        chart_panel(
            "TTFT distribution",
            "Share of requests whose TTFT was at or below each time: further left is faster.",
            charts.cumulative("compare-cdf", samples),
        ),
    ]
    panels.extend(_survival_panels(comparison))
    cache = _cache_lines(comparison)
    if cache:
        panels.append(
            chart_panel(
                "Server cache hit rate over time",
                "Prefix-cache hit rates scraped from each server's /metrics. Solid: the GPU "
                "cache; dashed: the offload tier, as a share of what the GPU cache missed.",
                charts.line_chart("compare-cache", cache, "hit rate", FRACTION, warmup),
            )
        )
    return panels


def _survival_panels(comparison: Comparison) -> list[str]:
    """The runs' cache-survival curves overlaid (sessions runs with the first one's buckets)."""
    runs = [
        (label, run.summary.sessions, PALETTE[index % len(PALETTE)])
        for index, (run, label) in enumerate(zip(comparison.runs, comparison.labels, strict=True))
        if run.summary.sessions is not None
    ]
    if not runs:
        return []
    buckets = [(g.low, g.high) for g in runs[0][1].by_gap]
    same = [run for run in runs if [(g.low, g.high) for g in run[1].by_gap] == buckets]
    names = [gap_label(g) for g in same[0][1].by_gap]
    survival = [series.survival_lines(s, color)[0] for _, s, color in same]
    ttft = [series.gap_ttft_line(s, color, label) for label, s, color in same]
    for line, (label, _, _) in zip(survival, same, strict=True):
        line.label = label
    axis = "idle gap since the session's previous turn"
    return [
        chart_panel(
            "Cache survival by idle gap",
            "Share of the prompt each server reported cached, for turns grouped by how long "
            "their session sat idle: the curve that falls first evicts idle contexts first.",
            charts.category_chart("compare-survival", names, survival, "share", FRACTION, axis),
        ),
        chart_panel(
            "TTFT by idle gap",
            "Mean TTFT of the turns of each idle-gap bucket, per run.",
            charts.category_chart("compare-ttft-gap", names, ttft, "TTFT", SECONDS, axis),
        ),
    ]


def _overlay(lines: list[Line], label: str) -> list[Line]:
    """A run's interval steps without a legend entry (the caption explains them), and its
    since-start line labelled with the run alone."""
    steps, since_start = lines
    steps.label = "_nolegend_"
    steps.color = since_start.color
    steps.alpha = 0.35
    since_start.label = label
    return [steps, since_start]


def _cache_lines(comparison: Comparison) -> list[Line]:
    lines = []
    for index, (run, label) in enumerate(zip(comparison.runs, comparison.labels, strict=True)):
        color = PALETTE[index % len(PALETTE)]
        for metric in series.server_metrics(run, series.SERVER_HIT_RATES):
            name = f"{label}: {metric.label}"
            dashed = metric is not GPU_HIT_RATE
            lines.append(series.server_line(run, metric, color, dashed, name))
    return lines
