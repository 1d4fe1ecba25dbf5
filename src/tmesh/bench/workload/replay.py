"""A trace made into requests: token-exact prompts in trace order, with their arrival times.

Each request of the trace becomes one plan whose prompt is its blocks' texts (`blocks`) and whose
output length is the trace's. Plans name, as the contexts workload does, a context (here the
request's first block: requests that open alike share a context), the visit (how many requests
opened with that block before) and the rotation (which pass over the trace, with `--loop`).
Arrivals are the trace's own times divided by the time scale; a looped trace starts again one mean
gap after its last request.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tmesh.bench.workload.blocks import BlockBook, BlockKey, build_blocks, prompt_blocks
from tmesh.bench.workload.schedule import CacheSegments, overhead_segment
from tmesh.bench.workload.tokens import TokenOracle
from tmesh.bench.workload.trace import Trace
from tmesh.bench.workload.vocabulary import measure_vocabulary
from tmesh.results.records import RequestPlan

OVERHEAD_KEY = "tmesh-request-overhead"
"""The cache key of the tokens a server adds in front of every prompt (a BOS token)."""


@dataclass
class Replay:
    """The requests a replay sends, in order; endless when `loop`."""

    trace: Trace
    book: BlockBook
    blocks: list[list[BlockKey]]
    contexts: list[int]
    overhead: int = 0
    time_scale: float = 1.0
    loop: bool = False

    @property
    def num_contexts(self) -> int:
        return max(self.contexts, default=-1) + 1

    def describe(self) -> str:
        """The trace block printed before the run: what is replayed and how exact it is."""
        trace, book = self.trace, self.book
        rows = trace.requests[: len(self.blocks)]
        pace = f"{self.time_scale:g}x the trace's pace" + (", looped" if self.loop else "")
        checked = (
            f"{book.checked} prompts counted whole, {book.off} off"
            if book.checked
            else "not counted (approximate token counts)"
        )
        return "\n".join(
            [
                f"Trace: {trace.path} ({trace.format}, {trace.block_size}-token blocks)",
                f"Trace Requests: {len(rows)} over {rows[-1].arrival:.1f} s, replayed at {pace}",
                f"Trace Blocks: {len(book.texts)} distinct texts; {checked}",
            ]
        )

    def plans(self) -> Iterator[RequestPlan]:
        """The plans in trace order (again and again with `loop`), their indices counting on."""
        visits: Counter[int] = Counter()
        index = 0
        for rotation in itertools.count() if self.loop else range(1):
            for row, request in enumerate(self.trace.requests):
                if row >= len(self.blocks):
                    break
                context = self.contexts[row]
                yield RequestPlan(
                    index=index,
                    context_id=context,
                    question_id=row,
                    visit=visits[context],
                    rotation=rotation,
                    context=self.book.prompt(self.blocks[row]),
                    question="",
                    expected_prompt_tokens=request.input_length + self.overhead,
                    max_tokens=request.output_length,
                )
                visits[context] += 1
                index += 1

    def arrivals(self) -> Iterator[float]:
        """When each plan is due, in seconds after the start of the run."""
        times = [r.arrival for r in self.trace.requests[: len(self.blocks)]]
        gap = times[-1] / (len(times) - 1) if len(times) > 1 else 1.0
        for rotation in itertools.count() if self.loop else range(1):
            offset = rotation * (times[-1] + gap)
            for arrival in times:
                yield (offset + arrival) / self.time_scale

    def segments(self) -> Iterator[tuple[int, CacheSegments, int]]:
        """Each plan's index, cache segments and prompt tokens, for the ideal-cache score."""
        for plan in self.plans():
            segments = overhead_segment(self.overhead)
            segments.extend(self.blocks[plan.question_id])
            yield plan.index, segments, plan.expected_prompt_tokens


async def prepare_replay(
    trace: Trace,
    oracle: TokenOracle,
    *,
    seed: int = 0,
    max_requests: int | None = None,
    loop: bool = False,
    time_scale: float = 1.0,
    progress: Callable[[str], None] | None = None,
) -> Replay:
    """Block texts for the requests that will be sent (all of them with `loop`, else at most
    `max_requests`), and the replay over them."""
    rows = trace.requests if loop or max_requests is None else trace.requests[:max_requests]
    blocks = [prompt_blocks(r.hash_ids, r.input_length, trace.block_size) for r in rows]
    say = progress or (lambda _text: None)
    say(f"writing the {len({k for keys in blocks for k in keys})} distinct blocks of {len(rows)} "
        f"requests ({trace.block_size}-token blocks, token counts: {oracle.name})…")  # fmt: skip
    vocab = await measure_vocabulary(oracle)
    book = await build_blocks(blocks, oracle, vocab, seed, progress)
    firsts: dict[BlockKey, int] = {}
    contexts = [firsts.setdefault(keys[0], len(firsts)) for keys in blocks]
    return Replay(trace, book, blocks, contexts, time_scale=time_scale, loop=loop)
