"""Conversations: each turn's prompt is the whole conversation so far, as a chat client resends it.

A session starts with the system prompt every session shares, then turn after turn appends the
user's new text and, once it came, the model's real answer. In completions the conversation is one
text (`User:` and `Assistant:` leads frame the turns); in chat it is a list of messages with the
answers as assistant messages. Token counts stay exact: the system prompt is built and counted
like a context, a turn's text is written to an exact cost from the measured vocabulary, and an
answer costs what the server reported generating unless set-up found that sending its text back
costs something else (a tokenizer may split generated text differently when it reads it back),
or until a turn's usage shows a plan missed; from then on each answer is counted with the token
oracle, and the conversation whose plan missed continues from the server's count.

What a request adds beyond its texts (a BOS token, the chat template's role markers) was measured
on the server at set-up (`Framing.overhead` for a request, `Framing.per_turn` for each turn after
the first), so the planned prompt tokens of every turn are those the server will count.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import aiohttp

from tmesh.bench.endpoint.dialects import TOKENIZE_DIALECTS, TokenizeDialect
from tmesh.bench.workload.counting import ServerTokenizer
from tmesh.bench.workload.filler import Writer
from tmesh.bench.workload.prompts import PromptError
from tmesh.bench.workload.tokens import LocalTokenizer, TokenOracle
from tmesh.bench.workload.vocabulary import Vocabulary
from tmesh.results.records import Api, RequestPlan, SessionSpec

USER_LEAD = "\n\nUser:"
ASSISTANT_LEAD = "\n\nAssistant:"


@dataclass(frozen=True)
class Framing:
    """How turns are framed and what the framing costs, in tokens.

    `leads` is the cost of a completions turn's `User:` and `Assistant:` leads (chat has none);
    `overhead` what a request adds beyond its texts; `per_turn` what each turn after the first
    adds (the chat template's markers around an answer and a user message).
    """

    leads: int = 0
    overhead: int = 0
    per_turn: int = 0


@dataclass(frozen=True)
class Recount:
    """Where answers are counted when their cost is not what the server reported: a local
    tokenizer file, or the server's `/tokenize`. Picklable, so each worker opens its own."""

    tokenizer: str | None = None
    tokenize_url: str | None = None
    model: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    dialect: TokenizeDialect = TOKENIZE_DIALECTS[0]

    def oracle(self, session: aiohttp.ClientSession) -> TokenOracle:
        if self.tokenizer is not None:
            return LocalTokenizer(self.tokenizer)
        assert self.tokenize_url is not None
        return ServerTokenizer(
            session, self.tokenize_url, self.model, dict(self.headers), self.dialect
        )


@dataclass(frozen=True)
class SessionTexts:
    """Everything needed to write any turn of any session; picklable for `--workers`."""

    api: Api
    spec: SessionSpec
    seed: int
    system: str
    system_tokens: int
    vocab: Vocabulary
    framing: Framing = Framing()
    recount: Recount | None = None
    resend_differs: bool = False
    """Set-up's probe found an answer sent back costs other than its completion tokens."""


async def answer_cost(oracle: TokenOracle, answer: str) -> int:
    """Tokens `answer` adds where a conversation puts it, between the two leads."""
    base, full = await oracle.count(
        [ASSISTANT_LEAD + USER_LEAD, ASSISTANT_LEAD + answer + USER_LEAD]
    )
    return max(0, full - base)


class AnswerCosts:
    """What answers cost when sent back: the server's completion count while it proves right,
    the oracle's count of their text once it did not (at set-up's probe, or when a turn's
    `usage.prompt_tokens` differs from its plan). Without a recount recipe (an approximate
    oracle), the server's count is the best there is."""

    def __init__(self, texts: SessionTexts, session: aiohttp.ClientSession) -> None:
        self._oracle = texts.recount.oracle(session) if texts.recount else None
        self.recounting = texts.resend_differs and self._oracle is not None

    def missed(self) -> None:
        """A turn's planned prompt tokens were not the server's count of them."""
        self.recounting = self._oracle is not None

    async def cost(self, answer: str, completion_tokens: int) -> int:
        if self.recounting and self._oracle is not None:
            return await answer_cost(self._oracle, answer)
        return completion_tokens


class Conversations:
    """Writes the turns of sessions; one per process (the writer's tables are built once)."""

    def __init__(self, texts: SessionTexts) -> None:
        self.texts = texts
        self.writer = Writer(texts.vocab)
        vocab = texts.vocab
        self.units = round((texts.spec.turn_input - texts.framing.leads) / vocab.unit_tokens)
        self.turn_tokens = texts.framing.leads + round(self.units * vocab.unit_tokens)
        if self.units < 1 or self.writer.write(random.Random(0), self.units) is None:
            raise PromptError(
                f"--turn-input {texts.spec.turn_input} is too short for a sentence with this "
                f"tokenizer (a turn's leads alone cost {texts.framing.leads} tokens)"
            )

    def start(self, session: int) -> Conversation:
        return Conversation(self, session)

    def user_text(self, session: int, turn: int) -> str:
        """The user's words of a turn: seeded by session and turn, so sessions share nothing
        beyond the system prompt and a session is the same in every run of a seed."""
        rng = random.Random(f"tmesh-turn:{self.texts.seed}:{session}:{turn}")
        filler = self.writer.write(rng, self.units)
        assert filler is not None, "a budget that was writable at start-up"
        return filler.text


class Conversation:
    """One session: its history, and the plan of its next turn."""

    def __init__(self, conversations: Conversations, session: int) -> None:
        texts = conversations.texts
        self.conversations = conversations
        self.session = session
        self.turn = 0
        self.chat = texts.api == "chat"
        self.history = "" if self.chat else texts.system
        self.messages = [{"role": "system", "content": texts.system}] if self.chat else []
        self.tokens = texts.framing.overhead + texts.system_tokens
        self._asked = ""

    def next_plan(self, index: int) -> RequestPlan:
        """The next turn: the conversation so far and a new user message."""
        convs, framing = self.conversations, self.conversations.texts.framing
        self.turn += 1
        words = convs.user_text(self.session, self.turn)
        self._asked = words if self.chat else USER_LEAD + words + ASSISTANT_LEAD
        self.tokens += convs.turn_tokens + (framing.per_turn if self.turn > 1 else 0)
        messages = [*self.messages, {"role": "user", "content": words}] if self.chat else None
        return RequestPlan(
            index=index,
            context_id=self.session,
            question_id=self.turn - 1,
            visit=self.turn - 1,
            rotation=0,
            context=self.history,
            question="" if self.chat else self._asked,
            expected_prompt_tokens=self.tokens,
            session=self.session,
            turn=self.turn,
            messages=messages,
        )

    def rebase(self, reported: int) -> None:
        """The server counted the last turn's prompt as `reported` tokens: later turns build on
        that count (a plan that missed would otherwise carry its error to every later turn)."""
        self.tokens = reported

    def add_answer(self, answer: str, tokens: int) -> None:
        """The answer to the last turn, and what it costs when sent back."""
        if self.chat:
            self.messages.append({"role": "user", "content": self._asked})
            self.messages.append({"role": "assistant", "content": answer})
        else:
            self.history += self._asked + answer
        self.tokens += tokens
