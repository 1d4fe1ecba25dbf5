"""Conversations count their tokens exactly: the plan of every turn is what a server counts.

The server here is a small OpenAI-style stub around a real byte-level BPE: it adds a BOS token to
every prompt, renders chat messages with a template of role markers, and answers with random
token ids decoded to text, as a model does. Sending such an answer back usually costs other than
the tokens generated, which set-up must notice and correct.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import orjson
import pytest
from aiohttp import web
from net_helpers import serve_app
from tokenizers import Tokenizer

from tmesh.bench.endpoint.openai import tokenize_url
from tmesh.bench.workload.counting import ServerTokenizer
from tmesh.bench.workload.prompts import PromptError
from tmesh.bench.workload.session_setup import CachedOracle, prepare_sessions
from tmesh.bench.workload.sessions import (
    AnswerCosts,
    Conversations,
    Framing,
    Recount,
    SessionTexts,
)
from tmesh.bench.workload.vocabulary import measure_vocabulary
from tmesh.results.records import Api, SessionSpec, WorkloadSpec

MODEL = "stub"


@dataclass
class ConversationStub:
    """Completions and chat with usage from `tokenizer` (BOS + template), random answers."""

    tokenizer: Tokenizer
    readable: bool = False
    prompts: list[int] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def render(self, messages: list[dict[str, str]]) -> str:
        turns = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages)
        return turns + "<|assistant|>\n"

    def answer(self, tokens: int) -> str:
        if self.readable:
            return "".join(" river" for _ in range(tokens))
        size = self.tokenizer.get_vocab_size()
        return self.tokenizer.decode([self.rng.randrange(size) for _ in range(tokens)])

    async def generate(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        if "messages" in body:
            prompt = 1 + self.count(self.render(body["messages"]))
            text_field = {"message": {"role": "assistant", "content": ""}}
        else:
            prompt = 1 + self.count(body["prompt"])
            text_field = {"text": ""}
        self.prompts.append(prompt)
        answer = self.answer(body["max_tokens"])
        choice = {k: ({**v, "content": answer} if isinstance(v, dict) else answer)
                  for k, v in text_field.items()}  # fmt: skip
        usage = {"prompt_tokens": prompt, "completion_tokens": body["max_tokens"]}
        document = {"choices": [choice], "usage": usage}
        return web.Response(body=orjson.dumps(document), content_type="application/json")

    async def tokenize(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        ids = self.tokenizer.encode(body["prompt"], add_special_tokens=False).ids
        return web.Response(body=orjson.dumps({"count": len(ids)}), content_type="application/json")


@asynccontextmanager
async def serve(stub: ConversationStub) -> AsyncIterator[str]:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/completions", stub.generate)
    app.router.add_post("/v1/chat/completions", stub.generate)
    app.router.add_post("/tokenize", stub.tokenize)
    async with serve_app(app) as url:
        yield url + "/v1"


def _spec(api: Api, system: int = 300, turn_input: int = 60) -> WorkloadSpec:
    sessions = SessionSpec(system_prompt=system, turns=5, turn_input=turn_input, think_time=0.0)
    return WorkloadSpec(
        MODEL, 4, 5, 4, system, 24, seed=1, api=api, workload="sessions", sessions=sessions
    )


async def _texts(session: aiohttp.ClientSession, base: str, spec: WorkloadSpec) -> SessionTexts:
    oracle = ServerTokenizer(session, tokenize_url(base), MODEL, {})
    recount = Recount(None, tokenize_url(base), MODEL)
    return await prepare_sessions(
        session, base, {}, spec, oracle, False, recount, progress=lambda _text: None
    )


async def _converse(session: aiohttp.ClientSession, base: str, texts: SessionTexts,
                    stub: ConversationStub, number: int) -> list[int]:  # fmt: skip
    """Play one session of every turn against the stub; the planned prompt tokens of each."""
    costs = AnswerCosts(texts, session)
    conversation = Conversations(texts).start(number)
    planned = []
    for index in range(texts.spec.turns):
        plan = conversation.next_plan(index)
        planned.append(plan.expected_prompt_tokens)
        body: dict = {"model": MODEL, "max_tokens": 24}
        if plan.messages is not None:
            body["messages"] = plan.messages
            route = "/chat/completions"
        else:
            body["prompt"] = plan.prompt
            route = "/completions"
        async with session.post(base + route, json=body) as response:
            answer = await response.json()
        choice = answer["choices"][0]
        text = choice["message"]["content"] if plan.messages is not None else choice["text"]
        if plan.expected_prompt_tokens != stub.prompts[-1]:
            costs.missed()
            conversation.rebase(stub.prompts[-1])
        conversation.add_answer(text, await costs.cost(text, 24))
    return planned


@pytest.mark.parametrize("api", ["completions", "chat"])
async def test_every_turn_costs_what_was_planned(bpe: Tokenizer, api: Api) -> None:
    stub = ConversationStub(bpe)
    async with serve(stub) as base, aiohttp.ClientSession() as session:
        texts = await _texts(session, base, _spec(api))
        assert texts.framing.overhead >= 1, "the BOS token and the template's first markers"
        assert texts.resend_differs, "random answers re-tokenize to other counts"
        assert texts.system_tokens == 300
        stub.prompts.clear()
        planned = await _converse(session, base, texts, stub, number=0)
    assert planned == stub.prompts
    assert all(b > a + 60 for a, b in itertools.pairwise(planned))


async def test_answers_that_resend_as_they_came_are_not_recounted(bpe: Tokenizer) -> None:
    stub = ConversationStub(bpe, readable=True)
    async with serve(stub) as base, aiohttp.ClientSession() as session:
        texts = await _texts(session, base, _spec("completions"))
        stub.prompts.clear()
        planned = await _converse(session, base, texts, stub, number=3)
    assert not texts.resend_differs
    assert texts.framing.per_turn == 0
    assert planned == stub.prompts


async def test_a_plan_that_missed_turns_recounting_on(bpe: Tokenizer) -> None:
    """The probe's one answer may re-tokenize as it came by chance: the first turn whose usage
    differs from its plan switches every later answer to the oracle's count."""
    stub = ConversationStub(bpe, readable=True)
    async with serve(stub) as base, aiohttp.ClientSession() as session:
        texts = await _texts(session, base, _spec("completions"))
        assert not texts.resend_differs
        stub.readable = False
        stub.prompts.clear()
        planned = await _converse(session, base, texts, stub, number=5)
    assert planned[:1] == stub.prompts[:1]
    assert planned[1] != stub.prompts[1], "the first answer sent back cost other than planned"
    assert planned[2:] == stub.prompts[2:]


async def test_sessions_share_only_the_system_prompt(bpe: Tokenizer) -> None:
    oracle = CachedOracle(_LocalOracle(bpe))
    sessions = SessionSpec(system_prompt=200, turns=3, turn_input=80, think_time=0.0)
    texts = SessionTexts("completions", sessions, 0, "System.", 2,
                         await measure_vocabulary(oracle), Framing(leads=6))  # fmt: skip
    writer = Conversations(texts)
    first = [writer.start(n).next_plan(0).prompt for n in range(3)]
    assert len(set(first)) == 3
    assert all(p.startswith("System.\n\nUser:") for p in first)
    assert writer.user_text(1, 2) == Conversations(texts).user_text(1, 2)


async def test_a_turn_too_short_for_a_sentence_is_refused(bpe: Tokenizer) -> None:
    vocab = await measure_vocabulary(_LocalOracle(bpe))
    sessions = SessionSpec(system_prompt=200, turns=3, turn_input=8, think_time=0.0)
    texts = SessionTexts("completions", sessions, 0, "S.", 2, vocab, Framing(leads=6))
    with pytest.raises(PromptError, match="--turn-input 8 is too short"):
        Conversations(texts)


async def test_a_system_prompt_too_short_is_refused(bpe: Tokenizer) -> None:
    async with serve(ConversationStub(bpe)) as base, aiohttp.ClientSession() as session:
        with pytest.raises(PromptError, match="--system-prompt must be at least 64"):
            await _texts(session, base, _spec("completions", system=20))


class _LocalOracle:
    name = "local bpe"
    exact = True

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    async def count(self, texts: list[str]) -> list[int]:
        return [len(self.tokenizer.encode(t, add_special_tokens=False).ids) for t in texts]
