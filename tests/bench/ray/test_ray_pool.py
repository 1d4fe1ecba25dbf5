"""`--ray` on a two-node Ray cluster on this machine: the run's figures are those of its records,
no context is split across actors, the key leaves no trace in Ray's files, a dead actor stops the
run naming it (or is tolerated and said), and Ctrl-C stops every actor and still writes the
summary."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cli_helpers import CLI_PROFILE, SMALL_WORKLOAD, read_run, read_until, run_cli, start_cli
from factories import SEED_SPEC
from process_helpers import still_running

from tmesh.bench.load.client import ClientConfig
from tmesh.bench.load.runner import StopRules
from tmesh.bench.load.traffic import Traffic
from tmesh.bench.measure.recorder import Recorder
from tmesh.bench.part import PartTask
from tmesh.bench.workload.prompts import PromptSet
from tmesh.results.records import ClientHealth, IntervalSnapshot
from tmesh.sim.server import start_simulator

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from tmesh.bench.ray_pool import RayCluster, clock_offset  # noqa: E402

SECRET = "tmesh-secret-7f3a9c1d5e"


def loopback_only() -> bool:
    """True inside a network namespace whose only interface is loopback."""
    return {name for _, name in socket.if_nameindex()} == {"lo"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Two nodes of one CPU on 127.0.0.1; Ray's session folder (and the address file it
    otherwise keeps in /tmp/ray) under pytest's tmp dir."""
    if not loopback_only():
        pytest.fail("the ray tests start Ray: run them inside `unshare -n` (see .ci/run)")
    home = tmp_path_factory.mktemp("home")
    (home / "ray_bootstrap_config.yaml").write_text("provider: {type: local}\n")
    temp_dir = tmp_path_factory.mktemp("tmp") / "ray"
    temp_dir.mkdir()
    os.environ["RAY_TMPDIR"] = str(temp_dir.parent)
    saved = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    common = {"node_ip_address": "127.0.0.1", "num_cpus": 1, "object_store_memory": 80 << 20}
    try:
        nodes = Cluster(
            initialize_head=True,
            head_node_args={**common, "include_dashboard": False, "temp_dir": str(temp_dir)},
        )
        nodes.add_node(**common)
        nodes.wait_for_nodes()
    finally:
        os.environ["HOME"] = saved or ""
    yield nodes.address, temp_dir, nodes
    nodes.shutdown()


def files_holding(folder: Path, text: str) -> list[Path]:
    needle = text.encode()
    return [p for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


async def test_a_run_on_two_nodes(cluster, tmp_path) -> None:
    address, temp_dir, _ = cluster
    out = tmp_path / "run"
    async with await start_simulator(CLI_PROFILE) as sim:
        result = await run_cli(
            "benchmark", "--endpoint", sim.url, *SMALL_WORKLOAD, "--max-inflight", "4",
            "--ray", address, "--max-requests", "200", "--interval", "1", "--api-key", SECRET,
            "--output-dir", str(out), timeout=180,
        )  # fmt: skip
    assert result.code == 0, result.stderr
    assert "2 actors on 2 nodes (STRICT_SPREAD)" in result.stderr
    assert "ray: actors' clocks against the driver's: " in result.stderr
    _, requests, intervals, summary = read_run(out)
    parts = summary["parts"]
    assert [p["part"] for p in parts] == [0, 1]
    assert len({p["node"] for p in parts}) == 2
    assert all(abs(p["clock_offset_ms"]) <= p["clock_uncertainty_ms"] + 1.0 for p in parts)
    assert sorted(f for p in parts for f in p["files"]) == [
        "requests.part0.jsonl",
        "requests.part1.jsonl",
    ]
    assert len(requests) == 200 == summary["total_requests"] == sum(p["records"] for p in parts)
    owner = {r["context_id"]: r["worker"] for r in requests}
    assert all(owner[r["context_id"]] == r["worker"] for r in requests), "a context was split"
    assert set(owner.values()) == {0, 1}
    ttfts = sorted(r["ttft"] for r in requests)
    assert summary["overall"]["ttft"]["max"] == pytest.approx(ttfts[-1], rel=1e-3)
    assert summary["overall"]["ttft"]["mean"] == pytest.approx(sum(ttfts) / 200, rel=1e-9)
    assert intervals[-1]["total_requests"] == 200
    assert SECRET not in (out / "config.json").read_text()
    assert files_holding(temp_dir, SECRET) == []


def closed_task(url: str, folder: Path, seconds: float) -> PartTask:
    prompts = PromptSet(["context " * 50] * 4, [["q?"]] * 4, [100] * 4, [[2]] * 4, "x", False)
    config = ClientConfig(url + "/v1", "completions", CLI_PROFILE.model, {}, 4, 30.0)
    spec = replace(SEED_SPEC, num_contexts=4, max_inflight=4)
    rules = StopRules(duration=seconds, grace_s=2.0)
    traffic = Traffic("closed", 4, 0, prompts)
    return PartTask(traffic, config, time.monotonic(), False, 1.0, rules, spec, str(folder))


def kill_actor_1(nodes: RayCluster) -> int:
    ray.kill(nodes.actors[1])
    return 1


async def run_and_kill(
    address: str,
    folder: Path,
    tolerate: bool,
    kill: Callable[[RayCluster], int] = kill_actor_1,
    actors: int = 2,
) -> tuple:
    """`actors` actors; once the first interval closed, `kill` kills one and says which."""
    snaps: list[IntervalSnapshot] = []
    first = asyncio.Event()
    async with await start_simulator(CLI_PROFILE) as sim:
        nodes = RayCluster(address, actors, None, tolerate_loss=tolerate)
        try:
            task = closed_task(sim.url, folder, 8.0)
            recorder = Recorder(task.spec, 0.0, 1.0)

            async def tick(now: float, health: ClientHealth) -> None:
                snaps.append(recorder.snapshot(now, health=health))
                first.set()

            pool = nodes.spread(task, recorder, tick)
            running = asyncio.create_task(pool.run())
            await asyncio.wait_for(first.wait(), 60)
            killed = kill(nodes)
            state = await asyncio.wait_for(running, 90)
            parts = pool.parts_summary()
            dead = nodes.placements[killed].folder
        finally:
            nodes.close()
    assert dead is not None
    shutil.rmtree(dead, ignore_errors=True)
    return state, snaps, parts


async def test_a_dead_actor_stops_the_run_naming_it(cluster, tmp_path) -> None:
    state, _, parts = await run_and_kill(cluster[0], tmp_path, tolerate=False)
    assert state.stop_reason == "worker-lost"
    assert state.fatal.startswith("stopping: actor 1 on node 127.0.0.1 (")
    assert "died" in state.fatal
    assert parts[1]["lost"] and "files" in parts[0]
    assert parts[1]["folder"], "where the lost actor's requests are"


async def test_a_tolerated_loss_goes_on_and_is_said(cluster, tmp_path) -> None:
    state, snaps, parts = await run_and_kill(cluster[0], tmp_path, tolerate=True)
    assert state.stop_reason == "duration"
    assert snaps[-1].health.parts_lost == 1
    assert snaps[-1].interval_stats.requests > 0, "the other actor stopped too"
    assert "lost" in parts[1] and "lost" not in parts[0]


async def test_ctrl_c_stops_every_actor_and_writes_the_summary(cluster, tmp_path) -> None:
    """With `--no-gather`, the files are left on the nodes and listed."""
    out = tmp_path / "run"
    async with await start_simulator(CLI_PROFILE) as sim:
        proc = await start_cli(
            "benchmark", "--endpoint", sim.url, *SMALL_WORKLOAD, "--ray", cluster[0],
            "--interval", "1", "--output-dir", str(out), "--no-gather",
        )  # fmt: skip
        await read_until(proc.stdout, "Elapsed Time", timeout=120)
        proc.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "signal"
    left = [Path(f) for p in summary["parts"] for f in p["files"]]
    assert [f.name for f in left] == ["requests.part0.jsonl", "requests.part1.jsonl"]
    assert sum(len(f.read_text().splitlines()) for f in left) == sum(
        p["records"] for p in summary["parts"]
    ), "--no-gather leaves every record on its node"
    assert not any(out.glob("requests.part*"))
    for folder in {f.parent for f in left}:
        shutil.rmtree(folder)
    actors = [p["pid"] for p in summary["parts"]]
    assert await asyncio.to_thread(still_running, actors, 30.0) == []


def test_more_actors_than_nodes_are_spread_as_evenly_as_ray_can(cluster) -> None:
    nodes = RayCluster(cluster[0], 3, None)
    try:
        assert nodes.strategy == "SPREAD"
        assert len({p.node for p in nodes.placements}) == 2
        assert "3 actors on 2 nodes (SPREAD)" in nodes.describe()
    finally:
        nodes.close()


async def test_the_clock_offset_is_read_at_the_smallest_round_trip() -> None:
    """A remote clock 5 s ahead, read after a delay of its own each time: the estimate keeps
    the quickest round trip, and half of it bounds the error."""
    delays = iter([0.2, 0.001, 0.3])

    async def read() -> float:
        delay = next(delays)
        await asyncio.sleep(delay)
        return time.monotonic() + 5.0 - delay / 2

    offset, uncertainty = await clock_offset(read, pings=3)
    assert abs(offset - 5.0) <= uncertainty
    assert 0.0005 <= uncertainty < 0.1, "not the quickest round trip"


async def test_a_session_stays_on_one_actor(cluster, tmp_path) -> None:
    out = tmp_path / "run"
    async with await start_simulator(CLI_PROFILE) as sim:
        result = await run_cli(
            "benchmark", "--endpoint", sim.url, "--workload", "sessions", "--users", "4",
            "--turns", "3", "--system-prompt", "300", "--turn-input", "60", "--output-length",
            "12", "--think-time", "0.3", "--ray", cluster[0], "--duration", "6", "--interval",
            "2", "--output-dir", str(out), "--quiet", timeout=180,
        )  # fmt: skip
    assert result.code == 0, result.stderr
    _, requests, _, summary = read_run(out)
    owner: dict[int, set[int]] = {}
    for record in requests:
        owner.setdefault(record["session"], set()).add(record["worker"])
    assert all(len(workers) == 1 for workers in owner.values()), "a session was split"
    assert set().union(*owner.values()) == {0, 1}
    assert summary["sessions"]["started"] == len(owner)


async def test_a_lost_node_stops_the_run_naming_its_actor(cluster, tmp_path) -> None:
    """A third node joins, gets one of three actors, and goes down mid-run: Ray takes a while to
    declare it dead; the run then stops, naming the actor and its node."""
    address, _, nodes = cluster
    third = nodes.add_node(node_ip_address="127.0.0.1", num_cpus=1, object_store_memory=80 << 20)
    nodes.wait_for_nodes()

    def remove_third(placed: RayCluster) -> int:
        part = next(i for i, p in enumerate(placed.placements) if p.node == third.node_id)
        nodes.remove_node(third, allow_graceful=False)
        return part

    state, _, parts = await run_and_kill(address, tmp_path, False, remove_third, actors=3)
    lost = [p for p in parts if "lost" in p]
    assert state.stop_reason == "worker-lost" and len(lost) == 1
    assert state.fatal.startswith(f"stopping: actor {lost[0]['part']} on node 127.0.0.1 (")
