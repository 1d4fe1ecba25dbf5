"""The sweep's table: one row per point, written as the console writes every value."""

from __future__ import annotations

from rich.table import Table

from tmesh.results.catalogue.units import console_value
from tmesh.results.sweeps import COLUMNS, Sweep, SweepPoint


def sweep_table(sweep: Sweep) -> Table:
    table = Table(
        title=f"tmesh sweep: {sweep.label} ({sweep.model})",
        title_justify="left",
        caption="latencies and QPS after each point's warm-up; hit rates over all its requests: "
        "the server's, and an ideal LRU cache of the GPU's size and an infinite one on the same "
        "requests; efficiency = hit rate / LRU hit",
        caption_justify="left",
    )
    table.add_column(sweep.knob.replace("_", " "), justify="right")
    for _, heading, _ in COLUMNS:
        table.add_column(heading, justify="right")
    for point in sweep.points:
        table.add_row(f"{point.value:g}", *(_cell(point, attr, unit) for attr, _, unit in COLUMNS))
    return table


def _cell(point: SweepPoint, attr: str, unit: str) -> str:
    value = getattr(point, attr)
    return "-" if value is None else console_value(value, unit)
