"""`--workers`: the worker processes never outlive their run, and a lost worker stops it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest
from cli_helpers import CLI_PROFILE, SMALL_WORKLOAD, read_until, start_cli
from factories import SEED_SPEC
from process_helpers import still_running

from tmesh.bench.load.client import ClientConfig
from tmesh.bench.load.runner import StopRules
from tmesh.bench.load.traffic import Traffic
from tmesh.bench.part import PartTask, part_tasks
from tmesh.bench.workers import WorkerPool
from tmesh.bench.workload.prompts import PromptSet
from tmesh.sim.server import start_simulator

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="Linux: needs os.pidfd_open")


def _workers_of(pid: int) -> list[int]:
    """Pids of the multiprocessing workers started by `pid` (not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


async def test_workers_stop_when_the_parent_is_killed(tmp_path) -> None:
    async with await start_simulator(CLI_PROFILE) as handle:
        proc = await start_cli(
            "benchmark", "--endpoint", handle.url, *SMALL_WORKLOAD, "--workers", "2",
            "--interval", "1", "--output-dir", str(tmp_path / "run"),
        )  # fmt: skip
        await read_until(proc.stdout, "Elapsed Time")
        workers = _workers_of(proc.pid)
        assert len(workers) == 2
        proc.kill()
        alive = await asyncio.to_thread(still_running, workers, 30.0)
        for pid in alive:
            os.kill(pid, signal.SIGKILL)
        await asyncio.wait_for(proc.communicate(), 30)
    assert alive == [], "worker processes kept loading the server after their parent died"


async def _no_tick(now, health) -> None:
    return None


async def test_a_failed_worker_stops_the_run_with_its_reason(tmp_path) -> None:
    prompts = PromptSet(["context " * 50] * 2, [["q?"]] * 2, [100] * 2, [[2]] * 2, "x", False)
    async with await start_simulator(CLI_PROFILE) as handle:
        config = ClientConfig(handle.url + "/v1", "completions", CLI_PROFILE.model, {}, 4, 30.0)
        rules = StopRules(duration=60.0, grace_s=2.0)
        origin = time.monotonic()
        traffic = Traffic("closed", 2, 0, prompts)
        spec = replace(SEED_SPEC, num_contexts=2, max_inflight=2)
        template = PartTask(traffic, config, origin, False, 1.0, rules, spec, str(tmp_path))
        good, bad = part_tasks(2, template)
        empty = PromptSet([], [], [], [], "x", False)
        bad = replace(bad, traffic=replace(bad.traffic, prompts=empty))
        pool = WorkerPool([good, bad], lambda window: None, _no_tick, 2, rules, origin, 1.0)
        state = await asyncio.wait_for(pool.run(), 60)
    assert state.stop_reason == "worker-lost"
    assert state.fatal is not None
    assert "worker 1 failed: ValueError" in state.fatal
    assert time.monotonic() - origin < 30, "the run went on with half its load"
