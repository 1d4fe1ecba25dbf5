"""The driver of a run spread over parts (`--workers` processes, `--ray` actors): it absorbs their
windows into the run's one recorder, closes each interval once every part's window for it is in,
and ends the run when they have all ended.

How parts are started, reached and stopped is a transport's business (`bench.workers`,
`bench.ray_pool`); a transport hands every `PartReport` to `report` and every part it lost to
`lost`. A lost part stops the run with one line naming it, unless the run tolerates losses: then
it goes on with the rest, and every later block and the summary say how many were lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tmesh.bench.load.runner import LoopControl, StopRules, TickFn
from tmesh.bench.measure.recorder import WindowPart
from tmesh.bench.part import PartReport
from tmesh.results.records import ClientHealth, StopReason

WINDOW_WAIT_MIN_S = 2.0
"""How long the driver waits past a boundary for a part's window (at least; an interval at
most): a window that comes later is counted in the next interval."""


class PartsDriver(LoopControl):
    """The parent's side of a spread run; subclasses start (`_start`) and stop (`_stop_parts`,
    `_close`) the parts."""

    def __init__(
        self, parts: int, absorb: Callable[[WindowPart], None], on_tick: TickFn, target: int,
        rules: StopRules, origin: float, interval_s: float, tolerate_loss: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(lambda record: None, on_tick, target, rules, origin, interval_s)
        self.parts = parts
        self.tolerate_loss = tolerate_loss
        self.lost: dict[int, str] = {}
        self.gathered = True
        """The parts' request files are in the run folder (else on their nodes)."""
        self.ends: dict[int, Any] = {}
        self._absorb = absorb
        self._received = dict.fromkeys(range(parts), 0)
        self._pending: list[PartReport] = []
        self._latest: dict[int, ClientHealth] = {}
        self._inflight: dict[int, int] = {}
        self._arrived = asyncio.Event()
        self._all_ended = asyncio.Event()

    @property
    def running(self) -> set[int]:
        return set(range(self.parts)) - set(self.ends) - set(self.lost)

    async def _drive(self) -> None:
        stopper = asyncio.create_task(self._stop_on_request())
        try:
            await self._start()
            await self._all_ended.wait()
        finally:
            stopper.cancel()
            await asyncio.gather(stopper, return_exceptions=True)
            await self._close()
            self._absorb_through(None)
        self._adopt_parts_reason()

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop_parts(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        """Release the parts, also when the driver fails, so none is left running."""

    async def _stop_on_request(self) -> None:
        await self.state.stop.wait()
        await self._stop_parts()

    def report(self, report: PartReport) -> None:
        """A part's window (and, last, its end) arrived: kept until its interval closes."""
        if report.part in self.lost:
            return
        self._pending.append(report)
        self._received[report.part] = report.index
        self._latest[report.part] = report.health
        self._inflight[report.part] = report.inflight
        for window in (report.window.warmup, report.window.steady):
            if window is not None:
                self.state.successes += window["requests"]
                self.state.failures += sum(window["errors"].values())
        if report.end is not None:
            self.ends[report.part] = report.end
            self._inflight[report.part] = 0
            if report.end.fatal and not self.tolerate_loss:
                self.state.request_stop(report.end.stop_reason or "errors", report.end.fatal)
        self._arrived.set()
        self._check_all_ended()

    def lost_part(self, part: int, why: str) -> None:
        """A part died or failed before its end: stop, naming it, or go on without it."""
        if part in self.ends or part in self.lost:
            return
        self.lost[part] = why
        self._latest.pop(part, None)
        self._inflight.pop(part, None)
        if not self.tolerate_loss or not self.running:
            self.state.request_stop("worker-lost", fatal=f"stopping: {why}")
        self._arrived.set()
        self._check_all_ended()

    def _check_all_ended(self) -> None:
        if not self.running:
            self._all_ended.set()

    async def _before_tick(self, tick: int) -> None:
        """Wait for every running part's window `tick` (a bounded time), then absorb up to it."""
        wait = max(WINDOW_WAIT_MIN_S, self._interval)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._windows_in(tick), wait)
        self._absorb_through(tick)

    async def _windows_in(self, tick: int) -> None:
        while any(self._received[p] < tick for p in self.running):
            self._arrived.clear()
            await self._arrived.wait()

    def _absorb_through(self, tick: int | None) -> None:
        keep = []
        for report in self._pending:
            if tick is None or report.index <= tick:
                self._absorb(report.window)
            else:
                keep.append(report)
        self._pending = keep

    def _adopt_parts_reason(self) -> None:
        """Parts that all stopped for one reason of their own (each its share of
        `--max-requests`) stopped the run for it."""
        reasons: set[StopReason | None] = {end.stop_reason for end in self.ends.values()}
        if self.state.stop_reason is None and len(reasons) == 1:
            reason = reasons.pop()
            if reason is not None:
                self.state.request_stop(reason)

    def health(self, now: float) -> ClientHealth:
        """Parts' figures merged: in-flight, sends and cap hits add up, delays and lateness
        average (lateness weighted by sends), the worst lag and lateness win."""
        own = self.meter.take(now)
        reports = list(self._latest.values())
        lost = len(self.lost)
        if not reports:
            return ClientHealth(0.0, self.meter.target, 0.0, own.loop_lag_ms, parts_lost=lost)
        sent = sum(h.sent for h in reports)
        rates = [h.target_rate for h in reports if h.target_rate is not None]
        return ClientHealth(
            inflight_mean=sum(h.inflight_mean for h in reports),
            inflight_target=self.meter.target,
            dispatch_delay_ms=sum(h.dispatch_delay_ms for h in reports) / len(reports),
            loop_lag_ms=max([own.loop_lag_ms, *(h.loop_lag_ms for h in reports)]),
            sent=sent,
            target_rate=sum(rates) if rates else None,
            cap_hits=sum(h.cap_hits for h in reports),
            lateness_ms=sum(h.lateness_ms * h.sent for h in reports) / sent if sent else 0.0,
            lateness_max_ms=max(h.lateness_max_ms for h in reports),
            scheduled=any(h.scheduled for h in reports),
            parts_lost=lost,
        )

    @property
    def inflight(self) -> int:
        return sum(self._inflight.values())

    def parts_summary(self) -> list[dict[str, Any]]:
        """What `summary.json` says of each part: where its requests are, or how it was lost."""
        found = []
        for part in range(self.parts):
            entry: dict[str, Any] = {"part": part, **self._placement(part)}
            if part in self.ends:
                end = self.ends[part]
                files = [Path(f).name for f in end.files] if self.gathered else end.files
                entry.update(files=files, records=end.records)
            if part in self.lost:
                entry["lost"] = self.lost[part]
            found.append(entry)
        return found

    def _placement(self, part: int) -> dict[str, Any]:
        return {}
