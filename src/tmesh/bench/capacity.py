"""`--find-max-users`: the most concurrent sessions a server serves within its SLO.

The question an operator asks of an SLO is one number: how many users fit. Each step is a full
sessions run (its own run folder, `users-N`) of `--duration` seconds at a fixed user count; a
step holds when the share of requests meeting every limit of `--slo` reaches `--goodput-target`.
From `--users` the count doubles while steps hold (or halves while they fail), then bisects
between the last that held and the first that failed, to within a tenth. Each step's sessions
are new conversations (their seed moves with the step), so a step never finds the previous
step's conversations in the server's cache.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import orjson

from tmesh.bench.measure.goodput import parse_slo
from tmesh.bench.options import BenchmarkOptions
from tmesh.bench.output.view import View
from tmesh.bench.prepare import Prepared
from tmesh.bench.run import Outcome, measure
from tmesh.results.catalogue.metrics import good_share
from tmesh.results.records import RunSummary
from tmesh.results.rundir import default_run_dir

CAPACITY = "capacity.json"
STEP_SECONDS = 60.0
"""A step's length when `--duration` is not given."""
SEED_STEP = 7919
MAX_USERS = 4096
"""The ramp stops doubling here: a server that holds its SLO this far has no answer worth the
time, and the last step says so."""


@dataclass
class Step:
    users: int
    goodput_share: float | None
    held: bool
    run_dir: str
    ttft_p99: float | None = None


@dataclass
class Capacity:
    """The ramp's outcome: `max_users` is the largest count that held (0 if none did)."""

    target: float
    slo: dict[str, float]
    max_users: int = 0
    steps: list[Step] = field(default_factory=list)
    stopped: str | None = None

    @property
    def tried(self) -> dict[int, bool]:
        return {step.users: step.held for step in self.steps}

    @property
    def max_held(self) -> int:
        return max((step.users for step in self.steps if step.held), default=0)


def next_users(tried: dict[int, bool], start: int) -> int | None:
    """The user count to try next after the steps `tried` (count: held), None when the answer
    is known: the largest count that held, with the smallest larger one that failed within a
    tenth of it (or one above it). A count that failed below one that held is noise and is
    passed over."""
    if not tried:
        return start
    held = [users for users, ok in tried.items() if ok]
    failed = [users for users, ok in tried.items() if not ok]
    if not failed:
        return None if max(held) >= MAX_USERS else min(2 * max(held), MAX_USERS)
    if not held:
        lowest = min(failed)
        return None if lowest == 1 else lowest // 2
    low = max(held)
    above = [users for users in failed if users > low]
    if not above:
        return None
    high = min(above)
    return None if high - low <= max(1, low // 10) else (low + high) // 2


async def find_max_users(opts: BenchmarkOptions, prep: Prepared, view: View) -> Outcome:
    """Ramp the user count; write `capacity.json` beside the steps' run folders."""
    assert prep.sessions is not None and opts.slo
    root = prep.run_dir or opts.output_dir or default_run_dir()
    capacity = Capacity(opts.goodput_target, parse_slo(opts.slo).limits())
    outcome: Outcome | None = None
    number = 0
    while (users := next_users(capacity.tried, opts.users)) is not None:
        view.progress(f"--find-max-users step {number + 1}: {users} users")
        step = replace(_step(prep, users, number), run_dir=Path(root) / f"users-{users}")
        outcome = await measure(_step_options(opts, users), step, view)
        share = _share(outcome.summary, opts.warmup > 0)
        held = share is not None and share >= 100 * opts.goodput_target
        capacity.steps.append(
            Step(users, share, held, str(outcome.run_dir), outcome.summary.overall.ttft.p99)
        )
        view.progress(f"{users} users: goodput {_percent(share)} ({'held' if held else 'missed'})")
        number += 1
        if outcome.errors or outcome.summary.stop_reason in ("signal", "interrupted"):
            capacity.stopped = outcome.summary.stop_reason
            break
    capacity.max_users = capacity.max_held
    Path(root).mkdir(parents=True, exist_ok=True)
    (Path(root) / CAPACITY).write_bytes(orjson.dumps(asdict(capacity), option=orjson.OPT_INDENT_2))
    view.answer(describe(capacity), {"capacity": asdict(capacity), "run_dir": str(root)})
    assert outcome is not None
    return replace(outcome, run_dir=Path(root))


def describe(capacity: Capacity) -> str:
    limits = ", ".join(f"{key} <= {value:g} s" for key, value in capacity.slo.items())
    lines = [f"Max users holding goodput >= {100 * capacity.target:g}% ({limits}):"]
    lines += [
        f"  {step.users} users: {_percent(step.goodput_share)} {'held' if step.held else 'missed'}"
        for step in capacity.steps
    ]
    answer = f"Max Users: {capacity.max_users}"
    if capacity.stopped:
        answer += f" (the ramp stopped early: {capacity.stopped})"
    return "\n".join([*lines, answer])


def _step_options(opts: BenchmarkOptions, users: int) -> BenchmarkOptions:
    return replace(opts, users=users, duration=opts.duration or STEP_SECONDS, find_max_users=False)


def _step(prep: Prepared, users: int, number: int) -> Prepared:
    texts = prep.sessions
    assert texts is not None and prep.spec.sessions is not None
    sessions = replace(prep.spec.sessions, users=users)
    spec = replace(prep.spec, sessions=sessions, num_contexts=users, max_inflight=users)
    texts = replace(texts, spec=sessions, seed=texts.seed + SEED_STEP * number)
    return replace(prep, spec=spec, sessions=texts)


def _share(summary: RunSummary, steady: bool) -> float | None:
    """Goodput share in percent, after the warm-up when there was one."""
    share = good_share(summary.steady if steady else summary.overall)
    return None if share is None else 100.0 * share


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.1f}%"
