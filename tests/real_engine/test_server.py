"""The harness itself: the script's vLLM answers everything tmesh relies on, and the tiny model
behaves like a benchmark target (answers run to max_tokens, a repeated long prefix is served from
the prefix cache much faster than cold)."""

from __future__ import annotations

import json

import pytest
from conftest import SERVED_MODEL, RealVLLM
from engine_client import (
    get_json,
    prompt_of_about,
    scrape,
    stream,
    tokenize,
)

pytestmark = pytest.mark.real_engine

OUTPUT = 32


async def test_models_lists_the_served_name_and_context_limit(real_vllm: RealVLLM) -> None:
    models = await get_json(f"{real_vllm.v1}/models")
    assert [m["id"] for m in models["data"]] == [SERVED_MODEL]
    assert models["data"][0]["max_model_len"] == 8192


@pytest.mark.parametrize("api", ["completions", "chat"])
async def test_streaming_answer_has_usage_and_full_length(real_vllm: RealVLLM, api: str) -> None:
    body = _body(api, "The quick brown fox jumps over the lazy dog.") | {
        "max_tokens": OUTPUT,
        "ignore_eos": True,
    }
    answer = await stream(real_vllm.v1, api, body)
    assert answer.usage["completion_tokens"] == OUTPUT
    assert answer.usage["prompt_tokens"] > 0
    assert answer.finish_reason == "length"
    assert answer.text


@pytest.mark.parametrize("api", ["completions", "chat"])
async def test_answers_run_to_max_tokens_without_ignore_eos(real_vllm: RealVLLM, api: str) -> None:
    """The model cannot emit a special token (see scripts/build_tiny_model.py), so even a client
    that sends no `ignore_eos` gets exactly what it asked for, whatever the sampling."""
    for seed in range(3):
        body = _body(api, f"Tell me a story number {seed}.") | {
            "max_tokens": 200,
            "temperature": 1.0,
            "seed": seed,
        }
        answer = await stream(real_vllm.v1, api, body)
        assert answer.usage["completion_tokens"] == 200
        assert answer.finish_reason == "length"


@pytest.mark.parametrize("api", ["completions", "chat"])
async def test_tokenize_counts_what_usage_reports(real_vllm: RealVLLM, api: str) -> None:
    """`/tokenize` is tmesh's exact token oracle here: it must agree with the engine's own usage."""
    text = "Prefix caching makes the second visit cheap. " * 20
    if api == "chat":
        request = {"model": SERVED_MODEL, "messages": [{"role": "user", "content": text}]}
    else:
        request = {"model": SERVED_MODEL, "prompt": text}
    ids = await tokenize(real_vllm.root, request)
    answer = await stream(real_vllm.v1, api, _body(api, text) | {"max_tokens": 4})
    assert answer.usage["prompt_tokens"] == len(ids)


async def test_metrics_expose_prefix_cache_counters(real_vllm: RealVLLM) -> None:
    await stream(real_vllm.v1, "completions", _body("completions", "warm up") | {"max_tokens": 2})
    values = scrape(real_vllm.root)
    for name in (
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens_total",
    ):
        assert name in values, name
    assert values["vllm:prefix_cache_queries_total"] > 0


async def test_repeated_long_prefix_is_much_faster_than_cold(real_vllm: RealVLLM) -> None:
    """The effect tmesh exists to measure, on the real engine: ~6k tokens once cold, then the same
    prefix with a different question, served from the prefix cache."""
    context = await prompt_of_about(real_vllm.root, SERVED_MODEL, seed=4242, tokens=6000)
    before = scrape(real_vllm.root)
    body = {"model": SERVED_MODEL, "max_tokens": OUTPUT, "ignore_eos": True}
    cold = await stream(real_vllm.v1, "completions", body | {"prompt": context + " First?"})
    warm = await stream(real_vllm.v1, "completions", body | {"prompt": context + " Second?"})
    after = scrape(real_vllm.root)

    prompt_tokens = warm.usage["prompt_tokens"]
    assert 5700 <= prompt_tokens <= 6300
    assert cold.usage["prompt_tokens_details"]["cached_tokens"] == 0
    cached = warm.usage["prompt_tokens_details"]["cached_tokens"]
    assert cached >= prompt_tokens - 256, json.dumps(warm.usage)
    hits = after["vllm:prefix_cache_hits_total"] - before["vllm:prefix_cache_hits_total"]
    assert hits == cached
    # Measured here: cold ~1-2 s, warm ~0.15-0.25 s. 3x leaves room for a loaded 2-core machine.
    assert warm.ttft * 3 < cold.ttft, (cold.ttft, warm.ttft)


def _body(api: str, text: str) -> dict[str, object]:
    if api == "chat":
        return {"model": SERVED_MODEL, "messages": [{"role": "user", "content": text}]}
    return {"model": SERVED_MODEL, "prompt": text}
