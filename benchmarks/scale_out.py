"""Load spread over processes and actors: as fast as one process, and as accurate.

Throughput: a closed loop of 100-token streams against the zero-latency server (`_sse_server.py`,
its own process), run three ways for the same time: in this process (`run_part`, exactly what
`tmesh-cli benchmark` runs in one process), as `--workers 2` (`WorkerPool`), and with `--ray` as
2 actors on a local two-node cluster (`RayPool`), in `--rounds` rounds (the machine may be shared:
the median of the ratios is the figure). Requests/s are the driver's own figures (its recorder,
fed the parts' windows).

Accuracy (`--ray` only): the server delays the first token by 200 ms and paces the rest 10 ms
apart; TTFT and ITL as the driver reports them against that truth, and the achieved in-flight
count against the target.

Driver cost: the CPU the driver spends per interval absorbing and closing the windows of 2, 8 and
32 simulated parts (each window from 2,000 requests), without a cluster.

The `--ray` runs start Ray: run this script only inside a network namespace that has loopback
alone, with Ray's outside calls turned off (see README, "Running on a cluster", and `.ci/run`):

    unshare -n sh -c 'ip link set lo up && exec "$@"' sh env RAY_USAGE_STATS_ENABLED=0 \\
        RAY_USAGE_STATS_REPORT_URL=http://127.0.0.1:9/ RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 \\
        HOME=<folder with ray_bootstrap_config.yaml> python benchmarks/scale_out.py --ray

Usage: python benchmarks/scale_out.py [--seconds S] [--inflight N] [--rounds R] [--ray]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from client_speed import TOKENS, fake_server, load_average

from tmesh.bench.load.client import ClientConfig
from tmesh.bench.load.runner import StopRules
from tmesh.bench.load.traffic import Traffic
from tmesh.bench.measure.recorder import Recorder
from tmesh.bench.part import PartReport, PartTask, part_tasks, run_part
from tmesh.bench.workers import WorkerPool
from tmesh.bench.workload.prompts import PromptSet
from tmesh.results.records import ClientHealth, RequestRecord, RunSummary, WorkloadSpec

CONTEXTS = 16
INTERVAL_S = 2.0


def spec(inflight: int, contexts: int = CONTEXTS) -> WorkloadSpec:
    return WorkloadSpec("bench", contexts, 4, inflight, 8, TOKENS)


def template(port: int, inflight: int, seconds: float, folder: str, contexts: int) -> PartTask:
    """Contexts `#<c> …`: with more contexts than requests, the server's log (`--log`) keeps
    every request under its own id."""
    prompts = PromptSet(
        [f"#{c} context " for c in range(contexts)], [["q?"] * 4] * contexts, [8] * contexts,
        [[4] * 4] * contexts, "bench", False,
    )  # fmt: skip
    config = ClientConfig(f"http://127.0.0.1:{port}/v1", "completions", "bench", {}, TOKENS, 30.0)
    rules = StopRules(duration=seconds, grace_s=5.0)
    traffic = Traffic("closed", inflight, 0, prompts)
    return PartTask(
        traffic, config, time.monotonic(), False, INTERVAL_S, rules, spec(inflight, contexts),
        folder,
    )  # fmt: skip


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_process(
    port: int, inflight: int, seconds: float, contexts: int = CONTEXTS
) -> RunSummary:
    with tempfile.TemporaryDirectory() as folder:
        task = template(port, inflight, seconds, folder, contexts)
        recorder = Recorder(task.spec, 0.0, INTERVAL_S)

        def ship(report: PartReport) -> None:
            recorder.absorb(report.window)
            recorder.snapshot(time.monotonic() - task.origin, health=report.health)

        await run_part(task, ship, lambda loop: None)
        return recorder.summary(time.monotonic() - task.origin, "duration", "now")


async def spread(
    port: int, inflight: int, seconds: float, how: str, contexts: int = CONTEXTS
) -> RunSummary:
    with tempfile.TemporaryDirectory() as folder:
        task = template(port, inflight, seconds, folder, contexts)
        recorder = Recorder(task.spec, 0.0, INTERVAL_S)

        async def tick(now: float, health: ClientHealth) -> None:
            recorder.snapshot(now, health=health)

        if how == "workers":
            tasks = part_tasks(2, task)
            driver: Any = WorkerPool(
                tasks, recorder.absorb, tick, inflight, task.rules, task.origin, INTERVAL_S
            )
        else:
            driver = RAY.spread(task, recorder, tick)
        await driver.run()
        if how != "workers":
            RAY.release()
        return recorder.summary(driver.now(), "duration", "now")


def throughput_line(name: str, summary: RunSummary, single: float | None) -> str:
    ratio = f"{summary.qps / single:5.2f}x" if single else "  1.00x"
    inflight = summary.health.inflight_mean
    return f"{name:<22} {summary.qps:9,.0f} req/s  {ratio}  in flight {inflight:5.1f}"


def driver_cost(parts: int, intervals: int = 5) -> float:
    """CPU ms the driver spends per interval on `parts` windows of 2,000 requests each."""
    rng = random.Random(parts)
    workload = spec(64)
    sources = [Recorder(workload, 0.0, INTERVAL_S) for _ in range(parts)]
    driver = Recorder(workload, 0.0, INTERVAL_S)
    spent = 0.0
    for interval in range(intervals):
        windows = []
        for source in sources:
            for i in range(2000):
                t0 = interval * INTERVAL_S + rng.random()
                first = t0 + rng.uniform(0.05, 0.3)
                source.add(RequestRecord(
                    index=i, context_id=i % CONTEXTS, question_id=0, visit=i // CONTEXTS,
                    rotation=0, t0=t0, t_first=first, t_last=first + 0.5, t_end=first + 0.51,
                    prompt_tokens=1000, completion_tokens=50, usage_reported=True,
                ))  # fmt: skip
            windows.append(source.take_part())
        before = cpu_seconds()
        for window in windows:
            driver.absorb(window)
        driver.snapshot((interval + 1) * INTERVAL_S)
        spent += cpu_seconds() - before
    return 1000 * spent / intervals


async def main_async(args: argparse.Namespace) -> None:
    print(
        f"scale-out: {TOKENS}-token streams, {args.inflight} in flight, {args.seconds:g} s per "
        f"run; {os.cpu_count()} CPUs, load average {load_average()}",
        flush=True,
    )
    ratios: dict[str, list[float]] = {"--workers 2": [], "--ray, 2 actors": []}
    with fake_server() as port:
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_}", flush=True)
            single = await one_process(port, args.inflight, args.seconds)
            print(throughput_line("one process", single, None), flush=True)
            for name, how in (("--workers 2", "workers"), ("--ray, 2 actors", "ray")):
                if how == "ray" and RAY is None:
                    continue
                spread_run = await spread(port, args.inflight, args.seconds, how)
                print(throughput_line(name, spread_run, single.qps), flush=True)
                ratios[name].append(spread_run.qps / single.qps)
    for name, found in ratios.items():
        if found:
            print(f"{name}: median {statistics.median(found):.2f}x one process over {len(found)}")
    if RAY is not None:
        await RAY.accuracy(args, one_process, spread)
    print("\ndriver CPU per interval (absorbing the windows, closing the interval)")
    for parts in (2, 8, 32):
        print(f"  {parts:>2} parts: {driver_cost(parts):6.2f} ms", flush=True)
    print(f"\nload average at the end: {load_average()}")


RAY: Any = None


def main() -> None:
    global RAY
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--inflight", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds (a median)")
    parser.add_argument("--ray", action="store_true", help="also run on a local Ray cluster")
    args = parser.parse_args()
    if args.ray:
        import _scale_out_ray

        RAY = _scale_out_ray
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
