"""Bounded-memory distributions of latencies and throughputs.

A run can last days, so per-request values are never kept: each metric is an HdrHistogram (3
significant digits, a few hundred KB whatever the count) plus an exact running sum, count, min and
max. Histograms merge exactly, so per-interval distributions fold into run-wide ones and, later,
distributions from several workers fold into one.

Values are floats (seconds, tokens/s); the histogram stores integers, so each distribution has a
`scale` (units per value): microseconds for latencies, hundredths of a token/s for throughputs.
Percentiles are nearest-rank (the smallest recorded value with at least p% of values at or below
it), reported as the upper edge of its histogram bucket and clamped to the exact [min, max]; their
relative error is below 0.1 %, plus at most one unit (1/scale) for values near zero.
"""

from __future__ import annotations

import bisect
import ctypes
import itertools
import math
import sys

from hdrh.histogram import HdrHistogram

from tmesh.results.records import MetricStats

SIGNIFICANT_FIGURES = 3
COARSE_FIGURES = 2
LATENCY_SCALE = 1e6
LATENCY_HIGHEST = 86_400.0
THROUGHPUT_SCALE = 100.0
THROUGHPUT_HIGHEST = 1e9
REPORTED_PERCENTILES = (50.0, 90.0, 99.0)
_ENCODING_VERSION = "d1"


class Distribution:
    """Count, exact mean/min/max and approximate percentiles of a stream of non-negative floats.

    Values above `highest` are clamped into the top bucket (their exact value still counts for the
    mean and max) so one pathological request cannot make recording fail mid-run. `figures` are
    the significant figures kept: breakdowns kept by the dozen (by turn, by idle gap) use two,
    which makes a histogram 16 times smaller for a 1 % rather than 0.1 % resolution.
    """

    def __init__(self, scale: float, highest: float, figures: int = SIGNIFICANT_FIGURES) -> None:
        self.scale = scale
        self.highest = highest
        self.figures = figures
        self._hist = HdrHistogram(1, max(2, round(highest * scale)), figures)
        self._top = self._hist.highest_trackable_value
        self.count = 0
        self.total = 0.0
        self.min: float | None = None
        self.max: float | None = None

    @classmethod
    def latency(cls) -> Distribution:
        """Seconds, microsecond resolution, up to a day."""
        return cls(LATENCY_SCALE, LATENCY_HIGHEST)

    @classmethod
    def throughput(cls) -> Distribution:
        """Tokens per second, 0.01 token/s resolution, up to 10^9 tokens/s."""
        return cls(THROUGHPUT_SCALE, THROUGHPUT_HIGHEST)

    @classmethod
    def coarse_latency(cls) -> Distribution:
        """Seconds to two significant figures, for breakdowns."""
        return cls(LATENCY_SCALE, LATENCY_HIGHEST, COARSE_FIGURES)

    @classmethod
    def coarse_throughput(cls) -> Distribution:
        """Tokens per second to two significant figures, for breakdowns."""
        return cls(THROUGHPUT_SCALE, THROUGHPUT_HIGHEST, COARSE_FIGURES)

    def add(self, value: float) -> None:
        scaled = round(value * self.scale)
        if scaled > self._top:
            scaled = self._top
        elif scaled < 0:
            scaled = 0
        self._hist.record_value(scaled)
        self.count += 1
        self.total += value
        if self.min is None or value < self.min:
            self.min = value
        if self.max is None or value > self.max:
            self.max = value

    def reset(self) -> None:
        """Empty in place, keeping the counts array.

        hdrh's own reset zeroes one bucket per Python call (milliseconds per histogram), and a
        discarded HdrHistogram is a reference cycle (histogram <-> encoder) that only the cyclic
        GC frees; reusing the arrays and zeroing them with memset avoids both.
        """
        counts = self._hist.counts
        ctypes.memset(counts, 0, ctypes.sizeof(counts))
        self._hist.total_count = 0
        self._hist.min_value = sys.maxsize
        self._hist.max_value = 0
        self.count = 0
        self.total = 0.0
        self.min = None
        self.max = None

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def merge(self, other: Distribution) -> None:
        """Fold `other` in; the result is what recording both streams into one would give."""
        if (other.scale, other.highest, other.figures) != (self.scale, self.highest, self.figures):
            raise ValueError(
                f"cannot merge distributions of different units "
                f"(scale {other.scale} vs {self.scale}, highest {other.highest} vs "
                f"{self.highest}, figures {other.figures} vs {self.figures})"
            )
        if not other.count:
            return
        self._hist.add(other._hist)
        self.count += other.count
        self.total += other.total
        assert other.min is not None and other.max is not None
        self.min = other.min if self.min is None else min(self.min, other.min)
        self.max = other.max if self.max is None else max(self.max, other.max)

    def percentiles(self, wanted: tuple[float, ...] = REPORTED_PERCENTILES) -> list[float | None]:
        """Nearest-rank percentiles in one pass over the occupied part of the histogram.

        hdrh's own percentile walk calls a Python method per bucket; slicing the counts array
        and bisecting its running sum is several times faster, which matters because snapshots
        run on the event loop that is timing requests.
        """
        if not self.count:
            return [None] * len(wanted)
        assert self.min is not None and self.max is not None
        hist = self._hist
        last = hist.get_counts_array_index(hist.max_value)
        cumulative = list(itertools.accumulate(hist.counts[: last + 1]))
        result: list[float | None] = []
        for p in wanted:
            rank = max(1, math.ceil(round(p * self.count / 100.0, 9)))
            index = bisect.bisect_left(cumulative, min(rank, self.count))
            edge = hist.get_highest_equivalent_value(hist.get_value_from_index(index))
            result.append(min(self.max, max(self.min, edge / self.scale)))
        return result

    def to_stats(self) -> MetricStats:
        p50, p90, p99 = self.percentiles(REPORTED_PERCENTILES)
        return MetricStats(
            count=self.count,
            mean=self.mean,
            p50=p50,
            p90=p90,
            p99=p99,
            min=self.min,
            max=self.max,
        )

    def encode(self) -> str:
        """One line of ASCII: exact aggregates then the compressed histogram, for shipping."""
        blob = self._hist.encode().decode("ascii")
        fields = (self.scale, self.highest, self.count, self.total, self.min, self.max)
        return " ".join([_ENCODING_VERSION, *(repr(f) for f in fields), blob])

    @classmethod
    def decode(cls, text: str) -> Distribution:
        parts = text.split(" ")
        if len(parts) != 8 or parts[0] != _ENCODING_VERSION:
            raise ValueError("not an encoded tmesh distribution")
        scale, highest, count, total = float(parts[1]), float(parts[2]), int(parts[3]), parts[4]
        dist = cls(scale, highest)
        if count:
            dist._hist.add(HdrHistogram.decode(parts[7]))
            dist.count = count
            dist.total = float(total)
            dist.min = float(parts[5])
            dist.max = float(parts[6])
        return dist
