"""`report.html`: one self-contained page about one run (no script, no network, charts inline).

Every number in a table cell carries its exact value and metric key (`data-key`, `data-value`),
so tests and scripts can check the page against `summary.json` without parsing formatted text.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from tmesh import __version__
from tmesh.report import charts, series
from tmesh.report.charts import PALETTE
from tmesh.report.load import Run, load_run
from tmesh.report.page import chart_panel, figure, kv_table, page, section
from tmesh.report.sessions_html import traffic_sections
from tmesh.results.catalogue.metrics import (
    BY_KEY,
    COUNTS,
    DECODE_THROUGHPUT,
    ERROR_RATE,
    ITL,
    PREFILL_THROUGHPUT,
    QPS,
    QUANTITIES,
    RATES,
    STATS,
    STEADY_RATES,
    TIMESTAMPS,
    TTFT,
    VISITS,
    Metric,
    stat_key,
    visit_key,
)
from tmesh.results.catalogue.server import KV_USAGE, SERVER_METRICS, SOURCES
from tmesh.results.catalogue.units import COUNT, FRACTION, PERCENT, SECONDS, format_value
from tmesh.results.records import RunSummary, WorkloadSpec

DEFINITIONS = (
    *((q.label, q.definition) for q in QUANTITIES),
    (QPS.label, QPS.definition),
    *((visit.label.capitalize(), visit.meaning) for visit in VISITS),
    ("t0, t_first, t_last, t_end", TIMESTAMPS),
)
"""The footer's glossary, from the metric catalogue."""


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the HTML report of a run (default `RUN_DIR/report.html`) and return its path.

    Called by `tmesh-cli benchmark --report` when a run stops; raises `RunLoadError`.
    """
    run = load_run(run_dir)
    target = out if out is not None else Path(run_dir) / "report.html"
    target.write_text(render_report(run), encoding="utf-8")
    return target


def render_report(run: Run) -> str:
    summary = run.summary
    body = [
        _header(run),
        notes(run),
        _verdict(summary.verdict),
        _cards(run),
        section("Headline", metric_table(run) + _rates_table(run, RATES, COUNTS)),
        _steady(run),
        '<div class="grid2">',
        section("TTFT: first visits vs revisits", _cold_warm_table(run)),
        section("Errors by kind", errors_table(run)),
        "</div>",
        *_charts(run),
        *traffic_sections(run),
        '<div class="grid2">',
        section("Workload and endpoint", kv_table(workload_rows(run))),
        section("Client at the end", kv_table(_health_rows(run))),
        "</div>",
        _server_section(run.summary),
        footer(run),
    ]
    return page(f"tmesh report: {run.spec.model} ({run.name})", "".join(body))


def metric_table(run: Run, prefix: str = "") -> str:
    """Mean and percentiles of the latency and throughput metrics of one window."""
    head = "".join(f"<th>{stat}</th>" for stat in STATS)
    rows = []
    for q in QUANTITIES:
        cells = "".join(figure(BY_KEY[stat_key(q, stat, prefix)], run.summary) for stat in STATS)
        rows.append(f"<tr><td>{escape(q.label)}</td>{cells}</tr>")
    return f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _rates_table(run: Run, *groups: list[Metric]) -> str:
    metrics = [metric for group in groups for metric in group]
    head = "".join(f"<th>{escape(metric.label)}</th>" for metric in metrics)
    cells = "".join(figure(metric, run.summary) for metric in metrics)
    return (
        f'<table style="margin-top:12px"><thead><tr>{head}</tr></thead>'
        f"<tbody><tr>{cells}</tr></tbody></table>"
    )


def _steady(run: Run) -> str:
    warmup = run.summary.warmup_seconds
    if warmup <= 0:
        return ""
    title = f"After the warm-up (requests finished after {format_value(warmup, SECONDS)})"
    return section(title, metric_table(run, "steady.") + _rates_table(run, STEADY_RATES))


def _cold_warm_table(run: Run) -> str:
    head = "".join(f"<th>{stat}</th>" for stat in ("requests", *STATS))
    rows = []
    for visit in VISITS:
        count = visit.ttft(run.summary).count
        cells = "".join(figure(BY_KEY[visit_key(visit, stat)], run.summary) for stat in STATS)
        rows.append(f"<tr><td>{visit.label}</td><td>{count:,}</td>{cells}</tr>")
    return f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def errors_table(run: Run) -> str:
    errors = run.summary.overall.errors
    if not errors:
        return '<p class="meta">No request failed.</p>'
    sent = run.summary.total_requests + run.summary.failed_requests
    rows = "".join(
        f'<tr><td><code>{escape(kind)}</code></td><td data-key="errors.{escape(kind)}" '
        f'data-value="{count}">{count:,}</td>'
        f"<td>{format_value(100 * count / sent, PERCENT)}</td></tr>"
        for kind, count in sorted(errors.items(), key=lambda item: -item[1])
    )
    return (
        "<table><thead><tr><th>kind</th><th>requests</th><th>share of sent</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def workload_rows(run: Run) -> list[tuple[str, str]]:
    """What was measured and how, values already escaped. The API key is never shown."""
    spec, config = run.spec, run.config
    oracle = str(config.get("token_oracle", "unknown"))
    exact = config.get("tokens_exact")
    rows = [
        ("Model", escape(spec.model)),
        ("Endpoint", f"<code>{escape(str(config.get('endpoint', 'unknown')))}</code>"),
        ("API", escape(spec.api)),
        *_shape_rows(spec),
        (
            "Token counts",
            escape(oracle + ("" if exact is None else (" (exact)" if exact else " (estimated)"))),
        ),
        (
            "KV bytes per token",
            "—" if spec.kv_bytes_per_token is None else f"{spec.kv_bytes_per_token:,}",
        ),
        ("Offload size", f"{spec.offload_size_gb:g} GB"),
        ("Seed", str(spec.seed)),
        *_sources(run),
        ("Run folder", f"<code>{escape(str(run.path))}</code>"),
        ("tmesh version", escape(str(config.get("tmesh_version", "unknown")))),
    ]
    command = config.get("command")
    if isinstance(command, list) and command:
        rows.append(("Command", f"<code>{escape(' '.join(redact_key(command)))}</code>"))
    return rows


def _shape_rows(spec: WorkloadSpec) -> list[tuple[str, str]]:
    """What was sent: contexts and questions, or sessions; the schedule when there was one."""
    sessions = spec.sessions
    if sessions is None:
        rows = [
            ("Contexts", f"{spec.num_contexts:,}"),
            ("Questions per context", f"{spec.questions_per_context:,}"),
            ("Max inflight requests", f"{spec.max_inflight:,}"),
            ("Input / output length", f"{spec.input_length:,} / {spec.output_length:,} tokens"),
        ]
        if spec.request_rate is not None:
            rows.append(("Request rate", f"{spec.request_rate:g} req/s ({escape(spec.arrival)})"))
        return rows
    if sessions.session_rate is None:
        arrive = ("Users (sessions at once)", f"{sessions.users:,}")
    else:
        arrive = ("Session rate", f"{sessions.session_rate:g}/s ({escape(spec.arrival)})")
    return [
        ("Workload", "sessions"),
        arrive,
        ("Turns per session", f"{sessions.turns:,}"),
        (
            "System prompt / turn input",
            f"{sessions.system_prompt:,} / {sessions.turn_input:,} tokens",
        ),
        ("Output length", f"{spec.output_length:,} tokens"),
        ("Think time", f"{sessions.think_time:g} s ({escape(sessions.think_time_dist)})"),
        ("Max inflight requests (safety cap)", f"{spec.max_inflight:,}"),
    ]


def _sources(run: Run) -> list[tuple[str, str]]:
    """The simulated engine of a demo, the trace a replay sent."""
    rows = []
    if run.options.get("demo"):
        profile = str(run.options.get("profile", "unknown"))
        rows.append(("Simulated engine (--demo)", escape(profile)))
    if run.options.get("trace"):
        rows.append(("Trace replayed", f"<code>{escape(str(run.options['trace']))}</code>"))
    return rows


def redact_key(argv: list[Any]) -> list[str]:
    """The command line without the value of `--api-key`, whatever the writer did to it."""
    out: list[str] = []
    hide_next = False
    for arg in map(str, argv):
        if hide_next:
            out.append("…")
            hide_next = False
        elif arg == "--api-key":
            out.append(arg)
            hide_next = True
        elif arg.startswith("--api-key="):
            out.append("--api-key=…")
        else:
            out.append(arg)
    return out


def _health_rows(run: Run) -> list[tuple[str, str]]:
    health = run.summary.health
    return [
        (
            "Requests in flight (mean / target)",
            f"{health.inflight_mean:.1f} / {health.inflight_target}",
        ),
        ("Dispatch delay", format_value(health.dispatch_delay_ms / 1000, SECONDS)),
        ("Worst event-loop lag", format_value(health.loop_lag_ms / 1000, SECONDS)),
    ]


def _server_section(summary: RunSummary) -> str:
    """The server's figures over the run, what it reported apart from what tmesh derived, each
    named and defined by the catalogue (a key the catalogue does not know is not shown)."""
    server = summary.server or {}
    groups = []
    for source, words in SOURCES:
        rows = "".join(
            f"<tr><td>{escape(metric.label)}</td>"
            f'<td data-server="{escape(metric.key)}" data-value="{server[metric.key]!r}">'
            f"{escape(format_value(server[metric.key], metric.unit))}</td>"
            f'<td class="meaning">{escape(metric.definition)}</td></tr>'
            for metric in SERVER_METRICS
            if metric.source == source and metric.key in server
        )
        if rows:
            title = escape(words[:1].upper() + words[1:])
            groups.append(f'<tr class="group"><td colspan="3">{title}</td></tr>{rows}')
    if not groups:
        return ""
    return section("Server over the run", f"<table><tbody>{''.join(groups)}</tbody></table>")


def _header(run: Run) -> str:
    summary = run.summary
    started = "" if summary.started_at == "unknown" else f" · started {escape(summary.started_at)}"
    return (
        '<header><div class="brand">tmesh benchmark report</div>'
        f"<h1>{escape(run.spec.model)}</h1>"
        f'<p class="meta"><code>{escape(str(run.config.get("endpoint", "unknown")))}</code>'
        f"{started} · ran {format_value(summary.elapsed, SECONDS)} · "
        f"stopped: {escape(summary.stop_reason)}</p></header>"
    )


def notes(run: Run) -> str:
    if not run.notes:
        return ""
    items = "".join(f"<li>{escape(note)}</li>" for note in run.notes)
    return f'<div class="note"><strong>{escape(run.name)}</strong><ul>{items}</ul></div>'


def _verdict(text: str | None) -> str:
    """The benchmark's own reading of the server's cache counters, when it made one."""
    if not text:
        return ""
    return f'<section class="verdict"><strong>Cache verdict:</strong> {escape(text)}</section>'


def _cards(run: Run) -> str:
    s = run.summary
    ttft, itl = s.overall.ttft, s.overall.itl
    cards = [
        (
            QPS.label,
            QPS,
            f"{format_value(s.total_requests, COUNT)} requests in "
            f"{format_value(s.elapsed, SECONDS)}",
        ),
        (
            f"Mean {TTFT.label}",
            BY_KEY[stat_key(TTFT, "mean")],
            f"p50 {format_value(ttft.p50, TTFT.unit)} · p99 {format_value(ttft.p99, TTFT.unit)}",
        ),
        (
            f"Mean {ITL.label}",
            BY_KEY[stat_key(ITL, "mean")],
            f"p99 {format_value(itl.p99, ITL.unit)}",
        ),
        ("Prefill", BY_KEY[stat_key(PREFILL_THROUGHPUT, "mean")], "mean per request"),
        ("Decode", BY_KEY[stat_key(DECODE_THROUGHPUT, "mean")], "mean per request"),
        (
            "Errors",
            ERROR_RATE,
            f"{format_value(s.failed_requests, COUNT)} failed · {s.rotations:,} rotations",
        ),
    ]
    html = [
        f'<div class="card"><div class="label">{label}</div>{figure(metric, s, "div")}'
        f'<div class="sub">{escape(sub)}</div></div>'
        for label, metric, sub in cards
    ]
    return f'<div class="cards">{"".join(html)}</div>'


def _charts(run: Run) -> list[str]:
    warmup = run.summary.warmup_seconds
    blue, orange = PALETTE[0], PALETTE[1]
    panels = []
    if run.intervals:
        panels.append(
            chart_panel(
                "QPS over time",
                "Successful requests per second in each interval, and since the start "
                "(the console's QPS). The shaded region is the warm-up.",
                charts.line_chart(
                    "qps", series.qps_lines(run, blue, faint="#93c5fd"), QPS.label, QPS.unit, warmup
                ),
            )
        )
        ttft = [*series.ttft_lines(run, blue, faint="#93c5fd"), series.ttft_p99_line(run, orange)]
        panels.append(
            chart_panel(
                "TTFT over time",
                "Mean and p99 TTFT of the requests finished in each interval, and the mean since "
                "the start (the console's Global Average TTFT).",
                charts.line_chart("ttft", ttft, TTFT.label, TTFT.unit, warmup),
            )
        )
    groups = series.ttft_by_visit(run)
    if groups:
        overall = run.summary.overall.ttft
        panels.append(
            chart_panel(
                "TTFT distribution",
                "Successful requests by TTFT, first visits of a context stacked under revisits; "
                "dashed lines mark the run's p50, p90 and p99.",
                charts.histogram(
                    "ttft-histogram",
                    groups,
                    {"p50": overall.p50, "p90": overall.p90, "p99": overall.p99},
                ),
            )
        )
    if groups and run.spec.sessions is None:
        columns = run.requests
        panels.append(
            chart_panel(
                "TTFT per context rotation",
                "Each box spans the middle half of the requests of one pass over all contexts "
                "(line: median; whiskers: 5th to 95th percentile). A cache that keeps the "
                "contexts makes revisits much faster than first visits.",
                charts.rotation_boxes(
                    "ttft-rotation", columns.rotation, columns.visit, columns.ttft
                ),
            )
        )
    panels.extend(_server_charts(run, warmup))
    return panels


def _server_charts(run: Run, warmup: float) -> list[str]:
    panels = []
    metrics = series.server_metrics(run, series.SERVER_CACHE)
    if metrics:
        lines = [
            series.server_line(run, metric, PALETTE[i], metric is KV_USAGE)
            for i, metric in enumerate(metrics)
        ]
        panels.append(
            chart_panel(
                "Server cache over time",
                "Prefix-cache hit rates and KV cache usage scraped from the server's /metrics "
                "in each interval.",
                charts.line_chart("server-cache", lines, "share", FRACTION, warmup),
            )
        )
    metrics = series.server_metrics(run, series.SERVER_QUEUE)
    if metrics:
        lines = [
            series.server_line(run, metric, PALETTE[i + 2]) for i, metric in enumerate(metrics)
        ]
        panels.append(
            chart_panel(
                "Server queue over time",
                "Requests the server reported running and waiting at each scrape.",
                charts.line_chart("server-queue", lines, "requests", COUNT, warmup),
            )
        )
    return panels


def footer(run: Run | None = None) -> str:
    items = "".join(
        f"<dt>{escape(term)}</dt><dd>{escape(text)}.</dd>" for term, text in DEFINITIONS
    )
    source = ""
    if run is not None:
        source = (
            f"<p>Figures from {escape(run.summary_source)}; time series from "
            f"{escape(run.intervals_source)}. Generated by tmesh {escape(__version__)}.</p>"
        )
    return f"<footer><dl>{items}</dl>{source}</footer>"
