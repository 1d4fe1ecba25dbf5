"""The order of requests: a tiling pattern over contexts, a random question each time.

Contexts go 0, 1, …, M-1 and around again, so every context is revisited only after all the others:
the longest possible reuse distance, which is what forces a cache smaller than the working set to
evict and a bigger offload tier to pay off.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterator

from tmesh.bench.workload.prompts import PromptSet
from tmesh.results.records import RequestPlan

CacheSegments = list[tuple[Hashable, int]]
"""A prompt as a prefix cache sees it: (key, tokens) runs, equal keys for equal tokens, None for
tokens no other prompt shares."""
OVERHEAD_KEY = "tmesh-request-overhead"
"""The key of the tokens a server puts in front of every prompt (a BOS token)."""


def tiling_plans(prompt_set: PromptSet, seed: int) -> Iterator[RequestPlan]:
    """Endless plans in tiling order; each context's questions come from its own shuffled deck.

    A deck (every question once, in random order, then reshuffled) rather than independent draws:
    the same context + question pair would otherwise recur at random, and a whole-prompt cache hit
    is not the partial-prefix reuse this workload measures. Plans share the context strings,
    never copy them.
    """
    contexts = prompt_set.contexts
    if not contexts or not all(prompt_set.questions):
        raise ValueError("a schedule needs at least one context, each with at least one question")
    rng = random.Random(f"tmesh-schedule:{seed}")
    decks: list[list[int]] = [[] for _ in contexts]
    index = 0
    rotation = 0
    while True:
        for context_id, context in enumerate(contexts):
            deck = decks[context_id]
            if not deck:
                deck.extend(range(len(prompt_set.questions[context_id])))
                rng.shuffle(deck)
            question_id = deck.pop()
            yield RequestPlan(
                index=index,
                context_id=context_id,
                question_id=question_id,
                visit=rotation,
                rotation=rotation,
                context=context,
                question=prompt_set.questions[context_id][question_id],
                expected_prompt_tokens=prompt_set.context_tokens[context_id]
                + prompt_set.question_tokens[context_id][question_id]
                + prompt_set.overhead,
            )
            index += 1
        rotation += 1


def tiling_segments(prompt_set: PromptSet, seed: int) -> Iterator[tuple[int, CacheSegments, int]]:
    """Each plan of `tiling_plans` as the ideal-cache score sees it: its index, its segments (the
    server's per-request tokens, its context, its question) and its prompt tokens."""
    for plan in tiling_plans(prompt_set, seed):
        segments = overhead_segment(prompt_set.overhead)
        segments.append((("context", plan.context_id), prompt_set.context_tokens[plan.context_id]))
        segments.append((None, plan.expected_prompt_tokens - sum(n for _, n in segments)))
        yield plan.index, segments, plan.expected_prompt_tokens


def overhead_segment(overhead: int) -> CacheSegments:
    """The tokens every request starts with, as one segment (none when there are none)."""
    return [(OVERHEAD_KEY, overhead)] if overhead else []
