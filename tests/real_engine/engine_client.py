"""A deliberately independent client for the real-engine tests: plain aiohttp and the Prometheus
reference parser, no tmesh code, so that what tmesh reports is checked against what vLLM says rather
than against tmesh's own reading of it."""

from __future__ import annotations

import json
import random
import string
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

TIMEOUT = aiohttp.ClientTimeout(total=300)


@dataclass
class Streamed:
    """One streamed answer: time to the first generated text, the text, the final usage."""

    ttft: float
    text: str
    usage: dict[str, Any]
    finish_reason: str | None
    chunks: int


async def stream(v1: str, api: str, body: dict[str, Any]) -> Streamed:
    """POST a streaming completions or chat request with usage and read it to the end."""
    path = "chat/completions" if api == "chat" else "completions"
    payload = {**body, "stream": True, "stream_options": {"include_usage": True}}
    text: list[str] = []
    usage: dict[str, Any] = {}
    finish: str | None = None
    ttft: float | None = None
    chunks = 0
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        t0 = time.monotonic()
        async with session.post(f"{v1}/{path}", json=payload) as resp:
            assert resp.status == 200, await resp.text()
            async for raw in resp.content:
                line = raw.decode().strip()
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[len("data: ") :])
                usage = event.get("usage") or usage
                for choice in event.get("choices", []):
                    piece = _piece(choice, api)
                    if piece:
                        ttft = time.monotonic() - t0 if ttft is None else ttft
                        text.append(piece)
                        chunks += 1
                    finish = choice.get("finish_reason") or finish
    assert ttft is not None, "the stream carried no generated text"
    return Streamed(ttft, "".join(text), usage, finish, chunks)


def _piece(choice: dict[str, Any], api: str) -> str:
    if api == "chat":
        return (choice.get("delta") or {}).get("content") or ""
    return choice.get("text") or ""


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def tokenize(root: str, body: dict[str, Any]) -> list[int]:
    """vLLM's `/tokenize` (at the root, not under /v1): the token ids the engine will see."""
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.post(f"{root}/tokenize", json=body) as resp,
    ):
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
    assert answer["count"] == len(answer["tokens"])
    return list(answer["tokens"])


def scrape(root: str) -> dict[str, float]:
    """`/metrics`, every sample summed over its labels, by sample name
    (`vllm:prefix_cache_hits_total`, …). Synchronous so module-scoped fixtures can use it too."""
    with urllib.request.urlopen(f"{root}/metrics", timeout=60) as resp:
        text = resp.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def filler(seed: int, words: int) -> str:
    """Seeded random words: text with no repeated structure for the prefix cache to exploit."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 8))) for _ in range(3000)]
    return " ".join(rng.choice(vocab) for _ in range(words))


async def prompt_of_about(root: str, model: str, seed: int, tokens: int) -> str:
    """A prompt of roughly `tokens` tokens, led by a unique header so no two seeds share a block."""
    header = f"Document {seed}-{random.Random(seed).random()}:"
    probe = f"{header} {filler(seed, 1000)}"
    per_word = len(await tokenize(root, {"model": model, "prompt": probe})) / 1000
    return f"{header} {filler(seed, int(tokens / per_word))}"
