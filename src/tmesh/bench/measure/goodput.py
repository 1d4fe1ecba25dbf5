"""Goodput: the requests that met every latency limit of a service-level objective.

Throughput alone rewards a server that answers many requests slowly; what an operator sells is
requests answered within limits (`--slo ttft=2,itl=0.05,e2e=30`, in seconds, any subset). A
request counts as good when it succeeded and met every limit given. TTFT and E2E are judged from
the request's intended send time when it had one (open loop, sessions): a request the client
sent late because the server was saturated was late for its user too, and judging it from the
actual send would hide exactly the queueing the objective is about.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from tmesh.results.records import RequestRecord

SLO_KEYS = ("ttft", "itl", "e2e")


@dataclass(frozen=True)
class Slo:
    """Limits in seconds; None where no limit was set."""

    ttft: float | None = None
    itl: float | None = None
    e2e: float | None = None

    def limits(self) -> dict[str, float]:
        """The limits that were set, by name (what `summary.json` records)."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    def met_by(self, record: RequestRecord) -> bool:
        if not record.ok:
            return False
        ttft = _from_intended(record.ttft_from_intended, record.ttft)
        e2e = _from_intended(record.e2e_from_intended, record.e2e)
        return _within(ttft, self.ttft) and _within(record.itl, self.itl) and _within(e2e, self.e2e)


def _from_intended(intended: float | None, actual: float | None) -> float | None:
    return intended if intended is not None else actual


def _within(value: float | None, limit: float | None) -> bool:
    """A missing value meets any limit: an answer of one token has no inter-token gap to judge."""
    return limit is None or value is None or value <= limit


def parse_slo(text: str) -> Slo:
    """`ttft=2,itl=0.05,e2e=30` (any subset, seconds); ValueError says what it must be."""
    limits: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in SLO_KEYS:
            raise ValueError(f"limits like ttft=2,itl=0.05,e2e=30 (keys: {', '.join(SLO_KEYS)})")
        if key in limits:
            raise ValueError(f"each limit once ({key} is given twice)")
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(f"a number of seconds for {key}") from None
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"a positive number of seconds for {key}")
        limits[key] = seconds
    if not limits:
        raise ValueError("at least one limit, like ttft=2")
    return Slo(**limits)
