"""Open-loop load: every request is due at a time fixed in advance, whatever the server does.

A closed loop sends a request only when an earlier one ended, so a slow server is offered less
load and its queue never shows (coordinated omission). Here requests go out at their scheduled
times; `--max-inflight` remains only a safety cap. A request the cap holds back is never delayed
silently: it is counted as a cap hit, its lateness (actual send - due time) is measured and shown
live, and its record keeps the time it was due, from which latencies are also reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

from tmesh.bench.load.runner import LoopControl, RecordFn, SendFn, StopRules, TickFn
from tmesh.results.records import ClientHealth, RequestPlan

T = TypeVar("T")


class ScheduledLoop(LoopControl):
    """What scheduled traffic shares: sleeping until a due time, the in-flight cap, lateness.

    `cap` bounds the requests in flight; a request due while the cap is reached waits for a slot
    (a cap hit) and goes out late. Subclasses spawn the tasks that send (`_spawn`).
    """

    def __init__(
        self, on_record: RecordFn, on_tick: TickFn, cap: int, rules: StopRules, origin: float,
        interval_s: float, target_rate: float | None,
    ) -> None:  # fmt: skip
        super().__init__(on_record, on_tick, cap, rules, origin, interval_s)
        self.meter.scheduled = True
        self.meter.target_rate = target_rate
        self._cap = cap
        self._busy = 0
        self._freed = asyncio.Event()
        self._waiting: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._failed: asyncio.Task[None] | None = None

    def health(self, now: float) -> ClientHealth:
        return self.meter.take(now, min(self._waiting.values(), default=None))

    async def _until(self, due: float) -> bool:
        """Sleep until `due` (seconds since the start); False when the run stopped meanwhile."""
        wait = due - self.now()
        if wait > 0:
            await self._pause(wait)
        return not self.state.stop.is_set()

    async def _slot(self, due: float) -> bool:
        """Take an in-flight slot for a request due at `due`; False when the run stopped while
        it waited for one."""
        if self._busy >= self._cap:
            self.meter.cap_hit()
            key = id(asyncio.current_task())
            self._waiting[key] = due
            try:
                while self._busy >= self._cap and not self.state.stop.is_set():
                    self._freed.clear()
                    await _first(self._freed.wait(), self.state.stop.wait())
            finally:
                del self._waiting[key]
            if self.state.stop.is_set():
                return False
        self._busy += 1
        return True

    async def _sent(self, due: float, send: Callable[[], Awaitable[T]]) -> T:
        """Send in a slot already taken, measuring lateness and concurrency; frees the slot."""
        start = self.now()
        self.meter.sent_late(max(0.0, start - due))
        self.meter.change(start, +1)
        try:
            return await send()
        finally:
            self.meter.change(self.now(), -1)
            self._busy -= 1
            self._freed.set()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_ended)

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._failed = task
        super()._task_ended(task)

    async def _wind_down_spawned(self) -> None:
        """Wind down the spawned tasks; one that raised and already ended still fails the run."""
        await self._wind_down(self._tasks)
        if self._failed is not None:
            raise self._failed.exception()  # type: ignore[misc]


class OpenLoop(ScheduledLoop):
    """The requests of `plans` at the times of `times`, each in its own task."""

    def __init__(
        self, plans: Iterator[RequestPlan], times: Iterator[float], send: SendFn,
        on_record: RecordFn, on_tick: TickFn, cap: int, rules: StopRules, origin: float,
        interval_s: float, target_rate: float | None,
    ) -> None:  # fmt: skip
        super().__init__(on_record, on_tick, cap, rules, origin, interval_s, target_rate)
        self._plans = plans
        self._times = times
        self._send = send

    async def _drive(self) -> None:
        for plan, due in zip(self._plans, self._times, strict=False):
            if not (self._may_issue() and await self._until(due) and await self._slot(due)):
                break
            self.state.issued += 1
            self._spawn(self._one(plan, due))
        else:
            self.state.ran_out()
        await self._wind_down_spawned()

    async def _one(self, plan: RequestPlan, due: float) -> None:
        record = await self._sent(due, lambda: self._send(plan))
        record.t_intended = due
        self.account(record)


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    """Wait until the first of `waits` completes; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
