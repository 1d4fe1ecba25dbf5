"""Prompt sets: exact context lengths under real BPE tokenizers, questions, determinism."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from tokenizer_helpers import OpenAIStub, count_tokens, serve_stub, train_bpe
from tokenizers import Tokenizer

from tmesh.bench.endpoint.openai import tokenize_url
from tmesh.bench.workload.counting import ServerTokenizer
from tmesh.bench.workload.prompts import (
    ONE_TOPIC,
    QUESTION_LEAD,
    TWO_TOPICS,
    PromptError,
    PromptSet,
    build_prompt_set,
)
from tmesh.bench.workload.tokens import (
    CalibratedEstimate,
    LengthEstimate,
    LocalTokenizer,
    estimate_tokens,
)
from tmesh.bench.workload.vocabulary import GROUP_SIZE, measure_vocabulary, piece_costs
from tmesh.bench.workload.words import STARTERS, WORDS
from tmesh.results.records import WorkloadSpec


@pytest.fixture(scope="module")
def oracle(bpe_path: Path) -> LocalTokenizer:
    return LocalTokenizer(str(bpe_path))


@pytest.fixture(scope="module")
def small_vocab_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1000 entries: ~160 of the candidate words are one token, the rest are split."""
    return train_bpe(tmp_path_factory.mktemp("bpe1k") / "tokenizer.json", 1000)


def _spec(contexts: int = 4, questions: int = 6, length: int = 3000, seed: int = 0) -> WorkloadSpec:
    return WorkloadSpec("m", contexts, questions, 1, length, 10, seed=seed)


class Skewed:
    """An exact-looking oracle whose counts of whole contexts differ from its counts of the short
    probe texts, as a tokenizer with merges across word boundaries would."""

    exact = True
    name = "skewed"

    def __init__(self, tokenizer: Tokenizer, extra: int = 0, factor: int = 1) -> None:
        self.tokenizer, self.extra, self.factor = tokenizer, extra, factor

    async def count(self, texts: list[str]) -> list[int]:
        counts = []
        for text in texts:
            real = count_tokens(self.tokenizer, text)
            counts.append(real * self.factor + self.extra if len(text) > 600 else real)
        return counts


class Counting:
    """Wraps an oracle and records how many texts it was asked to count."""

    def __init__(self, inner: LocalTokenizer) -> None:
        self.inner, self.exact, self.name, self.texts = inner, inner.exact, inner.name, 0

    async def count(self, texts: list[str]) -> list[int]:
        self.texts += len(texts)
        return await self.inner.count(texts)


async def test_contexts_have_exactly_input_length_tokens(oracle, bpe) -> None:
    said: list[str] = []
    prompts = await build_prompt_set(_spec(), oracle, progress=said.append)
    assert prompts.exact
    assert prompts.oracle == oracle.name
    assert prompts.context_tokens == [3000] * 4
    assert [count_tokens(bpe, c) for c in prompts.contexts] == [3000] * 4
    assert oracle.name in said[0]


async def test_headers_make_contexts_differ_from_the_first_tokens(oracle, bpe) -> None:
    prompts = await build_prompt_set(_spec(), oracle)
    for index, context in enumerate(prompts.contexts):
        assert context.startswith(f"Document {index + 1} of 4 (run seed 0): notes on ")
    prefixes = {tuple(bpe.encode(c).ids[:3]) for c in prompts.contexts}
    assert len(prefixes) == 4


async def test_filler_reads_like_sentences(oracle) -> None:
    prompts = await build_prompt_set(_spec(contexts=1), oracle)
    body = prompts.contexts[0].split(". ", 1)[1]
    words = re.findall(r"[A-Za-z]+", body)
    assert len(set(words)) > 300
    assert Counter(words).most_common(1)[0][1] < len(words) * 0.02
    sentences = [s for s in body.split(". ") if s]
    assert len(sentences) > 100
    assert all(s[0].isupper() for s in sentences)
    assert body.count(",") > 20
    assert body.endswith(".")


async def test_deterministic_for_a_seed(oracle) -> None:
    first = await build_prompt_set(_spec(seed=7), oracle)
    again = await build_prompt_set(_spec(seed=7), oracle)
    other = await build_prompt_set(_spec(seed=8), oracle)
    assert first == again
    assert all(a != b for a, b in zip(first.contexts, other.contexts, strict=True))
    assert "(run seed 8)" in other.contexts[0]
    assert first.questions != other.questions


def _topics(question: str) -> list[str]:
    for template in ONE_TOPIC + TWO_TOPICS:
        pattern = re.escape(template).replace(r"\{a\}", r"(\w+)").replace(r"\{b\}", r"(\w+)")
        match = re.fullmatch(re.escape(QUESTION_LEAD) + pattern, question)
        if match:
            return list(match.groups())
    raise AssertionError(f"not from a template: {question!r}")


async def test_questions_are_short_distinct_and_counted(oracle, bpe) -> None:
    prompts = await build_prompt_set(_spec(questions=16), oracle)
    for context, questions, costs in zip(
        prompts.contexts, prompts.questions, prompts.question_tokens, strict=True
    ):
        assert len(questions) == len(set(questions)) == 16
        assert all(q.startswith("\n\nQuestion: ") for q in questions)
        assert all(8 <= cost <= 25 for cost in costs)
        assert all(f" {t}" in context for q in questions for t in _topics(q))
        prompts_with = bpe.encode_batch_fast([context + q for q in questions])
        base = count_tokens(bpe, context)
        assert [len(e.ids) - base for e in prompts_with] == costs


async def test_many_questions_stay_distinct(oracle) -> None:
    prompts = await build_prompt_set(_spec(contexts=1, questions=3000, length=2000), oracle)
    assert len(set(prompts.questions[0])) == 3000


async def test_too_many_questions_for_a_short_context(oracle) -> None:
    with pytest.raises(PromptError, match="--questions-per-context 10000"):
        await build_prompt_set(_spec(contexts=1, questions=10_000, length=40), oracle)


async def test_too_short_for_the_header(oracle) -> None:
    with pytest.raises(PromptError, match="--input-length 10 is too short"):
        await build_prompt_set(_spec(length=10), oracle)


CANDIDATES = [" " + w for w in WORDS + STARTERS]


async def test_group_testing_needs_few_texts(oracle, bpe) -> None:
    counting = Counting(oracle)
    costs = await piece_costs(counting, CANDIDATES)
    assert costs == {c: count_tokens(bpe, c) for c in CANDIDATES}
    assert counting.texts <= len(CANDIDATES) / GROUP_SIZE + 2


async def test_group_testing_reads_the_cost_of_split_words(small_vocab_path: Path) -> None:
    small = Tokenizer.from_file(str(small_vocab_path))
    counting = Counting(LocalTokenizer(str(small_vocab_path)))
    costs = await piece_costs(counting, CANDIDATES)
    assert costs == {c: count_tokens(small, c) for c in CANDIDATES}
    assert 100 < sum(cost == 1 for cost in costs.values()) < len(CANDIDATES)
    assert counting.texts < len(CANDIDATES) * 1.1


async def test_exact_with_a_tokenizer_that_splits_many_words(small_vocab_path: Path) -> None:
    small = Tokenizer.from_file(str(small_vocab_path))
    oracle = LocalTokenizer(str(small_vocab_path))
    vocab = await measure_vocabulary(oracle)
    assert max(vocab.cost.values()) > 1
    prompts = await build_prompt_set(_spec(contexts=3, length=2500), oracle)
    assert prompts.exact
    assert [count_tokens(small, c) for c in prompts.contexts] == [2500] * 3


@pytest.mark.parametrize("vocab_size", [300, 600])
async def test_exact_with_a_small_vocabulary(tmp_path: Path, vocab_size: int) -> None:
    """Few or no English words are one token: contexts and questions are still exact."""
    path = train_bpe(tmp_path / "tokenizer.json", vocab_size)
    tokenizer = Tokenizer.from_file(str(path))
    oracle = LocalTokenizer(str(path))
    vocab = await measure_vocabulary(oracle)
    assert sum(vocab.cost[w] == 1 for w in vocab.words) < 64
    prompts = await build_prompt_set(_spec(questions=8), oracle)
    assert prompts.exact
    assert [count_tokens(tokenizer, c) for c in prompts.contexts] == [3000] * 4
    for context, questions, costs in zip(
        prompts.contexts, prompts.questions, prompts.question_tokens, strict=True
    ):
        whole = [count_tokens(tokenizer, context + q) for q in questions]
        assert whole == [3000 + cost for cost in costs]


async def test_exact_with_a_character_level_tokenizer(tmp_path: Path) -> None:
    """Every character one token: each word costs its length plus its space."""
    path = train_bpe(tmp_path / "tokenizer.json", 0)
    tokenizer = Tokenizer.from_file(str(path))
    oracle = LocalTokenizer(str(path))
    prompts = await build_prompt_set(_spec(contexts=2, questions=4), oracle)
    assert prompts.exact
    assert [len(c) for c in prompts.contexts] == [3000, 3000]
    assert [count_tokens(tokenizer, c) for c in prompts.contexts] == [3000, 3000]


@pytest.mark.parametrize("extra", [3, -5, 400])
async def test_counts_off_plan_are_corrected(bpe, extra: int) -> None:
    oracle = Skewed(bpe, extra=extra)
    said: list[str] = []
    prompts = await build_prompt_set(_spec(length=1000), oracle, progress=said.append)
    assert prompts.exact
    assert prompts.context_tokens == [1000] * 4
    assert [count_tokens(bpe, c) + extra for c in prompts.contexts] == [1000] * 4
    assert "adjusting 4 of 4 contexts" in said[-1]


async def test_unreachable_length_is_reported_not_claimed(bpe) -> None:
    oracle = Skewed(bpe, factor=2)
    prompts = await build_prompt_set(_spec(length=1001), oracle)
    assert not prompts.exact
    assert prompts.context_tokens == [2 * count_tokens(bpe, c) for c in prompts.contexts]


async def test_server_tokenize_needs_few_calls(bpe) -> None:
    calls = []
    async with aiohttp.ClientSession() as session, serve_stub(OpenAIStub(bpe)) as stub:
        oracle = ServerTokenizer(session, tokenize_url(stub.base_url), "m", {})
        for length in (1000, 6000):
            stub.calls.clear()
            prompts = await build_prompt_set(_spec(contexts=3, length=length), oracle)
            assert prompts.exact
            assert [count_tokens(bpe, c) for c in prompts.contexts] == [length] * 3
            calls.append(stub.calls["tokenize"])
    assert calls[0] == calls[1]
    assert calls[0] < 100


@pytest.mark.parametrize(
    "approximate", [LengthEstimate(), CalibratedEstimate(1.1, 0.0, 3)], ids=["estimate", "calib"]
)
async def test_approximate_oracles(approximate) -> None:
    prompts = await build_prompt_set(_spec(length=4000), approximate)
    assert not prompts.exact
    assert prompts.oracle == approximate.name
    assert all(abs(t - 4000) <= 2 for t in prompts.context_tokens)
    assert prompts.context_tokens == await approximate.count(prompts.contexts)
    if isinstance(approximate, LengthEstimate):
        assert prompts.context_tokens[0] == estimate_tokens(prompts.contexts[0])


def test_prompt_set_repr_is_a_summary() -> None:
    prompts = PromptSet(["a" * 100_000, "b"], [["q"], ["r", "s"]], [7, 9], [[1], [1, 2]], "x", True)
    assert repr(prompts) == (
        "PromptSet(contexts=2, context_tokens=7..9, questions=3, oracle='x', exact=True, "
        "overhead=0)"
    )
    assert "none" in repr(PromptSet([], [], [], [], "x", False))
