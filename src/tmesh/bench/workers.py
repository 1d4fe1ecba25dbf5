"""`--workers N`: N parts of the run in local processes, each with its own event loop.

Each worker runs `run_part`: it writes its records to its own `requests.part<W>.jsonl` in the run
folder and sends the parent one `PartReport` per interval, never a record: a queue message per
record cost the parent more than the requests did (two workers ran at 0.78x one process on two
cores). Timestamps agree without correction because CLOCK_MONOTONIC is one clock for every
process of a machine.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import queue
import signal
import threading
from collections.abc import Callable
from typing import Any

from tmesh.bench.load.runner import LoopControl
from tmesh.bench.part import PartTask, run_part
from tmesh.bench.parts import PartsDriver

READ_POLL_S = 0.5
PARENT_POLL_S = 0.5


def run_worker(task: PartTask, outbox: Any, stop: Any) -> None:
    """Process entry point: run this worker's part until `stop` delivers a message.

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
        outbox.put(("failed", task.part, f"failed: {type(exc).__name__}: {exc}"))
        if os.environ.get("TMESH_DEBUG"):
            raise


async def _work(task: PartTask, outbox: Any, stop: Any) -> None:
    aio = asyncio.get_running_loop()

    def wire(loop: LoopControl) -> None:
        threading.Thread(
            target=_watch,
            args=(
                stop,
                mp.parent_process(),
                lambda: aio.call_soon_threadsafe(loop.request_stop, "signal"),
            ),
            daemon=True,
        ).start()

    await run_part(task, lambda report: outbox.put(("report", task.part, report)), wire)


def _watch(stop: Any, parent: Any, request_stop: Callable[[], None]) -> None:
    """Wait for the parent's stop message, or for the parent to die.

    A worker ignores Ctrl-C, so one whose parent was killed (`kill -9`, OOM killer) would
    otherwise load the server forever with nobody reading its reports.
    """
    while True:
        try:
            stop.get(timeout=PARENT_POLL_S)
            break
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                break
    request_stop()


class WorkerPool(PartsDriver):
    """The parent's side: starts the worker processes, hands their reports to the driver, stops
    and reaps them."""

    def __init__(self, tasks: list[PartTask], *args: Any, **kwargs: Any) -> None:
        super().__init__(len(tasks), *args, **kwargs)
        self._tasks = tasks
        ctx = mp.get_context("spawn")
        self._outbox = ctx.Queue()
        self._stops = [ctx.Queue() for _ in tasks]
        self._procs = [
            ctx.Process(target=run_worker, args=(task, self._outbox, stop))
            for task, stop in zip(tasks, self._stops, strict=True)
        ]

    def worker_pids(self) -> list[int | None]:
        return [proc.pid for proc in self._procs]

    async def _start(self) -> None:
        for proc in self._procs:
            proc.start()
        threading.Thread(target=self._read, args=(asyncio.get_running_loop(),), daemon=True).start()

    async def _stop_parts(self) -> None:
        for stop in self._stops:
            stop.put(None)

    async def _close(self) -> None:
        """Stop and join every worker: also when the parent fails, so none is left running."""
        await self._stop_parts()
        for proc in self._procs:
            if proc.pid is None:
                continue
            await asyncio.to_thread(proc.join, self._rules.grace_s + READ_POLL_S)
            if proc.is_alive():
                proc.kill()

    def _read(self, aio: asyncio.AbstractEventLoop) -> None:
        """Forward worker messages to the event loop until every worker ended or is gone.

        A worker already dead when a read then finds the queue empty has nothing left in it: if
        it never sent its end, it was lost (killed, say by the OOM killer), and the run stops
        rather than go on with part of its load.
        """
        ended: set[int] = set()
        while len(ended) < len(self._procs):
            dead = {w for w, proc in enumerate(self._procs) if not proc.is_alive()}
            try:
                kind, worker, payload = self._outbox.get(timeout=READ_POLL_S)
            except queue.Empty:
                for w in sorted(dead - ended):
                    ended.add(w)
                    why = f"worker {w} exited unexpectedly (exit code {self._procs[w].exitcode})"
                    aio.call_soon_threadsafe(self.lost_part, w, why)
                continue
            if kind == "failed":
                ended.add(worker)
                aio.call_soon_threadsafe(self.lost_part, worker, f"worker {worker} {payload}")
                continue
            if payload.end is not None:
                ended.add(worker)
            aio.call_soon_threadsafe(self.report, payload)
