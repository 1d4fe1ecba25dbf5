"""Tiling schedule: context order, rotations, question decks, determinism, no copies."""

from __future__ import annotations

from itertools import islice

import pytest

from tmesh.bench.workload.prompts import PromptSet
from tmesh.bench.workload.schedule import tiling_plans


def _prompt_set(contexts: int = 3, questions: int = 4) -> PromptSet:
    return PromptSet(
        contexts=[f"context {c} " * 50 for c in range(contexts)],
        questions=[[f"\n\nQ{c}.{q}?" for q in range(questions)] for c in range(contexts)],
        context_tokens=[1000 + c for c in range(contexts)],
        question_tokens=[[10 * c + q for q in range(questions)] for c in range(contexts)],
        oracle="test",
        exact=True,
    )


def test_tiling_order_and_rotations() -> None:
    plans = list(islice(tiling_plans(_prompt_set(), seed=0), 10))
    assert [p.index for p in plans] == list(range(10))
    assert [p.context_id for p in plans] == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert [p.rotation for p in plans] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    assert [p.visit for p in plans] == [p.rotation for p in plans]


def test_plans_carry_their_context_and_question() -> None:
    prompts = _prompt_set()
    for plan in islice(tiling_plans(prompts, seed=1), 30):
        assert plan.context is prompts.contexts[plan.context_id]
        assert plan.question == prompts.questions[plan.context_id][plan.question_id]
        assert plan.expected_prompt_tokens == (
            prompts.context_tokens[plan.context_id]
            + prompts.question_tokens[plan.context_id][plan.question_id]
        )
        assert plan.prompt == plan.context + plan.question


def test_every_question_once_per_deck() -> None:
    prompts = _prompt_set(contexts=2, questions=5)
    plans = list(islice(tiling_plans(prompts, seed=3), 2 * 5 * 3))
    for context_id in range(2):
        asked = [p.question_id for p in plans if p.context_id == context_id]
        for deck in range(3):
            assert sorted(asked[deck * 5 : deck * 5 + 5]) == list(range(5))


def test_questions_are_shuffled_and_seeded() -> None:
    prompts = _prompt_set(contexts=1, questions=50)

    def order(seed: int) -> list[int]:
        return [p.question_id for p in islice(tiling_plans(prompts, seed), 50)]

    assert order(5) == order(5)
    assert order(5) != order(6)
    assert order(5) != list(range(50)) and order(5) != list(range(49, -1, -1))


def test_empty_prompt_set_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one context"):
        next(tiling_plans(_prompt_set(contexts=0), seed=0))
    with pytest.raises(ValueError, match="at least one question"):
        next(tiling_plans(_prompt_set(questions=0), seed=0))
