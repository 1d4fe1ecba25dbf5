"""Counting tokens with the server: /tokenize in each server's dialect (checked before it is
trusted, retried when it fails in a way that may pass), calibration from usage, the tokens a
server adds to each request, and the chain that chooses."""

from __future__ import annotations

import asyncio
import random

import aiohttp
import pytest
from net_helpers import refused_url
from tokenizer_helpers import OpenAIStub, count_tokens, serve_stub
from tokenizers import Tokenizer

from tmesh.bench.endpoint.openai import tokenize_url
from tmesh.bench.workload.counting import (
    ServerTokenizer,
    TransientError,
    choose_oracle,
    request_overhead,
)
from tmesh.bench.workload.tokens import (
    CalibratedEstimate,
    LengthEstimate,
    LocalTokenizer,
    TokenizerError,
)
from tmesh.bench.workload.words import prose

TEXTS = ["", "Hello world", "The harbor, the river and the road.", prose(random.Random(3), 300)]


def _lengths(tokenizer: Tokenizer, texts: list[str]) -> list[int]:
    return [count_tokens(tokenizer, t) for t in texts]


def test_tokenize_url_is_beside_v1() -> None:
    assert tokenize_url("http://h:8000/v1") == "http://h:8000/tokenize"
    assert tokenize_url("https://h/openai/v1") == "https://h/openai/tokenize"


async def test_server_tokenizer(bpe: Tokenizer, session: aiohttp.ClientSession) -> None:
    async with serve_stub(OpenAIStub(bpe)) as stub:
        oracle = ServerTokenizer(session, tokenize_url(stub.base_url), "m", {"X-Test": "1"})
        assert oracle.exact
        assert await oracle.count(TEXTS) == _lengths(bpe, TEXTS)
    assert stub.calls == {"tokenize": len(TEXTS)}
    assert stub.bodies[0] == {"model": "m", "add_special_tokens": False}


async def test_server_tokenizer_error(bpe: Tokenizer, session: aiohttp.ClientSession) -> None:
    async with serve_stub(OpenAIStub(bpe, tokenize=False)) as stub:
        oracle = ServerTokenizer(session, tokenize_url(stub.base_url), "m", {})
        with pytest.raises(TokenizerError) as info:
            await oracle.count(["x"])
    assert str(info.value) == f"{tokenize_url(stub.base_url)}: HTTP 404"
    assert not isinstance(info.value, TransientError)


async def test_chain_prefers_local_tokenizer(
    bpe: Tokenizer, bpe_path: object, session: aiohttp.ClientSession
) -> None:
    async with serve_stub(OpenAIStub(bpe)) as stub:
        oracle = await choose_oracle(session, stub.base_url, "m", "completions", {}, str(bpe_path))
    assert isinstance(oracle, LocalTokenizer)
    assert stub.calls == {}


async def test_chain_uses_server_tokenize(bpe: Tokenizer, session: aiohttp.ClientSession) -> None:
    async with serve_stub(OpenAIStub(bpe)) as stub:
        oracle = await choose_oracle(session, stub.base_url, "m", "completions", {})
        assert isinstance(oracle, ServerTokenizer)
        assert "/tokenize" in oracle.name
        assert await oracle.count(TEXTS) == _lengths(bpe, TEXTS)


@pytest.mark.parametrize("api", ["completions", "chat"])
async def test_chain_calibrates_from_usage(
    bpe: Tokenizer, session: aiohttp.ClientSession, api: str
) -> None:
    said: list[str] = []
    async with serve_stub(OpenAIStub(bpe, tokenize=False)) as stub:
        oracle = await choose_oracle(session, stub.base_url, "m", api, {}, progress=said.append)
    assert isinstance(oracle, CalibratedEstimate)
    assert not oracle.exact
    assert stub.calls[api] == 3
    assert "no usable server /tokenize" in said[0]
    text = prose(random.Random(9), 3000)
    words = len(text.split())
    true_rate = _lengths(bpe, [text])[0] / words
    assert oracle.per_word == pytest.approx(true_rate, rel=0.05)
    assert oracle.overhead == pytest.approx(7 if api == "chat" else 0, abs=3)
    assert await oracle.count([text]) == [round(oracle.per_word * words)]


async def test_chain_passes_over_a_hanging_tokenize(
    bpe: Tokenizer, session: aiohttp.ClientSession
) -> None:
    said: list[str] = []
    stub = OpenAIStub(bpe, hold_tokenize=asyncio.Event())
    async with serve_stub(stub):
        oracle = await choose_oracle(
            session, stub.base_url, "m", "completions", {}, progress=said.append, timeout=0.3
        )
        stub.hold_tokenize.set()
    assert isinstance(oracle, CalibratedEstimate)
    assert "timed out" in said[0]


async def test_chain_ends_with_estimate(bpe: Tokenizer, session: aiohttp.ClientSession) -> None:
    said: list[str] = []
    async with serve_stub(OpenAIStub(bpe, tokenize=False, usage=False)) as stub:
        oracle = await choose_oracle(
            session, stub.base_url, "m", "completions", {}, progress=said.append
        )
    assert isinstance(oracle, LengthEstimate)
    assert not oracle.exact
    assert "no usage.prompt_tokens" in said[1]


async def test_chain_survives_an_unreachable_server(session: aiohttp.ClientSession) -> None:
    with refused_url() as url:
        oracle = await choose_oracle(session, f"{url}/v1", "m", "completions", {}, timeout=2.0)
    assert isinstance(oracle, LengthEstimate)


@pytest.mark.parametrize(("dialect", "server"), [("llama.cpp", "llama.cpp"), ("tgi", "TGI")])
async def test_chain_finds_the_servers_own_dialect(
    bpe: Tokenizer, session: aiohttp.ClientSession, dialect: str, server: str
) -> None:
    """llama.cpp answers vLLM's body with 200 and no tokens: that answer is refused as
    implausible, and the next dialect is tried; TGI refuses unknown bodies outright."""
    said: list[str] = []
    async with serve_stub(OpenAIStub(bpe, dialect=dialect)) as stub:
        oracle = await choose_oracle(
            session, stub.base_url, "m", "completions", {}, progress=said.append
        )
        assert isinstance(oracle, ServerTokenizer)
        assert await oracle.count(TEXTS) == _lengths(bpe, TEXTS)
    assert f"({server} dialect)" in said[0]
    assert "vLLM/SGLang dialect:" in said[0]
    if dialect == "llama.cpp":
        assert "counts 0 tokens in a non-empty text" in said[0]


async def test_transient_failures_are_retried_not_taken_as_a_verdict(
    bpe: Tokenizer, session: aiohttp.ClientSession
) -> None:
    """A /tokenize that answers 503 a few times (a busy server just started) is still used."""
    said: list[str] = []
    async with serve_stub(OpenAIStub(bpe, flaky=3)) as stub:
        oracle = await choose_oracle(
            session, stub.base_url, "m", "completions", {}, progress=said.append
        )
    assert isinstance(oracle, ServerTokenizer)
    assert "(vLLM/SGLang dialect)" in said[0] and "passed over" not in said[0]


@pytest.mark.parametrize(("api", "overhead"), [("completions", 1), ("chat", 7)])
async def test_request_overhead_is_what_usage_adds_to_the_text(
    bpe: Tokenizer, session: aiohttp.ClientSession, api: str, overhead: int
) -> None:
    async with serve_stub(OpenAIStub(bpe, completion_overhead=1)) as stub:
        oracle = ServerTokenizer(session, tokenize_url(stub.base_url), "m", {})
        measured = await request_overhead(session, stub.base_url, "m", api, {}, oracle)
    assert measured == overhead


async def test_request_overhead_unknown_without_usage(
    bpe: Tokenizer, session: aiohttp.ClientSession
) -> None:
    async with serve_stub(OpenAIStub(bpe, usage=False)) as stub:
        oracle = ServerTokenizer(session, tokenize_url(stub.base_url), "m", {})
        assert await request_overhead(session, stub.base_url, "m", "chat", {}, oracle) is None
