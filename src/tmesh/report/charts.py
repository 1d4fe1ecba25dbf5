"""Charts of a run, drawn by matplotlib and returned as inline SVG text.

SVG keeps a report one self-contained file that stays sharp when zoomed or printed, and needs no
script to display. Figures are built with the object API on the SVG canvas (no pyplot, so no GUI
backend and no global figure state); text is rendered as paths so the page looks the same on a
machine without matplotlib's fonts, and never parsed as mathtext, because legend entries carry
user-chosen run labels in which a pair of `$` would otherwise be rendered as math or fail to
parse. Functions take plain series and return markup: they know nothing about run folders.
"""

from __future__ import annotations

import functools
import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.ticker import (
    FuncFormatter,
    LogFormatter,
    MaxNLocator,
    NullLocator,
    PercentFormatter,
)

from tmesh.results.catalogue.units import COUNT, FRACTION, SECONDS

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

PALETTE = ("#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04")
COLD, WARM = "#94a3b8", "#2563eb"
INK, MUTED, GRID, SHADE = "#1f2937", "#6b7280", "#e5e7eb", "#f3f4f6"
STYLE: dict[RcKeyType, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.edgecolor": "#9ca3af",
    "axes.labelcolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": GRID,
    "grid.linewidth": 0.8,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "legend.frameon": False,
    "legend.fontsize": 9.5,
    "axes.axisbelow": True,
    "svg.fonttype": "path",
    "text.parse_math": False,
}
WIDTH, HEIGHT = 10.5, 3.8
MARGINS = (0.95, 0.2, 0.6, 0.45)
MAX_BOXES = 30
LOG_SPREAD = 8.0
CDF_POINTS = 2000
MAX_MARKED = 60
WARMUP_LABEL_SHARE = 0.06
P = ParamSpec("P")


def _styled(draw: Callable[P, str]) -> Callable[P, str]:
    """Run a chart function inside the report's matplotlib style, leaving global settings alone."""

    @functools.wraps(draw)
    def styled(*args: P.args, **kwargs: P.kwargs) -> str:
        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)

    return styled


@dataclass
class Line:
    """One series of a line chart; `steps` draws each value flat across the interval it ends,
    `markers` dots the points (for gauges sampled once per interval)."""

    label: str
    x: Sequence[float]
    y: Sequence[float | None]
    color: str
    width: float = 1.8
    alpha: float = 1.0
    dashed: bool = False
    steps: bool = False
    markers: bool = False


@dataclass
class Distribution:
    """A named sample for a histogram or a cumulative distribution."""

    label: str
    values: np.ndarray
    color: str


@_styled
def line_chart(name: str, lines: list[Line], quantity: str, unit: str, warmup: float = 0.0) -> str:
    """Time series over elapsed seconds; the warm-up region shaded so nobody reads it as steady.

    `unit` is the catalogue's unit of the values: seconds (drawn in ms when all are under a
    second), a fraction (drawn as a percentage), a count (whole numbers, no unit on the axis),
    or a rate such as req/s.
    """
    fig, ax = _figure()
    _plot(ax, lines, quantity, unit)
    ax.set_xlabel("elapsed time (s)")
    ax.set_xlim(left=0)
    _shade_warmup(ax, warmup)
    _legend(ax, len(lines))
    return _svg(fig, name)


@_styled
def category_chart(
    name: str, categories: list[str], lines: list[Line], quantity: str, unit: str, axis: str
) -> str:
    """Values over named categories (turn indices, idle-gap buckets) at positions 0, 1, …: the
    lines' `x` are those positions; `unit` as in `line_chart`."""
    fig, ax = _figure()
    _plot(ax, lines, quantity, unit)
    ax.set_xticks(range(len(categories)), categories)
    ax.set_xlim(-0.3, max(len(categories) - 0.7, 0.3))
    ax.set_xlabel(axis)
    _legend(ax, len(lines))
    return _svg(fig, name)


@_styled
def knob_chart(
    name: str, lines: list[Line], quantity: str, unit: str, knob: str, values: Sequence[float]
) -> str:
    """Values against a sweep's knob (`lines`' `x` are its values); `unit` as in `line_chart`."""
    fig, ax = _figure()
    _plot(ax, lines, quantity, unit)
    _knob_axis(ax, knob, values)
    _legend(ax, len(lines))
    return _svg(fig, name)


def _plot(ax: Axes, lines: list[Line], quantity: str, unit: str) -> None:
    """The lines, and a value axis for their unit."""
    series = [_finite(line.y) for line in lines]
    percent = unit == FRACTION
    scale = 100.0 if percent else 1.0
    if unit == COUNT:
        unit = ""
    if unit == SECONDS:
        scale, unit = _time_unit(np.concatenate(series) if series else np.array([]))
    for line, values in zip(lines, series, strict=True):
        ax.plot(
            line.x,
            values * scale,
            label=line.label,
            color=line.color,
            linewidth=line.width,
            alpha=line.alpha,
            linestyle=(0, (4, 2)) if line.dashed else "-",
            drawstyle="steps-pre" if line.steps else "default",
            marker="o" if _marked(line, values) else None,
            markersize=3 if line.markers else 5,
            solid_joinstyle="round",
        )
    ax.set_ylabel(f"{quantity} ({unit})" if unit and not percent else quantity)
    if percent:
        ax.set_ylim(0, 105)
        ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    else:
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(FuncFormatter(_plain))
        _integer_ticks(ax.yaxis, not unit)


@_styled
def histogram(name: str, groups: list[Distribution], markers: dict[str, float | None]) -> str:
    """Counts per TTFT bin, log-spaced when the spread is wide, with percentile markers."""
    values = np.concatenate([g.values for g in groups]) if groups else np.array([])
    scale, unit = _time_unit(values)
    fig, ax = _figure()
    if len(values):
        bins, log = _bins(values * scale)
        ax.hist(
            [g.values * scale for g in groups],
            bins=bins.tolist(),
            stacked=True,
            histtype="stepfilled",
            color=[g.color for g in groups],
            label=[f"{g.label} ({len(g.values):,})" for g in groups],
            linewidth=0,
            alpha=0.9,
        )
        if log:
            _log_x(ax)
        _percentile_markers(ax, markers, scale)
    ax.set_xlabel(f"TTFT ({unit})")
    ax.set_ylabel("requests")
    _integer_ticks(ax.yaxis)
    _legend(ax, len(groups))
    return _svg(fig, name)


@_styled
def cumulative(name: str, groups: list[Distribution]) -> str:
    """Empirical CDFs of TTFT: the fraction of requests at or below each time, one line per run."""
    values = np.concatenate([g.values for g in groups]) if groups else np.array([])
    scale, unit = _time_unit(values)
    fig, ax = _figure()
    for group in groups:
        ordered = np.sort(group.values) * scale
        if not len(ordered):
            continue
        share = np.arange(1, len(ordered) + 1) / len(ordered)
        if len(ordered) > CDF_POINTS:
            share = np.linspace(share[0], 1.0, CDF_POINTS)
            ordered = np.quantile(ordered, share, method="inverted_cdf")
        ax.step(ordered, share, where="post", color=group.color, label=group.label, lw=1.8)
    if len(values) and _bins(values * scale)[1]:
        _log_x(ax)
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
    ax.grid(True, axis="x", color=GRID, linewidth=0.8)
    ax.set_xlabel(f"TTFT ({unit})")
    ax.set_ylabel("requests at or below")
    _legend(ax, len(groups))
    return _svg(fig, name)


@_styled
def rotation_boxes(name: str, rotation: np.ndarray, visit: np.ndarray, ttft: np.ndarray) -> str:
    """TTFT per context rotation, first visits and revisits as separate boxes.

    Whiskers span the 5th to 95th percentile. Rotation 0 (the cold pass) always has its own box;
    long runs group the later rotations into at most `MAX_BOXES` spans so boxes stay readable.
    Where both kinds share a position their boxes sit side by side.
    """
    defined = ~np.isnan(ttft)
    rotation, visit, ttft = rotation[defined].astype(int), visit[defined], ttft[defined]
    scale, unit = _time_unit(ttft)
    last = int(rotation.max()) if len(rotation) else 0
    span = max(1, math.ceil(last / MAX_BOXES))
    group = np.where(rotation == 0, 0, (rotation - 1) // span + 1)
    kinds = [
        (kind, color, chosen)
        for kind, color, chosen in (
            ("first visit", COLD, visit == 0),
            ("revisit", WARM, visit > 0),
        )
        if chosen.any()
    ]
    shared = set(np.unique(group[visit == 0])) & set(np.unique(group[visit > 0]))
    fig, ax = _figure()
    for index, (_kind, color, chosen) in enumerate(kinds):
        positions = np.unique(group[chosen])
        offsets = [(index - 0.5) * 0.4 if g in shared else 0.0 for g in positions]
        ax.boxplot(
            [ttft[chosen & (group == g)] * scale for g in positions],
            positions=positions + np.array(offsets),
            widths=[0.35 if g in shared else 0.6 for g in positions],
            whis=(5, 95),
            showfliers=False,
            patch_artist=True,
            boxprops={"facecolor": color, "edgecolor": color, "alpha": 0.85},
            medianprops={"color": "white", "linewidth": 1.6},
            whiskerprops={"color": color},
            capprops={"color": color},
            manage_ticks=False,
        )
    ax.set_xlabel("context rotation" if span == 1 else f"context rotation (groups of {span})")
    ax.set_ylabel(f"TTFT ({unit})")
    if _wide(ttft):
        _log_y(ax)
    else:
        ax.set_ylim(bottom=0)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _rotation_label(v, span)))
    _integer_ticks(ax.xaxis)
    for kind, color, _chosen in kinds:
        ax.plot([], [], color=color, linewidth=8, label=kind)
    _legend(ax, len(kinds))
    return _svg(fig, name)


def _knob_axis(ax: Axes, label: str, values: Sequence[float]) -> None:
    """A sweep's knob on a log axis (its values usually double), ticked at the values swept."""
    ax.set_xlabel(label)
    if len(values) > 1 and min(values) > 0:
        ax.set_xscale("log")
    ax.set_xticks(list(values), [f"{value:g}" for value in values])
    ax.xaxis.set_minor_locator(NullLocator())


def _integer_ticks(axis: Axis, integer: bool = True) -> None:
    """Ticks on whole numbers only (for counts); a linear axis's default locator takes it."""
    locator = axis.get_major_locator()
    if isinstance(locator, MaxNLocator):
        locator.set_params(integer=integer)


def _marked(line: Line, values: np.ndarray) -> bool:
    """Dots on sampled gauges of short runs, and on any line with one point (else invisible)."""
    points = int(np.isfinite(values).sum())
    return points == 1 or (line.markers and points <= MAX_MARKED)


def _rotation_label(value: float, span: int) -> str:
    """Tick label of a box position: 0 is the cold pass, g >= 1 the span of rotations it holds."""
    position = round(value)
    if position < 0:
        return ""
    if span == 1 or position == 0:
        return str(position)
    first = (position - 1) * span + 1
    return f"{first}-{first + span - 1}"


def _figure() -> tuple[Figure, Axes]:
    """A figure with fixed margins (in inches): one draw instead of constrained layout's two."""
    fig = Figure(figsize=(WIDTH, HEIGHT))
    FigureCanvasSVG(fig)
    left, right, bottom, top = MARGINS
    fig.subplots_adjust(
        left=left / WIDTH, right=1 - right / WIDTH, bottom=bottom / HEIGHT, top=1 - top / HEIGHT
    )
    return fig, fig.add_subplot()


def _svg(fig: Figure, name: str) -> str:
    """Inline SVG markup: no XML prologue, sized by CSS, ids unique to this chart."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"tmesh-{name}"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": "tmesh"})
    markup = buffer.getvalue()
    markup = markup[markup.index("<svg") :]
    return re.sub(
        r'<svg([^>]*?) width="[^"]*" height="[^"]*"',
        rf'<svg\1 class="chart" role="img" aria-label="{name}"',
        markup,
        count=1,
    )


def _finite(values: Sequence[float | None]) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in values], dtype=float)


def _time_unit(seconds: np.ndarray) -> tuple[float, str]:
    """Milliseconds when every value is under a second, else seconds."""
    finite = seconds[np.isfinite(seconds)] if len(seconds) else seconds
    if len(finite) and float(np.max(finite)) < 1.0:
        return 1000.0, "ms"
    return 1.0, SECONDS


def _wide(values: np.ndarray) -> bool:
    """Spread too wide for a linear axis: cache hits would be flattened against zero."""
    positive = values[values > 0]
    return bool(len(positive)) and np.max(positive) / max(np.min(positive), 1e-12) > LOG_SPREAD


def _bins(values: np.ndarray) -> tuple[np.ndarray, bool]:
    positive = values[values > 0]
    if _wide(values):
        edges = np.geomspace(np.min(positive), np.max(positive) * 1.0001, 50)
        return edges, True
    return np.histogram_bin_edges(values, bins=min(50, max(10, int(math.sqrt(len(values)))))), False


def _percentile_markers(ax: Axes, markers: dict[str, float | None], scale: float) -> None:
    """Dashed verticals with labels stepped down, so close percentiles stay legible."""
    top = ax.get_ylim()[1]
    shown = [(label, value) for label, value in markers.items() if value is not None]
    for step, (label, value) in enumerate(shown):
        ax.axvline(value * scale, color=INK, linewidth=0.9, linestyle=(0, (3, 2)), alpha=0.7)
        ax.annotate(
            label,
            (value * scale, top),
            xytext=(3, -2 - 12 * step),
            textcoords="offset points",
            va="top",
            fontsize=8,
            color=INK,
        )


def _shade_warmup(ax: Axes, warmup: float) -> None:
    """Shade the warm-up; label it only where the label fits inside the shaded band."""
    if warmup <= 0:
        return
    ax.axvspan(0, warmup, color=SHADE, zorder=0, linewidth=0)
    if warmup < WARMUP_LABEL_SHARE * ax.get_xlim()[1]:
        return
    ax.annotate(
        "warm-up",
        (warmup / 2, 0),
        xycoords=("data", "axes fraction"),
        xytext=(0, 4),
        textcoords="offset points",
        ha="center",
        va="bottom",
        fontsize=8,
        color=MUTED,
    )


def _legend(ax: Axes, entries: int) -> None:
    if entries:
        ax.legend(
            loc="lower left", bbox_to_anchor=(0, 1.0), ncols=min(entries, 4), borderaxespad=0.3
        )


class _PlainLogFormatter(LogFormatter):
    """Log-axis labels as plain numbers (30, 100, 200), not powers of ten."""

    def __call__(self, value: float, pos: int | None = None) -> str:
        return _plain(value, pos) if super().__call__(value, pos) else ""


def _log_x(ax: Axes) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False))
    ax.xaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))


def _log_y(ax: Axes) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False))
    ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))


def _plain(value: float, _position: int | None) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:g}"
