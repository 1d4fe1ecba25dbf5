"""How a run's load is generated, as one picklable record, and the loop that generates it.

Three kinds: the closed loop (N slots, each sending as soon as its last request ended), the open
loop (requests due at scheduled times) and sessions (conversations). One process or each of
`--workers` processes builds its loop from a `Traffic` with `make_loop`, so a worker runs exactly
what a single process would, on its share.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal

from tmesh.bench.load.arrivals import parse_arrival, schedule, share
from tmesh.bench.load.client import ClientConfig, send_request, send_turn
from tmesh.bench.load.http import Pool
from tmesh.bench.load.openloop import OpenLoop
from tmesh.bench.load.runner import LoadLoop, LoopControl, RecordFn, StopRules, TickFn
from tmesh.bench.load.sessions import SessionLoop
from tmesh.bench.workload.prompts import PromptSet
from tmesh.bench.workload.replay import Replay
from tmesh.bench.workload.schedule import tiling_plans
from tmesh.bench.workload.sessions import AnswerCosts, Conversations, SessionTexts
from tmesh.results.records import RequestPlan, RequestRecord

TrafficKind = Literal["closed", "open", "sessions"]


@dataclass(frozen=True)
class Traffic:
    """What one process sends: `cap` requests in flight at most (its share of `--max-inflight`),
    the contexts' `prompts` or the `sessions`' texts, and for the open loop the total `rate` and
    its `arrival` process. `worker` of `workers` says which share is this process's. A trace's
    `replay` brings its own plans, and its own arrival times for the open loop."""

    kind: TrafficKind
    cap: int
    seed: int
    prompts: PromptSet | None = None
    sessions: SessionTexts | None = None
    rate: float | None = None
    arrival: str = "poisson"
    worker: int = 0
    workers: int = 1
    replay: Replay | None = None

    def part(self, worker: int, workers: int, cap: int) -> Traffic:
        return replace(self, worker=worker, workers=workers, cap=cap)


def worker_plans(prompts: PromptSet, seed: int, worker: int, workers: int) -> Iterator[RequestPlan]:
    """This worker's share of the one global tiling order (same plan indices as a single loop)."""
    return (p for p in tiling_plans(prompts, seed) if p.index % workers == worker)


def make_loop(
    traffic: Traffic, pool: Pool, config: ClientConfig, answer_costs: AnswerCosts | None,
    on_record: RecordFn, on_tick: TickFn, rules: StopRules, origin: float, interval_s: float,
) -> LoopControl:  # fmt: skip
    """The load loop of `traffic`; records carry the worker's number."""
    worker, workers = traffic.worker, traffic.workers
    if traffic.kind == "sessions":
        assert traffic.sessions is not None and answer_costs is not None

        async def turn(plan: RequestPlan) -> tuple[RequestRecord, str]:
            record, answer = await send_turn(pool, config, plan, origin)
            record.worker = worker
            return record, answer

        return SessionLoop(
            Conversations(traffic.sessions), turn, answer_costs, on_record, on_tick, traffic.cap,
            rules, origin, interval_s, parse_arrival(traffic.arrival), worker, workers,
        )  # fmt: skip

    async def send(plan: RequestPlan) -> RequestRecord:
        record = await send_request(pool, config, plan, origin)
        record.worker = worker
        return record

    if traffic.replay is not None:
        plans = traffic.replay.plans()
    else:
        assert traffic.prompts is not None
        plans = worker_plans(traffic.prompts, traffic.seed, worker, workers)
    if traffic.kind == "closed":
        return LoadLoop(plans, send, on_record, on_tick, traffic.cap, rules, origin, interval_s)
    if traffic.replay is not None:
        return OpenLoop(
            plans, traffic.replay.arrivals(), send, on_record, on_tick, traffic.cap, rules,
            origin, interval_s, None,
        )  # fmt: skip
    assert traffic.rate is not None
    arrivals = schedule(parse_arrival(traffic.arrival), traffic.rate, traffic.seed)
    times = share(arrivals, worker, workers)
    return OpenLoop(
        plans, times, send, on_record, on_tick, traffic.cap, rules, origin, interval_s,
        traffic.rate / workers,
    )  # fmt: skip
