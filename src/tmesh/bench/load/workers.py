"""`--workers N`: N load processes, each with its own event loop, sharing one workload and limit.

A worker is a plain function of (its share of the traffic, the endpoint) that streams back the
records it measured, so the same function can later run on other machines under a distributed
engine. Request `i` of the tiling order (and arrival `i` of an open-loop schedule) belongs to
worker `i mod N`, and so do user `u` and session arrival `i` of a sessions workload; worker `w`
keeps `max_inflight` slots divided as evenly as possible. Every record comes back to the parent,
whose single recorder sees them all: statistics are exact, not averages of per-worker averages.
Timestamps stay comparable because CLOCK_MONOTONIC is one clock for every process of a machine.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tmesh.bench.endpoint.session import open_session
from tmesh.bench.load.client import ClientConfig
from tmesh.bench.load.http import Pool
from tmesh.bench.load.runner import LoopControl, RecordFn, StopRules, TickFn
from tmesh.bench.load.traffic import Traffic, make_loop
from tmesh.bench.workload.sessions import AnswerCosts
from tmesh.results.records import ClientHealth

READ_POLL_S = 0.5
PARENT_POLL_S = 0.5


@dataclass
class WorkerTask:
    """Everything one worker process needs; picklable."""

    traffic: Traffic
    config: ClientConfig
    origin: float
    insecure: bool
    interval_s: float
    rules: StopRules


def slot_shares(max_inflight: int, workers: int) -> list[int]:
    """`max_inflight` split over workers, the first ones taking the remainder."""
    base, extra = divmod(max_inflight, workers)
    return [base + (1 if w < extra else 0) for w in range(workers)]


def run_worker(task: WorkerTask, outbox: Any, stop: Any) -> None:
    """Process entry point: send this worker's requests until `stop` delivers a message.

    `stop` is a queue, not an Event: setting a multiprocessing Event waits for every process
    sleeping on it to wake, and hangs forever once one of them has exited.

    Ctrl-C (and a SIGTERM sent to the process group) reaches every worker; only the parent
    decides how a run ends, and a worker whose parent is gone stops by itself. A failure
    goes to the parent as one line, which stops the run with it, rather than as a traceback
    (`TMESH_DEBUG=1` shows that too).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        asyncio.run(_work(task, outbox, stop))
    except Exception as exc:
        outbox.put(("failed", task.traffic.worker, f"failed: {type(exc).__name__}: {exc}"))
        if os.environ.get("TMESH_DEBUG"):
            raise


async def _work(task: WorkerTask, outbox: Any, stop: Any) -> None:
    worker = task.traffic.worker
    async with (
        Pool(task.traffic.cap, task.insecure) as pool,
        open_session(2, task.insecure) as session,
    ):

        async def tick(now: float, health: ClientHealth) -> None:
            outbox.put(("health", worker, health))

        texts = task.traffic.sessions
        loop = make_loop(
            task.traffic,
            pool,
            task.config,
            AnswerCosts(texts, session) if texts else None,
            lambda record: outbox.put(("record", worker, record)),
            tick,
            task.rules,
            task.origin,
            task.interval_s,
        )
        aio = asyncio.get_running_loop()
        watcher = threading.Thread(
            target=_watch,
            args=(
                stop,
                mp.parent_process(),
                lambda: aio.call_soon_threadsafe(loop.request_stop, "signal"),
            ),
            daemon=True,
        )
        watcher.start()
        await loop.run()
    outbox.put(("done", worker, None))


def _watch(stop: Any, parent: Any, request_stop: Callable[[], None]) -> None:
    """Wait for the parent's stop message, or for the parent to die.

    A worker ignores Ctrl-C, so one whose parent was killed (`kill -9`, OOM killer) would
    otherwise load the server forever with nobody reading its records.
    """
    while True:
        try:
            stop.get(timeout=PARENT_POLL_S)
            break
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                break
    request_stop()


class WorkerPool(LoopControl):
    """The parent's side: starts the workers, feeds their records to the recorder, stops them."""

    def __init__(
        self,
        tasks: list[WorkerTask],
        on_record: RecordFn,
        on_tick: TickFn,
        rules: StopRules,
        origin: float,
        interval_s: float,
    ) -> None:
        cap = sum(t.traffic.cap for t in tasks)
        super().__init__(on_record, on_tick, cap, rules, origin, interval_s)
        self._tasks = tasks
        self._latest: dict[int, ClientHealth] = {}

    async def _drive(self) -> None:
        ctx = mp.get_context("spawn")
        outbox = ctx.Queue()
        stops = [ctx.Queue() for _ in self._tasks]
        procs = [
            ctx.Process(target=run_worker, args=(task, outbox, stop))
            for task, stop in zip(self._tasks, stops, strict=True)
        ]
        for proc in procs:
            proc.start()
        aio = asyncio.get_running_loop()
        all_done = asyncio.Event()
        reader = threading.Thread(
            target=self._read, args=(outbox, procs, aio, all_done), daemon=True
        )
        reader.start()
        stopper = asyncio.create_task(self._stop_workers_on(stops))
        try:
            await all_done.wait()
        finally:
            stopper.cancel()
            await self._reap(procs, stops)

    async def _reap(self, procs: list[Any], stops: list[Any]) -> None:
        """Stop and join every worker: also when the parent fails, so none is left running."""
        for stop in stops:
            stop.put(None)
        for proc in procs:
            await asyncio.to_thread(proc.join, self._rules.grace_s)
            if proc.is_alive():
                proc.kill()

    async def _stop_workers_on(self, stops: list[Any]) -> None:
        await self.state.stop.wait()
        for stop in stops:
            stop.put(None)

    def _read(
        self, outbox: Any, procs: list[Any], aio: asyncio.AbstractEventLoop, done: Any
    ) -> None:
        """Forward worker messages to the event loop until every worker said done or is gone.

        A worker already dead when a read then finds the queue empty has nothing left in it: if
        it never said done, it was lost (killed, say by the OOM killer), and the run stops
        rather than go on with part of its load.
        """
        ended: set[int] = set()
        while len(ended) < len(procs):
            dead = {w for w, proc in enumerate(procs) if not proc.is_alive()}
            try:
                kind, worker, payload = outbox.get(timeout=READ_POLL_S)
            except queue.Empty:
                for w in sorted(dead - ended):
                    ended.add(w)
                    why = f"exited unexpectedly (exit code {procs[w].exitcode})"
                    aio.call_soon_threadsafe(self._lost, w, why)
                continue
            if kind == "done":
                ended.add(worker)
            elif kind == "failed":
                ended.add(worker)
                aio.call_soon_threadsafe(self._lost, worker, payload)
            else:
                aio.call_soon_threadsafe(self._receive, kind, worker, payload)
        aio.call_soon_threadsafe(done.set)

    def _lost(self, worker: int, why: str) -> None:
        self.state.request_stop("worker-lost", fatal=f"stopping: worker {worker} {why}")

    def _receive(self, kind: str, worker: int, payload: Any) -> None:
        if kind == "health":
            self._latest[worker] = payload
        else:
            self.account(payload)

    def health(self, now: float) -> ClientHealth:
        """Workers' figures merged: in-flight, sends and cap hits add up, delays and lateness
        average (lateness weighted by sends), the worst lag and lateness win."""
        own = self.meter.take(now)
        reports = list(self._latest.values())
        if not reports:
            return ClientHealth(0.0, self.meter.target, 0.0, own.loop_lag_ms)
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
        )

    @property
    def inflight(self) -> int:
        return round(sum(h.inflight_mean for h in self._latest.values()))


def worker_tasks(
    workers: int, traffic: Traffic, config: ClientConfig, origin: float, insecure: bool,
    interval_s: float, rules: StopRules,
) -> list[WorkerTask]:  # fmt: skip
    """Split one run over `workers` processes; the parent keeps the run-wide stop rules."""
    workers = min(workers, traffic.cap)
    shares = slot_shares(traffic.cap, workers)
    request_shares = slot_shares(rules.max_requests, workers) if rules.max_requests else None
    return [
        WorkerTask(
            traffic=traffic.part(w, workers, shares[w]),
            config=config,
            origin=origin,
            insecure=insecure,
            interval_s=interval_s,
            rules=StopRules(
                max_requests=request_shares[w] if request_shares else None,
                first_minute_s=float("inf"),
                same_client_error=None,
                grace_s=rules.grace_s,
            ),
        )
        for w in range(workers)
    ]
