"""`tmesh-cli sweep` end to end against small simulated engines: the textbook curves (a GPU cache
alone falls once the working set outgrows it, a CPU tier holds until it is full too), sweep.json,
the table, sweep.html, and compare overlaying two sweeps."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest
from cli_helpers import run_cli

from tmesh.sim.profiles import PROFILES
from tmesh.sim.server import start_simulator

GPU_TOKENS = 8192
# A CPU tier of 6x the GPU cache: 49,152 tokens of 49,152 bytes.
ENGINES = {
    "gpu-only": replace(
        PROFILES["small"], gpu_kv_tokens=GPU_TOKENS, max_model_len=4096, time_scale=0.1
    ),
    "cpu-offload": replace(
        PROFILES["small-offload"],
        gpu_kv_tokens=GPU_TOKENS,
        max_model_len=4096,
        cpu_offload_gb=2.25,
        time_scale=0.1,
    ),
}
RATIOS = (0.5, 2.0, 8.0)


async def _sweep(name: str, out: Path) -> tuple[dict, str]:
    async with await start_simulator(ENGINES[name]) as sim:
        result = await run_cli(
            "sweep", "--endpoint", sim.url, "--working-set-ratio", ",".join(map(str, RATIOS)),
            "--input-length", "512", "--output-length", "4", "--output-dir", str(out),
            timeout=240,
        )  # fmt: skip
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads((out / "sweep.json").read_text()), result.stdout


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict, str]]:
    found = {}
    for name in ENGINES:
        out = tmp_path_factory.mktemp("sweeps") / name
        data, stdout = asyncio.run(_sweep(name, out))
        found[name] = (out, data, stdout)
    return found


def _rates(data: dict, key: str) -> list[float]:
    return [point[key] for point in data["points"]]


def test_a_gpu_cache_alone_falls_once_the_working_set_outgrows_it(sweeps) -> None:
    _, data, stdout = sweeps["gpu-only"]
    assert [p["value"] for p in data["points"]] == list(RATIOS)
    assert [p["contexts"] for p in data["points"]] == [8, 32, 128]
    assert data["gpu_capacity_tokens"] == GPU_TOKENS
    assert data["reset"].startswith("POST /reset_prefix_cache")
    measured, infinite = _rates(data, "measured_hit_rate"), _rates(data, "infinite_hit_rate")
    assert abs(measured[0] - infinite[0]) < 0.05 and infinite[0] > 0.5
    assert measured[1] < 0.1 and measured[2] < 0.1
    assert _rates(data, "lru_hit_rate") == [pytest.approx(infinite[0]), 0.0, 0.0]
    assert all(p["failed"] == 0 and p["cache_reset"] for p in data["points"])
    assert "tmesh sweep: working set / GPU KV capacity" in stdout


def test_a_cpu_tier_holds_until_it_is_full(sweeps) -> None:
    _, data, _ = sweeps["cpu-offload"]
    measured, infinite = _rates(data, "measured_hit_rate"), _rates(data, "infinite_hit_rate")
    assert abs(measured[0] - infinite[0]) < 0.05
    assert abs(measured[1] - infinite[1]) < 0.05, "2x the GPU cache is within the CPU tier"
    assert measured[2] < 0.1, "8x is more than the CPU tier holds"
    assert data["points"][0]["reuse_efficiency"] == pytest.approx(1.0, abs=0.05)


def test_every_point_is_a_run_folder_and_the_page_draws_the_curves(sweeps) -> None:
    out, data, _ = sweeps["cpu-offload"]
    for point in data["points"]:
        run = out / point["run_dir"]
        assert (run / "summary.json").is_file() and (run / "requests.jsonl").is_file()
    page = (out / "sweep.html").read_text()
    assert page.count('class="chart"') == 3
    assert 'data-key="measured_hit_rate"' in page


async def test_compare_overlays_two_sweeps(sweeps, tmp_path: Path) -> None:
    target = tmp_path / "compare.html"
    result = await run_cli(
        "compare", str(sweeps["gpu-only"][0]), str(sweeps["cpu-offload"][0]),
        "--labels", "gpu-only,cpu-offload", "-o", str(target),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    page = target.read_text()
    assert "gpu-only vs cpu-offload" in page and page.count('class="chart"') == 3
    mixed = await run_cli("compare", str(sweeps["gpu-only"][0]), "--format", "md", "x")
    assert mixed.code == 2 and "Traceback" not in mixed.stderr


async def test_a_users_sweep_of_sessions_scores_them_against_the_ideal_cache(
    tmp_path: Path,
) -> None:
    out = tmp_path / "users"
    async with await start_simulator(ENGINES["gpu-only"]) as sim:
        result = await run_cli(
            "sweep", "--endpoint", sim.url, "--workload", "sessions", "--users", "2,4",
            "--duration", "5", "--think-time", "0.2", "--turns", "4", "--system-prompt", "400",
            "--turn-input", "80", "--output-length", "4", "--output-dir", str(out),
            timeout=240,
        )  # fmt: skip
    assert result.code == 0, result.stderr
    data = json.loads((out / "sweep.json").read_text())
    assert data["knob"] == "users" and [p["value"] for p in data["points"]] == [2, 4]
    for point in data["points"]:
        assert point["requests"] > 4 and point["failed"] == 0
        assert abs(point["measured_hit_rate"] - point["infinite_hit_rate"]) < 0.05, point
    refused = await run_cli("sweep", "--endpoint", "127.0.0.1:9", "--workload", "sessions")
    assert refused.code == 2 and "a sessions sweep varies --users" in refused.stderr


async def test_a_request_rate_sweep_runs_each_point_open_loop(tmp_path: Path) -> None:
    out = tmp_path / "rates"
    async with await start_simulator(ENGINES["gpu-only"]) as sim:
        result = await run_cli(
            "sweep", "--endpoint", sim.url, "--request-rate", "20,40", "--num-contexts", "6",
            "--input-length", "256", "--output-length", "4", "--passes", "2",
            "--output-dir", str(out), timeout=240,
        )  # fmt: skip
    assert result.code == 0, result.stderr
    data = json.loads((out / "sweep.json").read_text())
    assert data["knob"] == "request_rate"
    for point in data["points"]:
        assert point["requests"] == 12 and point["failed"] == 0
        requests = (out / point["run_dir"] / "requests.jsonl").read_text().splitlines()
        assert all(json.loads(line)["t_intended"] is not None for line in requests)
