"""Trace replay and the sweep against the real vLLM: the sample traces' prompts are exactly their
`input_length` as vLLM counts them, vLLM's prefix cache hits what an infinite cache predicts (the
samples fit its 1 GiB cache), the reuse efficiency is printed; and a three-point sweep runs.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import RealVLLM
from engine_client import scrape

from tmesh.bench.workload.trace import load_trace
from tmesh.results.catalogue import server as figures

pytestmark = pytest.mark.real_engine

TOKEN_TOLERANCE = 0.005
HIT_TOLERANCE = 0.05
# A seed of the session's own: a server kept running between sessions still holds the blocks an
# earlier session sent, which would make this session's first visits hits.
SESSION_SEED = secrets.randbelow(2**31)
PROMPTS = "vllm:prompt_tokens_total"


@dataclass
class Replay:
    name: str
    stdout: str
    config: dict[str, Any]
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    server_prompt_tokens: float


def _cli(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "TMESH_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "tmesh.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module", params=["sample:mooncake", "sample:bailian"])
def replay(
    request: pytest.FixtureRequest, real_vllm: RealVLLM, tmp_path_factory: pytest.TempPathFactory
) -> Replay:
    name: str = request.param
    out = tmp_path_factory.mktemp("replay")
    before = scrape(real_vllm.root)
    proc = _cli(
        "benchmark", "--endpoint", real_vllm.root, "--trace", name, "--time-scale", "4",
        "--seed", str(SESSION_SEED), "--output-dir", str(out), timeout=300,
    )  # fmt: skip
    after = scrape(real_vllm.root)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    records = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    return Replay(
        name,
        proc.stdout,
        json.loads((out / "config.json").read_text()),
        json.loads((out / "summary.json").read_text()),
        records,
        after[PROMPTS] - before[PROMPTS],
    )


def test_every_prompt_is_its_input_length_as_vllm_counts_it(replay: Replay) -> None:
    """At the trace's times, four times as fast: prompts of exactly their length."""
    trace = load_trace(Path(replay.name))
    overhead = replay.config["request_overhead_tokens"]
    assert replay.config["tokens_exact"] is True
    assert replay.summary["stop_reason"] == "end"
    assert sorted(r["index"] for r in replay.records) == list(range(len(trace.requests)))
    for record in replay.records:
        row = trace.requests[record["question_id"]]
        expected = row.input_length + overhead
        assert record["error"] is None, record
        assert abs(record["prompt_tokens"] - expected) <= TOKEN_TOLERANCE * expected, record
        assert record["completion_tokens"] == row.output_length, record
        assert record["t_intended"] == pytest.approx(row.arrival / 4, abs=1e-6), record


def test_vllm_hits_what_an_infinite_cache_predicts(replay: Replay) -> None:
    """Per request vLLM's `cached_tokens`, and over the run its counters (when nobody else used
    the server meanwhile: its prompt tokens are then exactly this run's)."""
    server = replay.summary["server"]
    infinite = server[figures.IDEAL_INFINITE_HIT_RATE.key]
    assert server[figures.IDEAL_LRU_HIT_RATE.key] == infinite, "the sample fits the GPU cache"
    prompt = sum(r["prompt_tokens"] for r in replay.records)
    cached = sum(r["cached_tokens"] for r in replay.records)
    assert abs(cached / prompt - infinite) < HIT_TOLERANCE, (cached / prompt, infinite)
    if replay.server_prompt_tokens == prompt:
        measured = server[figures.MEASURED_HIT_RATE.key]
        assert abs(measured - infinite) < HIT_TOLERANCE, (measured, infinite)
        assert abs(server[figures.REUSE_EFFICIENCY.key] - 1.0) < 0.1
    assert "Reuse Efficiency (measured / LRU)" in replay.stdout
    assert "Prefix Cache Hit Rate vs Ideal" in replay.stdout
    labels = {r["prediction"] for r in replay.records}
    assert labels == {"new", "resident"}


def test_a_three_point_sweep(real_vllm: RealVLLM, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    proc = _cli(
        "sweep", "--endpoint", real_vllm.root, "--working-set-ratio", "0.005,0.01,0.02",
        "--input-length", "2000", "--output-length", "8", "--seed", str(SESSION_SEED),
        "--output-dir", str(out), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    sweep = json.loads((out / "sweep.json").read_text())
    capacity = sweep["gpu_capacity_tokens"]
    assert capacity and capacity >= 100_000
    assert [p["value"] for p in sweep["points"]] == [0.005, 0.01, 0.02]
    for point in sweep["points"]:
        assert point["failed"] == 0 and point["requests"] == 3 * point["contexts"]
        assert point["contexts"] == max(1, round(point["value"] * capacity / 2000))
        assert abs(point["revisit_hit_rate"] - 1.0) < 0.1, point
    assert (out / "sweep.html").is_file()
    assert "tmesh sweep: working set / GPU KV capacity (tiny-llama)" in proc.stdout
