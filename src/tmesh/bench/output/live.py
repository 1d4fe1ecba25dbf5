"""`--live`: a full-screen dashboard over the run, redrawn every second and at every interval.

Only a view: it reads the interval snapshots the run produces anyway (and the notes the
benchmark writes), so what is measured and written is the same with or without it. The screen
is laid out afresh at each redraw from the terminal's size at that moment, so a resize takes
effect within a second; a terminal smaller than `MIN_SIZE` gets the 5-second block's figures as
a plain table instead, until it grows again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from rich.console import Console, Group, RenderableType
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel as Box
from rich.table import Table
from rich.text import Text

from tmesh.bench.output.console import interval_lines
from tmesh.bench.output.panels import PANELS, History, Panel, Place, Trend
from tmesh.results.records import IntervalSnapshot

MIN_SIZE = (80, 24)
"""Columns and rows below which the dashboard would clip its charts to nothing."""
REFRESH_PER_SECOND = 1.0
TRENDS_SHARE = 0.5
"""Part of the width the charts take; the figures of the last interval take the rest."""
FOOT_SHARE = 0.4
"""At most this part of the height goes to the panels across the bottom."""
BORDER = 2
PADDING = 2


def fits(width: int, height: int) -> bool:
    return width >= MIN_SIZE[0] and height >= MIN_SIZE[1]


class Dashboard:
    """The live screen: `update` with each snapshot, `note` with each line the benchmark says.

    `panels` are drawn in their places, each only when the snapshots hold something for it.
    On a terminal the screen is the alternate one, restored on `stop`; given a console that is
    not a terminal (a test's), the last frame is printed once on `stop`.
    """

    def __init__(
        self,
        duration: float | None = None,
        console: Console | None = None,
        panels: Sequence[Panel] = PANELS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.duration = duration
        self.console = console or Console()
        self.panels = tuple(panels)
        self.history = History(_trends(self.panels))
        self._clock = clock
        self._lock = threading.Lock()
        self._started_at = clock()
        self._updated_at: float | None = None
        self._live = Live(
            console=self.console,
            screen=self.console.is_terminal,
            auto_refresh=True,
            refresh_per_second=REFRESH_PER_SECOND,
            redirect_stdout=False,
            redirect_stderr=False,
            get_renderable=self.frame,
        )

    def start(self) -> None:
        self._started_at = self._clock()
        self._live.start(refresh=True)

    def stop(self) -> None:
        self._live.stop()

    def __enter__(self) -> Dashboard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def update(self, snap: IntervalSnapshot) -> None:
        with self._lock:
            self.history.add(snap)
            self._updated_at = self._clock()
        self._live.refresh()

    def note(self, text: str) -> None:
        with self._lock:
            self.history.notes.append(text)
        self._live.refresh()

    def elapsed(self) -> float:
        """The last interval's elapsed time, moved on by the clock since it came."""
        latest = self.history.latest
        if latest is None or self._updated_at is None:
            return self._clock() - self._started_at
        return latest.elapsed + self._clock() - self._updated_at

    def frame(self) -> RenderableType:
        """The whole screen at the console's current size."""
        width, height = self.console.size
        with self._lock:
            if not fits(width, height):
                return self._small(width, height)
            return self._layout(width, height)

    def _header(self, width: int) -> Text:
        elapsed = self.elapsed()
        header = Text("tmesh benchmark", style="bold")
        if self.duration is None:
            header.append(f"  {elapsed:.0f} s elapsed (Ctrl-C to stop)")
            return header
        left = max(0.0, self.duration - elapsed)
        header.append(f"  {elapsed:.0f} s elapsed, {left:.0f} s left  ")
        bar = max(0, width - len(header.plain))
        done = round(bar * min(1.0, elapsed / self.duration)) if self.duration > 0 else bar
        header.append("━" * done, style="green")
        header.append("━" * (bar - done), style="grey30")
        return header

    def _layout(self, width: int, height: int) -> Layout:
        screen = Layout()
        rows = [Layout(self._header(width), size=1)]
        alert = self._stack("alert", width, height // 4)
        rows.extend(alert)
        used = 1 + sum(row.size or 0 for row in rows[1:])
        foot = self._stack("foot", width, int(height * FOOT_SHARE))
        body_height = height - used - sum(row.size or 0 for row in foot)
        left = int(width * TRENDS_SHARE)
        body = Layout(size=body_height)
        body.split_row(
            self._column("trends", left, body_height),
            self._column("numbers", width - left, body_height),
        )
        screen.split_column(*rows, body, *foot)
        return screen

    def _stack(self, place: Place, width: int, budget: int) -> list[Layout]:
        """Boxes across the screen, each as tall as its lines, while they fit in `budget` rows."""
        boxes = []
        for panel, lines in self._rendered(place, width, budget - BORDER):
            size = len(lines) + BORDER
            if size > budget:
                break
            budget -= size
            boxes.append(Layout(_box(panel, lines), size=size))
        return boxes

    def _column(self, place: Place, width: int, height: int) -> Layout:
        """A column of boxes: each as tall as its lines, the last one taking what is left."""
        column = Layout()
        rendered = self._rendered(place, width, height - BORDER)
        if not rendered:
            column.update(Text(""))
            return column
        parts = []
        for index, (panel, lines) in enumerate(rendered):
            last = index == len(rendered) - 1
            size = None if last else min(len(lines) + BORDER, height)
            parts.append(Layout(_box(panel, lines), size=size))
        column.split_column(*parts)
        return column

    def _rendered(self, place: Place, width: int, height: int) -> list[tuple[Panel, list[Text]]]:
        inner = width - BORDER - PADDING
        found = []
        for panel in self.panels:
            if panel.place != place:
                continue
            lines = panel.render(self.history, inner, height)
            if lines:
                found.append((panel, lines))
        return found

    def _small(self, width: int, height: int) -> RenderableType:
        """The last interval's figures as a plain table, and how much room the dashboard needs."""
        ask = f"enlarge the terminal to {MIN_SIZE[0]}x{MIN_SIZE[1]} for the dashboard"
        table = Table(show_header=False, box=None, padding=(0, 1))
        table.add_column("metric", style="dim", no_wrap=True, overflow="ellipsis")
        table.add_column("value", no_wrap=True, overflow="ellipsis")
        latest = self.history.latest
        for label, value in interval_lines(latest)[: max(0, height - 3)] if latest else []:
            table.add_row(label, value)
        return Group(self._header(width), Text(f"({width}x{height}: {ask})", "yellow"), table)


def _box(panel: Panel, lines: list[Text]) -> Box:
    style = "red" if panel.place == "alert" else "blue"
    return Box(Group(*lines), title=panel.title, title_align="left", border_style=style)


def _trends(panels: Sequence[Panel]) -> list[Trend]:
    """Every trend some panel draws, once each."""
    found: dict[str, Trend] = {}
    for panel in panels:
        for trend in panel.trends:
            found.setdefault(trend.key, trend)
    return list(found.values())
