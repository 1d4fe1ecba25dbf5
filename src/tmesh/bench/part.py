"""One part of a run spread over processes (`--workers`) or machines (`--ray`): its share of the
load, its own recorder and its own request files.

A part never ships its records. It appends them to its own `requests.part<P>.jsonl` and, at each
interval boundary, hands the driver a `PartReport`: the window its recorder took (encoded
histograms and counters, a few KB whatever the request rate) and its client health. The driver's
recorder absorbs the windows, so its blocks and summary are those one process would have
produced from the union of the records, to the histograms' precision.

Request `i` of the tiling order belongs to the part that owns its context (`context mod N`), so a
context's revisits stay on one part and meet the cache exactly as they would from one process;
sessions are split by user and by session arrival in the same way. Part `w` keeps `max_inflight`
slots divided as evenly as possible, and so for `--max-requests`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from tmesh.bench.endpoint.session import open_session
from tmesh.bench.load.client import ClientConfig
from tmesh.bench.load.http import Pool
from tmesh.bench.load.runner import LoopControl, StopRules
from tmesh.bench.load.traffic import Traffic, make_loop
from tmesh.bench.measure.goodput import Slo
from tmesh.bench.measure.recorder import Recorder, WindowPart
from tmesh.bench.measure.sessions import DEFAULT_GAP_EDGES
from tmesh.bench.workload.sessions import AnswerCosts
from tmesh.results.records import ClientHealth, RequestRecord, StopReason, WorkloadSpec
from tmesh.results.rundir import RequestLog


@dataclass
class PartTask:
    """Everything one part needs; picklable. `origin` is the run's start on the part's own
    monotonic clock; the part starts sending at `origin + start_at`. Request files go to
    `folder` (the run folder for local processes, a folder on the node for a cluster)."""

    traffic: Traffic
    config: ClientConfig
    origin: float
    insecure: bool
    interval_s: float
    rules: StopRules
    spec: WorkloadSpec
    folder: str
    warmup: float = 0.0
    slo: Slo | None = None
    gap_edges: tuple[float, ...] = DEFAULT_GAP_EDGES
    max_records: int | None = None
    start_at: float = 0.0

    @property
    def part(self) -> int:
        return self.traffic.worker


@dataclass
class PartEnd:
    """How a part's loop ended, and where its requests are."""

    stop_reason: StopReason | None
    fatal: str | None
    files: list[str]
    records: int


@dataclass
class PartReport:
    """Window `index` of part `part` (window k holds what the part finished between boundaries
    k-1 and k); the last report of a part carries its `end`."""

    part: int
    index: int
    window: WindowPart
    health: ClientHealth
    end: PartEnd | None = None
    inflight: int = 0


def slot_shares(total: int, parts: int) -> list[int]:
    """`total` split over parts, the first ones taking the remainder."""
    base, extra = divmod(total, parts)
    return [base + (1 if w < extra else 0) for w in range(parts)]


def part_count(wanted: int, traffic: Traffic, contexts: int) -> int:
    """No more parts than in-flight slots, nor (closed and open loop) than contexts, so that no
    part is left with nothing to send."""
    limit = traffic.cap if traffic.kind == "sessions" else min(traffic.cap, contexts)
    return max(1, min(wanted, limit))


def part_tasks(parts: int, template: PartTask) -> list[PartTask]:
    """Split one run over `parts`; the driver keeps the run-wide rules (duration, first minute,
    the same client error), each part its share of `--max-requests` and the consecutive-error
    limit."""
    traffic, rules = template.traffic, template.rules
    parts = part_count(parts, traffic, template.spec.num_contexts)
    shares = slot_shares(traffic.cap, parts)
    request_shares = slot_shares(rules.max_requests, parts) if rules.max_requests else None
    return [
        replace(
            template,
            traffic=traffic.part(w, parts, shares[w]),
            rules=StopRules(
                max_requests=request_shares[w] if request_shares else None,
                max_consecutive_errors=rules.max_consecutive_errors,
                first_minute_s=float("inf"),
                same_client_error=None,
                grace_s=rules.grace_s,
            ),
        )
        for w in range(parts)
    ]


ShipFn = Callable[[PartReport], None]


async def run_part(task: PartTask, ship: ShipFn, on_loop: Callable[[LoopControl], None]) -> None:
    """Send this part's requests until its rules or the driver stop it (`on_loop` receives the
    loop, whose `request_stop` the caller wires to the driver's stop), shipping a report at each
    interval boundary and a last one with the part's end."""
    recorder = Recorder(task.spec, task.warmup, task.interval_s, task.slo, task.gap_edges)
    log = RequestLog(Path(task.folder), task.part, task.max_records)
    windows = 0

    def on_record(record: RequestRecord) -> None:
        recorder.add(record)
        log.append(record)

    async def on_tick(now: float, health: ClientHealth) -> None:
        nonlocal windows
        windows += 1
        log.flush()
        ship(PartReport(task.part, windows, recorder.take_part(), health, inflight=loop.inflight))

    delay = task.origin + task.start_at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    try:
        async with (
            Pool(task.traffic.cap, task.insecure) as pool,
            open_session(2, task.insecure) as session,
        ):
            texts = task.traffic.sessions
            costs = AnswerCosts(texts, session) if texts else None
            loop = make_loop(
                task.traffic, pool, task.config, costs, on_record, on_tick, task.rules,
                task.origin, task.interval_s,
            )  # fmt: skip
            on_loop(loop)
            state = await loop.run()
    finally:
        log.close()
    end = PartEnd(state.stop_reason, state.fatal, [str(p) for p in log.files], log.records_written)
    ship(PartReport(task.part, windows + 1, recorder.take_part(), loop.health(loop.now()), end))
