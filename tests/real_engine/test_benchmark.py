"""`tmesh-cli benchmark` against the real vLLM: what tmesh plans, sends and reports agrees with what
the engine did (its usage per request and its own Prometheus counters).

The workload fits the tiny model and a 2-core machine: 12 contexts x 6000 tokens, 32 output tokens,
4 in flight, 60 s, once per API. The working set (~72k tokens) fits vLLM's 1 GiB KV cache, so every
revisit must be a prefix-cache hit.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import SERVED_MODEL, RealVLLM
from engine_client import scrape

from tmesh.bench.workload.counting import choose_oracle
from tmesh.bench.workload.prompts import PromptSet, build_prompt_set
from tmesh.results.records import WorkloadSpec

pytestmark = pytest.mark.real_engine

CONTEXTS = 12
INPUT = 6000
OUTPUT = 32
INFLIGHT = 4
DURATION_S = 60
TOKEN_TOLERANCE = 0.005
# vLLM caches whole blocks of 128 tokens: a revisit recomputes at most the last partial block of
# the context, the question, and (chat) nothing else.
CACHE_BLOCK = 128
# A server kept running between sessions (REAL_VLLM_PORT) still holds the last session's contexts
# in its prefix cache; a seed of this session's own makes its contexts new to the server, so
# first visits are cold as they are against a fresh server.
SESSION_SEED = secrets.randbelow(2**31)
HITS = "vllm:prefix_cache_hits_total"
QUERIES = "vllm:prefix_cache_queries_total"


@dataclass
class Run:
    stdout: str
    config: dict[str, Any]
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    plan: PromptSet
    vllm_before: dict[str, float]
    vllm_after: dict[str, float]

    @property
    def cold(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["visit"] == 0]

    @property
    def warm(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["visit"] > 0]

    def vllm_delta(self, name: str) -> float:
        return self.vllm_after[name] - self.vllm_before[name]


@pytest.fixture(scope="module", params=["completions", "chat"])
def run(
    request: pytest.FixtureRequest, real_vllm: RealVLLM, tmp_path_factory: pytest.TempPathFactory
) -> Run:
    api: str = request.param
    out_dir = tmp_path_factory.mktemp(f"run-{api}")
    before = scrape(real_vllm.root)
    proc = subprocess.run(
        _cli_args(api, real_vllm, out_dir),
        capture_output=True,
        text=True,
        timeout=DURATION_S + 240,
        env={k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "TMESH_API_KEY")},
        check=False,
    )
    after = scrape(real_vllm.root)
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    config = _json(out_dir / "config.json")
    records = [json.loads(line) for line in (out_dir / "requests.jsonl").read_text().splitlines()]
    plan = asyncio.run(_replan(real_vllm.v1, api, WorkloadSpec(**config["workload"])))
    return Run(
        proc.stdout,
        config,
        _json(out_dir / "summary.json"),
        records,
        plan,
        before,
        after,
    )


def _cli_args(api: str, server: RealVLLM, out_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "tmesh.cli", "benchmark",
        "--endpoint", f"http://127.0.0.1:{server.port}",
        "--api", api,
        "--model-config", str(server.model_dir / "config.json"),
        "--num-contexts", str(CONTEXTS),
        "--input-length", str(INPUT),
        "--output-length", str(OUTPUT),
        "--max-inflight", str(INFLIGHT),
        "--duration", str(DURATION_S),
        "--output-dir", str(out_dir),
        "--seed", str(SESSION_SEED),
    ]  # fmt: skip


async def _replan(v1: str, api: str, spec: WorkloadSpec) -> PromptSet:
    """tmesh's plan for this run, rebuilt: the prompt set is deterministic for its seed and oracle,
    and the run folder records the token counts tmesh got, not the ones it planned."""
    async with aiohttp.ClientSession() as session:
        oracle = await choose_oracle(session, v1, SERVED_MODEL, api, {})
        return await build_prompt_set(spec, oracle)


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_discovery_block_shows_the_served_model(run: Run) -> None:
    assert "found model: tiny-llama" in run.stdout
    assert run.config["model"] == SERVED_MODEL


def test_kv_geometry_comes_from_the_real_config(run: Run, real_vllm: RealVLLM) -> None:
    model = _json(real_vllm.model_dir / "config.json")
    head_dim = model["hidden_size"] // model["num_attention_heads"]
    dtype_bytes = {"float32": 4, "bfloat16": 2, "float16": 2}[model["dtype"]]
    expected = (
        2 * model["num_hidden_layers"] * model["num_key_value_heads"] * head_dim * dtype_bytes
    )
    assert run.config["workload"]["kv_bytes_per_token"] == expected


def test_token_oracle_is_the_servers_tokenize(run: Run) -> None:
    """No tokenizer download: exact counts come from vLLM's /tokenize, and every context is
    exactly Input Length tokens under it."""
    assert "/tokenize (vLLM/SGLang dialect)" in run.config["token_oracle"]
    assert run.config["tokens_exact"] is True
    assert run.plan.exact
    assert run.plan.context_tokens == [INPUT] * CONTEXTS


def test_every_request_succeeds_with_output_length_tokens(run: Run) -> None:
    assert run.summary["failed_requests"] == 0
    assert len(run.records) == run.summary["total_requests"]
    assert run.summary["rotations"] >= 1
    assert {r["context_id"] for r in run.warm} == set(range(CONTEXTS))
    for record in run.records:
        assert record["error"] is None, record
        assert record["usage_reported"], record
        assert record["completion_tokens"] == OUTPUT, record


def test_prompt_tokens_equal_the_plan(run: Run) -> None:
    """Token truth: vLLM's usage.prompt_tokens is the planned context + question + what the
    server adds to a request (BOS, chat template), within 0.5 % (in practice exactly)."""
    for record in run.records:
        planned = (
            run.plan.context_tokens[record["context_id"]]
            + run.plan.question_tokens[record["context_id"]][record["question_id"]]
            + run.config["request_overhead_tokens"]
        )
        assert record["planned_prompt_tokens"] == planned, record
        assert abs(record["prompt_tokens"] - planned) <= TOKEN_TOLERANCE * planned, (
            record["prompt_tokens"],
            planned,
            record,
        )


def test_revisits_are_served_from_the_prefix_cache(run: Run) -> None:
    """Each context starts with a unique header, so a first visit shares no block with anything;
    a revisit finds its whole context cached."""
    for record in run.cold:
        assert record["cached_tokens"] == 0, record
    for record in run.warm:
        assert record["cached_tokens"] >= record["prompt_tokens"] - 2 * CACHE_BLOCK, record


def test_revisit_ttft_clearly_below_first_visit(run: Run) -> None:
    cold = statistics.median(r["ttft"] for r in run.cold)
    warm = statistics.median(r["ttft"] for r in run.warm)
    # Measured here: cold ~1-3 s (queued behind each other on one core), warm ~0.1-0.2 s.
    assert warm * 3 < cold, (cold, warm)
    assert run.summary["cold_ttft"]["count"] == len(run.cold)
    assert run.summary["warm_ttft"]["count"] == len(run.warm)


def test_reported_hit_rate_equals_vllm_counters(run: Run) -> None:
    """tmesh's server-metrics view of the run against vLLM's counters read around the whole run.

    The outer reads also see the capability probe tmesh sends before its first scrape (a few
    tokens, never a whole cached block) and nothing else, so hits agree to within one request.
    """
    server = run.summary["server"]
    assert server is not None, "tmesh reported no server metrics"
    hits, queries = run.vllm_delta(HITS), run.vllm_delta(QUERIES)
    assert abs(server["gpu_hit_tokens"] - hits) <= INPUT, (server, hits)
    assert server["gpu_hit_rate"] == pytest.approx(hits / queries, abs=0.005)
    usage_cached = sum(r["cached_tokens"] for r in run.records)
    assert abs(usage_cached - hits) <= INFLIGHT * INPUT, (usage_cached, hits)
