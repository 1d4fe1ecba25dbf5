"""Test helpers: real BPE tokenizers trained on local text, and an OpenAI-style server around one.

Nothing is downloaded: the tokenizers are trained in a fraction of a second on prose from the
project's own vocabulary, so tests of exact token counts run against a real byte-level BPE.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiohttp import web
from net_helpers import serve_app
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from tmesh.bench.workload.words import prose


def train_bpe(path: Path, vocab_size: int) -> Path:
    """A GPT-style byte-level BPE trained on seeded prose. With a few thousand entries every
    candidate word becomes one token; with a few hundred many stay split, like rare words in a
    real vocabulary."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    rng = random.Random(0)
    corpus = [prose(rng, 2000) for _ in range(20)]
    corpus += ["Document 12 of 61 (run seed 0): notes on it. Question: What does it say?"] * 20
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.save(str(path))
    return path


def count_tokens(tokenizer: Tokenizer, text: str) -> int:
    """The count a server reports for `text` sent alone (no BOS or other special tokens)."""
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


@dataclass
class OpenAIStub:
    """`/tokenize` and non-streaming completions whose usage comes from a real tokenizer. Each
    route can be switched off to exercise the oracle chain's fallbacks.

    `dialect` is the body `/tokenize` understands: "vllm" (`prompt`, answered with `count` and
    `tokens`), "llama.cpp" (`content`, answered with `tokens`; any other body gets 200 and no
    tokens, as llama-server does) or "tgi" (`inputs`, answered with a list of token objects).
    `flaky` answers that many `/tokenize` calls with 503 first.
    """

    tokenizer: Tokenizer
    tokenize: bool = True
    usage: bool = True
    hold_tokenize: asyncio.Event | None = None
    chat_overhead: int = 7
    completion_overhead: int = 0
    dialect: str = "vllm"
    flaky: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    bodies: list[dict] = field(default_factory=list)
    base_url: str = ""

    def _seen(self, route: str) -> None:
        self.calls[route] = self.calls.get(route, 0) + 1

    async def handle_tokenize(self, request: web.Request) -> web.Response:
        self._seen("tokenize")
        if self.hold_tokenize is not None:
            await self.hold_tokenize.wait()
        if not self.tokenize:
            return web.Response(status=404, text="Not Found")
        if self.flaky:
            self.flaky -= 1
            return web.Response(status=503, text="Service Unavailable")
        body = orjson.loads(await request.read())
        self.bodies.append({k: v for k, v in body.items() if k not in ("prompt", "content")})
        return web.Response(body=orjson.dumps(self._tokens(body)), content_type="application/json")

    def _tokens(self, body: dict) -> object:
        field = {"vllm": "prompt", "llama.cpp": "content", "tgi": "inputs"}[self.dialect]
        if field not in body:
            if self.dialect == "llama.cpp":
                return {"tokens": []}
            raise web.HTTPUnprocessableEntity(text=f"missing field {field}")
        ids = self.tokenizer.encode(body[field], add_special_tokens=False).ids
        if self.dialect == "vllm":
            return {"count": len(ids), "max_model_len": 40960, "tokens": ids}
        if self.dialect == "llama.cpp":
            return {"tokens": ids}
        return [{"id": i, "text": "", "start": 0, "stop": 0, "special": False} for i in ids]

    async def handle_completions(self, request: web.Request) -> web.Response:
        self._seen("completions")
        body = orjson.loads(await request.read())
        tokens = count_tokens(self.tokenizer, body["prompt"]) + self.completion_overhead
        return self._answer(body, tokens)

    async def handle_chat(self, request: web.Request) -> web.Response:
        self._seen("chat")
        body = orjson.loads(await request.read())
        tokens = count_tokens(self.tokenizer, body["messages"][0]["content"]) + self.chat_overhead
        return self._answer(body, tokens)

    def _answer(self, body: dict, prompt_tokens: int) -> web.Response:
        assert body["max_tokens"] == 1
        assert body["stream"] is False
        answer: dict = {"id": "x", "object": "text_completion", "choices": [{"text": "a"}]}
        if self.usage:
            answer["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": 1}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")


@asynccontextmanager
async def serve_stub(stub: OpenAIStub) -> AsyncIterator[OpenAIStub]:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/tokenize", stub.handle_tokenize)
    app.router.add_post("/v1/completions", stub.handle_completions)
    app.router.add_post("/v1/chat/completions", stub.handle_chat)
    async with serve_app(app) as url:
        stub.base_url = f"{url}/v1"
        yield stub
