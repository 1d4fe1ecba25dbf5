"""The benchmark's prompts: contexts of exactly Input Length tokens, and short distinct questions.

Speed comes from planning by piece costs, not tokenizing text piece by piece: the vocabulary's
costs are measured once (a few dozen texts for a large vocabulary, a few hundred for a small one),
each context is written to the exact budget before it exists, then counted once, whole; any
difference (header numbers, an unusual merge) is fixed by rewriting its last sentences and
counting that context again. Questions reuse a handful of templates whose cost is measured once,
plus their topic words' known costs.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tmesh.bench.workload.filler import Filler, Writer
from tmesh.bench.workload.tokens import TokenOracle
from tmesh.bench.workload.vocabulary import Vocabulary, measure_vocabulary
from tmesh.results.records import WorkloadSpec

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
MAX_ROUNDS = 6
APPROXIMATE_ROUNDS = 3
TOPIC_SAMPLE = 32
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
    overhead: int = 0
    """Tokens the server adds to every request around its text (BOS, a chat template)."""

    def __repr__(self) -> str:
        counts = self.context_tokens
        tokens = f"{min(counts)}..{max(counts)}" if counts else "none"
        return (
            f"PromptSet(contexts={len(self.contexts)}, context_tokens={tokens}, "
            f"questions={sum(map(len, self.questions))}, oracle={self.oracle!r}, "
            f"exact={self.exact}, overhead={self.overhead})"
        )


@dataclass
class _Draft:
    """A context being written: a fixed header, then filler whose last sentences can change."""

    header: str
    topics: tuple[str, ...]
    rng: random.Random
    header_tokens: int = 0
    filler: Filler = field(default_factory=Filler)
    text: str = ""
    tokens: int = 0
    before: tuple[int, int] | None = None  # (units, tokens) before the last resize

    def set_filler(self, filler: Filler) -> None:
        self.filler = filler
        # One join for the whole text: ~180 kB strings built in steps fragment the allocator.
        self.text = "".join([self.header, *filler.sentences])


async def build_prompt_set(
    spec: WorkloadSpec,
    oracle: TokenOracle,
    progress: Callable[[str], None] | None = None,
) -> PromptSet:
    """All contexts and questions of `spec`, deterministic for its seed (and the oracle)."""
    say = progress or _silent
    target, count = spec.input_length, spec.num_contexts
    say(f"building {count} contexts of {target} tokens (token counts: {oracle.name})…")
    vocab = await measure_vocabulary(oracle)
    writer = Writer(vocab)
    drafts = [_start(spec, index, vocab) for index in range(count)]
    template_costs = await _measure_headers(drafts, oracle, vocab)
    longest = max(draft.header_tokens for draft in drafts)
    if _units(target - longest, vocab) < writer.tail_min:
        raise PromptError(
            f"--input-length {target} is too short: a document header alone is {longest} tokens"
        )
    await _plan_and_count(drafts, oracle, target, writer)
    await _converge(drafts, oracle, target, writer, say)
    questions, question_tokens = [], []
    for index, draft in enumerate(drafts):
        texts, costs = await _questions(spec, index, draft, vocab, template_costs, oracle)
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


def _units(tokens: float, vocab: Vocabulary) -> int:
    return round(tokens / vocab.unit_tokens)


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

    A header ends like a context (a word and a period), so it is the anchor for the templates.
    The probes use the vocabulary's first two words as topics; a question's cost is its
    template's minus those words' costs plus its own topics' costs.
    """
    anchor = drafts[0].header
    a, b = vocab.words[0][1:], vocab.words[1][1:]
    probes = [anchor + QUESTION_LEAD + template.format(a=a, b=b) for template in TEMPLATES]
    measured = await oracle.count([draft.header for draft in drafts] + probes)
    for draft, tokens in zip(drafts, measured, strict=False):
        draft.header_tokens = tokens
    return [tokens - drafts[0].header_tokens for tokens in measured[len(drafts) :]]


async def _plan_and_count(
    drafts: list[_Draft], oracle: TokenOracle, target: int, writer: Writer
) -> None:
    """Write every context and count it once, in chunks: Python writes the next chunk while the
    oracle (a Rust tokenizer in a thread, or the server) counts the previous one, and only one
    chunk's encodings are alive at a time."""
    running: asyncio.Future[list[int]] | None = None
    previous: list[_Draft] = []
    for start in range(0, len(drafts), CHUNK):
        chunk = drafts[start : start + CHUNK]
        for draft in chunk:
            filler = writer.write(draft.rng, _units(target - draft.header_tokens, writer.vocab))
            if filler is None:
                raise PromptError(_unwritable(target, writer))
            draft.set_filler(filler)
        if running is not None:
            _record(previous, await running)
        previous = chunk
        running = asyncio.ensure_future(oracle.count([draft.text for draft in chunk]))
        await asyncio.sleep(0)  # let the count start before writing the next chunk
    if running is not None:
        _record(previous, await running)


def _unwritable(target: int, writer: Writer) -> str:
    return (
        f"no text of {target} tokens can be written with this tokenizer's pieces "
        f"(costs {sorted(writer.by_cost)})"
    )


def _record(drafts: list[_Draft], counts: list[int]) -> None:
    for draft, tokens in zip(drafts, counts, strict=True):
        draft.tokens = tokens


async def _converge(
    drafts: list[_Draft],
    oracle: TokenOracle,
    target: int,
    writer: Writer,
    say: Callable[[str], None],
) -> None:
    """Rewrite the last sentences of contexts off target and count those again, a few rounds.

    Exact oracles measured every piece's cost, so one round normally lands exactly. For an
    estimate the cost of a unit is learnt from the context's own last change (a secant step);
    local estimates are cheap to recount, so they get a few rounds too.
    """
    exact = writer.vocab.exact
    rounds = MAX_ROUNDS if exact else APPROXIMATE_ROUNDS
    pending = [d for d in drafts if d.tokens != target]
    if pending and exact:
        say(f"adjusting {len(pending)} of {len(drafts)} contexts to the exact length…")
    for _ in range(rounds):
        resized = []
        for draft in pending:
            change = round((target - draft.tokens) / _unit_rate(draft, writer.vocab))
            filler = writer.resize(draft.rng, draft.filler, change) if change else None
            if filler is not None:
                draft.before = (draft.filler.cost, draft.tokens)
                draft.set_filler(filler)
                resized.append(draft)
        if not resized:
            return
        _record(resized, await oracle.count([draft.text for draft in resized]))
        pending = [d for d in resized if d.tokens != target]


def _unit_rate(draft: _Draft, vocab: Vocabulary) -> float:
    """Tokens per unit: one for exact oracles (measured), else learnt on this context."""
    if vocab.exact:
        return 1.0
    units = draft.filler.cost
    if draft.before is not None and draft.before[0] != units:
        slope = (draft.tokens - draft.before[1]) / (units - draft.before[0])
        if slope > 0:
            return slope
    if draft.tokens > draft.header_tokens and units:
        return (draft.tokens - draft.header_tokens) / units
    return vocab.unit_tokens


async def _questions(
    spec: WorkloadSpec,
    index: int,
    draft: _Draft,
    vocab: Vocabulary,
    template_costs: list[int],
    oracle: TokenOracle,
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
        first, second = chosen[a], chosen[b]
        texts.append(QUESTION_LEAD + TEMPLATES[template].format(a=first, b=second))
        swap = vocab.cost[" " + first] - vocab.cost[vocab.words[0]]
        if template >= len(ONE_TOPIC):
            swap += vocab.cost[" " + second] - vocab.cost[vocab.words[1]]
        costs.append(template_costs[template] + swap)
    if not vocab.exact:
        costs = await _counted_after(oracle, draft.header, texts)
    return texts, costs


async def _counted_after(oracle: TokenOracle, anchor: str, texts: list[str]) -> list[int]:
    """What an approximate oracle says each text adds after `anchor` (it has no piece costs)."""
    base, *counts = await oracle.count([anchor, *(anchor + text for text in texts)])
    return [tokens - base for tokens in counts]


def _topics(draft: _Draft, rng: random.Random, vocab: Vocabulary) -> list[str]:
    """Words that really occur in the context (not its sentence starters)."""
    sentences = draft.filler.sentences
    sample = rng.sample(sentences, min(len(sentences), 64)) + sentences[-1:]
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
