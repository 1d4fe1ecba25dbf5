"""A run's figures over time, kept at bounded memory and drawn as one line of bars.

A run may last hours (720 intervals an hour at 5 s), and the dashboard shows the whole of it in
the few dozen columns a terminal gives a chart: so a series halves its resolution (each point the
mean of twice as many intervals) whenever it fills, and a sparkline averages the points that
share a column. Pure functions and plain containers: no terminal here.
"""

from __future__ import annotations

from collections.abc import Sequence

BARS = "▁▂▃▄▅▆▇█"
GAP = " "
"""A column with no value (no request finished, no server figure): blank, not a zero bar."""
CAPACITY = 512


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


class Series:
    """Values of one figure, one per interval, merged pairwise once `capacity` are held.

    `None` is kept as a gap; a merged point is the mean of the values it covers, a gap only if
    all of them were gaps.
    """

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = max(2, capacity - capacity % 2)
        self.span = 1
        """Intervals per point."""
        self._points: list[float | None] = []
        self._pending: list[float] = []
        self._pending_count = 0

    def add(self, value: float | None) -> None:
        self._pending_count += 1
        if value is not None:
            self._pending.append(value)
        if self._pending_count < self.span:
            return
        self._points.append(_mean(self._pending))
        self._pending, self._pending_count = [], 0
        if len(self._points) >= self.capacity:
            pairs = zip(self._points[::2], self._points[1::2], strict=True)
            self._points = [_merge(a, b) for a, b in pairs]
            self.span *= 2

    def values(self) -> list[float | None]:
        """Every point, the partly filled last one included."""
        if self._pending_count:
            return [*self._points, _mean(self._pending)]
        return list(self._points)


def _merge(a: float | None, b: float | None) -> float | None:
    return _mean([v for v in (a, b) if v is not None])


def columns(values: Sequence[float | None], width: int) -> list[float | None]:
    """`values` squeezed into at most `width` columns, each the mean of the values it covers."""
    if width <= 0:
        return []
    if len(values) <= width:
        return list(values)
    out: list[float | None] = []
    for column in range(width):
        start = column * len(values) // width
        end = (column + 1) * len(values) // width
        out.append(_mean([v for v in values[start:end] if v is not None]))
    return out


def sparkline(values: Sequence[float | None], width: int, ceiling: float | None = None) -> str:
    """One row of bars: `chart` with a single row."""
    return chart(values, width, 1, ceiling)[0]


def chart(
    values: Sequence[float | None], width: int, rows: int = 1, ceiling: float | None = None
) -> list[str]:
    """`rows` lines of bars (top line first), one column per value, from zero to `ceiling`
    (default: the largest value shown); each row holds eight levels of a bar.

    Bars start at zero rather than at the smallest value, so a flat series looks flat and a drop
    from 8 to 7 QPS is not drawn as a fall to nothing. A zero is the lowest bar, drawn; a column
    without a value is left blank.
    """
    shown = columns(values, width)
    top = ceiling if ceiling is not None else max((v for v in shown if v is not None), default=0)
    steps = len(BARS) * rows
    grid = [[GAP] * len(shown) for _ in range(rows)]
    for column, value in enumerate(shown):
        if value is None:
            continue
        height = round(min(max(value, 0.0), top) / top * steps) if top > 0 else 0
        for row in range(rows):
            fill = height - row * len(BARS)
            if fill > 0:
                grid[row][column] = BARS[min(fill, len(BARS)) - 1]
        if height == 0:
            grid[0][column] = BARS[0]
    return ["".join(line) for line in reversed(grid)]
