"""`--workers`: the worker processes never outlive their run, and a lost worker stops it."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest
from cli_helpers import CLI_PROFILE, SMALL_WORKLOAD, read_until, start_cli

from tmesh.bench.load.client import ClientConfig
from tmesh.bench.load.runner import StopRules
from tmesh.bench.load.traffic import Traffic
from tmesh.bench.load.workers import WorkerPool, worker_tasks
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


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait on each process's pidfd (readable once it exits); return those still running."""
    alive = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
        finally:
            os.close(fd)
        if not ready:
            alive.append(pid)
    return alive


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
        alive = await asyncio.to_thread(_wait_gone, workers, 30.0)
        for pid in alive:
            os.kill(pid, signal.SIGKILL)
        await asyncio.wait_for(proc.communicate(), 30)
    assert alive == [], "worker processes kept loading the server after their parent died"


async def _no_tick(now, health) -> None:
    return None


async def test_a_failed_worker_stops_the_run_with_its_reason() -> None:
    prompts = PromptSet(["context " * 50] * 2, [["q?"]] * 2, [100] * 2, [[2]] * 2, "x", False)
    records: list = []
    async with await start_simulator(CLI_PROFILE) as handle:
        config = ClientConfig(handle.url + "/v1", "completions", CLI_PROFILE.model, {}, 4, 30.0)
        rules = StopRules(duration=60.0, grace_s=2.0)
        origin = time.monotonic()
        traffic = Traffic("closed", 2, 0, prompts)
        good, bad = worker_tasks(2, traffic, config, origin, False, 1.0, rules)
        empty = PromptSet([], [], [], [], "x", False)
        bad = replace(bad, traffic=replace(bad.traffic, prompts=empty))
        pool = WorkerPool([good, bad], records.append, _no_tick, rules, origin, 1.0)
        state = await asyncio.wait_for(pool.run(), 60)
    assert state.stop_reason == "worker-lost"
    assert state.fatal is not None
    assert "worker 1 failed: ValueError" in state.fatal
    assert time.monotonic() - origin < 30, "the run went on with half its load"
