"""The benchmark's own aggregates, rebuilt from `requests.jsonl` when its files lack them.

An interrupted run may have no `summary.json`, and a run cut short in its first seconds no
`intervals.jsonl`. Replaying the records through the benchmark's `Recorder` (in the order they
were written, which is the order they finished) reproduces exactly what it would have written,
with the same definitions and the same histograms, instead of a second implementation of them.
"""

from __future__ import annotations

from dataclasses import replace

from tmesh.bench.measure.goodput import Slo
from tmesh.bench.measure.recorder import Recorder
from tmesh.bench.measure.sessions import DEFAULT_GAP_EDGES
from tmesh.results.records import IntervalSnapshot, RequestRecord, RunSummary, WorkloadSpec


class Replay:
    """Feeds records to a `Recorder`, closing an interval at each multiple of `interval_seconds`."""

    def __init__(
        self,
        spec: WorkloadSpec,
        warmup_seconds: float,
        interval_seconds: float,
        slo: Slo | None = None,
        gap_edges: tuple[float, ...] = DEFAULT_GAP_EDGES,
    ) -> None:
        self.recorder = Recorder(spec, warmup_seconds, interval_seconds, slo, gap_edges)
        self.interval_seconds = interval_seconds
        self.intervals: list[IntervalSnapshot] = []
        self.horizon = 0.0
        self._next_close = interval_seconds
        self._open = False

    def add(self, record: RequestRecord) -> None:
        finished = record.t_end if record.t_end is not None else record.t0
        while finished >= self._next_close:
            self._close(self._next_close)
            self._next_close += self.interval_seconds
        self.recorder.add(record)
        self.horizon = max(self.horizon, finished)
        self._open = True

    def finish(self) -> list[IntervalSnapshot]:
        """All intervals, the last one ending at the last request (it may be shorter)."""
        if self._open:
            self._close(self.horizon)
        return self.intervals

    def summary(self, recorded: list[IntervalSnapshot]) -> RunSummary:
        """What `summary.json` would have said had the run stopped after its last request.

        `recorded` are the intervals the run did write: they know how long it really lasted and
        what the client and server looked like last, which the records alone do not.
        """
        last = recorded[-1] if recorded else None
        elapsed = max(self.horizon, last.elapsed if last else 0.0)
        summary = self.recorder.summary(elapsed, "interrupted", "unknown")
        if last is None:
            return summary
        return replace(summary, health=last.health, server=last.server)

    def _close(self, now: float) -> None:
        self.intervals.append(self.recorder.snapshot(now))
        self._open = False
