"""The closed loop's contract: concurrency bound, stop rules, back-off, health figures."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from tmesh.bench.load.runner import LoadLoop, LoadMeter, StopRules, next_backoff
from tmesh.results.records import RequestPlan, RequestRecord


def _plans():
    for i in itertools.count():
        yield RequestPlan(i, i % 3, 0, i // 3, i // 3, "ctx", "q", 10)


class FakeServer:
    """Answers after a yield to the loop; tracks the peak number of concurrent requests."""

    def __init__(self, fail_kind: str | None = None, retry_after: float | None = None) -> None:
        self.active = self.peak = self.calls = 0
        self.fail_kind, self.retry_after = fail_kind, retry_after
        self.release = asyncio.Event()

    async def send(self, plan: RequestPlan) -> RequestRecord:
        self.calls += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        finally:
            self.active -= 1
        record = RequestRecord(plan.index, plan.context_id, 0, plan.visit, plan.rotation, t0=0.0)
        if self.fail_kind:
            record.error = self.fail_kind
            record.retry_after = self.retry_after
        else:
            record.t_first, record.t_last, record.t_end = 0.1, 0.2, 0.2
            record.prompt_tokens, record.completion_tokens = 10, 3
        return record


async def _noop_tick(now, health) -> None:
    return None


def _loop(server: FakeServer, records: list, inflight: int, rules: StopRules) -> LoadLoop:
    return LoadLoop(
        _plans(), server.send, records.append, _noop_tick, inflight, rules, time.monotonic(), 60.0
    )


async def test_max_requests_stops_and_bounds_concurrency() -> None:
    server, records = FakeServer(), []
    state = await _loop(server, records, 4, StopRules(max_requests=50)).run()
    assert state.stop_reason == "max-requests"
    assert len(records) == 50 == server.calls
    assert server.peak == 4
    assert [r.context_id for r in sorted(records, key=lambda r: r.index)][:6] == [0, 1, 2, 0, 1, 2]


async def test_consecutive_errors_stop_with_fatal_message() -> None:
    server, records = FakeServer(fail_kind="http_5xx"), []
    state = await _loop(server, records, 2, StopRules(max_consecutive_errors=5)).run()
    assert state.stop_reason == "errors"
    assert "5 consecutive requests failed" in (state.fatal or "")
    assert state.failures >= 5


async def test_request_stop_ends_the_loop() -> None:
    server, records = FakeServer(), []
    loop = _loop(server, records, 3, StopRules())

    def on_record(record: RequestRecord) -> None:
        records.append(record)
        if len(records) == 10:
            loop.request_stop("signal")

    loop._on_record = on_record
    state = await loop.run()
    assert state.stop_reason == "signal"
    assert 10 <= len(records) <= 12


async def test_a_slot_that_raises_stops_the_run_and_the_error_surfaces() -> None:
    server, records = FakeServer(), []
    loop = _loop(server, records, 3, StopRules())

    def on_record(record: RequestRecord) -> None:
        records.append(record)
        if len(records) == 5:
            raise OSError(28, "No space left on device")

    loop._on_record = on_record
    with pytest.raises(OSError, match="No space left"):
        await asyncio.wait_for(loop.run(), 10)
    assert loop.state.stop_reason == "failed"
    assert len(records) < 5 + 2 * 3


def test_backoff_honours_retry_after_and_caps_it() -> None:
    rec = RequestRecord(0, 0, 0, 0, 0, 0.0, error="http_429", retry_after=2.5)
    assert next_backoff(rec, 0.0) == 2.5
    rec.retry_after = 3600
    assert next_backoff(rec, 0.0) == 30.0
    refused = RequestRecord(0, 0, 0, 0, 0, 0.0, error="connect")
    assert next_backoff(refused, 0.0) == 0.05
    assert next_backoff(refused, 1.5) == 2.0
    assert next_backoff(RequestRecord(0, 0, 0, 0, 0, 0.0), 1.0) == 0.0


def test_meter_time_weighted_inflight() -> None:
    meter = LoadMeter(target=4)
    meter.start(0.0)
    meter.change(0.0, +2)
    meter.change(1.0, +2)
    meter.dispatched(0.002)
    meter.dispatched(0.004)
    health = meter.take(2.0)
    assert health.inflight_mean == 3.0
    assert health.inflight_target == 4
    assert abs(health.dispatch_delay_ms - 3.0) < 1e-9


class RefusingServer(FakeServer):
    """Answers every request with a client error: `statuses` in turn, then the last forever."""

    def __init__(self, *statuses: int) -> None:
        super().__init__(fail_kind="http_4xx")
        self.statuses = list(statuses)

    async def send(self, plan: RequestPlan) -> RequestRecord:
        record = await super().send(plan)
        record.status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        record.error_detail = f"HTTP {record.status} refused"
        return record


async def test_the_same_client_error_from_the_first_requests_stops_the_run() -> None:
    server, records = RefusingServer(404, 400), []
    state = await _loop(server, records, 1, StopRules()).run()
    assert state.stop_reason == "errors"
    assert state.fatal == (
        "stopping: the first 5 requests all failed with the same client error: HTTP 400 refused"
    )
    assert [r.status for r in records] == [404, 400, 400, 400, 400, 400]


async def test_client_errors_after_a_success_do_not_stop_the_run() -> None:
    server, records = FakeServer(), []
    loop = _loop(server, records, 1, StopRules(max_requests=12))
    refusing = RefusingServer(400)
    calls = itertools.count()

    async def send(plan: RequestPlan) -> RequestRecord:
        return await (server.send(plan) if next(calls) == 0 else refusing.send(plan))

    loop._send = send
    state = await loop.run()
    assert state.stop_reason == "max-requests"


async def test_plans_that_run_out_end_the_run_once_the_last_answer_is_in() -> None:
    """A trace without --loop: every plan is sent and answered, then the run ends by itself."""
    server, records = FakeServer(), []
    plans = itertools.islice(_plans(), 7)
    loop = LoadLoop(
        plans, server.send, records.append, _noop_tick, 3, StopRules(), time.monotonic(), 60.0
    )
    state = await asyncio.wait_for(loop.run(), timeout=30)
    assert state.stop_reason == "end"
    assert sorted(r.index for r in records) == list(range(7))
    assert state.exhausted and state.finished == state.issued == 7
