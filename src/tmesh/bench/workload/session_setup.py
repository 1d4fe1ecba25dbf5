"""Set-up of a sessions workload: the shared system prompt, and what the server counts beyond texts.

The system prompt is built like a context (exactly its length under the oracle). What a request
costs beyond its texts is measured on the server itself, with two real requests of a probe
session: its first turn, answered at the run's output length, then its second turn carrying that
answer. The first says what a request adds (a BOS token, the chat template's markers around the
system prompt and the first user message); the second what each later turn adds (the markers
around an answer and the next user message). Their answers also say whether the server's
`completion_tokens` is what sending an answer back costs: if not, every answer of the run is
counted with the oracle before it is sent back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import aiohttp
import orjson

from tmesh.bench.endpoint.openai import (
    answer_text,
    generation_body,
    route,
    usage_counts,
    with_messages,
    with_prompt,
)
from tmesh.bench.workload.counting import post_json
from tmesh.bench.workload.prompts import PromptError, build_prompt_set
from tmesh.bench.workload.sessions import (
    ASSISTANT_LEAD,
    USER_LEAD,
    Conversations,
    Framing,
    Recount,
    SessionTexts,
    answer_cost,
)
from tmesh.bench.workload.tokens import TokenOracle
from tmesh.bench.workload.vocabulary import (
    ANCHOR,
    PERIOD,
    PROBE_WORD,
    marginal_costs,
    measure_vocabulary,
)
from tmesh.results.records import RequestPlan, WorkloadSpec

PROBE_SESSION = -1
"""The probe's own session: its turns share only the system prompt with the run's sessions."""
PROBE_TIMEOUT_S = 120.0
PROBE_ANSWER_TOKENS = 256
"""Tokens of each probe answer at least: two long answers rarely both re-tokenize to their
generated count by chance, as one short one can."""
MIN_SYSTEM_PROMPT = 64
"""Tokens below which a system prompt has no room for its header and a sentence."""


class CachedOracle:
    """An oracle that counts each text once: the system prompt and the turns measure the same
    vocabulary, and a server's `/tokenize` need not hear every probe twice."""

    def __init__(self, oracle: TokenOracle) -> None:
        self.oracle = oracle
        self.name = oracle.name
        self.exact = oracle.exact
        self._known: dict[str, int] = {}

    async def count(self, texts: list[str]) -> list[int]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._known))
        if missing:
            self._known.update(zip(missing, await self.oracle.count(missing), strict=True))
        return [self._known[text] for text in texts]


async def prepare_sessions(
    session: aiohttp.ClientSession,
    base_url: str,
    headers: dict[str, str],
    spec: WorkloadSpec,
    oracle: TokenOracle,
    ignore_eos: bool,
    recount: Recount | None,
    progress: Callable[[str], None],
) -> SessionTexts:
    """The texts of a sessions workload, with its framing measured on the server.

    `recount` says where answers can be counted again; the probe says whether the server's
    count of an answer is what sending it back costs (`resend_differs`).
    """
    sessions = spec.sessions
    assert sessions is not None
    if sessions.system_prompt < MIN_SYSTEM_PROMPT:
        raise PromptError(f"--system-prompt must be at least {MIN_SYSTEM_PROMPT} tokens")
    cached = CachedOracle(oracle)
    progress(f"building the {sessions.system_prompt}-token system prompt…")
    system = await build_prompt_set(
        replace(spec, num_contexts=1, questions_per_context=1, input_length=sessions.system_prompt),
        cached,
    )
    vocab = await measure_vocabulary(cached)
    leads = 0
    if spec.api == "completions":
        anchor = ANCHOR + PROBE_WORD + PERIOD
        leads = sum(await marginal_costs(cached, anchor, [USER_LEAD, ASSISTANT_LEAD]))
    texts = SessionTexts(
        spec.api,
        sessions,
        spec.seed,
        system.contexts[0],
        system.context_tokens[0],
        vocab,
        Framing(leads=leads),
    )
    progress("measuring what the server counts beyond the texts (two probe requests)…")
    probe = _Probe(session, base_url, headers, spec, ignore_eos)
    framing, resend_differs = await probe.measure(texts, cached if oracle.exact else None)
    if resend_differs and recount is not None:
        progress("an answer sent back costs other than its completion tokens: counting each one")
    return replace(texts, framing=framing, recount=recount, resend_differs=resend_differs)


class _Probe:
    """The two probe requests, non-streamed."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        headers: dict[str, str],
        spec: WorkloadSpec,
        ignore_eos: bool,
    ) -> None:
        self.session, self.url, self.headers = session, base_url + route(spec.api), headers
        self.spec, self.ignore_eos = spec, ignore_eos

    async def measure(
        self, texts: SessionTexts, oracle: TokenOracle | None
    ) -> tuple[Framing, bool]:
        """The framing, and whether an answer sent back costs other than the server said."""
        conversation = Conversations(texts).start(PROBE_SESSION)
        first = conversation.next_plan(0)
        length = max(self.spec.output_length, PROBE_ANSWER_TOKENS)
        answer, completion, prompt = await self._send(first, length)
        if prompt is None:
            return texts.framing, False
        overhead = prompt - first.expected_prompt_tokens
        cost = completion if oracle is None else await answer_cost(oracle, answer)
        conversation.add_answer(answer, cost)
        second = conversation.next_plan(1)
        answer, later, prompt = await self._send(second, length)
        per_turn = 0 if prompt is None else prompt - overhead - second.expected_prompt_tokens
        differs = cost != completion
        if oracle is not None and not differs:
            differs = await answer_cost(oracle, answer) != later
        return replace(texts.framing, overhead=overhead, per_turn=per_turn), differs

    async def _send(self, plan: RequestPlan, max_tokens: int) -> tuple[str, int, int | None]:
        """(answer, completion tokens, prompt tokens or None when the server reports none)."""
        body = generation_body(
            self.spec.api, self.spec.model, max_tokens, stream=False, ignore_eos=self.ignore_eos
        )
        if plan.messages is not None:
            body = with_messages(body, plan.messages)
        else:
            body = with_prompt(body, self.spec.api, plan.prompt)
        answer = await self._post(body)
        text = answer_text(answer, self.spec.api)
        counts = usage_counts(answer.get("usage") if isinstance(answer, dict) else None)
        if text is None or counts is None:
            raise PromptError(f"{self.url}: the probe's answer has no text or no usage")
        completion, prompt, _ = counts
        return text, completion, prompt

    async def _post(self, body: dict[str, Any]) -> Any:
        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
        raw = await post_json(self.session, self.url, body, self.headers, timeout)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise PromptError(f"{self.url}: the sessions probe's answer is not JSON") from None
