"""Prompt sets: exact context lengths under real BPE tokenizers, questions, determinism."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tokenizer_helpers import OpenAIStub, count_tokens, serve_stub, train_bpe
from tokenizers import Tokenizer

from tmesh.bench.workload.prompts import (
    GROUP_SIZE,
    ONE_TOPIC,
    QUESTION_LEAD,
    TWO_TOPICS,
    PromptError,
    PromptSet,
    build_prompt_set,
    find_vocabulary,
    single_token_pieces,
)
from tmesh.bench.workload.tokens import (
    CalibratedEstimate,
    LengthEstimate,
    LocalTokenizer,
    ServerTokenizer,
    estimate_tokens,
    tokenize_url,
)
from tmesh.bench.workload.words import (
    MIN_PIECES,
    STARTERS,
    WORDS,
    render_sentences,
    sentence_shapes,
)
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
    single = await single_token_pieces(counting, CANDIDATES)
    assert single == {c for c in CANDIDATES if count_tokens(bpe, c) == 1}
    assert counting.texts <= len(CANDIDATES) / GROUP_SIZE + 2


async def test_group_testing_keeps_only_single_token_words(small_vocab_path: Path) -> None:
    small = Tokenizer.from_file(str(small_vocab_path))
    counting = Counting(LocalTokenizer(str(small_vocab_path)))
    single = await single_token_pieces(counting, CANDIDATES)
    assert single == {c for c in CANDIDATES if count_tokens(small, c) == 1}
    assert 100 < len(single) < len(CANDIDATES)
    assert counting.texts < len(CANDIDATES) * 1.1


async def test_exact_with_a_tokenizer_that_splits_many_words(small_vocab_path: Path) -> None:
    small = Tokenizer.from_file(str(small_vocab_path))
    oracle = LocalTokenizer(str(small_vocab_path))
    vocab = await find_vocabulary(oracle)
    assert len(vocab.words) < len(WORDS)
    prompts = await build_prompt_set(_spec(contexts=3, length=2500), oracle)
    assert prompts.exact
    assert [count_tokens(small, c) for c in prompts.contexts] == [2500] * 3


async def test_tokenizer_without_single_token_words(tmp_path: Path) -> None:
    oracle = LocalTokenizer(str(train_bpe(tmp_path / "tokenizer.json", 600)))
    with pytest.raises(PromptError, match="splits common English words"):
        await build_prompt_set(_spec(), oracle)


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
        "PromptSet(contexts=2, context_tokens=7..9, questions=3, oracle='x', exact=True)"
    )
    assert "none" in repr(PromptSet([], [], [], [], "x", False))


@given(pieces=st.integers(min_value=MIN_PIECES, max_value=5000), seed=st.integers(0, 2**32))
def test_sentence_shapes_use_exactly_the_pieces(pieces: int, seed: int) -> None:
    shapes = sentence_shapes(random.Random(seed), pieces)
    assert sum(length + 1 + (comma > 0) for length, comma in shapes) == pieces
    assert all(length >= 1 for length, _ in shapes)
    assert all(comma == 0 or 3 <= comma <= length - 3 for length, comma in shapes)
    assert shapes[-1][1] == 0


def test_sentence_shapes_refuse_too_few_pieces() -> None:
    with pytest.raises(ValueError, match="at least 2 pieces"):
        sentence_shapes(random.Random(0), 1)


def test_render_sentences_follow_their_shapes() -> None:
    shapes = [(12, 5), (1, 0), (7, 0)]
    words, starters = [" alpha", " beta"], [" The"]
    sentences = render_sentences(random.Random(0), words, starters, shapes)
    assert [len(s.split()) for s in sentences] == [12, 1, 7]
    assert sentences[0].split()[4].endswith(",")
    assert all(s.startswith(" The") and s.endswith(".") for s in sentences)
    assert sentences[1] == " The."
