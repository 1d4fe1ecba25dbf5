"""Token-count oracles: local tokenizer.json, server /tokenize, usage calibration, estimate."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import aiohttp
import pytest
from net_helpers import refused_url
from tokenizer_helpers import OpenAIStub, count_tokens, serve_stub
from tokenizers import Tokenizer

from tmesh.bench.workload import tokens as tokens_module
from tmesh.bench.workload.tokens import (
    CalibratedEstimate,
    LengthEstimate,
    LocalTokenizer,
    ServerTokenizer,
    TokenizerError,
    TokenOracle,
    choose_oracle,
    estimate_tokens,
    fit_line,
    tokenize_url,
)
from tmesh.bench.workload.words import prose

TEXTS = ["", "Hello world", "The harbor, the river and the road.", prose(random.Random(3), 300)]


def _lengths(tokenizer: Tokenizer, texts: list[str]) -> list[int]:
    return [count_tokens(tokenizer, t) for t in texts]


async def test_local_tokenizer_counts_like_the_library(bpe_path: Path, bpe: Tokenizer) -> None:
    oracle = LocalTokenizer(str(bpe_path))
    assert isinstance(oracle, TokenOracle)
    assert oracle.exact
    assert str(bpe_path) in oracle.name
    assert await oracle.count(TEXTS) == _lengths(bpe, TEXTS)


async def test_local_tokenizer_counts_in_sub_batches(
    bpe_path: Path, bpe: Tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens_module, "BATCH_CHARS", 40)
    texts = TEXTS * 3
    assert await LocalTokenizer(str(bpe_path)).count(texts) == _lengths(bpe, texts)


async def test_local_tokenizer_from_folder(bpe_path: Path, bpe: Tokenizer) -> None:
    oracle = LocalTokenizer(str(bpe_path.parent))
    assert await oracle.count(TEXTS[1:2]) == _lengths(bpe, TEXTS[1:2])


async def test_local_tokenizer_ignores_saved_truncation(tmp_path: Path, bpe: Tokenizer) -> None:
    truncating = Tokenizer.from_str(bpe.to_str())
    truncating.enable_truncation(max_length=8)
    path = tmp_path / "tokenizer.json"
    truncating.save(str(path))
    text = TEXTS[3]
    assert len(truncating.encode(text).ids) == 8
    assert await LocalTokenizer(str(path)).count([text]) == _lengths(bpe, [text])


def test_local_tokenizer_from_hub_cache_only(
    bpe_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "models--acme--tiny"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "tokenizer.json").write_bytes(bpe_path.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123\n")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert LocalTokenizer("acme/tiny").name.endswith("snapshots/abc123/tokenizer.json")
    with pytest.raises(TokenizerError) as info:
        LocalTokenizer("acme/absent")
    assert "never downloads" in str(info.value)


@pytest.mark.parametrize("kind", ["missing", "folder", "garbage"])
def test_local_tokenizer_errors(tmp_path: Path, kind: str) -> None:
    if kind == "missing":
        source, fragment = tmp_path / "nope.json", "no such file or folder"
    elif kind == "folder":
        source, fragment = tmp_path, "has no tokenizer.json"
    else:
        source, fragment = tmp_path / "tokenizer.json", "cannot load it"
        source.write_text('{"version": "1.0"}')
    with pytest.raises(TokenizerError) as info:
        LocalTokenizer(str(source))
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_local_tokenizer_without_library(bpe_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(tokens_module.importlib, "import_module", missing)
    with pytest.raises(TokenizerError, match=r"pip install 'tmesh-bench\[tokenizers\]'"):
        LocalTokenizer(str(bpe_path))


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


async def test_chain_prefers_local_tokenizer(
    bpe: Tokenizer, bpe_path: Path, session: aiohttp.ClientSession
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
    assert "no server /tokenize" in said[0]
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


def test_fit_line() -> None:
    assert fit_line([10, 20, 40], [15, 27, 51]) == pytest.approx((1.2, 3.0))
    with pytest.raises(TokenizerError):
        fit_line([5, 5], [1, 2])


def test_estimate_tokens() -> None:
    assert estimate_tokens("Hello, world.") == 4
    assert estimate_tokens("internationalization") == 1 + 4
    assert estimate_tokens("") == 0
