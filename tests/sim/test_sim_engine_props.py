"""Property test: any mix of submits, cancels and time keeps the engine's books balanced."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tmesh.sim.clock import VirtualClock
from tmesh.sim.engine import Engine
from tmesh.sim.profiles import PROFILES
from tmesh.sim.request import SimRequest, State

# 24 GPU blocks of 16 tokens, a CPU tier of ~48 blocks, small budget: preemption, CPU loads and
# eviction all happen within a few requests.
TINY = replace(
    PROFILES["cpu-offload"],
    gpu_kv_tokens=24 * 16,
    max_model_len=24 * 16,
    max_num_batched_tokens=64,
    max_num_seqs=4,
    cpu_offload_gb=48 * 16 * PROFILES["cpu-offload"].kv_bytes_per_token / 2**30,
    jitter=0.0,
)

_SUBMIT = st.tuples(st.just("submit"), st.integers(0, 3), st.integers(1, 250), st.integers(1, 60))
_CANCEL = st.tuples(st.just("cancel"), st.integers(0, 50), st.just(0), st.just(0))
_WAIT = st.tuples(st.just("wait"), st.integers(1, 200), st.just(0), st.just(0))
_OPS = st.lists(st.one_of(_SUBMIT, _CANCEL, _WAIT), min_size=1, max_size=40)


def _books_balance(engine: Engine, reqs: list[SimRequest]) -> None:
    pool = engine.pool
    held: dict[int, int] = {}
    for req in reqs:
        if req.state is State.PENDING or req.done:
            assert not req.blocks
        for b in req.blocks:
            held[b.block_id] = held.get(b.block_id, 0) + 1
    assert all(b.ref_cnt == held.get(b.block_id, 0) for b in pool._blocks)
    assert len(held) + pool.num_free == pool.num_blocks
    snap = engine.metrics.snapshot()
    assert snap["vllm:prefix_cache_hits_total"] <= snap["vllm:prefix_cache_queries_total"]
    ext_hits = snap["vllm:external_prefix_cache_hits_total"]
    assert ext_hits <= snap["vllm:external_prefix_cache_queries_total"]
    assert engine.cpu is not None and engine.cpu.num_resident <= engine.cpu.capacity_blocks


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_OPS)
def test_random_workloads_keep_invariants_and_finish(ops: list[tuple[str, int, int, int]]) -> None:
    engine = Engine(TINY, VirtualClock())
    reqs: list[SimRequest] = []
    for op, a, b, c in ops:
        if op == "submit":
            prompt = [a * 10_000 + i for i in range(min(b, TINY.max_model_len - c))]
            reqs.append(engine.submit(prompt, c))
        elif op == "cancel" and reqs:
            reqs[a % len(reqs)].cancel()
        else:
            engine.run_until_idle(until=engine.clock.now() + a / 1000)
        _books_balance(engine, reqs)
    engine.run_until_idle(until=engine.clock.now() + 60)  # bounded: a livelock fails, not hangs
    _books_balance(engine, reqs)
    assert all(r.done for r in reqs)
    assert all(r.num_output == r.max_tokens for r in reqs if r.state is State.FINISHED)
    assert engine.pool.num_free == engine.pool.num_blocks
    assert not engine.running and not engine.waiting
