"""What `tmesh-cli sweep` was asked to vary, each option declared once (its flag, help, bounds).

The knob flags take comma-separated lists and have the names of the benchmark options they vary
(`--max-inflight 1,2,4`), so the sweep's command line reads like the benchmark's; every other
benchmark flag applies to every point.
"""

from __future__ import annotations

from dataclasses import dataclass

from tmesh.fieldspec import option

SWEEP = "sweep (one knob, comma-separated values)"
DEFAULT_RATIOS = "0.5,1,2,4,8"


@dataclass
class SweepOptions:
    working_set_ratio: str | None = option(
        None,
        group=SWEEP,
        metavar="R,R,...",
        help="working sets as multiples of the server's GPU KV capacity; the number of "
        f"contexts follows (default when no other knob is given: {DEFAULT_RATIOS})",
    )
    max_inflight: str | None = option(
        None, group=SWEEP, metavar="N,N,...", help="requests in flight, one point per value"
    )
    request_rate: str | None = option(
        None,
        group=SWEEP,
        metavar="R,R,...",
        help="open-loop request rates (requests per second), one point per value",
    )
    users: str | None = option(
        None,
        group=SWEEP,
        metavar="N,N,...",
        help="users of the sessions workload (--workload sessions), one point per value",
    )
    passes: int = option(
        3,
        group=SWEEP,
        metavar="N",
        minimum=2,
        help="passes over the contexts per point; the first is the warm-up, left out of the "
        "point's latencies (with --duration, --warmup seconds are left out instead)",
    )
    reset: bool = option(
        True,
        group=SWEEP,
        negate=True,
        help="do not reset the server's prefix cache between points",
    )
