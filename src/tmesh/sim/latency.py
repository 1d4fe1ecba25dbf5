"""The step-time model of the simulated engine, as pure functions.

One engine step runs every scheduled sequence once. Its cost is

    t = t_fixed + per_seq * B
      + max(weight_floor, linear * new_tokens)      # weights are read once, or compute dominates
      + attn * pairs                                # attention FLOPs, sum of n * (c + n / 2)
      + kv_read * context_tokens                    # KV bytes re-read by every sequence

with B sequences, `new_tokens` the tokens computed (prefill chunks + one per decode) and
`context_tokens` the tokens already in KV that those sequences attend to. Decode is thus
memory-bound (weights + KV) and long prefill compute-bound with a quadratic attention term, the
two behaviours that make cache hits show up as TTFT and QPS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tmesh.sim.config import EngineConfig


def step_seconds(
    cfg: EngineConfig, num_seqs: int, new_tokens: int, attn_pairs: float, context_tokens: int
) -> float:
    """Model time of one engine step (no jitter)."""
    return (
        cfg.t_fixed_s
        + cfg.per_seq_s * num_seqs
        + max(cfg.weight_floor_s, cfg.linear_s_per_token * new_tokens)
        + cfg.attn_s_per_pair * attn_pairs
        + cfg.kv_read_s_per_token * context_tokens
    )


def chunk_pairs(new_tokens: int, computed: int) -> float:
    """Attention (query, key) pairs of a causal chunk of `new_tokens` after `computed` tokens."""
    return new_tokens * (computed + new_tokens / 2)


def decode_step_seconds(cfg: EngineConfig, num_seqs: int, context: int) -> float:
    """A pure decode step of `num_seqs` sequences that each hold `context` tokens."""
    return step_seconds(
        cfg, num_seqs, num_seqs, num_seqs * chunk_pairs(1, context), num_seqs * context
    )


def api_delay(cfg: EngineConfig, prompt_tokens: int) -> float:
    """Frontend time before a request reaches the scheduler (HTTP, tokenising): not engine time."""
    return cfg.api_overhead_s + cfg.tokenize_s_per_token * prompt_tokens


def load_seconds(cfg: EngineConfig, num_bytes: int) -> float:
    """One CPU-to-GPU transfer on an idle link."""
    return cfg.per_op_latency_s + num_bytes / (cfg.cpu_load_gbps * 1e9)


def prefill_seconds(cfg: EngineConfig, prompt_tokens: int, computed: int) -> float:
    """Engine time to prefill a prompt alone on an idle engine, `computed` tokens already in KV."""
    total = 0.0
    while computed < prompt_tokens:
        n = min(prompt_tokens - computed, cfg.max_num_batched_tokens)
        total += step_seconds(cfg, 1, n, chunk_pairs(n, computed), computed)
        computed += n
    return total


def hit_tokens(cfg: EngineConfig, prompt_tokens: int) -> int:
    """Largest cacheable prefix: whole blocks, at most prompt - 1 (vLLM's last-token rule)."""
    return (prompt_tokens - 1) // cfg.block_size * cfg.block_size


@dataclass(frozen=True)
class IdleTtfts:
    """TTFT of one request on an idle engine for each place its prefix can come from."""

    cold: float
    gpu_hit: float
    cpu_hit: float


def idle_ttfts(cfg: EngineConfig, prompt_tokens: int) -> IdleTtfts:
    """The three TTFTs the model implies for a prompt whose whole prefix is cached (or not)."""
    cached = hit_tokens(cfg, prompt_tokens)
    front = api_delay(cfg, prompt_tokens)
    hit = prefill_seconds(cfg, prompt_tokens, cached)
    load = load_seconds(cfg, math.ceil(cached / cfg.block_size) * cfg.block_bytes)
    return IdleTtfts(
        cold=front + prefill_seconds(cfg, prompt_tokens, 0),
        gpu_hit=front + hit,
        cpu_hit=front + load + hit,
    )
