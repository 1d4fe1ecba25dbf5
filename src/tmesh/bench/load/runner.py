"""The closed load loop: keep at most N requests outstanding until told to stop.

Each of the N slots is a coroutine that sends a request, hands the record over, and sends the next
one as soon as its own request ended, so the number in flight is exactly the slot count whenever the
server keeps up. The loop knows nothing about presentation: it reports records and periodic ticks
to callbacks and returns why it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from tmesh.results.records import ClientHealth, RequestPlan, RequestRecord, StopReason

SendFn = Callable[[RequestPlan], Awaitable[RequestRecord]]
RecordFn = Callable[[RequestRecord], None]
TickFn = Callable[[float, ClientHealth], Awaitable[None]]

MAX_RETRY_AFTER_S = 30.0
CONNECT_BACKOFF_START_S = 0.05
CONNECT_BACKOFF_MAX_S = 2.0
FIRST_MINUTE_S = 60.0
SAME_CLIENT_ERROR_STOP = 5
LOOP_LAG_SAMPLE_S = 0.1


@dataclass
class StopRules:
    """When the loop ends by itself; `None` means no such limit."""

    duration: float | None = None
    max_requests: int | None = None
    max_consecutive_errors: int | None = None
    first_minute_s: float = FIRST_MINUTE_S
    same_client_error: int | None = SAME_CLIENT_ERROR_STOP
    grace_s: float = 5.0


@dataclass
class LoadMeter:
    """Client-side health over the current interval: achieved concurrency, dispatch delay, loop lag,
    and for scheduled traffic how late requests went out and how often the in-flight cap held
    one back.

    Kept here rather than in the recorder because only the loop sees slots free and refill.
    """

    target: int
    inflight: int = 0
    target_rate: float | None = None
    scheduled: bool = False
    _area: float = 0.0
    _last_change: float = 0.0
    _window_start: float = 0.0
    _dispatch_sum: float = 0.0
    _dispatch_n: int = 0
    _lag_max: float = 0.0
    _sent: int = 0
    _cap_hits: int = 0
    _late_sum: float = 0.0
    _late_max: float = 0.0

    def start(self, now: float) -> None:
        self._window_start = self._last_change = now

    def change(self, now: float, delta: int) -> None:
        self._area += self.inflight * (now - self._last_change)
        self._last_change = now
        self.inflight += delta

    def dispatched(self, delay: float) -> None:
        self._dispatch_sum += delay
        self._dispatch_n += 1
        self._sent += 1

    def sent_late(self, lateness: float) -> None:
        """A scheduled request went out `lateness` seconds after it was due."""
        self._sent += 1
        self._late_sum += lateness
        self._late_max = max(self._late_max, lateness)

    def cap_hit(self) -> None:
        self._cap_hits += 1

    def lag(self, seconds: float) -> None:
        self._lag_max = max(self._lag_max, seconds)

    def take(self, now: float, waiting_since: float | None = None) -> ClientHealth:
        """Close the window and return its figures; `waiting_since` is when the longest-waiting
        scheduled request still held back by the cap was due."""
        self.change(now, 0)
        span = now - self._window_start
        late_max = self._late_max
        if waiting_since is not None:
            late_max = max(late_max, now - waiting_since)
        health = ClientHealth(
            inflight_mean=self._area / span if span > 0 else float(self.inflight),
            inflight_target=self.target,
            dispatch_delay_ms=1000 * self._dispatch_sum / self._dispatch_n
            if self._dispatch_n
            else 0.0,
            loop_lag_ms=1000 * self._lag_max,
            sent=self._sent,
            target_rate=self.target_rate,
            cap_hits=self._cap_hits,
            lateness_ms=1000 * self._late_sum / self._sent
            if self.scheduled and self._sent
            else 0.0,
            lateness_max_ms=1000 * late_max,
            scheduled=self.scheduled,
        )
        self._area, self._window_start = 0.0, now
        self._dispatch_sum, self._dispatch_n, self._lag_max = 0.0, 0, 0.0
        self._sent, self._cap_hits, self._late_sum, self._late_max = 0, 0, 0.0, 0.0
        return health


@dataclass
class LoopState:
    """Counters the stop rules look at."""

    issued: int = 0
    finished: int = 0
    successes: int = 0
    failures: int = 0
    consecutive_errors: int = 0
    same_client_errors: int = 0
    stop_reason: StopReason | None = None
    fatal: str | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    exhausted: bool = False
    """The plans ran out (a trace without `--loop`): the run ends when the last one finished."""

    def ran_out(self) -> None:
        self.exhausted = True
        if self.finished >= self.issued:
            self.request_stop("end")

    def request_stop(self, reason: StopReason, fatal: str | None = None) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.fatal = fatal
        self.stop.set()


class LoopControl:
    """What every way of generating load shares: the clock, the interval ticker and the stop rules.

    Subclasses say how requests are driven (`_drive`) and how client health is measured
    (`_health`); records reach `account`, which applies the stop rules.
    """

    def __init__(
        self, on_record: RecordFn, on_tick: TickFn, target: int, rules: StopRules,
        origin: float, interval_s: float,
    ) -> None:  # fmt: skip
        self._on_record = on_record
        self._on_tick = on_tick
        self._rules = rules
        self._origin = origin
        self._interval = interval_s
        self.meter = LoadMeter(target=target)
        self.state = LoopState()
        self._first_client_error: int | None = None

    def now(self) -> float:
        return time.monotonic() - self._origin

    def request_stop(self, reason: StopReason) -> None:
        self.state.request_stop(reason)

    @property
    def inflight(self) -> int:
        return self.meter.inflight

    async def run(self) -> LoopState:
        """Run until a stop rule or `request_stop`; in-flight requests get `grace_s` to finish."""
        self.meter.start(self.now())
        helpers = [
            asyncio.create_task(self._ticker()),
            asyncio.create_task(self._lag_sampler()),
        ]
        if self._rules.duration is not None:
            helpers.append(asyncio.create_task(self._deadline(self._rules.duration)))
        try:
            await self._drive()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        return self.state

    async def _drive(self) -> None:
        raise NotImplementedError

    def _may_issue(self) -> bool:
        limit = self._rules.max_requests
        return not self.state.stop.is_set() and (limit is None or self.state.issued < limit)

    async def _wind_down(self, tasks: set[asyncio.Task[None]] | list[asyncio.Task[None]]) -> None:
        """Once the run stops, give in-flight requests `grace_s` to finish, cancel the rest, and
        raise what any task raised (the run then ends as failed, with its files)."""
        await self.state.stop.wait()
        tasks = list(tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._rules.grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        """A task that raised must end the run: the others would go on at part of the load
        (none at all once each had hit the same fault) until the deadline, or forever."""
        if not task.cancelled() and task.exception() is not None:
            self.state.request_stop("failed")

    def health(self, now: float) -> ClientHealth:
        return self.meter.take(now)

    def account(self, record: RequestRecord) -> None:
        state = self.state
        state.finished += 1
        if record.ok:
            state.successes += 1
            state.consecutive_errors = 0
        else:
            state.failures += 1
            state.consecutive_errors += 1
        self._count_client_error(record)
        self._on_record(record)
        self._check_rules(record)

    def _count_client_error(self, record: RequestRecord) -> None:
        """Requests failing with the same client error (a 4xx other than 429) before any success.

        A request the server refuses as such (a prompt longer than its context, a model it does
        not serve, a field it rejects) will be refused every time: the run must say why and stop,
        not hammer the server for a minute.
        """
        state = self.state
        if state.successes or record.error != "http_4xx":
            state.same_client_errors = 0
            return
        same = record.status == self._first_client_error
        state.same_client_errors = state.same_client_errors + 1 if same else 1
        self._first_client_error = record.status

    def _check_rules(self, record: RequestRecord) -> None:
        state, rules = self.state, self._rules
        limit = rules.same_client_error
        if limit is not None and state.same_client_errors >= limit:
            state.request_stop(
                "errors",
                fatal=f"stopping: the first {state.same_client_errors} requests all failed with "
                f"the same client error: {record.error_detail or f'HTTP {record.status}'}",
            )
        if rules.max_requests is not None and state.finished >= rules.max_requests:
            state.request_stop("max-requests")
        if state.exhausted and state.finished >= state.issued:
            state.request_stop("end")
        limit = rules.max_consecutive_errors
        if limit is not None and state.consecutive_errors >= limit:
            state.request_stop(
                "errors", fatal=f"stopping: {state.consecutive_errors} consecutive requests failed"
            )

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.state.stop.wait(), timeout=seconds)

    async def _deadline(self, seconds: float) -> None:
        await self._pause(max(0.0, seconds - self.now()))
        self.state.request_stop("duration")

    async def _ticker(self) -> None:
        tick = 0
        while True:
            tick += 1
            await self._pause(max(0.0, tick * self._interval - self.now()))
            if self.state.stop.is_set():
                return
            await self._before_tick(tick)
            now = self.now()
            await self._on_tick(now, self.health(now))
            self._first_minute_rule(now)

    async def _before_tick(self, tick: int) -> None:
        """Called at boundary `tick` before the interval closes: a driver of parts waits there
        for their windows."""

    def _first_minute_rule(self, now: float) -> None:
        state = self.state
        if now >= self._rules.first_minute_s and state.successes == 0 and state.failures > 0:
            state.request_stop(
                "errors",
                fatal=f"stopping: all {state.failures} requests of the first "
                f"{self._rules.first_minute_s:.0f} s failed",
            )

    async def _lag_sampler(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LOOP_LAG_SAMPLE_S)
            self.meter.lag(max(0.0, loop.time() - before - LOOP_LAG_SAMPLE_S))


class LoadLoop(LoopControl):
    """N slot coroutines in this event loop, each sending its next request when its last ended."""

    def __init__(
        self,
        plans: Iterator[RequestPlan],
        send: SendFn,
        on_record: RecordFn,
        on_tick: TickFn,
        max_inflight: int,
        rules: StopRules,
        origin: float,
        interval_s: float = 5.0,
    ) -> None:
        super().__init__(on_record, on_tick, max_inflight, rules, origin, interval_s)
        self._plans = plans
        self._send = send
        self._slots = max_inflight

    async def _drive(self) -> None:
        slots = [asyncio.create_task(self._slot()) for _ in range(self._slots)]
        for slot in slots:
            slot.add_done_callback(self._task_ended)
        await self._wind_down(slots)

    async def _slot(self) -> None:
        freed_at = self.now()
        backoff = 0.0
        while self._may_issue():
            plan = next(self._plans, None)
            if plan is None:
                self.state.ran_out()
                return
            self.state.issued += 1
            start = self.now()
            self.meter.dispatched(start - freed_at)
            self.meter.change(start, +1)
            try:
                record = await self._send(plan)
            finally:
                self.meter.change(self.now(), -1)
            freed_at = self.now()
            self.account(record)
            backoff = next_backoff(record, backoff)
            if backoff > 0 and not self.state.stop.is_set():
                await self._pause(backoff)
                freed_at = self.now()


def next_backoff(record: RequestRecord, previous: float) -> float:
    """How long a slot waits before its next request.

    429 honours Retry-After (capped); connection failures back off exponentially so a server
    that is down is probed gently and the run resumes by itself when it comes back.
    """
    if record.error == "http_429":
        return min(record.retry_after or 1.0, MAX_RETRY_AFTER_S)
    if record.error in ("connect", "timeout"):
        return min(max(previous * 2, CONNECT_BACKOFF_START_S), CONNECT_BACKOFF_MAX_S)
    return 0.0


class Stopper:
    """A stop asked for from outside the run, as a signal would: the Python API's cancelled
    task or failed progress callback. It may come before the load loop exists (during the
    first scrape), so it is kept until the loop is attached."""

    def __init__(self) -> None:
        self.reason: StopReason | None = None
        self._loop: LoopControl | None = None

    def stop(self, reason: StopReason) -> None:
        self.reason = self.reason or reason
        if self._loop is not None:
            self._loop.request_stop(self.reason)

    def attach(self, loop: LoopControl) -> None:
        self._loop = loop
        if self.reason is not None:
            loop.request_stop(self.reason)
