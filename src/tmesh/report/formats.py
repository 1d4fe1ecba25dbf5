"""Markdown, CSV and JSON renderings of a report and a comparison, for pipelines and issues.

JSON and CSV carry exact values (what `summary.json` holds) keyed by the stable metric keys;
Markdown carries the same formatted text as the HTML tables.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from tmesh.report.compare import Cell, Comparison
from tmesh.report.load import Run
from tmesh.results.catalogue.metrics import (
    ALL,
    BY_KEY,
    COUNTS,
    QUANTITIES,
    RATES,
    STATS,
    TTFT,
    VISITS,
    Metric,
    stat_key,
    visit_key,
)
from tmesh.results.catalogue.units import COUNT, SECONDS, format_ratio, format_value


def report_json(run: Run) -> str:
    summary = run.summary
    document = {
        "run": str(run.path),
        "model": run.spec.model,
        "endpoint": run.config.get("endpoint"),
        "workload": asdict(run.spec),
        "started_at": summary.started_at,
        "elapsed": summary.elapsed,
        "stop_reason": summary.stop_reason,
        "source": run.summary_source,
        "notes": run.notes,
        "metrics": {metric.key: metric.value(summary) for metric in ALL},
        "units": {metric.key: metric.unit for metric in ALL},
        "errors": summary.overall.errors,
    }
    return json.dumps(document, indent=2) + "\n"


def report_csv(run: Run) -> str:
    rows = [
        (metric.key, metric.label, metric.unit, _exact(metric.value(run.summary))) for metric in ALL
    ]
    rows += [
        (f"errors.{kind}", f"Errors: {kind}", COUNT, str(count))
        for kind, count in sorted(run.summary.overall.errors.items())
    ]
    return _csv(("key", "label", "unit", "value"), rows)


def report_markdown(run: Run) -> str:
    summary = run.summary
    lines = [
        f"## tmesh report: {run.spec.model} ({run.name})",
        "",
        f"`{run.config.get('endpoint', 'unknown')}` · ran {format_value(summary.elapsed, SECONDS)} "
        f"· stopped: {summary.stop_reason} · {run.spec.num_contexts} contexts of "
        f"{run.spec.input_length:,} tokens, {run.spec.output_length} out, "
        f"{run.spec.max_inflight} in flight",
        "",
        *_distribution_table(run, ""),
        "",
        *_row_table(run, [*RATES, *COUNTS]),
    ]
    if summary.warmup_seconds > 0:
        lines += [
            "",
            f"After the warm-up ({format_value(summary.warmup_seconds, SECONDS)}):",
            "",
            *_distribution_table(run, "steady."),
        ]
    lines += ["", *_cold_warm_table(run), "", _errors_line(run)]
    lines += [f"> {note}" for note in run.notes]
    return "\n".join(lines) + "\n"


def _distribution_table(run: Run, prefix: str) -> list[str]:
    lines = ["| | " + " | ".join(STATS) + " |", "|---|" + "---:|" * len(STATS)]
    for q in QUANTITIES:
        cells = [_formatted(run, stat_key(q, stat, prefix)) for stat in STATS]
        lines.append(f"| {q.label} | " + " | ".join(cells) + " |")
    return lines


def _row_table(run: Run, metrics: list[Metric]) -> list[str]:
    return [
        "| " + " | ".join(metric.label for metric in metrics) + " |",
        "|" + "---:|" * len(metrics),
        "| " + " | ".join(_formatted(run, metric.key) for metric in metrics) + " |",
    ]


def _cold_warm_table(run: Run) -> list[str]:
    lines = [f"| {TTFT.label} | requests | " + " | ".join(STATS) + " |", "|---|" + "---:|" * 5]
    for visit in VISITS:
        count = visit.ttft(run.summary).count
        cells = [_formatted(run, visit_key(visit, stat)) for stat in STATS]
        lines.append(f"| {visit.label} | {count:,} | " + " | ".join(cells) + " |")
    return lines


def _errors_line(run: Run) -> str:
    errors = run.summary.overall.errors
    if not errors:
        return "Errors: none."
    return "Errors: " + ", ".join(f"`{kind}` {count:,}" for kind, count in sorted(errors.items()))


def _formatted(run: Run, key: str) -> str:
    metric = BY_KEY[key]
    return format_value(metric.value(run.summary), metric.unit)


def compare_json(comparison: Comparison) -> str:
    document = {
        "labels": comparison.labels,
        "runs": [
            {
                "label": label,
                "run": str(run.path),
                "model": run.spec.model,
                "endpoint": run.config.get("endpoint"),
                "elapsed": run.summary.elapsed,
                "stop_reason": run.summary.stop_reason,
                "source": run.summary_source,
            }
            for label, run in zip(comparison.labels, comparison.runs, strict=True)
        ],
        "metrics": [
            {
                "key": row.metric.key,
                "label": row.metric.label,
                "unit": row.metric.unit,
                "higher_is_better": row.metric.higher_is_better,
                "values": [cell.value for cell in row.cells],
                "ratios": [cell.ratio for cell in row.cells[1:]],
                "significant": [cell.significant for cell in row.cells[1:]],
            }
            for row in comparison.rows
        ],
        "verdict": comparison.verdict,
        "warnings": comparison.warnings,
    }
    return json.dumps(document, indent=2) + "\n"


def compare_csv(comparison: Comparison) -> str:
    header = ("key", "label", "unit", "higher_is_better", "run", "value", "ratio", "significant")
    rows = []
    for row in comparison.rows:
        metric = row.metric
        for index, (label, cell) in enumerate(zip(comparison.labels, row.cells, strict=True)):
            significant = "" if index == 0 or cell.significant is None else str(cell.significant)
            rows.append(
                (
                    metric.key,
                    metric.label,
                    metric.unit,
                    str(metric.higher_is_better).lower(),
                    label,
                    _exact(cell.value),
                    "" if index == 0 else _exact(cell.ratio),
                    significant.lower(),
                )
            )
    return _csv(header, rows)


def compare_markdown(comparison: Comparison) -> str:
    labels = comparison.labels
    head = ["metric", "better"]
    for index, label in enumerate(labels):
        head += [label] + ([f"{label} / {labels[0]}"] if index else [])
    lines = [
        f"## tmesh comparison: {' vs '.join(labels)}",
        "",
        comparison.verdict,
        "",
        "| " + " | ".join(head) + " |",
        "|---|---|" + "---:|" * (len(head) - 2),
    ]
    for row in comparison.rows:
        metric = row.metric
        cells = [metric.label, "higher" if metric.higher_is_better else "lower"]
        for index, cell in enumerate(row.cells):
            cells.append(format_value(cell.value, metric.unit))
            if index:
                cells.append(_ratio_text(cell))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Runs: "
        + "; ".join(
            f"{label} = `{run.name}` ({run.config.get('endpoint', 'unknown')})"
            for label, run in zip(labels, comparison.runs, strict=True)
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def _ratio_text(cell: Cell) -> str:
    text = format_ratio(cell.ratio)
    if cell.ratio is None:
        return text
    if cell.significant is False:
        return f"{text} (not significant)"
    if cell.better is not None:
        return f"{text} {'better' if cell.better else 'worse'}"
    return text


def _exact(value: Any) -> str:
    return "" if value is None else repr(value)


def _csv(header: tuple[str, ...], rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()
