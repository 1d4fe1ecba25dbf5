"""`tmesh-cli benchmark` against llama.cpp's real `llama-server`, with no `--tokenizer`: tmesh finds
llama.cpp's own dialect for counting tokens, plans exact prompts with a 4096- and a 384-entry
vocabulary, reads its context size and its `llamacpp:` counters, and agrees with what the server
did (usage per request, its Prometheus counters).

The workload fits a 2-core machine and llama.cpp's 4 slots of 8192 tokens: 8 contexts x 3000
tokens, 16 output tokens, 2 in flight, 40 s, once per API; the host prompt cache holds them all,
so revisits skip their prefill.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import LLAMACPP_SLOT_CONTEXT, RealLlamaCpp
from engine_client import scrape

pytestmark = pytest.mark.real_engine

CONTEXTS = 8
INPUT = 3000
OUTPUT = 16
INFLIGHT = 2
DURATION_S = 40
TOKEN_TOLERANCE = 0.005
CACHED = "llamacpp:prompt_tokens_cached_total"
COMPUTED = "llamacpp:prompt_tokens_total"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    config: dict[str, Any]
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    before: dict[str, float]
    after: dict[str, float]

    def delta(self, name: str) -> float:
        return self.after[name] - self.before[name]

    def ttft(self, first_visit: bool) -> float:
        return statistics.median(
            r["ttft"] for r in self.records if (r["visit"] == 0) is first_visit
        )


def _benchmark(server: RealLlamaCpp, out_dir: Path, *more: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "tmesh.cli", "benchmark",
        "--endpoint", f"{server.root}/v1/chat/completions",
        "--num-contexts", str(CONTEXTS),
        "--output-length", str(OUTPUT),
        "--max-inflight", str(INFLIGHT),
        "--interval", "5",
        "--output-dir", str(out_dir),
        *more,
    ]  # fmt: skip
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=DURATION_S + 240,
        env={k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "TMESH_API_KEY")},
        check=False,
    )


@pytest.fixture(scope="module", params=["completions", "chat"])
def run(
    request: pytest.FixtureRequest,
    real_llamacpp: RealLlamaCpp,
    tmp_path_factory: pytest.TempPathFactory,
) -> Run:
    api: str = request.param
    out_dir = tmp_path_factory.mktemp(f"llamacpp-{real_llamacpp.model}-{api}")
    before = scrape(real_llamacpp.root)
    proc = _benchmark(
        real_llamacpp, out_dir, "--api", api, "--input-length", str(INPUT),
        "--duration", str(DURATION_S),
    )  # fmt: skip
    after = scrape(real_llamacpp.root)
    records = [json.loads(line) for line in (out_dir / "requests.jsonl").read_text().splitlines()]
    return Run(
        proc.returncode,
        proc.stdout,
        proc.stderr,
        json.loads((out_dir / "config.json").read_text()),
        json.loads((out_dir / "summary.json").read_text()),
        records,
        before,
        after,
    )


def test_the_run_succeeds_with_the_servers_own_token_counts(run: Run) -> None:
    assert run.code == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert run.summary["failed_requests"] == 0
    assert run.config["tokens_exact"] is True
    assert "llama.cpp" in run.config["token_oracle"]
    assert all(r["completion_tokens"] == OUTPUT for r in run.records)


def test_prompt_tokens_equal_the_plan(run: Run) -> None:
    """usage.prompt_tokens = planned (context + question + the request's own tokens: BOS, chat
    template) within 0.5 % on at least 99 % of requests; in practice exactly."""
    off = [
        r
        for r in run.records
        if abs(r["prompt_tokens"] - r["planned_prompt_tokens"])
        > TOKEN_TOLERANCE * r["planned_prompt_tokens"]
    ]
    assert len(off) <= 0.01 * len(run.records), off[:3]


def test_cached_tokens_agree_with_the_servers_counters(run: Run) -> None:
    """What usage said was cached, what tmesh's server view reports, and llama.cpp's own
    counters over the run agree (the counters also saw tmesh's few set-up probes)."""
    usage_cached = sum(r["cached_tokens"] or 0 for r in run.records)
    counter_cached = run.delta(CACHED)
    assert abs(counter_cached - usage_cached) <= 200, (counter_cached, usage_cached)
    server = run.summary["server"]
    assert abs(server["gpu_hit_tokens"] - counter_cached) <= 200, server
    prompt = run.delta(CACHED) + run.delta(COMPUTED)
    assert server["gpu_hit_rate"] == pytest.approx(counter_cached / prompt, abs=0.01)


def test_server_cache_figures_in_every_block(run: Run) -> None:
    blocks = re.split(r"^(?=Elapsed Time:)", run.stdout, flags=re.MULTILINE)[1:]
    assert len(blocks) >= DURATION_S // 5 - 1
    assert all("Server Prefix Cache Hit Rate: GPU" in b for b in blocks)
    assert all("Server Requests: running" in b for b in blocks)


def test_revisits_are_faster_than_first_visits(run: Run) -> None:
    warm = [r for r in run.records if r["visit"] > 0]
    assert warm, "no revisit in the run"
    assert all(r["cached_tokens"] >= r["prompt_tokens"] - 64 for r in warm), warm[:3]
    assert run.ttft(first_visit=False) * 2 < run.ttft(first_visit=True)


def test_a_prompt_longer_than_a_slot_is_refused_before_any_load(
    real_llamacpp: RealLlamaCpp, tmp_path: Path
) -> None:
    started = time.monotonic()
    proc = _benchmark(real_llamacpp, tmp_path / "run", "--input-length", "9000")
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - started < 30
    line = proc.stderr.strip().splitlines()[-1]
    assert str(LLAMACPP_SLOT_CONTEXT) in line, line
    assert not (tmp_path / "run" / "requests.jsonl").exists()
