"""End to end with the official `openai` Python client: if it can talk to the simulated engine, so
can every tool built on it."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import openai
import pytest

from tmesh.sim.profiles import PROFILES
from tmesh.sim.server import SimulatorHandle, start_simulator

CONFIG = dataclasses.replace(PROFILES["fast"], max_model_len=8192, gpu_kv_tokens=65536)
MODEL = CONFIG.model
KEY = "sk-sim-test-key"
CONTEXT = " ".join(f"Paragraph {i}: the cache keeps block {i * 7 % 13} warm." for i in range(200))
EXTRA = {"ignore_eos": True, "min_tokens": 12}


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorHandle]:
    async with await start_simulator(CONFIG, api_key=KEY) as handle:
        yield handle


@pytest.fixture
async def client(sim: SimulatorHandle) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{sim.url}/v1", api_key=KEY, max_retries=0, timeout=30
    ) as api:
        yield api


async def test_models(client: openai.AsyncOpenAI) -> None:
    models = await client.models.list()
    assert [m.id for m in models.data] == [MODEL]


async def test_chat_streaming_with_usage(client: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": CONTEXT + " Question one?"}]
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_completion_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=EXTRA,
    )
    roles, text, finish, usage = [], "", [], None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            roles += [choice.delta.role] if choice.delta.role else []
            text += choice.delta.content or ""
            finish += [choice.finish_reason] if choice.finish_reason else []
    assert roles == ["assistant"]
    assert finish == ["length"]
    assert len(text.split()) == 12
    assert usage is not None
    assert usage.completion_tokens == 12
    assert usage.prompt_tokens > len(CONTEXT.split())


async def test_completions_streaming_with_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.completions.create(
        model=MODEL,
        prompt=CONTEXT,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=EXTRA,
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.text for chunk in chunks for c in chunk.choices)
    assert len(text.split()) == 12
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12


async def test_non_streaming_both_apis(client: openai.AsyncOpenAI) -> None:
    chat = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hello"}], max_tokens=5
    )
    assert chat.choices[0].message.role == "assistant"
    assert len((chat.choices[0].message.content or "").split()) == 5
    assert chat.usage is not None
    assert chat.usage.completion_tokens == 5
    completion = await client.completions.create(model=MODEL, prompt="hello", max_tokens=4)
    assert completion.choices[0].finish_reason == "length"
    assert len(completion.choices[0].text.split()) == 4


async def test_cached_tokens_increase_on_a_repeated_prompt(client: openai.AsyncOpenAI) -> None:
    cached = []
    for question in ("What is cached?", "What is evicted?"):
        stream = await client.completions.create(
            model=MODEL,
            prompt=CONTEXT + " " + question,
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=EXTRA | {"min_tokens": 3},
        )
        usage = [chunk.usage async for chunk in stream if chunk.usage is not None][-1]
        assert usage.prompt_tokens_details is not None
        cached.append(usage.prompt_tokens_details.cached_tokens)
    assert cached[0] == 0
    assert cached[1] >= len(CONTEXT.split()) - 2 * CONFIG.block_size


async def test_errors_map_to_the_client_exceptions(sim: SimulatorHandle) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{sim.url}/v1", api_key="wrong", max_retries=0
    ) as wrong:
        with pytest.raises(openai.AuthenticationError):
            await wrong.models.list()
    async with openai.AsyncOpenAI(base_url=f"{sim.url}/v1", api_key=KEY, max_retries=0) as api:
        with pytest.raises(openai.NotFoundError):
            await api.completions.create(model="missing", prompt="x", max_tokens=1)
        with pytest.raises(openai.BadRequestError, match="maximum context length"):
            await api.completions.create(model=MODEL, prompt=CONTEXT, max_tokens=8000)
        with pytest.raises(openai.InternalServerError):
            await api.completions.create(
                model=MODEL, prompt="x", max_tokens=1, extra_headers={"X-Sim-Fault": "503"}
            )
        with pytest.raises(openai.RateLimitError):
            await api.completions.create(
                model=MODEL, prompt="x", max_tokens=1, extra_headers={"X-Sim-Fault": "429"}
            )
