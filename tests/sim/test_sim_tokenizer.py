"""The simulator's pseudo-tokenizer: deterministic, one token per piece, prefix-stable, memoised."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmesh.sim.tokenizer import CHUNK_CHARS, SimTokenizer


def _filler(words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    vocab = ["alpha", "beta", "gamma", "delta", "kappa", "omega", "zeta", "theta"]
    return " ".join(rng.choice(vocab) + rng.choice(["", "", ",", "."]) for _ in range(words))


def test_each_word_with_its_leading_space_and_each_punctuation_is_one_token() -> None:
    tok = SimTokenizer()
    assert tok.count("Hello, world!") == 4
    assert tok.count(" word") == 1
    assert tok.encode(" word") != tok.encode("word")
    assert tok.count("a  b\n\nc") == 3
    assert tok.count("trailing  ") == 2


def test_ids_are_stable_across_instances_and_in_vocab() -> None:
    text = _filler(500)
    a, b = SimTokenizer(vocab_size=1000).encode(text), SimTokenizer(vocab_size=1000).encode(text)
    assert a == b
    assert all(0 <= t < 1000 for t in a)
    assert len(set(a)) > 8


def test_long_context_plus_question_shares_the_context_tokens() -> None:
    tok = SimTokenizer()
    context = _filler(30000)
    assert len(context) > 10 * CHUNK_CHARS
    ctx_ids = tok.encode(context)
    q1 = tok.encode(context + "\nWhat is the first word?")
    q2 = tok.encode(context + " Which word repeats most?")
    assert q1[: len(ctx_ids)] == ctx_ids == q2[: len(ctx_ids)]
    assert q1[len(ctx_ids) :] == tok.encode("\nWhat is the first word?")


def test_chunked_memo_gives_the_same_tokens_as_a_cold_tokenizer() -> None:
    context = _filler(20000, seed=3)
    warm = SimTokenizer()
    warm.encode(context[: len(context) // 2])
    assert warm.encode(context) == SimTokenizer().encode(context)


def test_resending_a_context_hits_the_memo_for_all_but_the_last_chunk() -> None:
    tok = SimTokenizer()
    context = _filler(30000)
    tok.encode(context + " first question?")
    misses = tok.chunk_misses
    tok.encode(context + " second question?")
    assert tok.chunk_misses == misses + 1
    assert tok.chunk_hits >= misses - 1


@given(
    st.text(alphabet="ab ,\n", min_size=1, max_size=40).filter(lambda s: not s[-1].isspace()),
    st.text(alphabet="ab ,\n", max_size=40).map(lambda s: " " + s),
)
def test_split_at_a_space_after_non_space_is_prefix_stable(a: str, b: str) -> None:
    tok = SimTokenizer()
    assert tok.encode(a + b) == tok.encode(a) + tok.encode(b)


def test_chat_rendering_shares_a_prefix_for_a_shared_first_message() -> None:
    tok = SimTokenizer()
    first = {"role": "user", "content": _filler(300)}
    one = tok.encode(tok.render_chat([first]))
    two = tok.encode(
        tok.render_chat(
            [first, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}]
        )
    )
    shared = tok.encode(tok.render_chat([first]).removesuffix("<|start|>assistant<|message|>"))
    assert one[: len(shared)] == two[: len(shared)]
    parts = tok.render_chat([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    assert parts == tok.render_chat([{"role": "user", "content": "hi"}])


@pytest.mark.parametrize(
    "messages",
    [[{"content": "x"}], [{"role": "user", "content": 3}], [{"role": "user", "content": [1]}]],
)
def test_malformed_messages_raise_value_error(messages: list[dict]) -> None:
    with pytest.raises(ValueError):
        SimTokenizer().render_chat(messages)
