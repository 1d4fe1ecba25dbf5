"""Filler of an exact cost: whatever the pieces cost, the sentences add up to the budget."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmesh.bench.workload.filler import TAIL_SPAN, Writer
from tmesh.bench.workload.vocabulary import COMMA, PERIOD, Vocabulary
from tmesh.bench.workload.words import STARTERS, WORDS

WORD_PIECES = tuple(" " + w for w in WORDS[:200])
STARTER_PIECES = tuple(" " + w for w in STARTERS)


def _vocab(word_cost: int | None = None, period: int = 1, comma: int = 1) -> Vocabulary:
    """Word costs by their length (a small vocabulary), or all equal to `word_cost`."""
    cost = {p: word_cost or max(1, len(p) // 2) for p in WORD_PIECES + STARTER_PIECES}
    cost.update({PERIOD: period, COMMA: comma})
    return Vocabulary(WORD_PIECES, STARTER_PIECES, cost, 1.0, True)


def _cost(vocab: Vocabulary, sentence: str) -> int:
    pieces = sentence.replace(",", " ,").replace(".", " .").split()
    total = 0
    for piece in pieces:
        total += vocab.cost[piece] if piece in (PERIOD, COMMA) else vocab.cost[" " + piece]
    return total


@settings(max_examples=60, deadline=None)
@given(budget=st.integers(min_value=0, max_value=3000), seed=st.integers(0, 2**32))
def test_written_filler_costs_exactly_its_budget(budget: int, seed: int) -> None:
    vocab = _vocab()
    writer = Writer(vocab)
    filler = writer.write(random.Random(seed), budget)
    if budget < writer.tail_min:
        return
    assert filler is not None
    assert filler.cost == budget
    assert [_cost(vocab, s) for s in filler.sentences] == filler.costs
    assert all(s.startswith(" ") and s[1].isupper() and s.endswith(".") for s in filler.sentences)


@settings(max_examples=40, deadline=None)
@given(units=st.integers(min_value=1, max_value=200), seed=st.integers(0, 2**32))
def test_exact_sentence_or_none(units: int, seed: int) -> None:
    vocab = _vocab(word_cost=3, period=1, comma=2)
    sentence = Writer(vocab).exact_sentence(random.Random(seed), units)
    # starter (3) + k words (3 each) + m commas between them (2 each) + period (1)
    possible = any(4 + 3 * k + 2 * m == units for k in range(1, units) for m in range(k))
    assert (sentence is not None) == possible
    if sentence is not None:
        assert _cost(vocab, sentence) == units
        assert ",." not in sentence and not sentence.startswith(" ,") and ",," not in sentence


@pytest.mark.parametrize("change", [-30, -1, 1, 7, 400])
def test_resize_moves_the_cost_by_the_change(change: int) -> None:
    vocab = _vocab()
    writer = Writer(vocab)
    rng = random.Random(3)
    filler = writer.write(rng, 2000)
    assert filler is not None
    resized = writer.resize(rng, filler, change)
    assert resized is not None
    assert resized.cost == 2000 + change
    kept = len(resized.sentences) - 1
    assert resized.sentences[: kept - 20] == filler.sentences[: kept - 20]


def test_sentences_read_like_prose() -> None:
    filler = Writer(_vocab(word_cost=1)).write(random.Random(0), 5000)
    assert filler is not None
    lengths = [len(s.split()) for s in filler.sentences]
    assert 6 <= sum(lengths) / len(lengths) <= 18
    assert sum("," in s for s in filler.sentences) > len(filler.sentences) / 4
    assert filler.costs[-1] <= Writer(_vocab(word_cost=1)).tail_min + TAIL_SPAN


def test_no_filler_when_the_budget_cannot_be_met() -> None:
    vocab = _vocab(word_cost=2, period=2, comma=2)
    writer = Writer(vocab)
    assert writer.write(random.Random(0), 501) is None
    assert writer.write(random.Random(0), 500) is not None
