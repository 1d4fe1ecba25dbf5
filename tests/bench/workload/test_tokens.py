"""Token-count oracles that need no server: a local tokenizer.json, the estimates, the fit."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tokenizer_helpers import count_tokens
from tokenizers import Tokenizer

from tmesh.bench.workload import tokens as tokens_module
from tmesh.bench.workload.tokens import (
    LocalTokenizer,
    TokenizerError,
    TokenOracle,
    estimate_tokens,
    fit_line,
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


def test_fit_line() -> None:
    assert fit_line([10, 20, 40], [15, 27, 51]) == pytest.approx((1.2, 3.0))
    with pytest.raises(TokenizerError):
        fit_line([5, 5], [1, 2])


def test_estimate_tokens() -> None:
    assert estimate_tokens("Hello, world.") == 4
    assert estimate_tokens("internationalization") == 1 + 4
    assert estimate_tokens("") == 0
