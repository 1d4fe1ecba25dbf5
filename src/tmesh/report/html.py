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
from tmesh.results.records import RunSummary

CSS = """
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --soft:#f9fafb; --accent:#2563eb;
  --good:#15803d; --bad:#b91c1c; --warn-bg:#fffbeb; --warn-line:#f59e0b; }
* { box-sizing: border-box; }
body { margin: 0; background: #f3f4f6; color: var(--ink);
  font: 14px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue",
  Arial, "DejaVu Sans", sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 48px; }
header { margin-bottom: 20px; }
.brand { color: var(--accent); font-weight: 600; letter-spacing: .04em; text-transform: uppercase;
  font-size: 12px; }
h1 { font-size: 26px; margin: 4px 0 2px; }
h2 { font-size: 17px; margin: 0 0 12px; }
h3 { font-size: 14px; margin: 0 0 4px; }
.meta { color: var(--muted); margin: 0; }
section, .panel { background: #fff; border: 1px solid var(--line); border-radius: 10px;
  padding: 18px 20px; margin: 16px 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px;
  margin: 16px 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: .03em; }
.card .value { font-size: 22px; font-weight: 600; margin: 2px 0;
  font-variant-numeric: tabular-nums; }
.card .sub { color: var(--muted); font-size: 12px; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.grid2 > section { margin: 0; }
@media (max-width: 800px) { .grid2 { grid-template-columns: 1fr; } }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: right;
  white-space: nowrap; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
th:first-child, td:first-child, .left { text-align: left; }
tbody tr:last-child td { border-bottom: none; }
table.kv td:first-child { color: var(--muted); width: 40%; }
table.kv td, table.kv th { text-align: left; white-space: normal; word-break: break-word; }
code { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  background: var(--soft); padding: 1px 4px; border-radius: 4px; }
.note { background: var(--warn-bg); border: 1px solid var(--warn-line); border-radius: 10px;
  padding: 10px 16px; margin: 16px 0; }
.note ul { margin: 4px 0 0; padding-left: 18px; }
.verdict { border-left: 4px solid var(--accent); font-size: 15px; }
.chart-panel p { color: var(--muted); margin: 0 0 6px; font-size: 13px; }
svg.chart { width: 100%; height: auto; display: block; }
tr.group td { background: var(--soft); color: var(--muted); font-size: 12px; font-weight: 600;
  text-transform: uppercase; letter-spacing: .03em; text-align: left; }
.good { color: var(--good); font-weight: 600; }
.bad { color: var(--bad); font-weight: 600; }
.ns { color: var(--muted); }
footer { color: var(--muted); font-size: 12px; margin-top: 24px; }
footer dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
footer dt { font-weight: 600; color: var(--ink); }
footer dd { margin: 0; }
.differs { background: var(--warn-bg); }
td.meaning { text-align: left; white-space: normal; color: var(--muted); }
"""

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
        '<div class="grid2">',
        section("Workload and endpoint", kv_table(workload_rows(run))),
        section("Client at the end", kv_table(_health_rows(run))),
        "</div>",
        _server_section(run.summary),
        footer(run),
    ]
    return page(f"tmesh report: {run.spec.model} ({run.name})", "".join(body))


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="tmesh {escape(__version__)}">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def section(title: str, content: str, css: str = "") -> str:
    attr = f' class="{css}"' if css else ""
    return f"<section{attr}><h2>{escape(title)}</h2>{content}</section>"


def figure(metric: Metric, summary: RunSummary, tag: str = "td", css: str = "") -> str:
    """One metric of a run as an element, exact value and key attached for machine checks."""
    value = metric.value(summary)
    exact = "" if value is None else repr(value)
    css = f"value {css}".strip() if tag == "div" else css
    attr = f' class="{css}"' if css else ""
    return (
        f'<{tag}{attr} data-key="{escape(metric.key)}" data-value="{exact}">'
        f"{escape(format_value(value, metric.unit))}</{tag}>"
    )


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


def kv_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><td>{escape(key)}</td><td>{value}</td></tr>" for key, value in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def workload_rows(run: Run) -> list[tuple[str, str]]:
    """What was measured and how, values already escaped. The API key is never shown."""
    spec, config = run.spec, run.config
    oracle = str(config.get("token_oracle", "unknown"))
    exact = config.get("tokens_exact")
    rows = [
        ("Model", escape(spec.model)),
        ("Endpoint", f"<code>{escape(str(config.get('endpoint', 'unknown')))}</code>"),
        ("API", escape(spec.api)),
        ("Contexts", f"{spec.num_contexts:,}"),
        ("Questions per context", f"{spec.questions_per_context:,}"),
        ("Max inflight requests", f"{spec.max_inflight:,}"),
        ("Input / output length", f"{spec.input_length:,} / {spec.output_length:,} tokens"),
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


def chart_panel(title: str, caption: str, svg: str) -> str:
    return (
        f'<section class="chart-panel"><h2>{escape(title)}</h2><p>{escape(caption)}</p>'
        f"{svg}</section>"
    )


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
