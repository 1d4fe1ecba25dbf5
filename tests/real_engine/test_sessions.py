"""`--workload sessions` against the real vLLM: every turn's prompt is the conversation so far,
token for token as vLLM counts it, its prefix cache serves the history from turn 2 on, and a
cache too small for the idle conversations shows in the survival curve.

The tiny model answers with random tokens, whose text usually re-tokenizes to other counts than
generated: set-up's probe (or the first turn whose usage differs from its plan) must notice it,
and every later answer is counted before it is sent back.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import SCRIPT, START_TIMEOUT_S, RealVLLM, free_port

pytestmark = pytest.mark.real_engine

TOKEN_TOLERANCE = 0.005
SMALL_CACHE_BLOCKS = 70
"""Blocks of 128 tokens (8,960 tokens): more than one 8k-token request, much less than sixteen
conversations."""


@dataclass
class Run:
    stdout: str
    config: dict[str, Any]
    summary: dict[str, Any]
    records: list[dict[str, Any]]


def _benchmark(port: int, model_dir: Path, out: Path, *args: str) -> Run:
    proc = subprocess.run(
        [
            sys.executable, "-m", "tmesh.cli", "benchmark",
            "--endpoint", f"http://127.0.0.1:{port}",
            "--model-config", str(model_dir / "config.json"),
            "--workload", "sessions", "--output-dir", str(out), *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "TMESH_API_KEY")},
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    records = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    return Run(
        proc.stdout,
        json.loads((out / "config.json").read_text()),
        json.loads((out / "summary.json").read_text()),
        records,
    )


@pytest.fixture(scope="module", params=["completions", "chat"])
def short_pauses(
    request: pytest.FixtureRequest, real_vllm: RealVLLM, tmp_path_factory: pytest.TempPathFactory
) -> Run:
    """Four users, half-second pauses: nothing is ever evicted from vLLM's 1 GiB cache."""
    return _benchmark(
        real_vllm.port, real_vllm.model_dir, tmp_path_factory.mktemp(f"s-{request.param}"),
        "--api", request.param, "--users", "4", "--turns", "5", "--system-prompt", "2000",
        "--turn-input", "100", "--output-length", "32", "--think-time", "0.5",
        "--duration", "40",
    )  # fmt: skip


def test_every_turn_is_the_conversation_so_far(short_pauses: Run) -> None:
    """usage.prompt_tokens = system prompt + every turn and answer so far (+ the template), as
    planned, within 0.5 %; and the plan grows by at least a turn each turn."""
    run = short_pauses
    assert run.summary["failed_requests"] == 0
    assert run.config["tokens_exact"] is True
    overhead = run.config["session_framing"]["overhead"]
    sessions: dict[int, list[dict[str, Any]]] = {}
    for record in run.records:
        assert record["usage_reported"], record
        planned = record["planned_prompt_tokens"]
        assert abs(record["prompt_tokens"] - planned) <= TOKEN_TOLERANCE * planned, record
        sessions.setdefault(record["session"], []).append(record)
    exact = sum(r["prompt_tokens"] == r["planned_prompt_tokens"] for r in run.records)
    assert exact >= 0.8 * len(run.records), "a plan misses once at most, then answers are counted"
    for turns in sessions.values():
        turns.sort(key=lambda r: r["turn"])
        assert turns[0]["planned_prompt_tokens"] == overhead + 2000 + 100
        for before, after in itertools.pairwise(turns):
            grown = after["planned_prompt_tokens"] - before["planned_prompt_tokens"]
            assert grown >= 100 + before["completion_tokens"] // 2, (before, after)
    assert max(r["turn"] for r in run.records) == 5


def test_the_prefix_cache_serves_the_history(short_pauses: Run) -> None:
    """From turn 2 on, vLLM's prefix cache holds all but the new turn and the last partial
    128-token block: more than 80 % of the prompt."""
    later = [r for r in short_pauses.records if r["turn"] > 1]
    assert len(later) >= 20
    for record in later:
        assert record["cached_tokens"] / record["prompt_tokens"] > 0.8, record
    by_turn = short_pauses.summary["sessions"]["by_turn"]
    assert by_turn[0]["ttft"]["count"] >= 4


@pytest.fixture(scope="module")
def small_cache(real_vllm: RealVLLM) -> Iterator[int]:
    """A second vLLM with a KV cache of `SMALL_CACHE_BLOCKS` blocks, stopped afterwards."""
    port = free_port()
    env = {**os.environ, "REAL_VLLM_KV_BLOCKS": str(SMALL_CACHE_BLOCKS)}
    started = subprocess.run(
        [str(SCRIPT), "start", str(port)],
        capture_output=True, text=True, timeout=START_TIMEOUT_S, env=env, check=False,
    )  # fmt: skip
    try:
        if started.returncode != 0:
            pytest.fail(f"small-cache vLLM did not start:\n{started.stderr[-4000:]}", pytrace=False)
        yield port
    finally:
        subprocess.run([str(SCRIPT), "stop", str(port)], capture_output=True, timeout=120,
                       env=env, check=False)  # fmt: skip


def test_long_pauses_lose_the_cache(small_cache: int, real_vllm: RealVLLM, tmp_path: Path) -> None:
    """Sixteen conversations outgrow 8,960 tokens of cache: a conversation idle longer than its
    neighbours' turns is evicted, so the longer the pause, the less of it is found cached."""
    run = _benchmark(
        small_cache, real_vllm.model_dir, tmp_path / "run", "--users", "16", "--turns", "6",
        "--system-prompt", "1000", "--turn-input", "300", "--output-length", "32",
        "--think-time", "5", "--think-time-dist", "lognormal", "--gap-buckets", "2,8",
        "--duration", "60",
    )  # fmt: skip
    short, middle, long = run.summary["sessions"]["by_gap"]
    assert short["requests"] >= 20 and long["requests"] >= 10
    shares = [g["cached_tokens"] / g["prompt_tokens"] for g in (short, middle, long)]
    assert shares[0] > shares[2] + 0.2, shares
    assert long["ttft"]["mean"] > short["ttft"]["mean"], (short["ttft"], long["ttft"])
    assert "Verdict: idle conversations found" in run.stdout
