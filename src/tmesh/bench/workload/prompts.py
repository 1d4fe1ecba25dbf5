"""The benchmark's prompts: contexts of exactly Input Length tokens, and short distinct questions.

Speed comes from counting words, not tokenizing text piece by piece. The words used are those the
oracle confirms to be one token each with their leading space (checked in groups, a few dozen
texts in all), so a context is planned to the exact length before it exists; then every context is
counted once, whole, and any difference (header numbers, unusual merges) is fixed by resizing its
last sentence and counting that context again. Questions reuse a handful of templates whose cost
is measured once, since their topics are single-token words too.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tmesh.bench.workload.tokens import TokenOracle
from tmesh.bench.workload.words import (
    FUNCTION_WORDS,
    MIN_PIECES,
    STARTERS,
    WORDS,
    render_sentences,
    sentence_shapes,
)
from tmesh.results.records import WorkloadSpec

ANCHOR = "Document:"
QUESTION_LEAD = "\n\nQuestion: "
ONE_TOPIC = (
    "What does the passage say about {a}?",
    "Where does the document first mention {a}?",
    "List the details the document gives about {a}.",
    "Why does the author bring up {a}?",
)
TWO_TOPICS = (
    "How are {a} and {b} related in the text?",
    "Summarize what the text says about {a} and {b}.",
    "Which sentence connects {a} with {b}?",
    "What is said about {a} near the mention of {b}?",
)
TEMPLATES = ONE_TOPIC + TWO_TOPICS
GROUP_SIZE = 16
MIN_WORDS = 64
MIN_STARTERS = 4
MAX_ROUNDS = 6
APPROXIMATE_ROUNDS = 3
TOPIC_SAMPLE = 32
MIN_TOPICS = 8
CHUNK = 8


class PromptError(ValueError):
    """The prompt set cannot be built as asked; the message is one line."""


@dataclass(repr=False)
class PromptSet:
    """Contexts and their questions, with token counts under `oracle` (exact if `exact`).

    Its repr is a summary: a finished asyncio task reprs its result (reprlib renders it whole
    before truncating), and ten megabytes of contexts doubled peak memory at set-up.
    """

    contexts: list[str]
    questions: list[list[str]]
    context_tokens: list[int]
    question_tokens: list[list[int]]
    oracle: str
    exact: bool

    def __repr__(self) -> str:
        counts = self.context_tokens
        tokens = f"{min(counts)}..{max(counts)}" if counts else "none"
        return (
            f"PromptSet(contexts={len(self.contexts)}, context_tokens={tokens}, "
            f"questions={sum(map(len, self.questions))}, oracle={self.oracle!r}, "
            f"exact={self.exact})"
        )


@dataclass(frozen=True)
class Vocabulary:
    """Words and sentence starters (with their leading space) and their tokens per piece."""

    words: list[str]
    starters: list[str]
    piece_cost: float

    @property
    def topics(self) -> set[str]:
        """Words fit to be asked about (no "though" or "while"), unless too few remain."""
        content = {w[1:] for w in self.words} - FUNCTION_WORDS
        return content if len(content) >= MIN_TOPICS else {w[1:] for w in self.words}


@dataclass
class _Draft:
    """A context being written: fixed header and sentences, then a last sentence that can resize."""

    header: str
    topics: tuple[str, ...]
    rng: random.Random
    header_tokens: int = 0
    sentences: list[str] = field(default_factory=list)
    costs: list[int] = field(default_factory=list)
    fixed_pieces: int = 0
    tail: str = ""
    tail_pieces: int = 0
    text: str = ""
    tokens: int = 0
    before: tuple[int, int] | None = None  # (pieces, tokens) before the last resize

    @property
    def pieces(self) -> int:
        return self.fixed_pieces + self.tail_pieces


async def build_prompt_set(
    spec: WorkloadSpec,
    oracle: TokenOracle,
    progress: Callable[[str], None] | None = None,
) -> PromptSet:
    """All contexts and questions of `spec`, deterministic for its seed (and the oracle)."""
    say = progress or _silent
    target, count = spec.input_length, spec.num_contexts
    say(f"building {count} contexts of {target} tokens (token counts: {oracle.name})…")
    vocab = await find_vocabulary(oracle)
    drafts = [_start(spec, index, vocab) for index in range(count)]
    template_costs = await _measure_headers(drafts, oracle, vocab)
    longest = max(draft.header_tokens for draft in drafts)
    if round((target - longest) / vocab.piece_cost) < MIN_PIECES:
        raise PromptError(
            f"--input-length {target} is too short: a document header alone is {longest} tokens"
        )
    await _plan_and_count(drafts, oracle, target, vocab)
    await _converge(drafts, oracle, target, vocab, say)
    questions, question_tokens = [], []
    for index, draft in enumerate(drafts):
        texts, costs = _questions(spec, index, draft, vocab, template_costs)
        questions.append(texts)
        question_tokens.append(costs)
    exact = oracle.exact and all(d.tokens == target for d in drafts)
    return PromptSet(
        [d.text for d in drafts],
        questions,
        [d.tokens for d in drafts],
        question_tokens,
        oracle.name,
        exact,
    )


async def find_vocabulary(oracle: TokenOracle) -> Vocabulary:
    """The candidate words usable as one token each (exact oracles), or all with their mean cost."""
    words = [" " + w for w in WORDS]
    starters = [" " + w for w in STARTERS]
    if not oracle.exact:
        groups = _groups(words + starters, GROUP_SIZE)
        costs = await _marginal_costs(oracle, groups)
        per_piece = sum(costs) / sum(len(g) for g in groups)
        return Vocabulary(words, starters, max(per_piece, 0.1))
    single = await single_token_pieces(oracle, words + starters)
    vocab = Vocabulary([w for w in words if w in single], [s for s in starters if s in single], 1.0)
    if len(vocab.words) < MIN_WORDS or len(vocab.starters) < MIN_STARTERS:
        raise PromptError(
            f"{oracle.name} splits common English words into several tokens "
            f"({len(vocab.words)} single-token words found, {MIN_WORDS} needed); "
            "exact-length prompts cannot be built with it"
        )
    return vocab


async def single_token_pieces(oracle: TokenOracle, candidates: list[str]) -> set[str]:
    """Candidates that add exactly one token after a fixed anchor, found by group testing.

    A group of k words that adds k tokens holds only single-token words (each adds at least one);
    failing groups are split in four and tried again, so a well-behaved tokenizer needs about
    `len(candidates) / GROUP_SIZE` texts and a few more rounds only for its exceptions. When most
    groups fail, splitting would cost more texts than it saves, so their words go one by one.
    """
    good: set[str] = set()
    groups = _groups(candidates, GROUP_SIZE)
    while groups:
        costs = await _marginal_costs(oracle, groups)
        failed: list[list[str]] = []
        for group, cost in zip(groups, costs, strict=True):
            if cost == len(group):
                good.update(group)
            elif len(group) > 1:
                failed.append(group)
        one_by_one = len(failed) * 2 > len(groups)
        groups = [
            part
            for group in failed
            for part in _groups(group, 1 if one_by_one else math.ceil(len(group) / 4))
        ]
    return good


async def _marginal_costs(oracle: TokenOracle, groups: list[list[str]]) -> list[int]:
    """Tokens each group adds after ANCHOR: the anchor absorbs start-of-text effects (such as a
    SentencePiece dummy prefix) that the group would never meet inside a context."""
    base, *counts = await oracle.count([ANCHOR] + [ANCHOR + "".join(g) for g in groups])
    return [tokens - base for tokens in counts]


def _groups(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _start(spec: WorkloadSpec, index: int, vocab: Vocabulary) -> _Draft:
    rng = random.Random(f"tmesh-context:{spec.seed}:{index}")
    topics = vocab.topics
    a, b, c = rng.sample([w for w in vocab.words if w[1:] in topics], 3)
    header = (
        f"Document {index + 1} of {spec.num_contexts} (run seed {spec.seed}): "
        f"notes on{a},{b} and{c}."
    )
    return _Draft(header, (a[1:], b[1:], c[1:]), rng)


async def _measure_headers(
    drafts: list[_Draft], oracle: TokenOracle, vocab: Vocabulary
) -> list[int]:
    """Count every header, and what each question template adds after a context-like ending.

    A header ends like a context (a word and a period), so it is the anchor for the templates;
    topics are single-token words, so one count per template holds for every question made
    from it.
    """
    anchor = drafts[0].header
    a, b = vocab.words[0][1:], vocab.words[1][1:]
    probes = [anchor + QUESTION_LEAD + template.format(a=a, b=b) for template in TEMPLATES]
    measured = await oracle.count([draft.header for draft in drafts] + probes)
    for draft, tokens in zip(drafts, measured, strict=False):
        draft.header_tokens = tokens
    return [tokens - drafts[0].header_tokens for tokens in measured[len(drafts) :]]


def _fill(draft: _Draft, target: int, vocab: Vocabulary) -> None:
    pieces = round((target - draft.header_tokens) / vocab.piece_cost)
    shapes = sentence_shapes(draft.rng, pieces)
    draft.sentences = render_sentences(draft.rng, vocab.words, vocab.starters, shapes[:-1])
    draft.costs = [length + 1 + (comma > 0) for length, comma in shapes[:-1]]
    draft.fixed_pieces = sum(draft.costs)
    _set_tail(draft, shapes[-1][0] + 1, vocab)


def _set_tail(draft: _Draft, pieces: int, vocab: Vocabulary) -> None:
    """Replace the last sentence by one of `pieces` pieces (words and its period)."""
    while pieces < MIN_PIECES and draft.sentences:
        cost = draft.costs.pop()
        draft.sentences.pop()
        draft.fixed_pieces -= cost
        pieces += cost
    pieces = max(pieces, MIN_PIECES)
    (draft.tail,) = render_sentences(draft.rng, vocab.words, vocab.starters, [(pieces - 1, 0)])
    draft.tail_pieces = pieces
    # One join for the whole text: ~180 kB strings built in steps leave the allocator fragmented.
    draft.text = "".join([draft.header, *draft.sentences, draft.tail])


async def _plan_and_count(
    drafts: list[_Draft], oracle: TokenOracle, target: int, vocab: Vocabulary
) -> None:
    """Write every context and count it once, in chunks: Python writes the next chunk while the
    oracle (a Rust tokenizer in a thread, or the server) counts the previous one, and only one
    chunk's encodings are alive at a time."""
    running: asyncio.Future[list[int]] | None = None
    previous: list[_Draft] = []
    for start in range(0, len(drafts), CHUNK):
        chunk = drafts[start : start + CHUNK]
        for draft in chunk:
            _fill(draft, target, vocab)
        if running is not None:
            _record(previous, await running)
        previous = chunk
        running = asyncio.ensure_future(oracle.count([draft.text for draft in chunk]))
        await asyncio.sleep(0)  # let the count start before writing the next chunk
    if running is not None:
        _record(previous, await running)


def _record(drafts: list[_Draft], counts: list[int]) -> None:
    for draft, tokens in zip(drafts, counts, strict=True):
        draft.tokens = tokens


async def _converge(
    drafts: list[_Draft],
    oracle: TokenOracle,
    target: int,
    vocab: Vocabulary,
    say: Callable[[str], None],
) -> None:
    """Resize the last sentence of contexts off target and count those again, a few rounds.

    Exact oracles verified that a word is one token, so one round normally lands exactly. For an
    estimate the marginal cost of a word is learnt from the context's own last change (a secant
    step); local estimates are cheap to recount, so they get a few rounds too.
    """
    rounds = MAX_ROUNDS if oracle.exact else APPROXIMATE_ROUNDS
    pending = [d for d in drafts if d.tokens != target]
    if pending and oracle.exact:
        say(f"adjusting {len(pending)} of {len(drafts)} contexts to the exact length…")
    for _ in range(rounds):
        resized = []
        for draft in pending:
            change = round((target - draft.tokens) / _piece_rate(draft, vocab, oracle.exact))
            if change:
                draft.before = (draft.pieces, draft.tokens)
                _set_tail(draft, draft.tail_pieces + change, vocab)
                resized.append(draft)
        if not resized:
            return
        _record(resized, await oracle.count([draft.text for draft in resized]))
        pending = [d for d in resized if d.tokens != target]


def _piece_rate(draft: _Draft, vocab: Vocabulary, exact: bool) -> float:
    """Tokens per added word: one for exact oracles (verified), else measured on this context."""
    if exact:
        return vocab.piece_cost
    if draft.before is not None and draft.before[0] != draft.pieces:
        slope = (draft.tokens - draft.before[1]) / (draft.pieces - draft.before[0])
        if slope > 0:
            return slope
    if draft.tokens > draft.header_tokens:
        return (draft.tokens - draft.header_tokens) / draft.pieces
    return vocab.piece_cost


def _questions(
    spec: WorkloadSpec,
    index: int,
    draft: _Draft,
    vocab: Vocabulary,
    template_costs: list[int],
) -> tuple[list[str], list[int]]:
    """`questions_per_context` distinct questions about words that occur in the context.

    Questions are drawn without replacement from the numbered space of (template, topic, topic)
    choices, which stays distinct without building the whole space.
    """
    rng = random.Random(f"tmesh-questions:{spec.seed}:{index}")
    wanted = spec.questions_per_context
    topics = _topics(draft, rng, vocab)
    size = min(len(topics), TOPIC_SAMPLE)
    while _capacity(size) < wanted and size < len(topics):
        size = min(len(topics), size * 2)
    if _capacity(size) < wanted:
        raise PromptError(
            f"--questions-per-context {wanted} is more than the {_capacity(size)} distinct "
            f"questions a {spec.input_length}-token context allows"
        )
    chosen = rng.sample(topics, size)
    texts, costs = [], []
    for number in rng.sample(range(_capacity(size)), wanted):
        template, a, b = _decode(number, size)
        texts.append(QUESTION_LEAD + TEMPLATES[template].format(a=chosen[a], b=chosen[b]))
        costs.append(template_costs[template])
    return texts, costs


def _topics(draft: _Draft, rng: random.Random, vocab: Vocabulary) -> list[str]:
    """Single-token words that really occur in the context (not its sentence starters)."""
    sample = [*rng.sample(draft.sentences, min(len(draft.sentences), 64)), draft.tail]
    found = {word.strip(",.") for sentence in sample for word in sentence.split()[1:]}
    return sorted((found & vocab.topics) | set(draft.topics))


def _capacity(topics: int) -> int:
    return len(ONE_TOPIC) * topics + len(TWO_TOPICS) * topics * (topics - 1)


def _decode(number: int, topics: int) -> tuple[int, int, int]:
    """The (template, first topic, second topic) numbered `number`; topics differ when two."""
    ones = len(ONE_TOPIC) * topics
    if number < ones:
        return number // topics, number % topics, 0
    number -= ones
    pairs = topics * (topics - 1)
    template, pair = divmod(number, pairs)
    first, second = divmod(pair, topics - 1)
    if second >= first:
        second += 1
    return len(ONE_TOPIC) + template, first, second


def _silent(_text: str) -> None:
    return None
