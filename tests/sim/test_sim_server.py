"""The simulated engine's HTTP API over real loopback HTTP, checked byte for byte with aiohttp:
OpenAI's chunk shapes, vLLM's /tokenize and /metrics, the error shapes, the prefix-cache admin."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tmesh.sim.profiles import PROFILES
from tmesh.sim.server import SimulatorHandle, start_simulator
from tmesh.sim.wire import FILLER_WORDS, filler_text

CONFIG = dataclasses.replace(PROFILES["fast"], max_model_len=4096, gpu_kv_tokens=65536)
MODEL = CONFIG.model
CONTEXT = " ".join(f"context word{i % 97} line{i}." for i in range(300))
KEY = "sk-test-0123456789"


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorHandle]:
    async with await start_simulator(CONFIG) as handle:
        yield handle


def sse_events(raw: bytes) -> list[bytes]:
    """The data payloads of a complete SSE body, asserting the exact `data: ...\\n\\n` framing."""
    blocks = raw.split(b"\n\n")
    assert blocks[-1] == b"", "stream must end with a blank line"
    assert all(block.startswith(b"data: ") for block in blocks[:-1])
    return [block[len(b"data: ") :] for block in blocks[:-1]]


async def stream(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], **kwargs: Any
) -> list[bytes]:
    async with session.post(url, json=body | {"stream": True}, **kwargs) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        return sse_events(await resp.read())


async def post_json(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], **kwargs: Any
) -> tuple[int, Any]:
    async with session.post(url, json=body, **kwargs) as resp:
        return resp.status, await resp.json(content_type=None)


def words(text: str) -> int:
    return len(text.split())


async def test_models_list(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{sim.url}/v1/models") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["object"] == "list"
    [card] = body["data"]
    assert card["id"] == MODEL
    assert card["object"] == "model"
    assert card["owned_by"]
    assert card["max_model_len"] == 4096


async def test_chat_stream_chunk_shapes(sim: SimulatorHandle, session: aiohttp.ClientSession):
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": CONTEXT}],
        "max_tokens": 7,
        "ignore_eos": True,
        "min_tokens": 7,
        "stream_options": {"include_usage": True},
    }
    events = await stream(session, f"{sim.url}/v1/chat/completions", body)
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert chunks[0]["id"].startswith("chatcmpl-")
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == MODEL for c in chunks)
    role, *content, finish, usage = chunks
    assert role["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    for chunk in content:
        [choice] = chunk["choices"]
        assert set(choice["delta"]) == {"content"}
        assert choice["finish_reason"] is None
        assert chunk["usage"] is None
    text = "".join(c["choices"][0]["delta"]["content"] for c in content)
    assert words(text) == 7
    assert set(text.split()) <= set(FILLER_WORDS)
    assert sim.engine.tokenizer.count(text) == 7
    assert finish["choices"] == [
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    ]
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 7
    tokenized = await post_json(
        session, f"{sim.url}/tokenize", {"model": MODEL, "messages": body["messages"]}
    )
    assert usage["usage"]["prompt_tokens"] == tokenized[1]["count"]
    assert usage["usage"]["total_tokens"] == tokenized[1]["count"] + 7
    assert usage["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}


async def test_completions_stream_chunk_shapes(
    sim: SimulatorHandle, session: aiohttp.ClientSession
) -> None:
    body = {"model": MODEL, "prompt": CONTEXT, "max_tokens": 5}
    events = await stream(session, f"{sim.url}/v1/completions", body)
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert chunks[0]["id"].startswith("cmpl-")
    assert all("usage" not in c for c in chunks)
    *content, finish = chunks
    assert all(c["choices"][0]["finish_reason"] is None for c in content)
    assert words("".join(c["choices"][0]["text"] for c in content)) == 5
    assert finish["choices"] == [
        {"index": 0, "text": "", "logprobs": None, "finish_reason": "length"}
    ]


@pytest.mark.parametrize("chat", [False, True])
async def test_non_streaming_shapes(
    sim: SimulatorHandle, session: aiohttp.ClientSession, chat: bool
) -> None:
    if chat:
        url = f"{sim.url}/v1/chat/completions"
        body = {"messages": [{"role": "user", "content": CONTEXT}], "max_completion_tokens": 9}
    else:
        url = f"{sim.url}/v1/completions"
        body = {"prompt": CONTEXT, "max_tokens": 9}
    status, result = await post_json(session, url, body | {"model": MODEL})
    assert status == 200
    assert result["object"] == ("chat.completion" if chat else "text_completion")
    [choice] = result["choices"]
    assert choice["finish_reason"] == "length"
    text = choice["message"]["content"] if chat else choice["text"]
    assert choice.get("message", {"role": "assistant"})["role"] == "assistant"
    assert words(text) == 9
    usage = result["usage"]
    assert usage["completion_tokens"] == 9
    assert usage["total_tokens"] == usage["prompt_tokens"] + 9


async def test_prompt_forms(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    url = f"{sim.url}/v1/completions"
    ids = sim.engine.tokenizer.encode(CONTEXT)
    _, single = await post_json(session, url, {"prompt": ids, "max_tokens": 2})
    assert single["usage"]["prompt_tokens"] == len(ids)
    _, text = await post_json(session, url, {"prompt": [CONTEXT], "max_tokens": 2})
    assert text["usage"]["prompt_tokens"] == len(ids)
    _, batch = await post_json(session, url, {"prompt": [CONTEXT, ids[:50]], "max_tokens": 3})
    assert [c["index"] for c in batch["choices"]] == [0, 1]
    assert all(words(c["text"]) == 3 for c in batch["choices"])
    assert batch["usage"]["prompt_tokens"] == len(ids) + 50
    assert batch["usage"]["completion_tokens"] == 6


async def test_batched_prompts_stream(sim: SimulatorHandle, session: aiohttp.ClientSession):
    body = {"prompt": ["one two three", "four five"], "max_tokens": 4}
    body["stream_options"] = {"include_usage": True}
    events = await stream(session, f"{sim.url}/v1/completions", body)
    chunks = [orjson.loads(e) for e in events[:-1]]
    text = {0: "", 1: ""}
    finishes = []
    for chunk in chunks[:-1]:
        [choice] = chunk["choices"]
        text[choice["index"]] += choice["text"]
        if choice["finish_reason"]:
            finishes.append(choice["index"])
    assert sorted(finishes) == [0, 1]
    assert words(text[0]) == words(text[1]) == 4
    assert chunks[-1]["usage"]["completion_tokens"] == 8


async def test_filler_text_is_deterministic(sim: SimulatorHandle, session: aiohttp.ClientSession):
    body = {"prompt": CONTEXT, "max_tokens": 20}
    url = f"{sim.url}/v1/completions"
    first = (await post_json(session, url, body))[1]["choices"][0]["text"]
    second = (await post_json(session, url, body))[1]["choices"][0]["text"]
    assert first == second
    assert filler_text(0, 3) == b" the of and"


async def test_tokenize_shapes(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    url = f"{sim.url}/tokenize"
    status, by_prompt = await post_json(
        session, url, {"model": MODEL, "prompt": CONTEXT, "add_special_tokens": True}
    )
    assert status == 200
    assert set(by_prompt) == {"count", "max_model_len", "tokens"}
    assert by_prompt["count"] == len(by_prompt["tokens"]) > 0
    assert by_prompt["max_model_len"] == 4096
    _, completion = await post_json(
        session, f"{sim.url}/v1/completions", {"prompt": CONTEXT, "max_tokens": 1}
    )
    assert completion["usage"]["prompt_tokens"] == by_prompt["count"]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": CONTEXT}]
    _, by_messages = await post_json(session, url, {"model": MODEL, "messages": messages})
    _, chat = await post_json(
        session, f"{sim.url}/v1/chat/completions", {"messages": messages, "max_tokens": 1}
    )
    assert chat["usage"]["prompt_tokens"] == by_messages["count"] > by_prompt["count"]
    status, error = await post_json(session, url, {"model": MODEL})
    assert status == 400
    assert set(error["error"]) == {"message", "type", "param", "code"}


async def test_cached_tokens_grow_and_reset(sim: SimulatorHandle, session: aiohttp.ClientSession):
    url = f"{sim.url}/v1/completions"
    body = {"prompt": CONTEXT, "max_tokens": 2}
    _, cold = await post_json(session, url, body)
    _, warm = await post_json(session, url, body)
    prompt_tokens = cold["usage"]["prompt_tokens"]
    assert cold["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    cached = warm["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert prompt_tokens - CONFIG.block_size <= cached < prompt_tokens
    assert cached % CONFIG.block_size == 0
    async with session.post(f"{sim.url}/reset_prefix_cache") as resp:
        assert resp.status == 200
    _, after_reset = await post_json(session, url, body)
    assert after_reset["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


async def test_reset_prefix_cache_and_the_cpu_tier(session: aiohttp.ClientSession) -> None:
    offload = dataclasses.replace(CONFIG, cpu_offload_gb=0.5, t_fixed_s=0.005)
    async with await start_simulator(offload) as handle:
        url = f"{handle.url}/v1/completions"
        body = {"prompt": CONTEXT, "max_tokens": 2}
        _, cold = await post_json(session, url, body)
        assert cold["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
        async with session.post(f"{handle.url}/reset_prefix_cache") as resp:
            assert resp.status == 200
        _, from_cpu = await post_json(session, url, body)
        assert from_cpu["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
        async with session.post(f"{handle.url}/reset_prefix_cache?reset_external=true") as resp:
            assert resp.status == 200
        _, after = await post_json(session, url, body)
        assert after["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
        long_body = {"prompt": "busy", "max_tokens": 3000, "stream": True}
        async with session.post(url, json=long_body) as resp:
            await resp.content.readuntil(b"\n\n")
            async with session.post(f"{handle.url}/reset_prefix_cache") as busy:
                assert busy.status == 409
                assert_openai_error(await busy.json())


async def test_prompt_tokens_details_switch(session: aiohttp.ClientSession) -> None:
    async with await start_simulator(CONFIG, prompt_tokens_details=False) as handle:
        _, result = await post_json(
            session, f"{handle.url}/v1/completions", {"prompt": "hi", "max_tokens": 1}
        )
    assert "prompt_tokens_details" not in result["usage"]


def assert_openai_error(body: dict[str, Any]) -> dict[str, Any]:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return body["error"]


async def test_api_key(session: aiohttp.ClientSession) -> None:
    async with await start_simulator(CONFIG, api_key=KEY) as handle:
        url = f"{handle.url}/v1/models"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            async with session.get(url, headers=headers) as resp:
                assert resp.status == 401
                error = assert_openai_error(await resp.json())
                assert KEY not in error["message"]
        status, body = await post_json(session, f"{handle.url}/v1/completions", {"prompt": "x"})
        assert status == 401
        assert_openai_error(body)
        async with session.get(url, headers={"Authorization": f"Bearer {KEY}"}) as resp:
            assert resp.status == 200
        for path in ("/health", "/metrics"):
            async with session.get(handle.url + path) as resp:
                assert resp.status == 200


async def test_unknown_model(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    for path, body in [
        ("/v1/completions", {"model": "nope", "prompt": "x"}),
        ("/v1/chat/completions", {"model": "nope", "messages": [{"role": "user"}]}),
        ("/tokenize", {"model": "nope", "prompt": "x"}),
    ]:
        status, result = await post_json(session, sim.url + path, body)
        assert status == 404
        error = assert_openai_error(result)
        assert error["code"] == "model_not_found"
        assert "nope" in error["message"]


async def test_context_length_errors(sim: SimulatorHandle, session: aiohttp.ClientSession):
    url = f"{sim.url}/v1/completions"
    ids = list(range(4000))
    status, result = await post_json(session, url, {"prompt": ids, "max_tokens": 100})
    assert status == 400
    error = assert_openai_error(result)
    assert error["message"] == (
        "This model's maximum context length is 4096 tokens. However, you requested 4100 tokens "
        "(4000 in the messages, 100 in the completion). Please reduce the length of the messages "
        "or completion."
    )
    assert error["type"] == "BadRequestError"
    assert error["code"] == 400
    status, result = await post_json(
        session, url, {"prompt": list(range(4096)), "max_tokens": None}
    )
    assert status == 400
    assert "your request has 4096 input tokens" in assert_openai_error(result)["message"]
    _, default = await post_json(session, url, {"prompt": ids})
    assert default["usage"]["completion_tokens"] == 16
    _, fill = await post_json(session, url, {"prompt": ids, "max_tokens": None})
    assert fill["usage"]["completion_tokens"] == 96


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", b"{not json"),
        ("/v1/completions", b"[1, 2]"),
        ("/v1/completions", orjson.dumps({"prompt": "x", "max_tokens": 0})),
        ("/v1/completions", orjson.dumps({"prompt": "x", "max_tokens": "5"})),
        ("/v1/completions", orjson.dumps({"prompt": "x", "n": 2})),
        ("/v1/completions", orjson.dumps({"prompt": "x", "stream": "yes"})),
        ("/v1/completions", orjson.dumps({"prompt": "x", "max_tokens": 2, "min_tokens": 3})),
        ("/v1/completions", orjson.dumps({"prompt": [1, "x"]})),
        ("/v1/completions", orjson.dumps({"prompt": []})),
        ("/v1/completions", orjson.dumps({"prompt": ""})),
        ("/v1/completions", orjson.dumps({"prompt": [5, -1]})),
        ("/v1/completions", orjson.dumps({"prompt": [[1], [CONFIG.vocab_size]]})),
        ("/v1/completions", orjson.dumps({"prompt": [True, False]})),
        ("/v1/completions", orjson.dumps({})),
        ("/v1/chat/completions", orjson.dumps({"messages": []})),
        ("/v1/chat/completions", orjson.dumps({"messages": ["hi"]})),
        ("/v1/chat/completions", orjson.dumps({"messages": [{"content": "no role"}]})),
        ("/v1/chat/completions", orjson.dumps({"messages": [{"role": "u", "content": 5}]})),
    ],
)
async def test_bad_requests(
    sim: SimulatorHandle, session: aiohttp.ClientSession, path: str, body: bytes
) -> None:
    async with session.post(sim.url + path, data=body) as resp:
        assert resp.status == 400
        error = assert_openai_error(await resp.json())
    assert "\n" not in error["message"]


async def test_bad_fault_header(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    status, result = await post_json(
        session, f"{sim.url}/v1/completions", {"prompt": "x"}, headers={"X-Sim-Fault": "teapot"}
    )
    assert status == 400
    assert "X-Sim-Fault" in assert_openai_error(result)["message"]


async def test_health(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{sim.url}/health") as resp:
        assert resp.status == 200


def scrape(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by name from Prometheus text, through prometheus_client's own parser."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


async def test_metrics(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    _, result = await post_json(
        session, f"{sim.url}/v1/completions", {"prompt": CONTEXT, "max_tokens": 3}
    )
    async with session.get(f"{sim.url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        samples = scrape(await resp.text())
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:external_prefix_cache_queries_total",
        "vllm:external_prefix_cache_hits_total",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:num_preemptions_total",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:cache_config_info",
    ):
        assert name in samples, name
        for labels, _ in samples[name]:
            assert labels.get("model_name") == MODEL, name
            assert labels.get("engine") == "0", name
    [(_, prompt_total)] = samples["vllm:prompt_tokens_total"]
    assert prompt_total == result["usage"]["prompt_tokens"]
    [(_, generated)] = samples["vllm:generation_tokens_total"]
    assert generated == 3


async def test_disconnect_cancels_the_engine_request(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    slow = dataclasses.replace(CONFIG, t_fixed_s=0.01)
    async with await start_simulator(slow) as handle:
        body = {"prompt": "a long answer", "max_tokens": 4000, "stream": True}
        async with session.post(f"{handle.url}/v1/completions", json=body) as resp:
            assert (await resp.content.readuntil(b"\n\n")).startswith(b"data: ")
            assert await running(session, handle) == 1
            resp.close()
        async with asyncio.timeout(10):
            while await running(session, handle):
                await asyncio.sleep(0.02)
        samples = await metrics(session, handle)
        [(_, generated)] = samples["vllm:generation_tokens_total"]
        assert generated < 4000
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def metrics(
    session: aiohttp.ClientSession, handle: SimulatorHandle
) -> dict[str, list[tuple[dict[str, str], float]]]:
    async with session.get(f"{handle.url}/metrics") as resp:
        return scrape(await resp.text())


async def running(session: aiohttp.ClientSession, handle: SimulatorHandle) -> float:
    samples = await metrics(session, handle)
    return samples["vllm:num_requests_running"][0][1] + samples["vllm:num_requests_waiting"][0][1]
