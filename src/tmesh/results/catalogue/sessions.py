"""The breakdowns of a sessions run, declared once: figures by turn index and by idle gap.

They are families rather than single numbers (one value per turn, one per gap bucket), read from
`SessionStats` in `summary.json` and `intervals.jsonl`; the console, the report and the
comparison name, define and read them only from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tmesh.results.catalogue.units import FRACTION, SECONDS, TOKENS_PER_S
from tmesh.results.records import GapStats, TurnStats

S = TypeVar("S", TurnStats, GapStats)


@dataclass(frozen=True)
class Breakdown(Generic[S]):
    """One figure of each turn index or gap bucket: `value` reads it (None when unknown)."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    definition: str
    value: Callable[[S], float | None]


def cached_share(part: TurnStats | GapStats) -> float | None:
    """Cached prompt tokens / prompt tokens, when every request of the part reported its cached
    tokens (a share over some of them would say nothing about the others)."""
    if not part.requests or part.cached_tokens_reported < part.requests or not part.prompt_tokens:
        return None
    return part.cached_tokens / part.prompt_tokens


_GAP = (
    "the turns whose idle gap (from the end of the session's previous turn to this request) "
    "fell in the bucket"
)

TTFT_BY_TURN: Breakdown[TurnStats] = Breakdown(
    "ttft_by_turn", "TTFT by turn", SECONDS, False,
    "mean TTFT of the successful requests of each turn index; turn 1 is a session's first "
    "request, cold by construction",
    lambda t: t.ttft.mean,
)  # fmt: skip
PREFILL_BY_TURN: Breakdown[TurnStats] = Breakdown(
    "prefill_throughput_by_turn", "Prefill throughput by turn", TOKENS_PER_S, True,
    "mean prompt_tokens / TTFT of the successful requests of each turn index",
    lambda t: t.prefill_throughput.mean,
)  # fmt: skip
CACHED_BY_TURN: Breakdown[TurnStats] = Breakdown(
    "cached_share_by_turn", "Cached share by turn", FRACTION, True,
    "cached prompt tokens (usage) / prompt tokens of each turn index",
    cached_share,
)  # fmt: skip
BY_TURN = (TTFT_BY_TURN, PREFILL_BY_TURN, CACHED_BY_TURN)

CACHED_BY_GAP: Breakdown[GapStats] = Breakdown(
    "cached_share_by_gap", "Cached share by idle gap", FRACTION, True,
    "cached prompt tokens (usage.prompt_tokens_details.cached_tokens) / prompt tokens of " + _GAP
    + ": the cache-survival curve",
    cached_share,
)  # fmt: skip
TTFT_BY_GAP: Breakdown[GapStats] = Breakdown(
    "ttft_by_gap", "TTFT by idle gap", SECONDS, False, "mean TTFT of " + _GAP,
    lambda g: g.ttft.mean,
)  # fmt: skip
SERVER_HIT_BY_GAP: Breakdown[GapStats] = Breakdown(
    "server_hit_rate_by_gap", "Server GPU hit rate by idle gap", FRACTION, True,
    "the server's GPU prefix-cache hit rate over the intervals in which " + _GAP + " finished, "
    "weighted by how many finished in each (the server's counters cannot tell requests apart)",
    lambda g: g.server_hit_rate,
)  # fmt: skip
SERVER_EXTERNAL_BY_GAP: Breakdown[GapStats] = Breakdown(
    "server_external_hit_rate_by_gap", "Server offload-tier hit rate by idle gap", FRACTION, True,
    "the server's offload-tier hit rate, attributed to " + _GAP + " like the GPU's",
    lambda g: g.server_external_hit_rate,
)  # fmt: skip
BY_GAP = (CACHED_BY_GAP, TTFT_BY_GAP, SERVER_HIT_BY_GAP, SERVER_EXTERNAL_BY_GAP)


def gap_label(part: GapStats) -> str:
    """`0-5 s`, `>120 s`: a bucket as the console and the report name it."""
    if part.high is None:
        return f">{part.low:g} s"
    return f"{part.low:g}-{part.high:g} s"


def turn_label(part: TurnStats) -> str:
    return str(part.turn)
