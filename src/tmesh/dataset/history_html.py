"""`history.html`: each metric over time, one line per series, changes beyond noise circled.

One self-contained page like the run report (its style, inline SVG, no script), so a history
can be attached to a ticket or published by a pipeline as it is.
"""

from __future__ import annotations

from html import escape

import numpy as np
from matplotlib.dates import date2num

from tmesh.dataset.history import History, Series, change_text
from tmesh.report.charts import PALETTE, _figure, _styled, _svg, _time_unit
from tmesh.report.html import footer
from tmesh.report.page import chart_panel, page, section
from tmesh.results.catalogue.metrics import Metric
from tmesh.results.catalogue.units import SECONDS, format_value

FLAG = "#dc2626"


def render_history(found: History, title: str = "tmesh history") -> str:
    panels = [_chart_panel(found, metric) for metric in found.metrics]
    body = [
        f"<header><div class='brand'>tmesh</div><h1>{escape(title)}</h1>"
        f"<p class='meta'>{found.runs} runs · series by {escape(', '.join(found.by))}</p>"
        "</header>",
        section("Changes beyond the runs' own noise", _changes_table(found)),
        *panels,
        footer(),
    ]
    return page(title, "".join(body))


def _chart_panel(found: History, metric: Metric) -> str:
    series = [s for s in found.series if s.metric.key == metric.key]
    caption = (
        f"{metric.definition}. Each point is one run; a circled point changed from the run "
        "before it by more than twice their combined interval noise."
    )
    return chart_panel(f"{metric.label} over time", caption, history_chart(metric, series))


@_styled
def history_chart(metric: Metric, series: list[Series]) -> str:
    """One line per series over the runs' start times; flagged points circled and labelled."""
    fig, ax = _figure()
    values = np.array(
        [p.value for s in series for p in s.points if p.value is not None], dtype=float
    )
    scale, unit = _time_unit(values) if metric.unit == SECONDS else (1.0, metric.unit)
    for index, entry in enumerate(series):
        points = [p for p in entry.points if p.started_at is not None and p.value is not None]
        color = PALETTE[index % len(PALETTE)]
        x = [float(date2num(p.started_at)) for p in points]  # type: ignore[no-untyped-call]
        y = [float(p.value or 0.0) * scale for p in points]
        ax.plot(x, y, color=color, marker="o", markersize=4, linewidth=1.6, label=entry.label)
        for point, when, value in zip(points, x, y, strict=True):
            if point.flagged:
                ax.plot([when], [value], marker="o", markersize=11, fillstyle="none", color=FLAG)
                ax.annotate(
                    change_text(point, metric).split()[0], (when, value), xytext=(6, 6),
                    textcoords="offset points", fontsize=8, color=FLAG,
                )  # fmt: skip
    ax.xaxis_date()
    ax.set_ylabel(f"{metric.label} ({unit})" if unit else metric.label)
    ax.set_ylim(bottom=0)
    longest = max((len(entry.label) for entry in series), default=0)
    ax.legend(loc="best", ncols=1 if longest > 40 else min(len(series), 3), fontsize=8)
    return _svg(fig, f"history-{metric.key}")


def _changes_table(found: History) -> str:
    changes = found.changes()
    if not changes:
        return "<p>No change between consecutive runs of a series exceeds their noise.</p>"
    rows = "".join(
        f"<tr><td class='left'>{escape(series.label)}</td><td class='left'>"
        f"{escape(series.metric.key)}</td><td class='left'>{escape(point.name)}</td>"
        f"<td>{escape(format_value(point.value, series.metric.unit))}</td>"
        f"<td>{escape(change_text(point, series.metric))}</td></tr>"
        for series, point in changes
    )
    return (
        "<table><thead><tr><th>series</th><th>metric</th><th>run</th><th>value</th>"
        f"<th>change from the run before</th></tr></thead><tbody>{rows}</tbody></table>"
    )
