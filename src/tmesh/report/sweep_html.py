"""`sweep.html`: a sweep's curves (TTFT, hit rate and QPS against its knob) in one self-contained
page; given several sweeps of the same knob, their curves overlaid (`tmesh-cli compare`).

Each stack keeps one colour: TTFT p50 solid and p90 dashed; the server's hit rate solid and the
ideal LRU cache of that stack's GPU capacity dashed, the infinite cache (the reuse there was)
dotted grey. Every table cell carries its exact value (`data-key`, `data-value`).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from tmesh import __version__
from tmesh.report import charts
from tmesh.report.charts import MUTED, PALETTE, Line
from tmesh.report.page import chart_panel, page, section
from tmesh.results.catalogue.units import (
    FRACTION,
    REQUESTS_PER_S,
    SECONDS,
    format_value,
)
from tmesh.results.sweeps import COLUMNS, SWEEP_PAGE, Sweep, SweepPoint, read_sweep

POINTS_CSS = (
    "<style>table.points th, table.points td { padding: 5px 6px; font-size: 12px; }</style>"
)
"""Fourteen columns: tighter cells keep the points' table within the page's width."""


class SweepCompareError(ValueError):
    """Sweeps that cannot share one picture; the message is one line."""


def write_sweep_page(folder: Path, out: Path | None = None) -> Path:
    target = out or folder / SWEEP_PAGE
    target.write_text(render_sweeps([read_sweep(folder)]), encoding="utf-8")
    return target


def render_sweeps(sweeps: list[Sweep], labels: list[str] | None = None) -> str:
    """One sweep's page, or several overlaid (their labels default to their models)."""
    knobs = {sweep.knob for sweep in sweeps}
    if len(knobs) > 1:
        raise SweepCompareError(f"the sweeps vary different knobs ({', '.join(sorted(knobs))})")
    names = labels or [_default_label(sweep, i) for i, sweep in enumerate(sweeps)]
    first = sweeps[0]
    title = " vs ".join(names) if len(sweeps) > 1 else f"{first.model}: {first.label}"
    body = [
        '<header><div class="brand">tmesh sweep</div>'
        f'<h1>{escape(title)}</h1><p class="meta">{escape(_meta(sweeps, names))}</p></header>',
        *_charts(sweeps, names),
        *(
            section(f"Points: {name}" if len(sweeps) > 1 else "Points", _table(sweep))
            for sweep, name in zip(sweeps, names, strict=True)
        ),
        "<footer><p>Latencies and QPS of each point are after its warm-up (its first pass over "
        "its contexts); hit rates are over all of its requests. The ideal LRU cache has the "
        "GPU KV capacity the server reports and sees the same requests; the infinite cache "
        "never evicts. Reuse efficiency = the server's hit rate / the ideal LRU's. Generated "
        f"by tmesh {escape(__version__)}.</p></footer>",
    ]
    return page(f"tmesh sweep: {title}", POINTS_CSS + "".join(body))


def _default_label(sweep: Sweep, index: int) -> str:
    return f"{chr(ord('A') + index)} ({sweep.model or sweep.endpoint})"


def _meta(sweeps: list[Sweep], names: list[str]) -> str:
    parts = []
    for sweep, name in zip(sweeps, names, strict=True):
        capacity = (
            f"GPU KV {sweep.gpu_capacity_tokens:,} tokens" if sweep.gpu_capacity_tokens else
            "GPU KV capacity not reported"
        )  # fmt: skip
        prefix = f"{name}: " if len(sweeps) > 1 else ""
        parts.append(
            f"{prefix}{sweep.endpoint} · {capacity} · {len(sweep.points)} points · "
            f"cache reset: {sweep.reset or 'n/a'}"
        )
    return " | ".join(parts)


def _charts(sweeps: list[Sweep], names: list[str]) -> list[str]:
    label = sweeps[0].label
    values = sorted({point.value for sweep in sweeps for point in sweep.points})
    knob = (label, values)
    ttft, hits, qps = [], [], []
    for index, (sweep, name) in enumerate(zip(sweeps, names, strict=True)):
        color = PALETTE[index % len(PALETTE)]
        mark = f"{name} " if len(sweeps) > 1 else ""
        ttft += [
            _line(f"{mark}TTFT p50", sweep, "ttft_p50", color),
            _line(f"{mark}TTFT p90", sweep, "ttft_p90", color, dashed=True),
        ]
        hits += [
            _line(f"{mark}server", sweep, "measured_hit_rate", color),
            _line(f"{mark}ideal LRU", sweep, "lru_hit_rate", color, dashed=True),
        ]
        qps.append(_line(f"{mark}QPS", sweep, "qps", color))
    hits.append(_line("infinite cache", sweeps[0], "infinite_hit_rate", MUTED, dashed=True))
    return [
        chart_panel(
            "TTFT against the working set" if sweeps[0].knob == "working_set_ratio" else "TTFT",
            f"time to first token after each point's warm-up, against the {label}",
            charts.knob_chart("sweep-ttft", ttft, "TTFT", SECONDS, *knob),
        ),
        chart_panel(
            "Prefix-cache hit rate",
            "share of prompt tokens served from cache: as the server measured it (solid) and as "
            "an ideal LRU cache of its GPU capacity would have on the same requests (dashed)",
            charts.knob_chart("sweep-hits", hits, "hit rate", FRACTION, *knob),
        ),
        chart_panel(
            "Throughput",
            f"successful requests per second after the warm-up, against the {label}",
            charts.knob_chart("sweep-qps", qps, "QPS", REQUESTS_PER_S, *knob),
        ),
    ]


def _line(label: str, sweep: Sweep, attr: str, color: str, dashed: bool = False) -> Line:
    points = sweep.points
    return Line(
        label,
        [p.value for p in points],
        [getattr(p, attr) for p in points],
        color,
        dashed=dashed,
        markers=True,
    )


def _table(sweep: Sweep) -> str:
    head = f"<th>{escape(sweep.knob.replace('_', ' '))}</th>" + "".join(
        f"<th>{escape(heading)}</th>" for _, heading, _ in COLUMNS
    )
    rows = "".join(_row(point) for point in sweep.points)
    table = f'<table class="points"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
    table += "</table>"
    return f'<div style="overflow-x: auto">{table}</div>'


def _row(point: SweepPoint) -> str:
    cells = [f'<td data-key="value" data-value="{point.value!r}">{point.value:g}</td>']
    for attr, _, unit in COLUMNS:
        value = getattr(point, attr)
        exact = "" if value is None else repr(value)
        cells.append(
            f'<td data-key="{attr}" data-value="{exact}">{escape(format_value(value, unit))}</td>'
        )
    return f"<tr>{''.join(cells)}</tr>"
