"""The simulated engine on a virtual clock: cache tiers, TTFTs, throughput, preemption, metrics."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tmesh.sim import latency
from tmesh.sim.clock import VirtualClock
from tmesh.sim.config import EngineConfig
from tmesh.sim.engine import Engine
from tmesh.sim.profiles import PROFILES
from tmesh.sim.request import EngineStopped, SimRequest, State

GPU_ONLY = replace(PROFILES["gpu-only"], jitter=0.0)
CPU_OFFLOAD = replace(PROFILES["cpu-offload"], jitter=0.0)
CONTEXT = 32000
QUESTION = 15


def _prompt(context: int, question: int = 0, length: int = CONTEXT + QUESTION) -> list[int]:
    """Distinct contexts start with distinct ids; the question varies only the tail."""
    ids = list(range(context * 1_000_000, context * 1_000_000 + length))
    ids[-QUESTION:] = [question * 100 + i for i in range(QUESTION)]
    return ids


def _engine(cfg: EngineConfig) -> Engine:
    return Engine(cfg, VirtualClock())


def _run_one(engine: Engine, prompt: list[int], max_tokens: int = 100) -> SimRequest:
    req = engine.submit(prompt, max_tokens)
    engine.run_until_idle()
    assert req.state is State.FINISHED and req.num_output == max_tokens
    return req


def _evict_gpu(engine: Engine, contexts: range) -> None:
    for c in contexts:
        engine.submit(_prompt(c), 1)
    engine.run_until_idle()


def _closed_loop(
    engine: Engine, prompts: list[list[int]], inflight: int, max_tokens: int = 100
) -> list[SimRequest]:
    """Keep `inflight` requests outstanding, in order, like the benchmark's runner."""
    queue = list(reversed(prompts))
    live = [engine.submit(queue.pop(), max_tokens) for _ in range(min(inflight, len(queue)))]
    done: list[SimRequest] = []
    while live:
        engine.run_until_idle(until=engine.clock.now() + 0.01)
        finished = [r for r in live if r.done]
        live = [r for r in live if not r.done]
        done += finished
        live += [engine.submit(queue.pop(), max_tokens) for _ in finished if queue]
    return done


def _check_pool(engine: Engine) -> None:
    pool = engine.pool
    holders: dict[int, int] = {}
    for req in [*engine.running, *engine.waiting]:
        for b in req.blocks:
            holders[b.block_id] = holders.get(b.block_id, 0) + 1
    assert all(b.ref_cnt == holders.get(b.block_id, 0) for b in pool._blocks)
    assert sum(1 for b in pool._blocks if b.ref_cnt) + pool.num_free == pool.num_blocks


def test_three_clearly_separated_ttfts_cold_gpu_hit_cpu_hit() -> None:
    engine = _engine(CPU_OFFLOAD)
    expected = latency.idle_ttfts(CPU_OFFLOAD, CONTEXT + QUESTION)
    cold = _run_one(engine, _prompt(0))
    gpu_hit = _run_one(engine, _prompt(0))
    _evict_gpu(engine, range(1, 40))
    assert not engine.pool.lookup(gpu_hit.block_hashes, 1)
    cpu_hit = _run_one(engine, _prompt(0))

    assert cold.ttft == pytest.approx(expected.cold)
    assert gpu_hit.ttft == pytest.approx(expected.gpu_hit)
    assert cpu_hit.ttft == pytest.approx(expected.cpu_hit)
    assert 0.7 < cold.ttft < 1.5
    assert cold.ttft > 10 * cpu_hit.ttft and cpu_hit.ttft > 2 * gpu_hit.ttft
    assert (cold.cached_tokens, gpu_hit.local_hit, cpu_hit.external_hit) == (0, CONTEXT, CONTEXT)


def test_without_cpu_tier_an_evicted_prompt_is_cold_again() -> None:
    engine = _engine(GPU_ONLY)
    cold = _run_one(engine, _prompt(0))
    _evict_gpu(engine, range(1, 40))
    again = _run_one(engine, _prompt(0))
    assert again.cached_tokens == 0
    assert again.ttft == pytest.approx(cold.ttft)


@pytest.mark.parametrize(("length", "computed"), [(16 * 40 + 1, 1), (16 * 40, 16)])
def test_last_token_rule_on_a_fully_cached_prompt(length: int, computed: int) -> None:
    engine = _engine(GPU_ONLY)
    prompt = list(range(length))
    _run_one(engine, prompt, 2)
    again = _run_one(engine, prompt, 2)
    assert length - again.cached_tokens == computed
    snap = engine.metrics.snapshot()
    assert snap["vllm:prompt_tokens_recomputed_total"] == (1 if computed == 1 else 0)
    assert snap["vllm:prefix_cache_hits_total"] <= snap["vllm:prefix_cache_queries_total"]


def test_cyclic_working_set_defeats_gpu_lru_but_comes_back_from_cpu() -> None:
    """The benchmark's pattern, scaled down: 12 contexts of 8k cycled on a ~7-context GPU."""
    results = {}
    for cfg in (GPU_ONLY, CPU_OFFLOAD):
        small = replace(cfg, gpu_kv_tokens=7 * 8192, max_model_len=8192 + 100)
        engine = _engine(small)
        prompts = [_prompt(c, r, length=8000 + QUESTION) for r in range(2) for c in range(12)]
        done = _closed_loop(engine, prompts, inflight=4)
        first, second = done[:12], done[12:]
        assert sum(r.local_hit for r in second) == 0
        results[cfg.name] = (first, second)
        _check_pool(engine)
    gpu_first, gpu_second = results["gpu-only"]
    cpu_first, cpu_second = results["cpu-offload"]
    mean = lambda rs: sum(r.ttft for r in rs) / len(rs)  # noqa: E731
    assert mean(gpu_second) > 0.5 * mean(gpu_first)
    assert all(r.external_hit == 8000 for r in cpu_second)
    assert mean(cpu_second) * 5 < mean(cpu_first)


def test_saturation_throughput_all_miss_versus_all_hit() -> None:
    """32k prompts, 20 in flight: prefill-bound when cold, decode-bound when every prompt hits."""
    miss_engine = _engine(GPU_ONLY)
    miss = _closed_loop(miss_engine, [_prompt(c) for c in range(30)], inflight=20)
    hit_engine = _engine(GPU_ONLY)
    _run_one(hit_engine, _prompt(0), 1)
    start = hit_engine.clock.now()
    hit = _closed_loop(hit_engine, [_prompt(0, q) for q in range(60)], inflight=20)

    miss_qps = len(miss) / max(r.finish_time for r in miss)
    hit_qps = len(hit) / (max(r.finish_time for r in hit) - start)
    assert 0.6 < miss_qps < 1.5
    assert 6 < hit_qps < 25
    assert all(r.local_hit == CONTEXT for r in hit)


def test_preemption_when_blocks_run_out_still_completes_every_request() -> None:
    cfg = replace(GPU_ONLY, gpu_kv_tokens=512, max_model_len=512, max_num_batched_tokens=256)
    engine = _engine(cfg)
    reqs = [engine.submit(list(range(c * 1000, c * 1000 + 100)), 150) for c in range(4)]
    while not all(r.done for r in reqs):
        engine.run_until_idle(until=engine.clock.now() + 0.05)
        _check_pool(engine)
    assert engine.metrics.value("vllm:num_preemptions_total") > 0
    assert sum(r.num_preemptions for r in reqs) > 0
    assert all(r.num_output == 150 for r in reqs)
    assert engine.pool.num_free == engine.pool.num_blocks


def test_cancel_mid_prefill_frees_blocks_and_is_idempotent() -> None:
    engine = _engine(CPU_OFFLOAD)
    req = engine.submit(_prompt(0), 100)
    other = engine.submit(_prompt(1), 100)
    engine.run_until_idle(until=0.3)
    assert engine.pool.num_free < engine.pool.num_blocks
    req.cancel()
    req.cancel()
    other.cancel()
    assert engine.pool.num_free == engine.pool.num_blocks
    assert not engine.running and not engine.waiting
    engine.run_until_idle()
    assert req.state is State.ABORTED and req.num_output == 0
    snap = engine.metrics.snapshot()
    assert snap['vllm:request_success_total{finished_reason="abort"}'] == 2


def test_cancel_while_loading_from_cpu_frees_blocks() -> None:
    engine = _engine(CPU_OFFLOAD)
    _run_one(engine, _prompt(0), 1)
    _evict_gpu(engine, range(1, 40))
    req = engine.submit(_prompt(0), 10)
    engine.run_until_idle(until=engine.clock.now() + 0.03)
    assert req.state is State.LOADING
    req.cancel()
    engine.run_until_idle()
    assert engine.pool.num_free == engine.pool.num_blocks


async def test_stream_yields_tokens_per_step_and_ends() -> None:
    engine = _engine(replace(GPU_ONLY, max_model_len=4096))
    await engine.start()
    req = engine.submit(list(range(3000)), 20)
    counts = [n async for n in req.stream()]
    await engine.stop()
    assert sum(counts) == 20 and counts[0] >= 1
    assert req.ttft == pytest.approx(latency.idle_ttfts(engine.config, 3000).cold)


async def test_stop_ends_open_streams_with_engine_stopped() -> None:
    engine = _engine(GPU_ONLY)
    req = engine.submit(_prompt(0), 100)
    await engine.stop()
    with pytest.raises(EngineStopped):
        async for _ in req.stream():
            pass


async def test_real_clock_at_high_time_scale_reports_model_time() -> None:
    cfg = replace(GPU_ONLY, time_scale=0.001, max_model_len=20000)
    engine = Engine(cfg)
    await engine.start()
    req = engine.submit(list(range(16000)), 5)
    counts = await asyncio.wait_for(_collect(req), timeout=30)
    await engine.stop()
    assert sum(counts) == 5
    assert req.ttft >= latency.idle_ttfts(cfg, 16000).cold


async def _collect(req: SimRequest) -> list[int]:
    return [n async for n in req.stream()]


def test_reset_prefix_cache_only_when_idle() -> None:
    engine = _engine(CPU_OFFLOAD)
    _run_one(engine, _prompt(0), 1)
    busy = engine.submit(_prompt(1), 5)
    engine.run_until_idle(until=engine.clock.now() + 0.1)
    assert not engine.reset_prefix_cache()
    busy.cancel()
    assert engine.reset_prefix_cache()
    assert _run_one(engine, _prompt(0), 1).external_hit == CONTEXT
    assert engine.reset_prefix_cache(reset_external=True)
    assert _run_one(engine, _prompt(0), 1).cached_tokens == 0


@pytest.mark.parametrize(("prompt_len", "max_tokens"), [(0, 5), (10, 0), (131000, 100)])
def test_submit_rejects_what_cannot_run(prompt_len: int, max_tokens: int) -> None:
    with pytest.raises(ValueError):
        _engine(GPU_ONLY).submit(list(range(prompt_len)), max_tokens)


def test_scraped_metrics_match_engine_truth() -> None:
    engine = _engine(CPU_OFFLOAD)
    _run_one(engine, _prompt(0))
    _run_one(engine, _prompt(0, 1))
    scraped = {}
    for family in text_string_to_metric_families(generate_latest(engine.metrics.registry).decode()):
        for s in family.samples:
            assert s.labels["model_name"] == "openai/gpt-oss-20b" and s.labels["engine"] == "0"
            extra = {k: v for k, v in s.labels.items() if k not in ("model_name", "engine")}
            key = s.name + "".join(f'{{{k}="{v}"}}' for k, v in extra.items())
            scraped[key] = s.value
    snap = engine.metrics.snapshot()
    for key, value in snap.items():
        assert scraped[key] == pytest.approx(value), key
    assert snap["vllm:prefix_cache_hits_total"] == CONTEXT
    assert snap["vllm:generation_tokens_total"] == 200
    assert snap["vllm:prompt_tokens_total"] == 2 * (CONTEXT + QUESTION)
    assert scraped["vllm:num_requests_running"] == 0
    assert scraped["vllm:kv_cache_usage_perc"] == 0
    info = next(k for k in scraped if k.startswith("vllm:cache_config_info"))
    assert 'num_gpu_blocks="74059"' in info and 'num_cpu_blocks="136533"' in info
