"""`tmesh-cli benchmark --trace` end to end against the simulated engine: token-exact prompts,
the trace's output lengths, the run ending with the trace, the ideal-cache score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import CLI_PROFILE, read_run, run_cli

from tmesh.bench.workload.trace import load_trace
from tmesh.results.catalogue import server as figures
from tmesh.sim.server import start_simulator


@pytest.fixture
async def sim():
    async with await start_simulator(CLI_PROFILE) as handle:
        yield handle


async def test_a_trace_replays_token_exact_and_scores_against_the_ideal_cache(
    sim, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = await run_cli(
        "benchmark", "--endpoint", sim.url, "--trace", "sample:bailian", "--trace-timing",
        "ignore", "--max-inflight", "2", "--output-dir", str(out),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert "Trace: " in result.stdout and "(bailian, 16-token blocks)" in result.stdout
    assert "Prefix Cache Hit Rate vs Ideal" in result.stdout
    config, requests, _, summary = read_run(out)
    trace = load_trace(Path("sample:bailian"))
    assert summary["stop_reason"] == "end"
    assert sorted(r["index"] for r in requests) == list(range(len(trace.requests)))
    for record in requests:
        row = trace.requests[record["question_id"]]
        assert record["error"] is None, record
        assert record["prompt_tokens"] == record["planned_prompt_tokens"] == row.input_length
        assert record["completion_tokens"] == row.output_length
        assert record["prediction"] in ("new", "resident")
    server = summary["server"]
    measured = server[figures.MEASURED_HIT_RATE.key]
    assert server[figures.IDEAL_LRU_HIT_RATE.key] == server[figures.IDEAL_INFINITE_HIT_RATE.key]
    assert abs(measured - server[figures.IDEAL_INFINITE_HIT_RATE.key]) < 0.05
    assert server[figures.IDEAL_CACHE_TOKENS.key] == CLI_PROFILE.gpu_kv_tokens
    assert 0.9 < server[figures.REUSE_EFFICIENCY.key] <= 1.05
    assert config["options"]["trace"] == "sample:bailian"


async def test_a_bad_trace_line_stops_before_any_request(sim, tmp_path: Path) -> None:
    trace = tmp_path / "bad.jsonl"
    row = {"timestamp": 0, "input_length": 1100, "output_length": 4, "hash_ids": [1, 2]}
    trace.write_text(json.dumps(row) + "\n")
    result = await run_cli("benchmark", "--endpoint", sim.url, "--trace", str(trace))
    assert result.code == 2
    assert f"--trace {trace} line 1: input_length 1100 in blocks of 512 tokens" in result.stderr
    assert "Traceback" not in result.stderr
    workers = await run_cli(
        "benchmark", "--endpoint", sim.url, "--trace", "sample:mooncake", "--workers", "2"
    )
    assert workers.code == 2 and "leave out --workers" in workers.stderr


async def test_requests_leave_at_the_trace_s_times_scaled(sim, tmp_path: Path) -> None:
    """The default timing: each request due at its arrival in the trace / --time-scale, an open
    loop whose records keep when they were due."""
    out = tmp_path / "run"
    result = await run_cli(
        "benchmark", "--endpoint", sim.url, "--trace", "sample:mooncake", "--time-scale", "20",
        "--max-requests", "20", "--output-dir", str(out),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    _, requests, _, summary = read_run(out)
    trace = load_trace(Path("sample:mooncake"))
    assert summary["stop_reason"] in ("end", "max-requests")
    assert sorted(r["index"] for r in requests) == list(range(20))
    for record in requests:
        due = trace.requests[record["index"]].arrival / 20
        assert record["t_intended"] == pytest.approx(due, abs=1e-6)
        assert record["t0"] >= due - 0.05
